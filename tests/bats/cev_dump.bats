#!/usr/bin/env bats
# cev-dump at the shell: pipes, Ctrl-C, an unreachable broker.

setup_file() { load helpers; redis_worker_up; }
teardown_file() { load helpers; redis_worker_down; }

setup() { load helpers; }

@test "cev-dump | head -n 3 exits 0 with empty stderr" {
  run --separate-stderr bash -c "set -o pipefail; cev-dump -b '$REDIS_URL' --wakeup | head -n 3"
  assert_success
  [ "$(printf '%s\n' "$output" | grep -c '"type":"worker-heartbeat"')" -eq 3 ]
  [ -z "$stderr" ]
}

@test "Ctrl-C exits 130 quietly" {
  redis_worker_env
  local readers; readers="$(event_readers)"
  set -m  # job control: a background job keeps SIGINT (a plain script's would ignore it)
  cev-dump --no-heartbeats > /dev/null 2> "$BATS_TEST_TMPDIR/stderr" &
  local dump=$!
  set +m
  wait_until 20 event_readers_at_least $((readers + 1))
  kill -INT "$dump"
  local status=0
  wait "$dump" || status=$?
  assert_equal "$status" 130
  [ ! -s "$BATS_TEST_TMPDIR/stderr" ]
}

@test "filters and --limit in a pipeline with jq-style consumers" {
  run --separate-stderr bash -c "cev-dump -b '$REDIS_URL' --wakeup --type 'worker-*' --hostname '$WORKER' --limit 1 | grep -c '\"hostname\":\"$WORKER\"'"
  assert_success
  assert_output 1
}

@test "an unreachable broker: exit 69 and one redacted line" {
  assert_unreachable_broker cev-dump
}
