//! The lake's Parquet files as every role writes them: zstd, page
//! statistics, sorted by `time` (the first column), bloom filters on the
//! lookup columns (DESIGN.md, storage layout). Ingest writes `events` and
//! `dead_letter` files with it, workers `alerts` files, compaction merges.

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::schema::ColumnDef;

/// Rows per Parquet row group: large enough that a compacted hour is a few
/// row groups (statistics prune them), small enough that a reader decodes one
/// in bounded memory.
pub const MAX_ROW_GROUP_ROWS: usize = 1 << 20;

/// False-positive rate of the bloom filters on lookup columns: 1% costs
/// about 10 bits per distinct value.
const BLOOM_FILTER_FPP: f64 = 0.01;

/// Encodes a batch as zstd Parquet with page statistics, time sorting
/// metadata and bloom filters on the lookup columns of `columns`.
pub fn encode_parquet(
    batch: &RecordBatch,
    columns: &[ColumnDef],
    zstd_level: i32,
) -> Result<Vec<u8>, ParquetError> {
    let level = ZstdLevel::try_new(zstd_level)?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_created_by(format!("spoor {}", env!("CARGO_PKG_VERSION")));
    // A bloom filter starts sized for its maximum distinct values and is
    // folded down once written; the writer's default maximum (a million,
    // about 1 MiB per filter) makes every small flush file allocate, hash
    // into and fold 13 MiB. A column has at most as many distinct values as
    // the file has rows (and a row group at most MAX_ROW_GROUP_ROWS).
    let ndv = (batch.num_rows() as u64).clamp(1, MAX_ROW_GROUP_ROWS as u64);
    // Most files leave many of the schema's columns empty. Their chunks are
    // a few bytes of null levels: compressing them gains nothing, while each
    // compressed chunk costs a zstd context to create, so they are written
    // uncompressed and without a bloom filter (their statistics already say
    // "all null").
    let schema = batch.schema();
    let mut empty = std::collections::HashSet::new();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        if array.null_count() == array.len() {
            props = props.set_column_compression(
                ColumnPath::from(field.name().as_str()),
                Compression::UNCOMPRESSED,
            );
            empty.insert(field.name().as_str());
        }
    }
    for c in columns
        .iter()
        .filter(|c| c.bloom_filter && !empty.contains(c.name))
    {
        let path = ColumnPath::from(c.name);
        props = props
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_max_ndv(path.clone(), ndv)
            .set_column_bloom_filter_fpp(path, BLOOM_FILTER_FPP);
    }
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 4);
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props.build()))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(buf)
}
