#!/usr/bin/env python3
"""Writes REPORT.md (to stdout) from the folder benches/run-report.sh fills:
run.json (the run's conditions) and <bench>.json (each bench's `REPORT`
line). Every figure comes from those files; a bench that failed or printed
no `REPORT` line is listed as not measured, with its exit code.

Usage: python3 benches/render-report.py benches/report/raw > benches/report/REPORT.md
"""

import json
import pathlib
import sys

raw = pathlib.Path(sys.argv[1])
run = json.loads((raw / "run.json").read_text())
status = {b["bench"]: b for b in run["benches"]}


def load(bench):
    p = raw / f"{bench}.json"
    if bench not in status or status[bench].get("skipped") or not p.exists():
        return None
    return json.loads(p.read_text())


def num(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, float) and abs(x) >= 1000:
        return f"{x:,.0f}"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}f}"


def verdict(ok):
    if ok is None:
        return "–"
    return "met" if ok else "**missed**"


out = []
p = out.append

p("# Benchmark report")
p("")
p(f"Written by `{run['command']}`; the raw output of")
p("every bench is in [raw/](raw/), each figure below is from the `REPORT` line")
p("the bench printed at the end of its own report.")
p("")
p("| | |")
p("| --- | --- |")
p(f"| started | {run['started']} |")
if run.get("skip_build"):
    p(f"| whole run | {run['seconds'] / 60:.1f} min (each bench's minutes include its own build: `REPORT_SKIP_BUILD=1`) |")
else:
    p(f"| whole run | {run['seconds'] / 60:.1f} min (builds before it not counted) |")
if run.get("stop_at"):
    p(f"| benches not started by | {run['stop_at']} UTC (`REPORT_STOP_AT`) |")
changed = run.get("files_changed_since_commit", run.get("bench_files_changed_since_commit", 0))
p(
    f"| commit | `{run['commit'][:10]}`"
    + (f" (the work tree, with {changed} tracked file(s) changed since)" if changed else "")
    + " |"
)
p(f"| machine | {run['nproc']} CPUs ({run['cpu_model'] or 'model unknown'}), {run['memory']} memory, Linux {run['kernel']} |")
p(f"| load average (1, 5, 15 min) | before {run['load_before']}; after {run['load_after']} |")
p(f"| busiest processes | before: {run['busy_before']}; after: {run['busy_after']} |")
p(f"| toolchain and peers | {run['rustc']}; {run['tansu'] or 'tansu ?'}; DuckDB {run['duckdb'] or '?'}; pySigma {run['pysigma'] or '?'} |")
p(f"| knobs | {', '.join(f'`{k}={v}`' for k, v in run['knobs'].items())} |")
p("")
p("| bench | exit | minutes | load average before → after |")
p("| --- | ---: | ---: | --- |")
for b in run["benches"]:
    if b.get("skipped"):
        p(f"| {b['bench']} | not run (`REPORT_STOP_AT`) | | |")
        continue
    note = "" if b["exit"] == 0 else " (failed: see raw log)"
    p(f"| [{b['bench']}](raw/{b['bench']}.log) | {b['exit']}{note} | {b['seconds'] / 60:.1f} | {b['load_before']} → {b['load_after']} |")
p("")
p("The machine has 2 cores shared by every process of a bench (and, when the")
p("load average before a bench is above 0, by whatever else ran): compare")
p("ratios, which are taken within one bench run, rather than absolute times.")
p("")

# ---------------------------------------------------------------------------
# Summary of ratios
p("## Ratios against the peers")
p("")
p("| bench | ratio | value | target |")
p("| --- | --- | ---: | --- |")
missing = []

ne = load("normalize_encode")
if ne:
    p(f"| normalize_encode | Spoor time ÷ arrow-json time (normalize + encode, one thread; lower is better) | {num(ne['spoor_time_over_peer_time'])} | none (gauge) |")
else:
    missing.append("normalize_encode")

