#!/usr/bin/env bats
# README's recipes, one test each, named after the recipe, against a real
# worker on a private Redis. Where a recipe runs forever or from cron, the
# test runs the same pipeline with a stop (--limit) or a small threshold.

# The worker stores its results, extended, in db 1 (for the cres and csend recipes).
setup_file() {
  load helpers; start_redis
  CELOPS_TEST_RESULT_BACKEND="redis://127.0.0.1:$REDIS_PORT/1" CELOPS_TEST_RESULT_EXTENDED=1 start_worker "$REDIS_URL"
}
teardown_file() { load helpers; redis_worker_down; }
setup() { load helpers; redis_worker_env; export CELOPS_RESULT_BACKEND="redis://127.0.0.1:$REDIS_PORT/1"; }

@test "recipe: watching failures live" {
  send_when_reading "$BROKER" celery tests.app.fail '["card declined"]'
  local sender=$!
  run --separate-stderr bash -c "set -o pipefail; cev-dump --type task-failed --limit 1 --idle 30 | jq -r '[.hostname, .name, .uuid, .exception] | @tsv'"
  wait "$sender"
  assert_success
  assert_output --regexp "^$WORKER	tests\.app\.fail	[0-9a-f-]{36}	ValueError\('card declined'\)$"
}

@test "recipe: alerting from cron on a queue length" {
  send_tasks "$BROKER" video tests.app.add '[1, 1]' 4 >/dev/null
  run --separate-stderr bash -c "cq-len --max 3 video > /dev/null || echo 'video is backing up' >&2"
  assert_success
  assert_equal "$stderr" "cq-len: queue 'video' holds more than 3 messages"$'\n'"video is backing up"
  run --separate-stderr bash -c "cq-len --max 100 video > /dev/null || echo 'video is backing up' >&2"
  assert_success
  [ -z "$stderr" ]
  cq-purge -Q video -f >/dev/null
}

@test "recipe: a node_exporter textfile" {
  send_tasks "$BROKER" video tests.app.add '[1, 1]' 2 >/dev/null
  local prom="$BATS_TEST_TMPDIR/celery_queues.prom"
  run --separate-stderr cq-len --textfile "$prom"
  assert_success
  assert_output ""
  grep -qx 'celery_queue_length{queue="video"} 2.0' "$prom"
  grep -qx '# TYPE celery_queue_length gauge' "$prom"
  cq-purge -Q video -f >/dev/null
}

@test "recipe: revoking all queued tasks of one type" {
  local sleepers; sleepers="$(send_tasks "$BROKER" video tests.app.sleep '[60]' 2)"
  local adder; adder="$(send_tasks "$BROKER" video tests.app.add '[1, 1]')"
  run --separate-stderr bash -c "cq-peek video -n 0 | jq -c 'select(.task==\"tests.app.sleep\")' | cctl revoke -"
  assert_success
  assert_output --regexp '^\{"type":"reply","command":"revoke",.*flagged as revoked"'
  run cctl revoked --each
  local id
  for id in $sleepers; do assert_output --partial "\"uuid\":\"$id\""; done
  refute_output --partial "$adder"
  cq-purge -Q video -f >/dev/null
}

@test "recipe: a nightly SQLite history with retention" {
  local events="$BATS_TEST_TMPDIR/events-today.ndjson" db="$BATS_TEST_TMPDIR/history.db"
  local readers; readers="$(event_readers)"
  cev-dump --no-heartbeats --duration 4 > "$events" &
  wait_until 20 event_readers_at_least $((readers + 1))
  send_tasks "$BROKER" celery tests.app.add '[1, 2]' 3 >/dev/null
  send_tasks "$BROKER" celery tests.app.fail '["nightly"]' >/dev/null
  wait
  # last night's run left a snapshot that is now 40 days old
  : > "$BATS_TEST_TMPDIR/no-events.ndjson"
  cev-cam --once --sink sqlite --database "$db" "$BATS_TEST_TMPDIR/no-events.ndjson"
  sqlite3 "$db" "UPDATE snapshots SET timestamp = timestamp - 40 * 86400"

  run --separate-stderr cev-cam --once --sink sqlite --database "$db" --retain 30 "$events"
  assert_success
  assert_output ""
  run sqlite3 "$db" "SELECT name, state, count(*) FROM tasks GROUP BY name, state ORDER BY name"
  assert_output $'tests.app.add|SUCCESS|3\ntests.app.fail|FAILURE|1'
  run sqlite3 "$db" "SELECT count(*) FROM snapshots"
  assert_output 1
}

