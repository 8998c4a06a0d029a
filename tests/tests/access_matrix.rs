//! The access matrix (issue 8): every role × interface × action against one
//! real standalone node with tokens required everywhere (`query.auth` and
//! `ingest.http_auth` = "token") and a cluster secret, so the coordinators'
//! gRPC guard is on. Each allowed action must succeed and every other one
//! must be refused the interface's own way: HTTP 401/403, Splunk HEC's
//! 401 code 2 / 403 code 4, gRPC and Flight SQL UNAUTHENTICATED /
//! PERMISSION_DENIED, a PostgreSQL FATAL at connection. Every row runs; all
//! mismatches are listed in one failure at the end, and the grid of
//! outcomes is printed (`--nocapture` shows it).
//!
//! Around the matrix: the first admin token comes from the cluster secret;
//! an admin token naming no tenant sends its events to `ingest.tenant`; an
//! mssp-operator token sees exactly its tenants' rows; a tenant-admin lists
//! only its tenant's tokens; a revoked token and a disabled tenant's token
//! are refused within the token cache's 5 s (plus one).
//!
//! Flight SQL is spoken by pyarrow.flight and PostgreSQL by `psql`, as in
//! query_access.rs (`PYCLIENT_PYTHON`, which scripts/test-all.sh prepares).
//! `ACCESS_MATRIX_DETAILS=1` prints every row's answer too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::Method;
use serde_json::{Value, json};
use spoor_tests::{
    Spoor, SpoorOptions, encoded_shell_rule, logon_event, spoor_cli, tail, test_time,
};

// Who calls: the six roles, then credentials that are no role.
const ADMIN: &str = "admin";
const MSSP: &str = "mssp-operator";
const TENANT_ADMIN: &str = "tenant-admin";
const ANALYST: &str = "analyst";
const VIEWER: &str = "viewer";
const INGEST: &str = "ingest";
/// No credential at all.
const NO_TOKEN: &str = "no-token";
/// The admin token's id with a wrong secret.
const BAD_TOKEN: &str = "bad-token";
/// A cluster admin token, revoked.
const REVOKED: &str = "revoked";
/// The cluster secret (`--cluster-secret-file`), gRPC only.
const SECRET: &str = "cluster-secret";

/// The callers in grid order, with their column headings.
const WHO: [(&str, &str); 10] = [
    (ADMIN, "admin"),
    (MSSP, "mssp"),
    (TENANT_ADMIN, "t-admin"),
    (ANALYST, "analyst"),
    (VIEWER, "viewer"),
    (INGEST, "ingest"),
    (NO_TOKEN, "none"),
    (BAD_TOKEN, "bad"),
    (REVOKED, "revoked"),
    (SECRET, "secret"),
];

/// What a row expects: success, or a refusal with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Allow,
    Refuse(&'static str),
}

const OK: Want = Want::Allow;
/// HTTP statuses.
const H401: Want = Want::Refuse("401");
const H403: Want = Want::Refuse("403");
const H404: Want = Want::Refuse("404");
/// Splunk HEC: HTTP status / HEC code (2 token required, 4 invalid token).
const HEC401: Want = Want::Refuse("401/2");
const HEC403: Want = Want::Refuse("403/4");
/// gRPC and Flight SQL UNAUTHENTICATED; PostgreSQL: the token refused at
/// connection (invalid token, or no password for the password asked).
const UNAUTH: Want = Want::Refuse("unauth");
/// gRPC and Flight SQL PERMISSION_DENIED; PostgreSQL: a valid token whose
/// role may not query.
const DENIED: Want = Want::Refuse("denied");
/// gRPC NOT_FOUND: someone else's token is "not found", not "forbidden".
const NOT_FOUND: Want = Want::Refuse("notfound");

