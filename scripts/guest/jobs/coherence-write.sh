# Visibility delay, guest A (cache never): makes the changes of the rounds
# marked "a" in the plan when the host says so (/mnt/vis/go-R).
conformance --vis-write /mnt/vis @PLAN@ && echo AVPFS-WRITE-OK
