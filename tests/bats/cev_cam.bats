#!/usr/bin/env bats
# cev-cam as a shell user runs it: in a pipe, from a redirected file, into jq and a textfile.

setup_file() { load helpers; redis_worker_up; }
teardown_file() { load helpers; redis_worker_down; }

setup() { load helpers; }

events() {
  printf '%s\n' \
    '{"type":"worker-heartbeat","hostname":"w1@h","timestamp":1700000000.0,"local_received":1700000000.01,"freq":2.0,"active":1,"processed":3}' \
    '{"type":"task-received","uuid":"a1","name":"proj.add","hostname":"w1@h","timestamp":1700000000.1,"local_received":1700000000.11,"clock":2}' \
    '{"type":"task-started","uuid":"a1","hostname":"w1@h","timestamp":1700000000.2,"local_received":1700000000.21,"clock":3}'
}

@test "a pipe of events: one snapshot at the end, jq-able" {
  events > "$BATS_TEST_TMPDIR/saved.ndjson"
  run --separate-stderr bash -c "set -o pipefail; cat '$BATS_TEST_TMPDIR/saved.ndjson' | cev-cam --once | jq -c .tasks.by_state"
  assert_success
  assert_output '{"STARTED":1}'
  [ -z "$stderr" ]
}

@test "a redirected saved stream, --tasks into jq select, as cctl revoke - takes it" {
  events > "$BATS_TEST_TMPDIR/saved.ndjson"
  run --separate-stderr bash -c "cev-cam --once --tasks < '$BATS_TEST_TMPDIR/saved.ndjson' | jq -r 'select(.state==\"STARTED\") | .uuid'"
  assert_success
  assert_output 'a1'
}

@test "a bad line: FILE:LINE on stderr, the rest still counted, exit 65" {
  events > "$BATS_TEST_TMPDIR/saved.ndjson"
  echo 'oops' >> "$BATS_TEST_TMPDIR/saved.ndjson"
  run --separate-stderr cev-cam --once "$BATS_TEST_TMPDIR/saved.ndjson"
  assert_equal "$status" 65
  [[ "$stderr" == "cev-cam: $BATS_TEST_TMPDIR/saved.ndjson:4: not JSON"* ]]
  [[ "$output" == *'"event_count":3'* ]]
}

@test "live from the broker, --duration: the worker is alive, the prom textfile has it" {
  run --separate-stderr cev-cam -b "$REDIS_URL" --wakeup --duration 4 --once --sink prom --textfile "$BATS_TEST_TMPDIR/celery.prom"
  assert_success
  grep -q "^celery_worker_up{hostname=\"$WORKER\"} 1.0" "$BATS_TEST_TMPDIR/celery.prom"
}

@test "cev-dump | cev-cam ends with a snapshot when cev-dump stops" {
  run --separate-stderr bash -c "cev-dump -b '$REDIS_URL' --wakeup --duration 4 | cev-cam | tail -1 | jq -r '.workers[].hostname'"
  assert_success
  assert_output --partial "$WORKER"
}