/// An action of an interface.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// `POST /v1/ingest/fw`.
    Ingest,
    /// `POST /services/collector/event` (`Authorization: Splunk …`).
    Hec,
    /// `POST /v1/query`.
    Query,
    /// Flight SQL `GetFlightInfo` + `DoGet` of a statement.
    Flight,
    /// PostgreSQL wire protocol (psql).
    Postgres,
    /// `GET /v1/rules/sets?tenant=T`.
    ListRules(&'static str),
    /// `PUT /v1/rules/sets/acme/{name}`.
    PutRules,
    /// `GET /v1/alerts/acme/{alert_id}` of a real alert.
    GetAlert,
    /// `PATCH /v1/alerts/acme/{alert_id}`.
    PatchAlert,
    /// `POST /v1/retro-hunts` for acme.
    RetroHunt,
    /// `GET /v1/status`.
    Status,
    /// `spoor tenant create`.
    TenantCreate,
    /// `spoor token create --role R [--tenant T…]`.
    TokenCreate(&'static str, &'static [&'static str]),
    /// `spoor token list --tenant acme`.
    TokenList,
    /// `spoor token revoke` of a fresh analyst token of the tenant.
    TokenRevoke(&'static str),
    /// `spoor cluster members`.
    Members,
    /// `POST /v1/tenants`.
    HttpTenantCreate,
    /// `GET /v1/tenants/acme`.
    HttpTenantShow,
    /// `POST /v1/tokens` of an analyst token of the tenant.
    HttpTokenCreate(&'static str),
    /// `GET /v1/tokens?tenant=acme`.
    HttpTokenList,
    /// `DELETE /v1/tokens/{id}` of a fresh analyst token of the tenant.
    HttpTokenRevoke(&'static str),
}

impl Action {
    fn interface(self) -> &'static str {
        match self {
            Action::Ingest
            | Action::Query
            | Action::ListRules(_)
            | Action::PutRules
            | Action::GetAlert
            | Action::PatchAlert
            | Action::RetroHunt
            | Action::Status
            | Action::HttpTenantCreate
            | Action::HttpTenantShow
            | Action::HttpTokenCreate(_)
            | Action::HttpTokenList
            | Action::HttpTokenRevoke(_) => "http",
            Action::Hec => "hec",
            Action::Flight => "flight-sql",
            Action::Postgres => "postgres",
            Action::TenantCreate
            | Action::TokenCreate(..)
            | Action::TokenList
            | Action::TokenRevoke(_)
            | Action::Members => "grpc",
        }
    }

    fn name(self) -> String {
        match self {
            Action::Ingest => "POST /v1/ingest/fw".into(),
            Action::Hec => "POST /services/collector/event".into(),
            Action::Query => "POST /v1/query".into(),
            Action::Flight => "SELECT (GetFlightInfo+DoGet)".into(),
            Action::Postgres => "SELECT (psql)".into(),
            Action::ListRules(t) => format!("GET /v1/rules/sets?tenant={t}"),
            Action::PutRules => "PUT /v1/rules/sets/acme/{name}".into(),
            Action::GetAlert => "GET /v1/alerts/acme/{id}".into(),
            Action::PatchAlert => "PATCH /v1/alerts/acme/{id}".into(),
            Action::RetroHunt => "POST /v1/retro-hunts (acme)".into(),
            Action::Status => "GET /v1/status".into(),
            Action::TenantCreate => "tenant create".into(),
            Action::TokenCreate(role, []) => format!("token create {role}"),
            Action::TokenCreate(role, tenants) => {
                format!("token create {role}@{}", tenants.join("+"))
            }
            Action::TokenList => "token list --tenant acme".into(),
            Action::TokenRevoke(t) => format!("token revoke ({t} analyst)"),
            Action::Members => "cluster members".into(),
            Action::HttpTenantCreate => "POST /v1/tenants".into(),
            Action::HttpTenantShow => "GET /v1/tenants/acme".into(),
            Action::HttpTokenCreate(t) => format!("POST /v1/tokens ({t} analyst)"),
            Action::HttpTokenList => "GET /v1/tokens?tenant=acme".into(),
            Action::HttpTokenRevoke(t) => format!("DELETE /v1/tokens/{{id}} ({t} analyst)"),
        }
    }

    fn title(self) -> String {
        format!("{} {}", self.interface(), self.name())
    }
}

type Wants = &'static [(&'static str, Want)];

/// Reading over HTTP: every role but ingest.
const READ_HTTP: Wants = &[
    (ADMIN, OK),
    (MSSP, OK),
    (TENANT_ADMIN, OK),
    (ANALYST, OK),
    (VIEWER, OK),
    (INGEST, H403),
    (NO_TOKEN, H401),
    (BAD_TOKEN, H401),
    (REVOKED, H401),
];

/// Reading over Flight SQL and PostgreSQL.
const READ_RPC: Wants = &[
    (ADMIN, OK),
    (MSSP, OK),
    (TENANT_ADMIN, OK),
    (ANALYST, OK),
    (VIEWER, OK),
    (INGEST, DENIED),
    (NO_TOKEN, UNAUTH),
    (BAD_TOKEN, UNAUTH),
    (REVOKED, UNAUTH),
];

/// Changing detections (rules, triage, retro-hunts): admin, tenant-admin,
/// analyst.
const CHANGE_HTTP: Wants = &[
    (ADMIN, OK),
    (MSSP, H403),
    (TENANT_ADMIN, OK),
    (ANALYST, OK),
    (VIEWER, H403),
    (INGEST, H403),
    (NO_TOKEN, H401),
    (BAD_TOKEN, H401),
    (REVOKED, H401),
];

/// What only the cluster (its admin token, or the cluster secret) may do
/// on gRPC.
const CLUSTER_GRPC: Wants = &[
    (ADMIN, OK),
    (MSSP, DENIED),
    (TENANT_ADMIN, DENIED),
    (ANALYST, DENIED),
    (VIEWER, DENIED),
    (INGEST, DENIED),
    (NO_TOKEN, UNAUTH),
    (BAD_TOKEN, UNAUTH),
    (REVOKED, UNAUTH),
    (SECRET, OK),
];

/// Managing acme's tokens of tenant roles: the cluster and acme's
/// tenant-admin.
const ACME_TOKENS_GRPC: Wants = &[
    (ADMIN, OK),
    (MSSP, DENIED),
    (TENANT_ADMIN, OK),
    (ANALYST, DENIED),
    (VIEWER, DENIED),
    (INGEST, DENIED),
    (NO_TOKEN, UNAUTH),
    (BAD_TOKEN, UNAUTH),
    (REVOKED, UNAUTH),
    (SECRET, OK),
];

/// Tokens beyond a tenant-admin's reach: only the cluster's admin (every
/// other role, the tenant-admin included, is refused).
const BEYOND_TENANT_GRPC: Wants = &[
    (ADMIN, OK),
    (MSSP, DENIED),
    (TENANT_ADMIN, DENIED),
    (ANALYST, DENIED),
    (VIEWER, DENIED),
    (INGEST, DENIED),
];

/// What only the cluster's admin may do over HTTP.
const CLUSTER_HTTP: Wants = &[
    (ADMIN, OK),
    (MSSP, H403),
    (TENANT_ADMIN, H403),
    (ANALYST, H403),
    (VIEWER, H403),
    (INGEST, H403),
    (NO_TOKEN, H401),
    (BAD_TOKEN, H401),
    (REVOKED, H401),
];

/// Managing acme's tokens over HTTP: the cluster's admin and acme's
/// tenant-admin.
const ACME_TOKENS_HTTP: Wants = &[
    (ADMIN, OK),
    (MSSP, H403),
    (TENANT_ADMIN, OK),
    (ANALYST, H403),
    (VIEWER, H403),
    (INGEST, H403),
    (NO_TOKEN, H401),
    (BAD_TOKEN, H401),
    (REVOKED, H401),
];

/// The matrix: each action with who may (`OK`) and how everyone else is
/// refused.
const MATRIX: &[(Action, Wants)] = &[
    (
        Action::Ingest,
        &[
            (ADMIN, OK),
            (MSSP, H403),
            (TENANT_ADMIN, OK),
            (ANALYST, H403),
            (VIEWER, H403),
            (INGEST, OK),
            (NO_TOKEN, H401),
            (BAD_TOKEN, H401),
            (REVOKED, H401),
        ],
    ),
    (
        Action::Hec,
        &[
            (ADMIN, OK),
            (MSSP, HEC403),
            (TENANT_ADMIN, OK),
            (ANALYST, HEC403),
            (VIEWER, HEC403),
            (INGEST, OK),
            (NO_TOKEN, HEC401),
            (BAD_TOKEN, HEC403),
            (REVOKED, HEC403),
        ],
    ),
    (Action::Query, READ_HTTP),
    (Action::Flight, READ_RPC),
    (Action::Postgres, READ_RPC),
    (Action::ListRules("acme"), READ_HTTP),
    (
        Action::ListRules("initech"),
        &[
            (ADMIN, OK),
            (MSSP, H403),
            (TENANT_ADMIN, H403),
            (ANALYST, H403),
            (VIEWER, H403),
            (INGEST, H403),
        ],
    ),
    (Action::PutRules, CHANGE_HTTP),
    (Action::GetAlert, READ_HTTP),
    (Action::PatchAlert, CHANGE_HTTP),
    (Action::RetroHunt, CHANGE_HTTP),
    (
        Action::Status,
        &[
            (ADMIN, OK),
            (MSSP, H403),
            (TENANT_ADMIN, H403),
            (ANALYST, H403),
            (VIEWER, H403),
            (INGEST, H403),
            (NO_TOKEN, H401),
            (BAD_TOKEN, H401),
            (REVOKED, H401),
        ],
    ),
    (Action::TenantCreate, CLUSTER_GRPC),
    (Action::TokenCreate("analyst", &["acme"]), ACME_TOKENS_GRPC),
    (
        Action::TokenCreate("tenant-admin", &["acme"]),
        &[
            (ADMIN, OK),
            (MSSP, DENIED),
            (TENANT_ADMIN, OK),
            (ANALYST, DENIED),
            (VIEWER, DENIED),
            (INGEST, DENIED),
        ],
    ),
    (
        Action::TokenCreate("analyst", &["globex"]),
        BEYOND_TENANT_GRPC,
    ),
    (
        Action::TokenCreate("mssp-operator", &["acme", "globex"]),
        BEYOND_TENANT_GRPC,
    ),
    (
        Action::TokenCreate("mssp-operator", &["acme"]),
        BEYOND_TENANT_GRPC,
    ),
    (Action::TokenCreate("admin", &[]), BEYOND_TENANT_GRPC),
    (Action::TokenList, ACME_TOKENS_GRPC),
    (Action::TokenRevoke("acme"), ACME_TOKENS_GRPC),
    (
        Action::TokenRevoke("globex"),
        &[
            (ADMIN, OK),
            (MSSP, DENIED),
            (TENANT_ADMIN, NOT_FOUND),
            (ANALYST, DENIED),
            (VIEWER, DENIED),
            (INGEST, DENIED),
        ],
    ),
    (Action::Members, CLUSTER_GRPC),
    (Action::HttpTenantCreate, CLUSTER_HTTP),
    (Action::HttpTenantShow, CLUSTER_HTTP),
    (Action::HttpTokenCreate("acme"), ACME_TOKENS_HTTP),
    (
        Action::HttpTokenCreate("globex"),
        &[
            (ADMIN, OK),
            (MSSP, H403),
            (TENANT_ADMIN, H403),
            (ANALYST, H403),
            (VIEWER, H403),
            (INGEST, H403),
        ],
    ),
    (Action::HttpTokenList, ACME_TOKENS_HTTP),
    (Action::HttpTokenRevoke("acme"), ACME_TOKENS_HTTP),
    (
        Action::HttpTokenRevoke("globex"),
        &[
            (ADMIN, OK),
            (MSSP, H403),
            (TENANT_ADMIN, H404),
            (ANALYST, H403),
            (VIEWER, H403),
            (INGEST, H403),
        ],
    ),
];

/// A caller's credential.
#[derive(Debug, Clone)]
enum Cred {
    None,
    Token(String),
    SecretFile(PathBuf),
}

impl Cred {
    fn token(&self) -> Option<&str> {
        match self {
            Cred::Token(t) => Some(t),
            _ => None,
        }
    }

    /// The CLI's flags for it.
    fn flags(&self) -> Vec<String> {
        match self {
            Cred::None => vec![],
            Cred::Token(t) => vec!["--token".into(), t.clone()],
            Cred::SecretFile(p) => vec!["--cluster-secret-file".into(), p.display().to_string()],
        }
    }
}

/// What happened: `ok`, or the refusal's code; and what was answered.
#[derive(Debug, Clone)]
struct Outcome {
    code: String,
    detail: String,
}

impl Outcome {
    fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        let detail: String = detail.into();
        Outcome {
            code: code.into(),
            detail: detail.trim().to_string(),
        }
    }

    /// The answer, cut for a report.
    fn short(&self) -> String {
        if self.detail.chars().count() > 400 {
            self.detail.chars().take(400).collect::<String>() + "…"
        } else {
            self.detail.clone()
        }
    }

    fn meets(&self, want: Want) -> bool {
        match want {
            Want::Allow => self.code == "ok",
            Want::Refuse(code) => self.code == code,
        }
    }
}

fn want_text(want: Want) -> String {
    match want {
        Want::Allow => "allowed (ok)".into(),
        Want::Refuse(code) => format!("refused ({code})"),
    }
}

/// One row that ran.
struct Ran {
    action: Action,
    who: &'static str,
    want: Want,
    got: Outcome,
}

/// The node and everything the rows need.
struct Ctx {
    node: Spoor,
    grpc: String,
    creds: BTreeMap<&'static str, Cred>,
    admin: Cred,
    alert_id: String,
    rule: String,
    /// Flight SQL outcomes by caller, run in one client process.
    flight: BTreeMap<String, Outcome>,
}

/// The rule of every bundle here: encoded shells.
fn shell_rule() -> String {
    encoded_shell_rule("8e2f0b3c-5a1d-4c7e-9b20-0000000000a8")
}

fn python() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PYCLIENT_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    // Where scripts/test-all.sh installs it.
    let cached = PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/spoor/pyclients/bin/python");
    if cached.exists() {
        return Ok(cached);
    }
    bail!(
        "PYCLIENT_PYTHON is not set: run scripts/test-all.sh, which installs pyarrow into \
         ~/.cache/spoor/pyclients and names that Python"
    )
}

