//! Who may see what, and what was asked: a query's scope (its tenants and
//! token), the queries running now (so they can be cancelled), and the
//! audit history of finished ones.
//!
//! Every query, whatever the interface, is written to the log target
//! `spoor::query_audit` when it ends (tenants, token id, text, duration,
//! bytes scanned, rows, outcome) and kept in a bounded in-memory history
//! that `GET /v1/queries` serves: analysts see the queries of their own
//! tenants, as do admin tokens naming tenants; the cluster's admin (an
//! admin token naming no tenant) sees all. The history is per query node
//! and starts empty at restart; the log lines are the durable record.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use spoor_common::audit::{AuditLog, AuditRecord};
use spoor_common::control::{TenantQuotas, TokenRole};
use spoor_common::tenant::TenantId;
use tokio_util::sync::CancellationToken;

/// Whose data a query may read, and on whose behalf it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    tenants: Vec<TenantId>,
    token_id: Option<String>,
    admin: bool,
    /// The token's role; `None` without tokens (`query.auth = "none"`,
    /// where the caller may do everything with the default tenant).
    role: Option<TokenRole>,
    /// The query quotas of its tenants that have any.
    quotas: BTreeMap<TenantId, TenantQuotas>,
}

impl Scope {
    /// One tenant, without a token (`query.auth = "none"`, tools, tests).
    pub fn single(tenant: TenantId) -> Self {
        Scope {
            tenants: vec![tenant],
            token_id: None,
            admin: false,
            role: None,
            quotas: BTreeMap::new(),
        }
    }

    /// The tenants a token may see. `None` when there are none: a scope
    /// must name at least one tenant.
    pub fn for_token(
        tenants: impl IntoIterator<Item = TenantId>,
        token_id: String,
        admin: bool,
    ) -> Option<Self> {
        let tenants: Vec<TenantId> = tenants
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        (!tenants.is_empty()).then_some(Scope {
            tenants,
            token_id: Some(token_id),
            admin,
            role: None,
            quotas: BTreeMap::new(),
        })
    }

    /// The same scope, for a token of `role`.
    pub fn with_role(mut self, role: TokenRole) -> Self {
        self.role = Some(role);
        self
    }

    /// The same scope with its tenants' quotas.
    pub fn with_quotas(mut self, quotas: BTreeMap<TenantId, TenantQuotas>) -> Self {
        self.quotas = quotas;
        self
    }

    /// Queries `tenant` may run at once on a node, when its quota says.
    pub fn max_concurrent_queries(&self, tenant: &TenantId) -> Option<usize> {
        self.quotas
            .get(tenant)
            .map(|q| q.max_concurrent_queries as usize)
            .filter(|n| *n > 0)
    }

    /// The tenant's scanned-bytes limit, for a scope of one tenant. A
    /// scope of several (an operator, the cluster's admin) has none: bytes
    /// are counted per query, not per tenant, and one customer's limit must
    /// not cut an operator's query over others.
    pub fn max_scanned_bytes(&self) -> Option<(u64, &TenantId)> {
        if self.tenants.len() != 1 {
            return None;
        }
        self.quotas
            .iter()
            .filter(|(_, q)| q.max_query_scanned_bytes > 0)
            .map(|(t, q)| (q.max_query_scanned_bytes, t))
            .min()
    }

    /// The same caller, seeing `tenant` only (one of its own: checked by
    /// the caller of this).
    pub fn narrowed_to(&self, tenant: &TenantId) -> Scope {
        let mut quotas = self.quotas.clone();
        quotas.retain(|t, _| t == tenant);
        Scope {
            tenants: vec![tenant.clone()],
            token_id: self.token_id.clone(),
            admin: self.admin,
            role: self.role,
            quotas,
        }
    }

    /// The token's role, when a token was given.
    pub fn role(&self) -> Option<TokenRole> {
        self.role
    }

    /// The tenants, sorted, never empty.
    pub fn tenants(&self) -> &[TenantId] {
        &self.tenants
    }

    /// The token's public id, when a token was given.
    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }

    /// Whether the caller is the cluster's admin (an admin token naming no
    /// tenant): it sees every query in the history.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether this caller may see (and cancel) a query of `other`: an
    /// admin sees all; anyone else sees queries over their own tenants only.
    pub fn may_see(&self, tenants: &[TenantId]) -> bool {
        self.admin || tenants.iter().all(|t| self.tenants.contains(t))
    }
}

/// Most bytes of a query's text kept in its history record (the audit log
/// line has the same cut): 10,000 records of megabyte-long SQL would
/// otherwise hold gigabytes.
pub const MAX_RECORDED_SQL_BYTES: usize = 16 * 1024;

