//! Linux auditd (`source_type = "auditd"`): records joined into events by
//! their serial number and mapped to OCSF.
//!
//! Accepted record shapes, one record a line (an input may hold several):
//! - raw: `type=SYSCALL msg=audit(1604994496.155:92733): arch=c000003e …`,
//!   optionally after `node=<host> ` (multi-host forwarding) and after a
//!   syslog header (`audispd`/`audisp-syslog` forwarding; read with the
//!   syslog parser, its host kept as `syslog_hostname`);
//! - JSON: an object with `type`, `msg: "audit(ts:serial)"` and the record's
//!   fields as strings (quotes already removed, hex left encoded).
//!
//! Records of one event share `(node, timestamp, serial)` and arrive
//! together, so the parser holds them and emits the event when a record of
//! another event arrives, on `type=EOE`, or on [`Parser::flush`] (called
//! before every flush of the pipeline, so nothing waits across one). An
//! event carries its first record's provenance and, as `raw`, its records'
//! lines joined by `\n`. An event is cut (with a note) at 512 records or
//! 1 MiB so a stream without serial changes cannot grow without bound.
//!
//! Values: quoted strings are unquoted; `(null)` is JSON null; the fields
//! auditd hex-encodes when they hold spaces or control characters (EXECVE
//! `aN`, `proctitle` with NUL-separated arguments shown as spaces, `cwd`,
//! `name`, `comm`, `exe`, `path`, `acct`, `key`, `cmd`, `data`) are decoded
//! when unquoted. The JSON form lost the quotes, so there a value is decoded
//! only when it is hex that decodes to printable UTF-8 (an argument `dd` stays
//! `dd`; an argument that is itself printable hex, like `4142`, would be
//! read as `AB` — rare, and the record line keeps the original). Ids
//! (`uid`, `auid`, `pid`, `ses`, …) become numbers; the names newer auditd
//! adds in uppercase (`UID="root"`, `AUID="alice"`, after a 0x1d byte) are
//! kept and preferred for the user columns. Words that are not `key=value`
//! (AVC's `avc: denied { read } for`) are kept in `text`.
//!
//! Fields: the first record's fields at the top level with `type`,
//! `audit_serial` and `audit_time`; every other record under its type as an
//! array (`PATH: [{…}, {…}]`, `EXECVE: [{…}]`), so nothing is lost.
//!
//! Mapping (event_code = first record type, metadata_product `auditd`):
//! SYSCALL execve/execveat → Process Activity 1007 Launch; file syscalls
//! (open, creat, unlink, rename, chmod, mkdir, …) → File System Activity
//! 1001 with the path of the PATH record it acted on; connect/accept/bind/
//! sendto/recvfrom with an AF_INET/AF_INET6 SOCKADDR → Network Activity 4001;
//! setuid family → 1007 Set User ID; (f)init_module/delete_module → Module
//! Activity 1005; other syscalls with PATH records → 1001 Other; the rest
//! keep no class. USER_LOGIN/USER_AUTH/USER_ACCT/CRED_ACQ/USER_START/
//! USER_END/CRED_DISP/… → Authentication 3002; ADD_USER/DEL_USER/
//! USER_CHAUTHTOK/… → Account Change 3001; USER_CMD (sudo) → 1007 Launch.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value};
use spoor_common::schema::event_col as col;

use super::draft::{MAX_EVENT_BYTES, as_text, format_micros, parse_object};
use super::{Draft, NormalizeError, ParseOutput, Parsed, Parser, PartFailure, Provenance, lines};

const FORMAT: &str = "auditd";

/// Records held for one event at most (then it is emitted with a note).
const MAX_RECORDS: usize = 512;

/// auid/uid values that mean "not set".
const UNSET_IDS: [i64; 2] = [4_294_967_295, -1];

/// The `auditd` source type: joins records into events.
#[derive(Debug, Default)]
pub struct AuditdParser {
    pending: Option<Pending>,
}

impl AuditdParser {
    /// An auditd parser holding no records.
    pub fn new() -> Self {
        AuditdParser::default()
    }
}

/// One audit record.
#[derive(Debug, Clone)]
struct Record {
    kind: String,
    ts_text: String,
    time_micros: i64,
    serial: u64,
    node: Option<String>,
    syslog_host: Option<String>,
    fields: Map<String, Value>,
    notes: Vec<String>,
    line: String,
}

/// The records of the event being joined.
#[derive(Debug)]
struct Pending {
    key: (Option<String>, String, u64),
    prov: Provenance,
    first: Record,
    others: Vec<Record>,
    raw: String,
    notes: Vec<String>,
}

impl Record {
    fn key(&self) -> (Option<String>, String, u64) {
        (self.node.clone(), self.ts_text.clone(), self.serial)
    }
}

/// Parses `TIMESTAMP:SERIAL` (inside `audit(…)`): (timestamp text, micros,
/// serial).
fn parse_stamp(inner: &str) -> Result<(String, i64, u64), String> {
    let Some((ts, serial)) = inner.split_once(':') else {
        return Err(format!("msg=audit({inner}) has no `:SERIAL`"));
    };
    let serial_n = serial
        .parse::<u64>()
        .ok()
        .filter(|_| serial.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("bad serial `{serial}` in msg=audit({inner})"))?;
    let bad_ts = || format!("bad timestamp `{ts}` in msg=audit({inner})");
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad_ts());
    }
    let secs: i64 = secs.parse().map_err(|_| bad_ts())?;
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    let frac: i64 = digits.parse().map_err(|_| bad_ts())?;
    let micros = secs
        .checked_mul(1_000_000)
        .and_then(|m| m.checked_add(frac))
        .ok_or_else(bad_ts)?;
    Ok((ts.to_string(), micros, serial_n))
}

/// Fields auditd hex-encodes when their value is unsafe to print.
fn encodable(kind: &str, key: &str) -> bool {
    if matches!(
        key,
        "proctitle" | "cwd" | "name" | "comm" | "exe" | "path" | "acct" | "key" | "cmd" | "data"
    ) {
        return true;
    }
    // EXECVE arguments: a0, a1, …, and the pieces a0[0], a0[1] of long ones.
    kind == "EXECVE" && is_arg_key(key).is_some()
}

/// `aN` → (N, None); `aN[i]` → (N, Some(i)).
fn is_arg_key(key: &str) -> Option<(u64, Option<u64>)> {
    let rest = key.strip_prefix('a')?;
    let (n, piece) = match rest.split_once('[') {
        Some((n, p)) => (n, Some(p.strip_suffix(']')?)),
        None => (rest, None),
    };
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let piece = match piece {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
        None => None,
    };
    Some((n.parse().ok()?, piece))
}

/// Fields holding ids and counts, read as numbers.
fn numeric(key: &str) -> bool {
    matches!(
        key,
        "uid"
            | "auid"
            | "euid"
            | "suid"
            | "fsuid"
            | "gid"
            | "egid"
            | "sgid"
            | "fsgid"
            | "ouid"
            | "ogid"
            | "pid"
            | "ppid"
            | "ses"
            | "exit"
            | "items"
            | "argc"
            | "item"
            | "inode"
            | "syscall"
            | "id"
            | "old-auid"
            | "old-ses"
    )
}

/// Hex text as bytes (even length, hex digits only).
fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Decoded bytes as text: NUL-separated arguments (`proctitle`) with
/// spaces, key lists (0x01-separated) with commas.
fn bytes_text(key: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match key {
        "proctitle" => text.replace('\0', " ").trim_end().to_string(),
        "key" => text.replace('\u{1}', ","),
        _ => text.into_owned(),
    }
}

