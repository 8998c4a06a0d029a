//! Opening the lake's object store from configuration.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use url::Url;

use crate::config::Config;

/// The URL under which the lake's store is registered with DataFusion. Object
/// keys are relative to the lake root, so one fixed URL serves every backend.
pub const LAKE_URL: &str = "spoor-lake://lake/";

/// Why the lake could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The local lake folder could not be created or opened.
    #[error("cannot open the lake folder {path}: {source}")]
    LocalDir {
        /// The folder.
        path: String,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The configured URL names a backend this build does not have.
    #[error("storage.url {url:?}: unsupported scheme {scheme:?} (this build supports file://)")]
    Unsupported {
        /// The configured URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
}

/// Opens the lake: local disk under `{data_dir}/lake` by default, or `storage.url`.
pub fn open_lake(config: &Config) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let dir = if config.storage.url.is_empty() {
        config.local_lake_dir()
    } else {
        let url = Url::parse(&config.storage.url).map_err(|e| StorageError::LocalDir {
            path: config.storage.url.clone(),
            source: Box::new(e),
        })?;
        if url.scheme() != "file" {
            return Err(StorageError::Unsupported {
                url: config.storage.url.clone(),
                scheme: url.scheme().to_string(),
            });
        }
        std::path::PathBuf::from(url.path())
    };
    let local_err = |source: Box<dyn std::error::Error + Send + Sync>| StorageError::LocalDir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| local_err(Box::new(e)))?;
    let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| local_err(Box::new(e)))?;
    Ok(Arc::new(store))
}

/// [`LAKE_URL`] parsed.
pub fn lake_url() -> Url {
    // A constant that parses; checked by the test below.
    Url::parse(LAKE_URL).unwrap_or_else(|e| panic!("LAKE_URL must parse: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lake_url_parses() {
        assert_eq!(lake_url().scheme(), "spoor-lake");
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let mut config = Config::load(None, Vec::new(), &[]).expect("defaults");
        config.storage.url = "s3://bucket/lake".into();
        let err = open_lake(&config).expect_err("unsupported").to_string();
        assert!(err.contains("s3"), "{err}");
    }
}
