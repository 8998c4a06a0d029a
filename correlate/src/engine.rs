//! A rule set compiled once and evaluated on batches: detection rules with
//! their global filters, correlation rules over them, scheduled SQL rules.
//!
//! A document that cannot be compiled is reported (file, line, reason) and
//! left out; it never affects the others.

use std::collections::{BTreeMap, HashMap};

use arrow::array::RecordBatch;
use sha2::{Digest, Sha256};

use crate::compile::{Expr, Limits, Registry};
use crate::evaluate::{self, Bits, FieldValues, Plan};
use crate::mapping::{EventFilter, Mappings};
use crate::sigma::{
    Condition, Correlation, Document, FieldMatch, Filter, LogSource, Modifier, Rule, Search,
    SqlRule, Value,
};

/// A parsed document and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedDocument {
    /// The file.
    pub file: String,
    /// The document.
    pub document: Document,
}

/// A problem with one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The file.
    pub file: String,
    /// The document's first line.
    pub line: usize,
    /// The rule's title.
    pub rule: String,
    /// What is wrong.
    pub message: String,
    /// A warning (the rule still runs) rather than a refusal.
    pub warning: bool,
}

/// How to compile.
#[derive(Debug, Clone)]
pub struct Options {
    /// Log sources and field mappings.
    pub mappings: Mappings,
    /// `%name%` values for `|expand`.
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Size limits.
    pub limits: Limits,
}

/// What identifies a rule in output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// `title`.
    pub title: String,
    /// `id`.
    pub id: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `level`.
    pub level: Option<String>,
    /// `tags`.
    pub tags: Vec<String>,
    /// The file.
    pub file: String,
    /// The document's first line.
    pub line: usize,
    /// This version of the rule: hex of the first 8 bytes of a SHA-256
    /// over the rule's document as parsed (see [`rule_version`]), and for a
    /// detection rule the global filters applied to it, for a correlation
    /// rule the versions of the rules it reads (so, transitively, of every
    /// rule under it). Checkpointed correlation state is kept only for the
    /// same key and version, and alert ids include it.
    pub version: String,
}

impl RuleInfo {
    /// The rule's id, or its title when it has none.
    pub fn key(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.title)
    }
}

/// A compiled detection rule.
#[derive(Debug, Clone)]
pub struct Detection {
    /// Who it is.
    pub info: RuleInfo,
    /// Its log source as written.
    pub logsource: LogSource,
    expr: Expr,
    filter: usize,
    /// Whether its matches are alerts of their own (false when only
    /// correlation rules with `generate: false` use it).
    pub alerts: bool,
    /// Titles of the global filters applied to it.
    pub filters_applied: Vec<String>,
    /// Its `suppression`, compiled.
    pub suppression: Option<DetectionSuppression>,
}

/// A detection rule's `suppression`: the window and the fields whose
/// values key it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectionSuppression {
    /// `suppression.window` in microseconds.
    pub window_micros: i64,
    /// Field ids of `suppression.group_by` (see [`FieldValues::get`]).
    pub fields: Vec<usize>,
}

/// Where a correlation's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSource {
    /// A detection rule (index into [`Engine::detections`]).
    Detection(usize),
    /// Another correlation rule (index into [`Engine::correlations`]).
    Correlation(usize),
}

/// One rule a correlation reads.
#[derive(Debug, Clone)]
pub struct CorrelationInput {
    /// The rule.
    pub source: InputSource,
    /// The group-by fields, as that rule's events name them (aliases
    /// resolved): field ids for a detection input.
    pub group_fields: Vec<usize>,
    /// For a correlation input: the position of each group-by value in the
    /// input correlation's own group key.
    pub group_positions: Vec<Option<usize>>,
    /// The aggregated field (value_count, value_sum, …).
    pub value_field: Option<usize>,
}

/// A compiled correlation rule.
#[derive(Debug, Clone)]
pub struct CompiledCorrelation {
    /// Who it is.
    pub info: RuleInfo,
    /// The rule as written.
    pub rule: Correlation,
    /// Its inputs, in the order of `correlation.rules`.
    pub inputs: Vec<CorrelationInput>,
}

