//! API tokens on HTTP, Flight SQL and PostgreSQL connections:
//! `Authorization: Bearer <token>` (or Splunk's `Authorization: Splunk
//! <token>`), checked against the coordinators and cached briefly so a busy
//! forwarder or dashboard does not cost a Raft read per request. Every role
//! checks tokens the same way; what a role allows is its own decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::http::HeaderMap;

use crate::catalog::CatalogError;
use crate::control::{ControlClient, TokenRecord, TokenRole, token_hash};

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the request.
    #[error("a token is required: Authorization: Bearer <token> (or Splunk <token>)")]
    Missing,
    /// The token is unknown, revoked or malformed.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token exists but its role may not do this.
    #[error("{} token may not {action}; use {allowed}", with_article(.role))]
    WrongRole {
        /// The token's role.
        role: &'static str,
        /// What was asked ("send events", "run queries").
        action: &'static str,
        /// The roles that may, for the message ("an ingest or admin token").
        allowed: &'static str,
    },
    /// The coordinators could not be asked.
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
}

/// `role` with its article: "an analyst", "a viewer".
pub fn with_article(role: &str) -> String {
    let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {role}")
}

impl AuthError {
    /// The audit trail's outcome for this refusal; `None` for a
    /// coordinator outage, which is nobody's doing and is not recorded.
    pub fn audit_outcome(&self) -> Option<&'static str> {
        match self {
            AuthError::Unavailable(_) => None,
            AuthError::WrongRole { .. } => Some("forbidden"),
            AuthError::Missing | AuthError::Invalid(_) => Some("unauthenticated"),
        }
    }
}

/// Checks a token string.
#[async_trait]
pub trait TokenVerifier: Send + Sync + std::fmt::Debug {
    /// The token's record, when it is valid.
    async fn verify(&self, token: &str) -> Result<TokenRecord, AuthError>;
}

/// The token from `Authorization: Bearer …` or `Authorization: Splunk …`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    bearer_value(value)
}

/// The token of an `Authorization` value `Bearer …` or `Splunk …` (also
/// the value of gRPC's `authorization` metadata).
pub fn bearer_value(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("splunk"))
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// What a role may do: the roles allowed, and words for the refusal.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    /// Roles that may.
    pub roles: &'static [TokenRole],
    /// What is asked, for the message ("send events").
    pub action: &'static str,
    /// The allowed roles, for the message ("an ingest or admin token").
    pub allowed: &'static str,
}

/// Sending events: ingest tokens, and the admins of the tenant or cluster.
pub const SEND_EVENTS: Permission = Permission {
    roles: &[TokenRole::Ingest, TokenRole::TenantAdmin, TokenRole::Admin],
    action: "send events",
    allowed: "an ingest, tenant-admin or admin token",
};

/// Reading: queries (HTTP, Flight SQL, PostgreSQL), rule and alert
/// listings. Every role but ingest.
pub const RUN_QUERIES: Permission = Permission {
    roles: &[
        TokenRole::Admin,
        TokenRole::MsspOperator,
        TokenRole::TenantAdmin,
        TokenRole::Analyst,
        TokenRole::Viewer,
    ],
    action: "read (queries, rules, alerts)",
    allowed: "an analyst, viewer, mssp-operator, tenant-admin or admin token",
};

/// Changing a tenant's detection and triage state: rule sets, alert
/// triage, retro-hunts.
pub const CHANGE_DETECTIONS: Permission = Permission {
    roles: &[TokenRole::Admin, TokenRole::TenantAdmin, TokenRole::Analyst],
    action: "change rules or indicator lists, triage alerts or run retro-hunts",
    allowed: "an analyst, tenant-admin or admin token",
};

/// Saving and deleting a tenant's saved queries (the console's Saved
/// list): every role that reads, but viewers (read-only) and ingest.
pub const SAVE_QUERIES: Permission = Permission {
    roles: &[
        TokenRole::Admin,
        TokenRole::MsspOperator,
        TokenRole::TenantAdmin,
        TokenRole::Analyst,
    ],
    action: "save or delete saved queries",
    allowed: "an analyst, mssp-operator, tenant-admin or admin token",
};

impl Permission {
    /// Whether `role` has it.
    pub fn allows(&self, role: TokenRole) -> bool {
        self.roles.contains(&role)
    }

