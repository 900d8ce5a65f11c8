#!/usr/bin/env bats
# The pipe contract's edges for the whole toolkit.

setup_file() {
  load helpers
  start_redis
  # Enough queues that cq-ls writes more than a pipe buffer.
  "$PY" - <<PYEOF
import redis
client = redis.Redis.from_url("$REDIS_URL")
client.sadd("_kombu.binding.celery", *[f"q{i}\x06\x16\x06\x16queue-{i:05d}-{'x' * 40}" for i in range(5000)])
PYEOF
}

teardown_file() {
  load helpers
  stop_redis
}

setup() { load helpers; }

@test "cq-ls | head -1 exits 0 with empty stderr" {
  run --separate-stderr bash -c "set -o pipefail; cq-ls -b '$REDIS_URL' | head -1"
  assert_success
  assert_output --partial '"type":"queue"'
  [ -z "$stderr" ]
}

@test "an unreachable broker: exit 69 and one line on stderr" {
  assert_unreachable_broker cq-ls
}

@test "bin/ runs commands from any directory" {
  cd /
  run cq-ls --version
  assert_success
  assert_output --regexp '^cq-ls [0-9]'
}
