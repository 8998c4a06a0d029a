//! The cluster's control plane as every role sees it: members and their
//! heartbeats, tenants, API tokens, rule sets, correlation shards with their
//! leases, and the client that reaches the coordinators' `ControlService`.
//!
//! The coordinator keeps all of this in its Raft state machine; the types
//! live here so that every role can speak about them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::Digest;
use spoor_proto::v1 as pb;

use crate::catalog::{CatalogError, CommitBatch, CommitOutcome};
use crate::catalog_client::{Coordinators, convert};
use crate::schema::Table;
use crate::tenant::TenantId;

/// What a cluster member does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every role in one process.
    Standalone,
    /// A Raft group member.
    Coordinator,
    /// Reads sources, writes Parquet.
    Ingest,
    /// Serves SQL.
    Query,
    /// Runs correlation shards.
    Worker,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 5] = [
        Role::Standalone,
        Role::Coordinator,
        Role::Ingest,
        Role::Query,
        Role::Worker,
    ];

    /// The role's name, as the CLI and the protos spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Coordinator => "coordinator",
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Worker => "worker",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A member as it describes itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// `node.id`: unique in the cluster, whatever the role.
    pub node_id: u64,
    /// Its role.
    pub role: Role,
    /// Its HTTP address.
    pub http_addr: String,
    /// Its gRPC address (empty when it serves none).
    pub grpc_addr: String,
    /// Its build version.
    pub version: String,
}

/// A member as the coordinator holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// What it said of itself.
    pub info: MemberInfo,
    /// False once it missed heartbeats for the member timeout.
    pub alive: bool,
    /// Bumped at every (re-)registration, so an expiry decided against an
    /// older registration does not kill a member that came back.
    pub incarnation: u64,
    /// When it last registered, microseconds since the epoch.
    pub registered_at_micros: i64,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// Its id.
    pub id: TenantId,
    /// A name for people.
    pub display_name: String,
    /// Days of events kept; 0 keeps them forever.
    pub retention_days: u32,
    /// Days kept per table (`alerts`, `dead_letter`, ...), overriding
    /// `retention_days` for that table; 0 keeps the table forever.
    #[serde(default)]
    pub table_retention_days: BTreeMap<String, u32>,
    /// While set, retention deletes nothing of the tenant (litigation,
    /// an investigation).
    #[serde(default)]
    pub legal_hold: bool,
    /// Where its data must stay, for people and placement ("eu-west").
    #[serde(default)]
    pub region: String,
    /// A disabled tenant's tokens authenticate nothing and its events are
    /// refused; its data stays.
    #[serde(default)]
    pub disabled: bool,
    /// When it was registered (µs since the epoch; 0 for tenants of before
    /// this field).
    #[serde(default)]
    pub created_at_micros: i64,
    /// Its limits.
    #[serde(default)]
    pub quotas: TenantQuotas,
}

impl TenantRecord {
    /// A tenant `id` with no limits, kept forever, enabled.
    pub fn new(id: TenantId) -> Self {
        TenantRecord {
            display_name: id.to_string(),
            id,
            retention_days: 0,
            table_retention_days: BTreeMap::new(),
            legal_hold: false,
            region: String::new(),
            disabled: false,
            created_at_micros: 0,
            quotas: TenantQuotas::default(),
        }
    }

    /// A digest of the whole record (hex SHA-256 of its JSON): what a
    /// writer read, so the coordinators store its change only over that
    /// same content. Made of replicated content only, so every coordinator
    /// computes the same one (a counter kept beside the record would not
    /// survive snapshots of older versions alike).
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        // Serializing plain fields and maps cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(sha2::Sha256::digest(&json))
    }

    /// Why these retention settings cannot be stored, if they cannot: an
    /// alert's triage history (`alert_updates`) kept shorter than the
    /// alert would make a kept alert fall back to status `new`. Checked
    /// before a change is proposed (not when the log is applied, so
    /// entries stored before this check replay as they applied).
    pub fn retention_problem(&self) -> Option<String> {
        let unheld = TenantRecord {
            legal_hold: false,
            ..self.clone()
        };
        let alerts = unheld.retention_days_of(Table::Alerts);
        let updates = unheld.retention_days_of(Table::AlertUpdates);
        (updates != 0 && (alerts == 0 || updates < alerts)).then(|| {
            let alerts = match alerts {
                0 => "forever".to_string(),
                days => format!("{days} days"),
            };
            format!(
                "tenant {}: alert_updates would be kept {updates} days but alerts {alerts}: \
                 the triage history must be kept at least as long as the alerts",
                self.id
            )
        })
    }

    /// Days `table` is kept (0: forever). `events` and `dead_letter`
    /// follow `retention_days` unless set per table; `alerts` and `audit`
    /// are kept unless set per table (alerts are the record of what was
    /// detected, kept longer than events), and `alert_updates` follows
    /// `alerts` unless set: an alert's triage history lives as long as the
    /// alert, or its status would fall back to `new`. A tenant under legal
    /// hold keeps everything.
    pub fn retention_days_of(&self, table: Table) -> u32 {
        if self.legal_hold {
            return 0;
        }
        let own = self.table_retention_days.get(table.name()).copied();
        match table {
            Table::Events | Table::DeadLetter => own.unwrap_or(self.retention_days),
            Table::Alerts | Table::Audit => own.unwrap_or(0),
            Table::AlertUpdates => own.unwrap_or_else(|| self.retention_days_of(Table::Alerts)),
        }
    }
}

