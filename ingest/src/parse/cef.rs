//! CEF (ArcSight Common Event Format) → the event schema.
//!
//! Accepted shapes, one event per line (an input of several lines is read
//! line by line, a bad line becoming a dead letter of its own):
//!
//! - bare `CEF:Version|Device Vendor|Device Product|Device Version|Device
//!   Event Class ID|Name|Severity|Extension`;
//! - the same after a syslog header, RFC 3164 (`<134>Mar  5 10:15:30 fw01
//!   CEF:0|…`, also with a year or an RFC 3339 time) or RFC 5424
//!   (`<134>1 2024-03-05T10:15:30Z fw01 app - - - CEF:0|…`). The header is
//!   read only for its time and host, kept as fallbacks for `rt` and
//!   `dvchost`; the full syslog parser lives in `syslog.rs`, and CEF senders
//!   put everything that matters in the CEF part.
//!
//! The header unescapes `\|` and `\\`. The extension is `key=value` pairs;
//! a value runs until the space before the next `key=` (keys are
//! `[A-Za-z0-9_.\[\]]+`), so values may hold spaces, and `\=`, `\\`, `\n`,
//! `\r` are unescaped (other backslashes are kept as they are: vendors write
//! Windows paths unescaped). A header with fewer than seven fields is a dead
//! letter naming how many were found; everything else readable becomes an
//! event, odd values noted in `unmapped._spoor_notes`.
//!
//! Custom fields (`cs1`, `cn1`, `cfp1`, `flexString1`, `c6a1`, …) are
//! renamed by their `…Label` key when it is present (`cs1Label=Rule Name
//! cs1=Allow-Web` → field `Rule Name`), in `parse` so that a configured
//! field mapping sees the label names. A label that would collide with a
//! field or a dictionary key becomes `Label (cs1)`.
//!
//! Class, chosen from content because CEF carries no class: a request URL
//! or method → HTTP Activity (4002, activity from the method); a source or
//! destination address → Network Activity (4001: 5 Refuse when `act` says
//! deny/drop/block/reject, 6 Traffic when it says allow or bytes are
//! counted, else 0); anything else → class 0 (unknown). Logons, malware and
//! the like are vendor-specific event class ids, so they are not guessed.
//!
//! `in`/`out`: the CEF guide words `in` as bytes "inbound relative to the
//! source to destination relationship", which is ambiguous; the major
//! vendors (Palo Alto `in=$bytes_received`, Fortinet `in=rcvdbyte`) write
//! `in` as what the source received, which is our `bytes_in`. So `in` →
//! `bytes_in`, `out` → `bytes_out`.
//!
//! The helpers shared with LEEF (header splitting, the syslog prefix,
//! times, severities) live here as `pub(crate)`.

use std::net::IpAddr;

use chrono::{DateTime, Datelike, NaiveDateTime};
use serde_json::{Map, Value};
use spoor_common::schema::event_col as col;

use super::draft::{epoch_to_micros, parse_time_str};
use super::{Draft, NormalizeError, ParseOutput, Parsed, Parser, PartFailure, Provenance};

const FORMAT: &str = "CEF";

/// Source fields the header becomes (ArcSight's own names for them).
const HEADER_KEYS: [&str; 7] = [
    "cefVersion",
    "deviceVendor",
    "deviceProduct",
    "deviceVersion",
    "deviceEventClassId",
    "name",
    "severity",
];

/// Extension keys moved into a column as they are (short and long names of
/// the CEF dictionary), in priority order.
const COLUMNS: &[(&str, &[&str])] = &[
    (col::SRC_IP, &["src", "sourceAddress", "c6a2"]),
    (col::DST_IP, &["dst", "destinationAddress", "c6a3"]),
    (col::SRC_PORT, &["spt", "sourcePort"]),
    (col::DST_PORT, &["dpt", "destinationPort"]),
    (col::SRC_HOSTNAME, &["shost", "sourceHostName"]),
    (col::DST_HOSTNAME, &["dhost", "destinationHostName"]),
    (col::ACTOR_USER_NAME, &["suser", "sourceUserName"]),
    (col::ACTOR_USER_DOMAIN, &["sntdom", "sourceNtDomain"]),
    (col::USER_NAME, &["duser", "destinationUserName"]),
    (col::USER_DOMAIN, &["dntdom", "destinationNtDomain"]),
    (col::BYTES_IN, &["in", "bytesIn"]),
    (col::BYTES_OUT, &["out", "bytesOut"]),
    (col::ACTION, &["act", "deviceAction"]),
    (col::STATUS_DETAIL, &["reason"]),
    (col::URL, &["request", "requestURL", "requestUrl"]),
    (col::HTTP_METHOD, &["requestMethod"]),
    (col::HTTP_USER_AGENT, &["requestClientApplication"]),
    (col::FILE_PATH, &["filePath"]),
    (col::FILE_NAME, &["fname", "fileName"]),
    // `msg` when present, else the header's Name (then kept as `name`).
    (col::MESSAGE, &["msg", "message", "name"]),
    (col::DEVICE_IP, &["dvc", "deviceAddress", "c6a4"]),
    (col::DEVICE_HOSTNAME, &["dvchost", "deviceHostName"]),
    (col::EVENT_CODE, &["deviceEventClassId"]),
    (col::METADATA_LOG_NAME, &["cat", "deviceEventCategory"]),
];

/// Keys the mapping reads besides [`COLUMNS`] (custom labels must not take
/// these names).
const SPECIAL_KEYS: &[&str] = &[
    "rt",
    "deviceReceiptTime",
    "end",
    "endTime",
    "start",
    "startTime",
    "dtz",
    "proto",
    "transportProtocol",
    "app",
    "applicationProtocol",
    "deviceDirection",
    "outcome",
    "eventOutcome",
    "fileHash",
    "sproc",
    "sourceProcessName",
    "spid",
    "sourceProcessId",
    "dproc",
    "destinationProcessName",
    "dpid",
    "destinationProcessId",
    "deviceProcessName",
    "dvcpid",
    "deviceProcessId",
];

const TIME_KEYS: &[&str] = &[
    "rt",
    "deviceReceiptTime",
    "end",
    "endTime",
    "start",
    "startTime",
];

/// The `cef` source type.
#[derive(Debug, Default)]
pub struct CefParser {
    /// The ingest time of the input being decoded: year-less times (`Mar  5
    /// 10:15:30`) take the year that puts them at or before it. `map` runs
    /// right after `parse` for the same input.
    reference: Option<i64>,
}

impl CefParser {
    /// A CEF parser.
    pub fn new() -> Self {
        CefParser::default()
    }
}

