//! Generic JSON events → the normalized schema.
//!
//! Each column has a list of source paths, tried in order; the first present
//! scalar value that fits the column's type wins. Paths are dotted, and a key
//! that itself contains dots (Zeek's `id.orig_h`, flattened ECS) is matched
//! before descending. Everything not consumed stays in `unmapped`, and the
//! original bytes in `raw`, so normalization never loses a field.

use serde_json::{Map, Value};
use spoor_common::schema::{ColumnKind, EVENT_COLUMNS, event_col as col};

/// One cell of a row, before it becomes an Arrow array.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// Text.
    Str(String),
    /// Integer, or a timestamp in microseconds.
    Int(i64),
}

/// A normalized event, one cell per column of [`EVENT_COLUMNS`].
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Cells in column order.
    pub cells: Vec<Cell>,
}

impl EventRow {
    /// The event time, microseconds.
    pub fn time(&self) -> i64 {
        match self.cells.first() {
            Some(Cell::Int(t)) => *t,
            _ => 0,
        }
    }

    /// A cell by column name (tests and diagnostics).
    pub fn get(&self, name: &str) -> Option<&Cell> {
        column_index(name).and_then(|i| self.cells.get(i))
    }
}

/// Where an event came from, recorded in the provenance columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Kafka topic, or `http:<source>`.
    pub topic: String,
    /// Kafka partition, if any.
    pub partition: Option<i32>,
    /// Kafka offset, or line number for HTTP.
    pub offset: Option<i64>,
    /// When Spoor received the event, microseconds.
    pub ingest_time_micros: i64,
}

/// Why an event could not be normalized; the event goes to dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// Not JSON at all.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("event is a JSON {found}, expected an object")]
    NotAnObject {
        /// What was found instead.
        found: &'static str,
    },
    /// Empty or blank.
    #[error("event is empty")]
    Empty,
    /// Larger than allowed.
    #[error("event of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Event size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Events larger than this go to dead letters (they would bloat row groups and
