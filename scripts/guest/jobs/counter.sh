# Two guests run this at once on one tree (test-guest.sh puts each guest's
# name in place of @GUEST@). Each appends 200 records to one shared file
# through O_APPEND; races the other for 100 O_EXCL creates and 100 renames
# of files the host made (/mnt/claims/ren-I); then adds 200 times to two
# shared counters, one under flock and one under fcntl (POSIX) locks,
# through a fresh open for every addition. The host checks the records, that
# every race had one winner, and the final numbers.
set -e
conformance --append /mnt/records @GUEST@ 200
conformance --claim /mnt/claims @GUEST@ 100
conformance --add-under-lock /mnt/counter-flock 200 flock
conformance --add-under-lock /mnt/counter-fcntl 200 fcntl
echo AVPFS-COUNTER-OK