/// Whether decoded bytes look like text (for the JSON form, which lost the
/// quotes that tell encoded from plain values).
fn plausible_text(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            !s.starts_with('\0')
                && s.chars()
                    .all(|c| !c.is_control() || matches!(c, '\0' | '\t' | '\u{1}'))
        }
        Err(_) => false,
    }
}

/// A record value as JSON: `quoted` is `None` for the JSON form.
fn value(kind: &str, key: &str, text: &str, quoted: Option<bool>) -> Value {
    if quoted == Some(true) {
        return Value::String(text.to_string());
    }
    if text == "(null)" {
        return Value::Null;
    }
    if encodable(kind, key)
        && let Some(bytes) = hex_bytes(text)
        && (quoted == Some(false) || plausible_text(&bytes))
    {
        return Value::String(bytes_text(key, &bytes));
    }
    if numeric(key)
        && let Ok(n) = text.parse::<i64>()
    {
        return Value::from(n);
    }
    Value::String(text.to_string())
}

/// Inserts a field; a repeated key becomes an array of its values.
fn insert(fields: &mut Map<String, Value>, key: &str, v: Value) {
    match fields.get_mut(key) {
        Some(Value::Array(items)) => items.push(v),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, v]);
        }
        None => {
            fields.insert(key.to_string(), v);
        }
    }
}

fn is_sep(c: char) -> bool {
    c.is_whitespace() || c == '\u{1d}'
}

/// The `key=value` body of a raw record into `fields`.
fn parse_body(kind: &str, body: &str, fields: &mut Map<String, Value>, notes: &mut Vec<String>) {
    let mut words: Vec<&str> = Vec::new();
    let mut s = body;
    loop {
        s = s.trim_start_matches(is_sep);
        if s.is_empty() {
            break;
        }
        let end = s.find(|c: char| c == '=' || is_sep(c)).unwrap_or(s.len());
        let key = &s[..end];
        let Some(v) = s[end..].strip_prefix('=').filter(|_| !key.is_empty()) else {
            words.push(&s[..end.max(1).min(s.len())]);
            s = s.get(end.max(1)..).unwrap_or("");
            continue;
        };
        let (text, quoted, rest) = if let Some(q) = v.strip_prefix('"') {
            match q.find('"') {
                Some(i) => (&q[..i], true, &q[i + 1..]),
                None => {
                    notes.push(format!("{kind}: the value of `{key}` has no closing quote"));
                    (q, true, "")
                }
            }
        } else if let Some(q) = v.strip_prefix('\'') {
            let (inner, rest) = match q.find('\'') {
                Some(i) => (&q[..i], &q[i + 1..]),
                None => {
                    notes.push(format!("{kind}: the value of `{key}` has no closing quote"));
                    (q, "")
                }
            };
            if key == "msg" {
                // USER_* records: `msg='op=… acct="x" res=success'` holds the
                // interesting fields; they join the record's own.
                let mut inner_fields = Map::new();
                parse_body(kind, inner, &mut inner_fields, notes);
                for (k, v) in inner_fields {
                    insert(fields, &k, v);
                }
                s = rest;
                continue;
            }
            (inner, true, rest)
        } else if v.starts_with('{') {
            // Enriched SADDR={ fam=inet laddr=… }.
            match v.find('}') {
                Some(i) => (&v[..=i], true, &v[i + 1..]),
                None => (v, true, ""),
            }
        } else {
            let e = v.find(is_sep).unwrap_or(v.len());
            (&v[..e], false, &v[e..])
        };
        insert(fields, key, value(kind, key, text, Some(quoted)));
        s = rest;
    }
    if !words.is_empty() {
        insert(fields, "text", Value::String(words.join(" ")));
    }
}

/// A raw record starting at `node=` or `type=`.
fn parse_raw(s: &str, line: &str, syslog_host: Option<String>) -> Result<Record, String> {
    let (node, s) = match s.strip_prefix("node=") {
        Some(r) => {
            let e = r.find(is_sep).unwrap_or(r.len());
            (Some(r[..e].to_string()), r[e..].trim_start_matches(is_sep))
        }
        None => (None, s),
    };
    let Some(r) = s.strip_prefix("type=") else {
        return Err("no `type=` at the start of the record".into());
    };
    let e = r.find(is_sep).unwrap_or(r.len());
    let kind = &r[..e];
    if kind.is_empty()
        || !kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'[' | b']'))
    {
        return Err(format!("bad record type `type={kind}`"));
    }
    let r = r[e..].trim_start_matches(is_sep);
    let Some(r) = r.strip_prefix("msg=audit(") else {
        return Err(format!("no `msg=audit(…)` after `type={kind}`"));
    };
    let Some(close) = r.find(')') else {
        return Err(format!("`msg=audit(` of type={kind} is not closed by `)`"));
    };
    let (ts_text, time_micros, serial) = parse_stamp(&r[..close])?;
    let body = &r[close + 1..];
    let body = body.strip_prefix(':').unwrap_or(body);
    let mut fields = Map::new();
    let mut notes = Vec::new();
    parse_body(kind, body, &mut fields, &mut notes);
    Ok(Record {
        kind: kind.to_string(),
        ts_text,
        time_micros,
        serial,
        node,
        syslog_host,
        fields,
        notes,
        line: line.to_string(),
    })
}

/// A JSON record.
fn parse_json(line: &str) -> Result<Record, String> {
    let object = parse_object(line.as_bytes()).map_err(|e| e.to_string())?;
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        return Err("JSON record has no `type` string".into());
    };
    let Some(msg) = object.get("msg").and_then(Value::as_str) else {
        return Err(format!("JSON record of type {kind} has no `msg` string"));
    };
    let Some(inner) = msg
        .trim()
        .strip_prefix("audit(")
        .and_then(|m| m.trim_end_matches(':').strip_suffix(')'))
    else {
        return Err(format!(
            "JSON record of type {kind}: `msg` is `{msg}`, not `audit(TIMESTAMP:SERIAL)`"
        ));
    };
    let (ts_text, time_micros, serial) = parse_stamp(inner)?;
    let mut fields = Map::new();
    let mut node = None;
    for (k, v) in &object {
        match (k.as_str(), v) {
            ("type" | "msg", _) => {}
            ("node", Value::String(n)) => node = Some(n.clone()),
            (_, Value::String(s)) => insert(&mut fields, k, value(kind, k, s, None)),
            _ => insert(&mut fields, k, v.clone()),
        }
    }
    Ok(Record {
        kind: kind.to_string(),
        ts_text,
        time_micros,
        serial,
        node,
        syslog_host: None,
        fields,
        notes: Vec::new(),
        line: line.to_string(),
    })
}

/// One line as a record, whatever its shape.
fn parse_record(line: &str, ingest: i64) -> Result<Record, String> {
    let s = line.trim();
    if s.starts_with('{') {
        return parse_json(s);
    }
    if s.starts_with("type=") || s.starts_with("node=") {
        return parse_raw(s, line, None);
    }
    match super::syslog::parse_line(s, ingest) {
        Ok(header) => {
            let body = header.msg.trim();
            if body.starts_with("type=") || body.starts_with("node=") {
                parse_raw(body, line, header.hostname)
            } else {
                Err(format!(
                    "the syslog message{} is not an audit record: no `type=` at its start",
                    header
                        .app_name
                        .map(|a| format!(" from `{a}`"))
                        .unwrap_or_default()
                ))
            }
        }
        Err(_) => Err("no `type=` at the start of the record or after a syslog header".into()),
    }
}

