//! Detection rules compiled to tests on fields and a boolean expression over
//! them (the form `spoor rules explain` prints).
//!
//! A test is one question about one field of an event ("does `Image`, in
//! lowercase, end with `\cmd.exe`?"). Tests are shared: two rules asking
//! the same question share one test, answered once per batch. Modifiers are
//! applied here, once: wildcards and escapes become a match kind or an
//! anchored regular expression, `windash`, `base64`, `base64offset` and the
//! UTF-16 encodings become lists of literal variants, and `|cased` decides
//! whether a test reads the field's text or its lowercase form.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use base64::Engine as _;
use spoor_common::matching::{Cidr, Piece, pieces_regex, wildcard_pieces};

use crate::sigma::{CmpOp, Condition, FieldMatch, Modifier, Search, Value};

/// Limits that keep one rule from costing the engine unbounded memory.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Variants one value may expand to (`windash`, `expand`, encodings).
    pub max_variants: usize,
    /// Compiled size of one regular expression, in bytes.
    pub max_regex_bytes: usize,
    /// Tests in the whole rule set.
    pub max_tests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_variants: 4_096,
            max_regex_bytes: 16 << 20,
            max_tests: 2_000_000,
        }
    }
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldSource {
    /// `unmapped[name]`, else the mapped column.
    Named {
        /// The Sigma field name.
        name: String,
        /// The column holding it when ingest moved it out of `unmapped`.
        column: Option<String>,
    },
    /// Every text value of the event (keyword searches).
    Keywords,
}

impl fmt::Display for FieldSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldSource::Named {
                name,
                column: Some(c),
            } => write!(f, "{name}(unmapped, else {c})"),
            FieldSource::Named { name, column: None } => write!(f, "{name}(unmapped)"),
            FieldSource::Keywords => write!(f, "<any value>"),
        }
    }
}

/// How a literal is compared with a field's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TextKind {
    /// The whole text.
    Equals,
    /// Anywhere in the text.
    Contains,
    /// At the start.
    StartsWith,
    /// At the end.
    EndsWith,
}

/// One question about one field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Test {
    /// A literal; lowercase unless `cased`.
    Text {
        /// The field.
        field: usize,
        /// Compare the field's own text (else its lowercase form).
        cased: bool,
        /// Where the literal must be.
        kind: TextKind,
        /// The literal.
        text: String,
    },
    /// A wildcard pattern as an anchored regular expression.
    Glob {
        /// The field.
        field: usize,
        /// Compare the field's own text (else its lowercase form).
        cased: bool,
        /// The expression.
        regex: String,
    },
    /// `|re`: a regular expression (flags inline) on the field's own text.
    Regex {
        /// The field.
        field: usize,
        /// The expression.
        regex: String,
    },
    /// `*`: any value at all.
    AnyValue {
        /// The field.
        field: usize,
    },
    /// `null`: absent or empty.
    Null {
        /// The field.
        field: usize,
    },
    /// `|exists`.
    Exists {
        /// The field.
        field: usize,
        /// `true`: must exist; `false`: must not.
        present: bool,
    },
    /// `|cidr`.
    Cidr {
        /// The field.
        field: usize,
        /// The block.
        block: Cidr,
    },
    /// `|gt`, `|gte`, `|lt`, `|lte` (number as bits, so tests hash).
    Number {
        /// The field.
        field: usize,
        /// The comparison.
        op: CmpOp,
        /// `f64::to_bits` of the limit.
        limit: u64,
    },
    /// `|fieldref`: compared with another field of the same event.
    FieldRef {
        /// The field.
        field: usize,
        /// The other field.
        other: usize,
        /// Where the other field's text must be.
        kind: TextKind,
        /// Case-sensitive.
        cased: bool,
    },
    /// `|minute` … `|year` of a timestamp field.
    DatePart {
        /// The field.
        field: usize,
        /// The part: `Modifier::Minute` … `Modifier::Year`.
        part: Modifier,
        /// The value it must have.
        value: i64,
    },
}

