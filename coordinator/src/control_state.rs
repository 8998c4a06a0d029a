//! The control plane's replicated state (members, tenants, tokens, rule
//! sets, shards with leases and checkpoints) and the one implementation of
//! its rules. Every change is a deterministic function of the state and the
//! entry, so every replica applies it identically; decisions that need a
//! clock (is a member dead?) are taken by the leader on its monotonic clock
//! and arrive here as entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spoor_common::TenantId;
use spoor_common::catalog::CatalogError;
use spoor_common::control::{
    MAX_RULE_SET_BYTES, Member, MemberInfo, Role, RuleSet, Shard, ShardCheckpoint, ShardCommit,
    ShardId, ShardLease, TenantRecord, TokenRecord, TokenRole, constant_time_eq,
    rule_set_enabled_by_default, token_hash, token_id_of,
};
use spoor_common::schema::Table;

/// Most key buckets one rule group may be split into.
pub const MAX_BUCKETS: u32 = 1024;

/// A change to the control state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlOp {
    /// A member registers (first heartbeat, changed address, or back from dead).
    Register(MemberInfo),
    /// The leader heard nothing from a member for the member timeout. Applies
    /// only to the registration it was decided against.
    Expire {
        /// The member.
        node_id: u64,
        /// The registration the leader saw.
        incarnation: u64,
    },
    /// Creates or updates a tenant.
    PutTenant(TenantRecord),
    /// Creates or updates a tenant whose current record is the one the
    /// writer read: a writer never overwrites a change it did not read.
    PutTenantOver {
        /// The new record.
        record: TenantRecord,
        /// The fingerprint of the record read (`TenantRecord::fingerprint`);
        /// empty: only if the tenant is not registered.
        read: String,
    },
    /// Stores a token (hash only).
    CreateToken(TokenRecord),
    /// Revokes a token.
    RevokeToken {
        /// Its id.
        token_id: String,
    },
    /// Stores a new version of a rule set.
    PutRuleSet {
        /// Owning tenant.
        tenant: TenantId,
        /// Rule set name.
        name: String,
        /// The rules.
        content: String,
        /// Whether workers run it (entries written before enablement
        /// existed are enabled).
        #[serde(default = "rule_set_enabled_by_default")]
        enabled: bool,
        /// The version the writer edited (0: new).
        expected_version: u64,
    },
    /// Defines (or grows) a rule group's shards.
    DefineShards {
        /// Tenant.
        tenant: TenantId,
        /// Rule group.
        rule_group: String,
        /// Key buckets.
        buckets: u32,
    },
    /// The scheduler's lease moves: each shard to a worker, or to nobody.
    Assign(Vec<(ShardId, Option<u64>)>),
}

/// What a control change did.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ControlOutcome {
    /// Nothing changed: the same change was applied before (a retry).
    pub already_applied: bool,
    /// The rule set stored, for `PutRuleSet`.
    pub rule_set: Option<RuleSet>,
}

/// The replicated control state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    members: BTreeMap<u64, Member>,
    tenants: BTreeMap<String, TenantRecord>,
    tokens: BTreeMap<String, TokenRecord>,
    /// "tenant/name" → rule set.
    rule_sets: BTreeMap<String, RuleSet>,
    /// shard id as "tenant/group/bucket" → shard (JSON maps need string keys).
    shards: BTreeMap<String, Shard>,
}

fn invalid<T>(reason: String) -> Result<T, CatalogError> {
    Err(CatalogError::Invalid { reason })
}

fn conflict<T>(reason: String) -> Result<T, CatalogError> {
    Err(CatalogError::Conflict { reason })
}

fn done(already_applied: bool) -> Result<ControlOutcome, CatalogError> {
    Ok(ControlOutcome {
        already_applied,
        rule_set: None,
    })
}

