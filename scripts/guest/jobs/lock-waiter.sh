# Guest B of the killed-holder test: once the host says so (/mnt/go), waits
# for the flock guest A holds; it gets it when A's VMM is killed.
while [ ! -e /mnt/go ]; do sleep 1; done
conformance --take-lock /mnt/lock flock 0 && echo AVPFS-WAITER-DONE
