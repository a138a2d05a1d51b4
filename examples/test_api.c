/*
 * test_api: an MPI application that checkpoints through SCR's C API, with
 * the options and printed lines of SCR's examples/test_api.c. It builds
 * unchanged against LLNL SCR or scr-go:
 *
 *   mpicc -o test_api test_api.c $(pkg-config --cflags --libs scr)
 *
 * Each rank writes rank_<rank>.ckpt (one shared file with --shared-file):
 * a 7-byte header holding the timestep as six digits and a NUL, then
 * SIZE+rank bytes whose value is (rank + i) mod 256. On restart every byte
 * is checked.
 *
 * Exit status: 0 success; 1 an SCR call or the file I/O failed; 2 usage;
 * 3 a checkpoint was offered but did not verify on some rank (SCR's
 * test_api exits 0 there; we do not). A rank ended by scr-go's lost-peer
 * policy exits 75.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mpi.h>

#include "scr.h"

#define HEADER 7 /* "%06d" and a NUL */

static int rank, ranks;
static unsigned long long size = 512 * 1024;
static int times = 5, seconds = 0, reduce = 0, kernel = 0;
static int flush_every = 0, output_every = 0;
static int use_config_api = 0, use_conf_file = 1;
static int use_fsync = 1, use_scr = 1, use_scr_restart = 1, shared_file = 0;
static char* path = NULL;
static char* current = NULL;
static char* global_store = NULL;

static unsigned long long data_bytes; /* SIZE + rank */
static unsigned long long file_bytes; /* HEADER + data_bytes (per rank) */
static unsigned long long total_bytes; /* the shared file's size */
static off_t my_offset;               /* where this rank's part starts */
static int timestep = 0;
static int failures = 0;

static void fail(const char* call, int rc)
{
	printf("%d: failed calling %s: %d\n", rank, call, rc);
	fflush(stdout);
	failures++;
}

/* parse_size reads "512k", "64MB", "1g" (powers of 1024). */
static int parse_size(const char* s, unsigned long long* out)
{
	char* end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno != 0 || !(v >= 0) || isinf(v)) {
		return -1;
	}
	unsigned long long mult = 1;
	if (*end != '\0') {
		const char* units = "kmgtpe";
		const char* u = strchr(units, (char) (*end | 0x20));
		if (u == NULL || *u == '\0') {
			return -1;
		}
		mult = 1ULL << (10 * (u - units + 1));
		end++;
		if (*end == 'b' || *end == 'B') {
			end++;
		}
	}
	if (*end != '\0' || v * (double) mult >= 18446744073709551615.0) {
		return -1;
	}
	*out = (unsigned long long) (v * (double) mult);
	return 0;
}

/* parse_bool: yes/true/y/1 and no/false/n/0 (SCR's own test_api inverts
 * them by mistake). */
static int parse_bool(const char* s)
{
	if (!strcmp(s, "yes") || !strcmp(s, "true") || !strcmp(s, "y") || !strcmp(s, "1")) {
		return 1;
	}
	if (!strcmp(s, "no") || !strcmp(s, "false") || !strcmp(s, "n") || !strcmp(s, "0")) {
		return 0;
	}
	return -1;
}

