//! AWS CloudTrail records → the event schema (`source_type = "cloudtrail"`).
//!
//! Accepted shapes, told apart per input:
//!
//! - **One record** (`{"eventVersion", "eventName", "eventSource", …}`), as
//!   shippers (Logstash, Fluent Bit, Vector) forward them one per message.
//!   Shipper extras such as Logstash's `@version`/`@timestamp` stay in the
//!   fields; `@timestamp` is also read as the event time when the record has
//!   no `eventTime` (the OTRF corpus has none), because the shipper copied it
//!   from `eventTime` and it beats the ingest time.
//! - **A log file object** `{"Records": [ … ]}` as CloudTrail writes it to S3
//!   (after gunzip): every record becomes its own event whose `raw` is that
//!   record re-serialized, so a search hit shows one API call, not the file.
//!   A record that is not an object is a dead letter naming its index; the
//!   others still become events. An empty `Records` array yields nothing
//!   (there is nothing to lose). Any key beside `Records` is kept on every
//!   event under `_log_file`.
//! - **An EventBridge event** (`{"detail-type": "AWS API Call via CloudTrail",
//!   "detail": { record }}`, also the other `… via CloudTrail` types such as
//!   `AWS Console Sign In via CloudTrail`): the record is `detail`; the
//!   envelope's other keys are kept under `eventbridge`, and `raw` is the
//!   whole envelope.
//!
//! Anything else (not JSON, not an object, an object without CloudTrail's
//! keys) is a dead letter whose reason names what was expected and found.
//!
//! Mapping (see `docs/sources.md`): `eventTime` → time, `eventName` →
//! `api_operation` and `event_code`, `eventSource` → `api_service`,
//! `awsRegion` → `cloud_region`, `recipientAccountId` (else the caller's
//! account) → `cloud_account_uid`, `sourceIPAddress` → `src_ip` when it is an
//! IP address, else `src_hostname` (CloudTrail writes the calling service's
//! name, `ec2.amazonaws.com`, when a service acts for the caller), `userAgent`
//! → `http_user_agent`, the caller (`userIdentity`) → `actor_user_name` and
//! `actor_user_domain`, `errorCode`/`errorMessage` → `status` failure and
//! `status_detail`. `eventID`, `requestID`, `eventType`, `readOnly`,
//! `requestParameters`, `responseElements`, `resources` and
//! `additionalEventData` stay in the fields (`unmapped`): they are searched
//! as JSON, and no column fits them.
//!
//! Only fields copied verbatim into a column leave the fields; the sources of
//! derived columns stay there under their own names, where detections read
//! them: `sourceIPAddress` (its column depends on its content),
//! `errorCode` and `errorMessage` (joined into `status_detail`).
//!
//! Class: a `ConsoleLogin` from `signin.amazonaws.com` is Authentication
//! (3002, Logon) with its outcome from `responseElements.ConsoleLogin`;
//! every other record is API Activity (6003) with the activity taken from the
//! verb that starts `eventName` (`api_activity` has the table).

use std::net::IpAddr;

use serde_json::{Map, Value};
use spoor_common::schema::{ColumnKind, event_col as col};

use super::draft::{coerce, json_kind, keys_list, parse_object, parse_time, prefix};
use super::{Draft, NormalizeError, ParseOutput, Parsed, Parser, PartFailure, Provenance};

/// The format name in error messages (`not CloudTrail: …`).
const FORMAT: &str = "CloudTrail";

/// OCSF Authentication.
const CLASS_AUTHENTICATION: i64 = 3002;
/// OCSF API Activity.
const CLASS_API_ACTIVITY: i64 = 6003;

/// Keys of which a top-level object needs one to be taken as a record: every
/// CloudTrail record has `eventName`, `eventSource` and `eventVersion`; one
/// is enough so a partly stripped record still becomes an event (with notes).
const RECORD_KEYS: &[&str] = &["eventName", "eventSource", "eventVersion"];

/// The `source_type = "cloudtrail"` parser.
#[derive(Debug, Default)]
pub struct CloudTrailParser;

impl CloudTrailParser {
    /// A CloudTrail parser.
    pub fn new() -> Self {
        CloudTrailParser
    }
}

fn format_error(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::Format {
        format: FORMAT,
        reason: reason.into(),
    }
}

