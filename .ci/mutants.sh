#!/usr/bin/env bash
# .ci/mutants.sh: the tests can fail. Each mutant below is a deliberate
# breakage of kdsync, applied to a scratch copy of the working tree (the
# checkout itself is never touched); the tests named with it must each FAIL
# on it (a "--- FAIL" line, not a build error or a timeout of the run). A
# mutant whose code no longer matches (after a refactor) is an error too:
# update its pattern. The table of breakages and the tests that catch them
# is in docs/reliability.md ("Mutation checks").
#
#   bash .ci/mutants.sh            # all mutants
#   bash .ci/mutants.sh fence      # those whose name contains "fence"
#
# .ci/run runs it after the test suite. Tests run without -race (what they
# check does not depend on it, and it keeps the run short).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:$(go env GOPATH)/bin"
only=${1:-}
start=$(date +%s)

scratch=$(mktemp -d "${TMPDIR:-/tmp}/kdsync-mutants.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# The working tree's tracked files, uncommitted changes included.
git ls-files -z | tar --null -T - -cf - | tar -C "$scratch" -xf -
echo "scratch copy: $scratch ($(git ls-files | wc -l) files)"

# mutate NAME FILE PKG TESTS OLD NEW: replace OLD (which must occur exactly
# once in FILE) with NEW in the scratch copy, run TESTS (space-separated
# names) of PKG, require each to fail, restore FILE.
failures=0 ran=0
mutate() {
  local name=$1 file=$2 pkg=$3 tests=$4 old=$5 new=$6
  if [ -n "$only" ] && [[ "$name" != *"$only"* ]]; then return; fi
  ran=$((ran + 1))
  local t0 log
  t0=$(date +%s)
  log="$scratch/.mutant-$ran.log"
  cp "$scratch/$file" "$scratch/.orig"
  if ! OLD=$old NEW=$new python3 - "$scratch/$file" <<'EOF'
import os, sys
p = sys.argv[1]
s = open(p).read()
old, new = os.environ["OLD"], os.environ["NEW"]
n = s.count(old)
if n != 1:
    sys.exit(f"the pattern occurs {n} times in {p}, want once")
open(p, "w").write(s.replace(old, new))
EOF
  then
    echo "MUTANT $name: does not apply to $file (update .ci/mutants.sh)"
    failures=$((failures + 1))
    return
  fi
  local run
  run="^($(echo "$tests" | tr ' ' '|'))\$"
  (cd "$scratch" && go test -count=1 -timeout 5m -run "$run" "./$pkg" >"$log" 2>&1) || true
  cp "$scratch/.orig" "$scratch/$file"
  if grep -qE '\[build failed\]|\[setup failed\]|^# ' "$log"; then
    echo "MUTANT $name: does not compile"; grep -E '^(#|[a-z].*\.go:[0-9]+)' "$log" | head -5
    failures=$((failures + 1))
    return
  fi
  local missed=() caught=()
  for t in $tests; do
    if grep -q -- "--- FAIL: $t " "$log"; then caught+=("$t"); else missed+=("$t"); fi
  done
  if [ ${#missed[@]} -gt 0 ]; then
    echo "MUTANT $name ($file): NOT caught by ${missed[*]} ($(( $(date +%s) - t0 ))s)"
    grep -E '^(---|ok|FAIL|panic)' "$log" | head -10
    failures=$((failures + 1))
    return
  fi
  echo "mutant $name ($file): caught by ${caught[*]} ($(( $(date +%s) - t0 ))s)"
  # The last message of each test (its failure), to show what noticed.
  for t in $tests; do
    awk -v t="--- FAIL: $t " 'index($0, t) == 1 {on = 1; next} on && /^    [^ ]/ {last = $0} on && !/^ / {on = 0} END {print last}' "$log" \
      | sed 's/^ */      /' | cut -c1-220
  done
}

# 1. Every KooDrive write made twice: the handler applied again after it
#    succeeded.
mutate double-writes consumer/process.go consumer \
  "TestRestartMidBatch TestConsumerDeletedMidRun TestOrderUnderConcurrencyWithFaults" \
  '	res, err := c.opts.Handler.Apply(ctx, it.ev, known)
' \
  '	res, err := c.opts.Handler.Apply(ctx, it.ev, known)
	if err == nil && !res.Noop {
		res, err = c.opts.Handler.Apply(ctx, it.ev, known)
	}
'

# 2. Per-user order dropped: each user's events spread over four lanes that
#    run in parallel.
mutate no-user-order consumer/lanes.go consumer \
  "TestOrderUnderConcurrencyWithFaults TestRestartMidBatch" \
  '	key := laneKey(msg.Subject())
' \
  '	key := fmt.Sprintf("%s-%d", laneKey(msg.Subject()), it.seq%4)
'

# 3. The fence outlives the lease: usable for ten heartbeats while the
#    server expires the lease after three.
mutate fence-outlives-lease consumer/lease.go consumer \
  "TestLeaseFence" \
  'func (c *Consumer) leaseValidity() time.Duration { return 2 * c.opts.Heartbeat }' \
  'func (c *Consumer) leaseValidity() time.Duration { return 10 * c.opts.Heartbeat }'

# 3b. No lapse grace: a crashed holder's lease expires a heartbeat after
#     its fence falls, so a request it sent just before may land after the
#     next holder's first call.
mutate lapse-without-grace consumer/setup.go consumer \
  "TestLapsedLeaseWaitsForOldCalls" \
  '			TTL:      3*o.Heartbeat + o.LapseGrace,' \
  '			TTL:      3*o.Heartbeat,'

# 4. An outcome dropped: one event in ten finished (watermark, ack) without
#    its outcome.
mutate drop-outcome consumer/process.go consumer \
  "TestRestartMidBatch TestConsumerDeletedMidRun TestOrderUnderConcurrencyWithFaults" \
  '	var dlq *nats.Msg
	if out.Result == outcome.Deadlettered && !c.opts.NoDLQ {' \
  '	if it.seq%10 == 3 {
		outMsg = nil
	}
	var dlq *nats.Msg
	if out.Result == outcome.Deadlettered && !c.opts.NoDLQ {'

# 5. Acknowledged before the outcome is stored.
mutate ack-before-outcome consumer/process.go consumer \
  "TestOutcomeStoredBeforeAck" \
  '	if err := c.store(l.key, it, it.ev, outMsg, dlq, it.wm, it.state, advance); err != nil {' \
  '	_ = it.msg.Ack()
	if err := c.store(l.key, it, it.ev, outMsg, dlq, it.wm, it.state, advance); err != nil {'

# 6. The checker forgives one extra write per event again (the hole this
#    script was written after).
mutate checker-forgives-a-repeat checker/checker.go checker \
  "TestCheck" \
  '		for n := most; n < len(efs); n++ {' \
  '		most++
		for n := most; n < len(efs); n++ {'

# 7. A known quota's calls bunched on the pacing grid: with no room under
#    the quota, a bunch late across a window's edge spills into the next.
mutate known-quota-bunched throttle/throttle.go throttle \
  "TestTickFollowsBurst" \
  '	if l.rl.Burst() > 1 && l.rl.Limit() != rate.Inf {' \
  '	if l.rl.Limit() != rate.Inf {'

# 8. The first count of a quota episode (which can straddle two windows)
#    taken for a higher estimate seen lately.
mutate first-count-sets-high throttle/rate.go throttle \
  "TestFirstCountIsNoHigh" \
  '	if est >= l.high && !first {' \
  '	if est >= l.high {'

# 9. A first count met at a steady pace cut by a quarter, as a quota that
#    fell.
mutate first-count-cut-by-quarter throttle/rate.go throttle \
  "TestFirstCountMetAtSteadyPace" \
  '	case wasFirst:' \
  '	case wasFirst && l.learnt < 0:'

echo
if [ "$ran" -eq 0 ]; then
  echo "mutants: none matches \"$only\""; exit 1
fi
if [ "$failures" -gt 0 ]; then
  echo "mutants: $failures of $ran NOT caught or broken ($(( $(date +%s) - start ))s)"; exit 1
fi
echo "mutants: all $ran caught ($(( $(date +%s) - start ))s)"
