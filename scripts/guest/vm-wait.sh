# Waiting on test VMs, shared by the QEMU test scripts (sourced, not run).
# Expects $work (the VMs' serial files are $work/NAME.serial, their QMP
# sockets $work/NAME.qmp) and $qmp (scripts/guest/qmp.py).

# Waits up to SECONDS for PATTERN (grep) on VM NAME's serial console.
wait_serial() { # name pattern seconds
  local end=$(($(date +%s) + $3))
  while [ "$(date +%s)" -lt $end ]; do
    grep -q "$2" "$work/$1.serial" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Waits up to SECONDS for process PID to exit.
wait_exit() { # pid seconds
  local end=$(($(date +%s) + $2))
  while kill -0 "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt $end ] || return 1
    sleep 0.1
  done
}

# Asks VM NAME to quit over QMP; kills PID after 10 s.
stop_vm() { # name pid
  "$qmp" "$work/$1.qmp" quit > /dev/null 2>&1 || true
  wait_exit "$2" 10 || kill "$2" 2>/dev/null || true
}