/// `sql`, cut at [`MAX_RECORDED_SQL_BYTES`] on a character boundary, saying so.
fn recorded_sql(sql: &str) -> String {
    if sql.len() <= MAX_RECORDED_SQL_BYTES {
        return sql.to_string();
    }
    let mut end = MAX_RECORDED_SQL_BYTES;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &sql[..end], sql.len())
}

/// A query's id, unique on this node: `q-<millis>-<counter>`.
pub type QueryId = String;

/// A finished (or still running) query as the history shows it.
#[derive(Debug, Clone, Serialize)]
pub struct QueryRecord {
    /// Its id.
    pub query_id: QueryId,
    /// The tenants it could read.
    pub tenants: Vec<String>,
    /// The token's public id, when one was given.
    pub token_id: Option<String>,
    /// Which interface it came from (`http`, `flight_sql`, `postgres`).
    pub interface: &'static str,
    /// The SQL text.
    pub sql: String,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// How long it ran, milliseconds (so far, while running).
    pub duration_ms: u64,
    /// Rows returned to the caller.
    pub rows: u64,
    /// Bytes read from the lake's Parquet files.
    pub bytes_scanned: u64,
    /// `running`, `ok`, or the error code.
    pub outcome: String,
    /// The error's message, when it failed.
    pub error: Option<String>,
}

struct Running {
    record: QueryRecord,
    tenants: Vec<TenantId>,
    started: std::time::Instant,
    cancel: CancellationToken,
}

/// What a cancellation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The query is told to stop.
    Cancelled,
    /// No running query of that id the caller may see.
    NotFound,
    /// The caller sees it but may cancel only its own queries.
    NotYours,
}

#[derive(Default)]
struct LogState {
    running: HashMap<QueryId, Running>,
    history: VecDeque<(Vec<TenantId>, QueryRecord)>,
}

/// The running queries and the history of finished ones.
pub struct QueryLog {
    state: Mutex<LogState>,
    capacity: usize,
    counter: AtomicU64,
    /// The cluster's audit trail, which every finished query joins.
    audit: AuditLog,
}

impl std::fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLog")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// How a query ended, for [`QueryLog::finish`].
#[derive(Debug, Clone)]
pub struct Finished {
    /// Rows returned.
    pub rows: u64,
    /// Bytes read from Parquet.
    pub bytes_scanned: u64,
    /// `ok` or the error code.
    pub outcome: &'static str,
    /// The error's message.
    pub error: Option<String>,
}

