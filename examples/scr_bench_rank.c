/*
 * scr_bench_rank: the rank program of scr_bench over MPI and the C API
 * (libscr). It follows the contract of scr_bench's own Go rank program
 * (internal/bench/rank.go, doc/performance.md "Other launchers and rank
 * programs"), so `scr_bench --mpi mpich|openmpi` measures the path of an
 * MPI application that links -lscr. Build it the way users build SCR
 * applications:
 *
 *   mpicc -O2 -o scr_bench_rank scr_bench_rank.c $(pkg-config --cflags --libs scr)
 *
 * and start it under mpiexec with one rank per node:
 *
 *   scr_bench_rank --mode ckpt|prepare|rebuild --size BYTES --out DIR
 *                  [--times T] [--lose NODE] [--nofsync] [--cpuprofile PREFIX]
 *
 * with the SCR parameters in the environment (scr_bench sets SCR_PREFIX,
 * SCR_COPY_TYPE, SCR_FLUSH=0, SCR_CACHE_SIZE=1, SCR_JOB_ID=bench, ...).
 * Modes:
 *   ckpt     timed: SCR_Init ("init" 0), then T times a plain write of SIZE
 *            bytes to a file of this program's in the node's cache base
 *            ("plain" i) and a checkpoint of the same bytes ("ckpt" i:
 *            SCR_Start_output, SCR_Route_file, write, SCR_Complete_output)
 *   prepare  SCR_Init and one checkpoint, untimed (for a rebuild run)
 *   rebuild  the ranks on node NODE delete this job's cache and control
 *            directories; timed: the plain write of those ranks alone
 *            ("node" 1, the others take part with no work), then SCR_Init,
 *            which rebuilds them ("rebuild" 1); then every rank restarts
 *            and checks every byte of its file
 * Each timed section starts after an MPI_Barrier; no barrier ends it. For
 * each, the rank records wall-clock start and end (CLOCK_REALTIME ns), and
 * for its process the peak resident set during the section (VmHWM, reset
 * before it through /proc/self/clear_refs), CPU time (user + system),
 * minor page faults and voluntary context switches, and after
 * SCR_Finalize writes them to DIR/rank.<r>.json.
 *
 * --cpuprofile is accepted and ignored: a C program has no pprof; profile
 * the ranks with `perf record` instead. The job id that names the node's
 * cache directory (<base>/<user>/scr.<jobid>) is read from SCR_JOB_ID,
 * which must be set (scr_bench sets it): this program does not repeat the
 * library's reading of the resource managers' variables.
 *
 * Exit status: 0 measured; 1 an SCR call, the file I/O or the restart's
 * check failed (the job is aborted with MPI_Abort, which names the rank);
 * 2 usage. A rank ended by scr-go's lost-peer policy exits 75.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "scr.h"

#define BLOCK (4 << 20) /* the application's write buffer, as in rank.go */

static const char* mode;
static const char* out_dir;
static const char* lose;
static long long size;
static int times = 1;
static int use_fsync = 1;
static int profile;

static int rank;
static char node[256];
static unsigned char* block;
static size_t block_len;
static char plain_dir[4096];
static char error_text[2048]; /* why the current step failed */

/* A timed section of this rank (RankReport.records in rank.go). */
struct record {
	const char* what;
	int i;
	long long start_ns, end_ns, peak_kb, cpu_ns, minflt, nvcsw;
};
static struct record* records;
static int nrecords, records_cap;

/* failf sets error_text and returns -1. */
static int failf(const char* format, ...)
{
	va_list ap;
	va_start(ap, format);
	vsnprintf(error_text, sizeof error_text, format, ap);
	va_end(ap);
	return -1;
}

static int remove_all(const char* path);

/* die ends the whole job: one rank's failure must not leave the others
 * waiting in a barrier. */
static void die(const char* step)
{
	fprintf(stderr, "scr_bench_rank %d on %s: %s: %s\n", rank, node, step, error_text);
	fflush(stderr);
	if (plain_dir[0] != '\0') {
		remove_all(plain_dir);
	}
	MPI_Abort(MPI_COMM_WORLD, 1);
	exit(1);
}

static int usage_error(const char* what)
{
	fprintf(stderr, "scr_bench_rank: %s\n"
	                "usage: scr_bench_rank --mode ckpt|prepare|rebuild --size BYTES --out DIR\n"
	                "                      [--times T] [--lose NODE] [--nofsync] [--cpuprofile PREFIX]\n",
	        what);
	return 2;
}

/* parse_args reads the options as rank.go's parseRank does; 0, or the
 * exit code of a usage error. */