/// The compiled rule set.
#[derive(Debug)]
pub struct Engine {
    registry: Registry,
    plan: Plan,
    /// Detection rules.
    pub detections: Vec<Detection>,
    filters: Vec<Vec<Vec<EventFilter>>>,
    /// Correlation rules, each after the correlations it reads.
    pub correlations: Vec<CompiledCorrelation>,
    /// Scheduled SQL rules.
    pub sql_rules: Vec<(RuleInfo, SqlRule)>,
    /// Per field: the log source filters of the rules that read it, so a
    /// field is extracted only on rows where one of them applies.
    field_filters: Vec<Vec<usize>>,
    /// The tests' answers of the last batch, kept for the next one.
    scratch: std::sync::Mutex<Vec<Bits>>,
}

/// A detection rule matching one row of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`Engine::detections`].
    pub rule: usize,
    /// The row.
    pub row: usize,
}

/// The result of one batch.
#[derive(Debug)]
pub struct BatchResult {
    /// Matches, ordered by rule then row (correlation relies on it).
    pub hits: Vec<Hit>,
    /// The fields the rules read, per row (for correlation keys and
    /// values).
    pub values: FieldValues,
}

#[allow(clippy::too_many_arguments)]
fn info(
    file: &str,
    title: &str,
    id: &Option<String>,
    name: &Option<String>,
    level: &Option<String>,
    tags: &[String],
    line: usize,
    version: String,
) -> RuleInfo {
    RuleInfo {
        title: title.to_string(),
        id: id.clone(),
        name: name.clone(),
        level: level.clone(),
        tags: tags.to_vec(),
        file: file.to_string(),
        line,
        version,
    }
}

/// A rule document's content fed to a hash in a fixed, self-delimiting
/// encoding of our own (tags, length-prefixed text, integers and floats as
/// little-endian bits), so versions are the same on every platform and Rust
/// version (`Debug` output is not promised to be) and change only when what
/// was parsed changes: not with comments, blank lines, quoting or the
/// document's position in its file (searches are kept in file order, so
/// reordering them does give a new version). Every struct is destructured
/// in full, so a field added to the model fails to compile here until it is
/// given a place in the encoding.
struct Canon(Sha256);

impl Canon {
    fn new() -> Canon {
        Canon(Sha256::new())
    }

    fn len(&mut self, n: usize) {
        self.0.update((n as u64).to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.update(s.as_bytes());
    }

    fn opt(&mut self, s: &Option<String>) {
        match s {
            None => self.0.update([0]),
            Some(s) => {
                self.0.update([1]);
                self.str(s);
            }
        }
    }

    fn strs(&mut self, items: &[String]) {
        self.len(items.len());
        for s in items {
            self.str(s);
        }
    }

    fn i64(&mut self, v: i64) {
        self.0.update(v.to_le_bytes());
    }

    fn f64(&mut self, v: f64) {
        self.0.update(v.to_bits().to_le_bytes());
    }

    fn bool(&mut self, v: bool) {
        self.0.update([u8::from(v)]);
    }

    fn logsource(&mut self, l: &LogSource) {
        let LogSource {
            product,
            category,
            service,
        } = l;
        self.opt(product);
        self.opt(category);
        self.opt(service);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Str(s) => {
                self.0.update([0]);
                self.str(s);
            }
            Value::Int(i) => {
                self.0.update([1]);
                self.i64(*i);
            }
            Value::Float(f) => {
                self.0.update([2]);
                self.f64(*f);
            }
            Value::Bool(b) => {
                self.0.update([3]);
                self.bool(*b);
            }
            Value::Null => self.0.update([4]),
        }
    }

    fn field_match(&mut self, m: &FieldMatch) {
        let FieldMatch {
            field,
            modifiers,
            values,
        } = m;
        self.opt(field);
        self.len(modifiers.len());
        for modifier in modifiers {
            self.str(modifier_name(*modifier));
        }
        self.len(values.len());
        for v in values {
            self.value(v);
        }
    }

