//! Hunting queries over the lake, side by side with DuckDB on the same files.
//!
//! Data: `HUNT_BENCH_EVENTS` generated events (default 10,000,000) in hourly
//! files of up to 1,000,000 rows, written with Spoor's own Parquet writer
//! (`spoor_ingest::lake_writer::encode_parquet`: zstd, page statistics, bloom
//! filters on the lookup columns, time-sorted), the way compacted hours look
//! in the lake. The mix: authentication, network, process and DNS events
//! over 65,536 source addresses, 5,000 users, 2,000 hosts and 100,000 file
//! hashes, each event with a ~200-byte `raw`. One needle address and one
//! needle hash occur a handful of times. The files are kept under
//! `~/.cache/spoor/hunt-bench-<events>` and reused by later runs.
//!
//! Contenders, each query run once to warm up and then `HUNT_BENCH_RUNS`
//! times (default 5), the median reported:
//!
//! - `spoor`: `spoor_query::QueryEngine` in this process (a fresh
//!   tenant-scoped session per query, as every request gets: catalog listing,
//!   planning, Parquet pruning with statistics, page index and bloom
//!   filters), over a local-disk lake and an in-memory catalog.
//! - `duckdb`: DuckDB (Python package, venv under
//!   `~/.cache/spoor/duckdb-venv`, installed by pip if missing) with a view
//!   over `read_parquet` of the same files, in one long-lived connection.
//!
//! Both use every core of the machine. The issue's targets: no query slower
//! than DuckDB (ratio spoor/duckdb ≤ 1) and needle lookups under 200 ms warm.
//!
//! Run: `cargo bench -p spoor-benches --bench hunting`. Knobs:
//! `HUNT_BENCH_EVENTS`, `HUNT_BENCH_RUNS`, `HUNT_BENCH_PYTHON` (a Python
//! with `duckdb`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use arrow::array::{ArrayRef, Int32Array, StringArray, TimestampMicrosecondArray, new_null_array};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use spoor_common::catalog::{Catalog, CommitBatch, MemoryCatalog, NewFile};
use spoor_common::config::{HttpAuth, QueryConfig};
use spoor_common::layout;
use spoor_common::schema::{EVENT_COLUMNS, EVENT_SCHEMA_VERSION, Table, event_schema};
use spoor_common::tenant::TenantId;
use spoor_query::{QueryEngine, Scope};

mod support;
use support::{duckdb_python, report_line};

/// Events per file (one compacted hour).
const FILE_ROWS: usize = 1_000_000;
/// The first hour of the data: 2024-03-01T00:00:00Z.
const START_MICROS: i64 = 1_709_251_200_000_000;
const NEEDLE_IP: &str = "203.0.113.77";
const NEEDLE_HASH: &str = "5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee5f1c0ffee00";

/// The queries, the same SQL for both engines.
fn queries() -> Vec<(&'static str, String)> {
    let iocs: Vec<String> = (0..1000)
        .map(|i| format!("('10.{}.{}.{}')", i % 7, (i * 37) % 256, (i * 101) % 256))
        .collect();
    vec![
        (
            "needle ip",
            format!(
                "SELECT time, user_name, dst_ip FROM events WHERE src_ip = '{NEEDLE_IP}' ORDER BY time"
            ),
        ),
        (
            "needle hash",
            format!(
                "SELECT time, device_hostname, process_name FROM events WHERE hash_sha256 = '{NEEDLE_HASH}'"
            ),
        ),
        (
            "hourly count",
            "SELECT date_trunc('hour', time) AS hour, count(*) AS n FROM events \
             WHERE class_uid = 3002 GROUP BY 1 ORDER BY 1"
                .to_string(),
        ),
        (
            "top-10 users",
            "SELECT user_name, count(*) AS n FROM events WHERE class_uid = 3002 \
             GROUP BY user_name ORDER BY n DESC, user_name LIMIT 10"
                .to_string(),
        ),
        (
            "ioc join",
            format!(
                "WITH iocs(ip) AS (VALUES {}) SELECT e.src_ip, count(*) AS n FROM events e \
                 JOIN iocs i ON e.src_ip = i.ip GROUP BY e.src_ip ORDER BY n DESC, e.src_ip LIMIT 20",
                iocs.join(", ")
            ),
        ),
    ]
}

