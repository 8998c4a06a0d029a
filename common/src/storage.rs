//! Opening the lake's object store from configuration: local disk
//! (`file://`, the default) or an S3-compatible server (`s3://`), and
//! writing objects to it (one PUT, or a multipart upload for large files).
//! See docs/object-storage.md.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, PutPayloadMut,
    RetryConfig,
};
use url::Url;

use crate::config::{Config, ConfigError, S3Config, S3Credential};

/// The URL under which the lake's store is registered with DataFusion. Object
/// keys are relative to the lake root, so one fixed URL serves every backend.
pub const LAKE_URL: &str = "spoor-lake://lake/";

/// Size of the parts of a multipart upload (all but the last): above S3's
/// 5 MiB minimum, large enough that a part's request overhead is small,
/// small enough that a failed part is cheap to send again.
pub const MULTIPART_PART_BYTES: usize = 8 << 20;

/// Parts of one multipart upload sent at once.
const CONCURRENT_PARTS: usize = 4;

/// The S3 client's per-request timeout: a 16 MiB PUT (the default multipart
/// threshold) still completes at about 300 KB/s.
const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The S3 client's connect timeout.
const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The S3 client's own retries of one request (transport errors, 5xx,
/// throttling). Kept short: the callers retry whole flushes with their own
/// backoff, and an HTTP ingest request must be answered (503) rather than
/// held for minutes while the store is down.
fn s3_retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(15),
    }
}

/// First pause between start-up checks of an unreachable store; doubles up
/// to [`STARTUP_RETRY_MAX`].
const STARTUP_RETRY_FIRST: Duration = Duration::from_millis(500);
const STARTUP_RETRY_MAX: Duration = Duration::from_secs(5);

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
    #[error("storage.url {url:?}: unsupported scheme {scheme:?} (file:// or s3://)")]
    Unsupported {
        /// The configured URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// `storage.url` or `[storage.s3]` holds a bad value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The S3 client could not be built from the configuration.
    #[error("cannot configure the S3 client for bucket {bucket} at {endpoint}: {source}")]
    S3Client {
        /// The bucket.
        bucket: String,
        /// The endpoint (or AWS and its region).
        endpoint: String,
        /// The cause.
        source: object_store::Error,
    },
    /// The store answered the start-up check with a refusal: wrong
    /// credentials, a missing bucket, a wrong region.
    #[error("the lake's S3 bucket {bucket} at {endpoint} refused the start-up check: {reason}")]
    Refused {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// The S3 error, with its causes.
        reason: String,
    },
    /// The store did not answer within `storage.s3.startup_timeout_ms`.
    #[error(
        "the lake's S3 endpoint {endpoint} (bucket {bucket}) was unreachable for {waited:?} \
         (storage.s3.startup_timeout_ms): {reason}"
    )]
    Unreachable {
        /// The bucket.
        bucket: String,
        /// The endpoint.
        endpoint: String,
        /// How long start-up waited.
        waited: Duration,
        /// The last error, with its causes.
        reason: String,
    },
}

/// Where an `s3://` lake lives, from `storage.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix of the lake root inside the bucket (no slashes at
    /// either end); empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// The bucket and prefix of `s3://bucket/optional/prefix`, or `None`
    /// for a URL of another scheme.
    pub fn from_url(url: &Url) -> Option<S3Location> {
        if url.scheme() != "s3" {
            return None;
        }
        Some(S3Location {
            bucket: url.host_str().unwrap_or_default().to_string(),
            prefix: url.path().trim_matches('/').to_string(),
        })
    }
}

/// The endpoint as messages name it: the configured URL, or AWS's.
fn endpoint_name(s3: &S3Config) -> String {
    if s3.endpoint.is_empty() {
        format!("AWS S3 ({})", s3.region)
    } else {
        s3.endpoint.clone()
    }
}

