//! The records themselves, as the shippers write them: Windows event logs
//! as Winlogbeat (ECS) JSON, Zeek's JSON logs (ISO 8601 `ts`), syslog in
//! RFC 5424, and a Palo Alto firewall's CEF. Every time has microseconds
//! (CEF: milliseconds, its `rt` is epoch milliseconds), so an alert's time
//! can be matched to the event that raised it exactly.

use serde_json::{Map, Value, json};

use super::rng::{Rng, fnv1a};
use super::world::Host;

/// RFC 3339 in UTC with microseconds: `2026-11-30T08:00:00.123456Z`.
pub(crate) fn iso_micros(micros: i64) -> String {
    spoor_common::time::to_datetime(micros)
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Sysmon's `UtcTime`: `2026-11-30 08:00:00.123`.
fn sysmon_utc(micros: i64) -> String {
    spoor_common::time::to_datetime(micros)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

/// The marker field of an attack's events: where it lands differs per
/// format, but it always ends up in `unmapped` under a name containing
/// `spoor_scenario`, so `unmapped LIKE '%<marker>%'` finds every event of
/// an attack whatever its source.
pub(crate) const MARKER_FIELD: &str = "spoor_scenario";

/// One Windows event as Winlogbeat 8 ships it.
pub(crate) struct Win<'a> {
    pub(crate) host: &'a Host,
    pub(crate) channel: &'a str,
    pub(crate) provider: &'a str,
    pub(crate) event_id: u32,
    pub(crate) record_id: u64,
    pub(crate) keywords: &'a [&'a str],
    pub(crate) data: Value,
}

impl Win<'_> {
    pub(crate) fn render(&self, micros: i64, marker: Option<&str>) -> String {
        let mut event = json!({
            "@timestamp": iso_micros(micros),
            "agent": {"type": "winlogbeat", "version": "8.15.3"},
            "ecs": {"version": "8.0.0"},
            "event": {"code": self.event_id.to_string(), "kind": "event", "provider": self.provider},
            "host": {"name": self.host.fqdn.to_lowercase(), "hostname": self.host.name, "ip": [self.host.ip], "os": {"family": "windows"}},
            "log": {"level": "information"},
            "winlog": {
                "api": "wineventlog",
                "channel": self.channel,
                "computer_name": self.host.fqdn,
                "event_id": self.event_id.to_string(),
                "provider_name": self.provider,
                "record_id": self.record_id,
                "keywords": self.keywords,
                "event_data": self.data,
            },
        });
        if let (Some(m), Value::Object(o)) = (marker, &mut event) {
            o.insert("labels".into(), json!({ MARKER_FIELD: m }));
        }
        event.to_string()
    }
}

/// A process as Sysmon describes it.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub(crate) image: String,
    pub(crate) cmd: String,
    pub(crate) pid: u64,
    pub(crate) guid: String,
    /// `DOMAIN\name`.
    pub(crate) user: String,
    pub(crate) integrity: &'static str,
}

/// `Hashes` of a binary: fixed per path, so one program has one hash
/// everywhere, as it would.
fn hashes(image: &str) -> String {
    let mut r = Rng::new(fnv1a(image.to_lowercase().as_bytes()));
    format!(
        "SHA1={},MD5={},SHA256={},IMPHASH={}",
        r.hex(40).to_uppercase(),
        r.hex(32).to_uppercase(),
        r.hex(64).to_uppercase(),
        r.hex(32).to_uppercase()
    )
}

/// The last part of a Windows path.
pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('\\').next().unwrap_or(path)
}

