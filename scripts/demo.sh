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
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

echo "demo: private Redis on port $REDIS_PORT, worker $WORKER"

step "cq-ls"
cq-ls

step "cev-dump --no-heartbeats --duration 4 | jq -c '{type, hostname, name, result, exception}'"
(sleep 1; send "t.add.delay(2, 2); t.fail.delay('demo')") &
cev-dump --no-heartbeats --duration 4 | jq -c '{type, hostname, name, result, exception}'
wait

step "cev-dump --type task-failed --limit 1   # while a task fails"
(sleep 1; send "t.fail.delay('only failures')") &
cev-dump --type task-failed --limit 1 | jq -c '{type, name, exception}'
wait