static int parse_args(int argc, char** argv)
{
	static const struct option opts[] = {
		{"mode", required_argument, NULL, 'm'}, {"size", required_argument, NULL, 's'},
		{"times", required_argument, NULL, 't'}, {"out", required_argument, NULL, 'o'},
		{"lose", required_argument, NULL, 'l'}, {"cpuprofile", required_argument, NULL, 'p'},
		{"nofsync", no_argument, NULL, 'n'}, {NULL, 0, NULL, 0},
	};
	opterr = 0;
	for (;;) {
		int c = getopt_long_only(argc, argv, "", opts, NULL);
		if (c == -1) {
			break;
		}
		char* end;
		switch (c) {
		case 'm':
			mode = optarg;
			break;
		case 's':
			errno = 0;
			size = strtoll(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0') {
				return usage_error("--size: want a number of bytes");
			}
			break;
		case 't': {
			errno = 0;
			long t = strtol(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' || t < -1000000000L || t > 1000000000L) {
				return usage_error("--times: want a number");
			}
			times = (int) t;
			break;
		}
		case 'o':
			out_dir = optarg;
			break;
		case 'l':
			lose = optarg;
			break;
		case 'p':
			profile = 1; /* accepted and ignored: no pprof in C (see the top) */
			break;
		case 'n':
			use_fsync = 0;
			break;
		default:
			return usage_error("unknown option or missing value");
		}
	}
	if (mode == NULL || (strcmp(mode, "ckpt") && strcmp(mode, "prepare") && strcmp(mode, "rebuild"))) {
		return usage_error("--mode: want ckpt, prepare or rebuild");
	}
	if (size < 1 || times < 1 || out_dir == NULL || *out_dir == '\0' || optind < argc) {
		return usage_error("want --size >= 1, --times >= 1, --out DIR and no other arguments");
	}
	if (!strcmp(mode, "rebuild") && (lose == NULL || *lose == '\0')) {
		return usage_error("--mode rebuild needs --lose NODE");
	}
	return 0;
}

/* env is the value of an environment variable, or NULL when unset or empty. */
static const char* env(const char* name)
{
	const char* v = getenv(name);
	return v != NULL && *v != '\0' ? v : NULL;
}

/* node_name is this rank's node as the library names it: SCR_NODE_NAME,
 * else the host name up to its first dot. */
static void node_name(void)
{
	const char* v = env("SCR_NODE_NAME");
	if (v != NULL) {
		snprintf(node, sizeof node, "%s", v);
		return;
	}
	if (gethostname(node, sizeof node) != 0) {
		snprintf(node, sizeof node, "?");
	}
	node[sizeof node - 1] = '\0';
	char* dot = strchr(node, '.');
	if (dot != NULL) {
		*dot = '\0';
	}
}

/* job_id is SCR_JOB_ID, trimmed of blanks as the library trims it. */
static int job_id(char* out, size_t n)
{
	const char* v = getenv("SCR_JOB_ID");
	if (v == NULL) {
		v = "";
	}
	while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') {
		v++;
	}
	size_t len = strlen(v);
	while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t' || v[len - 1] == '\n' || v[len - 1] == '\r')) {
		len--;
	}
	if (len == 0) {
		return failf("SCR_JOB_ID is not set: it names the node's cache directory (scr_bench sets "
		             "SCR_JOB_ID=bench); set it when starting this program otherwise");
	}
	if (len >= n) {
		return failf("SCR_JOB_ID is too long");
	}
	memcpy(out, v, len);
	out[len] = '\0';
	return 0;
}

/* user_name is the library's: SCR_USER_NAME, USER, the password entry,
 * else the uid. */
static void user_name(char* out, size_t n)
{
	const char* v = env("SCR_USER_NAME");
	if (v == NULL) {
		v = env("USER");
	}
	if (v == NULL) {
		struct passwd* pw = getpwuid(getuid());
		if (pw != NULL && pw->pw_name != NULL && *pw->pw_name != '\0') {
			v = pw->pw_name;
		}
	}
	if (v != NULL) {
		snprintf(out, n, "%s", v);
	} else {
		snprintf(out, n, "%u", (unsigned) getuid());
	}
}

/* base is SCR_CACHE_BASE or SCR_CNTL_BASE, default /dev/shm. */
static const char* base(const char* name)
{
	const char* v = env(name);
	return v != NULL ? v : "/dev/shm";
}

/* make_plain_dir makes the directory of the plain writes, a directory of
 * ours in the node's cache base (rank.go's plainDir). */