static void usage(void)
{
	if (rank != 0) {
		return;
	}
	printf("\n");
	printf("  Usage: test_api [options]\n");
	printf("\n");
	printf("  Options:\n");
	printf("    -s, --size=<SIZE>    Rank checkpoint size in bytes, e.g., 1MB (default %llu)\n", size);
	printf("    -t, --times=<COUNT>  Number of iterations (default %d)\n", times);
	printf("    -z, --seconds=<SECS> Sleep for SECS seconds between iterations (default %d)\n", seconds);
	printf("    -w, --reduce=<COUNT> Allreduce iterations to execute between iterations (default %d)\n", reduce);
	printf("    -k, --kernel=<KERNEL_INDEX> Selected Kernel 0-CPU, 1-MEMORY, 2-ALL REDUCE, 3 -ALL REDUCE AVERAGE(default %d)\n", kernel);
	printf("    -p, --path=<DIR>     Directory to create and write files to\n");
	printf("    -f, --flush=<COUNT>  Mark every Nth write as checkpoint+output (default %d)\n", flush_every);
	printf("    -o, --output=<COUNT> Mark every Nth write as pure output (default %d)\n", output_every);
	printf("    -a, --config-api=<BOOL> Use SCR_Config to set values (default %s)\n", use_config_api ? "yes" : "no");
	printf("    -c, --conf-file=<BOOL>  Use SCR_CONF_FILE file to set values (default %s)\n", use_conf_file ? "yes" : "no");
	printf("        --current=<CKPT> Specify checkpoint name to load on restart\n");
	printf("        --nofsync        Disable fsync after writing files\n");
	printf("        --noscr          Disable SCR calls\n");
	printf("        --noscrrestart   Disable SCR restart calls\n");
	printf("        --shared-file    Use single shared file instead of file per rank\n");
	printf("        --global-store=<DIR> Specify DIR as a global storage location for cache\n");
	printf("    -h, --help           Print usage\n");
	printf("\n");
}

/* fill puts this rank's content for a timestep in buf (file_bytes). */
static void fill(char* buf, int step)
{
	snprintf(buf, HEADER, "%06u", (unsigned) step % 1000000u);
	buf[HEADER - 1] = '\0';
	for (unsigned long long i = 0; i < data_bytes; i++) {
		buf[HEADER + i] = (char) ((rank + i) & 0xff);
	}
}

/* full_io reads or writes n bytes at off. */
static int full_io(int fd, char* buf, size_t n, off_t off, int writing)
{
	while (n > 0) {
		ssize_t k = writing ? pwrite(fd, buf, n, off) : pread(fd, buf, n, off);
		if (k < 0 && errno == EINTR) {
			continue;
		}
		if (k <= 0) {
			return -1;
		}
		buf += k;
		n -= (size_t) k;
		off += k;
	}
	return 0;
}

/* check reads and verifies this rank's part of file; 1 if good. */
static int check(const char* file, char* buf, int* step)
{
	int fd = open(file, O_RDONLY);
	if (fd < 0) {
		printf("%d: Could not open file %s\n", rank, file);
		return 0;
	}
	int ok = 1;
	struct stat st;
	unsigned long long want = shared_file ? total_bytes : file_bytes;
	if (fstat(fd, &st) != 0 || (unsigned long long) st.st_size != want) {
		printf("%d: Filesize %s not correct. Expected %llu, got %llu\n", rank, file, want,
		       (unsigned long long) (fstat(fd, &st) == 0 ? st.st_size : 0));
		ok = 0;
	} else if (full_io(fd, buf, file_bytes, my_offset, 0) != 0 || buf[HEADER - 1] != '\0') {
		printf("%d: Could not read checkpoint from %s\n", rank, file);
		ok = 0;
	} else {
		char* end;
		long t = strtol(buf, &end, 10);
		if (end != buf + HEADER - 1 || t < 0) {
			printf("%d: Could not read checkpoint from %s\n", rank, file);
			ok = 0;
		} else {
			*step = (int) t;
			for (unsigned long long i = 0; i < data_bytes; i++) {
				if (buf[HEADER + i] != (char) ((rank + i) & 0xff)) {
					printf("%d: Invalid value in buffer\n", rank);
					ok = 0;
					break;
				}
			}
		}
	}
	close(fd);
	return ok;
}

/* file_name is "[path/]dataset/rank_<rank>.ckpt" (or rank_shared.ckpt). */
static void file_name(char* out, size_t n, const char* dataset)
{
	char base[64];
	if (shared_file) {
		snprintf(base, sizeof(base), "rank_shared.ckpt");
	} else {
		snprintf(base, sizeof(base), "rank_%d.ckpt", rank);
	}
	if (path != NULL) {
		snprintf(out, n, "%s/%s/%s", path, dataset, base);
	} else {
		snprintf(out, n, "%s/%s", dataset, base);
	}
}