    fn searches(&mut self, searches: &[(String, Search)]) {
        self.len(searches.len());
        for (name, search) in searches {
            self.str(name);
            let Search::AnyOf(groups) = search;
            self.len(groups.len());
            for group in groups {
                self.len(group.len());
                for m in group {
                    self.field_match(m);
                }
            }
        }
    }

    fn condition(&mut self, c: &Condition) {
        match c {
            Condition::Search(s) => {
                self.0.update([0]);
                self.str(s);
            }
            Condition::And(a, b) => {
                self.0.update([1]);
                self.condition(a);
                self.condition(b);
            }
            Condition::Or(a, b) => {
                self.0.update([2]);
                self.condition(a);
                self.condition(b);
            }
            Condition::Not(a) => {
                self.0.update([3]);
                self.condition(a);
            }
            Condition::OneOf(p) => {
                self.0.update([4]);
                self.opt(p);
            }
            Condition::AllOf(p) => {
                self.0.update([5]);
                self.opt(p);
            }
        }
    }

    fn conditions(&mut self, conditions: &[Condition]) {
        self.len(conditions.len());
        for c in conditions {
            self.condition(c);
        }
    }

    fn rule(&mut self, rule: &Rule) {
        // `line` is where the document sits, not what it says: moving a
        // rule within its file keeps its version (and its state).
        let Rule {
            title,
            id,
            name,
            level,
            status,
            tags,
            logsource,
            searches,
            conditions,
            // Suppression decides which alerts are raised, not what
            // matches: tuning it keeps the version, so alert ids and
            // window state carry over.
            suppression: _,
            line: _,
        } = rule;
        self.str("detection");
        self.str(title);
        self.opt(id);
        self.opt(name);
        self.opt(level);
        self.opt(status);
        self.strs(tags);
        self.logsource(logsource);
        self.searches(searches);
        self.conditions(conditions);
    }

    fn filter(&mut self, filter: &Filter) {
        let Filter {
            title,
            id,
            logsource,
            rules,
            searches,
            conditions,
            line: _,
        } = filter;
        self.str("filter");
        self.str(title);
        self.opt(id);
        self.logsource(logsource);
        self.strs(rules);
        self.searches(searches);
        self.conditions(conditions);
    }

    fn correlation(&mut self, c: &Correlation) {
        let Correlation {
            title,
            id,
            name,
            level,
            kind,
            rules,
            group_by,
            timespan_secs,
            condition,
            field,
            percentile,
            aliases,
            generate,
            // As for detection rules: not part of what matches.
            suppression: _,
            line: _,
        } = c;
        self.str("correlation");
        self.str(title);
        self.opt(id);
        self.opt(name);
        self.opt(level);
        self.str(kind.name());
        self.strs(rules);
        self.strs(group_by);
        self.i64(*timespan_secs);
        self.len(condition.len());
        for (op, limit) in condition {
            self.str(op.name());
            self.f64(*limit);
        }
        self.opt(field);
        self.f64(*percentile);
        self.len(aliases.len());
        for (alias, per_rule) in aliases {
            self.str(alias);
            self.len(per_rule.len());
            for (rule, field) in per_rule {
                self.str(rule);
                self.str(field);
            }
        }
        self.bool(*generate);
    }

    fn sql(&mut self, s: &SqlRule) {
        let SqlRule {
            title,
            id,
            level,
            query,
            every_secs,
            range_secs,
            line: _,
        } = s;
        self.str("sql");
        self.str(title);
        self.opt(id);
        self.opt(level);
        self.str(query);
        self.i64(*every_secs);
        self.i64(*range_secs);
    }

    fn document(&mut self, document: &Document) {
        match document {
            Document::Detection(r) => self.rule(r),
            Document::Correlation(c) => self.correlation(c),
            Document::Filter(f) => self.filter(f),
            Document::Sql(s) => self.sql(s),
        }
    }

    /// Hex of the first 8 bytes of the hash.
    fn version(self) -> String {
        hex::encode(&self.0.finalize()[..8])
    }
}

