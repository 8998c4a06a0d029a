//! Tenants and tokens, managed through the coordinators' control service
//! with the caller's own credential: what `spoor tenant`/`spoor token` and
//! the HTTP API (`/v1/tenants`, `/v1/tokens`, see `admin_api.rs`) do. The
//! coordinators decide what the credential may do (docs/security.md);
//! nothing here widens it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use spoor_common::catalog::{CatalogError, TenantTotals};
use spoor_common::catalog_client::NOT_FOUND;
use spoor_common::control::{ControlClient, TenantRecord, TokenRole, generate_token};
use spoor_common::tenant::TenantId;

/// Why an operation failed.
#[derive(Debug)]
pub(crate) enum AdminError {
    /// The request itself is wrong (a bad id, role or field).
    Invalid(String),
    /// No such tenant (or token) for this caller.
    NotFound(String),
    /// The tenant exists already.
    Conflict(String),
    /// What the coordinators answered.
    Control(CatalogError),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Invalid(m) | AdminError::NotFound(m) | AdminError::Conflict(m) => {
                f.write_str(m)
            }
            AdminError::Control(e) => write!(f, "{e}"),
        }
    }
}

impl From<CatalogError> for AdminError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Invalid { reason } if reason.starts_with(NOT_FOUND) => {
                AdminError::NotFound(reason)
            }
            e => AdminError::Control(e),
        }
    }
}

/// What `create` and `update` change on a tenant; absent fields stay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantChanges {
    pub(crate) display_name: Option<String>,
    pub(crate) retention_days: Option<u32>,
    /// Per table: days, or null to drop the table's own setting.
    #[serde(default)]
    pub(crate) table_retention_days: BTreeMap<String, Option<u32>>,
    pub(crate) legal_hold: Option<bool>,
    pub(crate) region: Option<String>,
    pub(crate) disabled: Option<bool>,
    pub(crate) ingest_events_per_second: Option<u64>,
    pub(crate) ingest_bytes_per_second: Option<u64>,
    pub(crate) max_concurrent_queries: Option<u32>,
    pub(crate) max_query_scanned_bytes: Option<u64>,
}

/// The fields a request body may hold, for error messages.
pub(crate) const TENANT_FIELDS: &str = "an object with any of display_name, retention_days, \
    table_retention_days ({table: days or null}), legal_hold, region, disabled, \
    ingest_events_per_second, ingest_bytes_per_second, max_concurrent_queries, \
    max_query_scanned_bytes";

impl TenantChanges {
    /// Sets the fields given on `t`.
    pub(crate) fn apply(&self, t: &mut TenantRecord) {
        fn set<T>(field: &mut T, value: Option<T>) {
            if let Some(v) = value {
                *field = v;
            }
        }
        set(&mut t.display_name, self.display_name.clone());
        set(&mut t.retention_days, self.retention_days);
        for (table, days) in &self.table_retention_days {
            match days {
                Some(days) => t.table_retention_days.insert(table.clone(), *days),
                None => t.table_retention_days.remove(table),
            };
        }
        set(&mut t.legal_hold, self.legal_hold);
        set(&mut t.region, self.region.clone());
        set(&mut t.disabled, self.disabled);
        let q = &mut t.quotas;
        set(
            &mut q.ingest_events_per_second,
            self.ingest_events_per_second,
        );
        set(&mut q.ingest_bytes_per_second, self.ingest_bytes_per_second);
        set(&mut q.max_concurrent_queries, self.max_concurrent_queries);
        set(&mut q.max_query_scanned_bytes, self.max_query_scanned_bytes);
    }
}

fn tenant_id(id: &str) -> Result<TenantId, AdminError> {
    TenantId::new(id.to_string()).map_err(|e| AdminError::Invalid(e.to_string()))
}