impl Test {
    /// The field the test reads.
    pub fn field(&self) -> usize {
        match self {
            Test::Text { field, .. }
            | Test::Glob { field, .. }
            | Test::Regex { field, .. }
            | Test::AnyValue { field }
            | Test::Null { field }
            | Test::Exists { field, .. }
            | Test::Cidr { field, .. }
            | Test::Number { field, .. }
            | Test::FieldRef { field, .. }
            | Test::DatePart { field, .. } => *field,
        }
    }
}

/// A boolean expression over tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// One test's answer.
    Test(usize),
    /// All must hold (true when empty).
    And(Vec<Expr>),
    /// Any must hold (false when empty).
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
}

/// Fields and tests shared by every rule of an engine.
#[derive(Debug, Default)]
pub struct Registry {
    /// Field sources, by id.
    pub fields: Vec<FieldSource>,
    field_ids: HashMap<FieldSource, usize>,
    /// Tests, by id.
    pub tests: Vec<Test>,
    test_ids: HashMap<Test, usize>,
    /// The limits in force.
    pub limits: Limits,
}

/// Why a rule cannot be compiled.
pub type CompileError = String;

impl Registry {
    /// An empty registry with these limits.
    pub fn new(limits: Limits) -> Registry {
        Registry {
            limits,
            ..Registry::default()
        }
    }

    /// The id of a field source, registering it.
    pub fn field(&mut self, source: FieldSource) -> usize {
        if let Some(id) = self.field_ids.get(&source) {
            return *id;
        }
        let id = self.fields.len();
        self.fields.push(source.clone());
        self.field_ids.insert(source, id);
        id
    }

    /// The field for a Sigma field name under a mapping.
    pub fn named(&mut self, name: &str, mapping: &BTreeMap<String, String>) -> usize {
        self.field(FieldSource::Named {
            name: name.to_string(),
            column: mapping.get(name).cloned(),
        })
    }

    fn test(&mut self, test: Test) -> Result<Expr, CompileError> {
        if let Some(id) = self.test_ids.get(&test) {
            return Ok(Expr::Test(*id));
        }
        if self.tests.len() >= self.limits.max_tests {
            return Err(format!(
                "the rule set needs more than {} distinct tests; split it",
                self.limits.max_tests
            ));
        }
        if let Test::Glob { regex, .. } | Test::Regex { regex, .. } = &test {
            regex::RegexBuilder::new(regex)
                .size_limit(self.limits.max_regex_bytes)
                .build()
                .map_err(|e| format!("regular expression {regex:?}: {e}"))?;
        }
        let id = self.tests.len();
        self.tests.push(test.clone());
        self.test_ids.insert(test, id);
        Ok(Expr::Test(id))
    }

    /// Compiles searches and conditions (a rule's or a filter's) under a
    /// field mapping.
    pub fn detection(
        &mut self,
        searches: &[(String, Search)],
        conditions: &[Condition],
        mapping: &BTreeMap<String, String>,
        placeholders: &BTreeMap<String, Vec<String>>,
    ) -> Result<Expr, CompileError> {
        let mut compiled = Vec::with_capacity(searches.len());
        for (name, search) in searches {
            let Search::AnyOf(groups) = search;
            let mut any = Vec::with_capacity(groups.len());
            for group in groups {
                let mut all = Vec::with_capacity(group.len());
                for field_match in group {
                    all.push(
                        self.field_match(field_match, mapping, placeholders)
                            .map_err(|e| format!("search `{name}`: {e}"))?,
                    );
                }
                any.push(and(all));
            }
            compiled.push((name.as_str(), or(any)));
        }
        let exprs = conditions
            .iter()
            .map(|c| condition(c, &compiled))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(or(exprs))
    }

    fn field_match(
        &mut self,
        m: &FieldMatch,
        mapping: &BTreeMap<String, String>,
        placeholders: &BTreeMap<String, Vec<String>>,
    ) -> Result<Expr, CompileError> {
        let field = match &m.field {
            Some(name) => self.named(name, mapping),
            None => self.field(FieldSource::Keywords),
        };
        let has = |x: Modifier| m.modifiers.contains(&x);
        let label = || m.field.clone().unwrap_or_else(|| "keywords".into());
        if has(Modifier::Exists) {
            let Some(Value::Bool(present)) = m.values.first() else {
                return Err(format!("`{}|exists` takes true or false", label()));
            };
            return self.test(Test::Exists {
                field,
                present: *present,
            });
        }
        let mut per_value = Vec::with_capacity(m.values.len());
        for value in &m.values {
            let expr = self
                .value(field, m, value, mapping, placeholders)
                .map_err(|e| format!("`{}`: {e}", label()))?;
            per_value.push(expr);
        }
        let combined = if has(Modifier::All) {
            and(per_value)
        } else {
            or(per_value)
        };
        Ok(if has(Modifier::Neq) {
            Expr::Not(Box::new(combined))
        } else {
            combined
        })
    }

