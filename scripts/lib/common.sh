# Shared helpers of the bash pipelines; source it, do not run it.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
# shellcheck disable=SC2034  # for the scripts that source this
PY=$VENV/bin/python
USER_DIR=$ROOT/fairseq_compress
# The venv's tools, unless the caller's PATH holds the venv already: then its order stands
# (the test suite puts shims of the fairseq tools in front, tests/cli_server.py).
[[ :$PATH: == *":$VENV/bin:"* ]] || export PATH=$VENV/bin:$PATH

die() { echo "error: $*" >&2; exit 2; }
log() { echo "[$(basename "$0")] $*" >&2; }

# parse_args USAGE SPEC ARGS...: the command line of a pipeline script.
# SPEC lists "--flag=VAR" (takes a value), "--flag=VAR?" (a switch: VAR=1) and
# "--" (arguments after -- go to EXTRA). --force sets FORCE=1, -h prints USAGE;
# everything else lands in POSITIONAL.
# shellcheck disable=SC2034  # POSITIONAL and EXTRA are the caller's
parse_args() {
  local usage=$1 spec=$2 item
  shift 2
  local -A var_of=()
  for item in $spec; do var_of[${item%%=*}]=${item#*=}; done
  POSITIONAL=() EXTRA=()
  while (($#)); do
    case $1 in
      --force) FORCE=1; shift ;;
      -h|--help) echo "$usage"; exit 0 ;;
      --)
        [[ -n ${var_of[--]:-} ]] || die "unexpected --; $usage"
        shift; EXTRA=("$@"); break ;;
      -*)
        local var=${var_of[$1]:-}
        [[ -n $var ]] || die "unknown option $1; $usage"
        if [[ $var == *\? ]]; then
          printf -v "${var%\?}" 1; shift
        else
          (($# >= 2)) || die "$1 needs a value; $usage"
          printf -v "$var" '%s' "$2"; shift 2
        fi ;;
      *) POSITIONAL+=("$1"); shift ;;
    esac
  done
}

require_dir() { [[ -d $1 ]] || die "$2 '$1' is not a directory"; }

# input_file DIR NAME: DIR/NAME or DIR/NAME.gz, whichever exists.
input_file() {
  local dir=$1 name=$2
  for f in "$dir/$name" "$dir/$name.gz"; do
    [[ -f $f ]] && { echo "$f"; return 0; }
  done
  return 1
}

require_input() {
  input_file "$1" "$2" || die "missing $1/$2 (or $2.gz)"
}

# Print a plain or gzip-compressed file.
read_text() { if [[ $1 == *.gz ]]; then gzip -dc "$1"; else cat "$1"; fi; }

line_count() { read_text "$1" | wc -l; }

# Output directories are built in a temporary sibling and moved into place at
# the end, so an interrupted run never leaves half an OUT. A finished OUT holds
# a stamp of the inputs and options it was built from: rerunning with the same
# ones is a no-op, with other ones it needs FORCE=1 (or --force).
#
# begin_output OUT STAMP_TEXT -> returns 1 when OUT is already up to date.
begin_output() {
  local out=$1 stamp=$2
  if [[ -e $out ]]; then
    if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" && ${FORCE:-0} != 1 ]]; then
      log "$out is up to date (same inputs and options); nothing to do"
      return 1
    fi
    [[ ${FORCE:-0} == 1 ]] || die "$out already exists and was not built from these inputs/options; pass --force or FORCE=1 to rebuild it"
  fi
  STAGING="$out.tmp.$$"
  rm -rf "$STAGING"
  mkdir -p "$STAGING"
  trap 'rm -rf "$STAGING"' EXIT
  return 0
}

finish_output() {
  local out=$1 stamp=$2
  echo "$stamp" > "$STAGING/.stamp"
  if [[ -e $out ]]; then
    mv "$out" "$out.old.$$"
    mv "$STAGING" "$out"
    rm -rf "$out.old.$$"
  else
    mv "$STAGING" "$out"
  fi
  trap - EXIT
}

# A description of input files (base name, size, mtime) for stamps: the same
# files named by a relative or an absolute path describe the same.
describe_inputs() { for f in "$@"; do echo "$(basename "$f") $(stat -c '%s %Y' "$f")"; done; }

