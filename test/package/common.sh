# What the package checks (check_install.sh, check_deb.sh) share: how they
# report a step or a failure, and how they wait for a process with a deadline.
# Source it once $check (the name each line starts with) and $work (the
# directory that holds the logs) are set.

# fail MESSAGE [LOG...]: says why, shows the end of each log in $work, exits 1.
fail() {
  echo "$check: $1" >&2
  for log in "${@:2}"; do
    [ -s "$work/$log" ] && { echo "--- $log" >&2; tail -n 30 "$work/$log" >&2; }
  done
  exit 1
}

# step WHAT: says what was done, and how long it took since the last step.
step_start=$SECONDS
step() {
  echo "$check: $* ($((SECONDS - step_start)) s)"
  step_start=$SECONDS
}

# wait_for PID SECONDS NAME: waits for NAME (NAME.log) to end and returns its
# exit status; fails, leaving it to the caller's cleanup, if it runs longer.
wait_for() {
  local pid=$1 deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "$3 still runs after $2 s" "$3.log"
    sleep 0.1
  done
  wait "$pid"
}

# port_of PID NAME LOG SED: waits up to 30 s for the listening process PID
# (NAME) to print its port in $work/LOG, which the sed expression SED
# extracts, and prints it; fails if the process exits first or never says.
port_of() {
  local pid=$1 name=$2 log=$3 expr=$4 port="" deadline=$((SECONDS + 30))
  while [ -z "$port" ]; do
    kill -0 "$pid" 2>/dev/null || fail "$name exited before listening" "$log"
    ((SECONDS < deadline)) || fail "$name did not print its port within 30 s" "$log"
    sleep 0.1
    port=$(sed -n "$expr" "$work/$log")
  done
  echo "$port"
}
