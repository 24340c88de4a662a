#!/bin/bash
# Fourth sitting (2026-12-07 night): paced calls on a 10 ms grid (throttle.onTick),
# against the build before it (a44c75d), alternating, under a KooDrive quota.
# Builds to /tmp/kd/s4; raw runs (one JSON line each) land here.
set -u
cd "$(dirname "$0")/../../.."
OUT=docs/perf/i14-s4
B=/tmp/kd/s4; mkdir -p $B
go build -o $B/kdsync-tick ./cmd/kdsync && go build -o $B/kdload ./cmd/kdload || exit 1
if [ ! -x $B/kdsync-before ]; then
  rm -rf $B/src && git worktree add -q --detach $B/src a44c75d && (cd $B/src && go build -o $B/kdsync-before ./cmd/kdsync) && git worktree remove --force $B/src
fi
run() { name=$1; k=$2; shift 2; echo "== $name ($k): $*" >&2; $B/kdload -kdsync $B/$k "$@" > $B/last.log 2>&1; tail -1 $B/last.log >> $OUT/$name-$k.jsonl; grep -E "^(throughput|kdsync  |NATS\+|quota)" $B/last.log >&2; }
for i in 1 2 3; do for k in kdsync-before kdsync-tick; do run quota1000 $k -events 20800 -users 4000 -sim-latency 20ms -sim-quota 1000; done; done
for k in kdsync-before kdsync-tick; do run quota-steps $k -events 40000 -users 8000 -sim-latency 20ms -sim-quota 1000 -sim-quota-steps 15s=300,35s=1000; done
for k in kdsync-before kdsync-tick; do run rate1000 $k -events 20000 -users 4000 -rate 1000; done
echo DONE >&2