impl QueryLog {
    /// A log keeping the last `capacity` finished queries.
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::with_audit(capacity, AuditLog::default())
    }

    /// A log that also appends every finished query to the cluster's
    /// audit trail.
    pub fn with_audit(capacity: usize, audit: AuditLog) -> Arc<Self> {
        Arc::new(QueryLog {
            state: Mutex::new(LogState::default()),
            capacity,
            counter: AtomicU64::new(0),
            audit,
        })
    }

    /// Registers a query as running; its token cancels it.
    pub fn start(
        &self,
        scope: &Scope,
        interface: &'static str,
        sql: &str,
    ) -> (QueryId, CancellationToken) {
        let now = SystemTime::now();
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_millis();
        let id = format!(
            "q-{millis}-{}",
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let cancel = CancellationToken::new();
        let record = QueryRecord {
            query_id: id.clone(),
            tenants: scope.tenants().iter().map(|t| t.to_string()).collect(),
            token_id: scope.token_id().map(str::to_string),
            interface,
            sql: recorded_sql(sql),
            started_at: chrono::DateTime::<chrono::Utc>::from(now)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            duration_ms: 0,
            rows: 0,
            bytes_scanned: 0,
            outcome: "running".into(),
            error: None,
        };
        if let Ok(mut state) = self.state.lock() {
            state.running.insert(
                id.clone(),
                Running {
                    record,
                    tenants: scope.tenants().to_vec(),
                    started: std::time::Instant::now(),
                    cancel: cancel.clone(),
                },
            );
        }
        (id, cancel)
    }

    /// Moves a query from running to the history and writes its audit line.
    pub fn finish(&self, id: &str, finished: Finished) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let Some(running) = state.running.remove(id) else {
            return;
        };
        let mut record = running.record;
        record.duration_ms =
            u64::try_from(running.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        record.rows = finished.rows;
        record.bytes_scanned = finished.bytes_scanned;
        record.outcome = finished.outcome.to_string();
        record.error = finished.error;
        tracing::info!(
            target: "spoor::query_audit",
            query_id = %record.query_id,
            tenants = %record.tenants.join(","),
            token_id = record.token_id.as_deref().unwrap_or("-"),
            interface = record.interface,
            duration_ms = record.duration_ms,
            rows = record.rows,
            bytes_scanned = record.bytes_scanned,
            outcome = %record.outcome,
            sql = %record.sql,
            "query"
        );
        self.audit.record(AuditRecord {
            outcome: record.outcome.clone(),
            actor: record.token_id.clone(),
            tenants: record.tenants.clone(),
            target: Some(record.query_id.clone()),
            detail: Some(match &record.error {
                Some(e) => format!("{}\n-- {e}", record.sql),
                None => record.sql.clone(),
            }),
            ..AuditRecord::new("query", record.interface)
        });
        if state.history.len() >= self.capacity {
            state.history.pop_front();
        }
        state.history.push_back((running.tenants, record));
    }

    /// Cancels a running query the caller may see: its own (the same
    /// token), or any in its tenants for a tenant-admin or admin token (and
    /// for everyone with `query.auth = "none"`). A viewer's dashboard or an
    /// analyst's hunt is not another user's to stop.
    pub fn cancel(&self, scope: &Scope, id: &str) -> Cancel {
        let Ok(state) = self.state.lock() else {
            return Cancel::NotFound;
        };
        match state.running.get(id) {
            Some(r) if scope.may_see(&r.tenants) => {
                let own =
                    scope.token_id().is_some() && r.record.token_id.as_deref() == scope.token_id();
                let manages = scope
                    .role()
                    .is_none_or(|role| matches!(role, TokenRole::Admin | TokenRole::TenantAdmin));
                if own || manages {
                    r.cancel.cancel();
                    Cancel::Cancelled
                } else {
                    Cancel::NotYours
                }
            }
            _ => Cancel::NotFound,
        }
    }

    /// The running queries and the most recent finished ones the caller may
    /// see, newest first, at most `limit`.
    pub fn visible(&self, scope: &Scope, limit: usize) -> Vec<QueryRecord> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        let mut running: Vec<QueryRecord> = state
            .running
            .values()
            .filter(|r| scope.may_see(&r.tenants))
            .map(|r| {
                let mut record = r.record.clone();
                record.duration_ms =
                    u64::try_from(r.started.elapsed().as_millis()).unwrap_or(u64::MAX);
                record
            })
            .collect();
        running.sort_by(|a, b| b.query_id.cmp(&a.query_id));
        running
            .into_iter()
            .chain(
                state
                    .history
                    .iter()
                    .rev()
                    .filter(|(tenants, _)| scope.may_see(tenants))
                    .map(|(_, r)| r.clone()),
            )
            .take(limit)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).expect("tenant")
    }

    fn done() -> Finished {
        Finished {
            rows: 1,
            bytes_scanned: 10,
            outcome: "ok",
            error: None,
        }
    }

    #[test]
    fn long_sql_is_cut_in_the_record() {
        let log = QueryLog::new(10);
        let scope = Scope::single(tenant("acme"));
        let long = format!("SELECT '{}'", "é".repeat(20_000));
        let (id, _) = log.start(&scope, "http", &long);
        log.finish(&id, done());
        let sql = &log.visible(&scope, 1)[0].sql;
        assert!(sql.len() < MAX_RECORDED_SQL_BYTES + 64, "{}", sql.len());
        assert!(sql.ends_with(&format!("({} bytes in all)", long.len())));
    }

    #[test]
    fn history_is_scoped_bounded_and_cancellable() {
        let log = QueryLog::new(2);
        let acme = Scope::single(tenant("acme"));
        let globex = Scope::single(tenant("globex"));
        let admin = Scope::for_token([tenant("acme"), tenant("globex")], "adm".into(), true)
            .expect("scope");
        let (a1, _) = log.start(&acme, "http", "SELECT 1");
        let (g1, g1_cancel) = log.start(&globex, "http", "SELECT 2");
        // Another tenant can neither see nor cancel it.
        assert_eq!(log.cancel(&acme, &g1), Cancel::NotFound);
        assert!(!g1_cancel.is_cancelled());
        assert_eq!(log.cancel(&globex, &g1), Cancel::Cancelled);
        assert!(g1_cancel.is_cancelled());
        log.finish(&a1, done());
        let seen = log.visible(&acme, 10);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].sql, "SELECT 1");
        assert_eq!(seen[0].outcome, "ok");
        assert_eq!(log.visible(&globex, 10)[0].outcome, "running");
        assert_eq!(log.visible(&admin, 10).len(), 2);
        // Only the last two finished are kept.
        log.finish(&g1, done());
        let (a2, _) = log.start(&acme, "http", "SELECT 3");
        log.finish(&a2, done());
        let all: Vec<String> = log.visible(&admin, 10).into_iter().map(|r| r.sql).collect();
        assert_eq!(all, ["SELECT 3", "SELECT 2"]);
        // An analyst of several tenants does not see an admin's query over more.
        let (x, _) = log.start(&admin, "http", "SELECT 4");
        assert!(log.visible(&acme, 10).iter().all(|r| r.query_id != x));
    }
}
