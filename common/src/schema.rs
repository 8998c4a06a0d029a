//! The normalized event schema, defined once for every role.
//!
//! Columns follow OCSF (Open Cybersecurity Schema Framework) attribute names,
//! flattened into typed top-level columns so a hunter can type them in SQL
//! (`actor.user.name` becomes `actor_user_name`). Besides the mapped columns
//! every event keeps `raw` (the original bytes as text) and `unmapped` (every
//! source field without a column, as JSON), plus provenance columns.
//!
//! The schema is versioned. A new column is an additive change: bump
//! [`EVENT_SCHEMA_VERSION`] and append the column; never rename, retype or
//! reorder an existing one, because files written under older versions stay in
//! the lake.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Version of [`event_schema`]; stored with every catalog file.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// Version of [`dead_letter_schema`]; stored with every catalog file.
pub const DEAD_LETTER_SCHEMA_VERSION: u32 = 1;

/// Version of [`alert_schema`]; stored with every catalog file.
pub const ALERT_SCHEMA_VERSION: u32 = 1;

/// Version of [`alert_update_schema`]; stored with every catalog file.
pub const ALERT_UPDATE_SCHEMA_VERSION: u32 = 1;

/// The storage type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// UTC timestamp with microsecond precision.
    Timestamp,
    /// 32-bit signed integer (ids, ports, status codes).
    Int32,
    /// 64-bit signed integer (pids, byte counts, offsets).
    Int64,
    /// UTF-8 text.
    Utf8,
    /// Opaque bytes.
    Binary,
    /// 64-bit float (aggregates).
    Float64,
}

impl ColumnKind {
    /// The Arrow type the column is stored as.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnKind::Int32 => DataType::Int32,
            ColumnKind::Int64 => DataType::Int64,
            ColumnKind::Utf8 => DataType::Utf8,
            ColumnKind::Binary => DataType::Binary,
            ColumnKind::Float64 => DataType::Float64,
        }
    }
}

/// One column of a Spoor table.
#[derive(Debug, Clone, Copy)]
pub struct ColumnDef {
    /// Column name as typed in SQL.
    pub name: &'static str,
    /// Storage type.
    pub kind: ColumnKind,
    /// Whether the column may be null.
    pub nullable: bool,
    /// What the column holds; also stored as the Arrow field's `description`.
    pub doc: &'static str,
    /// Whether Parquet files carry a bloom filter for it (lookup columns).
    pub bloom_filter: bool,
}

