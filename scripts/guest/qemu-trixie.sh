#!/usr/bin/env bash
# Makes QEMU 11.1 (Debian trixie-backports) runnable on this Debian 12 host
# and prints the path of a wrapper that runs it, so that
#   QEMU=$(scripts/guest/qemu-trixie.sh) scripts/guest/run-guest.sh ...
# boots a guest on it. Needs root.
#
# The first run builds a Debian 13 (trixie) chroot with `debootstrap
# --variant=minbase`, from the Debian mirror the host's apt already uses (the
# only one reachable), adds trixie-backports and installs qemu-system-x86 from
# it with the firmware its machines load (seabios, ipxe-qemu,
# qemu-system-data). Later runs find the chroot and only print the path.
# The chroot is cached in AVPFS_TRIXIE_DIR (default ~/.cache/avpfs-trixie);
# AVPFS_TRIXIE_MIRROR overrides the mirror. Output of the setup goes to
# DIR/setup.log (its tail to stderr on failure); stdout is only the path.
#
# The wrapper (DIR/bin/qemu-system-x86_64) enters a private mount namespace
# of its own (`unshare --mount`), bind-mounts into the chroot the host's
# /dev, /proc, /sys, /run and /tmp, and the host's top-level directories
# that the caller's working directory and the arguments name (e.g. /work
# for `-kernel /work/k`, /srv for `path=/srv/s.sock`) unless the chroot has
# a system directory of that name (/usr, /etc, /var, ...), then execs QEMU in
# the chroot, in the caller's directory, with the caller's arguments. Every
# exec keeps the process id, so signals reach QEMU; nothing stays mounted
# after it exits.

# DIR/qemu-version holds `qemu-system-x86_64 --version`'s first line and the
# package version.
#
# Usage: qemu-trixie.sh [--version]   (--version: print the recorded version)
set -euo pipefail
dir=${AVPFS_TRIXIE_DIR:-$HOME/.cache/avpfs-trixie}
root=$dir/root wrapper=$dir/bin/qemu-system-x86_64 stamp=$dir/qemu-version

# The wrapper; written again whenever this script's version of it changes.
wrapper_text() {
  sed "s|@ROOT@|'$root'|" <<'WRAP'
#!/bin/bash
# Runs QEMU from the Debian 13 chroot made by scripts/guest/qemu-trixie.sh, in
# a private mount namespace, in the caller's directory, with its arguments.
root=@ROOT@
if [ "${AVPFS_TRIXIE_NS:-}" != 1 ]; then
  AVPFS_TRIXIE_NS=1 exec unshare --mount --propagation private -- "$0" "$@"
fi
unset AVPFS_TRIXIE_NS
cwd=$(pwd)
bind() { mount --rbind "$1" "$root$1" || exit 125; }
for d in /dev /proc /sys /run /tmp; do bind "$d"; done
# The host's top-level directories that the working directory and the
# arguments name (`-kernel /work/k`, `path=/srv/s.sock`, `unix:/x/m`),
# unless they are the chroot's own system directories (/usr, /etc, ...).
tops=$({ echo "$cwd"; printf '%s\n' "$@" | grep -oE '(^|[=,:])/[^/,:]+' ; } |
  sed -E 's/^[=,:]//; s|^(/[^/]+).*|\1|' | sort -u)
for d in $tops; do
  case "$d" in /dev|/proc|/sys|/run|/tmp) continue ;; esac
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  case "$d" in
    /root|/home|/srv|/mnt|/media|/opt) bind "$d" ;;
    *) [ -e "$root$d" ] || mkdir -p "$root$d" # -p: another run may make it too
       if [ -d "$root$d" ] && [ -z "$(ls -A "$root$d")" ]; then bind "$d"; fi ;;
  esac
done
# A working directory under one of the chroot's own directories: shown at
# its path if the chroot has nothing there.
if [ ! "$cwd" -ef "$root$cwd" ]; then
  [ -e "$root$cwd" ] || mkdir -p "$root$cwd"
  if [ -d "$root$cwd" ] && [ -z "$(ls -A "$root$cwd")" ]; then bind "$cwd"; fi
