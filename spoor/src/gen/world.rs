//! One tenant's simulated estate: its domain, Windows workstations and
//! servers, Linux servers, users and the internet services they talk to.
//! Built from the seed and the tenant's name only, so adding a tenant to a
//! run leaves every other tenant's estate as it was.

use super::rng::{Rng, fnv1a};

/// A machine of the estate.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// Short name as Windows and syslog print it (`WKS-014`, `web-01`).
    pub(crate) name: String,
    /// Fully qualified name (`WKS-014.acme.corp`).
    pub(crate) fqdn: String,
    pub(crate) ip: String,
    /// The workstation's user (index into [`World::users`]).
    pub(crate) owner: Option<usize>,
}

/// An account of the directory.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) sid: String,
}

/// An internet service: a name and one of its addresses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Service {
    pub(crate) domain: &'static str,
    pub(crate) ip: &'static str,
}

/// Well-known services the benign traffic goes to.
pub(crate) const SERVICES: &[Service] = &[
    Service {
        domain: "www.google.com",
        ip: "142.250.74.36",
    },
    Service {
        domain: "update.googleapis.com",
        ip: "142.250.185.163",
    },
    Service {
        domain: "login.microsoftonline.com",
        ip: "20.190.151.7",
    },
    Service {
        domain: "outlook.office365.com",
        ip: "52.97.146.162",
    },
    Service {
        domain: "teams.microsoft.com",
        ip: "52.113.194.132",
    },
    Service {
        domain: "ctldl.windowsupdate.com",
        ip: "13.107.4.50",
    },
    Service {
        domain: "github.com",
        ip: "140.82.121.4",
    },
    Service {
        domain: "api.slack.com",
        ip: "3.120.7.41",
    },
    Service {
        domain: "zoom.us",
        ip: "170.114.52.2",
    },
    Service {
        domain: "www.wikipedia.org",
        ip: "185.15.59.224",
    },
    Service {
        domain: "cdn.jsdelivr.net",
        ip: "151.101.1.229",
    },
    Service {
        domain: "s3.eu-west-1.amazonaws.com",
        ip: "52.218.96.10",
    },
];

const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "uma", "victor", "wendy", "xavier",
    "yara", "zoe", "liam", "noah", "emma", "ava", "mia", "lucas", "amir", "sofia", "kenji",
];
const LAST: &[&str] = &[
    "nguyen",
    "smith",
    "garcia",
    "muller",
    "rossi",
    "kowalski",
    "tanaka",
    "silva",
    "okafor",
    "johansson",
    "dubois",
    "patel",
    "kim",
    "novak",
    "haddad",
    "murphy",
];

/// Workstations per tenant.
const WORKSTATIONS: usize = 30;

/// One tenant's estate.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub(crate) tenant: String,
    /// NetBIOS domain (`ACME`).
    pub(crate) netbios: String,
    /// DNS domain (`acme.corp`).
    pub(crate) dns_domain: String,
    pub(crate) users: Vec<User>,
    /// Domain admins (indexes into `users`).
    pub(crate) admins: Vec<usize>,
    pub(crate) workstations: Vec<Host>,
    /// Domain controllers (also the DNS resolvers).
    pub(crate) dcs: Vec<Host>,
    /// Member servers: file, SQL, Exchange, remote desktop gateway, app.
    pub(crate) servers: Vec<Host>,
    /// Linux servers.
    pub(crate) linux: Vec<Host>,
    /// The Linux jump host, reachable from the internet on port 22.
    pub(crate) bastion: Host,
    /// The firewall's public address.
    pub(crate) public_ip: String,
    /// The firewall's name.
    pub(crate) firewall: String,
    /// Local accounts of the Linux servers.
    pub(crate) linux_users: Vec<&'static str>,
}

impl World {
    pub(crate) fn new(seed: u64, tenant: &str) -> World {
        let mut rng = Rng::derived(seed, &format!("world/{tenant}"));
        // The second octet of the tenant's 10.x.0.0/16, from its name.
        let net = 16 + (fnv1a(tenant.as_bytes()) % 200);
        let label: String = tenant
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(15)
            .collect();
        let label = if label.is_empty() {
            "corp".to_string()
        } else {
            label
        };
        let netbios = label.to_uppercase();
        let dns_domain = format!("{}.corp", label.to_lowercase());
        let domain_sid = format!(
            "S-1-5-21-{}-{}-{}",
            rng.range(1_000_000_000, 4_000_000_000),
            rng.range(1_000_000_000, 4_000_000_000),
            rng.range(100_000_000, 2_000_000_000)
        );
        let mut users = Vec::new();
        let mut taken = std::collections::BTreeSet::new();
        while users.len() < WORKSTATIONS + 4 {
            let name = format!("{}.{}", rng.pick(FIRST), rng.pick(LAST));
            if taken.insert(name.clone()) {
                let rid = 1100 + users.len();
                users.push(User {
                    name,
                    sid: format!("{domain_sid}-{rid}"),
                });
            }
        }
        let mut admins = Vec::new();
        for i in 0..3 {
            let rid = 1500 + i;
            admins.push(users.len());
            users.push(User {
                name: format!("adm-{}", users[i].name.split('.').next().unwrap_or("ops")),
                sid: format!("{domain_sid}-{rid}"),
            });
        }
        let host = |name: String, ip: String, owner: Option<usize>| Host {
            fqdn: format!("{name}.{dns_domain}"),
            name,
            ip,
            owner,
        };
        let workstations = (0..WORKSTATIONS)
            .map(|i| {
                host(
                    format!("WKS-{:03}", i + 1),
                    format!("10.{net}.10.{}", 20 + i),
                    Some(i),
                )
            })
            .collect();
        let dcs = ["DC01", "DC02"]
            .iter()
            .enumerate()
            .map(|(i, n)| host((*n).into(), format!("10.{net}.1.{}", 10 + i), None))
            .collect();
        let servers = ["FS01", "SQL01", "EXCH01", "RDS01", "APP01"]
            .iter()
            .enumerate()
            .map(|(i, n)| host((*n).into(), format!("10.{net}.1.{}", 20 + 10 * i), None))
            .collect();
        let linux = ["web-01", "web-02", "db-01", "k8s-node-01", "k8s-node-02"]
            .iter()
            .enumerate()
            .map(|(i, n)| host((*n).into(), format!("10.{net}.2.{}", 10 + i), None))
            .collect();
        let bastion = host("bastion-01".into(), format!("10.{net}.2.5"), None);
        let public_ip = format!("198.51.100.{}", 1 + fnv1a(tenant.as_bytes()) % 250);
        World {
            tenant: tenant.to_string(),
            netbios,
            dns_domain,
            users,
            admins,
            workstations,
            dcs,
            servers,
            linux,
            bastion,
            public_ip,
            firewall: "pa-fw01".into(),
            linux_users: vec!["deploy", "ansible", "backup", "ubuntu"],
        }
    }

    /// The server of this role (`FS01`, `SQL01`, `EXCH01`, `RDS01`, `APP01`).
    pub(crate) fn server(&self, name: &str) -> &Host {
        self.servers
            .iter()
            .find(|h| h.name == name)
            .unwrap_or(&self.servers[0])
    }

    /// The user of a workstation (a workstation always has one).
    pub(crate) fn owner(&self, host: &Host) -> &User {
        &self.users[host.owner.unwrap_or(0)]
    }
}