/// Opens the lake: local disk under `{data_dir}/lake` by default, or
/// `storage.url` (`file://` or `s3://`). Makes no request: see
/// [`check_lake`] for the start-up check of a remote store.
pub fn open_lake(config: &Config) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let dir = if config.storage.url.is_empty() {
        config.local_lake_dir()
    } else {
        let url = Url::parse(&config.storage.url).map_err(|e| {
            StorageError::Config(ConfigError::Value {
                key: "storage.url".into(),
                reason: format!("not a URL: {e}"),
            })
        })?;
        match url.scheme() {
            "file" => std::path::PathBuf::from(url.path()),
            "s3" => {
                let location =
                    S3Location::from_url(&url).ok_or_else(|| StorageError::Unsupported {
                        url: config.storage.url.clone(),
                        scheme: url.scheme().to_string(),
                    })?;
                return open_s3(&config.storage.s3, &location);
            }
            scheme => {
                return Err(StorageError::Unsupported {
                    url: config.storage.url.clone(),
                    scheme: scheme.to_string(),
                });
            }
        }
    };
    let local_err = |source: Box<dyn std::error::Error + Send + Sync>| StorageError::LocalDir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| local_err(Box::new(e)))?;
    let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| local_err(Box::new(e)))?;
    Ok(Arc::new(store))
}

/// The credential from the configuration, else from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN` if set).
fn s3_credential(s3: &S3Config) -> Result<Option<(S3Credential, Option<String>)>, StorageError> {
    if let Some(credential) = s3.credential()? {
        return Ok(Some((credential, None)));
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (Some(id), Some(secret)) => Ok(Some((
            S3Credential {
                access_key_id: id.trim().to_string(),
                secret_access_key: secret.trim().to_string(),
            },
            env("AWS_SESSION_TOKEN"),
        ))),
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(StorageError::Config(ConfigError::Value {
            key: "storage.s3.access_key_id".into(),
            reason: "not set, and of the environment variables AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY only one is set"
                .into(),
        })),
    }
}

fn open_s3(s3: &S3Config, location: &S3Location) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let options = ClientOptions::new()
        .with_allow_http(s3.allow_http)
        .with_timeout(S3_REQUEST_TIMEOUT)
        .with_connect_timeout(S3_CONNECT_TIMEOUT);
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&location.bucket)
        .with_region(s3.region.trim())
        .with_virtual_hosted_style_request(s3.virtual_hosted_style)
        .with_client_options(options)
        .with_retry(s3_retry_config());
    if !s3.endpoint.is_empty() {
        builder = builder.with_endpoint(s3.endpoint.trim_end_matches('/'));
    }
    // Without a static credential the builder falls back to AWS's chain
    // (web identity, ECS task role, instance metadata).
    if let Some((credential, token)) = s3_credential(s3)? {
        builder = builder
            .with_access_key_id(credential.access_key_id)
            .with_secret_access_key(credential.secret_access_key);
        if let Some(token) = token {
            builder = builder.with_token(token);
        }
    }
    let store = builder.build().map_err(|source| StorageError::S3Client {
        bucket: location.bucket.clone(),
        endpoint: endpoint_name(s3),
        source,
    })?;
    if location.prefix.is_empty() {
        Ok(Arc::new(store))
    } else {
        // The rest of the code uses keys relative to the lake root.
        Ok(Arc::new(LakePrefix::new(store, &location.prefix)))
    }
}

/// `inner` under a key prefix: object_store's [`PrefixStore`], except that a
/// `get`/`head` answer names the object by its key relative to the prefix.
/// (object_store 0.13's `PrefixStore::get_opts` returns the full key, and
/// DataFusion, finding a file it asked for under another name, silently
/// reads no file at all.) Ranged reads use the trait's default, which goes
/// through `get_opts`.
#[derive(Debug)]
struct LakePrefix<T: ObjectStore> {
    inner: PrefixStore<T>,
    prefix: ObjectPath,
}

impl<T: ObjectStore> LakePrefix<T> {
    fn new(inner: T, prefix: &str) -> Self {
        let prefix = ObjectPath::from(prefix);
        LakePrefix {
            inner: PrefixStore::new(inner, prefix.clone()),
            prefix,
        }
    }
}

impl<T: ObjectStore> std::fmt::Display for LakePrefix<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LakePrefix({})", self.prefix)
    }
}

