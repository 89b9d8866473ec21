# Runs in the guest with the share on /mnt.
set -e
echo "== guest: $(uname -sr), share mounted:"
grep virtiofs /proc/mounts
echo "== guest reads the host's file:"
cat /mnt/hello.txt
echo "== guest writes files:"
echo "written by the guest running $(uname -r)" > /mnt/from-guest.txt
mkdir -p /mnt/guest-dir
dd if=/dev/urandom of=/mnt/guest-dir/random.bin bs=64k count=16 2>/dev/null
sync
md5sum /mnt/guest-dir/random.bin > /mnt/guest-dir/random.md5
ls -l /mnt /mnt/guest-dir
