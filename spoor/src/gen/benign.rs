//! The benign mix: what a quiet day of an estate looks like. None of it
//! may match a rule of `deploy/rules` (tested), so it holds look-alikes on
//! purpose: a plain `whoami`, PowerShell with `-ExecutionPolicy Bypass`,
//! rundll32 opening a control panel, failed logons from inside the
//! network, service installations of updaters, SSH noise from the
//! internet on the jump host.

use serde_json::json;

use super::SourceKind;
use super::records::{self, Logon, Proc, Traffic};
use super::rng::Rng;
use super::world::{Host, SERVICES, World};

/// The kinds of benign record and their weights (per mille of the mix
/// when every source is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Benign {
    ProcessCreate,
    NetworkConnect,
    Logon,
    Logoff,
    FailedLogon,
    ServiceInstall,
    ZeekConn,
    ZeekDns,
    Syslog,
    Firewall,
}

pub(crate) const MIX: &[(Benign, u64)] = &[
    (Benign::ProcessCreate, 220),
    (Benign::NetworkConnect, 140),
    (Benign::Logon, 100),
    (Benign::Logoff, 60),
    (Benign::FailedLogon, 10),
    (Benign::ServiceInstall, 2),
    (Benign::ZeekConn, 150),
    (Benign::ZeekDns, 110),
    (Benign::Syslog, 100),
    (Benign::Firewall, 108),
];

impl Benign {
    pub(crate) fn source(self) -> SourceKind {
        match self {
            Benign::ProcessCreate
            | Benign::NetworkConnect
            | Benign::Logon
            | Benign::Logoff
            | Benign::FailedLogon
            | Benign::ServiceInstall => SourceKind::Windows,
            Benign::ZeekConn | Benign::ZeekDns => SourceKind::Zeek,
            Benign::Syslog => SourceKind::Syslog,
            Benign::Firewall => SourceKind::Cef,
        }
    }
}

pub(crate) const SYSTEM: &str = "NT AUTHORITY\\SYSTEM";
pub(crate) const CMD: &str = "C:\\Windows\\System32\\cmd.exe";
pub(crate) const EXPLORER: &str = "C:\\Windows\\explorer.exe";
pub(crate) const POWERSHELL: &str =
    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe";
const SVCHOST: &str = "C:\\Windows\\System32\\svchost.exe";
const CHROME: &str = "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe";
const OUTLOOK: &str = "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE";
pub(crate) const WINWORD: &str = "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE";
const TEAMS: &str =
    "C:\\Program Files\\WindowsApps\\MSTeams_24295.605.3225.8804_x64__8wekyb3d8bbwe\\ms-teams.exe";

/// A process with a fresh pid and GUID.
pub(crate) fn process(rng: &mut Rng, image: &str, cmd: String, user: String) -> Proc {
    let integrity = if user == SYSTEM { "System" } else { "Medium" };
    Proc {
        image: image.to_string(),
        cmd,
        pid: rng.range(600, 24_000) & !3,
        guid: rng.guid(),
        user,
        integrity,
    }
}

/// A logon id (`0x…`).
pub(crate) fn logon_id(rng: &mut Rng) -> String {
    format!("0x{:x}", rng.range(0x3_0000, 0xff_ffff))
}

/// An ephemeral client port.
pub(crate) fn ephemeral(rng: &mut Rng) -> u64 {
    rng.range(49_152, 65_535)
}

/// `DOMAIN\name`.
pub(crate) fn qualified(world: &World, name: &str) -> String {
    format!("{}\\{}", world.netbios, name)
}