/// Version information Sysmon reads from a binary.
fn version_info(image: &str) -> (&'static str, &'static str, String) {
    let name = file_name(image);
    let company =
        if image.to_lowercase().starts_with("c:\\windows\\") || image.contains("Microsoft") {
            "Microsoft Corporation"
        } else if image.contains("Google") {
            "Google LLC"
        } else if name.to_lowercase().starts_with("procdump") {
            "Sysinternals - www.sysinternals.com"
        } else {
            "-"
        };
    let product = if company == "Microsoft Corporation" {
        "Microsoft® Windows® Operating System"
    } else {
        "-"
    };
    let original = match name.to_lowercase().as_str() {
        "powershell.exe" => "PowerShell.EXE".to_string(),
        "procdump64.exe" | "procdump.exe" => "procdump".to_string(),
        n if n.ends_with(".exe") => name.to_string(),
        _ => "-".to_string(),
    };
    (company, product, original)
}

/// Sysmon 1, process creation.
pub(crate) fn sysmon_process<'a>(
    host: &'a Host,
    record_id: u64,
    proc: &Proc,
    parent: &Proc,
    logon_id: &str,
    micros: i64,
) -> Win<'a> {
    let (company, product, original) = version_info(&proc.image);
    let cwd = if proc.user.ends_with("\\SYSTEM") {
        "C:\\Windows\\system32\\".to_string()
    } else {
        let name = proc.user.rsplit('\\').next().unwrap_or("Public");
        format!("C:\\Users\\{name}\\")
    };
    let data = json!({
        "RuleName": "-",
        "UtcTime": sysmon_utc(micros),
        "ProcessGuid": proc.guid,
        "ProcessId": proc.pid.to_string(),
        "Image": proc.image,
        "FileVersion": "10.0.22621.1",
        "Description": file_name(&proc.image).trim_end_matches(".exe"),
        "Product": product,
        "Company": company,
        "OriginalFileName": original,
        "CommandLine": proc.cmd,
        "CurrentDirectory": cwd,
        "User": proc.user,
        "LogonGuid": "{00000000-0000-0000-0000-000000000000}",
        "LogonId": logon_id,
        "TerminalSessionId": if proc.user.ends_with("\\SYSTEM") { "0" } else { "1" },
        "IntegrityLevel": proc.integrity,
        "Hashes": hashes(&proc.image),
        "ParentProcessGuid": parent.guid,
        "ParentProcessId": parent.pid.to_string(),
        "ParentImage": parent.image,
        "ParentCommandLine": parent.cmd,
        "ParentUser": parent.user,
    });
    sysmon(host, 1, record_id, data)
}

/// Sysmon 3, network connection.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sysmon_network<'a>(
    host: &'a Host,
    record_id: u64,
    proc: &Proc,
    src_port: u64,
    dst_ip: &str,
    dst_host: &str,
    dst_port: u64,
    micros: i64,
) -> Win<'a> {
    let data = json!({
        "RuleName": "-",
        "UtcTime": sysmon_utc(micros),
        "ProcessGuid": proc.guid,
        "ProcessId": proc.pid.to_string(),
        "Image": proc.image,
        "User": proc.user,
        "Protocol": "tcp",
        "Initiated": "true",
        "SourceIsIpv6": "false",
        "SourceIp": host.ip,
        "SourceHostname": host.fqdn,
        "SourcePort": src_port.to_string(),
        "SourcePortName": "-",
        "DestinationIsIpv6": "false",
        "DestinationIp": dst_ip,
        "DestinationHostname": dst_host,
        "DestinationPort": dst_port.to_string(),
        "DestinationPortName": match dst_port { 443 => "https", 80 => "http", 445 => "microsoft-ds", 389 => "ldap", 88 => "kerberos", _ => "-" },
    });
    sysmon(host, 3, record_id, data)
}

fn sysmon(host: &Host, event_id: u32, record_id: u64, data: Value) -> Win<'_> {
    Win {
        host,
        channel: "Microsoft-Windows-Sysmon/Operational",
        provider: "Microsoft-Windows-Sysmon",
        event_id,
        record_id,
        keywords: &[],
        data,
    }
}