/// A modifier's name as written in rules (a fixed spelling, rather than
/// `Debug` output, for [`Canon`]).
fn modifier_name(m: Modifier) -> &'static str {
    match m {
        Modifier::Contains => "contains",
        Modifier::StartsWith => "startswith",
        Modifier::EndsWith => "endswith",
        Modifier::All => "all",
        Modifier::Re => "re",
        Modifier::ReI => "i",
        Modifier::ReM => "m",
        Modifier::ReS => "s",
        Modifier::Cidr => "cidr",
        Modifier::Base64 => "base64",
        Modifier::Base64Offset => "base64offset",
        Modifier::Utf16le => "utf16le",
        Modifier::Utf16be => "utf16be",
        Modifier::Utf16 => "utf16",
        Modifier::Wide => "wide",
        Modifier::Windash => "windash",
        Modifier::Exists => "exists",
        Modifier::FieldRef => "fieldref",
        Modifier::Cased => "cased",
        Modifier::Neq => "neq",
        Modifier::Lt => "lt",
        Modifier::Lte => "lte",
        Modifier::Gt => "gt",
        Modifier::Gte => "gte",
        Modifier::Expand => "expand",
        Modifier::Minute => "minute",
        Modifier::Hour => "hour",
        Modifier::Day => "day",
        Modifier::Week => "week",
        Modifier::Month => "month",
        Modifier::Year => "year",
    }
}

/// The version of one document on its own: hex of the first 8 bytes of a
/// SHA-256 over its content as parsed, in a fixed encoding (every field but
/// the line it starts on). This is a SQL rule's [`RuleInfo::version`]; a
/// detection rule without global filters has it too.
pub fn rule_version(document: &Document) -> String {
    let mut canon = Canon::new();
    canon.document(document);
    canon.version()
}

/// A detection rule's version: its document, then each global filter
/// applied to it (in the order they are loaded), so adding, removing or
/// editing a filter gives the rule a new version. Each document's encoding
/// delimits itself, so with no filter this is [`rule_version`].
fn detection_version<'a>(rule: &Rule, filters: impl Iterator<Item = &'a Filter>) -> String {
    let mut canon = Canon::new();
    canon.rule(rule);
    for f in filters {
        canon.filter(f);
    }
    canon.version()
}

/// A correlation rule's version: its document, then the kind (detection or
/// correlation) and version of each rule it reads, in order; those versions
/// cover their own inputs, so the version changes with any rule under it.
fn correlation_version<'a>(
    correlation: &Correlation,
    inputs: impl Iterator<Item = (bool, &'a str)>,
) -> String {
    let mut canon = Canon::new();
    canon.correlation(correlation);
    for (is_correlation, version) in inputs {
        canon.str(if is_correlation {
            "input correlation"
        } else {
            "input detection"
        });
        canon.str(version);
    }
    canon.version()
}

fn refers_to(reference: &str, info: &RuleInfo) -> bool {
    info.id.as_deref() == Some(reference) || info.name.as_deref() == Some(reference)
}

/// Whether a filter's log source covers a rule's: every key the filter
/// names must be the rule's.
fn covers(filter: &LogSource, rule: &LogSource) -> bool {
    let same = |a: &Option<String>, b: &Option<String>| {
        a.as_ref()
            .is_none_or(|a| b.as_ref().is_some_and(|b| a.eq_ignore_ascii_case(b)))
    };
    same(&filter.product, &rule.product)
        && same(&filter.category, &rule.category)
        && same(&filter.service, &rule.service)
}

