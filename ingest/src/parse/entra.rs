//! Microsoft Entra ID (Azure AD) sign-in and audit logs → the event schema
//! (`source_type = "entra"`).
//!
//! The same two logs reach a SOC in three shapes, told apart per event
//! (`detect`):
//!
//! - **Microsoft Graph API** objects: `signIns` (`createdDateTime` with
//!   `status`, `appDisplayName` or `ipAddress`) and `directoryAudits`
//!   (`activityDateTime` and `activityDisplayName`). A Graph list page
//!   (`{"@odata.context", "value": [ … ]}`) is split like a batch.
//! - **Azure Monitor diagnostic export** (Event Hub, storage account): a
//!   record `{"time", "category", "operationName", "resultType",
//!   "callerIpAddress", "identity", "properties": { Graph-shaped object }}`.
//!   `category` says which log: any `…SignInLogs` (interactive,
//!   non-interactive, service principal, managed identity, AD FS) is a
//!   sign-in, `AuditLogs` an audit record; other categories (RiskyUsers,
//!   ProvisioningLogs, …) become API Activity (Other) events with a note. An
//!   Event Hub message `{"records": [ … ]}` is split: every record is its own
//!   event with `raw` = that record re-serialized; a record that is not an
//!   object or has none of these shapes is a dead letter naming its index,
//!   and the others still become events.
//! - **Microsoft Sentinel / Log Analytics rows**: `SigninLogs` (and the
//!   `AAD…SignInLogs` tables: `TimeGenerated`, `ResultType`,
//!   `UserPrincipalName` or `ServicePrincipalName`) and `AuditLogs`
//!   (`OperationName` with `InitiatedBy` or `TargetResources`). Exports write
//!   the dynamic columns (`LocationDetails`, `DeviceDetail`, `Status`,
//!   `InitiatedBy`, `TargetResources`, `AdditionalDetails`, …) as JSON
//!   *strings*; they are decoded into objects so their parts can be mapped
//!   and searched (`raw` keeps the original text). `Type` is not trusted
//!   alone: real exports overwrite it (the OTRF corpus has rows whose `Type`
//!   is the target resource type).
//!
//! An object that is none of these is a dead letter whose reason lists the
//! keys each shape needs and the keys found.
//!
//! Sign-ins are Authentication (3002) Logon. The application signed in to
//! goes to `api_service` (it is a service name such as `Microsoft Teams`, not
//! a host, so not `dst_hostname`); `auth_protocol` is `authenticationProtocol`
//! when it names one (it is `none` for most interactive sign-ins), else
//! `clientAppUsed` (`Browser`, `Exchange ActiveSync`, `IMAP4`: what
//! legacy-authentication detections look for).
//!
//! Audit records are classed by their category (`audit_class`):
//! `UserManagement` is Account Change (3001), adding or removing a member of
//! a role is Account Change Attach/Detach Policy (a privilege change),
//! `GroupManagement` and other `RoleManagement` records are Entity Management
//! (3004), everything else (ApplicationManagement, Policy, Directory…) API
//! Activity (6003); the activity comes from the operation's verb.
//!
//! Only fields copied verbatim into a column leave the fields; the sources of
//! derived columns stay there under their own names, where detections read
//! them: the sign-in result code and reason (`ResultType`, `status.errorCode`,
//! `ResultDescription`, … joined into `status_detail`), `isInteractive`
//! (turned into `logon_type`), and the audit initiator (`initiatedBy` /
//! `InitiatedBy` stays whole: rules test the object, and `actor_user_name`
//! and `src_ip` are copied out of it).

use serde_json::{Map, Value};
use spoor_common::schema::{ColumnKind, event_col as col};

use super::draft::{coerce, json_kind, keys_list, parse_int, parse_object, prefix};
use super::{Draft, NormalizeError, ParseOutput, Parsed, Parser, PartFailure, Provenance};

/// The format name in error messages (`not Entra ID: …`).
const FORMAT: &str = "Entra ID";

/// OCSF Account Change.
const CLASS_ACCOUNT_CHANGE: i64 = 3001;
/// OCSF Authentication.
const CLASS_AUTHENTICATION: i64 = 3002;
/// OCSF Entity Management.
const CLASS_ENTITY_MANAGEMENT: i64 = 3004;
/// OCSF API Activity.
const CLASS_API_ACTIVITY: i64 = 6003;

/// What each shape needs, for dead letters.
const EXPECTED: &str = "expected an Entra sign-in (Graph `createdDateTime` with `status`, \
    `appDisplayName` or `ipAddress`; Sentinel `ResultType` with `UserPrincipalName`, \
    `ServicePrincipalName` or `AppDisplayName`), an audit record (Graph `activityDateTime` \
    and `activityDisplayName`; Sentinel `OperationName` with `InitiatedBy` or \
    `TargetResources`), an Azure Monitor record (`category` and a `properties` object) \
    or a batch (`records` or `value` array)";

/// Sentinel dynamic columns that exports write as JSON text.
const EMBEDDED_JSON: &[&str] = &[
    "LocationDetails",
    "DeviceDetail",
    "Status",
    "InitiatedBy",
    "TargetResources",
    "AdditionalDetails",
    "MfaDetail",
    "ConditionalAccessPolicies",
    "AuthenticationDetails",
    "AuthenticationProcessingDetails",
    "NetworkLocationDetails",
    "RiskEventTypes",
    "RiskEventTypes_V2",
];

/// Sentinel tables of sign-ins.
const SIGN_IN_TABLES: &[&str] = &[
    "SigninLogs",
    "AADNonInteractiveUserSignInLogs",
    "AADServicePrincipalSignInLogs",
    "AADManagedIdentitySignInLogs",
    "ADFSSignInLogs",
];

/// The `source_type = "entra"` parser.
#[derive(Debug, Default)]
pub struct EntraParser;

impl EntraParser {
    /// An Entra ID parser.
    pub fn new() -> Self {
        EntraParser
    }
}

/// Which log an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SignIn,
    Audit,
    /// A diagnostic record of another category.
    Other,
}

/// How the event arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Graph,
    Diagnostic,
    Sentinel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    kind: Kind,
    origin: Origin,
}

/// The shape of one event, or `None` when it has none of them.
fn detect(f: &Map<String, Value>) -> Option<Shape> {
    let has = |k: &str| f.contains_key(k);
    let text = |k: &str| f.get(k).and_then(Value::as_str);
    let shape = |kind, origin| Some(Shape { kind, origin });
    if let (Some(Value::Object(_)), Some(category)) = (f.get("properties"), text("category")) {
        let kind = if is_sign_in_category(category) {
            Kind::SignIn
        } else if category.eq_ignore_ascii_case("AuditLogs") {
            Kind::Audit
        } else {
            Kind::Other
        };
        return shape(kind, Origin::Diagnostic);
    }
    if has("createdDateTime") && (has("status") || has("appDisplayName") || has("ipAddress")) {
        return shape(Kind::SignIn, Origin::Graph);
    }
    if has("activityDateTime") && has("activityDisplayName") {
        return shape(Kind::Audit, Origin::Graph);
    }
    let table = text("Type");
    if table.is_some_and(|t| SIGN_IN_TABLES.contains(&t))
        || (has("ResultType")
            && (has("UserPrincipalName") || has("ServicePrincipalName") || has("AppDisplayName")))
    {
        return shape(Kind::SignIn, Origin::Sentinel);
    }
    if table == Some("AuditLogs")
        || (has("OperationName") && (has("InitiatedBy") || has("TargetResources")))
    {
        return shape(Kind::Audit, Origin::Sentinel);
    }
    None
}

fn is_sign_in_category(category: &str) -> bool {
    category.to_ascii_lowercase().ends_with("signinlogs")
}

fn format_error(reason: impl Into<String>) -> NormalizeError {
    NormalizeError::Format {
        format: FORMAT,
        reason: reason.into(),
    }
}

impl Parser for EntraParser {
    fn parse(
        &mut self,
        input: &[u8],
        _prov: &Provenance,
        out: &mut ParseOutput,
    ) -> Result<(), NormalizeError> {
        let mut object = parse_object(input)?;
        if detect(&object).is_some() {
            out.events.push(Parsed::new(draft_of(object)));
            return Ok(());
        }
        for key in ["records", "value"] {
            if let Some(items) = object.remove(key) {
                return split_batch(key, items, object, out);
            }
        }
        Err(format_error(format!(
            "{EXPECTED}; found keys {}",
            keys_list(&object)
        )))
    }

