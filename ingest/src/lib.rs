//! The ingest role: Kafka and HTTP sources, JSON normalization to the event
//! schema, Parquet files in the lake, and catalog commits that carry the
//! source checkpoints (DESIGN.md, guarantees: nothing lost, exactly-once files).

pub mod compaction;
pub mod error;
pub mod event_file;
pub mod flush;
pub mod http;
pub mod import;
pub mod kafka;
pub mod lake_writer;
pub mod parse;
pub mod partitions;
pub mod quota;
pub mod retention;
pub mod routing;
