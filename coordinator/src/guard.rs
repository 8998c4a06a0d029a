//! Who may call the coordinators' gRPC. Every call carries a credential in
//! `authorization: Bearer …`: the cluster secret (`[cluster]`), presented
//! by the roles to each other, or an API token, presented by the CLI. The
//! guard, a tonic interceptor, checks it before any handler runs and hands
//! the handler a [`GrpcCaller`]; each handler then decides what that
//! caller may do ([`require_cluster`], [`may_manage_tokens`]).
//!
//! Without a cluster secret (the loopback default) a call without a
//! credential is taken as a node's: a coordinator reachable from an
//! untrusted network must have a secret, which start-up warns about.

use spoor_common::audit::{AuditLog, AuditRecord};
use spoor_common::auth::{ClusterSecrets, bearer_value};
use spoor_common::control::{TokenRecord, TokenRole};
use spoor_common::tenant::TenantId;
use tonic::{Request, Status};

use crate::CoordinatorNode;

/// Who is calling, as the guard established it.
#[derive(Debug, Clone)]
pub enum GrpcCaller {
    /// A role of the cluster (the cluster secret, or no credential on a
    /// cluster without one).
    Node,
    /// The holder of a valid, unexpired API token.
    Token(TokenRecord),
}

impl GrpcCaller {
    /// The audit record of `kind` by this caller: its token id and role,
    /// or `cluster` for a node.
    pub fn audit(&self, kind: &'static str) -> AuditRecord {
        let (actor, role) = match self {
            GrpcCaller::Node => ("cluster".to_string(), None),
            GrpcCaller::Token(t) => (t.token_id.clone(), Some(t.role.name().to_string())),
        };
        AuditRecord {
            actor: Some(actor),
            role,
            ..AuditRecord::new(kind, "grpc")
        }
    }

    /// Whether the caller is a node or the cluster's admin (an admin token
    /// naming no tenant).
    pub fn is_cluster(&self) -> bool {
        match self {
            GrpcCaller::Node => true,
            GrpcCaller::Token(t) => t.is_cluster_admin(),
        }
    }
}

/// Checks the credential of every call to the services it wraps.
#[derive(Clone)]
pub struct GrpcGuard {
    /// The cluster's secrets (reloaded in place); `None`: no secret.
    secret: Option<ClusterSecrets>,
    /// Where tokens are looked up; `None` for services only nodes call.
    tokens: Option<CoordinatorNode>,
    /// Where refusals are recorded.
    audit: AuditLog,
}

impl std::fmt::Debug for GrpcGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcGuard")
            .field("secret", &self.secret.is_some())
            .field("tokens", &self.tokens.is_some())
            .finish()
    }
}

impl GrpcGuard {
    /// A guard for services that only the cluster's roles call (catalog,
    /// Raft): the cluster secret, or nothing when there is none.
    pub fn nodes_only(secret: Option<ClusterSecrets>) -> Self {
        GrpcGuard {
            secret,
            tokens: None,
            audit: AuditLog::default(),
        }
    }

    /// A guard that also takes API tokens, looked up in `node`'s state
    /// (control, membership).
    pub fn with_tokens(secret: Option<ClusterSecrets>, node: CoordinatorNode) -> Self {
        GrpcGuard {
            secret,
            tokens: Some(node),
            audit: AuditLog::default(),
        }
    }

    /// The same guard, recording every refused call in `audit`.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<GrpcCaller, Status> {
        let presented = match metadata.get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().ok().and_then(bearer_value).ok_or_else(|| {
                Status::unauthenticated("the authorization metadata is not `Bearer <credential>`")
            })?),
        };
        let Some(presented) = presented else {
            return match self.secret {
                None => Ok(GrpcCaller::Node),
                Some(_) => Err(Status::unauthenticated(
                    "this coordinator needs a credential: the cluster secret \
                     (cluster.secret_file) for cluster roles, or an admin token for the CLI (--token)",
                )),
            };
        };
        if let Some(secrets) = &self.secret
            && secrets.accepts(presented)
        {
            return Ok(GrpcCaller::Node);
        }
        let Some(node) = &self.tokens else {
            return Err(Status::unauthenticated(
                "only the roles of the cluster may call this service: present the cluster secret",
            ));
        };
        if spoor_common::control::token_id_of(presented).is_none() {
            return Err(Status::unauthenticated(
                "the credential is neither this cluster's secret nor an API token \
                 (check cluster.secret_file on every node)",
            ));
        }
        let record = node.authenticate(presented).map_err(|e| match e {
            spoor_common::catalog::CatalogError::Conflict { reason } => {
                Status::unauthenticated(reason)
            }
            other => spoor_common::catalog_client::error_to_status(&other),
        })?;
        spoor_common::auth::unexpired(&record)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        Ok(GrpcCaller::Token(record))
    }
}

