# macdist build, test and benchmark entry points.
#
#   make setup     install the system packages (OpenBLAS, Fashion-MNIST) with apt
#   make build     go build ./... and bin/macdist
#   make test      get what the tests need (g++, libopenblas0 with apt if missing; Prometheus's binaries
#                  unpacked into .cache/test-tools, not installed: no service); vet, gofmt
#                  check, go test ./..., -race on the concurrent packages, kernels/cuda and
#                  collective/nccl on an emulated GPU and NCCL. Every step runs; any red
#                  one makes the target fail (scripts/test.sh)
#   make lint      gofmt and go vet only
#   make bench     kernel GEMM benchmarks, then macdist vs PyTorch on the same models
#   make fixtures  regenerate the PyTorch reference fixtures (needs Debian's python3-torch)
#   make proto     regenerate cluster/controlpb from its .proto (Debian's protoc, Go plugins)
#
# Nothing here needs torch except `fixtures` and the PyTorch half of `bench`.

GO          ?= go
PYTHON      ?= /usr/bin/python3
BIN         := bin/macdist
TEST_TIMEOUT ?= 10m
# Packages that run goroutines of their own get a -race pass. Only those that
# exist are named, so the list can grow before the packages do.
RACE_CANDIDATES := kernels collective cluster data train
RACE_PKGS := $(foreach d,$(RACE_CANDIDATES),$(if $(wildcard $(d)/*.go $(d)/*/*.go),./$(d)/...))

# apt packages the project needs at run time (OpenBLAS, oneDNN and libjpeg-turbo are opened with dlopen;
# without them macdist falls back to gonum, im2col and Go's JPEG decoder, slowly).
APT_PKGS := libopenblas0 libdnnl2 libturbojpeg0 dataset-fashion-mnist
# And those that only `make fixtures` and `make bench` need.
APT_PY_PKGS := python3-torch python3-torchvision python3-numpy

.PHONY: all build test test-cuda-emu setup-test vet fmt-check lint bench bench-kernels bench-compare fixtures setup setup-python proto fuzz clean

all: build

build:
	$(GO) build ./...
	@mkdir -p bin
	$(GO) build -o $(BIN) ./cmd/macdist

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*' -not -path './.cache/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

lint: fmt-check vet

test: setup-test
	GO="$(GO)" TEST_TIMEOUT="$(TEST_TIMEOUT)" RACE_PKGS="$(strip $(RACE_PKGS))" bash scripts/test.sh

# kernels/cuda's tests, the conformance suite included, on an emulated GPU:
# the CUDA kernels compiled for the host behind a fake libcuda and cuBLAS;
# then collective/nccl's, behind a stand-in libnccl.so.2 as well.
test-cuda-emu:
	kernels/cuda/emu/run.sh
	collective/nccl/emu/run.sh

# Each fuzz target in turn, for FUZZTIME; `go test` alone replays the seed
# corpora (f.Add and testdata/fuzz/). A crash fails the target and leaves its
# input in testdata/fuzz/.
FUZZTIME ?= 60s
fuzz:
	GO=$(GO) scripts/fuzz.sh $(FUZZTIME)

# Steps are chosen so the whole target takes a few minutes on 2 cores.
BENCH_MODELS ?= lenet5 resnet20 vit-tiny-cifar
bench: bench-kernels bench-compare

# GEMM with OpenBLAS and with gonum (internal/benchmark), plus whatever Gemm
# benchmarks kernels/ has.
bench-kernels:
	$(GO) test -run '^$$' -bench 'Gemm' -benchtime 20x ./kernels/... ./internal/benchmark/

bench-compare: build
	MODELS="$(BENCH_MODELS)" PYTHON=$(PYTHON) MACDIST=$(BIN) bash bench/compare.sh

# Every generator writes into testdata/fixtures; the safetensors check then
# proves that a file written by Go loads in PyTorch.
fixtures:
	@set -e; for g in testdata/gen/gen_*.py; do \
		[ -e "$$g" ] || continue; \
		echo "== $$g"; $(PYTHON) "$$g"; \
	done
	$(PYTHON) testdata/gen/check_safetensors_torch.py

# Idempotent: apt runs only when a package is missing. As root apt-get runs
# directly; otherwise through sudo when there is one.
define apt_install
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "setup: already installed: $(1)"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "setup: need root or sudo to install:$$missing" >&2; exit 1; fi; \
	echo "setup: installing$$missing"; \
	$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing
endef

setup:
	$(call apt_install,$(APT_PKGS))
	$(GO) mod download

# g++ and libopenblas0 (apt, if missing), and Prometheus's binaries for
# deploy/'s live scrape, downloaded and unpacked, never installed.
setup-test:
	@bash scripts/test-tools.sh

setup-python:
	$(call apt_install,$(APT_PY_PKGS))

# The generated code is committed; this regenerates it after a change to the
# .proto. protoc comes from Debian (protobuf-compiler), the plugins from the
# Go module proxy, at the versions the committed code was made with.
PROTOC_GEN_GO_VERSION      ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
GOBIN_DIR := $(shell $(GO) env GOPATH)/bin
proto:
	@command -v protoc >/dev/null || $(MAKE) --no-print-directory apt-protoc
	GOFLAGS= $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOFLAGS= $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN_DIR):$$PATH" protoc -I cluster/controlpb \
		--go_out=paths=source_relative:cluster/controlpb \
		--go-grpc_out=paths=source_relative:cluster/controlpb \
		cluster/controlpb/control.proto

.PHONY: apt-protoc
apt-protoc:
	$(call apt_install,protobuf-compiler)

clean:
	rm -rf bin