/// A tenant's limits; 0 is "no limit" (or the node's default) everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantQuotas {
    /// Events per second it may send, summed over one ingest node.
    #[serde(default)]
    pub ingest_events_per_second: u64,
    /// Raw bytes per second it may send, per ingest node.
    #[serde(default)]
    pub ingest_bytes_per_second: u64,
    /// Queries it may run at once on one query node (0:
    /// `query.max_concurrent_per_tenant`).
    #[serde(default)]
    pub max_concurrent_queries: u32,
    /// Bytes of Parquet one query may read; past it the query fails.
    #[serde(default)]
    pub max_query_scanned_bytes: u64,
}

/// What a token may do. Every role but `admin` is bound to the tenants the
/// token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenRole {
    /// Manage the cluster, tenants and tokens; naming no tenant, every
    /// tenant.
    Admin,
    /// Read (query, rules, alerts) across the tenants it names: an MSSP's
    /// analysts serving several customers.
    MsspOperator,
    /// Everything an analyst does, and manage the tokens of its tenant.
    TenantAdmin,
    /// Query, manage rules, triage alerts and run retro-hunts of its tenants.
    Analyst,
    /// Read only: queries, rule and alert listings (BI tools, dashboards).
    Viewer,
    /// Send events for its tenants, nothing else.
    Ingest,
}

impl TokenRole {
    /// Every role.
    pub const ALL: [TokenRole; 6] = [
        TokenRole::Admin,
        TokenRole::MsspOperator,
        TokenRole::TenantAdmin,
        TokenRole::Analyst,
        TokenRole::Viewer,
        TokenRole::Ingest,
    ];

    /// The role's name.
    pub fn name(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::MsspOperator => "mssp-operator",
            TokenRole::TenantAdmin => "tenant-admin",
            TokenRole::Analyst => "analyst",
            TokenRole::Viewer => "viewer",
            TokenRole::Ingest => "ingest",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<TokenRole> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl std::fmt::Display for TokenRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An API token as the coordinator stores it: never the secret, only its
/// SHA-256. The secret is 256 random bits, so a plain hash is enough (no
/// password stretching needed, as for GitHub's or Stripe's API keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id, the part of the token before the secret.
    pub token_id: String,
    /// Tenants it may act for; empty only for admin tokens (all tenants).
    pub tenants: Vec<TenantId>,
    /// What it may do.
    pub role: TokenRole,
    /// Hex SHA-256 of the whole token string.
    pub secret_sha256: String,
    /// A note for people (who holds it, what for).
    pub description: String,
    /// Revoked tokens stay listed but authenticate nothing.
    pub revoked: bool,
    /// When it stops authenticating (µs since the epoch); `None`: never.
    /// Absent in records of before expiry existed.
    #[serde(default)]
    pub expires_at_micros: Option<i64>,
}

impl TokenRecord {
    /// Whether it is the cluster's admin: an admin token naming no tenant.
    pub fn is_cluster_admin(&self) -> bool {
        self.role == TokenRole::Admin && self.tenants.is_empty()
    }
}

/// A newly generated token: the string to hand to its holder (shown once)
/// and the record to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// `spoor_{token_id}_{secret}`.
    pub token: String,
    /// What the coordinator stores.
    pub record: TokenRecord,
}

/// Prefix of every token, so a leaked one is recognizable by secret scanners.
pub const TOKEN_PREFIX: &str = "spoor_";

