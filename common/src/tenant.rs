//! Tenant identifiers.

use serde::{Deserialize, Serialize};

/// A validated tenant id: 1–64 characters of lowercase ASCII letters, digits,
/// `-` and `_`, starting with a letter or digit. The id appears in object keys
/// and SQL, so nothing else is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a tenant id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id {id:?}: {reason}")]
pub struct InvalidTenantId {
    /// The refused id.
    pub id: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl TenantId {
    /// The tenant `standalone` serves until tenancy lands.
    pub const DEFAULT: &'static str = "default";

    /// The cluster's own tenant: it holds the audit trail, only the
    /// cluster's admin reads it, and no tenant can be registered under it.
    pub const CLUSTER: &'static str = "spoor";

    /// Validates an id.
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidTenantId> {
        let id = id.into();
        let fail = |reason| {
            Err(InvalidTenantId {
                id: id.clone(),
                reason,
            })
        };
        if id.is_empty() || id.len() > 64 {
            return fail("must be 1 to 64 characters long");
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return fail("may hold only lowercase letters, digits, '-' and '_'");
        }
        if id.starts_with(['-', '_']) {
            return fail("must start with a letter or digit");
        }
        Ok(TenantId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidTenantId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        TenantId::new(value)
    }
}

impl From<TenantId> for String {
    fn from(value: TenantId) -> Self {
        value.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_the_rest() {
        assert!(TenantId::new("default").is_ok());
        assert!(TenantId::new("acme-corp_2").is_ok());
        for bad in ["", "Acme", "a/b", "../x", "-a", "a b", &"x".repeat(65)] {
            let err = TenantId::new(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid tenant id"));
        }
    }
}