/// Defines the column-name constants (with their doc comments) and the column
/// table from one list, so the documentation and the schema cannot drift apart.
macro_rules! columns {
    (
        $(#[$mod_doc:meta])* mod $module:ident, const $table:ident;
        $( $(#[doc = $doc:literal])+ $konst:ident = $name:literal : $kind:ident $(, $flag:ident)* ; )+
    ) => {
        $(#[$mod_doc])*
        pub mod $module {
            $( $(#[doc = $doc])+ pub const $konst: &str = $name; )+
        }

        #[doc = concat!("Every column of the `", stringify!($module), "` schema, in storage order.")]
        pub const $table: &[ColumnDef] = &[
            $( ColumnDef {
                name: $name,
                kind: ColumnKind::$kind,
                nullable: columns!(@nullable $($flag)*),
                doc: concat!($($doc),+),
                bloom_filter: columns!(@bloom $($flag)*),
            }, )+
        ];
    };
    (@nullable) => { true };
    (@nullable required $($rest:ident)*) => { false };
    (@nullable bloom $($rest:ident)*) => { columns!(@nullable $($rest)*) };
    (@bloom) => { false };
    (@bloom bloom $($rest:ident)*) => { true };
    (@bloom required $($rest:ident)*) => { columns!(@bloom $($rest)*) };
}

columns! {
    /// Column names of the `events` table.
    mod event_col, const EVENT_COLUMNS;

    /// When the event happened (UTC). Taken from the source's own time field;
    /// when the source has none, or it cannot be read, the ingest time.
    TIME = "time": Timestamp, required;
    /// OCSF event class, for example 1007 Process Activity, 3002 Authentication,
    /// 4001 Network Activity, 4003 DNS Activity. 0 when unknown.
    CLASS_UID = "class_uid": Int32;
    /// OCSF category (1 System, 2 Findings, 3 Identity & Access, 4 Network, 6 Application).
    CATEGORY_UID = "category_uid": Int32;
    /// OCSF activity within the class (for example 1 Launch for processes, 1 Logon for authentication).
    ACTIVITY_ID = "activity_id": Int32;
    /// OCSF type: class_uid * 100 + activity_id.
    TYPE_UID = "type_uid": Int64;
    /// OCSF severity: 0 Unknown, 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical, 6 Fatal.
    SEVERITY_ID = "severity_id": Int32;
    /// Human-readable description of the event, as the source gave it.
    MESSAGE = "message": Utf8;
    /// Product that produced the event (for example `Sysmon`, `Zeek`, `CloudTrail`).
    METADATA_PRODUCT = "metadata_product": Utf8;
    /// Log or channel name within the product (for example `Security`, `conn`).
    METADATA_LOG_NAME = "metadata_log_name": Utf8;
    /// Source-specific event code (Windows EventID, audit type), as text.
    EVENT_CODE = "event_code": Utf8;
    /// What was done with the activity: `allowed`, `denied`, `blocked`, ...
    ACTION = "action": Utf8;
    /// Outcome: `success`, `failure`, or the source's own value.
    STATUS = "status": Utf8;
    /// Source-specific detail of the outcome (failure reason, error code).
    STATUS_DETAIL = "status_detail": Utf8;
    /// Source (initiating) endpoint IP address, IPv4 or IPv6 text.
    SRC_IP = "src_ip": Utf8, bloom;
    /// Source endpoint port.
    SRC_PORT = "src_port": Int32;
    /// Source endpoint host name.
    SRC_HOSTNAME = "src_hostname": Utf8, bloom;
    /// Destination (responding) endpoint IP address, IPv4 or IPv6 text.
    DST_IP = "dst_ip": Utf8, bloom;
    /// Destination endpoint port.
    DST_PORT = "dst_port": Int32;
    /// Destination endpoint host name.
    DST_HOSTNAME = "dst_hostname": Utf8, bloom;
    /// Transport or application protocol name (`tcp`, `udp`, `http`, ...).
    NETWORK_PROTOCOL = "network_protocol": Utf8;
    /// Traffic direction as the source reports it (`inbound`, `outbound`, `lateral`).
    NETWORK_DIRECTION = "network_direction": Utf8;
    /// Bytes received by the source endpoint.
    BYTES_IN = "bytes_in": Int64;
    /// Bytes sent by the source endpoint.
    BYTES_OUT = "bytes_out": Int64;
    /// User who performed the activity (OCSF `actor.user.name`).
    ACTOR_USER_NAME = "actor_user_name": Utf8, bloom;
    /// Domain of the acting user.
    ACTOR_USER_DOMAIN = "actor_user_domain": Utf8;
    /// User the activity was about, for example the account logged on to (OCSF `user.name`).
    USER_NAME = "user_name": Utf8, bloom;
    /// Domain of the target user.
    USER_DOMAIN = "user_domain": Utf8;
    /// Logon type (Windows logon type number or the source's name for it).
    LOGON_TYPE = "logon_type": Utf8;
    /// Authentication protocol (`Kerberos`, `NTLM`, `password`, `publickey`, ...).
    AUTH_PROTOCOL = "auth_protocol": Utf8;
    /// Host name of the device that reported the event.
    DEVICE_HOSTNAME = "device_hostname": Utf8, bloom;
    /// IP address of the device that reported the event.
    DEVICE_IP = "device_ip": Utf8, bloom;
    /// Operating system of the reporting device.
    DEVICE_OS = "device_os": Utf8;
    /// Process image name without directory (`powershell.exe`).
    PROCESS_NAME = "process_name": Utf8, bloom;
    /// Process id.
    PROCESS_PID = "process_pid": Int64;
    /// Full path of the process image.
    PROCESS_PATH = "process_path": Utf8;
    /// Process command line.
    PROCESS_CMD_LINE = "process_cmd_line": Utf8;
    /// Source-assigned unique process id (Sysmon ProcessGuid).
    PROCESS_UID = "process_uid": Utf8;
    /// Parent process image name without directory.
    PROCESS_PARENT_NAME = "process_parent_name": Utf8;
    /// Parent process id.
    PROCESS_PARENT_PID = "process_parent_pid": Int64;
    /// Full path of the parent process image.
    PROCESS_PARENT_PATH = "process_parent_path": Utf8;
    /// Parent process command line.
    PROCESS_PARENT_CMD_LINE = "process_parent_cmd_line": Utf8;
    /// Path of the file acted on.
    FILE_PATH = "file_path": Utf8;
    /// Name of the file acted on, without directory.
    FILE_NAME = "file_name": Utf8;
    /// MD5 of the file or process image, lowercase hex.
    HASH_MD5 = "hash_md5": Utf8, bloom;
    /// SHA-1 of the file or process image, lowercase hex.
    HASH_SHA1 = "hash_sha1": Utf8, bloom;
    /// SHA-256 of the file or process image, lowercase hex.
    HASH_SHA256 = "hash_sha256": Utf8, bloom;
    /// Registry key path acted on.
    REGISTRY_KEY = "registry_key": Utf8;
    /// Registry value name or data acted on.
    REGISTRY_VALUE = "registry_value": Utf8;
    /// DNS query name.
    DNS_QUERY = "dns_query": Utf8, bloom;
    /// DNS answers, as the source gave them.
    DNS_ANSWER = "dns_answer": Utf8;
    /// DNS response code (`NOERROR`, `NXDOMAIN`, ...).
    DNS_RCODE = "dns_rcode": Utf8;
    /// Full URL requested.
    URL = "url": Utf8, bloom;
    /// HTTP request method.
    HTTP_METHOD = "http_method": Utf8;
    /// HTTP response status code.
    HTTP_STATUS = "http_status": Int32;
    /// HTTP user agent.
    HTTP_USER_AGENT = "http_user_agent": Utf8;
    /// Cloud provider (`AWS`, `Azure`, `GCP`).
    CLOUD_PROVIDER = "cloud_provider": Utf8;
    /// Cloud region.
    CLOUD_REGION = "cloud_region": Utf8;
    /// Cloud account or subscription id.
    CLOUD_ACCOUNT_UID = "cloud_account_uid": Utf8;
    /// API operation called (CloudTrail `eventName`).
    API_OPERATION = "api_operation": Utf8;
    /// API service called (CloudTrail `eventSource`).
    API_SERVICE = "api_service": Utf8;
    /// The original event exactly as received, as UTF-8 text.
    RAW = "raw": Utf8, required;
    /// Every source field that has no column, as a JSON object (`{}` when none).
    UNMAPPED = "unmapped": Utf8, required;
    /// Where the event came from: Kafka topic, or `http:<source>` for HTTP ingest.
    SOURCE_TOPIC = "source_topic": Utf8, required;
    /// Kafka partition; null for HTTP ingest.
    SOURCE_PARTITION = "source_partition": Int32;
    /// Kafka offset; for HTTP ingest the line number within the request.
    SOURCE_OFFSET = "source_offset": Int64;
    /// When Spoor received the event (UTC).
    INGEST_TIME = "ingest_time": Timestamp, required;
}

columns! {
    /// Column names of the `dead_letter` table.
    mod dead_letter_col, const DEAD_LETTER_COLUMNS;

    /// When Spoor received the event (UTC); dead letters are partitioned by it.
    TIME = "time": Timestamp, required;
    /// Where the event came from: Kafka topic, or `http:<source>` for HTTP ingest.
    SOURCE_TOPIC = "source_topic": Utf8, required;
    /// Kafka partition; null for HTTP ingest.
    SOURCE_PARTITION = "source_partition": Int32;
    /// Kafka offset; for HTTP ingest the line number within the request.
    SOURCE_OFFSET = "source_offset": Int64;
    /// Why the event could not be ingested, naming the place in the input.
    ERROR = "error": Utf8, required;
    /// The event's bytes exactly as received.
    RAW = "raw": Binary, required;
    /// `raw` as text where it is valid UTF-8 (lossy otherwise), for reading in SQL.
    RAW_TEXT = "raw_text": Utf8, required;
}

columns! {
    /// Column names of the `alerts` table. An alert is written once, by the
    /// worker holding its shard, and never changed: its id is derived from
    /// (rule, rule version, group key, window, first event), so a replay
    /// after a failover writes the same ids and the table holds each alert
    /// once. Its triage (status, assignee) is appended to `alert_updates`;
    /// SQL's `alerts` joins the two, and these rows alone are `alert_records`.
    mod alert_col, const ALERT_COLUMNS;

    /// When the alert was raised, in event time: the time of its last
    /// matching event. Alerts are partitioned by it.
    TIME = "time": Timestamp, required;
    /// The alert's id: hex of a hash of (rule id, rule version, group key,
    /// window start, first event); the same for the same events, live or replayed.
    ALERT_ID = "alert_id": Utf8, required, bloom;
    /// The rule's `id` (its title when it has none).
    RULE_ID = "rule_id": Utf8, required, bloom;
    /// A hash of the rule's text (with the filters and rules it reads): which
    /// version of the rule raised the alert.
    RULE_VERSION = "rule_version": Utf8, required;
    /// The rule's `title`.
    RULE_TITLE = "rule_title": Utf8, required;
    /// The rule's `level` (informational, low, medium, high, critical).
    RULE_LEVEL = "rule_level": Utf8;
    /// The rule's `tags` (ATT&CK tactics and techniques), as a JSON array.
    RULE_TAGS = "rule_tags": Utf8, required;
    /// The rule set (rule group) the rule belongs to.
    RULE_SET = "rule_set": Utf8, required;
    /// The rule set's version when the alert was raised.
    RULE_SET_VERSION = "rule_set_version": Int64, required;
    /// `detection` (one event), `correlation` (a Sigma correlation rule), or
    /// `rule_disabled`: not a match but the shard disabling a rule that
    /// panicked or overran its time budget (the reason in `group_key`).
    RULE_KIND = "rule_kind": Utf8, required;
    /// The `group-by` fields and their values, as a JSON object (`{}` for one event).
    GROUP_KEY = "group_key": Utf8, required;
    /// Time of the first matching event (UTC).
    FIRST_EVENT_TIME = "first_event_time": Timestamp, required;
    /// Time of the last matching event (UTC).
    LAST_EVENT_TIME = "last_event_time": Timestamp, required;
    /// Number of matching events.
    EVENT_COUNT = "event_count": Int64, required;
    /// The aggregate a correlation's condition was checked on (count, distinct
    /// values, sum, average, percentile); null for one event.
    VALUE = "value": Float64;
    /// The matching events, as a JSON array of objects with `file` and `row`
    /// (the `events` file as first committed) and, for Kafka events, `topic`,
    /// `partition` and `offset`.
    EVENT_REFS = "event_refs": Utf8, required;
    /// `live`, or `retro_hunt` for alerts of a retro-hunt (its job in
    /// `shard`).
    ORIGIN = "origin": Utf8, required;
    /// The correlation shard (`tenant/rule set/bucket`) that raised it, or
    /// `retro:<job id>` for a retro-hunt.
    SHARD = "shard": Utf8, required;
    /// When the worker raised the alert (wall clock, UTC): MTTD is
    /// `detected_at - first_event_time`. The one column a replay may change.
    DETECTED_AT = "detected_at": Timestamp, required;
}

columns! {
    /// Column names of the `alert_updates` table: the triage history of
    /// alerts, appended to (never changed) each time an analyst sets an
    /// alert's status or assignee or adds a note through the API. Each row
    /// holds the alert's whole triage state after the change, so the
    /// latest row of an alert is its current state.
    mod alert_update_col, const ALERT_UPDATE_COLUMNS;

    /// When the change was made (the API node's wall clock, UTC). Updates
    /// are partitioned by it.
    TIME = "time": Timestamp, required;
    /// The alert changed (`alert_id` of `alerts`).
    ALERT_ID = "alert_id": Utf8, required, bloom;
    /// The alert's status after the change: `new`, `acknowledged` or `closed`.
    STATUS = "status": Utf8, required;
    /// Who the alert is assigned to after the change; null when nobody.
    ASSIGNEE = "assignee": Utf8;
    /// The analyst's note on the change, if any.
    NOTE = "note": Utf8;
    /// Who made the change: the id of the API token used; null with
    /// `query.auth = "none"`.
    UPDATED_BY = "updated_by": Utf8;
    /// The change's id: hex of a hash of its contents; orders changes made
    /// in the same microsecond.
    UPDATE_ID = "update_id": Utf8, required;
}

columns! {
    /// Column names of the `audit` table of the cluster's own tenant
    /// (`spoor`): one row per authentication failure, token change,
    /// tenant change, rule change and query, appended by the node that saw
    /// it and never changed. Only the cluster's admin reads it.
    mod audit_col, const AUDIT_COLUMNS;

    /// When it happened (the recording node's wall clock, UTC).
    TIME = "time": Timestamp, required;
    /// What happened: `auth_failure`, `token_created`, `token_revoked`,
    /// `tenant_changed`, `rule_set_changed` or `query`.
    KIND = "kind": Utf8, required, bloom;
    /// `ok`, or why it failed (the error code).
    OUTCOME = "outcome": Utf8, required;
    /// Who: the token id, `cluster` (a node, by the cluster secret), or
    /// null when no valid credential was presented.
    ACTOR = "actor": Utf8, bloom;
    /// The actor's token role, when a token was used.
    ROLE = "role": Utf8;
    /// The tenants concerned, comma-separated (the query's, the token's,
    /// the tenant changed).
    TENANTS = "tenants": Utf8;
    /// Where: `grpc`, `http`, `http_ingest`, `hec`, `flight_sql`, `postgres`.
    INTERFACE = "interface": Utf8, required;
    /// What it was done to: a token id, a tenant id, `tenant/rule set`, a
    /// query id.
    TARGET = "target": Utf8;
    /// Details: the refusal's reason, the query's SQL (cut at 16 KiB), the
    /// change.
    DETAIL = "detail": Utf8;
    /// The node that recorded it.
    NODE_ID = "node_id": Int64, required;
}

/// Version of the `audit` schema.
pub const AUDIT_SCHEMA_VERSION: u32 = 1;

/// The statuses an alert may have, from raised to done.
pub const ALERT_STATUSES: [&str; 3] = ["new", "acknowledged", "closed"];

/// Columns of `events` that the parser fills itself and no field mapping may
/// set: the original bytes, the leftovers, and where the event came from.
pub const PARSER_OWNED_COLUMNS: &[&str] = &[
    event_col::RAW,
    event_col::UNMAPPED,
    event_col::SOURCE_TOPIC,
    event_col::SOURCE_PARTITION,
    event_col::SOURCE_OFFSET,
    event_col::INGEST_TIME,
];

fn schema_of(columns: &[ColumnDef], version: u32) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            Field::new(c.name, c.kind.data_type(), c.nullable)
                .with_metadata([("description".to_string(), c.doc.trim().to_string())].into())
        })
        .collect();
    Arc::new(Schema::new_with_metadata(
        fields,
        [("spoor.schema_version".to_string(), version.to_string())].into(),
    ))
}

static EVENT_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| schema_of(EVENT_COLUMNS, EVENT_SCHEMA_VERSION));
static DEAD_LETTER_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| schema_of(DEAD_LETTER_COLUMNS, DEAD_LETTER_SCHEMA_VERSION));
static ALERT_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| schema_of(ALERT_COLUMNS, ALERT_SCHEMA_VERSION));
static ALERT_UPDATE_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| schema_of(ALERT_UPDATE_COLUMNS, ALERT_UPDATE_SCHEMA_VERSION));
static AUDIT_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| schema_of(AUDIT_COLUMNS, AUDIT_SCHEMA_VERSION));

