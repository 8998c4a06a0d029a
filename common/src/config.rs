//! Configuration: one TOML file, layered as embedded defaults → file →
//! `SPOOR_*` environment variables → `--set key=value` flags. Unknown keys and
//! bad values stop start-up with a message naming the key and where it came
//! from.
//!
//! Environment variables name nested keys with a double underscore:
//! `SPOOR_INGEST__FLUSH_INTERVAL_MS=500` sets `ingest.flush_interval_ms`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::tenant::TenantId;

/// The embedded defaults, also the reference for every key (`docs/operations.md`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");

/// Smallest `ingest.compaction.orphan_grace_ms`: twice the minute for which
/// a flush retries its catalog commit, so a file written but not yet
/// committed is never taken for an orphan.
pub const MIN_ORPHAN_GRACE_MS: u64 = 120_000;

/// The whole configuration of a Spoor process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Folder for local state: the Raft log and, by default, the lake.
    pub data_dir: PathBuf,
    /// This process's listeners and identity.
    pub node: NodeConfig,
    /// Logging.
    pub log: LogConfig,
    /// Object storage of the lake.
    pub storage: StorageConfig,
    /// The coordinator role.
    pub coordinator: CoordinatorConfig,
    /// How non-coordinator roles reach the catalog.
    pub catalog: CatalogClientConfig,
    /// The ingest role.
    pub ingest: IngestConfig,
    /// The query role.
    pub query: QueryConfig,
    /// Correlation workers.
    pub worker: WorkerConfig,
    /// Retro-hunts.
    #[serde(default)]
    pub retro_hunt: RetroHuntConfig,
    /// Where workers deliver committed alerts besides the `alerts` table.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// What the roles of one cluster share.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// TLS on every listener and on calls to other roles.
    #[serde(default)]
    pub tls: TlsConfig,
}

/// TLS (docs/security.md). With a certificate, every listener of the node
/// (HTTP, gRPC, Flight SQL, PostgreSQL) speaks only TLS; the files are
/// re-read every `reload_interval_ms` and a change is served to new
/// connections without a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first) served on every listener and
    /// presented to coordinators that demand a client certificate. Empty:
    /// plaintext listeners.
    #[serde(default)]
    pub cert_file: String,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: String,
    /// PEM CA bundle trusted when this node calls `https://` coordinators
    /// (catalog.endpoint, Raft peers). Empty: the system's roots.
    #[serde(default)]
    pub ca_file: String,
    /// PEM CA bundle of the client certificates the gRPC listener demands
    /// (mutual TLS between roles; the CLI then needs `--client-cert` too).
    /// Empty: no client certificate is asked for.
    #[serde(default)]
    pub client_ca_file: String,
    /// How often the files are re-read, in milliseconds.
    #[serde(default = "default_tls_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

fn default_tls_reload_interval_ms() -> u64 {
    10_000
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: String::new(),
            key_file: String::new(),
            ca_file: String::new(),
            client_ca_file: String::new(),
            reload_interval_ms: default_tls_reload_interval_ms(),
        }
    }
}

/// What the roles of one cluster share: the secret they present to each
/// other on gRPC.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster secret, inline (prefer `secret_file`). Empty with an
    /// empty `secret_file`: the coordinators' gRPC takes calls without a
    /// credential (loopback only).
    #[serde(default)]
    pub secret: String,
    /// A file holding the cluster secret (surrounding whitespace ignored),
    /// or several, one per line, during a rotation: the first is presented,
    /// all are accepted. Re-read every `reload_interval_ms`.
    #[serde(default)]
    pub secret_file: String,
    /// How often `secret_file` is re-read, in milliseconds.
    #[serde(default = "default_secret_reload_interval_ms")]
    pub reload_interval_ms: u64,
}

fn default_secret_reload_interval_ms() -> u64 {
    10_000
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            secret: String::new(),
            secret_file: String::new(),
            reload_interval_ms: default_secret_reload_interval_ms(),
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field(
                "secret",
                &if self.secret.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("secret_file", &self.secret_file)
            .field("reload_interval_ms", &self.reload_interval_ms)
            .finish()
    }
}

/// Fewest characters of a cluster secret.
pub const MIN_CLUSTER_SECRET_CHARS: usize = 32;

impl ClusterConfig {
    /// The cluster secrets: `secret`, or the non-empty lines of
    /// `secret_file` (several during a rotation; the first is presented);
    /// none when neither is set. An unreadable file, both keys set, or a
    /// short or unprintable secret is an error naming the key (and line).
    pub fn secrets(&self) -> Result<Vec<String>, ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Value {
            key: key.to_string(),
            reason,
        };
        let (key, secrets) = match (self.secret.is_empty(), self.secret_file.is_empty()) {
            (true, true) => return Ok(Vec::new()),
            (false, false) => {
                return Err(bad(
                    "cluster.secret",
                    "set cluster.secret or cluster.secret_file, not both".into(),
                ));
            }
            (false, true) => ("cluster.secret", vec![self.secret.trim().to_string()]),
            (true, false) => (
                "cluster.secret_file",
                std::fs::read_to_string(&self.secret_file)
                    .map_err(|e| {
                        bad(
                            "cluster.secret_file",
                            format!("cannot read {}: {e}", self.secret_file),
                        )
                    })?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        };
        for (i, secret) in secrets.iter().enumerate() {
            let which = if secrets.len() > 1 {
                format!(" (line {} of the secrets)", i + 1)
            } else {
                String::new()
            };
            if secret.chars().count() < MIN_CLUSTER_SECRET_CHARS {
                return Err(bad(
                    key,
                    format!(
                        "the cluster secret{which} must be at least {MIN_CLUSTER_SECRET_CHARS} \
                         characters (for example `openssl rand -hex 32`)"
                    ),
                ));
            }
            if !secret.chars().all(|c| c.is_ascii_graphic()) {
                return Err(bad(
                    key,
                    format!(
                        "the cluster secret{which} may hold only printable ASCII without spaces"
                    ),
                ));
            }
        }
        if secrets.is_empty() {
            return Err(bad(key, format!("{} holds no secret", self.secret_file)));
        }
        Ok(secrets)
    }

    /// The secrets as the coordinators check them and nodes present them,
    /// or `None` without any.
    pub fn cluster_secrets(&self) -> Result<Option<crate::auth::ClusterSecrets>, ConfigError> {
        Ok(crate::auth::ClusterSecrets::new(self.secrets()?))
    }

    /// The first secret, or none: what a node presents.
    pub fn secret(&self) -> Result<Option<String>, ConfigError> {
        Ok(self.secrets()?.into_iter().next())
    }

    /// The credential for gRPC calls between roles: the (first) secret, or
    /// none.
    pub fn credential(&self) -> Result<crate::auth::Credential, ConfigError> {
        Ok(self
            .cluster_secrets()?
            .map_or_else(crate::auth::Credential::none, |s| {
                crate::auth::Credential::cluster(&s)
            }))
    }
}

/// Listeners and identity of this process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Raft node id (coordinator) and member id (other roles); unique per cluster.
    pub id: u64,
    /// HTTP listener: query API, HTTP ingest, `/health`, `/metrics`. Port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// gRPC listener: the catalog API (coordinator, standalone). Port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// How often this node heartbeats to the coordinators, milliseconds.
    pub heartbeat_interval_ms: u64,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter, for example `info` or `spoor_ingest=debug,info`.
    pub filter: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Object storage of the lake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Lake root as a URL: `file:///var/lib/spoor/lake`, or
    /// `s3://bucket/optional/prefix` for an S3-compatible object store
    /// (`[storage.s3]`). Empty: `{data_dir}/lake` on local disk.
    pub url: String,
    /// The S3 client, for an `s3://` URL (docs/object-storage.md).
    #[serde(default)]
    pub s3: S3Config,
}

/// Default `storage.s3.multipart_threshold_bytes`: 16 MiB.
pub const DEFAULT_MULTIPART_THRESHOLD_BYTES: u64 = 16 << 20;

/// Smallest `storage.s3.multipart_threshold_bytes`: S3 demands parts of at
/// least 5 MiB (but the last), so a smaller threshold buys nothing.
pub const MIN_MULTIPART_THRESHOLD_BYTES: u64 = 5 << 20;

/// Largest `storage.s3.multipart_threshold_bytes`: S3 takes at most 5 GiB in
/// one PUT.
pub const MAX_MULTIPART_THRESHOLD_BYTES: u64 = 5 << 30;