/// A tiny deterministic generator (xorshift64*), so every run writes the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One file's rows: `rows` events of hour `hour`, needles in hour 3.
fn batch(hour: usize, rows: usize) -> Result<RecordBatch> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (hour as u64 + 1));
    let hour_start = START_MICROS + hour as i64 * 3_600_000_000;
    let mut time = Vec::with_capacity(rows);
    let mut class = Vec::with_capacity(rows);
    let (mut src, mut dst, mut user, mut host, mut process, mut hash, mut raw) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for i in 0..rows {
        time.push(hour_start + (i as i64 * 3_600_000_000) / rows as i64);
        let kind = rng.below(4);
        class.push([3002, 4001, 1007, 4003][kind as usize]);
        let needle = hour == 3 && i % (rows / 5).max(1) == 7;
        let s = if needle {
            NEEDLE_IP.to_string()
        } else {
            let a = rng.below(65_536);
            format!("10.{}.{}.{}", a % 7, (a >> 3) % 256, a % 256)
        };
        let d = format!("192.0.{}.{}", rng.below(4), rng.below(256));
        // A skewed user distribution: a few busy accounts, a long tail.
        let u = format!("user{:04}", (rng.below(5000) * rng.below(5000)) / 5000);
        let h = format!("host-{:04}", rng.below(2000));
        let (p, x) = if kind == 2 {
            let n = rng.below(100_000);
            let hx = if needle {
                NEEDLE_HASH.to_string()
            } else {
                format!(
                    "{:016x}{:016x}{:016x}{:016x}",
                    n,
                    n ^ 0xA5A5,
                    n.wrapping_mul(31),
                    n ^ 0x5A5A
                )
            };
            (Some(format!("proc{}.exe", n % 500)), Some(hx))
        } else {
            (None, None)
        };
        raw.push(format!(
            "{{\"ts\":{},\"src\":\"{s}\",\"dst\":\"{d}\",\"user\":\"{u}\",\"host\":\"{h}\",\"class\":{},\"msg\":\"generated event {i}\"}}",
            time[i], class[i]
        ));
        src.push(s);
        dst.push(d);
        user.push(u);
        host.push(h);
        process.push(p);
        hash.push(x);
    }
    let schema = event_schema();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column: ArrayRef = match field.name().as_str() {
            "time" | "ingest_time" => {
                Arc::new(TimestampMicrosecondArray::from(time.clone()).with_timezone("UTC"))
            }
            "class_uid" => Arc::new(Int32Array::from(class.clone())),
            "src_ip" => Arc::new(StringArray::from(std::mem::take(&mut src))),
            "dst_ip" => Arc::new(StringArray::from(std::mem::take(&mut dst))),
            "user_name" => Arc::new(StringArray::from(std::mem::take(&mut user))),
            "device_hostname" => Arc::new(StringArray::from(std::mem::take(&mut host))),
            "process_name" => Arc::new(StringArray::from(std::mem::take(&mut process))),
            "hash_sha256" => Arc::new(StringArray::from(std::mem::take(&mut hash))),
            "raw" => Arc::new(StringArray::from(std::mem::take(&mut raw))),
            "unmapped" => Arc::new(StringArray::from(vec!["{}"; rows])),
            _ if field.is_nullable() => new_null_array(field.data_type(), rows),
            _ => match field.data_type() {
                DataType::Utf8 => Arc::new(StringArray::from(vec!["bench"; rows])),
                DataType::Int32 => Arc::new(Int32Array::from(vec![0; rows])),
                DataType::Int64 => Arc::new(arrow::array::Int64Array::from(vec![0_i64; rows])),
                other => bail!(
                    "no generator for required column {} ({other})",
                    field.name()
                ),
            },
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Writes the data set (once) and commits its files to `catalog`.
async fn lake(
    dir: &Path,
    events: usize,
    tenant: &TenantId,
    catalog: &MemoryCatalog,
) -> Result<Arc<dyn ObjectStore>> {
    std::fs::create_dir_all(dir)?;
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir)?);
    let hours = events.div_ceil(FILE_ROWS);
    let mut files = Vec::new();
    for hour in 0..hours {
        let rows = FILE_ROWS.min(events - hour * FILE_ROWS);
        let hour_micros = START_MICROS + hour as i64 * 3_600_000_000;
        let file_id = format!("bench{hour:04}");
        let key = layout::object_key(tenant, Table::Events, hour_micros, &file_id);
        let path = dir.join(&key);
        if !path.exists() {
            let started = Instant::now();
            let batch = batch(hour, rows)?;
            let bytes = spoor_ingest::lake_writer::encode_parquet(&batch, EVENT_COLUMNS, 3)?;
            std::fs::create_dir_all(path.parent().context("parent")?)?;
            let partial = path.with_extension("partial");
            std::fs::write(&partial, &bytes)?;
            std::fs::rename(&partial, &path)?;
            eprintln!(
                "wrote {key}: {rows} events, {:.1} MB in {:.1?}",
                bytes.len() as f64 / 1e6,
                started.elapsed()
            );
        }
        files.push(NewFile {
            file_id,
            tenant: tenant.clone(),
            table: Table::Events,
            object_key: key,
            min_time_micros: hour_micros,
            max_time_micros: hour_micros + 3_599_999_999,
            row_count: rows as u64,
            byte_size: std::fs::metadata(&path)?.len(),
            schema_version: EVENT_SCHEMA_VERSION,
            source: None,
        });
    }
    catalog
        .commit_batch(CommitBatch {
            files,
            checkpoints: vec![],
        })
        .await?;
    Ok(store)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// DuckDB's median per query, and its row counts, over the same files;
