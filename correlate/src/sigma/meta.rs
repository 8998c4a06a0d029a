//! The documents beside detection rules: correlation rules (Sigma
//! correlation specification 2.1), global filters (Sigma filters
//! specification) and Spoor's scheduled SQL rules.

use saphyr::{MarkedYaml, YamlData};

use super::{
    Condition, LogSource, RuleError, Search, detection_body, error_at, logsource_of, text,
};

/// A comparison in a correlation condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `gt`
    Gt,
    /// `gte`
    Gte,
    /// `lt`
    Lt,
    /// `lte`
    Lte,
    /// `eq`
    Eq,
    /// `neq`
    Neq,
}

impl CmpOp {
    fn parse(name: &str) -> Option<CmpOp> {
        Some(match name {
            "gt" => CmpOp::Gt,
            "gte" => CmpOp::Gte,
            "lt" => CmpOp::Lt,
            "lte" => CmpOp::Lte,
            "eq" => CmpOp::Eq,
            "neq" => CmpOp::Neq,
            _ => return None,
        })
    }

    /// Whether `value op limit` holds.
    pub fn holds(self, value: f64, limit: f64) -> bool {
        match self {
            CmpOp::Gt => value > limit,
            CmpOp::Gte => value >= limit,
            CmpOp::Lt => value < limit,
            CmpOp::Lte => value <= limit,
            CmpOp::Eq => value == limit,
            CmpOp::Neq => value != limit,
        }
    }

    /// The operator's name in rules.
    pub fn name(self) -> &'static str {
        match self {
            CmpOp::Gt => "gt",
            CmpOp::Gte => "gte",
            CmpOp::Lt => "lt",
            CmpOp::Lte => "lte",
            CmpOp::Eq => "eq",
            CmpOp::Neq => "neq",
        }
    }
}

/// The seven correlation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationKind {
    /// Number of events.
    EventCount,
    /// Number of distinct values of a field.
    ValueCount,
    /// All (or N of) the rules matched, in any order.
    Temporal,
    /// All the rules matched, in the listed order.
    TemporalOrdered,
    /// Sum of a numeric field.
    ValueSum,
    /// Average of a numeric field.
    ValueAvg,
    /// A percentile of a numeric field.
    ValuePercentile,
}

impl CorrelationKind {
    fn parse(name: &str) -> Option<CorrelationKind> {
        Some(match name {
            "event_count" => CorrelationKind::EventCount,
            "value_count" => CorrelationKind::ValueCount,
            "temporal" => CorrelationKind::Temporal,
            "temporal_ordered" => CorrelationKind::TemporalOrdered,
            "value_sum" => CorrelationKind::ValueSum,
            "value_avg" => CorrelationKind::ValueAvg,
            "value_percentile" => CorrelationKind::ValuePercentile,
            _ => return None,
        })
    }

    /// The type's name in rules.
    pub fn name(self) -> &'static str {
        match self {
            CorrelationKind::EventCount => "event_count",
            CorrelationKind::ValueCount => "value_count",
            CorrelationKind::Temporal => "temporal",
            CorrelationKind::TemporalOrdered => "temporal_ordered",
            CorrelationKind::ValueSum => "value_sum",
            CorrelationKind::ValueAvg => "value_avg",
            CorrelationKind::ValuePercentile => "value_percentile",
        }
    }

    /// Whether the type aggregates a field named in the condition.
    pub fn needs_field(self) -> bool {
        matches!(
            self,
            CorrelationKind::ValueCount
                | CorrelationKind::ValueSum
                | CorrelationKind::ValueAvg
                | CorrelationKind::ValuePercentile
        )
    }
}

/// A correlation rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// `title`.
    pub title: String,
    /// `id`.
    pub id: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `level`.
    pub level: Option<String>,
    /// `correlation.type`.
    pub kind: CorrelationKind,
    /// `correlation.rules`: ids or names of detection or correlation rules.
    pub rules: Vec<String>,
    /// `correlation.group-by` (field names or aliases).
    pub group_by: Vec<String>,
    /// `correlation.timespan` in seconds.
    pub timespan_secs: i64,
    /// `correlation.condition`: every comparison must hold. Empty for a
    /// `temporal` rule without one (then every rule must have matched).
    pub condition: Vec<(CmpOp, f64)>,
    /// `correlation.condition.field`.
    pub field: Option<String>,
    /// `correlation.condition.percentile` for `value_percentile` (default
    /// 50, the median).
    pub percentile: f64,
    /// `correlation.aliases`: alias → (rule name → field).
    pub aliases: Vec<(String, Vec<(String, String)>)>,
    /// `correlation.generate`: whether the referenced rules also alert on
    /// their own.
    pub generate: bool,
    /// `suppression` (Spoor's own attribute).
    pub suppression: Option<Suppression>,
    /// The document's first line.
    pub line: usize,
}

