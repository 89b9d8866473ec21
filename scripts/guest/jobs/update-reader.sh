# Software update, the reading side (test-guest.sh puts the guest's name in
# place of @TAG@). While the host or the other guest installs version 2 of
# /mnt/app/data, /mnt/app/prog, /mnt/app/run.sh and the directory
# /mnt/release, this guest reads them: readers that open data and release
# anew for every read (each read must be all version 1 or all version 2),
# one that keeps data open and the running program /mnt/app/prog reading
# its own /proc/self/exe (both must keep version 1), and the shell script
# /mnt/app/run.sh run from the share (it must end as the version it started
# as). /mnt/upd holds sums.sh (each path's two sums) and the host's markers
# (changed, stop); a writable guest acknowledges each version it first
# reads there (seen-TAG-vN).
. /mnt/upd/sums.sh
t=@TAG@ u=/mnt/upd ack=--ack
if ! err=$( (: > $u/writable-$t) 2>&1); then ack=; echo "AVPFS-UPDATE-READONLY $t $err"; fi
conformance --verify-versions /mnt/app/data 120 $data_sums --tag $t-data --marks $u $ack &
conformance --verify-versions /mnt/app/data 120 $data_sums --hold --tag $t-held --marks $u $ack &
conformance --verify-versions /mnt/release 120 $release_sums --tag $t-release --marks $u $ack &
/mnt/app/prog --verify-versions /proc/self/exe 120 $prog_sums --period-ms 1000 --tag $t-exe --marks $u $ack &
sh /mnt/app/run.sh $t &
wait
# A program started after the update is the new version.
/mnt/app/prog --sum /proc/self/exe | sed "s/^/AVPFS-NEW-EXE $t /"
echo "AVPFS-UPDATE-READER-DONE $t"
