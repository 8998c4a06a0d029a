//! File import for backfills and incident response (`spoor import`): a file
//! goes through the same parsers and the same exactly-once commit as a Kafka
//! partition.
//!
//! An imported file is a source stream of its own. Its stream is named by
//! its content, not its path: source id `import:<tenant>`, topic
//! `file:<sha256 of the content, hex>`, partition 0, and offsets that are
//! line numbers (1-based, blank lines counted) or, for a Windows `.evtx`
//! file, record numbers (the 1-based position of a record in the evtx
//! reader's walk, failed records counted). The file is read in batches
//! (`max_batch_events` lines or `max_batch_bytes` bytes, whichever comes
//! first) and each batch is committed with [`Flusher::flush_kafka`]: its
//! Parquet files and the checkpoint of its stream in one catalog entry, the
//! file ids derived from the batch's range. So:
//!
//! - a re-import of the same content, under any path name, starts at the
//!   catalog's checkpoint of that stream: what was committed is skipped, and
//!   a fully imported file adds nothing;
//! - an import stopped half-way (a crash, Ctrl-C, a lost coordinator) resumes
//!   where its last commit ended, and the catalog's fence refuses a range
//!   behind a checkpoint, so nothing is committed twice even when two
//!   imports of one file race;
//! - the tenant is part of the source id, so one file can be loaded into two
//!   tenants, once each.
//!
//! Memory is bounded: the file is hashed and read in blocks, never whole; a
//! line longer than [`MAX_EVENT_BYTES`] becomes a dead letter holding its
//! first [`MAX_EVENT_BYTES`] bytes; an `.evtx` file is read one 64 KiB chunk
//! at a time by the `evtx` crate on a blocking thread.
//!
//! Parser state across batches: Zeek TSV's header lines are the only state a
//! parser keeps from one batch to the next (auditd's waiting records are
//! flushed at every batch boundary, as on Kafka), so when a resumed import
//! skips committed lines it still feeds their `#` header lines to a Zeek
//! parser, and skips every other committed line unparsed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use spoor_common::catalog::{Catalog, CatalogError, SourceRange};
use spoor_common::tenant::TenantId;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use crate::error::IngestError;
use crate::flush::{Fault, Flusher, PartitionBatch};
use crate::lake_writer::DeadLetterRow;
use crate::parse::{Decoded, Decoder, MAX_EVENT_BYTES, Provenance, SourceType};
use crate::routing::TenantRows;

/// The partition of every import stream.
pub const PARTITION: i32 = 0;

/// The first bytes of a Windows event log file.
const EVTX_MAGIC: &[u8; 8] = b"ElfFile\0";

/// How many rendered evtx records may wait between the reader thread and
/// the batcher (each is one record's JSON, a few KiB).
#[cfg(feature = "evtx")]
const EVTX_QUEUE: usize = 256;

/// Block size of the hashing and line-reading passes.
const READ_BLOCK: usize = 256 * 1024;

/// What can stop the import of a file (a bad line or record never does: it
/// becomes a dead letter).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be opened or read.
    #[error("reading {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The cause.
        source: std::io::Error,
    },
    /// An `.evtx` file was given another parser than `windows`.
    #[error(
        "{file} is a Windows event log (.evtx): import it with --source-type windows, not {source_type}"
    )]
    EvtxNeedsWindows {
        /// The file.
        file: String,
        /// The source type asked for.
        source_type: SourceType,
    },
    /// This build has no `.evtx` reader (the `evtx` feature is off).
    #[error(
        "{file} is a Windows event log (.evtx), and this build of spoor reads none: \
         build it with `--features spoor-ingest/evtx`"
    )]
    EvtxUnsupported {
        /// The file.
        file: String,
    },
    /// The evtx reader refused the file as a whole (its header).
    #[error("{file} is not a readable .evtx file: {reason}")]
    Evtx {
        /// The file.
        file: String,
        /// The reader's error with its causes.
        reason: String,
    },
    /// The evtx reader thread failed.
    #[error("reading {file}: the evtx reader stopped: {reason}")]
    EvtxReader {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The stream's checkpoint could not be read.
    #[error("reading the import checkpoint of {topic} (source {source_id}): {source}")]
    Checkpoint {
        /// Source id.
        source_id: String,
        /// Topic (`file:<sha256>`).
        topic: String,
        /// The cause.
        source: CatalogError,
    },
    /// Writing or committing a batch failed; what was committed before stays,
    /// and a new import resumes after it.
    #[error("{file}: committing lines or records {first}..={last}: {source}")]
    Flush {
        /// The file.
        file: String,
        /// First offset of the batch.
        first: i64,
        /// Last offset of the batch.
        last: i64,
        /// The cause.
        source: IngestError,
    },
}

