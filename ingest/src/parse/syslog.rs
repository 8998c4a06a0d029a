//! Syslog (`source_type = "syslog"`): RFC 5424, RFC 3164 and the Microsoft
//! Sentinel `Syslog` table, with Linux authentication messages mapped.
//!
//! Accepted shapes, detected per message:
//! - RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]`. Nil
//!   values (`-`) are left out; structured data becomes fields named
//!   `sd.<SD-ID>.<PARAM>` with the `\"`, `\\` and `\]` escapes undone (a
//!   repeated parameter becomes an array); a BOM before MSG is dropped.
//! - RFC 3164: `[<PRI>]Mmm dd hh:mm:ss [HOST] TAG[PID]: MSG`, and the same with
//!   an RFC 3339 timestamp instead (rsyslog's `RSYSLOG_FileFormat`). RFC 3164
//!   carries no year and no zone: the time is read as UTC, in the latest year
//!   that puts it no more than a day after the ingest time (the limit
//!   [`Draft::finish`] accepts), so a `Dec 31` message ingested on 1 January
//!   lands in the year before. The header's own text stays in `timestamp`.
//!   A `<PRI>` followed by no readable timestamp is kept whole as the message
//!   (RFC 3164 §4.3.3) with a note; without a PRI, a timestamp or a JSON
//!   object the input is not syslog and goes to dead letters.
//! - The Sentinel `Syslog` table (a JSON object): `SyslogMessage`,
//!   `HostName`/`Computer`, `HostIP`, `Facility`, `SeverityLevel`,
//!   `EventTime`/`TimeGenerated`, `ProcessName`, `ProcessID`.
//!
//! An input may hold several messages, one a line: a line that starts like a
//! message (`<`, `{`, a month name, a date) starts one; any other line
//! continues the message before it (multi-line messages, pretty-printed
//! JSON). Each message of a multi-message input keeps its own lines as `raw`,
//! and a bad one becomes a dead letter of its own.
//!
//! Severity: emerg, alert and crit → 5 Critical, err → 4 High, warning → 3
//! Medium, notice → 2 Low, info and debug → 1 Informational (OCSF has no
//! debug level). The facility becomes `metadata_log_name`; both names stay
//! in the fields (`facility` is moved, `severity` kept) since the mapping
//! to `severity_id` is not one to one.
//!
//! Linux authentication messages (sshd, sudo, su, PAM) are recognised in the
//! message whatever the shape and mapped to Authentication 3002 (sudo running
//! a command to Process Activity 1007 Launch: OCSF has no privilege-use
//! class, and the command line is what hunters search). Other messages stay
//! plain syslog events without a class. Messages that carry another format
//! (Linux Sysmon XML, AUOMS audit records in the Sentinel corpus) are kept
//! as they are in `message`; parsing them is left for later.

use std::net::IpAddr;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, NaiveDate};
use regex::Regex;
use serde_json::{Map, Value};
use spoor_common::schema::event_col as col;

use super::draft::{MAX_FUTURE_MICROS, as_text, format_micros, parse_object};
use super::{Draft, NormalizeError, ParseOutput, Parsed, Parser, PartFailure, Provenance, lines};

const FORMAT: &str = "syslog";

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

/// The `syslog` source type (stateless: every message stands alone).
#[derive(Debug, Default)]
pub struct SyslogParser;

impl SyslogParser {
    /// A syslog parser.
    pub fn new() -> Self {
        SyslogParser
    }
}

/// One syslog message split into its header parts (shared with the auditd
/// parser, which reads records forwarded after a syslog header).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SyslogLine {
    /// Facility code from PRI.
    pub(crate) facility: Option<u8>,
    /// Severity code from PRI.
    pub(crate) severity: Option<u8>,
    /// The event time, microseconds (the year inferred for RFC 3164).
    pub(crate) time: Option<i64>,
    /// The header's timestamp text.
    pub(crate) timestamp: Option<String>,
    /// Whether `time` comes from an RFC 3164 timestamp (year and zone guessed).
    pub(crate) time_inferred: bool,
    /// HOSTNAME.
    pub(crate) hostname: Option<String>,
    /// APP-NAME or the RFC 3164 TAG.
    pub(crate) app_name: Option<String>,
    /// PROCID or the RFC 3164 `[PID]`.
    pub(crate) procid: Option<String>,
    /// MSGID (RFC 5424).
    pub(crate) msgid: Option<String>,
    /// Structured data as (`sd.<id>.<param>`, value).
    pub(crate) sd: Vec<(String, String)>,
    /// MSG.
    pub(crate) msg: String,
    /// Problems worked around.
    pub(crate) notes: Vec<String>,
}

