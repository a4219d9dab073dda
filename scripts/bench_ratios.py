#!/usr/bin/env python3
"""Prints criterion results as ratios within each group.

Reads every `new/estimates.json` under the criterion output directories
given (default: target/criterion and benches/peers/target/criterion) and
prints, per group, each benchmark's median and its ratio to the group's
baseline (`raw_hmac`, else `raw_hmac_sha256`, else `raw_ring`, else the first entry).
Optional filter: a substring of the group name.

    python3 scripts/bench_ratios.py [--dir DIR]... [FILTER]
"""

import json
import os
import sys

BASELINES = ("raw_hmac", "raw_hmac_sha256", "raw_ring", "bare")


def load(dirs):
    groups = {}
    for root in dirs:
        if not os.path.isdir(root):
            continue
        for path, _, files in os.walk(root):
            if "benchmark.json" not in files or os.path.basename(path) != "new":
                continue
            with open(os.path.join(path, "benchmark.json")) as f:
                meta = json.load(f)
            with open(os.path.join(path, "estimates.json")) as f:
                est = json.load(f)
            group = meta.get("group_id")
            name = meta.get("function_id") or meta.get("value_str") or "?"
            groups.setdefault(group, {})[name] = est["median"]["point_estimate"]
    return groups


def human(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main(argv):
    dirs, filt = [], ""
    args = iter(argv)
    for a in args:
        if a == "--dir":
            dirs.append(next(args))
        else:
            filt = a
    if not dirs:
        dirs = ["target/criterion", "benches/peers/target/criterion"]
    groups = load(dirs)
    if not groups:
        print("no criterion results found in " + ", ".join(dirs), file=sys.stderr)
        return 1
    for group in sorted(groups):
        if filt not in group:
            continue
        entries = groups[group]
        base_name = next((b for b in BASELINES if b in entries), next(iter(entries)))
        base = entries[base_name]
        print(group)
        for name, ns in sorted(entries.items(), key=lambda kv: kv[1]):
            print(f"  {name:<40} {human(ns):>10}  {ns / base:6.2f}x {base_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