impl Engine {
    /// Compiles documents; returns the engine and every refusal and warning.
    pub fn compile(documents: &[LoadedDocument], options: &Options) -> (Engine, Vec<Issue>) {
        let mut issues = Vec::new();
        let mut registry = Registry::new(options.limits);
        let mut detections = Vec::new();
        let mut filters: Vec<Vec<Vec<EventFilter>>> = Vec::new();
        let mut global_filters: Vec<(&str, &Filter)> = Vec::new();
        let mut correlations: Vec<(&str, &Correlation)> = Vec::new();
        let mut sql_rules = Vec::new();
        for doc in documents {
            match &doc.document {
                Document::Filter(f) => global_filters.push((&doc.file, f)),
                Document::Correlation(c) => correlations.push((&doc.file, c)),
                Document::Sql(s) => sql_rules.push((
                    info(
                        &doc.file,
                        &s.title,
                        &s.id,
                        &None,
                        &s.level,
                        &[],
                        s.line,
                        rule_version(&doc.document),
                    ),
                    s.clone(),
                )),
                Document::Detection(_) => {}
            }
        }
        let mut used_filters = vec![false; global_filters.len()];
        for doc in documents {
            let Document::Detection(rule) = &doc.document else {
                continue;
            };
            // The version is known once the global filters that apply are
            // (they are found by the rule's id or name, so after `info`).
            let mut rule_info = info(
                &doc.file,
                &rule.title,
                &rule.id,
                &rule.name,
                &rule.level,
                &rule.tags,
                rule.line,
                String::new(),
            );
            match compile_detection(
                &mut registry,
                options,
                rule,
                &rule_info,
                &global_filters,
                &mut used_filters,
            ) {
                Ok((expr, resolved_filter, applied, warning)) => {
                    rule_info.version =
                        detection_version(rule, applied.iter().map(|&i| global_filters[i].1));
                    let applied = applied
                        .iter()
                        .map(|&i| global_filters[i].1.title.clone())
                        .collect();
                    if let Some(w) = warning {
                        issues.push(Issue {
                            file: doc.file.clone(),
                            line: rule.line,
                            rule: rule.title.clone(),
                            message: w,
                            warning: true,
                        });
                    }
                    let filter = match filters.iter().position(|f| *f == resolved_filter) {
                        Some(i) => i,
                        None => {
                            filters.push(resolved_filter);
                            filters.len() - 1
                        }
                    };
                    let suppression = rule.suppression.as_ref().map(|s| {
                        let resolved = options.mappings.resolve(&rule.logsource);
                        DetectionSuppression {
                            window_micros: s.window_secs.saturating_mul(1_000_000),
                            fields: s
                                .group_by
                                .iter()
                                .map(|g| registry.named(g, &resolved.fields))
                                .collect(),
                        }
                    });
                    detections.push(Detection {
                        info: rule_info,
                        logsource: rule.logsource.clone(),
                        expr,
                        filter,
                        alerts: true,
                        filters_applied: applied,
                        suppression,
                    });
                }
                Err(message) => issues.push(Issue {
                    file: doc.file.clone(),
                    line: rule.line,
                    rule: rule.title.clone(),
                    message,
                    warning: false,
                }),
            }
        }
        for (i, (file, f)) in global_filters.iter().enumerate() {
            if !used_filters[i] {
                issues.push(Issue {
                    file: file.to_string(),
                    line: f.line,
                    rule: f.title.clone(),
                    message: format!(
                        "the filter applies to no loaded rule (rules: {})",
                        f.rules.join(", ")
                    ),
                    warning: true,
                });
            }
        }
        let compiled = compile_correlations(
            &mut registry,
            options,
            &correlations,
            &mut detections,
            &mut issues,
        );
        let (plan, refused) = match Plan::new(&registry) {
            Ok(plan) => (plan, None),
            Err(e) => (Plan::empty(), Some(e)),
        };
        if let Some(e) = refused {
            issues.push(Issue {
                file: String::new(),
                line: 0,
                rule: "(rule set)".into(),
                message: format!("the rule set is refused: {e}"),
                warning: false,
            });
            detections.clear();
        }
        let field_filters = field_filters(&registry, &detections, &compiled);
        (
            Engine {
                registry,
                plan,
                detections,
                filters,
                correlations: compiled,
                sql_rules,
                field_filters,
                scratch: Default::default(),
            },
            issues,
        )
    }