/* restart_scr loops over what SCR offers until one checkpoint verifies on
 * every rank. It returns 0, or 3 when one was offered but none verified. */
static int restart_scr(char* buf)
{
	int offered = 0, restarted = 0;
	for (;;) {
		int have = 0;
		char dset[SCR_MAX_FILENAME];
		int rc = SCR_Have_restart(&have, dset);
		if (rc != SCR_SUCCESS) {
			fail("SCR_Have_restart", rc);
			break;
		}
		if (!have) {
			break;
		}
		offered = 1;
		if (rank == 0) {
			printf("Restarting from checkpoint named %s\n", dset);
			fflush(stdout);
		}
		if ((rc = SCR_Start_restart(dset)) != SCR_SUCCESS) {
			fail("SCR_Start_restart", rc);
			break;
		}
		char name[SCR_MAX_FILENAME], file[SCR_MAX_FILENAME];
		file_name(name, sizeof(name), dset);
		int valid = 0, step = 0;
		if ((rc = SCR_Route_file(name, file)) != SCR_SUCCESS) {
			fail("SCR_Route_file", rc);
		} else {
			valid = check(file, buf, &step);
		}
		if (SCR_Complete_restart(valid) == SCR_SUCCESS) {
			timestep = step;
			restarted = 1;
			break;
		}
	}
	if (offered && !restarted) {
		if (rank == 0) {
			printf("At least one rank (perhaps all) did not find its checkpoint\n");
		}
		timestep = 0;
		return 3;
	}
	return 0;
}

/* restart_direct reads --current straight from the file system. */
static int restart_direct(char* buf)
{
	char name[SCR_MAX_FILENAME];
	file_name(name, sizeof(name), current);
	int step = 0, ok = check(name, buf, &step), all = 0;
	MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
	if (rank == 0) {
		printf("Restarting from checkpoint named %s\n", current);
	}
	if (!all) {
		if (rank == 0) {
			printf("At least one rank (perhaps all) did not find its checkpoint\n");
		}
		return 3;
	}
	timestep = step;
	return 0;
}

/* create_file opens this rank's file for writing; with --shared-file rank
 * 0 creates and sizes it first. */
static int create_file(const char* file)
{
	if (!shared_file) {
		int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, S_IRUSR | S_IWUSR);
		if (fd < 0) {
			printf("%d: Could not create file %s : %s\n", rank, file, strerror(errno));
		}
		return fd;
	}
	int ok = 1;
	if (rank == 0) {
		int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, S_IRUSR | S_IWUSR);
		if (fd < 0 || ftruncate(fd, (off_t) total_bytes) != 0) {
			printf("%d: Could not create file %s : %s\n", rank, file, strerror(errno));
			ok = 0;
		}
		if (fd >= 0) {
			close(fd);
		}
	}
	MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
	if (!ok) {
		return -1;
	}
	int fd = open(file, O_WRONLY);
	if (fd < 0) {
		printf("%d: Could not open file %s : %s\n", rank, file, strerror(errno));
	}
	return fd;
}