/// When a batch is committed: after this many lines (or records), or this
/// many input bytes, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Lines or records per batch.
    pub lines: usize,
    /// Input bytes per batch.
    pub bytes: usize,
}

/// How the file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One input per line.
    Lines,
    /// A Windows event log, one input per record.
    Evtx,
}

/// What the import of one file did (the summary `spoor import` prints, and
/// the progress it reports after every batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The file as named by the caller.
    pub file: String,
    /// SHA-256 of its content (its stream is `file:<sha256>`).
    pub sha256: String,
    /// Lines or evtx records.
    pub format: FileFormat,
    /// The parser.
    pub source_type: String,
    /// Tenant the rows went to.
    pub tenant: String,
    /// Lines (blank ones included) or records read so far.
    pub records: u64,
    /// Of those, already committed by an earlier import and skipped.
    pub skipped: u64,
    /// Events committed by this import.
    pub events: u64,
    /// Dead letters committed by this import.
    pub dead_letters: u64,
    /// Parquet files committed by this import.
    pub files: u64,
    /// Catalog commits made by this import.
    pub batches: u64,
    /// Whether the whole file had been imported before (nothing new).
    pub already_imported: bool,
    /// The first few dead letters' errors.
    pub first_errors: Vec<String>,
}

/// Imports files of one source type into one tenant.
#[derive(Clone)]
pub struct Importer {
    flusher: Flusher,
    catalog: Arc<dyn Catalog>,
    tenant: TenantId,
    source_type: SourceType,
    limits: BatchLimits,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("tenant", &self.tenant)
            .field("source_type", &self.source_type)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The source id of a tenant's imports.
pub fn source_id(tenant: &TenantId) -> String {
    format!("import:{tenant}")
}

/// The topic of a file's stream: its content's SHA-256.
pub fn topic_for(sha256_hex: &str) -> String {
    format!("file:{sha256_hex}")
}

/// SHA-256 of everything `reader` yields, hex; reads in blocks.
pub async fn sha256_hex<R: AsyncRead + Unpin>(mut reader: R) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; READ_BLOCK];
    loop {
        let n = reader.read(&mut block).await?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&block[..n]);
    }
}

impl Importer {
    /// An importer committing through `flusher` to `catalog` (the same
    /// catalog the flusher commits to).
    pub fn new(
        flusher: Flusher,
        catalog: Arc<dyn Catalog>,
        tenant: TenantId,
        source_type: SourceType,
        limits: BatchLimits,
    ) -> Self {
        let limits = BatchLimits {
            lines: limits.lines.max(1),
            bytes: limits.bytes.max(1),
        };
        Importer {
            flusher,
            catalog,
            tenant,
            source_type,
            limits,
        }
    }