#[async_trait::async_trait]
impl<T: ObjectStore> ObjectStore for LakePrefix<T> {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let mut result = self.inner.get_opts(location, options).await?;
        let relative: Option<ObjectPath> = result
            .meta
            .location
            .prefix_match(&self.prefix)
            .map(Iterator::collect);
        if let Some(relative) = relative {
            result.meta.location = relative;
        }
        Ok(result)
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: object_store::RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// The configured multipart threshold in bytes (validated: 5 MiB – 5 GiB).
pub fn multipart_threshold(config: &Config) -> usize {
    usize::try_from(config.storage.s3.multipart_threshold_bytes).unwrap_or(usize::MAX)
}

/// The start-up check of a long-running role: for an `s3://` lake, one
/// listing of the lake root. A refusal (wrong credentials, missing bucket,
/// wrong region: any 4xx) fails at once; an unreachable store (connection
/// refused, timeouts, 5xx) is retried with backoff, logged, for
/// `storage.s3.startup_timeout_ms`, then fails naming the endpoint. A local
/// lake needs no check (`open_lake` created its folder).
pub async fn check_lake(config: &Config, store: &dyn ObjectStore) -> Result<(), StorageError> {
    let Some(location) = Url::parse(&config.storage.url)
        .ok()
        .as_ref()
        .and_then(S3Location::from_url)
    else {
        return Ok(());
    };
    let s3 = &config.storage.s3;
    let endpoint = endpoint_name(s3);
    let started = Instant::now();
    let timeout = Duration::from_millis(s3.startup_timeout_ms);
    let mut delay = STARTUP_RETRY_FIRST;
    loop {
        let error = match store.list_with_delimiter(None).await {
            Ok(_) => {
                tracing::info!(
                    bucket = location.bucket,
                    prefix = location.prefix,
                    endpoint,
                    "the lake's S3 bucket answers"
                );
                return Ok(());
            }
            Err(e) => e,
        };
        let reason = error_chain(&error);
        if !is_unreachable(&error) {
            return Err(StorageError::Refused {
                bucket: location.bucket,
                endpoint,
                reason,
            });
        }
        let waited = started.elapsed();
        if waited + delay > timeout {
            return Err(StorageError::Unreachable {
                bucket: location.bucket,
                endpoint,
                waited,
                reason,
            });
        }
        tracing::warn!(
            bucket = location.bucket,
            endpoint,
            error = reason,
            retry_in = ?delay,
            "the lake's S3 endpoint is unreachable; retrying until storage.s3.startup_timeout_ms"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(STARTUP_RETRY_MAX);
    }
}

/// An error and its causes on one line: object_store's own message leaves
/// out the S3 error code and the transport cause.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

/// Whether `error` says the store could not be reached (connection refused
/// or reset, timeouts, a 5xx after the client's own retries), as opposed to
/// a refusal (4xx) that waiting does not cure. object_store does not expose
/// its retry error's status, so a 5xx is recognized by its message.
pub fn is_unreachable(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    if matches!(
        error,
        E::NotFound { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::InvalidPath { .. }
    ) {
        return false;
    }
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        if e.to_string().contains("non-2xx status code: 5") {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether the last write to the lake failed because the store was
/// unreachable; a change is logged once, not at every retry.
static STORE_UNREACHABLE: AtomicBool = AtomicBool::new(false);

/// Records the outcome of a write for `spoor_storage_unreachable` (a gauge,
/// 1 while writes fail to reach the store) and the error counter.
fn record_write(result: &object_store::Result<()>) {
    match result {
        Ok(()) => {
            if STORE_UNREACHABLE.swap(false, Ordering::Relaxed) {
                tracing::info!("the lake's object store is reachable again; writes resume");
                metrics::gauge!("spoor_storage_unreachable").set(0.0);
            }
        }
        Err(e) => {
            let unreachable = is_unreachable(e);
            metrics::counter!(
                "spoor_storage_write_errors_total",
                "kind" => if unreachable { "unreachable" } else { "refused" }
            )
            .increment(1);
            if unreachable && !STORE_UNREACHABLE.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    error = error_chain(e),
                    "the lake's object store is unreachable; writes pause and are retried"
                );
                metrics::gauge!("spoor_storage_unreachable").set(1.0);
            }
        }
    }
}

/// Writes `payload` at `path`: one PUT up to `multipart_threshold` bytes,
/// above it a multipart upload of [`MULTIPART_PART_BYTES`] parts, aborted if
/// a part or the completion fails. Either way the object appears whole or
/// not at all, so a retry of the same deterministic key is safe.
pub async fn put_object(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    payload: PutPayload,
    multipart_threshold: usize,
) -> object_store::Result<()> {
    let size = payload.content_length();
    let result = if size <= multipart_threshold {
        store.put(path, payload).await.map(drop)
    } else {
        put_multipart(store, path, payload).await
    };
    record_write(&result);
    result
}

async fn put_multipart(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    payload: PutPayload,
) -> object_store::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    let size = payload.content_length();
    let parts = split_parts(payload, MULTIPART_PART_BYTES);
    let n_parts = parts.len();
    let mut upload = store.put_multipart(path).await?;
    // Each part's request is created in order (S3 numbers parts as they are
    // started); they then run a few at a time.
    let uploads: Vec<_> = parts.into_iter().map(|p| upload.put_part(p)).collect();
    let sent = futures::stream::iter(uploads)
        .buffer_unordered(CONCURRENT_PARTS)
        .try_collect::<Vec<()>>()
        .await;
    let result = match sent {
        Ok(_) => upload.complete().await.map(drop),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            metrics::counter!("spoor_storage_multipart_uploads_total").increment(1);
            tracing::info!(key = %path, bytes = size, parts = n_parts, "multipart upload");
            Ok(())
        }
        Err(e) => {
            // Parts left behind cost storage until a lifecycle rule removes
            // them; abort so they do not.
            if let Err(abort) = upload.abort().await {
                tracing::warn!(
                    key = %path,
                    error = error_chain(&abort),
                    "aborting a failed multipart upload failed; its parts stay until the \
                     bucket's AbortIncompleteMultipartUpload rule removes them"
                );
            }
            Err(e)
        }
    }
}

/// Cuts `payload` into parts of `part` bytes (the last may be smaller)
/// without copying.
fn split_parts(payload: PutPayload, part: usize) -> Vec<PutPayload> {
    let mut parts = Vec::new();
    let mut current = PutPayloadMut::new();
    for mut chunk in payload {
        while !chunk.is_empty() {
            let take = (part - current.content_length()).min(chunk.len());
            current.push(chunk.split_to(take));
            if current.content_length() == part {
                parts.push(std::mem::take(&mut current).freeze());
            }
        }
    }
    if !current.is_empty() {
        parts.push(current.freeze());
    }
    parts
}

/// [`LAKE_URL`] parsed.
pub fn lake_url() -> Url {
    // A constant that parses; checked by the test below.
    Url::parse(LAKE_URL).unwrap_or_else(|e| panic!("LAKE_URL must parse: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
        PutMultipartOptions, PutOptions, PutResult, UploadPart,
    };

    use super::*;

    #[test]
    fn lake_url_parses() {
        assert_eq!(lake_url().scheme(), "spoor-lake");
    }

    #[test]
    fn unsupported_schemes_are_named() {
        let mut config = Config::load(None, Vec::new(), &[]).expect("defaults");
        config.storage.url = "gs://bucket/lake".into();
        let err = open_lake(&config).expect_err("unsupported").to_string();
        assert!(err.contains("gs"), "{err}");
        let err = Config::load(None, Vec::new(), &["storage.url=gs://bucket/lake".into()])
            .expect_err("refused at load")
            .to_string();
        assert!(
            err.contains("storage.url") && err.contains("\"gs\""),
            "{err}"
        );
    }

    #[test]
    fn s3_urls_name_bucket_and_prefix() {
        let url = Url::parse("s3://lake-bucket/spoor/prod/").expect("url");
        assert_eq!(
            S3Location::from_url(&url),
            Some(S3Location {
                bucket: "lake-bucket".into(),
                prefix: "spoor/prod".into()
            })
        );
        let root = Url::parse("s3://lake-bucket").expect("url");
        assert_eq!(S3Location::from_url(&root).expect("s3").prefix, "");
        let file = Url::parse("file:///var/lib/spoor").expect("url");
        assert_eq!(S3Location::from_url(&file), None);
    }

    #[test]
    fn an_s3_lake_opens_without_a_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "  abcdefgh\n").expect("secret");
        let config = Config::load(
            None,
            Vec::new(),
            &[
                "storage.url=s3://bucket/pre/fix".into(),
                "storage.s3.endpoint=http://127.0.0.1:1".into(),
                "storage.s3.allow_http=true".into(),
                "storage.s3.access_key_id=spoor".into(),
                format!("storage.s3.secret_access_key_file={}", secret.display()),
            ],
        )
        .expect("valid");
        let credential = config
            .storage
            .s3
            .credential()
            .expect("readable")
            .expect("set");
        assert_eq!(credential.secret_access_key, "abcdefgh");
        assert!(!format!("{credential:?}").contains("abcdefgh"));
        let store = open_lake(&config).expect("opens");
        assert_eq!(store.to_string(), "LakePrefix(pre/fix)");
    }