    /// The refusal of `role`.
    pub fn refuse(&self, role: TokenRole) -> AuthError {
        AuthError::WrongRole {
            role: role.name(),
            action: self.action,
            allowed: self.allowed,
        }
    }
}

/// Checks `token` and that its role has `permission`.
pub async fn authorize(
    verifier: &dyn TokenVerifier,
    token: &str,
    permission: Permission,
) -> Result<TokenRecord, AuthError> {
    let record = verifier.verify(token).await?;
    // Checked on every use, not when cached: an expiry takes effect on
    // time on every node and interface.
    unexpired(&record)?;
    if permission.allows(record.role) {
        Ok(record)
    } else {
        Err(permission.refuse(record.role))
    }
}

/// `Ok` unless `record` has expired; the error says when it did.
pub fn unexpired(record: &TokenRecord) -> Result<(), AuthError> {
    match record.expires_at_micros {
        Some(at) if at <= crate::time::now_micros() => Err(AuthError::Invalid(format!(
            "token {} expired at {}",
            record.token_id,
            crate::time::rfc3339(at)
        ))),
        _ => Ok(()),
    }
}

/// Authenticates a request's bearer token for `permission`.
pub async fn authenticate(
    verifier: &dyn TokenVerifier,
    headers: &HeaderMap,
    permission: Permission,
) -> Result<TokenRecord, AuthError> {
    let token = bearer(headers).ok_or(AuthError::Missing)?;
    authorize(verifier, token, permission).await
}

/// How long a verified token is trusted without asking again; a revocation
/// (or a tenant's disabling) takes effect on every node within this time.
/// Short, because it bounds how long a leaked token works after it is
/// revoked; one local Raft-state read per token per node every 5 s costs
/// nothing.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);

/// Cached answers by token hash: when asked, and what was answered.
type TokenCache = HashMap<String, (Instant, Result<TokenRecord, AuthError>)>;

/// Verifies tokens with the coordinators, caching answers (by the token's
/// hash, never the token) for [`TOKEN_CACHE_TTL`].
#[derive(Debug, Clone)]
pub struct CoordinatorTokens {
    control: ControlClient,
    cache: Arc<Mutex<TokenCache>>,
}

