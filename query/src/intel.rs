//! Threat-intel indicator lists, per tenant: IP addresses and CIDR blocks,
//! domains, URLs, hashes, any value a hunt compares against.
//!
//! A list is one JSON object in the lake at
//! `tenants/{tenant}/intel/{name}.json` (so every query node sees it at
//! once), written by `PUT /v1/intel/{name}`. Sessions see the lists of
//! their tenants two ways: the `intel` table (`list`, `indicator`,
//! `tenant`) for joins, and `ioc_match(value, 'list')`, true when the value
//! equals an indicator of that list (case-insensitive, surrounding spaces
//! ignored) or, for an address, lies in one of its CIDR blocks.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use spoor_common::tenant::TenantId;

use crate::functions::Cidr;

/// Most indicators one list may hold.
pub const MAX_INDICATORS: usize = 1_000_000;
/// Longest indicator accepted, bytes.
pub const MAX_INDICATOR_BYTES: usize = 2048;

/// Why a list could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum IntelError {
    /// The name or the content is not acceptable; the message says where.
    #[error("{0}")]
    Invalid(String),
    /// No such list.
    #[error("no indicator list {0:?}")]
    NotFound(String),
    /// The lake could not be read or written.
    #[error("indicator lists in the lake: {0}")]
    Store(#[from] object_store::Error),
    /// A stored list does not parse.
    #[error("indicator list {key} is damaged: {reason}")]
    Damaged {
        /// Its object key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// A stored list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorList {
    /// Its name.
    pub name: String,
    /// When it was last replaced, RFC 3339.
    pub updated_at: String,
    /// The indicators, normalized (trimmed, lower case), without duplicates.
    pub indicators: Vec<String>,
}

/// Whether `name` may name a list: 1 to 64 of `a-z 0-9 _ -`.
pub fn check_name(name: &str) -> Result<(), IntelError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IntelError::Invalid(format!(
            "list name {name:?}: use 1 to 64 characters of a-z, 0-9, _ and -"
        )))
    }
}

fn prefix(tenant: &TenantId) -> String {
    format!("tenants/{tenant}/intel/")
}

fn key(tenant: &TenantId, name: &str) -> String {
    format!("{}{name}.json", prefix(tenant))
}