    #[test]
    fn bad_s3_settings_name_their_key() {
        let load = |sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            Config::load(None, Vec::new(), &sets)
                .expect_err("refused")
                .to_string()
        };
        let err = load(&[
            "storage.url=s3://bucket",
            "storage.s3.endpoint=http://127.0.0.1:9000",
        ]);
        assert!(err.contains("storage.s3.allow_http"), "{err}");
        let err = load(&["storage.url=s3://bucket", "storage.s3.access_key_id=spoor"]);
        assert!(err.contains("storage.s3.secret_access_key_file"), "{err}");
        let err = load(&[
            "storage.url=s3://bucket",
            "storage.s3.access_key_id=spoor",
            "storage.s3.secret_access_key_file=/nonexistent/spoor-secret",
        ]);
        assert!(
            err.contains("storage.s3.secret_access_key_file") && err.contains("cannot read"),
            "{err}"
        );
        let err = load(&["storage.url=s3://bucket", "storage.s3.endpoint=ftp://host"]);
        assert!(err.contains("storage.s3.endpoint"), "{err}");
        let err = load(&["storage.url=s3:///prefix-without-bucket"]);
        assert!(
            err.contains("storage.url") && err.contains("bucket"),
            "{err}"
        );
        let err = load(&["storage.s3.multipart_threshold_bytes=1000"]);
        assert!(
            err.contains("storage.s3.multipart_threshold_bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_prefixed_lake_names_objects_relative_to_its_root() {
        let inner = Arc::new(InMemory::new());
        let lake = LakePrefix::new(inner.clone(), "spoor/prod");
        let key = ObjectPath::from("tenants/acme/events/f.parquet");
        lake.put(&key, PutPayload::from_static(b"x"))
            .await
            .expect("put");
        let full = ObjectPath::from("spoor/prod/tenants/acme/events/f.parquet");
        assert!(inner.head(&full).await.is_ok(), "stored under the prefix");
        assert_eq!(lake.head(&key).await.expect("head").location, key);
        let got = lake.get(&key).await.expect("get");
        assert_eq!(got.meta.location, key);
        let listed: Vec<_> = lake
            .list_with_delimiter(Some(&ObjectPath::from("tenants/acme/events")))
            .await
            .expect("list")
            .objects
            .into_iter()
            .map(|m| m.location)
            .collect();
        assert_eq!(listed, vec![key]);
    }

    #[test]
    fn parts_are_cut_at_the_part_size() {
        let payload: PutPayload = [vec![1u8; 7], vec![2u8; 5]]
            .into_iter()
            .map(|v| PutPayload::from(v).into_iter().next().expect("one chunk"))
            .collect();
        let sizes: Vec<usize> = split_parts(payload, 4)
            .iter()
            .map(PutPayload::content_length)
            .collect();
        assert_eq!(sizes, vec![4, 4, 4]);
        let sizes: Vec<usize> = split_parts(PutPayload::from(vec![0u8; 9]), 4)
            .iter()
            .map(PutPayload::content_length)
            .collect();
        assert_eq!(sizes, vec![4, 4, 1]);
    }

    #[tokio::test]
    async fn small_objects_are_put_large_ones_uploaded_in_parts() {
        let store = Recording::new(None);
        let small = ObjectPath::from("a/small");
        put_object(&store, &small, PutPayload::from(vec![7u8; 100]), 1000)
            .await
            .expect("put");
        let large = ObjectPath::from("a/large");
        let bytes: Vec<u8> = (0..MULTIPART_PART_BYTES * 2 + 10)
            .map(|i| (i % 251) as u8)
            .collect();
        put_object(&store, &large, PutPayload::from(bytes.clone()), 1000)
            .await
            .expect("multipart");
        let log = store.log();
        assert_eq!(
            log.iter().filter(|e| e.starts_with("part ")).count(),
            3,
            "{log:?}"
        );
        assert!(log.contains(&"put a/small".to_string()), "{log:?}");
        assert!(log.contains(&"complete a/large".to_string()), "{log:?}");
        let read = store.inner.get(&large).await.expect("get");
        assert_eq!(
            read.bytes().await.expect("bytes").as_ref(),
            bytes.as_slice()
        );
    }

    #[tokio::test]
    async fn a_failed_part_aborts_the_upload() {
        let store = Recording::new(Some(1));
        let path = ObjectPath::from("a/large");
        let err = put_object(
            &store,
            &path,
            PutPayload::from(vec![1u8; MULTIPART_PART_BYTES * 2]),
            1000,
        )
        .await
        .expect_err("the second part fails");
        assert!(err.to_string().contains("injected"), "{err}");
        let log = store.log();
        assert!(log.contains(&"abort a/large".to_string()), "{log:?}");
        assert!(!log.contains(&"complete a/large".to_string()), "{log:?}");
        assert!(store.inner.head(&path).await.is_err(), "no object appears");
    }

    /// An in-memory store that records puts and multipart calls, and can
    /// fail the part with a given index.
    #[derive(Debug)]
    struct Recording {
        inner: InMemory,
        log: Arc<Mutex<Vec<String>>>,
        fail_part: Option<usize>,
    }

    impl Recording {
        fn new(fail_part: Option<usize>) -> Self {
            Recording {
                inner: InMemory::new(),
                log: Arc::new(Mutex::new(Vec::new())),
                fail_part,
            }
        }

        fn log(&self) -> Vec<String> {
            self.log.lock().expect("log").clone()
        }
    }

    impl std::fmt::Display for Recording {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Recording")
        }
    }