impl CoordinatorTokens {
    /// A verifier asking `control`.
    pub fn new(control: ControlClient) -> Self {
        CoordinatorTokens {
            control,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

#[async_trait]
impl TokenVerifier for CoordinatorTokens {
    async fn verify(&self, token: &str) -> Result<TokenRecord, AuthError> {
        let key = token_hash(token);
        if let Ok(cache) = self.cache.lock()
            && let Some((at, answer)) = cache.get(&key)
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return answer.clone();
        }
        let answer = match self.control.authenticate(token).await {
            Ok(record) => Ok(record),
            Err(e @ CatalogError::Unavailable { .. }) => {
                // Not cached: the next request asks again.
                return Err(AuthError::Unavailable(e.to_string()));
            }
            // The coordinators' reason ("token refused: revoked").
            Err(CatalogError::Denied { reason })
                if reason.starts_with(&format!(
                    "{}token refused",
                    crate::catalog_client::UNAUTHENTICATED
                )) =>
            {
                Err(AuthError::Invalid(
                    reason
                        .trim_start_matches(crate::catalog_client::UNAUTHENTICATED)
                        .to_string(),
                ))
            }
            // This node's own credential was refused (cluster.secret_file
            // differs from the coordinators'): not the caller's fault, and
            // not cached.
            Err(CatalogError::Denied { reason }) => {
                return Err(AuthError::Unavailable(format!(
                    "this node's cluster credential was refused by the coordinators: {reason}"
                )));
            }
            Err(e) => Err(AuthError::Invalid(e.to_string())),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 10_000 {
                cache.retain(|_, (at, _)| at.elapsed() < TOKEN_CACHE_TTL);
            }
            cache.insert(key, (Instant::now(), answer.clone()));
        }
        answer
    }
}

/// Fixed tokens, for tests and tools.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens {
    tokens: HashMap<String, TokenRecord>,
}

impl StaticTokens {
    /// Verifies exactly these (token string, record) pairs.
    pub fn new(tokens: impl IntoIterator<Item = (String, TokenRecord)>) -> Self {
        StaticTokens {
            tokens: tokens.into_iter().collect(),
        }
    }
}

#[async_trait]
impl TokenVerifier for StaticTokens {
    async fn verify(&self, token: &str) -> Result<TokenRecord, AuthError> {
        self.tokens
            .get(token)
            .filter(|r| !r.revoked)
            .cloned()
            .ok_or_else(|| AuthError::Invalid("unknown or revoked token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::TenantId;
    use axum::http::HeaderValue;

    fn record(role: TokenRole) -> TokenRecord {
        TokenRecord {
            token_id: "abc".into(),
            tenants: vec![TenantId::new("acme").expect("tenant")],
            role,
            secret_sha256: String::new(),
            description: String::new(),
            revoked: false,
            expires_at_micros: None,
        }
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[tokio::test]
    async fn an_expired_token_authenticates_nothing_and_says_when_it_expired() {
        let now = crate::time::now_micros();
        let expired = TokenRecord {
            expires_at_micros: Some(now - 1_000_000),
            ..record(TokenRole::Admin)
        };
        let later = TokenRecord {
            expires_at_micros: Some(now + 3_600_000_000),
            ..record(TokenRole::Admin)
        };
        let tokens = StaticTokens::new([
            ("t-expired".to_string(), expired),
            ("t-later".to_string(), later),
        ]);
        let e = authorize(&tokens, "t-expired", RUN_QUERIES)
            .await
            .expect_err("expired");
        assert!(
            matches!(&e, AuthError::Invalid(m) if m.contains("token abc expired at ")),
            "{e}"
        );
        assert!(authorize(&tokens, "t-expired", SEND_EVENTS).await.is_err());
        authorize(&tokens, "t-later", RUN_QUERIES)
            .await
            .expect("not expired yet");
    }

    #[tokio::test]
    async fn bearer_and_splunk_schemes_and_roles() {
        let tokens = StaticTokens::new([
            ("t-ingest".to_string(), record(TokenRole::Ingest)),
            ("t-analyst".to_string(), record(TokenRole::Analyst)),
        ]);
        assert!(
            authenticate(&tokens, &headers("Bearer t-ingest"), SEND_EVENTS)
                .await
                .is_ok()
        );
        assert!(
            authenticate(&tokens, &headers("Splunk t-ingest"), SEND_EVENTS)
                .await
                .is_ok()
        );
        assert_eq!(
            authenticate(&tokens, &HeaderMap::new(), SEND_EVENTS).await,
            Err(AuthError::Missing)
        );
        assert_eq!(
            authenticate(&tokens, &headers("Basic t-ingest"), SEND_EVENTS).await,
            Err(AuthError::Missing)
        );
        assert!(matches!(
            authenticate(&tokens, &headers("Bearer nope"), SEND_EVENTS).await,
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            authenticate(&tokens, &headers("Bearer t-analyst"), SEND_EVENTS).await,
            Err(AuthError::WrongRole {
                role: "analyst",
                action: "send events",
                allowed: "an ingest, tenant-admin or admin token"
            })
        );
        assert!(
            authenticate(&tokens, &headers("Bearer t-analyst"), RUN_QUERIES)
                .await
                .is_ok()
        );
        assert!(matches!(
            authenticate(&tokens, &headers("Bearer t-ingest"), RUN_QUERIES).await,
            Err(AuthError::WrongRole { role: "ingest", .. })
        ));
    }
}

type HeaderValue = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// `Bearer <secret>` as a header value, marked sensitive; `None` when it
/// cannot be one.
fn bearer_header(secret: &str) -> Option<HeaderValue> {
    let mut value: HeaderValue = format!("Bearer {secret}").parse().ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The cluster's secrets, as `cluster.secret_file` lists them, one per
/// line: nodes present the first on every call between roles, and the
/// coordinators accept each of them. [`ClusterSecrets::watch`] re-reads
/// the file, so a secret is rotated without a restart: add the new one as
/// a second line on every node, then move it first on every node, then
/// drop the old one (docs/security.md, Rotation).
#[derive(Clone)]
pub struct ClusterSecrets(Arc<RwLock<SecretSet>>);

struct SecretSet {
    accepted: Vec<String>,
    presented: HeaderValue,
}

impl std::fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecrets(<redacted>)")
    }
}

impl ClusterSecrets {
    /// The secrets, the first presented; `None` for none, or when the
    /// first cannot be a header value (checked secrets are printable
    /// ASCII, so always can).
    pub fn new(secrets: Vec<String>) -> Option<Self> {
        let presented = bearer_header(secrets.first()?)?;
        Some(ClusterSecrets(Arc::new(RwLock::new(SecretSet {
            accepted: secrets,
            presented,
        }))))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, SecretSet> {
        // A poisoned lock only means a writer panicked between two whole
        // values; the set inside is whole.
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `presented` is one of the secrets (compared in constant
    /// time).
    pub fn accepts(&self, presented: &str) -> bool {
        self.read().accepted.iter().fold(false, |hit, s| {
            crate::control::constant_time_eq(presented, s) | hit
        })
    }

    /// How many secrets are accepted.
    pub fn len(&self) -> usize {
        self.read().accepted.len()
    }

    /// Whether there are none (never, once made).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn presented(&self) -> HeaderValue {
        self.read().presented.clone()
    }

    /// Replaces the secrets (non-empty, the first presented); whether they
    /// changed.
    pub fn replace(&self, secrets: Vec<String>) -> bool {
        let Some(presented) = secrets.first().and_then(|s| bearer_header(s)) else {
            return false;
        };
        let mut set = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if set.accepted == secrets {
            return false;
        }
        *set = SecretSet {
            accepted: secrets,
            presented,
        };
        true
    }

    /// Re-reads `config`'s secrets every `interval` until `stop`. A file
    /// that cannot be read or holds a bad secret keeps the secrets in
    /// force (warned and counted in `spoor_cluster_secret_reloads_total`).
    pub async fn watch(
        self,
        config: crate::config::ClusterConfig,
        interval: std::time::Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            match config.secrets() {
                Ok(secrets) if secrets.is_empty() => {
                    metrics::counter!("spoor_cluster_secret_reloads_total", "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(
                        "cluster.secret_file is empty now; the secrets read before stay in force \
                         (a cluster does not drop its secret without a restart)"
                    );
                }
                Ok(secrets) => {
                    let count = secrets.len();
                    if self.replace(secrets) {
                        metrics::counter!("spoor_cluster_secret_reloads_total", "outcome" => "loaded")
                            .increment(1);
                        tracing::info!(
                            accepted = count,
                            "cluster secrets changed: presenting the first, accepting all"
                        );
                    }
                }
                Err(e) => {
                    metrics::counter!("spoor_cluster_secret_reloads_total", "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(error = %e, "cluster secrets not reloaded; the previous ones stay in force");
                }
            }
        }
    }
}

/// The credential a node (or the CLI) presents on its gRPC calls to the
/// coordinators: the cluster secret between roles (the first of
/// [`ClusterSecrets`], as of the last reload), or an API token for the
/// CLI. Never printed.
#[derive(Clone, Default)]
pub struct Credential(Presented);

#[derive(Clone, Default)]
enum Presented {
    #[default]
    Nothing,
    Fixed(HeaderValue),
    Cluster(ClusterSecrets),
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Presented::Nothing, Presented::Nothing) => true,
            (Presented::Fixed(a), Presented::Fixed(b)) => a == b,
            (Presented::Cluster(a), Presented::Cluster(b)) => Arc::ptr_eq(&a.0, &b.0),
            _ => false,
        }
    }
}

impl Eq for Credential {}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Presented::Nothing => "Credential(none)",
            Presented::Fixed(_) | Presented::Cluster(_) => "Credential(<redacted>)",
        })
    }
}

impl Credential {
    /// No credential: for clusters without a secret (loopback, tests).
    pub fn none() -> Self {
        Credential(Presented::Nothing)
    }

    /// `authorization: Bearer <secret>` on every call. `None` when the
    /// secret cannot be a header value (it is printable ASCII).
    pub fn bearer(secret: &str) -> Option<Self> {
        bearer_header(secret).map(|v| Credential(Presented::Fixed(v)))
    }

    /// The first of `secrets` on every call, as of the call.
    pub fn cluster(secrets: &ClusterSecrets) -> Self {
        Credential(Presented::Cluster(secrets.clone()))
    }

    /// Whether a credential is presented at all.
    pub fn is_some(&self) -> bool {
        !matches!(self.0, Presented::Nothing)
    }
}

impl tonic::service::Interceptor for Credential {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let value = match &self.0 {
            Presented::Nothing => return Ok(request),
            Presented::Fixed(v) => v.clone(),
            Presented::Cluster(s) => s.presented(),
        };
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// A channel to a coordinator that presents a [`Credential`] on every call.
pub type AuthChannel =
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Credential>;
