//! Log sources and field mappings: which events a rule's `logsource`
//! applies to, and which column holds a Sigma field's value.
//!
//! The mappings are data, one TOML file per log source family under
//! `correlate/mappings/` (built in), documented in `docs/rules.md`. A Sigma
//! field `F` of an event is read from the event's `unmapped` object when it
//! holds `F` (the source field as the shipper sent it), otherwise from the
//! column the mapping names for `F` under the rule's log source (ingest
//! removes a source field from `unmapped` only when it copied it verbatim
//! into a column, so that column then holds exactly `F`'s value).

use std::collections::BTreeMap;

use serde::Deserialize;
use thiserror::Error;

use crate::sigma::LogSource;

/// The built-in mapping files: (file name, text). A rule without a product
/// takes the first family that knows its category, so the order matters
/// (zeek's http log serves `proxy` and `webserver`, its conn log `firewall`).
pub const BUILTIN: &[(&str, &str)] = &[
    ("windows.toml", include_str!("../mappings/windows.toml")),
    ("linux.toml", include_str!("../mappings/linux.toml")),
    ("aws.toml", include_str!("../mappings/aws.toml")),
    ("azure.toml", include_str!("../mappings/azure.toml")),
    ("zeek.toml", include_str!("../mappings/zeek.toml")),
];

/// A mapping file that cannot be used.
#[derive(Debug, Error)]
#[error("field mapping file {file}: {reason}")]
pub struct MappingError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub reason: String,
}

/// One column test: the column's text equals one of the values (compared
/// case-insensitively).
pub type EventFilter = Vec<(String, Vec<String>)>;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FamilyFile {
    family: String,
    #[serde(default)]
    events: Vec<BTreeMap<String, OneOrMany>>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    logsource: Vec<LogSourceFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSourceFile {
    category: Option<String>,
    service: Option<String>,
    #[serde(default)]
    events: Vec<BTreeMap<String, OneOrMany>>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct Family {
    name: String,
    events: Vec<EventFilter>,
    fields: BTreeMap<String, String>,
    sources: Vec<Source>,
}

#[derive(Debug, Clone)]
struct Source {
    category: Option<String>,
    service: Option<String>,
    events: Vec<EventFilter>,
    fields: BTreeMap<String, String>,
}

/// What a rule's log source resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The events the rule applies to: every filter list must pass (each
    /// list: any of its entries). Empty: every event.
    pub filters: Vec<Vec<EventFilter>>,
    /// Sigma field → column.
    pub fields: BTreeMap<String, String>,
    /// Why the resolution is not exact, for `spoor rules check`.
    pub warning: Option<String>,
}

/// All log source families.
#[derive(Debug, Clone)]
pub struct Mappings {
    families: Vec<Family>,
}

fn filters(
    file: &str,
    raw: Vec<BTreeMap<String, OneOrMany>>,
    columns: &[&str],
) -> Result<Vec<EventFilter>, MappingError> {
    raw.into_iter()
        .map(|entry| {
            entry
                .into_iter()
                .map(|(column, values)| {
                    if !columns.contains(&column.as_str()) {
                        return Err(MappingError {
                            file: file.to_string(),
                            reason: format!(
                                "events filter names `{column}`, which is not an events column"
                            ),
                        });
                    }
                    let values = match values {
                        OneOrMany::One(v) => vec![v],
                        OneOrMany::Many(v) => v,
                    };
                    Ok((column, values.iter().map(|v| v.to_lowercase()).collect()))
                })
                .collect()
        })
        .collect()
}

fn check_columns(
    file: &str,
    fields: &BTreeMap<String, String>,
    columns: &[&str],
) -> Result<(), MappingError> {
    match fields.iter().find(|(_, c)| !columns.contains(&c.as_str())) {
        Some((field, column)) => Err(MappingError {
            file: file.to_string(),
            reason: format!("field `{field}` maps to `{column}`, which is not an events column"),
        }),
        None => Ok(()),
    }
}

fn same(a: &Option<String>, b: &str) -> bool {
    a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b))
}

impl Mappings {
    /// The built-in families.
    pub fn builtin() -> Result<Mappings, MappingError> {
        Mappings::from_files(BUILTIN.iter().map(|(f, t)| (f.to_string(), t.to_string())))
    }

