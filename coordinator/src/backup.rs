//! Backups of the coordinators' state, and their restore into a new group
//! (docs/backup-restore.md).
//!
//! A backup file is one JSON document: a header (format, version, when,
//! by which build, the log id it was taken at, counts, the SHA-256 of the
//! body) and the body, the catalog and control state exactly as the
//! state machine holds them. The hash covers the body's bytes as written
//! (kept verbatim through `RawValue`), so any change to them, or a cut
//! file, is refused on restore. The body is the state machine's own serde
//! form, so a backup decodes wherever a snapshot of the same build would.
//!
//! Over gRPC the file travels in [`CHUNK_BYTES`] chunks (`BackupCatalog`,
//! `RestoreCatalog`), so tonic's 4 MiB message limit does not bound it;
//! [`MAX_BACKUP_BYTES`] does. A restore is one Raft entry holding the whole
//! state: peers take Raft messages up to [`MAX_RAFT_MESSAGE_BYTES`].

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use spoor_common::auth::AuthChannel;
use spoor_common::catalog::{CatalogError, CatalogState};
use spoor_common::control::sha256_hex;
use spoor_proto::v1 as pb;

use crate::control_state::ControlState;
use crate::raft_types::LogId;

/// What the `format` field of every backup says.
pub const FORMAT: &str = "spoor-coordinator-backup";
/// The body's layout; a restore refuses any other.
pub const FORMAT_VERSION: u32 = 1;
/// Largest backup file taken or restored (a catalog of 100,000 files is
/// about 100 MB: every file is listed once and again in its change).
pub const MAX_BACKUP_BYTES: usize = 512 << 20;
/// Largest Raft message a coordinator accepts from a peer: a restore's
/// entry (the whole state) with the entries around it, and snapshot chunks
/// (openraft's 3 MiB chunks are about 4 bytes a byte in JSON).
pub const MAX_RAFT_MESSAGE_BYTES: usize = MAX_BACKUP_BYTES * 2;
/// Bytes per gRPC message of a backup or restore.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Metadata on a restore a follower forwards to the leader: the leader
/// does not forward it again (leadership moved meanwhile: the caller retries).
pub const FORWARDED: &str = "spoor-forwarded";

/// Why a backup file was refused, or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Not a backup of this kind at all.
    #[error("not a spoor coordinator backup: {0}")]
    NotABackup(String),
    /// A backup of another layout.
    #[error(
        "backup format version {found} is not one this build reads (it reads version {FORMAT_VERSION}); \
         restore it with a spoor build that reads it (the file was written by spoor {written_by})"
    )]
    Version {
        /// The file's version.
        found: u32,
        /// The build that wrote it.
        written_by: String,
    },
    /// The body is not what was hashed when the backup was taken.
    #[error(
        "checksum mismatch: the body's SHA-256 is {actual} but the backup says {expected}; \
         the file was changed or damaged after it was written"
    )]
    Checksum {
        /// What the header says.
        expected: String,
        /// What the body hashes to.
        actual: String,
    },
    /// The hash matched but the body does not decode (a bug, or a body
    /// of a build that changed the state's layout without a new version).
    #[error("the backup's body does not decode as this build's state: {0}")]
    Body(String),
    /// Larger than [`MAX_BACKUP_BYTES`].
    #[error("the backup is larger than {MAX_BACKUP_BYTES} bytes")]
    TooLarge,
    /// Serializing the state failed.
    #[error("encoding the backup: {0}")]
    Encode(String),
}

impl From<BackupError> for CatalogError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Encode(_) => CatalogError::Internal {
                reason: e.to_string(),
            },
            other => CatalogError::Invalid {
                reason: other.to_string(),
            },
        }
    }
}

/// Counts of what a backup holds (informative: a restore recounts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    /// Catalog files, every tenant and table.
    pub files: u64,
    /// Tenant records.
    pub tenants: u64,
    /// Source (Kafka) checkpoints.
    pub checkpoints: u64,
    /// Token records (hashes only).
    pub tokens: u64,
    /// Rule sets.
    pub rule_sets: u64,
    /// Correlation shards with their checkpoints.
    pub shards: u64,
    /// Member registrations (not restored).
    pub members: u64,
}

