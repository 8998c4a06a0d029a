//! Sigma rules read from YAML into a checked model (the first stage of the
//! detection engine; compilation to Arrow predicates comes next).
//!
//! A file may hold several YAML documents. Each detection rule document
//! becomes a [`Rule`]; a document that does not parse, or whose detection
//! uses a modifier, value or condition Sigma does not define, becomes a
//! [`RuleError`] naming its line and column, and never affects the other
//! documents. Correlation and filter documents are recognised and refused
//! with that reason until the engine runs them.

pub mod condition;
pub mod coverage;
pub mod meta;

use std::fmt;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

pub use condition::Condition;
pub use meta::{CmpOp, Correlation, CorrelationKind, Filter, SqlRule, Suppression};

/// A value to match.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text (with Sigma wildcards unless a modifier says otherwise).
    Str(String),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A boolean (`exists`).
    Bool(bool),
    /// `null`: the field is absent or empty.
    Null,
}

/// Value modifiers (sigma-appendix-modifiers.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modifier {
    /// Value anywhere in the field.
    Contains,
    /// Field starts with the value.
    StartsWith,
    /// Field ends with the value.
    EndsWith,
    /// All values must match (not any).
    All,
    /// A regular expression.
    Re,
    /// Regex flag: case-insensitive.
    ReI,
    /// Regex flag: multi-line.
    ReM,
    /// Regex flag: dot matches newline.
    ReS,
    /// An IP network.
    Cidr,
    /// Base64 of the value.
    Base64,
    /// Base64 of the value at each of the three offsets.
    Base64Offset,
    /// The value as UTF-16LE.
    Utf16le,
    /// The value as UTF-16BE.
    Utf16be,
    /// The value as UTF-16 with a byte-order mark.
    Utf16,
    /// Same as `utf16le`.
    Wide,
    /// Command-line dash variants (`-`, `/`, en and em dashes).
    Windash,
    /// Whether the field exists.
    Exists,
    /// Compare with another field of the same event.
    FieldRef,
    /// Case-sensitive.
    Cased,
    /// Not equal.
    Neq,
    /// Numeric comparisons.
    Lt,
    /// Less or equal.
    Lte,
    /// Greater.
    Gt,
    /// Greater or equal.
    Gte,
    /// Placeholder expansion (`%name%`).
    Expand,
    /// Part of a date: minute.
    Minute,
    /// Hour.
    Hour,
    /// Day.
    Day,
    /// Week.
    Week,
    /// Month.
    Month,
    /// Year.
    Year,
}

impl Modifier {
    /// Parses a modifier name (case-insensitive).
    pub fn parse(name: &str) -> Option<Modifier> {
        Some(match name.to_ascii_lowercase().as_str() {
            "contains" => Modifier::Contains,
            "startswith" => Modifier::StartsWith,
            "endswith" => Modifier::EndsWith,
            "all" => Modifier::All,
            "re" => Modifier::Re,
            "i" => Modifier::ReI,
            "m" => Modifier::ReM,
            "s" => Modifier::ReS,
            "cidr" => Modifier::Cidr,
            "base64" => Modifier::Base64,
            "base64offset" => Modifier::Base64Offset,
            "utf16le" => Modifier::Utf16le,
            "utf16be" => Modifier::Utf16be,
            "utf16" => Modifier::Utf16,
            "wide" => Modifier::Wide,
            "windash" => Modifier::Windash,
            "exists" => Modifier::Exists,
            "fieldref" => Modifier::FieldRef,
            "cased" => Modifier::Cased,
            "neq" => Modifier::Neq,
            "lt" => Modifier::Lt,
            "lte" => Modifier::Lte,
            "gt" => Modifier::Gt,
            "gte" => Modifier::Gte,
            "expand" => Modifier::Expand,
            "minute" => Modifier::Minute,
            "hour" => Modifier::Hour,
            "day" => Modifier::Day,
            "week" => Modifier::Week,
            "month" => Modifier::Month,
            "year" => Modifier::Year,
            _ => return None,
        })
    }
}

