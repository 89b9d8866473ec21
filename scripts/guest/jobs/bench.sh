# Level-2 benchmark job (run by avpfs-bench --level 2 through run-guest.sh):
# mounts the share over vsock first when the host asks for it (avpfs-9p:
# /data/bench.9p-vsock holds the port and the mount options, and
# avpfs-9p-mount is in /bin), reports the guest kernel and the mount, then
# runs the static workload runner with the arguments the host left in
# /data/bench.args.
if [ -f /data/bench.9p-vsock ]; then
  read -r port opts < /data/bench.9p-vsock
  if ! avpfs-9p-mount "$port" /mnt -o "$opts"; then
    echo "AVPFS-MOUNT-FAILED avpfs-9p-mount $port /mnt -o $opts"
    exit 1
  fi
fi
echo "AVPFS-BENCH-INFO kernel $(uname -r)"
echo "AVPFS-BENCH-INFO mount $(grep ' /mnt ' /proc/mounts | head -n1)"
echo "AVPFS-BENCH-INFO cpus $(grep -c ^processor /proc/cpuinfo) mem $(awk '/MemTotal/ {print $2 $3}' /proc/meminfo)"
# shellcheck disable=SC2046
/bin/guest-workload $(cat /data/bench.args)