/// are almost always a shipper fault).
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Source paths for each column, in priority order (the generic JSON mapping).
/// Aliases cover OCSF (nested), ECS, Sysmon/Windows flat fields, Zeek and CloudTrail.
const DEFAULT_PATHS: &[(&str, &[&str])] = &[
    (
        col::TIME,
        &[
            "time",
            "@timestamp",
            "timestamp",
            "ts",
            "EventTime",
            "TimeCreated",
            "UtcTime",
            "TimeGenerated",
            "Timestamp",
            "eventTime",
            "event.created",
            "published",
        ],
    ),
    (col::CLASS_UID, &["class_uid"]),
    (col::CATEGORY_UID, &["category_uid"]),
    (col::ACTIVITY_ID, &["activity_id"]),
    (col::TYPE_UID, &["type_uid"]),
    (col::SEVERITY_ID, &["severity_id"]),
    (col::MESSAGE, &["message", "Message", "msg"]),
    (
        col::METADATA_PRODUCT,
        &[
            "metadata.product.name",
            "metadata_product",
            "event.module",
            "SourceName",
        ],
    ),
    (
        col::METADATA_LOG_NAME,
        &[
            "metadata.log_name",
            "metadata_log_name",
            "Channel",
            "winlog.channel",
            "event.dataset",
            "@stream",
        ],
    ),
    (
        col::EVENT_CODE,
        &["event_code", "EventID", "event.code", "winlog.event_id"],
    ),
    (col::ACTION, &["action", "event.action"]),
    (col::STATUS, &["status", "event.outcome"]),
    (
        col::STATUS_DETAIL,
        &["status_detail", "errorMessage", "errorCode"],
    ),
    (
        col::SRC_IP,
        &[
            "src_ip",
            "src_endpoint.ip",
            "source.ip",
            "SourceIp",
            "SourceAddress",
            "id.orig_h",
            "id_orig_h",
            "sourceIPAddress",
            "client.ip",
            "IpAddress",
        ],
    ),
    (
        col::SRC_PORT,
        &[
            "src_port",
            "src_endpoint.port",
            "source.port",
            "SourcePort",
            "id.orig_p",
            "id_orig_p",
            "IpPort",
        ],
    ),
    (
        col::SRC_HOSTNAME,
        &[
            "src_hostname",
            "src_endpoint.hostname",
            "SourceHostname",
            "source.domain",
            "WorkstationName",
        ],
    ),
    (
        col::DST_IP,
        &[
            "dst_ip",
            "dst_endpoint.ip",
            "destination.ip",
            "DestinationIp",
            "DestAddress",
            "id.resp_h",
            "id_resp_h",
        ],
    ),
    (
        col::DST_PORT,
        &[
            "dst_port",
            "dst_endpoint.port",
            "destination.port",
            "DestinationPort",
            "id.resp_p",
            "id_resp_p",
        ],
    ),
    (
        col::DST_HOSTNAME,
        &[
            "dst_hostname",
            "dst_endpoint.hostname",
            "DestinationHostname",
            "destination.domain",
        ],
    ),
    (
        col::NETWORK_PROTOCOL,
        &[
            "network_protocol",
            "connection_info.protocol_name",
            "network.transport",
            "proto",
            "Protocol",
        ],
    ),
    (
        col::NETWORK_DIRECTION,
        &[
            "network_direction",
            "connection_info.direction",
            "network.direction",
        ],
    ),
    (
        col::BYTES_IN,
        &[
            "bytes_in",
            "traffic.bytes_in",
            "destination.bytes",
            "resp_bytes",
        ],
    ),
    (
        col::BYTES_OUT,
        &[
            "bytes_out",
            "traffic.bytes_out",
            "source.bytes",
            "orig_bytes",
        ],
    ),
    (
        col::ACTOR_USER_NAME,
        &[
            "actor_user_name",
            "actor.user.name",
            "SubjectUserName",
            "userIdentity.userName",
            "User",
        ],
    ),
    (
        col::ACTOR_USER_DOMAIN,
        &[
            "actor_user_domain",
            "actor.user.domain",
            "SubjectDomainName",
        ],
    ),
    (
        col::USER_NAME,
        &["user_name", "user.name", "TargetUserName", "username"],
    ),
    (
        col::USER_DOMAIN,
        &["user_domain", "user.domain", "TargetDomainName"],
    ),
    (col::LOGON_TYPE, &["logon_type", "LogonType"]),
    (
        col::AUTH_PROTOCOL,
        &["auth_protocol", "AuthenticationPackageName"],
    ),
    (
        col::DEVICE_HOSTNAME,
        &[
            "device_hostname",
            "device.hostname",
            "host.name",
            "Hostname",
            "Computer",
            "hostname",
            "host",
        ],
    ),
    (col::DEVICE_IP, &["device_ip", "device.ip", "host.ip"]),
    (
        col::DEVICE_OS,
        &["device_os", "device.os.name", "host.os.name"],
    ),
    (col::PROCESS_NAME, &["process_name", "process.name"]),
    (
        col::PROCESS_PID,
        &["process_pid", "process.pid", "ProcessId", "NewProcessId"],
    ),
    (
        col::PROCESS_PATH,
        &[
            "process_path",
            "process.file.path",
            "process.executable",
            "Image",
            "NewProcessName",
        ],
    ),
    (
        col::PROCESS_CMD_LINE,
        &[
            "process_cmd_line",
            "process.cmd_line",
            "process.command_line",
            "CommandLine",
        ],
    ),
    (
        col::PROCESS_UID,
        &[
            "process_uid",
            "process.uid",
            "process.entity_id",
            "ProcessGuid",
        ],
    ),
    (
        col::PROCESS_PARENT_NAME,
        &[
            "process_parent_name",
            "process.parent_process.name",
            "process.parent.name",
        ],
    ),
    (
        col::PROCESS_PARENT_PID,
        &[
            "process_parent_pid",
            "process.parent_process.pid",
            "process.parent.pid",
            "ParentProcessId",
        ],
    ),
    (
        col::PROCESS_PARENT_PATH,
        &[
            "process_parent_path",
            "process.parent_process.file.path",
            "process.parent.executable",
            "ParentImage",
            "ParentProcessName",
        ],
    ),
    (
        col::PROCESS_PARENT_CMD_LINE,
        &[
            "process_parent_cmd_line",
            "process.parent_process.cmd_line",
            "process.parent.command_line",
            "ParentCommandLine",
        ],
    ),
    (
        col::FILE_PATH,
        &["file_path", "file.path", "TargetFilename"],
    ),
    (col::FILE_NAME, &["file_name", "file.name"]),
    (
        col::HASH_MD5,
        &["hash_md5", "file.hash.md5", "hash.md5", "md5"],
    ),
    (
        col::HASH_SHA1,
        &["hash_sha1", "file.hash.sha1", "hash.sha1", "sha1"],
    ),
    (
        col::HASH_SHA256,
        &["hash_sha256", "file.hash.sha256", "hash.sha256", "sha256"],
    ),
    (
        col::REGISTRY_KEY,
        &[
            "registry_key",
            "reg_key.path",
            "registry.path",
            "TargetObject",
        ],
    ),
    (
        col::REGISTRY_VALUE,
        &[
            "registry_value",
            "reg_value.name",
            "registry.value",
            "Details",
        ],
    ),
    (
        col::DNS_QUERY,
        &[
            "dns_query",
            "query.hostname",
            "dns.question.name",
            "QueryName",
            "query",
        ],
    ),
    (
        col::DNS_ANSWER,
        &["dns_answer", "dns.answers.data", "QueryResults", "answers"],
    ),
    (
        col::DNS_RCODE,
        &["dns_rcode", "dns.response_code", "rcode_name"],
    ),
    (
        col::URL,
        &[
            "url",
            "url.full",
            "url.original",
            "http_request.url.url_string",
        ],
    ),
    (
        col::HTTP_METHOD,
        &[
            "http_method",
            "http.request.method",
            "http_request.http_method",
            "method",
        ],
    ),
    (
        col::HTTP_STATUS,
        &[
            "http_status",
            "http.response.status_code",
            "http_response.code",
            "status_code",
        ],
    ),
    (
        col::HTTP_USER_AGENT,
        &[
            "http_user_agent",
            "user_agent.original",
            "http_request.user_agent",
            "user_agent",
            "userAgent",
        ],
    ),
    (col::CLOUD_PROVIDER, &["cloud_provider", "cloud.provider"]),
    (
        col::CLOUD_REGION,
        &["cloud_region", "cloud.region", "awsRegion"],
    ),
    (
        col::CLOUD_ACCOUNT_UID,
        &[
            "cloud_account_uid",
            "cloud.account.uid",
            "cloud.account.id",
            "recipientAccountId",
        ],
    ),
    (
        col::API_OPERATION,
        &["api_operation", "api.operation", "eventName"],
    ),
    (
        col::API_SERVICE,
        &["api_service", "api.service.name", "eventSource"],
    ),
];

