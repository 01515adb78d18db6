# A3S Box front door. Every target is idempotent.
SHARE   := target/share/a3s-box
ROOTFS  := $(SHARE)/rootfs-busybox
CARGO   ?= cargo
BIN     := target/release/a3s-box

.PHONY: setup deps kernel initramfs rootfs release test lint demo bench clean-assets

## setup: install packages, build the guest kernel (cached per machine), the
## initramfs with guest-init, the demo root filesystem and the release binaries.
setup: deps kernel initramfs rootfs release

deps:
	scripts/install-deps.sh

kernel: deps
	scripts/build-kernel.sh $(SHARE)

initramfs: deps
	scripts/build-initramfs.sh $(SHARE)

rootfs: deps
	scripts/build-rootfs.sh $(ROOTFS)

release:
	$(CARGO) build --release --workspace --exclude a3s-box-guest-init

## test: everything the suite needs, then the whole suite (unit + VM tests).
test: deps kernel initramfs rootfs
	$(CARGO) build --workspace --exclude a3s-box-guest-init
	$(CARGO) test --workspace -- --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## demo: boot a box from the busybox root filesystem and run a command, offline.
demo: setup
	$(BIN) info
	$(BIN) run --rm --rootfs $(ROOTFS) -- sh -c 'echo "hello from a VM: kernel $$(uname -r), host $$(hostname)"; cat /etc/issue'

bench: setup
	scripts/install-deps.sh --bench
	bench/boot.sh
	bench/exec.sh
	bench/exec-throughput.sh
	bench/storage.sh
