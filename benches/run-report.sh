#!/usr/bin/env bash
# Runs every benchmark of spoor-benches in one go and writes the report:
#
#   benches/report/REPORT.md      date, commit, machine, and each bench's
#                                 ratios against its peer, from the benches'
#                                 own `REPORT {json}` lines
#   benches/report/raw/<bench>.log   each bench's whole output (committed with
#                                 the report: it is the evidence behind it)
#   benches/report/raw/<bench>.json  its `REPORT` line
#   benches/report/raw/run.json   the run's conditions (machine, load, times)
#
# Usage: bash benches/run-report.sh     (about 30 to 40 minutes on 2 cores once
# the release build is warm; the builds come first and are not in the bench
# times).
#
# Installs what the peers need when missing, cached under ~/.cache/spoor:
#   tansu 0.6.0 (Kafka-protocol broker)    ~/.cache/spoor/tansu (as scripts/test-all.sh)
#   DuckDB 2.0.1 (Python package)          ~/.cache/spoor/duckdb-venv
#   pySigma 2.0.1 + SQLite backend 2.1.1   ~/.cache/spoor/pysigma-venv (scripts/pysigma-venv.sh)
#
# Knobs (environment; each bench's own knobs pass through, the defaults below
# keep the whole run within about 40 minutes):
#   REPORT_BENCHES   the benches to run, in order (default: all, see below)
#   REPORT_DIR       default benches/report
#   REPORT_SKIP_BUILD=1  skip the up-front release build: each bench is then
#                    built and run by its own `cargo bench`, its build inside
#                    its minutes
#   REPORT_STOP_AT   a UTC time (HH:MM): benches not started by then are
#                    skipped and listed as not run
#   HUNT_BENCH_EVENTS (10000000), HUNT_BENCH_RUNS (5)
#   INGEST_BENCH_EVENTS (250000), INGEST_BENCH_ROUNDS (2)
#   DETECTION_BENCH_RUNS (10), DETECTION_BENCH_SQLITE_REPEAT (1)
#   LATENCY_BENCH_SECONDS (40), LATENCY_BENCH_BACKLOG (200000)
#   INGEST_SCALING_EVENTS (200000), INGEST_SCALING_ROUNDS (2)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cache="${HOME}/.cache/spoor"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
export CARGO_TERM_COLOR=never
tansu_root="${TANSU_ROOT:-$cache/tansu}"
export TANSU_BIN="${TANSU_BIN:-$tansu_root/bin/tansu}"
duckdb_version=2.0.1
duckdb_venv="${DUCKDB_VENV:-$cache/duckdb-venv}"

out="${REPORT_DIR:-benches/report}"
raw="$out/raw"
mkdir -p "$raw" "$cache"

benches=(${REPORT_BENCHES:-normalize_encode detection hunting catalog_commit ingest_kafka ingest_scaling detection_latency})

export HUNT_BENCH_EVENTS="${HUNT_BENCH_EVENTS:-10000000}"
export HUNT_BENCH_RUNS="${HUNT_BENCH_RUNS:-5}"
export INGEST_BENCH_EVENTS="${INGEST_BENCH_EVENTS:-250000}"
export INGEST_BENCH_ROUNDS="${INGEST_BENCH_ROUNDS:-2}"
export DETECTION_BENCH_RUNS="${DETECTION_BENCH_RUNS:-10}"
export DETECTION_BENCH_SQLITE_REPEAT="${DETECTION_BENCH_SQLITE_REPEAT:-1}"
export LATENCY_BENCH_SECONDS="${LATENCY_BENCH_SECONDS:-40}"
export LATENCY_BENCH_BACKLOG="${LATENCY_BENCH_BACKLOG:-200000}"
export INGEST_SCALING_EVENTS="${INGEST_SCALING_EVENTS:-200000}"
export INGEST_SCALING_ROUNDS="${INGEST_SCALING_ROUNDS:-2}"