/// A process a user or the system starts, with its parent: everyday
/// software, none of it what the rules look for.
fn everyday_process(rng: &mut Rng, world: &World, host: &Host) -> (Proc, Proc) {
    let user = qualified(world, &world.owner(host).name);
    let home = format!("C:\\Users\\{}", world.owner(host).name);
    let explorer = process(rng, EXPLORER, EXPLORER.to_string(), user.clone());
    let services = process(
        rng,
        "C:\\Windows\\System32\\services.exe",
        "C:\\Windows\\system32\\services.exe".into(),
        SYSTEM.into(),
    );
    let svchost = process(
        rng,
        SVCHOST,
        "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule".into(),
        SYSTEM.into(),
    );
    let cmd = process(rng, CMD, format!("\"{CMD}\" "), user.clone());
    match rng.below(15) {
        0 => {
            let id = rng.range(5, 40);
            let ticks = rng.range(1_000_000, 9_000_000_000);
            let child = process(
                rng,
                CHROME,
                format!("\"{CHROME}\" --type=renderer --lang=en-US --renderer-client-id={id} --launch-time-ticks={ticks}"),
                user,
            );
            let parent = process(rng, CHROME, format!("\"{CHROME}\" "), child.user.clone());
            (child, parent)
        }
        1 => (process(rng, OUTLOOK, format!("\"{OUTLOOK}\" "), user), explorer),
        2 => {
            let q = rng.range(1, 4);
            (
                process(
                    rng,
                    WINWORD,
                    format!("\"{WINWORD}\" /n \"{home}\\Documents\\Report-Q{q}.docx\""),
                    user,
                ),
                explorer,
            )
        }
        3 => (svchost.clone(), services),
        4 => {
            let g = rng.guid();
            (
                process(
                    rng,
                    "C:\\Windows\\System32\\taskhostw.exe",
                    format!("taskhostw.exe {g}"),
                    user,
                ),
                svchost,
            )
        }
        5 => (
            process(
                rng,
                "C:\\Windows\\System32\\notepad.exe",
                format!("\"C:\\Windows\\system32\\NOTEPAD.EXE\" {home}\\Desktop\\todo.txt"),
                user,
            ),
            explorer,
        ),
        6 => (
            process(
                rng,
                "C:\\Windows\\System32\\wbem\\WmiPrvSE.exe",
                "C:\\Windows\\system32\\wbem\\wmiprvse.exe -secured -Embedding".into(),
                SYSTEM.into(),
            ),
            svchost,
        ),
        7 => (
            // An inventory script run by a scheduled task: PowerShell,
            // but with its script in a file, not encoded.
            process(
                rng,
                POWERSHELL,
                format!(
                    "\"{POWERSHELL}\" -NoProfile -NonInteractive -ExecutionPolicy Bypass -File \"C:\\ProgramData\\{}\\Scripts\\inventory.ps1\"",
                    world.netbios
                ),
                SYSTEM.into(),
            ),
            svchost,
        ),
        8 => {
            let child = process(
                rng,
                "C:\\Windows\\System32\\ipconfig.exe",
                "ipconfig  /flushdns".into(),
                user,
            );
            (child, cmd)
        }
        9 => {
            // A login script asking who is logged on: plain whoami.
            let child = process(
                rng,
                "C:\\Windows\\System32\\whoami.exe",
                "whoami".into(),
                user,
            );
            (child, cmd)
        }
        10 => (
            process(
                rng,
                "C:\\Windows\\System32\\rundll32.exe",
                "\"C:\\Windows\\system32\\rundll32.exe\" C:\\Windows\\system32\\shell32.dll,Control_RunDLL C:\\Windows\\system32\\desk.cpl".into(),
                user,
            ),
            explorer,
        ),
        11 => (
            process(rng, TEAMS, format!("\"{TEAMS}\" msteams.exe --system-initiated"), user),
            explorer,
        ),
        12 => (
            process(
                rng,
                "C:\\Program Files\\Git\\cmd\\git.exe",
                "\"C:\\Program Files\\Git\\cmd\\git.exe\" fetch --all --prune".into(),
                user,
            ),
            cmd,
        ),
        13 => (
            process(
                rng,
                "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MpCmdRun.exe",
                "\"C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24090.11-0\\MpCmdRun.exe\" SignatureUpdate -ScheduleJob -RestrictPrivileges".into(),
                SYSTEM.into(),
            ),
            svchost,
        ),
        _ => (
            process(
                rng,
                "C:\\Windows\\System32\\conhost.exe",
                "\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1".into(),
                user,
            ),
            cmd,
        ),
    }
}

