# Guest A of the killed-holder test: takes a flock on /mnt/lock and holds it
# (test-guest.sh kills this guest's VMM while it does).
conformance --take-lock /mnt/lock flock 600
