//! The lake store as one query sees it, counting the bytes the query reads.
//!
//! DataFusion's own `bytes_scanned` metric leaves out what comes with the
//! footer prefetch (all of a small file), so the audit counts at the store:
//! every byte fetched for the query, footers and page indexes included.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// `inner`, counting bytes read into `read`, and refusing reads once
/// `limit` bytes were read (a tenant's `max_query_scanned_bytes`).
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    read: Arc<AtomicU64>,
    limit: Option<ScanLimitReached>,
}

/// A read refused because the query passed a tenant's scanned-bytes limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the query passed tenant {tenant}'s scanned-bytes limit of {limit} bytes")]
pub struct ScanLimitReached {
    /// The limit, bytes.
    pub limit: u64,
    /// Whose limit.
    pub tenant: String,
}

impl ScanLimitReached {
    /// The limit reached somewhere in `error`'s chain: found by type where
    /// the chain keeps it (object store, Parquet page reads), else by its
    /// words where a layer kept only the message (Parquet metadata reads).
    pub fn find_in(error: &(dyn std::error::Error + 'static)) -> Option<ScanLimitReached> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(reached) = e.downcast_ref::<ScanLimitReached>() {
                return Some(reached.clone());
            }
            next = e.source();
        }
        let text = error.to_string();
        let (_, rest) = text.split_once("the query passed tenant ")?;
        let (tenant, rest) = rest.split_once("'s scanned-bytes limit of ")?;
        let limit = rest.split_once(" bytes")?.0.parse().ok()?;
        Some(ScanLimitReached {
            limit,
            tenant: tenant.to_string(),
        })
    }
}

impl CountingStore {
    /// Wraps `inner`, with an optional limit; the counter is shared with
    /// the caller.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        limit: Option<ScanLimitReached>,
    ) -> (Self, Arc<AtomicU64>) {
        let read = Arc::new(AtomicU64::new(0));
        (
            CountingStore {
                inner,
                read: read.clone(),
                limit,
            },
            read,
        )
    }

    /// Counts a read of `bytes`; an error once the query has read more
    /// than its limit (the read that crosses it fails too, so a query
    /// never gets rows from past its limit).
    fn count(&self, bytes: u64) -> Result<()> {
        self.read.fetch_add(bytes, Ordering::Relaxed);
        self.check()
    }

    /// Refuses a read once the limit is passed.
    fn check(&self) -> Result<()> {
        match &self.limit {
            Some(limit) if self.read.load(Ordering::Relaxed) > limit.limit => {
                Err(object_store::Error::Generic {
                    store: "lake",
                    source: Box::new(limit.clone()),
                })
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        if !head {
            self.check()?;
        }
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            self.count(result.range.end.saturating_sub(result.range.start))?;
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.check()?;
        let parts = self.inner.get_ranges(location, ranges).await?;
        self.count(parts.iter().map(|b| b.len() as u64).sum())?;
        Ok(parts)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reached_limit_is_found_by_type_or_by_its_words() {
        let reached = ScanLimitReached {
            limit: 1000,
            tenant: "acme".into(),
        };
        let store = object_store::Error::Generic {
            store: "lake",
            source: Box::new(reached.clone()),
        };
        let parquet = parquet::errors::ParquetError::External(Box::new(store));
        let wrapped = datafusion::error::DataFusionError::ParquetError(Box::new(parquet));
        assert_eq!(ScanLimitReached::find_in(&wrapped), Some(reached.clone()));
        let words = datafusion::error::DataFusionError::ParquetError(Box::new(
            parquet::errors::ParquetError::General(format!("reading the footer: {reached}")),
        ));
        assert_eq!(ScanLimitReached::find_in(&words), Some(reached));
        let other = datafusion::error::DataFusionError::Execution("boom".into());
        assert_eq!(ScanLimitReached::find_in(&other), None);
    }
}