/// A backup file: the header fields, then the body.
#[derive(Debug, Serialize, Deserialize)]
struct BackupFile<B> {
    format: String,
    format_version: u32,
    /// When it was taken (RFC 3339, the leader's clock).
    created_at: String,
    /// The build that wrote it.
    spoor_version: String,
    /// The coordinator (the leader) that read the state.
    source_node_id: u64,
    /// The last log entry the state includes.
    last_applied: Option<LogId>,
    summary: BackupSummary,
    /// Hex SHA-256 of the body's bytes as they stand in the file.
    body_sha256: String,
    body: B,
}

/// A backup's header: everything but the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupHeader {
    /// Always [`FORMAT_VERSION`] for a file this build accepted.
    pub format_version: u32,
    /// When it was taken.
    pub created_at: String,
    /// The build that wrote it.
    pub spoor_version: String,
    /// The leader that read the state.
    pub source_node_id: u64,
    /// The last log entry the state includes.
    pub last_applied: Option<LogId>,
    /// Counts.
    pub summary: BackupSummary,
    /// Hex SHA-256 of the body.
    pub body_sha256: String,
}

impl<B> BackupFile<B> {
    fn header(&self) -> BackupHeader {
        BackupHeader {
            format_version: self.format_version,
            created_at: self.created_at.clone(),
            spoor_version: self.spoor_version.clone(),
            source_node_id: self.source_node_id,
            last_applied: self.last_applied,
            summary: self.summary,
            body_sha256: self.body_sha256.clone(),
        }
    }
}

#[derive(Serialize)]
struct BodyRef<'a> {
    catalog: &'a CatalogState,
    control: &'a ControlState,
}

#[derive(Deserialize)]
struct Body {
    catalog: CatalogState,
    control: ControlState,
}

/// What a restore puts in place, as it travels in the Raft log: the
/// backup's body and which backup it was.
///
/// The body stays the backup's JSON text, decoded when the entry is
/// applied: a command decodes through an untagged enum (`CommandForms`),
/// which buffers its content, and serde_json cannot read the catalog's
/// integer-keyed maps (files by sequence) back from that buffer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRestore {
    /// The body's hash: a retried restore of the same backup is recognized.
    pub body_sha256: String,
    /// The log id the backup was taken at, on its group.
    pub backup_last_applied: Option<LogId>,
    /// When the backup was taken.
    pub backup_created_at: String,
    /// The backup's body: the catalog (files, sequences, change history,
    /// source checkpoints) and the control state (tenants, tokens, rule
    /// sets, shards; members and leases are not restored:
    /// [`ControlState::restored`]).
    pub body: String,
}

impl CatalogRestore {
    /// The catalog and control state of the body.
    pub fn state(&self) -> Result<(CatalogState, ControlState), BackupError> {
        let body: Body =
            serde_json::from_str(&self.body).map_err(|e| BackupError::Body(e.to_string()))?;
        Ok((body.catalog, body.control))
    }
}

/// Which backup a state was restored from (kept in the state machine).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredFrom {
    /// The backup body's hash.
    pub body_sha256: String,
    /// The log id the backup was taken at, on its group.
    pub backup_last_applied: Option<LogId>,
    /// When the backup was taken.
    pub backup_created_at: String,
    /// When the restore was applied (the proposer's clock).
    pub restored_at_micros: i64,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOutcome {
    /// The same backup was restored before: nothing changed.
    pub already_applied: bool,
    /// The log index the backup was taken at.
    pub backup_last_applied_index: u64,
    /// Files restored.
    pub files: u64,
    /// Tenants restored.
    pub tenants: u64,
    /// Source checkpoints restored.
    pub checkpoints: u64,
    /// Tokens restored.
    pub tokens: u64,
    /// Rule sets restored.
    pub rule_sets: u64,
    /// Shards restored.
    pub shards: u64,
    /// The backup's member registrations, left out.
    pub members_dropped: u64,
    /// Shard leases of the backup's workers, released.
    pub leases_released: u64,
}

