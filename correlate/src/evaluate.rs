//! Evaluation of compiled rules on Arrow record batches of the events
//! schema.
//!
//! Per batch, work is done once and shared by every rule:
//! - each log source filter is computed once, as a bitmap;
//! - each field a rule reads is extracted once (one parse of `unmapped` per
//!   row, whatever the number of fields), and lowercased once;
//! - every literal on a field, from every rule, is searched in one pass of
//!   an Aho-Corasick automaton over the field's text (equals, contains,
//!   starts-with and ends-with are all answered by where the literal was
//!   found), wildcard patterns in one pass of a regex set, `|re`
//!   expressions in another;
//! - each distinct test's answer is a bitmap over the batch's rows, and a
//!   rule is its condition evaluated with word-wide bit operations.
//!
//! Nothing is interpreted event by event per rule.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use aho_corasick::automaton::Automaton;
use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, MatchKind, StartKind};
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use chrono::{Datelike, Timelike};
use regex::RegexSet;
use serde_json::value::RawValue;
use spoor_common::schema::event_col;

// Keys here are field names and values of events, hashed for every row:
// foldhash (seeded per process) instead of SipHash, which was a tenth of the
// evaluation time.
use foldhash::{HashMap, HashMapExt};

use crate::compile::{Expr, FieldSource, Registry, Test, TextKind};
use crate::mapping::EventFilter;
use crate::sigma::Modifier;

/// A bitmap over a batch's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    /// All rows false.
    pub fn none(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// All rows true.
    pub fn all(len: usize) -> Bits {
        let mut b = Bits {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        b.trim();
        b
    }

    fn trim(&mut self) {
        let extra = self.words.len() * 64 - self.len;
        if extra > 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= u64::MAX >> extra;
        }
    }

    /// Clears every row, for `len` rows, keeping the allocation.
    pub fn reset(&mut self, len: usize) {
        self.words.clear();
        self.words.resize(len.div_ceil(64), 0);
        self.len = len;
    }

    /// Sets a row.
    pub fn set(&mut self, row: usize) {
        self.words[row / 64] |= 1 << (row % 64);
    }

    /// Whether a row is set.
    pub fn get(&self, row: usize) -> bool {
        self.words[row / 64] & (1 << (row % 64)) != 0
    }

    /// `self &= other`.
    pub fn and_with(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= b;
        }
    }

    /// `self |= other`.
    pub fn or_with(&mut self, other: &Bits) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// `!self`.
    pub fn negate(&mut self) {
        for w in &mut self.words {
            *w = !*w;
        }
        self.trim();
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row is set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// The set rows, in order.
    pub fn rows(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let bit = w.trailing_zeros() as usize;
                    w &= w - 1;
                    i * 64 + bit
                })
            })
        })
    }
}

/// A literal automaton: a DFA, or past the DFA's size limit a contiguous
/// NFA (both walk a byte at a time).
#[derive(Debug)]
enum Walker {
    Dfa(aho_corasick::dfa::DFA),
    Nfa(aho_corasick::nfa::contiguous::NFA),
}

/// Literals of one match kind, found with one automaton.
#[derive(Debug, Default)]
struct LiteralSet {
    literals: Vec<Vec<u8>>,
    index: HashMap<Vec<u8>, usize>,
    /// Per literal: the tests it answers.
    tests: Vec<Vec<usize>>,
    /// Anywhere in the text.
    ac: Option<AhoCorasick>,
    /// At the start of the text.
    anchored: Option<Walker>,
}

impl LiteralSet {
    fn add(&mut self, literal: Vec<u8>, test: usize) {
        let next = self.literals.len();
        let i = *self.index.entry(literal.clone()).or_insert(next);
        if i == next {
            self.literals.push(literal);
            self.tests.push(Vec::new());
        }
        self.tests[i].push(test);
    }

