# Level-2 benchmark job (run by avpfs-bench --level 2 through run-guest.sh):
# reports the guest kernel and the mount, then runs the static workload runner
# with the arguments the host left in /data/bench.args.
echo "AVPFS-BENCH-INFO kernel $(uname -r)"
echo "AVPFS-BENCH-INFO mount $(grep ' /mnt ' /proc/mounts | head -n1)"
echo "AVPFS-BENCH-INFO cpus $(grep -c ^processor /proc/cpuinfo) mem $(awk '/MemTotal/ {print $2 $3}' /proc/meminfo)"
# shellcheck disable=SC2046
/bin/guest-workload $(cat /data/bench.args)
