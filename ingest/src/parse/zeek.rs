//! Zeek logs (source type `zeek`), JSON or TSV, detected per input.
//!
//! **JSON** (Zeek's own JSON writer, Corelight, RockNSM/Kafka): one object
//! per input. The connection tuple is read from dotted literal keys
//! (`id.orig_h`, Zeek's writer), underscored keys (`id_orig_h`, RockNSM and
//! Corelight) or a nested `id` object. The log type comes from `_path`,
//! `@stream` (RockNSM) or `_log`; shippers that drop all three (one file per
//! log, as in the OTRF corpus) leave the type to be inferred from the fields
//! only that log has (`conn_state` → conn, `qtype_name` → dns, …). An input
//! holding several JSON lines (a file chunk) is read line by line, a bad line
//! becoming its own dead letter.
//!
//! **TSV** (Zeek's default ASCII writer): the parser keeps the layout of the
//! stream, because header lines and data lines arrive as separate inputs when
//! a file is tailed line by line. `#separator` (written `\x09`, so escapes
//! are decoded) starts a new file and resets the layout; `#set_separator`,
//! `#empty_field`, `#unset_field`, `#path`, `#fields` and `#types` set it;
//! `#open`, `#close` and other comment lines are skipped. An input may be
//! one line or a whole chunk; each data line becomes its own event with that
//! line as `raw`. A data line before any `#fields`, with the wrong number of
//! columns, or not UTF-8 is a dead letter of its own naming its line number
//! within the input, and the other lines still parse.
//!
//! TSV values are converted by `#types` into exactly what Zeek's JSON writer
//! would have written, so both forms map to the same row: `time`/`interval`/
//! `double` → float seconds, `count`/`int`/`port` → integers, `bool` `T`/`F`
//! → booleans, `set[…]`/`vector[…]` → arrays split by the set separator,
//! the unset marker (`-`) → field absent, the empty marker (`(empty)`) →
//! `""` or `[]`. A value that does not fit its type is kept as text with a
//! note. String values keep Zeek's `\xNN` escapes as written: decoding them
//! could produce bytes that are not UTF-8, and the escaped text is what
//! analysts grep for in the original logs.
//!
//! **Mapping.** Every log: `ts` → `time`, `id.orig_h`/`id.orig_p` → source,
//! `id.resp_h`/`id.resp_p` → destination, `proto` → `network_protocol`,
//! RockNSM's `@system` (the sensor) → `device_hostname`, the log type →
//! `metadata_log_name`, `metadata_product` = `Zeek`. `uid` and `fuid` stay in
//! `unmapped`: they are the pivots hunters join logs on, and no column holds
//! them. Per log (OCSF class and activity):
//!
//! - conn → 4001 Network Activity. A conn record summarizes a finished
//!   connection, so the activity follows `conn_state`: `REJ` 5 Refuse, `S0`
//!   (no reply) 4 Fail, `RSTO`/`RSTR`/`RSTOS0`/`RSTRH` 3 Reset, otherwise 6
//!   Traffic. `orig_bytes` → `bytes_out`, `resp_bytes` → `bytes_in`,
//!   `conn_state` → `status_detail`; `service` stays in `unmapped` (no
//!   application-protocol column).
//! - dns → 4003 DNS Activity: 2 Response when a response was seen (`rcode`
//!   or `answers`), else 1 Query; `query`, `answers`, `rcode_name`; status
//!   success for `NOERROR`, failure for any other rcode.
//! - http → 4002 HTTP Activity, activity by method; `url` = `http://` +
//!   `host` + `uri` (or `uri` when it is absolute); status failure for codes
//!   ≥ 400.
//! - ssl → 4001 Network Activity, 6 Traffic; `server_name` → `dst_hostname`,
//!   `established` → status, `validation_status` → `status_detail`; the TLS
//!   details (version, cipher, ja3, subject, issuer) stay in `unmapped`.
//! - x509 → 4001 Network Activity, 99 Other: a certificate seen in a TLS
//!   handshake, with no endpoints of its own. `fingerprint` → the hash column
//!   of its length (SHA-256 by default) so it joins `ssl.cert_chain_fps` and
//!   file hashes; subject and issuer stay in `unmapped`.
//! - files → 1001 File System Activity, 99 Other (a file seen on the wire,
//!   not acted on on a disk); `filename` → `file_path` when it has a
//!   directory, else `file_name`; `md5`/`sha1`/`sha256`.
//! - kerberos → 3002 Authentication: `AS` 3 Authentication Ticket, `TGS` 4
//!   Service Ticket Request (without `request_type`, a `krbtgt/` service
//!   means AS); `client` `user/REALM` → `user_name` + `user_domain`,
//!   `auth_protocol` = `Kerberos`, `success` → status, `error_msg` →
//!   `status_detail`.
//! - ntlm → 3002 Authentication, 1 Logon; `username`, `domainname`,
//!   `auth_protocol` = `NTLM`, `success` → status.
//! - smb_mapping → 4006 SMB Activity, 99 Other (a tree connect; OCSF has no
//!   activity for it), `path` → `file_path`. smb_files → 4006, `FILE_OPEN`
//!   (and pipe/print opens) 2 File Open, other actions 99; `path` + `\` +
//!   `name` → `file_path`. `action` stays in `unmapped`: the `action` column
//!   holds dispositions (allowed/denied), not file operations.
//! - notice → 2004 Detection Finding, 1 Create; `msg` → `message`, `note`
//!   (the notice type, what rules filter on) → `event_code`; `src`/`dst`/`p`
//!   fill the endpoints when the record has no connection id.
//! - weird → 4001 Network Activity, 99 Other; `name` → `message` (a protocol
//!   anomaly on a connection, not a finding).
//! - reporter → `message`, `level` → `severity_id`; no class (Zeek's own
//!   diagnostics). Other logs (dce_rpc, dpd, pe, stats, …) keep their fields;
//!   those with both endpoints get 4001 from the generic inference.
//!
//! Only fields copied verbatim into a column leave the fields; the sources of
//! derived columns stay there under their own names, where detections read
//! them: http `uri` (part of `url`), smb_files `path` and `name` (joined
//! into `file_path`), kerberos `client` (split into user and realm),
//! `success`/`established` (turned into `status`), and files `filename` and
//! x509 `fingerprint` (each copied into one of two or three columns).

use serde_json::{Map, Number, Value};
use spoor_common::schema::{ColumnKind, event_col as col};

use super::draft::{coerce, parse_object};
use super::{Cell, Draft, NormalizeError, ParseOutput, Parsed, Parser, PartFailure, Provenance};

/// The product name recorded in `metadata_product`.
const PRODUCT: &str = "Zeek";

/// How many characters of an offending value an error message quotes.
const QUOTE_CHARS: usize = 40;

/// The layout of the TSV log being read, from its header lines.
#[derive(Debug, Clone)]
struct Layout {
    separator: String,
    set_separator: String,
    empty_field: String,
    unset_field: String,
    path: Option<String>,
    fields: Option<Vec<String>>,
    types: Option<Vec<String>>,
}

impl Default for Layout {
    /// Zeek's defaults, used until a header says otherwise.
    fn default() -> Self {
        Layout {
            separator: "\t".into(),
            set_separator: ",".into(),
            empty_field: "(empty)".into(),
            unset_field: "-".into(),
            path: None,
            fields: None,
            types: None,
        }
    }
}

/// The `zeek` source type: Zeek JSON or TSV logs (see the module docs).
#[derive(Debug, Default)]
pub struct ZeekParser {
    /// The TSV layout of this stream so far.
    layout: Layout,
}

impl ZeekParser {
    /// A parser that has seen no TSV header yet.
    pub fn new() -> Self {
        ZeekParser::default()
    }

    /// Reads an input line by line: JSON objects, header lines and data
    /// lines; bad lines become part failures.
    fn parse_lines(&mut self, input: &[u8], out: &mut ParseOutput) {
        for (i, line) in input.split(|b| *b == b'\n').enumerate() {
            let number = i + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let fail = |out: &mut ParseOutput, reason: String| {
                out.failures.push(PartFailure {
                    raw: line.to_vec(),
                    error: format!("line {number}: {reason}"),
                });
            };
            let text = match std::str::from_utf8(line) {
                Ok(text) => text,
                Err(e) => {
                    fail(
                        out,
                        format!(
                            "invalid UTF-8 at byte {} of the line (Zeek TSV is UTF-8 text)",
                            e.valid_up_to()
                        ),
                    );
                    continue;
                }
            };
            if text.trim_start().starts_with('{') {
                match parse_object(line) {
                    Ok(object) => out.events.push(Parsed::with_raw(Draft::new(object), line)),
                    Err(e) => fail(out, e.to_string()),
                }
            } else if let Some(header) = text.strip_prefix('#') {
                if let Err(reason) = self.header(header) {
                    fail(out, reason);
                }
            } else {
                match self.row(text) {
                    Ok(draft) => out.events.push(Parsed::with_raw(draft, line)),
                    Err(reason) => fail(out, reason),
                }
            }
        }
    }