    fn build(&mut self, anchored: bool) -> Result<(), String> {
        if self.literals.is_empty() {
            return Ok(());
        }
        let named = |e: aho_corasick::BuildError| format!("literal automaton: {e}");
        if anchored {
            let dfa = aho_corasick::dfa::DFA::builder()
                .match_kind(MatchKind::Standard)
                .start_kind(StartKind::Anchored)
                .build(&self.literals);
            self.anchored = Some(match dfa {
                Ok(dfa) => Walker::Dfa(dfa),
                Err(_) => Walker::Nfa(
                    aho_corasick::nfa::contiguous::NFA::builder()
                        .match_kind(MatchKind::Standard)
                        .build(&self.literals)
                        .map_err(named)?,
                ),
            });
            return Ok(());
        }
        // A DFA is the fastest to search (one table lookup a byte); past its
        // size limit the automatic choice (a contiguous NFA) takes over.
        let build = |kind| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(&self.literals)
        };
        self.ac = Some(
            build(Some(AhoCorasickKind::DFA))
                .or_else(|_| build(None))
                .map_err(named)?,
        );
        Ok(())
    }

    /// Sets the tests of every literal found in `haystack`.
    fn run_anywhere(&self, haystack: &[u8], row: usize, bits: &mut [Bits]) {
        let Some(ac) = &self.ac else { return };
        for m in ac.find_overlapping_iter(haystack) {
            for test in &self.tests[m.pattern().as_usize()] {
                bits[*test].set(row);
            }
        }
    }

    /// Sets the tests of every literal `haystack` starts with: one walk
    /// from the anchored start, as far as some literal still continues.
    fn run_prefixes(&self, haystack: &[u8], row: usize, bits: &mut [Bits]) {
        match &self.anchored {
            Some(Walker::Dfa(a)) => self.walk(a, haystack, row, bits),
            Some(Walker::Nfa(a)) => self.walk(a, haystack, row, bits),
            None => {}
        }
    }

    fn walk(&self, a: &impl Automaton, haystack: &[u8], row: usize, bits: &mut [Bits]) {
        let Ok(mut sid) = a.start_state(Anchored::Yes) else {
            return;
        };
        for (i, &byte) in haystack.iter().enumerate() {
            sid = a.next_state(Anchored::Yes, sid, byte);
            if a.is_dead(sid) {
                return;
            }
            if a.is_match(sid) {
                for k in 0..a.match_len(sid) {
                    let p = a.match_pattern(sid, k).as_usize();
                    // A match state also holds the literals that end here
                    // but started later; only those read from the start
                    // are prefixes.
                    if self.literals[p].len() == i + 1 {
                        for test in &self.tests[p] {
                            bits[*test].set(row);
                        }
                    }
                }
            }
        }
    }
}

/// Every literal, pattern and expression on one field and one case form.
/// Each match kind has its own structure, so a search does only the work
/// its kind needs: whole values are looked up, prefixes and suffixes are
/// anchored walks (suffixes over the reversed text), and only `contains`
/// literals are searched for everywhere.
#[derive(Debug, Default)]
struct TextMatcher {
    equals: HashMap<String, Vec<usize>>,
    prefixes: LiteralSet,
    suffixes: LiteralSet,
    anywhere: LiteralSet,
    /// Tests `equals ""`.
    empty: Vec<usize>,
    globs: Vec<String>,
    glob_tests: Vec<usize>,
    glob_set: Option<RegexSet>,
}

impl TextMatcher {
    fn add_literal(&mut self, kind: TextKind, text: &str, test: usize) {
        if text.is_empty() {
            match kind {
                TextKind::Equals => self.empty.push(test),
                // "" is in every text: compile() never produces this (it
                // becomes AnyValue), but be right anyway.
                _ => self.add_glob("^(?s:.*)$".into(), test),
            }
            return;
        }
        match kind {
            TextKind::Equals => self.equals.entry(text.to_string()).or_default().push(test),
            TextKind::StartsWith => self.prefixes.add(text.as_bytes().to_vec(), test),
            TextKind::EndsWith => self.suffixes.add(text.bytes().rev().collect(), test),
            TextKind::Contains => self.anywhere.add(text.as_bytes().to_vec(), test),
        }
    }

    fn add_glob(&mut self, regex: String, test: usize) {
        self.globs.push(regex);
        self.glob_tests.push(test);
    }

    fn is_empty(&self) -> bool {
        self.equals.is_empty()
            && self.prefixes.literals.is_empty()
            && self.suffixes.literals.is_empty()
            && self.anywhere.literals.is_empty()
            && self.empty.is_empty()
            && self.globs.is_empty()
    }

    fn build(&mut self, size_limit: usize) -> Result<(), String> {
        self.prefixes.build(true)?;
        self.suffixes.build(true)?;
        self.anywhere.build(false)?;
        if !self.globs.is_empty() {
            self.glob_set = Some(
                regex::RegexSetBuilder::new(&self.globs)
                    .size_limit(size_limit.saturating_mul(self.globs.len().max(1)))
                    .dfa_size_limit(REGEX_SET_CACHE)
                    .build()
                    .map_err(|e| format!("wildcard patterns: {e}"))?,
            );
        }
        Ok(())
    }

