// Package lib holds scr-go's C, Fortran and Python interface: libscr (the
// Go main package under libscr/, built with cgo against an MPI), scr.h and
// scrf.h (include/), libscrf (fortran/), the Python module (python/) and
// the pkg-config and CMake files. It has no Go API: its tests build and
// install the interface with each MPI (make install) and run SCR
// applications in C, C++, Fortran and Python against it, on this machine
// and on the virtual cluster (doc/capi.md).
package lib
