#!/usr/bin/env bats
# The pipelines of issue 7, as users chain the commands, against a real worker
# on a private Redis (pipelines_rabbitmq.bats runs the broker-sensitive ones
# on RabbitMQ). Tests share one worker; the event ones come first so that no
# earlier test's tasks are still sending events.

setup_file() { load helpers; redis_worker_up; }
teardown_file() { load helpers; redis_worker_down; }
setup() { load helpers; load pipelines; redis_worker_env; }

@test "pipeline 1: cev-dump --limit N | cev-cam --once counts the tasks that ran" {
  pipeline_dump_to_camera
}

@test "pipeline 2: cev-dump --type task-failed | jq -r .exception" {
  pipeline_failed_exception
}

@test "pipeline 6: cev-cam --once < saved.ndjson equals the live camera's last snapshot" {
  pipeline_replay_equals_live
}

@test "pipeline 3: cq-peek QUEUE | jq select sleep | cctl revoke -: the worker skips them" {
  pipeline_revoke_queued
}

@test "pipeline 4: cctl active --each | jq select sleep | cctl terminate SIGKILL - kills the sleepers" {
  pipeline_terminate_active
}

@test "pipeline 5: cq-len --textfile from a loop is always complete for a concurrent reader" {
  local prom="$BATS_TEST_TMPDIR/queues.prom" done="$BATS_TEST_TMPDIR/done"
  send_tasks "$BROKER" textfile-a tests.app.add '[1, 1]' 3 >/dev/null
  send_tasks "$BROKER" textfile-b tests.app.add '[1, 1]' 4 >/dev/null
  cq-len --textfile "$prom" textfile-a textfile-b
  ( for _ in $(seq 30); do cq-len --textfile "$prom" textfile-a textfile-b || exit 1; done; touch "$done" ) &
  run "$PY" - "$prom" "$done" <<'PY'
import os, sys
from prometheus_client.parser import text_string_to_metric_families
path, done = sys.argv[1:]
reads = 0
while not os.path.exists(done):
    with open(path) as f:
        text = f.read()
    lengths = {s.labels["queue"]: s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "celery_queue_length"}
    assert text.endswith("\n") and lengths == {"textfile-a": 3, "textfile-b": 4}, repr(text)
    reads += 1
print(f"{reads} complete reads")
PY
  wait "$!"
  assert_success
  assert_output --regexp '^[1-9][0-9]* complete reads$'
  cq-purge -Q textfile-a,textfile-b -f >/dev/null
}

@test "pipeline 7: cev-dump, cq-len, cctl stats and cq-peek | head -1 exit 0 quietly" {
  pipeline_head_one
}

@test "pipeline 8: garbage on stdin to every reader: numbered errors, exit 65, good lines processed" {
  local garbage=$'{oops\n\xff\xfe binary\n[1, 2]'
  local events
  events="{\"type\":\"task-received\",\"uuid\":\"g-1\",\"name\":\"tests.app.add\",\"hostname\":\"$WORKER\",\"timestamp\":1.0,\"clock\":1}"$'\n'"$garbage"$'\n'"{\"type\":\"task-succeeded\",\"uuid\":\"g-1\",\"hostname\":\"$WORKER\",\"timestamp\":2.0,\"clock\":2,\"runtime\":0.5}"
  run --separate-stderr cev-cam --once <<< "$events"
  assert_equal "$status" 65
  assert_equal "$(jq -c .tasks.by_name <<< "$output")" '{"tests.app.add":{"SUCCESS":1}}'
  assert_numbered_errors cev-cam

  send_tasks "$BROKER" other tests.app.add '[1, 1]' >/dev/null  # a queue that exists: an unknown one is a warning
  run --separate-stderr cq-len - <<< "celery"$'\n'"$garbage"$'\n'"{\"queue\":\"other\"}"
  cq-purge -Q other -f >/dev/null
  assert_equal "$status" 65
  assert_equal "$(jq -r .queue <<< "$output" | paste -sd,)" "celery,other"
  assert_numbered_errors cq-len

  local command
  for command in "revoke" "terminate SIGKILL" "query_task"; do
    run --separate-stderr cctl $command - -d "$WORKER" <<< "pipe-id-1"$'\n'"$garbage"$'\n'"{\"uuid\":\"pipe-id-2\"}"
    assert_equal "$status" 65
    assert_output --partial "\"command\":\"${command%% *}\""
    assert_numbered_errors cctl
  done
  run cctl revoked --each -d "$WORKER"
  assert_output --partial '"uuid":"pipe-id-1"'
  assert_output --partial '"uuid":"pipe-id-2"'
}

# assert_numbered_errors PROG: $stderr is one "PROG: <stdin>:N: reason" line per garbage line 2-4.
assert_numbered_errors() {
  [ "$(printf '%s\n' "$stderr" | wc -l)" -eq 3 ] || { echo "stderr: $stderr"; return 1; }
  local n
  for n in 2 3 4; do [[ "$stderr" == *"$1: <stdin>:$n: "* ]] || { echo "no line $n in: $stderr"; return 1; }; done
}

@test "every record the commands write is in the vocabulary of celops/records.py" {
  local saved="$BATS_TEST_TMPDIR/saved.ndjson" out="$BATS_TEST_TMPDIR/all.ndjson"
  send_tasks "$BROKER" vocabulary tests.app.add '[1, 1]' 2 >/dev/null
  redis-cli -p "$REDIS_PORT" lpush vocabulary 'not a kombu message' >/dev/null  # cq-peek: an error record
  local readers; readers="$(event_readers)"
  cev-dump --hostname "$WORKER" --type 'task-*' --limit 3 --idle 30 > "$saved" &
  wait_until 20 event_readers_at_least $((readers + 1))
  send_tasks "$BROKER" celery tests.app.add '[3, 3]' >/dev/null
  wait
  local ids; ids="$(send_tasks "$BROKER" celery tests.app.sleep '[30]' 1)"
  wait_until 30 active_sleepers 1
  {
    cq-ls; cq-len; cq-len --watch 1 vocabulary | head -1; cq-peek vocabulary; cq-purge -Q vocabulary --dry-run
    cctl ping; cctl stats; cctl active --each; cctl registered --each; cctl revoke "$ids"; cctl revoked --each
    cev-cam --once --tasks "$saved"
  } > "$out"
  cctl terminate SIGKILL "$ids" >/dev/null
  run support check-records < "$out"
  assert_success
  for type in queue message error reply snapshot task; do grep -q "\"type\":\"$type\"" "$out" || { echo "no $type record"; return 1; }; done
  cq-purge -Q vocabulary -f >/dev/null
}