# run_training SAVE_DIR FAIRSEQ_TRAIN_CMD...: train into SAVE_DIR, which
# remembers the command that trained it: the same command again resumes (or
# does nothing when finished); another one needs FORCE=1 (or --force).
run_training() {
  local save_dir=$1; shift
  local stamp
  stamp=$(printf '%q ' "$@")
  # The plugin's path (only it: data and save dir may lie inside the checkout too) as the literal
  # text $ROOT/fairseq_compress: a run resumes from another checkout of the repo.
  # shellcheck disable=SC2016
  stamp=${stamp//"$USER_DIR"/'$ROOT/fairseq_compress'}
  if [[ -e $save_dir ]]; then
    if [[ ${FORCE:-0} == 1 ]]; then
      rm -rf "$save_dir"
    elif [[ ! -f $save_dir/.train_command || $(cat "$save_dir/.train_command") != "$stamp" ]]; then
      die "$save_dir already exists and holds another run; pass --force or FORCE=1 to replace it"
    elif [[ -f $save_dir/.done ]]; then
      log "$save_dir already holds this finished run; nothing to do"
      return 0
    else
      log "resuming the unfinished run in $save_dir"
    fi
  fi
  mkdir -p "$save_dir"
  echo "$stamp" > "$save_dir/.train_command"
  log "training -> $save_dir (log: $save_dir/train.log)"
  # On failure show the last lines that are not INFO (fairseq dumps its whole config at INFO).
  "$@" >> "$save_dir/train.log" 2>&1 \
    || { grep -v '| INFO |' "$save_dir/train.log" | tail -n 5 >&2; die "fairseq-train failed (log: $save_dir/train.log)"; }
  touch "$save_dir/.done"
  log "$(grep -E '\| train \|' "$save_dir/train.log" | tail -n 1)"
}

# require_arch ARCH HINT: ARCH is a registered fairseq architecture.
require_arch() {
  # fairseq-train's own --arch choices, with the plugin's: its --help exits 0 only for a registered one.
  fairseq-train --user-dir "$USER_DIR" --arch "$1" --help >/dev/null 2>&1 \
    || die "--arch $1 is not a registered architecture ($2)"
}

# recipe_args NAME: RECIPE = the fairseq-train flags of the recipe fairseq_compress/config/NAME.yaml
# (fairseq_compress/recipes.py); a script's own flags, given after them, override them.
# shellcheck disable=SC2034  # RECIPE is the caller's
recipe_args() {
  local flags
  flags=$("$PY" "$USER_DIR/recipes.py" args "$1") || exit 2
  mapfile -t RECIPE <<< "$flags"
}
# set_overrides FLAG VALUE ...: OVERRIDES = the FLAG VALUE pairs whose VALUE is set (the
# pipeline's options, placed after the recipe's flags: argparse keeps the last).
# shellcheck disable=SC2034  # OVERRIDES is the caller's
set_overrides() {
  OVERRIDES=()
  while (($#)); do
    [[ -n $2 ]] && OVERRIDES+=("$1" "$2")
    shift 2
  done
}
# recipe_value NAME GROUP.FIELD: one value of the recipe NAME.
recipe_value() { "$PY" "$USER_DIR/recipes.py" value "$1" "$2" || exit 2; }

# set_budget MINUTES TASK: BUDGET = the fairseq-train flags of a budget of MINUTES
# of training time ('' = none): the plugin's TASK_timed task, which stops after
# MINUTES with validation and checkpoint saving not counted, and writes
# SAVE_DIR/curve.jsonl. fairseq's --stop-time-hours would count them.
# shellcheck disable=SC2034  # BUDGET is the caller's
set_budget() {
  BUDGET=()
  [[ -z $1 ]] && return 0
  # 0 (or 0.00) would be no budget at all: with --max-update 0, a run that never stops
  [[ $1 =~ ^[0-9]+([.][0-9]+)?$ && $1 =~ [1-9] ]] || die "--minutes must be a positive number, got '$1'"
  BUDGET=(--task "$2_timed" --stop-time-minutes "$1")
}