/// A global filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// `title`.
    pub title: String,
    /// `id`.
    pub id: Option<String>,
    /// `logsource`: the filter applies only to rules with a compatible one.
    pub logsource: LogSource,
    /// `filter.rules`: ids or names of the rules it excludes events from.
    pub rules: Vec<String>,
    /// The filter's searches.
    pub searches: Vec<(String, Search)>,
    /// The filter's condition(s).
    pub conditions: Vec<Condition>,
    /// The document's first line.
    pub line: usize,
}

/// A scheduled SQL rule: a query over the last `range_secs` of events, run
/// every `every_secs`; each result row is an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlRule {
    /// `title`.
    pub title: String,
    /// `id`.
    pub id: Option<String>,
    /// `level`.
    pub level: Option<String>,
    /// `sql.query`.
    pub query: String,
    /// `sql.every` in seconds.
    pub every_secs: i64,
    /// `sql.range` in seconds (default: `every`).
    pub range_secs: i64,
    /// The document's first line.
    pub line: usize,
}

/// `suppression`: Spoor's own rule attribute (Sigma allows custom ones).
/// After an alert of the rule, further alerts of the same rule with the same
/// values of `group_by` within `window` of it (in event time) are not
/// raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// `suppression.window` in seconds.
    pub window_secs: i64,
    /// `suppression.group_by`: field names (for a detection rule) or the
    /// correlation's group-by fields (for a correlation; all of them when
    /// left out). Empty for a detection rule: one alert per window.
    pub group_by: Vec<String>,
}

/// The document's `suppression`, if any.
pub(super) fn suppression_of(doc: &MarkedYaml<'_>) -> Result<Option<Suppression>, RuleError> {
    let Some(node) = doc.data.as_mapping_get("suppression") else {
        return Ok(None);
    };
    let YamlData::Mapping(map) = &node.data else {
        return Err(error_at(
            node,
            "`suppression` must be a map with `window` (like `10m`) and optionally `group_by`",
        ));
    };
    for key in map.keys() {
        match text(key) {
            Some("window" | "group_by") => {}
            other => {
                return Err(error_at(
                    key,
                    format!(
                        "unknown `suppression` key `{}` (window, group_by)",
                        other.unwrap_or("?")
                    ),
                ));
            }
        }
    }
    let window = node
        .data
        .as_mapping_get("window")
        .ok_or_else(|| error_at(node, "`suppression` needs a `window` (like `10m`)"))?;
    let window_secs = timespan_at(window, "suppression.window")?;
    let group_by = match node.data.as_mapping_get("group_by") {
        Some(g) => names_list(g, "suppression.group_by")?,
        None => Vec::new(),
    };
    Ok(Some(Suppression {
        window_secs,
        group_by,
    }))
}

/// Parses `30s`, `5m`, `1h`, `7d` into seconds.
pub fn parse_timespan(span: &str) -> Option<i64> {
    let span = span.trim();
    let unit = span.chars().last()?;
    let number: i64 = span[..span.len() - unit.len_utf8()].parse().ok()?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    (number > 0).then(|| number.checked_mul(factor)).flatten()
}

fn timespan_at(node: &MarkedYaml<'_>, key: &str) -> Result<i64, RuleError> {
    let span =
        text(node).ok_or_else(|| error_at(node, format!("`{key}` must be text like `5m`")))?;
    parse_timespan(span).ok_or_else(|| {
        error_at(
            node,
            format!("`{key}: {span}` is not a positive number followed by s, m, h, d or w"),
        )
    })
}

fn names_list(node: &MarkedYaml<'_>, key: &str) -> Result<Vec<String>, RuleError> {
    match &node.data {
        YamlData::Sequence(items) => items
            .iter()
            .map(|i| {
                text(i)
                    .map(str::to_string)
                    .ok_or_else(|| error_at(i, format!("`{key}` entries must be text")))
            })
            .collect(),
        _ => text(node)
            .map(|t| vec![t.to_string()])
            .ok_or_else(|| error_at(node, format!("`{key}` must be a list of names"))),
    }
}

