#!/usr/bin/env bash
# Boots a small Linux guest under QEMU (TCG) with a virtio-fs device (or QEMU's
# own 9p server), runs a job script in it, and prints its serial console.
#
# Usage: run-guest.sh --kernel DIR --job SCRIPT [--socket SOCK --tag TAG]
#                     [--9p DIR --tag TAG] [--queues N] [--smp N] [--mem SIZE]
#                     [--bin FILE]... [--file FILE]... [--9p-cache MODE]
#                     [--9p-security MODEL]
#                     [--shell] [--timeout SECONDS]
#                     [--vsock-uds PATH [--vsock-cid CID]]
#                     [--fs-device fs|test-device] [--fs-options OPTS]
#                     [--allow-reboot]
# --bin copies a (static) program into the guest's /bin, --file copies a file
# into the guest's /data (both in the initramfs); --9p-cache is the 9p mount's
# cache= option (default none); --9p-security is QEMU's -fsdev
# security_model= (none, the default, mapped-xattr, mapped-file or
# passthrough).
# --vsock-uds gives the guest a virtio vsock device (QEMU's
# vhost-user-vsock-pci) served by a vhost-device-vsock that this script
# starts and stops (scripts/guest/install-vsock.sh installs it; or name one
# in VHOST_DEVICE_VSOCK): the guest has context id CID (default 3), and its
# connections to the host (CID 2) on port P reach the unix socket PATH_P.
# The guest loads its vsock and 9p trans=fd modules; with neither --socket
# nor --9p nothing is mounted on /mnt and the job mounts what it needs
# (e.g. avpfs-9p-mount, built by build-9p-mount.sh and given with --bin).
# --fs-device test-device gives the guest the virtio-fs device (virtio id 26)
# as QEMU's generic vhost-user-test-device-pci instead of vhost-user-fs-pci
# (the default, "fs"): the back end supplies the whole config space (the tag
# is the daemon's --tag, which must match --tag here) and, from QEMU 11.1,
# the shared-memory window (the DAX work); it has 1 + --queues virtqueues,
# so the daemon must offer exactly --queues request queues. QEMU 11.1 runs
# from scripts/guest/qemu-trixie.sh (QEMU=$(scripts/guest/qemu-trixie.sh)).
# --allow-reboot lets the job reboot the guest (`reboot -f`): QEMU resets
# the machine and boots it again, running the job again (without it a
# reboot ends QEMU).
# The job runs as root in the guest with the share mounted on /mnt; its exit
# status is printed as "AVPFS-EXIT <n>" and becomes this script's exit status.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kernel="" job="" socket="" tag=avpfs ninep="" ninep_cache=none ninep_security=none queues=1 smp=2 mem=1G shell=0 timeout=600 fs_options="" qemu=${QEMU:-qemu-system-x86_64}
vsock_uds="" vsock_cid=3 vsock_pid="" fs_device=fs allow_reboot=0
bins=() files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kernel) kernel=$2; shift 2 ;;
    --job) job=$2; shift 2 ;;
    --socket) socket=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --9p) ninep=$2; shift 2 ;;
    --queues) queues=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --bin) bins+=("$2"); shift 2 ;;
    --file) files+=("$2"); shift 2 ;;
    --9p-cache) ninep_cache=$2; shift 2 ;;
    --9p-security) ninep_security=$2; shift 2 ;;
    --shell) shell=1; shift ;;
    --timeout) timeout=$2; shift 2 ;;
    --vsock-uds) vsock_uds=$2; shift 2 ;;
    --vsock-cid) vsock_cid=$2; shift 2 ;;
    --fs-device) fs_device=$2; shift 2 ;;
    --fs-options) fs_options=$2; shift 2 ;;
    --allow-reboot) allow_reboot=1; shift ;;
    *) echo "run-guest: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$kernel" ] && [ -n "$job" ] || { echo "run-guest: --kernel and --job are required" >&2; exit 2; }
case "$fs_device" in
  fs|test-device) ;;
  *) echo "run-guest: --fs-device is fs or test-device, not $fs_device" >&2; exit 2 ;;
