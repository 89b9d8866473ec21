#!/usr/bin/env bash
# avpfs as libvirt's virtiofsd: defines and starts a guest through libvirt
# (Debian's libvirtd, started here if it is not running; QEMU with TCG,
# domain type 'qemu'; direct kernel boot of the 6.1 guest with the
# make-initramfs.sh initramfs) with two virtio-fs <filesystem>s:
# - tag avpfs: <binary path='target/debug/avpfs'> with the cache, sandbox,
#   xattr, lock and thread-pool settings libvirt turns into virtiofsd
#   arguments; the share's path has a comma, which libvirt escapes;
# - tag avpfs-policy: the binary is a wrapper that adds avpfs's own
#   --policy (libvirt passes no extra arguments), hiding one subtree and
#   making another read-only;
# - tag avpfs-default: no <binary> at all: libvirt takes the first
#   vhost-user "fs" descriptor, and this script puts one for avpfs
#   (/etc/qemu/vhost-user/40-avpfs-libvirt-test.json, before QEMU's
#   50-qemu-virtiofsd.json) for the length of the run.
# libvirt starts avpfs itself with the arguments it gives virtiofsd; the
# guest reads a host file, writes files the host checks, and tries the
# policy. The command lines libvirt used are printed (from its domain log).
#
# Usage: test-libvirt.sh
# Prints "libvirt: N passed, M failed" at the end and exits non-zero on a
# failure; skipped (exit 0, "libvirt: skipped: ...") only where libvirtd
# cannot run or its QEMU driver has no virtiofs. Cleans up after itself:
# the domain is destroyed and undefined, and the libvirtd and virtlogd this
# script started are stopped. The domain's libvirt logs of the last run stay
# in /var/log/libvirt/qemu/avpfs-libvirt-test*.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
dom=avpfs-libvirt-test
virsh=(virsh -q -c qemu:///system)
logdir=/var/log/libvirt/qemu

scripts/install-deps.sh libvirt
cargo build -q --bin avpfs
kdir=target/guest/kernel-stable
scripts/guest/fetch-kernel.sh stable "$kdir"

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "libvirt test ok: $*"; }
fail() { failed=$((failed + 1)); echo "libvirt test FAILED: $*"; }
# (No `cmd | grep -q` here: with pipefail, grep leaving early fails cmd.)
console_has() { grep -q -- "$1" "$work/console.txt"; }
console_value() { sed -n "s/.*$1 //p" "$work/console.txt" | tail -n1; }

libvirtd_pid="" virtlogd_pid="" defined=0 kvm_was="" descriptor="" made_dirs=""
work=$(mktemp -d /tmp/avpfs-libvirt.XXXXXX)
# QEMU runs as libvirt-qemu and opens the kernel and initramfs here.
chmod 755 "$work"
cleanup() {
  if [ $defined = 1 ]; then
    "${virsh[@]}" destroy "$dom" > /dev/null 2>&1 || true
    "${virsh[@]}" undefine "$dom" > /dev/null 2>&1 || true
  fi
  if [ -n "$libvirtd_pid" ]; then kill "$libvirtd_pid" 2> /dev/null || true; wait "$libvirtd_pid" 2> /dev/null || true; fi
  if [ -n "$virtlogd_pid" ]; then kill "$virtlogd_pid" 2> /dev/null || true; wait "$virtlogd_pid" 2> /dev/null || true; fi
  [ -z "$descriptor" ] || rm -f "$descriptor"
  for d in $made_dirs; do rmdir "$d" 2> /dev/null || true; done
  if [ -n "$kvm_was" ]; then chown "${kvm_was% *}" /dev/kvm; chmod "${kvm_was#* }" /dev/kvm; fi
  rm -rf "$work"
}
trap cleanup EXIT
skip() {
  echo "libvirt: skipped: $*"
  exit 0
}

# What the full libvirt-daemon-system package would have set up: the user
# QEMU runs as (user libvirt-qemu in groups kvm and libvirt-qemu, the
# group libvirt's QEMU driver asks for) and the run and log directories.
getent group kvm > /dev/null || groupadd -r kvm
getent group libvirt-qemu > /dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu > /dev/null ||
  useradd -r -g kvm -G libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