impl Parser for CefParser {
    fn parse(
        &mut self,
        input: &[u8],
        prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError> {
        self.reference = Some(prov.ingest_time_micros);
        parse_lines(input, out, parse_cef_line)
    }

    fn map(&self, d: &mut Draft) {
        let reference = self.reference.unwrap_or_else(now_micros);
        map_time(d, TIME_KEYS, reference);
        for (column, keys) in COLUMNS {
            d.take(column, keys);
        }
        map_common(d, "cef");
        map_protocol(
            d,
            &["proto", "transportProtocol", "app", "applicationProtocol"],
        );
        map_severity(d, "severity");
        map_outcome(d, &["outcome", "eventOutcome"]);
        map_direction(d);
        map_process(d);
        map_file_hash(d);
        let (class, activity) = classify(d);
        d.set_class(class, activity);
    }
}

/// One CEF line (with or without a syslog header) into a draft.
fn parse_cef_line(line: &str) -> Result<Draft, NormalizeError> {
    let Some(at) = find_marker(line, "CEF:") else {
        return Err(format_error(
            FORMAT,
            format!(
                "no `CEF:` marker found (expected `CEF:Version|Vendor|Product|Version|Event Class ID|Name|Severity|Extension`, optionally after a syslog header); the line starts `{}`",
                short(line)
            ),
        ));
    };
    let prefix = line.get(..at).unwrap_or("");
    let body = line.get(at + 4..).unwrap_or("");
    let (header, extension) = split_header(body, 7);
    if header.len() < 7 {
        return Err(format_error(
            FORMAT,
            format!(
                "the header has {} of 7 `|`-separated fields (Version|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity) at byte {at}",
                header.len()
            ),
        ));
    }
    let mut d = Draft::new(Map::new());
    for (key, value) in HEADER_KEYS.iter().zip(&header) {
        let value = value.trim();
        if !value.is_empty() {
            d.fields
                .insert((*key).to_string(), Value::String(value.to_string()));
        }
    }
    match header.first().map(|v| v.trim()) {
        Some("0" | "1") => {}
        Some(other) => d.note(format!(
            "cefVersion: `{}` is not a known CEF version (0 or 1); read as CEF 0",
            short(other)
        )),
        None => {}
    }
    let extension = match extension {
        Some(e) => e,
        None => {
            d.note("the header has no `|` after the severity; the extension is empty");
            ""
        }
    };
    let (pairs, before) = split_extension(extension);
    if !before.trim().is_empty() {
        d.note("extension: text before the first `key=` is kept as `cef_extension_prefix`");
        d.fields.insert(
            "cef_extension_prefix".into(),
            Value::String(before.trim().to_string()),
        );
    }
    for (key, value) in pairs {
        insert_unique(&mut d, key, value);
    }
    relabel(&mut d);
    add_syslog_fields(prefix, &mut d);
    Ok(d)
}

// ---------------------------------------------------------------------------
// Shared with LEEF.
// ---------------------------------------------------------------------------

/// Runs `one` over each non-blank line of the input. A single line's error
/// is the input's error; with several lines, each bad line becomes a
/// [`PartFailure`] (`line N: …`) and the good lines still produce events.
pub(crate) fn parse_lines(
    input: &[u8],
    out: &mut ParseOutput,
    one: fn(&str) -> Result<Draft, NormalizeError>,
) -> Result<(), NormalizeError> {
    let lines: Vec<(usize, &[u8])> = input
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let read = |bytes: &[u8]| -> Result<Draft, NormalizeError> {
        let text = std::str::from_utf8(bytes).map_err(|e| NormalizeError::Utf8 {
            at: e.valid_up_to(),
        })?;
        one(text)
    };
    match lines.as_slice() {
        [] => Err(NormalizeError::Empty),
        [(_, line)] => {
            out.events.push(Parsed::new(read(line)?));
            Ok(())
        }
        many => {
            for (n, line) in many {
                match read(line) {
                    Ok(d) => out.events.push(Parsed::with_raw(d, *line)),
                    Err(e) => out.failures.push(PartFailure {
                        raw: line.to_vec(),
                        error: format!("line {n}: {e}"),
                    }),
                }
            }
            Ok(())
        }
    }
}

/// A format error.
pub(crate) fn format_error(format: &'static str, reason: String) -> NormalizeError {
    NormalizeError::Format { format, reason }
}

/// The first `marker` at the start of the line or after a character that
/// cannot be part of a word (`<13>CEF:`, `host CEF:`).
pub(crate) fn find_marker(line: &str, marker: &str) -> Option<usize> {
    line.match_indices(marker).map(|(i, _)| i).find(|&i| {
        line.get(..i)
            .and_then(|before| before.chars().next_back())
            .is_none_or(|c| !c.is_alphanumeric())
    })
}

/// Splits up to `n` `|`-separated header fields off `s`, unescaping `\|` and
/// `\\`; returns the fields and what follows the `n`-th `|` (`None` when
/// there are fewer pipes: the fields then hold what was found, the last one
/// unterminated).
pub(crate) fn split_header(s: &str, n: usize) -> (Vec<String>, Option<&str>) {
    let mut fields = Vec::with_capacity(n);
    let mut current = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&(_, next @ ('|' | '\\'))) => {
                    current.push(next);
                    chars.next();
                }
                _ => current.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut current));
                if fields.len() == n {
                    return (fields, s.get(i + 1..));
                }
            }
            _ => current.push(c),
        }
    }
    fields.push(current);
    (fields, None)
}

/// Stores `key` unless the draft already has it; a repeated key is kept as
/// `key#2`, `key#3`, … with a note, so nothing is lost. Returns the name
/// used.
pub(crate) fn insert_unique(d: &mut Draft, key: &str, value: String) -> String {
    if !d.fields.contains_key(key) {
        d.fields.insert(key.to_string(), Value::String(value));
        return key.to_string();
    }
    let mut n = 2;
    let name = loop {
        let name = format!("{key}#{n}");
        if !d.fields.contains_key(&name) {
            break name;
        }
        n += 1;
    };
    d.note(format!("{key}: repeated; the repeat is kept as `{name}`"));
    d.fields.insert(name.clone(), Value::String(value));
    name
}

/// Reads the syslog header before the `CEF:`/`LEEF:` marker into
/// `syslog_pri`, `syslog_timestamp`, `syslog_host`, `syslog_app`; what it
/// cannot read is kept as `syslog_header` with a note.
pub(crate) fn add_syslog_fields(prefix: &str, d: &mut Draft) {
    let mut s = prefix.trim();
    if s.is_empty() {
        return;
    }
    fn put(d: &mut Draft, key: &str, value: &str) {
        if !value.is_empty() && value != "-" {
            d.fields
                .insert(key.to_string(), Value::String(value.to_string()));
        }
    }
    if let Some(rest) = s.strip_prefix('<')
        && let Some(end) = rest.find('>')
        && let Some(pri) = rest.get(..end)
        && !pri.is_empty()
        && pri.len() <= 3
        && pri.bytes().all(|b| b.is_ascii_digit())
    {
        put(d, "syslog_pri", pri);
        s = rest.get(end + 1..).unwrap_or("").trim_start();
    }
    let tokens: Vec<&str> = s.split_whitespace().collect();
    let token = |i: usize| tokens.get(i).copied();
    let is_month = |t: &str| MONTHS.iter().any(|m| m.eq_ignore_ascii_case(t));
    let is_year = |t: &str| t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit());
    let looks_like_time = |t: &str| t.contains(':');
    // Where the host is, having read the timestamp.
    let next = if token(0) == Some("1") && tokens.len() >= 3 {
        // RFC 5424: VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD.
        put(d, "syslog_timestamp", token(1).unwrap_or(""));
        put(d, "syslog_host", token(2).unwrap_or(""));
        put(d, "syslog_app", token(3).unwrap_or(""));
        return;
    } else if token(0).is_some_and(is_month) && token(1).is_some() {
        if token(2).is_some_and(is_year) && token(3).is_some_and(looks_like_time) {
            put(
                d,
                "syslog_timestamp",
                &tokens.iter().take(4).copied().collect::<Vec<_>>().join(" "),
            );
            4
        } else if token(2).is_some_and(looks_like_time) {
            put(
                d,
                "syslog_timestamp",
                &tokens.iter().take(3).copied().collect::<Vec<_>>().join(" "),
            );
            3
        } else {
            d.note(format!(
                "syslog header: `{}` has no readable timestamp; kept as `syslog_header`",
                short(s)
            ));
            put(d, "syslog_header", s);
            return;
        }
    } else if token(0).is_some_and(|t| parse_time_str(t).is_some() && t.contains('-')) {
        put(d, "syslog_timestamp", token(0).unwrap_or(""));
        1
    } else if tokens.len() == 1 && !s.ends_with(':') {
        // A bare host name in front of the marker.
        put(d, "syslog_host", s);
        return;
    } else {
        d.note(format!(
            "syslog header: `{}` has no readable timestamp; kept as `syslog_header`",
            short(s)
        ));
        put(d, "syslog_header", s);
        return;
    };
    if let Some(host) = token(next)
        && !host.ends_with(':')
    {
        put(d, "syslog_host", host);
        if let Some(app) = token(next + 1) {
            let app = app.trim_end_matches(':');
            let app = app.split('[').next().unwrap_or(app);
            put(d, "syslog_app", app);
        }
    } else if let Some(app) = token(next) {
        let app = app.trim_end_matches(':');
        put(d, "syslog_app", app.split('[').next().unwrap_or(app));
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Text shortened for notes and errors (at most 64 characters).
pub(crate) fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or("")),
        None => s.to_string(),
    }
}