/// A tenant as shown: its record and what it stores.
fn view(record: &TenantRecord, usage: Option<&TenantTotals>) -> Result<Value, AdminError> {
    let mut v = serde_json::to_value(record).map_err(|e| AdminError::Invalid(e.to_string()))?;
    let tables: serde_json::Map<String, Value> = usage
        .map(|u| {
            u.tables
                .iter()
                .map(|t| {
                    (
                        t.table.clone(),
                        json!({"files": t.file_count, "rows": t.row_count, "bytes": t.byte_size}),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v["usage"] = json!({
        "files": usage.map_or(0, |u| u.file_count),
        "rows": usage.map_or(0, |u| u.row_count),
        "bytes": usage.map_or(0, |u| u.byte_size),
        "tables": tables,
    });
    Ok(v)
}

/// The registered tenants by id, with what each stores when `with_usage`
/// (a walk over the whole catalog: only for what is shown).
async fn tenants(
    control: &ControlClient,
    with_usage: bool,
) -> Result<BTreeMap<TenantId, (TenantRecord, Option<TenantTotals>)>, AdminError> {
    let status = if with_usage {
        control.cluster_status_with_usage().await?
    } else {
        control.cluster_status().await?
    };
    let mut usage: BTreeMap<String, TenantTotals> = status
        .usage
        .into_iter()
        .map(|u| (u.tenant.clone(), u))
        .collect();
    Ok(status
        .tenants
        .into_iter()
        .map(|t| {
            let u = usage.remove(t.id.as_str());
            (t.id.clone(), (t, u))
        })
        .collect())
}

async fn existing(
    control: &ControlClient,
    id: &TenantId,
    with_usage: bool,
) -> Result<(TenantRecord, Option<TenantTotals>), AdminError> {
    tenants(control, with_usage)
        .await?
        .remove(id)
        .ok_or_else(|| AdminError::NotFound(format!("tenant {id} is not registered")))
}

/// Every registered tenant, with its usage.
pub(crate) async fn list_tenants(control: &ControlClient) -> Result<Value, AdminError> {
    let views = tenants(control, true)
        .await?
        .values()
        .map(|(t, u)| view(t, u.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(views))
}

/// One tenant, with its usage.
pub(crate) async fn show_tenant(control: &ControlClient, id: &str) -> Result<Value, AdminError> {
    let (record, usage) = existing(control, &tenant_id(id)?, true).await?;
    view(&record, usage.as_ref())
}

/// Registers `id`; refused when it is taken (also by a concurrent create).
pub(crate) async fn create_tenant(
    control: &ControlClient,
    id: &str,
    changes: TenantChanges,
) -> Result<Value, AdminError> {
    let id = tenant_id(id)?;
    let taken = || {
        AdminError::Conflict(format!(
            "tenant {id} is already registered; change it with an update"
        ))
    };
    if tenants(control, false).await?.contains_key(&id) {
        return Err(taken());
    }
    let mut record = TenantRecord::new(id.clone());
    changes.apply(&mut record);
    match control.put_tenant_over(&record, None).await {
        Err(CatalogError::Conflict { .. }) => return Err(taken()),
        other => other?,
    }
    show_tenant(control, record.id.as_str()).await
}

/// How often an update is reapplied when others changed the tenant in
/// between.
const UPDATE_ATTEMPTS: usize = 5;

/// Changes the fields of `changes` on the registered tenant `id`, and only
/// those: the change is applied to the record read and stored only if no
/// one changed the tenant since (else read again and reapplied), so two
/// concurrent updates of different fields both take effect, and a legal
/// hold set meanwhile is never undone by a stale record.
pub(crate) async fn update_tenant(
    control: &ControlClient,
    id: &str,
    changes: TenantChanges,
) -> Result<Value, AdminError> {
    let id = tenant_id(id)?;
    let mut last = None;
    for _ in 0..UPDATE_ATTEMPTS {
        let (read, _) = existing(control, &id, false).await?;
        let mut record = read.clone();
        changes.apply(&mut record);
        match control.put_tenant_over(&record, Some(&read)).await {
            Ok(()) => return show_tenant(control, id.as_str()).await,
            Err(CatalogError::Conflict { reason }) => last = Some(reason),
            Err(e) => return Err(e.into()),
        }
    }
    Err(AdminError::Conflict(format!(
        "tenant {id} kept changing while it was updated ({}); try again",
        last.unwrap_or_default()
    )))
}

/// A token to create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewToken {
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) tenants: Vec<String>,
    #[serde(default)]
    pub(crate) description: String,
    /// Seconds it authenticates; absent: until revoked.
    pub(crate) expires_in_seconds: Option<u64>,
}

/// The fields of a token request, for error messages.
pub(crate) const TOKEN_FIELDS: &str =
    "{\"role\", \"tenants\": [..], \"description\", \"expires_in_seconds\"}";

/// Creates a token and returns it, shown this once.
pub(crate) async fn create_token(
    control: &ControlClient,
    new: NewToken,
) -> Result<Value, AdminError> {
    let names = TokenRole::ALL.map(TokenRole::name).join(", ");
    let role = TokenRole::parse(&new.role).ok_or_else(|| {
        AdminError::Invalid(format!("role {:?}: expected one of {names}", new.role))
    })?;
    let tenants = new
        .tenants
        .into_iter()
        .map(TenantId::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AdminError::Invalid(format!("tenants: {e}")))?;
    let mut made = generate_token(tenants, role, new.description)
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
    made.record.expires_at_micros = new.expires_in_seconds.map(|s| {
        let d = Duration::from_secs(s);
        spoor_common::time::now_micros()
            .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    });
    control.create_token(&made.record).await?;
    Ok(json!({
        "token": made.token,
        "token_id": made.record.token_id,
        "role": role.name(),
        "tenants": made.record.tenants,
        "expires_at": made.record.expires_at_micros.map(spoor_common::time::rfc3339),
        "note": "store the token now: only its hash is kept",
    }))
}

/// The tokens the caller may see, never their secrets or hashes.
pub(crate) async fn list_tokens(
    control: &ControlClient,
    tenant: Option<&str>,
) -> Result<Value, AdminError> {
    let tenant = tenant.map(tenant_id).transpose()?;
    let tokens = control.list_tokens(tenant.as_ref()).await?;
    Ok(Value::Array(
        tokens
            .into_iter()
            .map(|t| {
                json!({
                    "token_id": t.token_id,
                    "role": t.role.name(),
                    "tenants": t.tenants,
                    "description": t.description,
                    "revoked": t.revoked,
                    "expires_at": t.expires_at_micros.map(spoor_common::time::rfc3339),
                })
            })
            .collect(),
    ))
}

/// Revokes the token `id`.
pub(crate) async fn revoke_token(control: &ControlClient, id: &str) -> Result<Value, AdminError> {
    control.revoke_token(id).await?;
    Ok(json!({"revoked": id}))
}