    fn run(&self, text: &str, reversed: &mut Vec<u8>, row: usize, bits: &mut [Bits]) {
        if text.is_empty() {
            for t in &self.empty {
                bits[*t].set(row);
            }
        }
        if let Some(tests) = self.equals.get(text) {
            for t in tests {
                bits[*t].set(row);
            }
        }
        self.prefixes.run_prefixes(text.as_bytes(), row, bits);
        if self.suffixes.anchored.is_some() {
            reversed.clear();
            reversed.extend(text.bytes().rev());
            self.suffixes.run_prefixes(reversed, row, bits);
        }
        self.anywhere.run_anywhere(text.as_bytes(), row, bits);
        if let Some(set) = &self.glob_set {
            for i in set.matches(text).iter() {
                bits[self.glob_tests[i]].set(row);
            }
        }
    }
}

/// The lazy DFA cache of a regex set: large enough that thousands of
/// wildcard patterns on one field stay in the fast engine.
const REGEX_SET_CACHE: usize = 64 << 20;

#[derive(Debug, Default)]
struct FieldPlan {
    lowercase: TextMatcher,
    cased: TextMatcher,
    regexes: Vec<String>,
    regex_tests: Vec<usize>,
    regex_set: Option<RegexSet>,
    /// Tests answered row by row (null, exists, cidr, numbers, …).
    row_tests: Vec<usize>,
}

/// The per-batch plan: what to compute for each field.
#[derive(Debug)]
pub(crate) struct Plan {
    fields: Vec<FieldPlan>,
}

impl FieldPlan {
    /// Whether only the field's lowercase form is ever read, so it may be
    /// stored lowercase once (the keyword haystack: every text of an event,
    /// copied and lowercased in one pass instead of two).
    fn lowercase_only(&self) -> bool {
        self.cased.is_empty() && self.regexes.is_empty() && self.row_tests.is_empty()
    }
}

impl Plan {
    pub(crate) fn new(registry: &Registry) -> Result<Plan, String> {
        let mut fields: Vec<FieldPlan> = (0..registry.fields.len())
            .map(|_| FieldPlan::default())
            .collect();
        for (id, test) in registry.tests.iter().enumerate() {
            let plan = &mut fields[test.field()];
            match test {
                Test::Text {
                    cased, kind, text, ..
                } => {
                    let m = if *cased {
                        &mut plan.cased
                    } else {
                        &mut plan.lowercase
                    };
                    m.add_literal(*kind, text, id);
                }
                Test::Glob { cased, regex, .. } => {
                    let m = if *cased {
                        &mut plan.cased
                    } else {
                        &mut plan.lowercase
                    };
                    m.add_glob(regex.clone(), id);
                }
                Test::Regex { regex, .. } => {
                    plan.regexes.push(regex.clone());
                    plan.regex_tests.push(id);
                }
                _ => plan.row_tests.push(id),
            }
        }
        let limit = registry.limits.max_regex_bytes;
        for (id, plan) in fields.iter_mut().enumerate() {
            let named = |e: String| format!("field {}: {e}", registry.fields[id]);
            plan.lowercase.build(limit).map_err(named)?;
            plan.cased.build(limit).map_err(named)?;
            if !plan.regexes.is_empty() {
                plan.regex_set = Some(
                    regex::RegexSetBuilder::new(&plan.regexes)
                        .size_limit(limit.saturating_mul(plan.regexes.len()))
                        .dfa_size_limit(REGEX_SET_CACHE)
                        .build()
                        .map_err(|e| named(format!("regular expressions: {e}")))?,
                );
            }
        }
        Ok(Plan { fields })
    }
}

/// One field's text for every row of a batch, in one buffer.
#[derive(Debug, Default)]
pub struct FieldColumn {
    text: String,
    /// Per row: the value's byte range in `text`, or none. (Ranges are
    /// `usize`: a batch of large events can hold more than 4 GiB of one
    /// field's text.)
    spans: Vec<Option<(usize, usize)>>,
}

impl FieldColumn {
    fn new(rows: usize) -> FieldColumn {
        FieldColumn {
            text: String::new(),
            spans: vec![None; rows],
        }
    }

    fn set(&mut self, row: usize, value: &str) {
        let start = self.text.len();
        self.text.push_str(value);
        self.spans[row] = Some((start, self.text.len()));
    }

