//! From a caller's token to the [`Scope`] its queries run in, the same for
//! HTTP, Flight SQL and PostgreSQL.
//!
//! With `query.auth = "token"` an analyst token reads its tenants; an admin
//! token reads the tenants it names, or every registered tenant when it
//! names none (an MSSP operator). Ingest tokens are refused. With
//! `query.auth = "none"` every caller reads the default tenant
//! (`ingest.tenant`), for loopback-only single-tenant use.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use spoor_common::auth::{AuthError, RUN_QUERIES, TOKEN_CACHE_TTL, TokenVerifier, authorize};
use spoor_common::config::HttpAuth;
use spoor_common::control::{ControlClient, TokenRole};
use spoor_common::tenant::TenantId;

use crate::audit::Scope;

/// Where the list of every tenant comes from (for admin tokens).
#[async_trait]
pub trait TenantDirectory: Send + Sync + std::fmt::Debug {
    /// Every registered tenant.
    async fn all_tenants(&self) -> Result<Vec<TenantId>, String>;
}

#[async_trait]
impl TenantDirectory for ControlClient {
    async fn all_tenants(&self) -> Result<Vec<TenantId>, String> {
        self.cluster_status()
            .await
            .map(|s| s.tenants.into_iter().map(|t| t.id).collect())
            .map_err(|e| e.to_string())
    }
}

/// A fixed list of tenants (tests, tools).
#[derive(Debug, Clone, Default)]
pub struct FixedTenants(pub Vec<TenantId>);

#[async_trait]
impl TenantDirectory for FixedTenants {
    async fn all_tenants(&self) -> Result<Vec<TenantId>, String> {
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
    /// The last answer of `directory`, and when: an operator's every query
    /// would otherwise cost a coordinator round trip. A new tenant shows up
    /// within [`TOKEN_CACHE_TTL`], like a revocation.
    all_tenants: Arc<Mutex<Option<CachedTenants>>>,
}

/// When the tenant list was fetched, and what it was.
type CachedTenants = (Instant, Vec<TenantId>);

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
            all_tenants: Arc::default(),
        }
    }

    async fn every_tenant(&self) -> Result<Vec<TenantId>, AuthError> {
        if let Ok(cached) = self.all_tenants.lock()
            && let Some((at, tenants)) = cached.as_ref()
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(tenants.clone());
        }
        let tenants = self
            .directory
            .all_tenants()
            .await
            .map_err(AuthError::Unavailable)?;
        if let Ok(mut cached) = self.all_tenants.lock() {
            *cached = Some((Instant::now(), tenants.clone()));
        }
        Ok(tenants)
    }

    /// Whether callers must bring a token.
    pub fn requires_token(&self) -> bool {
        self.mode == HttpAuth::Token
    }

    /// The scope of a caller presenting `token` (or none).
    pub async fn scope(&self, token: Option<&str>) -> Result<Scope, AccessError> {
        if self.mode == HttpAuth::None {
            return Ok(Scope::single(self.default_tenant.clone()));
        }
        let token = token.ok_or(AuthError::Missing)?;
        let record = authorize(self.tokens.as_ref(), token, RUN_QUERIES).await?;
        // Only an admin token naming no tenant is the cluster's admin (it
        // sees every query in the history); an admin token naming tenants
        // is an operator of those tenants and sees their queries only.
        let cluster_admin = record.role == TokenRole::Admin && record.tenants.is_empty();
        let tenants = if cluster_admin {
            self.every_tenant().await?
        } else {
            record.tenants
        };
        Scope::for_token(tenants, record.token_id, cluster_admin).ok_or(AccessError::NoTenants)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use spoor_common::auth::StaticTokens;
    use spoor_common::control::TokenRecord;

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
        async fn all_tenants(&self) -> Result<Vec<TenantId>, String> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(vec![tenant("acme")])
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
            assert_eq!(scope.tenants(), [tenant("acme")]);
        }
        assert_eq!(directory.0.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn tokens_decide_the_tenants() {
        let access = token_access();
        let acme = access.scope(Some("acme-analyst")).await.expect("analyst");
        assert_eq!(acme.tenants(), [tenant("acme")]);
        assert!(!acme.is_admin());
        let op = access.scope(Some("operator")).await.expect("operator");
        assert_eq!(op.tenants().len(), 3);
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
