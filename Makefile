# anyns: the README's two commands are `make run` and `make test`.
GO ?= go
PKGS := ./...

.PHONY: run build test vet fmt-check deps bench

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
test: deps fmt-check vet
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