/// Generates a token for `tenants` with `role`.
pub fn generate_token(
    tenants: Vec<TenantId>,
    role: TokenRole,
    description: String,
) -> Result<NewToken, CatalogError> {
    if tenants.is_empty() && role != TokenRole::Admin {
        return Err(CatalogError::Invalid {
            reason: format!(
                "{} token needs at least one tenant; only admin tokens span all tenants",
                crate::auth::with_article(role.name())
            ),
        });
    }
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)
        .and_then(|()| getrandom::fill(&mut secret))
        .map_err(|e| CatalogError::Internal {
            reason: format!("no randomness for a token: {e}"),
        })?;
    let token_id = hex::encode(id);
    let token = format!("{TOKEN_PREFIX}{token_id}_{}", hex::encode(secret));
    Ok(NewToken {
        record: TokenRecord {
            secret_sha256: token_hash(&token),
            token_id,
            tenants,
            role,
            description,
            revoked: false,
            expires_at_micros: None,
        },
        token,
    })
}

/// Hex SHA-256 of a token string.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Hex SHA-256 of `bytes` (a backup's body, a token).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The token id inside a token string, if it has the token's shape.
pub fn token_id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some(id)
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A tenant's named set of rules (Sigma YAML documents or scheduled SQL),
/// versioned so that concurrent editors cannot overwrite each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    /// Owning tenant.
    pub tenant: TenantId,
    /// Its name, unique per tenant.
    pub name: String,
    /// 1 for the first version, then one more per change.
    pub version: u64,
    /// The rules' text.
    pub content: String,
    /// When this version was stored, microseconds since the epoch.
    pub updated_at_micros: i64,
    /// Whether workers run it. A disabled rule set is kept, with its
    /// versions, until it is enabled again; changing only this is a new
    /// version. Rule sets stored before enablement existed are enabled.
    #[serde(default = "rule_set_enabled_by_default")]
    pub enabled: bool,
}

/// A rule set stored without saying whether it is enabled (in a snapshot
/// or log entry written before enablement existed) is enabled.
pub fn rule_set_enabled_by_default() -> bool {
    true
}

/// Largest rule set accepted (bytes).
pub const MAX_RULE_SET_BYTES: usize = 4 * 1024 * 1024;

/// One unit of correlation work: a tenant's rule group, one bucket of its
/// group-by keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ShardId {
    /// The tenant.
    pub tenant: String,
    /// The rule group (usually a rule set name).
    pub rule_group: String,
    /// Key bucket, `0..buckets`.
    pub bucket: u32,
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.rule_group, self.bucket)
    }
}

/// Where a shard's processing has durably reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// The tenant's catalog sequence processed up to, inclusive.
    pub catalog_sequence: u64,
    /// Object key of the window state written at that point (empty: none).
    pub state_key: String,
    /// Event-time watermark, microseconds since the epoch.
    pub watermark_micros: i64,
    /// The catalog sequence up to which every alerts file of the shard was
    /// delivered to every alert sink (None: up to `catalog_sequence`, as in
    /// checkpoints written before sinks existed or by workers without
    /// sinks). A new holder delivers the shard's alerts files after it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_sequence: Option<u64>,
}

impl ShardCheckpoint {
    /// The sequence up to which the shard's alerts were delivered to its sinks.
    pub fn delivered_up_to(&self) -> u64 {
        self.delivered_sequence.unwrap_or(self.catalog_sequence)
    }
}

/// A shard, its lease and its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which shard.
    pub id: ShardId,
    /// The worker holding the lease, if any.
    pub holder: Option<u64>,
    /// Bumped at every change of holder; commits name the epoch they hold.
    pub epoch: u64,
    /// The last accepted checkpoint.
    pub checkpoint: Option<ShardCheckpoint>,
}

/// A lease as a worker holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLease {
    /// The shard.
    pub shard: ShardId,
    /// The lease epoch to present with every commit.
    pub epoch: u64,
    /// Where to resume.
    pub checkpoint: Option<ShardCheckpoint>,
}

/// A worker's commit under its lease: a checkpoint, alert files, or both,
/// accepted only while `worker` holds `shard` at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCommit {
    /// The shard.
    pub shard: ShardId,
    /// The committing worker.
    pub worker: u64,
    /// The epoch of its lease.
    pub epoch: u64,
    /// The new checkpoint, if any.
    pub checkpoint: Option<ShardCheckpoint>,
}

/// What a member reports with each heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Who.
    pub member: MemberInfo,
    /// For workers: measured load per held shard (events per second).
    pub shard_loads: Vec<(ShardId, f64)>,
}

/// What the coordinator answers a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The leader that took the heartbeat.
    pub leader_id: u64,
    /// Leases the member holds now (workers).
    pub leases: Vec<ShardLease>,
    /// Heartbeats further apart than this make the member dead.
    pub member_timeout: Duration,
}

