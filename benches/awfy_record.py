#!/usr/bin/env python3
"""Turns the raw lines of benches/awfy.sh into one "are we fast yet" record, prints the latest
figures and ratios, and (with --record 1) appends the record to docs/awfy/history.jsonl and
regenerates docs/awfy/history.js.

    python3 benches/awfy_record.py --regenerate-js   # history.js from history.jsonl only

Raw lines (whitespace-separated):
    load CASE SYSTEM ROUND RPS P50_MS P99_MS CPU_US_PER_REQ RSS_MIB
    cold SYSTEM RUN MS
    call SHAPE 1 NS
    msg SYSTEM MSG_PER_S P99_MS
The record format is described in docs/observability.md ("Are we fast yet").
"""

import argparse
import collections
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

SCHEMA = 1
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Figures this script measures, in page order. Figures other benchmarks add later (messaging,
# issue 15; the lattice, issue 16) use the same shape under their own keys.
PENDING = [
    "lattice figures (issue 15: placement, cross-host request forwarding)",
]


def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine(loadavg_start, loadavg_end):
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    except (OSError, StopIteration, ValueError):
        mem_kib = 0
    load = [float(x) for x in loadavg_start.split()] if loadavg_start else []
    cores = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gib": round(mem_kib / (1 << 20)),
        "kernel": platform.release(),
        "loadavg_start": load,
        "loadavg_end": [float(x) for x in loadavg_end.split()] if loadavg_end else [],
        # Other work on the machine during the run (load average above half the cores).
        "shared": bool(load) and load[0] > cores / 2,
    }


def figure(title, unit, better, values):
    values = {k: round(v, 3) for k, v in values.items() if v is not None}
    return {"title": title, "unit": unit, "better": better, "values": values}


def ratio(fig, a, b):
    """How far `a` is ahead of `b` (above 1: ahead), or None."""
    va, vb = fig["values"].get(a), fig["values"].get(b)
    if not va or not vb:
        return None
    return round(va / vb if fig["better"] == "higher" else vb / va, 3)


def build(args):
    load = collections.defaultdict(list)
    cold = collections.defaultdict(list)
    call = {}
    msg = {}
    for line in open(args.results):
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "load":
            _, case, system, _round, rps, p50, p99, cpu, rss = parts
            load[(case, system)].append([float(rps), float(p50), float(p99), float(cpu), float(rss)])
        elif parts[0] == "cold":
            cold[parts[1]].append(float(parts[3]))
        elif parts[0] == "call":
            call[parts[1]] = float(parts[3])
        elif parts[0] == "msg":
            msg[parts[1]] = (float(parts[2]), float(parts[3]))

    def med(case, system, i):
        rows = load.get((case, system))
        return statistics.median(r[i] for r in rows) if rows else None

    systems = ["weft", "wasmtime", "native"]
    figures = {}
    for case, title in [("p2", "P2 hello (wasi:http 0.2, an instance per request)"),
                        ("p3", "P3 hello (wasi:http 0.3, instances reused)")]:
        figures[f"http_{case}_rps"] = figure(f"{title}: throughput", "req/s", "higher",
                                             {s: med(case, s, 0) for s in systems})
        figures[f"http_{case}_p99_ms"] = figure(f"{title}: p99 latency", "ms", "lower",
                                                {s: med(case, s, 2) for s in systems})
        figures[f"http_{case}_cpu_us"] = figure(f"{title}: server CPU per request", "us",
                                                "lower", {s: med(case, s, 3) for s in systems})
    figures["rss_mib"] = figure("Peak RSS after the P2 load", "MiB", "lower",
                                {s: med("p2", s, 4) for s in systems})
    figures["cold_start_ms"] = figure(
        "Cold start: process start to first 200 (P2 hello; weft: empty compile cache, "
        "weft cached: warm; wasmtime compiles at every start)", "ms", "lower",
        {k: statistics.median(v) for k, v in cold.items()})
    if call:
        figures["call_ns"] = figure("One call across components (criterion, callee add)", "ns",
                                    "lower", call)
    if msg:
        title = ("Messaging: a stream transform (orders.* -> upper-case -> out.*) on the "
                 "in-process bus; weft: the msg-transform guest, native: the same in Rust")
        figures["msg_rate"] = figure(f"{title}: throughput", "msg/s", "higher",
                                     {s: v[0] for s, v in msg.items()})
        figures["msg_p99_ms"] = figure(f"{title}: round-trip p99", "ms", "lower",
                                       {s: v[1] for s, v in msg.items()})
    figures = {k: f for k, f in figures.items() if f["values"]}

    pairs = {
        "cold_start_ms": [("weft", "wasmtime"), ("weft_cached", "wasmtime"),
                          ("weft_cached", "weft")],
        "call_ns": [("composed", "linked"), ("composed", "single")],
    }
    ratios = {}
    for key, fig in figures.items():
        for a, b in pairs.get(key, [("weft", "wasmtime"), ("weft", "native")]):
            r = ratio(fig, a, b)
            if r is not None:
                ratios[f"{key} {a}/{b}"] = r

    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": git("rev-parse", "--short=10", "HEAD"),
        "dirty": dirty,
        "short": args.short == "1",
        "machine": machine(args.loadavg_start, args.loadavg_end),
        "settings": {"profile": args.profile, "rounds": int(args.rounds), "duration_s": float(args.duration),
                     "connections": int(args.connections), "wrk_threads": int(args.threads),
                     "cold_runs": int(args.cold_runs)},
        "peers": {"wasmtime": args.wasmtime_version or None, "native": "hyper 1 (benches/native-hello)"},
        "figures": figures,
        "ratios": ratios,
        "pending": PENDING,
        "note": args.note,
    }