/// One benign record of `kind` at `micros`, with the record id counter of
/// the tenant's Windows logs.
pub(crate) fn render(
    kind: Benign,
    rng: &mut Rng,
    world: &World,
    record_id: &mut u64,
    micros: i64,
) -> String {
    *record_id += 1;
    let rid = *record_id;
    match kind {
        Benign::ProcessCreate => {
            let host = rng.pick(&world.workstations);
            let (child, parent) = everyday_process(rng, world, host);
            let lid = logon_id(rng);
            records::sysmon_process(host, rid, &child, &parent, &lid, micros).render(micros, None)
        }
        Benign::NetworkConnect => {
            let host = rng.pick(&world.workstations);
            let user = qualified(world, &world.owner(host).name);
            let port = ephemeral(rng);
            match rng.below(4) {
                0 => {
                    let dc = rng.pick(&world.dcs);
                    let proc = process(
                        rng,
                        "C:\\Windows\\System32\\lsass.exe",
                        "C:\\Windows\\system32\\lsass.exe".into(),
                        SYSTEM.into(),
                    );
                    let dport = *rng.pick(&[88, 389]);
                    records::sysmon_network(host, rid, &proc, port, &dc.ip, &dc.fqdn, dport, micros)
                        .render(micros, None)
                }
                1 => {
                    let fs = world.server("FS01");
                    let proc = process(rng, "System", "System".into(), SYSTEM.into());
                    records::sysmon_network(host, rid, &proc, port, &fs.ip, &fs.fqdn, 445, micros)
                        .render(micros, None)
                }
                _ => {
                    let svc = rng.pick(SERVICES);
                    let image = *rng.pick(&[CHROME, OUTLOOK, TEAMS]);
                    let proc = process(rng, image, format!("\"{image}\" "), user);
                    records::sysmon_network(host, rid, &proc, port, svc.ip, svc.domain, 443, micros)
                        .render(micros, None)
                }
            }
        }
        Benign::Logon | Benign::Logoff => {
            let event_id = if kind == Benign::Logon { 4624 } else { 4634 };
            let (host, user_index, logon_type, ip, ws) = match rng.below(4) {
                // A user opens a share or mailbox on a server.
                0 | 1 => {
                    let ws = rng.pick(&world.workstations);
                    let server = rng.pick(&world.servers);
                    (
                        server,
                        ws.owner.unwrap_or(0),
                        3,
                        ws.ip.clone(),
                        ws.name.clone(),
                    )
                }
                // At their own desk.
                2 => {
                    let ws = rng.pick(&world.workstations);
                    (
                        ws,
                        ws.owner.unwrap_or(0),
                        2,
                        "127.0.0.1".to_string(),
                        ws.name.clone(),
                    )
                }
                // An admin on the remote desktop gateway, from inside.
                _ => {
                    let admin = *rng.pick(&world.admins);
                    let ws = &world.workstations[admin % world.workstations.len()];
                    (
                        world.server("RDS01"),
                        admin,
                        10,
                        ws.ip.clone(),
                        ws.name.clone(),
                    )
                }
            };
            let user = &world.users[user_index];
            let lid = logon_id(rng);
            let logon = Logon {
                user: &user.name,
                user_sid: &user.sid,
                domain: &world.netbios,
                logon_type,
                ip: &ip,
                port: if logon_type == 2 { 0 } else { ephemeral(rng) },
                workstation: &ws,
                package: if logon_type == 3 {
                    "Kerberos"
                } else {
                    "Negotiate"
                },
                logon_id: &lid,
            };
            records::security(host, event_id, rid, logon.data(event_id, host)).render(micros, None)
        }
        Benign::FailedLogon => {
            // A mistyped password at the desk or the lock screen, or a
            // mapped drive with a stale password: all from inside.
            let ws = rng.pick(&world.workstations);
            let user = world.owner(ws);
            let (host, logon_type, ip) = if rng.chance(700) {
                (ws, *rng.pick(&[2, 7]), "127.0.0.1".to_string())
            } else {
                (world.server("FS01"), 3, ws.ip.clone())
            };
            let lid = logon_id(rng);
            let logon = Logon {
                user: &user.name,
                user_sid: &user.sid,
                domain: &world.netbios,
                logon_type,
                ip: &ip,
                port: if logon_type == 3 { ephemeral(rng) } else { 0 },
                workstation: &ws.name,
                package: if logon_type == 3 { "NTLM" } else { "Negotiate" },
                logon_id: &lid,
            };
            records::security(host, 4625, rid, logon.data(4625, host)).render(micros, None)
        }
        Benign::ServiceInstall => {
            let host = rng.pick(&world.workstations);
            let (name, path) = *rng.pick(&[
                ("Google Chrome Elevation Service (GoogleChromeElevationService)", "\"C:\\Program Files\\Google\\Chrome\\Application\\131.0.6778.86\\elevation_service.exe\""),
                ("Mozilla Maintenance Service", "\"C:\\Program Files (x86)\\Mozilla Maintenance Service\\maintenanceservice.exe\""),
                ("Microsoft Edge Update Service (edgeupdate)", "\"C:\\Program Files (x86)\\Microsoft\\EdgeUpdate\\MicrosoftEdgeUpdate.exe\" /svc"),
                ("Sysmon64", "C:\\Windows\\Sysmon64.exe"),
            ]);
            records::service_installed(host, rid, name, path, "LocalSystem").render(micros, None)
        }
        Benign::ZeekConn => zeek_conn(rng, world, micros),
        Benign::ZeekDns => zeek_dns(rng, world, micros),
        Benign::Syslog => syslog(rng, world, micros),
        Benign::Firewall => firewall(rng, world, micros),
    }
}

