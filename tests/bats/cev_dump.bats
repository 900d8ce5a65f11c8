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
  run --separate-stderr timeout --preserve-status -s INT 2 cev-dump -b "$REDIS_URL" --no-heartbeats
  assert_equal "$status" 130
  [ -z "$stderr" ]
}

@test "filters and --limit in a pipeline with jq-style consumers" {
  run --separate-stderr bash -c "cev-dump -b '$REDIS_URL' --wakeup --type 'worker-*' --hostname '$WORKER' --limit 1 | grep -c '\"hostname\":\"$WORKER\"'"
  assert_success
  assert_output 1
}

@test "an unreachable broker: exit 69 and one redacted line" {
  assert_unreachable_broker cev-dump
}
