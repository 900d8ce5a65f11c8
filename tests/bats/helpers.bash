# Shared setup for the bats tests: commands from bin/, a private Redis, a private
# RabbitMQ vhost and real workers, all through tests/support.py (the same code
# the pytest fixtures use), and torn down afterwards.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="$ROOT/bin:$PATH"
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || PY=python3
bats_require_minimum_version 1.5.0
load "$ROOT/node_modules/bats-support/load"
load "$ROOT/node_modules/bats-assert/load"

support() { (cd "$ROOT" && "$PY" -m tests.support "$@"); }

# start_redis: exports REDIS_URL (db 0 of a private redis-server) and REDIS_PID.
start_redis() {
  local port pid
  read -r port pid < <(support redis-start "$BATS_FILE_TMPDIR/redis")
  export REDIS_PORT="$port" REDIS_PID="$pid" REDIS_URL="redis://127.0.0.1:$port/0"
}

stop_redis() { [ -z "${REDIS_PID:-}" ] || kill "$REDIS_PID" 2>/dev/null || true; }

# start_vhost: exports AMQP_URL and AMQP_VHOST, a private vhost on the local RabbitMQ.
start_vhost() {
  export AMQP_URL AMQP_VHOST
  AMQP_URL="$(support vhost-create)"
  AMQP_VHOST="${AMQP_URL##*/}"
}

stop_vhost() { [ -z "${AMQP_VHOST:-}" ] || support vhost-delete "$AMQP_VHOST"; }

# start_worker BROKER_URL [QUEUE...]: exports WORKER (its hostname) and WORKER_PID once it answers ping.
start_worker() {
  local name pid
  read -r name pid < <(support worker-start "$1" "$BATS_FILE_TMPDIR" "${@:2}")
  export WORKER="$name" WORKER_PID="$pid"
}

# stop_worker: SIGTERM the worker's process group, SIGKILL what is left after 15 s.
stop_worker() {
  [ -n "${WORKER_PID:-}" ] || return 0
  kill -TERM -- "-$WORKER_PID" 2>/dev/null || return 0
  for _ in $(seq 1 150); do kill -0 "$WORKER_PID" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL -- "-$WORKER_PID" 2>/dev/null || true
}

# redis_worker_up / redis_worker_down: setup_file and teardown_file of a file whose
# tests share one worker on a private Redis; redis_worker_env (setup) points the
# commands and send_tasks at it.
redis_worker_up() { start_redis; start_worker "$REDIS_URL"; }
redis_worker_down() { kill -CONT -- "-$WORKER_PID" 2>/dev/null || true; stop_worker; stop_redis; }
redis_worker_env() { broker_env "$REDIS_URL"; }
# rabbit_worker_up / rabbit_worker_down: the same on a private RabbitMQ vhost (setup: broker_env "$AMQP_URL").
rabbit_worker_up() { start_vhost; start_worker "$AMQP_URL"; }
rabbit_worker_down() { stop_worker; stop_vhost; }
# broker_env URL: the commands and send_tasks go to URL.
broker_env() { export BROKER="$1" CELOPS_BROKER_URL="$1"; }

# send_tasks BROKER_URL QUEUE TASK ARGS_JSON [COUNT]: publish tests.app task messages; prints their ids.
send_tasks() { support send "$@"; }

# send_when_reading BROKER_URL QUEUE TASK ARGS_JSON: in the background, send the task once one more
# event reader than now listens (the command the test runs next); `wait $!` for it.
send_when_reading() {
  local readers; readers="$(BROKER="$1" event_readers)"
  ( BROKER="$1" wait_until 20 event_readers_at_least $((readers + 1)) && send_tasks "$@" >/dev/null ) &
}

# complete_line COMMAND WORD...: what bash completion offers for the last word (live names from $CELOPS_BROKER_URL).
complete_line() {
  bash -c 'source "$1/completions/bash/$2"; shift 2
    COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    "_shtab_${1//-/_}" "$1" "${!#}" "$1"; printf "%s\n" "${COMPREPLY[@]}"' _ "$ROOT" "$@"
}

# wait_until SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds; fail after SECONDS.
wait_until() {
  local deadline=$((SECONDS + $1))
  until "${@:2}"; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "timed out waiting for: ${*:2}" >&2; return 1; }
    sleep 0.1
  done
}

# event_readers: how many event readers listen on $BROKER: Redis clients with
# pattern subscriptions besides the worker's pidbox, or celeryev.* queues of the
# RabbitMQ vhost (management API).
event_readers() {
  case "$BROKER" in
    redis://*) echo $(($(redis-cli -p "$REDIS_PORT" client list | grep -c ' psub=[1-9]') - 1)) ;;
    *) curl -sf -u guest:guest "http://127.0.0.1:15672/api/queues/$AMQP_VHOST?columns=name" |
         jq '[.[] | select(.name | startswith("celeryev."))] | length' ;;
  esac
}

# event_readers_at_least N: wait_until's condition for N listening event readers.
event_readers_at_least() { [ "$(event_readers)" -ge "$1" ]; }

# assert_unreachable_broker COMMAND [ARGS...]: against a closed port with a password in the URL,
# the command exits 69 with one redacted "cannot reach broker" line and no output.
assert_unreachable_broker() {
  run --separate-stderr "$1" -b redis://:hunter2@127.0.0.1:1/0 -t 1 "${@:2}"
  assert_equal "$status" 69
  assert_output ""
  [ "$(printf '%s\n' "$stderr" | wc -l)" -eq 1 ]
  [[ "$stderr" == "$1: error: cannot reach broker redis://:***@127.0.0.1:1/0: "* ]]
}