impl Pending {
    fn new(first: Record, prov: &Provenance) -> Self {
        Pending {
            key: first.key(),
            prov: prov.clone(),
            raw: first.line.clone(),
            first,
            others: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn add(&mut self, rec: Record) {
        self.raw.push('\n');
        self.raw.push_str(&rec.line);
        self.others.push(rec);
    }

    fn full(&self) -> bool {
        self.others.len() + 1 >= MAX_RECORDS || self.raw.len() >= MAX_EVENT_BYTES
    }

    /// The joined event.
    fn into_parsed(self) -> Parsed {
        let Pending {
            prov,
            first,
            others,
            raw,
            mut notes,
            ..
        } = self;
        let mut fields = first.fields;
        // A record field of the same name is kept beside the added one.
        fn put(fields: &mut Map<String, Value>, k: &str, v: Value) {
            if fields.contains_key(k) {
                insert(fields, &format!("{k}_record"), v);
            } else {
                fields.insert(k.to_string(), v);
            }
        }
        put(&mut fields, "type", Value::String(first.kind.clone()));
        put(&mut fields, "audit_serial", Value::from(first.serial));
        put(
            &mut fields,
            "audit_time",
            Value::String(format_micros(first.time_micros)),
        );
        if let Some(node) = first.node {
            put(&mut fields, "node", Value::String(node));
        }
        if let Some(host) = first.syslog_host {
            put(&mut fields, "syslog_hostname", Value::String(host));
        }
        notes.extend(first.notes);
        let mut arrays: HashSet<String> = HashSet::new();
        for rec in others {
            notes.extend(rec.notes);
            let key = if arrays.contains(&rec.kind) || !fields.contains_key(&rec.kind) {
                rec.kind
            } else {
                format!("{}_records", rec.kind)
            };
            match fields.get_mut(&key) {
                Some(Value::Array(items)) => items.push(Value::Object(rec.fields)),
                _ => {
                    fields.insert(key.clone(), Value::Array(vec![Value::Object(rec.fields)]));
                }
            }
            arrays.insert(key);
        }
        let mut draft = Draft::new(fields);
        for note in notes {
            draft.note(note);
        }
        Parsed {
            draft,
            raw: Some(raw.into_bytes()),
            provenance: Some(prov),
        }
    }
}

impl AuditdParser {
    fn emit(&mut self, out: &mut ParseOutput) {
        if let Some(p) = self.pending.take() {
            out.events.push(p.into_parsed());
        }
    }

    fn push(&mut self, rec: Record, prov: &Provenance, out: &mut ParseOutput) {
        if self.pending.as_ref().is_some_and(|p| p.key != rec.key()) {
            self.emit(out);
        }
        let end = rec.kind == "EOE";
        match &mut self.pending {
            Some(p) => {
                p.add(rec);
                if !end && p.full() {
                    p.notes.push(format!(
                        "auditd: event cut at {} records ({} bytes); the rest follows as another event",
                        p.others.len() + 1,
                        p.raw.len()
                    ));
                    self.emit(out);
                }
            }
            None => {
                let mut p = Pending::new(rec, prov);
                if end {
                    p.notes.push(
                        "auditd: EOE record without the records of its event (emitted before, or lost)"
                            .into(),
                    );
                }
                self.pending = Some(p);
            }
        }
        if end {
            self.emit(out);
        }
    }
}

impl Parser for AuditdParser {
    fn parse(
        &mut self,
        input: &[u8],
        prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError> {
        let text = as_text(input)?;
        let all: Vec<(usize, &str)> = lines(text).collect();
        if let [(_, line)] = all.as_slice() {
            let rec = parse_record(line, prov.ingest_time_micros).map_err(|reason| {
                NormalizeError::Format {
                    format: FORMAT,
                    reason,
                }
            })?;
            self.push(rec, prov, out);
            return Ok(());
        }
        if all.is_empty() {
            return Err(NormalizeError::Empty);
        }
        for (n, line) in all {
            match parse_record(line, prov.ingest_time_micros) {
                Ok(rec) => self.push(rec, prov, out),
                Err(reason) => out.failures.push(PartFailure {
                    raw: line.as_bytes().to_vec(),
                    error: format!("line {n}: not {FORMAT}: {reason}"),
                }),
            }
        }
        Ok(())
    }

    fn map(&self, d: &mut Draft) {
        let kind = d
            .field_str("type")
            .or_else(|| d.get_str(col::EVENT_CODE).map(str::to_string))
            .unwrap_or_default();
        d.take(col::EVENT_CODE, &["type"]);
        d.take(col::TIME, &["audit_time"]);
        d.take(col::DEVICE_HOSTNAME, &["node", "syslog_hostname"]);
        if !d.is_set(col::METADATA_PRODUCT) {
            d.set_str(col::METADATA_PRODUCT, "auditd");
        }
        if !d.is_set(col::METADATA_LOG_NAME) {
            d.set_str(col::METADATA_LOG_NAME, "audit");
        }
        let mut user_is_uid = true;
        match kind.as_str() {
            "SYSCALL" => map_syscall(d),
            "USER_LOGIN" | "USER_AUTH" | "USER_ACCT" | "CRED_ACQ" | "CRED_REFR" | "USER_START"
            | "USER_ERR" => {
                map_user_record(d, 3002, 1);
                user_is_uid = false;
            }
            "USER_END" | "USER_LOGOUT" | "CRED_DISP" => {
                map_user_record(d, 3002, 2);
                user_is_uid = false;
            }
            "ADD_USER" => {
                map_user_record(d, 3001, 1);
                user_is_uid = false;
            }
            "DEL_USER" => {
                map_user_record(d, 3001, 6);
                user_is_uid = false;
            }
            "USER_CHAUTHTOK" => {
                map_user_record(d, 3001, 3);
                user_is_uid = false;
            }
            "ACCT_LOCK" => {
                map_user_record(d, 3001, 9);
                user_is_uid = false;
            }
            "USER_MGMT" | "ADD_GROUP" | "DEL_GROUP" | "GRP_MGMT" | "ACCT_UNLOCK" => {
                map_user_record(d, 3001, 99);
                user_is_uid = false;
            }
            "USER_CMD" => {
                d.set_class(1007, 1);
                d.take(col::PROCESS_CMD_LINE, &["cmd"]);
            }
            _ => {}
        }
        d.take(col::PROCESS_PID, &["pid"]);
        d.take(col::PROCESS_PARENT_PID, &["ppid"]);
        d.take(col::PROCESS_PATH, &["exe"]);
        d.take(col::PROCESS_NAME, &["comm"]);
        take_known(d, col::ACTOR_USER_NAME, &["AUID", "auid"]);
        if user_is_uid {
            take_known(d, col::USER_NAME, &["UID", "uid"]);
        }
        if !d.is_set(col::STATUS) {
            let outcome = d.field_str("success").or_else(|| d.field_str("res"));
            match outcome.as_deref() {
                Some("yes" | "success") => d.set_str(col::STATUS, "success"),
                Some("no" | "failed" | "fail" | "failure") => d.set_str(col::STATUS, "failure"),
                _ => {}
            }
        }
    }

    fn flush(&mut self, out: &mut ParseOutput) {
        self.emit(out);
    }
}

// ---------------------------------------------------------------------------
// Mapping helpers.

/// Whether a value names someone (not `?`, `unset`, `(unknown)`, null or
/// the unset id 4294967295 / -1).
fn known(v: &Value) -> bool {
    match v {
        Value::String(s) => {
            let s = s.trim();
            !(s.is_empty()
                || matches!(
                    s,
                    "?" | "unset" | "(unknown)" | "(none)" | "-1" | "4294967295"
                ))
        }
        Value::Number(n) => n.as_i64().is_some_and(|n| !UNSET_IDS.contains(&n)),
        _ => false,
    }
}

/// Takes the first of `paths` that holds a known value.
fn take_known(d: &mut Draft, column: &str, paths: &[&str]) {
    for path in paths {
        if d.field(path).is_some_and(known) {
            d.take(column, &[path]);
            return;
        }
    }
}

fn put(d: &mut Draft, column: &str, value: &str) {
    if !d.is_set(column) {
        d.set_str(column, value);
    }
}

/// The objects of a record type other than the first (`PATH: [{…}]`).
fn records<'a>(d: &'a Draft, kind: &str) -> Vec<&'a Map<String, Value>> {
    match d.fields.get(kind) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        _ => Vec::new(),
    }
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// USER_* and account records: the account, the remote end, the outcome.
fn map_user_record(d: &mut Draft, class: i64, activity: i64) {
    d.set_class(class, activity);
    take_known(d, col::USER_NAME, &["acct", "ID", "id"]);
    let addr = d.field_str("addr").filter(|a| a.parse::<IpAddr>().is_ok());
    if addr.is_some() {
        d.take(col::SRC_IP, &["addr"]);
    }
    if let Some(host) = d
        .field_str("hostname")
        .filter(|h| known(&Value::String(h.clone())))
    {
        if host.parse::<IpAddr>().is_ok() {
            if !d.is_set(col::SRC_IP) {
                d.take(col::SRC_IP, &["hostname"]);
            }
        } else if class == 3002 {
            d.take(col::SRC_HOSTNAME, &["hostname"]);
        }
    }
    if class == 3002 && d.field_str("op").is_some_and(|op| op.starts_with("PAM:")) {
        put(d, col::AUTH_PROTOCOL, "PAM");
    }
}

/// Syscall names by architecture (`arch`) and number, for the syscalls the
/// mapping distinguishes.
fn syscall_name(arch: &str, nr: i64) -> Option<&'static str> {
    const X86_64: &[(i64, &str)] = &[
        (2, "open"),
        (42, "connect"),
        (43, "accept"),
        (44, "sendto"),
        (45, "recvfrom"),
        (46, "sendmsg"),
        (47, "recvmsg"),
        (49, "bind"),
        (59, "execve"),
        (62, "kill"),
        (76, "truncate"),
        (77, "ftruncate"),
        (82, "rename"),
        (83, "mkdir"),
        (84, "rmdir"),
        (85, "creat"),
        (86, "link"),
        (87, "unlink"),
        (88, "symlink"),
        (90, "chmod"),
        (91, "fchmod"),
        (92, "chown"),
        (93, "fchown"),
        (94, "lchown"),
        (101, "ptrace"),
        (105, "setuid"),
        (106, "setgid"),
        (113, "setreuid"),
        (114, "setregid"),
        (117, "setresuid"),
        (119, "setresgid"),
        (132, "utime"),
        (133, "mknod"),
        (165, "mount"),
        (166, "umount2"),
        (175, "init_module"),
        (176, "delete_module"),
        (188, "setxattr"),
        (189, "lsetxattr"),
        (190, "fsetxattr"),
        (197, "removexattr"),
        (235, "utimes"),
        (257, "openat"),
        (258, "mkdirat"),
        (259, "mknodat"),
        (260, "fchownat"),
        (263, "unlinkat"),
        (264, "renameat"),
        (265, "linkat"),
        (266, "symlinkat"),
        (268, "fchmodat"),
        (280, "utimensat"),
        (288, "accept4"),
        (304, "open_by_handle_at"),
        (313, "finit_module"),
        (316, "renameat2"),
        (322, "execveat"),
        (437, "openat2"),
    ];
    const AARCH64: &[(i64, &str)] = &[
        (33, "mknodat"),
        (34, "mkdirat"),
        (35, "unlinkat"),
        (36, "symlinkat"),
        (37, "linkat"),
        (38, "renameat"),
        (39, "umount2"),
        (40, "mount"),
        (45, "truncate"),
        (46, "ftruncate"),
        (52, "fchmod"),
        (53, "fchmodat"),
        (54, "fchownat"),
        (55, "fchown"),
        (56, "openat"),
        (105, "init_module"),
        (106, "delete_module"),
        (117, "ptrace"),
        (144, "setgid"),
        (145, "setreuid"),
        (146, "setuid"),
        (147, "setresuid"),
        (200, "bind"),
        (202, "accept"),
        (203, "connect"),
        (206, "sendto"),
        (207, "recvfrom"),
        (211, "sendmsg"),
        (212, "recvmsg"),
        (221, "execve"),
        (242, "accept4"),
        (273, "finit_module"),
        (276, "renameat2"),
        (281, "execveat"),
    ];
    const I386: &[(i64, &str)] = &[
        (5, "open"),
        (8, "creat"),
        (10, "unlink"),
        (11, "execve"),
        (15, "chmod"),
        (38, "rename"),
        (39, "mkdir"),
        (40, "rmdir"),
        (295, "openat"),
        (301, "unlinkat"),
        (358, "execveat"),
    ];
    let table = match arch.to_ascii_lowercase().as_str() {
        "c000003e" | "x86_64" => X86_64,
        "c00000b7" | "aarch64" => AARCH64,
        "40000003" | "i386" | "i686" => I386,
        _ => return None,
    };
    table.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

/// A few errno names for failed syscalls' `exit`.
fn errno_name(e: i64) -> Option<&'static str> {
    Some(match e {
        1 => "EPERM",
        2 => "ENOENT",
        9 => "EBADF",
        11 => "EAGAIN",
        13 => "EACCES",
        17 => "EEXIST",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        101 => "ENETUNREACH",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        115 => "EINPROGRESS",
        _ => return None,
    })
}