/// Splits `s` at its first space: (token, rest after the space).
fn token(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

/// The byte offset of `rest` within `whole` (both slices of one string).
fn at(whole: &str, rest: &str) -> usize {
    whole.len().saturating_sub(rest.len())
}

/// Reads `<PRI>` at the start of `s`: (facility, severity, rest).
fn parse_pri(s: &str) -> Result<Option<(u8, u8, &str)>, String> {
    let Some(inner) = s.strip_prefix('<') else {
        return Ok(None);
    };
    let Some(close) = inner.find('>').filter(|&i| i <= 4) else {
        return Err("PRI: `<` at byte 0 is not closed by `>` within 3 digits".into());
    };
    let digits = &inner[..close];
    let pri = digits
        .parse::<u8>()
        .ok()
        .filter(|p| *p <= 191 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("PRI: `<{digits}>` is not a number from 0 to 191"))?;
    Ok(Some((pri >> 3, pri & 7, &inner[close + 1..])))
}

/// Parses one syslog message (not JSON) with `ingest` as the reference time
/// for RFC 3164's missing year.
pub(crate) fn parse_line(text: &str, ingest: i64) -> Result<SyslogLine, String> {
    let text = text.trim_start_matches('\u{feff}');
    let mut line = SyslogLine::default();
    let rest = match parse_pri(text)? {
        Some((facility, severity, rest)) => {
            line.facility = Some(facility);
            line.severity = Some(severity);
            rest
        }
        None => text,
    };
    if line.facility.is_some()
        && let Some(after) = rest.strip_prefix("1 ")
    {
        parse_5424(text, after, &mut line)?;
        return Ok(line);
    }
    if let Some((t, after)) = parse_3164_time(rest, ingest, &mut line) {
        line.time = t;
        parse_3164_rest(after, &mut line);
        return Ok(line);
    }
    if line.facility.is_some() {
        line.notes.push(
            "syslog: no timestamp after PRI; the whole rest is the message and the ingest time is used"
                .into(),
        );
        line.msg = rest.to_string();
        return Ok(line);
    }
    let start: String = text.chars().take(20).collect();
    Err(format!(
        "expected `<PRI>`, an `Mmm dd hh:mm:ss` or RFC 3339 timestamp, or a JSON object at byte 0, found `{start}`"
    ))
}

/// RFC 5424 after `<PRI>1 `.
fn parse_5424(whole: &str, after: &str, line: &mut SyslogLine) -> Result<(), String> {
    let mut rest = after;
    let mut parts: [Option<String>; 5] = Default::default();
    for (i, name) in ["TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID"]
        .iter()
        .enumerate()
    {
        if rest.is_empty() {
            return Err(format!(
                "RFC 5424 header ends at byte {} before {name}",
                at(whole, rest)
            ));
        }
        let (tok, next) = token(rest);
        if tok.is_empty() {
            return Err(format!(
                "RFC 5424 {name} is empty at byte {} (two spaces)",
                at(whole, rest)
            ));
        }
        if tok != "-"
            && let Some(slot) = parts.get_mut(i)
        {
            *slot = Some(tok.to_string());
        }
        rest = next;
    }
    let [timestamp, hostname, app, procid, msgid] = parts;
    if let Some(ts) = &timestamp {
        match DateTime::parse_from_rfc3339(ts) {
            Ok(t) => line.time = Some(t.timestamp_micros()),
            Err(e) => line.notes.push(format!(
                "syslog: TIMESTAMP `{ts}` is not RFC 3339 ({e}); the ingest time is used"
            )),
        }
    }
    line.timestamp = timestamp;
    line.hostname = hostname;
    line.app_name = app;
    line.procid = procid;
    line.msgid = msgid;
    if rest.is_empty() {
        return Err(format!(
            "RFC 5424 header ends at byte {} before STRUCTURED-DATA",
            at(whole, rest)
        ));
    }
    let rest = if let Some(r) = rest.strip_prefix('-') {
        r
    } else if rest.starts_with('[') {
        parse_sd(whole, rest, &mut line.sd)?
    } else {
        return Err(format!(
            "RFC 5424 STRUCTURED-DATA at byte {} is neither `-` nor `[`",
            at(whole, rest)
        ));
    };
    line.msg = match rest.strip_prefix(' ') {
        Some(msg) => msg.trim_start_matches('\u{feff}').to_string(),
        None if rest.is_empty() => String::new(),
        None => {
            return Err(format!(
                "RFC 5424: expected a space before MSG at byte {}",
                at(whole, rest)
            ));
        }
    };
    Ok(())
}

/// Structured data elements `[id p="v" ...]...`; returns the rest.
fn parse_sd<'a>(
    whole: &str,
    mut rest: &'a str,
    out: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    while let Some(r) = rest.strip_prefix('[') {
        let end = r.find([' ', ']']).ok_or_else(|| {
            format!(
                "RFC 5424 SD-ELEMENT at byte {} is not closed",
                at(whole, rest)
            )
        })?;
        let id = &r[..end];
        if id.is_empty() {
            return Err(format!("RFC 5424 SD-ID is empty at byte {}", at(whole, r)));
        }
        let mut r = &r[end..];
        loop {
            r = r.trim_start_matches(' ');
            if let Some(after) = r.strip_prefix(']') {
                r = after;
                break;
            }
            let eq = r.find('=').ok_or_else(|| {
                format!(
                    "RFC 5424 SD-PARAM at byte {} in [{id}] has no `=`",
                    at(whole, r)
                )
            })?;
            let name = &r[..eq];
            if name.is_empty() || name.contains([' ', ']', '"']) {
                return Err(format!(
                    "RFC 5424 SD-PARAM name `{name}` at byte {} in [{id}] is not valid",
                    at(whole, r)
                ));
            }
            let Some(v) = r[eq + 1..].strip_prefix('"') else {
                return Err(format!(
                    "RFC 5424 SD-PARAM `{name}` at byte {} in [{id}]: value is not quoted",
                    at(whole, r) + eq + 1
                ));
            };
            let (value, after) = sd_value(v).ok_or_else(|| {
                format!(
                    "RFC 5424 SD-PARAM `{name}` at byte {} in [{id}]: value is not closed by `\"`",
                    at(whole, r)
                )
            })?;
            out.push((format!("sd.{id}.{name}"), value));
            r = after;
        }
        rest = r;
    }
    Ok(rest)
}

/// An SD-PARAM value after its opening quote: (unescaped value, rest after
/// the closing quote). Only `\"`, `\\` and `\]` are escapes (RFC 5424
/// §6.3.3); any other backslash is kept.
fn sd_value(v: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = v.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &v[i + 1..])),
            '\\' => match chars.clone().next() {
                Some((_, e @ ('"' | '\\' | ']'))) => {
                    out.push(e);
                    chars.next();
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    None
}

/// An RFC 3164 (`Mmm dd hh:mm:ss`) or RFC 3339 timestamp at the start of
/// `s`: (time, rest after it); `None` when `s` starts with neither.
fn parse_3164_time<'a>(
    s: &'a str,
    ingest: i64,
    line: &mut SyslogLine,
) -> Option<(Option<i64>, &'a str)> {
    if let Some(month) = MONTHS
        .iter()
        .position(|m| s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(m)))
        && s.get(3..4) == Some(" ")
    {
        let r = s.get(4..)?.trim_start_matches(' ');
        let (day, r) = token(r);
        let (clock, r) = token(r);
        let day: u32 = day.parse().ok()?;
        let mut hms = clock.splitn(3, ':');
        let h: u32 = hms.next()?.parse().ok()?;
        let m: u32 = hms.next()?.parse().ok()?;
        let sec_text = hms.next()?;
        let (sec, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
        let sec: u32 = sec.parse().ok()?;
        let micros = frac_micros(frac)?;
        let text = at(s, r);
        line.timestamp = Some(s.get(..text)?.trim_end().to_string());
        line.time_inferred = true;
        let month = u32::try_from(month).ok()? + 1;
        let t = infer_year(month, day, (h, m, sec, micros), ingest);
        if t.is_none() {
            line.notes.push(format!(
                "syslog: timestamp `{}` is not a date; the ingest time is used",
                line.timestamp.as_deref().unwrap_or("")
            ));
        }
        return Some((t, r));
    }
    let (tok, r) = token(s);
    if tok.len() >= 19 && tok.as_bytes().get(4) == Some(&b'-') && tok.get(10..11) == Some("T") {
        line.timestamp = Some(tok.to_string());
        let t = match DateTime::parse_from_rfc3339(tok) {
            Ok(t) => Some(t.timestamp_micros()),
            Err(e) => {
                line.notes.push(format!(
                    "syslog: timestamp `{tok}` is not RFC 3339 ({e}); the ingest time is used"
                ));
                None
            }
        };
        return Some((t, r));
    }
    None
}

