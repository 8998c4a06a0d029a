//! Rows → Arrow record batches → zstd Parquet files in the lake, one file per
//! table and event hour, sorted by time, with page statistics and bloom
//! filters on lookup columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use spoor_common::catalog::{NewFile, SourceRange};
use spoor_common::schema::{
    ColumnDef, ColumnKind, DEAD_LETTER_COLUMNS, DEAD_LETTER_SCHEMA_VERSION, EVENT_COLUMNS,
    EVENT_SCHEMA_VERSION, Table, dead_letter_schema, event_schema,
};
use spoor_common::storage::put_object;
use spoor_common::tenant::TenantId;
use spoor_common::{lake_file, layout};

/// The default multipart threshold, bytes (`storage.s3.multipart_threshold_bytes`).
const DEFAULT_MULTIPART_THRESHOLD: usize =
    spoor_common::config::DEFAULT_MULTIPART_THRESHOLD_BYTES as usize;

use crate::error::IngestError;
use crate::parse::{Cell, EventRow};

/// An event that could not be ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRow {
    /// When it was received, microseconds.
    pub ingest_time_micros: i64,
    /// Kafka topic or `http:<source>`.
    pub topic: String,
    /// Kafka partition.
    pub partition: Option<i32>,
    /// Kafka offset or HTTP line number.
    pub offset: Option<i64>,
    /// Why it failed.
    pub error: String,
    /// The bytes as received.
    pub raw: Vec<u8>,
}

/// How the files of one flush are identified.
#[derive(Debug, Clone)]
pub enum FileOrigin {
    /// A Kafka offset range: file ids derive from it (exactly-once).
    Kafka(SourceRange),
    /// A request without offsets (HTTP): file ids derive from its unique id.
    Request(String),
}

/// Writes Parquet files to the lake.
#[derive(Clone)]
pub struct LakeWriter {
    store: Arc<dyn ObjectStore>,
    zstd_level: i32,
    multipart_threshold: usize,
}

impl std::fmt::Debug for LakeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeWriter")
            .field("zstd_level", &self.zstd_level)
            .field("multipart_threshold", &self.multipart_threshold)
            .finish()
    }
}

impl LakeWriter {
    /// A writer into `store` with the given zstd level, uploading files
    /// above the default multipart threshold in parts.
    pub fn new(store: Arc<dyn ObjectStore>, zstd_level: i32) -> Self {
        LakeWriter {
            store,
            zstd_level,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
        }
    }

    /// Files larger than `bytes` go up as multipart uploads
    /// (`storage.s3.multipart_threshold_bytes`).
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Self {
        self.multipart_threshold = bytes;
        self
    }

    /// Writes the rows of one source range (events and dead letters) as one
    /// file per table and hour, and returns the files to commit.
    pub async fn write(
        &self,
        tenant: &TenantId,
        origin: &FileOrigin,
        events: &[EventRow],
        dead: &[DeadLetterRow],
    ) -> Result<Vec<NewFile>, IngestError> {
        let encoded = self.encode(tenant, origin, events, dead)?;
        self.put_all(encoded).await
    }

    /// Encodes the rows of one source range as one Parquet file per table
    /// and hour, in memory. CPU only: callers on an async runtime run it
    /// where it cannot stall other tasks (the Kafka pipeline uses
    /// `spawn_blocking`).
    pub fn encode(
        &self,
        tenant: &TenantId,
        origin: &FileOrigin,
        events: &[EventRow],
        dead: &[DeadLetterRow],
    ) -> Result<Vec<EncodedFile>, IngestError> {
        let mut files = Vec::new();
        let mut by_hour: BTreeMap<i64, Vec<&EventRow>> = BTreeMap::new();
        for row in events {
            by_hour
                .entry(layout::hour_start_micros(row.time()))
                .or_default()
                .push(row);
        }
        for (hour, rows) in by_hour {
            let batch = event_batch(&rows)?;
            files.push(self.encode_file(tenant, Table::Events, origin, hour, batch)?);
        }
        let mut dead_by_hour: BTreeMap<i64, Vec<&DeadLetterRow>> = BTreeMap::new();
        for row in dead {
            dead_by_hour
                .entry(layout::hour_start_micros(row.ingest_time_micros))
                .or_default()
                .push(row);
        }
        for (hour, rows) in dead_by_hour {
            let batch = dead_letter_batch(&rows)?;
            files.push(self.encode_file(tenant, Table::DeadLetter, origin, hour, batch)?);
        }
        Ok(files)
    }