/// File System Activity's activity for a file syscall.
fn file_activity(name: &str) -> Option<i64> {
    Some(match name {
        "open" | "openat" | "openat2" | "open_by_handle_at" => 14,
        "creat" | "mkdir" | "mkdirat" | "mknod" | "mknodat" | "link" | "linkat" | "symlink"
        | "symlinkat" => 1,
        "truncate" | "ftruncate" => 3,
        "unlink" | "unlinkat" | "rmdir" => 4,
        "rename" | "renameat" | "renameat2" => 5,
        "utime" | "utimes" | "utimensat" | "setxattr" | "lsetxattr" | "fsetxattr"
        | "removexattr" => 6,
        "chmod" | "fchmod" | "fchmodat" | "chown" | "fchown" | "lchown" | "fchownat" => 7,
        "mount" => 12,
        "umount2" => 13,
        _ => return None,
    })
}

/// The path a file syscall acted on: the PATH record deleted, else created,
/// else a normal one (not the parent directory), made absolute with CWD.
fn acted_path(d: &Draft) -> Option<(String, String)> {
    let rank = |t: &str| match t {
        "DELETE" => 0,
        "CREATE" => 1,
        "NORMAL" => 2,
        "PARENT" => 4,
        _ => 3,
    };
    let (name, nametype) = records(d, "PATH")
        .into_iter()
        .filter_map(|p| {
            let name = p.get("name").and_then(Value::as_str)?;
            let nametype = p.get("nametype").and_then(Value::as_str).unwrap_or("");
            (!name.is_empty()).then(|| (name.to_string(), nametype.to_string()))
        })
        .min_by_key(|(_, t)| rank(t))?;
    if name.starts_with('/') {
        return Some((name, nametype));
    }
    let cwd = records(d, "CWD")
        .first()
        .and_then(|c| c.get("cwd"))
        .and_then(Value::as_str)
        .map(str::to_string);
    match cwd {
        Some(cwd) => Some((
            format!(
                "{}/{}",
                cwd.trim_end_matches('/'),
                name.trim_start_matches("./")
            ),
            nametype,
        )),
        None => Some((name, nametype)),
    }
}