/// Now, microseconds (only when `map` runs without `parse`).
pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The offset in seconds east of UTC of a zone token: `Z`, `UTC`, `GMT`,
/// `+01:00`, `-0500`, `GMT+2`, `UTC-03:30`, or a common abbreviation
/// (`EST`, `CEST`, `JST`, …; ambiguous ones take their most common meaning
/// in logs: `IST` India, `CST` US Central, `BST` British Summer).
pub(crate) fn zone_offset(token: &str) -> Option<i32> {
    let t = token.trim();
    let upper = t.to_ascii_uppercase();
    let hours = match upper.as_str() {
        "Z" | "UT" | "UTC" | "GMT" | "WET" => Some(0.0),
        "EST" => Some(-5.0),
        "EDT" | "AST" => Some(-4.0),
        "CST" => Some(-6.0),
        "CDT" => Some(-5.0),
        "MST" => Some(-7.0),
        "MDT" => Some(-6.0),
        "PST" => Some(-8.0),
        "PDT" | "AKDT" => Some(-7.0),
        "AKST" => Some(-9.0),
        "HST" => Some(-10.0),
        "BST" | "CET" | "WEST" | "MET" => Some(1.0),
        "CEST" | "EET" | "MEST" | "SAST" => Some(2.0),
        "EEST" | "MSK" => Some(3.0),
        "IST" => Some(5.5),
        "SGT" | "HKT" | "AWST" => Some(8.0),
        "JST" | "KST" => Some(9.0),
        "AEST" => Some(10.0),
        "AEDT" => Some(11.0),
        "NZST" => Some(12.0),
        "NZDT" => Some(13.0),
        _ => None,
    };
    if let Some(h) = hours {
        return Some((h * 3600.0) as i32);
    }
    let signed = ["GMT", "UTC", "UT"]
        .iter()
        .find_map(|p| upper.strip_prefix(p))
        .unwrap_or(&upper);
    let (sign, digits) = match signed.as_bytes().first() {
        Some(b'+') => (1, signed.get(1..)?),
        Some(b'-') => (-1, signed.get(1..)?),
        _ => return None,
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() == 4 => (digits.get(..2)?, digits.get(2..)?),
        None => (digits, "0"),
    };
    if h.is_empty() || h.len() > 2 || m.len() > 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

/// A naive date-time read with a year: when the text has none, the year
/// putting it at or before `reference` (plus a day of clock skew).
fn with_year(text: &str, format: &str, reference: i64, offset: i32) -> Option<i64> {
    let reference_year = DateTime::from_timestamp_micros(reference)?.year();
    for year in [reference_year, reference_year - 1] {
        let dated = format!("{year} {text}");
        let fmt = format!("%Y {format}");
        let Ok(naive) = NaiveDateTime::parse_from_str(&dated, &fmt) else {
            continue;
        };
        let micros = naive.and_utc().timestamp_micros() - i64::from(offset) * 1_000_000;
        if micros <= reference + super::draft::MAX_FUTURE_MICROS {
            return Some(micros);
        }
    }
    None
}

/// Reads the times CEF and LEEF senders write: epoch milliseconds (or
/// seconds; by magnitude), RFC 3339, `YYYY-MM-DD HH:MM:SS`, and the CEF
/// forms `MMM dd [yyyy] HH:mm:ss[.SSS] [zone]` (also `dd MMM yyyy`,
/// `yyyy/MM/dd`, `MM/dd/yyyy`). A text without a zone is UTC unless
/// `default_zone` (CEF `dtz`) names one; one without a year takes the year
/// that puts it at or before `reference`.
pub(crate) fn parse_event_time(s: &str, default_zone: Option<&str>, reference: i64) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return s.parse::<f64>().ok().and_then(epoch_to_micros);
    }
    if let Some(t) = parse_time_str(s) {
        return Some(t);
    }
    let mut words: Vec<&str> = s.split_whitespace().collect();
    let zone = match words.last() {
        Some(last) if words.len() > 1 => zone_offset(last),
        _ => None,
    };
    let offset = match zone {
        Some(offset) => {
            words.pop();
            offset
        }
        None => default_zone.and_then(zone_offset).unwrap_or(0),
    };
    let text = words.join(" ");
    const WITH_YEAR: [&str; 6] = [
        "%b %d %Y %H:%M:%S%.f",
        "%d %b %Y %H:%M:%S%.f",
        "%Y/%m/%d %H:%M:%S%.f",
        "%m/%d/%Y %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
    ];
    for format in WITH_YEAR {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&text, format) {
            return Some(naive.and_utc().timestamp_micros() - i64::from(offset) * 1_000_000);
        }
    }
    with_year(&text, "%b %d %H:%M:%S%.f", reference, offset)
}

/// Moves the first readable time of `keys` (else the syslog header's) into
/// `time`, noting unreadable ones.
pub(crate) fn map_time(d: &mut Draft, keys: &[&str], reference: i64) {
    if d.is_set(col::TIME) {
        return;
    }
    let dtz = d.field_str("dtz");
    for key in keys.iter().chain(&["syslog_timestamp"]) {
        let Some(value) = d.field_str(key) else {
            continue;
        };
        match parse_event_time(&value, dtz.as_deref(), reference) {
            Some(t) => {
                d.set_int(col::TIME, t);
                d.remove(key);
                return;
            }
            None => d.note(format!("{key}: `{}` is not a readable time", short(&value))),
        }
    }
}

