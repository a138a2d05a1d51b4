/* 2 ranks: MPI_Init, 50 MPI_Allreduce, MPI_Finalize (loop.sh). -DSKEW: rank 1
 * reaches MPI_Finalize up to 100 ms later; -DLINK_SCR: linked with libscr,
 * which is loaded but never called for SCR. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#ifdef LINK_SCR
#include "scr.h"
#endif

int main(int argc, char** argv)
{
	MPI_Init(&argc, &argv);
	int rank, x = 1, y;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	for (int i = 0; i < 50; i++) {
		MPI_Allreduce(&x, &y, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	}
#ifdef SKEW
	srand((unsigned) time(NULL) ^ (unsigned) getpid());
	if (rank == 1) {
		usleep((useconds_t) (rand() % 100000));
	}
#endif
#ifdef LINK_SCR
	if (argc > 5) { /* never: keeps the reference to libscr */
		printf("%s\n", SCR_Get_version());
	}
#endif
	if (rank == 0) {
		printf("ok\n");
	}
	MPI_Finalize();
	return 0;
}