/// A Security log event (4624, 4625, 4634).
pub(crate) fn security(host: &Host, event_id: u32, record_id: u64, data: Value) -> Win<'_> {
    let keywords: &'static [&'static str] = if event_id == 4625 {
        &["Audit Failure"]
    } else {
        &["Audit Success"]
    };
    Win {
        host,
        channel: "Security",
        provider: "Microsoft-Windows-Security-Auditing",
        event_id,
        record_id,
        keywords,
        data,
    }
}

/// System 7045, a service was installed.
pub(crate) fn service_installed<'a>(
    host: &'a Host,
    record_id: u64,
    name: &str,
    image_path: &str,
    account: &str,
) -> Win<'a> {
    Win {
        host,
        channel: "System",
        provider: "Service Control Manager",
        event_id: 7045,
        record_id,
        keywords: &["Classic"],
        data: json!({
            "ServiceName": name,
            "ImagePath": image_path,
            "ServiceType": "user mode service",
            "StartType": "demand start",
            "AccountName": account,
        }),
    }
}

/// The fields of a logon event (4624 success, 4625 failure, 4634 logoff).
pub(crate) struct Logon<'a> {
    pub(crate) user: &'a str,
    pub(crate) user_sid: &'a str,
    pub(crate) domain: &'a str,
    pub(crate) logon_type: u32,
    pub(crate) ip: &'a str,
    pub(crate) port: u64,
    pub(crate) workstation: &'a str,
    /// `Kerberos`, `NTLM` or `Negotiate`.
    pub(crate) package: &'a str,
    pub(crate) logon_id: &'a str,
}

impl Logon<'_> {
    pub(crate) fn data(&self, event_id: u32, host: &Host) -> Value {
        let process = if self.logon_type == 2 || self.logon_type == 7 {
            ("0x2a4", "C:\\Windows\\System32\\svchost.exe")
        } else {
            ("0x0", "-")
        };
        let logon_process = match (self.package, self.logon_type) {
            (_, 2 | 7) => "User32 ",
            ("Kerberos", _) => "Kerberos",
            ("NTLM", _) => "NtLmSsp ",
            _ => "Advapi  ",
        };
        let mut data = Map::new();
        let mut put = |k: &str, v: Value| {
            data.insert(k.to_string(), v);
        };
        if event_id == 4634 {
            put("TargetUserSid", json!(self.user_sid));
            put("TargetUserName", json!(self.user));
            put("TargetDomainName", json!(self.domain));
            put("TargetLogonId", json!(self.logon_id));
            put("LogonType", json!(self.logon_type.to_string()));
            return Value::Object(data);
        }
        put("SubjectUserSid", json!("S-1-5-18"));
        put("SubjectUserName", json!(format!("{}$", host.name)));
        put("SubjectDomainName", json!(self.domain));
        put("SubjectLogonId", json!("0x3e7"));
        put(
            "TargetUserSid",
            json!(if event_id == 4625 {
                "S-1-0-0"
            } else {
                self.user_sid
            }),
        );
        put("TargetUserName", json!(self.user));
        put("TargetDomainName", json!(self.domain));
        if event_id == 4625 {
            put("Status", json!("0xc000006d"));
            put("FailureReason", json!("%%2313"));
            put("SubStatus", json!("0xc000006a"));
        } else {
            put("TargetLogonId", json!(self.logon_id));
        }
        put("LogonType", json!(self.logon_type.to_string()));
        put("LogonProcessName", json!(logon_process));
        put("AuthenticationPackageName", json!(self.package));
        put("WorkstationName", json!(self.workstation));
        put("LogonGuid", json!("{00000000-0000-0000-0000-000000000000}"));
        put("TransmittedServices", json!("-"));
        put(
            "LmPackageName",
            json!(if self.package == "NTLM" {
                "NTLM V2"
            } else {
                "-"
            }),
        );
        put(
            "KeyLength",
            json!(if self.package == "NTLM" { "128" } else { "0" }),
        );
        put("ProcessId", json!(process.0));
        put("ProcessName", json!(process.1));
        put("IpAddress", json!(self.ip));
        put(
            "IpPort",
            json!(if self.port == 0 {
                "-".to_string()
            } else {
                self.port.to_string()
            }),
        );
        put("ImpersonationLevel", json!("%%1833"));
        if event_id == 4624 {
            put("RestrictedAdminMode", json!("-"));
            put("VirtualAccount", json!("%%1843"));
            put("ElevatedToken", json!("%%1842"));
        }
        Value::Object(data)
    }
}