step() { printf '\n==> %s (%s)\n' "$*" "$(date -u +%H:%M:%S)" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# The busiest processes, so the report says what else ran.
busy() { ps -eo pcpu=,comm= --sort=-pcpu | head -5 | awk '{printf "%s%s %s%%", (NR>1?", ":""), $2, $1}'; }

step "peers"
if [ ! -x "$TANSU_BIN" ]; then
  step "installing the tansu broker into $tansu_root (about 10 minutes on 2 cores, once)"
  cargo install tansu --version 0.6.0 --features dynostore,libsql --locked --root "$tansu_root" || exit 1
fi
if ! "$duckdb_venv/bin/python" -c "import duckdb, sys; sys.exit(duckdb.__version__ != '$duckdb_version')" >/dev/null 2>&1; then
  step "installing DuckDB $duckdb_version into $duckdb_venv"
  [ -x "$duckdb_venv/bin/python" ] || python3 -m venv "$duckdb_venv" || exit 1
  "$duckdb_venv/bin/pip" install --quiet --disable-pip-version-check "duckdb==$duckdb_version" || exit 1
fi
pysigma_python="$(bash scripts/pysigma-venv.sh | tail -1)" || exit 1
export INGEST_BENCH_PYTHON="${INGEST_BENCH_PYTHON:-$duckdb_venv/bin/python}"
export HUNT_BENCH_PYTHON="${HUNT_BENCH_PYTHON:-$duckdb_venv/bin/python}"

# One release build of the spoor binary and every bench, with the features
# of both unified (a `cargo bench` of the benches alone resolves features
# differently and rebuilds the whole dependency tree a second time); the
# benches then run as built, with the binary given to those that start it.
declare -A bench_exe=()
if [ "${REPORT_SKIP_BUILD:-0}" != 1 ]; then
  step "building the release spoor binary and the benches (not timed)"
  cargo build --release --locked -p spoor -p spoor-benches --bin spoor --benches \
    --message-format json-render-diagnostics >"$raw/build.json" 2>"$raw/build.log" \
    || { echo "build failed, see $raw/build.log" >&2; tail -20 "$raw/build.log" >&2; exit 1; }
  while read -r name exe; do
    bench_exe[$name]="$exe"
  done < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        kind = m["target"]["kind"]
        if "bin" in kind:
            # --benches also builds the binary as a bench harness: not that one.
            if not m["profile"]["test"]:
                print("bin:" + m["target"]["name"], m["executable"])
        elif "bench" in kind:
            print(m["target"]["name"], m["executable"])
' "$raw/build.json")
  rm -f "$raw/build.json"
  spoor_bin="${bench_exe[bin:spoor]:-}"
  [ -n "$spoor_bin" ] || { echo "the build named no spoor executable" >&2; exit 1; }
  export INGEST_BENCH_SPOOR_BIN="${INGEST_BENCH_SPOOR_BIN:-$spoor_bin}"
  export LATENCY_BENCH_SPOOR_BIN="${LATENCY_BENCH_SPOOR_BIN:-$spoor_bin}"
  export INGEST_SCALING_SPOOR_BIN="${INGEST_SCALING_SPOOR_BIN:-$spoor_bin}"
fi

started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
start_s="$(date +%s)"
load_before="$(loadavg)"
busy_before="$(busy)"
results=()
stop_at_s=""
[ -n "${REPORT_STOP_AT:-}" ] && stop_at_s="$(date -u -d "$REPORT_STOP_AT" +%s)"
for bench in "${benches[@]}"; do
  rm -f "$raw/$bench.json"
  if [ -n "$stop_at_s" ] && [ "$(date +%s)" -ge "$stop_at_s" ]; then
    step "skipping $bench (REPORT_STOP_AT=$REPORT_STOP_AT)"
    results+=("{\"bench\":\"$bench\",\"exit\":null,\"skipped\":true,\"seconds\":0,\"load_before\":\"\",\"load_after\":\"\"}")
    continue
  fi
  step "bench $bench"
  log="$raw/$bench.log"
  t0="$(date +%s)"
  lb="$(loadavg)"
  if [ -n "${bench_exe[$bench]:-}" ]; then
    # As `cargo bench` runs it: from the package's folder, with --bench.
    (cd benches && "${bench_exe[$bench]}" --bench) >"$log" 2>&1
  else
    cargo bench --locked -q -p spoor-benches --bench "$bench" >"$log" 2>&1
  fi
  rc=$?
  t1="$(date +%s)"
  la="$(loadavg)"
  grep '^REPORT ' "$log" | tail -1 | cut -c8- >"$raw/$bench.json"
  [ -s "$raw/$bench.json" ] || rm -f "$raw/$bench.json"
  echo "   exit $rc after $((t1 - t0)) s, load average $lb -> $la" >&2
  [ "$rc" = 0 ] || tail -15 "$log" >&2
  results+=("{\"bench\":\"$bench\",\"exit\":$rc,\"seconds\":$((t1 - t0)),\"load_before\":\"$lb\",\"load_after\":\"$la\"}")
done
end_s="$(date +%s)"

# The run's conditions, for the renderer.
commit="$(git rev-parse HEAD)"
dirty="$(git status --porcelain --untracked-files=no | grep -v " $out/" | wc -l)"
python3 - "$raw/run.json" <<EOF
import json, sys
json.dump({
  "started": "$started",
  "seconds": $((end_s - start_s)),
  "commit": "$commit",
  "files_changed_since_commit": $dirty,
  "command": "bash benches/run-report.sh",
  "skip_build": "${REPORT_SKIP_BUILD:-0}" == "1",
  "stop_at": "${REPORT_STOP_AT:-}",
  "nproc": $(nproc),
  "cpu_model": """$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)""",
  "memory": """$(free -h | awk '/^Mem:/ {print $2}')""",
  "kernel": """$(uname -r)""",
  "rustc": """$(rustc --version)""",
  "tansu": """$("$TANSU_BIN" --version 2>/dev/null | head -1)""",
  "duckdb": """$("$duckdb_venv/bin/python" -c 'import duckdb; print(duckdb.__version__)' 2>/dev/null)""",
  "pysigma": """$("$pysigma_python" -c 'import importlib.metadata as m; print(m.version("pySigma"), "/ sqlite backend", m.version("pysigma-backend-sqlite"))' 2>/dev/null)""",
  "load_before": "$load_before",
  "load_after": "$(loadavg)",
  "busy_before": """$busy_before""",
  "busy_after": """$(busy)""",
  "knobs": {k: v for k, v in {
$(for k in HUNT_BENCH_EVENTS HUNT_BENCH_RUNS INGEST_BENCH_EVENTS INGEST_BENCH_ROUNDS DETECTION_BENCH_RUNS DETECTION_BENCH_SQLITE_REPEAT LATENCY_BENCH_SECONDS LATENCY_BENCH_BACKLOG INGEST_SCALING_EVENTS INGEST_SCALING_ROUNDS; do printf '    "%s": "%s",\n' "$k" "${!k}"; done)
  }.items()},
  "benches": json.loads("""[$(IFS=,; echo "${results[*]}")]"""),
}, open(sys.argv[1], "w"), indent=1)
EOF
step "writing $out/REPORT.md"
python3 benches/render-report.py "$raw" >"$out/REPORT.md" || exit 1
echo "$out/REPORT.md" >&2
failed=0
for r in "${results[@]}"; do case "$r" in *'"exit":0,'* | *'"skipped":true'*) ;; *) failed=$((failed + 1)) ;; esac; done
[ "$failed" = 0 ] || { echo "$failed bench(es) failed: see $raw/*.log" >&2; exit 1; }
