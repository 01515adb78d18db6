#!/usr/bin/env python3
"""Tables for bench/net-raw.sh: medians of every (backend, vCPUs, test) in the
results file ("backend cpus test value" lines), as Markdown."""
import statistics
import sys
from collections import defaultdict

results, cpus_list = sys.argv[1], sys.argv[2].split()
vals = defaultdict(list)
fails = defaultdict(int)
for line in open(results):
    b, c, t, v = line.split()
    try:
        vals[(b, c, t)].append(float(v))
    except ValueError:
        fails[(b, c, t)] += 1


def med(b, c, t):
    v = vals.get((b, c, t))
    return statistics.median(v) if v else None


def cell(b, c, t, fmt="{:.0f}"):
    m = med(b, c, t)
    n = len(vals.get((b, c, t), []))
    f = fails.get((b, c, t), 0)
    if m is None:
        return "fail" if f else "-"
    s = fmt.format(m)
    return s + (f" ({f} failed)" if f else "")


backends = []
for (b, _, _) in list(vals) + list(fails):
    if b not in backends:
        backends.append(b)
thru = [b for b in backends if not b.startswith(("b2b", "start-", "setup-"))]
raw = ["passt", "passt-1500", "tap", "tap-65520", "tap-nooff"]
tests = ["port.in", "port.out", "gw.out", "gw.in"]

for c in cpus_list if thru else []:
    print(f"\n### {c} vCPU: TCP MB/s (receiver side, median), HTTP median latency\n")
    print("| backend | port host→box | port box→host | gw box→host | gw host→box | http p50 ms |")
    print("|---|---|---|---|---|---|")
    best = {t: max([m for m in (med(b, c, t) for b in raw) if m is not None], default=None) for t in tests}
    for b in thru:
        cc = "1" if b.startswith("podman") else c
        row = [cell(b, cc, t) for t in tests] + [cell(b, cc, "http.p50ms", "{:.2f}")]
        print(f"| {b} | " + " | ".join(row) + " |")
    print("\nRatio to the fastest raw backend (" + ", ".join(raw) + ") per column:\n")
    print("| backend | " + " | ".join(tests) + " |")
    print("|---|" + "---|" * len(tests))
    for b in thru:
        cc = "1" if b.startswith("podman") else c
        r = []
        for t in tests:
            m = med(b, cc, t)
            r.append(f"{m / best[t]:.2f}" if m is not None and best[t] else "-")
        print(f"| {b} | " + " | ".join(r) + " |")

b2b = [b for b in backends if b.startswith("b2b")]
if b2b:
    print("\n### box → box on one bridge (two VMs, TAPs): MB/s\n")
    print("| backend | vCPUs | A→B | B→A |")
    print("|---|---|---|---|")
    for b in b2b:
        for c in cpus_list:
            print(f"| {b} | {c} | {cell(b, c, 'b2b.out')} | {cell(b, c, 'b2b.in')} |")

starts = [b for b in backends if b.startswith("start-")]
if starts:
    print("\n### start cost: VM configures eth0 and powers off (median s, ratio to no NIC)\n")
    print("| variant | " + " | ".join(f"{c} vCPU" for c in cpus_list) + " |")
    print("|---|" + "---|" * len(cpus_list))
    for b in starts:
        row = []
        for c in cpus_list:
            m, n = med(b, c, "seconds"), med("start-none", c, "seconds")
            row.append(f"{m:.3f} ({m / n:.2f})" if m and n else "-")
        print(f"| {b[6:]} | " + " | ".join(row) + " |")
setups = [b for b in backends if b.startswith("setup-")]
if setups:
    print("\n| step alone (no VM) | median ms |")
    print("|---|---|")
    for b in setups:
        print(f"| {b[6:]} | {med(b, '-', 'seconds') * 1000:.1f} |")