    fn map(&self, d: &mut Draft) {
        set_default(d, col::METADATA_PRODUCT, "Entra ID");
        set_default(d, col::CLOUD_PROVIDER, "Azure");
        // The shape is detected again: `parse` only keeps recognized events,
        // so this fails only when the configured field mapping took the
        // keys that tell the shapes apart.
        let Some(shape) = detect(&d.fields) else {
            d.note(
                "the event lost the keys that identify an Entra sign-in or audit record \
                 (to the configured field mapping?); only the common columns are mapped",
            );
            return;
        };
        // Sentinel's `TenantId` is the Log Analytics workspace, not the
        // directory: `AADTenantId` is the directory there.
        d.take(
            col::CLOUD_ACCOUNT_UID,
            &[
                "AADTenantId",
                "tenantId",
                "properties.tenantId",
                "homeTenantId",
                "properties.homeTenantId",
                "HomeTenantId",
            ],
        );
        match shape.kind {
            Kind::SignIn => map_sign_in(d, shape.origin),
            Kind::Audit => map_audit(d, shape.origin),
            Kind::Other => map_other(d),
        }
    }
}

/// A draft over a recognized event, Sentinel's JSON-text columns decoded.
fn draft_of(fields: Map<String, Value>) -> Draft {
    let mut d = Draft::new(fields);
    for key in EMBEDDED_JSON {
        let Some(Value::String(s)) = d.fields.get(*key) else {
            continue;
        };
        let trimmed = s.trim_start();
        if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
            continue;
        }
        match serde_json::from_str::<Value>(s) {
            Ok(v) => {
                d.fields.insert((*key).to_string(), v);
            }
            Err(e) => d.note(format!("{key}: not valid JSON ({e}); kept as text")),
        }
    }
    d
}

/// Splits an Event Hub `records` batch or a Graph `value` page; keys beside
/// the array (a Graph page's `@odata.context`) are kept on every event under
/// `_batch`.
fn split_batch(
    key: &str,
    items: Value,
    rest: Map<String, Value>,
    out: &mut ParseOutput,
) -> Result<(), NormalizeError> {
    let Value::Array(items) = items else {
        return Err(format_error(format!(
            "`{key}` is a JSON {}, expected an array of records",
            json_kind(&items)
        )));
    };
    for (i, item) in items.into_iter().enumerate() {
        let raw = serde_json::to_vec(&item).unwrap_or_default();
        match item {
            Value::Object(mut fields) if detect(&fields).is_some() => {
                if !rest.is_empty() {
                    fields.insert("_batch".into(), Value::Object(rest.clone()));
                }
                out.events.push(Parsed::with_raw(draft_of(fields), raw));
            }
            Value::Object(fields) => out.failures.push(PartFailure {
                raw,
                error: format!(
                    "not {FORMAT}: {key}[{i}]: {EXPECTED}; found keys {}",
                    keys_list(&fields)
                ),
            }),
            other => out.failures.push(PartFailure {
                raw,
                error: format!(
                    "not {FORMAT}: {key}[{i}] is a JSON {}, expected a record object",
                    json_kind(&other)
                ),
            }),
        }
    }
    Ok(())
}

/// A sign-in: Authentication / Logon.
fn map_sign_in(d: &mut Draft, origin: Origin) {
    let log_name = match origin {
        Origin::Diagnostic => d.field_str("category"),
        Origin::Graph => None,
        // `Category` is the log's name there too; older rows have only the
        // table name, which is the log name with an `AAD` prefix.
        Origin::Sentinel => d.field_str("Category").or_else(|| {
            d.field_str("Type").map(|t| match t.as_str() {
                "SigninLogs" => "SignInLogs".to_string(),
                other => other.strip_prefix("AAD").unwrap_or(other).to_string(),
            })
        }),
    };
    set_default(
        d,
        col::METADATA_LOG_NAME,
        log_name.as_deref().unwrap_or("SignInLogs"),
    );
    if !d.is_set(col::CLASS_UID) {
        d.set_class(CLASS_AUTHENTICATION, 1);
    }
    d.take(
        col::TIME,
        &[
            "createdDateTime",
            "properties.createdDateTime",
            "CreatedDateTime",
            "time",
            "TimeGenerated",
        ],
    );
    let user = d.take(
        col::USER_NAME,
        &[
            "userPrincipalName",
            "properties.userPrincipalName",
            "UserPrincipalName",
            "servicePrincipalName",
            "properties.servicePrincipalName",
            "ServicePrincipalName",
        ],
    );
    if !user && !d.is_set(col::USER_NAME) {
        d.note("no userPrincipalName or servicePrincipalName: the account signing in is unknown");
    }
    d.take(
        col::SRC_IP,
        &[
            "ipAddress",
            "properties.ipAddress",
            "IPAddress",
            "callerIpAddress",
        ],
    );
    d.take(
        col::HTTP_USER_AGENT,
        &["userAgent", "properties.userAgent", "UserAgent"],
    );
    d.take(
        col::DEVICE_OS,
        &[
            "deviceDetail.operatingSystem",
            "properties.deviceDetail.operatingSystem",
            "DeviceDetail.operatingSystem",
        ],
    );
    d.take(
        col::API_SERVICE,
        &[
            "appDisplayName",
            "properties.appDisplayName",
            "AppDisplayName",
        ],
    );
    map_auth_protocol(d);
    map_logon_type(d, log_name.as_deref());
    map_sign_in_status(d);
    map_risk(d);
}

/// `authenticationProtocol` unless it is `none`, else `clientAppUsed`.
fn map_auth_protocol(d: &mut Draft) {
    if d.is_set(col::AUTH_PROTOCOL) {
        return;
    }
    for path in [
        "authenticationProtocol",
        "properties.authenticationProtocol",
        "AuthenticationProtocol",
    ] {
        if let Some(v) = d.field_str(path)
            && !v.is_empty()
            && !v.eq_ignore_ascii_case("none")
        {
            d.set_str(col::AUTH_PROTOCOL, v);
            d.remove(path);
            return;
        }
    }
    d.take(
        col::AUTH_PROTOCOL,
        &["clientAppUsed", "properties.clientAppUsed", "ClientAppUsed"],
    );
}

/// `isInteractive` as `interactive`/`non-interactive`, else what the log
/// says (non-interactive, service principal and managed identity logs).
fn map_logon_type(d: &mut Draft, log_name: Option<&str>) {
    if d.is_set(col::LOGON_TYPE) {
        return;
    }
    for path in ["isInteractive", "properties.isInteractive", "IsInteractive"] {
        let interactive = match d.field(path) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            _ => continue,
        };
        d.set_str(
            col::LOGON_TYPE,
            if interactive {
                "interactive"
            } else {
                "non-interactive"
            },
        );
        // The field stays: rules test `isInteractive` itself.
        return;
    }
    let log = log_name.unwrap_or("").to_ascii_lowercase();
    let kind = if log.contains("noninteractive") {
        "non-interactive"
    } else if log.contains("serviceprincipal") {
        "service principal"
    } else if log.contains("managedidentity") {
        "managed identity"
    } else {
        return;
    };
    d.set_str(col::LOGON_TYPE, kind);
}

/// `status` from the sign-in's error code (0 = success) and `status_detail`
/// as `code: reason` for failures. The code and the reason stay in the
/// fields (`ResultType: 50126` is what rules test).
fn map_sign_in_status(d: &mut Draft) {
    const CODES: &[&str] = &[
        "status.errorCode",
        "properties.status.errorCode",
        "ResultType",
        "resultType",
        "Status.errorCode",
    ];
    const REASONS: &[&str] = &[
        "status.failureReason",
        "properties.status.failureReason",
        "ResultDescription",
        "resultDescription",
        "Status.failureReason",
    ];
    let code = CODES.iter().find_map(|path| match d.field(path)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => parse_int(s),
        _ => None,
    });
    let Some(code) = code else {
        d.note("no sign-in result code (status.errorCode, ResultType): the outcome is unknown");
        return;
    };
    if code == 0 {
        set_default(d, col::STATUS, "success");
        return;
    }
    set_default(d, col::STATUS, "failure");
    if d.is_set(col::STATUS_DETAIL) {
        return;
    }
    let reason = REASONS
        .iter()
        .find_map(|path| d.field_str(path).filter(|r| !r.is_empty()));
    let detail = match &reason {
        Some(r) => format!("{code}: {r}"),
        None => code.to_string(),
    };
    d.set_str(col::STATUS_DETAIL, detail);
}