/// The S3 client of an `s3://` lake. Secrets are never inline: the secret
/// key comes from `secret_access_key_file` (or, with neither key set, the
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` environment variables).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server (`http://127.0.0.1:9000`);
    /// empty: AWS S3 of `region`.
    #[serde(default)]
    pub endpoint: String,
    /// Region the requests are signed for.
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Access key id; set together with `secret_access_key_file`.
    #[serde(default)]
    pub access_key_id: String,
    /// A file holding the secret access key (surrounding whitespace ignored).
    #[serde(default)]
    pub secret_access_key_file: String,
    /// Allow a plain `http://` endpoint (credentials are still signed, never
    /// sent, but the data crosses the network in clear text).
    #[serde(default)]
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.host/key`, AWS) instead of
    /// path-style (`host/bucket/key`, MinIO-like servers).
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Files larger than this are uploaded in parts (multipart upload).
    #[serde(default = "default_multipart_threshold_bytes")]
    pub multipart_threshold_bytes: u64,
    /// How long start-up waits for an unreachable store before it fails,
    /// milliseconds; wrong credentials or a missing bucket fail at once.
    #[serde(default = "default_s3_startup_timeout_ms")]
    pub startup_timeout_ms: u64,
}

fn default_s3_region() -> String {
    "us-east-1".into()
}

fn default_multipart_threshold_bytes() -> u64 {
    DEFAULT_MULTIPART_THRESHOLD_BYTES
}

fn default_s3_startup_timeout_ms() -> u64 {
    60_000
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            region: default_s3_region(),
            access_key_id: String::new(),
            secret_access_key_file: String::new(),
            allow_http: false,
            virtual_hosted_style: false,
            multipart_threshold_bytes: default_multipart_threshold_bytes(),
            startup_timeout_ms: default_s3_startup_timeout_ms(),
        }
    }
}

/// A static S3 credential: the access key id and its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credential {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credential")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl S3Config {
    /// The configured credential: `access_key_id` with the secret read from
    /// `secret_access_key_file`; `None` when neither is set (the caller
    /// falls back to the environment). One without the other, or an
    /// unreadable or empty file, is an error naming the key.
    pub fn credential(&self) -> Result<Option<S3Credential>, ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Value {
            key: format!("storage.s3.{key}"),
            reason,
        };
        match (
            self.access_key_id.trim().is_empty(),
            self.secret_access_key_file.is_empty(),
        ) {
            (true, true) => Ok(None),
            (false, true) => Err(bad(
                "secret_access_key_file",
                "must be set with storage.s3.access_key_id (a file holding the secret key)".into(),
            )),
            (true, false) => Err(bad(
                "access_key_id",
                "must be set with storage.s3.secret_access_key_file".into(),
            )),
            (false, false) => {
                let secret = std::fs::read_to_string(&self.secret_access_key_file)
                    .map_err(|e| {
                        bad(
                            "secret_access_key_file",
                            format!("cannot read {}: {e}", self.secret_access_key_file),
                        )
                    })?
                    .trim()
                    .to_string();
                if secret.is_empty() {
                    return Err(bad(
                        "secret_access_key_file",
                        format!("{} holds no secret key", self.secret_access_key_file),
                    ));
                }
                Ok(Some(S3Credential {
                    access_key_id: self.access_key_id.trim().to_string(),
                    secret_access_key: secret,
                }))
            }
        }
    }

    /// Checks the values (for an `s3://` lake).
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Value {
            key: format!("storage.s3.{key}"),
            reason,
        };
        if self.region.trim().is_empty() {
            return Err(bad(
                "region",
                "must not be empty (us-east-1 for most S3-compatible servers)".into(),
            ));
        }
        if !self.endpoint.is_empty() {
            let url = url::Url::parse(&self.endpoint).map_err(|e| {
                bad(
                    "endpoint",
                    format!(
                        "{:?} is not a URL like http://127.0.0.1:9000: {e}",
                        self.endpoint
                    ),
                )
            })?;
            match url.scheme() {
                "https" => {}
                "http" if self.allow_http => {}
                "http" => {
                    return Err(bad(
                        "allow_http",
                        format!(
                            "must be true for the http:// endpoint {} (or use https://)",
                            self.endpoint
                        ),
                    ));
                }
                other => {
                    return Err(bad(
                        "endpoint",
                        format!(
                            "{:?}: scheme {other:?} is neither http nor https",
                            self.endpoint
                        ),
                    ));
                }
            }
        }
        if self.startup_timeout_ms == 0 {
            return Err(bad("startup_timeout_ms", "must be at least 1".into()));
        }
        self.credential()?;
        Ok(())
    }
}

/// The coordinator role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Folder of the Raft log and snapshots. Empty: `{data_dir}/raft`.
    pub raft_dir: String,
    /// Raft heartbeat interval, milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Lower bound of the randomized election timeout, milliseconds.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout, milliseconds.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot and compact the log after this many entries.
    pub snapshot_after_entries: u64,
    /// Log entries kept behind a snapshot, so a briefly lagging follower
    /// catches up from the log; one further behind gets the snapshot.
    pub log_kept_after_snapshot: u64,
    /// A write not committed within this time (no quorum) fails with a
    /// retryable error instead of waiting, milliseconds.
    pub write_timeout_ms: u64,
    /// A member (any role) not heard from for this long is dead and its
    /// shard leases move, milliseconds. Measured on the leader's monotonic
    /// clock.
    pub member_timeout_ms: u64,
    /// How often the leader checks liveness and rebalances shards, milliseconds.
    pub scheduler_interval_ms: u64,
    /// Start without initializing, to be added to a running group with
    /// `spoor cluster add-node`.
    pub join: bool,
    /// The initial members as `ID@URL` (`3@http://10.0.0.3:7070`), the same
    /// list on every initial coordinator. Empty: a single-node group.
    pub initial_members: Vec<String>,
    /// What this coordinator presents to its peers (Raft, forwarding to
    /// the leader): `cluster.credential()`, set at start-up, never read
    /// from a file under this section.
    #[serde(skip)]
    pub peer_credential: crate::auth::Credential,
    /// How this coordinator reaches `https://` peers: `[tls]`, loaded at
    /// start-up.
    #[serde(skip)]
    pub peer_tls: crate::tls::PeerTls,
}

/// How roles other than the coordinator reach the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogClientConfig {
    /// gRPC endpoints of coordinators, comma-separated, for example
    /// `http://10.0.0.1:7070,http://10.0.0.2:7070`; calls move on to the next
    /// when one is unavailable.
    pub endpoint: String,
    /// Per-call timeout, milliseconds.
    pub timeout_ms: u64,
}

/// The ingest role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Tenant that receives every event until tenant routing lands.
    pub tenant: String,
    /// Flush a partition's buffered events at least this often, milliseconds.
    pub flush_interval_ms: u64,
    /// Flush when this many events are buffered.
    pub max_batch_events: usize,
    /// Flush when this many bytes of raw events are buffered.
    pub max_batch_bytes: usize,
    /// Largest accepted HTTP ingest request body, bytes.
    pub http_max_body_bytes: usize,
    /// Whether `POST /v1/ingest` needs an ingest token (`none` or `token`);
    /// the Splunk HEC endpoint always does.
    pub http_auth: HttpAuth,
    /// Zstd level of Parquet files (1–22).
    pub zstd_level: i32,
    /// Tenant whose `dead_letter` table receives events whose tenant could
    /// not be determined or is not registered (never another tenant's).
    pub unrouted_tenant: String,
    /// What HTTP ingest does with a request over its tenant's ingest quota
    /// (`reject` or `delay`); Kafka always waits.
    pub quota_exceeded: QuotaExceededAction,
    /// Longest wait of a request over quota with `quota_exceeded =
    /// "delay"`, milliseconds; past it the request is refused as with
    /// `reject`.
    pub quota_max_delay_ms: u64,
    /// Most requests held waiting at once on this node with `quota_exceeded
    /// = "delay"` (each holds its body, up to `http_max_body_bytes`); an
    /// over-quota request beyond them is refused at once as with `reject`.
    #[serde(default = "default_quota_max_delayed_requests")]
    pub quota_max_delayed_requests: usize,
    /// Kafka source.
    pub kafka: KafkaConfig,
    /// Compaction of small files, retention, and the deletion of objects the
    /// catalog no longer lists (`[ingest.compaction]`).
    pub compaction: CompactionConfig,
    /// Which parser reads which topic (`[[ingest.sources]]`); the first
    /// whose pattern matches wins, a topic no entry matches is read as
    /// generic JSON.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// How a role's API authenticates callers (`ingest.http_auth`, `query.auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpAuth {
    /// No token needed (loopback or trusted networks only); tenants come
    /// from `[[ingest.sources]]`.
    #[default]
    None,
    /// An ingest (or admin) token in `Authorization: Bearer <token>`; a
    /// token of one tenant decides the tenant of everything it sends.
    Token,
}