    /// A row's value; none on a row the field was not extracted for. A
    /// field is extracted only on the rows of the log sources whose rules
    /// read it, and a `fieldref` test runs on its own field's rows, so it
    /// may ask for its other field where that one was not extracted at all
    /// (found by the detection latency bench: the SigmaHQ Windows rules
    /// on a batch of one log source panicked here).
    pub fn get(&self, row: usize) -> Option<&str> {
        self.spans
            .get(row)
            .copied()
            .flatten()
            .map(|(a, b)| &self.text[a..b])
    }
}

/// A batch's events as the rules see them: each field's text per row (for
/// the rows whose rules read that field).
#[derive(Debug)]
pub struct FieldValues {
    columns: Vec<FieldColumn>,
    /// Event time per row (microseconds since the epoch).
    pub times: Vec<i64>,
}

impl FieldValues {
    /// A field's value on a row.
    pub fn get(&self, field: usize, row: usize) -> Option<&str> {
        self.columns[field].get(row)
    }
}

/// The column as text per row (casting numbers and timestamps).
fn text_column(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>, String> {
    let Some(column) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let as_text: ArrayRef = if column.data_type() == &DataType::Utf8 {
        Arc::clone(column)
    } else {
        cast(column, &DataType::Utf8).map_err(|e| format!("column {name}: {e}"))?
    };
    Ok(as_text.as_any().downcast_ref::<StringArray>().cloned())
}

/// The text of a JSON value as a field value (strings unescaped, numbers
/// and booleans as written, objects and arrays as JSON); `null` is none.
fn raw_text<'a>(raw: &'a RawValue, scratch: &'a mut String) -> Option<&'a str> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') if !text.contains('\\') => Some(&text[1..text.len() - 1]),
        Some(b'"') => {
            *scratch = serde_json::from_str::<String>(text).ok()?;
            Some(scratch.as_str())
        }
        Some(b'n') if text == "null" => None,
        _ => Some(text),
    }
}

/// An event's `unmapped` object as its (name, value) pairs, borrowed from
/// its text (a name with escapes is the only copy), in the object's order.
#[derive(Debug, Default)]
struct Pairs<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Pairs<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Pairs<'de>, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    pairs.push((k, v));
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Pairs<'a> {
    fn parse(text: &'a str) -> Pairs<'a> {
        serde_json::from_str(text).unwrap_or_default()
    }

    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// A dotted Sigma name (`userIdentity.type`) reaching into nested
    /// objects.
    fn nested(&self, name: &str) -> Option<&'a RawValue> {
        let (first, rest) = name.split_once('.')?;
        let mut current: &'a RawValue = self.get(first)?;
        for part in rest.split('.') {
            let object: Pairs<'a> = serde_json::from_str(current.get()).ok()?;
            current = object.get(part)?;
        }
        Some(current)
    }
}

/// Columns left out of keyword searches: the event's copies of itself and
/// provenance.
const NOT_SEARCHED: &[&str] = &[
    event_col::RAW,
    event_col::UNMAPPED,
    event_col::SOURCE_TOPIC,
    event_col::TIME,
    event_col::INGEST_TIME,
];

