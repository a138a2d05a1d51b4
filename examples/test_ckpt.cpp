// test_ckpt.cpp: a C++ MPI program that checkpoints through SCR's C API.
//
//   mpicxx -o test_ckpt_cpp test_ckpt.cpp $(pkg-config --cflags --libs scr)
//   test_ckpt_cpp [steps]
//
// Each rank keeps a vector of doubles that depends on (rank, step). Every
// step is a checkpoint; on start, the newest checkpoint SCR offers is read
// back and checked, and the run goes on from the step after it. Exit
// status 1 when a restart does not verify or an SCR call fails.
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "scr.h"

namespace {

int rank = 0;

std::vector<double> state(int step, std::size_t n)
{
	std::vector<double> v(n);
	for (std::size_t i = 0; i < n; i++) {
		v[i] = rank * 1000.0 + step + static_cast<double>(i) / 7.0;
	}
	return v;
}

std::string file_of(const std::string& ckpt)
{
	std::ostringstream s;
	s << ckpt << "/state_" << rank << ".bin";
	return s.str();
}

bool scr_ok(int rc, const char* call)
{
	if (rc != SCR_SUCCESS) {
		std::fprintf(stderr, "%d: %s failed (%d)\n", rank, call, rc);
	}
	return rc == SCR_SUCCESS;
}

// restart reads the newest good checkpoint; it returns its step (0: none)
// and sets bad when one was offered but did not verify.
int restart(std::size_t n, bool& bad)
{
	int have = 0;
	char name[SCR_MAX_FILENAME];
	if (!scr_ok(SCR_Have_restart(&have, name), "SCR_Have_restart") || !have) {
		return 0;
	}
	scr_ok(SCR_Start_restart(name), "SCR_Start_restart");
	int step = 0;
	std::sscanf(name, "ckpt.%d", &step);
	char path[SCR_MAX_FILENAME];
	bool good = scr_ok(SCR_Route_file(file_of(name).c_str(), path), "SCR_Route_file");
	std::vector<double> got(n);
	if (good) {
		std::ifstream in(path, std::ios::binary);
		in.read(reinterpret_cast<char*>(got.data()), static_cast<std::streamsize>(n * sizeof(double)));
		good = in.gcount() == static_cast<std::streamsize>(n * sizeof(double)) && got == state(step, n);
	}
	if (SCR_Complete_restart(good ? 1 : 0) != SCR_SUCCESS) {
		bad = true;
		return 0;
	}
	if (rank == 0) {
		std::printf("restarted from %s\n", name);
	}
	return step;
}

} // namespace

int main(int argc, char** argv)
{
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	int steps = argc > 1 ? std::atoi(argv[1]) : 3;
	const std::size_t n = 100000;
	if (!scr_ok(SCR_Init(), "SCR_Init")) {
		MPI_Finalize();
		return 1;
	}
	bool bad = false;
	int first = restart(n, bad) + 1;
	int failed = bad ? 1 : 0;
	for (int step = first; step < first + steps; step++) {
		std::ostringstream ckpt;
		ckpt << "ckpt." << step;
		failed += !scr_ok(SCR_Start_output(ckpt.str().c_str(), SCR_FLAG_CHECKPOINT), "SCR_Start_output");
		char path[SCR_MAX_FILENAME];
		int valid = scr_ok(SCR_Route_file(file_of(ckpt.str()).c_str(), path), "SCR_Route_file");
		if (valid) {
			std::vector<double> v = state(step, n);
			std::ofstream out(path, std::ios::binary | std::ios::trunc);
			out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(n * sizeof(double)));
			out.close();
			valid = out.good();
		}
		failed += !scr_ok(SCR_Complete_output(valid), "SCR_Complete_output");
		if (rank == 0) {
			std::printf("checkpoint %s written\n", ckpt.str().c_str());
		}
	}
	failed += !scr_ok(SCR_Finalize(), "SCR_Finalize");
	MPI_Finalize();
	return failed ? 1 : 0;
}