ik = load("ingest_kafka")
if ik:
    r = ik["ratios"]
    rows = [
        ("spoor_over_bare_events_per_s", "Spoor ÷ bare consumer, events/s", lambda v: v >= 0.5, "≥ 0.5"),
        ("spoor_over_duckdb1_events_per_cpu_s", "Spoor ÷ DuckDB 1 thread (MAP), events per CPU-s", lambda v: v > 1, "> 1"),
        ("spoor_over_duckdb_columns1_events_per_cpu_s", "Spoor ÷ DuckDB columns 1 thread, events per CPU-s", lambda v: v > 1, "> 1"),
        ("spoor_over_duckdb_events_per_s", "Spoor ÷ DuckDB all threads (MAP), events/s", None, ""),
        ("spoor_over_duckdb_columns_events_per_s", "Spoor ÷ DuckDB columns all threads, events/s", None, ""),
    ]
    for key, label, test, target in rows:
        if key in r:
            t = f"{target}: {verdict(test(r[key]))}" if test else ""
            p(f"| ingest_kafka | {label} | {num(r[key], 3)} | {t} |")
else:
    missing.append("ingest_kafka")

isc = load("ingest_scaling")
if isc:
    r = isc["ratios"]
    p(f"| ingest_scaling | 2 ingest nodes ÷ 1 ingest node, events/s (2 shared cores) | {num(r['nodes_2_over_1_events_per_s'])} | |")
    p(f"| ingest_scaling | 2 ingest nodes ÷ 1 ingest node, events per ingest CPU-s | {num(r['nodes_2_over_1_events_per_ingest_cpu_s'])} | |")
    for key, label in [("nodes_1_over_bare_events_per_s", "1 ingest node"), ("nodes_2_over_bare_events_per_s", "2 ingest nodes")]:
        v = r.get(key)
        p(f"| ingest_scaling | Spoor ({label}) ÷ bare consumer, events/s | {num(v, 3)} | ≥ 0.5: {verdict(None if v is None else v >= 0.5)} |")
else:
    missing.append("ingest_scaling")

hu = load("hunting")
if hu:
    for q in hu["queries"]:
        p(f"| hunting | Spoor ÷ DuckDB time, {q['query']} (lower is better) | {num(q['spoor_over_duckdb'])} | ≤ 1: {verdict(q['spoor_over_duckdb'] <= 1)} |")
    p(f"| hunting | slowest needle lookup, Spoor ms | {num(hu['needle_max_ms'], 1)} | < 200 ms: {verdict(hu['needle_max_ms'] < 200)} |")
else:
    missing.append("hunting")

de = load("detection")
if de:
    if de.get("sqlite"):
        v = de["spoor_median_over_sqlite"]
        p(f"| detection | Spoor (median pass) ÷ pySigma + SQLite, events/s per core | {num(v, 1)} | ≥ 100: {verdict(v >= 100)} |")
    else:
        p("| detection | Spoor ÷ pySigma + SQLite | not measured (`DETECTION_BENCH_SQLITE_REPEAT=0`) | |")
else:
    missing.append("detection")

cc = load("catalog_commit")
if cc:
    for row in cc["rows"]:
        if row["commits_per_s_3_over_1"] is None:
            continue
        p(
            f"| catalog_commit | 3-coordinator Raft ÷ 1 coordinator, {row['path']}, {row['clients']} client(s): commits/s, p50, p99 "
            f"| {num(row['commits_per_s_3_over_1'])}, {num(row['p50_3_over_1'])}, {num(row['p99_3_over_1'])} | |"
        )
else:
    missing.append("catalog_commit")

dl = load("detection_latency")
if dl:
    for l in dl["latency"]:
        p(
            f"| detection_latency | {l['workers']} worker(s), {l['rule']}: Sentinel NRT schedule (60 s) ÷ Spoor p99 "
            f"| {num(l['vs_sentinel_nrt_60s'], 0)}× | |"
        )
        p(
            f"| detection_latency | {l['workers']} worker(s), {l['rule']}: Elastic default interval (300 s) ÷ Spoor p99 "
            f"| {num(l['vs_elastic_default_300s'], 0)}× | |"
        )
    s = dl["scaling"]
    for key, label in [
        ("buckets_2_over_1_workers_1", "evaluation, 2 buckets ÷ 1 bucket on 1 worker, events/s"),
        ("workers_2_over_1_buckets_2", "evaluation, 2 workers ÷ 1 worker (2 buckets), events/s"),
        ("workers_2x2_over_1x1", "evaluation, 2 workers × 2 buckets ÷ 1 × 1, events/s"),
    ]:
        if s.get(key) is not None:
            p(f"| detection_latency | {label} | {num(s[key])} | |")