/// What HTTP ingest does with a request over its tenant's ingest quota
/// (`ingest.quota_exceeded`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaExceededAction {
    /// Refuse it at once: 429 with `Retry-After`.
    #[default]
    Reject,
    /// Hold it until the tenant's budget allows it, at most
    /// `ingest.quota_max_delay_ms`, then refuse it as `reject` does.
    Delay,
}

fn default_quota_max_delayed_requests() -> usize {
    32
}

/// Longest `ingest.quota_max_delay_ms`: HTTP clients and proxies give up
/// on requests held longer.
pub const MAX_QUOTA_DELAY_MS: u64 = 300_000;

/// Kinds of input a parser exists for (`docs/sources.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceType {
    /// Any JSON object, mapped by field paths (configurable per source).
    Json,
    /// Windows event logs as JSON: Winlogbeat (ECS `winlog.*`), flat
    /// Logstash/NXLog objects, evtx-dump (`Event.System`/`Event.EventData`).
    Windows,
    /// Syslog, RFC 5424 and RFC 3164, with Linux auth/sshd/sudo messages.
    Syslog,
    /// Linux auditd records (raw `type=… msg=audit(…)` lines or JSON),
    /// joined by their serial number.
    Auditd,
    /// ArcSight Common Event Format, bare or after a syslog header.
    Cef,
    /// IBM QRadar Log Event Extended Format 1.0 and 2.0.
    Leef,
    /// Zeek logs, JSON or TSV with `#fields` headers.
    Zeek,
    /// AWS CloudTrail records (one per event or a `Records` array).
    Cloudtrail,
    /// Microsoft Entra ID (Azure AD) sign-in and audit logs.
    Entra,
}

impl SourceType {
    /// Every source type, in documentation order.
    pub const ALL: [SourceType; 9] = [
        SourceType::Json,
        SourceType::Windows,
        SourceType::Syslog,
        SourceType::Auditd,
        SourceType::Cef,
        SourceType::Leef,
        SourceType::Zeek,
        SourceType::Cloudtrail,
        SourceType::Entra,
    ];

    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SourceType::Json => "json",
            SourceType::Windows => "windows",
            SourceType::Syslog => "syslog",
            SourceType::Auditd => "auditd",
            SourceType::Cef => "cef",
            SourceType::Leef => "leef",
            SourceType::Zeek => "zeek",
            SourceType::Cloudtrail => "cloudtrail",
            SourceType::Entra => "entra",
        }
    }
}

impl std::fmt::Display for SourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for SourceType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = SourceType::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "unknown source type `{s}`, expected one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// How the events of some topics are parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Topic names this entry applies to; `*` matches any run of characters.
    pub topics: Vec<String>,
    /// The parser.
    pub source_type: SourceType,
    /// Extra field paths per column (`src_ip = ["net.src", "client.addr"]`),
    /// tried before the parser's own; dotted paths reach into objects.
    /// Values are coerced to the column's type (numbers from text, `0x` hex,
    /// epoch or RFC 3339 times).
    #[serde(default)]
    pub fields: std::collections::BTreeMap<String, Vec<String>>,
    /// With `json`: use only `fields`, not the generic aliases.
    #[serde(default)]
    pub only_listed_fields: bool,
    /// Where each event's tenant comes from.
    #[serde(default)]
    pub tenant_from: TenantFrom,
    /// With `tenant_from = "fixed"`: the tenant (empty: `ingest.tenant`).
    #[serde(default)]
    pub tenant: String,
    /// With `tenant_from = "topic"`: a regular expression over the topic
    /// name whose group `tenant` (or first group) is the tenant.
    #[serde(default)]
    pub tenant_pattern: String,
    /// With `tenant_from = "header"`: the Kafka header (or, for HTTP ingest,
    /// the HTTP header) holding the tenant.
    #[serde(default)]
    pub tenant_header: String,
    /// With `tenant_from = "field"`: the dotted path of the source field
    /// holding the tenant.
    #[serde(default)]
    pub tenant_field: String,
}

/// Where an event's tenant comes from (`docs/sources.md`, tenants).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantFrom {
    /// One tenant for the whole source (`tenant`, else `ingest.tenant`).
    #[default]
    Fixed,
    /// A capture of the topic name (`tenant_pattern`).
    Topic,
    /// A Kafka or HTTP header (`tenant_header`).
    Header,
    /// A field of the event (`tenant_field`).
    Field,
}

impl SourceConfig {
    /// A source of `source_type` with the built-in mapping, for every topic,
    /// routed to the default tenant.
    pub fn of_type(source_type: SourceType) -> Self {
        SourceConfig {
            topics: vec!["*".into()],
            source_type,
            fields: Default::default(),
            only_listed_fields: false,
            tenant_from: TenantFrom::Fixed,
            tenant: String::new(),
            tenant_pattern: String::new(),
            tenant_header: String::new(),
            tenant_field: String::new(),
        }
    }

    /// The compiled `tenant_pattern` (checked at load).
    pub fn tenant_regex(&self) -> Result<regex::Regex, String> {
        let re = regex::Regex::new(&self.tenant_pattern).map_err(|e| e.to_string())?;
        if re.captures_len() < 2 {
            return Err("needs a capture group: (?P<tenant>...) or (...)".into());
        }
        Ok(re)
    }
}

impl SourceConfig {
    /// Whether `topic` matches one of this entry's patterns.
    pub fn matches(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| glob_matches(p, topic))
    }
}

/// `*`-only glob matching (no other metacharacters: topic names allow
/// `.`, `_`, `-`).
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

impl IngestConfig {
    /// The source entry for a topic, if one matches.
    pub fn source_for(&self, topic: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|s| s.matches(topic))
    }
}

/// The Kafka source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,...`. Empty: the Kafka source is off.
    pub brokers: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group; also the source id under which checkpoints are stored.
    pub group_id: String,
    /// Where to start in a partition without a checkpoint: `earliest` or `latest`.
    pub start_from: StartFrom,
    /// Static group membership id (`group.instance.id`), unique per ingest
    /// node; a restarted node takes its partitions back at once. Empty:
    /// `spoor-ingest-{node.id}`; `none`: dynamic membership.
    pub instance_id: String,
    /// Extra librdkafka properties (for example `security.protocol`).
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Background upkeep of the lake by ingest nodes: compaction of small files
/// per (tenant, table, hour), retention, and deletion of objects that no
/// query can still be reading (`docs/operations.md`, compaction and retention).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionConfig {
    /// Run compaction, retention and object deletion on this ingest node.
    pub enabled: bool,
    /// How often a round runs, milliseconds.
    pub interval_ms: u64,
    /// Files smaller than this are compaction inputs, bytes.
    pub small_file_bytes: u64,
    /// Inputs are grouped so that each output holds about this many bytes
    /// of input (compaction holds one output's rows in memory), bytes.
    pub target_file_bytes: u64,
    /// An hour partition that ended `settle_ms` ago is compacted once it
    /// holds this many small files.
    pub min_files: usize,
    /// Any hour partition, even the current one, is compacted once it holds
    /// this many small files.
    pub max_files: usize,
    /// How long after its end an hour counts as mostly complete, milliseconds.
    pub settle_ms: u64,
    /// Objects taken out of the catalog (compaction inputs, expired files)
    /// are deleted this long after the catalog change, so queries that
    /// listed them can finish; at least `query.timeout_ms`, milliseconds.
    pub delete_grace_ms: u64,
    /// Objects the catalog does not list (a crash between write and commit)
    /// are deleted once older than this; must exceed the longest time
    /// between writing a file and committing it, milliseconds.
    pub orphan_grace_ms: u64,
    /// How often the lake is listed to find such orphans, milliseconds.
    pub orphan_scan_interval_ms: u64,
}

/// Correlation workers (the worker role and standalone): how shards follow
/// the catalog and checkpoint (`docs/operations.md`, correlation workers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// How often an idle shard asks the catalog for new files, milliseconds.
    pub poll_interval_ms: u64,
    /// The longest a shard holds processed files before it commits its
    /// position and window state, milliseconds (alerts commit at once).
    pub commit_interval_ms: u64,
    /// Most files a shard evaluates between commits.
    pub max_files_per_step: usize,
    /// How often a shard checks for a new version of its rule set, milliseconds.
    pub rules_refresh_ms: u64,
    /// Recently read events files kept in memory for the shards of this
    /// worker, bytes.
    pub file_cache_bytes: u64,
    /// How far behind its shard's watermark a correlation match may arrive
    /// and still join its window, milliseconds.
    pub allowed_lateness_ms: u64,
    /// Correlation matches kept per shard before the oldest are evicted.
    pub max_window_entries: usize,
    /// The longest one rule may take to evaluate one events file,
    /// milliseconds: a rule over it (or one that panics) is disabled for
    /// the shard, with an alert about it.
    pub rule_time_budget_ms: u64,
}

