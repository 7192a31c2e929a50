# The DropHead study configurations shared by drophead_mt.sh and drophead_cls.sh; source it.
# shellcheck shell=bash

declare -A DROPHEAD_FLAGS=(
  [baseline]=""
  [v_p0.1]="--drophead-p 0.1 --drophead-schedule v"
  [v_p0.2]="--drophead-p 0.2 --drophead-schedule v"
  [constant_p0.1]="--drophead-p 0.1 --drophead-schedule constant"
)
DROPHEAD_CONFIGS="baseline v_p0.1 v_p0.2 constant_p0.1"

# require_drophead_configs CONFIG...: each is a key of DROPHEAD_FLAGS.
require_drophead_configs() {
  local config
  for config in "$@"; do
    [[ -v DROPHEAD_FLAGS[$config] ]] || die "--configs: unknown config '$config' (known: $DROPHEAD_CONFIGS)"
  done
}