/// The backup file of a state taken at `last_applied` by `node_id` at
/// `now_micros`, and its header.
pub fn encode(
    catalog: &CatalogState,
    control: &ControlState,
    last_applied: Option<LogId>,
    node_id: u64,
    now_micros: i64,
) -> Result<(Vec<u8>, BackupHeader), BackupError> {
    let body = serde_json::to_string(&BodyRef { catalog, control })
        .map_err(|e| BackupError::Encode(e.to_string()))?;
    let body = RawValue::from_string(body).map_err(|e| BackupError::Encode(e.to_string()))?;
    let counts = control.counts();
    let file = BackupFile {
        format: FORMAT.to_string(),
        format_version: FORMAT_VERSION,
        created_at: spoor_common::time::rfc3339(now_micros),
        spoor_version: env!("CARGO_PKG_VERSION").to_string(),
        source_node_id: node_id,
        last_applied,
        summary: BackupSummary {
            files: catalog.file_count(),
            tenants: counts.tenants,
            checkpoints: catalog.checkpoint_count(),
            tokens: counts.tokens,
            rule_sets: counts.rule_sets,
            shards: counts.shards,
            members: counts.members,
        },
        body_sha256: sha256_hex(body.get().as_bytes()),
        body: &*body,
    };
    let bytes = serde_json::to_vec(&file).map_err(|e| BackupError::Encode(e.to_string()))?;
    if bytes.len() > MAX_BACKUP_BYTES {
        return Err(BackupError::TooLarge);
    }
    Ok((bytes, file.header()))
}

/// The file's header once its format, version and checksum are checked;
/// the body is hashed, not decoded.
pub fn verify(bytes: &[u8]) -> Result<BackupHeader, BackupError> {
    Ok(checked(bytes)?.header())
}

/// The restore a backup file asks for, once checked like [`verify`] and
/// its body found to decode (so a body this build cannot read is refused
/// before it enters the log).
pub fn decode(bytes: &[u8]) -> Result<CatalogRestore, BackupError> {
    let file = checked(bytes)?;
    let restore = CatalogRestore {
        body_sha256: file.body_sha256,
        backup_last_applied: file.last_applied,
        backup_created_at: file.created_at,
        body: file.body.get().to_string(),
    };
    restore.state()?;
    Ok(restore)
}

fn checked(bytes: &[u8]) -> Result<BackupFile<Box<RawValue>>, BackupError> {
    if bytes.len() > MAX_BACKUP_BYTES {
        return Err(BackupError::TooLarge);
    }
    // Format and version first, so a file of another version is named as
    // such rather than as a field it lacks.
    #[derive(Deserialize)]
    struct Probe {
        format: Option<String>,
        format_version: Option<u32>,
        spoor_version: Option<String>,
    }
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| BackupError::NotABackup(e.to_string()))?;
    if probe.format.as_deref() != Some(FORMAT) {
        return Err(BackupError::NotABackup(format!(
            "its format is {:?}, not {FORMAT:?}",
            probe.format.unwrap_or_default()
        )));
    }
    match probe.format_version {
        Some(FORMAT_VERSION) => {}
        found => {
            return Err(BackupError::Version {
                found: found.unwrap_or(0),
                written_by: probe.spoor_version.unwrap_or_else(|| "unknown".into()),
            });
        }
    }
    let file: BackupFile<Box<RawValue>> =
        serde_json::from_slice(bytes).map_err(|e| BackupError::NotABackup(e.to_string()))?;
    let actual = sha256_hex(file.body.get().as_bytes());
    if actual != file.body_sha256 {
        return Err(BackupError::Checksum {
            expected: file.body_sha256,
            actual,
        });
    }
    Ok(file)
}

type ControlServiceClient = pb::control_service_client::ControlServiceClient<AuthChannel>;

/// Takes a backup through `channel` (a coordinator's gRPC): the file's bytes.
pub async fn download(channel: AuthChannel) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = ControlServiceClient::new(channel)
        .backup_catalog(pb::BackupCatalogRequest {})
        .await?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        if bytes.len() + chunk.data.len() > MAX_BACKUP_BYTES {
            return Err(tonic::Status::resource_exhausted(
                BackupError::TooLarge.to_string(),
            ));
        }
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(bytes)
}

/// Restores the backup file `bytes` through `channel`; `forwarded` marks
/// a follower's call to the leader, which is not forwarded again.
pub async fn upload(
    channel: AuthChannel,
    bytes: &[u8],
    forwarded: bool,
) -> Result<RestoreOutcome, tonic::Status> {
    let chunks: Vec<pb::RestoreChunk> = bytes
        .chunks(CHUNK_BYTES)
        .map(|c| pb::RestoreChunk { data: c.to_vec() })
        .collect();
    let mut request = tonic::Request::new(futures::stream::iter(chunks));
    if forwarded {
        request
            .metadata_mut()
            .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    }
    let reply = ControlServiceClient::new(channel)
        .restore_catalog(request)
        .await?
        .into_inner();
    Ok(outcome_from_pb(reply))
}

