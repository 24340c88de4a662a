#!/bin/bash
# Third sitting (2026-12-07 evening): issues 14 and 18 on this session's main,
# alternating with the session's starting point (6aeff6a) where a before/after
# is wanted. Builds to /tmp/kd/s3; raw runs (one JSON line each) land here.
set -u
cd "$(dirname "$0")/../../.."
OUT=docs/perf/i14-i18-s3
B=/tmp/kd/s3; mkdir -p $B
go build -o $B/kdsync ./cmd/kdsync && go build -o $B/kdload ./cmd/kdload || exit 1
if [ ! -x $B/kdsync-before ]; then
  rm -rf $B/src && git worktree add -q --detach $B/src 6aeff6a && (cd $B/src && go build -o $B/kdsync-before ./cmd/kdsync) && git worktree remove --force $B/src
fi
L=$B/kdload
run() { name=$1; k=$2; shift 2; echo "== $name ($k): $*" >&2; $L -kdsync $B/$k "$@" > $B/last.log 2>&1; tail -1 $B/last.log >> $OUT/$name.jsonl; grep -E "^(throughput|kdsync  |NATS\+|quota|per event)" $B/last.log >&2; }
for i in 1 2 3; do for k in kdsync-before kdsync; do run backlog100k-$k $k -users 20000 -events 100000; done; done
for i in 1 2; do for k in kdsync-before kdsync; do run users100k-$k $k -users 100000; done; done
for i in 1 2 3; do for lat in 20ms 0ms; do run nolimit-$lat kdsync -events 20800 -users 4000 -sim-latency $lat; done; done
for i in 1 2; do run nolimit-100ms kdsync -events 20800 -users 4000 -sim-latency 100ms; done
for i in 1 2; do run quota1000 kdsync -events 20800 -users 4000 -sim-latency 20ms -sim-quota 1000; done
run quota-steps kdsync -events 40000 -users 8000 -sim-latency 20ms -sim-quota 1000 -sim-quota-steps 15s=300,35s=1000
run backlog100k-profiled kdsync -users 20000 -events 100000 -cpuprofile $B/load-20k.prof
run users100k-profiled kdsync -users 100000 -cpuprofile $B/load-100k.prof
if [ -z "${SKIP_1M:-}" ]; then run users1m kdsync -users 1000000 -rss-out $OUT/rss-1m.tsv -timeout 100m -cpuprofile $B/load-1m.prof; fi
echo DONE >&2