/// Extracts each registered field for the rows in its mask (the rows
/// whose rules read it).
pub(crate) fn extract(
    registry: &Registry,
    plan: &Plan,
    batch: &RecordBatch,
    masks: &[Bits],
) -> Result<FieldValues, String> {
    let rows = batch.num_rows();
    let unmapped = text_column(batch, event_col::UNMAPPED)?;
    let mut columns: HashMap<&str, StringArray> = HashMap::new();
    let mut keyword_columns = Vec::new();
    for (id, source) in registry.fields.iter().enumerate() {
        if masks[id].is_empty() {
            continue;
        }
        match source {
            FieldSource::Named {
                column: Some(c), ..
            } => {
                if !columns.contains_key(c.as_str())
                    && let Some(array) = text_column(batch, c)?
                {
                    columns.insert(c.as_str(), array);
                }
            }
            FieldSource::Keywords if keyword_columns.is_empty() => {
                for field in batch.schema().fields() {
                    if field.data_type() == &DataType::Utf8
                        && !NOT_SEARCHED.contains(&field.name().as_str())
                        && let Some(a) = text_column(batch, field.name())?
                    {
                        keyword_columns.push(a);
                    }
                }
            }
            _ => {}
        }
    }
    let wanted: Vec<usize> = (0..registry.fields.len())
        .filter(|f| !masks[*f].is_empty())
        .collect();
    let mut any = Bits::none(rows);
    for f in &wanted {
        any.or_with(&masks[*f]);
    }
    let mut out: Vec<FieldColumn> = (0..registry.fields.len())
        .map(|f| {
            if masks[f].is_empty() {
                FieldColumn::default()
            } else {
                FieldColumn::new(rows)
            }
        })
        .collect();
    // Each wanted field by name: a row's `unmapped` names are looked up
    // here once each (an event has tens of names, the rules read hundreds).
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut dotted = Vec::new();
    let mut keyword_fields = Vec::new();
    for &id in &wanted {
        match &registry.fields[id] {
            FieldSource::Named { name, .. } => {
                by_name.entry(name.as_str()).or_default().push(id);
                if name.contains('.') {
                    dotted.push(id);
                }
            }
            FieldSource::Keywords => keyword_fields.push(id),
        }
    }
    // `found[id] == row + 1`: the field was in this row's `unmapped` (even
    // as null, which then has no value and no column fallback).
    let mut found = vec![0usize; registry.fields.len()];
    let mut scratch = String::new();
    let mut haystack = String::new();
    let mut lowered = String::new();
    for row in any.rows() {
        let stamp = row + 1;
        let pairs = match &unmapped {
            Some(u) if u.is_valid(row) => Pairs::parse(u.value(row)),
            _ => Pairs::default(),
        };
        let mut spaced = false;
        for (k, v) in &pairs.0 {
            spaced |= k.contains(' ');
            if let Some(ids) = by_name.get(k.as_ref()) {
                for &id in ids {
                    if masks[id].get(row) && found[id] != stamp {
                        found[id] = stamp;
                        if let Some(text) = raw_text(v, &mut scratch) {
                            out[id].set(row, text);
                        }
                    }
                }
            }
        }
        if spaced {
            // Some logs name fields with spaces (Windows Defender's `Threat
            // Name`) where Sigma rules write them without (`ThreatName`).
            for (k, v) in &pairs.0 {
                if !k.contains(' ') {
                    continue;
                }
                if let Some(ids) = by_name.get(k.replace(' ', "").as_str()) {
                    for &id in ids {
                        if masks[id].get(row) && found[id] != stamp {
                            found[id] = stamp;
                            if let Some(text) = raw_text(v, &mut scratch) {
                                out[id].set(row, text);
                            }
                        }
                    }
                }
            }
        }
        for &id in &dotted {
            if masks[id].get(row)
                && found[id] != stamp
                && let FieldSource::Named { name, .. } = &registry.fields[id]
                && let Some(v) = pairs.nested(name)
            {
                found[id] = stamp;
                if let Some(text) = raw_text(v, &mut scratch) {
                    out[id].set(row, text);
                }
            }
        }
        for &id in &wanted {
            if found[id] == stamp || !masks[id].get(row) {
                continue;
            }
            if let FieldSource::Named {
                column: Some(c), ..
            } = &registry.fields[id]
                && let Some(c) = columns.get(c.as_str())
                && c.is_valid(row)
            {
                out[id].set(row, c.value(row));
            }
        }
        for &id in &keyword_fields {
            if !masks[id].get(row) {
                continue;
            }
            haystack.clear();
            for (_, raw) in &pairs.0 {
                if let Some(t) = raw_text(raw, &mut scratch) {
                    haystack.push_str(t);
                    haystack.push('\n');
                }
            }
            for c in &keyword_columns {
                if c.is_valid(row) {
                    haystack.push_str(c.value(row));
                    haystack.push('\n');
                }
            }
            if plan.fields.get(id).is_some_and(FieldPlan::lowercase_only) {
                lowercase_into(&haystack, &mut lowered);
                out[id].set(row, &lowered);
            } else {
                out[id].set(row, &haystack);
            }
        }
    }
    let times = match batch
        .column_by_name(event_col::TIME)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
    {
        Some(t) => (0..rows)
            .map(|r| if t.is_valid(r) { t.value(r) } else { 0 })
            .collect(),
        None => vec![0; rows],
    };
    Ok(FieldValues {
        columns: out,
        times,
    })
}

/// `text` in lowercase, into `out` (ASCII without a second copy).
fn lowercase_into(text: &str, out: &mut String) {
    out.clear();
    if text.is_ascii() {
        out.push_str(text);
        out.make_ascii_lowercase();
    } else {
        out.push_str(&text.to_lowercase());
    }
}