    /// Families from (file name, TOML text) pairs; every column named must
    /// exist in the events schema.
    pub fn from_files(
        files: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Mappings, MappingError> {
        let schema = spoor_common::schema::event_schema();
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut families = Vec::new();
        for (file, text) in files {
            let raw: FamilyFile = toml::from_str(&text).map_err(|e| MappingError {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            check_columns(&file, &raw.fields, &columns)?;
            let mut sources = Vec::new();
            for s in raw.logsource {
                if s.category.is_none() && s.service.is_none() {
                    return Err(MappingError {
                        file: file.clone(),
                        reason: "a [[logsource]] needs a category or a service".into(),
                    });
                }
                check_columns(&file, &s.fields, &columns)?;
                sources.push(Source {
                    category: s.category,
                    service: s.service,
                    events: filters(&file, s.events, &columns)?,
                    fields: s.fields,
                });
            }
            families.push(Family {
                name: raw.family,
                events: filters(&file, raw.events, &columns)?,
                fields: raw.fields,
                sources,
            });
        }
        Ok(Mappings { families })
    }

    /// The family names.
    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.families.iter().map(|f| f.name.as_str())
    }

    /// Resolves a rule's log source.
    ///
    /// - A known product and a known category/service: that log source's
    ///   events (within the family's) and fields.
    /// - A known product, an unknown category/service: every event of the
    ///   family, the family's fields, and a warning.
    /// - No product: the first family that knows the category/service.
    /// - Nothing known: every event, no mapped fields (fields are read from
    ///   `unmapped` only), and a warning.
    pub fn resolve(&self, logsource: &LogSource) -> Resolved {
        let families: Vec<&Family> = match &logsource.product {
            Some(p) => self
                .families
                .iter()
                .filter(|f| f.name.eq_ignore_ascii_case(p))
                .collect(),
            None => self.families.iter().collect(),
        };
        let wanted = logsource.category.is_some() || logsource.service.is_some();
        for family in &families {
            let found = family.sources.iter().find(|s| {
                (logsource.category.is_none()
                    || same(
                        &s.category,
                        logsource.category.as_deref().unwrap_or_default(),
                    ))
                    && (logsource.service.is_none()
                        || same(&s.service, logsource.service.as_deref().unwrap_or_default()))
            });
            if let (true, Some(source)) = (wanted, found) {
                let mut fields = family.fields.clone();
                fields.extend(source.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                let mut filters = Vec::new();
                if !family.events.is_empty() {
                    filters.push(family.events.clone());
                }
                if !source.events.is_empty() {
                    filters.push(source.events.clone());
                }
                return Resolved {
                    filters,
                    fields,
                    warning: None,
                };
            }
        }
        let describe = || {
            [
                logsource.product.as_ref().map(|p| format!("product {p}")),
                logsource.category.as_ref().map(|c| format!("category {c}")),
                logsource.service.as_ref().map(|s| format!("service {s}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        };
        match (families.as_slice(), &logsource.product) {
            ([family], Some(_)) => Resolved {
                filters: if family.events.is_empty() {
                    Vec::new()
                } else {
                    vec![family.events.clone()]
                },
                fields: family.fields.clone(),
                warning: wanted.then(|| {
                    format!(
                        "log source ({}) has no mapping; the rule applies to every {} event",
                        describe(),
                        family.name
                    )
                }),
            },
            _ if logsource.product.is_none() && !wanted => Resolved {
                filters: Vec::new(),
                fields: BTreeMap::new(),
                warning: Some(
                    "the rule has no `logsource`: it applies to every event and reads fields from \
                     `unmapped` only"
                        .into(),
                ),
            },
            _ => Resolved {
                filters: Vec::new(),
                fields: BTreeMap::new(),
                warning: Some(format!(
                    "log source ({}) has no mapping; the rule applies to every event and reads \
                     fields from `unmapped` only",
                    describe()
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(product: Option<&str>, category: Option<&str>, service: Option<&str>) -> LogSource {
        LogSource {
            product: product.map(str::to_string),
            category: category.map(str::to_string),
            service: service.map(str::to_string),
        }
    }

    #[test]
    fn every_builtin_family_loads() {
        let m = Mappings::builtin().expect("built-in mapping files");
        assert_eq!(
            m.families().collect::<Vec<_>>(),
            ["windows", "linux", "aws", "azure", "zeek"]
        );
    }

    #[test]
    fn known_log_sources_give_their_events_and_fields() {
        let m = Mappings::builtin().expect("mappings");
        let r = m.resolve(&source(Some("windows"), Some("process_creation"), None));
        assert_eq!(r.warning, None);
        assert_eq!(
            r.fields.get("Image").map(String::as_str),
            Some("process_path")
        );
        assert_eq!(
            r.fields.get("EventID").map(String::as_str),
            Some("event_code")
        );
        assert_eq!(
            r.filters.len(),
            2,
            "the family's events, then the log source's"
        );
        // A product-less category goes to the first family that knows it.
        let r = m.resolve(&source(None, Some("proxy"), None));
        assert_eq!(r.warning, None, "{r:?}");
        assert!(!r.filters.is_empty());
    }

    #[test]
    fn unknown_log_sources_are_warned_about() {
        let m = Mappings::builtin().expect("mappings");
        let r = m.resolve(&source(Some("windows"), Some("no_such_category"), None));
        assert!(
            r.warning
                .as_deref()
                .is_some_and(|w| w.contains("every windows event")),
            "{r:?}"
        );
        assert_eq!(r.filters.len(), 1, "the family's events only");
        let r = m.resolve(&source(Some("macos"), Some("process_creation"), None));
        assert!(r.filters.is_empty() && r.fields.is_empty());
        assert!(
            r.warning
                .as_deref()
                .is_some_and(|w| w.contains("every event")),
            "{r:?}"
        );
        let r = m.resolve(&LogSource::default());
        assert!(
            r.warning
                .as_deref()
                .is_some_and(|w| w.contains("no `logsource`")),
            "{r:?}"
        );
    }

    #[test]
    fn files_naming_what_is_not_a_column_are_refused() {
        let bad = |text: &str| {
            Mappings::from_files([("x.toml".to_string(), text.to_string())])
                .expect_err("refused")
                .to_string()
        };
        let e = bad("family = \"f\"\n[fields]\nImage = \"no_such_column\"\n");
        assert!(e.contains("x.toml") && e.contains("no_such_column"), "{e}");
        let e = bad("family = \"f\"\nevents = [{ nope = \"x\" }]\n");
        assert!(e.contains("nope"), "{e}");
        let e = bad("family = \"f\"\n[[logsource]]\n[logsource.fields]\n");
        assert!(e.contains("category or a service"), "{e}");
        let e = bad("family = \"f\"\nunknown_key = 1\n");
        assert!(e.contains("unknown_key"), "{e}");
    }
}