/// One field test: `Field|mod|mod: value(s)`; without a field, a keyword
/// (full-text) search.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldMatch {
    /// The field, `None` for keywords.
    pub field: Option<String>,
    /// Modifiers, in order.
    pub modifiers: Vec<Modifier>,
    /// Values: any must match (all, with `|all`).
    pub values: Vec<Value>,
}

/// A search identifier's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Search {
    /// Every group may match (a list of maps); within a group every field
    /// test must (a map). A single map is one group.
    AnyOf(Vec<Vec<FieldMatch>>),
}

/// Where a rule's events come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSource {
    /// `product` (windows, linux, aws, …).
    pub product: Option<String>,
    /// `category` (process_creation, …).
    pub category: Option<String>,
    /// `service` (security, sysmon, …).
    pub service: Option<String>,
}

/// A detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `title`.
    pub title: String,
    /// `id`.
    pub id: Option<String>,
    /// `name`: how correlation rules and filters may refer to it.
    pub name: Option<String>,
    /// `level`.
    pub level: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `tags`.
    pub tags: Vec<String>,
    /// `logsource`.
    pub logsource: LogSource,
    /// Search identifiers in file order.
    pub searches: Vec<(String, Search)>,
    /// The condition(s): any may match.
    pub conditions: Vec<Condition>,
    /// `suppression` (Spoor's own attribute).
    pub suppression: Option<meta::Suppression>,
    /// The line of the document's start (1-based).
    pub line: usize,
}

/// Why a document is not a usable rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Line (1-based).
    pub line: usize,
    /// Column (1-based).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

pub(crate) fn error_at(node: &MarkedYaml<'_>, message: impl Into<String>) -> RuleError {
    RuleError {
        line: node.span.start.line(),
        column: node.span.start.col() + 1,
        message: message.into(),
    }
}

pub(crate) fn text<'a>(node: &'a MarkedYaml<'_>) -> Option<&'a str> {
    node.data.as_str()
}

pub(crate) fn scalar(node: &MarkedYaml<'_>) -> Result<Value, RuleError> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Ok(Value::Str(s.to_string())),
        YamlData::Value(Scalar::Integer(i)) => Ok(Value::Int(*i)),
        YamlData::Value(Scalar::FloatingPoint(f)) => Ok(Value::Float(f.into_inner())),
        YamlData::Value(Scalar::Boolean(b)) => Ok(Value::Bool(*b)),
        YamlData::Value(Scalar::Null) => Ok(Value::Null),
        YamlData::Representation(s, _, _) => Ok(Value::Str(s.to_string())),
        _ => Err(error_at(
            node,
            "expected a single value (text, number, boolean or null)",
        )),
    }
}

fn field_match(key: &MarkedYaml<'_>, value: &MarkedYaml<'_>) -> Result<FieldMatch, RuleError> {
    let key_text = match &key.data {
        YamlData::Value(Scalar::Null) => "",
        _ => text(key).ok_or_else(|| error_at(key, "a field name must be text"))?,
    };
    let mut parts = key_text.split('|');
    let field = parts.next().unwrap_or_default();
    let mut modifiers = Vec::new();
    for name in parts {
        let m = Modifier::parse(name).ok_or_else(|| {
            error_at(
                key,
                format!("unknown value modifier `{name}` in `{key_text}`"),
            )
        })?;
        modifiers.push(m);
    }
    let values = match &value.data {
        YamlData::Sequence(items) => {
            let values = items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
            if values.contains(&Value::Null) && values.len() > 1 {
                return Err(error_at(
                    value,
                    "`null` must be a value of its own, not in a list",
                ));
            }
            values
        }
        _ => vec![scalar(value)?],
    };
    if modifiers.contains(&Modifier::Exists) && !matches!(values.as_slice(), [Value::Bool(_)]) {
        return Err(error_at(value, "`exists` takes true or false"));
    }
    if modifiers.contains(&Modifier::Re) {
        for v in &values {
            if let Value::Str(re) = v {
                regex::Regex::new(re)
                    .map_err(|e| error_at(value, format!("regular expression {re:?}: {e}")))?;
            }
        }
    }
    Ok(FieldMatch {
        field: (!field.is_empty()).then(|| field.to_string()),
        modifiers,
        values,
    })
}