/// What CEF and LEEF share: product, log name, the syslog host.
pub(crate) fn map_common(d: &mut Draft, default_log_name: &str) {
    if !d.is_set(col::METADATA_PRODUCT) {
        let vendor = d.field_str("deviceVendor").unwrap_or_default();
        let product = d.field_str("deviceProduct").unwrap_or_default();
        let both = format!("{} {}", vendor.trim(), product.trim());
        if !both.trim().is_empty() {
            d.set_str(col::METADATA_PRODUCT, both.trim());
            d.remove("deviceVendor");
            d.remove("deviceProduct");
        }
    }
    if !d.is_set(col::METADATA_LOG_NAME) {
        d.set_str(col::METADATA_LOG_NAME, default_log_name);
    }
    if let Some(host) = d.field_str("syslog_host") {
        let column = if host.parse::<IpAddr>().is_ok() {
            col::DEVICE_IP
        } else {
            col::DEVICE_HOSTNAME
        };
        d.take(column, &["syslog_host"]);
    }
}

/// The protocol, lowercased, IANA numbers named (`6` → `tcp`).
pub(crate) fn map_protocol(d: &mut Draft, keys: &[&str]) {
    if d.is_set(col::NETWORK_PROTOCOL) {
        return;
    }
    for key in keys {
        if let Some(value) = d.field_str(key) {
            let name = match value.trim() {
                "1" => "icmp".to_string(),
                "6" => "tcp".to_string(),
                "17" => "udp".to_string(),
                "47" => "gre".to_string(),
                "50" => "esp".to_string(),
                "58" => "ipv6-icmp".to_string(),
                other => other.to_ascii_lowercase(),
            };
            if !name.is_empty() {
                d.set_str(col::NETWORK_PROTOCOL, name);
                d.remove(key);
                return;
            }
        }
    }
}

/// CEF/LEEF severity (0–10, or CEF's `Unknown`/`Low`/`Medium`/`High`/
/// `Very-High`) as an OCSF severity id: 0–3 Low (2), 4–6 Medium (3), 7–8
/// High (4), 9–10 Very-High (5, Critical).
pub(crate) fn severity_id(s: &str) -> Option<i64> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i64>() {
        return match n {
            0..=3 => Some(2),
            4..=6 => Some(3),
            7..=8 => Some(4),
            9..=10 => Some(5),
            _ => None,
        };
    }
    match t.to_ascii_lowercase().replace([' ', '_'], "-").as_str() {
        "unknown" => Some(0),
        "low" => Some(2),
        "medium" => Some(3),
        "high" => Some(4),
        "very-high" | "veryhigh" => Some(5),
        _ => None,
    }
}

/// The severity field into `severity_id`, or a note.
pub(crate) fn map_severity(d: &mut Draft, key: &str) {
    if d.is_set(col::SEVERITY_ID) {
        return;
    }
    if let Some(value) = d.field_str(key) {
        match severity_id(&value) {
            Some(id) => {
                d.set_int(col::SEVERITY_ID, id);
                d.remove(key);
            }
            None => d.note(format!(
                "{key}: `{}` is not a severity (0-10 or Unknown/Low/Medium/High/Very-High)",
                short(&value)
            )),
        }
    }
}

/// `success`/`failure` for the outcome words senders use.
pub(crate) fn normalize_outcome(s: &str) -> Option<&'static str> {
    match s
        .trim()
        .trim_start_matches('/')
        .to_ascii_lowercase()
        .as_str()
    {
        "success" | "succeeded" | "successful" | "succeed" | "ok" | "pass" | "passed" | "true" => {
            Some("success")
        }
        "failure" | "failed" | "fail" | "failed_login" | "error" | "false" => Some("failure"),
        _ => None,
    }
}

/// The outcome into `status` (normalized when recognizable), the original
/// into `status_detail` unless a reason took it (then it stays a field).
pub(crate) fn map_outcome(d: &mut Draft, keys: &[&str]) {
    if d.is_set(col::STATUS) {
        return;
    }
    let Some((key, value)) = keys.iter().find_map(|k| {
        d.field_str(k)
            .filter(|v| !v.trim().is_empty())
            .map(|v| (*k, v))
    }) else {
        return;
    };
    match normalize_outcome(&value) {
        Some(norm) => {
            d.set_str(col::STATUS, norm);
            if norm.eq_ignore_ascii_case(value.trim()) {
                d.remove(key);
            } else if !d.is_set(col::STATUS_DETAIL) {
                d.set_str(col::STATUS_DETAIL, value.trim());
                d.remove(key);
            }
        }
        None => {
            d.set_str(col::STATUS, value.trim());
            d.remove(key);
        }
    }
}

/// Whether an action word means the traffic was refused.
pub(crate) fn is_refusal(action: &str) -> bool {
    let a = action.to_ascii_lowercase();
    [
        "deny", "denied", "drop", "block", "reject", "reset", "refuse", "prevent",
    ]
    .iter()
    .any(|w| a.contains(w))
}

/// Whether an action word means the traffic was let through.
fn is_allowance(action: &str) -> bool {
    let a = action.to_ascii_lowercase();
    ["allow", "accept", "permit", "pass", "close", "start", "end"]
        .iter()
        .any(|w| a.contains(w))
}

/// The class from content: HTTP when there is a request, network when there
/// are addresses, else 0 (unknown).
pub(crate) fn classify(d: &Draft) -> (i64, i64) {
    if d.is_set(col::URL) || d.is_set(col::HTTP_METHOD) {
        let activity = match d
            .get_str(col::HTTP_METHOD)
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("CONNECT") => 1,
            Some("DELETE") => 2,
            Some("GET") => 3,
            Some("HEAD") => 4,
            Some("OPTIONS") => 5,
            Some("POST") => 6,
            Some("PUT") => 7,
            Some("TRACE") => 8,
            Some(_) => 99,
            None => 0,
        };
        return (4002, activity);
    }
    let network = [col::SRC_IP, col::DST_IP, col::SRC_PORT, col::DST_PORT]
        .iter()
        .any(|c| d.is_set(c));
    if network {
        let action = d.get_str(col::ACTION).unwrap_or("");
        let activity = if is_refusal(action) {
            5
        } else if is_allowance(action) || d.is_set(col::BYTES_IN) || d.is_set(col::BYTES_OUT) {
            6
        } else {
            0
        };
        return (4001, activity);
    }
    (0, 0)
}

// ---------------------------------------------------------------------------
// CEF only.
// ---------------------------------------------------------------------------

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'[' | b']')
}

/// The `(key, value)` pairs of an extension, values unescaped, and the text
/// before the first key. A key starts the extension or follows a space or
/// tab, and ends at an `=`; its value runs until the space before the next
/// key. Every boundary is an ASCII byte, so every slice is at a character
/// boundary.
pub(crate) fn split_extension(ext: &str) -> (Vec<(&str, String)>, &str) {
    let bytes = ext.as_bytes();
    let mut keys: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let starts = i == 0 || matches!(bytes.get(i - 1), Some(b' ' | b'\t'));
        if starts && is_key_byte(b) {
            let mut j = i;
            while bytes.get(j).copied().is_some_and(is_key_byte) {
                j += 1;
            }
            if bytes.get(j) == Some(&b'=') {
                keys.push((i, j));
                i = j + 1;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    let before = keys
        .first()
        .and_then(|(start, _)| ext.get(..*start))
        .unwrap_or(if keys.is_empty() { ext } else { "" });
    let mut pairs = Vec::with_capacity(keys.len());
    for (n, (start, eq)) in keys.iter().enumerate() {
        let end = keys.get(n + 1).map_or(ext.len(), |(next, _)| *next);
        let key = ext.get(*start..*eq).unwrap_or("");
        let value = ext
            .get(eq + 1..end)
            .unwrap_or("")
            .trim_end_matches([' ', '\t']);
        pairs.push((key, unescape_value(value)));
    }
    (pairs, before)
}

/// Unescapes `\=`, `\\`, `\n`, `\r`; other backslashes are kept.
fn unescape_value(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('=') => out.push('='),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            _ => {
                out.push('\\');
                continue;
            }
        }
        chars.next();
    }
    out
}