impl tonic::service::Interceptor for GrpcGuard {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.caller(request.metadata()).inspect_err(|status| {
            self.audit.record(AuditRecord {
                actor: request
                    .metadata()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(bearer_value)
                    .and_then(spoor_common::control::token_id_of)
                    .map(str::to_string),
                ..AuditRecord::refusal("grpc", "unauthenticated", status.message())
            });
        })?;
        request.extensions_mut().insert(caller);
        request
            .extensions_mut()
            .insert(GuardAudit(self.audit.clone()));
        Ok(request)
    }
}

/// The guard's audit trail, handed to the handlers with the caller so a
/// refusal of an authenticated caller (`PERMISSION_DENIED`) is recorded
/// too.
#[derive(Clone)]
struct GuardAudit(AuditLog);

/// Records `status` in `audit` when it refuses `who` an action
/// (`PERMISSION_DENIED`: a valid credential that may not), and passes it
/// on.
pub fn audited(audit: &AuditLog, who: &GrpcCaller, status: Status) -> Status {
    if status.code() == tonic::Code::PermissionDenied {
        let mut record = who.audit("auth_failure");
        if let GrpcCaller::Token(t) = who {
            record.tenants = t.tenants.iter().map(ToString::to_string).collect();
        }
        audit.record(AuditRecord {
            outcome: "forbidden".into(),
            detail: Some(status.message().to_string()),
            ..record
        });
    }
    status
}

/// The caller the guard established. A service served without a guard
/// has none, and every call fails (closed, not open).
pub fn caller<T>(request: &Request<T>) -> Result<&GrpcCaller, Status> {
    request
        .extensions()
        .get::<GrpcCaller>()
        .ok_or_else(|| Status::internal("the service is served without its credential guard"))
}

/// `Ok` for nodes and the cluster's admin; `PERMISSION_DENIED` naming
/// `action` for everyone else.
pub fn require_cluster<T>(request: &Request<T>, action: &str) -> Result<(), Status> {
    let who = caller(request)?;
    match who {
        GrpcCaller::Token(t) if !t.is_cluster_admin() => {
            let refused = Status::permission_denied(format!(
                "{} token may not {action}: that takes the cluster's admin token (an admin token naming no tenant)",
                spoor_common::auth::with_article(t.role.name())
            ));
            Err(match request.extensions().get::<GuardAudit>() {
                Some(GuardAudit(audit)) => audited(audit, who, refused),
                None => refused,
            })
        }
        _ => Ok(()),
    }
}

/// The tenants whose tokens `caller` manages: `None` for every tenant
/// (nodes, the cluster's admin); the token's tenants for a tenant-admin
/// (or an admin naming tenants); a refusal for every other role.
pub fn token_scope(caller: &GrpcCaller) -> Result<Option<&[TenantId]>, Status> {
    match caller {
        GrpcCaller::Node => Ok(None),
        GrpcCaller::Token(t) if t.is_cluster_admin() => Ok(None),
        GrpcCaller::Token(t) if matches!(t.role, TokenRole::TenantAdmin | TokenRole::Admin) => {
            Ok(Some(&t.tenants))
        }
        GrpcCaller::Token(t) => Err(Status::permission_denied(format!(
            "{} token may not manage tokens: that takes a tenant-admin token of the tenant \
             or the cluster's admin token",
            spoor_common::auth::with_article(t.role.name())
        ))),
    }
}