    /// Imports the file at `path`: hashes it, then reads it as a Windows
    /// event log when it starts with the evtx magic, else line by line.
    /// `progress` sees the report after every committed batch.
    pub async fn import_path(
        &self,
        path: &Path,
        progress: &mut (dyn FnMut(&ImportReport) + Send),
    ) -> Result<ImportReport, ImportError> {
        let name = path.display().to_string();
        let read_err = |source| ImportError::Read {
            file: name.clone(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
        let mut magic = [0u8; 8];
        let magic_len = read_up_to(&mut file, &mut magic).await.map_err(read_err)?;
        let is_evtx = magic_len == magic.len() && &magic == EVTX_MAGIC;
        let file = tokio::fs::File::open(path).await.map_err(read_err)?;
        let sha = sha256_hex(file).await.map_err(read_err)?;
        if is_evtx {
            if self.source_type != SourceType::Windows {
                return Err(ImportError::EvtxNeedsWindows {
                    file: name,
                    source_type: self.source_type,
                });
            }
            #[cfg(feature = "evtx")]
            return self.import_evtx(path, &name, &sha, progress).await;
            #[cfg(not(feature = "evtx"))]
            return Err(ImportError::EvtxUnsupported { file: name });
        } else {
            let file = tokio::fs::File::open(path).await.map_err(read_err)?;
            self.import_lines(file, &name, &sha, progress).await
        }
    }

    /// Imports a text stream, one input per line, as the stream of content
    /// `sha256` (the caller hashed the same bytes; `name` is for messages).
    pub async fn import_lines<R: AsyncRead + Unpin>(
        &self,
        reader: R,
        name: &str,
        sha256: &str,
        progress: &mut (dyn FnMut(&ImportReport) + Send),
    ) -> Result<ImportReport, ImportError> {
        let mut stream = self
            .open_stream(name, sha256, FileFormat::Lines, None)
            .await?;
        let mut reader = BufReader::with_capacity(READ_BLOCK, reader);
        let mut line = Vec::new();
        let mut number: i64 = 0;
        let zeek = self.source_type == SourceType::Zeek;
        while let Some(full_len) = next_line(&mut reader, &mut line, MAX_EVENT_BYTES)
            .await
            .map_err(|source| ImportError::Read {
                file: name.to_string(),
                source,
            })?
        {
            number += 1;
            let text = line.strip_suffix(b"\r").unwrap_or(&line);
            if number < stream.next_uncommitted {
                stream.report.skipped += 1;
                stream.report.records += 1;
                if zeek && text.starts_with(b"#") {
                    stream.replay(number, text);
                }
                continue;
            }
            if full_len > MAX_EVENT_BYTES {
                let letter = stream.letter(
                    number,
                    text.to_vec(),
                    format!(
                        "line {number}: the line is {full_len} bytes, over the {MAX_EVENT_BYTES}-byte \
                         limit of an event; raw holds its first {MAX_EVENT_BYTES} bytes"
                    ),
                );
                stream.push_dead(number, letter, full_len, progress).await?;
            } else {
                stream.push(number, text, full_len, progress).await?;
            }
        }
        stream.finish(progress).await
    }

    /// Imports a Windows event log: each record is rendered to JSON by the
    /// `evtx` crate and read by the `windows` parser; a record or chunk the
    /// crate cannot read becomes a dead letter naming it, and the rest of the
    /// file goes on.
    #[cfg(feature = "evtx")]
    pub async fn import_evtx(
        &self,
        path: &Path,
        name: &str,
        sha256: &str,
        progress: &mut (dyn FnMut(&ImportReport) + Send),
    ) -> Result<ImportReport, ImportError> {
        let mut stream = self
            .open_stream(name, sha256, FileFormat::Evtx, Some(PARTITION))
            .await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<EvtxItem>(EVTX_QUEUE);
        let owned = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || read_evtx(&owned, &tx));
        let mut number: i64 = 0;
        while let Some(item) = rx.recv().await {
            number += 1;
            if number < stream.next_uncommitted {
                stream.report.skipped += 1;
                stream.report.records += 1;
                continue;
            }
            match item {
                EvtxItem::Record(json) => {
                    let len = json.len();
                    stream.push(number, &json, len, progress).await?;
                }
                EvtxItem::Failed(reason) => {
                    let letter = stream.letter(
                        number,
                        reason.clone().into_bytes(),
                        format!("record {number}: the evtx reader could not read it: {reason}"),
                    );
                    stream
                        .push_dead(number, letter, reason.len(), progress)
                        .await?;
                }
            }
        }
        match reader.await {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => {
                return Err(ImportError::Evtx {
                    file: name.to_string(),
                    reason,
                });
            }
            Err(e) => {
                return Err(ImportError::EvtxReader {
                    file: name.to_string(),
                    reason: e.to_string(),
                });
            }
        }
        stream.finish(progress).await
    }

    async fn open_stream(
        &self,
        name: &str,
        sha256: &str,
        format: FileFormat,
        partition: Option<i32>,
    ) -> Result<Stream<'_>, ImportError> {
        let source_id = source_id(&self.tenant);
        let topic = topic_for(sha256);
        let next_uncommitted = self
            .catalog
            .checkpoints(&source_id, &topic)
            .await
            .map_err(|source| ImportError::Checkpoint {
                source_id: source_id.clone(),
                topic: topic.clone(),
                source,
            })?
            .into_iter()
            .filter(|c| c.partition == PARTITION)
            .map(|c| c.next_offset)
            .max()
            // Offsets start at 1 (line numbers).
            .unwrap_or(1);
        Ok(Stream {
            importer: self,
            name: name.to_string(),
            source_id,
            next_uncommitted,
            partition,
            ingest_time_micros: spoor_common::time::now_micros(),
            decoder: Decoder::for_type(self.source_type),
            decoded: Vec::new(),
            rows: TenantRows::default(),
            first: None,
            last: 0,
            batch_lines: 0,
            batch_bytes: 0,
            report: ImportReport {
                file: name.to_string(),
                sha256: sha256.to_string(),
                format,
                source_type: self.source_type.name().to_string(),
                tenant: self.tenant.to_string(),
                records: 0,
                skipped: 0,
                events: 0,
                dead_letters: 0,
                files: 0,
                batches: 0,
                already_imported: false,
                first_errors: Vec::new(),
            },
            topic,
        })
    }
}

/// One file's stream being imported: the open batch and the counts.
struct Stream<'a> {
    importer: &'a Importer,
    name: String,
    source_id: String,
    topic: String,
    /// The first offset the catalog has not committed.
    next_uncommitted: i64,
    /// The partition put in rows' provenance: none for line files, so dead
    /// letters say `line N`; 0 for evtx, so they say `offset N` (a record).
    partition: Option<i32>,
    ingest_time_micros: i64,
    decoder: Decoder,
    decoded: Vec<Decoded>,
    rows: TenantRows,
    /// First and last offset of the open batch.
    first: Option<i64>,
    last: i64,
    batch_lines: usize,
    batch_bytes: usize,
    report: ImportReport,
}