fn column_index(name: &str) -> Option<usize> {
    EVENT_COLUMNS.iter().position(|c| c.name == name)
}

/// Normalizes JSON events with the generic mapping.
#[derive(Debug, Clone)]
pub struct JsonNormalizer {
    /// (column index, kind, paths) for every mapped column.
    mapped: Vec<(usize, ColumnKind, &'static [&'static str])>,
    idx: Indexes,
}

#[derive(Debug, Clone)]
struct Indexes {
    time: usize,
    class_uid: usize,
    category_uid: usize,
    activity_id: usize,
    type_uid: usize,
    event_code: usize,
    src_ip: usize,
    dst_ip: usize,
    process_name: usize,
    process_path: usize,
    process_cmd_line: usize,
    process_parent_name: usize,
    process_parent_path: usize,
    file_path: usize,
    file_name: usize,
    dns_query: usize,
    url: usize,
    http_method: usize,
    api_operation: usize,
    raw: usize,
    unmapped: usize,
    source_topic: usize,
    source_partition: usize,
    source_offset: usize,
    ingest_time: usize,
}

impl Default for JsonNormalizer {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonNormalizer {
    /// The generic JSON mapping.
    pub fn new() -> Self {
        let i = |name: &str| {
            column_index(name).unwrap_or_else(|| panic!("column {name} is in the schema"))
        };
        let mapped = DEFAULT_PATHS
            .iter()
            .map(|(name, paths)| (i(name), EVENT_COLUMNS[i(name)].kind, *paths))
            .collect();
        JsonNormalizer {
            mapped,
            idx: Indexes {
                time: i(col::TIME),
                class_uid: i(col::CLASS_UID),
                category_uid: i(col::CATEGORY_UID),
                activity_id: i(col::ACTIVITY_ID),
                type_uid: i(col::TYPE_UID),
                event_code: i(col::EVENT_CODE),
                src_ip: i(col::SRC_IP),
                dst_ip: i(col::DST_IP),
                process_name: i(col::PROCESS_NAME),
                process_path: i(col::PROCESS_PATH),
                process_cmd_line: i(col::PROCESS_CMD_LINE),
                process_parent_name: i(col::PROCESS_PARENT_NAME),
                process_parent_path: i(col::PROCESS_PARENT_PATH),
                file_path: i(col::FILE_PATH),
                file_name: i(col::FILE_NAME),
                dns_query: i(col::DNS_QUERY),
                url: i(col::URL),
                http_method: i(col::HTTP_METHOD),
                api_operation: i(col::API_OPERATION),
                raw: i(col::RAW),
                unmapped: i(col::UNMAPPED),
                source_topic: i(col::SOURCE_TOPIC),
                source_partition: i(col::SOURCE_PARTITION),
                source_offset: i(col::SOURCE_OFFSET),
                ingest_time: i(col::INGEST_TIME),
            },
        }
    }