/// One coordinator as the leader sees its replication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoordinatorReplica {
    /// Raft node id.
    pub node_id: u64,
    /// Its gRPC URL.
    pub url: String,
    /// Voter (true) or learner.
    pub voter: bool,
    /// Last log index known replicated to it (the leader: its own last index).
    pub matched_index: Option<u64>,
    /// Entries behind the leader's last log index.
    pub lag: Option<u64>,
}

/// A member as `spoor status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The member.
    pub member: Member,
    /// Milliseconds since the leader last heard from it (None: not since it became leader).
    pub last_heartbeat_ms: Option<u64>,
    /// Shards it holds.
    pub shards: u32,
}

/// The whole cluster as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The leader (which answered).
    pub leader_id: u64,
    /// Raft term.
    pub term: u64,
    /// Committed log index.
    pub commit_index: u64,
    /// The leader's last log index.
    pub last_log_index: u64,
    /// Coordinators with replication lag.
    pub coordinators: Vec<CoordinatorReplica>,
    /// Registered members of every role.
    pub members: Vec<MemberStatus>,
    /// Every shard.
    pub shards: Vec<Shard>,
    /// Tenants.
    pub tenants: Vec<TenantRecord>,
    /// What each tenant stores, per the catalog (tenants with files).
    pub usage: Vec<crate::catalog::TenantTotals>,
}

/// Conversions between control types and protobuf.
pub mod control_convert {
    use super::*;

    fn invalid(reason: String) -> CatalogError {
        CatalogError::Invalid { reason }
    }

    /// Member info to protobuf.
    pub fn member_info_to_pb(m: &MemberInfo) -> pb::MemberInfo {
        pb::MemberInfo {
            node_id: m.node_id,
            role: m.role.name().to_string(),
            http_addr: m.http_addr.clone(),
            grpc_addr: m.grpc_addr.clone(),
            version: m.version.clone(),
        }
    }

    /// Member info from protobuf.
    pub fn member_info_from_pb(m: pb::MemberInfo) -> Result<MemberInfo, CatalogError> {
        Ok(MemberInfo {
            node_id: m.node_id,
            role: Role::parse(&m.role)
                .ok_or_else(|| invalid(format!("member.role {:?} is not a role", m.role)))?,
            http_addr: m.http_addr,
            grpc_addr: m.grpc_addr,
            version: m.version,
        })
    }

    /// A shard id to protobuf.
    pub fn shard_id_to_pb(s: &ShardId) -> pb::ShardId {
        pb::ShardId {
            tenant: s.tenant.clone(),
            rule_group: s.rule_group.clone(),
            bucket: s.bucket,
        }
    }

    /// A shard id from protobuf.
    pub fn shard_id_from_pb(s: Option<pb::ShardId>) -> Result<ShardId, CatalogError> {
        let s = s.ok_or_else(|| invalid("shard is missing".into()))?;
        Ok(ShardId {
            tenant: s.tenant,
            rule_group: s.rule_group,
            bucket: s.bucket,
        })
    }

    /// A checkpoint to protobuf.
    pub fn shard_checkpoint_to_pb(c: &ShardCheckpoint) -> pb::ShardCheckpoint {
        pb::ShardCheckpoint {
            catalog_sequence: c.catalog_sequence,
            state_key: c.state_key.clone(),
            watermark_micros: c.watermark_micros,
            delivered_sequence: c.delivered_sequence,
        }
    }

    /// A checkpoint from protobuf.
    pub fn shard_checkpoint_from_pb(c: pb::ShardCheckpoint) -> ShardCheckpoint {
        ShardCheckpoint {
            catalog_sequence: c.catalog_sequence,
            state_key: c.state_key,
            watermark_micros: c.watermark_micros,
            delivered_sequence: c.delivered_sequence,
        }
    }

    /// A shard to protobuf.
    pub fn shard_to_pb(s: &Shard) -> pb::Shard {
        pb::Shard {
            id: Some(shard_id_to_pb(&s.id)),
            holder: s.holder,
            epoch: s.epoch,
            checkpoint: s.checkpoint.as_ref().map(shard_checkpoint_to_pb),
        }
    }

    /// A shard from protobuf.
    pub fn shard_from_pb(s: pb::Shard) -> Result<Shard, CatalogError> {
        Ok(Shard {
            id: shard_id_from_pb(s.id)?,
            holder: s.holder,
            epoch: s.epoch,
            checkpoint: s.checkpoint.map(shard_checkpoint_from_pb),
        })
    }