    #[derive(Debug)]
    struct RecordingUpload {
        inner: Box<dyn MultipartUpload>,
        key: String,
        log: Arc<Mutex<Vec<String>>>,
        parts: usize,
        fail_part: Option<usize>,
    }

    #[async_trait]
    impl MultipartUpload for RecordingUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            let index = self.parts;
            self.parts += 1;
            self.log
                .lock()
                .expect("log")
                .push(format!("part {index} {}", data.content_length()));
            if self.fail_part == Some(index) {
                return Box::pin(async {
                    Err(object_store::Error::Generic {
                        store: "test",
                        source: "injected part failure".into(),
                    })
                });
            }
            self.inner.put_part(data)
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.log
                .lock()
                .expect("log")
                .push(format!("complete {}", self.key));
            self.inner.complete().await
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            self.log
                .lock()
                .expect("log")
                .push(format!("abort {}", self.key));
            self.inner.abort().await
        }
    }

    #[async_trait]
    impl ObjectStore for Recording {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.log
                .lock()
                .expect("log")
                .push(format!("put {location}"));
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(RecordingUpload {
                inner,
                key: location.to_string(),
                log: self.log.clone(),
                parts: 0,
                fail_part: self.fail_part,
            }))
        }

        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&ObjectPath>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }
}