/// Renames custom fields by their labels (`cs1Label=Rule Name cs1=x` →
/// `Rule Name`); a label colliding with a field or a dictionary key becomes
/// `Label (cs1)`; a label without its value stays as it is.
fn relabel(d: &mut Draft) {
    let label_keys: Vec<String> = d
        .fields
        .keys()
        .filter(|k| k.len() > "Label".len() && k.ends_with("Label"))
        .cloned()
        .collect();
    for label_key in label_keys {
        let Some(base) = label_key.strip_suffix("Label") else {
            continue;
        };
        if !d.fields.contains_key(base) {
            continue;
        }
        let Some(label) = d.field_str(&label_key) else {
            continue;
        };
        let label = label.trim();
        if label.is_empty() {
            continue;
        }
        let taken = |name: &str| {
            d.fields.contains_key(name)
                || HEADER_KEYS.contains(&name)
                || SPECIAL_KEYS.contains(&name)
                || COLUMNS.iter().any(|(_, keys)| keys.contains(&name))
                || name.starts_with("syslog_")
        };
        let name = if taken(label) {
            format!("{label} ({base})")
        } else {
            label.to_string()
        };
        if d.fields.contains_key(&name) {
            continue;
        }
        if let Some(value) = d.fields.remove(base) {
            d.fields.remove(&label_key);
            d.fields.insert(name, value);
        }
    }
}

/// `deviceDirection` 0/1 → `inbound`/`outbound`.
fn map_direction(d: &mut Draft) {
    if d.is_set(col::NETWORK_DIRECTION) {
        return;
    }
    if let Some(value) = d.field_str("deviceDirection") {
        let direction = match value.trim() {
            "0" => "inbound",
            "1" => "outbound",
            other => {
                d.note(format!(
                    "deviceDirection: `{}` is neither 0 (inbound) nor 1 (outbound)",
                    short(other)
                ));
                return;
            }
        };
        d.set_str(col::NETWORK_DIRECTION, direction);
        d.remove("deviceDirection");
    }
}

/// The process: the source process (`sproc`/`spid`) when given, else the
/// destination process, else the device's; name and pid always from the
/// same side. A name with a directory goes to `process_path`.
fn map_process(d: &mut Draft) {
    const SIDES: [(&[&str], &[&str]); 3] = [
        (
            &["sproc", "sourceProcessName"],
            &["spid", "sourceProcessId"],
        ),
        (
            &["dproc", "destinationProcessName"],
            &["dpid", "destinationProcessId"],
        ),
        (&["deviceProcessName"], &["dvcpid", "deviceProcessId"]),
    ];
    if d.is_set(col::PROCESS_NAME) || d.is_set(col::PROCESS_PATH) || d.is_set(col::PROCESS_PID) {
        return;
    }
    for (names, pids) in SIDES {
        let name = names.iter().find_map(|k| d.field_str(k).map(|v| (*k, v)));
        let has_pid = pids.iter().any(|k| d.field(k).is_some());
        if name.is_none() && !has_pid {
            continue;
        }
        if let Some((key, value)) = name {
            let column = if value.contains(['/', '\\']) {
                col::PROCESS_PATH
            } else {
                col::PROCESS_NAME
            };
            d.take(column, &[key]);
        }
        d.take(col::PROCESS_PID, pids);
        return;
    }
}