/// The Arrow schema of the `events` table.
pub fn event_schema() -> SchemaRef {
    EVENT_SCHEMA.clone()
}

/// The Arrow schema of the `dead_letter` table.
pub fn dead_letter_schema() -> SchemaRef {
    DEAD_LETTER_SCHEMA.clone()
}

/// The Arrow schema of the `alerts` table.
pub fn alert_schema() -> SchemaRef {
    ALERT_SCHEMA.clone()
}

/// The Arrow schema of the `alert_updates` table.
pub fn alert_update_schema() -> SchemaRef {
    ALERT_UPDATE_SCHEMA.clone()
}

/// The Arrow schema of the `audit` table.
pub fn audit_schema() -> SchemaRef {
    AUDIT_SCHEMA.clone()
}

/// The tables of a tenant that this version of Spoor writes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Normalized events.
    Events,
    /// Events that could not be ingested, with the reason.
    DeadLetter,
    /// Alerts raised by detection rules.
    Alerts,
    /// The triage history of alerts (status, assignee, notes), appended
    /// through the alerts API.
    AlertUpdates,
    /// The audit trail; only the cluster's own tenant has one.
    Audit,
}

impl Table {
    /// Every table, in a stable order.
    pub const ALL: [Table; 5] = [
        Table::Events,
        Table::DeadLetter,
        Table::Alerts,
        Table::AlertUpdates,
        Table::Audit,
    ];

