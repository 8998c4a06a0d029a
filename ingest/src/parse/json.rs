//! Generic JSON events → the normalized schema.
//!
//! Each column has a list of source paths, tried in order; the first present
//! value that fits the column's type wins. Paths are dotted, and a key that
//! itself contains dots (Zeek's `id.orig_h`, flattened ECS) is matched before
//! descending. A source's configured mapping (`[[ingest.sources]] fields`)
//! is tried before these defaults. Everything not consumed stays in
//! `unmapped`, and the original bytes in `raw`, so normalization never loses
//! a field.

use std::collections::BTreeMap;

use spoor_common::schema::{PARSER_OWNED_COLUMNS, event_col as col};

use super::draft::{Draft, EventRow, NormalizeError, Provenance, column_index, parse_object};

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

/// Normalizes JSON events with the generic mapping, optionally preceded by
/// a source's own field mapping.
#[derive(Debug, Clone)]
pub struct JsonNormalizer {
    /// (column index, paths) in the order they are tried.
    mapped: Vec<(usize, Vec<String>)>,
}

impl Default for JsonNormalizer {
    fn default() -> Self {
        Self::new()
    }
}

/// A column name of a field mapping that is not a column the mapping may fill.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a column a field mapping can fill (see docs/sources.md for the columns)")]
pub struct UnknownColumn(pub String);

impl JsonNormalizer {
    /// The generic JSON mapping.
    pub fn new() -> Self {
        Self::with_fields(&BTreeMap::new(), false).unwrap_or_else(|e| panic!("defaults: {e}"))
    }

    /// The generic mapping with a source's own paths per column tried first;
    /// with `only_listed`, the defaults are not used at all.
    pub fn with_fields(
        fields: &BTreeMap<String, Vec<String>>,
        only_listed: bool,
    ) -> Result<Self, UnknownColumn> {
        let mut mapped: Vec<(usize, Vec<String>)> = Vec::new();
        for (column, paths) in fields {
            let index = column_index(column)
                .filter(|_| !PARSER_OWNED_COLUMNS.contains(&column.as_str()))
                .ok_or_else(|| UnknownColumn(column.clone()))?;
            mapped.push((index, paths.clone()));
        }
        if !only_listed {
            for (column, paths) in DEFAULT_PATHS {
                let index =
                    column_index(column).ok_or_else(|| UnknownColumn((*column).to_string()))?;
                mapped.push((index, paths.iter().map(|p| (*p).to_string()).collect()));
            }
        }
        Ok(JsonNormalizer { mapped })
    }

    /// Normalizes one event.
    pub fn normalize(&self, bytes: &[u8], prov: &Provenance) -> Result<EventRow, NormalizeError> {
        let object = parse_object(bytes)?;
        let mut draft = Draft::new(object);
        self.apply(&mut draft);
        Ok(draft.finish(bytes, prov))
    }

    /// Moves every mapped field of `draft` into its column (mapped fields
    /// are taken out as they match: no source path serves two columns).
    pub fn apply(&self, draft: &mut Draft) {
        for (index, paths) in &self.mapped {
            draft.take_index(*index, paths);
        }
    }
}

/// The `json` source type: one JSON object per input.
#[derive(Debug, Clone)]
pub struct JsonParser {
    mapping: JsonNormalizer,
}

impl JsonParser {
    /// A parser with the given mapping.
    pub fn new(mapping: JsonNormalizer) -> Self {
        JsonParser { mapping }
    }
}

impl super::Parser for JsonParser {
    fn parse(
        &mut self,
        input: &[u8],
        _prov: &Provenance,
        out: &mut super::ParseOutput,
    ) -> Result<(), NormalizeError> {
        out.events
            .push(super::Parsed::new(Draft::new(parse_object(input)?)));
        Ok(())
    }

    fn map(&self, draft: &mut Draft) {
        self.mapping.apply(draft);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::draft::{Cell, MAX_EVENT_BYTES, parse_time};
    use serde_json::{Map, Value};

    fn prov() -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: Some(0),
            offset: Some(7),
            ingest_time_micros: 1_800_000_000_000_000,
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
        assert_eq!(row.time(), 1_800_000_000_000_000);
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