/// How many dead letters' errors the report keeps.
const FIRST_ERRORS: usize = 5;

impl Stream<'_> {
    fn prov(&self, offset: i64) -> Provenance {
        Provenance {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: Some(offset),
            ingest_time_micros: self.ingest_time_micros,
        }
    }

    /// A dead letter of this stream at `offset`.
    fn letter(&self, offset: i64, raw: Vec<u8>, error: String) -> DeadLetterRow {
        DeadLetterRow {
            ingest_time_micros: self.ingest_time_micros,
            topic: self.topic.clone(),
            partition: self.partition,
            offset: Some(offset),
            error,
            raw,
        }
    }

    /// Feeds a committed line to the parser for its state only.
    fn replay(&mut self, offset: i64, input: &[u8]) {
        let prov = self.prov(offset);
        self.decoder.decode(input, &prov, &mut self.decoded);
        self.decoded.clear();
    }

    /// Decodes one input at `offset` into the open batch.
    async fn push(
        &mut self,
        offset: i64,
        input: &[u8],
        len: usize,
        progress: &mut (dyn FnMut(&ImportReport) + Send),
    ) -> Result<(), ImportError> {
        self.open(offset, len);
        // Blank lines are counted (offsets are line numbers) but not inputs.
        if !input.iter().all(u8::is_ascii_whitespace) {
            let prov = self.prov(offset);
            self.decoder.decode(input, &prov, &mut self.decoded);
            self.take_decoded();
        }
        self.maybe_flush(progress).await
    }

    /// Adds a dead letter made here (not by the parser) at `offset`.
    async fn push_dead(
        &mut self,
        offset: i64,
        letter: DeadLetterRow,
        len: usize,
        progress: &mut (dyn FnMut(&ImportReport) + Send),
    ) -> Result<(), ImportError> {
        self.open(offset, len);
        self.note_error(&letter.error);
        self.rows.dead.push(letter);
        self.maybe_flush(progress).await
    }

    fn open(&mut self, offset: i64, len: usize) {
        self.first.get_or_insert(offset);
        self.last = offset;
        self.batch_lines += 1;
        self.batch_bytes += len;
        self.report.records += 1;
    }

    fn note_error(&mut self, error: &str) {
        if self.report.first_errors.len() < FIRST_ERRORS {
            self.report.first_errors.push(error.to_string());
        }
    }

    fn take_decoded(&mut self) {
        for d in std::mem::take(&mut self.decoded) {
            match d {
                Decoded::Event(row) => self.rows.events.push(row),
                Decoded::Dead(letter) => {
                    self.note_error(&letter.error);
                    self.rows.dead.push(letter);
                }
            }
        }
    }

    async fn maybe_flush(
        &mut self,
        progress: &mut (dyn FnMut(&ImportReport) + Send),
    ) -> Result<(), ImportError> {
        let limits = self.importer.limits;
        if self.batch_lines >= limits.lines || self.batch_bytes >= limits.bytes {
            self.flush(progress).await?;
        }
        Ok(())
    }

    /// Commits the open batch: its files and the checkpoint after its last
    /// offset, in one catalog entry.
    async fn flush(
        &mut self,
        progress: &mut (dyn FnMut(&ImportReport) + Send),
    ) -> Result<(), ImportError> {
        let Some(first) = self.first.take() else {
            return Ok(());
        };
        let last = self.last;
        // What the parser holds back belongs to this batch (auditd records
        // waiting for their end record), as on Kafka.
        let prov = self.prov(last);
        self.decoder.flush(&prov, &mut self.decoded);
        self.take_decoded();
        let rows = std::mem::take(&mut self.rows);
        let mut by_tenant = BTreeMap::new();
        if !rows.is_empty() {
            by_tenant.insert(self.importer.tenant.clone(), rows);
        }
        let batch = PartitionBatch {
            range: SourceRange {
                source_id: self.source_id.clone(),
                topic: self.topic.clone(),
                partition: PARTITION,
                first_offset: first,
                last_offset: last,
            },
            rows: by_tenant,
        };
        let flushed = self
            .importer
            .flusher
            .flush_kafka(Arc::from([batch]))
            .await
            .map_err(|source| ImportError::Flush {
                file: self.name.clone(),
                first,
                last,
                source,
            })?;
        // The test hook of a crash between two batches: the resumed import
        // must start after this commit and repeat nothing.
        Fault::trigger(self.importer.flusher.fault(), Fault::CrashAfterCommit);
        self.report.events += flushed.events as u64;
        self.report.dead_letters += flushed.dead_letters as u64;
        self.report.files += flushed.files as u64;
        self.report.batches += 1;
        self.next_uncommitted = last + 1;
        self.batch_lines = 0;
        self.batch_bytes = 0;
        progress(&self.report);
        Ok(())
    }

    async fn finish(
        mut self,
        progress: &mut (dyn FnMut(&ImportReport) + Send),
    ) -> Result<ImportReport, ImportError> {
        self.flush(progress).await?;
        self.report.already_imported = self.report.records > 0 && self.report.batches == 0;
        Ok(self.report)
    }
}

