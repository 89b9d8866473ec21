# Data integrity: writes patterned files of many sizes with fsync, reads them
# back (also after dropping the guest's caches), and prints their checksums
# for the host to compare with its own view of the share.
set -e
mkdir -p /mnt/integrity
: > /tmp/sums
i=0
for size in 0 1 511 4095 4096 4097 65535 65536 65537 131072 1048575 1048576 1048577 3145731 8388608; do
  head -c "$size" /dev/urandom > /tmp/src
  dd if=/tmp/src of=/mnt/integrity/f$i bs=65536 conv=fsync 2>/dev/null
  src=$(md5sum < /tmp/src | cut -d' ' -f1)
  got=$(md5sum < /mnt/integrity/f$i | cut -d' ' -f1)
  [ "$src" = "$got" ] || { echo "AVPFS-FAIL f$i ($size bytes): wrote $src, read back $got"; exit 1; }
  echo "f$i $size $src" >> /tmp/sums
  i=$((i + 1))
done
# Overwrite in the middle and append, then check again.
printf 'PATCHED' | dd of=/mnt/integrity/f12 bs=1 seek=1000 conv=notrunc,fsync 2>/dev/null
head -c 1000 /mnt/integrity/f12 > /tmp/a; printf 'PATCHED' >> /tmp/a
tail -c +1008 /mnt/integrity/f12 >> /tmp/a
[ "$(md5sum < /tmp/a | cut -d' ' -f1)" = "$(md5sum < /mnt/integrity/f12 | cut -d' ' -f1)" ]
sed -i "s/^f12 .*/f12 1048577 $(md5sum < /tmp/a | cut -d' ' -f1)/" /tmp/sums
sync
echo 3 > /proc/sys/vm/drop_caches
while read -r name size sum; do
  got=$(md5sum < /mnt/integrity/$name | cut -d' ' -f1)
  [ "$got" = "$sum" ] || { echo "AVPFS-FAIL $name after drop_caches: $got, expected $sum"; exit 1; }
  [ "$(wc -c < /mnt/integrity/$name)" -eq "$size" ] || { echo "AVPFS-FAIL $name size"; exit 1; }
  echo "AVPFS-SUM $name $size $sum"
done < /tmp/sums
echo "AVPFS-INTEGRITY-OK"