    fn encode_file(
        &self,
        tenant: &TenantId,
        table: Table,
        origin: &FileOrigin,
        hour: i64,
        batch: RecordBatch,
    ) -> Result<EncodedFile, IngestError> {
        let batch = sort_by_time(batch)?;
        let (min_time, max_time) = time_range(&batch);
        let (columns, version) = match table {
            Table::Events => (EVENT_COLUMNS, EVENT_SCHEMA_VERSION),
            _ => (DEAD_LETTER_COLUMNS, DEAD_LETTER_SCHEMA_VERSION),
        };
        let bytes = encode_parquet(&batch, columns, self.zstd_level)?;
        let (file_id, source) = match origin {
            FileOrigin::Kafka(range) => (
                layout::file_id_for_range(range, tenant, table, hour),
                Some(range.clone()),
            ),
            FileOrigin::Request(id) => (layout::file_id_for_request(id, tenant, table, hour), None),
        };
        let key = layout::object_key(tenant, table, hour, &file_id);
        let file = NewFile {
            file_id,
            tenant: tenant.clone(),
            table,
            object_key: key,
            min_time_micros: min_time,
            max_time_micros: max_time,
            row_count: batch.num_rows() as u64,
            byte_size: bytes.len() as u64,
            schema_version: version,
            source,
        };
        Ok(EncodedFile { bytes, file })
    }

    /// Stores encoded files, a few puts at a time, and returns the files to
    /// commit in the order given.
    pub async fn put_all(&self, files: Vec<EncodedFile>) -> Result<Vec<NewFile>, IngestError> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(files.into_iter().map(|f| self.put(f)))
            .buffered(CONCURRENT_PUTS)
            .try_collect()
            .await
    }

    async fn put(&self, encoded: EncodedFile) -> Result<NewFile, IngestError> {
        let EncodedFile { bytes, file } = encoded;
        let key = &file.object_key;
        // A put is atomic (local disk: temp file + rename; S3: single PUT or
        // completed multipart), so a crash never leaves a half file at `key`;
        // and the key is the file's deterministic id, so a retried flush
        // writes the same object again rather than a second one.
        put_object(
            self.store.as_ref(),
            &ObjectPath::from(key.as_str()),
            PutPayload::from(bytes),
            self.multipart_threshold,
        )
        .await
        .map_err(|source| IngestError::WriteFile {
            key: key.clone(),
            source,
        })?;
        let table = file.table.name();
        metrics::counter!("spoor_ingest_files_written_total", "table" => table).increment(1);
        metrics::counter!("spoor_ingest_bytes_written_total", "table" => table)
            .increment(file.byte_size);
        Ok(file)
    }
}

/// Object-store puts of one flush in flight at once: enough to hide the
/// latency of a remote store, few enough not to flood it.
const CONCURRENT_PUTS: usize = 8;

/// A Parquet file encoded in memory, with the catalog entry it will get.
#[derive(Debug, Clone)]
pub struct EncodedFile {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Its catalog entry (key, time range, rows, size).
    pub file: NewFile,
}

pub(crate) fn sort_by_time(batch: RecordBatch) -> Result<RecordBatch, IngestError> {
    let indices = sort_to_indices(
        batch.column(0),
        Some(SortOptions {
            descending: false,
            nulls_first: false,
        }),
        None,
    )
    .map_err(IngestError::Arrow)?;
    take_record_batch(&batch, &indices).map_err(IngestError::Arrow)
}

pub(crate) fn time_range(batch: &RecordBatch) -> (i64, i64) {
    use arrow::array::{Array, TimestampMicrosecondArray};
    let Some(times) = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
    else {
        return (0, 0);
    };
    if times.is_empty() {
        return (0, 0);
    }
    (times.value(0), times.value(times.len() - 1))
}

/// Encodes a batch as the lake's Parquet (see [`spoor_common::lake_file`]).
pub fn encode_parquet(
    batch: &RecordBatch,
    columns: &[ColumnDef],
    zstd_level: i32,
) -> Result<Vec<u8>, IngestError> {
    lake_file::encode_parquet(batch, columns, zstd_level).map_err(IngestError::Parquet)
}

/// Builds the `events` record batch from rows.
pub fn event_batch(rows: &[&EventRow]) -> Result<RecordBatch, IngestError> {
    let schema = event_schema();
    let columns: Vec<ArrayRef> = EVENT_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            build_column(
                c.kind,
                rows.iter().map(|r| r.cells.get(i).unwrap_or(&Cell::Null)),
                rows.len(),
            )
        })
        .collect();
    finish(schema, columns)
}

