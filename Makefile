# scr-go: `make demo` runs the reference scenario on a local virtual cluster,
# `make test` runs every test (unit and end-to-end). Both install what they need.

GO       ?= go
BIN      := $(CURDIR)/bin
DEB_PKGS := slurmctld slurmd slurm-client munge iputils-ping iproute2 util-linux mount hostname procps openssh-server openssh-client \
            mpich libmpich-dev openmpi-bin libopenmpi-dev gfortran g++ python3-mpi4py pkg-config cmake
export GOFLAGS := -buildvcs=false

# The C, Fortran and Python interface (libscr) is built against the MPI
# that $(MPICC) wraps, into $(LIBBUILD); `make install` copies it, the
# headers, pkg-config and CMake files, the Python module and the commands
# under $(PREFIX).
MPICC    ?= mpicc
LIBBUILD ?= $(CURDIR)/build/lib
PREFIX   ?= /usr/local

.PHONY: all deps build lib install test test-unit demo bench clean

all: build

# Debian packages for the virtual cluster (idempotent, quiet when all is there).
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(GO) mod download

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

# libscr.so/.a (the C API, cgo over the Go library and MPI) and
# libscrf.so/.a (SCR's Fortran subroutines, C shims over libscr).
lib:
	@command -v $(MPICC) >/dev/null || { echo "make lib: $(MPICC) not found: run make deps, or set MPICC= to your MPI's C compiler wrapper"; exit 1; }
	@mkdir -p $(LIBBUILD)
	CC=$(MPICC) $(GO) build -tags scrmpi -buildmode=c-shared -ldflags=-extldflags=-Wl,-soname,libscr.so -o $(LIBBUILD)/libscr.so ./lib/libscr
	CC=$(MPICC) $(GO) build -tags scrmpi -buildmode=c-archive -o $(LIBBUILD)/libscr.a ./lib/libscr
	@rm -f $(LIBBUILD)/libscr.h
	$(MPICC) -O2 -fPIC -Wall -Ilib/include -c lib/fortran/scrf.c -o $(LIBBUILD)/scrf.o
	$(MPICC) -shared -Wl,-soname,libscrf.so -Wl,-rpath,'$$ORIGIN' -o $(LIBBUILD)/libscrf.so $(LIBBUILD)/scrf.o -L$(LIBBUILD) -lscr
	@rm -f $(LIBBUILD)/libscrf.a && ar rcs $(LIBBUILD)/libscrf.a $(LIBBUILD)/scrf.o

install: build lib
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/lib/cmake/SCR $(DESTDIR)$(PREFIX)/lib/python $(DESTDIR)$(PREFIX)/share/scr/examples
	install -m 755 $(BIN)/* $(DESTDIR)$(PREFIX)/bin/
	install -m 644 lib/include/scr.h lib/include/scrf.h $(DESTDIR)$(PREFIX)/include/
	install -m 755 $(LIBBUILD)/libscr.so $(LIBBUILD)/libscrf.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(LIBBUILD)/libscr.a $(LIBBUILD)/libscrf.a $(DESTDIR)$(PREFIX)/lib/
	for f in pkgconfig/scr.pc pkgconfig/scrf.pc cmake/SCR/SCRConfig.cmake cmake/SCR/SCRConfigVersion.cmake python/scr.py; do \
	  sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PREFIX)/lib|g' -e 's|@MPI@|$(MPICC)|g' \
	    lib/$$(echo $$f | sed 's|cmake/SCR/|cmake/|').in > $(DESTDIR)$(PREFIX)/lib/$$f || exit 1; \
	done
	install -m 644 examples/* $(DESTDIR)$(PREFIX)/share/scr/examples/

# Every test: unit tests, then the end-to-end tests (virtual cluster, real Slurm).
test: deps build
	$(GO) vet ./...
	SCR_E2E=1 SCR_BIN=$(BIN) $(GO) test -count=1 -timeout 30m ./...

# Fast tests only (no root, no cluster).
test-unit:
	$(GO) test ./...

demo: deps build
	SCR_BIN=$(BIN) $(BIN)/scr_demo

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

clean:
	rm -rf $(BIN) build