fn date_part(text: &str, part: Modifier) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.naive_utc())
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()?;
    Some(match part {
        Modifier::Minute => i64::from(t.minute()),
        Modifier::Hour => i64::from(t.hour()),
        Modifier::Day => i64::from(t.day()),
        Modifier::Week => i64::from(t.iso_week().week()),
        Modifier::Month => i64::from(t.month()),
        Modifier::Year => i64::from(t.year()),
        _ => return None,
    })
}

fn number(text: &str) -> Option<f64> {
    let t = text.trim();
    t.parse::<f64>().ok().or_else(|| {
        let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X"))?;
        u64::from_str_radix(hex, 16).ok().map(|v| v as f64)
    })
}

fn text_relation(value: &str, other: &str, kind: TextKind) -> bool {
    match kind {
        TextKind::Equals => value == other,
        TextKind::Contains => value.contains(other),
        TextKind::StartsWith => value.starts_with(other),
        TextKind::EndsWith => value.ends_with(other),
    }
}

/// Answers every test for the active rows.
///
/// `bits` is the answers' storage, reused from batch to batch (a fresh 1 KiB
/// bitmap for each of tens of thousands of tests costs page faults on every
/// batch): it is resized and cleared here.
pub(crate) fn answer(
    registry: &Registry,
    plan: &Plan,
    values: &FieldValues,
    masks: &[Bits],
    bits: &mut Vec<Bits>,
) {
    let rows = values.times.len();
    bits.truncate(registry.tests.len());
    for b in bits.iter_mut() {
        b.reset(rows);
    }
    bits.resize_with(registry.tests.len(), || Bits::none(rows));
    let mut lower = String::new();
    let mut reversed = Vec::new();
    for (field, fp) in plan.fields.iter().enumerate() {
        let active = &masks[field];
        if active.is_empty() {
            continue;
        }
        let column = &values.columns[field];
        let wants_lower = !fp.lowercase.is_empty();
        let keywords_lowered =
            registry.fields[field] == FieldSource::Keywords && fp.lowercase_only();
        let wants_cased = !fp.cased.is_empty();
        if wants_lower || wants_cased || fp.regex_set.is_some() {
            for row in active.rows() {
                let Some(text) = column.get(row) else {
                    continue;
                };
                if wants_lower && keywords_lowered {
                    fp.lowercase.run(text, &mut reversed, row, &mut bits[..]);
                } else if wants_lower {
                    lowercase_into(text, &mut lower);
                    fp.lowercase.run(&lower, &mut reversed, row, &mut bits[..]);
                }
                if wants_cased {
                    fp.cased.run(text, &mut reversed, row, &mut bits[..]);
                }
                if let Some(set) = &fp.regex_set {
                    for i in set.matches(text).iter() {
                        bits[fp.regex_tests[i]].set(row);
                    }
                }
            }
        }
        for &test in &fp.row_tests {
            for row in active.rows() {
                let value = column.get(row);
                let hit = match &registry.tests[test] {
                    Test::AnyValue { .. } => value.is_some(),
                    Test::Null { .. } => value.is_none_or(str::is_empty),
                    Test::Exists { present, .. } => value.is_some() == *present,
                    Test::Cidr { block, .. } => value
                        .and_then(|v| v.trim().parse::<IpAddr>().ok())
                        .is_some_and(|ip| block.contains(ip)),
                    Test::Number { op, limit, .. } => value
                        .and_then(number)
                        .is_some_and(|v| op.holds(v, f64::from_bits(*limit))),
                    Test::FieldRef {
                        other, kind, cased, ..
                    } => match (value, values.get(*other, row)) {
                        (Some(a), Some(b)) if *cased => text_relation(a, b, *kind),
                        (Some(a), Some(b)) => {
                            text_relation(&a.to_lowercase(), &b.to_lowercase(), *kind)
                        }
                        _ => false,
                    },
                    Test::DatePart {
                        part, value: want, ..
                    } => value.and_then(|v| date_part(v, *part)) == Some(*want),
                    Test::Text { .. } | Test::Glob { .. } | Test::Regex { .. } => false,
                };
                if hit {
                    bits[test].set(row);
                }
            }
        }
    }
}

