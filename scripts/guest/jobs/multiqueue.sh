# Multi-queue: parallel work pinned to each CPU must use several request queues.
set -e
ncpu=$(grep -c ^processor /proc/cpuinfo)
for c in $(seq 0 $((ncpu - 1))); do
  (taskset -c "$c" sh -c "mkdir -p /mnt/mq$c; i=0; while [ \$i -lt 200 ]; do echo \$i > /mnt/mq$c/f\$i; cat /mnt/mq$c/f\$i > /dev/null; i=\$((i+1)); done") &
done
wait
grep -i 'virtio.*request' /proc/interrupts || true
used=0
for line in $(grep -i 'virtio.*request' /proc/interrupts | awk '{s=0; for(i=2;i<=NF;i++) if ($i ~ /^[0-9]+$/) s+=$i; print s}'); do
  [ "$line" -gt 0 ] && used=$((used + 1))
done
echo "AVPFS-QUEUES-USED $used"