/// Alerts beyond the `alerts` table (`docs/operations.md`, alert sinks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where workers deliver every committed alert (`[[alerts.sinks]]`), at
    /// least once, with its `alert_id` for deduplication downstream.
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
}

/// What an alert sink delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// A Kafka topic: one message per alert, keyed by `alert_id`.
    Kafka,
    /// An HTTP endpoint: one `POST` of JSON per alert.
    Webhook,
}

/// Rule levels in rising order, as `min_level` takes them.
pub const ALERT_LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// One alert sink (`[[alerts.sinks]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names the sink in metrics, logs and dead letters (`sink:{name}`);
    /// unique, letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// `kafka` or `webhook`.
    pub kind: SinkKind,
    /// Tenants whose alerts go to this sink; empty: every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Lowest rule level delivered (informational, low, medium, high,
    /// critical); empty: every alert, also those of rules without a level.
    #[serde(default)]
    pub min_level: String,
    /// Webhook: the URL alerts are POSTed to (`http://` only in this build).
    #[serde(default)]
    pub url: String,
    /// Webhook: sent as `Authorization: Bearer {token}` when set.
    #[serde(default)]
    pub bearer_token: String,
    /// Webhook: when set, each request carries `X-Spoor-Signature:
    /// sha256={hex HMAC-SHA256 of the body}`.
    #[serde(default)]
    pub hmac_secret: String,
    /// Kafka: bootstrap servers, `host:port,...`.
    #[serde(default)]
    pub brokers: String,
    /// Kafka: the topic.
    #[serde(default)]
    pub topic: String,
    /// Kafka: extra librdkafka producer properties.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// How long one attempt may take (webhook request timeout, Kafka
    /// `message.timeout.ms`), milliseconds.
    #[serde(default = "sink_default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per alert before it becomes a dead letter.
    #[serde(default = "sink_default_max_attempts")]
    pub max_attempts: u32,
    /// Wait before the first retry; doubled at every retry, milliseconds.
    #[serde(default = "sink_default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest wait between retries, milliseconds.
    #[serde(default = "sink_default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

fn sink_default_timeout_ms() -> u64 {
    10_000
}

fn sink_default_max_attempts() -> u32 {
    6
}

fn sink_default_initial_backoff_ms() -> u64 {
    500
}

fn sink_default_max_backoff_ms() -> u64 {
    30_000
}

impl SinkConfig {
    /// A sink of `kind` named `name` with every other key at its default.
    pub fn new(name: &str, kind: SinkKind) -> Self {
        SinkConfig {
            name: name.to_string(),
            kind,
            tenants: Vec::new(),
            min_level: String::new(),
            url: String::new(),
            bearer_token: String::new(),
            hmac_secret: String::new(),
            brokers: String::new(),
            topic: String::new(),
            properties: Default::default(),
            timeout_ms: sink_default_timeout_ms(),
            max_attempts: sink_default_max_attempts(),
            initial_backoff_ms: sink_default_initial_backoff_ms(),
            max_backoff_ms: sink_default_max_backoff_ms(),
        }
    }

    /// Whether alerts of `tenant` go to this sink.
    pub fn takes_tenant(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant)
    }

    /// Whether an alert of a rule at `level` goes to this sink.
    pub fn takes_level(&self, level: Option<&str>) -> bool {
        if self.min_level.is_empty() {
            return true;
        }
        let rank = |l: &str| ALERT_LEVELS.iter().position(|x| x.eq_ignore_ascii_case(l));
        match (level.and_then(rank), rank(&self.min_level)) {
            (Some(level), Some(min)) => level >= min,
            _ => false,
        }
    }
}

/// Retro-hunts (`docs/rules.md`, Retro-hunts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetroHuntConfig {
    /// Longest time range one job may search, days.
    pub max_range_days: u64,
    /// Jobs queued or running at once on one node; more are refused.
    pub max_concurrent_jobs: usize,
    /// A job commits its alerts after this many events files ...
    pub files_per_commit: usize,
    /// ... or as soon as this many alerts wait.
    pub alerts_per_commit: usize,
}

impl Default for RetroHuntConfig {
    fn default() -> Self {
        RetroHuntConfig {
            max_range_days: 90,
            max_concurrent_jobs: 2,
            files_per_commit: 16,
            alerts_per_commit: 10_000,
        }
    }
}

impl RetroHuntConfig {
    /// Checks `[retro_hunt]`.
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            (
                "max_range_days",
                usize::try_from(self.max_range_days).unwrap_or(usize::MAX),
            ),
            ("max_concurrent_jobs", self.max_concurrent_jobs),
            ("files_per_commit", self.files_per_commit),
            ("alerts_per_commit", self.alerts_per_commit),
        ] {
            if value == 0 {
                return Err(ConfigError::Value {
                    key: format!("retro_hunt.{key}"),
                    reason: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }
}

/// Where to start in a partition that has no checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest retained offset.
    Earliest,
    /// Only events produced from now on.
    Latest,
}

/// The query role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Most rows one response returns; more are cut and the response says so.
    pub max_result_rows: usize,
    /// A query running longer is cancelled, milliseconds.
    pub timeout_ms: u64,
    /// Largest accepted SQL text, bytes.
    pub max_sql_bytes: usize,
    /// Memory one query may hold for sorts, joins and aggregations, bytes;
    /// past it an operator that can spill to disk does, and one that cannot
    /// fails the query (never the process).
    pub max_memory_bytes: usize,
    /// How callers authenticate on HTTP, Flight SQL and PostgreSQL: `none`
    /// (every query reads the default tenant; loopback only) or `token`
    /// (an analyst or admin token decides the tenants).
    pub auth: HttpAuth,
    /// Queries one tenant may run at once on this node; more are refused
    /// with `too_many_queries` (HTTP 429) rather than queued.
    pub max_concurrent_per_tenant: usize,
    /// Finished queries kept for `GET /v1/queries` on this node.
    pub history_size: usize,
    /// Arrow Flight SQL listener (gRPC); empty turns it off.
    pub flight_addr: String,
    /// PostgreSQL wire protocol listener; empty turns it off.
    pub postgres_addr: String,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or a key has a bad value or name.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A `--set` flag is not `key=value`.
    #[error(
        "invalid configuration flag --set {flag:?}: expected key=value, for example ingest.flush_interval_ms=500"
    )]
    BadFlag {
        /// The flag as given.
        flag: String,
    },
    /// The named config file does not exist.
    #[error("invalid configuration: config file {path} does not exist")]
    MissingFile {
        /// The path given.
        path: PathBuf,
    },
    /// A value is well-formed but not allowed.
    #[error("invalid configuration: key `{key}`: {reason}")]
    Value {
        /// Dotted key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// One overriding key from the environment or a flag, named after its origin
/// so an error says exactly which variable or flag was wrong.
struct Override {
    origin: String,
    key: String,
    value: Value,
}

impl Provider for Override {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::default(&self.key, self.value.clone()).data()
    }
}

