# The DropHead settings of the studies (drophead_mt.sh, drophead_cls.sh), put on top of the
# tuned dropout; source it.
# shellcheck shell=bash

declare -A DROPHEAD_FLAGS=(
  [v_p0.1]="--drophead-p 0.1 --drophead-schedule v"
  [v_p0.2]="--drophead-p 0.2 --drophead-schedule v"
)