static int make_plain_dir(void)
{
	char job[512];
	if (job_id(job, sizeof job) != 0) {
		return -1;
	}
	int n = snprintf(plain_dir, sizeof plain_dir, "%s/scr_bench.%u.%s.rank%d", base("SCR_CACHE_BASE"),
	                 (unsigned) getuid(), job, rank);
	if (n < 0 || (size_t) n >= sizeof plain_dir) {
		return failf("the plain write's directory name is too long");
	}
	if (mkdir(plain_dir, 0700) != 0 && errno != EEXIST) {
		return failf("mkdir %s: %s", plain_dir, strerror(errno));
	}
	struct stat st;
	if (lstat(plain_dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid()) {
		return failf("%s exists and is not a directory of ours", plain_dir);
	}
	return 0;
}

static int remove_entry(const char* path, const struct stat* st, int type, struct FTW* ftw)
{
	(void) st;
	(void) ftw;
	int rc = (type == FTW_DP) ? rmdir(path) : unlink(path);
	if (rc != 0 && errno != ENOENT) {
		return failf("remove %s: %s", path, strerror(errno));
	}
	return 0;
}

/* remove_all deletes path and what is below it (symbolic links are
 * removed, not followed); a missing path is no error. */
static int remove_all(const char* path)
{
	struct stat st;
	if (lstat(path, &st) != 0) {
		return errno == ENOENT ? 0 : failf("%s: %s", path, strerror(errno));
	}
	return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* reset_peak restarts the peak resident set (VmHWM) from the current one. */
static void reset_peak(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "5", 1) != 1) {
			/* unknown peak: reported as it is */
		}
		close(fd);
	}
}

/* peak_kb is VmHWM in kB, 0 if unknown. */
static long long peak_kb(void)
{
	FILE* f = fopen("/proc/self/status", "r");
	if (f == NULL) {
		return 0;
	}
	char line[256];
	long long kb = 0;
	while (fgets(line, sizeof line, f) != NULL) {
		if (sscanf(line, "VmHWM: %lld kB", &kb) == 1) {
			break;
		}
	}
	fclose(f);
	return kb;
}

struct usage {
	long long cpu_ns, minflt, nvcsw;
};

static struct usage usage_now(void)
{
	struct usage u = {0, 0, 0};
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		u.cpu_ns = ((long long) ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
		           ((long long) ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
		u.minflt = ru.ru_minflt;
		u.nvcsw = ru.ru_nvcsw;
	}
	return u;
}

/* timed runs section after a barrier and records it (rank.go's timed);
 * a failure ends the job. */
static void timed(const char* what, int i, int (*section)(void* arg), void* arg)
{
	if (MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS) {
		failf("MPI_Barrier failed");
		die(what);
	}
	reset_peak();
	struct usage u0 = usage_now();
	long long start = now_ns();
	if (section(arg) != 0) {
		char step[64];
		snprintf(step, sizeof step, "%s %d", what, i);
		die(step);
	}
	long long end = now_ns();
	struct usage u = usage_now();
	if (nrecords == records_cap) {
		records_cap = records_cap ? 2 * records_cap : 16;
		records = realloc(records, (size_t) records_cap * sizeof *records);
		if (records == NULL) {
			failf("out of memory");
			die(what);
		}
	}
	records[nrecords++] = (struct record){what, i, start, end, peak_kb(),
	                                      u.cpu_ns - u0.cpu_ns, u.minflt - u0.minflt, u.nvcsw - u0.nvcsw};
}

/* write_file writes SIZE bytes of the rank's pattern to a new file at
 * path, the way an application writes its checkpoint. */
static int write_file(const char* path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		return failf("create %s: %s", path, strerror(errno));
	}
	int rc = 0;
	for (long long left = size; left > 0 && rc == 0;) {
		size_t n = left < (long long) block_len ? (size_t) left : block_len;
		const unsigned char* p = block;
		while (n > 0) {
			ssize_t k = write(fd, p, n);
			if (k < 0 && errno == EINTR) {
				continue;
			}
			if (k < 0) {
				rc = failf("write %s: %s", path, strerror(errno));
				break;
			}
			p += k;
			n -= (size_t) k;
			left -= k;
		}
	}
	if (rc == 0 && use_fsync && fsync(fd) != 0) {
		rc = failf("fsync %s: %s", path, strerror(errno));
	}
	if (close(fd) != 0 && rc == 0) {
		rc = failf("close %s: %s", path, strerror(errno));
	}
	return rc;
}

