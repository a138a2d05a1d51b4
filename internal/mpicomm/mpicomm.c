//go:build scrmpi

#include <pthread.h>
#include <sched.h>
#include <time.h>
#include "mpicomm.h"

// The thread the engine serves on, and how many MPI calls the helpers saw
// from any other thread (tests check it stays 0).
static pthread_t mpi_thread;
static int mpi_thread_set;
static long foreign_calls;

void scrgo_mpi_set_thread(void) { mpi_thread = pthread_self(); mpi_thread_set = 1; }
#define CHECK_THREAD() do { if (mpi_thread_set && !pthread_equal(pthread_self(), mpi_thread)) foreign_calls++; } while (0)
long scrgo_mpi_foreign(void) { return foreign_calls; }

int scrgo_mpi_initialized(void) { int f = 0; MPI_Initialized(&f); return f; }
int scrgo_mpi_finalized(void) { int f = 0; MPI_Finalized(&f); return f; }
int scrgo_mpi_query_thread(void) { int p = MPI_THREAD_SINGLE; CHECK_THREAD(); MPI_Query_thread(&p); return p; }
int scrgo_mpi_is_thread_main(void) { int f = 0; MPI_Is_thread_main(&f); return f; }
int scrgo_mpi_level(int i) {
	switch (i) {
	case 0: return MPI_THREAD_SINGLE;
	case 1: return MPI_THREAD_FUNNELED;
	case 2: return MPI_THREAD_SERIALIZED;
	}
	return MPI_THREAD_MULTIPLE;
}
int scrgo_mpi_init_thread(int required, int* provided) { return MPI_Init_thread(NULL, NULL, required, provided); }
int scrgo_mpi_finalize(void) { return MPI_Finalize(); }

int scrgo_mpi_dup_world(MPI_Comm* out) {
	CHECK_THREAD();
	int rc = MPI_Comm_dup(MPI_COMM_WORLD, out);
	if (rc == MPI_SUCCESS) MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
	return rc;
}
int scrgo_mpi_rank_size(MPI_Comm c, int* r, int* s) {
	CHECK_THREAD();
	int rc = MPI_Comm_rank(c, r);
	return rc == MPI_SUCCESS ? MPI_Comm_size(c, s) : rc;
}
int scrgo_mpi_tag_ub(MPI_Comm c) {
	CHECK_THREAD();
	int* v = NULL; int flag = 0;
	MPI_Comm_get_attr(c, MPI_TAG_UB, &v, &flag);
	return flag && v ? *v : 32767;
}
int scrgo_mpi_split(MPI_Comm c, int color, int key, MPI_Comm* out) {
	CHECK_THREAD();
	int rc = MPI_Comm_split(c, color < 0 ? MPI_UNDEFINED : color, key, out);
	if (rc == MPI_SUCCESS && *out != MPI_COMM_NULL) MPI_Comm_set_errhandler(*out, MPI_ERRORS_RETURN);
	return rc;
}
int scrgo_mpi_comm_free(MPI_Comm c) { CHECK_THREAD(); return MPI_Comm_free(&c); }
void scrgo_mpi_error_string(int code, char* buf) {
	int n = 0;
	if (MPI_Error_string(code, buf, &n) != MPI_SUCCESS) n = 0;
	buf[n] = 0;
}

int scrgo_mpi_isend(void* b, int n, int dst, int tag, MPI_Comm c, MPI_Request* r) {
	CHECK_THREAD();
	return MPI_Isend(b, n, MPI_BYTE, dst, tag, c, r);
}
int scrgo_mpi_improbe(int src, int tag, MPI_Comm c, int* flag, MPI_Message* m, int* count) {
	CHECK_THREAD();
	MPI_Status st;
	int rc = MPI_Improbe(src, tag, c, flag, m, &st);
	if (rc == MPI_SUCCESS && *flag) rc = MPI_Get_count(&st, MPI_BYTE, count);
	return rc;
}
int scrgo_mpi_imrecv(void* b, int n, MPI_Message* m, MPI_Request* r) {
	CHECK_THREAD();
	return MPI_Imrecv(b, n, MPI_BYTE, m, r);
}
// GCC 12 takes MPICH's MPI_STATUSES_IGNORE for an empty array it writes to.
#pragma GCC diagnostic ignored "-Wstringop-overflow"
int scrgo_mpi_testsome(int n, MPI_Request* rs, int* done, int* idx) {
	CHECK_THREAD();
	int rc = MPI_Testsome(n, rs, done, idx, MPI_STATUSES_IGNORE);
	if (rc == MPI_SUCCESS && *done == MPI_UNDEFINED) *done = 0;
	return rc;
}
int scrgo_mpi_ibarrier(MPI_Comm c, MPI_Request* r) { CHECK_THREAD(); return MPI_Ibarrier(c, r); }
int scrgo_mpi_ibcast(void* b, int n, int root, MPI_Comm c, MPI_Request* r) {
	CHECK_THREAD();
	return MPI_Ibcast(b, n, MPI_BYTE, root, c, r);
}
int scrgo_mpi_iallgather_i64(int64_t* mine, int n, int64_t* all, MPI_Comm c, MPI_Request* r) {
	CHECK_THREAD();
	return MPI_Iallgather(mine, n, MPI_INT64_T, all, n, MPI_INT64_T, c, r);
}
int scrgo_mpi_igather_i64(int64_t* mine, int64_t* all, int root, MPI_Comm c, MPI_Request* r) {
	CHECK_THREAD();
	return MPI_Igather(mine, 1, MPI_INT64_T, all, 1, MPI_INT64_T, root, c, r);
}
int scrgo_mpi_iallgatherv(void* s, int n, void* rb, int* counts, int* displs, MPI_Comm c, MPI_Request* r) {
	CHECK_THREAD();
	return MPI_Iallgatherv(s, n, MPI_BYTE, rb, counts, displs, MPI_BYTE, c, r);
}
int scrgo_mpi_igatherv(void* s, int n, void* rb, int* counts, int* displs, int root, MPI_Comm c, MPI_Request* r) {
	CHECK_THREAD();
	return MPI_Igatherv(s, n, MPI_BYTE, rb, counts, displs, MPI_BYTE, root, c, r);
}
int scrgo_mpi_iallreduce_i64(int64_t* in, int64_t* out, int n, int op, MPI_Comm c, MPI_Request* r) {
	CHECK_THREAD();
	MPI_Op o = MPI_SUM;
	switch (op) {
	case 1: o = MPI_MIN; break;
	case 2: o = MPI_MAX; break;
	case 3: o = MPI_LAND; break;
	case 4: o = MPI_LOR; break;
	}
	return MPI_Iallreduce(in, out, n, MPI_INT64_T, o, c, r);
}

int scrgo_mpi_any_source(void) { return MPI_ANY_SOURCE; }
int scrgo_mpi_any_tag(void) { return MPI_ANY_TAG; }

/* The serving thread's waits between polls, in C: a Go-level yield or
 * timer on a thread locked to its goroutine hands the P to another thread
 * and back through futexes each time, which cost more CPU than the MPI
 * work on ranks sharing cores. */
void scrgo_yield(void) { sched_yield(); }
void scrgo_nap(int us)
{
	struct timespec ts = { 0, (long) us * 1000L };
	nanosleep(&ts, NULL);
}