/// Flight SQL with pyarrow.flight: for each caller of argv[1]'s `tokens`
/// (null: no authorization header), a statement through GetFlightInfo and
/// DoGet; prints each caller's outcome.
const FLIGHT_SCRIPT: &str = r#"
import json, sys
import pyarrow.flight as flight

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def field(number, payload):
    return bytes([number << 3 | 2]) + varint(len(payload)) + payload

def statement_command(sql):
    inner = field(1, sql.encode())
    url = b"type.googleapis.com/arrow.flight.protocol.sql.CommandStatementQuery"
    return field(1, url) + field(2, inner)

args = json.loads(sys.argv[1])
client = flight.FlightClient(args["uri"])
descriptor = flight.FlightDescriptor.for_command(statement_command(args["sql"]))
seen = {}
for who, token in args["tokens"].items():
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    options = flight.FlightCallOptions(headers=headers, timeout=20)
    try:
        info = client.get_flight_info(descriptor, options)
        rows = [r for e in info.endpoints for r in client.do_get(e.ticket, options).read_all().to_pylist()]
        seen[who] = {"code": "ok", "detail": json.dumps(rows, default=str)}
    except flight.FlightUnauthenticatedError as e:
        seen[who] = {"code": "unauth", "detail": str(e)}
    except flight.FlightUnauthorizedError as e:
        seen[who] = {"code": "denied", "detail": str(e)}
    except Exception as e:
        seen[who] = {"code": "error", "detail": f"{type(e).__name__}: {e}"}
