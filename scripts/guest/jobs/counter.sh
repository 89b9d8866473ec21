# Two guests run this at once on one tree (test-guest.sh puts each guest's
# name in place of @GUEST@). Each appends 200 records to one shared file
# through O_APPEND, then adds 200 times to two shared counters, one under
# flock and one under fcntl (POSIX) locks, through a fresh open for every
# addition. The host checks the records and the final numbers.
set -e
conformance --append /mnt/records @GUEST@ 200
conformance --add-under-lock /mnt/counter-flock 200 flock
conformance --add-under-lock /mnt/counter-fcntl 200 fcntl
echo AVPFS-COUNTER-OK
