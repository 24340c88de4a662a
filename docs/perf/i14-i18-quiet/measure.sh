#!/bin/bash
# Quiet-machine measurements of issues 14 and 18 on the current main.
set -u
cd /work/main
OUT=/work/main/docs/perf/i14-i18-quiet
go build -o /tmp/kd/m/kdsync ./cmd/kdsync && go build -o /tmp/kd/m/kdload ./cmd/kdload || exit 1
L=/tmp/kd/m/kdload; K=/tmp/kd/m/kdsync
run() { name=$1; shift; echo "== $name: $*" >&2; uptime >&2; $L -kdsync $K "$@" > /tmp/kd/m/last.log 2>&1; tail -1 /tmp/kd/m/last.log >> $OUT/$name.jsonl; grep -E "^(throughput|kdsync |NATS\+|quota|machine|retries)" /tmp/kd/m/last.log >&2; }
for i in 1 2; do run quota1000 -events 20800 -users 4000 -sim-latency 20ms -sim-quota 1000; done
run quota-steps -events 40000 -users 8000 -sim-latency 20ms -sim-quota 1000 -sim-quota-steps 15s=300,35s=1000
for i in 1 2; do for lat in 0ms 20ms 100ms; do run nolimit-$lat -events 20800 -users 4000 -sim-latency $lat; done; done
for i in 1 2 3; do run backlog100k -users 20000 -events 100000; done
run users10k -users 10000
for i in 1 2; do run users100k -users 100000; done
echo DONE >&2
