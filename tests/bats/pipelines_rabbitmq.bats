#!/usr/bin/env bats
# The pipelines where the broker matters, on a private RabbitMQ vhost: events
# (pipelines 1, 2, 6), cq-peek through the management API feeding revoke (3),
# broadcasts feeding terminate (4) and | head -1 (7).

setup_file() { load helpers; rabbit_worker_up; }
teardown_file() { load helpers; rabbit_worker_down; }
setup() { load helpers; load pipelines; broker_env "$AMQP_URL"; }

@test "rabbitmq pipeline 1: cev-dump --limit N | cev-cam --once counts the tasks that ran" {
  pipeline_dump_to_camera
}

@test "rabbitmq pipeline 2: cev-dump --type task-failed | jq -r .exception" {
  pipeline_failed_exception
}

@test "rabbitmq pipeline 6: cev-cam --once < saved.ndjson equals the live camera's last snapshot" {
  pipeline_replay_equals_live
}

@test "rabbitmq pipeline 3: cq-peek QUEUE | jq select sleep | cctl revoke -: the worker skips them" {
  pipeline_revoke_queued
}

@test "rabbitmq pipeline 4: cctl active --each | jq select sleep | cctl terminate SIGKILL - kills the sleepers" {
  pipeline_terminate_active
}

@test "rabbitmq pipeline 7: cev-dump, cq-len, cctl stats and cq-peek | head -1 exit 0 quietly" {
  pipeline_head_one
}