    /// A tenant to protobuf.
    pub fn tenant_to_pb(t: &TenantRecord) -> pb::Tenant {
        pb::Tenant {
            id: t.id.to_string(),
            display_name: t.display_name.clone(),
            retention_days: t.retention_days,
            table_retention_days: t
                .table_retention_days
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            legal_hold: t.legal_hold,
            region: t.region.clone(),
            disabled: t.disabled,
            created_at_micros: t.created_at_micros,
            ingest_events_per_second: t.quotas.ingest_events_per_second,
            ingest_bytes_per_second: t.quotas.ingest_bytes_per_second,
            max_concurrent_queries: t.quotas.max_concurrent_queries,
            max_query_scanned_bytes: t.quotas.max_query_scanned_bytes,
            expected_fingerprint: None,
        }
    }

    /// A tenant from protobuf.
    pub fn tenant_from_pb(t: pb::Tenant) -> Result<TenantRecord, CatalogError> {
        Ok(TenantRecord {
            id: TenantId::new(t.id).map_err(|e| invalid(e.to_string()))?,
            display_name: t.display_name,
            retention_days: t.retention_days,
            table_retention_days: t.table_retention_days.into_iter().collect(),
            legal_hold: t.legal_hold,
            region: t.region,
            disabled: t.disabled,
            created_at_micros: t.created_at_micros,
            quotas: TenantQuotas {
                ingest_events_per_second: t.ingest_events_per_second,
                ingest_bytes_per_second: t.ingest_bytes_per_second,
                max_concurrent_queries: t.max_concurrent_queries,
                max_query_scanned_bytes: t.max_query_scanned_bytes,
            },
        })
    }

    /// A token record to protobuf (its hash included: only admins list tokens).
    pub fn token_to_pb(t: &TokenRecord) -> pb::TokenRecord {
        pb::TokenRecord {
            token_id: t.token_id.clone(),
            tenants: t.tenants.iter().map(ToString::to_string).collect(),
            role: t.role.name().to_string(),
            secret_sha256: t.secret_sha256.clone(),
            description: t.description.clone(),
            revoked: t.revoked,
            expires_at_micros: t.expires_at_micros.unwrap_or(0),
        }
    }

    /// A token record from protobuf.
    pub fn token_from_pb(t: pb::TokenRecord) -> Result<TokenRecord, CatalogError> {
        Ok(TokenRecord {
            token_id: t.token_id,
            tenants: t
                .tenants
                .into_iter()
                .map(|x| TenantId::new(x).map_err(|e| invalid(e.to_string())))
                .collect::<Result<_, _>>()?,
            role: TokenRole::parse(&t.role)
                .ok_or_else(|| invalid(format!("token role {:?} is not a role", t.role)))?,
            secret_sha256: t.secret_sha256,
            description: t.description,
            revoked: t.revoked,
            expires_at_micros: (t.expires_at_micros != 0).then_some(t.expires_at_micros),
        })
    }

    /// A rule set to protobuf.
    pub fn rule_set_to_pb(r: &RuleSet) -> pb::RuleSet {
        pb::RuleSet {
            tenant: r.tenant.to_string(),
            name: r.name.clone(),
            version: r.version,
            content: r.content.clone(),
            updated_at_micros: r.updated_at_micros,
            disabled: !r.enabled,
        }
    }

    /// A rule set from protobuf.
    pub fn rule_set_from_pb(r: pb::RuleSet) -> Result<RuleSet, CatalogError> {
        Ok(RuleSet {
            tenant: TenantId::new(r.tenant).map_err(|e| invalid(e.to_string()))?,
            name: r.name,
            version: r.version,
            content: r.content,
            updated_at_micros: r.updated_at_micros,
            enabled: !r.disabled,
        })
    }

    /// A shard commit to protobuf.
    pub fn shard_commit_to_pb(
        c: &ShardCommit,
        batch: Option<&CommitBatch>,
    ) -> pb::ShardCommitRequest {
        pb::ShardCommitRequest {
            shard: Some(shard_id_to_pb(&c.shard)),
            worker: c.worker,
            epoch: c.epoch,
            checkpoint: c.checkpoint.as_ref().map(shard_checkpoint_to_pb),
            batch: batch.map(convert::batch_to_pb),
        }
    }

    /// A shard commit from protobuf.
    pub fn shard_commit_from_pb(
        c: pb::ShardCommitRequest,
    ) -> Result<(ShardCommit, Option<CommitBatch>), CatalogError> {
        Ok((
            ShardCommit {
                shard: shard_id_from_pb(c.shard)?,
                worker: c.worker,
                epoch: c.epoch,
                checkpoint: c.checkpoint.map(shard_checkpoint_from_pb),
            },
            c.batch.map(convert::batch_from_pb).transpose()?,
        ))
    }
}

use control_convert as cc;

