#!/usr/bin/env bats
# cctl as a user runs it: from bin/, in pipes, with shell completion.

setup_file() { load helpers; redis_worker_up; }
teardown_file() { load helpers; redis_worker_down; }

setup() { load helpers; redis_worker_env; }

@test "cctl ping -d: one reply record for the worker, exit 0" {
  run --separate-stderr cctl ping -d "$WORKER"
  assert_success
  assert_output --regexp "^\{\"type\":\"reply\",\"command\":\"ping\",\"hostname\":\"$WORKER\",\"worker\":\"$WORKER\",\"reply\":\{\"ok\":\"pong\"\},\"received\":[0-9.]+\}$"
  [ -z "$stderr" ]
}

@test "cctl status in a database without workers: exit 1, no records, one line on stderr" {
  run --separate-stderr cctl status -b "redis://127.0.0.1:$REDIS_PORT/9" -t 0.3
  assert_failure 1
  assert_output ""
  [ "$stderr" = "cctl: no nodes replied within 0.3s" ]
}

@test "cctl ping -d with a missing worker names it on stderr, as cron sees it (not a terminal)" {
  run --separate-stderr cctl ping -d "$WORKER,ghost@nowhere" -t 0.5
  assert_failure 1
  assert_output --regexp "^\{\"type\":\"reply\",\"command\":\"ping\",\"hostname\":\"$WORKER\""
  [ "$stderr" = "cctl: no reply from ghost@nowhere within 0.5s" ]
}

@test "cctl registered --each | head -1 exits 0 quietly" {
  run --separate-stderr bash -c "set -o pipefail; cctl registered --each -d '$WORKER' | head -1"
  assert_success
  assert_output --partial '"name":"tests.app.add"'
  [ -z "$stderr" ]
}

@test "cctl shutdown without -d or --all is refused before anything is sent" {
  run --separate-stderr cctl shutdown
  assert_failure 2
  [[ "$stderr" == "cctl: error: shutdown would go to every worker"* ]]
  run cctl ping -d "$WORKER"
  assert_success
}

@test "revoke - reads ids from a pipe, bad lines are numbered and give 65" {
  run --separate-stderr bash -c "printf 'id-1\n{\"uuid\":\"id-2\"}\n{oops\n' | cctl revoke - -d '$WORKER'"
  assert_equal "$status" 65
  assert_output --partial "id-1"
  assert_output --partial "id-2"
  [[ "$stderr" == "cctl: <stdin>:3: not JSON: "* ]]
  [ "$(printf '%s\n' "$stderr" | wc -l)" -eq 1 ]
}

@test "bash completion: command names and live worker names for -d" {
  run complete_line cctl cctl rev
  assert_success
  assert_output --partial "revoke"
  assert_output --partial "revoke_by_stamped_headers"
  run complete_line cctl cctl ping -d ''
  assert_success
  assert_output --partial "$WORKER"
}

@test "man cctl renders with its COMMANDS section" {
  run bash -c "MANPAGER=cat MANWIDTH=100 man -l '$ROOT/man/cctl.1'"
  assert_success
  assert_output --partial "revoke_by_stamped_headers KEY=VALUE..."
  assert_output --partial "EXIT STATUS"
}
