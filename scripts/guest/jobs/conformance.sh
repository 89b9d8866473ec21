# The POSIX conformance suite inside the guest, on the virtiofs mount.
mkdir -p /mnt/conformance
conformance --dump /mnt/conformance | sed 's/^/AVPFS-OBS /'
