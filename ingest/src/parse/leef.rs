//! LEEF (IBM QRadar Log Event Extended Format) → the event schema.
//!
//! Accepted shapes, one event per line (an input of several lines is read
//! line by line, a bad line becoming a dead letter of its own):
//!
//! - LEEF 1.0: `LEEF:1.0|Vendor|Product|Version|EventID|` then tab-separated
//!   `key=value` attributes;
//! - LEEF 2.0: `LEEF:2.0|Vendor|Product|Version|EventID|DelimiterChar|` then
//!   attributes separated by that delimiter: one character (`^`), or its
//!   code in hex (`x5E`, `0x5E`, `x09`); an empty delimiter field means tab.
//!   A 2.0 header whose sixth field is not a delimiter (senders that forget
//!   it) is read with tab, noted;
//! - either after a syslog header (RFC 3164 or 5424), whose time and host
//!   are kept as fallbacks (read by the helpers in `cef.rs`).
//!
//! Values may contain `=` (split at the first one). A LEEF 1.0 line with
//! no tab but several `key=` (senders using spaces) is split as CEF is, at
//! the space before each key, noted. A piece between
//! delimiters without `key=` continues the previous value (the delimiter
//! was part of it), noted. A line without `LEEF:`, with fewer than five
//! header fields, or with a version other than 1.0/2.0 is a dead letter
//! naming the problem.
//!
//! `devTime` is read with `devTimeFormat` (a Java SimpleDateFormat pattern,
//! translated to chrono: `yyyy`, `yy`, `MMM`, `MM`, `dd`, `HH`, `hh`, `mm`,
//! `ss`, `SSS`, `a`, `EEE`, `z`/`Z`/`X`, quoted literals); without one, or
//! when it does not match, the CEF forms, epoch milliseconds and RFC 3339 are
//! tried, and the mismatch noted.
//!
//! `usrName` is `user_name`, and also `actor_user_name` unless the event is
//! a login or logout (`isLoginEvent`/`isLogoutEvent`): there the user is the
//! one authenticating (OCSF `user`), elsewhere the one acting. `srcBytes`
//! are sent by the source (`bytes_out`), `dstBytes` received by it
//! (`bytes_in`). Pre-NAT addresses and ports are fallbacks for `src`/`dst`
//! (the addresses the client used); post-NAT ones, `resource`, `policy`,
//! MACs and the identity extras stay in `unmapped`.
//!
//! Class: `isLoginEvent` → Authentication 3002 Logon (1), `isLogoutEvent` →
//! 3002 Logoff (2); otherwise as CEF: a URL → HTTP Activity 4002, an
//! address → Network Activity 4001, else 0 (unknown).

use chrono::{DateTime, Datelike, NaiveDateTime};
use serde_json::{Map, Value};
use spoor_common::schema::event_col as col;

use super::cef::{
    add_syslog_fields, classify, find_marker, format_error, insert_unique, map_common, map_outcome,
    map_protocol, map_severity, map_time, now_micros, parse_event_time, parse_lines, short,
    split_extension, split_header, zone_offset,
};
use super::draft::MAX_FUTURE_MICROS;
use super::{Draft, NormalizeError, ParseOutput, Parser, Provenance};

const FORMAT: &str = "LEEF";

/// Source fields the header becomes (the vendor and product names are
/// CEF's, so both share the product mapping).
const HEADER_KEYS: [&str; 5] = [
    "leefVersion",
    "deviceVendor",
    "deviceProduct",
    "deviceVersion",
    "eventId",
];

/// Attributes moved into a column as they are, in priority order.
const COLUMNS: &[(&str, &[&str])] = &[
    (col::SRC_IP, &["src", "srcPreNAT", "identSrc"]),
    (col::DST_IP, &["dst", "dstPreNAT"]),
    (col::SRC_PORT, &["srcPort", "srcPreNATPort"]),
    (col::DST_PORT, &["dstPort", "dstPreNATPort"]),
    (col::SRC_HOSTNAME, &["identHostName"]),
    (col::USER_DOMAIN, &["domain"]),
    (col::BYTES_OUT, &["srcBytes"]),
    (col::BYTES_IN, &["dstBytes"]),
    (col::URL, &["url"]),
    (col::ACTION, &["action"]),
    (col::MESSAGE, &["msg", "message"]),
    (col::EVENT_CODE, &["eventId"]),
    (col::METADATA_LOG_NAME, &["cat"]),
];