/// The indicators of an upload: a JSON array of strings, or text with one
/// indicator per line (`#` starts a comment; blank lines are skipped).
/// Errors name the line (or array position).
pub fn parse_upload(body: &[u8]) -> Result<Vec<String>, IntelError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| IntelError::Invalid(format!("the list is not UTF-8 text: {e}")))?;
    let raw: Vec<(usize, String)> = if text.trim_start().starts_with('[') {
        let values: Vec<String> = serde_json::from_str(text).map_err(|e| {
            IntelError::Invalid(format!("a JSON list must be an array of strings: {e}"))
        })?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (i + 1, v))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .map(|(i, line)| {
                (
                    i + 1,
                    line.split('#').next().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (at, value) in raw {
        let value = value.trim().to_lowercase();
        if value.is_empty() {
            continue;
        }
        if value.len() > MAX_INDICATOR_BYTES || value.chars().any(char::is_control) {
            return Err(IntelError::Invalid(format!(
                "indicator {at}: longer than {MAX_INDICATOR_BYTES} bytes or has control characters"
            )));
        }
        if value.contains('/') && value.parse::<IpAddr>().is_err() && looks_like_block(&value) {
            Cidr::parse(&value).ok_or_else(|| {
                IntelError::Invalid(format!("indicator {at}: {value:?} is not a CIDR block"))
            })?;
        }
        if seen.insert(value.clone()) {
            out.push(value);
        }
    }
    if out.len() > MAX_INDICATORS {
        return Err(IntelError::Invalid(format!(
            "{} indicators; a list holds at most {MAX_INDICATORS}",
            out.len()
        )));
    }
    Ok(out)
}

/// `a.b.c.d/n` or `x:y::/n`: an address before the slash.
fn looks_like_block(value: &str) -> bool {
    value
        .split_once('/')
        .is_some_and(|(addr, _)| addr.parse::<IpAddr>().is_ok())
}

/// Replaces (or creates) a tenant's list.
pub async fn put(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    name: &str,
    indicators: Vec<String>,
) -> Result<IndicatorList, IntelError> {
    check_name(name)?;
    let list = IndicatorList {
        name: name.to_string(),
        updated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        indicators,
    };
    let bytes = serde_json::to_vec(&list).map_err(|e| IntelError::Invalid(e.to_string()))?;
    store
        .put(&Path::from(key(tenant, name)), PutPayload::from(bytes))
        .await?;
    Ok(list)
}

/// Deletes a tenant's list.
pub async fn delete(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    name: &str,
) -> Result<(), IntelError> {
    check_name(name)?;
    let path = Path::from(key(tenant, name));
    match store.head(&path).await {
        Ok(_) => Ok(store.delete(&path).await?),
        Err(object_store::Error::NotFound { .. }) => Err(IntelError::NotFound(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// A list read from the lake, parsed once and kept ready for queries: its
/// matching sets and its rows of the `intel` table.
#[derive(Debug)]
pub struct LoadedList {
    /// The tenant it belongs to.
    pub tenant: TenantId,
    /// The list as stored.
    pub list: IndicatorList,
    set: IndicatorSet,
    rows: RecordBatch,
}

impl LoadedList {
    /// Prepares `list` of `tenant` for matching and for the `intel` table.
    pub fn new(tenant: TenantId, list: IndicatorList) -> Result<Self, IntelError> {
        let mut set = IndicatorSet::default();
        list.indicators.iter().for_each(|i| set.add(i));
        let n = list.indicators.len();
        let rows = RecordBatch::try_new(
            intel_schema(),
            vec![
                Arc::new(StringArray::from(vec![list.name.as_str(); n])) as ArrayRef,
                Arc::new(StringArray::from_iter_values(&list.indicators)),
                Arc::new(StringArray::from(vec![tenant.as_str(); n])),
            ],
        )
        .map_err(|e| IntelError::Invalid(format!("list {}: {e}", list.name)))?;
        Ok(LoadedList {
            tenant,
            list,
            set,
            rows,
        })
    }

    /// The list's rows of the `intel` table.
    pub fn rows(&self) -> &RecordBatch {
        &self.rows
    }
}

/// What identifies one stored version of a list object.
type ObjectVersion = (chrono::DateTime<chrono::Utc>, u64, Option<String>);

/// The lists read so far, by object key and version. Every query lists the
/// tenants' list objects (so a change made on any node is seen at once) but
/// reads and parses a list only when its object changed: a million-indicator
/// list is not parsed per query.
#[derive(Debug, Default)]
pub struct IntelCache {
    lists: std::sync::Mutex<HashMap<String, (ObjectVersion, Arc<LoadedList>)>>,
}

impl IntelCache {
    /// Every list of each of `tenants`, sorted by tenant and name.
    pub async fn load(
        &self,
        store: &dyn ObjectStore,
        tenants: &[TenantId],
    ) -> Result<Vec<Arc<LoadedList>>, IntelError> {
        let mut out = Vec::new();
        for tenant in tenants {
            let tenant_prefix = prefix(tenant);
            let objects: Vec<_> = store
                .list(Some(&Path::from(tenant_prefix.as_str())))
                .try_collect()
                .await?;
            let mut seen = HashSet::new();
            for object in objects {
                let key = object.location.to_string();
                if !key.ends_with(".json") {
                    continue;
                }
                let version = (object.last_modified, object.size, object.e_tag.clone());
                let cached = self.cached(&key, &version);
                let loaded = match cached {
                    Some(loaded) => loaded,
                    None => {
                        let bytes = store.get(&object.location).await?.bytes().await?;
                        let list: IndicatorList =
                            serde_json::from_slice(&bytes).map_err(|e| IntelError::Damaged {
                                key: key.clone(),
                                reason: e.to_string(),
                            })?;
                        let loaded = Arc::new(LoadedList::new(tenant.clone(), list)?);
                        if let Ok(mut lists) = self.lists.lock() {
                            lists.insert(key.clone(), (version, loaded.clone()));
                        }
                        loaded
                    }
                };
                seen.insert(key);
                out.push(loaded);
            }
            // Deleted lists leave the cache.
            if let Ok(mut lists) = self.lists.lock() {
                lists.retain(|key, _| !key.starts_with(&tenant_prefix) || seen.contains(key));
            }
        }
        out.sort_by(|a, b| (&a.tenant, &a.list.name).cmp(&(&b.tenant, &b.list.name)));
        Ok(out)
    }

    fn cached(&self, key: &str, version: &ObjectVersion) -> Option<Arc<LoadedList>> {
        let lists = self.lists.lock().ok()?;
        lists
            .get(key)
            .filter(|(v, _)| v == version)
            .map(|(_, loaded)| loaded.clone())
    }
}

/// The `intel` table's schema.
pub fn intel_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("list", DataType::Utf8, false),
        Field::new("indicator", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, false),
    ]))
}

/// One list, ready to match against.
#[derive(Debug, Default)]
struct IndicatorSet {
    exact: HashSet<String>,
    blocks: Vec<Cidr>,
}

impl IndicatorSet {
    fn add(&mut self, indicator: &str) {
        if looks_like_block(indicator)
            && let Some(block) = Cidr::parse(indicator)
        {
            self.blocks.push(block);
            return;
        }
        self.exact.insert(indicator.to_string());
    }

    fn matches(&self, value: &str) -> bool {
        let value = value.trim();
        let hit = if value.bytes().any(|b| b.is_ascii_uppercase()) {
            self.exact.contains(&value.to_lowercase())
        } else {
            self.exact.contains(value)
        };
        hit || (!self.blocks.is_empty()
            && value
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.blocks.iter().any(|b| b.contains(ip))))
    }
}

/// `ioc_match(value, 'list')` over the lists of a session's tenants (a
/// list name several tenants use matches any of them).
#[derive(Debug)]
pub struct IocMatch {
    signature: Signature,
    /// By list name, that name's lists of the session's tenants.
    lists: Arc<HashMap<String, Vec<Arc<LoadedList>>>>,
}

impl PartialEq for IocMatch {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.lists, &other.lists)
    }
}

