//! From a caller's token to the [`Scope`] its queries run in, the same for
//! HTTP, Flight SQL and PostgreSQL.
//!
//! With `query.auth = "token"` every role but ingest reads: analyst,
//! viewer and tenant-admin tokens their tenants, an mssp-operator token the
//! tenants it names, an admin token the tenants it names or every
//! registered tenant when it names none. Ingest tokens are refused. What a
//! role may change beyond reading is each API's decision (`Scope::role`). With
//! `query.auth = "none"` every caller reads the default tenant
//! (`ingest.tenant`), for loopback-only single-tenant use.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use spoor_common::audit::{AuditLog, AuditRecord};
use spoor_common::auth::{AuthError, RUN_QUERIES, TOKEN_CACHE_TTL, TokenVerifier, authorize};
use spoor_common::config::HttpAuth;
use spoor_common::control::{ControlClient, TenantRecord, token_id_of};
use spoor_common::tenant::TenantId;

use crate::audit::Scope;

/// Where the registered tenants come from: every tenant (for the
/// cluster's admin) and each tenant's query quotas.
#[async_trait]
pub trait TenantDirectory: Send + Sync + std::fmt::Debug {
    /// Every registered tenant's record.
    async fn tenant_records(&self) -> Result<Vec<TenantRecord>, String>;
}

#[async_trait]
impl TenantDirectory for ControlClient {
    async fn tenant_records(&self) -> Result<Vec<TenantRecord>, String> {
        self.cluster_status()
            .await
            .map(|s| s.tenants)
            .map_err(|e| e.to_string())
    }
}

/// A fixed list of tenants without quotas (tests, tools).
#[derive(Debug, Clone, Default)]
pub struct FixedTenants(pub Vec<TenantId>);

#[async_trait]
impl TenantDirectory for FixedTenants {
    async fn tenant_records(&self) -> Result<Vec<TenantRecord>, String> {
        Ok(self.0.iter().cloned().map(TenantRecord::new).collect())
    }
}

/// Fixed tenant records (tests).
#[derive(Debug, Clone, Default)]
pub struct FixedRecords(pub Vec<TenantRecord>);

#[async_trait]
impl TenantDirectory for FixedRecords {
    async fn tenant_records(&self) -> Result<Vec<TenantRecord>, String> {
        Ok(self.0.clone())
    }
}

/// Why a caller gets no scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// The token is missing, invalid, of the wrong role, or cannot be checked.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The token names no tenant and none is registered.
    #[error("the token reaches no tenant")]
    NoTenants,
}

/// Turns tokens into scopes.
#[derive(Debug, Clone)]
pub struct Access {
    mode: HttpAuth,
    default_tenant: TenantId,
    tokens: Arc<dyn TokenVerifier>,
    directory: Arc<dyn TenantDirectory>,
    /// The last answer of `directory`, and when: every query would
    /// otherwise cost a coordinator round trip. A new tenant or a changed
    /// quota shows up within [`TOKEN_CACHE_TTL`], like a revocation.
    records: Arc<Mutex<Option<CachedTenants>>>,
    /// Where refused tokens are recorded.
    audit: AuditLog,
}

/// When the tenant records were fetched, and what they were.
type CachedTenants = (Instant, Vec<TenantRecord>);

impl Access {
    /// Access as `query.auth` says: `mode`, the default tenant for `none`,
    /// the token verifier and the tenant list for `token`.
    pub fn new(
        mode: HttpAuth,
        default_tenant: TenantId,
        tokens: Arc<dyn TokenVerifier>,
        directory: Arc<dyn TenantDirectory>,
    ) -> Self {
        Access {
            mode,
            default_tenant,
            tokens,
            directory,
            records: Arc::default(),
            audit: AuditLog::default(),
        }
    }