static void work(int iters)
{
	double start = MPI_Wtime();
	switch (kernel) {
	case 0: {
		volatile double x = (double) rank;
		for (int i = 0; i < iters; i++) {
			x = x * 1.0000001 + (double) i;
		}
		break;
	}
	case 1: {
		size_t n = 1 << 30;
		char* a = malloc(n);
		char* b = malloc(n);
		if (a != NULL && b != NULL) {
			memset(a, rank, n);
			for (int i = 0; i < iters; i++) {
				memcpy(b, a, n);
			}
		}
		free(a);
		free(b);
		break;
	}
	default: {
		double in = (double) rank, out;
		for (int i = 0; i < iters; i++) {
			MPI_Allreduce(&in, &out, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
		}
	}
	}
	double secs = MPI_Wtime() - start;
	if (rank == 0) {
		const char* what[] = {"CPU", "memcpy", "Allreduce", "Allreduce"};
		printf("%s cost %d:  %d iters, %f secs, %f secs/iter\n", what[kernel], timestep, iters, secs, iters > 0 ? secs / iters : 0.0);
	}
}

/* write_all writes `count` checkpoints (the first call primes, untimed by
 * the caller) and returns this rank's bandwidth in MB/s. It sets *halt
 * when SCR asks the job to stop. */
static double write_all(char* buf, int count, int* halt)
{
	double start = MPI_Wtime();
	unsigned long long written = 0;
	for (int i = 0; i < count && !*halt; i++) {
		timestep++;
		int flags = SCR_FLAG_NONE;
		char dset[SCR_MAX_FILENAME];
		if (output_every > 0 && timestep % output_every == 0) {
			flags |= SCR_FLAG_OUTPUT;
			snprintf(dset, sizeof(dset), "output.%d", timestep);
		} else {
			flags |= SCR_FLAG_CHECKPOINT;
			snprintf(dset, sizeof(dset), "ckpt.%d", timestep);
		}
		if (flush_every > 0 && timestep % flush_every == 0) {
			flags |= SCR_FLAG_OUTPUT;
		}
		double t0 = MPI_Wtime();
		char name[SCR_MAX_FILENAME], file[SCR_MAX_FILENAME];
		file_name(name, sizeof(name), dset);
		int rc;
		if (use_scr) {
			if ((rc = SCR_Start_output(dset, flags)) != SCR_SUCCESS) {
				fail("SCR_Start_output", rc);
			}
			if ((rc = SCR_Route_file(name, file)) != SCR_SUCCESS) {
				fail("SCR_Route_file", rc);
			}
		} else {
			char dir[SCR_MAX_FILENAME];
			snprintf(dir, sizeof(dir), "%s", name);
			*strrchr(dir, '/') = '\0';
			if (rank == 0 && path != NULL) {
				mkdir(path, 0755);
			}
			if (rank == 0 && mkdir(dir, 0755) != 0 && errno != EEXIST) {
				printf("%d: mkdir failed: %s %d %s\n", rank, dir, errno, strerror(errno));
			}
			MPI_Barrier(MPI_COMM_WORLD);
			snprintf(file, sizeof(file), "%s", name);
		}
		fill(buf, timestep);
		int valid = 0;
		int fd = create_file(file);
		if (fd >= 0) {
			valid = 1;
			if (full_io(fd, buf, file_bytes, my_offset, 1) != 0) {
				printf("%d: Error writing checkpoint %s\n", rank, file);
				valid = 0;
			} else if (use_fsync && fsync(fd) != 0) {
				printf("%d: Error fsync %s\n", rank, file);
				valid = 0;
			}
			if (close(fd) != 0) {
				printf("%d: Error closing %s\n", rank, file);
				valid = 0;
			}
			if (valid) {
				written += file_bytes;
			}
		}
		if (!valid) {
			failures++;
		}
		if (use_scr) {
			if ((rc = SCR_Complete_output(valid)) != SCR_SUCCESS) {
				fail("SCR_Complete_output", rc);
			}
		} else {
			MPI_Barrier(MPI_COMM_WORLD);
		}
		if (rank == 0) {
			double secs = MPI_Wtime() - t0;
			double bytes = (double) total_bytes;
			printf("Completed checkpoint %d:  %f secs, %e bytes, %e bytes/sec\n", timestep, secs, bytes, bytes / secs);
			fflush(stdout);
		}
		/* As SCR's documentation advises after each checkpoint (SCR's own
		 * test_api does not ask). */
		if (use_scr) {
			int stop = 0;
			if ((rc = SCR_Should_exit(&stop)) != SCR_SUCCESS) {
				fail("SCR_Should_exit", rc);
			}
			if (stop) {
				if (rank == 0) {
					printf("Halting after checkpoint %d\n", timestep);
					fflush(stdout);
				}
				*halt = 1;
				break;
			}
		}
		if (seconds > 0 && i < count - 1) {
			if (rank == 0) {
				printf("Sleeping for %d seconds... \n", seconds);
				fflush(stdout);
			}
			sleep((unsigned) seconds);
		}
		if (reduce > 0) {
			work(reduce);
		}
	}
	double secs = MPI_Wtime() - start;
	return secs > 0 ? (double) written / (1024.0 * 1024.0) / secs : 0.0;
}

static void stats(const char* fmt, double x, int agg)
{
	double mn, mx, sum;
	MPI_Reduce(&x, &mn, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
	MPI_Reduce(&x, &mx, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
	MPI_Reduce(&x, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
	if (rank == 0) {
		if (agg) {
			printf(fmt, mn, mx, sum / ranks, sum);
		} else {
			printf(fmt, mn, mx, sum / ranks);
		}
		fflush(stdout);
	}
}

int main(int argc, char* argv[])
{
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &ranks);

	static struct option longs[] = {
		{"size", required_argument, NULL, 's'},
		{"times", required_argument, NULL, 't'},
		{"seconds", required_argument, NULL, 'z'},
		{"reduce", required_argument, NULL, 'w'},
		{"kernel", required_argument, NULL, 'k'},
		{"path", required_argument, NULL, 'p'},
		{"flush", required_argument, NULL, 'f'},
		{"output", required_argument, NULL, 'o'},
		{"config-api", required_argument, NULL, 'a'},
		{"conf-file", required_argument, NULL, 'c'},
		{"current", required_argument, NULL, 'C'},
		{"nofsync", no_argument, NULL, 'S'},
		{"noscr", no_argument, NULL, 'x'},
		{"noscrrestart", no_argument, NULL, 'X'},
		{"shared-file", no_argument, NULL, 'y'},
		{"global-store", required_argument, NULL, 'Y'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int bad = 0, help = 0, opt;
	while ((opt = getopt_long(argc, argv, "s:t:z:w:k:p:f:o:a:c:h", longs, NULL)) != -1) {
		char* end = NULL;
		long v = 0;
		if (strchr("tzwkfo", opt) != NULL) {
			errno = 0;
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || errno != 0 || v < 0 || v > INT_MAX) {
				if (rank == 0) {
					printf("test_api: option -%c %s: want a whole number >= 0\n", opt, optarg);
				}
				bad = 1;
				continue;
			}
		}
		switch (opt) {
		case 's':
			if (parse_size(optarg, &size) != 0) {
				if (rank == 0) {
					printf("test_api: --size=%s: want a byte count such as 512k, 64MB or 1g\n", optarg);
				}
				bad = 1;
			}
			break;
		case 't': times = (int) v; break;
		case 'z': seconds = (int) v; break;
		case 'w': reduce = (int) v; break;
		case 'k':
			kernel = (int) v;
			if (kernel > 3) {
				if (rank == 0) {
					printf("Invalid Kernel Type %d\n", kernel);
				}
				bad = 1;
			}
			break;
		case 'p': path = optarg; break;
		case 'f': flush_every = (int) v; break;
		case 'o': output_every = (int) v; break;
		case 'a':
		case 'c': {
			int b = parse_bool(optarg);
			if (b < 0) {
				if (rank == 0) {
					printf("test_api: %s: want yes/no, true/false, y/n or 1/0\n", optarg);
				}
				bad = 1;
			} else if (opt == 'a') {
				use_config_api = b;
			} else {
				use_conf_file = b;
			}
			break;
		}
		case 'C': current = optarg; break;
		case 'S': use_fsync = 0; break;
		case 'x': use_scr = 0; break;
		case 'X': use_scr_restart = 0; break;
		case 'y': shared_file = 1; break;
		case 'Y': global_store = optarg; break;
		case 'h': help = 1; break;
		default: bad = 1;
		}
	}
	if (optind < argc) {
		if (rank == 0) {
			printf("test_api: unexpected argument %s\n", argv[optind]);
		}
		bad = 1;
	}
	if (bad || help) {
		usage();
		MPI_Finalize();
		return bad ? 2 : 0;
	}

	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = MPI_Wtime();
	if (use_scr) {
		if (!use_conf_file) {
			unsetenv("SCR_CONF_FILE");
		}
		if (use_config_api) {
			SCR_Config("STORE=/dev/shm GROUP=NODE COUNT=1");
			SCR_Config("SCR_COPY_TYPE=FILE");
			SCR_Config("CKPT=0 INTERVAL=1 GROUP=NODE STORE=/dev/shm TYPE=XOR SET_SIZE=16");
			SCR_Config("SCR_DEBUG=1");
		}
		if (global_store != NULL) {
			SCR_Configf("STORE=%s GROUP=WORLD", global_store);
		}
		if (SCR_Init() != SCR_SUCCESS) {
			printf("Failed initializing SCR\n");
			fflush(stdout);
			MPI_Finalize();
			return 1;
		}
		if (current != NULL && use_scr_restart) {
			int rc = SCR_Current(current);
			if (rc != SCR_SUCCESS) {
				fail("SCR_Current", rc);
			}
		}
	}
	double secs = MPI_Wtime() - t0;
	MPI_Barrier(MPI_COMM_WORLD);
	double mn, mx, sum;
	MPI_Reduce(&secs, &mn, 1, MPI_DOUBLE, MPI_MIN, 0, MPI_COMM_WORLD);
	MPI_Reduce(&secs, &mx, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
	MPI_Reduce(&secs, &sum, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
	if (rank == 0) {
		printf("Init: Min %8.6f s\tMax %8.6f s\tAvg %8.6f s\n", mn, mx, sum / ranks);
		fflush(stdout);
	}

	data_bytes = size + (unsigned long long) rank;
	file_bytes = HEADER + data_bytes;
	total_bytes = file_bytes;
	my_offset = 0;
	if (shared_file) {
		uint64_t mine = file_bytes, upto = 0, total = 0;
		MPI_Scan(&mine, &upto, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
		MPI_Allreduce(&mine, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
		my_offset = (off_t) (upto - mine);
		total_bytes = total;
	} else {
		uint64_t mine = file_bytes, total = 0;
		MPI_Allreduce(&mine, &total, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
		total_bytes = total; /* what a checkpoint writes, for the lines */
	}
	char* buf = malloc(file_bytes);
	if (buf == NULL) {
		printf("%d: cannot allocate %llu bytes\n", rank, file_bytes);
		MPI_Abort(MPI_COMM_WORLD, 1);
	}

	int status = 0;
	if (use_scr && use_scr_restart) {
		status = restart_scr(buf);
	} else if (current != NULL) {
		status = restart_direct(buf);
	}
	int all_and, all_or;
	MPI_Allreduce(&timestep, &all_and, 1, MPI_INT, MPI_BAND, MPI_COMM_WORLD);
	MPI_Allreduce(&timestep, &all_or, 1, MPI_INT, MPI_BOR, MPI_COMM_WORLD);
	if (all_and != all_or) {
		printf("%d: Timesteps don't agree: timestep %d\n", rank, timestep);
		status = 3;
	}

	if (status == 0) {
		int halt = 0;
		write_all(buf, 1, &halt); /* priming write */
		if (times > 0 && !halt) {
			double bw = write_all(buf, times, &halt);
			MPI_Barrier(MPI_COMM_WORLD);
			stats("FileIO: Min %7.2f MB/s\tMax %7.2f MB/s\tAvg %7.2f MB/s\tAgg %7.2f MB/s\n", bw, 1);
		}
	}
	free(buf);

	if (use_scr) {
		int rc = SCR_Finalize();
		if (rc != SCR_SUCCESS) {
			fail("SCR_Finalize", rc);
		}
	}
	MPI_Finalize();
	if (status != 0) {
		return status;
	}
	return failures > 0 ? 1 : 0;
}