    /// Evaluates every detection rule on a batch of the events schema.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BatchResult, String> {
        let rows = batch.num_rows();
        let mut filter_bits = Vec::with_capacity(self.filters.len());
        let mut active = Bits::none(rows);
        let mut columns = evaluate::FilterColumns::default();
        for filter in &self.filters {
            let bits = evaluate::filter_rows(batch, filter, &mut columns)?;
            active.or_with(&bits);
            filter_bits.push(bits);
        }
        if active.is_empty() {
            return Ok(BatchResult {
                hits: Vec::new(),
                values: evaluate::extract(
                    &self.registry,
                    &self.plan,
                    batch,
                    &vec![Bits::none(rows); self.field_filters.len()],
                )?,
            });
        }
        let masks: Vec<Bits> = self
            .field_filters
            .iter()
            .map(|filters| {
                let mut mask = Bits::none(rows);
                for f in filters {
                    mask.or_with(&filter_bits[*f]);
                }
                mask
            })
            .collect();
        let values = evaluate::extract(&self.registry, &self.plan, batch, &masks)?;
        // The answers' storage is reused across batches (an uncontended
        // lock; a poisoned one only costs a fresh allocation).
        let mut tests = self
            .scratch
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        evaluate::answer(&self.registry, &self.plan, &values, &masks, &mut tests);
        let mut hits = Vec::new();
        for (index, rule) in self.detections.iter().enumerate() {
            let applicable = &filter_bits[rule.filter];
            if applicable.is_empty() {
                continue;
            }
            let mut matched = evaluate::eval(&rule.expr, &tests, rows);
            matched.and_with(applicable);
            hits.extend(matched.rows().map(|row| Hit { rule: index, row }));
        }
        if let Ok(mut scratch) = self.scratch.lock() {
            *scratch = tests;
        }
        Ok(BatchResult { hits, values })
    }

    /// Whether any rule has a `suppression`.
    pub fn has_suppression(&self) -> bool {
        self.detections.iter().any(|d| d.suppression.is_some())
            || self
                .correlations
                .iter()
                .any(|c| c.rule.suppression.is_some())
    }

    /// The number of distinct tests and fields (shared across rules).
    pub fn sizes(&self) -> (usize, usize) {
        (self.registry.tests.len(), self.registry.fields.len())
    }

    /// The compiled form of the rules whose id, name or title is `key`.
    pub fn explain(&self, key: &str) -> Vec<String> {
        let mut out = Vec::new();
        for rule in &self.detections {
            if rule.info.id.as_deref() == Some(key)
                || rule.info.name.as_deref() == Some(key)
                || rule.info.title == key
            {
                let mut text = format!(
                    "detection rule {} ({}:{})\nlog source: {:?}\n",
                    rule.info.title, rule.info.file, rule.info.line, rule.logsource
                );
                text.push_str("applies to events where: ");
                let filter = &self.filters[rule.filter];
                if filter.is_empty() {
                    text.push_str("(every event)\n");
                } else {
                    let lists: Vec<String> = filter
                        .iter()
                        .map(|any| {
                            let entries: Vec<String> = any
                                .iter()
                                .map(|entry| {
                                    entry
                                        .iter()
                                        .map(|(c, v)| format!("{c} in {v:?}"))
                                        .collect::<Vec<_>>()
                                        .join(" and ")
                                })
                                .collect();
                            format!("({})", entries.join(" or "))
                        })
                        .collect();
                    text.push_str(&lists.join(" and "));
                    text.push('\n');
                }
                if !rule.filters_applied.is_empty() {
                    text.push_str(&format!(
                        "global filters: {}\n",
                        rule.filters_applied.join(", ")
                    ));
                }
                text.push_str("condition:\n");
                rule.expr.describe(&self.registry, &mut text, 1);
                out.push(text);
            }
        }
        for c in &self.correlations {
            if refers_to(key, &c.info) || c.info.title == key {
                let mut text = format!(
                    "correlation rule {} ({}:{})\ntype: {}, timespan: {}s, group-by: {:?}, condition: {}\n",
                    c.info.title,
                    c.info.file,
                    c.info.line,
                    c.rule.kind.name(),
                    c.rule.timespan_secs,
                    c.rule.group_by,
                    if c.rule.condition.is_empty() {
                        "every rule".to_string()
                    } else {
                        c.rule
                            .condition
                            .iter()
                            .map(|(op, v)| format!("{} {v}", op.name()))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    }
                );
                for input in &c.inputs {
                    let (what, name) = match input.source {
                        InputSource::Detection(i) => ("detection", &self.detections[i].info),
                        InputSource::Correlation(i) => ("correlation", &self.correlations[i].info),
                    };
                    let fields: Vec<String> = input
                        .group_fields
                        .iter()
                        .map(|f| self.registry.fields[*f].to_string())
                        .collect();
                    text.push_str(&format!(
                        "  input {what} {} keyed by {fields:?}",
                        name.title
                    ));
                    if let Some(v) = input.value_field {
                        text.push_str(&format!(", value {}", self.registry.fields[v]));
                    }
                    text.push('\n');
                }
                out.push(text);
            }
        }
        out
    }
}

