#!/usr/bin/env bash
# make demo: a throwaway Redis on a free port, a demo worker with events on,
# a few tasks, and the tools at work on them. Everything stops on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PATH="$ROOT/bin:$PATH"
PY="$ROOT/.venv/bin/python"
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server jq >/dev/null; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
DEMO="$ROOT/.demo"
mkdir -p "$DEMO"

read -r REDIS_PORT REDIS_PID < <("$PY" -m tests.support redis-start "$DEMO/redis")
read -r WORKER WORKER_PID < <("$PY" -m tests.support worker-start "redis://127.0.0.1:$REDIS_PORT/0" "$DEMO")
cleanup() {
  kill -TERM -- "-$WORKER_PID" 2>/dev/null || true
  kill "$REDIS_PID" 2>/dev/null || true
}
trap cleanup EXIT
export CELOPS_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0" CELOPS_TEST_BROKER="redis://127.0.0.1:$REDIS_PORT/0"
send() { (cd "$ROOT" && "$PY" -c "import tests.app as t; $1"); }
# Bold headings on a terminal only: piped or logged, the output stays plain text (NO_COLOR too).
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ] && [ "${TERM:-dumb}" != dumb ]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
# wait_until COMMAND...: poll it every 0.2 s, for 10 s at most.
wait_until() { for _ in $(seq 50); do "$@" && return 0; sleep 0.2; done; return 1; }
# an event reader listens: a pattern subscriber besides the worker's own (its pidbox)
reading_events() { [ "$(redis-cli -p "$REDIS_PORT" client list | grep -c ' psub=[1-9]')" -gt 1 ]; }
sleep_running() { cctl active -d "$WORKER" | grep -q tests.app.sleep; }

echo "demo: private Redis on port $REDIS_PORT, worker $WORKER"

step "cq-ls"
cq-ls

send "[t.add.apply_async((p, 2), queue='video', priority=p) for p in (0, 0, 5, 9)]"
step "cq-len"
cq-len
step "cq-peek video | jq -c '[.uuid, .task, .args, .priority]'"
cq-peek video | jq -c '[.uuid, .task, .args, .priority]'
step "cq-len --format prom video"
cq-len --format prom video
step "cq-purge -Q video --dry-run"
cq-purge -Q video --dry-run
step "cq-purge -Q video -f"
cq-purge -Q video -f

step "cctl ping"
cctl ping
step "cctl stats | jq -c '{worker, pool: .reply.pool.implementation, processes: .reply.pool.processes}'"
cctl stats | jq -c '{worker, pool: .reply.pool.implementation, processes: .reply.pool.processes}'
send "t.sleep.delay(60)"
wait_until sleep_running
step "cctl active --each -d \$WORKER | jq -c '{worker, uuid, name}'"
cctl active --each -d "$WORKER" | jq -c '{worker, uuid, name}'
step "cctl active --each -d \$WORKER | cctl terminate SIGKILL - -d \$WORKER"
cctl active --each -d "$WORKER" | cctl terminate SIGKILL - -d "$WORKER"
step "cctl shutdown   # refused: it would reach every worker"
cctl shutdown || echo "exit status $?"

step "cev-cam --live --wakeup --duration 4 --once | jq -c '{workers: [.workers[] | {hostname, alive}], by_name: .tasks.by_name}'"
( wait_until reading_events; send "t.add.delay(2, 2); t.add.delay(3, 4); t.fail.delay('demo')" ) &
cev-cam --live --wakeup --duration 4 --once | jq -c '{workers: [.workers[] | {hostname, alive}], by_name: .tasks.by_name}'
wait

step "cev-cam --live --wakeup --duration 3 --once --sink prom --textfile \$DEMO/celery.prom; grep -E '^celery_(worker_up|task_succeeded_total)' \$DEMO/celery.prom"
( wait_until reading_events; send "t.add.delay(1, 1)" ) &
cev-cam --live --wakeup --duration 3 --once --sink prom --textfile "$DEMO/celery.prom"
wait
grep -E '^celery_(worker_up|task_succeeded_total)' "$DEMO/celery.prom"

step "cev-dump --no-heartbeats --duration 4 | jq -c '{type, hostname, name, result, exception}'"
( wait_until reading_events; send "t.add.delay(2, 2); t.fail.delay('demo')" ) &
cev-dump --no-heartbeats --duration 4 | jq -c '{type, hostname, name, result, exception}'
wait

step "cev-dump --type task-failed --limit 1   # while a task fails"
( wait_until reading_events; send "t.fail.delay('only failures')" ) &
cev-dump --type task-failed --limit 1 | jq -c '{type, name, exception}'
wait