    /// The table's name in SQL and in object keys.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::DeadLetter => "dead_letter",
            Table::Alerts => "alerts",
            Table::AlertUpdates => "alert_updates",
            Table::Audit => "audit",
        }
    }

    /// Parses a table name.
    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_column_is_documented_and_unique() {
        for columns in [
            EVENT_COLUMNS,
            DEAD_LETTER_COLUMNS,
            ALERT_COLUMNS,
            ALERT_UPDATE_COLUMNS,
            AUDIT_COLUMNS,
        ] {
            let mut seen = HashSet::new();
            for c in columns {
                assert!(seen.insert(c.name), "duplicate column {}", c.name);
                assert!(
                    c.doc.trim().len() > 10,
                    "column {} lacks a doc comment",
                    c.name
                );
                assert!(
                    c.name
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                    "column {} is not snake_case",
                    c.name
                );
            }
        }
    }

    #[test]
    fn schema_carries_version_and_descriptions() {
        let schema = event_schema();
        assert_eq!(
            schema.metadata()["spoor.schema_version"],
            EVENT_SCHEMA_VERSION.to_string()
        );
        let time = schema
            .field_with_name(event_col::TIME)
            .expect("time column");
        assert!(!time.is_nullable());
        assert!(time.metadata()["description"].contains("When the event happened"));
        assert_eq!(schema.fields().len(), EVENT_COLUMNS.len());
        assert!(schema.field_with_name(event_col::UNMAPPED).is_ok());
        assert!(schema.field_with_name(event_col::SOURCE_OFFSET).is_ok());
    }

    #[test]
    fn lookup_columns_have_bloom_filters() {
        let bloom: Vec<_> = EVENT_COLUMNS
            .iter()
            .filter(|c| c.bloom_filter)
            .map(|c| c.name)
            .collect();
        for name in [
            "src_ip",
            "dst_ip",
            "actor_user_name",
            "device_hostname",
            "hash_sha256",
            "dns_query",
            "url",
        ] {
            assert!(bloom.contains(&name), "{name} should carry a bloom filter");
        }
        assert!(
            !EVENT_COLUMNS
                .iter()
                .find(|c| c.name == "raw")
                .expect("raw")
                .bloom_filter
        );
    }

    #[test]
    fn table_names_round_trip() {
        for t in Table::ALL {
            assert_eq!(Table::parse(t.name()), Some(t));
        }
        assert_eq!(Table::parse("nope"), None);
    }
}
