#!/bin/bash
# users100k, alternating the session's start (6aeff6a) and this build, x3,
# after measure.sh (which builds both to /tmp/kd/s3).
cd "$(dirname "$0")/../../.."
OUT=docs/perf/i14-i18-s3; B=/tmp/kd/s3
for i in 1 2 3; do for k in kdsync-before kdsync; do
  echo "== users100k $k" >&2
  $B/kdload -kdsync $B/$k -users 100000 > $B/ab.log 2>&1; tail -1 $B/ab.log >> $OUT/users100k-$k.jsonl
  grep -E "^(throughput|kdsync  |NATS\+)" $B/ab.log >&2
done; done
echo DONE >&2
