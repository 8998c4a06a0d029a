//! Saved queries, per tenant: the hunts a SOC keeps and reruns (the
//! console's "Saved" list).
//!
//! A saved query is one JSON object in the lake at
//! `tenants/{tenant}/saved-queries/{key}.json`, `key` being the name in
//! URL-safe base64, so every query node sees it at once and a name may be
//! any text a hunter types ("Encoded PowerShell, last week"). Saving under
//! an existing name replaces it.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use spoor_common::tenant::TenantId;

/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 120;
/// Longest saved SQL, bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
/// Most saved queries a tenant keeps.
pub const MAX_SAVED_PER_TENANT: usize = 1000;

/// Why a saved query could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum SavedQueryError {
    /// The name or the SQL is not acceptable; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// No saved query of that name.
    #[error("no saved query {0:?}")]
    NotFound(String),
    /// The lake could not be read or written.
    #[error("saved queries in the lake: {0}")]
    Store(#[from] object_store::Error),
    /// A stored query does not parse.
    #[error("saved query {key} is damaged: {reason}")]
    Damaged {
        /// Its object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// A saved query as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedQuery {
    /// Its name, unique within the tenant.
    pub name: String,
    /// The SQL.
    pub sql: String,
    /// Who saved it last (a token id; `anonymous` without tokens).
    pub updated_by: String,
    /// When, RFC 3339.
    pub updated_at: String,
}

fn prefix(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/saved-queries/")
}

fn key(tenant: &TenantId, name: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name.as_bytes());
    format!("{}{encoded}.json", prefix(tenant))
}

/// Whether `name` and `sql` may be saved: a name of 1 to
/// [`MAX_NAME_CHARS`] characters without control characters, SQL that is
/// not blank and at most [`MAX_SQL_BYTES`].
pub fn check(name: &str, sql: &str) -> Result<(), SavedQueryError> {
    let chars = name.chars().count();
    if name.trim().is_empty() || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(SavedQueryError::Invalid(format!(
            "name: 1 to {MAX_NAME_CHARS} characters without control characters (got {chars})"
        )));
    }
    if sql.trim().is_empty() {
        return Err(SavedQueryError::Invalid("sql: empty".into()));
    }
    if sql.len() > MAX_SQL_BYTES {
        return Err(SavedQueryError::Invalid(format!(
            "sql: {} bytes; a saved query holds at most {MAX_SQL_BYTES}",
            sql.len()
        )));
    }
    Ok(())
}

/// Saves (or replaces) `tenant`'s query `name`.
pub async fn put(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    name: &str,
    sql: &str,
    updated_by: &str,
) -> Result<SavedQuery, SavedQueryError> {
    check(name, sql)?;
    let path = Path::from(key(tenant, name));
    let exists = match store.head(&path).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if !exists && count(store, tenant).await? >= MAX_SAVED_PER_TENANT {
        return Err(SavedQueryError::Invalid(format!(
            "the tenant has {MAX_SAVED_PER_TENANT} saved queries, the most it keeps: delete one first"
        )));
    }
    let saved = SavedQuery {
        name: name.to_string(),
        sql: sql.to_string(),
        updated_by: updated_by.to_string(),
        updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    let bytes = serde_json::to_vec(&saved).map_err(|e| SavedQueryError::Invalid(e.to_string()))?;
    store.put(&path, PutPayload::from(bytes)).await?;
    Ok(saved)
}

async fn count(store: &dyn ObjectStore, tenant: &TenantId) -> Result<usize, SavedQueryError> {
    let listed: Vec<_> = store
        .list(Some(&Path::from(prefix(tenant))))
        .try_collect()
        .await?;
    Ok(listed.len())
}

/// Deletes `tenant`'s query `name`.
pub async fn delete(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    name: &str,
) -> Result<(), SavedQueryError> {
    let path = Path::from(key(tenant, name));
    match store.head(&path).await {
        Ok(_) => Ok(store.delete(&path).await?),
        Err(object_store::Error::NotFound { .. }) => {
            Err(SavedQueryError::NotFound(name.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `tenant`'s saved queries, by name.
pub async fn list(
    store: &dyn ObjectStore,
    tenant: &TenantId,
) -> Result<Vec<SavedQuery>, SavedQueryError> {
    let objects: Vec<_> = store
        .list(Some(&Path::from(prefix(tenant))))
        .try_collect()
        .await?;
    let mut out = Vec::with_capacity(objects.len());
    for meta in objects {
        let bytes = match store.get(&meta.location).await {
            Ok(got) => got.bytes().await?,
            // Deleted between the listing and the read.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let saved: SavedQuery =
            serde_json::from_slice(&bytes).map_err(|e| SavedQueryError::Damaged {
                key: meta.location.to_string(),
                reason: e.to_string(),
            })?;
        out.push(saved);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn tenant(name: &str) -> TenantId {
        TenantId::new(name).expect("a valid tenant name")
    }

    #[tokio::test]
    async fn saved_queries_are_per_tenant_and_replaced_by_name() {
        let store = InMemory::new();
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        put(
            &store,
            &acme,
            "Encoded PowerShell / last week",
            "SELECT 1",
            "t1",
        )
        .await
        .expect("saved");
        put(
            &store,
            &acme,
            "Encoded PowerShell / last week",
            "SELECT 2",
            "t2",
        )
        .await
        .expect("replaced");
        put(&store, &globex, "other", "SELECT 3", "t3")
            .await
            .expect("saved");
        let listed = list(&store, &acme).await.expect("listed");
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].sql, "SELECT 2");
        assert_eq!(listed[0].updated_by, "t2");
        delete(&store, &acme, "Encoded PowerShell / last week")
            .await
            .expect("deleted");
        assert!(list(&store, &acme).await.expect("listed").is_empty());
        assert_eq!(list(&store, &globex).await.expect("listed").len(), 1);
        assert!(matches!(
            delete(&store, &acme, "gone").await,
            Err(SavedQueryError::NotFound(_))
        ));
    }

    #[test]
    fn bad_names_and_sql_are_refused_saying_which() {
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        for (name, sql, field) in [
            ("", "SELECT 1", "name"),
            ("  ", "SELECT 1", "name"),
            ("a\nb", "SELECT 1", "name"),
            (long.as_str(), "SELECT 1", "name"),
            ("ok", " ", "sql"),
        ] {
            let e = check(name, sql).expect_err("refused").to_string();
            assert!(e.starts_with(field), "{name:?}/{sql:?}: {e}");
        }
        let big = "x".repeat(MAX_SQL_BYTES + 1);
        assert!(check("ok", &big).is_err());
        assert!(check("ok", "SELECT 1").is_ok());
    }
}