    fn value(
        &mut self,
        field: usize,
        m: &FieldMatch,
        value: &Value,
        mapping: &BTreeMap<String, String>,
        placeholders: &BTreeMap<String, Vec<String>>,
    ) -> Result<Expr, CompileError> {
        let has = |x: Modifier| m.modifiers.contains(&x);
        let keywords = m.field.is_none();
        let text = match value {
            Value::Null => return self.test(Test::Null { field }),
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
        };
        for (modifier, op) in [
            (Modifier::Gt, CmpOp::Gt),
            (Modifier::Gte, CmpOp::Gte),
            (Modifier::Lt, CmpOp::Lt),
            (Modifier::Lte, CmpOp::Lte),
        ] {
            if has(modifier) {
                let limit: f64 = text.trim().parse().map_err(|_| {
                    format!("`{}` needs a number, not {text:?}", modifier_name(modifier))
                })?;
                return self.test(Test::Number {
                    field,
                    op,
                    limit: limit.to_bits(),
                });
            }
        }
        let date_part = m.modifiers.iter().copied().find(|x| {
            matches!(
                x,
                Modifier::Minute
                    | Modifier::Hour
                    | Modifier::Day
                    | Modifier::Week
                    | Modifier::Month
                    | Modifier::Year
            )
        });
        if let Some(part) = date_part {
            let value: i64 = text.trim().parse().map_err(|_| {
                format!(
                    "`{}` needs a whole number, not {text:?}",
                    modifier_name(part)
                )
            })?;
            return self.test(Test::DatePart { field, part, value });
        }
        if has(Modifier::Cidr) {
            let block =
                Cidr::parse(&text).ok_or_else(|| format!("{text:?} is not a CIDR block"))?;
            return self.test(Test::Cidr { field, block });
        }
        let kind = if has(Modifier::Contains) || keywords {
            TextKind::Contains
        } else if has(Modifier::StartsWith) {
            TextKind::StartsWith
        } else if has(Modifier::EndsWith) {
            TextKind::EndsWith
        } else {
            TextKind::Equals
        };
        let cased = has(Modifier::Cased);
        if has(Modifier::FieldRef) {
            let other = self.named(&text, mapping);
            return self.test(Test::FieldRef {
                field,
                other,
                kind,
                cased,
            });
        }
        let variants = if has(Modifier::Expand) {
            expand(&text, placeholders, self.limits.max_variants)?
        } else {
            vec![text]
        };
        if has(Modifier::Re) {
            let mut flags = String::new();
            if has(Modifier::ReI) {
                flags.push('i');
            }
            if has(Modifier::ReM) {
                flags.push('m');
            }
            if has(Modifier::ReS) {
                flags.push('s');
            }
            let mut exprs = Vec::new();
            for v in variants {
                let regex = if flags.is_empty() {
                    v
                } else {
                    format!("(?{flags}){v}")
                };
                exprs.push(self.test(Test::Regex { field, regex })?);
            }
            return Ok(or(exprs));
        }
        // Each variant as wildcard pieces, then through the modifiers in
        // the order written.
        let encoded = m.modifiers.iter().any(|x| {
            matches!(
                x,
                Modifier::Base64
                    | Modifier::Base64Offset
                    | Modifier::Utf16
                    | Modifier::Utf16le
                    | Modifier::Utf16be
                    | Modifier::Wide
            )
        });
        let mut pieces_list: Vec<Vec<Piece>> = Vec::new();
        for v in &variants {
            let mut current: Vec<Vec<Piece>> = vec![if encoded {
                // Encodings work on the plain text: a wildcard cannot be
                // encoded, so the value is taken literally (escapes still
                // resolved).
                match wildcard_pieces(v).as_slice() {
                    [] => Vec::new(),
                    [Piece::Text(t)] => vec![Piece::Text(t.clone())],
                    _ => return Err(format!("{v:?}: a value with wildcards cannot be encoded")),
                }
            } else {
                wildcard_pieces(v)
            }];
            let mut bytes_form: Option<Vec<Vec<u8>>> = None;
            for modifier in &m.modifiers {
                match modifier {
                    Modifier::Windash => {
                        let mut total: usize = 0;
                        for p in &current {
                            let n = 5usize
                                .checked_pow(windash_positions(p) as u32)
                                .filter(|n| *n <= self.limits.max_variants)
                                .ok_or_else(|| {
                                    format!(
                                        "{v:?}: `windash` expands to more than {} variants",
                                        self.limits.max_variants
                                    )
                                })?;
                            total = total.saturating_add(n);
                        }
                        if total > self.limits.max_variants {
                            return Err(format!(
                                "{v:?}: `windash` expands to more than {} variants",
                                self.limits.max_variants
                            ));
                        }
                        current = current.iter().flat_map(|p| windash(p)).collect();
                    }
                    Modifier::Utf16le | Modifier::Wide | Modifier::Utf16be | Modifier::Utf16 => {
                        let texts = bytes_form.take().unwrap_or_else(|| {
                            current.iter().map(|p| literal(p).into_bytes()).collect()
                        });
                        bytes_form = Some(
                            texts
                                .iter()
                                .map(|t| utf16(&String::from_utf8_lossy(t), *modifier))
                                .collect(),
                        );
                    }
                    Modifier::Base64 | Modifier::Base64Offset => {
                        let texts = bytes_form.take().unwrap_or_else(|| {
                            current.iter().map(|p| literal(p).into_bytes()).collect()
                        });
                        let mut out = Vec::new();
                        for t in &texts {
                            if *modifier == Modifier::Base64 {
                                out.push(base64::engine::general_purpose::STANDARD.encode(t));
                            } else {
                                out.extend(base64_offsets(t));
                            }
                        }
                        current = out.into_iter().map(|t| vec![Piece::Text(t)]).collect();
                    }
                    _ => {}
                }
                if current.len() > self.limits.max_variants {
                    return Err(format!(
                        "{v:?} expands to more than {} variants",
                        self.limits.max_variants
                    ));
                }
            }
            if let Some(bytes) = bytes_form {
                // An encoding without base64 afterwards: match the decoded
                // bytes as text (lossy for odd lengths).
                current = bytes
                    .iter()
                    .map(|b| vec![Piece::Text(String::from_utf8_lossy(b).into_owned())])
                    .collect();
            }
            pieces_list.extend(current);
        }
        let mut exprs = Vec::with_capacity(pieces_list.len());
        for pieces in pieces_list {
            exprs.push(self.text_test(field, kind, cased, pieces)?);
        }
        Ok(or(exprs))
    }

