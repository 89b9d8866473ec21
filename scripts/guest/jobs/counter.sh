# Two guests run this at once on one tree: each adds to two shared counters,
# one under flock and one under fcntl (POSIX) locks, through a fresh open for
# every addition (200 times each). The host checks the final numbers.
set -e
conformance --add-under-lock /mnt/counter-flock 200 flock
conformance --add-under-lock /mnt/counter-fcntl 200 fcntl
echo AVPFS-COUNTER-OK