[[ " $(id -nG libvirt-qemu) " == *" libvirt-qemu "* ]] || usermod -aG libvirt-qemu libvirt-qemu
mkdir -p /var/log/libvirt/qemu /run/libvirt
# And what udev would have done: /dev/kvm for the kvm group. Without it,
# /dev/kvm is root's alone (0600), QEMU probed by root finds KVM that
# libvirt-qemu may not use, and libvirt 9.0 takes its cached QEMU
# capabilities for stale and probes QEMU again (4 s) at every look-up:
# `virsh define` took 32 s instead of 0.01 s. The guest runs under TCG all
# the same (domain type 'qemu'); the device's owner and mode are put back.
if [ -c /dev/kvm ]; then
  case "$(stat -c '%U:%G %a' /dev/kvm)" in
    *:kvm\ 66?) ;;
    *) kvm_was=$(stat -c '%U:%G %a' /dev/kvm); chgrp kvm /dev/kvm; chmod g+rw /dev/kvm ;;
  esac
fi

# libvirtd (and virtlogd, which keeps the domain's and the daemons' logs),
# unless they run already; only what is started here is stopped at the end.
if ! { [ -f /run/virtlogd.pid ] && kill -0 "$(cat /run/virtlogd.pid)" 2> /dev/null; }; then
  virtlogd > "$work/virtlogd.log" 2>&1 &
  virtlogd_pid=$!
fi
if ! "${virsh[@]}" uri > /dev/null 2>&1; then
  libvirtd > "$work/libvirtd.log" 2>&1 &
  libvirtd_pid=$!
  for _ in $(seq 300); do
    "${virsh[@]}" uri > /dev/null 2>&1 && break
    kill -0 "$libvirtd_pid" 2> /dev/null || break
    sleep 0.1
  done
fi
if ! "${virsh[@]}" uri > /dev/null 2>&1; then
  echo "libvirtd's last words:"; { grep -i error "$work/libvirtd.log" || true; } | tail -5 | sed 's/^/    /'
  skip "libvirtd does not run on this machine"
fi
"${virsh[@]}" domcapabilities --virttype qemu > "$work/domcapabilities.xml" 2>&1 || true
grep -q '<value>virtiofs</value>' "$work/domcapabilities.xml" ||
  skip "libvirt's QEMU driver lists no virtiofs filesystem driver ($(grep -m1 -i error "$work/domcapabilities.xml" || echo domcapabilities))"
echo "libvirt: $(libvirtd --version), $(qemu-system-x86_64 --version | sed -n 1p)"

# A domain left by a run that was killed, and its logs.
if "${virsh[@]}" dominfo "$dom" > /dev/null 2>&1; then
  "${virsh[@]}" destroy "$dom" > /dev/null 2>&1 || true
  "${virsh[@]}" undefine "$dom" > /dev/null
fi
rm -f "$logdir/$dom.log" "$logdir/$dom"-fs*-virtiofsd.log

# The shares. The first one's name has a comma (libvirt writes it doubled
# in virtiofsd's -o source=).
share="$work/share,one" pshare=$work/policy-share dshare=$work/default-share
mkdir -p "$share" "$pshare/secret" "$pshare/firmware" "$dshare"
token="host token $RANDOM$RANDOM"
echo "$token" > "$share/from-host.txt"
echo "do not show" > "$pshare/secret/key"
echo "firmware v1" > "$pshare/firmware/image"
cat > "$work/policy.toml" << 'POLICY'
[paths]
hidden = ["secret"]
readonly = ["firmware"]
POLICY
target/debug/avpfs check-config "$work/policy.toml" > /dev/null
# libvirt runs <binary> with its own arguments only: avpfs's own flags go
# in a wrapper.
cat > "$work/avpfs-policy" << WRAPPER
#!/bin/sh
exec $repo/target/debug/avpfs --policy $work/policy.toml "\$@"
WRAPPER
chmod 755 "$work/avpfs-policy"
# avpfs as the virtio-fs daemon of every <filesystem> that names none.
for d in /etc/qemu /etc/qemu/vhost-user; do [ -d $d ] || { mkdir $d; made_dirs="$d $made_dirs"; }; done
descriptor=/etc/qemu/vhost-user/40-avpfs-libvirt-test.json
cat > "$descriptor" << JSON
{
  "description": "avpfs (test-libvirt.sh)",
  "type": "fs",
  "binary": "$repo/target/debug/avpfs"
}
JSON
echo "default share" > "$dshare/default.txt"