    fn text_test(
        &mut self,
        field: usize,
        kind: TextKind,
        cased: bool,
        mut pieces: Vec<Piece>,
    ) -> Result<Expr, CompileError> {
        if !cased {
            for p in &mut pieces {
                if let Piece::Text(t) = p {
                    *t = t.to_lowercase();
                }
            }
        }
        if matches!(kind, TextKind::Contains | TextKind::EndsWith) {
            pieces.insert(0, Piece::AnyRun);
        }
        if matches!(kind, TextKind::Contains | TextKind::StartsWith) {
            pieces.push(Piece::AnyRun);
        }
        pieces.dedup_by(|a, b| *a == Piece::AnyRun && *b == Piece::AnyRun);
        let text_test = |kind, text: &String| Test::Text {
            field,
            cased,
            kind,
            text: text.clone(),
        };
        let test = match pieces.as_slice() {
            [] => text_test(TextKind::Equals, &String::new()),
            [Piece::AnyRun] => Test::AnyValue { field },
            [Piece::Text(t)] => text_test(TextKind::Equals, t),
            [Piece::AnyRun, Piece::Text(t)] => text_test(TextKind::EndsWith, t),
            [Piece::Text(t), Piece::AnyRun] => text_test(TextKind::StartsWith, t),
            [Piece::AnyRun, Piece::Text(t), Piece::AnyRun] => text_test(TextKind::Contains, t),
            _ => Test::Glob {
                field,
                cased,
                regex: pieces_regex(&pieces),
            },
        };
        self.test(test)
    }
}