/* verify_file checks that path holds exactly the rank's pattern. */
static int verify_file(const char* path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		return failf("open %s: %s", path, strerror(errno));
	}
	unsigned char* got = malloc(block_len);
	if (got == NULL) {
		close(fd);
		return failf("out of memory");
	}
	int rc = 0;
	long long off = 0;
	while (rc == 0 && off < size) {
		size_t want = size - off < (long long) block_len ? (size_t) (size - off) : block_len;
		size_t have = 0;
		while (have < want) {
			ssize_t k = read(fd, got + have, want - have);
			if (k < 0 && errno == EINTR) {
				continue;
			}
			if (k <= 0) {
				rc = failf("%s at %lld: %s", path, off + (long long) have, k == 0 ? "unexpected end of file" : strerror(errno));
				break;
			}
			have += (size_t) k;
		}
		if (rc == 0 && memcmp(got, block, want) != 0) {
			rc = failf("%s: content differs in the %zu bytes at %lld", path, want, off);
		}
		off += (long long) want;
	}
	if (rc == 0) {
		ssize_t k;
		do {
			k = read(fd, got, 1);
		} while (k < 0 && errno == EINTR);
		if (k != 0) {
			rc = failf("%s is longer than %lld bytes", path, size);
		}
	}
	free(got);
	close(fd);
	return rc;
}

/* Sections. */

static int scr_init(void* arg)
{
	(void) arg;
	return SCR_Init() == SCR_SUCCESS ? 0 : failf("SCR_Init failed (its line on stderr says why)");
}

/* plain_write writes the file "plain" of the plain directory when arg is
 * non-NULL; the first write of a run creates it, later ones replace it
 * (O_TRUNC frees the previous one's pages, as the eviction of the previous
 * checkpoint does for SCR with SCR_CACHE_SIZE=1). */
static int plain_write(void* arg)
{
	if (arg == NULL) {
		return 0;
	}
	char path[4200];
	snprintf(path, sizeof path, "%s/plain", plain_dir);
	return write_file(path);
}

static void file_name(char* out, size_t n)
{
	snprintf(out, n, "bench/rank_%d", rank);
}

static int checkpoint(void* arg)
{
	(void) arg;
	if (SCR_Start_output(NULL, SCR_FLAG_CHECKPOINT) != SCR_SUCCESS) {
		return failf("SCR_Start_output failed (its line on stderr says why)");
	}
	char name[64], path[SCR_MAX_FILENAME];
	file_name(name, sizeof name);
	if (SCR_Route_file(name, path) != SCR_SUCCESS) {
		/* Start_output is collective: complete it as invalid so the
		 * others do not wait, then fail. */
		SCR_Complete_output(0);
		return failf("SCR_Route_file(%s) failed", name);
	}
	int werr = write_file(path);
	char why[sizeof error_text];
	snprintf(why, sizeof why, "%s", error_text);
	if (SCR_Complete_output(werr == 0) != SCR_SUCCESS) {
		return werr != 0 ? failf("%s; SCR_Complete_output failed", why)
		                 : failf("SCR_Complete_output failed (its line on stderr says why)");
	}
	return werr;
}

static void finalize(void)
{
	if (SCR_Finalize() != SCR_SUCCESS) {
		failf("SCR_Finalize failed (its line on stderr says why)");
		die("finalize");
	}
}

static void ckpt_run(void)
{
	timed("init", 0, scr_init, NULL);
	for (int i = 1; i <= times; i++) {
		timed("plain", i, plain_write, plain_dir);
		timed("ckpt", i, checkpoint, NULL);
	}
	finalize();
}

static void prepare_run(void)
{
	if (scr_init(NULL) != 0) {
		die("init");
	}
	if (checkpoint(NULL) != 0) {
		die("checkpoint");
	}
	finalize();
}

/* lose_node deletes this job's cache and control directories on this node
 * (rank.go: cache.NewLayout: <base>/<user>/scr.<jobid>), as when a spare
 * replaces a dead node. Unlike rank.go it fails when the cache directory
 * is missing: the prepare run made it, so a miss means this program looks
 * elsewhere than the library and would measure no rebuild. */
static int lose_node(void)
{
	char user[256], job[512], cache_dir[4096], cntl_dir[4096];
	user_name(user, sizeof user);
	if (job_id(job, sizeof job) != 0) {
		return -1;
	}
	snprintf(cache_dir, sizeof cache_dir, "%s/%s/scr.%s", base("SCR_CACHE_BASE"), user, job);
	snprintf(cntl_dir, sizeof cntl_dir, "%s/%s/scr.%s", base("SCR_CNTL_BASE"), user, job);
	struct stat st;
	if (lstat(cache_dir, &st) != 0) {
		return failf("no cache directory %s to delete (%s): is SCR_CACHE_BASE, the user or SCR_JOB_ID "
		             "not the prepare run's?", cache_dir, strerror(errno));
	}
	if (remove_all(cache_dir) != 0 || remove_all(cntl_dir) != 0) {
		return -1;
	}
	return 0;
}