/// also DuckDB's version.
fn duckdb(dir: &Path, runs: usize) -> Result<(Vec<(Duration, usize)>, String)> {
    let script = r#"
import json, statistics, sys, time, duckdb
args = json.loads(sys.argv[1])
con = duckdb.connect()
con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{args['glob']}')")
out = []
for sql in args["queries"]:
    rows = len(con.execute(sql).fetchall())
    times = []
    for _ in range(args["runs"]):
        t = time.perf_counter(); con.execute(sql).fetchall(); times.append(time.perf_counter() - t)
    out.append([statistics.median(times), rows])
print(json.dumps({"version": duckdb.__version__, "results": out}))
"#;
    let args = serde_json::json!({
        "glob": format!("{}/tenants/*/events/*/*/*.parquet", dir.display()),
        "queries": queries().into_iter().map(|(_, q)| q).collect::<Vec<_>>(),
        "runs": runs,
    });
    let out = Command::new(duckdb_python("HUNT_BENCH_PYTHON")?)
        .args(["-c", script])
        .arg(args.to_string())
        .output()?;
    if !out.status.success() {
        bail!("duckdb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let version = parsed["version"].as_str().unwrap_or("?").to_string();
    let results: Vec<(f64, usize)> =
        serde_json::from_value(parsed["results"].clone()).context("duckdb results")?;
    Ok((
        results
            .into_iter()
            .map(|(s, rows)| (Duration::from_secs_f64(s), rows))
            .collect(),
        version,
    ))
}

fn main() -> Result<()> {
    let events: usize = std::env::var("HUNT_BENCH_EVENTS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("HUNT_BENCH_EVENTS")?
        .unwrap_or(10_000_000);
    let runs: usize = std::env::var("HUNT_BENCH_RUNS")
        .ok()
        .map(|v| v.parse())
        .transpose()
        .context("HUNT_BENCH_RUNS")?
        .unwrap_or(5)
        .max(1);
    let home = std::env::var("HOME").context("HOME is not set")?;
    let dir = PathBuf::from(home).join(format!(".cache/spoor/hunt-bench-{events}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tenant = TenantId::new("bench")?;
    let catalog = Arc::new(MemoryCatalog::new());
    let store = rt.block_on(lake(&dir, events, &tenant, &catalog))?;
    let engine = QueryEngine::new(
        catalog,
        store,
        QueryConfig {
            max_result_rows: 1_000_000,
            timeout_ms: 600_000,
            max_sql_bytes: 1 << 20,
            max_memory_bytes: 4 << 30,
            auth: HttpAuth::None,
            max_concurrent_per_tenant: 16,
            history_size: 1000,
            flight_addr: String::new(),
            postgres_addr: String::new(),
        },
    );
    let scope = Scope::single(tenant);
    let mut spoor = Vec::new();
    for (name, sql) in queries() {
        let rows = rt
            .block_on(engine.execute(&scope, "bench", &sql))
            .with_context(|| format!("{name}: {sql}"))?
            .row_count;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            rt.block_on(engine.execute(&scope, "bench", &sql))?;
            times.push(started.elapsed());
        }
        spoor.push((median(times), rows));
    }
    let (duck, duck_version) = duckdb(&dir, runs)?;

    println!(
        "hunting queries over {events} events ({} files), median of {runs} warm runs, {} cores, DuckDB {duck_version}",
        events.div_ceil(FILE_ROWS),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<14} {:>12} {:>12} {:>14} {:>6}",
        "query", "spoor ms", "duckdb ms", "spoor/duckdb", "rows"
    );
    let mut slower = Vec::new();
    let mut summary = Vec::new();
    for (((name, _), (s, rows)), (d, duck_rows)) in queries().iter().zip(&spoor).zip(&duck) {
        if rows != duck_rows {
            bail!("{name}: spoor returned {rows} rows, duckdb {duck_rows}");
        }
        let ratio = s.as_secs_f64() / d.as_secs_f64();
        if ratio > 1.0 {
            slower.push(*name);
        }
        summary.push(serde_json::json!({
            "query": name,
            "spoor_ms": s.as_secs_f64() * 1e3,
            "duckdb_ms": d.as_secs_f64() * 1e3,
            "spoor_over_duckdb": ratio,
            "rows": rows,
        }));
        println!(
            "{name:<14} {:>12.1} {:>12.1} {ratio:>14.2} {rows:>6}",
            s.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e3
        );
    }
    let needles_ms = spoor[..2]
        .iter()
        .map(|(s, _)| s.as_secs_f64() * 1e3)
        .fold(0.0_f64, f64::max);
    println!(
        "target: no query slower than duckdb: {}; needle lookups under 200 ms warm: {} ({needles_ms:.1} ms)",
        if slower.is_empty() {
            "met".to_string()
        } else {
            format!("missed ({})", slower.join(", "))
        },
        if needles_ms < 200.0 { "met" } else { "missed" }
    );
    report_line(
        "hunting",
        serde_json::json!({
            "events": events,
            "files": events.div_ceil(FILE_ROWS),
            "runs": runs,
            "duckdb": duck_version,
            "queries": summary,
            "slower_than_duckdb": slower,
            "needle_max_ms": needles_ms,
        }),
    );
    Ok(())
}