cp "$kdir/vmlinuz" "$work/vmlinuz"
scripts/guest/make-initramfs.sh --kernel "$kdir" --job scripts/guest/jobs/libvirt.sh --tag avpfs --out "$work/initrd.gz"
cat > "$work/domain.xml" << DOMAIN
<domain type='qemu'>
  <name>$dom</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <memoryBacking>
    <source type='memfd'/>
    <access mode='shared'/>
  </memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$work/vmlinuz</kernel>
    <initrd>$work/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet loglevel=3 panic=-1 tsc=reliable</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs' queue='1024'/>
      <binary path='$repo/target/debug/avpfs' xattr='on'>
        <cache mode='none'/>
        <sandbox mode='namespace'/>
        <lock posix='on' flock='on'/>
        <thread_pool size='2'/>
      </binary>
      <source dir='$share'/>
      <target dir='avpfs'/>
    </filesystem>
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs' queue='1024'/>
      <binary path='$work/avpfs-policy'>
        <sandbox mode='chroot'/>
      </binary>
      <source dir='$pshare'/>
      <target dir='avpfs-policy'/>
    </filesystem>
    <filesystem type='mount' accessmode='passthrough'>
      <driver type='virtiofs' queue='1024'/>
      <source dir='$dshare'/>
      <target dir='avpfs-default'/>
    </filesystem>
    <serial type='file'>
      <source path='$work/console.log'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
DOMAIN

"${virsh[@]}" define "$work/domain.xml" > /dev/null
defined=1
t0=$(date +%s)
started=1
"${virsh[@]}" start "$dom" > "$work/start.log" 2>&1 || started=0
state=""
if [ $started = 1 ]; then
  for _ in $(seq 1800); do
    state=$("${virsh[@]}" domstate "$dom" 2> /dev/null || true)
    [ "$state" = "shut off" ] && break
    sleep 0.1
  done
fi
elapsed=$(($(date +%s) - t0))
touch "$work/console.log"
tr -d '\r' < "$work/console.log" > "$work/console.txt"

