# avpfs: the two commands are `make demo` (the main job) and `make test` (all tests).
CARGO ?= cargo

.PHONY: all build demo test lint unit fuse-demo

all: build

build:
	scripts/install-deps.sh build
	$(CARGO) build --release --bin avpfs

## The main job: build avpfs and show a share working.
demo: build
	scripts/demo.sh

## Every test: formatting, lints, unit and integration tests (the POSIX
## suite through /dev/fuse, the vhost-user harness), then real guests under
## QEMU (Linux 6.1 single-queue and 6.12 multi-queue), then each fuzz
## target for 30 s.
test:
	scripts/install-deps.sh build test guest
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace
	scripts/guest/test-guest.sh
	scripts/fuzz.sh 30