/// Fractional-second digits as microseconds (more than 6 digits cut).
fn frac_micros(frac: &str) -> Option<u32> {
    if frac.is_empty() {
        return Some(0);
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    digits.parse().ok()
}

/// The time of an RFC 3164 timestamp in the latest year that puts it no
/// more than a day after `ingest` (so `Dec 31 23:59` read on 1 January is
/// last year's, and `Jan 1 00:30` read on 31 December a minute before
/// midnight, from a clock slightly ahead, is next year's). Feb 29 looks back
/// to the last leap year.
pub(crate) fn infer_year(
    month: u32,
    day: u32,
    (h, m, s, micros): (u32, u32, u32, u32),
    ingest: i64,
) -> Option<i64> {
    let year = DateTime::from_timestamp_micros(ingest)?.year();
    let limit = ingest.saturating_add(MAX_FUTURE_MICROS);
    (year.saturating_sub(8)..=year.saturating_add(1))
        .rev()
        .filter_map(|y| {
            NaiveDate::from_ymd_opt(y, month, day)?
                .and_hms_micro_opt(h, m, s, micros)
                .map(|t| t.and_utc().timestamp_micros())
        })
        .find(|t| *t <= limit)
}

/// `[HOST] TAG[PID]: MSG` after an RFC 3164 timestamp.
fn parse_3164_rest(s: &str, line: &mut SyslogLine) {
    let (first, after_first) = token(s);
    let rest = if first.is_empty() || first.ends_with(':') {
        s
    } else {
        line.hostname = Some(first.to_string());
        after_first
    };
    let (tag, after_tag) = token(rest);
    let Some(tag) = tag.strip_suffix(':') else {
        line.msg = rest.to_string();
        return;
    };
    match tag.split_once('[') {
        Some((app, pid)) if pid.ends_with(']') => {
            line.app_name = Some(app.to_string()).filter(|a| !a.is_empty());
            line.procid = pid
                .strip_suffix(']')
                .map(str::to_string)
                .filter(|p| !p.is_empty());
        }
        _ => line.app_name = Some(tag.to_string()).filter(|a| !a.is_empty()),
    }
    line.msg = after_tag.to_string();
}

/// Whether a line starts a new message (rather than continuing one).
fn starts_message(line: &str) -> bool {
    let b = line.as_bytes();
    match b.first() {
        Some(b'<') => b.get(1).is_some_and(u8::is_ascii_digit),
        Some(b'{') => true,
        Some(first) if first.is_ascii_digit() => {
            b.len() >= 11 && b.get(4) == Some(&b'-') && b.get(10) == Some(&b'T')
        }
        _ => {
            line.get(3..4) == Some(" ")
                && MONTHS
                    .iter()
                    .any(|m| line.get(..3).is_some_and(|p| p.eq_ignore_ascii_case(m)))
        }
    }
}

/// The messages of an input: (first line number, text).
fn messages(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (n, line) in lines(text) {
        match out.last_mut() {
            Some((_, msg)) if !starts_message(line.trim_start_matches('\u{feff}')) => {
                msg.push('\n');
                msg.push_str(line);
            }
            _ => out.push((n, line.to_string())),
        }
    }
    out
}

/// Drafts one message.
fn draft_message(text: &str, ingest: i64) -> Result<Draft, NormalizeError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        let object = parse_object(trimmed.as_bytes())?;
        let mut draft = Draft::new(object);
        if draft.field("SyslogMessage").is_none() {
            draft.note("syslog: the JSON object has no `SyslogMessage`");
        }
        return Ok(draft);
    }
    let line = parse_line(text, ingest).map_err(|reason| NormalizeError::Format {
        format: FORMAT,
        reason,
    })?;
    Ok(line_to_draft(line))
}

/// The fields of a parsed line.
fn line_to_draft(line: SyslogLine) -> Draft {
    let mut fields = Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            fields.insert(k.to_string(), Value::String(v));
        }
    };
    put(
        "facility",
        line.facility
            .and_then(|f| FACILITIES.get(usize::from(f)))
            .map(|f| (*f).to_string()),
    );
    put(
        "severity",
        line.severity
            .and_then(|s| SEVERITIES.get(usize::from(s)))
            .map(|s| (*s).to_string()),
    );
    if line.time_inferred {
        put("time", line.time.map(format_micros));
        put("timestamp", line.timestamp);
    } else {
        put("time", line.timestamp);
    }
    put("hostname", line.hostname);
    put("app_name", line.app_name);
    put("procid", line.procid);
    put("msgid", line.msgid);
    put("msg", Some(line.msg));
    for (key, value) in line.sd {
        match fields.get_mut(&key) {
            Some(Value::Array(items)) => items.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
            None => {
                fields.insert(key, Value::String(value));
            }
        }
    }
    let mut draft = Draft::new(fields);
    for note in line.notes {
        draft.note(note);
    }
    draft
}

/// OCSF severity of a syslog severity name (Sentinel's spellings included).
fn severity_id(name: &str) -> Option<i64> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "emerg" | "emergency" | "panic" | "alert" | "crit" | "critical" => 5,
        "err" | "error" => 4,
        "warning" | "warn" => 3,
        "notice" => 2,
        "info" | "informational" | "debug" => 1,
        _ => return None,
    })
}

impl Parser for SyslogParser {
    fn parse(
        &mut self,
        input: &[u8],
        prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError> {
        let text = as_text(input)?;
        let messages = messages(text);
        if messages.len() <= 1 {
            let Some((_, msg)) = messages.first() else {
                return Err(NormalizeError::Empty);
            };
            out.events
                .push(Parsed::new(draft_message(msg, prov.ingest_time_micros)?));
            return Ok(());
        }
        for (n, msg) in messages {
            match draft_message(&msg, prov.ingest_time_micros) {
                Ok(draft) => out.events.push(Parsed::with_raw(draft, msg)),
                Err(e) => out.failures.push(PartFailure {
                    raw: msg.into_bytes(),
                    error: format!("line {n}: {e}"),
                }),
            }
        }
        Ok(())
    }

    fn map(&self, d: &mut Draft) {
        d.take(col::TIME, &["time", "EventTime", "TimeGenerated"]);
        d.take(col::DEVICE_HOSTNAME, &["hostname", "HostName", "Computer"]);
        d.take(col::DEVICE_IP, &["HostIP"]);
        d.take(col::PROCESS_NAME, &["app_name", "ProcessName"]);
        d.take(col::PROCESS_PID, &["procid", "ProcessID"]);
        d.take(col::EVENT_CODE, &["msgid", "EventType"]);
        d.take(col::METADATA_LOG_NAME, &["facility", "Facility"]);
        d.take(col::MESSAGE, &["msg", "SyslogMessage"]);
        if !d.is_set(col::METADATA_PRODUCT) {
            d.set_str(col::METADATA_PRODUCT, "syslog");
        }
        if !d.is_set(col::SEVERITY_ID)
            && let Some(name) = d
                .field_str("severity")
                .or_else(|| d.field_str("SeverityLevel"))
        {
            match severity_id(&name) {
                Some(id) => d.set_int(col::SEVERITY_ID, id),
                None => d.note(format!("syslog: unknown severity `{name}`")),
            }
        }
        if let Some(msg) = d.get_str(col::MESSAGE).map(str::to_string) {
            map_auth(&msg, d);
        }
    }
}

// ---------------------------------------------------------------------------
// Linux authentication messages.

/// Compiles a pattern of this file (constants, tested).
fn re(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| panic!("syslog pattern {pattern}: {e}"))
}

