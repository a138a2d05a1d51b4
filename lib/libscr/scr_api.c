//go:build scrmpi

// The public functions of scr.h, with SCR's exact prototypes (the compiler
// checks them against the header), over the scrgo_* functions that
// main.go exports. Only what C must do itself lives here: the variadic
// SCR_Configf, the static version string and the fatal exit.

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "scr.h"
#include "_cgo_export.h"

int SCR_Init(void) { return scrgo_init(); }
int SCR_Finalize(void) { return scrgo_finalize(); }

const char* SCR_Config(const char* config) { return scrgo_config((char*) config); }

const char* SCR_Configf(const char* format, ...)
{
	if (format == NULL) {
		return SCR_Config(NULL);
	}
	va_list args;
	va_start(args, format);
	int n = vsnprintf(NULL, 0, format, args);
	va_end(args);
	if (n < 0) {
		fprintf(stderr, "SCR_Configf: cannot format \"%s\"\n", format);
		return NULL;
	}
	char* s = malloc((size_t) n + 1);
	if (s == NULL) {
		fprintf(stderr, "SCR_Configf: out of memory for %d bytes\n", n + 1);
		return NULL;
	}
	va_start(args, format);
	vsnprintf(s, (size_t) n + 1, format, args);
	va_end(args);
	const char* v = SCR_Config(s);
	free(s);
	return v;
}

int SCR_Route_file(const char* name, char* file) { return scrgo_route_file((char*) name, file); }

int SCR_Have_restart(int* flag, char* name) { return scrgo_have_restart(flag, name); }
int SCR_Start_restart(char* name) { return scrgo_start_restart(name); }
int SCR_Complete_restart(int valid) { return scrgo_complete_restart(valid); }

int SCR_Need_checkpoint(int* flag) { return scrgo_need_checkpoint(flag); }
int SCR_Start_checkpoint(void) { return scrgo_start_checkpoint(); }
int SCR_Complete_checkpoint(int valid) { return scrgo_complete_checkpoint(valid); }
int SCR_Start_output(const char* name, int flags) { return scrgo_start_output((char*) name, flags); }
int SCR_Complete_output(int valid) { return scrgo_complete_output(valid); }

int SCR_Current(const char* name) { return scrgo_current((char*) name); }
int SCR_Drop(const char* name) { return scrgo_drop((char*) name); }
int SCR_Delete(const char* name) { return scrgo_delete((char*) name); }

char* SCR_Get_version(void)
{
	static char version[] = SCR_VERSION " (scr-go)";
	return version;
}

int SCR_Should_exit(int* flag) { return scrgo_should_exit(flag); }

// The lost-peer policy's exit: the application's buffered output goes out,
// but no exit handler runs (another thread may be inside MPI).
void scrgo_fatal_exit(int code)
{
	fflush(NULL);
	_exit(code);
}
