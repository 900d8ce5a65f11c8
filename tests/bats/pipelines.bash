# The issue-7 pipelines as functions, run by pipelines.bats (Redis) and
# pipelines_rabbitmq.bats (RabbitMQ) against a shared worker: setup_file
# exports BROKER, CELOPS_BROKER_URL, WORKER and WORKER_PID.

# Pipeline 2: cev-dump --type task-failed | jq -r .exception shows the exception;
# the failing task is sent once cev-dump listens.
pipeline_failed_exception() {
  send_when_reading "$BROKER" celery tests.app.fail '["pipeline two"]'
  local sender=$!
  run --separate-stderr bash -c "set -o pipefail; cev-dump --type task-failed --limit 1 --idle 30 | jq -r .exception"
  wait "$sender"
  assert_success
  assert_output "ValueError('pipeline two')"
  [ -z "$stderr" ]
}

# Pipeline 3: sleep tasks queued where nobody consumes, revoked through the
# cq-peek | jq | cctl revoke - pipe; once the worker consumes the queue it
# reports them revoked and discards them; the add task in between still runs.
pipeline_revoke_queued() {
  local queue="parked-$RANDOM" id
  local sleepers; sleepers="$(send_tasks "$BROKER" "$queue" tests.app.sleep '[30]' 3)"
  local adder; adder="$(send_tasks "$BROKER" "$queue" tests.app.add '[20, 22]')"
  run --separate-stderr bash -c "set -o pipefail; cq-peek '$queue' | jq -c 'select(.task==\"tests.app.sleep\")' | cctl revoke - -d '$WORKER'"
  assert_success
  [ -z "$stderr" ]
  for id in $sleepers; do assert_output --partial "$id"; done
  refute_output --partial "$adder"

  run cctl revoked --each -d "$WORKER"
  for id in $sleepers; do assert_output --partial "\"uuid\":\"$id\""; done
  run cctl add_consumer "$queue" -d "$WORKER"
  assert_success
  wait_until 30 queue_drained "$queue"
  wait_until 30 grep -q "Task tests.app.add\[$adder\] succeeded" "$BATS_FILE_TMPDIR/$WORKER.log"
  for id in $sleepers; do
    grep -q "Discarding revoked task: tests.app.sleep\[$id\]" "$BATS_FILE_TMPDIR/$WORKER.log"
    run ! grep -q "tests.app.sleep\[$id\] succeeded" "$BATS_FILE_TMPDIR/$WORKER.log"
  done
  run cctl active --each -d "$WORKER"
  refute_output --partial tests.app.sleep
  cctl cancel_consumer "$queue" -d "$WORKER" >/dev/null
}

# queue_drained QUEUE: cq-len says nothing is waiting in QUEUE.
queue_drained() { [ "$(cq-len "$1" | jq .ready)" = 0 ]; }

# Pipeline 4: the running sleepers, found by cctl active --each, are killed by
# cctl terminate SIGKILL - and the worker goes on (its pool replaces them).
pipeline_terminate_active() {
  local sleepers; sleepers="$(send_tasks "$BROKER" celery tests.app.sleep '[60]' 2)"
  wait_until 30 active_sleepers 2
  run --separate-stderr bash -c "set -o pipefail; cctl active --each -d '$WORKER' | jq -c 'select(.name==\"tests.app.sleep\")' | cctl terminate SIGKILL - -d '$WORKER'"
  assert_success
  [ -z "$stderr" ]
  for id in $sleepers; do assert_output --partial "$id"; done
  wait_until 30 active_sleepers 0
  run cctl ping -d "$WORKER"
  assert_success
}

# active_sleepers N: the worker runs exactly N tests.app.sleep tasks.
active_sleepers() { [ "$(cctl active --each -d "$WORKER" | jq -s 'map(select(.name=="tests.app.sleep")) | length')" -eq "$1" ]; }

# Pipeline 7: cmd | head -1 exits 0, stderr empty, for the four commands.
pipeline_head_one() {
  local queue="heads-$RANDOM" cmd
  send_tasks "$BROKER" "$queue" tests.app.add '[1, 1]' 5 >/dev/null
  for cmd in "cev-dump --wakeup" "cq-len" "cctl stats" "cq-peek $queue"; do
    run --separate-stderr bash -c "set -o pipefail; $cmd | head -1"
    assert_success
    [ -z "$stderr" ] || { echo "$cmd: $stderr"; return 1; }
    [ "$(printf '%s\n' "$output" | wc -l)" -eq 1 ]
    printf '%s\n' "$output" | jq -e .type >/dev/null
  done
  cq-purge -Q "$queue" -f >/dev/null
}

# send_mix: two adds and one fail on the celery queue.
send_mix() {
  send_tasks "$BROKER" celery tests.app.add '[2, 2]' 2 >/dev/null
  send_tasks "$BROKER" celery tests.app.fail '["mix"]' >/dev/null
}

# Pipeline 1: cev-dump --limit N | cev-cam --once counts the tasks that ran
# (N = 3 worker task events for each of the three tasks).
pipeline_dump_to_camera() {
  local readers; readers="$(event_readers)"
  cev-dump --hostname "$WORKER" --type 'task-*' --limit 9 --idle 30 | cev-cam --once > "$BATS_TEST_TMPDIR/snap" &
  wait_until 20 event_readers_at_least $((readers + 1))
  send_mix
  wait
  run jq -c '[.tasks.count, .tasks.by_name, .tasks.by_worker]' "$BATS_TEST_TMPDIR/snap"
  assert_output "[3,{\"tests.app.add\":{\"SUCCESS\":2},\"tests.app.fail\":{\"FAILURE\":1}},{\"$WORKER\":{\"SUCCESS\":2,\"FAILURE\":1}}]"
}

# Pipeline 6: cev-dump --duration 5 > saved.ndjson next to a live cev-cam;
# replaying the file gives the live camera's last snapshot, in every part that
# does not depend on the wall clock (task counts by state, name and worker,
# runtime and wait counts, the workers).
pipeline_replay_equals_live() {
  local readers; readers="$(event_readers)"
  cev-dump --duration 5 > "$BATS_TEST_TMPDIR/saved.ndjson" &
  cev-cam --live --duration 5 --once > "$BATS_TEST_TMPDIR/live" &
  wait_until 20 event_readers_at_least $((readers + 2))
  send_mix
  wait
  cev-cam --once < "$BATS_TEST_TMPDIR/saved.ndjson" > "$BATS_TEST_TMPDIR/replay"
  local agreed='[(.tasks | del(.runtime)), (.wait | map_values(.count)), (.tasks.runtime | map_values(.count)), [.workers[].hostname]]'
  run jq -c "$agreed" "$BATS_TEST_TMPDIR/live"
  local live="$output"
  assert_output --partial '"tests.app.fail":{"FAILURE":1}'
  run jq -c "$agreed" "$BATS_TEST_TMPDIR/replay"
  assert_output "$live"
}