/// `severity_id` from the sign-in's risk level (none 1, low 2, medium 3,
/// high 4), else the record's `Level`. The field is kept: it is risk, and
/// detections query it by name.
fn map_risk(d: &mut Draft) {
    if d.is_set(col::SEVERITY_ID) {
        return;
    }
    let risk = [
        "riskLevelDuringSignIn",
        "properties.riskLevelDuringSignIn",
        "RiskLevelDuringSignIn",
    ]
    .iter()
    .find_map(|p| d.field_str(p));
    let severity = match risk.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("none") => Some(1),
        Some("low") => Some(2),
        Some("medium") => Some(3),
        Some("high") => Some(4),
        _ => None,
    };
    match severity {
        Some(s) => d.set_int(col::SEVERITY_ID, s),
        None => map_level(d),
    }
}

/// `severity_id` from Azure's `Level` (1 Critical, 2 Error, 3 Warning,
/// 4 Informational, 5 Verbose, or those names).
fn map_level(d: &mut Draft) {
    if d.is_set(col::SEVERITY_ID) {
        return;
    }
    let Some(level) = ["Level", "level"].iter().find_map(|p| d.field_str(p)) else {
        return;
    };
    let severity = match level.trim().to_ascii_lowercase().as_str() {
        "1" | "critical" => 5,
        "2" | "error" => 4,
        "3" | "warning" => 3,
        "4" | "informational" | "information" | "5" | "verbose" => 1,
        _ => return,
    };
    d.set_int(col::SEVERITY_ID, severity);
}

/// An audit record: class by category, activity by verb.
fn map_audit(d: &mut Draft, origin: Origin) {
    set_default(d, col::METADATA_LOG_NAME, "AuditLogs");
    d.take(
        col::TIME,
        &[
            "activityDateTime",
            "properties.activityDateTime",
            "ActivityDateTime",
            "time",
            "TimeGenerated",
        ],
    );
    // The display name carries the detail (`Update application – Certificates
    // and secrets management`); Sentinel repeats it as ActivityDisplayName.
    take_trimmed(
        d,
        col::API_OPERATION,
        &[
            "activityDisplayName",
            "properties.activityDisplayName",
            "OperationName",
            "ActivityDisplayName",
            "operationName",
        ],
    );
    let operation = d.get_str(col::API_OPERATION).unwrap_or("").to_string();
    if operation.is_empty() {
        d.note("no activityDisplayName or OperationName: the audited operation is unknown");
    }
    d.take(
        col::API_SERVICE,
        &[
            "loggedByService",
            "properties.loggedByService",
            "LoggedByService",
        ],
    );
    // A diagnostic record's top-level `category` is the log (`AuditLogs`);
    // the audit category is inside `properties`.
    let category = match origin {
        Origin::Graph => d.field_str("category"),
        Origin::Diagnostic => d.field_str("properties.category"),
        Origin::Sentinel => d.field_str("Category"),
    }
    .unwrap_or_default();

    // Copied, not moved, out of the initiator: `InitiatedBy` stays whole
    // for rules that test the object (`InitiatedBy|contains: <upn>`).
    let actor = copy_text(
        d,
        col::ACTOR_USER_NAME,
        &[
            "initiatedBy.user.userPrincipalName",
            "properties.initiatedBy.user.userPrincipalName",
            "InitiatedBy.user.userPrincipalName",
            "initiatedBy.app.displayName",
            "properties.initiatedBy.app.displayName",
            "InitiatedBy.app.displayName",
            "initiatedBy.app.servicePrincipalName",
            "properties.initiatedBy.app.servicePrincipalName",
            "InitiatedBy.app.servicePrincipalName",
        ],
    );
    if !actor && !d.is_set(col::ACTOR_USER_NAME) {
        d.note("initiatedBy: no user principal name or app name; the actor is unknown");
    }
    if !copy_text(
        d,
        col::SRC_IP,
        &[
            "initiatedBy.user.ipAddress",
            "properties.initiatedBy.user.ipAddress",
            "InitiatedBy.user.ipAddress",
        ],
    ) {
        d.take(col::SRC_IP, &["callerIpAddress"]);
    }
    if !d.is_set(col::USER_NAME)
        && let Some(user) = first_user_target(d)
    {
        d.set_str(col::USER_NAME, user);
    }
    map_audit_status(d);
    d.take(
        col::STATUS_DETAIL,
        &["resultReason", "properties.resultReason", "ResultReason"],
    );
    if !d.take(col::HTTP_USER_AGENT, &["UserAgent"])
        && !d.is_set(col::HTTP_USER_AGENT)
        && let Some(agent) = additional_detail(d, "User-Agent")
    {
        d.set_str(col::HTTP_USER_AGENT, agent);
    }
    map_level(d);
    if !d.is_set(col::CLASS_UID) {
        let (class, activity) = audit_class(&category, &operation);
        d.set_class(class, activity);
    }
}

/// `status` from `result`: `success`, `failure` (also `timeout`), else the
/// source's own value.
fn map_audit_status(d: &mut Draft) {
    if d.is_set(col::STATUS) {
        return;
    }
    for path in ["result", "properties.result", "Result", "resultType"] {
        let Some(result) = d.field_str(path).filter(|r| !r.is_empty()) else {
            continue;
        };
        let status = match result.to_ascii_lowercase().as_str() {
            "success" => "success".to_string(),
            "failure" | "timeout" => "failure".to_string(),
            _ => result,
        };
        d.set_str(col::STATUS, status);
        d.remove(path);
        return;
    }
    d.note("no result: the outcome is unknown");
}