esac

work=$(mktemp -d)
cleanup() {
  if [ -n "$vsock_pid" ]; then kill "$vsock_pid" 2>/dev/null || true; wait "$vsock_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
initrd_args=(--kernel "$kernel" --job "$job" --tag "$tag" --out "$work/initrd.gz")
[ -z "$ninep" ] || initrd_args+=(--9p --9p-cache "$ninep_cache")
[ -z "$vsock_uds" ] || initrd_args+=(--vsock)
[ -z "$vsock_uds" ] || [ -n "$ninep" ] || [ -n "$socket" ] || initrd_args+=(--no-share)
[ $shell = 0 ] || initrd_args+=(--shell)
[ -z "$fs_options" ] || initrd_args+=(--fs-options "$fs_options")
for b in "${bins[@]}"; do initrd_args+=(--bin "$b"); done
for f in "${files[@]}"; do initrd_args+=(--file "$f"); done
"$here/make-initramfs.sh" "${initrd_args[@]}"

args=(-accel tcg -nic none -m "$mem" -smp "$smp" -nographic
      -kernel "$kernel/vmlinuz" -initrd "$work/initrd.gz"
      -append "console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable"
      -object "memory-backend-memfd,id=mem,size=$mem,share=on" -numa node,memdev=mem)
[ $allow_reboot = 1 ] || args+=(-no-reboot)
if [ -n "$ninep" ]; then
  args+=(-fsdev "local,id=f0,path=$ninep,security_model=$ninep_security" -device "virtio-9p-pci,fsdev=f0,mount_tag=$tag")
elif [ -n "$socket" ] || [ -z "$vsock_uds" ]; then
  [ -n "$socket" ] || { echo "run-guest: --socket, --9p or --vsock-uds is required" >&2; exit 2; }
  if [ "$fs_device" = test-device ]; then
    # config_size: struct virtio_fs_config, tag[36] and num_request_queues.
    args+=(-chardev "socket,id=c0,path=$socket"
           -device "vhost-user-test-device-pci,chardev=c0,virtio-id=26,num_vqs=$((queues + 1)),config_size=40,vq_size=1024")
  else
    args+=(-chardev "socket,id=c0,path=$socket" -device "vhost-user-fs-pci,chardev=c0,tag=$tag,queue-size=1024,num-request-queues=$queues")
  fi
fi
if [ -n "$vsock_uds" ]; then
  vsock_bin=${VHOST_DEVICE_VSOCK:-$("$here/install-vsock.sh")}
  [ ! -S "$vsock_uds" ] || rm -f "$vsock_uds"
  "$vsock_bin" --guest-cid "$vsock_cid" --socket "$work/vsock.sock" --uds-path "$vsock_uds" \
    2> "$work/vsock.log" &
  vsock_pid=$!
  for _ in $(seq 200); do
    if [ -S "$work/vsock.sock" ] || ! kill -0 "$vsock_pid" 2>/dev/null; then break; fi
    sleep 0.05
  done
  [ -S "$work/vsock.sock" ] || { echo "run-guest: vhost-device-vsock did not start:" >&2; cat "$work/vsock.log" >&2; exit 1; }
  args+=(-chardev "socket,id=c9,path=$work/vsock.sock" -device "vhost-user-vsock-pci,chardev=c9")
fi
if [ $shell = 1 ] && [ -z "$vsock_uds" ]; then
  exec "$qemu" "${args[@]}"
elif [ $shell = 1 ]; then
  "$qemu" "${args[@]}"
  exit
fi
set +e
# Line-buffered, so that whoever reads our output sees each console line as
# the guest prints it (the benchmark samples the daemon's CPU time at them).
timeout "$timeout" "$qemu" "${args[@]}" < /dev/null | tee "$work/console" | stdbuf -oL tr -d '\r'
set -e
rc=$(sed -n 's/.*AVPFS-EXIT \([0-9]*\).*/\1/p' "$work/console" | tail -n1)
[ -n "$rc" ] || { echo "run-guest: the guest did not finish (timeout or crash)" >&2; exit 124; }
exit "$rc"
