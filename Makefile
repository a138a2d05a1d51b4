# scr-go: `make demo` runs the reference scenario on a local virtual cluster,
# `make test` runs every test (unit and end-to-end). Both install what they need.

GO       ?= go
BIN      := $(CURDIR)/bin
DEB_PKGS := slurmctld slurmd slurm-client munge iputils-ping iproute2 util-linux mount hostname procps openssh-server openssh-client
export GOFLAGS := -buildvcs=false

.PHONY: all deps build test test-unit demo bench clean

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
	rm -rf $(BIN)