fn group(node: &MarkedYaml<'_>) -> Result<Vec<FieldMatch>, RuleError> {
    match &node.data {
        YamlData::Mapping(map) => map.iter().map(|(k, v)| field_match(k, v)).collect(),
        _ => Err(error_at(node, "expected a map of field tests")),
    }
}

fn search(node: &MarkedYaml<'_>) -> Result<Search, RuleError> {
    match &node.data {
        YamlData::Mapping(_) => Ok(Search::AnyOf(vec![group(node)?])),
        YamlData::Sequence(items)
            if items.iter().all(|i| matches!(i.data, YamlData::Mapping(_))) =>
        {
            Ok(Search::AnyOf(
                items.iter().map(group).collect::<Result<_, _>>()?,
            ))
        }
        YamlData::Sequence(items) => {
            // Keywords: any of the values anywhere in the event.
            let values = items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
            Ok(Search::AnyOf(vec![vec![FieldMatch {
                field: None,
                modifiers: Vec::new(),
                values,
            }]]))
        }
        _ => Ok(Search::AnyOf(vec![vec![FieldMatch {
            field: None,
            modifiers: Vec::new(),
            values: vec![scalar(node)?],
        }]])),
    }
}

fn names(condition: &Condition, out: &mut Vec<(bool, Option<String>)>) {
    match condition {
        Condition::Search(s) => out.push((false, Some(s.clone()))),
        Condition::And(a, b) | Condition::Or(a, b) => {
            names(a, out);
            names(b, out);
        }
        Condition::Not(a) => names(a, out),
        Condition::OneOf(p) | Condition::AllOf(p) => out.push((true, p.clone())),
    }
}

/// A detection's searches (in file order) and conditions.
pub(crate) type DetectionBody = (Vec<(String, Search)>, Vec<Condition>);

/// A `detection` map (or a filter's): its searches and conditions, checked
/// against each other. Keys in `skip` belong to the enclosing document.
pub(crate) fn detection_body(
    detection: &MarkedYaml<'_>,
    what: &str,
    skip: &[&str],
) -> Result<DetectionBody, RuleError> {
    let YamlData::Mapping(entries) = &detection.data else {
        return Err(error_at(detection, format!("`{what}` must be a map")));
    };
    let mut searches = Vec::new();
    let mut condition_node = None;
    for (key, value) in entries.iter() {
        let name = text(key).ok_or_else(|| error_at(key, "a search identifier must be text"))?;
        match name {
            "condition" => condition_node = Some(value),
            "timeframe" => {
                return Err(error_at(
                    key,
                    "`timeframe` belongs to deprecated aggregations; write a correlation rule",
                ));
            }
            _ if skip.contains(&name) => {}
            _ => searches.push((name.to_string(), search(value)?)),
        }
    }
    let condition_node = condition_node
        .ok_or_else(|| error_at(detection, format!("`{what}` needs a `condition`")))?;
    let texts: Vec<&MarkedYaml<'_>> = match &condition_node.data {
        YamlData::Sequence(items) => items.iter().collect(),
        _ => vec![condition_node],
    };
    let mut conditions = Vec::new();
    for node in texts {
        let source = text(node).ok_or_else(|| error_at(node, "a condition must be text"))?;
        let parsed = condition::parse(source)
            .map_err(|e| error_at(node, format!("condition `{source}`: {e}")))?;
        let mut used = Vec::new();
        names(&parsed, &mut used);
        for (is_pattern, name) in used {
            let known = |n: &str| searches.iter().any(|(s, _)| s == n);
            match (is_pattern, name) {
                (false, Some(n)) if !known(&n) => {
                    return Err(error_at(
                        node,
                        format!("condition names `{n}`, which is not a search of this rule"),
                    ));
                }
                (true, Some(p))
                    if !searches
                        .iter()
                        .any(|(s, _)| condition::pattern_matches(&p, s)) =>
                {
                    return Err(error_at(
                        node,
                        format!("`{p}` matches no search of this rule"),
                    ));
                }
                _ => {}
            }
        }
        conditions.push(parsed);
    }
    Ok((searches, conditions))
}

