/*
 * semantics: checks scr-go's C API against SCR's documented behaviour.
 * Run on 2 ranks; prints "FAIL: ..." lines and exits 1 on a failure,
 * "semantics ok" on rank 0 otherwise. The expected error lines on stderr
 * are checked by lib/capi_test.go.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scr.h"

static int rank, failed;

#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL %d: ", rank); printf(__VA_ARGS__); printf("\n"); failed++; } } while (0)

static void query(const char* q, const char* want)
{
	const char* v = SCR_Config(q);
	if (want == NULL) {
		CHECK(v == NULL, "SCR_Config(%s) = %s, want NULL", q, v);
	} else {
		CHECK(v != NULL && strcmp(v, want) == 0, "SCR_Config(%s) = %s, want %s", q, v ? v : "NULL", want);
	}
	free((void*) v);
}

static void write_file(const char* name, int valid)
{
	char path[SCR_MAX_FILENAME];
	CHECK(SCR_Route_file(name, path) == SCR_SUCCESS, "SCR_Route_file(%s)", name);
	FILE* f = fopen(path, "w");
	CHECK(f != NULL, "open %s", path);
	if (f != NULL) {
		fprintf(f, "rank %d\n", rank);
		fclose(f);
	}
	(void) valid;
}

int main(int argc, char** argv)
{
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	char buf[SCR_MAX_FILENAME];
	int flag = -1;

	/* Before SCR_Init. */
	CHECK(SCR_Route_file("a/b.dat", buf) == SCR_SUCCESS && strcmp(buf, "a/b.dat") == 0, "Route_file before Init: %s", buf);
	CHECK(SCR_Config("SCR_CHECKPOINT_INTERVAL=5") == NULL, "setting returns NULL");
	query("SCR_CHECKPOINT_INTERVAL", "5");
	CHECK(SCR_Config("SCR_CHECKPOINT_INTERVAL=") == NULL, "unsetting returns NULL");
	query("SCR_CHECKPOINT_INTERVAL", NULL);
	CHECK(SCR_Configf("SCR_CHECKPOINT_INTERVAL=%d", 2) == NULL, "Configf returns NULL");
	query("SCR_CHECKPOINT_INTERVAL", "2");
	SCR_Config("CKPT=0 TYPE=XOR SET_SIZE=2");
	query("CKPT=0 TYPE", "XOR");
	CHECK(SCR_Start_output("early", SCR_FLAG_CHECKPOINT) != SCR_SUCCESS, "Start_output before Init succeeded"); /* stderr: SCR_Start_output: ... */
	CHECK(strstr(SCR_Get_version(), "v3.1.0") != NULL, "version %s", SCR_Get_version());

	CHECK(SCR_Init() == SCR_SUCCESS, "SCR_Init");
	CHECK(SCR_Config("SCR_FLUSH=1") == NULL, "setting after Init returns NULL"); /* stderr: SCR_Config("SCR_FLUSH=1"): ... */
	query("SCR_CHECKPOINT_INTERVAL", "2");

	/* SCR_CHECKPOINT_INTERVAL=2: every second call says yes. */
	CHECK(SCR_Need_checkpoint(&flag) == SCR_SUCCESS && flag == 0, "Need_checkpoint 1: %d", flag);
	CHECK(SCR_Need_checkpoint(&flag) == SCR_SUCCESS && flag == 1, "Need_checkpoint 2: %d", flag);

	/* SCR_FLAG_NONE is a dataset too. */
	CHECK(SCR_Start_output("plain", SCR_FLAG_NONE) == SCR_SUCCESS, "Start_output NONE");
	snprintf(buf, sizeof(buf), "plain/r%d", rank);
	write_file(buf, 1);
	CHECK(SCR_Complete_output(1) == SCR_SUCCESS, "Complete_output NONE");

	/* Outside a phase Route_file returns the name. */
	CHECK(SCR_Route_file("x/y", buf) == SCR_SUCCESS && strcmp(buf, "x/y") == 0, "Route_file outside a phase: %s", buf);

	/* Invalid on rank 1: failure on every rank. */
	CHECK(SCR_Start_output("ck.1", SCR_FLAG_CHECKPOINT) == SCR_SUCCESS, "Start_output ck.1");
	snprintf(buf, sizeof(buf), "ck.1/r%d", rank);
	write_file(buf, 1);
	CHECK(SCR_Complete_output(rank == 1 ? 0 : 1) != SCR_SUCCESS, "Complete_output invalid on rank 1 succeeded"); /* stderr on both */

	/* A good checkpoint, legacy calls. */
	CHECK(SCR_Start_checkpoint() == SCR_SUCCESS, "Start_checkpoint");
	snprintf(buf, sizeof(buf), "ck.2/r%d", rank);
	write_file(buf, 1);
	CHECK(SCR_Complete_checkpoint(1) == SCR_SUCCESS, "Complete_checkpoint");

	CHECK(SCR_Should_exit(&flag) == SCR_SUCCESS && flag == 0, "Should_exit %d", flag);
	CHECK(SCR_Have_restart(&flag, NULL) == SCR_SUCCESS, "Have_restart with a NULL name");
	CHECK(SCR_Drop("no-such-dataset") != SCR_SUCCESS, "Drop of an unknown dataset succeeded"); /* stderr */
	CHECK(SCR_Finalize() == SCR_SUCCESS, "SCR_Finalize");
	CHECK(SCR_Have_restart(&flag, buf) != SCR_SUCCESS, "Have_restart after Finalize succeeded"); /* stderr */

	int all = 0;
	MPI_Allreduce(&failed, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank == 0 && all == 0) {
		printf("semantics ok\n");
	}
	MPI_Finalize();
	return failed ? 1 : 0;
}