/// Builds the `dead_letter` record batch from rows.
pub fn dead_letter_batch(rows: &[&DeadLetterRow]) -> Result<RecordBatch, IngestError> {
    let mut time = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut error = StringBuilder::new();
    let mut raw = BinaryBuilder::new();
    let mut raw_text = StringBuilder::new();
    for r in rows {
        time.append_value(r.ingest_time_micros);
        topic.append_value(&r.topic);
        partition.append_option(r.partition);
        offset.append_option(r.offset);
        error.append_value(&r.error);
        raw.append_value(&r.raw);
        raw_text.append_value(String::from_utf8_lossy(&r.raw));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(time.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(error.finish()),
        Arc::new(raw.finish()),
        Arc::new(raw_text.finish()),
    ];
    finish(dead_letter_schema(), columns)
}

fn finish(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch, IngestError> {
    RecordBatch::try_new(schema, columns).map_err(IngestError::Arrow)
}

fn build_column<'a>(
    kind: ColumnKind,
    cells: impl Iterator<Item = &'a Cell>,
    len: usize,
) -> ArrayRef {
    match kind {
        ColumnKind::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(len).with_timezone("UTC");
            for c in cells {
                b.append_option(match c {
                    Cell::Int(v) => Some(*v),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ColumnKind::Int32 => {
            let mut b = Int32Builder::with_capacity(len);
            for c in cells {
                b.append_option(match c {
                    Cell::Int(v) => i32::try_from(*v).ok(),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ColumnKind::Int64 => {
            let mut b = Int64Builder::with_capacity(len);
            for c in cells {
                b.append_option(match c {
                    Cell::Int(v) => Some(*v),
                    _ => None,
                });
            }
            Arc::new(b.finish())
        }
        ColumnKind::Utf8 => {
            let mut b = StringBuilder::with_capacity(len, len * 16);
            for c in cells {
                match c {
                    Cell::Str(s) => b.append_value(s),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
        ColumnKind::Float64 => {
            // No event column is a float; kept total for the schema's sake.
            Arc::new(arrow::array::Float64Array::from(vec![None::<f64>; len]))
        }
        ColumnKind::Binary => {
            let mut b = BinaryBuilder::with_capacity(len, len * 16);
            for c in cells {
                match c {
                    Cell::Str(s) => b.append_value(s.as_bytes()),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{JsonNormalizer, Provenance};
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::Compression;

    fn rows() -> Vec<EventRow> {
        let n = JsonNormalizer::new();
        [
            r#"{"time":"2024-03-05T07:59:00Z","src_ip":"10.0.0.9"}"#,
            r#"{"time":"2024-03-05T07:10:00Z","src_ip":"10.0.0.1"}"#,
            r#"{"time":"2024-03-05T08:01:00Z","src_ip":"10.0.0.2"}"#,
        ]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let prov = Provenance {
                topic: "t".into(),
                partition: Some(0),
                offset: Some(i as i64),
                ingest_time_micros: 1_709_700_000_000_000,
            };
            n.normalize(e.as_bytes(), &prov).expect("normalizes")
        })
        .collect()
    }

    #[tokio::test]
    async fn writes_one_sorted_file_per_table_and_hour() {
        let store = Arc::new(InMemory::new());
        let writer = LakeWriter::new(store.clone(), 3);
        let tenant = TenantId::new("acme").expect("tenant");
        let range = SourceRange {
            source_id: "g".into(),
            topic: "t".into(),
            partition: 0,
            first_offset: 0,
            last_offset: 3,
        };
        let dead = vec![DeadLetterRow {
            ingest_time_micros: 1_709_625_600_000_000,
            topic: "t".into(),
            partition: Some(0),
            offset: Some(3),
            error: "invalid JSON: x".into(),
            raw: b"{x".to_vec(),
        }];
        let files = writer
            .write(&tenant, &FileOrigin::Kafka(range.clone()), &rows(), &dead)
            .await
            .expect("write");
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].row_count, 2);
        assert!(
            files[0]
                .object_key
                .starts_with("tenants/acme/events/date=2024-03-05/hour=07/")
        );
        assert!(
            files[2]
                .object_key
                .starts_with("tenants/acme/dead_letter/date=2024-03-05/hour=08/")
        );
        assert!(files[0].min_time_micros < files[0].max_time_micros);

        // The file is zstd Parquet, sorted by time, with bloom filters.
        let bytes = store
            .get(&ObjectPath::from(files[0].object_key.as_str()))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
        let meta = builder.metadata().clone();
        let rg = meta.row_group(0);
        assert!(matches!(rg.column(0).compression(), Compression::ZSTD(_)));
        let src_ip = EVENT_COLUMNS
            .iter()
            .position(|c| c.name == "src_ip")
            .expect("src_ip");
        assert!(rg.column(src_ip).bloom_filter_offset().is_some());
        // Sized for the file's two rows, not the writer's default of a
        // million distinct values (1 MiB per filter).
        let bloom_len = rg.column(src_ip).bloom_filter_length().expect("length");
        assert!(bloom_len <= 1024, "bloom filter of {bloom_len} bytes");
        // A column no row sets is stored uncompressed, without a filter.
        let dns_query = EVENT_COLUMNS
            .iter()
            .position(|c| c.name == "dns_query")
            .expect("dns_query");
        assert_eq!(
            rg.column(dns_query).compression(),
            Compression::UNCOMPRESSED
        );
        assert!(rg.column(dns_query).bloom_filter_offset().is_none());
        assert!(matches!(
            rg.column(src_ip).compression(),
            Compression::ZSTD(_)
        ));
        let batch = builder
            .build()
            .expect("reader")
            .next()
            .expect("batch")
            .expect("ok");
        let ips = batch
            .column(src_ip)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("strings");
        assert_eq!(ips.value(0), "10.0.0.1");

        // Same range, same keys: a replay overwrites identical files.
        let again = writer
            .write(&tenant, &FileOrigin::Kafka(range), &rows(), &dead)
            .await
            .expect("rewrite");
        assert_eq!(
            again.iter().map(|f| &f.file_id).collect::<Vec<_>>(),
            files.iter().map(|f| &f.file_id).collect::<Vec<_>>()
        );
    }
}