fn modifier_name(m: Modifier) -> String {
    format!("{m:?}").to_lowercase()
}

fn literal(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::AnyRun => "*",
            Piece::AnyChar => "?",
        })
        .collect()
}

fn and(mut exprs: Vec<Expr>) -> Expr {
    if exprs.len() == 1 {
        exprs.remove(0)
    } else {
        Expr::And(exprs)
    }
}

fn or(mut exprs: Vec<Expr>) -> Expr {
    if exprs.len() == 1 {
        exprs.remove(0)
    } else {
        Expr::Or(exprs)
    }
}

fn condition(c: &Condition, searches: &[(&str, Expr)]) -> Result<Expr, CompileError> {
    let matching = |pattern: &Option<String>| -> Vec<Expr> {
        searches
            .iter()
            .filter(|(name, _)| match pattern {
                Some(p) => crate::sigma::condition::pattern_matches(p, name),
                // `them`: every search, except those whose name starts with
                // an underscore (specification: "them" ignores them).
                None => !name.starts_with('_'),
            })
            .map(|(_, e)| e.clone())
            .collect()
    };
    Ok(match c {
        Condition::Search(name) => searches
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .ok_or_else(|| format!("condition names unknown search `{name}`"))?,
        Condition::And(a, b) => and(vec![condition(a, searches)?, condition(b, searches)?]),
        Condition::Or(a, b) => or(vec![condition(a, searches)?, condition(b, searches)?]),
        Condition::Not(a) => Expr::Not(Box::new(condition(a, searches)?)),
        Condition::OneOf(p) => or(matching(p)),
        Condition::AllOf(p) => and(matching(p)),
    })
}

/// How many characters `windash` varies in these pieces.
fn windash_positions(pieces: &[Piece]) -> usize {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    pieces
        .iter()
        .map(|p| match p {
            Piece::Text(text) => {
                let chars: Vec<char> = text.chars().collect();
                (0..chars.len())
                    .filter(|&i| {
                        let before = if i == 0 { None } else { Some(chars[i - 1]) };
                        (chars[i] == '-' || chars[i] == '/')
                            && !word(before)
                            && word(chars.get(i + 1).copied())
                    })
                    .count()
            }
            _ => 0,
        })
        .sum()
}

/// `windash`, as pySigma does it: a `-` or `/` that starts a word (no word
/// character before it, one after it) may be written as any of `-`, `/`,
/// en dash, em dash or horizontal bar.
fn windash(pieces: &[Piece]) -> Vec<Vec<Piece>> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let mut out: Vec<Vec<Piece>> = vec![Vec::new()];
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    for (index, piece) in pieces.iter().enumerate() {
        let Piece::Text(text) = piece else {
            for o in &mut out {
                o.push(piece.clone());
            }
            continue;
        };
        let chars: Vec<char> = text.chars().collect();
        let mut variants: Vec<String> = vec![String::new()];
        for (i, &c) in chars.iter().enumerate() {
            // Before the text's first char is the previous piece: a
            // wildcard, which is not a word character.
            let before = if i == 0 { None } else { Some(chars[i - 1]) };
            let after = chars.get(i + 1).copied();
            let at_word_start = (c == '-' || c == '/') && !word(before) && word(after);
            let _ = index;
            if at_word_start {
                variants = variants
                    .iter()
                    .flat_map(|v| {
                        DASHES.iter().map(move |d| {
                            let mut v = v.clone();
                            v.push(*d);
                            v
                        })
                    })
                    .collect();
            } else {
                for v in &mut variants {
                    v.push(c);
                }
            }
        }
        out = out
            .iter()
            .flat_map(|o| {
                variants.iter().map(move |v| {
                    let mut o = o.clone();
                    o.push(Piece::Text(v.clone()));
                    o
                })
            })
            .collect();
    }
    out
}

