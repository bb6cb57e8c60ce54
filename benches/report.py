#!/usr/bin/env python3
"""Turns criterion's poll_cost estimates into the markdown table of
benches/RESULTS.md: per-poll time (median) and the ratio to the procfs full
parse measured in the same group.

Run after `cargo bench --bench poll_cost`: python3 benches/report.py
"""
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
ORDER = [
    "netlink",
    "proc",
    "procfs_full_parse",
    "watcher_poll_netlink",
    "watcher_poll_proc",
    "sockwatch_list_process",
    "ss_ltnuH_process",
]


def median_ns(group, bench):
    path = ROOT / group / bench / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def fmt(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e3:.1f} µs"


def main():
    groups = []
    for path in ROOT.glob("poll_L*_B*"):
        m = re.match(r"poll_L(\d+)_B(\d+)", path.name)
        if m:
            groups.append((int(m.group(1)), int(m.group(2)), path.name))
    groups.sort()
    print("| L | B | " + " | ".join(ORDER) + " |")
    print("|---|---|" + "---|" * len(ORDER))
    for listeners, background, name in groups:
        times = {b: median_ns(name, b) for b in ORDER}
        base = times["procfs_full_parse"]
        cells = []
        for bench in ORDER:
            t = times[bench]
            if t is not None and base and bench != "procfs_full_parse":
                cells.append(f"{fmt(t)} ({base / t:.0f}×)")
            else:
                cells.append(fmt(t))
        print(f"| {listeners} | {background} | " + " | ".join(cells) + " |")


main()
