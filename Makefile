# avpfs: the two commands are `make demo` (the main job) and `make test` (all tests).
CARGO ?= cargo

.PHONY: all build demo test lint unit fuse-demo man install uninstall

all: build

build:
	scripts/install-deps.sh build
	$(CARGO) build --release --bin avpfs

## The main job: build avpfs and show a share working.
demo: build
	scripts/demo.sh

## Every test: formatting, lints, unit and integration tests (the POSIX
## suite through /dev/fuse, the vhost-user harness), then real guests under
## QEMU (Linux 6.1 single-queue and 6.12 multi-queue; 9P over vsock; live
## migration and the DAX window on QEMU 11.1), then each fuzz target for
## 30 s.
test:
	scripts/install-deps.sh build test packaging guest
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace
	scripts/guest/test-guest.sh
	scripts/guest/test-libvirt.sh
	scripts/guest/test-9p-plumbing.sh
	scripts/guest/test-migration.sh
	scripts/guest/test-dax.sh
	scripts/fuzz.sh 30

## Installing: `make install PREFIX=/usr/local DESTDIR=` builds the release
## binary and the man pages (made from the command-line definition) and
## installs them, the systemd units and example configuration files;
## `make uninstall` (same PREFIX and DESTDIR) removes them.
## AVPFS_BIN and MAN_BUILD_DIR name what to install (the packaging test
## installs its debug build with `make -o build -o man install ...`).
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/avpfs
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
AVPFS_BIN ?= target/release/avpfs
MAN_BUILD_DIR ?= target/man
UNITS_IN := avpfs@.service avpfs-vhost@.service
UNITS := $(UNITS_IN) avpfs-vhost@.socket

man:
	rm -rf $(MAN_BUILD_DIR)
	$(CARGO) run --release --quiet -p avpfs --example mangen -- $(MAN_BUILD_DIR) >/dev/null

install: build man
	install -D -m 0755 $(AVPFS_BIN) $(DESTDIR)$(BINDIR)/avpfs
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DOCDIR)
	for page in $(MAN_BUILD_DIR)/*.1; do \
	  gzip -9 -n -c $$page > $(DESTDIR)$(MANDIR)/man1/$${page##*/}.gz && \
	  chmod 0644 $(DESTDIR)$(MANDIR)/man1/$${page##*/}.gz || exit 1; \
	done
	for unit in $(UNITS_IN); do \
	  sed 's|@BINDIR@|$(BINDIR)|g' dist/systemd/$$unit.in > $(DESTDIR)$(SYSTEMDUNITDIR)/$$unit && \
	  chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$unit || exit 1; \
	done
	install -m 0644 dist/systemd/avpfs-vhost@.socket $(DESTDIR)$(SYSTEMDUNITDIR)/
	install -m 0644 dist/avpfs.toml.example dist/avpfs.env.example docs/operations.md $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/avpfs
	rm -f $(DESTDIR)$(MANDIR)/man1/avpfs.1.gz $(DESTDIR)$(MANDIR)/man1/avpfs-*.1.gz
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(UNITS))
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/,avpfs.toml.example avpfs.env.example operations.md)
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true