static SSH_ACCEPTED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^Accepted (\S+) for (.+?) from (\S+) port (\d+)"));
static SSH_FAILED: LazyLock<Regex> =
    LazyLock::new(|| re(r"^Failed (\S+) for (invalid user )?(.*?) from (\S+) port (\d+)"));
static SSH_INVALID: LazyLock<Regex> =
    LazyLock::new(|| re(r"^Invalid user (.*?) from (\S+)(?: port (\d+))?"));
static SSH_CLOSED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:Connection (?:closed|reset) by|Disconnected from) (?:(?:authenticating |invalid )?user (.*?) )?(\S+) port (\d+)( \[preauth\])?",
    )
});
static PAM_SESSION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^pam_unix\(([^:()]+):session\): session (opened|closed) for user ([^\s(]+)(?:\(uid=\d+\))?(?: by ([^\s(]*)(?:\(uid=\d+\))?)?",
    )
});
static PAM_AUTH_FAILURE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^pam_\w+\(([^:()]+):auth\): authentication failure;(.*)$"));
static PAM_KV: LazyLock<Regex> = LazyLock::new(|| re(r"(\w+)=(\S*)"));
static SU_BSD: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(Successful|FAILED) su for (\S+) by (\S+)"));
static SU_UTIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(FAILED SU )?\(to (\S+)\) (\S+) on (\S+)"));
static SUDO: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*(\S+) : (.*)$"));

/// Sets a text column unless it is set (a configured mapping wins).
fn put(d: &mut Draft, column: &str, value: &str) {
    if !d.is_set(column) {
        d.set_str(column, value);
    }
}

/// Sets an integer column from text unless it is set.
fn put_int(d: &mut Draft, column: &str, value: &str) {
    if !d.is_set(column)
        && let Ok(n) = value.parse::<i64>()
    {
        d.set_int(column, n);
    }
}

/// A remote host: an IP address into `src_ip`, a name into `src_hostname`.
fn put_src(d: &mut Draft, host: &str) {
    if host.is_empty() {
        return;
    }
    if host.parse::<IpAddr>().is_ok() {
        put(d, col::SRC_IP, host);
    } else {
        put(d, col::SRC_HOSTNAME, host);
    }
}

/// An authentication event: class 3002 with its activity and outcome.
fn auth(d: &mut Draft, activity: i64, ok: bool, detail: Option<&str>) {
    d.set_class(3002, activity);
    put(d, col::STATUS, if ok { "success" } else { "failure" });
    if let Some(detail) = detail {
        put(d, col::STATUS_DETAIL, detail);
    }
}