static void rebuild_run(void)
{
	int lost = !strcmp(node, lose);
	if (lost && lose_node() != 0) {
		die("lose the node's cache");
	}
	timed("node", 1, plain_write, lost ? plain_dir : NULL);
	timed("rebuild", 1, scr_init, NULL);
	int have = 0;
	char name[SCR_MAX_FILENAME] = "";
	if (SCR_Have_restart(&have, name) != SCR_SUCCESS) {
		failf("SCR_Have_restart failed (its line on stderr says why)");
		die("restart");
	}
	if (!have) {
		failf("no checkpoint to restart from after the rebuild");
		die("restart");
	}
	if (SCR_Start_restart(name) != SCR_SUCCESS) {
		failf("SCR_Start_restart failed (its line on stderr says why)");
		die("restart");
	}
	char file[64], path[SCR_MAX_FILENAME];
	file_name(file, sizeof file);
	int rc = SCR_Route_file(file, path) == SCR_SUCCESS ? verify_file(path) : failf("SCR_Route_file(%s) failed", file);
	char why[sizeof error_text];
	snprintf(why, sizeof why, "%s", rc == 0 ? "" : error_text);
	if (SCR_Complete_restart(rc == 0) != SCR_SUCCESS || rc != 0) {
		failf("restart from %s does not verify: %s", name, rc != 0 ? why : "on another rank");
		die("restart");
	}
	finalize();
}

/* json_string writes s as a JSON string. */
static void json_string(FILE* f, const char* s)
{
	fputc('"', f);
	for (const unsigned char* p = (const unsigned char*) s; *p; p++) {
		if (*p == '"' || *p == '\\') {
			fprintf(f, "\\%c", *p);
		} else if (*p < 0x20) {
			fprintf(f, "\\u%04x", *p);
		} else {
			fputc(*p, f);
		}
	}
	fputc('"', f);
}

/* write_report writes DIR/rank.<r>.json (RankReport) through a temporary
 * file, so a reader never sees half of it. */
static int write_report(void)
{
	char path[4096], tmp[4200];
	snprintf(path, sizeof path, "%s/rank.%d.json", out_dir, rank);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE* f = fopen(tmp, "w");
	if (f == NULL) {
		return failf("create %s: %s", tmp, strerror(errno));
	}
	fchmod(fileno(f), 0600);
	fprintf(f, "{\"rank\":%d,\"node\":", rank);
	json_string(f, node);
	fprintf(f, ",\"records\":[");
	for (int k = 0; k < nrecords; k++) {
		struct record* r = &records[k];
		fprintf(f, "%s{\"what\":\"%s\",\"i\":%d,\"start_ns\":%lld,\"end_ns\":%lld,\"peak_rss_kb\":%lld,"
		           "\"cpu_ns\":%lld,\"minflt\":%lld,\"nvcsw\":%lld}",
		        k ? "," : "", r->what, r->i, r->start_ns, r->end_ns, r->peak_kb, r->cpu_ns, r->minflt, r->nvcsw);
	}
	fprintf(f, "]}\n");
	int bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		unlink(tmp);
		return failf("write %s: %s", tmp, strerror(errno));
	}
	if (rename(tmp, path) != 0) {
		unlink(tmp);
		return failf("rename %s: %s", tmp, strerror(errno));
	}
	return 0;
}

int main(int argc, char** argv)
{
	int rc = parse_args(argc, argv);
	if (rc != 0) {
		return rc;
	}
	if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
		fprintf(stderr, "scr_bench_rank: MPI_Init failed\n");
		return 1;
	}
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	node_name();
	if (profile && rank == 0) {
		fprintf(stderr, "scr_bench_rank: --cpuprofile is ignored: profile the ranks with perf record\n");
	}
	if (make_plain_dir() != 0) {
		die("plain directory");
	}
	block_len = size < BLOCK ? (size_t) size : BLOCK;
	block = malloc(block_len);
	if (block == NULL) {
		failf("out of memory");
		die("buffer");
	}
	for (size_t i = 0; i < block_len; i++) {
		block[i] = (unsigned char) (i * 7 + (size_t) rank);
	}
	if (!strcmp(mode, "ckpt")) {
		ckpt_run();
	} else if (!strcmp(mode, "prepare")) {
		prepare_run();
	} else {
		rebuild_run();
	}
	if (write_report() != 0) {
		die("report");
	}
	remove_all(plain_dir);
	free(block);
	free(records);
	MPI_Finalize();
	return 0;
}