fn utf16(text: &str, modifier: Modifier) -> Vec<u8> {
    let units = text.encode_utf16();
    match modifier {
        Modifier::Utf16be => units.flat_map(u16::to_be_bytes).collect(),
        Modifier::Utf16 => [0xFF, 0xFE]
            .into_iter()
            .chain(units.flat_map(u16::to_le_bytes))
            .collect(),
        _ => units.flat_map(u16::to_le_bytes).collect(),
    }
}

/// The three base64 forms of `value` at offsets 0, 1 and 2 of a longer
/// text, trimmed of the characters that depend on its neighbours (the
/// algorithm of the Sigma modifiers appendix and pySigma).
fn base64_offsets(value: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_TRIM: [usize; 3] = [0, 3, 2];
    let mut out = Vec::with_capacity(3);
    for i in 0..3 {
        let mut shifted = vec![b' '; i];
        shifted.extend_from_slice(value);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&shifted);
        let end = encoded
            .len()
            .saturating_sub(END_TRIM[(value.len() + i) % 3]);
        if START[i] < end {
            out.push(encoded[START[i]..end].to_string());
        }
    }
    out
}

fn expand(
    text: &str,
    placeholders: &BTreeMap<String, Vec<String>>,
    max: usize,
) -> Result<Vec<String>, CompileError> {
    let mut out = vec![String::new()];
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let Some(len) = rest[start + 1..].find('%') else {
            break;
        };
        let name = &rest[start + 1..start + 1 + len];
        let values = placeholders.get(name).ok_or_else(|| {
            format!("placeholder %{name}% has no values (define it with --placeholders)")
        })?;
        let before = &rest[..start];
        out = out
            .iter()
            .flat_map(|o| values.iter().map(move |v| format!("{o}{before}{v}")))
            .collect();
        if out.len() > max {
            return Err(format!("%{name}% expands to more than {max} variants"));
        }
        rest = &rest[start + len + 2..];
    }
    for o in &mut out {
        o.push_str(rest);
    }
    Ok(out)
}

impl Expr {
    /// Writes the expression with the tests spelled out.
    pub fn describe(&self, registry: &Registry, out: &mut String, depth: usize) {
        let pad = "  ".repeat(depth);
        match self {
            Expr::Test(id) => {
                out.push_str(&pad);
                out.push_str(&describe_test(registry, *id));
                out.push('\n');
            }
            Expr::And(items) | Expr::Or(items) => {
                out.push_str(&pad);
                out.push_str(if matches!(self, Expr::And(_)) {
                    "all of:\n"
                } else {
                    "any of:\n"
                });
                for item in items {
                    item.describe(registry, out, depth + 1);
                }
            }
            Expr::Not(inner) => {
                out.push_str(&pad);
                out.push_str("not:\n");
                inner.describe(registry, out, depth + 1);
            }
        }
    }
}

/// One test in words, with its id (`t12: CommandLine(...) lowercase contains "x"`).
pub fn describe_test(registry: &Registry, id: usize) -> String {
    let test = &registry.tests[id];
    let field = |f: usize| registry.fields[f].to_string();
    let case = |cased: bool| if cased { "" } else { " lowercase" };
    let body = match test {
        Test::Text {
            field: f,
            cased,
            kind,
            text,
        } => {
            format!(
                "{}{} {} {text:?}",
                field(*f),
                case(*cased),
                kind_name(*kind)
            )
        }
        Test::Glob {
            field: f,
            cased,
            regex,
        } => {
            format!(
                "{}{} matches wildcard regex {regex:?}",
                field(*f),
                case(*cased)
            )
        }
        Test::Regex { field: f, regex } => format!("{} matches regex {regex:?}", field(*f)),
        Test::AnyValue { field: f } => format!("{} has any value", field(*f)),
        Test::Null { field: f } => format!("{} is absent or empty", field(*f)),
        Test::Exists { field: f, present } => {
            format!(
                "{} {}",
                field(*f),
                if *present { "exists" } else { "does not exist" }
            )
        }
        Test::Cidr { field: f, block } => format!("{} is an address in {block:?}", field(*f)),
        Test::Number {
            field: f,
            op,
            limit,
        } => {
            format!(
                "{} as a number {} {}",
                field(*f),
                op.name(),
                f64::from_bits(*limit)
            )
        }
        Test::FieldRef {
            field: f,
            other,
            kind,
            cased,
        } => format!(
            "{}{} {} the value of {}",
            field(*f),
            case(*cased),
            kind_name(*kind),
            field(*other)
        ),
        Test::DatePart {
            field: f,
            part,
            value,
        } => format!("{:?} of {} = {value}", part, field(*f)),
    };
    format!("t{id}: {body}")
}

