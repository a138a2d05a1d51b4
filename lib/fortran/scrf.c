/*
 * libscrf: SCR's Fortran interface over scr.h, for gfortran and the other
 * compilers that name a subroutine in lower case with a trailing
 * underscore and pass each CHARACTER argument's length after the other
 * arguments (size_t since gfortran 8; an int on older compilers reads the
 * same register on x86-64 and little-endian 64-bit targets).
 *
 * Fortran strings are blank-padded, not NUL-terminated: names going in
 * lose their trailing blanks, names coming back are blank-padded to the
 * variable's length. A name that does not fit sets IERROR to a failure.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "scr.h"

#define FAIL 1

/* to_c copies a Fortran string into c (SCR_MAX_FILENAME bytes). */
static int to_c(const char* f, size_t flen, char* c)
{
	if (f == NULL) {
		return FAIL;
	}
	while (flen > 0 && f[flen - 1] == ' ') {
		flen--;
	}
	if (flen >= SCR_MAX_FILENAME) {
		return FAIL;
	}
	memcpy(c, f, flen);
	c[flen] = '\0';
	return SCR_SUCCESS;
}

/* to_f copies c into a Fortran string of flen characters. */
static int to_f(const char* c, char* f, size_t flen)
{
	if (c == NULL || f == NULL) {
		return FAIL;
	}
	size_t n = strlen(c);
	if (n > flen) {
		memcpy(f, c, flen);
		return FAIL;
	}
	memcpy(f, c, n);
	memset(f + n, ' ', flen - n);
	return SCR_SUCCESS;
}

void scr_init_(int* ierror) { *ierror = SCR_Init(); }
void scr_finalize_(int* ierror) { *ierror = SCR_Finalize(); }
void scr_should_exit_(int* flag, int* ierror) { *ierror = SCR_Should_exit(flag); }
void scr_need_checkpoint_(int* flag, int* ierror) { *ierror = SCR_Need_checkpoint(flag); }
void scr_start_checkpoint_(int* ierror) { *ierror = SCR_Start_checkpoint(); }
void scr_complete_checkpoint_(int* valid, int* ierror) { *ierror = SCR_Complete_checkpoint(*valid); }
void scr_complete_output_(int* valid, int* ierror) { *ierror = SCR_Complete_output(*valid); }
void scr_complete_restart_(int* valid, int* ierror) { *ierror = SCR_Complete_restart(*valid); }

/* SCR_CONFIG(CONFIG, VALUE, IERROR): VALUE receives a query's answer
 * (blanks when nothing sets it); a setting leaves it blank. */
void scr_config_(const char* cfg, char* val, int* ierror, size_t cfg_len, size_t val_len)
{
	char c[SCR_MAX_FILENAME];
	if ((*ierror = to_c(cfg, cfg_len, c)) != SCR_SUCCESS) {
		return;
	}
	const char* v = SCR_Config(c);
	*ierror = to_f(v != NULL ? v : "", val, val_len);
	free((void*) v); /* scr-go returns a query's answer in malloc'ed memory, or NULL */
}

void scr_route_file_(const char* name, char* file, int* ierror, size_t name_len, size_t file_len)
{
	char n[SCR_MAX_FILENAME], out[SCR_MAX_FILENAME];
	if ((*ierror = to_c(name, name_len, n)) != SCR_SUCCESS) {
		return;
	}
	if ((*ierror = SCR_Route_file(n, out)) == SCR_SUCCESS) {
		*ierror = to_f(out, file, file_len);
	}
}

void scr_have_restart_(int* flag, char* name, int* ierror, size_t name_len)
{
	char n[SCR_MAX_FILENAME] = "";
	*ierror = SCR_Have_restart(flag, n);
	if (*ierror == SCR_SUCCESS && *flag) {
		*ierror = to_f(n, name, name_len);
	}
}

void scr_start_restart_(char* name, int* ierror, size_t name_len)
{
	char n[SCR_MAX_FILENAME] = "";
	if ((*ierror = SCR_Start_restart(n)) == SCR_SUCCESS) {
		*ierror = to_f(n, name, name_len);
	}
}

void scr_start_output_(const char* name, int* flags, int* ierror, size_t name_len)
{
	char n[SCR_MAX_FILENAME];
	if ((*ierror = to_c(name, name_len, n)) == SCR_SUCCESS) {
		*ierror = SCR_Start_output(n, *flags);
	}
}

static void by_name(int (*fn)(const char*), const char* name, int* ierror, size_t name_len)
{
	char n[SCR_MAX_FILENAME];
	if ((*ierror = to_c(name, name_len, n)) == SCR_SUCCESS) {
		*ierror = fn(n);
	}
}

void scr_current_(const char* name, int* ierror, size_t len) { by_name(SCR_Current, name, ierror, len); }
void scr_drop_(const char* name, int* ierror, size_t len) { by_name(SCR_Drop, name, ierror, len); }
void scr_delete_(const char* name, int* ierror, size_t len) { by_name(SCR_Delete, name, ierror, len); }

void scr_get_version_(char* version, int* ierror, size_t len)
{
	*ierror = to_f(SCR_Get_version(), version, len);
}