type ControlServiceClient =
    pb::control_service_client::ControlServiceClient<crate::auth::AuthChannel>;

/// The control plane over gRPC, with the same failover as the catalog
/// client. Every call is safe to retry on another coordinator: registration
/// and shard definitions are idempotent, tokens are keyed by their id, rule
/// sets by their expected version, shard commits by lease and checkpoint.
#[derive(Debug, Clone)]
pub struct ControlClient {
    coordinators: Coordinators,
}

impl ControlClient {
    /// A client for the coordinators at `endpoints` (comma-separated URLs).
    pub fn connect_lazy(endpoints: &str, timeout: Duration) -> Result<Self, CatalogError> {
        Self::connect_lazy_with_tls(endpoints, timeout, None)
    }

    /// As [`ControlClient::connect_lazy`], with TLS for `https://` endpoints.
    pub fn connect_lazy_with_tls(
        endpoints: &str,
        timeout: Duration,
        tls: Option<&std::sync::Arc<crate::tls::Tls>>,
    ) -> Result<Self, CatalogError> {
        Ok(ControlClient {
            coordinators: Coordinators::connect_lazy_with_tls(endpoints, timeout, tls)?,
        })
    }

    /// The same client, presenting `credential` (the cluster secret, or
    /// the CLI's token) on every call.
    pub fn with_credential(self, credential: crate::auth::Credential) -> Self {
        ControlClient {
            coordinators: self.coordinators.with_credential(credential),
        }
    }

    async fn call<T, F, Fut>(&self, name: &str, call: F) -> Result<T, CatalogError>
    where
        F: Fn(ControlServiceClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.coordinators
            .call(name, |channel| call(ControlServiceClient::new(channel)))
            .await
    }

    /// Registers or heartbeats a member; returns its leases.
    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<HeartbeatReply, CatalogError> {
        let req = pb::HeartbeatRequest {
            member: Some(cc::member_info_to_pb(&hb.member)),
            shard_loads: hb
                .shard_loads
                .iter()
                .map(|(s, load)| pb::ShardLoad {
                    shard: Some(cc::shard_id_to_pb(s)),
                    events_per_second: *load,
                })
                .collect(),
        };
        let resp = self
            .call("Heartbeat", |mut c| {
                let req = req.clone();
                async move { c.heartbeat(req).await }
            })
            .await?;
        Ok(HeartbeatReply {
            leader_id: resp.leader_id,
            leases: resp
                .leases
                .into_iter()
                .map(|l| {
                    Ok(ShardLease {
                        shard: cc::shard_id_from_pb(l.shard)?,
                        epoch: l.epoch,
                        checkpoint: l.checkpoint.map(cc::shard_checkpoint_from_pb),
                    })
                })
                .collect::<Result<_, CatalogError>>()?,
            member_timeout: Duration::from_millis(resp.member_timeout_ms),
        })
    }

    /// Creates or updates a tenant.
    pub async fn put_tenant(&self, tenant: &TenantRecord) -> Result<(), CatalogError> {
        self.send_tenant(cc::tenant_to_pb(tenant)).await
    }

    /// Stores `tenant` only over `read`, the record the writer read (`None`:
    /// only if the tenant is not registered); otherwise
    /// `CatalogError::Conflict`. A retry of a put that applied is not a
    /// conflict.
    pub async fn put_tenant_over(
        &self,
        tenant: &TenantRecord,
        read: Option<&TenantRecord>,
    ) -> Result<(), CatalogError> {
        self.send_tenant(pb::Tenant {
            expected_fingerprint: Some(read.map(TenantRecord::fingerprint).unwrap_or_default()),
            ..cc::tenant_to_pb(tenant)
        })
        .await
    }

    async fn send_tenant(&self, req: pb::Tenant) -> Result<(), CatalogError> {
        self.call("PutTenant", |mut c| {
            let req = req.clone();
            async move { c.put_tenant(req).await }
        })
        .await?;
        Ok(())
    }

    /// Stores a token record (the secret never leaves the caller).
    pub async fn create_token(&self, record: &TokenRecord) -> Result<(), CatalogError> {
        let req = cc::token_to_pb(record);
        self.call("CreateToken", |mut c| {
            let req = req.clone();
            async move { c.create_token(req).await }
        })
        .await?;
        Ok(())
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, token_id: &str) -> Result<(), CatalogError> {
        let req = pb::RevokeTokenRequest {
            token_id: token_id.to_string(),
        };
        self.call("RevokeToken", |mut c| {
            let req = req.clone();
            async move { c.revoke_token(req).await }
        })
        .await?;
        Ok(())
    }