print(json.dumps(seen))
"#;

/// Runs [`FLIGHT_SCRIPT`] for every caller.
fn flight_outcomes(
    addr: &str,
    creds: &BTreeMap<&'static str, Cred>,
    sql: &str,
) -> anyhow::Result<BTreeMap<String, Outcome>> {
    let tokens: serde_json::Map<String, Value> = creds
        .iter()
        .filter(|(who, _)| **who != SECRET)
        .map(|(who, c)| (who.to_string(), c.token().map_or(Value::Null, |t| json!(t))))
        .collect();
    let args = json!({"uri": format!("grpc://{addr}"), "sql": sql, "tokens": tokens});
    let out = Command::new(python()?)
        .args(["-c", FLIGHT_SCRIPT])
        .arg(args.to_string())
        .output()
        .context("running the Flight SQL client (pyarrow.flight)")?;
    if !out.status.success() {
        bail!(
            "Flight SQL client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let seen: BTreeMap<String, Value> = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("client output {}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(seen
        .into_iter()
        .map(|(who, v)| {
            let code = v["code"].as_str().unwrap_or("error").to_string();
            let detail = v["detail"].as_str().unwrap_or_default().to_string();
            (who, Outcome::new(code, detail))
        })
        .collect())
}

/// `psql` against `addr` with `token` as the password (none: no password).
fn psql(addr: &str, token: Option<&str>, sql: &str) -> anyhow::Result<std::process::Output> {
    let (host, port) = addr.rsplit_once(':').context("host:port")?;
    let mut cmd = Command::new("psql");
    cmd.args([
        "-h", host, "-p", port, "-U", "hunter", "-d", "spoor", "-w", "-At", "-c", sql,
    ])
    .env("PGSSLMODE", "disable")
    .env("PGCONNECT_TIMEOUT", "10")
    .env_remove("PGPASSWORD")
    .env_remove("PGPASSFILE");
    if let Some(t) = token {
        cmd.env("PGPASSWORD", t);
    }
    cmd.output()
        .context("running psql (the postgresql-client package)")
}

fn psql_outcome(out: &std::process::Output) -> Outcome {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Outcome::new("ok", stdout);
    }
    let code = if stderr.contains("may not read") {
        "denied"
    } else if stderr.contains("invalid token")
        || stderr.contains("no password supplied")
        || stderr.contains("a token is required")
    {
        "unauth"
    } else {
        "error"
    };
    Outcome::new(code, stderr)
}

/// `spoor args… --coordinator G <cred>`: `ok` on success, else the gRPC
/// code the CLI names.
fn cli_outcome(grpc: &str, cred: &Cred, args: &[&str]) -> anyhow::Result<Outcome> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--coordinator".to_string(), grpc.to_string()]);
    all.extend(cred.flags());
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let (code, out, err) = spoor_cli(&refs)?;
    if code == 0 {
        return Ok(Outcome::new("ok", out));
    }
    let code = if err.contains("permission denied:") {
        "denied"
    } else if err.contains("unauthenticated:") {
        "unauth"
    } else if err.contains("not found:") {
        "notfound"
    } else {
        "error"
    };
    Ok(Outcome::new(code, err))
}

/// `spoor args…` as `cred`, which must succeed: its JSON output.
fn cli_ok(grpc: &str, cred: &Cred, args: &[&str]) -> anyhow::Result<Value> {
    let got = cli_outcome(grpc, cred, args)?;
    ensure!(
        got.code == "ok",
        "spoor {}: {} {}",
        args.join(" "),
        got.code,
        got.detail
    );
    serde_json::from_str(&got.detail).with_context(|| format!("not JSON: {}", got.detail))
}

