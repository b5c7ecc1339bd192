#!/usr/bin/env bash
# Several GPU bursts side by side on one lent GPU, the best one kept (train/README.md, "GPU burst").
#
#   bash train/gpu-arms.sh OUT 'NAME=FLAGS' 'NAME=FLAGS' ... [-- COMMON FLAGS]
#   e.g. bash train/gpu-arms.sh $OUT/arms 'line=' 'drop=--dropout 0.1' -- --budget 420 --keep-best
#
# Each arm is train/gpu-burst.sh with the common flags and its own, into OUT/arm-NAME, its output
# in OUT/arm-NAME.log; all start together and share the GPU (a small model leaves it idle between
# kernels, so arms cost each other less than their count). When all have ended,
# `python -m free_train.burst pick OUT` moves the arm whose set validated lowest on the deep exit
# to OUT/burst and deletes the other arms' parts: OUT/burst and the logs come back whole.
# A signal stops every arm (each saves, as a lone burst does).
set -uo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: bash train/gpu-arms.sh OUT 'NAME=FLAGS' ... [-- COMMON FLAGS]" >&2; exit 2; }
out=$1; shift
arms=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do arms+=("$1"); shift; done
[ $# -gt 0 ] && shift
mkdir -p "$out"
pids=()
for arm in "${arms[@]}"; do
  name=${arm%%=*}
  case "$name" in ''|*[!A-Za-z0-9_.-]*) echo "gpu-arms.sh: arm name '$name' must be letters, digits, '.', '_' or '-'" >&2; exit 2 ;; esac
  read -r -a flags <<<"${arm#*=}"
  bash train/gpu-burst.sh "$@" ${flags[@]+"${flags[@]}"} --out "$out/arm-$name" >"$out/arm-$name.log" 2>&1 &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
rc=0
for i in "${!pids[@]}"; do
  # a trapped signal ends `wait` early: wait again until the arm has really ended
  while wait "${pids[$i]}"; st=$?; kill -0 "${pids[$i]}" 2>/dev/null; do :; done
  [ "$st" -eq 0 ] || { echo "arm ${arms[$i]%%=*} failed (exit $st); the end of its log:"; tail -n 15 "$out/arm-${arms[$i]%%=*}.log"; rc=1; }
done
PYTHONPATH="$PWD/train${PYTHONPATH:+:$PYTHONPATH}" "${PYTHON:-python3}" -m free_train.burst pick "$out" || rc=1
exit $rc