fi
exec chroot "$root" /usr/bin/env -C "$cwd" /usr/bin/qemu-system-x86_64 "$@"
WRAP
}
write_wrapper() { wrapper_text > "$1" && chmod +x "$1"; }
ready() {
  [ -f "$stamp" ] && [ -x "$root/usr/bin/qemu-system-x86_64" ] || return 1
  if [ ! -x "$wrapper" ] || ! wrapper_text | cmp -s - "$wrapper"; then
    write_wrapper "$wrapper.new" && mv "$wrapper.new" "$wrapper"
  fi
}
if ready; then
  if [ "${1:-}" = --version ]; then cat "$stamp"; else echo "$wrapper"; fi
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "qemu-trixie: needs root to build the chroot in $dir" >&2; exit 1; }
mkdir -p "$dir/bin"
exec 9> "$dir/lock"
flock 9
if ready; then # another run built it while we waited for the lock
  if [ "${1:-}" = --version ]; then cat "$stamp"; else echo "$wrapper"; fi
  exit 0
fi

log=$dir/setup.log
: > "$log"
fail() {
  echo "qemu-trixie: $*; the end of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

# The mirror that serves the host's own suite (e.g. bookworm), read from
# apt's sources: one-line `deb URI SUITE ...` entries and deb822 stanzas.
host_mirror() {
  local codename
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      sed 's/\[[^]]*\]//' |
      awk -v s="$codename" '$1 == "deb" && $3 == s { print $2; exit }'
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v s="$codename" '
        /^#/ { next }
        /^[ \t]*$/ { if (ok && uri != "" && deb) { print uri; exit } uri = ""; ok = 0; deb = 0; next }
        tolower($1) == "uris:" { uri = $2 }
        tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
        tolower($1) == "enabled:" && tolower($2) == "no" { deb = 0 }
        END { if (ok && uri != "" && deb) print uri }' "$f"
    done
  } | head -n1
}
mirror=${AVPFS_TRIXIE_MIRROR:-$(host_mirror)}
[ -n "$mirror" ] || fail "found no Debian mirror in /etc/apt/sources.list*; set AVPFS_TRIXIE_MIRROR"

# Runs a command in the chroot with /dev, /proc and /sys bound, in a mount
# namespace of its own so that nothing stays mounted.
in_chroot() {
  unshare --mount --propagation private -- sh -c '
    r=$1; shift
    for d in dev proc sys; do mount --rbind "/$d" "$r/$d"; done
    exec chroot "$r" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"
  ' sh "$root" "$@"
}

if [ ! -x "$root/usr/bin/apt-get" ] || [ ! -f "$dir/debootstrap.done" ]; then
  if ! command -v debootstrap > /dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >> "$log" 2>&1 ||
      fail "could not install debootstrap"
  fi
  # A half-made chroot from an interrupted run is made again from scratch.
  rm -rf "$root" "$dir/debootstrap.done"
  echo "== debootstrap --variant=minbase trixie $root $mirror" >> "$log"
  debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    trixie "$root" "$mirror" >> "$log" 2>&1 || fail "debootstrap failed"
  touch "$dir/debootstrap.done"
fi

rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: trixie trixie-updates trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
# No service may start inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
echo "== apt-get update; install -t trixie-backports qemu-system-x86" >> "$log"
in_chroot apt-get update -q >> "$log" 2>&1 || fail "apt-get update in the chroot failed"
in_chroot apt-get install -y -q --no-install-recommends -t trixie-backports \
  qemu-system-x86 qemu-system-data seabios ipxe-qemu >> "$log" 2>&1 ||
  fail "installing qemu-system-x86 in the chroot failed"
in_chroot apt-get clean >> "$log" 2>&1 || true

write_wrapper "$wrapper.new"

# The firmware the default and -nodefaults PC machines load must be there.
echo "== check: the machine starts" >> "$log"
(cd /tmp && echo quit | "$wrapper.new" -accel tcg -nodefaults -display none -monitor stdio) >> "$log" 2>&1 ||
  fail "QEMU from the chroot does not start"
ver=$(in_chroot qemu-system-x86_64 --version | head -n1)
pkg=$(in_chroot dpkg-query -W -f='${Version}' qemu-system-x86)
mv "$wrapper.new" "$wrapper"
printf '%s\nqemu-system-x86 %s (trixie-backports, chroot %s, mirror %s)\n' "$ver" "$pkg" "$root" "$mirror" > "$stamp"
if [ "${1:-}" = --version ]; then cat "$stamp"; else echo "$wrapper"; fi