/// The command line from EXECVE records (arguments quoted when they hold
/// spaces), with notes on missing arguments.
fn execve_cmdline(d: &Draft) -> Option<(String, Vec<String>)> {
    let recs = records(d, "EXECVE");
    if recs.is_empty() {
        return None;
    }
    let mut whole: BTreeMap<u64, String> = BTreeMap::new();
    let mut pieces: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut argc: Option<i64> = None;
    for rec in recs {
        for (k, v) in rec {
            if k == "argc" {
                argc = v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                continue;
            }
            let (Some((n, piece)), Some(text)) = (is_arg_key(k), text_of(v)) else {
                continue;
            };
            match piece {
                Some(i) => {
                    pieces.insert((n, i), text);
                }
                None => {
                    whole.insert(n, text);
                }
            }
        }
    }
    for ((n, _), text) in pieces {
        whole.entry(n).or_default().push_str(&text);
    }
    let mut notes = Vec::new();
    if let Some(argc) = argc
        && usize::try_from(argc).is_ok_and(|a| a != whole.len())
    {
        notes.push(format!(
            "auditd: EXECVE argc={argc} but {} arguments were recorded",
            whole.len()
        ));
    }
    let args: Vec<String> = whole.into_values().map(|a| quote_arg(&a)).collect();
    Some((args.join(" "), notes))
}

fn quote_arg(a: &str) -> String {
    if a.is_empty() || a.chars().any(char::is_whitespace) {
        format!("\"{}\"", a.replace('"', "\\\""))
    } else {
        a.to_string()
    }
}

/// An AF_INET/AF_INET6 `saddr` (hex sockaddr) as (address, port).
fn decode_saddr(hex: &str) -> Option<(IpAddr, u16)> {
    let b = hex_bytes(hex)?;
    let fam_le = u16::from_le_bytes([*b.first()?, *b.get(1)?]);
    let fam_be = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
    let fam = if matches!(fam_le, 2 | 10) {
        fam_le
    } else {
        fam_be
    };
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match fam {
        2 => {
            let o: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some((IpAddr::V4(Ipv4Addr::from(o)), port))
        }
        10 => {
            let o: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let v6 = Ipv6Addr::from(o);
            let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
            Some((ip, port))
        }
        _ => None,
    }
}

