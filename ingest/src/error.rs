//! Errors of the ingest role.

use spoor_common::catalog::CatalogError;

/// What can go wrong while ingesting.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Building an Arrow batch failed.
    #[error("building an arrow batch: {0}")]
    Arrow(#[source] arrow::error::ArrowError),
    /// Encoding Parquet failed.
    #[error("encoding parquet: {0}")]
    Parquet(#[source] parquet::errors::ParquetError),
    /// Writing a file to the lake failed.
    #[error("writing {key} to the lake: {source}")]
    WriteFile {
        /// Object key.
        key: String,
        /// The cause.
        source: object_store::Error,
    },
    /// The catalog refused or could not take a commit.
    #[error("committing to the catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// The Kafka client failed.
    #[error("kafka {context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The cause.
        source: rdkafka::error::KafkaError,
    },
    /// A source's configured field mapping is wrong.
    #[error("ingest.sources: {0}")]
    Sources(#[from] crate::parse::UnknownColumn),
    /// A task of a flush (encoding its files, or the flush itself) panicked
    /// or was cancelled.
    #[error("a flush task failed: {0}")]
    TaskFailed(String),
    /// The pipeline stopped.
    #[error("the ingest pipeline has stopped")]
    Stopped,
}
