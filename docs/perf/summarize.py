#!/usr/bin/env python3
"""Summarise the kdload runs in docs/perf/*.jsonl (one kdload JSON report per
line, as measure.py appends them): per file, the median and range of the
undisturbed runs (other processes used < 10% of the machine), and the ratio
of each latency-20ms run to the latency-0 run of the same round.

    python3 docs/perf/summarize.py
"""
import json
import os
import statistics

here = os.path.dirname(os.path.abspath(__file__))


def load(name):
    with open(os.path.join(here, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


def fmt(vals, unit="", prec=0):
    return "%s%s (min %s, max %s, n=%d)" % (
        f"{statistics.median(vals):,.{prec}f}", unit, f"{min(vals):,.{prec}f}", f"{max(vals):,.{prec}f}", len(vals))


fields = [
    ("eventsPerSec", " events/s", 0),
    ("kdsyncCpuPerEventUs", " µs/event kdsync CPU", 1),
    ("loadCpuPerEventUs", " µs/event NATS+simulator+load tool CPU", 1),
    ("kdsyncPeakRssMiB", " MiB peak RSS", 1),
    ("latencyP50Ms", " ms p50", 1),
    ("latencyP99Ms", " ms p99", 1),
]

for name in sorted(os.listdir(here)):
    if not name.endswith(".jsonl"):
        continue
    runs = load(name)
    good = [r for r in runs if r.get("undisturbed", r["otherCpuShare"] < 0.10)]
    print(f"{name}: {len(good)} undisturbed of {len(runs)} runs; command: {runs[0]['command']}")
    print("  kdsync commits: %s" % ", ".join(sorted({r.get('kdsyncCommit', '?') for r in good})))
    print("  load average (1 min) before runs: %s" % fmt([r["loadAvg1m"][0] for r in good], "", 2))
    for key, unit, prec in fields:
        print("  " + fmt([r[key] for r in good], unit, prec))
    print("  checker: %s" % ", ".join(sorted({r["verdict"] for r in runs})))

# Latency 20ms against latency 0, round by round (rounds.sh ran a, b64, b256
# in turn, so the n-th undisturbed run of each file belong together).
try:
    a = [r for r in load("a-backlog-100k.jsonl") if r.get("undisturbed", True) and r.get("round")]
    for conc in (64, 256):
        b = [r for r in load(f"b-latency20-c{conc}.jsonl") if r.get("undisturbed", True) and r.get("round")]
        byround = {r["round"]: r for r in a}
        ratios = [r["eventsPerSec"] / byround[r["round"]]["eventsPerSec"] for r in b if r["round"] in byround]
        if ratios:
            print(f"latency 20ms, concurrency {conc} / latency 0 (same round): " + fmt([100 * x for x in ratios], "%", 0))
except FileNotFoundError:
    pass
