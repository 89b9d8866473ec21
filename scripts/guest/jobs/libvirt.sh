# The guest of test-libvirt.sh. /mnt is the tag "avpfs" (libvirt started
# avpfs itself); the tag "avpfs-policy" (avpfs through a wrapper that adds
# --policy) is mounted on /policy here, and "avpfs-default" (no <binary>:
# avpfs found through a vhost-user descriptor) on /default. Prints a marker per observation; the
# host judges them.
echo "AVPFS-LV-MOUNT $(grep ' /mnt ' /proc/mounts)"
echo "AVPFS-LV-READ $(cat /mnt/from-host.txt)"
echo "written by the guest, $(uname -r)" > /mnt/from-guest.txt
dd if=/dev/urandom of=/mnt/guest.bin bs=64k count=16 2>/dev/null
sync
echo "AVPFS-LV-SUM $(md5sum < /mnt/guest.bin | cut -d' ' -f1)"
mkdir -p /mnt/dir/sub && echo "nested" > /mnt/dir/sub/file && echo "AVPFS-LV-MKDIR ok"

mkdir -p /policy
if mount -t virtiofs avpfs-policy /policy; then
  echo "AVPFS-LV-POLICY-MOUNT ok"
  echo "AVPFS-LV-POLICY-LIST $(ls /policy | tr '\n' ' ')"
  if cat /policy/secret/key 2>/dev/null; then echo "AVPFS-LV-HIDDEN readable"; else echo "AVPFS-LV-HIDDEN not-found"; fi
  err=$(sh -c 'echo x > /policy/firmware/new' 2>&1) && echo "AVPFS-LV-READONLY writable" ||
    echo "AVPFS-LV-READONLY $err"
  echo "AVPFS-LV-POLICY-FIRMWARE $(cat /policy/firmware/image)"
  echo "from the guest" > /policy/notes.txt && echo "AVPFS-LV-POLICY-WRITE ok"
  umount /policy
else
  echo "AVPFS-LV-POLICY-MOUNT failed"
fi
mkdir -p /default
if mount -t virtiofs avpfs-default /default; then
  echo "AVPFS-LV-DEFAULT-READ $(cat /default/default.txt)"
  echo "default from the guest" > /default/from-guest.txt
  umount /default
else
  echo "AVPFS-LV-DEFAULT-READ mount failed"
fi
echo "AVPFS-LV-DONE"