fn number(node: &MarkedYaml<'_>) -> Option<f64> {
    match super::scalar(node).ok()? {
        super::Value::Int(i) => Some(i as f64),
        super::Value::Float(f) => Some(f),
        super::Value::Str(s) => s.parse().ok(),
        _ => None,
    }
}

fn title_of(doc: &MarkedYaml<'_>) -> Result<String, RuleError> {
    doc.data
        .as_mapping_get("title")
        .and_then(text)
        .map(str::to_string)
        .ok_or_else(|| error_at(doc, "a rule needs a `title`"))
}

fn optional_text(doc: &MarkedYaml<'_>, key: &str) -> Option<String> {
    doc.data
        .as_mapping_get(key)
        .and_then(text)
        .map(str::to_string)
}

pub(super) fn correlation(doc: &MarkedYaml<'_>) -> Result<Correlation, RuleError> {
    let title = title_of(doc)?;
    let Some(body) = doc.data.as_mapping_get("correlation") else {
        return Err(error_at(doc, "a correlation rule needs `correlation`"));
    };
    if !matches!(body.data, YamlData::Mapping(_)) {
        return Err(error_at(body, "`correlation` must be a map"));
    }
    let get = |key: &str| body.data.as_mapping_get(key);
    let kind_node = get("type").ok_or_else(|| error_at(body, "`correlation` needs a `type`"))?;
    let kind_name = text(kind_node).unwrap_or_default();
    let kind = CorrelationKind::parse(kind_name).ok_or_else(|| {
        error_at(
            kind_node,
            format!(
                "unknown correlation type `{kind_name}` (event_count, value_count, temporal, \
                 temporal_ordered, value_sum, value_avg or value_percentile)"
            ),
        )
    })?;
    let rules_node = get("rules").ok_or_else(|| error_at(body, "`correlation` needs `rules`"))?;
    let rules = names_list(rules_node, "rules")?;
    if rules.is_empty() {
        return Err(error_at(rules_node, "`rules` names no rule"));
    }
    if matches!(
        kind,
        CorrelationKind::Temporal | CorrelationKind::TemporalOrdered
    ) && rules.len() < 2
    {
        return Err(error_at(
            rules_node,
            format!("a {} correlation needs at least two rules", kind.name()),
        ));
    }
    let group_by = match get("group-by") {
        Some(node) => names_list(node, "group-by")?,
        None => Vec::new(),
    };
    let span_node = get("timespan")
        .or_else(|| get("timeframe"))
        .ok_or_else(|| error_at(body, "`correlation` needs a `timespan`"))?;
    let timespan_secs = timespan_at(span_node, "timespan")?;
    let mut condition = Vec::new();
    let mut field = None;
    let mut percentile = 50.0;
    match get("condition") {
        Some(node) => {
            let YamlData::Mapping(entries) = &node.data else {
                return Err(error_at(node, "`condition` must be a map like `gte: 10`"));
            };
            for (key, value) in entries.iter() {
                let name = text(key).unwrap_or_default();
                if name == "field" {
                    field = Some(
                        text(value)
                            .ok_or_else(|| error_at(value, "`field` must be a field name"))?
                            .to_string(),
                    );
                } else if name == "percentile" {
                    percentile = number(value)
                        .filter(|p| (0.0..=100.0).contains(p))
                        .ok_or_else(|| {
                            error_at(value, "`percentile` must be a number from 0 to 100")
                        })?;
                } else if let Some(op) = CmpOp::parse(name) {
                    let limit = number(value)
                        .ok_or_else(|| error_at(value, format!("`{name}` needs a number")))?;
                    condition.push((op, limit));
                } else {
                    return Err(error_at(
                        key,
                        format!(
                            "unknown condition key `{name}` (gt, gte, lt, lte, eq, neq, field)"
                        ),
                    ));
                }
            }
            if condition.is_empty() {
                return Err(error_at(
                    node,
                    "`condition` needs a comparison (gt, gte, lt, lte, eq or neq)",
                ));
            }
        }
        None if matches!(
            kind,
            CorrelationKind::Temporal | CorrelationKind::TemporalOrdered
        ) => {}
        None => {
            return Err(error_at(
                body,
                format!("a {} correlation needs a `condition`", kind.name()),
            ));
        }
    }
    if kind.needs_field() && field.is_none() {
        return Err(error_at(
            body,
            format!("a {} correlation needs `condition.field`", kind.name()),
        ));
    }
    let mut aliases = Vec::new();
    if let Some(node) = get("aliases") {
        let YamlData::Mapping(entries) = &node.data else {
            return Err(error_at(
                node,
                "`aliases` must be a map of alias → rule → field",
            ));
        };
        for (alias, per_rule) in entries.iter() {
            let alias = text(alias).ok_or_else(|| error_at(alias, "an alias must be text"))?;
            let YamlData::Mapping(fields) = &per_rule.data else {
                return Err(error_at(
                    per_rule,
                    format!("alias `{alias}` must map rule names to fields"),
                ));
            };
            let mut pairs = Vec::new();
            for (rule, field) in fields.iter() {
                let rule = text(rule).ok_or_else(|| error_at(rule, "a rule name must be text"))?;
                let field =
                    text(field).ok_or_else(|| error_at(field, "a field name must be text"))?;
                if !rules.iter().any(|r| r == rule) {
                    return Err(error_at(
                        per_rule,
                        format!(
                            "alias `{alias}` names rule `{rule}`, which the correlation does not use"
                        ),
                    ));
                }
                pairs.push((rule.to_string(), field.to_string()));
            }
            aliases.push((alias.to_string(), pairs));
        }
    }
    let generate = match get("generate").map(|g| &g.data) {
        None => false,
        Some(YamlData::Value(saphyr::Scalar::Boolean(b))) => *b,
        Some(_) => {
            return Err(error_at(
                get("generate").unwrap_or(body),
                "`generate` must be true or false",
            ));
        }
    };
    let suppression = match suppression_of(doc)? {
        Some(s) => {
            if let Some(unknown) = s.group_by.iter().find(|g| !group_by.contains(g)) {
                let at = doc.data.as_mapping_get("suppression").unwrap_or(doc);
                return Err(error_at(
                    at,
                    format!(
                        "`suppression.group_by` names `{unknown}`, which is not in the correlation's `group-by`"
                    ),
                ));
            }
            Some(s)
        }
        None => None,
    };
    Ok(Correlation {
        title,
        id: optional_text(doc, "id"),
        name: optional_text(doc, "name"),
        level: optional_text(doc, "level"),
        kind,
        rules,
        group_by,
        timespan_secs,
        condition,
        field,
        percentile,
        aliases,
        generate,
        suppression,
        line: doc.span.start.line(),
    })
}