/// Zeek conn fields of a finished connection.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conn_fields(
    src: &str,
    sport: u64,
    dst: &str,
    dport: u64,
    proto: &str,
    service: &str,
    state: &str,
    out: u64,
    inb: u64,
    duration: f64,
) -> serde_json::Value {
    let history = match state {
        "S0" => "S",
        "REJ" => "Sr",
        _ => "ShADadFf",
    };
    let mut v = json!({
        "id.orig_h": src, "id.orig_p": sport, "id.resp_h": dst, "id.resp_p": dport,
        "proto": proto, "duration": duration, "orig_bytes": out, "resp_bytes": inb,
        "conn_state": state, "local_orig": true, "local_resp": dst.starts_with("10."),
        "missed_bytes": 0, "history": history, "orig_pkts": out / 1200 + 1,
        "orig_ip_bytes": out + 40 * (out / 1200 + 1), "resp_pkts": inb / 1200 + 1,
        "resp_ip_bytes": inb + 40 * (inb / 1200 + 1),
    });
    if !service.is_empty()
        && let serde_json::Value::Object(o) = &mut v
    {
        o.insert("service".into(), json!(service));
    }
    v
}

fn zeek_conn(rng: &mut Rng, world: &World, micros: i64) -> String {
    let uid = records::zeek_uid(rng);
    let sport = ephemeral(rng);
    let fields = match rng.below(5) {
        0 | 1 => {
            let ws = rng.pick(&world.workstations);
            let svc = rng.pick(SERVICES);
            let out = rng.range(400, 40_000);
            let inb = rng.range(2_000, 4_000_000);
            let dur = rng.range(50, 90_000) as f64 / 1000.0;
            conn_fields(
                &ws.ip, sport, svc.ip, 443, "tcp", "ssl", "SF", out, inb, dur,
            )
        }
        2 => {
            let ws = rng.pick(&world.workstations);
            let dc = rng.pick(&world.dcs);
            let dur = rng.range(1, 40) as f64 / 1000.0;
            conn_fields(
                &ws.ip,
                sport,
                &dc.ip,
                53,
                "udp",
                "dns",
                "SF",
                rng.range(30, 80),
                rng.range(60, 300),
                dur,
            )
        }
        3 => {
            let ws = rng.pick(&world.workstations);
            let fs = world.server("FS01");
            let state = if rng.chance(950) { "SF" } else { "RSTO" };
            let dur = rng.range(100, 600_000) as f64 / 1000.0;
            conn_fields(
                &ws.ip,
                sport,
                &fs.ip,
                445,
                "tcp",
                "smb",
                state,
                rng.range(1_000, 500_000),
                rng.range(1_000, 9_000_000),
                dur,
            )
        }
        _ => {
            let web = &world.linux[rng.index(2)];
            let db = &world.linux[2];
            let state = if rng.chance(980) { "SF" } else { "S0" };
            let dur = rng.range(1, 3_000) as f64 / 1000.0;
            conn_fields(
                &web.ip,
                sport,
                &db.ip,
                5432,
                "tcp",
                "postgresql",
                state,
                rng.range(200, 8_000),
                rng.range(200, 80_000),
                dur,
            )
        }
    };
    records::zeek("conn", micros, &uid, fields, None)
}

