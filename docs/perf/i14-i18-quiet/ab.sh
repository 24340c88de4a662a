#!/bin/bash
cd /work/main
OUT=/work/main/docs/perf/i14-i18-quiet
L=/tmp/kd/m/kdload
for i in 1 2; do
  for b in before after; do
    K=/tmp/kd/m/kdsync; [ $b = before ] && K=/tmp/kd/m/kdsync-before
    echo "== $b backlog100k" >&2; $L -kdsync $K -users 20000 -events 100000 > /tmp/kd/m/ab.log 2>&1; tail -1 /tmp/kd/m/ab.log >> $OUT/ab-backlog100k-$b.jsonl; grep -E "^(throughput|kdsync  |machine)" /tmp/kd/m/ab.log >&2
    echo "== $b users100k" >&2; $L -kdsync $K -users 100000 > /tmp/kd/m/ab.log 2>&1; tail -1 /tmp/kd/m/ab.log >> $OUT/ab-users100k-$b.jsonl; grep -E "^(throughput|kdsync  |machine)" /tmp/kd/m/ab.log >&2
  done
done
echo DONE >&2
