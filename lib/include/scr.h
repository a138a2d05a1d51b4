/*
 * scr.h: the C interface of scr-go, a drop-in for LLNL SCR v3's scr.h.
 *
 * An SCR application includes this header and links -lscr (and its MPI);
 * no source change is needed. Every function but SCR_Route_file,
 * SCR_Get_version and SCR_Config is collective over MPI_COMM_WORLD and is
 * called after MPI_Init and before MPI_Finalize. Each returns SCR_SUCCESS,
 * or another value after printing one line on stderr that names the call
 * and the cause. See doc/capi.md for where scr-go differs from SCR.
 */
#ifndef SCR_H
#define SCR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The SCR API this library implements. */
#define SCR_MAJOR_VERSION "3"
#define SCR_MINOR_VERSION "1"
#define SCR_PATCH_VERSION "0"
#define SCR_VERSION "v3.1.0"

/* Return code of a call that worked. */
#define SCR_SUCCESS (0)

/* Bytes of the buffers that receive a file or dataset name. */
#define SCR_MAX_FILENAME 1024

/* Dataset flags for SCR_Start_output, to be OR'ed. */
#define SCR_FLAG_NONE       (0)      /* neither: cached only */
#define SCR_FLAG_CHECKPOINT (1 << 0) /* the job can restart from it */
#define SCR_FLAG_OUTPUT     (1 << 1) /* it must reach the prefix */

/* Start and stop the library (after MPI_Init, before MPI_Finalize). */
int SCR_Init(void);
int SCR_Finalize(void);

/* Set ("KEY=VALUE", "KEY=" to unset, "CKPT=0 TYPE=XOR SET_SIZE=8") before
 * SCR_Init, or query ("KEY", "CKPT=0 TYPE") at any time. A query returns
 * a string the caller frees with free(), or NULL when nothing sets the
 * parameter; a setting returns NULL. */
const char* SCR_Config(const char* config);
const char* SCR_Configf(const char* format, ...);

/* The path to open for the file name: in the cache during an output
 * phase, where the restarted file is during a restart phase, and name
 * itself outside a phase. file holds SCR_MAX_FILENAME bytes. Local. */
int SCR_Route_file(const char* name, char* file);

/* Restart: flag = 1 and name (SCR_MAX_FILENAME bytes, may be NULL) if a
 * checkpoint can be read; then Start_restart, Route_file, read, and
 * Complete_restart(1 if this rank read its files well). */
int SCR_Have_restart(int* flag, char* name);
int SCR_Start_restart(char* name);
int SCR_Complete_restart(int valid);

/* Checkpoints and outputs. */
int SCR_Need_checkpoint(int* flag);
int SCR_Start_checkpoint(void);
int SCR_Complete_checkpoint(int valid);
int SCR_Start_output(const char* name, int flags);
int SCR_Complete_output(int valid);

/* Datasets by name: mark the current one, forget one, delete one. */
int SCR_Current(const char* name);
int SCR_Drop(const char* name);
int SCR_Delete(const char* name);

/* The library's version; a static string, not to be freed. */
char* SCR_Get_version(void);

/* flag = 1 when the job should stop (scr_halt, time limit, checkpoints
 * left). */
int SCR_Should_exit(int* flag);

#ifdef __cplusplus
}
#endif

#endif /* SCR_H */