/// A new token created by `as_`: its secret and its id.
fn new_token(
    grpc: &str,
    as_: &Cred,
    role: &str,
    tenants: &[&str],
) -> anyhow::Result<(String, String)> {
    let mut args = vec!["token", "create", "--role", role];
    for t in tenants {
        args.extend(["--tenant", t]);
    }
    let out = cli_ok(grpc, as_, &args)?;
    Ok((
        out["token"].as_str().context("token printed")?.to_string(),
        out["token_id"]
            .as_str()
            .context("token id printed")?
            .to_string(),
    ))
}

/// `method path` with `cred` as `scheme <token>` and `body`: status and text.
async fn send(
    node: &Spoor,
    method: Method,
    path: &str,
    cred: &Cred,
    scheme: &str,
    body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", node.http))
        .timeout(Duration::from_secs(30));
    if let Some(t) = cred.token() {
        req = req.header("authorization", format!("{scheme} {t}"));
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// [`send`] with a bearer token: `ok` for 2xx, else the status.
async fn http_outcome(
    node: &Spoor,
    method: Method,
    path: &str,
    cred: &Cred,
    body: Option<String>,
) -> anyhow::Result<Outcome> {
    let (status, text) = send(node, method, path, cred, "Bearer", body).await?;
    Ok(if (200..300).contains(&status) {
        Outcome::new("ok", text)
    } else {
        Outcome::new(status.to_string(), text)
    })
}

/// `POST /v1/query` with `cred`: status and JSON answer.
async fn query(node: &Spoor, cred: &Cred, sql: &str) -> anyhow::Result<(u16, Value)> {
    let (status, text) = send(
        node,
        Method::POST,
        "/v1/query",
        cred,
        "Bearer",
        Some(json!({ "sql": sql }).to_string()),
    )
    .await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(json!({ "raw": text })),
    ))
}

/// The rows of `sql` as `cred`, or an error with the answer.
async fn rows(node: &Spoor, cred: &Cred, sql: &str) -> anyhow::Result<Value> {
    let (status, body) = query(node, cred, sql).await?;
    ensure!(status == 200, "{sql}: {status} {body}");
    Ok(body["rows"].clone())
}

/// Runs one row.
async fn run(ctx: &Ctx, action: Action, who: &'static str) -> anyhow::Result<Outcome> {
    let cred = ctx.creds.get(who).context("no such caller")?;
    let node = &ctx.node;
    let bundle = json!({"rules": [{"path": "shell.yml", "text": ctx.rule}]});
    match action {
        Action::Ingest => {
            let body = json!({"src_ip": "10.9.9.9", "matrix": format!("mx-{who}-http")});
            http_outcome(
                node,
                Method::POST,
                "/v1/ingest/fw",
                cred,
                Some(body.to_string() + "\n"),
            )
            .await
        }
        Action::Hec => {
            let body =
                json!({"event": {"matrix": format!("mx-{who}-hec")}, "sourcetype": "matrix"});
            let (status, text) = send(
                node,
                Method::POST,
                "/services/collector/event",
                cred,
                "Splunk",
                Some(body.to_string()),
            )
            .await?;
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = answer["code"]
                .as_i64()
                .map_or("?".into(), |c| c.to_string());
            Ok(if status == 200 && code == "0" {
                Outcome::new("ok", text)
            } else {
                Outcome::new(format!("{status}/{code}"), text)
            })
        }
        Action::Query => {
            let body = json!({"sql": "SELECT count(*) AS n FROM events"});
            http_outcome(
                node,
                Method::POST,
                "/v1/query",
                cred,
                Some(body.to_string()),
            )
            .await
        }
        Action::Flight => ctx
            .flight
            .get(who)
            .cloned()
            .context("no Flight SQL outcome"),
        Action::Postgres => {
            let addr = node
                .postgres
                .as_deref()
                .context("standalone serves PostgreSQL")?;
            Ok(psql_outcome(&psql(
                addr,
                cred.token(),
                "SELECT count(*) FROM events",
            )?))
        }
        Action::ListRules(tenant) => {
            let path = format!("/v1/rules/sets?tenant={tenant}");
            http_outcome(node, Method::GET, &path, cred, None).await
        }
        Action::PutRules => {
            let path = format!("/v1/rules/sets/acme/mx-{who}");
            let body = json!({"bundle": bundle, "enabled": false});
            http_outcome(node, Method::PUT, &path, cred, Some(body.to_string())).await
        }
        Action::GetAlert => {
            let path = format!("/v1/alerts/acme/{}", ctx.alert_id);
            http_outcome(node, Method::GET, &path, cred, None).await
        }
        Action::PatchAlert => {
            let path = format!("/v1/alerts/acme/{}", ctx.alert_id);
            let body = json!({"status": "acknowledged", "note": format!("access matrix: {who}")});
            http_outcome(node, Method::PATCH, &path, cred, Some(body.to_string())).await
        }
        Action::RetroHunt => {
            // A past day without events: the job is accepted and finds nothing.
            let body = json!({
                "tenant": "acme",
                "bundle": bundle,
                "from": "2020-01-01T00:00:00Z",
                "to": "2020-01-02T00:00:00Z",
            });
            http_outcome(
                node,
                Method::POST,
                "/v1/retro-hunts",
                cred,
                Some(body.to_string()),
            )
            .await
        }
        Action::Status => http_outcome(node, Method::GET, "/v1/status", cred, None).await,
        Action::TenantCreate => {
            cli_outcome(&ctx.grpc, cred, &["tenant", "create", &format!("mx-{who}")])
        }
        Action::TokenCreate(role, tenants) => {
            let mut args = vec!["token", "create", "--role", role];
            for t in tenants {
                args.extend(["--tenant", t]);
            }
            cli_outcome(&ctx.grpc, cred, &args)
        }
        Action::TokenList => cli_outcome(&ctx.grpc, cred, &["token", "list", "--tenant", "acme"]),
        Action::TokenRevoke(tenant) => {
            let (_, victim) = new_token(&ctx.grpc, &ctx.admin, "analyst", &[tenant])?;
            cli_outcome(&ctx.grpc, cred, &["token", "revoke", &victim])
        }
        Action::Members => cli_outcome(&ctx.grpc, cred, &["cluster", "members"]),
        Action::HttpTenantCreate => {
            let body = json!({"id": format!("mxh-{who}"), "retention_days": 30});
            http_outcome(
                node,
                Method::POST,
                "/v1/tenants",
                cred,
                Some(body.to_string()),
            )
            .await
        }
        Action::HttpTenantShow => {
            http_outcome(node, Method::GET, "/v1/tenants/acme", cred, None).await
        }
        Action::HttpTokenCreate(tenant) => {
            let body = json!({"role": "analyst", "tenants": [tenant], "expires_in_seconds": 3600});
            http_outcome(
                node,
                Method::POST,
                "/v1/tokens",
                cred,
                Some(body.to_string()),
            )
            .await
        }
        Action::HttpTokenList => {
            http_outcome(node, Method::GET, "/v1/tokens?tenant=acme", cred, None).await
        }
        Action::HttpTokenRevoke(tenant) => {
            let (_, victim) = new_token(&ctx.grpc, &ctx.admin, "analyst", &[tenant])?;
            let path = format!("/v1/tokens/{victim}");
            http_outcome(node, Method::DELETE, &path, cred, None).await
        }
    }
}