    /// Where this access records refusals (and the APIs using it, changes).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The same access, recording every refused token in `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    async fn tenant_records(&self) -> Result<Vec<TenantRecord>, AuthError> {
        if let Ok(cached) = self.records.lock()
            && let Some((at, records)) = cached.as_ref()
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(records.clone());
        }
        let records = self
            .directory
            .tenant_records()
            .await
            .map_err(AuthError::Unavailable)?;
        if let Ok(mut cached) = self.records.lock() {
            *cached = Some((Instant::now(), records.clone()));
        }
        Ok(records)
    }

    /// Whether callers must bring a token.
    pub fn requires_token(&self) -> bool {
        self.mode == HttpAuth::Token
    }

    /// The scope of an HTTP caller presenting `token` (or none).
    pub async fn scope(&self, token: Option<&str>) -> Result<Scope, AccessError> {
        self.scope_via("http", token).await
    }

    /// The scope of a caller on `interface` presenting `token` (or none);
    /// a refusal is recorded in the audit trail (not a coordinator outage,
    /// which is nobody's doing).
    pub async fn scope_via(
        &self,
        interface: &'static str,
        token: Option<&str>,
    ) -> Result<Scope, AccessError> {
        let scope = self.scope_of(token).await;
        let refused = match &scope {
            Ok(_) => None,
            Err(AccessError::Auth(e)) => e.audit_outcome(),
            Err(AccessError::NoTenants) => Some("forbidden"),
        };
        if let (Some(code), Err(e)) = (refused, &scope) {
            self.audit.record(AuditRecord {
                actor: token.and_then(token_id_of).map(str::to_string),
                ..AuditRecord::refusal(interface, code, e.to_string())
            });
        }
        scope
    }

    /// Records that the caller of `scope`, whose token is valid, was
    /// refused an action (`403`): `reason` says which and why.
    pub fn record_forbidden(&self, scope: &Scope, interface: &'static str, reason: &str) {
        self.audit.record(forbidden(scope, interface, reason));
    }

    async fn scope_of(&self, token: Option<&str>) -> Result<Scope, AccessError> {
        if self.mode == HttpAuth::None {
            return Ok(Scope::single(self.default_tenant.clone()));
        }
        let token = token.ok_or(AuthError::Missing)?;
        let record = authorize(self.tokens.as_ref(), token, RUN_QUERIES).await?;
        // Only an admin token naming no tenant is the cluster's admin (it
        // sees every query in the history); an admin token naming tenants
        // is an operator of those tenants and sees their queries only.
        let cluster_admin = record.is_cluster_admin();
        let registered = self.tenant_records().await?;
        let tenants = if cluster_admin {
            // The cluster's admin also reads the cluster's own tenant: the
            // `audit` table.
            registered
                .iter()
                .map(|t| t.id.clone())
                .chain([spoor_common::audit::cluster_tenant()])
                .collect()
        } else {
            record.tenants
        };
        let quotas = registered
            .into_iter()
            .filter(|t| tenants.contains(&t.id))
            .map(|t| (t.id, t.quotas))
            .collect();
        Scope::for_token(tenants, record.token_id, cluster_admin)
            .map(|s| s.with_role(record.role).with_quotas(quotas))
            .ok_or(AccessError::NoTenants)
    }
}

