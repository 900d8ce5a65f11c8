#!/usr/bin/env bats
# The queue tools as a shell user and cron run them: pipes, exit statuses, files.

setup_file() {
  load helpers
  start_redis
  start_vhost
  publish() {
    (cd "$ROOT" && "$PY" -c "import sys; from tests.queue_support import publish
for i in publish(sys.argv[1], [(q, p, (p, 1)) for q in sys.argv[2:] for p in range(10)]): print(i)" "$@")
  }
  publish "$REDIS_URL" "bats one" "bats twö" > "$BATS_FILE_TMPDIR/redis-ids"
  publish "$AMQP_URL" bats-rabbit > "$BATS_FILE_TMPDIR/amqp-ids"
}

teardown_file() {
  load helpers
  stop_redis
  stop_vhost
}

setup() { load helpers; }

@test "cq-ls | cq-len - measures every listed queue" {
  run --separate-stderr bash -c "cq-ls -b '$REDIS_URL' | cq-len -b '$REDIS_URL' - | jq -c '[.queue, .messages]'"
  assert_success
  assert_line '["bats one",10]'
  assert_line '["bats twö",10]'
  refute_line --partial celery  # listed only when it exists
  [ -z "$stderr" ]
}

@test "cq-peek | jq -r .uuid gives back the ids sent, and | head -1 exits 0 quietly" {
  run --separate-stderr bash -c "cq-peek -b '$REDIS_URL' 'bats one' -n 0 | jq -r .uuid | sort"
  assert_success
  [ "$output" = "$(sed -n 1,10p "$BATS_FILE_TMPDIR/redis-ids" | sort)" ]
  run --separate-stderr bash -c "set -o pipefail; cq-peek -b '$REDIS_URL' 'bats one' | head -1"
  assert_success
  assert_output --partial '"type":"message"'
  [ -z "$stderr" ]
}

@test "cq-len --max alerts from cron with exit 1; --textfile writes the Prometheus file" {
  run --separate-stderr cq-len -b "$REDIS_URL" --max 9 "bats one"
  assert_failure 1
  [[ "$stderr" == *"holds more than 9 messages"* ]]
  run cq-len -b "$REDIS_URL" --max 10 "bats one"
  assert_success
  run cq-len -b "$REDIS_URL" --textfile "$BATS_FILE_TMPDIR/celery.prom" "bats one"
  assert_success
  assert_output ""
  grep -qx 'celery_queue_length{queue="bats one"} 10.0' "$BATS_FILE_TMPDIR/celery.prom"
}

@test "a typo in a cron job's queue name fires: unknown queue, exit 1, on both brokers" {
  for url in "$REDIS_URL" "$AMQP_URL"; do
    run --separate-stderr cq-len -b "$url" --max 3 typoqueue
    assert_failure 1
    assert_output ""
    [[ "$stderr" == "cq-len: unknown queue 'typoqueue' ("*")" ]]
    run --separate-stderr cq-purge -b "$url" -f -Q typoqueue </dev/null
    assert_failure 1
    [[ "$stderr" == "cq-purge: unknown queue 'typoqueue' ("*")" ]]
  done
}

@test "cq-purge refuses without a TTY (exit 2), purges with -f, leaves other queues" {
  run --separate-stderr cq-purge -b "$REDIS_URL" -Q "bats twö" </dev/null
  assert_failure 2
  [[ "$stderr" == "cq-purge: error: refusing to purge without a terminal"* ]]
  run cq-purge -b "$REDIS_URL" -Q "bats twö" -f </dev/null
  assert_success
  assert_output '{"type":"queue","queue":"bats twö","purged":10}'
  run bash -c "cq-len -b '$REDIS_URL' 'bats one' 'bats twö' | jq -c .messages"
  assert_output $'10\n0'
}

@test "RabbitMQ: cq-len falls back to passive declare without the management API" {
  run --separate-stderr cq-len -b "$AMQP_URL" --management-url http://127.0.0.1:1 -t 2 bats-rabbit
  assert_success
  assert_output '{"type":"queue","queue":"bats-rabbit","messages":10,"ready":10,"unacked":null,"consumers":0,"memory":null,"by_priority":null,"source":"amqp","stats_age":null}'
  [[ "$stderr" == *"counting by passive queue_declare only"* ]]
  run bash -c "cq-peek -b '$AMQP_URL' bats-rabbit -n 3 | jq -r .uuid"
  assert_output "$(sed -n 1,3p "$BATS_FILE_TMPDIR/amqp-ids")"
}

@test "queue names complete live from cq-ls, one candidate per queue even with spaces" {
  export CELOPS_BROKER_URL="$REDIS_URL"
  run complete_line cq-len cq-len "bats o"
  assert_output $'bats one'
  run complete_line cq-peek cq-peek bats
  assert_output $'bats one\nbats twö'
  run complete_line cq-purge cq-purge -Q "bats t"
  assert_output $'bats twö'
}
