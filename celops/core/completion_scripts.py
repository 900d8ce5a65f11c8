"""The shell completion helpers that every command's bash and zsh script shares (shtab's preamble), and the
names of the completers an option may ask for (``complete_with``)."""

# Completion helpers, shared by the bash and zsh scripts of every command. Live
# names come from cq-ls and cctl ping on the broker the line names (-b, -A), else
# the default one; `timeout` and the commands' own -t keep a dead broker from
# hanging the shell. A comma-separated list (-d w1@h,<TAB>) completes its last name.
_COMPLETION_BASH = r"""
# bash splits words at : = @ too (COMP_WORDBREAKS): shtab's parser must see the words as typed
# (-b redis://h:6379/0, -d w1@h,w2@h), and the answers must replace only what readline replaces:
# the text after the last break character, or from an @ on (readline's host name completion).
_celops_rejoined() {
  local line="${COMP_LINE:0:COMP_POINT}" offset=0 start i
  local -a typed=()
  for ((i = 0; i <= COMP_CWORD; i++)); do
    start=$offset
    while [[ "${line:offset:1}" == [[:space:]] ]]; do ((offset++)); done
    if ((i > 0 && offset == start)); then typed[-1]+="${COMP_WORDS[i]}"; else typed+=("${COMP_WORDS[i]}"); fi
    ((offset += ${#COMP_WORDS[i]}))
  done
  local piece="${typed[-1]##*["$COMP_WORDBREAKS"]}"
  local before="${typed[-1]:0:${#typed[-1]}-${#piece}}"
  before="${before%@}"
  local -a COMP_WORDS=("${typed[@]}"); local COMP_CWORD=$((${#typed[@]} - 1))
  "_shtab_${1//-/_}" "$1" "${typed[-1]}" "${typed[-2]}"
  [ -z "$before" ] || COMPREPLY=("${COMPREPLY[@]#"$before"}")
}
_celops_line_broker() {
  local -a words; local i word
  read -ra words <<< "${COMP_LINE:0:COMP_POINT}"
  for ((i = 1; i < ${#words[@]}; i++)); do
    word="${words[i]}"
    case "$word" in
      -b|--broker|-A|--app) ((i + 1 < ${#words[@]})) || continue; printf '%s\n' "$word"; ((i++)); word="${words[i]}" ;;
      --broker=*|--app=*|-b?*|-A?*) ;;
      *) continue ;;
    esac
    word="${word#[\"\']}"; printf '%s\n' "${word%[\"\']}"
  done
}
_celops_live() {
  command -v "$1" >/dev/null 2>&1 || return 0
  local -a given; mapfile -t given < <(_celops_line_broker)
  timeout 3 "$1" "${given[@]}" "${@:2}" --format ndjson 2>/dev/null |
    sed -n "s/.*\"$_celops_field\":\"\([^\"]*\)\".*/\1/p"
}
_celops_offer() {
  local head="" word="$1" IFS=$'\n' candidate
  [[ "$word" == *,* ]] && head="${word%,*}," word="${word##*,}"
  for candidate in $(compgen -W "$2" -- "$word"); do printf '%s\n' "$head$candidate"; done
}
_celops_queues() { local _celops_field=queue; _celops_offer "$1" "$(_celops_live cq-ls -t 1)"; }
_celops_workers() { local _celops_field=hostname; _celops_offer "$1" "$(_celops_live cctl ping -t 1)"; }
_celops_event_types() { _celops_offer "$1" "EVENT_TYPES"; }
"""
_COMPLETION_ZSH = r"""
_celops_line_broker() {
  local i
  for (( i = 2; i < CURRENT; i++ )); do
    case $words[i] in
      -b|--broker|-A|--app) print -rl -- $words[i] ${(Q)words[i+1]}; (( i++ )) ;;
      --broker=*|--app=*|-b?*|-A?*) print -rl -- ${(Q)words[i]} ;;
    esac
  done
}
_celops_live() {
  (( $+commands[$1] )) || return 0
  local -a given; given=(${(f)"$(_celops_line_broker)"})
  timeout 3 "$1" "${given[@]}" "${@:2}" --format ndjson 2>/dev/null |
    sed -n "s/.*\"$_celops_field\":\"\([^\"]*\)\".*/\1/p"
}
_celops_offer() {
  local what=$1; shift
  (( $# )) || return 1
  _values -s , $what "${(@)${(@)${(@)@//\\/\\\\}//:/\\:}//\[/\\[}"
}
_celops_queues() { local _celops_field=queue; _celops_offer queue ${(f)"$(_celops_live cq-ls -t 1)"}; }
_celops_workers() { local _celops_field=hostname; _celops_offer worker ${(f)"$(_celops_live cctl ping -t 1)"}; }
_celops_event_types() { _celops_offer 'event type' EVENT_TYPES; }
"""
QUEUE_NAMES = {"bash": "_celops_queues", "zsh": "_celops_queues"}
WORKER_NAMES = {"bash": "_celops_workers", "zsh": "_celops_workers"}
EVENT_TYPE_NAMES = {"bash": "_celops_event_types", "zsh": "_celops_event_types"}


def completion_preamble():
    """The helpers above, by shell, with the event types of the vocabulary filled in (for shtab's preamble)."""
    from celops.records import EVENT_TYPES

    return {"bash": _COMPLETION_BASH.replace("EVENT_TYPES", "\n".join(EVENT_TYPES)),
            "zsh": _COMPLETION_ZSH.replace("EVENT_TYPES", " ".join(EVENT_TYPES))}


def complete_with(action, completer):
    """Attach a completer (QUEUE_NAMES, WORKER_NAMES, EVENT_TYPE_NAMES) to an argparse action."""
    action.complete = completer
    return action