/// The `leef` source type.
#[derive(Debug, Default)]
pub struct LeefParser {
    /// The ingest time of the input being decoded, for year-less times
    /// (`map` runs right after `parse` for the same input).
    reference: Option<i64>,
}

impl LeefParser {
    /// A LEEF parser.
    pub fn new() -> Self {
        LeefParser::default()
    }
}

impl Parser for LeefParser {
    fn parse(
        &mut self,
        input: &[u8],
        prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError> {
        self.reference = Some(prov.ingest_time_micros);
        parse_lines(input, out, parse_leef_line)
    }

    fn map(&self, d: &mut Draft) {
        let reference = self.reference.unwrap_or_else(now_micros);
        map_dev_time(d, reference);
        for (column, keys) in COLUMNS {
            d.take(column, keys);
        }
        map_common(d, "leef");
        map_protocol(d, &["proto"]);
        map_severity(d, "sev");
        map_outcome(d, &["outcome", "result"]);
        let login = flag(d, "isLoginEvent");
        let logout = flag(d, "isLogoutEvent");
        if let Some(user) = d.field_str("usrName") {
            if !login && !logout && !d.is_set(col::ACTOR_USER_NAME) {
                d.set_str(col::ACTOR_USER_NAME, user);
            }
            d.take(col::USER_NAME, &["usrName"]);
        }
        let (class, activity) = if login {
            d.remove("isLoginEvent");
            (3002, 1)
        } else if logout {
            d.remove("isLogoutEvent");
            (3002, 2)
        } else {
            classify(d)
        };
        d.set_class(class, activity);
    }
}

/// Whether an attribute says `true`.
fn flag(d: &Draft, key: &str) -> bool {
    d.field_str(key)
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

/// One LEEF line (with or without a syslog header) into a draft.
fn parse_leef_line(line: &str) -> Result<Draft, NormalizeError> {
    let Some(at) = find_marker(line, "LEEF:") else {
        return Err(format_error(
            FORMAT,
            format!(
                "no `LEEF:` marker found (expected `LEEF:1.0|Vendor|Product|Version|EventID|…` or `LEEF:2.0|Vendor|Product|Version|EventID|Delimiter|…`, optionally after a syslog header); the line starts `{}`",
                short(line)
            ),
        ));
    };
    let prefix = line.get(..at).unwrap_or("");
    let body = line.get(at + 5..).unwrap_or("");
    let (header, rest) = split_header(body, 5);
    if header.len() < 5 {
        return Err(format_error(
            FORMAT,
            format!(
                "the header has {} of 5 `|`-separated fields (LEEF:Version|Vendor|Product|Version|EventID) at byte {at}",
                header.len()
            ),
        ));
    }
    let version = header.first().map_or("", |v| v.trim());
    let v2 = match version {
        "1.0" | "1" => false,
        "2.0" | "2" => true,
        other => {
            return Err(format_error(
                FORMAT,
                format!(
                    "unknown LEEF version `{}` at byte {} (expected 1.0 or 2.0)",
                    short(other),
                    at + 5
                ),
            ));
        }
    };
    let mut d = Draft::new(Map::new());
    for (key, value) in HEADER_KEYS.iter().zip(&header) {
        let value = value.trim();
        if !value.is_empty() {
            d.fields
                .insert((*key).to_string(), Value::String(value.to_string()));
        }
    }
    let (delimiter, attributes) = match (v2, rest) {
        (_, None) => {
            d.note("the header has no `|` after the EventID; there are no attributes");
            ('\t', "")
        }
        (false, Some(attributes)) => ('\t', attributes),
        (true, Some(rest)) => match rest.split_once('|') {
            Some((field, attributes)) => match delimiter(field) {
                Some(c) => (c, attributes),
                None => {
                    d.note(format!(
                        "`{}` is not a LEEF 2.0 delimiter (one character, or x/0x and its hex code); read as attributes separated by tabs",
                        short(field)
                    ));
                    ('\t', rest)
                }
            },
            None => {
                d.note("the LEEF 2.0 header has no delimiter field; read as attributes separated by tabs");
                ('\t', rest)
            }
        },
    };
    split_attributes(&mut d, attributes, delimiter);
    add_syslog_fields(prefix, &mut d);
    Ok(d)
}

/// The LEEF 2.0 delimiter field: empty (tab), one character, or `x`/`0x`
/// and a hex code of one to four digits.
fn delimiter(field: &str) -> Option<char> {
    let mut chars = field.chars();
    match (chars.next(), chars.next()) {
        (None, _) => return Some('\t'),
        (Some(c), None) => return Some(c),
        _ => {}
    }
    if field == "\\t" {
        return Some('\t');
    }
    let hex = field
        .strip_prefix("0x")
        .or_else(|| field.strip_prefix("0X"))
        .or_else(|| field.strip_prefix('x'))
        .or_else(|| field.strip_prefix('X'))?;
    if hex.is_empty() || hex.len() > 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
}

/// The attributes into fields. Pieces without `key=` continue the previous
/// value (its text held the delimiter).
fn split_attributes(d: &mut Draft, attributes: &str, delimiter: char) {
    // Senders that write LEEF 1.0 with spaces instead of tabs are common:
    // with no tab and several `key=`, split as CEF does (a value runs until
    // the space before the next key) rather than make one value of it all.
    if delimiter == '\t' && !attributes.contains('\t') {
        let (pairs, before) = split_extension(attributes);
        if pairs.len() > 1 {
            d.note("attributes: no tab between attributes; split at ` key=` as in CEF");
            if !before.trim().is_empty() {
                d.note(
                    "attributes: text before the first `key=` is kept as `leef_attributes_prefix`",
                );
                d.fields.insert(
                    "leef_attributes_prefix".into(),
                    Value::String(before.trim().to_string()),
                );
            }
            for (key, value) in pairs {
                insert_unique(d, key, value);
            }
            return;
        }
    }
    let mut last: Option<String> = None;
    let mut continued = false;
    let mut orphan = String::new();
    for piece in attributes.split(delimiter) {
        if piece.trim().is_empty() {
            continue;
        }
        let key_value = piece.split_once('=').and_then(|(k, v)| {
            let k = k.trim();
            (!k.is_empty() && !k.contains(char::is_whitespace)).then_some((k, v))
        });
        match (key_value, &last) {
            (Some((key, value)), _) => {
                last = Some(insert_unique(d, key, value.trim().to_string()));
            }
            (None, Some(key)) => {
                if let Some(Value::String(previous)) = d.fields.get_mut(key) {
                    previous.push(delimiter);
                    previous.push_str(piece);
                    continued = true;
                }
            }
            (None, None) => {
                if !orphan.is_empty() {
                    orphan.push(delimiter);
                }
                orphan.push_str(piece);
            }
        }
    }
    if continued {
        d.note(format!(
            "attributes: text without `key=` after a delimiter ({delimiter:?}) was kept in the previous value"
        ));
    }
    if !orphan.is_empty() {
        d.note("attributes: text before the first `key=` is kept as `leef_attributes_prefix`");
        d.fields
            .insert("leef_attributes_prefix".into(), Value::String(orphan));
    }
}

/// `devTime` (read with `devTimeFormat` when given) into `time`; else the
/// syslog header's time.
fn map_dev_time(d: &mut Draft, reference: i64) {
    if d.is_set(col::TIME) {
        return;
    }
    if let Some(value) = d.field_str("devTime") {
        let format = d.field_str("devTimeFormat");
        if let Some(t) = format
            .as_deref()
            .and_then(|f| parse_java_time(&value, f, reference))
        {
            d.set_int(col::TIME, t);
            d.remove("devTime");
            d.remove("devTimeFormat");
            return;
        }
        if let Some(t) = parse_event_time(&value, None, reference) {
            if let Some(format) = format {
                d.note(format!(
                    "devTime: `{}` does not match devTimeFormat `{}`; read by its shape",
                    short(&value),
                    short(&format)
                ));
            }
            d.set_int(col::TIME, t);
            d.remove("devTime");
            return;
        }
        d.note(format!(
            "devTime: `{}` is not a readable time",
            short(&value)
        ));
    }
    map_time(d, &[], reference);
}

/// A Java SimpleDateFormat pattern as a chrono format, with whether it has
/// a zone and a year; `None` for tokens without a chrono equivalent (week
/// numbers, day of year, eras).
fn java_to_chrono(pattern: &str) -> Option<(String, bool, bool)> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let (mut zone, mut year) = (false, false);
    let literal = |out: &mut String, c: char| {
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
    };
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == '\'' {
            // Quoted literal text; `''` is a quote.
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            i += 1;
            while let Some(&q) = chars.get(i) {
                if q == '\'' {
                    if chars.get(i + 1) == Some(&'\'') {
                        out.push('\'');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                literal(&mut out, q);
                i += 1;
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            literal(&mut out, c);
            i += 1;
            continue;
        }
        let mut n = 0;
        while chars.get(i + n) == Some(&c) {
            n += 1;
        }
        i += n;
        let token = match (c, n) {
            ('y', 2) => {
                year = true;
                "%y"
            }
            ('y', _) => {
                year = true;
                "%Y"
            }
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('H' | 'k', _) => "%H",
            ('h' | 'K', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('S', _) if out.ends_with('.') => {
                out.pop();
                "%.f"
            }
            ('S', 3) => "%3f",
            ('S', 6) => "%6f",
            ('S', 9) => "%9f",
            ('z' | 'Z' | 'X', _) => {
                zone = true;
                "%z"
            }
            _ => return None,
        };
        out.push_str(token);
    }
    Some((out, zone, year))
}

/// `value` read with the Java pattern `pattern`. Zone names and `Z` in the
/// value become numeric offsets for chrono; a pattern without a year takes
/// the year that puts the time at or before `reference`.
fn parse_java_time(value: &str, pattern: &str, reference: i64) -> Option<i64> {
    let (format, zone, year) = java_to_chrono(pattern)?;
    let value = value.trim();
    let value = if zone {
        let mut words: Vec<String> = Vec::new();
        for word in value.split(' ') {
            let word = match zone_offset(word) {
                Some(offset) if !word.starts_with(['+', '-']) => format_offset(offset),
                _ => match word.strip_suffix('Z') {
                    Some(stem) if stem.ends_with(|c: char| c.is_ascii_digit()) => {
                        format!("{stem}+00:00")
                    }
                    _ => word.to_string(),
                },
            };
            words.push(word);
        }
        words.join(" ")
    } else {
        value.to_string()
    };
    let read = |v: &str, f: &str| -> Option<i64> {
        if zone {
            DateTime::parse_from_str(v, f)
                .ok()
                .map(|t| t.timestamp_micros())
        } else {
            NaiveDateTime::parse_from_str(v, f)
                .ok()
                .map(|t| t.and_utc().timestamp_micros())
        }
    };
    if year {
        return read(&value, &format);
    }
    let reference_year = DateTime::from_timestamp_micros(reference)?.year();
    [reference_year, reference_year - 1]
        .into_iter()
        .find_map(|y| {
            read(&format!("{y} {value}"), &format!("%Y {format}"))
                .filter(|t| *t <= reference + MAX_FUTURE_MICROS)
        })
}

/// Seconds east of UTC as `+hh:mm`.
fn format_offset(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.unsigned_abs();
    format!("{sign}{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::draft::NOTES_KEY;
    use crate::parse::{Decoded, Decoder, EventRow, SourceType};

    /// 2024-03-10T00:00:00Z.
    const INGEST: i64 = 1_710_028_800_000_000;

    fn prov() -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: Some(0),
            offset: Some(9),
            ingest_time_micros: INGEST,
        }
    }

    fn decode(input: &str) -> Vec<Decoded> {
        let mut out = Vec::new();
        Decoder::for_type(SourceType::Leef).decode(input.as_bytes(), &prov(), &mut out);
        out
    }

    fn event(input: &str) -> EventRow {
        match decode(input).as_slice() {
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
    fn leef_1_spec_example() {
        // The LEEF guide's 1.0 example.
        let row = event(
            "LEEF:1.0|Microsoft|MSExchange|4.0 SP1|15345|src=192.0.2.0\tdst=172.50.123.1\tsev=5\tcat=anomaly\tsrcPort=81\tdstPort=21\tusrName=joe.black",
        );
        assert_eq!(
            row.get_str("metadata_product"),
            Some("Microsoft MSExchange")
        );
        assert_eq!(row.get_str("metadata_log_name"), Some("anomaly"));
        assert_eq!(row.get_str("event_code"), Some("15345"));
        assert_eq!(row.get_str("src_ip"), Some("192.0.2.0"));
        assert_eq!(row.get_str("dst_ip"), Some("172.50.123.1"));
        assert_eq!(row.get_int("src_port"), Some(81));
        assert_eq!(row.get_int("dst_port"), Some(21));
        assert_eq!(row.get_int("severity_id"), Some(3));
        assert_eq!(row.get_str("user_name"), Some("joe.black"));
        assert_eq!(row.get_str("actor_user_name"), Some("joe.black"));
        assert_eq!(row.get_int("class_uid"), Some(4001));
        assert_eq!(row.get_int("activity_id"), Some(0));
        let u = unmapped(&row);
        assert_eq!(u["deviceVersion"], "4.0 SP1");
        assert_eq!(u["leefVersion"], "1.0");
        assert_eq!(row.time(), INGEST);
    }

    #[test]
    fn leef_2_delimiters() {
        // The LEEF guide's 2.0 example, `^` as itself and in hex.
        for delim in ["^", "x5E", "0x5E", "0X5e"] {
            let row = event(&format!(
                "LEEF:2.0|Lancope|StealthWatch|1.0|41|{delim}|src=10.0.1.8^dst=10.0.0.5^sev=5^srcPort=81^dstPort=21"
            ));
            assert_eq!(row.get_str("src_ip"), Some("10.0.1.8"), "{delim}");
            assert_eq!(row.get_str("dst_ip"), Some("10.0.0.5"), "{delim}");
            assert_eq!(row.get_int("dst_port"), Some(21), "{delim}");
            assert_eq!(
                row.get_str("metadata_product"),
                Some("Lancope StealthWatch")
            );
            assert_eq!(row.get_str("event_code"), Some("41"));
        }
        // Tab: empty, x09, 0x09.
        for delim in ["", "x09", "0x09", "\\t"] {
            let row = event(&format!(
                "LEEF:2.0|Vendor|Product|1.0|E1|{delim}|src=10.0.0.1\tdst=10.0.0.2\tproto=6"
            ));
            assert_eq!(row.get_str("dst_ip"), Some("10.0.0.2"), "{delim:?}");
            assert_eq!(row.get_str("network_protocol"), Some("tcp"), "{delim:?}");
        }
        // A delimiter inside a value: the piece without `key=` continues it.
        let row = event("LEEF:2.0|V|P|1|E|^|msg=a^b^src=1.1.1.1");
        assert_eq!(row.get_str("message"), Some("a^b"));
        assert!(notes(&row).contains("kept in the previous value"));
        // A 2.0 header without its delimiter field: tab, noted.
        let row = event("LEEF:2.0|V|P|1|E|src=1.1.1.1\tdst=2.2.2.2");
        assert_eq!(row.get_str("dst_ip"), Some("2.2.2.2"));
        assert!(
            notes(&row).contains("no delimiter field"),
            "{}",
            notes(&row)
        );
        let row = event("LEEF:2.0|V|P|1|E|xyz|src=1.1.1.1\tdst=2.2.2.2");
        assert!(notes(&row).contains("`xyz` is not a LEEF 2.0 delimiter"));
        assert_eq!(delimiter("x7C"), Some('|'));
        assert_eq!(delimiter("x"), Some('x'));
        assert_eq!(delimiter("0xD800"), None);
        assert_eq!(delimiter("x12345"), None);
    }

    #[test]
    fn qradar_syslog_header_and_values_with_equals() {
        let row = event(
            "<13>Jan 18 11:07:53 192.168.1.1 LEEF:1.0|QRadar|QRM|1.0|NEW_PORT_DISCOVERD|src=172.5.6.67\tdst=172.50.123.1\tsev=5\tcat=anomaly\tmsg=there are spaces in this message\turl=https://example.com/a?b=c&d=e\taction=blocked\tdstBytes=400\tsrcBytes=100\tpolicy=Default\tresource=/etc/passwd",
        );
        assert_eq!(row.get_str("device_ip"), Some("192.168.1.1"));
        assert_eq!(row.time(), micros("2024-01-18T11:07:53Z"));
        assert_eq!(
            row.get_str("message"),
            Some("there are spaces in this message")
        );
        assert_eq!(row.get_str("url"), Some("https://example.com/a?b=c&d=e"));
        assert_eq!(row.get_str("action"), Some("blocked"));
        assert_eq!(row.get_int("bytes_in"), Some(400));
        assert_eq!(row.get_int("bytes_out"), Some(100));
        assert_eq!(row.get_int("class_uid"), Some(4002));
        assert_eq!(row.get_int("activity_id"), Some(0));
        let u = unmapped(&row);
        assert_eq!(u["policy"], "Default");
        assert_eq!(u["resource"], "/etc/passwd");
        assert_eq!(u["syslog_pri"], "13");
        // RFC 5424 with a host name.
        let row = event(
            "<134>1 2024-03-05T10:15:30Z sensor01 app - - - LEEF:2.0|V|P|1|E|^|src=1.1.1.1^dst=2.2.2.2^action=deny",
        );
        assert_eq!(row.get_str("device_hostname"), Some("sensor01"));
        assert_eq!(row.time(), micros("2024-03-05T10:15:30Z"));
        assert_eq!(row.get_int("activity_id"), Some(5));
    }

    #[test]
    fn dev_time_with_formats() {
        let t = |value: &str, format: &str| parse_java_time(value, format, INGEST);
        assert_eq!(
            t("Mar 05 2024 10:15:30", "MMM dd yyyy HH:mm:ss"),
            Some(micros("2024-03-05T10:15:30Z"))
        );
        assert_eq!(
            t("2024-03-05T10:15:30.123+0100", "yyyy-MM-dd'T'HH:mm:ss.SSSZ"),
            Some(micros("2024-03-05T09:15:30.123Z"))
        );
        assert_eq!(
            t("2024-03-05T10:15:30.123Z", "yyyy-MM-dd'T'HH:mm:ss.SSSX"),
            Some(micros("2024-03-05T10:15:30.123Z"))
        );
        assert_eq!(
            t(
                "Mar 05 2024 10:15:30.500 EST",
                "MMM dd yyyy HH:mm:ss.SSS zzz"
            ),
            Some(micros("2024-03-05T15:15:30.5Z"))
        );
        assert_eq!(
            t("05/03/2024 01:15:30 PM", "dd/MM/yyyy hh:mm:ss a"),
            Some(micros("2024-03-05T13:15:30Z"))
        );
        assert_eq!(
            t("Mar 05 10:15:30", "MMM dd HH:mm:ss"),
            Some(micros("2024-03-05T10:15:30Z"))
        );
        assert_eq!(t("2024-065", "yyyy-DDD"), None);
        assert_eq!(t("garbage", "MMM dd yyyy HH:mm:ss"), None);
        // Through the parser: with a format, epoch milliseconds without one,
        // a mismatch noted and read by shape, garbage noted.
        let row = event(
            "LEEF:2.0|V|P|1|E|^|devTime=Mar 05 2024 10:15:30 GMT+01:00^devTimeFormat=MMM dd yyyy HH:mm:ss z^src=1.1.1.1",
        );
        assert_eq!(row.time(), micros("2024-03-05T09:15:30Z"));
        assert!(unmapped(&row).get("devTimeFormat").is_none());
        let row = event("LEEF:1.0|V|P|1|E|devTime=1709633730000\tsrc=1.1.1.1");
        assert_eq!(row.time(), 1_709_633_730_000_000);
        let row = event(
            "LEEF:1.0|V|P|1|E|devTime=2024-03-05T10:15:30Z\tdevTimeFormat=MMM dd yyyy HH:mm:ss",
        );
        assert_eq!(row.time(), micros("2024-03-05T10:15:30Z"));
        assert!(notes(&row).contains("does not match devTimeFormat"));
        let row = event("<13>Mar  5 10:15:30 host LEEF:1.0|V|P|1|E|devTime=soon");
        assert!(notes(&row).contains("devTime: `soon` is not a readable time"));
        assert_eq!(row.time(), micros("2024-03-05T10:15:30Z"));
        assert_eq!(row.get_str("device_hostname"), Some("host"));
    }

    #[test]
    fn logins_logouts_and_severity() {
        let row = event(
            "LEEF:2.0|Acme|VPN|3.2|login|^|usrName=alice^domain=CORP^isLoginEvent=true^src=203.0.113.5^identHostName=laptop-7^sev=9^outcome=failed",
        );
        assert_eq!(row.get_int("class_uid"), Some(3002));
        assert_eq!(row.get_int("activity_id"), Some(1));
        assert_eq!(row.get_int("type_uid"), Some(300_201));
        assert_eq!(row.get_str("user_name"), Some("alice"));
        assert_eq!(row.get_str("actor_user_name"), None);
        assert_eq!(row.get_str("user_domain"), Some("CORP"));
        assert_eq!(row.get_str("src_hostname"), Some("laptop-7"));
        assert_eq!(row.get_int("severity_id"), Some(5));
        assert_eq!(row.get_str("status"), Some("failure"));
        assert_eq!(row.get_str("status_detail"), Some("failed"));
        let row = event("LEEF:1.0|Acme|VPN|3.2|logout|usrName=alice\tisLogoutEvent=true\tsev=1");
        assert_eq!(row.get_int("class_uid"), Some(3002));
        assert_eq!(row.get_int("activity_id"), Some(2));
        assert_eq!(row.get_int("severity_id"), Some(2));
        let row = event("LEEF:1.0|Acme|X|1|e|sev=high\tfoo=bar");
        assert_eq!(row.get_int("severity_id"), Some(4));
        assert_eq!(row.get_int("class_uid"), Some(0));
        let row = event("LEEF:1.0|Acme|X|1|e|sev=77");
        assert!(notes(&row).contains("sev: `77` is not a severity"));
        // Pre-NAT fallbacks.
        let row = event(
            "LEEF:1.0|A|B|1|e|srcPreNAT=10.0.0.9\tsrcPostNAT=198.51.100.1\tdstPreNAT=203.0.113.80\tdstPreNATPort=8443",
        );
        assert_eq!(row.get_str("src_ip"), Some("10.0.0.9"));
        assert_eq!(row.get_str("dst_ip"), Some("203.0.113.80"));
        assert_eq!(row.get_int("dst_port"), Some(8443));
        assert_eq!(unmapped(&row)["srcPostNAT"], "198.51.100.1");
    }

    #[test]
    fn odd_attributes_are_kept() {
        let row = event("LEEF:1.0|A|B|1|e|");
        assert_eq!(row.get_str("event_code"), Some("e"));
        let row = event("LEEF:1.0|A|B|1|e");
        assert!(notes(&row).contains("no `|` after the EventID"));
        let row = event("LEEF:1.0|A|B|1|e|junk\tsrc=1.1.1.1\tsrc=2.2.2.2");
        let u = unmapped(&row);
        assert_eq!(u["leef_attributes_prefix"], "junk");
        assert_eq!(u["src#2"], "2.2.2.2");
        assert_eq!(row.get_str("src_ip"), Some("1.1.1.1"));
        // LEEF 1.0 with spaces instead of tabs: split at ` key=`, noted.
        let row = event("LEEF:1.0|A|B|1|e|src=1.1.1.1 dst=2.2.2.2 msg=a b=c");
        assert_eq!(row.get_str("src_ip"), Some("1.1.1.1"));
        assert_eq!(row.get_str("dst_ip"), Some("2.2.2.2"));
        assert_eq!(unmapped(&row)["b"], "c");
        assert!(notes(&row).contains("no tab between attributes"));
        // One attribute with spaces is just a value.
        let row = event("LEEF:1.0|A|B|1|e|msg=a b c");
        assert_eq!(row.get_str("message"), Some("a b c"));
        // Escaped pipe in the header.
        let row = event(r"LEEF:1.0|A\|B|P|1|e|src=1.1.1.1");
        assert_eq!(row.get_str("metadata_product"), Some("A|B P"));
    }

    #[test]
    fn bad_input_names_the_problem() {
        let e = dead("LEEF:1.0|Vendor|Product");
        assert!(e.contains("the header has 3 of 5"), "{e}");
        assert!(e.starts_with("offset 9: not LEEF:"), "{e}");
        let e = dead("LEEF:3.0|V|P|1|E|src=1.1.1.1");
        assert!(e.contains("unknown LEEF version `3.0` at byte 5"), "{e}");
        let e = dead("CEF:0|A|B|1|1|n|1|src=1.1.1.1");
        assert!(e.contains("no `LEEF:` marker"), "{e}");
        let e = dead("<13>Jan 18 11:07:53 host LEEF:");
        assert!(e.contains("1 of 5") && e.contains("at byte 25"), "{e}");
        let mut out = Vec::new();
        Decoder::for_type(SourceType::Leef).decode(b"LEEF:1.0|\xc3(|P|1|e|", &prov(), &mut out);
        assert!(
            matches!(out.as_slice(), [Decoded::Dead(d)] if d.error.contains("invalid UTF-8 at byte 9")),
            "{out:?}"
        );
        assert!(dead("").contains("empty"));
        let long = "z".repeat(600_000);
        let row = event(&format!("LEEF:1.0|A|B|1|e|msg={long}\tsrc=1.1.1.1"));
        assert_eq!(row.get_str("message").map(str::len), Some(600_000));
        let e = dead(&format!("LEEF:1.0|A|B|1|e|msg={long}{long}"));
        assert!(e.contains("exceeds the limit"), "{e}");
    }

    #[test]
    fn several_lines_keep_good_lines() {
        let out =
            decode("LEEF:1.0|A|B|1|e1|src=1.1.1.1\nLEEF:9|x\nLEEF:2.0|A|B|1|e3|^|src=3.3.3.3\n");
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
        assert_eq!(events[0].get_str("event_code"), Some("e1"));
        assert_eq!(events[1].get_str("src_ip"), Some("3.3.3.3"));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("line 2: not LEEF: the header has 2 of 5"),
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
                Decoder::for_type(SourceType::Leef).decode(&bytes, &prov(), &mut out);
                prop_assert!(!out.is_empty());
            }

            /// LEEF-shaped text never panics and, with a known version and
            /// five header fields, always becomes an event.
            #[test]
            fn leef_shaped_text(
                version in prop_oneof![Just("1.0"), Just("2.0")],
                header in proptest::collection::vec("[ -{}~]{0,8}", 4),
                delim in "(x[0-9A-Fa-f]{0,5}|0x[0-9a-f]{2}|[ -{}~]?)",
                attrs in "[ -~\t^]{0,200}",
                time in "[ -~]{0,30}",
                format in "[ -~]{0,30}",
            ) {
                let header: Vec<String> = header.iter().map(|h| h.replace('\\', "")).collect();
                let delim = delim.replace(['\\', '|'], "");
                let line = format!(
                    "LEEF:{version}|{}|{delim}|devTime={time}\tdevTimeFormat={format}^{attrs}",
                    header.join("|")
                );
                let mut out = Vec::new();
                Decoder::for_type(SourceType::Leef).decode(line.as_bytes(), &prov(), &mut out);
                prop_assert!(matches!(out.as_slice(), [Decoded::Event(_)]), "{:?}", out);
            }
        }
    }
}