fn expr_fields(expr: &Expr, registry: &Registry, out: &mut Vec<usize>) {
    match expr {
        Expr::Test(id) => {
            let test = &registry.tests[*id];
            out.push(test.field());
            if let crate::compile::Test::FieldRef { other, .. } = test {
                out.push(*other);
            }
        }
        Expr::And(items) | Expr::Or(items) => {
            for item in items {
                expr_fields(item, registry, out);
            }
        }
        Expr::Not(inner) => expr_fields(inner, registry, out),
    }
}

/// Per field, the filters of the rules reading it (by their conditions or
/// as a correlation's group or value field).
fn field_filters(
    registry: &Registry,
    detections: &[Detection],
    correlations: &[CompiledCorrelation],
) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); registry.fields.len()];
    let mut fields = Vec::new();
    for rule in detections {
        fields.clear();
        expr_fields(&rule.expr, registry, &mut fields);
        if let Some(s) = &rule.suppression {
            fields.extend(&s.fields);
        }
        for f in &fields {
            out[*f].push(rule.filter);
        }
    }
    for c in correlations {
        for input in &c.inputs {
            if let InputSource::Detection(d) = input.source {
                for f in input.group_fields.iter().chain(input.value_field.iter()) {
                    out[*f].push(detections[d].filter);
                }
            }
        }
    }
    for filters in &mut out {
        filters.sort_unstable();
        filters.dedup();
    }
    out
}

/// The expression, the log source filter, the global filters applied
/// (indexes into the filters given) and a warning.
type CompiledDetection = (Expr, Vec<Vec<EventFilter>>, Vec<usize>, Option<String>);

fn compile_detection(
    registry: &mut Registry,
    options: &Options,
    rule: &Rule,
    rule_info: &RuleInfo,
    global_filters: &[(&str, &Filter)],
    used: &mut [bool],
) -> Result<CompiledDetection, String> {
    let resolved = options.mappings.resolve(&rule.logsource);
    let mut expr = registry.detection(
        &rule.searches,
        &rule.conditions,
        &resolved.fields,
        &options.placeholders,
    )?;
    let mut applied = Vec::new();
    let mut exclusions = Vec::new();
    for (i, (_, filter)) in global_filters.iter().enumerate() {
        if filter.rules.iter().any(|r| refers_to(r, rule_info))
            && covers(&filter.logsource, &rule.logsource)
        {
            let e = registry
                .detection(
                    &filter.searches,
                    &filter.conditions,
                    &resolved.fields,
                    &options.placeholders,
                )
                .map_err(|e| format!("global filter `{}`: {e}", filter.title))?;
            exclusions.push(e);
            applied.push(i);
            used[i] = true;
        }
    }
    if !exclusions.is_empty() {
        expr = Expr::And(vec![expr, Expr::Not(Box::new(Expr::Or(exclusions)))]);
    }
    Ok((expr, resolved.filters, applied, resolved.warning))
}

