#!/usr/bin/env bash
# Builds the guest's initramfs: busybox, the virtio, fuse, virtiofs (and 9p)
# modules of a fetched kernel (fetch-kernel.sh), and an init that mounts the
# share TAG on /mnt, runs the job there and powers the guest off.
#
# Usage: make-initramfs.sh --kernel DIR --job SCRIPT --out FILE [--tag TAG]
#                          [--9p] [--9p-cache MODE] [--shell]
#                          [--bin FILE]... [--file FILE]... [--vsock] [--no-share]
#                          [--fs-options OPTS]
# --bin copies a (static) program into the guest's /bin, --file copies a file
# into the guest's /data; --9p mounts TAG with QEMU's 9p transport instead of
# virtiofs (--9p-cache: the mount's cache= option, default none); --shell
# gives a shell on the console instead of running the job; --vsock also
# loads the guest's vsock (virtio transport) and 9p trans=fd modules;
# --no-share mounts nothing on /mnt (the job mounts what it needs there,
# e.g. with avpfs-9p-mount over vsock); --fs-options gives the virtiofs
# mount options (e.g. dax=always).
# The job runs as root in the guest with the share mounted on /mnt (a failed
# mount prints "AVPFS-MOUNT-FAILED"); its exit status is printed as
# "AVPFS-EXIT <n>" on the console (ttyS0) before the guest powers off.
# Used by run-guest.sh (QEMU started directly) and test-libvirt.sh (libvirt).
set -euo pipefail
kernel="" job="" out="" tag=avpfs fstype=virtiofs ninep_cache=none shell=0 fs_options=""
extra_modules=""
bins=() files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=$2; shift 2 ;;
    --job) job=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --9p) fstype=9p; shift ;;
    --9p-cache) ninep_cache=$2; shift 2 ;;
    --shell) shell=1; shift ;;
    --bin) bins+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --vsock) extra_modules="vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport 9pnet_fd"; shift ;;
    --no-share) fstype=none; shift ;;
    --fs-options) fs_options=$2; shift 2 ;;
    *) echo "make-initramfs: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$kernel" ] && [ -n "$job" ] && [ -n "$out" ] ||
  { echo "make-initramfs: --kernel, --job and --out are required" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,lib/modules,proc,sys,dev,mnt,tmp,data}
cp /bin/busybox "$root/bin/busybox"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci fuse virtiofs netfs fscache 9pnet 9pnet_virtio 9p $extra_modules; do
  f=$(find "$kernel/modules/kernel" -name "$m.ko" -o -name "$m.ko.xz" | head -n1)
  [ -n "$f" ] || continue
  case "$f" in
    *.xz) xz -dc "$f" > "$root/lib/modules/$m.ko" ;;
    *) cp "$f" "$root/lib/modules/$m.ko" ;;
  esac
  echo "$m" >> "$root/lib/modules/order"
done
for b in "${bins[@]}"; do cp "$b" "$root/bin/"; done
for f in "${files[@]}"; do cp "$f" "$root/data/"; done
cp "$job" "$root/job.sh"
chmod +x "$root/job.sh"
cat > "$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
[ -f /lib/modules/order ] && for m in \$(cat /lib/modules/order); do insmod /lib/modules/\$m.ko 2>/dev/null; done
if [ "$fstype" = none ]; then
  true
elif [ "$fstype" = 9p ]; then
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=$ninep_cache $tag /mnt
else
  mount -t virtiofs ${fs_options:+-o $fs_options} $tag /mnt
fi || echo "AVPFS-MOUNT-FAILED"
if [ $shell = 1 ]; then
  echo "avpfs guest: the share is mounted on /mnt; exit the shell to power off"
  cd /mnt
  setsid cttyhack sh
  rc=0
  cd /
else
  # In /mnt, from a shell of its own: this one stays out of the share, so
  # that the job can unmount it.
  (cd /mnt && sh /job.sh)
  rc=\$?
fi
sync
umount /mnt 2>/dev/null
echo "AVPFS-EXIT \$rc"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