impl Parser for CloudTrailParser {
    fn parse(
        &mut self,
        input: &[u8],
        _prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError> {
        let mut object = parse_object(input)?;
        if let Some(records) = object.remove("Records") {
            return split_log_file(records, object, out);
        }
        if let Some(detail_type) = object.get("detail-type") {
            let detail_type = match detail_type {
                Value::String(s) => s.clone(),
                other => {
                    return Err(format_error(format!(
                        "`detail-type` is a JSON {}, expected the EventBridge detail type",
                        json_kind(other)
                    )));
                }
            };
            if !detail_type.ends_with("via CloudTrail") {
                return Err(format_error(format!(
                    "EventBridge event of detail-type {:?} is not a CloudTrail event \
                     (expected \"AWS API Call via CloudTrail\" or another \"… via CloudTrail\" type)",
                    prefix(&detail_type, 80)
                )));
            }
            return match object.remove("detail") {
                Some(Value::Object(mut record)) => {
                    if !object.is_empty() {
                        record.insert("eventbridge".into(), Value::Object(object));
                    }
                    out.events.push(Parsed::new(Draft::new(record)));
                    Ok(())
                }
                Some(other) => Err(format_error(format!(
                    "EventBridge `detail` is a JSON {}, expected the CloudTrail record object",
                    json_kind(&other)
                ))),
                None => Err(format_error(
                    "EventBridge event has no `detail` (the CloudTrail record)",
                )),
            };
        }
        if !RECORD_KEYS.iter().any(|k| object.contains_key(*k)) {
            return Err(format_error(format!(
                "expected a CloudTrail record (`eventName`, `eventSource`, `eventVersion`), \
                 a log file (`Records`) or an EventBridge event (`detail-type`, `detail`); \
                 found keys {}",
                keys_list(&object)
            )));
        }
        out.events.push(Parsed::new(Draft::new(object)));
        Ok(())
    }

    fn map(&self, d: &mut Draft) {
        set_default(d, col::METADATA_PRODUCT, "CloudTrail");
        set_default(d, col::CLOUD_PROVIDER, "AWS");
        // `eventType` (AwsApiCall, AwsConsoleSignIn, AwsServiceEvent, …) says
        // which kind of record it is; it is also kept in the fields.
        let log_name = d
            .field_str("eventType")
            .unwrap_or_else(|| "CloudTrail".into());
        set_default(d, col::METADATA_LOG_NAME, &log_name);

        map_time(d);

        let name = d.field_str("eventName");
        let source = d.field_str("eventSource");
        match &name {
            Some(n) => set_default(d, col::EVENT_CODE, n),
            None => d.note("eventName: missing; the API operation is unknown"),
        }
        d.take(col::API_OPERATION, &["eventName"]);
        d.take(col::API_SERVICE, &["eventSource"]);
        d.take(col::CLOUD_REGION, &["awsRegion"]);

        let caller_account = d.field_str("userIdentity.accountId");
        if !d.take(col::CLOUD_ACCOUNT_UID, &["recipientAccountId"])
            && let Some(account) = &caller_account
        {
            set_default(d, col::CLOUD_ACCOUNT_UID, account);
        }

        // Copied, not moved: which column holds it depends on its content
        // (an address, or a service name such as `AWS Internal`), so a rule
        // on `sourceIPAddress` reads it in the fields.
        if let Some(address) = d.field_str("sourceIPAddress") {
            let column = if address.trim().parse::<IpAddr>().is_ok() {
                col::SRC_IP
            } else {
                col::SRC_HOSTNAME
            };
            copy_text(d, column, "sourceIPAddress");
        }
        d.take(col::HTTP_USER_AGENT, &["userAgent"]);
        map_actor(d);

        let console_login = name.as_deref() == Some("ConsoleLogin")
            && source.as_deref() == Some("signin.amazonaws.com");
        map_outcome(d, console_login);

        if !d.is_set(col::CLASS_UID) {
            if console_login {
                d.set_class(CLASS_AUTHENTICATION, 1);
            } else {
                d.set_class(
                    CLASS_API_ACTIVITY,
                    api_activity(name.as_deref().unwrap_or("")),
                );
            }
        }
        if console_login
            && !d.is_set(col::USER_NAME)
            && let Some(actor) = d.get_str(col::ACTOR_USER_NAME).map(str::to_string)
        {
            // The account logging on is the acting identity itself.
            d.set_str(col::USER_NAME, actor);
        }
    }
}

/// Splits a log file's `Records` into one event per record.
fn split_log_file(
    records: Value,
    rest: Map<String, Value>,
    out: &mut ParseOutput,
) -> Result<(), NormalizeError> {
    let Value::Array(records) = records else {
        return Err(format_error(format!(
            "`Records` is a JSON {}, expected an array of records",
            json_kind(&records)
        )));
    };
    for (i, record) in records.into_iter().enumerate() {
        let raw = serde_json::to_vec(&record).unwrap_or_default();
        match record {
            Value::Object(mut fields) => {
                if !rest.is_empty() {
                    fields.insert("_log_file".into(), Value::Object(rest.clone()));
                }
                out.events.push(Parsed::with_raw(Draft::new(fields), raw));
            }
            other => out.failures.push(PartFailure {
                raw,
                error: format!(
                    "not {FORMAT}: Records[{i}] is a JSON {}, expected a record object",
                    json_kind(&other)
                ),
            }),
        }
    }
    Ok(())
}

/// `eventTime`, else the shipper's `@timestamp` (kept in the fields: it is
/// the shipper's, not CloudTrail's).
fn map_time(d: &mut Draft) {
    if d.take(col::TIME, &["eventTime"]) || d.is_set(col::TIME) {
        return;
    }
    let fallback = d.field("@timestamp").and_then(parse_time);
    if let Some(bad) = d.field("eventTime").map(Value::to_string) {
        d.note(format!(
            "eventTime: {} is not a readable time{}",
            prefix(&bad, 64),
            if fallback.is_some() {
                "; @timestamp is used"
            } else {
                ""
            }
        ));
    }
    if let Some(cell) = fallback {
        d.set(col::TIME, cell);
    }
}

/// The calling identity: `actor_user_name` by `userIdentity.type`, and its
/// account as `actor_user_domain`.
fn map_actor(d: &mut Draft) {
    let Some(kind) = d.field_str("userIdentity.type") else {
        if d.field("userIdentity").is_none() {
            d.note("userIdentity: missing; the caller is unknown");
        } else {
            d.note("userIdentity.type: missing; the caller's name is taken as for an IAM user");
        }
        generic_actor(d);
        d.take(col::ACTOR_USER_DOMAIN, &["userIdentity.accountId"]);
        return;
    };
    let found = match kind.as_str() {
        "Root" => {
            set_default(d, col::ACTOR_USER_NAME, "root");
            true
        }
        // The role is who holds the permissions; the session name (an
        // instance id, an SSO user's e-mail) stays in `userIdentity.arn` and
        // `principalId`.
        "AssumedRole" => {
            d.take(
                col::ACTOR_USER_NAME,
                &["userIdentity.sessionContext.sessionIssuer.userName"],
            ) || arn_name(d, true)
        }
        "AWSService" => d.take(col::ACTOR_USER_NAME, &["userIdentity.invokedBy"]),
        _ => generic_actor(d),
    };
    if !found && !d.is_set(col::ACTOR_USER_NAME) {
        d.note(format!(
            "userIdentity: no user name for a caller of type {}",
            prefix(&kind, 40)
        ));
    }
    d.take(col::ACTOR_USER_DOMAIN, &["userIdentity.accountId"]);
}

/// `userName`, else the name at the end of the ARN, else `principalId`.
fn generic_actor(d: &mut Draft) -> bool {
    d.take(col::ACTOR_USER_NAME, &["userIdentity.userName"])
        || arn_name(d, false)
        || d.take(col::ACTOR_USER_NAME, &["userIdentity.principalId"])
}

/// Sets `actor_user_name` from `userIdentity.arn` (not removed): the role of
/// `…:assumed-role/ROLE/SESSION` when `role`, else the last path segment
/// (`…:user/path/NAME`, `…:federated-user/NAME`).
fn arn_name(d: &mut Draft, role: bool) -> bool {
    if d.is_set(col::ACTOR_USER_NAME) {
        return false;
    }
    let Some(arn) = d.field_str("userIdentity.arn") else {
        return false;
    };
    let Some(resource) = arn.splitn(6, ':').nth(5) else {
        return false;
    };
    let name = match resource.strip_prefix("assumed-role/") {
        Some(rest) if role => rest.split('/').next(),
        _ => resource.rsplit('/').next(),
    };
    match name.filter(|n| !n.is_empty() && *n != resource) {
        Some(n) => {
            let n = n.to_string();
            d.set_str(col::ACTOR_USER_NAME, n);
            true
        }
        None => false,
    }
}

/// `status`, `status_detail` and `action` from the error fields, or for a
/// console sign-in from `responseElements.ConsoleLogin`.
fn map_outcome(d: &mut Draft, console_login: bool) {
    let code = d.field_str("errorCode").filter(|s| !s.is_empty());
    let message = d.field_str("errorMessage").filter(|s| !s.is_empty());
    let failed = code.is_some() || message.is_some();
    let detail = match (&code, &message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (Some(c), None) => Some(c.clone()),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    };
    // Both stay in the fields: the column joins them, and rules test each
    // (`errorCode: AccessDenied`, `errorMessage: Failed authentication`).
    if let Some(detail) = detail
        && !d.is_set(col::STATUS_DETAIL)
    {
        d.set_str(col::STATUS_DETAIL, detail);
    }
    let status = if console_login {
        match d.field_str("responseElements.ConsoleLogin").as_deref() {
            Some("Success") => "success",
            Some("Failure") => "failure",
            other => {
                d.note(format!(
                    "responseElements.ConsoleLogin: {}; the outcome is taken from errorCode/errorMessage",
                    other.map_or_else(|| "missing".to_string(), |v| format!("{:?}", prefix(v, 40)))
                ));
                if failed { "failure" } else { "success" }
            }
        }
    } else if failed {
        "failure"
    } else {
        "success"
    };
    set_default(d, col::STATUS, status);
    if let Some(code) = &code
        && (code.contains("AccessDenied") || code.contains("Unauthorized"))
    {
        set_default(d, col::ACTION, "denied");
    }
}

/// The OCSF API Activity id (1 Create, 2 Read, 3 Update, 4 Delete, 99 Other)
/// of a CloudTrail `eventName`, from the verb it starts with. A verb matches
/// only as a whole word (`Settings…` is not `Set`). `PutObject` stores a new
/// object, so it is Create; other `Put…` calls (`PutBucketPolicy`,
/// `PutUserPolicy`) replace settings, so they are Update.
pub(crate) fn api_activity(event_name: &str) -> i64 {
    const CREATE: &[&str] = &[
        "Create", "Run", "Allocate", "Import", "Register", "Copy", "Upload",
    ];
    const READ: &[&str] = &[
        "Get", "Describe", "List", "Head", "Lookup", "Search", "Scan", "Query", "Select",
        "BatchGet", "Download",
    ];
    const UPDATE: &[&str] = &[
        "Update",
        "Modify",
        "Put",
        "Set",
        "Attach",
        "Associate",
        "Add",
        "Enable",
        "Disable",
        "Change",
        "Replace",
        "Reset",
        "Tag",
        "Untag",
        "Authorize",
        "Revoke",
        "Start",
        "Stop",
        "Reboot",
        "Assign",
        "Apply",
    ];
    const DELETE: &[&str] = &[
        "Delete",
        "Remove",
        "Terminate",
        "Detach",
        "Disassociate",
        "Deregister",
        "Release",
        "Purge",
    ];
    if starts_with_verb(event_name, "PutObject") {
        return 1;
    }
    for (verbs, activity) in [(CREATE, 1), (READ, 2), (UPDATE, 3), (DELETE, 4)] {
        if verbs.iter().any(|v| starts_with_verb(event_name, v)) {
            return activity;
        }
    }
    99
}

/// Whether `name` starts with the word `verb` (followed by an upper-case
/// letter, a digit or nothing).
fn starts_with_verb(name: &str, verb: &str) -> bool {
    name.strip_prefix(verb).is_some_and(|rest| {
        rest.chars()
            .next()
            .is_none_or(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

/// Sets a text column unless the configured mapping already did.
fn set_default(d: &mut Draft, column: &str, value: &str) {
    if !d.is_set(column) {
        d.set_str(column, value);
    }
}

/// Copies the field at `path` into a text column as it is (as
/// [`Draft::take`] would), leaving it in the fields; does nothing when the
/// column is set or the value does not fit.
fn copy_text(d: &mut Draft, column: &str, path: &str) {
    if d.is_set(column) {
        return;
    }
    if let Some(cell) = d.field(path).and_then(|v| coerce(v, ColumnKind::Utf8)) {
        d.set(column, cell);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::draft::{MAX_EVENT_BYTES, NOTES_KEY};
    use crate::parse::{Decoded, Decoder, EventRow, SourceType};

    const INGEST: i64 = 1_800_000_000_000_000;

    fn prov() -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: None,
            offset: Some(1),
            ingest_time_micros: INGEST,
        }
    }

    /// Decodes one input: (events, dead-letter errors).
    fn decode(input: &[u8]) -> (Vec<EventRow>, Vec<String>) {
        let mut out = Vec::new();
        Decoder::for_type(SourceType::Cloudtrail).decode(input, &prov(), &mut out);
        split(out)
    }

    fn split(out: Vec<Decoded>) -> (Vec<EventRow>, Vec<String>) {
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
        let (mut events, dead) = decode(input.as_bytes());
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn unmapped(row: &EventRow) -> Value {
        serde_json::from_str(row.get_str("unmapped").expect("unmapped")).expect("json")
    }

    fn text<'a>(row: &'a EventRow, column: &str) -> Option<&'a str> {
        row.get_str(column)
    }

    const IAM_USER_DESCRIBE: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDAEXAMPLE","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","accessKeyId":"AKIAEXAMPLE","userName":"alice"},"eventTime":"2024-03-05T07:30:00Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"eu-west-1","sourceIPAddress":"203.0.113.7","userAgent":"aws-cli/2.15.0","requestParameters":{"instancesSet":{}},"responseElements":null,"requestID":"req-1","eventID":"evt-1","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}"#;

    #[test]
    fn single_record_maps_an_api_call() {
        let row = one(IAM_USER_DESCRIBE);
        assert_eq!(row.time(), 1_709_623_800_000_000);
        assert_eq!(row.get_int("class_uid"), Some(6003));
        assert_eq!(row.get_int("activity_id"), Some(2));
        assert_eq!(row.get_int("type_uid"), Some(600_302));
        assert_eq!(row.get_int("category_uid"), Some(6));
        assert_eq!(text(&row, "api_operation"), Some("DescribeInstances"));
        assert_eq!(text(&row, "event_code"), Some("DescribeInstances"));
        assert_eq!(text(&row, "api_service"), Some("ec2.amazonaws.com"));
        assert_eq!(text(&row, "cloud_region"), Some("eu-west-1"));
        assert_eq!(text(&row, "cloud_account_uid"), Some("111122223333"));
        assert_eq!(text(&row, "cloud_provider"), Some("AWS"));
        assert_eq!(text(&row, "src_ip"), Some("203.0.113.7"));
        assert_eq!(text(&row, "src_hostname"), None);
        assert_eq!(text(&row, "http_user_agent"), Some("aws-cli/2.15.0"));
        assert_eq!(text(&row, "actor_user_name"), Some("alice"));
        assert_eq!(text(&row, "actor_user_domain"), Some("111122223333"));
        assert_eq!(text(&row, "status"), Some("success"));
        assert_eq!(text(&row, "status_detail"), None);
        assert_eq!(text(&row, "metadata_product"), Some("CloudTrail"));
        assert_eq!(text(&row, "metadata_log_name"), Some("AwsApiCall"));
        assert_eq!(text(&row, "raw"), Some(IAM_USER_DESCRIBE));
        let u = unmapped(&row);
        assert_eq!(u["eventID"], "evt-1");
        assert_eq!(u["requestID"], "req-1");
        assert_eq!(u["eventType"], "AwsApiCall");
        assert_eq!(u["readOnly"], true);
        assert_eq!(
            u["requestParameters"],
            serde_json::json!({"instancesSet":{}})
        );
        assert_eq!(
            u["userIdentity"]["arn"],
            "arn:aws:iam::111122223333:user/alice"
        );
        assert!(u.get(NOTES_KEY).is_none(), "{u}");
    }

    #[test]
    fn callers_of_every_identity_type() {
        // AssumedRole: the session issuer's (role's) name.
        let row = one(
            r#"{"eventVersion":"1.08","eventTime":"2024-03-05T07:30:00Z","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"us-east-1","sourceIPAddress":"2001:db8::1","userIdentity":{"type":"AssumedRole","principalId":"AROA:i-0abc","arn":"arn:aws:sts::111122223333:assumed-role/WebRole/i-0abc","accountId":"111122223333","sessionContext":{"sessionIssuer":{"type":"Role","userName":"WebRole","arn":"arn:aws:iam::111122223333:role/WebRole"}}}}"#,
        );
        assert_eq!(text(&row, "actor_user_name"), Some("WebRole"));
        assert_eq!(text(&row, "actor_user_domain"), Some("111122223333"));
        // No recipientAccountId: the caller's account.
        assert_eq!(text(&row, "cloud_account_uid"), Some("111122223333"));
        assert_eq!(text(&row, "src_ip"), Some("2001:db8::1"));
        assert_eq!(row.get_int("activity_id"), Some(2));
        assert_eq!(
            unmapped(&row)["userIdentity"]["arn"],
            "arn:aws:sts::111122223333:assumed-role/WebRole/i-0abc"
        );

        // AssumedRole without a session issuer: the role from the ARN.
        let row = one(
            r#"{"eventName":"PutObject","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::111122223333:assumed-role/Deploy/bob@example.com"}}"#,
        );
        assert_eq!(text(&row, "actor_user_name"), Some("Deploy"));
        assert_eq!(row.get_int("activity_id"), Some(1));

        // AWSService: the invoking service; sourceIPAddress is a service name.
        let row = one(
            r#"{"eventName":"AssumeRole","eventSource":"sts.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","sourceIPAddress":"ec2.amazonaws.com","userAgent":"ec2.amazonaws.com","userIdentity":{"type":"AWSService","invokedBy":"ec2.amazonaws.com"},"recipientAccountId":"111122223333"}"#,
        );
        assert_eq!(text(&row, "actor_user_name"), Some("ec2.amazonaws.com"));
        assert_eq!(text(&row, "actor_user_domain"), None);
        assert_eq!(text(&row, "src_hostname"), Some("ec2.amazonaws.com"));
        assert_eq!(text(&row, "src_ip"), None);
        assert_eq!(row.get_int("activity_id"), Some(99));

        // Root.
        let row = one(
            r#"{"eventName":"DeleteTrail","eventSource":"cloudtrail.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"}}"#,
        );
        assert_eq!(text(&row, "actor_user_name"), Some("root"));
        assert_eq!(text(&row, "actor_user_domain"), Some("111122223333"));
        assert_eq!(row.get_int("activity_id"), Some(4));

        // FederatedUser without userName: the ARN's last segment.
        let row = one(
            r#"{"eventName":"ListBuckets","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","userIdentity":{"type":"FederatedUser","arn":"arn:aws:sts::111122223333:federated-user/carol","accountId":"111122223333"}}"#,
        );
        assert_eq!(text(&row, "actor_user_name"), Some("carol"));
    }

    #[test]
    fn errors_mark_failures() {
        let row = one(
            r#"{"eventName":"CreateUser","eventSource":"iam.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","userIdentity":{"type":"IAMUser","userName":"mallory","accountId":"1"},"errorCode":"AccessDenied","errorMessage":"User: arn:aws:iam::1:user/mallory is not authorized to perform: iam:CreateUser"}"#,
        );
        assert_eq!(text(&row, "status"), Some("failure"));
        assert_eq!(
            text(&row, "status_detail"),
            Some(
                "AccessDenied: User: arn:aws:iam::1:user/mallory is not authorized to perform: iam:CreateUser"
            )
        );
        assert_eq!(text(&row, "action"), Some("denied"));
        assert_eq!(row.get_int("activity_id"), Some(1));
        let u = unmapped(&row);
        assert_eq!(u["errorCode"], "AccessDenied");
        assert!(u["errorMessage"].is_string(), "{u}");

        let row = one(
            r#"{"eventName":"RunInstances","eventSource":"ec2.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","userIdentity":{"type":"IAMUser","userName":"a"},"errorCode":"Client.InstanceLimitExceeded"}"#,
        );
        assert_eq!(text(&row, "status"), Some("failure"));
        assert_eq!(
            text(&row, "status_detail"),
            Some("Client.InstanceLimitExceeded")
        );
        assert_eq!(text(&row, "action"), None);
    }

    #[test]
    fn error_fields_stay_beside_status_detail() {
        // Joined into status_detail, and each kept under its own name for
        // rules (`errorCode: AccessDenied`, `errorMessage: ...`).
        let row = one(
            r#"{"eventName":"GetObject","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","userIdentity":{"type":"IAMUser","userName":"a"},"errorCode":"AccessDenied","errorMessage":"Access Denied"}"#,
        );
        assert_eq!(
            text(&row, "status_detail"),
            Some("AccessDenied: Access Denied")
        );
        assert_eq!(text(&row, "action"), Some("denied"));
        let u = unmapped(&row);
        assert_eq!(u["errorCode"], "AccessDenied");
        assert_eq!(u["errorMessage"], "Access Denied");

        // A console sign-in failure: only errorMessage.
        let row = one(
            r#"{"eventTime":"2024-03-05T07:30:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","userIdentity":{"type":"IAMUser","userName":"alice"},"responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"Failed authentication"}"#,
        );
        assert_eq!(text(&row, "status_detail"), Some("Failed authentication"));
        let u = unmapped(&row);
        assert_eq!(u["errorMessage"], "Failed authentication");
        assert!(u.get("errorCode").is_none(), "{u}");

        // Only errorCode.
        let row = one(
            r#"{"eventName":"RunInstances","eventTime":"2024-03-05T07:30:00Z","errorCode":"Client.UnauthorizedOperation"}"#,
        );
        assert_eq!(
            text(&row, "status_detail"),
            Some("Client.UnauthorizedOperation")
        );
        assert_eq!(unmapped(&row)["errorCode"], "Client.UnauthorizedOperation");
    }

    #[test]
    fn source_ip_address_stays_whatever_column_takes_it() {
        // The column depends on the content, so the field is always kept.
        for (address, column, other) in [
            ("203.0.113.7", "src_ip", "src_hostname"),
            ("2001:db8::1", "src_ip", "src_hostname"),
            ("AWS Internal", "src_hostname", "src_ip"),
            ("ec2.amazonaws.com", "src_hostname", "src_ip"),
        ] {
            let row = one(&format!(
                r#"{{"eventName":"GetObject","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","sourceIPAddress":"{address}","userIdentity":{{"type":"IAMUser","userName":"a"}}}}"#
            ));
            assert_eq!(text(&row, column), Some(address), "{address}");
            assert_eq!(text(&row, other), None, "{address}");
            assert_eq!(unmapped(&row)["sourceIPAddress"], address, "{address}");
        }
        // A value no column takes stays as it is.
        let row = one(
            r#"{"eventName":"GetObject","eventTime":"2024-03-05T07:30:00Z","sourceIPAddress":{"x":1}}"#,
        );
        assert_eq!(text(&row, "src_ip"), None);
        assert_eq!(text(&row, "src_hostname"), None);
        assert_eq!(
            unmapped(&row)["sourceIPAddress"],
            serde_json::json!({"x": 1})
        );
    }

    #[test]
    fn console_login_is_authentication() {
        let ok = one(
            r#"{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","principalId":"AIDA","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333","userName":"alice"},"eventTime":"2024-03-05T07:30:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.9","userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{"ConsoleLogin":"Success"},"additionalEventData":{"LoginTo":"https://console.aws.amazon.com/","MobileVersion":"No","MFAUsed":"Yes"},"eventID":"e","eventType":"AwsConsoleSignIn","recipientAccountId":"111122223333"}"#,
        );
        assert_eq!(ok.get_int("class_uid"), Some(3002));
        assert_eq!(ok.get_int("activity_id"), Some(1));
        assert_eq!(ok.get_int("type_uid"), Some(300_201));
        assert_eq!(text(&ok, "status"), Some("success"));
        assert_eq!(text(&ok, "user_name"), Some("alice"));
        assert_eq!(text(&ok, "actor_user_name"), Some("alice"));
        assert_eq!(text(&ok, "metadata_log_name"), Some("AwsConsoleSignIn"));
        assert_eq!(text(&ok, "event_code"), Some("ConsoleLogin"));
        let u = unmapped(&ok);
        assert_eq!(u["additionalEventData"]["MFAUsed"], "Yes");
        assert_eq!(u["responseElements"]["ConsoleLogin"], "Success");

        let failed = one(
            r#"{"eventTime":"2024-03-05T07:30:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","userIdentity":{"type":"IAMUser","accountId":"111122223333","userName":"alice"},"responseElements":{"ConsoleLogin":"Failure"},"errorMessage":"Failed authentication","eventType":"AwsConsoleSignIn"}"#,
        );
        assert_eq!(failed.get_int("class_uid"), Some(3002));
        assert_eq!(text(&failed, "status"), Some("failure"));
        assert_eq!(
            text(&failed, "status_detail"),
            Some("Failed authentication")
        );
    }

    #[test]
    fn log_file_records_become_events_with_their_own_raw() {
        let file = format!(
            r#"{{"Records":[{IAM_USER_DESCRIBE},"oops",{{"eventName":"ListBuckets","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T07:31:00Z","userIdentity":{{"type":"IAMUser","userName":"bob"}}}}]}}"#
        );
        let (events, dead) = decode(file.as_bytes());
        assert_eq!(events.len(), 2);
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0].contains("Records[1] is a JSON string, expected a record object"),
            "{}",
            dead[0]
        );
        let first: Value =
            serde_json::from_str(text(&events[0], "raw").expect("raw")).expect("json");
        let expected: Value = serde_json::from_str(IAM_USER_DESCRIBE).expect("json");
        assert_eq!(first, expected);
        assert_eq!(text(&events[0], "actor_user_name"), Some("alice"));
        assert_eq!(text(&events[1], "actor_user_name"), Some("bob"));
        assert_eq!(text(&events[1], "api_operation"), Some("ListBuckets"));
        assert!(!text(&events[1], "raw").expect("raw").contains("Records"));

        // An empty file has nothing to lose.
        let (events, dead) = decode(br#"{"Records":[]}"#);
        assert!(events.is_empty() && dead.is_empty());
    }

    #[test]
    fn eventbridge_envelope_unwraps_detail() {
        let input = r#"{"version":"0","id":"eb-1","detail-type":"AWS API Call via CloudTrail","source":"aws.iam","account":"111122223333","time":"2024-03-05T07:30:01Z","region":"us-east-1","resources":[],"detail":{"eventVersion":"1.08","userIdentity":{"type":"IAMUser","userName":"alice","accountId":"111122223333"},"eventTime":"2024-03-05T07:30:00Z","eventSource":"iam.amazonaws.com","eventName":"AttachUserPolicy","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","requestParameters":{"userName":"bob","policyArn":"arn:aws:iam::aws:policy/AdministratorAccess"},"eventType":"AwsApiCall","recipientAccountId":"111122223333"}}"#;
        let row = one(input);
        assert_eq!(row.time(), 1_709_623_800_000_000);
        assert_eq!(text(&row, "api_operation"), Some("AttachUserPolicy"));
        assert_eq!(row.get_int("activity_id"), Some(3));
        assert_eq!(text(&row, "actor_user_name"), Some("alice"));
        assert_eq!(text(&row, "raw"), Some(input));
        let u = unmapped(&row);
        assert_eq!(u["eventbridge"]["id"], "eb-1");
        assert_eq!(
            u["requestParameters"]["policyArn"],
            "arn:aws:iam::aws:policy/AdministratorAccess"
        );
    }

    #[test]
    fn activity_from_the_event_name_verb() {
        for (name, activity) in [
            ("CreateUser", 1),
            ("RunInstances", 1),
            ("PutObject", 1),
            ("CopyObject", 1),
            ("GetObject", 2),
            ("DescribeInstances", 2),
            ("ListBuckets", 2),
            ("HeadObject", 2),
            ("LookupEvents", 2),
            ("BatchGetItem", 2),
            ("UpdateFunctionCode20150331v2", 3),
            ("ModifyInstanceAttribute", 3),
            ("PutBucketPolicy", 3),
            ("SetDefaultPolicyVersion", 3),
            ("AttachRolePolicy", 3),
            ("AssociateAddress", 3),
            ("StopLogging", 3),
            ("DeleteBucket", 4),
            ("RemoveUserFromGroup", 4),
            ("TerminateInstances", 4),
            ("DetachRolePolicy", 4),
            ("DisassociateAddress", 4),
            ("ConsoleLogin", 99),
            ("AssumeRole", 99),
            ("Decrypt", 99),
            ("Settings", 99),
            ("Getaway", 99),
            ("", 99),
        ] {
            assert_eq!(api_activity(name), activity, "{name}");
        }
    }

    #[test]
    fn odd_records_become_events_with_notes() {
        // Only eventSource: no time, no name, no caller.
        let row = one(r#"{"eventSource":"s3.amazonaws.com"}"#);
        assert_eq!(row.time(), INGEST);
        assert_eq!(row.get_int("class_uid"), Some(6003));
        assert_eq!(row.get_int("activity_id"), Some(99));
        assert_eq!(text(&row, "metadata_log_name"), Some("CloudTrail"));
        let notes = unmapped(&row)[NOTES_KEY].to_string();
        assert!(notes.contains("eventName: missing"), "{notes}");
        assert!(notes.contains("userIdentity: missing"), "{notes}");
        assert!(notes.contains("no readable time"), "{notes}");

        // An unreadable eventTime with a shipper @timestamp.
        let row = one(
            r#"{"eventName":"GetObject","eventTime":"soon","@timestamp":"2024-03-05T07:30:00.000Z","userIdentity":[1]}"#,
        );
        assert_eq!(row.time(), 1_709_623_800_000_000);
        let u = unmapped(&row);
        assert_eq!(u["eventTime"], "soon");
        assert_eq!(u["@timestamp"], "2024-03-05T07:30:00.000Z");
        let notes = u[NOTES_KEY].to_string();
        assert!(
            notes.contains("eventTime: \\\"soon\\\" is not a readable time; @timestamp is used"),
            "{notes}"
        );
        assert!(notes.contains("userIdentity.type: missing"), "{notes}");

        // Wrong-typed values stay in the fields.
        let row = one(
            r#"{"eventName":{"x":1},"eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T07:30:00Z","awsRegion":["a",{"b":1}],"sourceIPAddress":null,"userIdentity":{"type":7}}"#,
        );
        assert_eq!(text(&row, "api_operation"), None);
        assert_eq!(text(&row, "cloud_region"), None);
        let u = unmapped(&row);
        assert_eq!(u["eventName"], serde_json::json!({"x":1}));
        assert_eq!(u["awsRegion"], serde_json::json!(["a", {"b":1}]));
        assert!(
            u[NOTES_KEY]
                .to_string()
                .contains("no user name for a caller of type 7")
        );
    }

    #[test]
    fn bad_inputs_name_the_problem() {
        let cases: [(&[u8], &str); 9] = [
            (br#"{"eventName":"GetObject","eventSo"#, "EOF while parsing"),
            (b"garbage", "invalid JSON"),
            (&[0xff, 0xfe, b'{'], "invalid JSON"),
            (b"[1,2]", "expected an object"),
            (
                br#"{"foo":1,"bar":2}"#,
                "expected a CloudTrail record (`eventName`, `eventSource`, `eventVersion`), a log file (`Records`) or an EventBridge event (`detail-type`, `detail`); found keys `bar`, `foo`",
            ),
            (
                br#"{"Records":{"a":1}}"#,
                "`Records` is a JSON object, expected an array",
            ),
            (
                br#"{"detail-type":"EC2 Instance State-change Notification","detail":{}}"#,
                "is not a CloudTrail event",
            ),
            (
                br#"{"detail-type":"AWS API Call via CloudTrail","detail":"x"}"#,
                "`detail` is a JSON string, expected the CloudTrail record object",
            ),
            (b"   ", "empty"),
        ];
        for (input, says) in cases {
            let (events, dead) = decode(input);
            assert!(events.is_empty(), "{says}");
            assert_eq!(dead.len(), 1, "{says}");
            assert!(dead[0].contains(says), "{} does not say {says}", dead[0]);
            assert!(dead[0].starts_with("line 1: "), "{}", dead[0]);
        }
        let (_, dead) = decode(br#"{"detail-type":"AWS API Call via CloudTrail"}"#);
        assert!(dead[0].contains("no `detail`"), "{dead:?}");

        // Too large for one input.
        let big = format!(
            r#"{{"eventName":"GetObject","x":"{}"}}"#,
            "a".repeat(MAX_EVENT_BYTES)
        );
        let (events, dead) = decode(big.as_bytes());
        assert!(events.is_empty());
        assert!(dead[0].contains("exceeds the limit"), "{dead:?}");

        // Large but allowed values survive, and long keys are cut in errors.
        let long = "k".repeat(10_000);
        let (_, dead) = decode(format!(r#"{{"{long}":1}}"#).as_bytes());
        assert!(dead[0].len() < 400, "{}", dead[0]);
        let row = one(&format!(
            r#"{{"eventName":"GetObject","eventTime":"2024-03-05T07:30:00Z","userAgent":"{}"}}"#,
            "u".repeat(100_000)
        ));
        assert_eq!(text(&row, "http_user_agent").map(str::len), Some(100_000));
    }

    #[test]
    fn otrf_corpus_file_parses_completely() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/events/otrf-aws-cloudtrail/ec2_proxy_s3_exfiltration.jsonl"
        );
        let corpus = std::fs::read_to_string(path).expect("corpus file");
        let mut decoder = Decoder::for_type(SourceType::Cloudtrail);
        let mut out = Vec::new();
        for (i, line) in crate::parse::lines(&corpus) {
            let prov = Provenance {
                offset: Some(i64::try_from(i).expect("line")),
                ..prov()
            };
            decoder.decode(line.as_bytes(), &prov, &mut out);
        }
        let (events, dead) = split(out);
        assert_eq!(events.len(), 103);
        assert!(dead.is_empty(), "{dead:?}");
        // 2020-09-14T00:44:20Z .. 01:13:20Z, from @timestamp (no eventTime).
        for row in &events {
            assert!(
                (1_600_044_260_000_000..=1_600_046_000_000_000).contains(&row.time()),
                "{}",
                row.time()
            );
            assert_eq!(row.get_int("class_uid"), Some(6003));
            assert_eq!(text(row, "cloud_account_uid"), Some("123456789123"));
            assert!(text(row, "api_operation").is_some());
            assert!(
                text(row, "actor_user_name").is_some(),
                "{:?}",
                row.to_json()
            );
            assert_eq!(text(row, "status"), Some("success"));
            let u = unmapped(row);
            assert_eq!(u["@version"], "1");
            assert!(u.get(NOTES_KEY).is_none(), "{u}");
        }
        let count = |f: &dyn Fn(&EventRow) -> bool| events.iter().filter(|r| f(r)).count();
        assert_eq!(
            count(&|r| text(r, "api_operation") == Some("GetObject")
                && text(r, "actor_user_name")
                    == Some("MordorNginxStack-BankingWAFRole-9S3E0UAE1MM0")),
            2
        );
        let role = "MordorNginxStack-BankingWAFRole-9S3E0UAE1MM0";
        assert_eq!(count(&|r| text(r, "actor_user_name") == Some("pedro")), 87);
        assert_eq!(count(&|r| text(r, "actor_user_name") == Some(role)), 11);
        // The five AssumeRole calls by EC2 come from a service, not an IP.
        assert_eq!(
            count(&|r| text(r, "actor_user_name") == Some("ec2.amazonaws.com")
                && text(r, "src_hostname") == Some("ec2.amazonaws.com")),
            5
        );
        assert_eq!(count(&|r| text(r, "src_ip") == Some("1.2.3.4")), 98);
        // Describe*/List*/Get* dominate: all reads except AssumeRole (Other).
        assert_eq!(count(&|r| r.get_int("activity_id") == Some(2)), 98);
        assert_eq!(count(&|r| r.get_int("activity_id") == Some(99)), 5);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(
                    |f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                ),
                "\\PC{0,24}".prop_map(Value::from),
                prop::sample::select(vec![
                    "2024-03-05T07:30:00Z",
                    "ConsoleLogin",
                    "signin.amazonaws.com",
                    "AssumedRole",
                    "Root",
                    "AWSService",
                    "Success",
                    "Failure",
                    "arn:aws:sts::1:assumed-role/",
                    "::1",
                ])
                .prop_map(Value::from),
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(key(), inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "eventName",
                    "eventSource",
                    "eventTime",
                    "eventType",
                    "userIdentity",
                    "type",
                    "userName",
                    "arn",
                    "accountId",
                    "invokedBy",
                    "sessionContext",
                    "sessionIssuer",
                    "sourceIPAddress",
                    "errorCode",
                    "errorMessage",
                    "responseElements",
                    "ConsoleLogin",
                    "Records",
                    "detail-type",
                    "detail",
                    "@timestamp",
                    "recipientAccountId",
                    "awsRegion",
                ])
                .prop_map(String::from),
                "[a-zA-Z@.-]{1,10}",
            ]
        }

        proptest! {
            /// Arbitrary bytes never panic.
            #[test]
            fn bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let mut out = Vec::new();
                Decoder::for_type(SourceType::Cloudtrail).decode(&bytes, &prov(), &mut out);
                prop_assert!(!out.is_empty());
            }

            /// Objects built from CloudTrail's own keys with values of any
            /// kind never panic, and every event keeps an object `unmapped`.
            #[test]
            fn cloudtrail_shaped_objects_never_panic(
                object in prop::collection::btree_map(key(), value(), 0..8)
            ) {
                let bytes = serde_json::to_vec(&object).expect("json");
                let mut out = Vec::new();
                Decoder::for_type(SourceType::Cloudtrail).decode(&bytes, &prov(), &mut out);
                for d in out {
                    if let Decoded::Event(row) = d {
                        let u = row.get_str("unmapped").expect("unmapped");
                        prop_assert!(serde_json::from_str::<Map<String, Value>>(u).is_ok());
                        prop_assert!(row.get_int("class_uid").is_some());
                    }
                }
            }
        }
    }
}
