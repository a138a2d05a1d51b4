// Helpers of package mpicomm: thin wrappers over MPI calls, so Go sees
// plain functions whatever MPI's handle types are, and every call is
// checked against the thread the engine serves on.
#ifndef SCRGO_MPICOMM_H
#define SCRGO_MPICOMM_H
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
void scrgo_mpi_set_thread(void);
long scrgo_mpi_foreign(void);
int scrgo_mpi_initialized(void);
int scrgo_mpi_finalized(void);
int scrgo_mpi_query_thread(void);
int scrgo_mpi_is_thread_main(void);
int scrgo_mpi_level(int i);
int scrgo_mpi_init_thread(int required, int* provided);
int scrgo_mpi_finalize(void);
int scrgo_mpi_dup_world(MPI_Comm* out);
int scrgo_mpi_rank_size(MPI_Comm c, int* r, int* s);
int scrgo_mpi_tag_ub(MPI_Comm c);
int scrgo_mpi_split(MPI_Comm c, int color, int key, MPI_Comm* out);
int scrgo_mpi_comm_free(MPI_Comm c);
void scrgo_mpi_error_string(int code, char* buf);
int scrgo_mpi_isend(void* b, int n, int dst, int tag, MPI_Comm c, MPI_Request* r);
int scrgo_mpi_improbe(int src, int tag, MPI_Comm c, int* flag, MPI_Message* m, int* count);
int scrgo_mpi_imrecv(void* b, int n, MPI_Message* m, MPI_Request* r);
int scrgo_mpi_testsome(int n, MPI_Request* rs, int* done, int* idx);
void scrgo_yield(void);
void scrgo_nap(int us);
int scrgo_mpi_ibarrier(MPI_Comm c, MPI_Request* r);
int scrgo_mpi_ibcast(void* b, int n, int root, MPI_Comm c, MPI_Request* r);
int scrgo_mpi_iallgather_i64(int64_t* mine, int n, int64_t* all, MPI_Comm c, MPI_Request* r);
int scrgo_mpi_igather_i64(int64_t* mine, int64_t* all, int root, MPI_Comm c, MPI_Request* r);
int scrgo_mpi_iallgatherv(void* s, int n, void* rb, int* counts, int* displs, MPI_Comm c, MPI_Request* r);
int scrgo_mpi_igatherv(void* s, int n, void* rb, int* counts, int* displs, int root, MPI_Comm c, MPI_Request* r);
int scrgo_mpi_iallreduce_i64(int64_t* in, int64_t* out, int n, int op, MPI_Comm c, MPI_Request* r);
int scrgo_mpi_any_source(void);
int scrgo_mpi_any_tag(void);
#endif