impl ControlState {
    /// Applies a change at `now_micros` (stamped by the proposer). On error
    /// nothing changes.
    pub fn apply(
        &mut self,
        op: &ControlOp,
        now_micros: i64,
    ) -> Result<ControlOutcome, CatalogError> {
        match op {
            ControlOp::Register(info) => self.register(info, now_micros),
            ControlOp::Expire {
                node_id,
                incarnation,
            } => {
                let Some(m) = self.members.get_mut(node_id) else {
                    return done(true);
                };
                if m.incarnation != *incarnation || !m.alive {
                    return done(true);
                }
                m.alive = false;
                // A dead worker's leases end now; the scheduler hands them on.
                for shard in self.shards.values_mut() {
                    if shard.holder == Some(*node_id) {
                        shard.holder = None;
                        shard.epoch += 1;
                    }
                }
                done(false)
            }
            ControlOp::PutTenant(t) => self.put_tenant(t, None, now_micros),
            ControlOp::PutTenantOver { record, read } => {
                self.put_tenant(record, Some(read), now_micros)
            }
            ControlOp::CreateToken(t) => self.create_token(t),
            ControlOp::RevokeToken { token_id } => match self.tokens.get_mut(token_id) {
                None => invalid(format!("no token with id {token_id}")),
                Some(t) if t.revoked => done(true),
                Some(t) => {
                    t.revoked = true;
                    done(false)
                }
            },
            ControlOp::PutRuleSet {
                tenant,
                name,
                content,
                enabled,
                expected_version,
            } => self.put_rule_set(
                tenant,
                name,
                content,
                *enabled,
                *expected_version,
                now_micros,
            ),
            ControlOp::DefineShards {
                tenant,
                rule_group,
                buckets,
            } => {
                if rule_group.is_empty() || rule_group.contains('/') {
                    return invalid(format!(
                        "rule_group {rule_group:?} must be non-empty and without '/'"
                    ));
                }
                if *buckets == 0 || *buckets > MAX_BUCKETS {
                    return invalid(format!("buckets must be 1..={MAX_BUCKETS}, not {buckets}"));
                }
                let mut added = false;
                for bucket in 0..*buckets {
                    let id = ShardId {
                        tenant: tenant.to_string(),
                        rule_group: rule_group.clone(),
                        bucket,
                    };
                    self.shards.entry(id.to_string()).or_insert_with(|| {
                        added = true;
                        Shard {
                            id,
                            holder: None,
                            epoch: 0,
                            checkpoint: None,
                        }
                    });
                }
                done(!added)
            }
            ControlOp::Assign(moves) => {
                for (id, to) in moves {
                    if !self.shards.contains_key(&id.to_string()) {
                        return invalid(format!("no shard {id}"));
                    }
                    if let Some(w) = to
                        && !self.is_live_worker(*w)
                    {
                        return conflict(format!(
                            "shard {id} cannot go to node {w}: not a live worker"
                        ));
                    }
                }
                let mut changed = false;
                for (id, to) in moves {
                    if let Some(shard) = self.shards.get_mut(&id.to_string())
                        && shard.holder != *to
                    {
                        shard.holder = *to;
                        shard.epoch += 1;
                        changed = true;
                    }
                }
                done(!changed)
            }
        }
    }

    fn register(
        &mut self,
        info: &MemberInfo,
        now_micros: i64,
    ) -> Result<ControlOutcome, CatalogError> {
        if let Some(m) = self.members.get_mut(&info.node_id) {
            if m.alive && m.info.role != info.role {
                return conflict(format!(
                    "node id {} is already registered as a live {} at {}; node.id must be unique in the cluster",
                    info.node_id, m.info.role, m.info.http_addr
                ));
            }
            if m.alive && m.info == *info {
                return done(true);
            }
            m.info = info.clone();
            m.alive = true;
            m.incarnation += 1;
            m.registered_at_micros = now_micros;
            return done(false);
        }
        self.members.insert(
            info.node_id,
            Member {
                info: info.clone(),
                alive: true,
                incarnation: 1,
                registered_at_micros: now_micros,
            },
        );
        done(false)
    }

