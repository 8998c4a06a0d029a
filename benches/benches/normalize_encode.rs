//! Ingest CPU cost, side by side with a peer, on the public Windows corpus
//! (`../shared/corpus/events/otrf-windows`, 24,591 events, 44 MB).
//!
//! - spoor: JSON line → normalized row (alias mapping, `unmapped`, `raw`,
//!   derived columns) → Arrow batch of the event schema → zstd Parquet with
//!   statistics and bloom filters (what a flush does, minus the object-store put).
//! - peer: arrow-json's `Decoder` (the Arrow project's own JSON → Arrow reader)
//!   decoding the same lines into a schema inferred from them, then the same
//!   zstd Parquet writer without bloom filters: the plain JSON-to-Parquet path
//!   any Arrow-based lake ingests with.
//!
//! Run: `cargo bench -p spoor-benches --bench normalize_encode`. Each side runs
//! `ROUNDS` times alternating, the best round counts (the machine is shared),
//! and the report gives events/s for both and spoor's time as a ratio of the
//! peer's.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::json::ReaderBuilder;
use arrow::json::reader::infer_json_schema_from_iterator;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use spoor_common::schema::EVENT_COLUMNS;
use spoor_ingest::lake_writer::{encode_parquet, event_batch};
use spoor_ingest::parse::{JsonNormalizer, Provenance};

mod support;
use support::{load_corpus, report_line};

const ROUNDS: usize = 5;
/// Rows per Arrow batch and Parquet file, close to a busy partition's flush.
const BATCH: usize = 8192;

/// Time spent in each phase of spoor's side.
#[derive(Default, Clone, Copy)]
struct Phases {
    normalize: Duration,
    arrow: Duration,
    parquet: Duration,
}

fn spoor(lines: &[Vec<u8>], phases: &mut Phases) -> usize {
    let normalizer = JsonNormalizer::new();
    let mut bytes = 0;
    for chunk in lines.chunks(BATCH) {
        let t = Instant::now();
        let rows: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let prov = Provenance {
                    topic: "bench".into(),
                    partition: Some(0),
                    offset: Some(i as i64),
                    ingest_time_micros: 1_800_000_000_000_000,
                };
                normalizer
                    .normalize(l, &prov)
                    .expect("corpus events normalize")
            })
            .collect();
        phases.normalize += t.elapsed();
        let t = Instant::now();
        let refs: Vec<_> = rows.iter().collect();
        let batch = event_batch(&refs).expect("batch");
        phases.arrow += t.elapsed();
        let t = Instant::now();
        bytes += encode_parquet(&batch, EVENT_COLUMNS, 3)
            .expect("parquet")
            .len();
        phases.parquet += t.elapsed();
    }
    bytes
}

fn peer(lines: &[Vec<u8>], schema: &arrow::datatypes::SchemaRef) -> usize {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level")))
        .set_statistics_enabled(EnabledStatistics::Page)
        .build();
    let mut bytes = 0;
    for chunk in lines.chunks(BATCH) {
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(BATCH)
            .with_coerce_primitive(true)
            .build_decoder()
            .expect("decoder");
        for l in chunk {
            decoder.decode(l).expect("decode");
            decoder.decode(b"\n").expect("decode");
        }
        let batch = decoder.flush().expect("flush").expect("a batch");
        let mut buf = Vec::new();
        let mut w =
            ArrowWriter::try_new(&mut buf, batch.schema(), Some(props.clone())).expect("writer");
        w.write(&batch).expect("write");
        w.close().expect("close");
        bytes += buf.len();
    }
    bytes
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

fn main() {
    let lines = load_corpus().expect("the otrf-windows corpus");
    let input_bytes: usize = lines.iter().map(Vec::len).sum();
    let values = lines.iter().map(|l| serde_json_value(l));
    let schema = Arc::new(infer_json_schema_from_iterator(values).expect("infer schema"));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut our_out, mut their_out) = (0, 0);
    let mut best_phases = Phases::default();
    for _ in 0..ROUNDS {
        let mut phases = Phases::default();
        let t = Instant::now();
        our_out = black_box(spoor(&lines, &mut phases));
        let took = t.elapsed();
        if ours.iter().all(|d| took < *d) {
            best_phases = phases;
        }
        ours.push(took);
        let t = Instant::now();
        their_out = black_box(peer(&lines, &schema));
        theirs.push(t.elapsed());
    }
    let (o, p) = (best(&ours), best(&theirs));
    let eps = |d: Duration| lines.len() as f64 / d.as_secs_f64();
    println!(
        "corpus: otrf-windows, {} events, {:.1} MB of JSON",
        lines.len(),
        input_bytes as f64 / 1e6
    );
    println!(
        "spoor  normalize+encode: best of {ROUNDS} {:>8.1} ms  {:>10.0} events/s  {:>6.1} MB/s in  parquet {:.1} MB",
        o.as_secs_f64() * 1e3,
        eps(o),
        input_bytes as f64 / 1e6 / o.as_secs_f64(),
        our_out as f64 / 1e6
    );
    println!(
        "peer   arrow-json+encode: best of {ROUNDS} {:>8.1} ms  {:>10.0} events/s  {:>6.1} MB/s in  parquet {:.1} MB ({} inferred columns)",
        p.as_secs_f64() * 1e3,
        eps(p),
        input_bytes as f64 / 1e6 / p.as_secs_f64(),
        their_out as f64 / 1e6,
        schema.fields().len()
    );
    println!(
        "spoor phases in its best round: normalize {:.1} ms, arrow {:.1} ms, parquet {:.1} ms",
        best_phases.normalize.as_secs_f64() * 1e3,
        best_phases.arrow.as_secs_f64() * 1e3,
        best_phases.parquet.as_secs_f64() * 1e3
    );
    println!(
        "ratio  spoor time / peer time: {:.2}",
        o.as_secs_f64() / p.as_secs_f64()
    );
    report_line(
        "normalize_encode",
        serde_json::json!({
            "events": lines.len(),
            "json_mb": input_bytes as f64 / 1e6,
            "rounds": ROUNDS,
            "spoor_ms": o.as_secs_f64() * 1e3,
            "spoor_events_per_s": eps(o),
            "peer": "arrow-json",
            "peer_ms": p.as_secs_f64() * 1e3,
            "peer_events_per_s": eps(p),
            "spoor_time_over_peer_time": o.as_secs_f64() / p.as_secs_f64(),
            "spoor_phases_ms": {
                "normalize": best_phases.normalize.as_secs_f64() * 1e3,
                "arrow": best_phases.arrow.as_secs_f64() * 1e3,
                "parquet": best_phases.parquet.as_secs_f64() * 1e3,
            },
        }),
    );
}

/// The corpus line as a JSON value, for schema inference.
fn serde_json_value(line: &[u8]) -> Result<serde_json::Value, arrow::error::ArrowError> {
    serde_json::from_slice(line).map_err(|e| arrow::error::ArrowError::JsonError(e.to_string()))
}
