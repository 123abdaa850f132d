# anyns: the README's two commands are `make run` and `make test`.
GO ?= go
# The Go toolchain anyns is built and tested with: Go 1.27.3, which the go
# command fetches from the module proxy (about 76 MB, once per machine). It
# loads the 1M-record zone about 8% faster than Go 1.26.8 (README,
# "Performance"). GOTOOLCHAIN=local make ... builds with the installed Go.
GOTOOLCHAIN ?= go1.27.3
export GOTOOLCHAIN
PKGS := ./...

.PHONY: run build test vet fmt-check deps bench pgo

# The embedded default: ./zones on 127.0.0.1:5300 and [::1]:5300. anyns
# refuses to run as root unless told; as root (a fresh CI or dev machine) say so.
run:
	$(GO) run ./cmd/anyns serve $$([ "$$(id -u)" = 0 ] && echo --allow-root)

build:
	$(GO) build -o anyns ./cmd/anyns

deps:
	./.ci/deps

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

# The whole suite: unit, integration (real server on 127.0.0.1:0) and
# end-to-end tests (built binary against dig, kdig, BIRD 2), under -race.
# Then, on its own (it saturates both cores for about 100 s), the smoke
# test of the side-by-side benchmark deploy/bench/compare.sh against NSD
# and Knot DNS (TestCompareSmoke; needs root, as on CI).
test: deps fmt-check vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	@if [ "$$(id -u)" = 0 ]; then \
		ANYNS_BENCH_SMOKE=1 $(GO) test -count=1 -timeout 10m -run '^TestCompareSmoke$$' ./cmd/anyns; \
	else echo "TestCompareSmoke skipped: compare.sh needs root"; fi

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# cmd/anyns/default.pgo: the profile the Go compiler optimizes the binary
# with (profile-guided optimization; `go build` picks it up by itself). It
# is the CPU profile of the two hot paths: loading a 1M-record zone
# (BenchmarkLoad1MFlat, miekg/dns's zone parser and the zone builder) and
# answering queries (BenchmarkRespond). Regenerate it after a change to
# either path, and check the load time and CPU per query (README,
# "Performance").
pgo:
	set -e; d=$$(mktemp -d); \
	$(GO) test -run '^$$' -bench 'Load1MFlat$$' -benchtime 3x -cpuprofile $$d/load.prof -o $$d/zone.test ./zone; \
	$(GO) test -run '^$$' -bench 'Respond$$' -benchtime 300ms -cpuprofile $$d/respond.prof -o $$d/server.test ./server; \
	$(GO) tool pprof -proto $$d/load.prof $$d/respond.prof > cmd/anyns/default.pgo; \
	rm -rf $$d