/// A Zeek log record as Zeek's JSON writer with ISO 8601 times writes it.
pub(crate) fn zeek(
    path: &str,
    micros: i64,
    uid: &str,
    fields: Value,
    marker: Option<&str>,
) -> String {
    let mut record = Map::new();
    record.insert("_path".into(), json!(path));
    record.insert("ts".into(), json!(iso_micros(micros)));
    record.insert("uid".into(), json!(uid));
    if let Value::Object(f) = fields {
        record.extend(f);
    }
    if let Some(m) = marker {
        record.insert(MARKER_FIELD.into(), json!(m));
    }
    Value::Object(record).to_string()
}

/// A Zeek connection uid (`C` and 17 characters).
pub(crate) fn zeek_uid(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::from("C");
    for _ in 0..17 {
        s.push(char::from(*rng.pick(ALPHABET)));
    }
    s
}

/// An RFC 5424 syslog line: `<PRI>1 TIME HOST APP PROCID - SD MSG`. The
/// marker is structured data (`[spoor@32473 spoor_scenario="…"]`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn syslog(
    facility: u8,
    severity: u8,
    micros: i64,
    host: &str,
    app: &str,
    pid: u64,
    message: &str,
    marker: Option<&str>,
) -> String {
    let pri = u32::from(facility) * 8 + u32::from(severity);
    let sd = match marker {
        Some(m) => format!("[spoor@32473 {MARKER_FIELD}=\"{m}\"]"),
        None => "-".to_string(),
    };
    format!(
        "<{pri}>1 {} {host} {app} {pid} - {sd} {message}",
        iso_micros(micros)
    )
}

/// A Palo Alto TRAFFIC log in CEF.
pub(crate) struct Traffic<'a> {
    pub(crate) firewall: &'a str,
    pub(crate) src: &'a str,
    pub(crate) spt: u64,
    pub(crate) dst: &'a str,
    pub(crate) dpt: u64,
    pub(crate) proto: &'a str,
    pub(crate) app: &'a str,
    pub(crate) action: &'a str,
    pub(crate) user: &'a str,
    pub(crate) rule: &'a str,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl Traffic<'_> {
    pub(crate) fn render(&self, micros: i64, marker: Option<&str>) -> String {
        let severity = if self.action == "allow" { 1 } else { 3 };
        let mut line = format!(
            "CEF:0|Palo Alto Networks|PAN-OS|10.2.4|TRAFFIC|end|{severity}|rt={} dvchost={} src={} dst={} spt={} dpt={} proto={} app={} act={} cs1Label=Rule cs1={} in={} out={} cat=traffic",
            micros / 1000,
            self.firewall,
            self.src,
            self.dst,
            self.spt,
            self.dpt,
            self.proto,
            self.app,
            self.action,
            self.rule,
            self.bytes_in,
            self.bytes_out,
        );
        if !self.user.is_empty() {
            line.push_str(&format!(" suser={}", self.user.replace('\\', "\\\\")));
        }
        if let Some(m) = marker {
            line.push_str(&format!(" cs6Label={MARKER_FIELD} cs6={m}"));
        }
        line
    }
}

/// Standard base64 (PowerShell's -EncodedCommand takes UTF-16LE text in it).
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Text as UTF-16LE bytes.
pub(crate) fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}
