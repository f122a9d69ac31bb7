# ferry — every target works on a fresh machine with Go installed.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/ferry

# versitygw is a real S3 server; the S3 tests run against it and gofakes3.
# Built once into .cache (about a minute warm, several cold).
VERSITYGW_VERSION := v1.8.0
VERSITYGW := $(CURDIR)/.cache/versitygw-$(VERSITYGW_VERSION)/versitygw

# staticcheck 2026.2.2 (module v0.8.2), the first that builds with Go 1.26.
STATICCHECK_VERSION := v0.8.2
SOAK_DURATION ?= 3m

# promtool and nginx are real checkers the validation tests run as
# --validate-command (Debian packages prometheus and nginx), and chromium the
# real browser the status page is tested in; under make test a test that
# needs one fails when it is missing, instead of skipping.
TEST_TOOLS_PATH := $(PATH):/usr/sbin

.PHONY: all build test tidy vet staticcheck demo bench bench-compare bench-tools soak clean image test-tools

all: build

## build: the static ferry binary, as the image ships it
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ferry

## test: tidy modules, vet and every test with the race detector, against real servers
test: tidy vet staticcheck test-tools $(VERSITYGW)
	PATH='$(TEST_TOOLS_PATH)' FERRY_TEST_REQUIRE_TOOLS=1 FERRY_TEST_VERSITYGW=$(VERSITYGW) $(GO) test -race -count=1 ./...

# test-tools installs promtool, prometheus, nginx, docker-registry
# (docker/distribution, for the OCI source) and chromium (headless, for the
# status page) with apt when they are missing (as root, as CI runs).
# RUNLEVEL=1 keeps the packages from starting their services.
test-tools:
	@export PATH='$(TEST_TOOLS_PATH)'; if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null || ! command -v nginx >/dev/null || ! command -v docker-registry >/dev/null || ! command -v chromium >/dev/null; then \
		echo "installing Debian packages prometheus, nginx, docker-registry and chromium (promtool, prometheus, nginx -t, a registry, a browser) for the validation, rollback, OCI and status page tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends prometheus nginx docker-registry chromium >/dev/null; \
	fi

# tidy fails when go.mod or go.sum would change: every direct dependency
# is required as one, and nothing unused is listed.
tidy:
	$(GO) mod tidy -diff

# The patched copy in third_party is a module of its own, which ./... does
# not reach: it is named by its import path.
THIRD_PARTY := github.com/santhosh-tekuri/jsonschema/v6/...

vet:
	$(GO) vet ./... $(THIRD_PARTY)
	$(GO) vet -tags soak ./cmd/ferry/e2e/

staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./... $(THIRD_PARTY)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags soak ./cmd/ferry/e2e/

## soak: ferry run for minutes against three changing origins (not in make test)
soak:
	FERRY_SOAK_DURATION=$(SOAK_DURATION) $(GO) test -tags soak -run '^TestSoak$$' -count=1 -timeout 30m -v ./cmd/ferry/e2e/

## demo: ferry's main job on the bundled example, with a demo app (< 30 s)
demo:
	$(GO) run ./examples/demo

## bench: publish and idle-memory benchmarks, and a fleet of 'ferry run' polling one
## git origin on loopback (about 3 minutes of its own); figures go in closing notes
bench: $(VERSITYGW) build
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 5x ./sync/
	$(GO) test -run '^$$' -bench IdleRSS -benchtime 1x ./cmd/ferry/e2e/
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 10x ./fetch/http/
	$(GO) test -run '^$$' -bench . -benchtime 5x ./fetch/git/
	FERRY_TEST_VERSITYGW=$(VERSITYGW) $(GO) test -run '^$$' -bench S3 -benchtime 5x -benchmem ./fetch/s3/
	$(GO) run ./tools/benchcompare -ferry $(BIN) -scenarios fleet

## bench-compare: ferry against the git CLI (and rclone for S3), back to back in
## one run, on generated repositories served on loopback (about 8 minutes); a
## quick look: make bench-compare BENCH_ARGS='-runs 1 -scenarios small,poll' (see -h)
BENCH_ARGS ?=
bench-compare: build bench-tools $(VERSITYGW)
	$(GO) run ./tools/benchcompare -ferry $(BIN) -versitygw $(VERSITYGW) $(BENCH_ARGS)

# bench-tools installs rclone, the s3 scenario's comparison, with apt when
# it is missing (as root).
bench-tools:
	@if ! command -v rclone >/dev/null; then \
		echo "installing the Debian package rclone for bench-compare's s3 scenario"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rclone >/dev/null; \
	fi

$(VERSITYGW):
	GOBIN=$(dir $(VERSITYGW)) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

## image: the container image (needs a Docker engine)
IMAGE ?= ghcr.io/ferrysync/ferry:$(VERSION)
image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf bin .cache