impl Eq for IocMatch {}

impl std::hash::Hash for IocMatch {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

impl IocMatch {
    /// The function over `lists`.
    pub fn new(lists: &[Arc<LoadedList>]) -> Self {
        let mut by_name: HashMap<String, Vec<Arc<LoadedList>>> = HashMap::new();
        for loaded in lists {
            by_name
                .entry(loaded.list.name.clone())
                .or_default()
                .push(loaded.clone());
        }
        IocMatch {
            signature: Signature::uniform(2, vec![DataType::Utf8], Volatility::Stable),
            lists: Arc::new(by_name),
        }
    }

    /// Whether `value` is in the lists named `name`.
    fn matches(&self, name: &str, value: &str) -> DfResult<bool> {
        Ok(self.named(name)?.iter().any(|l| l.set.matches(value)))
    }

    fn named(&self, name: &str) -> DfResult<&[Arc<LoadedList>]> {
        self.lists.get(name).ok_or_else(|| {
            let mut known: Vec<&str> = self.lists.keys().map(String::as_str).collect();
            known.sort_unstable();
            DataFusionError::Plan(format!(
                "ioc_match: no indicator list {name:?} (lists: {}); upload one with PUT /v1/intel/{name}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        }).map(Vec::as_slice)
    }
}

impl ScalarUDFImpl for IocMatch {
    fn name(&self) -> &str {
        "ioc_match"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Boolean)
    }

    /// A literal list name that does not exist is refused while planning.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        if let Some(name) = crate::functions::literal_text(&args, 1) {
            self.named(&name)?;
        }
        Ok(crate::functions::boolean_field(self.name()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let [values, names] = crate::functions::text_args::<2>("ioc_match", args)?;
        let rows = values.len();
        let mut out = Vec::with_capacity(rows);
        for i in 0..values.len() {
            if values.is_null(i) || names.is_null(i) {
                out.push(None);
            } else {
                out.push(Some(self.matches(names.value(i), values.value(i))?));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_normalized_and_errors_name_the_line() {
        let text =
            b"# tor exits\n10.0.0.1\n  EVIL.example  \n\n192.0.2.0/24 # block\nevil.example\n";
        assert_eq!(
            parse_upload(text).expect("text"),
            ["10.0.0.1", "evil.example", "192.0.2.0/24"]
        );
        assert_eq!(
            parse_upload(br#"["A", "b", "a"]"#).expect("json"),
            ["a", "b"]
        );
        let err = parse_upload(b"ok\n10.0.0.0/40\n").expect_err("bad block");
        assert!(err.to_string().contains("indicator 2"), "{err}");
        assert!(parse_upload(b"[1, 2]").is_err());
        assert!(check_name("tor-exits_2").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn matches_exact_case_insensitive_and_blocks() {
        let tenant = TenantId::new("acme").expect("t");
        let list = IndicatorList {
            name: "bad".into(),
            updated_at: String::new(),
            indicators: vec![
                "evil.example".into(),
                "192.0.2.0/24".into(),
                "abc123".into(),
            ],
        };
        let f = IocMatch::new(&[Arc::new(LoadedList::new(tenant, list).expect("list"))]);
        let hit = |v: &str| f.matches("bad", v).expect("list");
        assert!(hit("EVIL.example"));
        assert!(hit(" 192.0.2.200 "));
        assert!(!hit("192.0.3.1"));
        assert!(hit("ABC123"));
        assert!(!hit("sub.evil.example"));
        assert!(f.matches("other", "x").is_err());
    }

    #[tokio::test]
    async fn lists_are_stored_per_tenant() {
        let store = object_store::memory::InMemory::new();
        let (acme, globex) = (
            TenantId::new("acme").expect("t"),
            TenantId::new("globex").expect("t"),
        );
        put(&store, &acme, "bad", vec!["x".into()])
            .await
            .expect("put");
        put(&store, &globex, "bad", vec!["y".into()])
            .await
            .expect("put");
        let cache = IntelCache::default();
        let acme_lists = cache
            .load(&store, std::slice::from_ref(&acme))
            .await
            .expect("load");
        assert_eq!(acme_lists.len(), 1);
        assert_eq!(acme_lists[0].list.indicators, ["x"]);
        // Unchanged: the parsed list is reused, not read again.
        let again = cache
            .load(&store, std::slice::from_ref(&acme))
            .await
            .expect("load");
        assert!(Arc::ptr_eq(&acme_lists[0], &again[0]));
        // Replaced: read again.
        put(&store, &acme, "bad", vec!["z".into()])
            .await
            .expect("put");
        let replaced = cache
            .load(&store, std::slice::from_ref(&acme))
            .await
            .expect("load");
        assert_eq!(replaced[0].list.indicators, ["z"]);
        assert_eq!(
            cache
                .load(&store, &[acme.clone(), globex])
                .await
                .expect("both")
                .len(),
            2
        );
        delete(&store, &acme, "bad").await.expect("delete");
        assert!(matches!(
            delete(&store, &acme, "bad").await,
            Err(IntelError::NotFound(_))
        ));
        assert!(cache.load(&store, &[acme]).await.expect("load").is_empty());
    }
}
