# Software update, the installing side: once the host says so (/mnt/upd/go),
# installs version 2 from /mnt/stage through this guest's own mount as an
# updater should: each file written beside, fsync, renamed over the old one;
# the directory staged whole and swapped in with RENAME_EXCHANGE; then it
# creates /mnt/upd/changed.
set -e
while [ ! -e /mnt/upd/go ]; do sleep 1; done
conformance --install /mnt/stage/data /mnt/app/data
conformance --install /mnt/stage/prog /mnt/app/prog
conformance --install /mnt/stage/run.sh /mnt/app/run.sh
mkdir /mnt/release.new
for f in /mnt/stage/release/*; do conformance --install "$f" "/mnt/release.new/${f##*/}"; done
conformance --exchange /mnt/release.new /mnt/release
: > /mnt/upd/changed
echo AVPFS-INSTALLED