/// The user principal name (else display name) of the first `User` target.
fn first_user_target(d: &Draft) -> Option<String> {
    let targets = [
        "targetResources",
        "properties.targetResources",
        "TargetResources",
    ]
    .iter()
    .find_map(|p| d.field(p).and_then(Value::as_array))?;
    let user = targets.iter().find(|t| {
        t.get("type")
            .and_then(Value::as_str)
            .is_some_and(|k| k.eq_ignore_ascii_case("User"))
    })?;
    ["userPrincipalName", "displayName"]
        .iter()
        .find_map(|k| {
            user.get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_string)
}

/// A value of the audit record's `additionalDetails` key/value list.
fn additional_detail(d: &Draft, key: &str) -> Option<String> {
    let details = [
        "additionalDetails",
        "properties.additionalDetails",
        "AdditionalDetails",
    ]
    .iter()
    .find_map(|p| d.field(p).and_then(Value::as_array))?;
    details
        .iter()
        .find(|item| item.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|item| item.get("value").and_then(Value::as_str))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// A diagnostic record of another category: API Activity, Other.
fn map_other(d: &mut Draft) {
    let category = d.field_str("category").unwrap_or_default();
    set_default(d, col::METADATA_LOG_NAME, &category);
    d.take(col::TIME, &["time"]);
    take_trimmed(d, col::API_OPERATION, &["operationName"]);
    d.take(col::SRC_IP, &["callerIpAddress"]);
    if !d.is_set(col::CLASS_UID) {
        d.set_class(CLASS_API_ACTIVITY, 99);
    }
    d.note(format!(
        "category {:?} is neither a sign-in nor an audit log; only the envelope is mapped",
        prefix(&category, 60)
    ));
}

/// The OCSF class and activity of an audit record from its category and
/// operation name.
///
/// | category | operation | class / activity |
/// | --- | --- | --- |
/// | RoleManagement | `Add … member … role …` / `Remove … member … role …` | 3001 Account Change / 7 Attach Policy, 8 Detach Policy |
/// | UserManagement | `Add`/`Create` … | 3001 / 1 Create |
/// | UserManagement | `Enable` … / `Disable` … | 3001 / 2 Enable, 5 Disable |
/// | UserManagement | … `password` … (`Reset` …) | 3001 / 4 Password Reset, else 3 Password Change |
/// | UserManagement | … registered / deleted `security info` | 3001 / 10 MFA Factor Enable, 11 MFA Factor Disable |
/// | UserManagement | `Delete`/`Remove`/`Hard delete` … | 3001 / 6 Delete |
/// | GroupManagement, other RoleManagement | by verb | 3004 Entity Management / 1 Create, 3 Update, 4 Delete, 8 Enable, 9 Disable, 99 Other |
/// | any other | by verb | 6003 API Activity / 1 Create, 3 Update, 4 Delete, 99 Other |
///
/// Verbs: `Add`/`Create` → Create, `Update`/`Set`/`Change` → Update,
/// `Delete`/`Remove`/`Hard delete` → Delete. `Add X to Y` and `Remove X from
/// Y` (members, owners, assignments) change Y, so they are Update.
pub(crate) fn audit_class(category: &str, operation: &str) -> (i64, i64) {
    let op = operation.trim().to_ascii_lowercase();
    let verb = op.split_whitespace().next().unwrap_or("");
    let membership = op.contains(" to ") || op.contains(" from ");
    if category.eq_ignore_ascii_case("RoleManagement")
        && op.contains("member")
        && op.contains("role")
    {
        match verb {
            "add" => return (CLASS_ACCOUNT_CHANGE, 7),
            "remove" => return (CLASS_ACCOUNT_CHANGE, 8),
            _ => {}
        }
    }
    if category.eq_ignore_ascii_case("UserManagement") {
        let activity = if op.contains("security info") {
            if op.contains("delete") {
                11
            } else if op.contains("regist") {
                10
            } else {
                99
            }
        } else if op.contains("password") {
            if op.contains("reset") { 4 } else { 3 }
        } else {
            match verb {
                "add" | "create" if !membership => 1,
                "enable" => 2,
                "disable" => 5,
                "delete" | "remove" | "hard" if !membership => 6,
                _ => 99,
            }
        };
        return (CLASS_ACCOUNT_CHANGE, activity);
    }
    let crud = |extra: &dyn Fn(&str) -> Option<i64>| {
        if let Some(a) = extra(verb) {
            return a;
        }
        match verb {
            _ if membership && matches!(verb, "add" | "remove") => 3,
            "add" | "create" => 1,
            "update" | "set" | "change" => 3,
            "delete" | "remove" | "hard" => 4,
            _ => 99,
        }
    };
    if category.eq_ignore_ascii_case("GroupManagement")
        || category.eq_ignore_ascii_case("RoleManagement")
    {
        let activity = crud(&|v| match v {
            "enable" => Some(8),
            "disable" => Some(9),
            _ => None,
        });
        return (CLASS_ENTITY_MANAGEMENT, activity);
    }
    (CLASS_API_ACTIVITY, crud(&|_| None))
}

/// Moves the first of `paths` that is non-blank text into `column`, trimmed.
fn take_trimmed(d: &mut Draft, column: &str, paths: &[&str]) {
    if d.is_set(column) {
        return;
    }
    for path in paths {
        if let Some(Value::String(s)) = d.field(path)
            && !s.trim().is_empty()
        {
            let value = s.trim().to_string();
            d.set_str(column, value);
            d.remove(path);
            return;
        }
    }
}

/// Sets a text column unless the configured mapping already did.
fn set_default(d: &mut Draft, column: &str, value: &str) {
    if !d.is_set(column) {
        d.set_str(column, value);
    }
}

/// Copies the first of `paths` whose value fits a text column into it, as
/// it is (as [`Draft::take`] would), leaving the field in place; returns
/// whether one did. Does nothing when the column is already set.
fn copy_text(d: &mut Draft, column: &str, paths: &[&str]) -> bool {
    if d.is_set(column) {
        return false;
    }
    let Some(cell) = paths
        .iter()
        .find_map(|p| d.field(p).and_then(|v| coerce(v, ColumnKind::Utf8)))
    else {
        return false;
    };
    d.set(column, cell);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::draft::{MAX_EVENT_BYTES, NOTES_KEY};
    use crate::parse::{Decoded, Decoder, EventRow, SourceType};

    const INGEST: i64 = 1_800_000_000_000_000;
    /// 2024-03-05T07:30:00Z.
    const T: i64 = 1_709_623_800_000_000;

    fn prov() -> Provenance {
        Provenance {
            topic: "t".into(),
            partition: None,
            offset: Some(1),
            ingest_time_micros: INGEST,
        }
    }

    fn decode(input: &[u8]) -> (Vec<EventRow>, Vec<String>) {
        let mut out = Vec::new();
        Decoder::for_type(SourceType::Entra).decode(input, &prov(), &mut out);
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

    fn class(row: &EventRow) -> (Option<i64>, Option<i64>) {
        (row.get_int("class_uid"), row.get_int("activity_id"))
    }

    const GRAPH_SIGN_IN_OK: &str = r#"{"id":"66ea54eb","createdDateTime":"2024-03-05T07:30:00Z","userDisplayName":"Alice","userPrincipalName":"alice@contoso.com","userId":"u1","appId":"a1","appDisplayName":"Microsoft Teams","ipAddress":"203.0.113.7","clientAppUsed":"Browser","correlationId":"c1","conditionalAccessStatus":"success","isInteractive":true,"riskLevelDuringSignIn":"none","status":{"errorCode":0,"failureReason":"Other.","additionalDetails":null},"deviceDetail":{"deviceId":"","displayName":"","operatingSystem":"Windows 10","browser":"Edge 122.0"},"location":{"city":"Paris","state":"Paris","countryOrRegion":"FR"}}"#;

    #[test]
    fn graph_sign_ins() {
        let row = one(GRAPH_SIGN_IN_OK);
        assert_eq!(row.time(), T);
        assert_eq!(class(&row), (Some(3002), Some(1)));
        assert_eq!(row.get_int("type_uid"), Some(300_201));
        assert_eq!(text(&row, "user_name"), Some("alice@contoso.com"));
        assert_eq!(text(&row, "src_ip"), Some("203.0.113.7"));
        assert_eq!(text(&row, "status"), Some("success"));
        assert_eq!(text(&row, "status_detail"), None);
        assert_eq!(text(&row, "device_os"), Some("Windows 10"));
        assert_eq!(text(&row, "auth_protocol"), Some("Browser"));
        assert_eq!(text(&row, "api_service"), Some("Microsoft Teams"));
        assert_eq!(text(&row, "logon_type"), Some("interactive"));
        assert_eq!(row.get_int("severity_id"), Some(1));
        assert_eq!(text(&row, "cloud_provider"), Some("Azure"));
        assert_eq!(text(&row, "metadata_product"), Some("Entra ID"));
        assert_eq!(text(&row, "metadata_log_name"), Some("SignInLogs"));
        assert_eq!(text(&row, "raw"), Some(GRAPH_SIGN_IN_OK));
        let u = unmapped(&row);
        assert_eq!(u["location"]["countryOrRegion"], "FR");
        assert_eq!(u["deviceDetail"]["browser"], "Edge 122.0");
        assert_eq!(u["conditionalAccessStatus"], "success");
        assert_eq!(u["riskLevelDuringSignIn"], "none");
        assert_eq!(u["userDisplayName"], "Alice");
        assert!(u.get(NOTES_KEY).is_none(), "{u}");

        let row = one(
            r#"{"createdDateTime":"2024-03-05T07:30:00Z","userPrincipalName":"bob@contoso.com","appDisplayName":"Office 365 Exchange Online","ipAddress":"198.51.100.4","clientAppUsed":"IMAP4","authenticationProtocol":"none","isInteractive":false,"riskLevelDuringSignIn":"medium","status":{"errorCode":50126,"failureReason":"Error validating credentials due to invalid username or password."},"userAgent":"python-requests/2.31"}"#,
        );
        assert_eq!(text(&row, "status"), Some("failure"));
        assert_eq!(
            text(&row, "status_detail"),
            Some("50126: Error validating credentials due to invalid username or password.")
        );
        assert_eq!(text(&row, "auth_protocol"), Some("IMAP4"));
        assert_eq!(text(&row, "http_user_agent"), Some("python-requests/2.31"));
        assert_eq!(text(&row, "logon_type"), Some("non-interactive"));
        assert_eq!(row.get_int("severity_id"), Some(3));
        let u = unmapped(&row);
        assert_eq!(u["authenticationProtocol"], "none");
        assert_eq!(u["status"]["errorCode"], 50126);
        assert_eq!(u["isInteractive"], false);
    }

    const DIAG_SIGN_IN: &str = r#"{"time":"2024-03-05T07:30:01.1234567Z","resourceId":"/tenants/t1/providers/Microsoft.aadiam","operationName":"Sign-in activity","operationVersion":"1.0","category":"NonInteractiveUserSignInLogs","tenantId":"t1","resultType":"0","resultSignature":"None","durationMs":0,"callerIpAddress":"198.51.100.4","correlationId":"c","identity":"Bob","Level":4,"location":"US","properties":{"id":"x","createdDateTime":"2024-03-05T07:30:00.0000000+00:00","userDisplayName":"Bob","userPrincipalName":"bob@contoso.com","userId":"u2","appId":"a","appDisplayName":"Office 365 Exchange Online","ipAddress":"198.51.100.4","status":{"errorCode":0},"clientAppUsed":"Mobile Apps and Desktop clients","userAgent":"Mozilla/5.0 (Windows NT 10.0)","deviceDetail":{"operatingSystem":"Windows10"},"authenticationProtocol":"deviceCode","riskLevelDuringSignIn":"none"}}"#;

    const DIAG_SP_SIGN_IN: &str = r#"{"time":"2024-03-05T07:30:00Z","category":"ServicePrincipalSignInLogs","operationName":"Sign-in activity","tenantId":"t1","resultType":"7000215","resultDescription":"Invalid client secret provided.","callerIpAddress":"192.0.2.1","properties":{"servicePrincipalName":"deploy-app","servicePrincipalId":"sp1","appId":"a2","ipAddress":"192.0.2.1","status":{"errorCode":7000215,"failureReason":"Invalid client secret is provided."}}}"#;

    #[test]
    fn azure_monitor_sign_ins() {
        let row = one(DIAG_SIGN_IN);
        assert_eq!(row.time(), T);
        assert_eq!(class(&row), (Some(3002), Some(1)));
        assert_eq!(
            text(&row, "metadata_log_name"),
            Some("NonInteractiveUserSignInLogs")
        );
        assert_eq!(text(&row, "user_name"), Some("bob@contoso.com"));
        assert_eq!(text(&row, "src_ip"), Some("198.51.100.4"));
        assert_eq!(text(&row, "auth_protocol"), Some("deviceCode"));
        assert_eq!(text(&row, "logon_type"), Some("non-interactive"));
        assert_eq!(
            text(&row, "http_user_agent"),
            Some("Mozilla/5.0 (Windows NT 10.0)")
        );
        assert_eq!(text(&row, "device_os"), Some("Windows10"));
        assert_eq!(
            text(&row, "api_service"),
            Some("Office 365 Exchange Online")
        );
        assert_eq!(text(&row, "cloud_account_uid"), Some("t1"));
        assert_eq!(text(&row, "status"), Some("success"));
        let u = unmapped(&row);
        assert_eq!(
            u["properties"]["clientAppUsed"],
            "Mobile Apps and Desktop clients"
        );
        assert_eq!(u["time"], "2024-03-05T07:30:01.1234567Z");
        assert_eq!(u["identity"], "Bob");

        let row = one(DIAG_SP_SIGN_IN);
        assert_eq!(
            text(&row, "metadata_log_name"),
            Some("ServicePrincipalSignInLogs")
        );
        assert_eq!(text(&row, "user_name"), Some("deploy-app"));
        assert_eq!(text(&row, "logon_type"), Some("service principal"));
        assert_eq!(text(&row, "status"), Some("failure"));
        assert_eq!(
            text(&row, "status_detail"),
            Some("7000215: Invalid client secret is provided.")
        );
        assert_eq!(
            unmapped(&row)["resultDescription"],
            "Invalid client secret provided."
        );
    }

    #[test]
    fn sentinel_sign_in_rows_with_json_text_columns() {
        let row = one(
            r#"{"TenantId":"workspace-1","SourceSystem":"Azure AD","TimeGenerated":"2024-03-05T07:31:00Z","OperationName":"Sign-in activity","Category":"SignInLogs","ResultType":"50126","ResultDescription":"Invalid username or password or Invalid on-premise username or password.","CreatedDateTime":"2024-03-05T07:30:00Z","UserPrincipalName":"carol@contoso.com","AppDisplayName":"Azure Portal","IPAddress":"192.0.2.5","ClientAppUsed":"Browser","UserAgent":"Mozilla/5.0","LocationDetails":"{\"city\":\"Berlin\",\"countryOrRegion\":\"DE\"}","DeviceDetail":"{\"operatingSystem\":\"MacOs\",\"browser\":\"Safari 17\"}","Status":"{\"errorCode\":50126,\"failureReason\":\"Invalid username or password\"}","IsInteractive":true,"AADTenantId":"t1","RiskLevelDuringSignIn":"high","Type":"SigninLogs"}"#,
        );
        assert_eq!(row.time(), T);
        assert_eq!(class(&row), (Some(3002), Some(1)));
        assert_eq!(text(&row, "metadata_log_name"), Some("SignInLogs"));
        assert_eq!(text(&row, "user_name"), Some("carol@contoso.com"));
        assert_eq!(text(&row, "src_ip"), Some("192.0.2.5"));
        assert_eq!(text(&row, "status"), Some("failure"));
        assert_eq!(
            text(&row, "status_detail"),
            Some("50126: Invalid username or password or Invalid on-premise username or password.")
        );
        assert_eq!(text(&row, "device_os"), Some("MacOs"));
        assert_eq!(text(&row, "auth_protocol"), Some("Browser"));
        assert_eq!(text(&row, "api_service"), Some("Azure Portal"));
        assert_eq!(text(&row, "http_user_agent"), Some("Mozilla/5.0"));
        assert_eq!(text(&row, "logon_type"), Some("interactive"));
        assert_eq!(text(&row, "cloud_account_uid"), Some("t1"));
        assert_eq!(row.get_int("severity_id"), Some(4));
        let u = unmapped(&row);
        assert_eq!(u["LocationDetails"]["city"], "Berlin");
        assert_eq!(u["DeviceDetail"]["browser"], "Safari 17");
        assert_eq!(u["TenantId"], "workspace-1");
        assert_eq!(u["TimeGenerated"], "2024-03-05T07:31:00Z");

        // A non-interactive table row without Category; objects, not text.
        let row = one(
            r#"{"TimeGenerated":"2024-03-05T07:30:00Z","Type":"AADNonInteractiveUserSignInLogs","UserPrincipalName":"dan@contoso.com","ResultType":0,"DeviceDetail":{"operatingSystem":"Ios"},"LocationDetails":"not json"}"#,
        );
        assert_eq!(
            text(&row, "metadata_log_name"),
            Some("NonInteractiveUserSignInLogs")
        );
        assert_eq!(text(&row, "logon_type"), Some("non-interactive"));
        assert_eq!(text(&row, "status"), Some("success"));
        assert_eq!(text(&row, "device_os"), Some("Ios"));
        assert_eq!(unmapped(&row)["LocationDetails"], "not json");
    }

    const GRAPH_AUDIT_ADD_USER: &str = r#"{"id":"Directory_1","category":"UserManagement","correlationId":"c","result":"success","resultReason":"","activityDisplayName":"Add user","activityDateTime":"2024-03-05T07:30:00Z","loggedByService":"Core Directory","operationType":"Add","initiatedBy":{"app":null,"user":{"id":"u1","displayName":null,"userPrincipalName":"admin@contoso.com","ipAddress":"203.0.113.9"}},"targetResources":[{"id":"u9","displayName":"Dave","type":"User","userPrincipalName":"dave@contoso.com","modifiedProperties":[]}],"additionalDetails":[{"key":"UserType","value":"Member"},{"key":"User-Agent","value":"Graph-SDK/1.0"}]}"#;

    #[test]
    fn graph_directory_audits() {
        let row = one(GRAPH_AUDIT_ADD_USER);
        assert_eq!(row.time(), T);
        assert_eq!(class(&row), (Some(3001), Some(1)));
        assert_eq!(row.get_int("type_uid"), Some(300_101));
        assert_eq!(text(&row, "api_operation"), Some("Add user"));
        assert_eq!(text(&row, "api_service"), Some("Core Directory"));
        assert_eq!(text(&row, "actor_user_name"), Some("admin@contoso.com"));
        assert_eq!(text(&row, "src_ip"), Some("203.0.113.9"));
        assert_eq!(text(&row, "user_name"), Some("dave@contoso.com"));
        assert_eq!(text(&row, "status"), Some("success"));
        assert_eq!(text(&row, "status_detail"), None);
        assert_eq!(text(&row, "http_user_agent"), Some("Graph-SDK/1.0"));
        assert_eq!(text(&row, "metadata_log_name"), Some("AuditLogs"));
        let u = unmapped(&row);
        assert_eq!(u["category"], "UserManagement");
        assert_eq!(u["targetResources"][0]["displayName"], "Dave");
        assert!(u.get(NOTES_KEY).is_none(), "{u}");

        // An app resetting a password, failed.
        let row = one(
            r#"{"category":"UserManagement","result":"failure","resultReason":"Insufficient privileges","activityDisplayName":"Reset user password","activityDateTime":"2024-03-05T07:30:00Z","initiatedBy":{"user":null,"app":{"appId":"x","displayName":"Password Reset Service","servicePrincipalId":"sp"}},"targetResources":[{"type":"User","displayName":"Eve"}]}"#,
        );
        assert_eq!(class(&row), (Some(3001), Some(4)));
        assert_eq!(
            text(&row, "actor_user_name"),
            Some("Password Reset Service")
        );
        assert_eq!(text(&row, "user_name"), Some("Eve"));
        assert_eq!(text(&row, "status"), Some("failure"));
        assert_eq!(text(&row, "status_detail"), Some("Insufficient privileges"));
    }

    #[test]
    fn azure_monitor_audits_by_category() {
        let record = |category: &str, operation: &str| {
            format!(
                r#"{{"time":"2024-03-05T07:30:01Z","category":"AuditLogs","operationName":"{operation}","resultType":"Success","Level":"Informational","tenantId":"t1","properties":{{"activityDateTime":"2024-03-05T07:30:00Z","activityDisplayName":"{operation}","category":"{category}","result":"success","loggedByService":"Core Directory","initiatedBy":{{"user":{{"userPrincipalName":"admin@contoso.com"}}}},"targetResources":[{{"type":"Group","displayName":"Admins"}},{{"type":"User","userPrincipalName":"eve@contoso.com"}}]}}}}"#
            )
        };
        let row = one(&record("GroupManagement", "Add member to group"));
        assert_eq!(row.time(), T);
        assert_eq!(class(&row), (Some(3004), Some(3)));
        assert_eq!(text(&row, "user_name"), Some("eve@contoso.com"));
        assert_eq!(text(&row, "actor_user_name"), Some("admin@contoso.com"));
        assert_eq!(text(&row, "status"), Some("success"));
        assert_eq!(text(&row, "cloud_account_uid"), Some("t1"));
        assert_eq!(text(&row, "metadata_log_name"), Some("AuditLogs"));
        assert_eq!(row.get_int("severity_id"), Some(1));
        assert_eq!(unmapped(&row)["resultType"], "Success");

        for (category, operation, expected) in [
            ("RoleManagement", "Add member to role", (3001, 7)),
            (
                "RoleManagement",
                "Remove eligible member from role",
                (3001, 8),
            ),
            ("RoleManagement", "Add role definition", (3004, 1)),
            ("GroupManagement", "Delete group", (3004, 4)),
            ("ApplicationManagement", "Add service principal", (6003, 1)),
            ("Policy", "Update conditional access policy", (6003, 3)),
            ("Policy", "Delete conditional access policy", (6003, 4)),
            (
                "ApplicationManagement",
                "Consent to application",
                (6003, 99),
            ),
        ] {
            let row = one(&record(category, operation));
            assert_eq!(
                class(&row),
                (Some(expected.0), Some(expected.1)),
                "{category} {operation}"
            );
            assert_eq!(text(&row, "api_operation"), Some(operation));
        }
    }

    #[test]
    fn sentinel_audit_rows_with_objects() {
        let row = one(
            r#"{"TimeGenerated":"2024-03-05T07:30:00Z","OperationName":"Delete application","Category":"ApplicationManagement","Result":"failure","ResultReason":"Object not found","InitiatedBy":{"app":{"displayName":"Terraform"}},"TargetResources":[{"type":"Application","displayName":"App1"}],"AADTenantId":"t1","TenantId":"ws","Type":"AuditLogs","Level":"4"}"#,
        );
        assert_eq!(row.time(), T);
        assert_eq!(class(&row), (Some(6003), Some(4)));
        assert_eq!(text(&row, "actor_user_name"), Some("Terraform"));
        assert_eq!(text(&row, "user_name"), None);
        assert_eq!(text(&row, "status"), Some("failure"));
        assert_eq!(text(&row, "status_detail"), Some("Object not found"));
        assert_eq!(text(&row, "cloud_account_uid"), Some("t1"));
        assert_eq!(row.get_int("severity_id"), Some(1));
    }

    #[test]
    fn event_hub_batches_split_per_record() {
        let batch = format!(
            r#"{{"records":[{DIAG_SIGN_IN},{DIAG_SP_SIGN_IN},5,{{"foo":1}},{{"time":"2024-03-05T07:30:00Z","category":"RiskyUsers","operationName":"Risky user","properties":{{"userPrincipalName":"x@contoso.com"}}}}]}}"#
        );
        let (events, dead) = decode(batch.as_bytes());
        assert_eq!(events.len(), 3);
        assert_eq!(dead.len(), 2);
        assert!(
            dead[0].contains("records[2] is a JSON number, expected a record object"),
            "{}",
            dead[0]
        );
        assert!(
            dead[1].contains("records[3]: expected an Entra sign-in"),
            "{}",
            dead[1]
        );
        assert!(dead[1].contains("found keys `foo`"), "{}", dead[1]);
        assert_eq!(text(&events[0], "user_name"), Some("bob@contoso.com"));
        let raw: Value = serde_json::from_str(text(&events[0], "raw").expect("raw")).expect("json");
        assert_eq!(
            raw,
            serde_json::from_str::<Value>(DIAG_SIGN_IN).expect("json")
        );
        assert_eq!(text(&events[1], "user_name"), Some("deploy-app"));
        // Another category: API Activity (Other), with a note.
        let other = &events[2];
        assert_eq!(class(other), (Some(6003), Some(99)));
        assert_eq!(text(other, "metadata_log_name"), Some("RiskyUsers"));
        assert_eq!(text(other, "api_operation"), Some("Risky user"));
        assert_eq!(other.time(), T);
        assert!(
            unmapped(other)[NOTES_KEY]
                .to_string()
                .contains("neither a sign-in nor an audit log")
        );

        // A Graph list page.
        let page = format!(
            r#"{{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns","value":[{GRAPH_SIGN_IN_OK},{GRAPH_AUDIT_ADD_USER}]}}"#
        );
        let (events, dead) = decode(page.as_bytes());
        assert!(dead.is_empty(), "{dead:?}");
        assert_eq!(events.len(), 2);
        assert_eq!(class(&events[1]), (Some(3001), Some(1)));
        assert_eq!(
            unmapped(&events[0])["_batch"]["@odata.context"],
            "https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns"
        );
        let (events, dead) = decode(br#"{"records":[]}"#);
        assert!(events.is_empty() && dead.is_empty());
    }

    #[test]
    fn failed_sign_in_keeps_result_code_and_reason() {
        // Graph: the status object stays whole.
        let row = one(
            r#"{"createdDateTime":"2024-03-05T07:30:00Z","userPrincipalName":"a@contoso.com","status":{"errorCode":50057,"failureReason":"User account is disabled."}}"#,
        );
        assert_eq!(
            text(&row, "status_detail"),
            Some("50057: User account is disabled.")
        );
        let u = unmapped(&row);
        assert_eq!(
            u["status"],
            serde_json::json!({"errorCode":50057,"failureReason":"User account is disabled."})
        );

        // Sentinel: ResultType and ResultDescription as written (text), and
        // the decoded Status object.
        let row = one(
            r#"{"TimeGenerated":"2024-03-05T07:30:00Z","Type":"SigninLogs","UserPrincipalName":"a@contoso.com","ResultType":"53003","ResultDescription":"Access has been blocked by Conditional Access policies.","Status":"{\"errorCode\":53003}"}"#,
        );
        assert_eq!(text(&row, "status"), Some("failure"));
        assert_eq!(
            text(&row, "status_detail"),
            Some("53003: Access has been blocked by Conditional Access policies.")
        );
        let u = unmapped(&row);
        assert_eq!(u["ResultType"], "53003");
        assert_eq!(
            u["ResultDescription"],
            "Access has been blocked by Conditional Access policies."
        );
        assert_eq!(u["Status"]["errorCode"], 53003);

        // Diagnostic record: the envelope's resultType and the nested status.
        let row = one(DIAG_SP_SIGN_IN);
        let u = unmapped(&row);
        assert_eq!(u["resultType"], "7000215");
        assert_eq!(u["resultDescription"], "Invalid client secret provided.");
        assert_eq!(u["properties"]["status"]["errorCode"], 7000215);
        assert_eq!(
            u["properties"]["status"]["failureReason"],
            "Invalid client secret is provided."
        );
    }

    #[test]
    fn is_interactive_stays_beside_logon_type() {
        for (input, key, logon_type) in [
            (
                r#"{"createdDateTime":"2024-03-05T07:30:00Z","userPrincipalName":"a@contoso.com","status":{"errorCode":0},"isInteractive":true}"#,
                "isInteractive",
                "interactive",
            ),
            (
                r#"{"TimeGenerated":"2024-03-05T07:30:00Z","Type":"SigninLogs","UserPrincipalName":"a@contoso.com","ResultType":0,"IsInteractive":false}"#,
                "IsInteractive",
                "non-interactive",
            ),
            (
                r#"{"TimeGenerated":"2024-03-05T07:30:00Z","Type":"SigninLogs","UserPrincipalName":"a@contoso.com","ResultType":0,"IsInteractive":"True"}"#,
                "IsInteractive",
                "interactive",
            ),
        ] {
            let row = one(input);
            assert_eq!(text(&row, "logon_type"), Some(logon_type), "{input}");
            let original: Value = serde_json::from_str(input).expect("json");
            assert_eq!(unmapped(&row)[key], original[key], "{input}");
        }
        let row = one(
            r#"{"time":"2024-03-05T07:30:00Z","category":"SignInLogs","properties":{"userPrincipalName":"a@contoso.com","status":{"errorCode":0},"isInteractive":true}}"#,
        );
        assert_eq!(text(&row, "logon_type"), Some("interactive"));
        assert_eq!(unmapped(&row)["properties"]["isInteractive"], true);
    }

    #[test]
    fn audit_initiator_stays_whole() {
        // Graph: the user's name and address are copied out of initiatedBy.
        let row = one(GRAPH_AUDIT_ADD_USER);
        assert_eq!(text(&row, "actor_user_name"), Some("admin@contoso.com"));
        assert_eq!(text(&row, "src_ip"), Some("203.0.113.9"));
        let input: Value = serde_json::from_str(GRAPH_AUDIT_ADD_USER).expect("json");
        assert_eq!(unmapped(&row)["initiatedBy"], input["initiatedBy"]);

        // Sentinel, decoded from JSON text: an app initiator.
        let row = one(
            r#"{"TimeGenerated":"2024-03-05T07:30:00Z","OperationName":"Add service principal","Category":"ApplicationManagement","Result":"success","InitiatedBy":"{\"app\":{\"displayName\":\"Terraform\",\"servicePrincipalName\":\"spn-1\"}}","Type":"AuditLogs"}"#,
        );
        assert_eq!(text(&row, "actor_user_name"), Some("Terraform"));
        assert_eq!(
            unmapped(&row)["InitiatedBy"],
            serde_json::json!({"app":{"displayName":"Terraform","servicePrincipalName":"spn-1"}})
        );

        // Diagnostic record: properties.initiatedBy; without an address
        // there, callerIpAddress is moved.
        let row = one(
            r#"{"time":"2024-03-05T07:30:00Z","category":"AuditLogs","callerIpAddress":"192.0.2.8","properties":{"activityDateTime":"2024-03-05T07:30:00Z","activityDisplayName":"Update user","category":"UserManagement","result":"success","initiatedBy":{"user":{"userPrincipalName":"admin@contoso.com"}}}}"#,
        );
        assert_eq!(text(&row, "actor_user_name"), Some("admin@contoso.com"));
        assert_eq!(text(&row, "src_ip"), Some("192.0.2.8"));
        let u = unmapped(&row);
        assert_eq!(
            u["properties"]["initiatedBy"],
            serde_json::json!({"user":{"userPrincipalName":"admin@contoso.com"}})
        );
        assert!(u.get("callerIpAddress").is_none(), "{u}");
    }

    #[test]
    fn audit_class_table() {
        for (category, operation, expected) in [
            ("UserManagement", "Add user", (3001, 1)),
            ("UserManagement", "Enable account", (3001, 2)),
            ("UserManagement", "Change user password", (3001, 3)),
            ("UserManagement", "Reset password (self-service)", (3001, 4)),
            ("UserManagement", "Disable account", (3001, 5)),
            ("UserManagement", "Delete user", (3001, 6)),
            ("UserManagement", "Hard delete user", (3001, 6)),
            (
                "UserManagement",
                "User registered security info",
                (3001, 10),
            ),
            ("UserManagement", "User deleted security info", (3001, 11)),
            ("UserManagement", "Update user", (3001, 99)),
            ("GroupManagement", "Add group", (3004, 1)),
            ("GroupManagement", "Remove member from group", (3004, 3)),
            ("GroupManagement", "Update group", (3004, 3)),
            ("RoleManagement", "Add member to role", (3001, 7)),
            (
                "ApplicationManagement",
                "Add owner to application",
                (6003, 3),
            ),
            (
                "ApplicationManagement",
                "Add delegated permission grant",
                (6003, 1),
            ),
            (
                "ApplicationManagement",
                "Remove delegated permission grant",
                (6003, 4),
            ),
            ("Directory", "Set directory feature on tenant", (6003, 3)),
            ("Other", "", (6003, 99)),
        ] {
            assert_eq!(
                audit_class(category, operation),
                expected,
                "{category} {operation}"
            );
        }
    }

    #[test]
    fn odd_events_become_events_with_notes() {
        // A sign-in without a user or result code.
        let row = one(r#"{"createdDateTime":"2024-03-05T07:30:00Z","appDisplayName":"X"}"#);
        assert_eq!(class(&row), (Some(3002), Some(1)));
        assert_eq!(text(&row, "status"), None);
        let notes = unmapped(&row)[NOTES_KEY].to_string();
        assert!(
            notes.contains("the account signing in is unknown"),
            "{notes}"
        );
        assert!(notes.contains("no sign-in result code"), "{notes}");

        // An audit record with a bad time, no initiator and broken JSON text.
        let row = one(
            r#"{"TimeGenerated":"yesterday","OperationName":"Update policy","TargetResources":"[{\"type\":","Category":"Policy"}"#,
        );
        assert_eq!(row.time(), INGEST);
        assert_eq!(class(&row), (Some(6003), Some(3)));
        let u = unmapped(&row);
        assert_eq!(u["TargetResources"], "[{\"type\":");
        let notes = u[NOTES_KEY].to_string();
        assert!(notes.contains("TargetResources: not valid JSON"), "{notes}");
        assert!(notes.contains("the actor is unknown"), "{notes}");
        assert!(notes.contains("no result"), "{notes}");
        assert!(notes.contains("no readable time"), "{notes}");

        // Wrong-typed values stay in the fields.
        let row = one(
            r#"{"createdDateTime":"2024-03-05T07:30:00Z","status":"weird","userPrincipalName":{"a":1},"ipAddress":[1,[2]],"isInteractive":"maybe"}"#,
        );
        assert_eq!(text(&row, "user_name"), None);
        assert_eq!(text(&row, "src_ip"), None);
        let u = unmapped(&row);
        assert_eq!(u["userPrincipalName"], serde_json::json!({"a":1}));
        assert_eq!(u["isInteractive"], "maybe");
    }

    #[test]
    fn bad_inputs_name_the_problem() {
        let cases: [(&[u8], &str); 7] = [
            (
                br#"{"createdDateTime":"2024-03-05T07:3"#,
                "EOF while parsing",
            ),
            (b"garbage", "invalid JSON"),
            (&[b'{', 0xc3, 0x28, b'}'], "invalid JSON"),
            (b"\"SigninLogs\"", "expected an object"),
            (
                br#"{"Type":"OfficeActivity","Operation":"MailItemsAccessed"}"#,
                "not Entra ID: expected an Entra sign-in (Graph `createdDateTime` with `status`, `appDisplayName` or `ipAddress`; Sentinel `ResultType` with `UserPrincipalName`, `ServicePrincipalName` or `AppDisplayName`), an audit record (Graph `activityDateTime` and `activityDisplayName`; Sentinel `OperationName` with `InitiatedBy` or `TargetResources`), an Azure Monitor record (`category` and a `properties` object) or a batch (`records` or `value` array); found keys `Operation`, `Type`",
            ),
            (
                br#"{"records":{"a":1}}"#,
                "`records` is a JSON object, expected an array",
            ),
            (b"\n", "empty"),
        ];
        for (input, says) in cases {
            let (events, dead) = decode(input);
            assert!(events.is_empty(), "{says}");
            assert_eq!(dead.len(), 1, "{says}");
            assert!(dead[0].contains(says), "{} does not say {says}", dead[0]);
        }
        let big = format!(
            r#"{{"createdDateTime":"2024-03-05T07:30:00Z","status":{{}},"x":"{}"}}"#,
            "a".repeat(MAX_EVENT_BYTES)
        );
        let (events, dead) = decode(big.as_bytes());
        assert!(events.is_empty());
        assert!(dead[0].contains("exceeds the limit"), "{dead:?}");
        let row = one(&format!(
            r#"{{"createdDateTime":"2024-03-05T07:30:00Z","status":{{"errorCode":0}},"userPrincipalName":"{}"}}"#,
            "u".repeat(200_000)
        ));
        assert_eq!(text(&row, "user_name").map(str::len), Some(200_000));
        // Embedded JSON text nested beyond serde's limit is kept as text.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let row = one(&format!(
            r#"{{"OperationName":"Update user","InitiatedBy":"{deep}","Category":"UserManagement"}}"#
        ));
        assert!(
            unmapped(&row)[NOTES_KEY]
                .to_string()
                .contains("InitiatedBy: not valid JSON")
        );
    }

    #[test]
    fn otrf_sentinel_audit_corpus() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/corpus/events/otrf-sentinel/"
        );
        let run = |file: &str| {
            let corpus = std::fs::read_to_string(format!("{dir}{file}")).expect("corpus file");
            let mut decoder = Decoder::for_type(SourceType::Entra);
            let mut out = Vec::new();
            for (i, line) in crate::parse::lines(&corpus) {
                let prov = Provenance {
                    offset: Some(i64::try_from(i).expect("line")),
                    ..prov()
                };
                decoder.decode(line.as_bytes(), &prov, &mut out);
            }
            split(out)
        };
        let (events, dead) = run("goldensaml_aad_audit.jsonl");
        assert_eq!(events.len(), 4);
        assert!(dead.is_empty(), "{dead:?}");
        for row in &events {
            assert_eq!(row.get_int("class_uid"), Some(6003));
            assert_eq!(
                text(row, "actor_user_name"),
                Some("pgustavo@simulandlabs.com")
            );
            assert_eq!(text(row, "status"), Some("success"));
            assert_eq!(text(row, "api_service"), Some("Core Directory"));
            assert_eq!(text(row, "metadata_log_name"), Some("AuditLogs"));
            assert_eq!(
                text(row, "cloud_account_uid"),
                Some("00000000-0000-0000-0000-000000000000")
            );
            assert_eq!(
                text(row, "http_user_agent"),
                Some(
                    "Mozilla/5.0 (Windows NT; Windows NT 10.0; en-US) WindowsPowerShell/5.1.17763.1971"
                )
            );
            assert_eq!(row.get_int("severity_id"), Some(1));
            assert!((1_627_910_700_000_000..1_627_911_000_000_000).contains(&row.time()));
            let u = unmapped(row);
            assert_eq!(u["Category"], "ApplicationManagement");
            assert!(u["TargetResources"].is_array(), "{u}");
            assert!(u["InitiatedBy"]["user"].is_object(), "{u}");
            assert!(u.get(NOTES_KEY).is_none(), "{u}");
        }
        let ops: Vec<(&str, i64)> = events
            .iter()
            .map(|r| {
                (
                    text(r, "api_operation").unwrap_or(""),
                    r.get_int("activity_id").unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            ops,
            [
                (
                    "Update application – Certificates and secrets management",
                    3
                ),
                (
                    "Update application – Certificates and secrets management",
                    3
                ),
                ("Update application", 3),
                ("Add delegated permission grant", 1),
            ]
        );

        // The other tables of the export are not Entra logs: all dead letters.
        for (file, rows) in [
            ("goldensaml_m365_defender.jsonl", 9),
            ("goldensaml_office_activity.jsonl", 1),
            ("goldensaml_securityevent_adfs.jsonl", 38),
            ("log4shell_securityevent_windows.jsonl", 39),
            ("log4shell_syslog_auoms_auditd_linux.jsonl", 50),
            ("log4shell_syslog_sysmon_linux.jsonl", 93),
            ("log4shell_sysmon_windows.jsonl", 487),
            ("log4shell_vmconnection_linux.jsonl", 5),
        ] {
            let (events, dead) = run(file);
            assert_eq!((events.len(), dead.len()), (0, rows), "{file}");
            assert!(
                dead.iter().all(|e| e.contains("expected an Entra sign-in")),
                "{file}"
            );
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "\\PC{0,24}".prop_map(Value::from),
                prop::sample::select(vec![
                    "2024-03-05T07:30:00Z",
                    "0",
                    "50126",
                    "SignInLogs",
                    "AuditLogs",
                    "User",
                    "success",
                    "none",
                    "high",
                    "{\"user\":{}}",
                    "[{\"type\":\"User\"}]",
                    "[[[",
                    "Add member to role",
                    "RoleManagement",
                    "UserManagement",
                ])
                .prop_map(Value::from),
            ]
        }

        fn key() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "createdDateTime",
                    "status",
                    "errorCode",
                    "failureReason",
                    "appDisplayName",
                    "ipAddress",
                    "userPrincipalName",
                    "activityDateTime",
                    "activityDisplayName",
                    "category",
                    "properties",
                    "records",
                    "value",
                    "Type",
                    "ResultType",
                    "UserPrincipalName",
                    "OperationName",
                    "InitiatedBy",
                    "TargetResources",
                    "initiatedBy",
                    "targetResources",
                    "user",
                    "app",
                    "type",
                    "result",
                    "isInteractive",
                    "Level",
                    "additionalDetails",
                    "key",
                    "DeviceDetail",
                ])
                .prop_map(String::from),
                "[a-zA-Z@.]{1,10}",
            ]
        }

        fn value() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(key(), inner, 0..5)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// Arbitrary bytes never panic.
            #[test]
            fn bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let mut out = Vec::new();
                Decoder::for_type(SourceType::Entra).decode(&bytes, &prov(), &mut out);
                prop_assert!(!out.is_empty());
            }

            /// Objects built from Entra's keys with values of any kind never
            /// panic; every event has a class and an object `unmapped`.
            #[test]
            fn entra_shaped_objects_never_panic(
                object in prop::collection::btree_map(key(), value(), 0..8)
            ) {
                let bytes = serde_json::to_vec(&object).expect("json");
                let mut out = Vec::new();
                Decoder::for_type(SourceType::Entra).decode(&bytes, &prov(), &mut out);
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