/// A restore's outcome to protobuf.
pub fn outcome_to_pb(o: &RestoreOutcome) -> pb::RestoreCatalogReply {
    pb::RestoreCatalogReply {
        already_applied: o.already_applied,
        backup_last_applied_index: o.backup_last_applied_index,
        files: o.files,
        tenants: o.tenants,
        checkpoints: o.checkpoints,
        tokens: o.tokens,
        rule_sets: o.rule_sets,
        shards: o.shards,
        members_dropped: o.members_dropped,
        leases_released: o.leases_released,
    }
}

/// A restore's outcome from protobuf.
pub fn outcome_from_pb(r: pb::RestoreCatalogReply) -> RestoreOutcome {
    RestoreOutcome {
        already_applied: r.already_applied,
        backup_last_applied_index: r.backup_last_applied_index,
        files: r.files,
        tenants: r.tenants,
        checkpoints: r.checkpoints,
        tokens: r.tokens,
        rule_sets: r.rule_sets,
        shards: r.shards,
        members_dropped: r.members_dropped,
        leases_released: r.leases_released,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_state::ControlOp;
    use spoor_common::TenantId;
    use spoor_common::catalog::CommitBatch;
    use spoor_common::catalog::conformance::kafka_file;
    use spoor_common::control::TenantRecord;

    fn state() -> (CatalogState, ControlState) {
        let mut catalog = CatalogState::default();
        for i in 0..3 {
            catalog
                .apply_commit(
                    &CommitBatch {
                        files: vec![kafka_file("acme", "t", 0, i * 10, i * 10 + 9)],
                        checkpoints: vec![],
                    },
                    1,
                )
                .expect("commit");
        }
        let mut control = ControlState::default();
        control
            .apply(
                &ControlOp::PutTenant(TenantRecord::new(TenantId::new("acme").expect("t"))),
                1,
            )
            .expect("tenant");
        (catalog, control)
    }

    fn replaced(bytes: &[u8], from: &str, to: &str, after: &str) -> Vec<u8> {
        let text = String::from_utf8(bytes.to_vec()).expect("utf-8");
        let start = text.find(after).expect("anchor");
        let at = start + text[start..].find(from).expect("text to replace");
        let mut out = text[..at].to_string();
        out.push_str(to);
        out.push_str(&text[at + from.len()..]);
        out.into_bytes()
    }

    #[test]
    fn a_backup_round_trips_and_a_changed_body_is_refused() {
        let (catalog, control) = state();
        let (bytes, header) = encode(&catalog, &control, None, 3, 1_000_000).expect("encode");
        assert_eq!(header.summary.files, 3);
        assert_eq!(header.summary.tenants, 1);
        assert_eq!(header.source_node_id, 3);
        assert_eq!(verify(&bytes).expect("verify"), header);
        let restore = decode(&bytes).expect("decode");
        assert_eq!(restore.state().expect("state"), (catalog, control));
        assert_eq!(restore.body_sha256, header.body_sha256);
        // The header comes first: `head` shows what a file is.
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        assert!(text.starts_with(r#"{"format":"spoor-coordinator-backup","format_version":1"#));

        // One row count changed in the body.
        let tampered = replaced(&bytes, "\"row_count\":10", "\"row_count\":11", "\"body\"");
        let err = decode(&tampered).expect_err("tampered").to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        // A cut file, another version, something else entirely.
        let err = decode(&bytes[..bytes.len() / 2])
            .expect_err("cut")
            .to_string();
        assert!(err.contains("not a spoor coordinator backup"), "{err}");
        let newer = replaced(&bytes, "\"format_version\":1", "\"format_version\":2", "{");
        let err = decode(&newer).expect_err("version").to_string();
        assert!(
            err.contains("format version 2 is not one this build reads"),
            "{err}"
        );
        let err = decode(br#"{"meta": 1}"#).expect_err("other").to_string();
        assert!(err.contains("not a spoor coordinator backup"), "{err}");
    }
}