/// Polls `check` every 200 ms until it is true or `limit` has passed
/// since `from`: when (after `from`) the first check that came true was
/// sent, or `None`. Timed by when a check is sent, not answered, so a slow
/// answer on a busy machine does not count against the node.
async fn within<F, Fut>(
    from: Instant,
    limit: Duration,
    mut check: F,
) -> anyhow::Result<Option<Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    loop {
        let sent = from.elapsed();
        if sent > limit {
            return Ok(None);
        }
        if check().await? {
            return Ok(Some(sent));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The grid: one line per action, one column per caller; `!` marks a
/// mismatch, `.` a pair not in the matrix.
fn grid(ran: &[Ran]) -> String {
    let titles: Vec<String> = MATRIX.iter().map(|(a, _)| a.title()).collect();
    let width = titles.iter().map(|t| t.chars().count()).max().unwrap_or(0);
    let mut out = format!("{:<width$}", "interface action");
    for (_, heading) in WHO {
        out.push_str(&format!(" {heading:>9}"));
    }
    out.push('\n');
    for title in &titles {
        out.push_str(&format!("{title:<width$}"));
        for (who, _) in WHO {
            let cell = ran
                .iter()
                .filter(|r| r.who == who)
                .find(|r| r.action.title() == *title)
                .map_or(".".to_string(), |r| {
                    let mark = if r.got.meets(r.want) { "" } else { "!" };
                    format!("{}{mark}", r.got.code)
                });
            out.push_str(&format!(" {cell:>9}"));
        }
        out.push('\n');
    }
    out
}

/// A real alert of acme: a retro-hunt of `rule` over the test day, run by
/// `admin`; its id, as acme's `analyst` queries it.
async fn real_alert(
    node: &Spoor,
    admin: &Cred,
    analyst: &Cred,
    rule: &str,
) -> anyhow::Result<String> {
    let (status, text) = send(
        node,
        Method::POST,
        "/v1/retro-hunts",
        admin,
        "Bearer",
        Some(
            json!({
                "tenant": "acme",
                "bundle": {"rules": [{"path": "shell.yml", "text": rule}]},
                "from": test_time(0),
                "to": test_time(3600),
            })
            .to_string(),
        ),
    )
    .await?;
    ensure!(status == 202, "retro-hunt: {status} {text}");
    let job: Value = serde_json::from_str(&text)?;
    let job_id = job["job_id"].as_str().context("job_id")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = send(
            node,
            Method::GET,
            &format!("/v1/retro-hunts/{job_id}"),
            admin,
            "Bearer",
            None,
        )
        .await?;
        let job: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match job["state"].as_str() {
            Some("done") => break,
            Some("failed" | "cancelled") => bail!("retro-hunt ended: {status} {text}"),
            _ if Instant::now() > deadline => {
                bail!("retro-hunt not done after 60 s: {status} {text}")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = rows(
            node,
            analyst,
            "SELECT alert_id FROM alerts ORDER BY alert_id",
        )
        .await?;
        if let Some(id) = got
            .as_array()
            .and_then(|a| a.first())
            .and_then(|r| r["alert_id"].as_str())
        {
            return Ok(id.to_string());
        }
        if Instant::now() > deadline {
            bail!(
                "the retro-hunt committed no alert of acme; log: {}",
                tail(&node.log_path)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whose rows each token reaches: an admin token naming no tenant sends
/// to `ingest.tenant`, a tenant-admin to its tenant; an mssp-operator sees
/// exactly its tenants; a tenant-admin lists its tenant's tokens only.
/// Every failure goes to `failures`.
async fn scope_checks(ctx: &Ctx, failures: &mut Vec<String>) -> anyhow::Result<()> {
    let (node, admin) = (&ctx.node, &ctx.admin);
    // An admin token naming no tenant sends to ingest.tenant ("default");
    // a tenant-admin's events go to its tenant.
    for (who, tenant) in [(ADMIN, "default"), (TENANT_ADMIN, "acme")] {
        let got = rows(
            node,
            admin,
            &format!(
                "SELECT tenant, count(*) AS n FROM events WHERE raw LIKE '%mx-{who}-%' GROUP BY tenant"
            ),
        )
        .await?;
        if got != json!([{"tenant": tenant, "n": 2}]) {
            failures.push(format!(
                "{who}'s HTTP and HEC events should be the 2 events of tenant {tenant}: {got}"
            ));
        }
    }

    // An mssp-operator sees exactly its tenants' rows, on HTTP and PostgreSQL.
    let mssp = &ctx.creds[MSSP];
    let distinct = "SELECT DISTINCT tenant FROM events ORDER BY tenant";
    let got = rows(node, mssp, distinct).await?;
    if got != json!([{"tenant": "acme"}, {"tenant": "globex"}]) {
        failures.push(format!(
            "mssp-operator (acme, globex) sees the tenants {got}"
        ));
    }
    let got = rows(
        node,
        mssp,
        "SELECT count(*) AS n FROM events WHERE tenant = 'initech' OR src_ip LIKE '10.3.%'",
    )
    .await?;
    if got != json!([{"n": 0}]) {
        failures.push(format!("mssp-operator sees initech's rows: {got}"));
    }
    let (status, body) = query(node, mssp, "SELECT count(*) FROM spoor.initech.events").await?;
    if status == 200 {
        failures.push(format!("mssp-operator reads spoor.initech.events: {body}"));
    }
    let out = psql(
        node.postgres.as_deref().context("postgres")?,
        mssp.token(),
        distinct,
    )?;
    let seen = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || seen.trim() != "acme\nglobex" {
        failures.push(format!(
            "mssp-operator over psql sees {seen:?} {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let got = rows(node, admin, distinct).await?;
    if got
        != json!([{"tenant": "acme"}, {"tenant": "default"}, {"tenant": "globex"}, {"tenant": "initech"}])
    {
        failures.push(format!("the cluster's admin sees the tenants {got}"));
    }

    // A tenant-admin lists the tokens bound to its tenant only.
    let listed = cli_ok(&ctx.grpc, &ctx.creds[TENANT_ADMIN], &["token", "list"])?;
    let listed = listed.as_array().cloned().unwrap_or_default();
    let foreign: Vec<&Value> = listed
        .iter()
        .filter(|t| {
            t["tenants"] != json!(["acme"])
                || ["admin", "mssp-operator"].contains(&t["role"].as_str().unwrap_or_default())
        })
        .collect();
    if listed.is_empty() || !foreign.is_empty() {
        failures.push(format!(
            "acme's tenant-admin lists tokens beyond acme's: {foreign:?} (of {} listed)",
            listed.len()
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_may_do_exactly_what_its_role_allows_on_every_interface() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    // The cluster secret: 64 hex characters.
    let mut random = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
    let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let secret_file = dir.path().join("cluster.secret");
    std::fs::write(&secret_file, format!("{secret}\n"))?;
    let node = Spoor::role(
        "standalone",
        &dir.path().join("data"),
        &[
            "query.auth=token".to_string(),
            "ingest.http_auth=token".to_string(),
            format!("cluster.secret_file={}", secret_file.display()),
            "retro_hunt.max_concurrent_jobs=16".to_string(),
            "ingest.compaction.enabled=false".to_string(),
        ],
        &SpoorOptions::default(),
    )?;
    let grpc = node.grpc.clone().context("standalone serves gRPC")?;
    // Mismatches and failed checks, all reported at the end.
    let mut failures: Vec<String> = Vec::new();

    // The first admin token, from the cluster secret.
    let secret_cred = Cred::SecretFile(secret_file.clone());
    let (admin_token, admin_id) = new_token(&grpc, &secret_cred, "admin", &[])?;
    let admin = Cred::Token(admin_token.clone());
    for tenant in ["acme", "globex", "initech", "default"] {
        cli_ok(&grpc, &admin, &["tenant", "create", tenant])?;
    }
    let mut creds: BTreeMap<&'static str, Cred> = BTreeMap::new();
    creds.insert(ADMIN, admin.clone());
    for (who, tenants) in [
        (MSSP, &["acme", "globex"][..]),
        (TENANT_ADMIN, &["acme"][..]),
        (ANALYST, &["acme"][..]),
        (VIEWER, &["acme"][..]),
        (INGEST, &["acme"][..]),
    ] {
        let (token, _) = new_token(&grpc, &admin, who, tenants)?;
        creds.insert(who, Cred::Token(token));
    }
    creds.insert(NO_TOKEN, Cred::None);
    // The admin token's id with another secret.
    let forged = format!("spoor_{admin_id}_{}", "0".repeat(64));
    ensure!(forged != admin_token && forged.len() == admin_token.len());
    creds.insert(BAD_TOKEN, Cred::Token(forged));
    creds.insert(SECRET, secret_cred.clone());
    let (globex_ingest, _) = new_token(&grpc, &admin, "ingest", &["globex"])?;
    let (initech_ingest, _) = new_token(&grpc, &admin, "ingest", &["initech"])?;
    let (initech_analyst, _) = new_token(&grpc, &admin, "analyst", &["initech"])?;
    let (globex_ingest, initech_ingest, initech_analyst) = (
        Cred::Token(globex_ingest),
        Cred::Token(initech_ingest),
        Cred::Token(initech_analyst),
    );

    // Events of each tenant, sent with its ingest token; acme's are
    // logons and encoded shells on the test day, for a real alert.
    let acme_events: String = (0..4)
        .map(|i| logon_event(i, test_time(i * 60), "alice".into(), i % 2 == 1).to_string() + "\n")
        .collect();
    for (cred, source, body) in [
        (&creds[INGEST], "edr", acme_events),
        (
            &globex_ingest,
            "fw",
            "{\"src_ip\":\"10.2.2.1\"}\n{\"src_ip\":\"10.2.2.2\"}\n".to_string(),
        ),
        (
            &initech_ingest,
            "fw",
            "{\"src_ip\":\"10.3.3.1\"}\n{\"src_ip\":\"10.3.3.2\"}\n".to_string(),
        ),
    ] {
        let (status, text) = send(
            &node,
            Method::POST,
            &format!("/v1/ingest/{source}"),
            cred,
            "Bearer",
            Some(body),
        )
        .await?;
        ensure!(status == 200, "ingest {source}: {status} {text}");
    }
    let per_tenant = "SELECT tenant, count(*) AS n FROM events GROUP BY tenant ORDER BY tenant";
    let want = json!([
        {"tenant": "acme", "n": 4},
        {"tenant": "globex", "n": 2},
        {"tenant": "initech", "n": 2}
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = rows(&node, &admin, per_tenant).await?;
        if got == want {
            break;
        }
        if Instant::now() > deadline {
            bail!("events not queryable after 30 s: {got}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let rule = shell_rule();
    let alert_id = real_alert(&node, &admin, &creds[ANALYST], &rule).await?;

    // A revoked token is refused within the cache's 5 s (+1): a cluster
    // admin token, used (so cached) just before.
    let (doomed_token, doomed_id) = new_token(&grpc, &admin, "admin", &[])?;
    let doomed = Cred::Token(doomed_token);
    let (status, body) = query(&node, &doomed, "SELECT 1 AS one").await?;
    ensure!(
        status == 200,
        "the admin token before its revocation: {status} {body}"
    );
    cli_ok(&grpc, &admin, &["token", "revoke", &doomed_id])?;
    let revoked_at = Instant::now();
    let (n, d) = (&node, &doomed);
    let took = within(revoked_at, Duration::from_secs(6), move || async move {
        Ok(query(n, d, "SELECT 1 AS one").await?.0 == 401)
    })
    .await?;
    match took {
        Some(t) => eprintln!(
            "revoked token refused on HTTP {:.1} s after `spoor token revoke`",
            t.as_secs_f64()
        ),
        None => failures.push(format!(
            "a revoked token still answered on HTTP 6 s after `spoor token revoke`: {:?}",
            query(&node, &doomed, "SELECT 1 AS one").await?
        )),
    }
    creds.insert(REVOKED, doomed);

    // The matrix.
    let flight = flight_outcomes(
        node.flight
            .as_deref()
            .context("standalone serves Flight SQL")?,
        &creds,
        "SELECT count(*) AS n FROM events",
    )?;
    let ctx = Ctx {
        node,
        grpc: grpc.clone(),
        creds,
        admin: admin.clone(),
        alert_id,
        rule,
        flight,
    };
    let mut ran = Vec::new();
    for (action, wants) in MATRIX {
        for &(who, want) in *wants {
            let got = run(&ctx, *action, who)
                .await
                .unwrap_or_else(|e| Outcome::new("error", format!("{e:#}")));
            ran.push(Ran {
                action: *action,
                who,
                want,
                got,
            });
        }
    }
    let node = &ctx.node;
    if std::env::var_os("ACCESS_MATRIX_DETAILS").is_some() {
        for r in &ran {
            eprintln!(
                "{} | {} | {}: {} {}",
                r.who,
                r.action.interface(),
                r.action.name(),
                r.got.code,
                r.got.short()
            );
        }
    }
    for r in ran.iter().filter(|r| !r.got.meets(r.want)) {
        failures.push(format!(
            "{} | {} | {}: expected {}, got {}: {}",
            r.who,
            r.action.interface(),
            r.action.name(),
            want_text(r.want),
            r.got.code,
            r.got.short()
        ));
    }

    scope_checks(&ctx, &mut failures).await?;

    // A disabled tenant's tokens are refused within the cache's 5 s (+1).
    let (status, body) = query(node, &initech_analyst, "SELECT count(*) AS n FROM events").await?;
    ensure!(
        status == 200,
        "initech's analyst before the disabling: {status} {body}"
    );
    let ingest_line = "{\"src_ip\":\"10.3.3.3\"}\n";
    let (status, text) = send(
        node,
        Method::POST,
        "/v1/ingest/fw",
        &initech_ingest,
        "Bearer",
        Some(ingest_line.to_string()),
    )
    .await?;
    ensure!(
        status == 200,
        "initech's ingest before the disabling: {status} {text}"
    );
    cli_ok(&grpc, &admin, &["tenant", "disable", "initech"])?;
    let disabled_at = Instant::now();
    let (analyst, ingest) = (&initech_analyst, &initech_ingest);
    let took = within(disabled_at, Duration::from_secs(6), move || async move {
        let query_refused = query(node, analyst, "SELECT count(*) AS n FROM events")
            .await?
            .0
            == 401;
        let (status, _) = send(
            node,
            Method::POST,
            "/v1/ingest/fw",
            ingest,
            "Bearer",
            Some(ingest_line.to_string()),
        )
        .await?;
        Ok(query_refused && status == 401)
    })
    .await?;
    match took {
        Some(t) => eprintln!(
            "disabled tenant's analyst and ingest tokens refused {:.1} s after `spoor tenant disable`",
            t.as_secs_f64()
        ),
        None => failures.push(format!(
            "initech's tokens still answered 6 s after `spoor tenant disable`: query {:?}",
            query(node, &initech_analyst, "SELECT count(*) AS n FROM events").await?
        )),
    }

    eprintln!(
        "\naccess matrix: {} rows ({} mismatched), ok = allowed; 401/403 HTTP; 401/2 and 403/4 \
         HEC status/code; unauth/denied/notfound gRPC (CLI), Flight SQL or PostgreSQL refusals; \
         ! = not what the policy says\n{}",
        ran.len(),
        ran.iter().filter(|r| !r.got.meets(r.want)).count(),
        grid(&ran)
    );
    eprintln!(
        "access matrix ran in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        bail!(
            "{} failure(s) of the access policy:\n{}\nlog: {}",
            failures.len(),
            failures.join("\n"),
            tail(&node.log_path)
        );
    }
    Ok(())
}
