#!/usr/bin/env bats
# Shell completion as a user meets it: an interactive bash in tmux, with TAB pressed,
# and the completion functions driven directly; the broker is the one the line names.

load helpers

setup_file() {
  redis_worker_up
  send_tasks "$REDIS_URL" only-on-the-private-broker tests.app.add '[1, 1]' >/dev/null
}

teardown_file() { redis_worker_down; }

# The default broker is a closed port: whatever completes came from the -b on the line.
# Each test has a tmux server of its own.
setup() { export CELOPS_BROKER_URL=redis://127.0.0.1:1/0 TMUX_SOCKET="celops-bats-$$-$BATS_TEST_NUMBER"; }
teardown() { tmux -L "$TMUX_SOCKET" kill-server 2>/dev/null || true; }

# typed_in_bash LINE: an interactive bash with every celops completion loaded, LINE typed and TAB pressed twice.
typed_in_bash() {
  tmux -L "$TMUX_SOCKET" new-session -d -x 250 -y 50 \
    "env -i HOME=$HOME TERM=xterm PATH=$PATH CELOPS_BROKER_URL=$CELOPS_BROKER_URL bash --norc --noprofile"
  tmux -L "$TMUX_SOCKET" send-keys "PS1='$ '; for f in $ROOT/completions/bash/*; do source \$f; done; clear" Enter
  tmux -L "$TMUX_SOCKET" send-keys "$1" Tab Tab
}
screen_shows() { tmux -L "$TMUX_SOCKET" capture-pane -p | grep -qF -- "$1"; }

@test "bash, for real: queues complete from the broker given with -b on the same line, URL colons and all" {
  typed_in_bash "cq-len -b $REDIS_URL only-"
  wait_until 15 screen_shows "cq-len -b $REDIS_URL only-on-the-private-broker"
}

@test "bash, for real: worker names complete after a comma in -d, from --broker=URL" {
  typed_in_bash "cctl ping --broker=$REDIS_URL -d nobody@nowhere,"
  wait_until 15 screen_shows "-d nobody@nowhere,$WORKER"
}

@test "the broker of the line wins over the default; -A counts too" {
  run complete_line cq-len cq-len -b "$REDIS_URL" only
  assert_output only-on-the-private-broker
  run complete_line cq-len cq-len only
  assert_output ""
  run complete_line cq-len cq-len -A no_such_module_celops only
  assert_output ""
}

@test "cev-dump --type completes celery's event types, also after a comma" {
  run complete_line cev-dump cev-dump --type task-s
  assert_output $'task-sent\ntask-started\ntask-succeeded'
  run complete_line cev-dump cev-dump --type task-failed,worker-o
  assert_output $'task-failed,worker-online\ntask-failed,worker-offline'
}

@test "celops-completion prints what wires every command into bash and zsh" {
  run bash -c 'eval "$(celops-completion bash)" && complete -p cq-len cctl cev-dump'
  assert_success
  assert_output --partial "complete -o bashdefault -F _celops_rejoined cctl"
  run celops-completion zsh
  assert_success
  assert_output --partial "compdef _shtab_cq_len -N cq-len"
  run zsh -n <(celops-completion zsh)
  assert_success
  run zsh -f -c 'autoload -U compinit; compinit -u -d "$1/zcompdump"; eval "$(celops-completion zsh)"; print -- $_comps[cq-len] $_comps[cctl]' _ "$BATS_TEST_TMPDIR"
  assert_output "_shtab_cq_len _shtab_cctl"
}