def print_report(rec):
    m = rec["machine"]
    print(f"\nAre we fast yet: commit {rec['commit']}{' (dirty)' if rec['dirty'] else ''}, "
          f"{rec['date']}, {m['cores']} cores, load {m['loadavg_start']} -> {m['loadavg_end']}"
          f"{', shared machine' if m['shared'] else ''}"
          f"{', SHORT run (1 round; a smoke report, not a measurement)' if rec['short'] else ''}"
          f", {rec['settings']['profile']} build\n")
    print("| figure | unit | values |")
    print("|---|---|---|")
    for f in rec["figures"].values():
        vals = ", ".join(f"{k} {v:g}" for k, v in f["values"].items())
        print(f"| {f['title']} | {f['unit']} ({f['better']} is better) | {vals} |")
    print("\n| ratio (above 1: the first is ahead) | |\n|---|---:|")
    for k, v in rec["ratios"].items():
        print(f"| {k} | {v:.2f}x |")
    print()


def regenerate_js(history):
    records = []
    if os.path.exists(history):
        for n, line in enumerate(open(history), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"{history}:{n}: not a JSON record ({e}): fix or remove the line")
    out = os.path.join(os.path.dirname(history), "history.js")
    with open(out + ".tmp", "w") as f:
        f.write("// Generated from history.jsonl by benches/awfy_record.py; do not edit.\n")
        f.write("// A script, not JSON, so that index.html works from a file:// URL.\n")
        f.write("window.AWFY_HISTORY = [\n")
        for r in records:
            f.write(json.dumps(r) + ",\n")
        f.write("];\n")
    os.replace(out + ".tmp", out)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results")
    p.add_argument("--history", default=os.path.join(REPO, "docs/awfy/history.jsonl"))
    p.add_argument("--record", default="0")
    p.add_argument("--short", default="0")
    p.add_argument("--rounds", default="0")
    p.add_argument("--duration", default="0")
    p.add_argument("--connections", default="0")
    p.add_argument("--threads", default="0")
    p.add_argument("--cold-runs", default="0")
    p.add_argument("--wasmtime-version", default="")
    p.add_argument("--loadavg-start", default="")
    p.add_argument("--loadavg-end", default="")
    p.add_argument("--note", default="")
    p.add_argument("--profile", default="release")
    p.add_argument("--regenerate-js", action="store_true")
    args = p.parse_args()
    if args.regenerate_js:
        print(regenerate_js(args.history))
        return
    rec = build(args)
    print_report(rec)
    if rec["short"] and os.path.exists(args.history):
        full = [json.loads(l) for l in open(args.history) if l.strip()]
        full = [r for r in full if not r.get("short")]
        if full:
            last = full[-1]
            print(f"The latest recorded run ({args.history}: {last['date']}, commit {last['commit']}, "
                  f"{last['settings'].get('rounds')} rounds of {last['settings'].get('duration_s')} s):\n")
            print("| ratio (above 1: the first is ahead) | |\n|---|---:|")
            for k, v in last["ratios"].items():
                print(f"| {k} | {v:.2f}x |")
            print()
    if args.record == "1":
        if rec["short"] or args.profile != "release":
            sys.exit("awfy: only full runs of release builds are recorded (a short run is a smoke report)")
        with open(args.history, "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"appended to {args.history}; regenerated {regenerate_js(args.history)}")


if __name__ == "__main__":
    main()