    /// The token records (without their hashes) the caller may see, of
    /// `tenant` or of all.
    pub async fn list_tokens(
        &self,
        tenant: Option<&TenantId>,
    ) -> Result<Vec<TokenRecord>, CatalogError> {
        let req = pb::ListTokensRequest {
            tenant: tenant.map(ToString::to_string).unwrap_or_default(),
        };
        let resp = self
            .call("ListTokens", |mut c| {
                let req = req.clone();
                async move { c.list_tokens(req).await }
            })
            .await?;
        resp.tokens.into_iter().map(cc::token_from_pb).collect()
    }

    /// Checks a token; returns its record, or a Conflict error naming why not.
    pub async fn authenticate(&self, token: &str) -> Result<TokenRecord, CatalogError> {
        let req = pb::AuthenticateRequest {
            token: token.to_string(),
        };
        let resp = self
            .call("Authenticate", |mut c| {
                let req = req.clone();
                async move { c.authenticate(req).await }
            })
            .await?;
        cc::token_from_pb(resp)
    }

    /// Stores a new version of a rule set, enabled (run by workers) or
    /// not. `expected_version` is the version the caller edited (0 for a
    /// new set); a concurrent change is refused with a Conflict. Changing
    /// only `enabled` is a new version too.
    pub async fn put_rule_set(
        &self,
        tenant: &TenantId,
        name: &str,
        content: &str,
        enabled: bool,
        expected_version: u64,
    ) -> Result<RuleSet, CatalogError> {
        let req = pb::PutRuleSetRequest {
            tenant: tenant.to_string(),
            name: name.to_string(),
            content: content.to_string(),
            expected_version,
            disabled: !enabled,
        };
        let resp = self
            .call("PutRuleSet", |mut c| {
                let req = req.clone();
                async move { c.put_rule_set(req).await }
            })
            .await?;
        cc::rule_set_from_pb(resp)
    }

    /// A tenant's rule sets.
    pub async fn rule_sets(&self, tenant: &TenantId) -> Result<Vec<RuleSet>, CatalogError> {
        let req = pb::ListRuleSetsRequest {
            tenant: tenant.to_string(),
        };
        let resp = self
            .call("ListRuleSets", |mut c| {
                let req = req.clone();
                async move { c.list_rule_sets(req).await }
            })
            .await?;
        resp.rule_sets
            .into_iter()
            .map(cc::rule_set_from_pb)
            .collect()
    }

    /// Defines the shards of a tenant's rule group (`buckets` key buckets).
    pub async fn define_shards(
        &self,
        tenant: &TenantId,
        rule_group: &str,
        buckets: u32,
    ) -> Result<(), CatalogError> {
        let req = pb::DefineShardsRequest {
            tenant: tenant.to_string(),
            rule_group: rule_group.to_string(),
            buckets,
        };
        self.call("DefineShards", |mut c| {
            let req = req.clone();
            async move { c.define_shards(req).await }
        })
        .await?;
        Ok(())
    }

    /// Commits a checkpoint and/or files (alerts) under a shard lease. A
    /// stale epoch or another holder is refused with a Conflict.
    pub async fn commit_shard(
        &self,
        commit: &ShardCommit,
        batch: Option<&CommitBatch>,
    ) -> Result<CommitOutcome, CatalogError> {
        let req = cc::shard_commit_to_pb(commit, batch);
        let resp = self
            .call("CommitShard", |mut c| {
                let req = req.clone();
                async move { c.commit_shard(req).await }
            })
            .await?;
        Ok(CommitOutcome {
            sequences: resp.sequences,
            already_committed: resp.already_committed,
        })
    }

    /// The cluster as the leader sees it.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, CatalogError> {
        self.cluster_status_of(false).await
    }

    /// [`ControlClient::cluster_status`] with what each tenant stores
    /// (`usage`, a walk over the catalog: for the tenant commands and API).
    pub async fn cluster_status_with_usage(&self) -> Result<ClusterStatus, CatalogError> {
        self.cluster_status_of(true).await
    }

    async fn cluster_status_of(&self, include_usage: bool) -> Result<ClusterStatus, CatalogError> {
        let resp = self
            .call("ClusterStatus", |mut c| async move {
                c.cluster_status(pb::ClusterStatusRequest { include_usage })
                    .await
            })
            .await?;
        cluster_status_from_pb(resp)
    }
}