    /// Normalizes one event.
    pub fn normalize(&self, bytes: &[u8], prov: &Provenance) -> Result<EventRow, NormalizeError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(NormalizeError::TooLarge {
                size: bytes.len(),
                limit: MAX_EVENT_BYTES,
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(NormalizeError::Empty);
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| NormalizeError::Json(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(NormalizeError::NotAnObject {
                found: json_kind(&value),
            });
        };
        let mut cells = vec![Cell::Null; EVENT_COLUMNS.len()];
        // Mapped fields are taken out of the object as they are matched; what
        // is left is `unmapped`. No source path serves two columns.
        let mut unmapped = object;
        for (index, kind, paths) in &self.mapped {
            for path in *paths {
                let Some(v) = lookup(&unmapped, path) else {
                    continue;
                };
                let cell = if *index == self.idx.time {
                    parse_time(v)
                } else {
                    coerce(v, *kind)
                };
                if let Some(cell) = cell {
                    cells[*index] = cell;
                    remove_path(&mut unmapped, path);
                    break;
                }
            }
        }
        if cells[self.idx.time] == Cell::Null {
            cells[self.idx.time] = Cell::Int(prov.ingest_time_micros);
        }
        self.derive(&mut cells, &mut unmapped);
        cells[self.idx.raw] = Cell::Str(String::from_utf8_lossy(bytes).into_owned());
        cells[self.idx.unmapped] = Cell::Str(Value::Object(unmapped).to_string());
        cells[self.idx.source_topic] = Cell::Str(prov.topic.clone());
        cells[self.idx.source_partition] =
            prov.partition.map_or(Cell::Null, |p| Cell::Int(p.into()));
        cells[self.idx.source_offset] = prov.offset.map_or(Cell::Null, Cell::Int);
        cells[self.idx.ingest_time] = Cell::Int(prov.ingest_time_micros);
        Ok(EventRow { cells })
    }

    /// Fills columns that follow from others: names from paths, hashes from
    /// Sysmon's `Hashes`, and the OCSF class when the source gave none.
    fn derive(&self, cells: &mut [Cell], unmapped: &mut Map<String, Value>) {
        let x = &self.idx;
        for (name, path) in [
            (x.process_name, x.process_path),
            (x.process_parent_name, x.process_parent_path),
            (x.file_name, x.file_path),
        ] {
            if cells[name] == Cell::Null
                && let Cell::Str(p) = &cells[path]
            {
                let base = p.rsplit(['\\', '/']).next().unwrap_or(p);
                if !base.is_empty() {
                    cells[name] = Cell::Str(base.to_string());
                }
            }
        }
        if let Some(Value::String(hashes)) = unmapped.get("Hashes").cloned() {
            let mut used = false;
            for part in hashes.split(',') {
                if let Some((algo, digest)) = part.split_once('=') {
                    let column = match algo.trim().to_ascii_uppercase().as_str() {
                        "MD5" => column_index(col::HASH_MD5),
                        "SHA1" => column_index(col::HASH_SHA1),
                        "SHA256" => column_index(col::HASH_SHA256),
                        _ => None,
                    };
                    if let Some(c) = column
                        && cells[c] == Cell::Null
                    {
                        cells[c] = Cell::Str(digest.trim().to_ascii_lowercase());
                        used = true;
                    }
                }
            }
            if used {
                unmapped.remove("Hashes");
            }
        }
        if cells[x.class_uid] == Cell::Null {
            let code = match &cells[x.event_code] {
                Cell::Str(s) => s.as_str(),
                _ => "",
            };
            let has = |i: usize| cells[i] != Cell::Null;
            let (class, activity) = if matches!(code, "4624" | "4625" | "4634" | "4648" | "4672") {
                (3002, if code == "4634" { 2 } else { 1 })
            } else if has(x.process_cmd_line)
                || (has(x.process_path) && matches!(code, "1" | "4688"))
            {
                (1007, 1)
            } else if has(x.dns_query) {
                (4003, 1)
            } else if has(x.url) || has(x.http_method) {
                (4002, 0)
            } else if has(x.api_operation) {
                (6003, 0)
            } else if has(x.src_ip) && has(x.dst_ip) {
                (4001, 0)
            } else {
                (0, 0)
            };
            if class != 0 {
                cells[x.class_uid] = Cell::Int(class);
                if cells[x.activity_id] == Cell::Null {
                    cells[x.activity_id] = Cell::Int(activity);
                }
            }
        }
        if let Cell::Int(class) = cells[x.class_uid] {
            if cells[x.category_uid] == Cell::Null {
                cells[x.category_uid] = Cell::Int(class / 1000);
            }
            if cells[x.type_uid] == Cell::Null
                && let Cell::Int(activity) = cells[x.activity_id]
            {
                cells[x.type_uid] = Cell::Int(class * 100 + activity);
            }
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Finds a dotted path, preferring a literal key with dots at each level.
fn lookup<'a>(object: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = object.get(path) {
        return Some(v);
    }
    let mut rest = path;
    let mut current = object;
    while let Some((head, tail)) = rest.split_once('.') {
        match current.get(head) {
            Some(Value::Object(inner)) => {
                if let Some(v) = inner.get(tail) {
                    return Some(v);
                }
                current = inner;
                rest = tail;
            }
            _ => return None,
        }
    }
    None
}

/// Removes what [`lookup`] found, dropping objects left empty.
fn remove_path(object: &mut Map<String, Value>, path: &str) {
    if object.remove(path).is_some() {
        return;
    }
    if let Some((head, tail)) = path.split_once('.')
        && let Some(Value::Object(inner)) = object.get_mut(head)
    {
        remove_path(inner, tail);
        if inner.is_empty() {
            object.remove(head);
        }
    }
}

/// A JSON value as a cell of `kind`, or `None` when it does not fit (it then
/// stays in `unmapped`).
fn coerce(v: &Value, kind: ColumnKind) -> Option<Cell> {
    match kind {
        ColumnKind::Utf8 => match v {
            Value::String(s) if !s.is_empty() => Some(Cell::Str(s.clone())),
            Value::Number(n) => Some(Cell::Str(n.to_string())),
            Value::Bool(b) => Some(Cell::Str(b.to_string())),
            Value::Array(items)
                if !items.is_empty() && items.iter().all(|i| !i.is_object() && !i.is_array()) =>
            {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                Some(Cell::Str(parts.join(",")))
            }
            _ => None,
        },
        ColumnKind::Int32 | ColumnKind::Int64 => {
            let n = match v {
                Value::Number(n) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))?,
                Value::String(s) => s.trim().parse::<i64>().ok()?,
                _ => return None,
            };
            if kind == ColumnKind::Int32 && i32::try_from(n).is_err() {
                return None;
            }
            Some(Cell::Int(n))
        }
        ColumnKind::Timestamp => parse_time(v),
        ColumnKind::Binary => None,
    }
}

/// Reads an event time: RFC 3339, `YYYY-MM-DD HH:MM:SS[.f]` (UTC), or epoch
/// seconds, milliseconds, microseconds or nanoseconds (chosen by magnitude).
pub fn parse_time(v: &Value) -> Option<Cell> {
    let from_number = |f: f64| -> Option<i64> {
        if !f.is_finite() || f <= 0.0 {
            return None;
        }
        let micros = if f < 1e11 {
            f * 1e6
        } else if f < 1e14 {
            f * 1e3
        } else if f < 1e17 {
            f
        } else {
            f / 1e3
        };
        Some(micros as i64)
    };
    let micros = match v {
        Value::Number(n) => from_number(n.as_f64()?)?,
        Value::String(s) => {
            let s = s.trim();
            if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
                dt.timestamp_micros()
            } else if let Ok(f) = s.parse::<f64>() {
                from_number(f)?
            } else {
                let naive = [
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M:%S%.fZ",
                ]
                .iter()
                .find_map(|fmt| chrono::NaiveDateTime::parse_from_str(s, fmt).ok())?;
                naive.and_utc().timestamp_micros()
            }
        }
        _ => return None,
    };
    Some(Cell::Int(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov() -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: Some(0),
            offset: Some(7),
            ingest_time_micros: 1_000,
        }
    }