/// SYSCALL events.
fn map_syscall(d: &mut Draft) {
    let name = match d.field_str("SYSCALL") {
        Some(n) if !n.chars().all(|c| c.is_ascii_digit()) => Some(n),
        _ => {
            let arch = d.field_str("arch").unwrap_or_default();
            let nr = d.field("syscall").and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            });
            let resolved = nr
                .and_then(|nr| syscall_name(&arch, nr))
                .map(str::to_string);
            // AUOMS-style records name the syscall themselves.
            let resolved = resolved.or_else(|| {
                d.field_str("syscall")
                    .filter(|s| !s.is_empty() && !s.chars().all(|c| c.is_ascii_digit()))
            });
            if let Some(n) = &resolved
                && d.field("syscall_name").is_none()
            {
                d.fields
                    .insert("syscall_name".into(), Value::String(n.clone()));
            }
            resolved
        }
    };
    let name = name.unwrap_or_default();
    let failed = d.field_str("success").as_deref() == Some("no");
    let exit = d.field("exit").and_then(Value::as_i64);
    let mut status_set = false;
    match name.as_str() {
        "execve" | "execveat" => {
            d.set_class(1007, 1);
            let cmdline = execve_cmdline(d).or_else(|| {
                let title = records(d, "PROCTITLE")
                    .first()
                    .and_then(|p| p.get("proctitle"))
                    .and_then(text_of)?;
                Some((title, Vec::new()))
            });
            if let Some((cmdline, notes)) = cmdline {
                put(d, col::PROCESS_CMD_LINE, &cmdline);
                for n in notes {
                    d.note(n);
                }
            }
        }
        "connect" | "accept" | "accept4" | "bind" | "sendto" | "sendmsg" | "recvfrom"
        | "recvmsg" => {
            let peer = records(d, "SOCKADDR")
                .first()
                .and_then(|s| s.get("saddr"))
                .and_then(Value::as_str)
                .and_then(decode_saddr);
            if let Some((ip, port)) = peer {
                let in_progress = exit == Some(-115);
                let activity = match name.as_str() {
                    "bind" => 7,
                    "sendto" | "sendmsg" | "recvfrom" | "recvmsg" => 6,
                    _ if failed && !in_progress && exit == Some(-111) => 5,
                    _ if failed && !in_progress => 4,
                    _ => 1,
                };
                d.set_class(4001, activity);
                let (ip_col, port_col) = match name.as_str() {
                    "connect" | "sendto" | "sendmsg" => (col::DST_IP, col::DST_PORT),
                    _ => (col::SRC_IP, col::SRC_PORT),
                };
                put(d, ip_col, &ip.to_string());
                if !d.is_set(port_col) {
                    d.set_int(port_col, i64::from(port));
                }
                if in_progress {
                    // A non-blocking connect: under way, not failed.
                    put(d, col::STATUS, "success");
                    status_set = true;
                }
            }
        }
        "setuid" | "setgid" | "setreuid" | "setregid" | "setresuid" | "setresgid" => {
            d.set_class(1007, 5);
        }
        "init_module" | "finit_module" => d.set_class(1005, 1),
        "delete_module" => d.set_class(1005, 2),
        _ => {}
    }
    if !d.is_set(col::CLASS_UID) {
        let path = acted_path(d);
        match (file_activity(&name), path) {
            (Some(activity), Some((path, nametype))) => {
                let activity = if activity == 14 && nametype == "CREATE" {
                    1
                } else {
                    activity
                };
                d.set_class(1001, activity);
                put(d, col::FILE_PATH, &path);
            }
            (None, Some((path, _))) => {
                d.set_class(1001, 99);
                put(d, col::FILE_PATH, &path);
            }
            (Some(activity), None) => d.set_class(1001, activity),
            (None, None) => {}
        }
    }
    if !status_set && !d.is_set(col::STATUS) {
        put(d, col::STATUS, if failed { "failure" } else { "success" });
    }
    if let Some(e) = exit.filter(|e| *e < 0) {
        let detail = match errno_name(-e) {
            Some(n) => format!("exit={e} ({n})"),
            None => format!("exit={e}"),
        };
        put(d, col::STATUS_DETAIL, &detail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Cell, Decoded, Decoder, EventRow, SourceType};

    const INGEST: i64 = 1_700_000_000_000_000;

    fn prov(offset: i64) -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: Some(0),
            offset: Some(offset),
            ingest_time_micros: INGEST,
        }
    }

    /// Decodes each input in turn (offsets 1, 2, …), then flushes.
    fn run(inputs: &[&[u8]]) -> (Vec<EventRow>, Vec<String>) {
        let mut dec = Decoder::for_type(SourceType::Auditd);
        let mut out = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            dec.decode(input, &prov(i64::try_from(i).unwrap_or(0) + 1), &mut out);
        }
        dec.flush(&prov(0), &mut out);
        split(out)
    }

    fn split(out: Vec<Decoded>) -> (Vec<EventRow>, Vec<String>) {
        let mut events = Vec::new();
        let mut dead = Vec::new();
        for d in out {
            match d {
                Decoded::Event(e) => events.push(e),
                Decoded::Dead(d) => dead.push(d.error),
            }
        }
        (events, dead)
    }

    fn one(text: &str) -> EventRow {
        let (mut events, dead) = run(&[text.as_bytes()]);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events.len(), 1, "{text}");
        events.remove(0)
    }

    fn unmapped(row: &EventRow) -> Value {
        serde_json::from_str(row.get_str("unmapped").unwrap_or("{}")).unwrap_or(Value::Null)
    }

    fn corpus(path: &str) -> String {
        let path = format!(
            "{}/../../shared/corpus/events/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Feeds a corpus file line by line, as a file import does.
    fn corpus_lines(path: &str) -> (Vec<EventRow>, Vec<String>) {
        let text = corpus(path);
        let lines: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
        run(&lines)
    }

    fn check_arp(events: &[EventRow]) {
        let arp = &events[0];
        assert_eq!(arp.get_int("class_uid"), Some(1007));
        assert_eq!(arp.get_int("activity_id"), Some(1));
        assert_eq!(arp.get_str("event_code"), Some("SYSCALL"));
        assert_eq!(arp.get_str("metadata_product"), Some("auditd"));
        assert_eq!(arp.time(), 1_604_994_496_155_000);
        assert_eq!(arp.get_str("process_path"), Some("/usr/sbin/arp"));
        assert_eq!(arp.get_str("process_name"), Some("arp"));
        assert_eq!(arp.get_str("process_cmd_line"), Some("arp -a"));
        assert_eq!(arp.get_int("process_pid"), Some(1631));
        assert_eq!(arp.get_int("process_parent_pid"), Some(29002));
        assert_eq!(arp.get_str("actor_user_name"), Some("1000"));
        assert_eq!(arp.get_str("user_name"), Some("1000"));
        assert_eq!(arp.get_str("status"), Some("success"));
        let u = unmapped(arp);
        assert_eq!(u["audit_serial"], 92733);
        assert_eq!(u["syscall_name"], "execve");
        assert_eq!(u["key"], Value::Null);
        assert_eq!(u["PATH"].as_array().map(Vec::len), Some(2));
        assert_eq!(u["PATH"][1]["name"], "/lib64/ld-linux-x86-64.so.2");
        assert_eq!(u["CWD"][0]["cwd"], "/home/wardog");
        assert_eq!(u["PROCTITLE"][0]["proctitle"], "arp -a");
        assert_eq!(u["euid"], 1000);
        let grep = &events[1];
        assert_eq!(grep.get_str("process_cmd_line"), Some("grep -v ^?"));
        assert_eq!(grep.get_int("process_pid"), Some(1632));
    }

    #[test]
    fn corpus_raw_sh_arp_cache() {
        let (events, dead) = corpus_lines("otrf-linux-auditd-raw/sh_arp_cache.log");
        assert_eq!((events.len(), dead.len()), (2, 0), "{dead:?}");
        check_arp(&events);
        // raw is the event's six records; provenance the first record's line.
        assert_eq!(events[0].get_str("raw").map(|r| r.lines().count()), Some(6));
        assert!(
            events[0]
                .get_str("raw")
                .is_some_and(|r| r.starts_with("type=SYSCALL msg=audit(1604994496.155:92733)"))
        );
        assert_eq!(events[0].get_int("source_offset"), Some(1));
        assert_eq!(events[1].get_int("source_offset"), Some(7));
    }

    #[test]
    fn corpus_json_records() {
        let (events, dead) = corpus_lines("otrf-linux-auditd/sh_arp_cache.jsonl");
        assert_eq!((events.len(), dead.len()), (2, 0), "{dead:?}");
        check_arp(&events);
        let (events, dead) = corpus_lines("otrf-linux-auditd/sh_binary_padding_dd.jsonl");
        assert_eq!((events.len(), dead.len()), (1, 0), "{dead:?}");
        let dd = &events[0];
        // `dd` is valid hex but not text: it stays `dd`.
        assert_eq!(
            dd.get_str("process_cmd_line"),
            Some("dd if=/dev/zero bs=1 count=1")
        );
        assert_eq!(dd.get_str("process_path"), Some("/bin/dd"));
        assert_eq!(
            unmapped(dd)["PROCTITLE"][0]["proctitle"],
            "dd if=/dev/zero bs=1 count=1"
        );
    }

    #[test]
    fn whole_file_as_one_input() {
        let text = corpus("otrf-linux-auditd-raw/sh_arp_cache.log");
        let (events, dead) = run(&[text.as_bytes()]);
        assert_eq!((events.len(), dead.len()), (2, 0));
        check_arp(&events);
    }

    #[test]
    fn hex_values_node_prefix_and_syslog_header() {
        let input = "Nov 10 07:48:12 web1 audispd: node=web1.example type=SYSCALL msg=audit(1700000000.5:7): arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=2 auid=4294967295 uid=0 comm=\"sh\" exe=\"/bin/sh\" key=(null)\n\
            node=web1.example type=EXECVE msg=audit(1700000000.5:7): argc=3 a0=\"sh\" a1=\"-c\" a2=6563686F2068692074686572650A\n\
            node=web1.example type=CWD msg=audit(1700000000.5:7): cwd=2F746D702F6D7920646972\n\
            node=web1.example type=PATH msg=audit(1700000000.5:7): item=0 name=2F746D702F6120622E7368 nametype=NORMAL mode=0100755\n\
            node=web1.example type=PROCTITLE msg=audit(1700000000.5:7): proctitle=7368002D63006563686F\n\
            node=web1.example type=EOE msg=audit(1700000000.5:7):\n";
        let mut dec = Decoder::for_type(SourceType::Auditd);
        let mut out = Vec::new();
        dec.decode(input.as_bytes(), &prov(3), &mut out);
        // EOE completes the event without a flush.
        let (events, dead) = split(out);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.time(), 1_700_000_000_500_000);
        assert_eq!(e.get_str("device_hostname"), Some("web1.example"));
        assert_eq!(
            e.get_str("process_cmd_line"),
            Some("sh -c \"echo hi there\n\"")
        );
        assert_eq!(e.get("actor_user_name"), Some(&Cell::Null));
        assert_eq!(e.get_str("user_name"), Some("0"));
        let u = unmapped(e);
        assert_eq!(u["syslog_hostname"], "web1");
        assert_eq!(u["auid"], 4_294_967_295u64);
        assert_eq!(u["CWD"][0]["cwd"], "/tmp/my dir");
        assert_eq!(u["PATH"][0]["name"], "/tmp/a b.sh");
        assert_eq!(u["PATH"][0]["mode"], "0100755");
        assert_eq!(u["PROCTITLE"][0]["proctitle"], "sh -c echo");
        assert_eq!(u["EOE"][0], serde_json::json!({}));
        assert_eq!(e.get_str("raw").map(|r| r.lines().count()), Some(6));
    }

    #[test]
    fn enriched_names_and_split_arguments() {
        let e = one(
            "type=SYSCALL msg=audit(1700000000.000:9): arch=c000003e syscall=59 success=no exit=-2 ppid=10 pid=11 auid=1000 uid=0 comm=\"python3\" exe=\"/usr/bin/python3\" key=\"exec\"\u{1d}ARCH=x86_64 SYSCALL=execve AUID=\"alice\" UID=\"root\"\n\
             type=EXECVE msg=audit(1700000000.000:9): argc=3 a0=\"python3\" a1_len=10 a1[0]=\"0123\" a1[1]=\"456789\" a2=\"x y\"",
        );
        assert_eq!(e.get_str("actor_user_name"), Some("alice"));
        assert_eq!(e.get_str("user_name"), Some("root"));
        assert_eq!(
            e.get_str("process_cmd_line"),
            Some("python3 0123456789 \"x y\"")
        );
        assert_eq!(e.get_str("status"), Some("failure"));
        assert_eq!(e.get_str("status_detail"), Some("exit=-2 (ENOENT)"));
        let u = unmapped(&e);
        assert_eq!(u["auid"], 1000);
        assert_eq!(u["uid"], 0);
        assert_eq!(u["key"], "exec");
        assert_eq!(u["ARCH"], "x86_64");
        assert!(u.get("syscall_name").is_none());
    }

    #[test]
    fn authentication_records() {
        let e = one(
            "type=USER_LOGIN msg=audit(1700000000.1:20): pid=900 uid=0 auid=1000 ses=4 msg='op=login id=1000 exe=\"/usr/sbin/sshd\" hostname=10.0.0.5 addr=10.0.0.5 terminal=/dev/pts/0 res=success'\u{1d}UID=\"root\" AUID=\"alice\" ID=\"alice\"",
        );
        assert_eq!(e.get_int("class_uid"), Some(3002));
        assert_eq!(e.get_int("activity_id"), Some(1));
        assert_eq!(e.get_str("event_code"), Some("USER_LOGIN"));
        assert_eq!(e.get_str("user_name"), Some("alice"));
        assert_eq!(e.get_str("actor_user_name"), Some("alice"));
        assert_eq!(e.get_str("src_ip"), Some("10.0.0.5"));
        assert_eq!(e.get_str("process_path"), Some("/usr/sbin/sshd"));
        assert_eq!(e.get_int("process_pid"), Some(900));
        assert_eq!(e.get_str("status"), Some("success"));
        assert_eq!(unmapped(&e)["terminal"], "/dev/pts/0");

        let e = one(
            "type=USER_AUTH msg=audit(1700000000.1:21): pid=900 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:authentication grantors=? acct=\"root\" exe=\"/usr/sbin/sshd\" hostname=attacker.example addr=198.51.100.7 terminal=ssh res=failed'",
        );
        assert_eq!(e.get_int("class_uid"), Some(3002));
        assert_eq!(e.get_str("status"), Some("failure"));
        assert_eq!(e.get_str("user_name"), Some("root"));
        assert_eq!(e.get_str("src_ip"), Some("198.51.100.7"));
        assert_eq!(e.get_str("src_hostname"), Some("attacker.example"));
        assert_eq!(e.get_str("auth_protocol"), Some("PAM"));
        assert_eq!(e.get("actor_user_name"), Some(&Cell::Null));

        let e = one(
            "type=USER_END msg=audit(1700000000.1:22): pid=900 uid=0 auid=1000 ses=4 msg='op=PAM:session_close grantors=pam_unix acct=616C69636520626F62 exe=\"/usr/sbin/sshd\" hostname=? addr=? terminal=ssh res=success'",
        );
        assert_eq!(e.get_int("activity_id"), Some(2));
        assert_eq!(e.get_str("user_name"), Some("alice bob"));
        assert_eq!(e.get("src_ip"), Some(&Cell::Null));
        assert_eq!(e.get_str("actor_user_name"), Some("1000"));
    }

    #[test]
    fn account_change_records() {
        let e = one(
            "type=ADD_USER msg=audit(1700000000.2:30): pid=5 uid=0 auid=1000 ses=2 msg='op=add-user acct=\"eve\" exe=\"/usr/sbin/useradd\" hostname=srv addr=? terminal=pts/0 res=success'",
        );
        assert_eq!(e.get_int("class_uid"), Some(3001));
        assert_eq!(e.get_int("activity_id"), Some(1));
        assert_eq!(e.get_str("user_name"), Some("eve"));
        assert_eq!(e.get_str("actor_user_name"), Some("1000"));
        assert_eq!(e.get("src_hostname"), Some(&Cell::Null));
        let e = one(
            "type=DEL_USER msg=audit(1700000000.2:31): pid=5 uid=0 auid=1000 ses=2 msg='op=delete-user id=1003 exe=\"/usr/sbin/userdel\" hostname=srv addr=? terminal=pts/0 res=success'",
        );
        assert_eq!(e.get_int("activity_id"), Some(6));
        assert_eq!(e.get_str("user_name"), Some("1003"));
        let e = one(
            "type=USER_CHAUTHTOK msg=audit(1700000000.2:32): pid=5 uid=0 auid=1000 ses=2 msg='op=PAM:chauthtok grantors=pam_unix acct=\"eve\" exe=\"/usr/bin/passwd\" hostname=? addr=? terminal=pts/0 res=failed'",
        );
        assert_eq!(e.get_int("activity_id"), Some(3));
        assert_eq!(e.get_str("status"), Some("failure"));

        let e = one(
            "type=USER_CMD msg=audit(1700000000.2:33): pid=7 uid=1000 auid=1000 ses=2 msg='cwd=\"/home/alice\" cmd=6C73202D6C202F726F6F74 terminal=pts/0 res=success'",
        );
        assert_eq!(e.get_int("class_uid"), Some(1007));
        assert_eq!(e.get_str("process_cmd_line"), Some("ls -l /root"));
    }

    #[test]
    fn file_and_network_syscalls() {
        let e = one(
            "type=SYSCALL msg=audit(1700000000.3:40): arch=c000003e syscall=263 success=yes exit=0 ppid=1 pid=50 auid=1000 uid=1000 comm=\"rm\" exe=\"/usr/bin/rm\" key=\"del\"\n\
             type=CWD msg=audit(1700000000.3:40): cwd=\"/home/alice\"\n\
             type=PATH msg=audit(1700000000.3:40): item=0 name=\"/home/alice\" nametype=PARENT\n\
             type=PATH msg=audit(1700000000.3:40): item=1 name=\"secret.txt\" nametype=DELETE",
        );
        assert_eq!(e.get_int("class_uid"), Some(1001));
        assert_eq!(e.get_int("activity_id"), Some(4));
        assert_eq!(e.get_str("file_path"), Some("/home/alice/secret.txt"));
        assert_eq!(e.get_str("file_name"), Some("secret.txt"));

        let e = one(
            "type=SYSCALL msg=audit(1700000000.3:41): arch=c000003e syscall=257 success=no exit=-13 ppid=1 pid=51 auid=1000 uid=1000 comm=\"cat\" exe=\"/usr/bin/cat\" key=(null)\n\
             type=PATH msg=audit(1700000000.3:41): item=0 name=\"/etc/shadow\" nametype=NORMAL",
        );
        assert_eq!(e.get_int("activity_id"), Some(14));
        assert_eq!(e.get_str("status"), Some("failure"));
        assert_eq!(e.get_str("status_detail"), Some("exit=-13 (EACCES)"));

        let e = one(
            "type=SYSCALL msg=audit(1700000000.3:42): arch=c000003e syscall=42 success=no exit=-115 ppid=1 pid=52 auid=1000 uid=1000 comm=\"curl\" exe=\"/usr/bin/curl\" key=(null)\n\
             type=SOCKADDR msg=audit(1700000000.3:42): saddr=020001BBC0A80001000000000000000000",
        );
        assert_eq!(e.get_int("class_uid"), Some(4001));
        assert_eq!(e.get_int("activity_id"), Some(1));
        assert_eq!(e.get_str("dst_ip"), Some("192.168.0.1"));
        assert_eq!(e.get_int("dst_port"), Some(443));
        assert_eq!(e.get_str("status"), Some("success"));
        assert_eq!(e.get_str("status_detail"), Some("exit=-115 (EINPROGRESS)"));

        let e = one(
            "type=SYSCALL msg=audit(1700000000.3:43): arch=c000003e syscall=42 success=no exit=-111 pid=53 comm=\"nc\" exe=\"/usr/bin/nc\"\n\
             type=SOCKADDR msg=audit(1700000000.3:43): saddr=0A0000160000000020010DB8000000000000000000000001",
        );
        assert_eq!(e.get_int("activity_id"), Some(5));
        assert_eq!(e.get_str("dst_ip"), Some("2001:db8::1"));
        assert_eq!(e.get_int("dst_port"), Some(22));

        assert_eq!(
            decode_saddr("0A0000500000000000000000000000000000FFFF0A000001"),
            Some((
                "10.0.0.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                80
            ))
        );
        assert_eq!(decode_saddr("01002F746D70"), None);

        let e = one(
            "type=SYSCALL msg=audit(1700000000.3:44): arch=c000003e syscall=313 success=yes exit=0 pid=54 comm=\"insmod\" exe=\"/usr/bin/kmod\"",
        );
        assert_eq!(e.get_int("class_uid"), Some(1005));
        let e = one(
            "type=SYSCALL msg=audit(1700000000.3:45): arch=c000003e syscall=999 success=yes exit=0 pid=55 comm=\"x\" exe=\"/x\"",
        );
        assert_eq!(e.get("class_uid"), Some(&Cell::Null));
        assert_eq!(e.get_str("event_code"), Some("SYSCALL"));
    }

    #[test]
    fn joining_across_inputs_and_flush() {
        let a: &[u8] = b"type=SYSCALL msg=audit(1700000000.4:50): arch=c000003e syscall=59 success=yes exit=0 pid=60 comm=\"id\" exe=\"/usr/bin/id\"";
        let b: &[u8] = b"type=EXECVE msg=audit(1700000000.4:50): argc=1 a0=\"id\"";
        let c: &[u8] = b"type=USER_ACCT msg=audit(1700000000.4:51): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:accounting acct=\"bob\" exe=\"/usr/sbin/cron\" hostname=? addr=? terminal=cron res=success'";
        let mut dec = Decoder::for_type(SourceType::Auditd);
        let mut out = Vec::new();
        dec.decode(a, &prov(10), &mut out);
        dec.decode(b, &prov(11), &mut out);
        assert!(out.is_empty(), "held until the event is complete");
        dec.decode(c, &prov(12), &mut out);
        let (events, _) = split(std::mem::take(&mut out));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].get_str("process_cmd_line"), Some("id"));
        assert_eq!(events[0].get_int("source_offset"), Some(10));
        assert_eq!(
            events[0].get_str("raw"),
            Some(
                format!(
                    "{}\n{}",
                    String::from_utf8_lossy(a),
                    String::from_utf8_lossy(b)
                )
                .as_str()
            )
        );
        dec.flush(&prov(99), &mut out);
        let (events, _) = split(out);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].get_str("event_code"), Some("USER_ACCT"));
        assert_eq!(events[0].get_int("source_offset"), Some(12));
        assert_eq!(events[0].get_str("user_name"), Some("bob"));

        // A lone EOE is kept with a note, not dropped.
        let e = one("type=EOE msg=audit(1700000000.4:52):");
        assert!(
            unmapped(&e)["_spoor_notes"]
                .to_string()
                .contains("EOE record without")
        );
    }

    #[test]
    fn bad_records_name_the_problem() {
        for (input, says) in [
            ("arch=c000003e syscall=59", "no `type=`"),
            (
                "type=SYSCALL arch=c000003e",
                "no `msg=audit(…)` after `type=SYSCALL`",
            ),
            (
                "type=SYSCALL msg=audit(1700000000.1:abc): x=1",
                "bad serial `abc`",
            ),
            (
                "type=SYSCALL msg=audit(1700000000.1): x=1",
                "has no `:SERIAL`",
            ),
            ("type=SYSCALL msg=audit(17x:5): x=1", "bad timestamp `17x`"),
            ("type=SYSCALL msg=audit(1700000000.1:5", "not closed"),
            ("type= msg=audit(1:1):", "bad record type"),
            (
                "Nov 10 07:48:12 web1 sshd[1]: hello",
                "from `sshd` is not an audit record",
            ),
            ("{\"type\":\"SYSCALL\"}", "has no `msg` string"),
            (
                "{\"type\":\"SYSCALL\",\"msg\":\"x\"}",
                "not `audit(TIMESTAMP:SERIAL)`",
            ),
            ("{\"msg\":\"audit(1:1)\"}", "no `type` string"),
            ("{\"type\":", "invalid JSON"),
        ] {
            let (events, dead) = run(&[input.as_bytes()]);
            assert!(events.is_empty(), "{input}");
            assert_eq!(dead.len(), 1, "{input}");
            assert!(dead[0].contains(says), "{input}: {}", dead[0]);
            assert!(
                dead[0].starts_with("offset 1: not auditd: ") || says == "invalid JSON",
                "{}",
                dead[0]
            );
        }
        let (events, dead) = run(&[b"type=SYSCALL msg=audit(1.0:1): \xff"]);
        assert!(events.is_empty());
        assert!(dead[0].contains("invalid UTF-8 at byte 31"), "{dead:?}");

        // One bad line among good ones.
        let (events, dead) = run(&[b"type=SYSCALL msg=audit(1700000000.1:5): pid=1\ngarbage\ntype=PATH msg=audit(1700000000.1:5): name=\"/x\""]);
        assert_eq!(events.len(), 1);
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].contains("line 2: not auditd: no `type=`"),
            "{dead:?}"
        );
        assert_eq!(unmapped(&events[0])["PATH"][0]["name"], "/x");

        // Odd but readable: noted.
        let e = one("type=SYSCALL msg=audit(1700000000.1:6): comm=\"unterminated");
        assert!(
            unmapped(&e)["_spoor_notes"]
                .to_string()
                .contains("no closing quote")
        );
        let e =
            one("type=AVC msg=audit(1700000000.1:7): avc:  denied  { read } for  pid=3 comm=\"x\"");
        assert_eq!(unmapped(&e)["text"], "avc: denied { read } for");
        assert_eq!(e.get_int("process_pid"), Some(3));
    }

    #[test]
    fn huge_events_are_cut() {
        let mut input = String::from("type=SYSCALL msg=audit(1700000000.1:8): pid=1\n");
        for i in 0..600 {
            input.push_str(&format!(
                "type=PATH msg=audit(1700000000.1:8): item={i} name=\"/p\"\n"
            ));
        }
        let (events, dead) = run(&[input.as_bytes()]);
        assert!(dead.is_empty());
        assert_eq!(events.len(), 2);
        assert!(
            unmapped(&events[0])["_spoor_notes"]
                .to_string()
                .contains("event cut at 512")
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any bytes decode to events or dead letters, never a panic.
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = run(&[&bytes]);
            }

            /// Record-like text never panics either.
            #[test]
            fn record_like_text_never_panics(
                s in "(node=[a-z]{1,3} )?type=[A-Z_]{1,8} msg=audit\\([0-9.]{0,14}:[0-9]{0,5}\\):( [a-z0-9\\[\\]_]{1,5}=(\"[ -~]{0,8}\"?|'[ -~]{0,20}'?|[0-9A-F]{0,12}|\\{[ -~]{0,6}\\}?))*(\u{1d}[A-Z]{1,4}=\"[a-z]{0,4}\")?"
            ) {
                let _ = run(&[s.as_bytes(), s.as_bytes()]);
            }
        }
    }
}