# 1. libvirt started avpfs for each filesystem, and avpfs took its arguments.
mapfile -t cmdlines < <(grep -A1 'Starting external device: virtiofsd' "$logdir/$dom.log" 2> /dev/null | grep -e '--fd=' || true)
for c in "${cmdlines[@]}"; do echo "libvirt started: $c"; done
if [ ${#cmdlines[@]} = 3 ] && [[ "${cmdlines[0]}" == "$repo/target/debug/avpfs --fd="* ]] &&
   [[ "${cmdlines[1]}" == "$work/avpfs-policy --fd="* ]] && [[ "${cmdlines[2]}" == "$repo/target/debug/avpfs --fd="* ]]; then
  pass "libvirt started avpfs as the virtiofs daemon of each filesystem (<binary>, a --policy wrapper, a descriptor)"
else fail "libvirt did not start avpfs for all three filesystems (${#cmdlines[@]} command lines in $logdir/$dom.log)"; fi
if [ $started = 1 ]; then pass "avpfs accepted libvirt's arguments: the domain started"
else fail "the domain did not start: $(tr '\n' ' ' < "$work/start.log")"; fi
if [ "$state" = "shut off" ] && console_has "AVPFS-EXIT 0"; then
  pass "the guest ran its job and powered off; libvirt shut the domain off ($elapsed s)"
else fail "the guest did not finish (state '$state' after $elapsed s)"; fi

# 2. The share, used by the guest (not looked at if the domain never ran).
if [ $started = 1 ]; then
  if [[ "$(console_value AVPFS-LV-MOUNT)" == "avpfs /mnt virtiofs "* ]]; then pass "the guest mounted the tag avpfs (virtiofs)"
  else fail "the guest did not mount the share"; fi
  if [ "$(console_value AVPFS-LV-READ)" = "$token" ]; then pass "the guest read the host's file"
  else fail "the guest read '$(console_value AVPFS-LV-READ)', not the host's '$token'"; fi
  guest_sum=$(console_value AVPFS-LV-SUM)
  host_sum=$(md5sum "$share/guest.bin" 2> /dev/null | cut -d' ' -f1 || true)
  if grep -q "written by the guest" "$share/from-guest.txt" 2> /dev/null && [ -n "$guest_sum" ] &&
     [ "$host_sum" = "$guest_sum" ] && [ "$(cat "$share/dir/sub/file" 2> /dev/null)" = nested ]; then
    pass "the host sees the guest's files (1 MiB checksum $host_sum, a new directory tree)"
  else fail "the host does not see the guest's writes (guest sum '$guest_sum', host '$host_sum')"; fi

  # 3. avpfs's own policy through the wrapper.
  if console_has "AVPFS-LV-POLICY-MOUNT ok"; then pass "the guest mounted the tag avpfs-policy"
  else fail "the guest did not mount the policy share"; fi
  listing=$(console_value AVPFS-LV-POLICY-LIST | sed 's/ *$//')
  if console_has "AVPFS-LV-HIDDEN not-found" && [[ " $listing " != *" secret "* ]] && [[ " $listing " == *" firmware "* ]]; then
    pass "policy: the hidden subtree is neither listed nor readable (listing: $listing)"
  else fail "policy: hidden subtree seen (listing '$listing', $(console_value AVPFS-LV-HIDDEN))"; fi
  if [[ "$(console_value AVPFS-LV-READONLY)" == *"Read-only file system"* ]] && [ ! -e "$pshare/firmware/new" ] &&
     [ "$(console_value AVPFS-LV-POLICY-FIRMWARE)" = "firmware v1" ]; then
    pass "policy: the read-only subtree is read but not written (EROFS)"
  else fail "policy: read-only subtree: '$(console_value AVPFS-LV-READONLY)'"; fi
  if console_has "AVPFS-LV-POLICY-WRITE ok" && [ "$(cat "$pshare/notes.txt" 2> /dev/null)" = "from the guest" ]; then
    pass "policy: the rest of the share is writable"
  else fail "policy: the guest could not write outside the read-only subtree"; fi

  # 4. The filesystem without <binary>.
  if [ "$(console_value AVPFS-LV-DEFAULT-READ)" = "default share" ] &&
     [ "$(cat "$dshare/from-guest.txt" 2> /dev/null)" = "default from the guest" ]; then
    pass "a <filesystem> without <binary> is served by avpfs through the vhost-user descriptor"
  else fail "the filesystem without <binary>: read '$(console_value AVPFS-LV-DEFAULT-READ)'"; fi
fi

# 5. avpfs ends with the domain.
for _ in $(seq 50); do pgrep -f -- "--fd=.*$work" > /dev/null || break; sleep 0.1; done
if ! pgrep -f -- "--fd=.*$work" > /dev/null; then pass "no avpfs of this domain is left running"
else fail "avpfs still runs after the domain stopped: $(pgrep -af -- "--fd=.*$work" | tr '\n' ' ')"; fi

if [ $failed != 0 ]; then
  echo "guest console (last lines):"
  if [ -s "$work/console.txt" ]; then tail -15 "$work/console.txt" | sed 's/^/    /'; else echo "    (nothing)"; fi
  for f in "$logdir/$dom"-fs*-virtiofsd.log; do
    if [ -f "$f" ]; then echo "$f (last lines):"; tail -5 "$f" | sed 's/^/    /'; fi
  done
fi
echo "libvirt: $passed passed, $failed failed"
[ "$failed" = 0 ]