    /// Applies one header line (without its `#`).
    fn header(&mut self, header: &str) -> Result<(), String> {
        if let Some(rest) = header.strip_prefix("separator") {
            // The separator is not known yet, so this line is delimited by a
            // space (Zeek writes `#separator \x09`).
            let value = rest
                .strip_prefix(' ')
                .or_else(|| rest.strip_prefix('\t'))
                .unwrap_or(rest);
            let separator = decode_escapes(value);
            if separator.is_empty() {
                return Err("#separator has no value".into());
            }
            // `#separator` opens every log file: a new layout begins.
            self.layout = Layout {
                separator,
                ..Layout::default()
            };
            return Ok(());
        }
        let sep = self.layout.separator.as_str();
        let (key, value) = header.split_once(sep).unwrap_or((header, ""));
        match key {
            "set_separator" | "empty_field" | "unset_field" => {
                let value = decode_escapes(value);
                if value.is_empty() {
                    return Err(format!("#{key} has no value"));
                }
                match key {
                    "set_separator" => self.layout.set_separator = value,
                    "empty_field" => self.layout.empty_field = value,
                    _ => self.layout.unset_field = value,
                }
            }
            "path" => self.layout.path = (!value.is_empty()).then(|| value.to_string()),
            "fields" => {
                if value.is_empty() {
                    return Err("#fields names no fields".into());
                }
                self.layout.fields = Some(value.split(sep).map(str::to_string).collect());
                // Types belong to the fields they were written with.
                self.layout.types = None;
            }
            "types" => {
                let types: Vec<String> = value.split(sep).map(str::to_string).collect();
                if let Some(fields) = &self.layout.fields
                    && fields.len() != types.len()
                {
                    return Err(format!(
                        "#types names {} columns but #fields names {}; values are kept as text",
                        types.len(),
                        fields.len()
                    ));
                }
                self.layout.types = Some(types);
            }
            // `#open`, `#close` and any other comment line.
            _ => {}
        }
        Ok(())
    }

    /// A data line as a draft with typed fields.
    fn row(&self, line: &str) -> Result<Draft, String> {
        let layout = &self.layout;
        let Some(fields) = &layout.fields else {
            return Err(format!(
                "data line `{}` before any #fields header (not Zeek JSON, and no Zeek TSV header seen on this stream)",
                quote(line)
            ));
        };
        let values: Vec<&str> = line.split(layout.separator.as_str()).collect();
        if values.len() != fields.len() {
            return Err(format!(
                "{} columns but #fields names {}",
                values.len(),
                fields.len()
            ));
        }
        let types = layout.types.as_ref().filter(|t| t.len() == fields.len());
        let mut object = Map::new();
        if let Some(path) = &layout.path {
            object.insert("_path".into(), Value::String(path.clone()));
        }
        let mut notes = Vec::new();
        for (i, (name, raw)) in fields.iter().zip(values).enumerate() {
            if raw == layout.unset_field {
                continue;
            }
            let ty = types
                .and_then(|t| t.get(i))
                .map_or("string", String::as_str);
            let value = convert(raw, ty, layout, name, &mut notes);
            object.insert(name.clone(), value);
        }
        let mut draft = Draft::new(object);
        for note in notes {
            draft.note(note);
        }
        Ok(draft)
    }
}

impl Parser for ZeekParser {
    fn parse(
        &mut self,
        input: &[u8],
        _prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError> {
        let start = input.trim_ascii_start();
        if start.first() == Some(&b'{') {
            match parse_object(input) {
                Ok(object) => {
                    out.events.push(Parsed::new(Draft::new(object)));
                    return Ok(());
                }
                // One line that is not a JSON object: the whole input fails.
                Err(e) if line_count(input) <= 1 => return Err(e),
                // Several lines: a chunk of JSON lines (or of a TSV file).
                Err(_) => {}
            }
        } else if start.is_empty() {
            return Err(NormalizeError::Empty);
        }
        self.parse_lines(input, out);
        Ok(())
    }

    fn map(&self, d: &mut Draft) {
        let log = log_type(d);
        if !d.is_set(col::METADATA_PRODUCT) {
            d.set_str(col::METADATA_PRODUCT, PRODUCT);
        }
        if let Some(log) = &log
            && !d.is_set(col::METADATA_LOG_NAME)
        {
            d.set_str(col::METADATA_LOG_NAME, log.clone());
        }
        d.take(col::TIME, &["ts"]);
        d.take(col::SRC_IP, &["id.orig_h", "id_orig_h"]);
        d.take(col::SRC_PORT, &["id.orig_p", "id_orig_p"]);
        d.take(col::DST_IP, &["id.resp_h", "id_resp_h"]);
        d.take(col::DST_PORT, &["id.resp_p", "id_resp_p"]);
        d.take(col::NETWORK_PROTOCOL, &["proto"]);
        d.take(col::DEVICE_HOSTNAME, &["@system"]);
        match log.as_deref() {
            Some("conn") => map_conn(d),
            Some("dns") => map_dns(d),
            Some("http") => map_http(d),
            Some("ssl") => map_ssl(d),
            Some("x509") => map_x509(d),
            Some("files") => map_files(d),
            Some("kerberos") => map_kerberos(d),
            Some("ntlm") => map_ntlm(d),
            Some("smb_mapping") => {
                set_class(d, 4006, 99);
                d.take(col::FILE_PATH, &["path"]);
            }
            Some("smb_files") => map_smb_files(d),
            Some("notice") => map_notice(d),
            Some("weird") => {
                set_class(d, 4001, 99);
                d.take(col::MESSAGE, &["name"]);
            }
            Some("reporter") => map_reporter(d),
            _ => {}
        }
    }
}

/// The number of non-blank lines of an input (counting stops at two).
fn line_count(input: &[u8]) -> usize {
    input
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .take(2)
        .count()
}

/// The start of a text for an error message.
fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(QUOTE_CHARS).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    quoted
}

