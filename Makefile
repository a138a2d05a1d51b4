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

.PHONY: all deps deps-flux build lib install test test-unit demo bench clean

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

# Flux (flux-core $(FLUX_VERSION)) for the Flux virtual cluster. Debian 12 has no Flux
# package, so this builds a flux-core source that is already on the machine (never fetched
# here): FLUX_SRC is a git directory or mirror holding tag v$(FLUX_VERSION), or an unpacked
# source tree. The source is checked out into FLUX_BUILD (outside the project) and installed
# into FLUX_PREFIX, where the tests look for it. Idempotent; ~10 min on 2 cores.
# Why the sparse checkout (git still warns "invalid object" for the file it
# leaves out: harmless, kept in FLUX_BUILD.git.log), Lua 5.3 and the clean
# PATH: doc/vcluster.md, "Flux mode".
FLUX_VERSION  := 0.88.0
FLUX_PREFIX   ?= /opt/flux
FLUX_BUILD    ?= /var/tmp/scr-flux-core-$(FLUX_VERSION)
FLUX_SRC      ?=
FLUX_DEB_PKGS := autoconf automake libtool make gcc g++ pkg-config libzmq3-dev libjansson-dev \
  liblz4-dev libarchive-dev libhwloc-dev libsqlite3-dev uuid-dev libsodium-dev libmunge-dev \
  libcurl4-openssl-dev libsystemd-dev libncurses-dev python3-dev python3-cffi python3-yaml \
  python3-ply python3-jsonschema lua5.3 liblua5.3-dev lua-posix aspell jq git

deps-flux:
	@if $(FLUX_PREFIX)/bin/flux version 2>/dev/null | grep -q '^commands:.*$(FLUX_VERSION)'; then \
	  echo "deps-flux: flux-core $(FLUX_VERSION) is installed in $(FLUX_PREFIX)"; exit 0; fi; \
	if [ -z "$(FLUX_SRC)" ] || [ ! -e "$(FLUX_SRC)" ]; then \
	  echo "deps-flux: no flux-core source: set FLUX_SRC to a git mirror of flux-core (with tag v$(FLUX_VERSION)) or to a source tree" >&2; exit 1; fi; \
	set -e; missing=""; for p in $(FLUX_DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; \
	if [ -f "$(FLUX_SRC)/configure.ac" ]; then src="$(FLUX_SRC)"; else \
	  src="$(FLUX_BUILD)"; \
	  if [ ! -f "$$src/configure.ac" ]; then \
	    rm -rf "$$src"; git clone -q --no-checkout --shared "$(FLUX_SRC)" "$$src"; \
	    git -C "$$src" sparse-checkout set --no-cone '/*' '!/t/resource/resource.eventlog.thing1' 2>"$$src.git.log" \
	      && git -C "$$src" -c advice.detachedHead=false checkout -q -f v$(FLUX_VERSION) 2>>"$$src.git.log" \
	      || { cat "$$src.git.log" >&2; exit 1; }; fi; fi; \
	echo "deps-flux: building flux-core $(FLUX_VERSION) in $$src, installing to $(FLUX_PREFIX)"; \
	cd "$$src" && env -i HOME="$$HOME" LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin FLUX_VERSION=$(FLUX_VERSION) \
	  sh -ec './autogen.sh >autogen.log 2>&1; \
	    ./configure --prefix=$(FLUX_PREFIX) --disable-docs PYTHON=/usr/bin/python3 LUA=/usr/bin/lua5.3 >configure.log 2>&1; \
	    make -j$$(nproc) >make.log 2>&1; make install >install.log 2>&1' \
	  || { echo "deps-flux: build failed; logs: $$src/{autogen,configure,make,install}.log" >&2; exit 1; }; \
	$(FLUX_PREFIX)/bin/flux version

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

# Every test: unit tests, then the end-to-end tests (virtual cluster, real
# Slurm; real Flux when flux-core is installed: make deps-flux). Whether the
# Flux tests run, and why not, is printed before and after the run.
FLUX_PROGRAM = $(firstword $(wildcard $(FLUX_PREFIX)/bin/flux) $(shell command -v flux 2>/dev/null))
# The tests look in SCR_FLUX_PREFIX when it is set, else on PATH, else in /opt/flux: point them
# at FLUX_PREFIX unless the flux found is the one on PATH, so they run exactly when this says so.
FLUX_ENV     = $(if $(and $(FLUX_PROGRAM),$(if $(wildcard $(FLUX_PREFIX)/bin/flux),,x)),,SCR_FLUX_PREFIX=$(FLUX_PREFIX))
FLUX_NOTICE  = if [ -n "$(FLUX_PROGRAM)" ]; then \
	  echo "=== Flux end-to-end tests: RUN, with $(FLUX_PROGRAM) ($$($(FLUX_PROGRAM) version 2>/dev/null | sed -n 's/^commands:[[:space:]]*//p'))"; \
	else \
	  echo "=================================================================================="; \
	  echo "=== Flux end-to-end tests: SKIPPED. Reason: flux-core is not installed"; \
	  echo "=== (no $(FLUX_PREFIX)/bin/flux and no flux on PATH). Debian 12 has no Flux package:"; \
	  echo "=== build it from a flux-core source on this machine with"; \
	  echo "===     make deps-flux FLUX_SRC=<flux-core git mirror or source tree>"; \
	  echo "=================================================================================="; \
	fi

test: deps build
	$(GO) vet ./...
	@$(FLUX_NOTICE)
	@rc=0; SCR_E2E=1 SCR_BIN=$(BIN) $(FLUX_ENV) $(GO) test -count=1 -timeout 30m ./... || rc=$$?; \
	$(FLUX_NOTICE); exit $$rc

# Fast tests only (no root, no cluster).
test-unit:
	$(GO) test ./...

# make demo RM=flux: the same scenario on a Flux system instance (make deps-flux).
# RM has make's built-in default ("rm -f"), which ?= does not replace:
# only an RM given on the command line or in the environment counts.
DEMO_RM := $(if $(filter default undefined,$(origin RM)),slurm,$(RM))
demo: deps build
	SCR_BIN=$(BIN) $(FLUX_ENV) $(BIN)/scr_demo --rm $(DEMO_RM)

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

clean:
	rm -rf $(BIN) build
