#!/usr/bin/env python3
"""Summarise the flat-in-users runs for docs/performance.md and users.gp.

    python3 docs/perf/users.py [SITTING]

Reads docs/perf/users/SITTING/<build>-<users>.jsonl (kdload's JSON
reports, one a line; build is "before" or "after"; SITTING is "quiet", the
default, or "busy") and writes SITTING/users.tsv: one row per build and
number of users with the median of each figure (columns named in its
header), and prints it.
"""
import glob
import json
import os
import statistics
import sys

DIR = os.path.join(os.path.dirname(__file__), "users", sys.argv[1] if len(sys.argv) > 1 else "quiet")
FIELDS = [
    ("events", "events"),
    ("eventsPerSec", "events_per_s"),
    ("kdsyncCpuPerEventUs", "kdsync_cpu_us_per_event"),
    ("loadCpuPerEventUs", "nats_sim_load_cpu_us_per_event"),
    ("kdsyncPeakRssMiB", "kdsync_peak_rss_mib"),
    ("stateReadsPerEvent", "state_reads_per_event"),
    ("stateWritesPerEvent", "state_writes_per_event"),
    ("kvStreamWritesPerEvent", "kv_writes_per_event_server"),
    ("stateCacheHitShare", "cache_hit_share"),
    ("natsMsgsInPerEvent", "nats_msgs_in_per_event"),
    ("natsMsgsOutPerEvent", "nats_msgs_out_per_event"),
    ("otherCpuShare", "others_cpu_share"),
]


def main():
    rows = []
    for path in sorted(glob.glob(os.path.join(DIR, "*.jsonl"))):
        build = os.path.basename(path).split("-")[0]
        if build not in ("before", "after"):
            continue
        runs = [json.loads(l) for l in open(path) if l.strip()]
        if not runs:
            continue
        row = {"build": build, "users": runs[0]["users"], "runs": len(runs),
               "clean": sum(r["verdict"] == "clean" for r in runs)}
        for key, name in FIELDS:
            row[name] = statistics.median(r.get(key, 0) for r in runs)
        rows.append(row)
    rows.sort(key=lambda r: (r["build"], r["users"]))
    cols = ["build", "users", "runs", "clean"] + [n for _, n in FIELDS]
    with open(os.path.join(DIR, "users.tsv"), "w") as f:
        f.write("# " + "\t".join(cols) + "\n")
        # gnuplot reads one block per build, blocks split by two blank lines
        last = None
        for r in rows:
            if last is not None and r["build"] != last:
                f.write("\n\n")
            last = r["build"]
            f.write("\t".join(fmt(r[c]) for c in cols) + "\n")
    for r in rows:
        print("  ".join("%s=%s" % (c, fmt(r[c])) for c in cols))


def fmt(v):
    if isinstance(v, float):
        return "%.3g" % v if v < 10 else "%.0f" % v
    return str(v)


if __name__ == "__main__":
    main()
