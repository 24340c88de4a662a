#!/usr/bin/env python3
"""Repeat a kdload measurement on a shared machine, and keep every run.

    python3 docs/perf/measure.py OUT.jsonl N [kdload flags...]

Runs /tmp/kdload -kdsync /tmp/kdsync-perf FLAGS (build both first:
go build -o /tmp/kdload ./cmd/kdload; go build -o /tmp/kdsync-perf ./cmd/kdsync;
git rev-parse --short HEAD > /tmp/kdsync-perf.commit) until N runs were
undisturbed (other processes used under 10% of the machine while kdsync ran,
as kdload reports), at most 3N runs. Before each run it waits (up to 15
minutes) for a quiet machine: 1-minute load average under 2 and under 15%
busy over 3 seconds. Every run, disturbed or not, is appended to OUT as
kdload's JSON report plus: command, kdsyncCommit, at (UTC, end of the run),
idleCheck, undisturbed. docs/perf/summarize.py reads them.
"""
import json
import os
import subprocess
import sys
import time


def busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7], sum(v[:8])


def wait_quiet(limit=900):
    t0 = time.time()
    while True:
        b0, a0 = busy()
        time.sleep(3)
        b1, a1 = busy()
        share = (b1 - b0) / max(a1 - a0, 1)
        load = float(open("/proc/loadavg").read().split()[0])
        if (load < 2 and share < 0.15) or time.time() - t0 > limit:
            return "busy %.0f%% over 3s, load average %.2f" % (100 * share, load)


def main():
    out, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    cmd = ["/tmp/kdload", "-kdsync", "/tmp/kdsync-perf"] + args
    commit = open("/tmp/kdsync-perf.commit").read().strip() if os.path.exists("/tmp/kdsync-perf.commit") else "?"
    good = tries = 0
    while good < n and tries < 3 * n:
        tries += 1
        idle = wait_quiet()
        p = subprocess.run(cmd, capture_output=True, text=True)
        try:
            r = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            print("run failed:", p.stdout[-500:], p.stderr[-500:], flush=True)
            continue
        r["undisturbed"] = r["otherCpuShare"] < 0.10
        r["command"] = "go run ./cmd/kdload " + " ".join(args)
        r["kdsyncCommit"] = commit
        r["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r["idleCheck"] = idle
        with open(out, "a") as f:
            f.write(json.dumps(r) + "\n")
        good += r["undisturbed"]
        print("%6.0f ev/s  cpu %5.1f us/ev  rss %4.1f MiB  p50 %8.1f p99 %8.1f ms  nats+sim %5.1f us/ev  "
              "others %4.1f%%  stalls %s  loadavg %.2f->%.2f  %s %s" % (
                  r["eventsPerSec"], r["kdsyncCpuPerEventUs"], r["kdsyncPeakRssMiB"], r["latencyP50Ms"],
                  r["latencyP99Ms"], r["loadCpuPerEventUs"], 100 * r["otherCpuShare"], r.get("stalls", "?"),
                  r["loadAvg1m"][0], r["loadAvg1m"][1], r["verdict"], "" if r["undisturbed"] else "DISTURBED"),
              flush=True)


if __name__ == "__main__":
    main()