/// Evaluates an expression from the tests' bitmaps.
pub(crate) fn eval(expr: &Expr, tests: &[Bits], rows: usize) -> Bits {
    match expr {
        Expr::Test(id) => tests[*id].clone(),
        Expr::And(items) => {
            let mut out = Bits::all(rows);
            for item in items {
                if out.is_empty() {
                    break;
                }
                // A test's bitmap is used where it is, not copied.
                match item {
                    Expr::Test(id) => out.and_with(&tests[*id]),
                    _ => out.and_with(&eval(item, tests, rows)),
                }
            }
            out
        }
        Expr::Or(items) => {
            let mut out = Bits::none(rows);
            for item in items {
                match item {
                    Expr::Test(id) => out.or_with(&tests[*id]),
                    _ => out.or_with(&eval(item, tests, rows)),
                }
            }
            out
        }
        Expr::Not(inner) => {
            let mut out = eval(inner, tests, rows);
            out.negate();
            out
        }
    }
}

/// A batch's filter columns, each as the rows holding each (lowercase)
/// value, built once per batch and shared by every log source filter.
#[derive(Debug, Default)]
pub(crate) struct FilterColumns {
    columns: HashMap<String, HashMap<String, Bits>>,
}

impl FilterColumns {
    fn rows_with(
        &mut self,
        batch: &RecordBatch,
        column: &str,
    ) -> Result<&HashMap<String, Bits>, String> {
        if !self.columns.contains_key(column) {
            let rows = batch.num_rows();
            let mut by_value: HashMap<String, Bits> = HashMap::new();
            if let Some(text) = text_column(batch, column)? {
                for row in 0..rows {
                    if text.is_valid(row) {
                        let v = text.value(row);
                        let key = if v.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
                            v.to_lowercase()
                        } else {
                            v.to_string()
                        };
                        by_value
                            .entry(key)
                            .or_insert_with(|| Bits::none(rows))
                            .set(row);
                    }
                }
            }
            self.columns.insert(column.to_string(), by_value);
        }
        Ok(&self.columns[column])
    }
}

/// The rows passing a log source filter (every list: any entry; an entry:
/// every column equal to one of its values, ignoring case; the values are
/// lowercase already).
pub(crate) fn filter_rows(
    batch: &RecordBatch,
    filter: &[Vec<EventFilter>],
    columns: &mut FilterColumns,
) -> Result<Bits, String> {
    let rows = batch.num_rows();
    let mut out = Bits::all(rows);
    for any_of in filter {
        let mut passing = Bits::none(rows);
        for entry in any_of {
            let mut all = Bits::all(rows);
            for (column, wanted) in entry {
                let by_value = columns.rows_with(batch, column)?;
                let mut hits = Bits::none(rows);
                for w in wanted {
                    if let Some(b) = by_value.get(w) {
                        hits.or_with(b);
                    }
                }
                all.and_with(&hits);
            }
            passing.or_with(&all);
        }
        out.and_with(&passing);
    }
    Ok(out)
}

impl Plan {
    /// A plan with nothing to compute.
    pub(crate) fn empty() -> Plan {
        Plan { fields: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{batch, engine};

    fn hits(yaml: &str, rows: &[serde_json::Value]) -> Vec<usize> {
        let e = engine(yaml);
        let rows: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v.clone()))
            .collect();
        let result = e.evaluate(&batch(&rows)).expect("evaluate");
        result.hits.iter().map(|h| h.row).collect()
    }

    fn rule(detection: &str) -> String {
        format!("title: t\nlogsource: {{product: windows}}\ndetection:\n{detection}\n")
    }

    #[test]
    fn bits_operations() {
        let mut a = Bits::none(130);
        a.set(0);
        a.set(129);
        assert_eq!(a.rows().collect::<Vec<_>>(), [0, 129]);
        let mut n = a.clone();
        n.negate();
        assert_eq!(n.rows().count(), 128, "negation stays within the rows");
        n.and_with(&a);
        assert!(n.is_empty());
        assert_eq!(Bits::all(65).rows().count(), 65);
    }