pub(crate) fn logsource_of(doc: &MarkedYaml<'_>) -> LogSource {
    let logsource = doc.data.as_mapping_get("logsource");
    let field = |k: &str| {
        logsource
            .and_then(|l| l.data.as_mapping_get(k))
            .and_then(text)
            .map(str::to_string)
    };
    LogSource {
        product: field("product"),
        category: field("category"),
        service: field("service"),
    }
}

fn document(doc: &MarkedYaml<'_>) -> Result<Document, RuleError> {
    if !matches!(doc.data, YamlData::Mapping(_)) {
        return Err(error_at(doc, "a rule document must be a map"));
    }
    if doc.data.as_mapping_get("correlation").is_some() {
        return meta::correlation(doc).map(Document::Correlation);
    }
    if doc.data.as_mapping_get("filter").is_some() {
        return meta::filter(doc).map(Document::Filter);
    }
    if doc.data.as_mapping_get("sql").is_some() {
        return meta::sql_rule(doc).map(Document::Sql);
    }
    rule(doc).map(Document::Detection)
}

fn rule(doc: &MarkedYaml<'_>) -> Result<Rule, RuleError> {
    let get = |key: &str| doc.data.as_mapping_get(key);
    let title = get("title")
        .and_then(text)
        .ok_or_else(|| error_at(doc, "a rule needs a `title`"))?
        .to_string();
    let detection = get("detection").ok_or_else(|| error_at(doc, "a rule needs a `detection`"))?;
    let (searches, conditions) = detection_body(detection, "detection", &[])?;
    Ok(Rule {
        title,
        id: get("id").and_then(text).map(str::to_string),
        name: get("name").and_then(text).map(str::to_string),
        level: get("level").and_then(text).map(str::to_string),
        status: get("status").and_then(text).map(str::to_string),
        tags: match get("tags").map(|t| &t.data) {
            Some(YamlData::Sequence(items)) => {
                items.iter().filter_map(text).map(str::to_string).collect()
            }
            _ => Vec::new(),
        },
        logsource: logsource_of(doc),
        searches,
        conditions,
        suppression: meta::suppression_of(doc)?,
        line: doc.span.start.line(),
    })
}

/// The rule files named by `paths`: files as given, and every `.yml` /
/// `.yaml` file under folders (recursively), sorted. An unreadable path is an
/// error naming it.
pub fn rule_files(paths: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>, String> {
    let mut files = Vec::new();
    let mut stack: Vec<std::path::PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        let named = |e: std::io::Error| format!("{}: {e}", path.display());
        if std::fs::metadata(&path).map_err(named)?.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(named)? {
                stack.push(entry.map_err(named)?.path());
            }
        } else if paths.contains(&path)
            || path.extension().is_some_and(|e| e == "yml" || e == "yaml")
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One document of a rule file.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// A detection rule.
    Detection(Rule),
    /// A correlation (meta) rule over detection rules.
    Correlation(Correlation),
    /// A global filter: exclusions added to named rules.
    Filter(Filter),
    /// A scheduled SQL rule (Spoor's own kind).
    Sql(SqlRule),
}

impl Document {
    /// The document's title.
    pub fn title(&self) -> &str {
        match self {
            Document::Detection(r) => &r.title,
            Document::Correlation(c) => &c.title,
            Document::Filter(f) => &f.title,
            Document::Sql(s) => &s.title,
        }
    }

    /// The document's `id`, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Document::Detection(r) => r.id.as_deref(),
            Document::Correlation(c) => c.id.as_deref(),
            Document::Filter(f) => f.id.as_deref(),
            Document::Sql(s) => s.id.as_deref(),
        }
    }

    /// The detection rule, if this is one.
    pub fn as_detection(&self) -> Option<&Rule> {
        match self {
            Document::Detection(r) => Some(r),
            _ => None,
        }
    }
}

/// Every document of a YAML text: a rule, or why not. A text that is not
/// YAML at all is one error.
pub fn parse_documents(source: &str) -> Vec<Result<Document, RuleError>> {
    match MarkedYaml::load_from_str(source) {
        Ok(docs) => docs.iter().map(document).collect(),
        Err(e) => vec![Err(RuleError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: format!("not YAML: {}", e.info()),
        })],
    }
}

#[cfg(test)]
mod tests;