fn kind_name(kind: TextKind) -> &'static str {
    match kind {
        TextKind::Equals => "equals",
        TextKind::Contains => "contains",
        TextKind::StartsWith => "starts with",
        TextKind::EndsWith => "ends with",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windash_varies_dashes_that_start_words_only() {
        let v = windash(&[Piece::Text(" -enc x-y /c".into())]);
        assert_eq!(v.len(), 25);
        assert!(v.contains(&vec![Piece::Text(" /enc x-y -c".into())]));
        assert!(v.contains(&vec![Piece::Text(" \u{2014}enc x-y \u{2013}c".into())]));
        assert!(!v.iter().any(|p| literal(p).contains("x/y")));
    }

    #[test]
    fn windash_that_would_explode_is_refused_before_expanding() {
        let mut r = Registry::new(Limits::default());
        let m = FieldMatch {
            field: Some("CommandLine".into()),
            modifiers: vec![Modifier::Windash, Modifier::Contains],
            values: vec![Value::Str(" -a".repeat(40))],
        };
        let none = BTreeMap::new();
        let e = r
            .field_match(&m, &none, &BTreeMap::new())
            .expect_err("too many");
        assert!(e.contains("more than 4096 variants"), "{e}");
    }

    #[test]
    fn base64_offsets_match_the_specification_example() {
        // sigma-appendix-modifiers: `base64offset` of "/bin/bash".
        assert_eq!(
            base64_offsets(b"/bin/bash"),
            ["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]
        );
    }

    #[test]
    fn expand_multiplies_placeholders_and_refuses_unknown_ones() {
        let mut p = BTreeMap::new();
        p.insert(
            "Admins".to_string(),
            vec!["root".to_string(), "admin".to_string()],
        );
        assert_eq!(
            expand("%Admins%@x", &p, 10).expect("expand"),
            ["root@x", "admin@x"]
        );
        assert!(expand("%Nope%", &p, 10).is_err());
        assert!(expand("%Admins%%Admins%%Admins%%Admins%", &p, 10).is_err());
    }

    #[test]
    fn values_become_the_cheapest_test() {
        let mut r = Registry::new(Limits::default());
        let m = |field: &str, modifiers: Vec<Modifier>, v: &str| FieldMatch {
            field: Some(field.into()),
            modifiers,
            values: vec![Value::Str(v.into())],
        };
        let none = BTreeMap::new();
        let no_placeholders = BTreeMap::new();
        let e = r
            .field_match(&m("Image", vec![], r"*\CMD.exe"), &none, &no_placeholders)
            .expect("compile");
        let Expr::Test(id) = e else {
            panic!("one test")
        };
        assert!(
            matches!(&r.tests[id], Test::Text { kind: TextKind::EndsWith, text, cased: false, .. } if text == r"\cmd.exe")
        );
        let e = r
            .field_match(
                &m("Image", vec![Modifier::Contains, Modifier::Cased], "A*B"),
                &none,
                &no_placeholders,
            )
            .expect("compile");
        let Expr::Test(id) = e else {
            panic!("one test")
        };
        assert!(
            matches!(&r.tests[id], Test::Glob { cased: true, regex, .. } if regex == "^(?s:.*A.*B.*)$")
        );
        let same = r
            .field_match(&m("Image", vec![], r"*\cmd.EXE"), &none, &no_placeholders)
            .expect("compile");
        assert_eq!(same, Expr::Test(0), "the same question is one test");
        assert!(
            r.field_match(
                &m("X", vec![Modifier::Base64], "a*b"),
                &none,
                &no_placeholders
            )
            .is_err()
        );
    }
}