    fn s(v: &str) -> Cell {
        Cell::Str(v.into())
    }

    #[test]
    fn maps_sysmon_process_creation() {
        let n = JsonNormalizer::new();
        let event = br#"{"EventID":1,"UtcTime":"2024-03-05 07:30:00.123","Image":"C:\\Windows\\System32\\cmd.exe","CommandLine":"cmd /c whoami","ParentImage":"C:\\Windows\\explorer.exe","Computer":"ws1","Hashes":"MD5=AA,SHA256=BB","Extra":{"x":1}}"#;
        let row = n.normalize(event, &prov()).expect("normalizes");
        assert_eq!(row.get("process_name"), Some(&s("cmd.exe")));
        assert_eq!(row.get("process_parent_name"), Some(&s("explorer.exe")));
        assert_eq!(row.get("process_cmd_line"), Some(&s("cmd /c whoami")));
        assert_eq!(row.get("device_hostname"), Some(&s("ws1")));
        assert_eq!(row.get("event_code"), Some(&s("1")));
        assert_eq!(row.get("hash_sha256"), Some(&s("bb")));
        assert_eq!(row.get("class_uid"), Some(&Cell::Int(1007)));
        assert_eq!(row.get("type_uid"), Some(&Cell::Int(100701)));
        assert_eq!(row.time(), 1_709_623_800_123_000);
        assert_eq!(row.get("unmapped"), Some(&s(r#"{"Extra":{"x":1}}"#)));
        assert_eq!(row.get("source_offset"), Some(&Cell::Int(7)));
    }

    #[test]
    fn maps_zeek_dotted_keys_and_epoch_seconds() {
        let n = JsonNormalizer::new();
        let row = n
            .normalize(br#"{"ts":1700000000.5,"id.orig_h":"10.0.0.1","id.orig_p":5353,"id.resp_h":"10.0.0.2","id.resp_p":53,"query":"example.com","proto":"udp"}"#, &prov())
            .expect("normalizes");
        assert_eq!(row.time(), 1_700_000_000_500_000);
        assert_eq!(row.get("src_ip"), Some(&s("10.0.0.1")));
        assert_eq!(row.get("dst_port"), Some(&Cell::Int(53)));
        assert_eq!(row.get("dns_query"), Some(&s("example.com")));
        assert_eq!(row.get("class_uid"), Some(&Cell::Int(4003)));
        assert_eq!(row.get("unmapped"), Some(&s("{}")));
    }

    #[test]
    fn maps_nested_ocsf_and_keeps_misfits_unmapped() {
        let n = JsonNormalizer::new();
        let row = n
            .normalize(br#"{"time":"2024-01-01T00:00:00Z","class_uid":3002,"activity_id":1,"user":{"name":"alice","x":2},"src_endpoint":{"ip":"1.2.3.4","port":"not a port"}}"#, &prov())
            .expect("normalizes");
        assert_eq!(row.get("user_name"), Some(&s("alice")));
        assert_eq!(row.get("src_ip"), Some(&s("1.2.3.4")));
        assert_eq!(row.get("src_port"), Some(&Cell::Null));
        assert_eq!(row.get("category_uid"), Some(&Cell::Int(3)));
        let Some(Cell::Str(unmapped)) = row.get("unmapped") else {
            panic!("unmapped")
        };
        let v: Value = serde_json::from_str(unmapped).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"user":{"x":2},"src_endpoint":{"port":"not a port"}})
        );
    }

    #[test]
    fn missing_time_falls_back_to_ingest_time() {
        let row = JsonNormalizer::new()
            .normalize(br#"{"a":1}"#, &prov())
            .expect("normalizes");
        assert_eq!(row.time(), 1_000);
    }

    #[test]
    fn bad_events_name_the_problem() {
        let n = JsonNormalizer::new();
        let err = n.normalize(b"{not json", &prov()).expect_err("bad json");
        assert!(err.to_string().contains("line 1 column 2"), "{err}");
        assert_eq!(
            n.normalize(b"[1,2]", &prov()),
            Err(NormalizeError::NotAnObject { found: "array" })
        );
        assert_eq!(n.normalize(b"  ", &prov()), Err(NormalizeError::Empty));
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(matches!(
            n.normalize(&big, &prov()),
            Err(NormalizeError::TooLarge { .. })
        ));
        assert!(matches!(
            n.normalize(&[0xff, 0xfe], &prov()),
            Err(NormalizeError::Json(_))
        ));
    }

    #[test]
    fn no_source_path_serves_two_columns() {
        let mut seen = std::collections::HashSet::new();
        for (column, paths) in DEFAULT_PATHS {
            for p in *paths {
                assert!(seen.insert(*p), "{p} is listed again for {column}");
            }
        }
    }

    #[test]
    fn time_formats() {
        let t = |v: Value| match parse_time(&v) {
            Some(Cell::Int(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(t(serde_json::json!(1_700_000_000)), 1_700_000_000_000_000);
        assert_eq!(
            t(serde_json::json!(1_700_000_000_123i64)),
            1_700_000_000_123_000
        );
        assert_eq!(
            t(serde_json::json!(1_700_000_000_123_456i64)),
            1_700_000_000_123_456
        );
        assert_eq!(
            t(serde_json::json!(1_700_000_000_123_456_789i64)),
            1_700_000_000_123_456
        );
        assert_eq!(
            t(serde_json::json!("2023-11-14T22:13:20+00:00")),
            1_700_000_000_000_000
        );
        assert_eq!(parse_time(&serde_json::json!("yesterday")), None);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any bytes either normalize or fail with an error; never panic,
            /// and a success always keeps the raw event.
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                if let Ok(row) = JsonNormalizer::new().normalize(&bytes, &prov()) {
                    prop_assert_eq!(row.get("raw"), Some(&Cell::Str(String::from_utf8_lossy(&bytes).into_owned())));
                }
            }

            /// Any JSON object normalizes, and its unmapped part is a JSON object.
            #[test]
            fn objects_always_normalize(keys in proptest::collection::btree_map("[a-zA-Z_.@]{1,12}", "[ -~]{0,16}", 0..8)) {
                let bytes = serde_json::to_vec(&keys).expect("json");
                let row = JsonNormalizer::new().normalize(&bytes, &prov()).expect("object normalizes");
                let Some(Cell::Str(unmapped)) = row.get("unmapped") else { panic!("unmapped") };
                prop_assert!(serde_json::from_str::<Map<String, Value>>(unmapped).is_ok());
            }
        }
    }
}