    #[test]
    fn one_automaton_answers_equals_contains_and_ends() {
        let yaml = rule(
            "  a: {X: 'abc'}\n  b: {X|contains: 'b'}\n  c: {X|startswith: 'ab'}\n  d: {X|endswith: 'bc'}\n  condition: a and b and c and d",
        );
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"X": "ABC"}),
                    json!({"X": "abcd"}),
                    json!({"Y": "abc"})
                ]
            ),
            [0]
        );
    }

    #[test]
    fn keywords_search_every_value_and_fieldref_compares_fields() {
        let yaml = rule("  k: ['evil.exe']\n  condition: k");
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"A": "x"}),
                    json!({"B": "run EVIL.EXE now"}),
                    json!({"C": 5})
                ]
            ),
            [1]
        );
        let yaml = rule("  s: {A|fieldref: B}\n  condition: s");
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"A": "x", "B": "X"}),
                    json!({"A": "x", "B": "y"}),
                    json!({"A": "x"})
                ]
            ),
            [0]
        );
    }

    #[test]
    fn names_reach_nested_objects_and_spaced_names() {
        let yaml = rule(
            "  s: {userIdentity.type: Root}\n  t: {ThreatName: 'EICAR*'}\n  condition: s or t",
        );
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"userIdentity": {"type": "Root"}}),
                    json!({"Threat Name": "EICAR_Test"}),
                    json!({"userIdentity": {"type": "IAMUser"}})
                ]
            ),
            [0, 1]
        );
    }

    #[test]
    fn not_holds_for_missing_fields_and_null_matches_absent_or_empty() {
        let yaml = rule("  s: {A: x}\n  f: {B: y}\n  condition: s and not f");
        assert_eq!(
            hits(&yaml, &[json!({"A": "x"}), json!({"A": "x", "B": "y"})]),
            [0]
        );
        let yaml = rule("  s: {B: null}\n  condition: s");
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"A": "x"}),
                    json!({"B": ""}),
                    json!({"B": "v"}),
                    json!({"B": null})
                ]
            ),
            [0, 1, 3]
        );
    }

    #[test]
    fn date_parts_of_timestamps() {
        let yaml = rule("  s: {T|hour: 10}\n  w: {T|year: 2023}\n  condition: s or w");
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"T": "2024-05-01T10:20:00Z"}),
                    json!({"T": "2024-05-01 10:05:00.000"}),
                    json!({"T": "2024-05-01T11:00:00+01:00"}),
                    json!({"T": "2023-01-01T00:00:00Z"}),
                    json!({"T": "not a time"})
                ]
            ),
            [0, 1, 2, 3],
            "11:00+01:00 is 10:00 UTC"
        );
    }

    #[test]
    fn numbers_cidr_and_unicode_case() {
        let yaml = rule("  s: {N|gte: 10}\n  condition: s");
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"N": 9}),
                    json!({"N": "10"}),
                    json!({"N": "0x10"}),
                    json!({"N": "x"})
                ]
            ),
            [1, 2]
        );
        let yaml = rule("  s: {IP|cidr: '192.168.0.0/16'}\n  condition: s");
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"IP": "192.168.4.4"}),
                    json!({"IP": "10.0.0.1"}),
                    json!({"IP": "junk"})
                ]
            ),
            [0]
        );
        let yaml =
            rule("  s: {U|contains: 'STRASSE'}\n  t: {U|contains: 'ÄRGER'}\n  condition: s or t");
        assert_eq!(
            hits(
                &yaml,
                &[
                    json!({"U": "Hauptstrasse"}),
                    json!({"U": "viel ärger"}),
                    json!({"U": "none"})
                ]
            ),
            [0, 1]
        );
    }

    proptest::proptest! {
        /// Literals answered through the shared automaton agree with the
        /// plain string functions, for every match kind at once (patterns
        /// overlapping each other and the text repeating them included).
        #[test]
        fn automaton_answers_agree_with_string_functions(
            text in "[abAB]{0,12}",
            needles in proptest::collection::vec("[abAB]{1,3}", 1..6),
        ) {
            let mut yaml = String::new();
            for (i, n) in needles.iter().enumerate() {
                for (j, m) in ["", "|contains", "|startswith", "|endswith"].iter().enumerate() {
                    if !yaml.is_empty() {
                        yaml.push_str("---\n");
                    }
                    yaml.push_str(&format!(
                        "title: r{i}_{j}\nlogsource: {{product: windows}}\ndetection:\n  s: {{X{m}: '{n}'}}\n  condition: s\n"
                    ));
                }
            }
            let e = engine(&yaml);
            let result = e.evaluate(&batch(&[(0, json!({"X": text}))])).expect("evaluate");
            let lower = text.to_lowercase();
            for (i, n) in needles.iter().enumerate() {
                let n = n.to_lowercase();
                let want = [lower == n, lower.contains(&n), lower.starts_with(&n), lower.ends_with(&n)];
                for (j, w) in want.iter().enumerate() {
                    let title = format!("r{i}_{j}");
                    let got = result.hits.iter().any(|h| e.detections[h.rule].info.title == title);
                    proptest::prop_assert_eq!(got, *w, "{} on {:?}", title, text);
                }
            }
        }
    }
}
