#!/bin/bash
# Fourth sitting (2026-12-07 night): paced calls on a grid (throttle.onTick) and the first
# count of a quota episode (throttle.learnLocked), against the build before them (a44c75d),
# alternating, under a KooDrive quota. Builds to /tmp/kd/s4; raw runs land here.
#   fc-*          learnt quota 1,000/s at 20 ms, 4,000 users, x5 (this script; the final build)
#   qq-*          the same with 32d6f17 (grid, before the first-count cut) as kdsync-q, x5
#   known-rate*   the same with KDSYNC_API_RATE=1000 (no grid), x2
#   qs4-*         quota 1,000 -> 300 -> 1,000/s, 8,000 users (qs3-*: 32d6f17 as kdsync-q)
# Earlier variants, kept for the record (docs/performance.md, "Under a quota, per event"):
# *-tick (10 ms grid for every pace), *-tick2 (grid of the bucket's burst), *-tick5-*, *-late.
# buf{0,20}-*: kdapi's 1 KiB buffers (kdsync-buf) against 4 KiB (kdsync-base, the same tree
# without the two lines in kdapi.newTransport), 100,000 events over 20,000 users.
set -u
cd "$(dirname "$0")/../../.."
OUT=docs/perf/i14-s4
B=/tmp/kd/s4; mkdir -p $B
go build -o $B/kdsync-fc ./cmd/kdsync && go build -o $B/kdload ./cmd/kdload || exit 1
if [ ! -x $B/kdsync-before ]; then
  rm -rf $B/src && git worktree add -q --detach $B/src a44c75d && (cd $B/src && go build -o $B/kdsync-before ./cmd/kdsync) && git worktree remove --force $B/src
fi
run() { name=$1; k=$2; shift 2; echo "== $name ($k): $*" >&2; $B/kdload -kdsync $B/$k "$@" > $B/last.log 2>&1; tail -1 $B/last.log >> $OUT/$name-$k.jsonl; grep -E "^(throughput|kdsync  |NATS\+|quota)" $B/last.log >&2; }
Q="-events 20800 -users 4000 -sim-latency 20ms -sim-quota 1000"
for i in 1 2 3 4 5; do for k in kdsync-fc kdsync-before; do run fc $k $Q; done; done
for i in 1 2; do for k in kdsync-before kdsync-fc; do run known-rate1000 $k $Q -kdsync-env KDSYNC_API_RATE=1000; done; done
for i in 1 2; do for k in kdsync-fc kdsync-before; do run qs4 $k -events 40000 -users 8000 -sim-latency 20ms -sim-quota 1000 -sim-quota-steps 15s=300,35s=1000; done; done
echo DONE >&2