/// `fileHash` into the hash column its length names (32 MD5, 40 SHA-1, 64
/// SHA-256); an `algo:`/`algo=` prefix is dropped.
fn map_file_hash(d: &mut Draft) {
    let Some(value) = d.field_str("fileHash") else {
        return;
    };
    let digest = value
        .rsplit([':', '='])
        .next()
        .unwrap_or(&value)
        .trim()
        .to_ascii_lowercase();
    let column = match digest.len() {
        32 => col::HASH_MD5,
        40 => col::HASH_SHA1,
        64 => col::HASH_SHA256,
        _ => {
            d.note(format!(
                "fileHash: `{}` is not an MD5, SHA-1 or SHA-256 digest",
                short(&value)
            ));
            return;
        }
    };
    if !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        d.note(format!("fileHash: `{}` is not hexadecimal", short(&value)));
        return;
    }
    if !d.is_set(column) {
        d.set_str(column, digest);
        d.remove("fileHash");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::draft::{MAX_EVENT_BYTES, NOTES_KEY};
    use crate::parse::{Decoded, Decoder, EventRow, SourceType};

    /// 2024-03-10T00:00:00Z.
    const INGEST: i64 = 1_710_028_800_000_000;

    fn prov() -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: None,
            offset: Some(1),
            ingest_time_micros: INGEST,
        }
    }

    fn decode(input: &str) -> Vec<Decoded> {
        let mut out = Vec::new();
        Decoder::for_type(SourceType::Cef).decode(input.as_bytes(), &prov(), &mut out);
        out
    }

    fn event(input: &str) -> EventRow {
        let out = decode(input);
        match out.as_slice() {
            [Decoded::Event(row)] => row.clone(),
            other => panic!("expected one event, got {other:?}"),
        }
    }

    fn dead(input: &str) -> String {
        match decode(input).as_slice() {
            [Decoded::Dead(d)] => d.error.clone(),
            other => panic!("expected one dead letter, got {other:?}"),
        }
    }

    fn unmapped(row: &EventRow) -> Value {
        serde_json::from_str(row.get_str("unmapped").expect("unmapped")).expect("json")
    }

    fn notes(row: &EventRow) -> String {
        unmapped(row)[NOTES_KEY].to_string()
    }

    fn micros(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("time")
            .timestamp_micros()
    }

    #[test]
    fn spec_example_after_rfc3164_header() {
        // The CEF guide's example, after a syslog header without a year.
        let row = event(
            "Sep 19 08:26:10 host CEF:0|Security|threatmanager|1.0|100|worm successfully stopped|10|src=10.0.0.1 dst=2.1.2.2 spt=1232",
        );
        assert_eq!(row.time(), micros("2023-09-19T08:26:10Z"));
        assert_eq!(row.get_str("device_hostname"), Some("host"));
        assert_eq!(
            row.get_str("metadata_product"),
            Some("Security threatmanager")
        );
        assert_eq!(row.get_str("metadata_log_name"), Some("cef"));
        assert_eq!(row.get_str("event_code"), Some("100"));
        assert_eq!(row.get_str("message"), Some("worm successfully stopped"));
        assert_eq!(row.get_int("severity_id"), Some(5));
        assert_eq!(row.get_str("src_ip"), Some("10.0.0.1"));
        assert_eq!(row.get_str("dst_ip"), Some("2.1.2.2"));
        assert_eq!(row.get_int("src_port"), Some(1232));
        assert_eq!(row.get_int("class_uid"), Some(4001));
        assert_eq!(row.get_int("activity_id"), Some(0));
        assert_eq!(row.get_int("category_uid"), Some(4));
        let u = unmapped(&row);
        assert_eq!(u["deviceVersion"], "1.0");
        assert_eq!(u["cefVersion"], "0");
    }

    #[test]
    fn spec_escapes_in_header_and_extension() {
        let row = event(
            r"CEF:0|security|threatmanager|1.0|100|detected a \| in message|10|src=10.0.0.1 act=blocked a | dst=1.1.1.1",
        );
        assert_eq!(row.get_str("message"), Some("detected a | in message"));
        assert_eq!(row.get_str("action"), Some("blocked a |"));
        assert_eq!(row.get_str("dst_ip"), Some("1.1.1.1"));
        let row = event(
            r"CEF:0|security|threatmanager|1.0|100|detected a \\ in packet|10|src=10.0.0.1 act=blocked a \\ dst=1.1.1.1",
        );
        assert_eq!(row.get_str("message"), Some(r"detected a \ in packet"));
        assert_eq!(row.get_str("action"), Some(r"blocked a \"));
        let row = event(
            r"CEF:0|security|threatmanager|1.0|100|detected a = in message|10|src=10.0.0.1 act=blocked a \= dst=1.1.1.1",
        );
        assert_eq!(row.get_str("message"), Some("detected a = in message"));
        assert_eq!(row.get_str("action"), Some("blocked a ="));
        let row = event(
            r"CEF:0|security|threatmanager|1.0|100|Detected a threat|10|msg=Detected a threat.\n No action needed. filePath=C:\Windows\Temp\x.exe",
        );
        assert_eq!(
            row.get_str("message"),
            Some("Detected a threat.\n No action needed.")
        );
        assert_eq!(unmapped(&row)["name"], "Detected a threat");
        // An unescaped backslash (a Windows path) is kept as written.
        assert_eq!(row.get_str("file_path"), Some(r"C:\Windows\Temp\x.exe"));
        assert_eq!(row.get_str("file_name"), Some("x.exe"));
        // `=` inside a value that is not a key.
        let row = event("CEF:0|V|P|1|1|n|1|request=http://x/?a=b&c=d suser=bob");
        assert_eq!(row.get_str("url"), Some("http://x/?a=b&c=d"));
        assert_eq!(row.get_str("actor_user_name"), Some("bob"));
    }

    #[test]
    fn palo_alto_traffic_with_labels() {
        let row = event(
            "<14>Mar  5 10:15:31 pa-fw01 CEF:0|Palo Alto Networks|PAN-OS|10.1.0|end|TRAFFIC|1|rt=Mar 05 2024 10:15:30 GMT deviceExternalId=012345678901 src=10.1.1.5 dst=93.184.216.34 sourceTranslatedAddress=198.51.100.7 destinationTranslatedAddress=93.184.216.34 cs1Label=Rule cs1=Allow-Web suser=acme\\jdoe duser= cs2Label=Virtual System cs2=vsys1 cs3Label=Source Zone cs3=trust app=web-browsing cs5Label=Application cs5=web-browsing spt=52311 dpt=443 proto=tcp act=allow in=5120 out=1234 cn1Label=SessionID cn1=98765 cat=end",
        );
        assert_eq!(row.time(), micros("2024-03-05T10:15:30Z"));
        assert_eq!(
            row.get_str("metadata_product"),
            Some("Palo Alto Networks PAN-OS")
        );
        assert_eq!(row.get_str("metadata_log_name"), Some("end"));
        assert_eq!(row.get_str("event_code"), Some("end"));
        assert_eq!(row.get_str("message"), Some("TRAFFIC"));
        assert_eq!(row.get_int("severity_id"), Some(2));
        assert_eq!(row.get_str("device_hostname"), Some("pa-fw01"));
        assert_eq!(row.get_str("actor_user_name"), Some(r"acme\jdoe"));
        assert_eq!(row.get_str("user_name"), None);
        assert_eq!(row.get_str("network_protocol"), Some("tcp"));
        assert_eq!(row.get_str("action"), Some("allow"));
        assert_eq!(row.get_int("bytes_in"), Some(5120));
        assert_eq!(row.get_int("bytes_out"), Some(1234));
        assert_eq!(row.get_int("dst_port"), Some(443));
        assert_eq!(row.get_int("class_uid"), Some(4001));
        assert_eq!(row.get_int("activity_id"), Some(6));
        assert_eq!(row.get_int("type_uid"), Some(400_106));
        let u = unmapped(&row);
        assert_eq!(u["Rule"], "Allow-Web");
        assert_eq!(u["Virtual System"], "vsys1");
        assert_eq!(u["Source Zone"], "trust");
        assert_eq!(u["Application"], "web-browsing");
        assert_eq!(u["SessionID"], "98765");
        assert_eq!(u["sourceTranslatedAddress"], "198.51.100.7");
        assert_eq!(u["syslog_pri"], "14");
        assert!(u.get("cs1").is_none() && u.get("cs1Label").is_none());
        // `app` is kept by the protocol fallback only when `proto` is absent.
        assert_eq!(u["app"], "web-browsing");
    }

    #[test]
    fn fortinet_traffic_numeric_protocol_outcome_direction() {
        let row = event(
            "CEF:0|Fortinet|Fortigate|v6.4.5|00013|traffic:forward accept|3|deviceExternalId=FGT60E0000000001 FTNTFGTlogid=0000000013 cat=traffic:forward FTNTFGTsubtype=forward FTNTFGTlevel=notice FTNTFGTvd=root src=10.0.0.2 shost=pc-01 spt=55555 deviceInboundInterface=port1 dst=8.8.8.8 dpt=53 deviceOutboundInterface=wan1 proto=17 act=accept FTNTFGTpolicyid=1 app=DNS in=120 out=60 deviceDirection=1 outcome=success rt=1709633730000 dvchost=FGT-HQ dvc=192.0.2.1",
        );
        assert_eq!(row.time(), 1_709_633_730_000_000);
        assert_eq!(row.get_str("network_protocol"), Some("udp"));
        assert_eq!(row.get_str("status"), Some("success"));
        assert_eq!(row.get_str("status_detail"), None);
        assert_eq!(row.get_str("network_direction"), Some("outbound"));
        assert_eq!(row.get_str("src_hostname"), Some("pc-01"));
        assert_eq!(row.get_str("device_hostname"), Some("FGT-HQ"));
        assert_eq!(row.get_str("device_ip"), Some("192.0.2.1"));
        assert_eq!(row.get_str("metadata_log_name"), Some("traffic:forward"));
        assert_eq!(row.get_int("severity_id"), Some(2));
        assert_eq!(row.get_int("activity_id"), Some(6));
        let u = unmapped(&row);
        assert_eq!(u["FTNTFGTpolicyid"], "1");
        assert_eq!(u["app"], "DNS");
    }

    #[test]
    fn check_point_drop_is_a_refusal() {
        let row = event(
            "CEF:0|Check Point|VPN-1 & FireWall-1|Check Point|Log|https|Unknown|act=Drop cs2Label=Rule Name cs2=Block-All deviceDirection=0 rt=1709633730000 spt=51234 dpt=443 ifname=eth1 proto=6 src=203.0.113.9 dst=192.0.2.10 origin=192.0.2.254",
        );
        assert_eq!(
            row.get_str("metadata_product"),
            Some("Check Point VPN-1 & FireWall-1")
        );
        assert_eq!(row.get_int("severity_id"), Some(0));
        assert_eq!(row.get_str("action"), Some("Drop"));
        assert_eq!(row.get_str("network_direction"), Some("inbound"));
        assert_eq!(row.get_int("class_uid"), Some(4001));
        assert_eq!(row.get_int("activity_id"), Some(5));
        assert_eq!(unmapped(&row)["Rule Name"], "Block-All");
        assert_eq!(unmapped(&row)["origin"], "192.0.2.254");
    }

    #[test]
    fn http_request_with_spaces_in_values() {
        let row = event(
            "CEF:0|Imperva Inc.|SecureSphere|12.0|Web|SQL injection|High|request=https://shop.example.com/login?id=1' requestMethod=POST requestClientApplication=Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 src=198.51.100.23 spt=40122 dst=10.2.2.2 dpt=443 act=blocked duser=alice",
        );
        assert_eq!(row.get_int("class_uid"), Some(4002));
        assert_eq!(row.get_int("activity_id"), Some(6));
        assert_eq!(row.get_int("severity_id"), Some(4));
        assert_eq!(
            row.get_str("url"),
            Some("https://shop.example.com/login?id=1'")
        );
        assert_eq!(row.get_str("http_method"), Some("POST"));
        assert_eq!(
            row.get_str("http_user_agent"),
            Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36")
        );
        assert_eq!(row.get_str("user_name"), Some("alice"));
        assert_eq!(row.get_str("action"), Some("blocked"));
    }

    #[test]
    fn rfc5424_header_gives_time_and_host() {
        let row = event(
            "<134>1 2024-03-05T10:15:30.123Z fw01.example.com CEF - - - CEF:1|Acme|Sensor|2.0|login|User login|Medium|suser=bob outcome=Failure reason=Bad password",
        );
        assert_eq!(row.time(), micros("2024-03-05T10:15:30.123Z"));
        assert_eq!(row.get_str("device_hostname"), Some("fw01.example.com"));
        assert_eq!(row.get_int("severity_id"), Some(3));
        // A logon is vendor-specific: the class stays unknown.
        assert_eq!(row.get_int("class_uid"), Some(0));
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("status_detail"), Some("Bad password"));
        let u = unmapped(&row);
        // `Failure` is `failure` but for case: not kept twice.
        assert!(u.get("outcome").is_none(), "{u}");
        assert_eq!(u["syslog_app"], "CEF");
    }

    #[test]
    fn endpoint_process_file_and_hash() {
        let row = event(
            "CEF:0|Acme|EDR|3.1|proc-1|Suspicious file written|8|rt=Mar 05 2024 10:15:30.250 +01:00 sproc=C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe spid=4242 dproc=notepad.exe dpid=77 suser=alice sntdom=CORP fname=evil.dll filePath=C:\\Users\\alice\\evil.dll fileHash=SHA256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855 outcome=blocked",
        );
        assert_eq!(row.time(), micros("2024-03-05T09:15:30.250Z"));
        assert_eq!(
            row.get_str("process_path"),
            Some(r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe")
        );
        assert_eq!(row.get_str("process_name"), Some("powershell.exe"));
        assert_eq!(row.get_int("process_pid"), Some(4242));
        assert_eq!(row.get_str("actor_user_name"), Some("alice"));
        assert_eq!(row.get_str("actor_user_domain"), Some("CORP"));
        assert_eq!(row.get_str("file_name"), Some("evil.dll"));
        assert_eq!(row.get_str("file_path"), Some(r"C:\Users\alice\evil.dll"));
        assert_eq!(
            row.get_str("hash_sha256"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(row.get_str("status"), Some("blocked"));
        assert_eq!(row.get_int("severity_id"), Some(4));
        assert_eq!(row.get_int("class_uid"), Some(0));
        let u = unmapped(&row);
        assert_eq!(u["dproc"], "notepad.exe");
        assert_eq!(u["dpid"], "77");
        // MD5 and SHA-1 by length.
        let row = event("CEF:0|A|B|1|1|n|1|fileHash=D41D8CD98F00B204E9800998ECF8427E");
        assert_eq!(
            row.get_str("hash_md5"),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        let row = event("CEF:0|A|B|1|1|n|1|fileHash=da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            row.get_str("hash_sha1"),
            Some("da39a3ee5e6b4b0d3255bfef95601890afd80709")
        );
        let row = event("CEF:0|A|B|1|1|n|1|fileHash=abc");
        assert!(notes(&row).contains("fileHash"), "{}", notes(&row));
    }

    #[test]
    fn time_forms() {
        let t = |s: &str| parse_event_time(s, None, INGEST);
        assert_eq!(t("1709633730000"), Some(1_709_633_730_000_000));
        assert_eq!(
            t("Mar 05 2024 10:15:30"),
            Some(micros("2024-03-05T10:15:30Z"))
        );
        assert_eq!(
            t("Mar 05 2024 10:15:30.123 UTC"),
            Some(micros("2024-03-05T10:15:30.123Z"))
        );
        assert_eq!(
            t("Mar 05 2024 10:15:30 EST"),
            Some(micros("2024-03-05T15:15:30Z"))
        );
        assert_eq!(
            t("Mar  5 2024 10:15:30 GMT+02:00"),
            Some(micros("2024-03-05T08:15:30Z"))
        );
        assert_eq!(t("Mar 05 10:15:30"), Some(micros("2024-03-05T10:15:30Z")));
        assert_eq!(
            t("Mar 05 10:15:30.5 PST"),
            Some(micros("2024-03-05T18:15:30.5Z"))
        );
        // After the ingest time: last year.
        assert_eq!(t("Dec 31 23:00:00"), Some(micros("2023-12-31T23:00:00Z")));
        assert_eq!(
            t("2024-03-05T10:15:30+01:00"),
            Some(micros("2024-03-05T09:15:30Z"))
        );
        assert_eq!(
            t("05 Mar 2024 10:15:30"),
            Some(micros("2024-03-05T10:15:30Z"))
        );
        assert_eq!(
            t("03/05/2024 10:15:30"),
            Some(micros("2024-03-05T10:15:30Z"))
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(t(""), None);
        assert_eq!(
            parse_event_time("Mar 05 2024 10:15:30", Some("-05:00"), INGEST),
            Some(micros("2024-03-05T15:15:30Z"))
        );
        assert_eq!(zone_offset("+0530"), Some(19_800));
        assert_eq!(zone_offset("IST"), Some(19_800));
        assert_eq!(zone_offset("UTC-3"), Some(-10_800));
        assert_eq!(zone_offset("+99:00"), None);
        assert_eq!(zone_offset("Moon"), None);
        // `dtz` applies to `rt` without a zone; `end` is the fallback.
        let row = event("CEF:0|A|B|1|1|n|1|rt=Mar 05 2024 10:15:30 dtz=EST");
        assert_eq!(row.time(), micros("2024-03-05T15:15:30Z"));
        let row = event("CEF:0|A|B|1|1|n|1|rt=garbage end=1709633730000");
        assert_eq!(row.time(), 1_709_633_730_000_000);
        assert!(notes(&row).contains("rt: `garbage` is not a readable time"));
        assert_eq!(unmapped(&row)["rt"], "garbage");
        // No time at all: the ingest time, noted.
        let row = event("CEF:0|A|B|1|1|n|1|");
        assert_eq!(row.time(), INGEST);
        assert!(notes(&row).contains("no readable time"));
    }

    #[test]
    fn severities() {
        for (s, id) in [
            ("0", Some(2)),
            ("3", Some(2)),
            ("4", Some(3)),
            ("6", Some(3)),
            ("7", Some(4)),
            ("8", Some(4)),
            ("9", Some(5)),
            ("10", Some(5)),
            ("11", None),
            ("-1", None),
            ("Unknown", Some(0)),
            ("low", Some(2)),
            ("Medium", Some(3)),
            ("HIGH", Some(4)),
            ("Very-High", Some(5)),
            ("Very High", Some(5)),
            ("urgent", None),
        ] {
            assert_eq!(severity_id(s), id, "{s}");
        }
        let row = event("CEF:0|A|B|1|1|n|42|src=1.2.3.4");
        assert_eq!(row.get_int("severity_id"), None);
        assert!(notes(&row).contains("severity: `42` is not a severity"));
        assert_eq!(unmapped(&row)["severity"], "42");
    }

    #[test]
    fn labels_raw_keys_duplicates_and_odd_shapes() {
        // No label: the raw key stays; a label colliding with a dictionary
        // key is qualified.
        let row = event(
            "CEF:0|A|B|1|1|n|1|cs1=x cs2Label=src cs2=y cn3Label=Count cn3=5 cs4Label=Orphan",
        );
        let u = unmapped(&row);
        assert_eq!(u["cs1"], "x");
        assert_eq!(u["src (cs2)"], "y");
        assert_eq!(u["Count"], "5");
        assert_eq!(u["cs4Label"], "Orphan");
        assert_eq!(row.get_str("src_ip"), None);
        // A repeated key is kept, noted.
        let row = event("CEF:0|A|B|1|1|n|1|src=1.1.1.1 src=2.2.2.2");
        assert_eq!(row.get_str("src_ip"), Some("1.1.1.1"));
        assert_eq!(unmapped(&row)["src#2"], "2.2.2.2");
        assert!(notes(&row).contains("src: repeated"));
        // Text before the first key, and no pipe after the severity.
        let row = event("CEF:0|A|B|1|1|n|1|garbage here src=1.1.1.1");
        assert_eq!(unmapped(&row)["cef_extension_prefix"], "garbage here");
        let row = event("CEF:0|A|B|1|1|n|5");
        assert_eq!(row.get_int("severity_id"), Some(3));
        assert!(notes(&row).contains("no `|` after the severity"));
        // Unknown version: noted, read anyway.
        let row = event("CEF:7|A|B|1|1|n|1|src=1.1.1.1");
        assert!(notes(&row).contains("not a known CEF version"));
        // A bare host before the marker; an unreadable syslog header.
        let row = event("fw02 CEF:0|A|B|1|1|n|1|");
        assert_eq!(row.get_str("device_hostname"), Some("fw02"));
        let row = event("<13>something odd: CEF:0|A|B|1|1|n|1|");
        assert_eq!(unmapped(&row)["syslog_header"], "something odd:");
        // The syslog host as an IP goes to device_ip.
        let row = event("<13>Mar  5 10:15:30 192.0.2.9 CEF:0|A|B|1|1|n|1|");
        assert_eq!(row.get_str("device_ip"), Some("192.0.2.9"));
        assert_eq!(row.time(), micros("2024-03-05T10:15:30Z"));
        // deviceDirection other than 0/1.
        let row = event("CEF:0|A|B|1|1|n|1|deviceDirection=2");
        assert!(notes(&row).contains("deviceDirection"));
    }

    #[test]
    fn bad_input_names_the_problem() {
        let e = dead("CEF:0|Vendor|Product|1.0");
        assert!(e.contains("the header has 4 of 7"), "{e}");
        let e = dead("<13>Mar  5 10:15:30 host CEF:0|A|B|1|1|n");
        assert!(e.contains("6 of 7") && e.contains("at byte 25"), "{e}");
        let e = dead("CEF:");
        assert!(e.contains("1 of 7"), "{e}");
        let e = dead("hello world, this is not CEF");
        assert!(e.contains("no `CEF:` marker"), "{e}");
        assert!(e.starts_with("line 1: not CEF:"), "{e}");
        let e = dead("LEEF:1.0|a|b|c|d|src=1.1.1.1");
        assert!(e.contains("no `CEF:` marker"), "{e}");
        let mut out = Vec::new();
        Decoder::for_type(SourceType::Cef).decode(b"CEF:0|A|\xff|1|1|n|1|", &prov(), &mut out);
        assert!(
            matches!(out.as_slice(), [Decoded::Dead(d)] if d.error.contains("invalid UTF-8 at byte 8")),
            "{out:?}"
        );
        assert!(dead("   \n  ").contains("empty"));
        let big = format!("CEF:0|A|B|1|1|n|1|msg={}", "x".repeat(MAX_EVENT_BYTES));
        assert!(dead(&big).contains("exceeds the limit"));
        // A huge value under the limit is kept whole.
        let long = "y".repeat(500_000);
        let row = event(&format!("CEF:0|A|B|1|1|n|1|msg={long} src=1.1.1.1"));
        assert_eq!(row.get_str("message").map(str::len), Some(500_000));
        assert_eq!(row.get_str("src_ip"), Some("1.1.1.1"));
    }

    #[test]
    fn several_lines_keep_good_lines() {
        let out = decode(
            "CEF:0|A|B|1|1|first|1|src=1.1.1.1\r\nnot cef\n\nCEF:0|A|B|1|1|third|1|src=3.3.3.3\nCEF:0|A|B\n",
        );
        let events: Vec<&EventRow> = out
            .iter()
            .filter_map(|d| match d {
                Decoded::Event(e) => Some(e),
                Decoded::Dead(_) => None,
            })
            .collect();
        let errors: Vec<&str> = out
            .iter()
            .filter_map(|d| match d {
                Decoded::Dead(d) => Some(d.error.as_str()),
                Decoded::Event(_) => None,
            })
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].get_str("message"), Some("first"));
        assert_eq!(
            events[0].get_str("raw"),
            Some("CEF:0|A|B|1|1|first|1|src=1.1.1.1")
        );
        assert_eq!(events[1].get_str("message"), Some("third"));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("line 2: not CEF: no `CEF:` marker"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("line 5: not CEF: the header has 3 of 7"),
            "{errors:?}"
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Arbitrary bytes never panic the decoder.
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let mut out = Vec::new();
                Decoder::for_type(SourceType::Cef).decode(&bytes, &prov(), &mut out);
                prop_assert!(!out.is_empty());
            }

            /// CEF-shaped text never panics and, with seven header fields,
            /// always becomes an event.
            #[test]
            fn cef_shaped_text(
                prefix in "[<>0-9A-Za-z :.-]{0,24}",
                header in proptest::collection::vec("[ -~]{0,8}", 7),
                ext in "[ -~\\\\=|\t]{0,200}",
            ) {
                let header: Vec<String> = header.iter().map(|h| h.replace(['|', '\\'], "")).collect();
                let line = format!("{prefix} CEF:{}|{ext}", header.join("|"));
                let mut out = Vec::new();
                Decoder::for_type(SourceType::Cef).decode(line.as_bytes(), &prov(), &mut out);
                prop_assert!(matches!(out.as_slice(), [Decoded::Event(_)]), "{:?}", out);
            }
        }
    }
}