/// A cluster status to protobuf.
pub fn cluster_status_to_pb(s: &ClusterStatus) -> pb::ClusterStatusReply {
    pb::ClusterStatusReply {
        leader_id: s.leader_id,
        term: s.term,
        commit_index: s.commit_index,
        last_log_index: s.last_log_index,
        coordinators: s
            .coordinators
            .iter()
            .map(|c| pb::CoordinatorReplica {
                node_id: c.node_id,
                url: c.url.clone(),
                voter: c.voter,
                matched_index: c.matched_index,
                lag: c.lag,
            })
            .collect(),
        members: s
            .members
            .iter()
            .map(|m| pb::MemberStatus {
                info: Some(cc::member_info_to_pb(&m.member.info)),
                alive: m.member.alive,
                incarnation: m.member.incarnation,
                registered_at_micros: m.member.registered_at_micros,
                last_heartbeat_ms: m.last_heartbeat_ms,
                shards: m.shards,
            })
            .collect(),
        shards: s.shards.iter().map(cc::shard_to_pb).collect(),
        tenants: s.tenants.iter().map(cc::tenant_to_pb).collect(),
        usage: s
            .usage
            .iter()
            .map(crate::catalog_client::convert::tenant_totals_to_pb)
            .collect(),
    }
}

/// A cluster status from protobuf.
pub fn cluster_status_from_pb(s: pb::ClusterStatusReply) -> Result<ClusterStatus, CatalogError> {
    Ok(ClusterStatus {
        leader_id: s.leader_id,
        term: s.term,
        commit_index: s.commit_index,
        last_log_index: s.last_log_index,
        coordinators: s
            .coordinators
            .into_iter()
            .map(|c| CoordinatorReplica {
                node_id: c.node_id,
                url: c.url,
                voter: c.voter,
                matched_index: c.matched_index,
                lag: c.lag,
            })
            .collect(),
        members: s
            .members
            .into_iter()
            .map(|m| {
                let info = m.info.ok_or_else(|| CatalogError::Invalid {
                    reason: "member status without its member".into(),
                })?;
                Ok(MemberStatus {
                    member: Member {
                        info: cc::member_info_from_pb(info)?,
                        alive: m.alive,
                        incarnation: m.incarnation,
                        registered_at_micros: m.registered_at_micros,
                    },
                    last_heartbeat_ms: m.last_heartbeat_ms,
                    shards: m.shards,
                })
            })
            .collect::<Result<_, CatalogError>>()?,
        shards: s
            .shards
            .into_iter()
            .map(cc::shard_from_pb)
            .collect::<Result<_, _>>()?,
        tenants: s
            .tenants
            .into_iter()
            .map(cc::tenant_from_pb)
            .collect::<Result<_, _>>()?,
        usage: s
            .usage
            .into_iter()
            .map(crate::catalog_client::convert::tenant_totals_from_pb)
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triage_history_is_never_kept_shorter_than_alerts() {
        let mut t = TenantRecord::new(TenantId::new("acme").expect("tenant"));
        t.table_retention_days.insert("alerts".into(), 365);
        t.table_retention_days.insert("alert_updates".into(), 30);
        let problem = t.retention_problem().expect("shorter");
        assert!(
            problem.contains("at least as long as the alerts"),
            "{problem}"
        );
        t.table_retention_days.remove("alerts");
        let problem = t.retention_problem().expect("alerts kept forever");
        assert!(problem.contains("alerts forever"), "{problem}");
        t.table_retention_days.insert("alerts".into(), 30);
        assert_eq!(t.retention_problem(), None);
        t.table_retention_days.insert("alert_updates".into(), 400);
        assert_eq!(t.retention_problem(), None);
        t.table_retention_days.remove("alert_updates");
        assert_eq!(t.retention_problem(), None, "unset: follows alerts");
    }

    #[test]
    fn tokens_are_random_hashed_and_recognizable() {
        let t = TenantId::new("acme").expect("tenant");
        let a = generate_token(vec![t.clone()], TokenRole::Analyst, "a".into()).expect("a");
        let b = generate_token(vec![t], TokenRole::Analyst, "b".into()).expect("b");
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with(TOKEN_PREFIX));
        assert_eq!(token_id_of(&a.token), Some(a.record.token_id.as_str()));
        assert_eq!(token_hash(&a.token), a.record.secret_sha256);
        assert!(!a.record.secret_sha256.contains(&a.token[22..]));
        assert_eq!(token_id_of("spoor_short_x"), None);
        assert_eq!(token_id_of("bearer abc"), None);
        let err = generate_token(vec![], TokenRole::Ingest, String::new()).expect_err("no tenant");
        assert!(err.to_string().contains("at least one tenant"), "{err}");
        assert!(generate_token(vec![], TokenRole::Admin, String::new()).is_ok());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }

    #[test]
    fn roles_round_trip_by_name() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Some(r));
        }
        assert_eq!(Role::parse("king"), None);
    }
}
