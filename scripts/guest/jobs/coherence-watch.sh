# Visibility delay, guest B (its daemon has the cache policy @MODE@): reads
# the old state of each round of /mnt/vis, says it is ready, and polls until
# it sees the round's changes, acknowledging each with a file the host times
# (see avpfs_conformance::visibility). Under "never" a poll that starts after
# the writer's done-marker showed must see the change.
conformance --vis-watch /mnt/vis @MODE@ @PLAN@ && echo AVPFS-WATCH-OK