    /// Stores a tenant (checked), keeping the coordinator's registration
    /// time; with `read` (the fingerprint of what the writer read; empty:
    /// nothing), only if the tenant is still that.
    fn put_tenant(
        &mut self,
        t: &TenantRecord,
        read: Option<&str>,
        now_micros: i64,
    ) -> Result<ControlOutcome, CatalogError> {
        if t.display_name.len() > 200 {
            return invalid(format!(
                "tenant {}: display_name is longer than 200 bytes",
                t.id
            ));
        }
        if t.id.as_str() == TenantId::CLUSTER {
            return invalid(format!(
                "tenant id {} is reserved for the cluster's own records (the audit trail)",
                t.id
            ));
        }
        if let Some(table) = t
            .table_retention_days
            .keys()
            .find(|k| !Table::ALL.iter().any(|table| table.name() == k.as_str()))
        {
            return invalid(format!(
                "tenant {}: table_retention_days names {table:?}, not a table (one of {})",
                t.id,
                Table::ALL.map(Table::name).join(", ")
            ));
        }
        let current = self.tenants.get(t.id.as_str());
        let mut stored = t.clone();
        // Registration time is the coordinator's, and stays.
        stored.created_at_micros = current.map_or(now_micros, |old| old.created_at_micros);
        // The same content again (a retried put) changes nothing.
        if current == Some(&stored) {
            return done(true);
        }
        if let Some(read) = read {
            let now = current.map(TenantRecord::fingerprint).unwrap_or_default();
            if now != read {
                return conflict(match (current, read.is_empty()) {
                    (Some(_), true) => format!("tenant {} is already registered", t.id),
                    (None, _) => format!("tenant {} is not registered (any more)", t.id),
                    (Some(_), false) => format!(
                        "tenant {} changed since it was read: read it again and reapply the change",
                        t.id
                    ),
                });
            }
        }
        self.tenants.insert(t.id.to_string(), stored);
        done(false)
    }