impl Config {
    /// Loads defaults, then `file`, then `SPOOR_*` variables from `env`, then
    /// `--set` flags, and validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG_TOML));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile {
                    path: path.to_path_buf(),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Env takes its variables from the process; we filter our own copy so
        // tests and callers can pass an explicit environment.
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SPOOR_"))
            .collect();
        for (key, value) in &vars {
            let dotted = key["SPOOR_".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            if dotted.is_empty() {
                continue;
            }
            let parsed = parse_value(value);
            figment = figment.merge(Override {
                origin: format!("environment variable {key}"),
                key: dotted,
                value: parsed,
            });
        }
        for flag in sets {
            let (key, value) = flag
                .split_once('=')
                .ok_or_else(|| ConfigError::BadFlag { flag: flag.clone() })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError::BadFlag { flag: flag.clone() });
            }
            let parsed = parse_value(value);
            figment = figment.merge(Override {
                origin: format!("flag --set {flag}"),
                key: key.to_string(),
                value: parsed,
            });
        }
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(ConfigError::Value {
                key: key.to_string(),
                reason: reason.to_string(),
            })
        };
        if self.ingest.flush_interval_ms == 0 {
            return bad("ingest.flush_interval_ms", "must be at least 1");
        }
        if self.cluster.reload_interval_ms < 100 {
            return bad(
                "cluster.reload_interval_ms",
                "must be at least 100: every reload reads the secret file",
            );
        }
        if self.tls.reload_interval_ms < 100 {
            return bad(
                "tls.reload_interval_ms",
                "must be at least 100: every reload reads and hashes the files",
            );
        }
        if self.ingest.max_batch_events == 0 {
            return bad("ingest.max_batch_events", "must be at least 1");
        }
        if self.ingest.max_batch_bytes == 0 {
            return bad("ingest.max_batch_bytes", "must be at least 1");
        }
        if !(1..=22).contains(&self.ingest.zstd_level) {
            return bad("ingest.zstd_level", "must be between 1 and 22");
        }
        if self.ingest.quota_max_delayed_requests == 0 {
            return bad(
                "ingest.quota_max_delayed_requests",
                "must be at least 1 (use quota_exceeded = \"reject\" to hold none)",
            );
        }
        if self.ingest.quota_max_delay_ms > MAX_QUOTA_DELAY_MS {
            return bad(
                "ingest.quota_max_delay_ms",
                "must be at most 300000 (5 minutes): clients and proxies give up on requests held longer",
            );
        }
        if self.ingest.quota_exceeded == QuotaExceededAction::Delay
            && self.ingest.quota_max_delay_ms == 0
        {
            return bad(
                "ingest.quota_max_delay_ms",
                "must be at least 1 with ingest.quota_exceeded = \"delay\" (or use \"reject\")",
            );
        }
        if let Err(e) = TenantId::new(self.ingest.tenant.clone()) {
            return Err(ConfigError::Value {
                key: "ingest.tenant".into(),
                reason: e.to_string(),
            });
        }
        self.validate_compaction()?;
        self.validate_worker()?;
        self.retro_hunt.validate()?;
        self.validate_sinks()?;
        self.cluster.secret()?;
        if !self.ingest.kafka.brokers.is_empty() {
            if self.ingest.kafka.topics.is_empty() {
                return bad(
                    "ingest.kafka.topics",
                    "must name at least one topic when ingest.kafka.brokers is set",
                );
            }
            if self.ingest.kafka.group_id.is_empty() {
                return bad("ingest.kafka.group_id", "must not be empty");
            }
        }
        if self.coordinator.election_timeout_min_ms <= self.coordinator.heartbeat_interval_ms {
            return bad(
                "coordinator.election_timeout_min_ms",
                "must be greater than coordinator.heartbeat_interval_ms",
            );
        }
        if self.coordinator.election_timeout_max_ms <= self.coordinator.election_timeout_min_ms {
            return bad(
                "coordinator.election_timeout_max_ms",
                "must be greater than coordinator.election_timeout_min_ms",
            );
        }
        if self.coordinator.write_timeout_ms == 0 {
            return bad("coordinator.write_timeout_ms", "must be at least 1");
        }
        if self.coordinator.scheduler_interval_ms == 0 {
            return bad("coordinator.scheduler_interval_ms", "must be at least 1");
        }
        if self.coordinator.member_timeout_ms < 2 * self.node.heartbeat_interval_ms {
            return bad(
                "coordinator.member_timeout_ms",
                "must be at least twice node.heartbeat_interval_ms, or live members would be declared dead",
            );
        }
        if self.node.heartbeat_interval_ms == 0 {
            return bad("node.heartbeat_interval_ms", "must be at least 1");
        }
        let members = self.coordinator_members()?;
        if self.coordinator.join && !members.is_empty() {
            return bad(
                "coordinator.join",
                "a joining node takes its members from the group; leave coordinator.initial_members empty",
            );
        }
        if !members.is_empty() && !members.contains_key(&self.node.id) {
            return Err(ConfigError::Value {
                key: "coordinator.initial_members".into(),
                reason: format!("does not list this node (node.id = {})", self.node.id),
            });
        }
        if self.query.max_result_rows == 0 {
            return bad("query.max_result_rows", "must be at least 1");
        }
        if self.query.timeout_ms == 0 {
            return bad("query.timeout_ms", "must be at least 1");
        }
        if self.query.max_memory_bytes < 1 << 20 {
            return bad("query.max_memory_bytes", "must be at least 1048576 (1 MiB)");
        }
        if self.query.max_concurrent_per_tenant == 0 {
            return bad("query.max_concurrent_per_tenant", "must be at least 1");
        }
        if self.query.history_size == 0 {
            return bad("query.history_size", "must be at least 1");
        }
        for (key, addr) in [
            ("query.flight_addr", &self.query.flight_addr),
            ("query.postgres_addr", &self.query.postgres_addr),
        ] {
            if !addr.is_empty() && addr.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::Value {
                    key: key.into(),
                    reason: format!(
                        "{addr:?} is not an address like 127.0.0.1:7090 (empty turns it off)"
                    ),
                });
            }
        }
        self.validate_storage()?;
        if let Err(e) = TenantId::new(self.ingest.unrouted_tenant.clone()) {
            return Err(ConfigError::Value {
                key: "ingest.unrouted_tenant".into(),
                reason: e.to_string(),
            });
        }
        for (i, source) in self.ingest.sources.iter().enumerate() {
            let key = |field: &str| format!("ingest.sources[{i}].{field}");
            let needs = |field: &str, value: &str| {
                if value.trim().is_empty() {
                    Err(ConfigError::Value {
                        key: key(field),
                        reason: format!(
                            "must be set when tenant_from = \"{:?}\"",
                            source.tenant_from
                        )
                        .to_lowercase(),
                    })
                } else {
                    Ok(())
                }
            };
            match source.tenant_from {
                TenantFrom::Fixed if !source.tenant.is_empty() => {
                    if let Err(e) = TenantId::new(source.tenant.clone()) {
                        return Err(ConfigError::Value {
                            key: key("tenant"),
                            reason: e.to_string(),
                        });
                    }
                }
                TenantFrom::Fixed => {}
                TenantFrom::Topic => {
                    needs("tenant_pattern", &source.tenant_pattern)?;
                    if let Err(reason) = source.tenant_regex() {
                        return Err(ConfigError::Value {
                            key: key("tenant_pattern"),
                            reason,
                        });
                    }
                }
                TenantFrom::Header => needs("tenant_header", &source.tenant_header)?,
                TenantFrom::Field => needs("tenant_field", &source.tenant_field)?,
            }
            if source.topics.is_empty() || source.topics.iter().any(|t| t.trim().is_empty()) {
                return Err(ConfigError::Value {
                    key: key("topics"),
                    reason: "must list at least one topic pattern, none empty".into(),
                });
            }
            for (column, paths) in &source.fields {
                let known = crate::schema::EVENT_COLUMNS
                    .iter()
                    .any(|c| c.name == column)
                    && !crate::schema::PARSER_OWNED_COLUMNS.contains(&column.as_str());
                if !known {
                    return Err(ConfigError::Value {
                        key: key(&format!("fields.{column}")),
                        reason: format!(
                            "`{column}` is not a column a field mapping can fill (docs/sources.md lists them)"
                        ),
                    });
                }
                if paths.is_empty() || paths.iter().any(|p| p.trim().is_empty()) {
                    return Err(ConfigError::Value {
                        key: key(&format!("fields.{column}")),
                        reason: "must list at least one source path, none empty".into(),
                    });
                }
            }
            if source.only_listed_fields && source.source_type != SourceType::Json {
                return Err(ConfigError::Value {
                    key: key("only_listed_fields"),
                    reason: format!(
                        "applies to source_type = \"json\" only, this entry is {}",
                        source.source_type
                    ),
                });
            }
        }
        let endpoints: Vec<&str> = self
            .catalog
            .endpoint
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return bad("catalog.endpoint", "must name at least one coordinator URL");
        }
        if let Some(e) = endpoints
            .iter()
            .find(|e| !e.starts_with("http://") && !e.starts_with("https://"))
        {
            return Err(ConfigError::Value {
                key: "catalog.endpoint".into(),
                reason: format!("{e:?} must start with http:// or https://"),
            });
        }
        Ok(())
    }

    /// Checks `[storage]`: the URL, and `[storage.s3]` for an `s3://` lake.
    fn validate_storage(&self) -> Result<(), ConfigError> {
        let threshold = self.storage.s3.multipart_threshold_bytes;
        if !(MIN_MULTIPART_THRESHOLD_BYTES..=MAX_MULTIPART_THRESHOLD_BYTES).contains(&threshold) {
            return Err(ConfigError::Value {
                key: "storage.s3.multipart_threshold_bytes".into(),
                reason: format!(
                    "must be between {MIN_MULTIPART_THRESHOLD_BYTES} (5 MiB, the smallest S3 \
                     part) and {MAX_MULTIPART_THRESHOLD_BYTES} (5 GiB, the largest single PUT)"
                ),
            });
        }
        if self.storage.url.is_empty() {
            return Ok(());
        }
        let bad = |reason: String| ConfigError::Value {
            key: "storage.url".into(),
            reason,
        };
        let url = url::Url::parse(&self.storage.url).map_err(|e| bad(format!("not a URL: {e}")))?;
        match url.scheme() {
            "file" => Ok(()),
            "s3" => {
                if url.host_str().is_none_or(str::is_empty) {
                    return Err(bad(format!(
                        "{:?} names no bucket (s3://bucket/optional/prefix)",
                        self.storage.url
                    )));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(bad(format!(
                        "{:?}: an s3:// URL takes no query or fragment; the client is set in [storage.s3]",
                        self.storage.url
                    )));
                }
                self.storage.s3.validate()
            }
            other => Err(bad(format!(
                "unsupported scheme {other:?} in {:?} (file:// or s3://)",
                self.storage.url
            ))),
        }
    }

    /// Checks `[worker]`.
    fn validate_worker(&self) -> Result<(), ConfigError> {
        let w = &self.worker;
        let bad = |key: &str, reason: &str| {
            Err(ConfigError::Value {
                key: format!("worker.{key}"),
                reason: reason.to_string(),
            })
        };
        if w.poll_interval_ms == 0 {
            return bad("poll_interval_ms", "must be at least 1");
        }
        if w.commit_interval_ms == 0 {
            return bad("commit_interval_ms", "must be at least 1");
        }
        if w.max_files_per_step == 0 {
            return bad("max_files_per_step", "must be at least 1");
        }
        if w.rules_refresh_ms == 0 {
            return bad("rules_refresh_ms", "must be at least 1");
        }
        if w.max_window_entries == 0 {
            return bad("max_window_entries", "must be at least 1");
        }
        if w.rule_time_budget_ms == 0 {
            return bad("rule_time_budget_ms", "must be at least 1");
        }
        Ok(())
    }

    /// Checks `[[alerts.sinks]]`.
    fn validate_sinks(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, sink) in self.alerts.sinks.iter().enumerate() {
            let bad = |field: &str, reason: String| {
                Err(ConfigError::Value {
                    key: format!("alerts.sinks[{i}].{field}"),
                    reason,
                })
            };
            let name_ok = !sink.name.is_empty()
                && sink
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                return bad(
                    "name",
                    format!(
                        "{:?} must be non-empty letters, digits, '-', '_' or '.'",
                        sink.name
                    ),
                );
            }
            if !names.insert(sink.name.as_str()) {
                return bad("name", format!("{:?} names two sinks", sink.name));
            }
            for t in &sink.tenants {
                if let Err(e) = TenantId::new(t.clone()) {
                    return bad("tenants", e.to_string());
                }
            }
            if !sink.min_level.is_empty()
                && !ALERT_LEVELS
                    .iter()
                    .any(|l| l.eq_ignore_ascii_case(&sink.min_level))
            {
                return bad(
                    "min_level",
                    format!(
                        "{:?} is not a level: one of {}, or empty for every alert",
                        sink.min_level,
                        ALERT_LEVELS.join(", ")
                    ),
                );
            }
            if sink.timeout_ms == 0 {
                return bad("timeout_ms", "must be at least 1".into());
            }
            if sink.max_attempts == 0 {
                return bad("max_attempts", "must be at least 1".into());
            }
            if sink.initial_backoff_ms == 0 {
                return bad("initial_backoff_ms", "must be at least 1".into());
            }
            if sink.max_backoff_ms < sink.initial_backoff_ms {
                return bad(
                    "max_backoff_ms",
                    format!(
                        "must be at least initial_backoff_ms ({})",
                        sink.initial_backoff_ms
                    ),
                );
            }
            let other_kind = |field: &str, set: bool, kind: &str| {
                if set {
                    bad(field, format!("applies to kind = \"{kind}\" only"))
                } else {
                    Ok(())
                }
            };
            match sink.kind {
                SinkKind::Webhook => {
                    if sink.url.starts_with("https://") {
                        return bad(
                            "url",
                            format!(
                                "{:?}: https is not built into this release; use http:// (a TLS proxy in front of the receiver)",
                                sink.url
                            ),
                        );
                    }
                    let host = sink.url.strip_prefix("http://").unwrap_or("");
                    if host.is_empty()
                        || host.starts_with('/')
                        || host.contains(char::is_whitespace)
                    {
                        return bad(
                            "url",
                            format!("{:?} must be an http:// URL with a host", sink.url),
                        );
                    }
                    other_kind("brokers", !sink.brokers.is_empty(), "kafka")?;
                    other_kind("topic", !sink.topic.is_empty(), "kafka")?;
                    other_kind("properties", !sink.properties.is_empty(), "kafka")?;
                }
                SinkKind::Kafka => {
                    if sink.brokers.trim().is_empty() {
                        return bad("brokers", "must name the bootstrap servers".into());
                    }
                    if sink.topic.trim().is_empty() {
                        return bad("topic", "must name the topic".into());
                    }
                    other_kind("url", !sink.url.is_empty(), "webhook")?;
                    other_kind("bearer_token", !sink.bearer_token.is_empty(), "webhook")?;
                    other_kind("hmac_secret", !sink.hmac_secret.is_empty(), "webhook")?;
                }
            }
        }
        Ok(())
    }

    /// Checks `[ingest.compaction]`.
    fn validate_compaction(&self) -> Result<(), ConfigError> {
        let c = &self.ingest.compaction;
        let bad = |key: &str, reason: String| {
            Err(ConfigError::Value {
                key: format!("ingest.compaction.{key}"),
                reason,
            })
        };
        if c.interval_ms == 0 {
            return bad("interval_ms", "must be at least 1".into());
        }
        if c.small_file_bytes == 0 {
            return bad("small_file_bytes", "must be at least 1".into());
        }
        if c.target_file_bytes < c.small_file_bytes {
            return bad(
                "target_file_bytes",
                format!(
                    "must be at least ingest.compaction.small_file_bytes ({})",
                    c.small_file_bytes
                ),
            );
        }
        if c.min_files < 2 {
            return bad(
                "min_files",
                "must be at least 2 (one file has nothing to merge with)".into(),
            );
        }
        if c.max_files < c.min_files {
            return bad(
                "max_files",
                format!(
                    "must be at least ingest.compaction.min_files ({})",
                    c.min_files
                ),
            );
        }
        if c.delete_grace_ms < self.query.timeout_ms {
            return bad(
                "delete_grace_ms",
                format!(
                    "must be at least query.timeout_ms ({}): a query may read a file that long after listing it",
                    self.query.timeout_ms
                ),
            );
        }
        if c.orphan_grace_ms < MIN_ORPHAN_GRACE_MS {
            return bad(
                "orphan_grace_ms",
                format!(
                    "must be at least {MIN_ORPHAN_GRACE_MS}: an object younger than the longest write-to-commit time \
                     (a flush retries its commit for up to 60 s) may be about to be committed"
                ),
            );
        }
        if c.orphan_scan_interval_ms == 0 {
            return bad("orphan_scan_interval_ms", "must be at least 1".into());
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `--print-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# could not render the configuration: {e}\n"))
    }

    /// The Raft folder.
    pub fn raft_dir(&self) -> PathBuf {
        if self.coordinator.raft_dir.is_empty() {
            self.data_dir.join("raft")
        } else {
            PathBuf::from(&self.coordinator.raft_dir)
        }
    }

    /// The lake folder when the lake is on local disk (no `storage.url`).
    pub fn local_lake_dir(&self) -> PathBuf {
        self.data_dir.join("lake")
    }

    /// `coordinator.initial_members` as id → URL.
    pub fn coordinator_members(
        &self,
    ) -> Result<std::collections::BTreeMap<u64, String>, ConfigError> {
        let mut members = std::collections::BTreeMap::new();
        for (i, entry) in self.coordinator.initial_members.iter().enumerate() {
            let bad = |reason: String| ConfigError::Value {
                key: "coordinator.initial_members".into(),
                reason,
            };
            let (id, url) = entry.split_once('@').ok_or_else(|| {
                bad(format!(
                    "entry {i} ({entry:?}) is not ID@URL, for example 2@http://10.0.0.2:7070"
                ))
            })?;
            let id: u64 = id
                .trim()
                .parse()
                .map_err(|_| bad(format!("entry {i} ({entry:?}): {id:?} is not a node id")))?;
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(bad(format!(
                    "entry {i} ({entry:?}): the URL must start with http:// or https://"
                )));
            }
            if members.insert(id, url.to_string()).is_some() {
                return Err(bad(format!("node id {id} is listed twice")));
            }
        }
        Ok(members)
    }

    /// The Kafka `group.instance.id` to use, if any (see `ingest.kafka.instance_id`).
    pub fn kafka_instance_id(&self) -> Option<String> {
        match self.ingest.kafka.instance_id.as_str() {
            "" => Some(format!("spoor-ingest-{}", self.node.id)),
            "none" => None,
            id => Some(id.to_string()),
        }
    }

    /// The tenant ingest writes to.
    pub fn ingest_tenant(&self) -> TenantId {
        // validate() checked it; fall back to the default id rather than panic.
        TenantId::new(self.ingest.tenant.clone())
            .unwrap_or_else(|_| TenantId::new(TenantId::DEFAULT).unwrap_or_else(|e| panic!("{e}")))
    }
}

/// Reads an override value as TOML-like (numbers, booleans, arrays), else as a string.
fn parse_value(text: &str) -> Value {
    match text.parse::<Value>() {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], sets: &[&str]) -> Result<Config, ConfigError> {
        Config::load(
            None,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn defaults_load_and_bind_loopback() {
        let c = load(&[], &[]).expect("defaults");
        assert!(c.node.http_addr.ip().is_loopback());
        assert!(c.node.grpc_addr.ip().is_loopback());
        assert_eq!(c.data_dir, PathBuf::from("./spoor-data"));
        assert!(c.ingest.flush_interval_ms <= 2000);
        assert_eq!(c.ingest.tenant, "default");
    }

    #[test]
    fn env_then_flags_override_in_order() {
        let c = load(
            &[
                ("SPOOR_INGEST__FLUSH_INTERVAL_MS", "500"),
                ("SPOOR_INGEST__KAFKA__TOPICS", "[\"a\",\"b\"]"),
                ("PATH", "/bin"),
            ],
            &["ingest.flush_interval_ms=700", "data_dir=/tmp/x"],
        )
        .expect("overrides");
        assert_eq!(c.ingest.flush_interval_ms, 700);
        assert_eq!(
            c.ingest.kafka.topics,
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_secret_file_lists_the_secrets_of_a_rotation() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("cluster.secret");
        let cluster = ClusterConfig {
            secret_file: file.display().to_string(),
            ..ClusterConfig::default()
        };
        let (old, new) = ("o".repeat(40), "n".repeat(40));
        std::fs::write(&file, format!("{new}\n\n  {old}  \n")).expect("write");
        assert_eq!(
            cluster.secrets().expect("two"),
            vec![new.clone(), old.clone()]
        );
        assert_eq!(cluster.secret().expect("first"), Some(new.clone()));
        std::fs::write(&file, format!("{new}\nshort\n")).expect("write");
        let e = cluster
            .secrets()
            .expect_err("short second line")
            .to_string();
        assert!(
            e.contains("cluster.secret_file") && e.contains("line 2"),
            "{e}"
        );
        std::fs::write(&file, "\n \n").expect("write");
        let e = cluster.secrets().expect_err("empty").to_string();
        assert!(e.contains("holds no secret"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load(&[("SPOOR_INGEST__FLUSH_MS", "5")], &[])
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("flush_ms"), "{err}");
        assert!(err.contains("SPOOR_INGEST__FLUSH_MS"), "{err}");
        let err = load(&[], &["query.nope=1"])
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = load(&[("SPOOR_INGEST__FLUSH_INTERVAL_MS", "soon")], &[])
            .expect_err("bad type")
            .to_string();
        assert!(err.contains("flush_interval_ms"), "{err}");
        let err = load(&[], &["node.http_addr=nowhere"])
            .expect_err("bad addr")
            .to_string();
        assert!(err.contains("http_addr"), "{err}");
        let err = load(&[], &["ingest.zstd_level=99"])
            .expect_err("range")
            .to_string();
        assert!(err.contains("ingest.zstd_level"), "{err}");
        let err = load(&[], &["ingest.tenant=Bad/Tenant"])
            .expect_err("tenant")
            .to_string();
        assert!(err.contains("ingest.tenant"), "{err}");
        let err = load(&[], &["novalue"]).expect_err("flag").to_string();
        assert!(err.contains("--set"), "{err}");
    }

    #[test]
    fn file_layer_and_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spoor.toml");
        std::fs::write(&path, "[ingest]\nflush_interval_ms = 250\n").expect("write");
        let c = Config::load(Some(&path), Vec::new(), &[]).expect("file");
        assert_eq!(c.ingest.flush_interval_ms, 250);
        std::fs::write(&path, "[ingest]\nflush_interval = 250\n").expect("write");
        let err = Config::load(Some(&path), Vec::new(), &[])
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("flush_interval") && err.contains("spoor.toml"),
            "{err}"
        );
        let err = Config::load(Some(&dir.path().join("nope.toml")), Vec::new(), &[])
            .expect_err("missing")
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn sources_choose_parsers_by_topic_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spoor.toml");
        let file = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Config::load(Some(&path), Vec::new(), &[])
        };
        let c = file(
            r#"
[[ingest.sources]]
topics = ["zeek-*", "bro"]
source_type = "zeek"

[[ingest.sources]]
topics = ["edr.*.json"]
source_type = "json"
only_listed_fields = true
[ingest.sources.fields]
src_ip = ["net.src", "client.addr"]
"#,
        )
        .expect("sources load");
        let zeek = c.ingest.source_for("zeek-dc1").expect("zeek entry");
        assert_eq!(zeek.source_type, SourceType::Zeek);
        assert!(c.ingest.source_for("bro").is_some());
        assert!(
            c.ingest.source_for("zeek").is_none(),
            "the pattern needs the dash"
        );
        let edr = c.ingest.source_for("edr.eu.json").expect("edr entry");
        assert_eq!(edr.fields["src_ip"], ["net.src", "client.addr"]);
        assert!(c.ingest.source_for("other").is_none());

        let err = file("[[ingest.sources]]\ntopics = [\"x\"]\nsource_type = \"syslg\"\n")
            .expect_err("unknown type")
            .to_string();
        assert!(err.contains("syslg") && err.contains("syslog"), "{err}");
        let err = file(
            "[[ingest.sources]]\ntopics = [\"x\"]\nsource_type = \"json\"\n[ingest.sources.fields]\nsrc_addr = [\"a\"]\n",
        )
        .expect_err("unknown column")
        .to_string();
        assert!(
            err.contains("ingest.sources[0].fields.src_addr") && err.contains("not a column"),
            "{err}"
        );
        let err = file(
            "[[ingest.sources]]\ntopics = [\"x\"]\nsource_type = \"json\"\n[ingest.sources.fields]\nraw = [\"a\"]\n",
        )
        .expect_err("parser-owned column")
        .to_string();
        assert!(err.contains("fields.raw"), "{err}");
        let err = file(
            "[[ingest.sources]]\ntopics = [\"x\"]\nsource_type = \"cef\"\ntenant_from = \"topic\"\n",
        )
        .expect_err("topic routing without a pattern")
        .to_string();
        assert!(err.contains("ingest.sources[0].tenant_pattern"), "{err}");
        let err = file(
            "[[ingest.sources]]\ntopics = [\"x\"]\nsource_type = \"cef\"\ntenant_from = \"topic\"\ntenant_pattern = \"^logs-.*$\"\n",
        )
        .expect_err("pattern without a group")
        .to_string();
        assert!(err.contains("capture group"), "{err}");
        let err = file(
            "[[ingest.sources]]\ntopics = [\"x\"]\nsource_type = \"cef\"\ntenant = \"Bad Tenant\"\n",
        )
        .expect_err("bad fixed tenant")
        .to_string();
        assert!(err.contains("ingest.sources[0].tenant"), "{err}");
        let err = file(
            "[[ingest.sources]]\ntopics = [\"x\"]\nsource_type = \"cef\"\ntenant_from = \"header\"\n",
        )
        .expect_err("header routing without a header")
        .to_string();
        assert!(err.contains("tenant_header"), "{err}");
        let err = file("[[ingest.sources]]\ntopics = []\nsource_type = \"cef\"\n")
            .expect_err("no topics")
            .to_string();
        assert!(err.contains("ingest.sources[0].topics"), "{err}");
    }

    #[test]
    fn topic_patterns() {
        assert!(glob_matches("a*", "a"));
        assert!(glob_matches("*-logs", "fw-logs"));
        assert!(glob_matches("t-*-x-*", "t-1-x-2"));
        assert!(!glob_matches("t-*-x-*", "t-1-y-2"));
        assert!(!glob_matches("ab*ba", "aba"));
        assert!(glob_matches("exact", "exact"));
        assert!(!glob_matches("exact", "exact2"));
    }

    #[test]
    fn initial_members_are_checked() {
        let c = load(
            &[],
            &["coordinator.initial_members=[\"1@http://a:7070\", \"2@http://b:7070\"]"],
        )
        .expect("members");
        assert_eq!(c.coordinator_members().expect("parse").len(), 2);
        for (bad, needle) in [
            (
                "[\"1@http://a:7070\", \"x@http://b:7070\"]",
                "not a node id",
            ),
            ("[\"1-http://a:7070\"]", "not ID@URL"),
            ("[\"1@a:7070\"]", "http://"),
            ("[\"2@http://b:7070\"]", "does not list this node"),
            ("[\"1@http://a:7070\", \"1@http://b:7070\"]", "listed twice"),
        ] {
            let err = load(&[], &[&format!("coordinator.initial_members={bad}")])
                .expect_err(bad)
                .to_string();
            assert!(
                err.contains("coordinator.initial_members") && err.contains(needle),
                "{err}"
            );
        }
    }

    #[test]
    fn worker_keys_are_checked() {
        let c = load(&[], &[]).expect("defaults");
        assert_eq!(c.worker.poll_interval_ms, 200);
        assert_eq!(c.worker.allowed_lateness_ms, 300_000);
        for (overrides, key) in [
            ("worker.poll_interval_ms=0", "worker.poll_interval_ms"),
            ("worker.max_files_per_step=0", "worker.max_files_per_step"),
        ] {
            let err = load(&[], &[overrides]).expect_err(overrides);
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn alert_sinks_load_and_are_checked() {
        let c = load(&[], &[]).expect("defaults");
        assert!(c.alerts.sinks.is_empty());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spoor.toml");
        let file = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Config::load(Some(&path), Vec::new(), &[])
        };
        let c = file(
            r#"
[[alerts.sinks]]
name = "soc"
kind = "webhook"
url = "http://soar.example:8080/hooks/spoor"
min_level = "high"
tenants = ["acme"]
hmac_secret = "s3cret"

[[alerts.sinks]]
name = "bus"
kind = "kafka"
brokers = "kafka-1:9092"
topic = "spoor-alerts"
max_attempts = 3
"#,
        )
        .expect("sinks load");
        assert_eq!(c.alerts.sinks.len(), 2);
        let soc = &c.alerts.sinks[0];
        assert_eq!(soc.kind, SinkKind::Webhook);
        assert_eq!(soc.max_attempts, 6, "defaults fill the rest");
        assert!(soc.takes_tenant("acme") && !soc.takes_tenant("other"));
        assert!(soc.takes_level(Some("critical")) && soc.takes_level(Some("High")));
        assert!(!soc.takes_level(Some("medium")) && !soc.takes_level(None));
        let bus = &c.alerts.sinks[1];
        assert_eq!((bus.kind, bus.max_attempts), (SinkKind::Kafka, 3));
        assert!(bus.takes_tenant("anyone") && bus.takes_level(None));
        // Also through a flag, as one inline array.
        let c = load(
            &[],
            &[r#"alerts.sinks=[{name = "w", kind = "webhook", url = "http://127.0.0.1:9/x"}]"#],
        )
        .expect("flag");
        assert_eq!(c.alerts.sinks[0].url, "http://127.0.0.1:9/x");

        let webhook = "[[alerts.sinks]]\nname = \"w\"\nkind = \"webhook\"\nurl = \"http://h/x\"\n";
        let kafka = "[[alerts.sinks]]\nname = \"k\"\nkind = \"kafka\"\nbrokers = \"b:9092\"\ntopic = \"t\"\n";
        for (text, key, needle) in [
            (format!("{webhook}kind = \"mail\"\n"), "kind", "mail"),
            (
                "[[alerts.sinks]]\nname = \"w\"\nkind = \"webhook\"\n".to_string(),
                "alerts.sinks[0].url",
                "http://",
            ),
            (
                webhook.replace("http://h/x", "https://h/x"),
                "alerts.sinks[0].url",
                "https",
            ),
            (
                webhook.replace("\"w\"", "\"a b\""),
                "alerts.sinks[0].name",
                "letters",
            ),
            (
                format!("{webhook}{webhook}"),
                "alerts.sinks[1].name",
                "two sinks",
            ),
            (
                format!("{webhook}min_level = \"urgent\"\n"),
                "alerts.sinks[0].min_level",
                "critical",
            ),
            (
                format!("{webhook}tenants = [\"Bad/Tenant\"]\n"),
                "alerts.sinks[0].tenants",
                "",
            ),
            (
                format!("{webhook}max_attempts = 0\n"),
                "alerts.sinks[0].max_attempts",
                "at least 1",
            ),
            (
                format!("{webhook}initial_backoff_ms = 100\nmax_backoff_ms = 10\n"),
                "alerts.sinks[0].max_backoff_ms",
                "initial_backoff_ms",
            ),
            (
                format!("{webhook}topic = \"t\"\n"),
                "alerts.sinks[0].topic",
                "kafka",
            ),
            (
                kafka.replace("topic = \"t\"\n", ""),
                "alerts.sinks[0].topic",
                "topic",
            ),
            (
                kafka.replace("b:9092", ""),
                "alerts.sinks[0].brokers",
                "bootstrap",
            ),
            (format!("{kafka}retries = 3\n"), "retries", "unknown"),
        ] {
            let err = file(&text).expect_err(&text).to_string();
            assert!(err.contains(key) && err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn compaction_keys_are_checked() {
        let c = load(&[], &[]).expect("defaults");
        assert!(c.ingest.compaction.enabled);
        assert_eq!(c.ingest.compaction.interval_ms, 60_000);
        assert_eq!(c.ingest.compaction.delete_grace_ms, 600_000);
        assert_eq!(c.ingest.compaction.orphan_grace_ms, 3_600_000);
        let c = load(
            &[("SPOOR_INGEST__COMPACTION__MIN_FILES", "3")],
            &["ingest.compaction.interval_ms=500"],
        )
        .expect("overrides");
        assert_eq!(c.ingest.compaction.min_files, 3);
        assert_eq!(c.ingest.compaction.interval_ms, 500);
        for (set, needle) in [
            (
                "ingest.compaction.interval_ms=0",
                "ingest.compaction.interval_ms",
            ),
            (
                "ingest.compaction.min_files=1",
                "ingest.compaction.min_files",
            ),
            (
                "ingest.compaction.max_files=1",
                "ingest.compaction.max_files",
            ),
            (
                "ingest.compaction.target_file_bytes=10",
                "ingest.compaction.target_file_bytes",
            ),
            ("ingest.compaction.delete_grace_ms=1000", "query.timeout_ms"),
            (
                "ingest.compaction.orphan_grace_ms=1000",
                "ingest.compaction.orphan_grace_ms",
            ),
        ] {
            let err = load(&[], &[set]).expect_err(set).to_string();
            assert!(err.contains(needle), "{set}: {err}");
        }
        // A short grace is allowed when queries are cut off sooner.
        let c = load(
            &[],
            &[
                "ingest.compaction.delete_grace_ms=1000",
                "query.timeout_ms=1000",
            ],
        )
        .expect("short grace");
        assert_eq!(c.ingest.compaction.delete_grace_ms, 1000);
        let err = load(&[], &["ingest.compaction.nope=1"])
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn kafka_instance_id_follows_the_node_id() {
        let c = load(&[], &["node.id=7"]).expect("config");
        assert_eq!(c.kafka_instance_id().as_deref(), Some("spoor-ingest-7"));
        let c = load(&[], &["ingest.kafka.instance_id=none"]).expect("config");
        assert_eq!(c.kafka_instance_id(), None);
        let c = load(&[], &["ingest.kafka.instance_id=edge-a"]).expect("config");
        assert_eq!(c.kafka_instance_id().as_deref(), Some("edge-a"));
    }

    #[test]
    fn printed_config_loads_back() {
        let c = load(&[], &["ingest.kafka.brokers=127.0.0.1:9092"]).expect("config");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("printed.toml");
        std::fs::write(&path, c.to_toml()).expect("write");
        let back = Config::load(Some(&path), Vec::new(), &[]).expect("reload");
        assert_eq!(back, c);
    }
}