/// Decodes `\xNN` escapes in a header value (`\x09` is a tab); anything
/// else is kept as written.
fn decode_escapes(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find("\\x") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let hex = after
            .get(2..4)
            .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if byte.is_ascii() => {
                out.push(char::from(byte));
                rest = after.get(4..).unwrap_or("");
            }
            _ => {
                out.push_str("\\x");
                rest = after.get(2..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

/// The element type of a container type (`set[string]` → `string`).
fn container_inner(ty: &str) -> Option<&str> {
    ty.strip_prefix("set[")
        .or_else(|| ty.strip_prefix("vector["))
        .and_then(|t| t.strip_suffix(']'))
}

/// A TSV value as the JSON value Zeek's JSON writer would have written; a
/// value that does not fit its type is kept as text with a note.
fn convert(raw: &str, ty: &str, layout: &Layout, name: &str, notes: &mut Vec<String>) -> Value {
    if let Some(inner) = container_inner(ty) {
        if raw == layout.empty_field {
            return Value::Array(Vec::new());
        }
        let items = raw
            .split(layout.set_separator.as_str())
            .map(|item| {
                scalar(item, inner).unwrap_or_else(|reason| {
                    notes.push(format!("{name}: {reason}; kept as text"));
                    Value::String(item.to_string())
                })
            })
            .collect();
        return Value::Array(items);
    }
    if raw == layout.empty_field {
        return Value::String(String::new());
    }
    scalar(raw, ty).unwrap_or_else(|reason| {
        notes.push(format!("{name}: {reason}; kept as text"));
        Value::String(raw.to_string())
    })
}

/// One value of a scalar Zeek type.
fn scalar(raw: &str, ty: &str) -> Result<Value, String> {
    let bad = || format!("`{}` is not a {ty}", quote(raw));
    match ty {
        "time" | "interval" | "double" => raw
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(bad),
        "count" | "port" => raw.parse::<u64>().map(Value::from).map_err(|_| bad()),
        "int" => raw.parse::<i64>().map(Value::from).map_err(|_| bad()),
        "bool" => match raw {
            "T" => Ok(Value::Bool(true)),
            "F" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        _ => Ok(Value::String(raw.to_string())),
    }
}

/// The log type: `_path`, `@stream` or `_log` (taken out of the fields), or
/// inferred from the fields only that log has.
fn log_type(d: &mut Draft) -> Option<String> {
    for key in ["_path", "@stream", "_log"] {
        match d.field(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                let log = s.trim().to_string();
                d.remove(key);
                return Some(log);
            }
            Some(other) => {
                let kind = super::draft::json_kind(other);
                d.note(format!(
                    "{key}: a {kind} is not a log name; the log type is inferred from the fields"
                ));
            }
            None => {}
        }
    }
    infer_log(d).map(str::to_string)
}

/// The log type from distinctive fields (shippers that write one file per
/// log often drop `_path`).
fn infer_log(d: &Draft) -> Option<&'static str> {
    let has = |key: &str| d.field(key).is_some();
    let log = if has("note") && has("msg") {
        "notice"
    } else if has("name") && has("peer") {
        "weird"
    } else if has("conn_state") || has("history") {
        "conn"
    } else if has("qtype_name") || has("rcode_name") || has("trans_id") {
        "dns"
    } else if has("request_type")
        || (has("service") && (has("client") || has("error_msg") || has("success")))
    {
        "kerberos"
    } else if has("certificate.subject") || has("certificate_subject") || has("fingerprint") {
        "x509"
    } else if has("fuid") && (has("seen_bytes") || has("mime_type")) {
        "files"
    } else if (has("method") && has("uri")) || has("status_code") {
        "http"
    } else if has("cipher") || has("ssl_history") || has("server_name") {
        "ssl"
    } else if has("share_type") {
        "smb_mapping"
    } else if has("path") && has("action") {
        "smb_files"
    } else if has("analyzer_kind") {
        "analyzer"
    } else if has("analyzer") && has("failure_reason") {
        "dpd"
    } else if has("is_exe") || has("section_names") {
        "pe"
    } else if has("filter") && has("init") {
        "packet_filter"
    } else if has("endpoint") && has("operation") && has("named_pipe") {
        "dce_rpc"
    } else {
        return None;
    };
    Some(log)
}

/// Sets the class unless the configured mapping already did.
fn set_class(d: &mut Draft, class_uid: i64, activity_id: i64) {
    if !d.is_set(col::CLASS_UID) {
        d.set_class(class_uid, activity_id);
    }
}

/// Sets a text column unless it is already set.
fn put(d: &mut Draft, column: &str, value: impl Into<String>) {
    if !d.is_set(column) {
        d.set_str(column, value);
    }
}

/// A boolean field: JSON booleans, or Zeek's `T`/`F` when types were unknown.
fn bool_field(d: &Draft, key: &str) -> Option<bool> {
    match d.field(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.as_str() {
            "T" | "true" => Some(true),
            "F" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Copies a field into a text column as it is (as [`Draft::take`] would),
/// leaving it in the fields: for fields whose column depends on their value.
fn copy_text(d: &mut Draft, column: &str, key: &str) {
    if d.is_set(column) {
        return;
    }
    if let Some(cell) = d.field(key).and_then(|v| coerce(v, ColumnKind::Utf8)) {
        d.set(column, cell);
    }
}

/// A boolean outcome field as `status`; the field stays (rules test
/// `success: false`). A field that is not a boolean gets a note.
fn outcome(d: &mut Draft, key: &str) {
    match bool_field(d, key) {
        Some(ok) => put(d, col::STATUS, if ok { "success" } else { "failure" }),
        None if d.field(key).is_some() => {
            d.note(format!("{key}: not a boolean; no status set"));
        }
        None => {}
    }
}

fn map_conn(d: &mut Draft) {
    let activity = match d.field_str("conn_state").as_deref() {
        Some("REJ") => 5,
        Some("S0") => 4,
        Some("RSTO" | "RSTR" | "RSTOS0" | "RSTRH") => 3,
        _ => 6,
    };
    set_class(d, 4001, activity);
    d.take(col::BYTES_OUT, &["orig_bytes"]);
    d.take(col::BYTES_IN, &["resp_bytes"]);
    d.take(col::STATUS_DETAIL, &["conn_state"]);
}

fn map_dns(d: &mut Draft) {
    let responded = d.field("rcode").is_some()
        || d.field("rcode_name").is_some()
        || d.field("answers").is_some();
    set_class(d, 4003, if responded { 2 } else { 1 });
    d.take(col::DNS_QUERY, &["query"]);
    d.take(col::DNS_ANSWER, &["answers"]);
    d.take(col::DNS_RCODE, &["rcode_name"]);
    if let Some(rcode) = d.get_str(col::DNS_RCODE) {
        let status = if rcode.eq_ignore_ascii_case("NOERROR") {
            "success"
        } else {
            "failure"
        };
        put(d, col::STATUS, status);
    }
}

fn map_http(d: &mut Draft) {
    let activity = match d.field_str("method") {
        None => 0,
        Some(method) => match method.to_ascii_uppercase().as_str() {
            "CONNECT" => 1,
            "DELETE" => 2,
            "GET" => 3,
            "HEAD" => 4,
            "OPTIONS" => 5,
            "POST" => 6,
            "PUT" => 7,
            "TRACE" => 8,
            _ => 99,
        },
    };
    set_class(d, 4002, activity);
    if !d.is_set(col::URL) {
        let uri = d.field_str("uri").filter(|u| !u.is_empty() && u != "-");
        let host = d.field_str("host").filter(|h| !h.is_empty() && h != "-");
        let absolute = |u: &str| {
            let lower = u.get(..8).unwrap_or(u).to_ascii_lowercase();
            lower.starts_with("http://") || lower.starts_with("https://")
        };
        let url = match (host, uri) {
            (_, Some(uri)) if absolute(&uri) => Some(uri),
            (Some(host), Some(uri)) if uri.starts_with('/') => Some(format!("http://{host}{uri}")),
            (Some(host), Some(uri)) => Some(format!("http://{host}/{uri}")),
            (Some(host), None) => Some(format!("http://{host}/")),
            (None, Some(uri)) => Some(uri),
            (None, None) => None,
        };
        // `uri` stays: rules test the request target, not the whole URL.
        if let Some(url) = url {
            d.set_str(col::URL, url);
        }
    }
    d.take(col::DST_HOSTNAME, &["host"]);
    d.take(col::HTTP_METHOD, &["method"]);
    d.take(col::HTTP_STATUS, &["status_code"]);
    d.take(col::HTTP_USER_AGENT, &["user_agent"]);
    d.take(col::USER_NAME, &["username"]);
    d.take(col::STATUS_DETAIL, &["status_msg"]);
    if let Cell::Int(code) = *d.get(col::HTTP_STATUS) {
        put(
            d,
            col::STATUS,
            if code < 400 { "success" } else { "failure" },
        );
    }
}

fn map_ssl(d: &mut Draft) {
    set_class(d, 4001, 6);
    d.take(col::DST_HOSTNAME, &["server_name"]);
    outcome(d, "established");
    d.take(col::STATUS_DETAIL, &["validation_status"]);
}

fn map_x509(d: &mut Draft) {
    set_class(d, 4001, 99);
    if let Some(fp) = d.field_str("fingerprint") {
        let column = match fp.len() {
            32 => Some(col::HASH_MD5),
            40 => Some(col::HASH_SHA1),
            64 => Some(col::HASH_SHA256),
            _ => None,
        };
        // The field stays: its column depends on its length, and the
        // column holds it lower-cased.
        if let Some(column) = column
            && fp.chars().all(|c| c.is_ascii_hexdigit())
            && !d.is_set(column)
        {
            d.set_str(column, fp.to_ascii_lowercase());
        }
    }
}

fn map_files(d: &mut Draft) {
    set_class(d, 1001, 99);
    let has_dir = d
        .field_str("filename")
        .is_some_and(|f| f.contains(['/', '\\']));
    // Copied, not moved: which column holds it depends on its content.
    copy_text(
        d,
        if has_dir {
            col::FILE_PATH
        } else {
            col::FILE_NAME
        },
        "filename",
    );
    d.take(col::HASH_MD5, &["md5"]);
    d.take(col::HASH_SHA1, &["sha1"]);
    d.take(col::HASH_SHA256, &["sha256"]);
}

fn map_kerberos(d: &mut Draft) {
    let service = d.field_str("service");
    let activity = match d.field_str("request_type").as_deref() {
        Some("AS") => 3,
        Some("TGS") => 4,
        _ => match &service {
            Some(s) if s.to_ascii_lowercase().starts_with("krbtgt/") => 3,
            Some(_) => 4,
            None => 0,
        },
    };
    set_class(d, 3002, activity);
    if let Some(client) = d.field_str("client").filter(|c| !c.is_empty()) {
        // `user/REALM`; the user part may itself hold `/` (`host/name`).
        // `client` stays: the columns hold its parts.
        let (user, realm) = client.rsplit_once('/').unwrap_or((client.as_str(), ""));
        if !d.is_set(col::USER_NAME) {
            d.set_str(col::USER_NAME, user);
            put(d, col::USER_DOMAIN, realm);
        }
    }
    put(d, col::AUTH_PROTOCOL, "Kerberos");
    outcome(d, "success");
    d.take(col::STATUS_DETAIL, &["error_msg"]);
}

fn map_ntlm(d: &mut Draft) {
    set_class(d, 3002, 1);
    d.take(col::USER_NAME, &["username"]);
    d.take(col::USER_DOMAIN, &["domainname"]);
    put(d, col::AUTH_PROTOCOL, "NTLM");
    outcome(d, "success");
}

fn map_smb_files(d: &mut Draft) {
    let action = d.field_str("action").unwrap_or_default();
    let activity = match action.trim_start_matches("SMB::") {
        "FILE_OPEN" | "PIPE_OPEN" | "PRINT_OPEN" => 2,
        _ => 99,
    };
    set_class(d, 4006, activity);
    if d.is_set(col::FILE_PATH) {
        return;
    }
    let share = d.field_str("path").filter(|p| !p.is_empty());
    let name = d.field_str("name").filter(|n| !n.is_empty());
    let path = match (share, name) {
        (Some(share), Some(name)) => {
            let share = share.trim_end_matches('\\');
            let name = name.trim_start_matches('\\');
            format!("{share}\\{name}")
        }
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => return,
    };
    // `path` and `name` stay: the column joins them.
    d.set_str(col::FILE_PATH, path);
}

fn map_notice(d: &mut Draft) {
    set_class(d, 2004, 1);
    d.take(col::MESSAGE, &["msg"]);
    d.take(col::EVENT_CODE, &["note"]);
    d.take(col::SRC_IP, &["src"]);
    d.take(col::DST_IP, &["dst"]);
    d.take(col::DST_PORT, &["p"]);
}

fn map_reporter(d: &mut Draft) {
    d.take(col::MESSAGE, &["message"]);
    let severity = match d.field_str("level").as_deref() {
        Some("Reporter::INFO") => 1,
        Some("Reporter::WARNING") => 3,
        Some("Reporter::ERROR") => 4,
        Some("Reporter::FATAL") => 6,
        _ => return,
    };
    if !d.is_set(col::SEVERITY_ID) {
        d.set_int(col::SEVERITY_ID, severity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Decoded, Decoder, EventRow, SourceType};
    use std::collections::BTreeMap;

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/events");

    fn prov() -> Provenance {
        Provenance {
            topic: "zeek".into(),
            partition: Some(0),
            offset: Some(3),
            ingest_time_micros: 1_800_000_000_000_000,
        }
    }

    /// Decodes each input in turn on one stream; (events, dead letter errors).
    fn decode_all(inputs: &[&[u8]]) -> (Vec<EventRow>, Vec<String>) {
        let mut decoder = Decoder::for_type(SourceType::Zeek);
        let mut out = Vec::new();
        for input in inputs {
            decoder.decode(input, &prov(), &mut out);
        }
        decoder.flush(&prov(), &mut out);
        let (mut events, mut dead) = (Vec::new(), Vec::new());
        for d in out {
            match d {
                Decoded::Event(row) => events.push(row),
                Decoded::Dead(letter) => dead.push(letter.error),
            }
        }
        (events, dead)
    }

    fn one(input: &str) -> EventRow {
        let (mut events, dead) = decode_all(&[input.as_bytes()]);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn unmapped(row: &EventRow) -> Value {
        serde_json::from_str(row.get_str(col::UNMAPPED).expect("unmapped")).expect("json")
    }

    fn class(row: &EventRow) -> (Option<i64>, Option<i64>) {
        (row.get_int(col::CLASS_UID), row.get_int(col::ACTIVITY_ID))
    }

    #[test]
    fn json_conn_with_dotted_keys_and_path() {
        let row = one(
            r#"{"_path":"conn","ts":1692161643.549491,"uid":"CX6po61SVaO8po0uh8","id.orig_h":"192.168.1.41","id.orig_p":55213,"id.resp_h":"10.0.5.13","id.resp_p":80,"proto":"tcp","service":"http","duration":1.2,"orig_bytes":10,"resp_bytes":403,"conn_state":"SF","history":"ShADadfF"}"#,
        );
        assert_eq!(row.time(), 1_692_161_643_549_491);
        assert_eq!(row.get_str(col::METADATA_PRODUCT), Some("Zeek"));
        assert_eq!(row.get_str(col::METADATA_LOG_NAME), Some("conn"));
        assert_eq!(class(&row), (Some(4001), Some(6)));
        assert_eq!(row.get_int(col::TYPE_UID), Some(400106));
        assert_eq!(row.get_str(col::SRC_IP), Some("192.168.1.41"));
        assert_eq!(row.get_int(col::SRC_PORT), Some(55213));
        assert_eq!(row.get_str(col::DST_IP), Some("10.0.5.13"));
        assert_eq!(row.get_int(col::DST_PORT), Some(80));
        assert_eq!(row.get_str(col::NETWORK_PROTOCOL), Some("tcp"));
        assert_eq!(row.get_int(col::BYTES_OUT), Some(10));
        assert_eq!(row.get_int(col::BYTES_IN), Some(403));
        assert_eq!(row.get_str(col::STATUS_DETAIL), Some("SF"));
        let u = unmapped(&row);
        assert_eq!(u["uid"], "CX6po61SVaO8po0uh8");
        assert_eq!(u["service"], "http");
        assert!(u.get("_path").is_none() && u.get("ts").is_none(), "{u}");
    }

    #[test]
    fn conn_state_chooses_the_activity() {
        for (state, activity) in [("REJ", 5), ("S0", 4), ("RSTO", 3), ("SH", 6), ("OTH", 6)] {
            let row = one(&format!(
                r#"{{"ts":1692161643.5,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","conn_state":"{state}"}}"#
            ));
            assert_eq!(class(&row), (Some(4001), Some(activity)), "{state}");
        }
    }

    #[test]
    fn rocknsm_underscored_http_with_stream() {
        let row = one(
            r#"{"@stream":"http","@system":"bobs.bigwheel.local","@proc":"zeek","ts":1588206738.09551,"uid":"ChOJWf3yQbPwENbBK1","id_orig_h":"10.0.1.4","id_orig_p":60757,"id_resp_h":"192.168.0.4","id_resp_p":80,"trans_depth":1,"method":"OPTIONS","host":"192.168.0.4","uri":"/webdav","version":"1.1","user_agent":"DavClnt","username":"pbeesly","status_code":403,"status_msg":"Forbidden"}"#,
        );
        assert_eq!(row.get_str(col::METADATA_LOG_NAME), Some("http"));
        assert_eq!(
            row.get_str(col::DEVICE_HOSTNAME),
            Some("bobs.bigwheel.local")
        );
        assert_eq!(class(&row), (Some(4002), Some(5)));
        assert_eq!(row.get_str(col::URL), Some("http://192.168.0.4/webdav"));
        assert_eq!(row.get_str(col::DST_HOSTNAME), Some("192.168.0.4"));
        assert_eq!(row.get_str(col::HTTP_METHOD), Some("OPTIONS"));
        assert_eq!(row.get_int(col::HTTP_STATUS), Some(403));
        assert_eq!(row.get_str(col::HTTP_USER_AGENT), Some("DavClnt"));
        assert_eq!(row.get_str(col::USER_NAME), Some("pbeesly"));
        assert_eq!(row.get_str(col::STATUS), Some("failure"));
        assert_eq!(row.get_str(col::STATUS_DETAIL), Some("Forbidden"));
        assert_eq!(row.get_str(col::SRC_IP), Some("10.0.1.4"));
        assert_eq!(row.get_int(col::DST_PORT), Some(80));
        let u = unmapped(&row);
        assert_eq!(u["@proc"], "zeek");
        assert_eq!(u["uid"], "ChOJWf3yQbPwENbBK1");
        assert_eq!(u["uri"], "/webdav");
        assert!(u.get("@stream").is_none(), "{u}");
    }

    #[test]
    fn http_absolute_uri_is_the_url() {
        let row = one(
            r#"{"_path":"http","ts":1588206738.1,"method":"GET","host":"proxy","uri":"http://example.com/a?b=1","status_code":200}"#,
        );
        assert_eq!(row.get_str(col::URL), Some("http://example.com/a?b=1"));
        assert_eq!(class(&row), (Some(4002), Some(3)));
        assert_eq!(row.get_str(col::STATUS), Some("success"));
    }

    #[test]
    fn dns_query_and_response() {
        let row = one(
            r#"{"ts":1588205199.82437,"uid":"Cvf4XX17hSAgXDdGEd","id.orig_h":"10.0.1.6","id.orig_p":54243,"id.resp_h":"10.0.0.4","id.resp_p":53,"proto":"udp","trans_id":41180,"query":"newyork.dmevals.local","qtype_name":"A","rcode":0,"rcode_name":"NOERROR","answers":["10.0.0.4","10.0.0.5"],"TTLs":[3600.0,60.0]}"#,
        );
        assert_eq!(row.get_str(col::METADATA_LOG_NAME), Some("dns"));
        assert_eq!(class(&row), (Some(4003), Some(2)));
        assert_eq!(row.get_str(col::DNS_QUERY), Some("newyork.dmevals.local"));
        assert_eq!(row.get_str(col::DNS_ANSWER), Some("10.0.0.4,10.0.0.5"));
        assert_eq!(row.get_str(col::DNS_RCODE), Some("NOERROR"));
        assert_eq!(row.get_str(col::STATUS), Some("success"));
        assert_eq!(unmapped(&row)["qtype_name"], "A");

        let query = one(
            r#"{"_path":"dns","ts":1588205199.8,"id.orig_h":"10.0.1.6","id.resp_h":"10.0.0.4","query":"x.example"}"#,
        );
        assert_eq!(class(&query), (Some(4003), Some(1)));
        assert_eq!(query.get_str(col::STATUS), None);
        let nx = one(
            r#"{"_path":"dns","ts":1588205199.8,"query":"wpad.local","rcode":3,"rcode_name":"NXDOMAIN"}"#,
        );
        assert_eq!(nx.get_str(col::STATUS), Some("failure"));
    }

    #[test]
    fn ssl_and_x509() {
        let row = one(
            r#"{"@stream":"ssl","ts":1588207244.736422,"uid":"CpnezL3085IfcJzSAe","id_orig_h":"10.0.1.6","id_orig_p":57091,"id_resp_h":"192.168.0.4","id_resp_p":8443,"version":"TLSv12","cipher":"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384","server_name":"evil.example","established":true,"subject":"CN=x","validation_status":"self signed certificate","ja3":"e0fe"}"#,
        );
        assert_eq!(class(&row), (Some(4001), Some(6)));
        assert_eq!(row.get_str(col::DST_HOSTNAME), Some("evil.example"));
        assert_eq!(row.get_str(col::STATUS), Some("success"));
        assert_eq!(
            row.get_str(col::STATUS_DETAIL),
            Some("self signed certificate")
        );
        let u = unmapped(&row);
        assert_eq!(u["cipher"], "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
        assert_eq!(u["ja3"], "e0fe");

        let fp = "b765518127e58d334a3596a6572a09fa727d59c86214c4eb8f499a141ac15579";
        let x509 = one(&format!(
            r#"{{"ts":1692161674.667337,"fingerprint":"{fp}","certificate.subject":"CN=prosacco.sons.com","certificate.issuer":"CN=ca","host_cert":true}}"#
        ));
        assert_eq!(x509.get_str(col::METADATA_LOG_NAME), Some("x509"));
        assert_eq!(class(&x509), (Some(4001), Some(99)));
        assert_eq!(x509.get_str(col::HASH_SHA256), Some(fp));
        let u = unmapped(&x509);
        assert_eq!(u["certificate.subject"], "CN=prosacco.sons.com");
        assert_eq!(u["certificate.issuer"], "CN=ca");
    }

    #[test]
    fn files_with_path_and_hashes() {
        let row = one(
            r#"{"@stream":"files","ts":1588206049.300416,"fuid":"FZ7E9x2gD5KHc8KoDg","tx_hosts":["10.0.0.4"],"source":"SMB","mime_type":"text/ini","filename":"dmevals.local\\Policies\\gpt.ini","seen_bytes":22,"md5":"cc85d7649546d3c0b1607f761b73fec2","sha1":"1a1a10b819f321b91b47d7dd73668406a15992db"}"#,
        );
        assert_eq!(class(&row), (Some(1001), Some(99)));
        assert_eq!(
            row.get_str(col::FILE_PATH),
            Some("dmevals.local\\Policies\\gpt.ini")
        );
        assert_eq!(row.get_str(col::FILE_NAME), Some("gpt.ini"));
        assert_eq!(
            row.get_str(col::HASH_MD5),
            Some("cc85d7649546d3c0b1607f761b73fec2")
        );
        assert_eq!(
            row.get_str(col::HASH_SHA1),
            Some("1a1a10b819f321b91b47d7dd73668406a15992db")
        );
        let u = unmapped(&row);
        assert_eq!(u["fuid"], "FZ7E9x2gD5KHc8KoDg");
        assert_eq!(u["mime_type"], "text/ini");

        let bare = one(r#"{"ts":1588206049.3,"fuid":"F1","seen_bytes":1,"filename":"a.exe"}"#);
        assert_eq!(bare.get_str(col::METADATA_LOG_NAME), Some("files"));
        assert_eq!(bare.get_str(col::FILE_NAME), Some("a.exe"));
        assert_eq!(bare.get_str(col::FILE_PATH), None);
    }

    #[test]
    fn kerberos_client_realm_and_outcome() {
        let row = one(
            r#"{"@stream":"kerberos","ts":1588206998.961756,"uid":"CwVGDs3YtoDpSkn2S2","id_orig_h":"10.0.1.6","id_orig_p":57047,"id_resp_h":"10.0.0.4","id_resp_p":88,"request_type":"AS","client":"pbeesly/dmevals","service":"krbtgt/dmevals","success":false,"error_msg":"KDC_ERR_PREAUTH_REQUIRED"}"#,
        );
        assert_eq!(class(&row), (Some(3002), Some(3)));
        assert_eq!(row.get_str(col::USER_NAME), Some("pbeesly"));
        assert_eq!(row.get_str(col::USER_DOMAIN), Some("dmevals"));
        assert_eq!(row.get_str(col::AUTH_PROTOCOL), Some("Kerberos"));
        assert_eq!(row.get_str(col::STATUS), Some("failure"));
        assert_eq!(
            row.get_str(col::STATUS_DETAIL),
            Some("KDC_ERR_PREAUTH_REQUIRED")
        );
        assert_eq!(unmapped(&row)["service"], "krbtgt/dmevals");

        let tgs = one(
            r#"{"ts":1692161647.527015,"id.orig_h":"192.168.1.41","client":"stevie.marie/PANDALAB.COM","service":"LDAP/DC01.pandalab.com/pandalab.com","success":true,"cipher":"aes256-cts-hmac-sha1-96"}"#,
        );
        assert_eq!(tgs.get_str(col::METADATA_LOG_NAME), Some("kerberos"));
        assert_eq!(class(&tgs), (Some(3002), Some(4)));
        assert_eq!(tgs.get_str(col::USER_NAME), Some("stevie.marie"));
        assert_eq!(tgs.get_str(col::USER_DOMAIN), Some("PANDALAB.COM"));
        assert_eq!(tgs.get_str(col::STATUS), Some("success"));
    }

    #[test]
    fn ntlm_and_reporter() {
        let row = one(
            r#"{"_path":"ntlm","ts":1588206998.9,"id.orig_h":"10.0.1.6","username":"pbeesly","domainname":"DMEVALS","success":true}"#,
        );
        assert_eq!(class(&row), (Some(3002), Some(1)));
        assert_eq!(row.get_str(col::USER_NAME), Some("pbeesly"));
        assert_eq!(row.get_str(col::USER_DOMAIN), Some("DMEVALS"));
        assert_eq!(row.get_str(col::AUTH_PROTOCOL), Some("NTLM"));
        assert_eq!(row.get_str(col::STATUS), Some("success"));

        let rep = one(
            r#"{"@stream":"reporter","ts":1588384349.972015,"level":"Reporter::WARNING","message":"disk full","location":""}"#,
        );
        assert_eq!(rep.get_str(col::MESSAGE), Some("disk full"));
        assert_eq!(rep.get_int(col::SEVERITY_ID), Some(3));
        assert_eq!(rep.get_int(col::CLASS_UID), None);
    }

    #[test]
    fn smb_mapping_and_files() {
        let map = one(
            r#"{"@stream":"smb_mapping","ts":1588206049.297996,"uid":"CF37FuG0Jho600cAa","id_orig_h":"10.0.1.6","id_resp_h":"10.0.0.4","id_resp_p":445,"path":"\\\\NEWYORK.dmevals.local\\sysvol","share_type":"DISK"}"#,
        );
        assert_eq!(class(&map), (Some(4006), Some(99)));
        assert_eq!(
            map.get_str(col::FILE_PATH),
            Some("\\\\NEWYORK.dmevals.local\\sysvol")
        );
        assert_eq!(unmapped(&map)["share_type"], "DISK");

        let file = one(
            r#"{"ts":1588206049.298765,"uid":"CF37FuG0Jho600cAa","id_orig_h":"10.0.1.6","id_resp_h":"10.0.0.4","action":"SMB::FILE_OPEN","path":"\\\\NEWYORK.dmevals.local\\sysvol","name":"dmevals.local\\Policies\\gpt.ini","size":22}"#,
        );
        assert_eq!(file.get_str(col::METADATA_LOG_NAME), Some("smb_files"));
        assert_eq!(class(&file), (Some(4006), Some(2)));
        assert_eq!(
            file.get_str(col::FILE_PATH),
            Some("\\\\NEWYORK.dmevals.local\\sysvol\\dmevals.local\\Policies\\gpt.ini")
        );
        assert_eq!(file.get_str(col::FILE_NAME), Some("gpt.ini"));
        assert_eq!(unmapped(&file)["action"], "SMB::FILE_OPEN");

        let write = one(
            r#"{"_path":"smb_files","ts":1588206049.3,"action":"SMB::FILE_WRITE","name":"x.txt"}"#,
        );
        assert_eq!(class(&write), (Some(4006), Some(99)));
        assert_eq!(write.get_str(col::FILE_PATH), Some("x.txt"));
    }

    #[test]
    fn http_uri_stays_beside_the_url() {
        for (input, url) in [
            (
                r#"{"_path":"http","ts":1588206738.1,"method":"GET","host":"a.example","uri":"/x/y.php?id=1"}"#,
                "http://a.example/x/y.php?id=1",
            ),
            (
                r#"{"_path":"http","ts":1588206738.1,"method":"GET","host":"a.example","uri":"x"}"#,
                "http://a.example/x",
            ),
            (
                r#"{"_path":"http","ts":1588206738.1,"method":"GET","host":"proxy","uri":"http://b.example/z"}"#,
                "http://b.example/z",
            ),
            (
                r#"{"_path":"http","ts":1588206738.1,"method":"GET","uri":"/only"}"#,
                "/only",
            ),
        ] {
            let row = one(input);
            assert_eq!(row.get_str(col::URL), Some(url), "{input}");
            let source: Value = serde_json::from_str(input).expect("json");
            assert_eq!(unmapped(&row)["uri"], source["uri"], "{input}");
        }
    }

    #[test]
    fn smb_files_path_and_name_stay_beside_file_path() {
        let file = one(
            r#"{"_path":"smb_files","ts":1588206049.3,"action":"SMB::FILE_OPEN","path":"\\\\DC\\C$","name":"\\Windows\\Temp\\x.exe"}"#,
        );
        assert_eq!(
            file.get_str(col::FILE_PATH),
            Some("\\\\DC\\C$\\Windows\\Temp\\x.exe")
        );
        let u = unmapped(&file);
        assert_eq!(u["path"], "\\\\DC\\C$");
        assert_eq!(u["name"], "\\Windows\\Temp\\x.exe");

        let only = one(r#"{"_path":"smb_files","ts":1588206049.3,"name":"x.txt"}"#);
        assert_eq!(only.get_str(col::FILE_PATH), Some("x.txt"));
        assert_eq!(unmapped(&only)["name"], "x.txt");
    }

    #[test]
    fn kerberos_client_stays_beside_user_and_realm() {
        let row = one(
            r#"{"_path":"kerberos","ts":1588206998.9,"request_type":"TGS","client":"host/ws1.example/EXAMPLE.COM","service":"cifs/dc","success":true}"#,
        );
        assert_eq!(row.get_str(col::USER_NAME), Some("host/ws1.example"));
        assert_eq!(row.get_str(col::USER_DOMAIN), Some("EXAMPLE.COM"));
        assert_eq!(unmapped(&row)["client"], "host/ws1.example/EXAMPLE.COM");
    }

    #[test]
    fn outcome_fields_stay_beside_status() {
        for (input, key, status) in [
            (
                r#"{"_path":"kerberos","ts":1588206998.9,"client":"a/B","success":false}"#,
                "success",
                "failure",
            ),
            (
                r#"{"_path":"ntlm","ts":1588206998.9,"username":"a","success":true}"#,
                "success",
                "success",
            ),
            (
                r#"{"_path":"ssl","ts":1588206998.9,"server_name":"x","established":false}"#,
                "established",
                "failure",
            ),
            // Untyped TSV-style text.
            (
                r#"{"_path":"ssl","ts":1588206998.9,"server_name":"x","established":"T"}"#,
                "established",
                "success",
            ),
        ] {
            let row = one(input);
            assert_eq!(row.get_str(col::STATUS), Some(status), "{input}");
            let source: Value = serde_json::from_str(input).expect("json");
            assert_eq!(unmapped(&row)[key], source[key], "{input}");
        }
        // A typed TSV row: the boolean as Zeek's JSON writer has it.
        let tsv = "#separator \\x09\n#path\tssl\n#fields\tts\tserver_name\testablished\n#types\ttime\tstring\tbool\n1588206998.9\tx\tF\n";
        let (events, dead) = decode_all(&[tsv.as_bytes()]);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events[0].get_str(col::STATUS), Some("failure"));
        assert_eq!(unmapped(&events[0])["established"], false);
    }

    #[test]
    fn filename_and_fingerprint_stay_beside_their_columns() {
        for (filename, path, name) in [
            ("dir/a.exe", Some("dir/a.exe"), Some("a.exe")),
            ("C:\\x\\b.dll", Some("C:\\x\\b.dll"), Some("b.dll")),
            ("c.pdf", None, Some("c.pdf")),
        ] {
            let input = serde_json::json!({
                "_path": "files", "ts": 1588206049.3, "fuid": "F1", "filename": filename,
            })
            .to_string();
            let row = one(&input);
            assert_eq!(row.get_str(col::FILE_PATH), path, "{filename}");
            assert_eq!(row.get_str(col::FILE_NAME), name, "{filename}");
            assert_eq!(unmapped(&row)["filename"], filename);
        }

        // The fingerprint as written (upper case here); the column lower-cased.
        let sha1 = "B765518127E58D334A3596A6572A09FA727D59C8";
        let row = one(&format!(
            r#"{{"_path":"x509","ts":1692161674.6,"fingerprint":"{sha1}"}}"#
        ));
        assert_eq!(
            row.get_str(col::HASH_SHA1),
            Some(sha1.to_ascii_lowercase().as_str())
        );
        assert_eq!(row.get_str(col::HASH_SHA256), None);
        assert_eq!(unmapped(&row)["fingerprint"], sha1);
        // One no column takes stays too.
        let row = one(r#"{"_path":"x509","ts":1692161674.6,"fingerprint":"not-hex"}"#);
        assert_eq!(unmapped(&row)["fingerprint"], "not-hex");
    }

    #[test]
    fn notice_and_weird() {
        let row = one(
            r#"{"ts":1588207244.740518,"uid":"CpnezL3085IfcJzSAe","fuid":"F1v6sJmRC73GU6WT3","proto":"tcp","note":"SSL::Invalid_Server_Cert","msg":"SSL certificate validation failed with (self signed certificate)","sub":"CN=x","src":"10.0.1.6","dst":"192.168.0.4","p":8443,"actions":["Notice::ACTION_LOG"]}"#,
        );
        assert_eq!(row.get_str(col::METADATA_LOG_NAME), Some("notice"));
        assert_eq!(class(&row), (Some(2004), Some(1)));
        assert_eq!(row.get_int(col::CATEGORY_UID), Some(2));
        assert_eq!(
            row.get_str(col::MESSAGE),
            Some("SSL certificate validation failed with (self signed certificate)")
        );
        assert_eq!(
            row.get_str(col::EVENT_CODE),
            Some("SSL::Invalid_Server_Cert")
        );
        assert_eq!(row.get_str(col::SRC_IP), Some("10.0.1.6"));
        assert_eq!(row.get_str(col::DST_IP), Some("192.168.0.4"));
        assert_eq!(row.get_int(col::DST_PORT), Some(8443));

        let weird = one(
            r#"{"ts":1692161647.497157,"uid":"Cwj75o47xOkJZpWfUh","id.orig_h":"192.168.1.4","id.orig_p":49669,"id.resp_h":"192.168.1.41","id.resp_p":55215,"name":"connection_originator_SYN_ack","notice":false,"peer":"zeek","source":"TCP"}"#,
        );
        assert_eq!(weird.get_str(col::METADATA_LOG_NAME), Some("weird"));
        assert_eq!(class(&weird), (Some(4001), Some(99)));
        assert_eq!(
            weird.get_str(col::MESSAGE),
            Some("connection_originator_SYN_ack")
        );
        assert_eq!(unmapped(&weird)["peer"], "zeek");
    }

    #[test]
    fn unknown_logs_keep_their_fields() {
        let row = one(
            r#"{"@stream":"loaded_scripts","@system":"nsm","name":"/usr/share/zeek/base/init-bare.zeek"}"#,
        );
        assert_eq!(row.get_str(col::METADATA_LOG_NAME), Some("loaded_scripts"));
        assert_eq!(row.get_int(col::CLASS_UID), None);
        assert_eq!(row.time(), prov().ingest_time_micros);
        let u = unmapped(&row);
        assert_eq!(u["name"], "/usr/share/zeek/base/init-bare.zeek");
        assert!(
            u[crate::parse::draft::NOTES_KEY]
                .to_string()
                .contains("no readable time")
        );

        let odd = one(r#"{"_path":7,"ts":1692161647.5,"x":1}"#);
        assert_eq!(odd.get_str(col::METADATA_LOG_NAME), None);
        assert_eq!(odd.get_str(col::METADATA_PRODUCT), Some("Zeek"));
        let u = unmapped(&odd);
        assert_eq!(u["_path"], 7);
        assert!(
            u[crate::parse::draft::NOTES_KEY]
                .to_string()
                .contains("_path: a number")
        );
    }

    const HEADER: &str = "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n#open\t2023-08-16-01-28-55\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tduration\torig_bytes\tlocal_orig\ttunnel_parents\tname\tnums\n#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tinterval\tcount\tbool\tset[string]\tstring\tvector[int]\n";

    #[test]
    fn tsv_values_are_converted_by_type() {
        let input = format!(
            "{HEADER}1692161643.549491\tCX6\t192.168.1.41\t55213\t10.0.5.13\t80\ttcp\t1.25\t403\tT\ta,b\t(empty)\t-1,2\n1692161644\tCX7\t10.0.0.1\t1\t10.0.0.2\t2\tudp\t-\t-\tF\t(empty)\t-\t(empty)\n#close\t2023-08-16-01-28-55\n"
        );
        let (events, dead) = decode_all(&[input.as_bytes()]);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events.len(), 2);
        let first = &events[0];
        assert_eq!(
            first.get_str(col::RAW),
            Some(
                "1692161643.549491\tCX6\t192.168.1.41\t55213\t10.0.5.13\t80\ttcp\t1.25\t403\tT\ta,b\t(empty)\t-1,2"
            )
        );
        assert_eq!(first.get_str(col::METADATA_LOG_NAME), Some("conn"));
        assert_eq!(first.time(), 1_692_161_643_549_491);
        assert_eq!(first.get_int(col::SRC_PORT), Some(55213));
        assert_eq!(first.get_int(col::BYTES_OUT), Some(403));
        assert_eq!(class(first), (Some(4001), Some(6)));
        let u = unmapped(first);
        assert_eq!(
            u,
            serde_json::json!({"uid":"CX6","duration":1.25,"local_orig":true,"tunnel_parents":["a","b"],"name":"","nums":[-1,2]})
        );
        let u = unmapped(&events[1]);
        assert_eq!(
            u,
            serde_json::json!({"uid":"CX7","local_orig":false,"tunnel_parents":[],"nums":[]})
        );
    }

    #[test]
    fn tsv_header_lines_arrive_as_separate_inputs() {
        let mut inputs: Vec<&[u8]> = HEADER.lines().map(str::as_bytes).collect();
        let line = "1692161643.5\tCX6\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t7\tT\t-\t-\t-";
        inputs.push(line.as_bytes());
        inputs.push(b"#close\t2023-08-16-01-28-55");
        let (events, dead) = decode_all(&inputs);
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].get_str(col::RAW), Some(line));
        assert_eq!(events[0].get_int(col::BYTES_OUT), Some(7));
    }

    #[test]
    fn tsv_bad_lines_are_dead_letters_naming_the_line() {
        // A data line before any header.
        let (events, dead) = decode_all(&[b"1692161643.5\tCX6\t10.0.0.1"]);
        assert!(events.is_empty());
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].contains("line 1: data line") && dead[0].contains("before any #fields"),
            "{dead:?}"
        );

        // Wrong column count, a value of the wrong type and invalid UTF-8 in a chunk.
        let mut input = HEADER.as_bytes().to_vec();
        input.extend_from_slice(b"1692161643.5\tCX6\t10.0.0.1\n");
        input.extend_from_slice(
            b"1692161643.5\tCX7\t10.0.0.1\tnot-a-port\t10.0.0.2\t2\ttcp\t-\t7\tT\t-\t-\t-\n",
        );
        input.extend_from_slice(
            b"1692161643.5\tCX8\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t7\tT\t-\t\xff\xfe\t-\n",
        );
        input.extend_from_slice(
            b"1692161643.5\tCX9\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t7\tT\t-\t-\t-\n",
        );
        let (events, dead) = decode_all(&[&input]);
        assert_eq!(events.len(), 2, "{dead:?}");
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert!(
            dead[0].contains("line 9: 3 columns but #fields names 13"),
            "{dead:?}"
        );
        assert!(
            dead[1].contains("line 11: invalid UTF-8 at byte 51"),
            "{dead:?}"
        );
        let bad_port = &events[0];
        assert_eq!(bad_port.get_int(col::SRC_PORT), None);
        let u = unmapped(bad_port);
        assert_eq!(u["id.orig_p"], "not-a-port");
        assert!(
            u[crate::parse::draft::NOTES_KEY]
                .to_string()
                .contains("id.orig_p: `not-a-port` is not a port; kept as text"),
            "{u}"
        );
        assert_eq!(unmapped(&events[1])["uid"], "CX9");

        // #types that do not match #fields: reported, values kept as text.
        let (events, dead) = decode_all(&[
            b"#fields\tts\tquery\n#types\ttime\n1692161643.5\texample.com\n".as_slice(),
        ]);
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].contains("line 2: #types names 1 columns but #fields names 2"),
            "{dead:?}"
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].get_str(col::DNS_QUERY), None);
        assert_eq!(events[0].time(), 1_692_161_643_500_000);
    }

    #[test]
    fn tsv_custom_separators() {
        let input = "#separator \\x7c\n#set_separator|;\n#unset_field|NONE\n#path|dns\n#fields|ts|query|answers|rcode_name\n#types|time|string|vector[string]|string\n1692161643.5|a.example|1.1.1.1;2.2.2.2|NONE\n";
        let row = one(input);
        assert_eq!(row.get_str(col::METADATA_LOG_NAME), Some("dns"));
        assert_eq!(row.get_str(col::DNS_QUERY), Some("a.example"));
        assert_eq!(row.get_str(col::DNS_ANSWER), Some("1.1.1.1,2.2.2.2"));
        assert_eq!(row.get_str(col::DNS_RCODE), None);
        assert_eq!(decode_escapes("a\\x09b\\xzz\\x"), "a\tb\\xzz\\x");
    }

    #[test]
    fn json_chunks_and_bad_json() {
        let chunk = b"{\"_path\":\"weird\",\"ts\":1692161618.1,\"name\":\"a\"}\n{\"_path\":\"weird\",\"ts\":1692161618.2,\"name\":\n{\"_path\":\"weird\",\"ts\":1692161618.3,\"name\":\"c\"}\n";
        let (events, dead) = decode_all(&[chunk]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].get_str(col::MESSAGE), Some("c"));
        assert_eq!(
            events[1].get_str(col::RAW),
            Some("{\"_path\":\"weird\",\"ts\":1692161618.3,\"name\":\"c\"}")
        );
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].starts_with("offset 3: line 2: invalid JSON"),
            "{dead:?}"
        );

        let (events, dead) = decode_all(&[b"{\"ts\":1692161618.1,\"name\""]);
        assert!(events.is_empty());
        assert!(
            dead[0].contains("invalid JSON") && dead[0].contains("EOF"),
            "{dead:?}"
        );

        let (_, dead) = decode_all(&[b"   "]);
        assert!(dead[0].contains("empty"), "{dead:?}");

        let (_, dead) = decode_all(&[b"garbage here"]);
        assert!(
            dead[0].contains("line 1: data line `garbage here` before any #fields"),
            "{dead:?}"
        );

        let (_, dead) = decode_all(&[b"{\"ts\":\"\xff\"}"]);
        assert!(dead[0].contains("invalid JSON"), "{dead:?}");

        let huge = format!(
            "{{\"query\":\"{}\"}}",
            "a".repeat(crate::parse::MAX_EVENT_BYTES)
        );
        let (events, dead) = decode_all(&[huge.as_bytes()]);
        assert!(events.is_empty());
        assert!(dead[0].contains("exceeds the limit"), "{dead:?}");

        // A long TSV value is kept whole; an error quotes only its start.
        let long = "x".repeat(100_000);
        let (_, dead) = decode_all(&[long.as_bytes()]);
        assert!(dead[0].len() < 300, "{}", dead[0].len());
    }

    fn corpus_lines(path: &str) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn corpus_files(dir: &str, ext: &str) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(format!("{CORPUS}/{dir}"))
            .expect("corpus dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn corpus_otrf_zeek_json() {
        let mut total = 0;
        for path in corpus_files("otrf-zeek", "jsonl") {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("stem")
                .to_string();
            let lines = corpus_lines(path.to_str().expect("path"));
            let inputs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let (events, dead) = decode_all(&inputs);
            assert!(dead.is_empty(), "{stem}: {dead:?}");
            assert_eq!(events.len(), lines.len(), "{stem}");
            for row in &events {
                assert_eq!(
                    row.get_str(col::METADATA_LOG_NAME),
                    Some(stem.as_str()),
                    "{stem}"
                );
                assert!(
                    row.time() < prov().ingest_time_micros,
                    "{stem}: time from ts"
                );
                let expected_class = match stem.as_str() {
                    "conn" | "ssl" | "weird" | "x509" | "analyzer" => Some(4001),
                    "dns" => Some(4003),
                    "http" => Some(4002),
                    "files" => Some(1001),
                    "kerberos" => Some(3002),
                    "smb_mapping" => Some(4006),
                    _ => None,
                };
                assert_eq!(row.get_int(col::CLASS_UID), expected_class, "{stem}");
            }
            total += events.len();
        }
        assert_eq!(total, 261);
    }

    #[test]
    fn corpus_rocknsm() {
        for (file, expected) in [
            ("apt29_day1_zeek.jsonl", 2140),
            ("apt29_day2_zeek.jsonl", 5664),
        ] {
            let lines = corpus_lines(&format!("{CORPUS}/otrf-zeek-rocknsm/{file}"));
            let inputs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let (events, dead) = decode_all(&inputs);
            assert!(dead.is_empty(), "{file}: {dead:?}");
            assert_eq!(events.len(), expected, "{file}");
            let mut per_log: BTreeMap<String, (usize, BTreeMap<Option<i64>, usize>)> =
                BTreeMap::new();
            for (row, line) in events.iter().zip(&lines) {
                let source: Value = serde_json::from_str(line).expect("json");
                let log = row.get_str(col::METADATA_LOG_NAME).expect("log name");
                assert_eq!(source["@stream"], log, "{file}");
                assert_eq!(row.get_str(col::METADATA_PRODUCT), Some("Zeek"));
                if source.get("id_orig_h").is_some() {
                    assert_eq!(row.get_str(col::SRC_IP), source["id_orig_h"].as_str());
                    assert_eq!(row.get_int(col::DST_PORT), source["id_resp_p"].as_i64());
                    assert_eq!(unmapped(row)["uid"], source["uid"], "uid kept");
                }
                let entry = per_log.entry(log.to_string()).or_default();
                entry.0 += 1;
                *entry.1.entry(row.get_int(col::CLASS_UID)).or_default() += 1;
            }
            for (log, class) in [
                ("conn", 4001),
                ("dns", 4003),
                ("http", 4002),
                ("ssl", 4001),
                ("x509", 4001),
                ("files", 1001),
                ("kerberos", 3002),
                ("smb_mapping", 4006),
                ("smb_files", 4006),
                ("notice", 2004),
                ("weird", 4001),
            ] {
                if let Some((count, classes)) = per_log.get(log) {
                    assert_eq!(
                        classes.get(&Some(class)),
                        Some(count),
                        "{file} {log}: {classes:?}"
                    );
                }
            }
            let kerberos_users = events
                .iter()
                .filter(|r| r.get_str(col::METADATA_LOG_NAME) == Some("kerberos"))
                .filter(|r| r.get_str(col::USER_NAME).is_some())
                .count();
            assert!(kerberos_users > 0, "{file}");
        }
    }

    /// The columns compared between the TSV and JSON forms of one event.
    /// The row without `raw`, and with `unmapped` as a JSON value (key
    /// order does not matter).
    fn comparable(row: &EventRow) -> (Vec<Cell>, Value) {
        let mut cells = row.cells.clone();
        let raw = crate::parse::draft::column_index(col::RAW).expect("raw");
        cells[raw] = Cell::Null;
        let unmapped = crate::parse::draft::column_index(col::UNMAPPED).expect("unmapped");
        let value = match std::mem::replace(&mut cells[unmapped], Cell::Null) {
            Cell::Str(s) => serde_json::from_str(&s).expect("unmapped is JSON"),
            other => panic!("unmapped is {other:?}"),
        };
        (cells, value)
    }

    #[test]
    fn corpus_tsv_maps_like_json() {
        let mut total = 0;
        for path in corpus_files("otrf-zeek-tsv", "log") {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("stem")
                .to_string();
            let text = std::fs::read_to_string(&path).expect("read");
            let data_lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();

            // The whole file as one input, and line by line: the same rows.
            let (events, dead) = decode_all(&[text.as_bytes()]);
            assert!(dead.is_empty(), "{stem}: {dead:?}");
            assert_eq!(events.len(), data_lines.len(), "{stem}");
            let by_line: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
            let (line_events, dead) = decode_all(&by_line);
            assert!(dead.is_empty(), "{stem}: {dead:?}");
            assert_eq!(line_events, events, "{stem}");
            for (row, line) in events.iter().zip(&data_lines) {
                assert_eq!(row.get_str(col::RAW), Some(*line), "{stem}");
                assert_eq!(row.get_str(col::METADATA_LOG_NAME), Some(stem.as_str()));
            }

            // The JSON form of the same log maps to the same columns.
            let json = corpus_lines(&format!("{CORPUS}/otrf-zeek/{stem}.jsonl"));
            let inputs: Vec<&[u8]> = json.iter().map(|l| l.as_bytes()).collect();
            let (json_events, dead) = decode_all(&inputs);
            assert!(dead.is_empty(), "{stem}: {dead:?}");
            assert_eq!(json_events.len(), events.len(), "{stem}");
            for (i, (tsv, json)) in events.iter().zip(&json_events).enumerate() {
                assert_eq!(comparable(tsv), comparable(json), "{stem} event {i}");
            }
            total += events.len();
        }
        assert_eq!(total, 261);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any bytes decode to events and dead letters without panicking.
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let mut decoder = Decoder::for_type(SourceType::Zeek);
                let mut out = Vec::new();
                decoder.decode(&bytes, &prov(), &mut out);
                decoder.decode(&bytes, &prov(), &mut out);
                decoder.flush(&prov(), &mut out);
            }

            /// Arbitrary lines after a real header never panic: each data
            /// line is one event or one dead letter, and a header line at
            /// most one dead letter.
            #[test]
            fn tsv_lines_never_panic(lines in proptest::collection::vec("[ -z|~\t\\\\#]{0,60}", 1..8)) {
                let mut decoder = Decoder::for_type(SourceType::Zeek);
                let mut out = Vec::new();
                decoder.decode(HEADER.as_bytes(), &prov(), &mut out);
                prop_assert!(out.is_empty());
                let input = lines.join("\n");
                decoder.decode(input.as_bytes(), &prov(), &mut out);
                let blank = |l: &&String| l.bytes().all(|b| b.is_ascii_whitespace());
                let data = lines.iter().filter(|l| !blank(l) && !l.starts_with('#')).count();
                let headers = lines.iter().filter(|l| l.starts_with('#')).count();
                if input.trim().is_empty() {
                    prop_assert_eq!(out.len(), 1);
                } else {
                    prop_assert!(out.len() >= data && out.len() <= data + headers, "{} outputs for {:?}", out.len(), lines);
                }
            }
        }
    }
}
