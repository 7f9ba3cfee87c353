# fleet: cluster-wide systemd init system.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
PKGS    := ./...

.PHONY: all build run test test-short vet fuzz bench chaos cluster clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/fleetd ./cmd/fleetd
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/fleetctl ./cmd/fleetctl

# A whole one-host cluster: embedded etcd, engine, agent, API and (where no
# systemd manager is reachable over D-Bus) a private systemd --user.
run: build
	bin/fleetd --dev

# Every test: unit, property, registry on embedded etcd, and end to end
# against real systemd --user managers. Needs root and systemd installed.
test: vet
	$(GO) test -count=1 -timeout 20m $(PKGS)

# The quick tier: unit, property and registry tests on embedded etcd, without
# root, a real systemd or the end-to-end harness (internal/testenv skips those
# under -short). Under a minute on a warm build cache.
test-short:
	$(GO) test -short -count=1 $(PKGS)

vet:
	$(GO) vet $(PKGS)

# Run each fuzzer for a while; new interesting inputs land in the Go build
# cache (failing ones in testdata/fuzz). FuzzHandler drives the whole API
# handler on an embedded etcd.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./unit
	$(GO) test -run '^$$' -fuzz '^FuzzValidateName$$' -fuzztime $(FUZZTIME) ./unit
	$(GO) test -run '^$$' -fuzz '^FuzzRequirements$$' -fuzztime $(FUZZTIME) ./unit
	$(GO) test -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME) ./api

# The benchmark suite (docs/benchmarks.md): ~10 minutes, needs root and systemd.
bench:
	$(GO) build -o bin/fleet-bench ./cmd/fleet-bench && bin/fleet-bench -o bin/bench-results.md $(BENCHFLAGS)

# The chaos suite (docs/chaos.md): a randomized fault schedule on a 5-host
# cluster against a 3-member etcd, with its invariants checked throughout.
# CHAOS_SEED replays a run (default: the time, printed first),
# CHAOS_DURATION is the fault phase (default 10m), CHAOS_LOGS=DIR keeps
# every fleetd's log. `make test` runs a short fixed-seed version.
CHAOS_DURATION ?= 10m
chaos:
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_DURATION=$(CHAOS_DURATION) CHAOS_LOGS=$(CHAOS_LOGS) \
		$(GO) test -count=1 -v -timeout 90m -run '^TestChaos$$' ./test/chaos

clean:
	rm -rf bin

# A multi-host cluster on this machine, by hand: make cluster N=3
N ?= 3
cluster:
	$(GO) run ./test/cluster/fleet-cluster -n $(N)