else:
    missing.append("detection_latency")
p("")
if missing:
    def why(m):
        if m not in status or status[m].get("skipped"):
            return "not run"
        return f"exit {status[m]['exit']}, no REPORT line"

    p("Not measured in this run: " + ", ".join(f"{m} ({why(m)})" for m in missing) + ".")
    p("")

# ---------------------------------------------------------------------------
# Details
if dl and dl["latency"]:
    p("## End-to-end detection latency (detection_latency)")
    p("")
    st = dl["settings"]
    p(
        f"Kafka produce → alert visible in `alerts`, {st['seconds']} s of probes per run, a probe every "
        f"{st['probe_ms']} ms, {st['background_events_per_s']} background events/s, alerts polled every "
        f"{st['poll_ms']} ms (each figure at most one poll late)."
    )
    p("")
    p("| workers | rule | alerts | missing | p50 s | p99 s | max s | target p99 < 5 s |")
    p("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for l in dl["latency"]:
        ok = l["p99_s"] is not None and l["p99_s"] < 5 and l["missing"] == 0
        p(f"| {l['workers']} | {l['rule']} | {l['count']} | {l['missing']} | {num(l['p50_s'])} | {num(l['p99_s'])} | {num(l['max_s'])} | {verdict(ok)} |")
    p("")
if dl and dl["scaling"]["runs"]:
    s = dl["scaling"]
    p(f"Evaluation throughput, {s['rules']} SigmaHQ rules over a backlog of {dl['settings']['backlog']:,} events:")
    p("")
    p("| workers | buckets | events/s | span s | shards started apart s | CPU s per node | alerts |")
    p("| ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in s["runs"]:
        cpu = ", ".join(f"node {c['node']}: {num(c['cpu_s'])}" for c in r["cpu_s"])
        p(f"| {r['workers']} | {r['buckets']} | {num(r['events_per_s'], 0)} | {num(r['span_s'])} | {num(r['stagger_s'])} | {cpu} | {num(r['alerts'], 0)} |")
    p("")
    if dl.get("slow_stops"):
        p(f"Nodes that did not stop within 30 s of SIGTERM: {dl['slow_stops']} (see the raw log).")
        p("")

if isc:
    p("## Ingest scaling, 1 → 2 ingest nodes (ingest_scaling)")
    p("")
    p(
        f"{isc['events']:,} otrf-windows events ({isc['json_mb']:.1f} MB of JSON) on a topic of {isc['partitions']} "
        f"partitions; best of {isc['rounds']} rounds by wall time. Timed from thawing the ingest nodes (their "
        "consumer group already settled, the backlog produced while they were frozen) to the last event committed; "
        "the bare consumer from its start to the last message read. CPU is per process over the window; "
        f"\"cores busy\" is all processes' CPU ÷ wall (of {isc['cpus']})."
    )
    p("")
    p("| configuration | wall s | events/s | MB/s | CPU s per process | cores busy | partitions (events) per node | rebalances in window |")
    p("| --- | ---: | ---: | ---: | --- | ---: | --- | ---: |")
    for r in isc["runs"]:
        cpu = ", ".join(f"{c['process']} {num(c['cpu_s'])}" for c in r["cpu_s"])
        nodes = "; ".join(f"node {n['node']}: {n['partitions']} ({n['events']:,})" for n in r["nodes"])
        reb = "" if r["contender"] == "bare" else r["rebalances_in_window"]
        p(f"| {r['label']} | {num(r['wall_s'])} | {num(r['events_per_s'], 0)} | {num(r['mb_per_s'], 1)} | {cpu} | {num(r['cores_busy'])} | {nodes} | {reb} |")
    p("")

if ik:
    p("## Kafka ingest against a bare consumer and DuckDB (ingest_kafka)")
    p("")
    p(f"{ik['events']:,} events ({ik['json_mb']:.1f} MB of JSON), {ik['partitions']} partitions, best of {ik['rounds']} rounds; {ik['duckdb']}.")
    p("")
    p("| contender | wall s | events/s | MB/s | CPU s | events/CPU-s | broker CPU s |")
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in ik["contenders"]:
        p(f"| {c['label']} | {num(c['wall_s'])} | {num(c['events_per_s'], 0)} | {num(c['mb_per_s'], 1)} | {num(c['cpu_s'])} | {num(c['events_per_cpu_s'], 0)} | {num(c['broker_cpu_s'])} |")
    p("")

if hu:
    p("## Hunting queries against DuckDB (hunting)")
    p("")
    p(f"{hu['events']:,} generated events in {hu['files']} Parquet files, median of {hu['runs']} warm runs each; DuckDB {hu.get('duckdb', '?')}.")
    p("")
    p("| query | Spoor ms | DuckDB ms | Spoor ÷ DuckDB | rows |")
    p("| --- | ---: | ---: | ---: | ---: |")
    for q in hu["queries"]:
        p(f"| {q['query']} | {num(q['spoor_ms'], 1)} | {num(q['duckdb_ms'], 1)} | {num(q['spoor_over_duckdb'])} | {q['rows']} |")
    p("")

if de:
    p("## Sigma detection against pySigma + SQLite (detection)")
    p("")
    p(f"{de['detections']:,} detections compiled, {de['events']:,} events, {de['runs']} timed Spoor passes.")
    p("")
    p("| engine | events/s per core | matches |")
    p("| --- | ---: | ---: |")
    p(f"| Spoor (median pass) | {num(de['spoor_median_events_per_s'], 0)} | {de.get('spoor_matches', '–')} |")
    p(f"| Spoor (best pass) | {num(de['spoor_best_events_per_s'], 0)} | |")
    if de.get("sqlite"):
        sq = de["sqlite"]
        p(f"| pySigma + SQLite ({sq['rules']:,} rules, {sq['refused']} refused) | {num(sq['events_per_s'], 0)} | {sq['matches']} |")
    p("")

if ne:
    p("## Normalize and encode against arrow-json (normalize_encode)")
    p("")
    p(f"{ne['events']:,} events ({ne['json_mb']:.1f} MB of JSON), best of {ne['rounds']} rounds, one thread.")
    p("")
    p("| side | ms | events/s |")
    p("| --- | ---: | ---: |")
    p(f"| Spoor (normalize {num(ne['spoor_phases_ms']['normalize'], 0)} ms, Arrow {num(ne['spoor_phases_ms']['arrow'], 0)} ms, Parquet {num(ne['spoor_phases_ms']['parquet'], 0)} ms) | {num(ne['spoor_ms'], 0)} | {num(ne['spoor_events_per_s'], 0)} |")
    p(f"| arrow-json | {num(ne['peer_ms'], 0)} | {num(ne['peer_events_per_s'], 0)} |")
    p("")

if cc:
    p("## Catalog commits, 3-coordinator Raft against 1 coordinator (catalog_commit)")
    p("")
    p(
        f"{cc['files_per_commit']} files + 1 checkpoint per commit, best of {cc['rounds']} rounds, {cc['window_s']:.0f} s "
        f"windows; disk floor (4 KiB + fdatasync) p50 {num(cc['disk_floor_p50_ms'])} ms, p99 {num(cc['disk_floor_p99_ms'])} ms; "
        f"snapshots {cc['snapshots']}; leader and term unchanged: {cc['stable']}."
    )
    p("")
    p("| path | clients | 1 node commits/s | p50 ms | p99 ms | 3 nodes commits/s | p50 ms | p99 ms | commits/s 3÷1 | p99 3÷1 |")
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in cc["rows"]:
        one = row["one_node"] or {}
        three = row["three_nodes"] or {}
        p(
            f"| {row['path']} | {row['clients']} | {num(one.get('commits_per_s'), 0)} | {num(one.get('p50_ms'))} | {num(one.get('p99_ms'))} "
            f"| {num(three.get('commits_per_s'), 0)} | {num(three.get('p50_ms'))} | {num(three.get('p99_ms'))} "
            f"| {num(row['commits_per_s_3_over_1'])} | {num(row['p99_3_over_1'])} |"
        )
    p("")

sys.stdout.write("\n".join(out))
