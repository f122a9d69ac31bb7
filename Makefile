# ferry — every target works on a fresh machine with Go installed.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BIN      := bin/ferry

.PHONY: all build test vet demo bench clean

all: build

## build: the static ferry binary, as the image ships it
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ferry

## test: vet and every test with the race detector, against real servers
test: vet
	$(GO) test -race -count=1 ./...

vet:
	$(GO) vet ./...

## demo: ferry's main job on the bundled example, with a demo app (< 30 s)
demo:
	$(GO) run ./examples/demo

## bench: publish and idle-memory benchmarks (figures go in closing notes)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 5x ./sync/
	$(GO) test -run '^$$' -bench IdleRSS -benchtime 1x ./cmd/ferry/

clean:
	rm -rf bin