/// Zeek dns fields of an answered query.
pub(crate) fn dns_fields(
    rng: &mut Rng,
    src: &str,
    resolver: &str,
    query: &str,
    answers: &[&str],
    rcode: &str,
) -> serde_json::Value {
    json!({
        "id.orig_h": src, "id.orig_p": ephemeral(rng), "id.resp_h": resolver, "id.resp_p": 53,
        "proto": "udp", "trans_id": rng.below(65_536), "rtt": rng.range(200, 30_000) as f64 / 1_000_000.0,
        "query": query, "qclass": 1, "qclass_name": "C_INTERNET", "qtype": 1, "qtype_name": "A",
        "rcode": if rcode == "NOERROR" { 0 } else { 3 }, "rcode_name": rcode,
        "AA": false, "TC": false, "RD": true, "RA": true, "Z": 0,
        "answers": answers, "TTLs": answers.iter().map(|_| 300.0).collect::<Vec<_>>(), "rejected": false,
    })
}

fn zeek_dns(rng: &mut Rng, world: &World, micros: i64) -> String {
    let uid = records::zeek_uid(rng);
    let ws = rng.pick(&world.workstations);
    let dc = rng.pick(&world.dcs);
    let fields = match rng.below(10) {
        0..=5 => {
            let svc = rng.pick(SERVICES);
            dns_fields(rng, &ws.ip, &dc.ip, svc.domain, &[svc.ip], "NOERROR")
        }
        6..=8 => {
            let server = rng.pick(&world.servers);
            let name = format!("{}.{}", server.name.to_lowercase(), world.dns_domain);
            dns_fields(rng, &ws.ip, &dc.ip, &name, &[&server.ip], "NOERROR")
        }
        _ => {
            let name = format!("wpad.{}", world.dns_domain);
            dns_fields(rng, &ws.ip, &dc.ip, &name, &[], "NXDOMAIN")
        }
    };
    records::zeek("dns", micros, &uid, fields, None)
}

/// Facilities and severities of RFC 5424.
pub(crate) const AUTH: u8 = 4;
pub(crate) const AUTHPRIV: u8 = 10;
const CRON: u8 = 9;
pub(crate) const INFO: u8 = 6;
pub(crate) const NOTICE: u8 = 5;