/// Reads into `buf` until it is full or the input ends; returns the count.
async fn read_up_to<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Reads the next line (without its `\n`) into `line`, keeping at most `max`
/// bytes of it; returns the line's full length, or `None` at the end of the
/// input. A last line without `\n` is still a line.
async fn next_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<usize>> {
    line.clear();
    let mut full_len = 0usize;
    let mut read_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(read_any.then_some(full_len));
        }
        read_any = true;
        let (part, used, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&part[..part.len().min(room)]);
        full_len += part.len();
        reader.consume(used);
        if done {
            return Ok(Some(full_len));
        }
    }
}

/// One record from the evtx reader thread.
#[cfg(feature = "evtx")]
enum EvtxItem {
    /// The record rendered as evtx-dump JSON.
    Record(Vec<u8>),
    /// The reader's error for a record or chunk, with its causes.
    Failed(String),
}

/// Reads an evtx file on a blocking thread and sends its records; an error
/// opening the file is returned, errors of records and chunks are sent.
#[cfg(feature = "evtx")]
fn read_evtx(path: &Path, tx: &tokio::sync::mpsc::Sender<EvtxItem>) -> Result<(), String> {
    // A closed channel means the importer stopped (a failed commit):
    // nothing more to read.
    for_each_evtx_record(path, |item| {
        tx.blocking_send(item.map_or_else(EvtxItem::Failed, EvtxItem::Record))
            .is_ok()
    })
}