    fn create_token(&mut self, t: &TokenRecord) -> Result<ControlOutcome, CatalogError> {
        if t.token_id.len() != 16 || !t.token_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return invalid(format!("token_id {:?} is not 16 hex digits", t.token_id));
        }
        if t.secret_sha256.len() != 64 || !t.secret_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return invalid("secret_sha256 is not a hex SHA-256".into());
        }
        if t.tenants.is_empty() && t.role != TokenRole::Admin {
            return invalid(format!(
                "{} token needs at least one tenant",
                spoor_common::auth::with_article(t.role.name())
            ));
        }
        if t.revoked {
            return invalid("a new token cannot be revoked already".into());
        }
        match self.tokens.get(&t.token_id) {
            Some(existing) if existing == t => done(true),
            Some(_) => conflict(format!("token id {} is taken", t.token_id)),
            None => {
                self.tokens.insert(t.token_id.clone(), t.clone());
                done(false)
            }
        }
    }

    fn put_rule_set(
        &mut self,
        tenant: &TenantId,
        name: &str,
        content: &str,
        enabled: bool,
        expected_version: u64,
        now_micros: i64,
    ) -> Result<ControlOutcome, CatalogError> {
        if name.is_empty() || name.len() > 200 || name.contains('/') {
            return invalid(format!(
                "rule set name {name:?} must be 1..=200 bytes without '/'"
            ));
        }
        if content.len() > MAX_RULE_SET_BYTES {
            return invalid(format!(
                "rule set {name} is {} bytes, more than the {MAX_RULE_SET_BYTES} allowed",
                content.len()
            ));
        }
        let key = format!("{tenant}/{name}");
        let current = self.rule_sets.get(&key);
        let current_version = current.map_or(0, |r| r.version);
        if let Some(r) = current
            && r.version == expected_version + 1
            && r.content == content
            && r.enabled == enabled
        {
            // The same edit, retried after it landed.
            return Ok(ControlOutcome {
                already_applied: true,
                rule_set: Some(r.clone()),
            });
        }
        if current_version != expected_version {
            return conflict(format!(
                "rule set {name} of tenant {tenant} is at version {current_version}, not {expected_version}: someone else changed it; reload and edit again"
            ));
        }
        let stored = RuleSet {
            tenant: tenant.clone(),
            name: name.to_string(),
            version: current_version + 1,
            content: content.to_string(),
            updated_at_micros: now_micros,
            enabled,
        };
        self.rule_sets.insert(key, stored.clone());
        Ok(ControlOutcome {
            already_applied: false,
            rule_set: Some(stored),
        })
    }

    /// Checks a commit under a lease without changing anything: the worker
    /// must hold the shard at that epoch, and a checkpoint must not move back.
    pub fn check_shard_commit(&self, c: &ShardCommit) -> Result<(), CatalogError> {
        let Some(shard) = self.shards.get(&c.shard.to_string()) else {
            return invalid(format!("no shard {}", c.shard));
        };
        if shard.holder != Some(c.worker) || shard.epoch != c.epoch {
            return conflict(format!(
                "stale lease: worker {} presented epoch {} for shard {}, which is now at epoch {} held by {}",
                c.worker,
                c.epoch,
                c.shard,
                shard.epoch,
                shard
                    .holder
                    .map_or_else(|| "nobody".to_string(), |h| format!("worker {h}"))
            ));
        }
        if let (Some(new), Some(old)) = (&c.checkpoint, &shard.checkpoint)
            && new.catalog_sequence < old.catalog_sequence
        {
            return conflict(format!(
                "checkpoint of shard {} would move back from sequence {} to {}",
                c.shard, old.catalog_sequence, new.catalog_sequence
            ));
        }
        Ok(())
    }

    /// Stores the checkpoint of a commit that passed [`Self::check_shard_commit`].
    /// Returns whether it was already stored.
    pub fn store_shard_checkpoint(&mut self, c: &ShardCommit) -> bool {
        let Some(shard) = self.shards.get_mut(&c.shard.to_string()) else {
            return true;
        };
        match &c.checkpoint {
            Some(cp) if shard.checkpoint.as_ref() != Some(cp) => {
                shard.checkpoint = Some(cp.clone());
                false
            }
            _ => true,
        }
    }

    /// Gives the shards of a rule group that have never been checkpointed
    /// their starting point: `head`, the tenant's catalog sequence when the
    /// shards were defined. A new rule set thus evaluates the events
    /// committed after it was applied (history is a retro-hunt's job), and
    /// the start is in the Raft log, so every owner of the shard agrees on it.
    pub fn start_new_shards_at(&mut self, tenant: &TenantId, rule_group: &str, head: u64) {
        for shard in self.shards.values_mut() {
            if shard.id.tenant == tenant.as_str()
                && shard.id.rule_group == rule_group
                && shard.checkpoint.is_none()
            {
                shard.checkpoint = Some(ShardCheckpoint {
                    catalog_sequence: head,
                    state_key: String::new(),
                    watermark_micros: 0,
                    delivered_sequence: None,
                });
            }
        }
    }

    /// Whether `node_id` is a registered, live worker (or standalone node,
    /// which runs correlation itself).
    pub fn is_live_worker(&self, node_id: u64) -> bool {
        self.members
            .get(&node_id)
            .is_some_and(|m| m.alive && matches!(m.info.role, Role::Worker | Role::Standalone))
    }

    /// Registered members.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// A member.
    pub fn member(&self, node_id: u64) -> Option<&Member> {
        self.members.get(&node_id)
    }

    /// Tenants.
    pub fn tenants(&self) -> Vec<TenantRecord> {
        self.tenants.values().cloned().collect()
    }

    /// Every shard, in id order.
    pub fn shards(&self) -> Vec<Shard> {
        self.shards.values().cloned().collect()
    }

    /// The leases a worker holds.
    pub fn leases_of(&self, worker: u64) -> Vec<ShardLease> {
        self.shards
            .values()
            .filter(|s| s.holder == Some(worker))
            .map(|s| ShardLease {
                shard: s.id.clone(),
                epoch: s.epoch,
                checkpoint: s.checkpoint.clone(),
            })
            .collect()
    }

    /// A tenant's rule sets.
    pub fn rule_sets(&self, tenant: &TenantId) -> Vec<RuleSet> {
        let prefix = format!("{tenant}/");
        self.rule_sets
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The record of a valid, unrevoked token; an error naming why not otherwise.
    pub fn authenticate(&self, token: &str) -> Result<TokenRecord, CatalogError> {
        let refused = |why: &str| CatalogError::Conflict {
            reason: format!("token refused: {why}"),
        };
        let id = token_id_of(token).ok_or_else(|| refused("not a spoor token"))?;
        let record = self
            .tokens
            .get(id)
            .ok_or_else(|| refused("unknown token"))?;
        if !constant_time_eq(&token_hash(token), &record.secret_sha256) {
            return Err(refused("unknown token"));
        }
        if record.revoked {
            return Err(refused("revoked"));
        }
        let mut record = record.clone();
        if !record.tenants.is_empty() {
            // A disabled tenant's tokens reach nothing of it; a token of
            // several tenants keeps the others.
            let named = record.tenants.len();
            record
                .tenants
                .retain(|t| self.tenants.get(t.as_str()).is_none_or(|t| !t.disabled));
            if record.tenants.is_empty() {
                return Err(refused(if named == 1 {
                    "its tenant is disabled"
                } else {
                    "every tenant it names is disabled"
                }));
            }
        }
        Ok(record)
    }

    /// Every token record (hashes only), in id order.
    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.tokens.values().cloned().collect()
    }

    /// How many tenants, tokens, rule sets, shards and members it holds.
    pub fn counts(&self) -> ControlCounts {
        ControlCounts {
            tenants: self.tenants.len() as u64,
            tokens: self.tokens.len() as u64,
            rule_sets: self.rule_sets.len() as u64,
            shards: self.shards.len() as u64,
            members: self.members.len() as u64,
        }
    }

    /// What it holds besides member registrations, for a refusal to
    /// overwrite it ("1 tenants, 2 tokens"); `None` when nothing.
    pub fn contents(&self) -> Option<String> {
        let c = self.counts();
        let parts: Vec<String> = [
            (c.tenants, "tenants"),
            (c.tokens, "tokens"),
            (c.rule_sets, "rule sets"),
            (c.shards, "shards"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// The state a restore puts in place: `backup`'s tenants, tokens, rule
    /// sets and shards with their checkpoints, but the member registrations
    /// of the group restored into (`here`): the backup's members are nodes
    /// of another place, which a new leader would count as live for a
    /// whole member timeout and hand shards to. Every shard a backup's
    /// worker held is released and its epoch bumped, as when its holder
    /// dies: the scheduler hands it to a live worker of this group, which
    /// resumes from the shard's checkpoint, and a commit under the old
    /// lease is refused.
    pub fn restored(backup: &ControlState, here: &ControlState) -> (ControlState, RestoreEffects) {
        let mut state = backup.clone();
        let effects = RestoreEffects {
            members_dropped: state.members.len() as u64,
            leases_released: state.shards.values().filter(|s| s.holder.is_some()).count() as u64,
        };
        state.members = here.members.clone();
        for shard in state.shards.values_mut() {
            if shard.holder.take().is_some() {
                shard.epoch += 1;
            }
        }
        (state, effects)
    }
}

/// Sizes of a control state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlCounts {
    /// Tenant records.
    pub tenants: u64,
    /// Token records (revoked ones too).
    pub tokens: u64,
    /// Rule sets (their latest versions).
    pub rule_sets: u64,
    /// Shards.
    pub shards: u64,
    /// Member registrations.
    pub members: u64,
}

/// What a restore left out of the backup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreEffects {
    /// The backup's member registrations, not restored.
    pub members_dropped: u64,
    /// Shard leases the backup's workers held, released.
    pub leases_released: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use spoor_common::control::generate_token;

    fn member(id: u64, role: Role) -> MemberInfo {
        MemberInfo {
            node_id: id,
            role,
            http_addr: format!("10.0.0.{id}:7080"),
            grpc_addr: String::new(),
            version: "test".into(),
        }
    }

    fn acme() -> TenantId {
        TenantId::new("acme").expect("tenant")
    }

    fn shard(bucket: u32) -> ShardId {
        ShardId {
            tenant: "acme".into(),
            rule_group: "windows".into(),
            bucket,
        }
    }

    fn apply(s: &mut ControlState, op: ControlOp) -> ControlOutcome {
        s.apply(&op, 7).expect("apply")
    }

    #[test]
    fn a_tenant_is_stored_only_over_the_record_its_writer_read() {
        let mut s = ControlState::default();
        let put = |record: &TenantRecord, read: &str| ControlOp::PutTenantOver {
            record: record.clone(),
            read: read.to_string(),
        };
        let mut t = TenantRecord::new(acme());
        assert!(!apply(&mut s, put(&t, "")).already_applied);
        // A second create of the same id is refused, not merged.
        t.region = "eu-west".into();
        let err = s.apply(&put(&t, ""), 7).expect_err("taken");
        assert!(err.to_string().contains("already registered"), "{err}");

        // Two writers read the same record: one sets a legal hold, the
        // other, on its stale copy, changes the region; the stale write is
        // refused and the hold stays.
        let read = s.tenants()[0].clone();
        let mut held = read.clone();
        held.legal_hold = true;
        assert!(!apply(&mut s, put(&held, &read.fingerprint())).already_applied);
        let mut stale = read.clone();
        stale.region = "eu-west".into();
        let err = s
            .apply(&put(&stale, &read.fingerprint()), 7)
            .expect_err("stale");
        assert!(
            err.to_string().contains("changed since it was read"),
            "{err}"
        );
        assert!(s.tenants()[0].legal_hold);
        // A retried put of what was stored is no conflict and no change.
        assert!(apply(&mut s, put(&held, &read.fingerprint())).already_applied);
        // Reapplied over what is there now, the region lands beside the hold.
        let now = s.tenants()[0].clone();
        let mut both = now.clone();
        both.region = "eu-west".into();
        assert!(!apply(&mut s, put(&both, &now.fingerprint())).already_applied);
        assert!(s.tenants()[0].legal_hold && s.tenants()[0].region == "eu-west");
        // Unconditional puts (log entries of before this check) still apply.
        t.region = "us-east".into();
        assert!(!apply(&mut s, ControlOp::PutTenant(t)).already_applied);
        assert_eq!(s.tenants()[0].region, "us-east");
    }

    #[test]
    fn members_register_expire_and_come_back() {
        let mut s = ControlState::default();
        assert!(!apply(&mut s, ControlOp::Register(member(5, Role::Worker))).already_applied);
        assert!(apply(&mut s, ControlOp::Register(member(5, Role::Worker))).already_applied);
        let err = s
            .apply(&ControlOp::Register(member(5, Role::Ingest)), 7)
            .expect_err("same id, other role");
        assert!(err.to_string().contains("node.id must be unique"), "{err}");
        // An expiry decided against an older registration is ignored.
        assert!(
            apply(
                &mut s,
                ControlOp::Expire {
                    node_id: 5,
                    incarnation: 0
                }
            )
            .already_applied
        );
        assert!(s.member(5).expect("m").alive);
        apply(
            &mut s,
            ControlOp::Expire {
                node_id: 5,
                incarnation: 1,
            },
        );
        assert!(!s.member(5).expect("m").alive);
        apply(&mut s, ControlOp::Register(member(5, Role::Worker)));
        let m = s.member(5).expect("m");
        assert!(m.alive);
        assert_eq!(m.incarnation, 2);
    }

    #[test]
    fn stale_epochs_are_fenced() {
        let mut s = ControlState::default();
        apply(&mut s, ControlOp::Register(member(1, Role::Worker)));
        apply(&mut s, ControlOp::Register(member(2, Role::Worker)));
        apply(
            &mut s,
            ControlOp::DefineShards {
                tenant: acme(),
                rule_group: "windows".into(),
                buckets: 2,
            },
        );
        apply(&mut s, ControlOp::Assign(vec![(shard(0), Some(1))]));
        let lease = s.leases_of(1).remove(0);
        let commit = |worker, epoch, seq| ShardCommit {
            shard: shard(0),
            worker,
            epoch,
            checkpoint: Some(ShardCheckpoint {
                catalog_sequence: seq,
                state_key: String::new(),
                watermark_micros: 0,
                delivered_sequence: Some(seq),
            }),
        };
        s.check_shard_commit(&commit(1, lease.epoch, 10))
            .expect("holder");
        assert!(!s.store_shard_checkpoint(&commit(1, lease.epoch, 10)));
        // The lease moves; the old holder's commit is now stale.
        apply(&mut s, ControlOp::Assign(vec![(shard(0), Some(2))]));
        let err = s
            .check_shard_commit(&commit(1, lease.epoch, 11))
            .expect_err("stale");
        assert!(err.to_string().contains("stale lease"), "{err}");
        let new = s.leases_of(2).remove(0);
        assert_eq!(new.epoch, lease.epoch + 1);
        assert_eq!(
            new.checkpoint.as_ref().map(|c| c.catalog_sequence),
            Some(10)
        );
        assert_eq!(
            new.checkpoint.and_then(|c| c.delivered_sequence),
            Some(10),
            "the sinks' delivered sequence moves with the lease"
        );
        let err = s
            .check_shard_commit(&commit(2, new.epoch, 9))
            .expect_err("backwards");
        assert!(err.to_string().contains("move back"), "{err}");
        // A dead holder loses its leases at once.
        apply(
            &mut s,
            ControlOp::Expire {
                node_id: 2,
                incarnation: 1,
            },
        );
        assert!(s.leases_of(2).is_empty());
        assert!(s.check_shard_commit(&commit(2, new.epoch, 12)).is_err());
        // Nothing is assigned to a dead or non-worker node.
        apply(&mut s, ControlOp::Register(member(3, Role::Query)));
        for to in [2, 3] {
            assert!(
                s.apply(&ControlOp::Assign(vec![(shard(1), Some(to))]), 7)
                    .is_err()
            );
        }
    }

    #[test]
    fn new_shards_start_at_the_catalog_head_and_keep_their_checkpoints() {
        let mut s = ControlState::default();
        let define = |buckets| ControlOp::DefineShards {
            tenant: acme(),
            rule_group: "windows".into(),
            buckets,
        };
        apply(&mut s, define(1));
        s.start_new_shards_at(&acme(), "windows", 40);
        let at = |s: &ControlState| -> Vec<Option<u64>> {
            s.shards()
                .iter()
                .map(|sh| sh.checkpoint.as_ref().map(|c| c.catalog_sequence))
                .collect()
        };
        assert_eq!(at(&s), vec![Some(40)]);
        // Growing the group: the new bucket starts at the new head, the old
        // one keeps its place.
        apply(&mut s, define(2));
        s.start_new_shards_at(&acme(), "windows", 55);
        assert_eq!(at(&s), vec![Some(40), Some(55)]);
        s.start_new_shards_at(&TenantId::new("other").expect("t"), "windows", 99);
        assert_eq!(at(&s), vec![Some(40), Some(55)]);
    }

    #[test]
    fn tokens_authenticate_by_hash_until_revoked() {
        let mut s = ControlState::default();
        let t = generate_token(vec![acme()], TokenRole::Analyst, "hunter".into()).expect("token");
        apply(&mut s, ControlOp::CreateToken(t.record.clone()));
        assert!(apply(&mut s, ControlOp::CreateToken(t.record.clone())).already_applied);
        let json = serde_json::to_string(&s).expect("json");
        assert!(!json.contains(&t.token), "the secret is never stored");
        assert_eq!(s.authenticate(&t.token).expect("ok").tenants, vec![acme()]);
        let mut forged = t.token.clone();
        forged.pop();
        forged.push(if t.token.ends_with('0') { '1' } else { '0' });
        assert!(s.authenticate(&forged).is_err());
        apply(
            &mut s,
            ControlOp::RevokeToken {
                token_id: t.record.token_id.clone(),
            },
        );
        let err = s.authenticate(&t.token).expect_err("revoked");
        assert!(err.to_string().contains("revoked"), "{err}");
    }

    #[test]
    fn rule_sets_are_versioned_and_retries_are_harmless() {
        let mut s = ControlState::default();
        let put = |expected: u64, content: &str| ControlOp::PutRuleSet {
            tenant: acme(),
            name: "windows".into(),
            content: content.into(),
            enabled: true,
            expected_version: expected,
        };
        let v1 = apply(&mut s, put(0, "a")).rule_set.expect("v1");
        assert_eq!(v1.version, 1);
        assert!(apply(&mut s, put(0, "a")).already_applied, "retry");
        let err = s.apply(&put(0, "b"), 7).expect_err("lost update");
        assert!(err.to_string().contains("at version 1, not 0"), "{err}");
        assert_eq!(apply(&mut s, put(1, "b")).rule_set.expect("v2").version, 2);
        assert_eq!(s.rule_sets(&acme()).len(), 1);
        assert!(s.rule_sets(&TenantId::new("acm").expect("t")).is_empty());
    }

    #[test]
    fn disabling_a_rule_set_keeps_it_and_is_a_new_version() {
        let mut s = ControlState::default();
        let put = |expected: u64, content: &str, enabled: bool| ControlOp::PutRuleSet {
            tenant: acme(),
            name: "windows".into(),
            content: content.into(),
            enabled,
            expected_version: expected,
        };
        let v1 = apply(&mut s, put(0, "a", true)).rule_set.expect("v1");
        assert!(v1.enabled);
        let v2 = apply(&mut s, put(1, "a", false)).rule_set.expect("v2");
        assert_eq!(
            (v2.version, v2.enabled, v2.content.as_str()),
            (2, false, "a")
        );
        assert_eq!(s.rule_sets(&acme()), vec![v2.clone()], "kept, disabled");
        // A retry of the same change is harmless; the same content with the
        // other enablement at a stale version is a conflict, not a retry.
        assert!(apply(&mut s, put(1, "a", false)).already_applied);
        let err = s.apply(&put(1, "a", true), 7).expect_err("stale");
        assert!(err.to_string().contains("at version 2, not 1"), "{err}");
        let v3 = apply(&mut s, put(2, "a", true)).rule_set.expect("v3");
        assert_eq!((v3.version, v3.enabled), (3, true));
    }

    #[test]
    fn rule_sets_stored_before_enablement_load_enabled() {
        let mut s = ControlState::default();
        apply(
            &mut s,
            ControlOp::PutRuleSet {
                tenant: acme(),
                name: "windows".into(),
                content: "a".into(),
                enabled: false,
                expected_version: 0,
            },
        );
        // A snapshot and a log entry as the previous release wrote them:
        // no `enabled` anywhere.
        let mut snapshot = serde_json::to_value(&s).expect("json");
        let stored = &mut snapshot["rule_sets"]["acme/windows"];
        assert_eq!(stored["enabled"], serde_json::json!(false));
        stored
            .as_object_mut()
            .expect("a rule set object")
            .remove("enabled");
        let old: ControlState = serde_json::from_value(snapshot).expect("old snapshot");
        assert!(old.rule_sets(&acme())[0].enabled);

        let entry = serde_json::json!({"PutRuleSet": {
            "tenant": "acme", "name": "linux", "content": "b", "expected_version": 0
        }});
        let op: ControlOp = serde_json::from_value(entry).expect("old log entry");
        let mut s = ControlState::default();
        let stored = apply(&mut s, op).rule_set.expect("stored");
        assert!(stored.enabled);
    }
}