@test "recipe: finding a stuck worker" {
  cctl ping | jq -r .hostname > "$BATS_TEST_TMPDIR/workers.txt"
  local sleeper; sleeper="$(send_tasks "$BROKER" celery tests.app.sleep '[30]')"
  wait_until 30 bash -c "cctl active --each | jq -r --argjson s 1 'select(now - .time_start > \$s) | [.hostname, .uuid, .name, (now - .time_start | floor)] | @tsv' | grep -q '$sleeper'"
  cctl revoke --terminate --signal KILL "$sleeper" >/dev/null

  kill -STOP -- "-$WORKER_PID"
  run --separate-stderr bash -c "cctl ping -d \"\$(paste -sd, '$BATS_TEST_TMPDIR/workers.txt')\" -t 2 | jq -r .hostname | grep -vxFf - '$BATS_TEST_TMPDIR/workers.txt'"
  kill -CONT -- "-$WORKER_PID"
  assert_success
  assert_output "$WORKER"
}

@test "recipe: paging on the cluster's health" {
  send_tasks "$BROKER" reports tests.app.add '[1, 1]' 2 >/dev/null
  run --separate-stderr bash -c "ccheck | jq -r '[.severity, .check, .subject, .hint] | @tsv'"
  assert_success
  assert_output $'crit\tqueues.consumers\treports\tstart a worker with -Q reports, or cctl add_consumer reports; cq-peek reports shows what waits'
  run --separate-stderr ccheck
  assert_equal "$status" 3
  run bash -c "ccheck > '$BATS_TEST_TMPDIR/out' || [ \$? -lt 3 ] || echo paged"
  assert_output paged
  cq-purge -Q reports -f >/dev/null
  run --separate-stderr ccheck
  assert_success
  assert_output ""
}

# failed_results N: true once the backend holds N failed results of tests.app.fail.
failed_results() { [ "$(cres --count --state FAILURE --name tests.app.fail | jq -s 'map(.count) | add // 0')" -eq "$1" ]; }

@test "recipe: re-running the failed tasks" {
  cres --state FAILURE --forget -f >/dev/null
  send_tasks "$BROKER" celery tests.app.fail '["card declined"]' >/dev/null
  send_tasks "$BROKER" celery tests.app.fail '["card expired"]' >/dev/null
  wait_until 30 failed_results 2
  run --separate-stderr bash -c "cres --state FAILURE --since 1h | jq -r '[.name, (.args | tostring), .result.exc_type] | @tsv' | sort"
  assert_success
  assert_output $'tests.app.fail\t["card declined"]\tValueError\ntests.app.fail\t["card expired"]\tValueError'
  run --separate-stderr bash -c "set -o pipefail; cres --state FAILURE --name 'tests.app.*' | csend - > '$BATS_TEST_TMPDIR/sent.ndjson'"
  assert_success
  # the re-sent tasks ran with their original arguments (and failed the same way)
  wait_until 30 failed_results 4
  run bash -c "cres - < '$BATS_TEST_TMPDIR/sent.ndjson' | jq -c '[.state, .args]' | sort"
  assert_output $'["FAILURE",["card declined"]]\n["FAILURE",["card expired"]]'
}

@test "recipe: setting slow tasks aside" {
  local sleeper; sleeper="$(send_tasks "$BROKER" video tests.app.sleep '[60]')"
  local adder; adder="$(send_tasks "$BROKER" video tests.app.add '[1, 1]')"
  run --separate-stderr bash -c "cq-peek video -n 0 | jq -c 'select(.task==\"tests.app.sleep\")' | cq-move -Q video --to video-slow -f - | jq -c '[.uuid, .moved_to, .moved]'"
  assert_success
  assert_equal "$output" "[\"$sleeper\",\"video-slow\",null]"$'\n'"[null,null,1]"
  run cq-peek video-slow -n 0
  assert_output --partial "\"uuid\":\"$sleeper\""
  run cq-peek video -n 0
  refute_output --partial "$sleeper"
  cq-purge -Q video,video-slow -f >/dev/null
}