/// Reads an evtx file one record at a time, each as evtx-dump JSON (the
/// shape the Windows parser reads) or the reader's error for it, until `f`
/// returns false. An error opening the file is returned.
#[cfg(feature = "evtx")]
pub fn for_each_evtx_record(
    path: &Path,
    mut f: impl FnMut(Result<Vec<u8>, String>) -> bool,
) -> Result<(), String> {
    let settings = evtx::ParserSettings::new()
        .num_threads(1)
        .indent(false)
        .separate_json_attributes(false);
    let mut parser = evtx::EvtxParser::from_path(path)
        .map_err(|e| spoor_common::error_chain(&e))?
        .with_configuration(settings);
    for record in parser.records_json_bytes() {
        if !f(record
            .map(|r| r.data)
            .map_err(|e| spoor_common::error_chain(&e)))
        {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake_writer::LakeWriter;
    use object_store::memory::InMemory;
    use spoor_common::catalog::{CommitBatch, FileQuery, MemoryCatalog, SourceCheckpoint};
    use spoor_common::schema::Table;

    fn tenant() -> TenantId {
        TenantId::new("acme").expect("tenant")
    }

    fn importer(catalog: Arc<MemoryCatalog>, source_type: SourceType, lines: usize) -> Importer {
        let store = Arc::new(InMemory::new());
        let flusher = Flusher::new(LakeWriter::new(store, 1), catalog.clone(), None);
        Importer::new(
            flusher,
            catalog,
            tenant(),
            source_type,
            BatchLimits {
                lines,
                bytes: 1 << 30,
            },
        )
    }

    async fn rows(catalog: &MemoryCatalog, table: Table) -> u64 {
        catalog
            .list_files(FileQuery::all(tenant(), table))
            .await
            .expect("list")
            .iter()
            .map(|f| f.file.row_count)
            .sum()
    }

    async fn import(importer: &Importer, name: &str, text: &str) -> ImportReport {
        let sha = sha256_hex(text.as_bytes()).await.expect("hash");
        importer
            .import_lines(text.as_bytes(), name, &sha, &mut |_| {})
            .await
            .expect("import")
    }

    fn json_lines(n: usize) -> String {
        (1..=n)
            .map(|i| {
                format!(
                    "{{\"time\":\"2024-03-05T07:00:{:02}Z\",\"user\":\"u{i}\"}}\n",
                    i % 60
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn bad_lines_are_dead_letters_with_their_line_numbers() {
        let catalog = Arc::new(MemoryCatalog::new());
        let imp = importer(catalog.clone(), SourceType::Json, 100);
        let text = "{\"a\":1}\n\n{broken\r\n{\"b\":2}";
        let report = import(&imp, "x.jsonl", text).await;
        assert_eq!(
            (report.records, report.events, report.dead_letters),
            (4, 2, 1)
        );
        assert_eq!(report.first_errors.len(), 1);
        assert!(
            report.first_errors[0].starts_with("line 3: invalid JSON"),
            "{:?}",
            report.first_errors
        );
        assert_eq!(rows(&catalog, Table::Events).await, 2);
        assert_eq!(rows(&catalog, Table::DeadLetter).await, 1);
        let sha = sha256_hex(text.as_bytes()).await.expect("hash");
        let cps = catalog
            .checkpoints("import:acme", &format!("file:{sha}"))
            .await
            .expect("checkpoints");
        assert_eq!(cps.len(), 1);
        assert_eq!(
            cps[0].next_offset, 5,
            "the last line (no newline) is line 4"
        );
    }

    #[tokio::test]
    async fn the_same_content_under_another_name_adds_nothing() {
        let catalog = Arc::new(MemoryCatalog::new());
        let imp = importer(catalog.clone(), SourceType::Json, 3);
        let text = json_lines(10);
        let first = import(&imp, "a.jsonl", &text).await;
        assert_eq!((first.events, first.batches, first.skipped), (10, 4, 0));
        assert!(!first.already_imported);
        let again = import(&imp, "renamed.jsonl", &text).await;
        assert_eq!(
            (again.events, again.files, again.batches, again.skipped),
            (0, 0, 0, 10)
        );
        assert!(again.already_imported);
        assert_eq!(rows(&catalog, Table::Events).await, 10);

        // Another tenant's import of the same file is its own stream.
        let other = Importer {
            tenant: TenantId::new("other").expect("tenant"),
            ..imp.clone()
        };
        let theirs = import(&other, "a.jsonl", &text).await;
        assert_eq!(theirs.events, 10);
        assert_eq!(rows(&catalog, Table::Events).await, 10, "acme unchanged");
    }

    #[tokio::test]
    async fn a_resumed_import_commits_nothing_twice() {
        let catalog = Arc::new(MemoryCatalog::new());
        let text = json_lines(25);
        let sha = sha256_hex(text.as_bytes()).await.expect("hash");
        // A first import that stopped after its second batch of 4 lines: the
        // checkpoint says line 9 is the first not committed.
        let imp = importer(catalog.clone(), SourceType::Json, 4);
        let partial: String = text.lines().take(8).map(|l| format!("{l}\n")).collect();
        let first = imp
            .import_lines(partial.as_bytes(), "a.jsonl", &sha, &mut |_| {})
            .await
            .expect("partial import");
        assert_eq!(first.events, 8);
        // The resumed import uses another batch size: the ranges differ from
        // the first run's, and the fence still holds.
        let imp = importer(catalog.clone(), SourceType::Json, 7);
        let mut seen = Vec::new();
        let resumed = imp
            .import_lines(text.as_bytes(), "a.jsonl", &sha, &mut |r| {
                seen.push(r.records)
            })
            .await
            .expect("resume");
        assert_eq!((resumed.skipped, resumed.events), (8, 17));
        assert_eq!(seen, vec![15, 22, 25], "progress after every batch");
        assert_eq!(rows(&catalog, Table::Events).await, 25);

        // A commit behind the checkpoint (a racing import) is refused by the
        // catalog, not duplicated.
        let behind = catalog
            .commit_batch(CommitBatch {
                files: Vec::new(),
                checkpoints: vec![SourceCheckpoint {
                    source_id: "import:acme".into(),
                    topic: format!("file:{sha}"),
                    partition: PARTITION,
                    next_offset: 3,
                }],
            })
            .await;
        assert!(behind.is_err(), "checkpoint moved back: {behind:?}");
    }

    #[tokio::test]
    async fn resumed_zeek_tsv_keeps_its_header() {
        let catalog = Arc::new(MemoryCatalog::new());
        let text = "#separator \\x09\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\n\
                    #types\ttime\tstring\taddr\tport\taddr\tport\tenum\n\
                    1692161622.036086\tC1\t10.0.0.1\t5000\t10.0.0.2\t53\tudp\n\
                    1692161623.036086\tC2\t10.0.0.1\t5001\t10.0.0.2\t53\tudp\n\
                    1692161624.036086\tC3\t10.0.0.1\t5002\t10.0.0.2\t53\tudp\n";
        let sha = sha256_hex(text.as_bytes()).await.expect("hash");
        let imp = importer(catalog.clone(), SourceType::Zeek, 4);
        let head: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
        let first = imp
            .import_lines(head.as_bytes(), "conn.log", &sha, &mut |_| {})
            .await
            .expect("first");
        assert_eq!((first.events, first.dead_letters), (1, 0));
        let resumed = imp
            .import_lines(text.as_bytes(), "conn.log", &sha, &mut |_| {})
            .await
            .expect("resume");
        assert_eq!(
            (resumed.skipped, resumed.events, resumed.dead_letters),
            (4, 2, 0),
            "{:?}",
            resumed.first_errors
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_batches_are_bounded() {
        let catalog = Arc::new(MemoryCatalog::new());
        let store = Arc::new(InMemory::new());
        let flusher = Flusher::new(LakeWriter::new(store, 1), catalog.clone(), None);
        let imp = Importer::new(
            flusher,
            catalog.clone(),
            tenant(),
            SourceType::Json,
            BatchLimits {
                lines: 1000,
                bytes: 200,
            },
        );
        let long = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_EVENT_BYTES + 10));
        let text = format!("{}{long}\n{{\"y\":1}}\n", json_lines(6));
        let mut batches = Vec::new();
        let report = {
            let sha = sha256_hex(text.as_bytes()).await.expect("hash");
            imp.import_lines(text.as_bytes(), "big.jsonl", &sha, &mut |r| {
                batches.push(r.records)
            })
            .await
            .expect("import")
        };
        assert_eq!((report.events, report.dead_letters), (7, 1));
        assert!(
            report.first_errors[0]
                .starts_with(&format!("line 7: the line is {} bytes", long.len())),
            "{:?}",
            report.first_errors
        );
        // Lines of 43 or 44 bytes: the fifth reaches 200 bytes and closes a
        // batch, the long line closes the next, the end of the input the last.
        assert_eq!(batches, vec![5, 7, 8]);

        // The reader never holds more than `max` bytes of a line.
        let mut reader = BufReader::with_capacity(16, text.as_bytes());
        let mut line = Vec::new();
        let mut longest = 0;
        while let Some(len) = next_line(&mut reader, &mut line, 100).await.expect("read") {
            assert!(line.len() <= 100);
            longest = longest.max(len);
        }
        assert_eq!(longest, long.len());
    }

    #[tokio::test]
    async fn evtx_files_need_the_windows_parser() {
        let catalog = Arc::new(MemoryCatalog::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.evtx");
        std::fs::write(
            &path,
            b"ElfFile\0 and then nothing an evtx reader could use",
        )
        .expect("write");
        let err = importer(catalog.clone(), SourceType::Json, 10)
            .import_path(&path, &mut |_| {})
            .await
            .expect_err("json parser for evtx");
        assert!(matches!(err, ImportError::EvtxNeedsWindows { .. }), "{err}");
        let err = importer(catalog.clone(), SourceType::Windows, 10)
            .import_path(&path, &mut |_| {})
            .await
            .expect_err("truncated header");
        if cfg!(feature = "evtx") {
            assert!(matches!(err, ImportError::Evtx { .. }), "{err}");
        } else {
            assert!(matches!(err, ImportError::EvtxUnsupported { .. }), "{err}");
        }
        assert_eq!(rows(&catalog, Table::DeadLetter).await, 0);
    }

    /// `.evtx` files, through the `evtx` crate.
    #[cfg(feature = "evtx")]
    mod evtx_files {
        use super::*;

        /// Real Windows event logs: the SigmaHQ regression data in the shared
        /// corpus (the `evtx` crate's package ships none), each with the
        /// evtx-dump JSON of its matching events beside it.
        fn sigma_evtx(folder: &str, id: &str) -> (std::path::PathBuf, serde_json::Value) {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/corpus/sigma/regression_data")
                .join(folder);
            let json = std::fs::read(dir.join(format!("{id}.json"))).expect("reference event");
            (
                dir.join(format!("{id}.evtx")),
                // The first event, when the file holds several.
                serde_json::Deserializer::from_slice(&json)
                    .into_iter::<serde_json::Value>()
                    .next()
                    .expect("a reference event")
                    .expect("reference JSON"),
            )
        }

        /// Six records.
        const BUN: (&str, &str) = (
            "rules-emerging-threats/2025/Malware/Shai-Hulud/proc_creation_win_mal_shai_hulud_malicious_node_bun_execution",
            "5299fadf-f228-4526-8274-251db1960be9",
        );
        const SHAI_HULUD: (&str, &str) = (
            "rules-emerging-threats/2025/Malware/Shai-Hulud/proc_creation_win_mal_shai_hulud_indicator",
            "540703fb-a874-4385-a9d6-7cd1bfab268c",
        );

        /// Records of an evtx file as the crate's XML renderer counts them (a
        /// second path through the crate, independent of the import).
        fn xml_records(path: &Path) -> usize {
            evtx::EvtxParser::from_path(path)
                .expect("evtx")
                .records()
                .filter(Result::is_ok)
                .count()
        }

        /// Every value of a text column in the committed files of a table.
        async fn strings(
            catalog: &MemoryCatalog,
            store: &InMemory,
            table: Table,
            column: &str,
        ) -> Vec<String> {
            use object_store::ObjectStoreExt;
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            let mut out = Vec::new();
            for f in catalog
                .list_files(FileQuery::all(tenant(), table))
                .await
                .expect("list")
            {
                let bytes = store
                    .get(&object_store::path::Path::from(f.file.object_key.as_str()))
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("bytes");
                for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .expect("parquet")
                    .build()
                    .expect("reader")
                {
                    let batch = batch.expect("batch");
                    let col = batch.column_by_name(column).expect("column");
                    let col = col
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .expect("text column");
                    out.extend(col.iter().flatten().map(str::to_string));
                }
            }
            out
        }

        fn evtx_importer(
            catalog: Arc<MemoryCatalog>,
            store: Arc<InMemory>,
            lines: usize,
        ) -> Importer {
            let flusher = Flusher::new(LakeWriter::new(store, 1), catalog.clone(), None);
            Importer::new(
                flusher,
                catalog,
                tenant(),
                SourceType::Windows,
                BatchLimits {
                    lines,
                    bytes: 1 << 30,
                },
            )
        }

        #[tokio::test]
        async fn evtx_records_become_windows_events_once() {
            let (path, reference) = sigma_evtx(BUN.0, BUN.1);
            let expected = xml_records(&path);
            assert!(expected > 1, "the sample holds {expected} records");
            let catalog = Arc::new(MemoryCatalog::new());
            let store = Arc::new(InMemory::new());
            let imp = evtx_importer(catalog.clone(), store.clone(), 4);
            let report = imp.import_path(&path, &mut |_| {}).await.expect("import");
            assert_eq!(report.format, FileFormat::Evtx);
            assert_eq!(
                (report.records, report.events, report.dead_letters),
                (expected as u64, expected as u64, 0),
                "{:?}",
                report.first_errors
            );
            assert_eq!(report.batches, expected.div_ceil(4) as u64);

            // The regression event is among them, read by the windows parser.
            let cmd = reference["Event"]["EventData"]["CommandLine"]
                .as_str()
                .expect("reference command line");
            let cmds = strings(&catalog, &store, Table::Events, "process_cmd_line").await;
            assert!(cmds.iter().any(|c| c == cmd), "{cmd:?} not in {cmds:?}");
            let hosts = strings(&catalog, &store, Table::Events, "device_hostname").await;
            assert_eq!(hosts.len(), expected, "every record names its computer");

            // The same log under another name adds nothing.
            let dir = tempfile::tempdir().expect("tempdir");
            let copy = dir.path().join("Security-copy.evtx");
            std::fs::copy(&path, &copy).expect("copy");
            let again = imp.import_path(&copy, &mut |_| {}).await.expect("again");
            assert!(again.already_imported);
            assert_eq!((again.events, again.skipped), (0, expected as u64));
            assert_eq!(rows(&catalog, Table::Events).await, expected as u64);
        }

        #[tokio::test]
        async fn a_corrupt_evtx_chunk_is_a_dead_letter_and_the_rest_goes_on() {
            // Two real logs' chunks behind one file header (the reader counts
            // chunks from the file size), the first chunk's header then broken.
            let (a, _) = sigma_evtx(SHAI_HULUD.0, SHAI_HULUD.1);
            let (b, _) = sigma_evtx(BUN.0, BUN.1);
            let (a_bytes, b_bytes) = (std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
            let (header, chunk) = (4096, 65536);
            assert_eq!(a_bytes.len(), header + chunk);
            let mut joined = a_bytes.clone();
            joined.extend_from_slice(&b_bytes[header..header + chunk]);
            joined[header..header + 8].copy_from_slice(b"NotChnk\0");
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("joined.evtx");
            std::fs::write(&path, &joined).expect("write");

            let catalog = Arc::new(MemoryCatalog::new());
            let store = Arc::new(InMemory::new());
            let imp = evtx_importer(catalog.clone(), store.clone(), 1000);
            let report = imp.import_path(&path, &mut |_| {}).await.expect("import");
            let good = xml_records(&b) as u64;
            assert_eq!(
                (report.events, report.dead_letters),
                (good, 1),
                "{:?}",
                report.first_errors
            );
            assert!(
                report.first_errors[0].contains("record ")
                    && report.first_errors[0].contains("chunk"),
                "{:?}",
                report.first_errors
            );
            let raw = strings(&catalog, &store, Table::DeadLetter, "error").await;
            assert_eq!(raw, report.first_errors);
        }
    }
}