/// The audit row of a caller with a valid token refused an action
/// (`403`): who, with which role and tenants, and `reason`.
pub fn forbidden(scope: &Scope, interface: &'static str, reason: &str) -> AuditRecord {
    AuditRecord {
        actor: scope.token_id().map(str::to_string),
        role: scope.role().map(|r| r.name().to_string()),
        tenants: scope.tenants().iter().map(ToString::to_string).collect(),
        ..AuditRecord::refusal(interface, "forbidden", reason)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use spoor_common::auth::StaticTokens;
    use spoor_common::control::{TokenRecord, TokenRole};

    pub(crate) fn tenant(name: &str) -> TenantId {
        TenantId::new(name).expect("tenant")
    }

    fn record(id: &str, role: TokenRole, tenants: &[&str]) -> TokenRecord {
        TokenRecord {
            token_id: id.into(),
            tenants: tenants.iter().map(|t| tenant(t)).collect(),
            role,
            secret_sha256: String::new(),
            description: String::new(),
            revoked: false,
            expires_at_micros: None,
        }
    }

    /// Tokens `acme-analyst`, `globex-analyst`, `acme-ingest`, `operator`
    /// (admin of every tenant), `acme-globex` (admin of both).
    pub(crate) fn token_access() -> Access {
        let tokens = StaticTokens::new([
            (
                "acme-analyst".to_string(),
                record("a1", TokenRole::Analyst, &["acme"]),
            ),
            (
                "globex-analyst".to_string(),
                record("g1", TokenRole::Analyst, &["globex"]),
            ),
            (
                "acme-ingest".to_string(),
                record("i1", TokenRole::Ingest, &["acme"]),
            ),
            ("operator".to_string(), record("op", TokenRole::Admin, &[])),
            (
                "acme-globex".to_string(),
                record("ag", TokenRole::Admin, &["acme", "globex"]),
            ),
        ]);
        Access::new(
            HttpAuth::Token,
            tenant("default"),
            Arc::new(tokens),
            Arc::new(FixedTenants(vec![
                tenant("acme"),
                tenant("globex"),
                tenant("initech"),
            ])),
        )
    }

    /// Counts how often the tenant list is asked for.
    #[derive(Debug, Default)]
    struct CountingTenants(std::sync::atomic::AtomicUsize);

    #[async_trait]
    impl TenantDirectory for CountingTenants {
        async fn tenant_records(&self) -> Result<Vec<TenantRecord>, String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(vec![TenantRecord::new(tenant("acme"))])
        }
    }

    #[tokio::test]
    async fn an_operators_queries_do_not_each_ask_for_the_tenant_list() {
        let directory = Arc::new(CountingTenants::default());
        let tokens =
            StaticTokens::new([("operator".to_string(), record("op", TokenRole::Admin, &[]))]);
        let access = Access::new(
            HttpAuth::Token,
            tenant("default"),
            Arc::new(tokens),
            directory.clone(),
        );
        for _ in 0..3 {
            let scope = access.scope(Some("operator")).await.expect("operator");
            assert_eq!(scope.tenants(), [tenant("acme"), tenant("spoor")]);
        }
        assert_eq!(directory.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn every_role_but_ingest_reads_and_scopes_carry_role_and_quotas() {
        let mut roles: Vec<(String, TokenRecord)> = TokenRole::ALL
            .into_iter()
            .map(|r| (r.name().to_string(), record(r.name(), r, &["acme"])))
            .collect();
        roles.push((
            "operator".into(),
            record("op", TokenRole::MsspOperator, &["acme", "globex"]),
        ));
        let limited = TenantRecord {
            quotas: spoor_common::control::TenantQuotas {
                max_concurrent_queries: 2,
                ..Default::default()
            },
            ..TenantRecord::new(tenant("acme"))
        };
        let access = Access::new(
            HttpAuth::Token,
            tenant("default"),
            Arc::new(StaticTokens::new(roles)),
            Arc::new(FixedRecords(vec![
                limited,
                TenantRecord::new(tenant("globex")),
            ])),
        );
        for role in TokenRole::ALL {
            let scope = access.scope(Some(role.name())).await;
            if role == TokenRole::Ingest {
                assert!(
                    matches!(scope, Err(AccessError::Auth(AuthError::WrongRole { .. }))),
                    "{scope:?}"
                );
                continue;
            }
            let scope = scope.unwrap_or_else(|e| panic!("{role}: {e}"));
            assert_eq!(scope.role(), Some(role));
            assert_eq!(scope.max_concurrent_queries(&tenant("acme")), Some(2));
        }
        let op = access.scope(Some("operator")).await.expect("operator");
        assert_eq!(op.tenants(), [tenant("acme"), tenant("globex")]);
        assert!(!op.is_admin());
        assert_eq!(op.max_concurrent_queries(&tenant("globex")), None);
    }

    #[tokio::test]
    async fn tokens_decide_the_tenants() {
        let access = token_access();
        let acme = access.scope(Some("acme-analyst")).await.expect("analyst");
        assert_eq!(acme.tenants(), [tenant("acme")]);
        assert!(!acme.is_admin());
        let op = access.scope(Some("operator")).await.expect("operator");
        assert_eq!(op.tenants().len(), 4, "three tenants and the cluster's own");
        assert!(op.is_admin());
        let named = access.scope(Some("acme-globex")).await.expect("named");
        assert_eq!(named.tenants(), [tenant("acme"), tenant("globex")]);
        // An admin token naming tenants is their operator, not the
        // cluster's admin: the query history shows it their queries only.
        assert!(!named.is_admin());
        assert!(named.may_see(&[tenant("acme")]));
        assert!(!named.may_see(&[tenant("initech")]));
        assert!(!named.may_see(&[tenant("acme"), tenant("initech")]));
        assert_eq!(
            access.scope(None).await,
            Err(AccessError::Auth(AuthError::Missing))
        );
        assert!(matches!(
            access.scope(Some("acme-ingest")).await,
            Err(AccessError::Auth(AuthError::WrongRole { .. }))
        ));
        assert!(matches!(
            access.scope(Some("nope")).await,
            Err(AccessError::Auth(AuthError::Invalid(_)))
        ));
        let open = Access::new(
            HttpAuth::None,
            tenant("default"),
            Arc::new(StaticTokens::default()),
            Arc::new(FixedTenants::default()),
        );
        assert_eq!(
            open.scope(Some("anything")).await.expect("open").tenants(),
            [tenant("default")]
        );
    }
}