pub(super) fn filter(doc: &MarkedYaml<'_>) -> Result<Filter, RuleError> {
    let title = title_of(doc)?;
    let Some(body) = doc.data.as_mapping_get("filter") else {
        return Err(error_at(doc, "a filter needs `filter`"));
    };
    let rules_node = body
        .data
        .as_mapping_get("rules")
        .ok_or_else(|| error_at(body, "`filter` needs `rules`: the rules it applies to"))?;
    let rules = names_list(rules_node, "rules")?;
    let (searches, conditions) = detection_body(body, "filter", &["rules"])?;
    Ok(Filter {
        title,
        id: optional_text(doc, "id"),
        logsource: logsource_of(doc),
        rules,
        searches,
        conditions,
        line: doc.span.start.line(),
    })
}

pub(super) fn sql_rule(doc: &MarkedYaml<'_>) -> Result<SqlRule, RuleError> {
    let title = title_of(doc)?;
    let Some(body) = doc.data.as_mapping_get("sql") else {
        return Err(error_at(doc, "a SQL rule needs `sql`"));
    };
    let get = |key: &str| body.data.as_mapping_get(key);
    let query_node = get("query").ok_or_else(|| error_at(body, "`sql` needs a `query`"))?;
    let query = text(query_node)
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| error_at(query_node, "`query` must be SQL text"))?
        .to_string();
    let every_node =
        get("every").ok_or_else(|| error_at(body, "`sql` needs `every` (like `5m`)"))?;
    let every_secs = timespan_at(every_node, "every")?;
    let range_secs = match get("range") {
        Some(node) => timespan_at(node, "range")?,
        None => every_secs,
    };
    Ok(SqlRule {
        title,
        id: optional_text(doc, "id"),
        level: optional_text(doc, "level"),
        query,
        every_secs,
        range_secs,
        line: doc.span.start.line(),
    })
}