/// Whether `caller` may create, revoke or list tokens of `role` for
/// `tenants`: nodes and the cluster's admin any; a tenant-admin (or an
/// admin naming tenants) tokens of its own tenants, of roles bound to
/// those tenants (never admin or mssp-operator, which reach further).
pub fn may_manage_tokens(
    caller: &GrpcCaller,
    tenants: &[TenantId],
    role: TokenRole,
) -> Result<(), Status> {
    let Some(mine) = token_scope(caller)? else {
        return Ok(());
    };
    if matches!(role, TokenRole::Admin | TokenRole::MsspOperator) {
        return Err(Status::permission_denied(format!(
            "only the cluster's admin token may manage {role} tokens"
        )));
    }
    if tenants.is_empty() {
        return Err(Status::permission_denied(
            "a tenant-admin token manages tokens of its tenants: name them",
        ));
    }
    match tenants.iter().find(|x| !mine.contains(x)) {
        Some(other) => Err(Status::permission_denied(format!(
            "tenant {other} is not one of this token's tenants"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: TokenRole, tenants: &[&str]) -> GrpcCaller {
        GrpcCaller::Token(TokenRecord {
            token_id: "0123456789abcdef".into(),
            tenants: tenants
                .iter()
                .map(|t| TenantId::new(*t).expect("tenant"))
                .collect(),
            role,
            secret_sha256: String::new(),
            description: String::new(),
            revoked: false,
            expires_at_micros: None,
        })
    }

    fn tenants(names: &[&str]) -> Vec<TenantId> {
        names
            .iter()
            .map(|t| TenantId::new(*t).expect("tenant"))
            .collect()
    }

    #[test]
    fn a_secret_is_needed_when_configured_and_refused_when_wrong() {
        let guard = GrpcGuard::nodes_only(ClusterSecrets::new(vec!["s".repeat(40)]));
        let mut md = tonic::metadata::MetadataMap::new();
        let e = guard.caller(&md).expect_err("no credential");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        md.insert("authorization", "Bearer nope".parse().expect("value"));
        let e = guard.caller(&md).expect_err("wrong secret");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("cluster secret"), "{e}");
        md.insert(
            "authorization",
            format!("Bearer {}", "s".repeat(40)).parse().expect("value"),
        );
        assert!(matches!(guard.caller(&md), Ok(GrpcCaller::Node)));
        md.insert("authorization", "Basic abc".parse().expect("value"));
        assert!(guard.caller(&md).is_err());
        // A rotation: the new secret beside the old, then alone.
        let secrets = ClusterSecrets::new(vec!["s".repeat(40)]).expect("secrets");
        let rotating = GrpcGuard::nodes_only(Some(secrets.clone()));
        let with = |s: &str| {
            let mut md = tonic::metadata::MetadataMap::new();
            md.insert(
                "authorization",
                format!("Bearer {s}").parse().expect("value"),
            );
            rotating.caller(&md).is_ok()
        };
        assert!(with(&"s".repeat(40)) && !with(&"n".repeat(40)));
        assert!(secrets.replace(vec!["s".repeat(40), "n".repeat(40)]));
        assert!(with(&"s".repeat(40)) && with(&"n".repeat(40)));
        assert!(secrets.replace(vec!["n".repeat(40)]));
        assert!(!with(&"s".repeat(40)) && with(&"n".repeat(40)));
        // Without a secret, a call without a credential is a node's.
        let open = GrpcGuard::nodes_only(None);
        assert!(matches!(
            open.caller(&tonic::metadata::MetadataMap::new()),
            Ok(GrpcCaller::Node)
        ));
    }

    #[test]
    fn tenant_admins_manage_tokens_of_their_tenants_only() {
        let ta = token(TokenRole::TenantAdmin, &["acme"]);
        assert!(may_manage_tokens(&ta, &tenants(&["acme"]), TokenRole::Analyst).is_ok());
        assert!(may_manage_tokens(&ta, &tenants(&["acme"]), TokenRole::TenantAdmin).is_ok());
        for (names, role) in [
            (&["globex"][..], TokenRole::Analyst),
            (&["acme", "globex"][..], TokenRole::Viewer),
            (&[][..], TokenRole::Viewer),
            (&["acme"][..], TokenRole::Admin),
            (&["acme"][..], (TokenRole::MsspOperator)),
        ] {
            let e = may_manage_tokens(&ta, &tenants(names), role).expect_err("refused");
            assert_eq!(
                e.code(),
                tonic::Code::PermissionDenied,
                "{names:?} {role:?}"
            );
        }
        for role in [
            TokenRole::Analyst,
            TokenRole::Viewer,
            TokenRole::Ingest,
            TokenRole::MsspOperator,
        ] {
            assert!(
                may_manage_tokens(
                    &token(role, &["acme"]),
                    &tenants(&["acme"]),
                    TokenRole::Viewer
                )
                .is_err(),
                "{role}"
            );
        }
        let admin = token(TokenRole::Admin, &[]);
        assert!(may_manage_tokens(&admin, &[], TokenRole::Admin).is_ok());
        assert!(may_manage_tokens(&GrpcCaller::Node, &[], TokenRole::Admin).is_ok());
    }
}
