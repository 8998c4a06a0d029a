//! Reading committed events files, with a small in-memory cache of recent
//! ones: the buckets of one tenant's rule sets all read the same new files
//! at about the same time, so each is fetched from object storage once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use arrow::array::RecordBatch;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;

/// Recently read files, oldest evicted first, bounded in bytes.
#[derive(Debug)]
pub struct FileCache {
    max_bytes: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    files: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: u64,
}

impl FileCache {
    /// A cache of at most `max_bytes` (0 keeps nothing).
    pub fn new(max_bytes: u64) -> Self {
        FileCache {
            max_bytes,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lookup(&self, key: &str) -> Option<Bytes> {
        let inner = self.inner.lock().ok()?;
        inner.files.get(key).cloned()
    }

    fn insert(&self, key: &str, bytes: Bytes) {
        let size = bytes.len() as u64;
        if size > self.max_bytes {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.files.contains_key(key) {
            return;
        }
        while inner.bytes + size > self.max_bytes {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.files.remove(&old) {
                inner.bytes -= b.len() as u64;
            }
        }
        inner.order.push_back(key.to_string());
        inner.files.insert(key.to_string(), bytes);
        inner.bytes += size;
    }

    /// The object's bytes, from the cache or the store.
    pub async fn get(&self, store: &dyn ObjectStore, key: &str) -> Result<Bytes, String> {
        if let Some(b) = self.lookup(key) {
            metrics::counter!("spoor_worker_file_cache_hits_total").increment(1);
            return Ok(b);
        }
        let bytes = store
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        self.insert(key, bytes.clone());
        Ok(bytes)
    }
}

/// Decodes a Parquet file into batches.
pub(crate) fn decode(bytes: Bytes) -> Result<Vec<RecordBatch>, String> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot decode: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn cache_serves_repeats_and_stays_bounded() {
        let store = InMemory::new();
        for k in ["a", "b", "c"] {
            store
                .put(&ObjectPath::from(k), PutPayload::from(vec![0u8; 40]))
                .await
                .expect("put");
        }
        let cache = FileCache::new(100);
        for k in ["a", "b", "c"] {
            assert_eq!(cache.get(&store, k).await.expect("get").len(), 40);
        }
        // "a" was evicted to fit "c"; deleting it from the store shows
        // whether the cache still had it.
        store.delete(&ObjectPath::from("a")).await.expect("delete");
        store.delete(&ObjectPath::from("c")).await.expect("delete");
        assert!(cache.get(&store, "a").await.is_err());
        assert!(cache.get(&store, "c").await.is_ok());
        let inner = cache.inner.lock().expect("lock");
        assert!(inner.bytes <= 100);
    }
}