fn syslog(rng: &mut Rng, world: &World, micros: i64) -> String {
    let pid = rng.range(1_000, 60_000);
    let host = rng.pick(&world.linux);
    let user = *rng.pick(&world.linux_users);
    match rng.below(10) {
        0 | 1 => {
            let from = rng.pick(&world.workstations);
            let msg = format!(
                "Accepted publickey for {user} from {} port {} ssh2: ED25519 SHA256:{}",
                from.ip,
                ephemeral(rng),
                records::base64(&rng.hex(32).into_bytes()).trim_end_matches('=')
            );
            records::syslog(AUTH, INFO, micros, &host.name, "sshd", pid, &msg, None)
        }
        2 | 3 => {
            let msg = format!(
                "pam_unix(sshd:session): session opened for user {user}(uid={}) by (uid=0)",
                1000 + rng.below(4)
            );
            records::syslog(AUTHPRIV, INFO, micros, &host.name, "sshd", pid, &msg, None)
        }
        4 => {
            let msg = format!("pam_unix(sshd:session): session closed for user {user}");
            records::syslog(AUTHPRIV, INFO, micros, &host.name, "sshd", pid, &msg, None)
        }
        5 | 6 => {
            let command = *rng.pick(&[
                "/usr/bin/systemctl restart nginx",
                "/usr/bin/apt-get update",
                "/usr/bin/journalctl -u kubelet --since today",
                "/usr/bin/docker ps",
                "/usr/bin/tail -n 200 /var/log/syslog",
            ]);
            let msg = format!(
                "{user} : TTY=pts/{} ; PWD=/home/{user} ; USER=root ; COMMAND={command}",
                rng.below(4)
            );
            records::syslog(
                AUTHPRIV, NOTICE, micros, &host.name, "sudo", pid, &msg, None,
            )
        }
        7 => {
            let job = *rng.pick(&[
                "/usr/local/bin/backup.sh",
                "/usr/lib/php/sessionclean",
                "run-parts --report /etc/cron.hourly",
            ]);
            let msg = format!("(root) CMD ({job})");
            records::syslog(CRON, INFO, micros, &host.name, "CRON", pid, &msg, None)
        }
        _ => {
            // The internet knocking on the jump host's SSH port.
            let who = *rng.pick(&["admin", "oracle", "test", "ubuntu", "postgres", "git"]);
            let ip = format!(
                "{}.{}.{}.{}",
                rng.pick(&[61u64, 103, 141, 159, 179, 218]),
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            );
            let msg = if rng.chance(500) {
                format!("Invalid user {who} from {ip} port {}", ephemeral(rng))
            } else {
                format!(
                    "Failed password for invalid user {who} from {ip} port {} ssh2",
                    ephemeral(rng)
                )
            };
            records::syslog(
                AUTH,
                INFO,
                micros,
                &world.bastion.name,
                "sshd",
                pid,
                &msg,
                None,
            )
        }
    }
}

fn firewall(rng: &mut Rng, world: &World, micros: i64) -> String {
    let ws = rng.pick(&world.workstations);
    let user = qualified(world, &world.owner(ws).name);
    if rng.chance(850) {
        let svc = rng.pick(SERVICES);
        Traffic {
            firewall: &world.firewall,
            src: &ws.ip,
            spt: ephemeral(rng),
            dst: svc.ip,
            dpt: 443,
            proto: "TCP",
            app: "ssl",
            action: "allow",
            user: &user,
            rule: "allow-web",
            bytes_in: rng.range(2_000, 4_000_000),
            bytes_out: rng.range(400, 40_000),
        }
        .render(micros, None)
    } else {
        let src = format!(
            "{}.{}.{}.{}",
            rng.pick(&[80u64, 91, 193, 212, 222]),
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        );
        let dpt = *rng.pick(&[23, 445, 3389, 8080, 5900]);
        Traffic {
            firewall: &world.firewall,
            src: &src,
            spt: ephemeral(rng),
            dst: &world.public_ip,
            dpt,
            proto: "TCP",
            app: "incomplete",
            action: "deny",
            user: "",
            rule: "deny-inbound",
            bytes_in: 0,
            bytes_out: 60,
        }
        .render(micros, None)
    }
}