fn compile_correlations(
    registry: &mut Registry,
    options: &Options,
    correlations: &[(&str, &Correlation)],
    detections: &mut [Detection],
    issues: &mut Vec<Issue>,
) -> Vec<CompiledCorrelation> {
    let mut compiled: Vec<CompiledCorrelation> = Vec::new();
    let mut pending: Vec<usize> = (0..correlations.len()).collect();
    let mut generate: HashMap<usize, bool> = HashMap::new();
    // Correlations may read correlations: compile in rounds, each taking
    // those whose inputs are all known; what is left is a cycle or a
    // reference to a rule that is not loaded.
    loop {
        let mut progressed = false;
        let mut still = Vec::new();
        for &i in &pending {
            let (file, c) = correlations[i];
            // The version is known once the inputs are (below).
            let mut c_info = info(
                file,
                &c.title,
                &c.id,
                &c.name,
                &c.level,
                &[],
                c.line,
                String::new(),
            );
            let mut inputs = Vec::new();
            let mut missing = None;
            for reference in &c.rules {
                let rule_name = reference.as_str();
                let field_for = |g: &str| -> String {
                    c.aliases
                        .iter()
                        .find(|(alias, _)| alias == g)
                        .and_then(|(_, per_rule)| {
                            per_rule
                                .iter()
                                .find(|(r, _)| r == rule_name)
                                .map(|(_, f)| f.clone())
                        })
                        .unwrap_or_else(|| g.to_string())
                };
                if let Some(d) = detections
                    .iter()
                    .position(|d| refers_to(reference, &d.info))
                {
                    let resolved = options.mappings.resolve(&detections[d].logsource);
                    let group_fields = c
                        .group_by
                        .iter()
                        .map(|g| registry.named(&field_for(g), &resolved.fields))
                        .collect();
                    let value_field = c
                        .field
                        .as_ref()
                        .map(|f| registry.named(&field_for(f), &resolved.fields));
                    inputs.push(CorrelationInput {
                        source: InputSource::Detection(d),
                        group_fields,
                        group_positions: Vec::new(),
                        value_field,
                    });
                } else if let Some(k) = compiled.iter().position(|k| refers_to(reference, &k.info))
                {
                    let parent = &compiled[k].rule;
                    let group_positions = c
                        .group_by
                        .iter()
                        .map(|g| {
                            let name = field_for(g);
                            parent.group_by.iter().position(|p| *p == name)
                        })
                        .collect();
                    inputs.push(CorrelationInput {
                        source: InputSource::Correlation(k),
                        group_fields: Vec::new(),
                        group_positions,
                        value_field: None,
                    });
                } else {
                    missing = Some(reference.clone());
                    break;
                }
            }
            match missing {
                None => {
                    for input in &inputs {
                        if let InputSource::Detection(d) = input.source {
                            let g = generate.entry(d).or_insert(false);
                            *g |= c.generate;
                        }
                    }
                    c_info.version = correlation_version(
                        c,
                        inputs.iter().map(|input| match input.source {
                            InputSource::Detection(d) => {
                                (false, detections[d].info.version.as_str())
                            }
                            InputSource::Correlation(k) => {
                                (true, compiled[k].info.version.as_str())
                            }
                        }),
                    );
                    compiled.push(CompiledCorrelation {
                        info: c_info,
                        rule: c.clone(),
                        inputs,
                    });
                    progressed = true;
                }
                Some(_) => still.push(i),
            }
        }
        pending = still;
        if !progressed || pending.is_empty() {
            break;
        }
    }
    for i in pending {
        let (file, c) = correlations[i];
        let unknown: Vec<&str> = c
            .rules
            .iter()
            .filter(|r| {
                !detections.iter().any(|d| refers_to(r, &d.info))
                    && !compiled.iter().any(|k| refers_to(r, &k.info))
            })
            .map(String::as_str)
            .collect();
        issues.push(Issue {
            file: file.to_string(),
            line: c.line,
            rule: c.title.clone(),
            message: if unknown.is_empty() {
                "the correlation reads itself through other correlations (a cycle)".into()
            } else {
                format!(
                    "the correlation names rules that are not loaded: {}",
                    unknown.join(", ")
                )
            },
            warning: false,
        });
    }
    for (d, generates) in generate {
        detections[d].alerts = generates;
    }
    compiled
}