/// Recognises a Linux authentication message and fills its columns.
fn map_auth(msg: &str, d: &mut Draft) {
    if let Some(c) = SSH_ACCEPTED.captures(msg) {
        auth(d, 1, true, None);
        put(d, col::AUTH_PROTOCOL, &c[1]);
        put(d, col::USER_NAME, &c[2]);
        put_src(d, &c[3]);
        put_int(d, col::SRC_PORT, &c[4]);
    } else if let Some(c) = SSH_FAILED.captures(msg) {
        let invalid = c.get(2).is_some();
        let detail = if invalid {
            "invalid user".to_string()
        } else {
            format!("failed {}", &c[1])
        };
        auth(d, 1, false, Some(&detail));
        put(d, col::AUTH_PROTOCOL, &c[1]);
        put(d, col::USER_NAME, &c[3]);
        put_src(d, &c[4]);
        put_int(d, col::SRC_PORT, &c[5]);
    } else if let Some(c) = SSH_INVALID.captures(msg) {
        auth(d, 1, false, Some("invalid user"));
        put(d, col::USER_NAME, &c[1]);
        put_src(d, &c[2]);
        if let Some(port) = c.get(3) {
            put_int(d, col::SRC_PORT, port.as_str());
        }
    } else if let Some(c) = SSH_CLOSED.captures(msg) {
        // Before authentication completed the peer gave up or failed: a
        // failed logon; afterwards it is the session's end.
        if c.get(4).is_some() {
            auth(d, 1, false, Some("connection closed before authentication"));
        } else {
            auth(d, 2, true, None);
        }
        if let Some(user) = c.get(1) {
            put(d, col::USER_NAME, user.as_str());
        }
        put_src(d, &c[2]);
        put_int(d, col::SRC_PORT, &c[3]);
    } else if let Some(c) = PAM_SESSION.captures(msg) {
        auth(d, if &c[2] == "opened" { 1 } else { 2 }, true, None);
        put(d, col::USER_NAME, &c[3]);
        if let Some(by) = c.get(4) {
            put(d, col::ACTOR_USER_NAME, by.as_str());
        }
        d.fields
            .insert("pam_service".into(), Value::String(c[1].to_string()));
    } else if let Some(c) = PAM_AUTH_FAILURE.captures(msg) {
        auth(d, 1, false, Some("authentication failure"));
        let kv: Vec<(String, String)> = PAM_KV
            .captures_iter(&c[2])
            .map(|p| (p[1].to_string(), p[2].to_string()))
            .collect();
        let get = |k: &str| {
            kv.iter()
                .find(|(key, v)| key == k && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        if let Some(user) = get("user") {
            put(d, col::USER_NAME, user);
        }
        if let Some(actor) = get("ruser").or_else(|| get("logname")) {
            put(d, col::ACTOR_USER_NAME, actor);
        }
        if let Some(rhost) = get("rhost") {
            put_src(d, rhost);
        }
        d.fields
            .insert("pam_service".into(), Value::String(c[1].to_string()));
    } else if let Some(c) = SU_BSD.captures(msg) {
        let ok = &c[1] == "Successful";
        auth(d, 1, ok, (!ok).then_some("su failed"));
        put(d, col::USER_NAME, &c[2]);
        put(d, col::ACTOR_USER_NAME, &c[3]);
    } else if let Some(c) = SU_UTIL.captures(msg) {
        let ok = c.get(1).is_none();
        auth(d, 1, ok, (!ok).then_some("su failed"));
        put(d, col::USER_NAME, &c[2]);
        put(d, col::ACTOR_USER_NAME, &c[3]);
        d.fields
            .insert("tty".into(), Value::String(c[4].to_string()));
    } else if let Some(c) = SUDO.captures(msg)
        && (c[2].contains("COMMAND=") || c[2].contains("TTY="))
    {
        map_sudo(d, &c[1], &c[2]);
    }
}

/// sudo's `USER : [REASON ; ]TTY=… ; PWD=… ; USER=… ; COMMAND=…`.
fn map_sudo(d: &mut Draft, invoker: &str, rest: &str) {
    // The command may itself contain ` ; `: it is everything after COMMAND=.
    let (head, command) = match rest.find("COMMAND=") {
        Some(i) => (&rest[..i], Some(rest[i + "COMMAND=".len()..].trim())),
        None => (rest, None),
    };
    let mut reasons = Vec::new();
    for part in head.split(" ; ").map(str::trim).filter(|p| !p.is_empty()) {
        let part = part.trim_end_matches(';').trim();
        match part.split_once('=') {
            Some((key, value))
                if !key.is_empty() && key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
            {
                // The other keys are kept as sudo spells them (`TTY`,
                // `PWD`, `GROUP`, `ENV`): rules name them that way.
                if key == "USER" {
                    put(d, col::USER_NAME, value);
                } else {
                    d.fields
                        .insert(key.to_string(), Value::String(value.to_string()));
                }
            }
            _ if !part.is_empty() => reasons.push(part),
            _ => {}
        }
    }
    put(d, col::ACTOR_USER_NAME, invoker);
    if let Some(command) = command {
        put(d, col::PROCESS_CMD_LINE, command);
    }
    let reason = reasons.join("; ");
    if reason.contains("incorrect password") || reason.contains("authentication failure") {
        auth(d, 1, false, Some(&reason));
    } else if reason.is_empty() {
        d.set_class(1007, 1);
        put(d, col::STATUS, "success");
    } else {
        // Refused by policy (`user NOT in sudoers`, `command not allowed`).
        d.set_class(1007, 1);
        put(d, col::STATUS, "failure");
        put(d, col::STATUS_DETAIL, &reason);
        put(d, col::ACTION, "denied");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Cell, Decoded, Decoder, EventRow, SourceType};

    /// 2023-11-14T22:13:20Z.
    const INGEST: i64 = 1_700_000_000_000_000;

    fn prov_at(ingest: i64) -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: None,
            offset: Some(1),
            ingest_time_micros: ingest,
        }
    }

    fn decode_at(input: &[u8], ingest: i64) -> (Vec<EventRow>, Vec<String>) {
        let mut dec = Decoder::for_type(SourceType::Syslog);
        let mut out = Vec::new();
        dec.decode(input, &prov_at(ingest), &mut out);
        dec.flush(&prov_at(ingest), &mut out);
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

    fn one(input: &str) -> EventRow {
        let (mut events, dead) = decode_at(input.as_bytes(), INGEST);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events.len(), 1, "{input}");
        events.remove(0)
    }

    fn dead(input: &[u8]) -> String {
        let (events, dead) = decode_at(input, INGEST);
        assert!(
            events.is_empty(),
            "{:?}",
            events.first().map(EventRow::to_json)
        );
        assert_eq!(dead.len(), 1);
        dead.into_iter().next().unwrap_or_default()
    }

    fn unmapped(row: &EventRow) -> Value {
        serde_json::from_str(row.get_str("unmapped").unwrap_or("{}")).unwrap_or(Value::Null)
    }

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| t.timestamp_micros())
            .unwrap_or(0)
    }

    #[test]
    fn rfc5424_with_structured_data_escapes_and_bom() {
        let row = one(
            "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 \
             [exampleSDID@32473 iut=\"3\" eventSource=\"App\\\"li\\]c\\\\a\\tion\" eventID=\"1011\"][examplePriority@32473 class=\"high\"] \u{feff}An application event log entry...",
        );
        assert_eq!(row.time(), micros("2003-10-11T22:14:15.003Z"));
        assert_eq!(
            row.get_str("device_hostname"),
            Some("mymachine.example.com")
        );
        assert_eq!(row.get_str("process_name"), Some("evntslog"));
        assert_eq!(row.get_int("process_pid"), Some(1234));
        assert_eq!(row.get_str("event_code"), Some("ID47"));
        assert_eq!(row.get_str("metadata_log_name"), Some("local4"));
        assert_eq!(row.get_str("metadata_product"), Some("syslog"));
        assert_eq!(row.get_int("severity_id"), Some(2));
        assert_eq!(
            row.get_str("message"),
            Some("An application event log entry...")
        );
        let u = unmapped(&row);
        assert_eq!(u["sd.exampleSDID@32473.iut"], "3");
        assert_eq!(u["sd.exampleSDID@32473.eventSource"], "App\"li]c\\a\\tion");
        assert_eq!(u["sd.examplePriority@32473.class"], "high");
        assert_eq!(u["severity"], "notice");
        assert_eq!(row.get("class_uid"), Some(&Cell::Null));
    }

    #[test]
    fn rfc5424_nil_values_and_repeated_params() {
        let row = one("<34>1 - - - - - [a x=\"1\" x=\"2\"]");
        assert_eq!(row.time(), INGEST);
        assert_eq!(row.get("device_hostname"), Some(&Cell::Null));
        assert_eq!(row.get("process_name"), Some(&Cell::Null));
        assert_eq!(row.get("message"), Some(&Cell::Null));
        assert_eq!(row.get_str("metadata_log_name"), Some("auth"));
        assert_eq!(row.get_int("severity_id"), Some(5));
        let u = unmapped(&row);
        assert_eq!(u["sd.a.x"], serde_json::json!(["1", "2"]));
        assert!(u["_spoor_notes"].to_string().contains("no readable time"));

        let row = one("<14>1 2023-11-14T10:00:00+01:00 h app - - - hello world");
        assert_eq!(row.time(), micros("2023-11-14T09:00:00Z"));
        assert_eq!(row.get("process_pid"), Some(&Cell::Null));
        assert_eq!(row.get_str("message"), Some("hello world"));
    }

    #[test]
    fn rfc5424_bad_headers_name_the_problem() {
        let e = dead(b"<34>1 2003-10-11T22:14:15.003Z host");
        assert!(e.contains("ends at byte 35 before APP-NAME"), "{e}");
        let e = dead(b"<34>1 - h a p m [id x=\"1] msg");
        assert!(
            e.contains("SD-PARAM `x` at byte 20 in [id]: value is not closed"),
            "{e}"
        );
        let e = dead(b"<34>1 - h a p m [id x=1] msg");
        assert!(e.contains("value is not quoted"), "{e}");
        let e = dead(b"<34>1 - h a p m oops msg");
        assert!(e.contains("STRUCTURED-DATA at byte 16"), "{e}");
        let e = dead(b"<34>1 - h a p m [id x=\"1\"]msg");
        assert!(e.contains("space before MSG at byte 26"), "{e}");
        let e = dead(b"<999>Oct 11 22:14:15 host app: x");
        assert!(e.contains("`<999>` is not a number from 0 to 191"), "{e}");
        let e = dead(b"<12 Oct");
        assert!(e.contains("not closed"), "{e}");
    }

    #[test]
    fn rfc3164_shapes() {
        let row = one(
            "<38>Oct 11 22:14:15 mymachine su[123]: 'su root' failed for lonvick on /dev/pts/8",
        );
        assert_eq!(row.time(), micros("2023-10-11T22:14:15Z"));
        assert_eq!(row.get_str("device_hostname"), Some("mymachine"));
        assert_eq!(row.get_str("process_name"), Some("su"));
        assert_eq!(row.get_int("process_pid"), Some(123));
        assert_eq!(row.get_str("metadata_log_name"), Some("auth"));
        assert_eq!(row.get_int("severity_id"), Some(1));
        assert_eq!(
            row.get_str("message"),
            Some("'su root' failed for lonvick on /dev/pts/8")
        );
        assert_eq!(unmapped(&row)["timestamp"], "Oct 11 22:14:15");

        // No PRI, a space-padded day, no pid.
        let row = one("Nov  3 01:02:03 web1 kernel: [42.1] eth0: link up");
        assert_eq!(row.time(), micros("2023-11-03T01:02:03Z"));
        assert_eq!(row.get_str("process_name"), Some("kernel"));
        assert_eq!(row.get_str("message"), Some("[42.1] eth0: link up"));
        assert_eq!(row.get("severity_id"), Some(&Cell::Null));

        // No host.
        let row = one("<13>Nov  3 01:02:03 cron[9]: job done");
        assert_eq!(row.get("device_hostname"), Some(&Cell::Null));
        assert_eq!(row.get_str("process_name"), Some("cron"));
        assert_eq!(row.get_int("process_pid"), Some(9));

        // rsyslog's RFC 3339 timestamp.
        let row = one("2023-11-14T10:00:00.123456+02:00 db1 postgres[77]: ready");
        assert_eq!(row.time(), micros("2023-11-14T08:00:00.123456Z"));
        assert_eq!(row.get_str("device_hostname"), Some("db1"));
        assert_eq!(row.get_str("process_name"), Some("postgres"));
        assert_eq!(row.get_str("message"), Some("ready"));

        // PRI with no timestamp: the rest is the message.
        let row = one("<13>something odd happened");
        assert_eq!(row.get_str("message"), Some("something odd happened"));
        assert!(
            unmapped(&row)["_spoor_notes"]
                .to_string()
                .contains("no timestamp after PRI")
        );

        // A date that does not exist.
        let row = one("<13>Feb 30 01:02:03 h app: x");
        assert_eq!(row.time(), INGEST);
        assert!(
            unmapped(&row)["_spoor_notes"]
                .to_string()
                .contains("is not a date")
        );
    }

    #[test]
    fn rfc3164_year_is_inferred_across_new_year() {
        let new_year = micros("2024-01-01T00:10:00Z");
        let (events, _) = decode_at(b"<13>Dec 31 23:59:00 h app: x", new_year);
        assert_eq!(events[0].time(), micros("2023-12-31T23:59:00Z"));
        let (events, _) = decode_at(b"<13>Jan  1 00:05:00 h app: x", new_year);
        assert_eq!(events[0].time(), micros("2024-01-01T00:05:00Z"));
        // A sender clock a little ahead across midnight stays in next year.
        let eve = micros("2023-12-31T23:50:00Z");
        let (events, _) = decode_at(b"<13>Jan  1 00:30:00 h app: x", eve);
        assert_eq!(events[0].time(), micros("2024-01-01T00:30:00Z"));
        // More than a day ahead means last year.
        let (events, _) = decode_at(b"<13>Nov 20 00:00:00 h app: x", INGEST);
        assert_eq!(events[0].time(), micros("2022-11-20T00:00:00Z"));
        // Feb 29 looks back to a leap year.
        let (events, _) = decode_at(b"<13>Feb 29 12:00:00 h app: x", INGEST);
        assert_eq!(events[0].time(), micros("2020-02-29T12:00:00Z"));
    }

    #[test]
    fn sentinel_syslog_rows() {
        let row = one(
            r#"{"TimeGenerated":"2022-05-11T18:10:20.4Z","Computer":"UBUNTU5","EventTime":"2022-05-11T18:10:20Z","Facility":"authpriv","HostName":"UBUNTU5","SeverityLevel":"info","SyslogMessage":"Accepted publickey for azureuser from 10.0.0.9 port 50022 ssh2: RSA SHA256:abc","HostIP":"192.168.2.5","ProcessName":"sshd","ProcessID":4242,"Type":"Syslog"}"#,
        );
        assert_eq!(row.time(), micros("2022-05-11T18:10:20Z"));
        assert_eq!(row.get_str("device_hostname"), Some("UBUNTU5"));
        assert_eq!(row.get_str("device_ip"), Some("192.168.2.5"));
        assert_eq!(row.get_str("process_name"), Some("sshd"));
        assert_eq!(row.get_int("process_pid"), Some(4242));
        assert_eq!(row.get_str("metadata_log_name"), Some("authpriv"));
        assert_eq!(row.get_int("severity_id"), Some(1));
        assert_eq!(row.get_int("class_uid"), Some(3002));
        assert_eq!(row.get_str("user_name"), Some("azureuser"));
        assert_eq!(row.get_str("auth_protocol"), Some("publickey"));
        assert_eq!(row.get_str("src_ip"), Some("10.0.0.9"));
        let u = unmapped(&row);
        assert_eq!(u["Type"], "Syslog");
        assert_eq!(u["SeverityLevel"], "info");

        let row = one(r#"{"Computer":"x"}"#);
        assert!(
            unmapped(&row)["_spoor_notes"]
                .to_string()
                .contains("no `SyslogMessage`")
        );
    }

    fn auth_row(msg: &str) -> EventRow {
        one(&format!("<86>Nov 14 10:00:00 host1 {msg}"))
    }

    #[test]
    fn sshd_messages() {
        let row = auth_row("sshd[100]: Accepted password for alice from 10.1.2.3 port 51000 ssh2");
        assert_eq!(row.get_int("class_uid"), Some(3002));
        assert_eq!(row.get_int("activity_id"), Some(1));
        assert_eq!(row.get_int("type_uid"), Some(300201));
        assert_eq!(row.get_str("status"), Some("success"));
        assert_eq!(row.get_str("user_name"), Some("alice"));
        assert_eq!(row.get_str("src_ip"), Some("10.1.2.3"));
        assert_eq!(row.get_int("src_port"), Some(51000));
        assert_eq!(row.get_str("auth_protocol"), Some("password"));
        assert_eq!(row.get_str("device_hostname"), Some("host1"));
        assert_eq!(row.get_str("process_name"), Some("sshd"));
        assert_eq!(row.get_int("process_pid"), Some(100));

        let row = auth_row(
            "sshd[100]: Accepted keyboard-interactive/pam for bob from 2001:db8::1 port 22 ssh2",
        );
        assert_eq!(
            row.get_str("auth_protocol"),
            Some("keyboard-interactive/pam")
        );
        assert_eq!(row.get_str("src_ip"), Some("2001:db8::1"));

        let row =
            auth_row("sshd[1]: Failed password for invalid user admin from 1.2.3.4 port 4444 ssh2");
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("status_detail"), Some("invalid user"));
        assert_eq!(row.get_str("user_name"), Some("admin"));
        assert_eq!(row.get_int("src_port"), Some(4444));

        let row = auth_row("sshd[1]: Failed password for root from 1.2.3.4 port 4444 ssh2");
        assert_eq!(row.get_str("status_detail"), Some("failed password"));
        assert_eq!(row.get_str("user_name"), Some("root"));

        let row = auth_row("sshd[1]: Invalid user oracle from 5.6.7.8 port 3333");
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("user_name"), Some("oracle"));
        assert_eq!(row.get_str("src_ip"), Some("5.6.7.8"));
        assert_eq!(row.get_int("src_port"), Some(3333));

        let row = auth_row("sshd[1]: Invalid user test from scanner.example.net");
        assert_eq!(row.get_str("src_hostname"), Some("scanner.example.net"));
        assert_eq!(row.get("src_port"), Some(&Cell::Null));

        let row = auth_row(
            "sshd[1]: Connection closed by authenticating user root 9.9.9.9 port 2222 [preauth]",
        );
        assert_eq!(row.get_int("activity_id"), Some(1));
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("user_name"), Some("root"));
        assert_eq!(row.get_str("src_ip"), Some("9.9.9.9"));

        let row = auth_row("sshd[1]: Disconnected from user alice 10.1.2.3 port 51000");
        assert_eq!(row.get_int("activity_id"), Some(2));
        assert_eq!(row.get_str("status"), Some("success"));
        assert_eq!(row.get_str("user_name"), Some("alice"));

        let row = auth_row(
            "sshd[1]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)",
        );
        assert_eq!(row.get_int("activity_id"), Some(1));
        assert_eq!(row.get_str("user_name"), Some("alice"));
        assert_eq!(row.get("actor_user_name"), Some(&Cell::Null));
        assert_eq!(unmapped(&row)["pam_service"], "sshd");

        let row = auth_row("sshd[1]: pam_unix(sshd:session): session closed for user alice");
        assert_eq!(row.get_int("activity_id"), Some(2));
        assert_eq!(row.get_str("user_name"), Some("alice"));
    }

    #[test]
    fn sudo_and_su_messages() {
        let row = auth_row(
            "sudo:    alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/ls -l /root ; echo",
        );
        assert_eq!(row.get_int("class_uid"), Some(1007));
        assert_eq!(row.get_int("activity_id"), Some(1));
        assert_eq!(row.get_str("actor_user_name"), Some("alice"));
        assert_eq!(row.get_str("user_name"), Some("root"));
        assert_eq!(
            row.get_str("process_cmd_line"),
            Some("/bin/ls -l /root ; echo")
        );
        assert_eq!(row.get_str("process_name"), Some("sudo"));
        assert_eq!(row.get_str("status"), Some("success"));
        let u = unmapped(&row);
        assert_eq!(u["TTY"], "pts/0");
        assert_eq!(u["PWD"], "/home/alice");

        let row = auth_row(
            "sudo: alice : 3 incorrect password attempts ; TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/sh",
        );
        assert_eq!(row.get_int("class_uid"), Some(3002));
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(
            row.get_str("status_detail"),
            Some("3 incorrect password attempts")
        );
        assert_eq!(row.get_str("actor_user_name"), Some("alice"));
        assert_eq!(row.get_str("user_name"), Some("root"));

        let row = auth_row(
            "sudo: mallory : user NOT in sudoers ; TTY=pts/1 ; PWD=/tmp ; USER=root ; COMMAND=/bin/id",
        );
        assert_eq!(row.get_int("class_uid"), Some(1007));
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("action"), Some("denied"));
        assert_eq!(row.get_str("status_detail"), Some("user NOT in sudoers"));

        let row = auth_row(
            "sudo: pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0 tty=/dev/pts/0 ruser=alice rhost=  user=alice",
        );
        assert_eq!(row.get_int("class_uid"), Some(3002));
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("user_name"), Some("alice"));
        assert_eq!(row.get_str("actor_user_name"), Some("alice"));
        assert_eq!(row.get("src_ip"), Some(&Cell::Null));

        let row = auth_row(
            "sshd[5]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.5  user=root",
        );
        assert_eq!(row.get_str("src_ip"), Some("203.0.113.5"));
        assert_eq!(row.get_str("user_name"), Some("root"));
        assert_eq!(unmapped(&row)["pam_service"], "sshd");

        let row = auth_row("su[7]: Successful su for root by alice");
        assert_eq!(row.get_int("class_uid"), Some(3002));
        assert_eq!(row.get_str("status"), Some("success"));
        assert_eq!(row.get_str("user_name"), Some("root"));
        assert_eq!(row.get_str("actor_user_name"), Some("alice"));

        let row = auth_row("su[7]: FAILED su for root by bob");
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("actor_user_name"), Some("bob"));

        let row = auth_row("su[7]: FAILED SU (to root) bob on pts/2");
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("user_name"), Some("root"));
        assert_eq!(row.get_str("actor_user_name"), Some("bob"));

        let row = auth_row("su[7]: (to root) alice on pts/2");
        assert_eq!(row.get_str("status"), Some("success"));

        let row = auth_row(
            "su[7]: pam_unix(su:session): session opened for user root(uid=0) by alice(uid=1000)",
        );
        assert_eq!(row.get_str("user_name"), Some("root"));
        assert_eq!(row.get_str("actor_user_name"), Some("alice"));
    }

    #[test]
    fn sudo_keys_keep_their_spelling() {
        let row = auth_row(
            "sudo: alice : TTY=pts/3 ; PWD=/srv ; USER=postgres ; GROUP=dba ; ENV=PGDATA=/x ; COMMAND=/usr/bin/psql",
        );
        assert_eq!(row.get_str("user_name"), Some("postgres"));
        assert_eq!(row.get_str("process_cmd_line"), Some("/usr/bin/psql"));
        let u = unmapped(&row);
        assert_eq!(u["TTY"], "pts/3");
        assert_eq!(u["PWD"], "/srv");
        assert_eq!(u["GROUP"], "dba");
        assert_eq!(u["ENV"], "PGDATA=/x");
        for lower in ["tty", "pwd", "group", "env"] {
            assert!(u.get(lower).is_none(), "{lower}: {u}");
        }
    }

    #[test]
    fn severity_mapping() {
        let expect = [5, 5, 5, 4, 3, 2, 1, 1];
        for (sev, want) in expect.iter().enumerate() {
            let row = one(&format!("<{}>Nov 14 10:00:00 h a: x", 8 + sev));
            assert_eq!(row.get_int("severity_id"), Some(*want), "severity {sev}");
            assert_eq!(unmapped(&row)["severity"], SEVERITIES[sev]);
        }
        let row = one(r#"{"SyslogMessage":"x","SeverityLevel":"shout"}"#);
        assert!(
            unmapped(&row)["_spoor_notes"]
                .to_string()
                .contains("unknown severity")
        );
    }

    #[test]
    fn multi_message_inputs() {
        let input = "<13>Nov 14 10:00:00 h a: first\n  continued\n\ngarbage line\n<13>Nov 14 10:00:01 h a: second\n";
        let (events, dead) = decode_at(input.as_bytes(), INGEST);
        assert_eq!(events.len(), 2);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(
            events[0].get_str("message"),
            Some("first\n  continued\ngarbage line")
        );
        assert_eq!(
            events[0].get_str("raw"),
            Some("<13>Nov 14 10:00:00 h a: first\n  continued\ngarbage line")
        );
        assert_eq!(
            events[1].get_str("raw"),
            Some("<13>Nov 14 10:00:01 h a: second")
        );

        let input = "<13>Nov 14 10:00:00 h a: ok\n<999>bad\n";
        let (events, dead) = decode_at(input.as_bytes(), INGEST);
        assert_eq!(events.len(), 1);
        assert_eq!(dead.len(), 1);
        assert!(dead[0].contains("line 2: not syslog: PRI"), "{dead:?}");

        // A pretty-printed JSON row is one message.
        let row = one("{\n  \"SyslogMessage\": \"hi\",\n  \"HostName\": \"h\"\n}\n");
        assert_eq!(row.get_str("message"), Some("hi"));
    }

    #[test]
    fn bad_inputs_go_to_dead_letters() {
        let e = dead(b"hello world");
        assert!(e.contains("expected `<PRI>`"), "{e}");
        let e = dead(b"<13>Nov 14 10:00:00 h a: \xff\xfe");
        assert!(e.contains("invalid UTF-8 at byte 25"), "{e}");
        let e = dead(b"{\"SyslogMessage\": ");
        assert!(e.contains("invalid JSON"), "{e}");
        let e = dead(b"   \n  ");
        assert!(e.contains("empty"), "{e}");
        let huge = format!(
            "<13>Nov 14 10:00:00 h a: {}",
            "x".repeat(crate::parse::MAX_EVENT_BYTES)
        );
        let e = dead(huge.as_bytes());
        assert!(e.contains("exceeds the limit"), "{e}");
        // Big but allowed: kept whole.
        let big = format!("<13>Nov 14 10:00:00 h a: {}", "y".repeat(500_000));
        let row = one(&big);
        assert_eq!(row.get_str("message").map(str::len), Some(500_000));
        // Truncated in the middle of the timestamp: the PRI keeps it.
        let row = one("<13>Nov 14 10:0");
        assert_eq!(row.get_str("message"), Some("Nov 14 10:0"));
    }

    fn corpus(name: &str) -> String {
        let path = format!(
            "{}/../../shared/corpus/events/otrf-sentinel/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn decode_lines(text: &str) -> (Vec<EventRow>, Vec<String>) {
        let mut dec = Decoder::for_type(SourceType::Syslog);
        let mut out = Vec::new();
        for (n, line) in lines(text) {
            let prov = Provenance {
                topic: "import:corpus".into(),
                partition: None,
                offset: i64::try_from(n).ok(),
                ingest_time_micros: micros("2022-05-12T00:00:00Z"),
            };
            dec.decode(line.as_bytes(), &prov, &mut out);
        }
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

    #[test]
    fn corpus_sentinel_syslog_sysmon_linux() {
        let (events, dead) = decode_lines(&corpus("log4shell_syslog_sysmon_linux.jsonl"));
        assert_eq!((events.len(), dead.len()), (93, 0), "{dead:?}");
        for e in &events {
            assert_eq!(e.get_str("device_hostname"), Some("UBUNTU5"));
            assert_eq!(e.get_str("process_name"), Some("sysmon"));
            assert_eq!(e.get_str("metadata_log_name"), Some("user"));
            assert_eq!(e.get_int("severity_id"), Some(1));
            assert!(
                e.get_str("message")
                    .is_some_and(|m| m.starts_with("<Event>"))
            );
            assert_eq!(e.get("class_uid"), Some(&Cell::Null));
            assert!(!unmapped(e).to_string().contains("_spoor_notes"));
        }
        assert_eq!(events[0].time(), micros("2022-05-11T18:10:20Z"));
    }

    #[test]
    fn corpus_sentinel_syslog_auoms() {
        let (events, dead) = decode_lines(&corpus("log4shell_syslog_auoms_auditd_linux.jsonl"));
        assert_eq!((events.len(), dead.len()), (50, 0), "{dead:?}");
        for e in &events {
            assert_eq!(e.get_str("process_name"), Some("auoms"));
            assert_eq!(e.get_str("event_code"), Some("AUOMS_EXECVE"));
            assert!(
                e.get_str("message")
                    .is_some_and(|m| m.starts_with("type=AUOMS_EXECVE"))
            );
        }
    }

    #[test]
    fn patterns_compile() {
        for r in [
            &SSH_ACCEPTED,
            &SSH_FAILED,
            &SSH_INVALID,
            &SSH_CLOSED,
            &PAM_SESSION,
            &PAM_AUTH_FAILURE,
            &PAM_KV,
            &SU_BSD,
            &SU_UTIL,
            &SUDO,
        ] {
            assert!(!r.as_str().is_empty());
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any bytes decode to events or dead letters, never a panic.
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = decode_at(&bytes, INGEST);
            }

            /// Syslog-looking text never panics either.
            #[test]
            fn header_like_text_never_panics(
                s in "(<[0-9]{1,4}>)?(1 )?([A-Z][a-z]{2} [ 0-9]{1,2} [0-9:.]{0,12} )?[ -~\\[\\]\"\\\\=\u{e9}\u{feff}]{0,60}"
            ) {
                let _ = decode_at(s.as_bytes(), INGEST);
            }
        }
    }
}
