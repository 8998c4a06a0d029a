//! The whole cluster under faults: `deploy/local-cluster.sh` starts a broker,
//! 3 coordinators, 2 ingest nodes, 2 workers and 2 query nodes as separate
//! processes; `spoor gen` produces a known, seeded event set with attack
//! scenarios over Kafka; while it flows the Raft leader is killed and
//! restarted, an ingest node and a worker are killed and restarted, and the
//! new leader is paused (SIGSTOP) long enough to lose its leadership, then
//! resumed. Afterwards every produced event is in `events` exactly once (per
//! tenant counts equal the generator's manifest, no Kafka position twice)
//! and every expected alert is present exactly once.
//!
//! Where network namespaces can be made (root, `ip netns`), every
//! coordinator runs in its own (`local-cluster.sh --netns`) and the leader
//! is also cut off the network while it runs (`partition`: its link down,
//! both directions), then reconnected (`heal`). Elsewhere the test says so
//! and the SIGSTOP step is the only stand-in for a partition
//! (docs/operations.md, Chaos testing).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use spoor_tests::{spoor_binary, tail, tansu_binary};

const TENANTS: [&str; 2] = ["acme", "globex"];
/// Events the generator produces, and how fast: about 50 s of flow, long
/// enough for every fault below to happen while events arrive.
const EVENTS: u64 = 20_000;
const RATE: u64 = 400;
const SEED: u64 = 20261203;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

/// A base port with its 100 ports free (the script uses base+1..base+99).
fn free_port_window() -> Result<u16> {
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos() as u64;
    for attempt in 0..200u64 {
        let base =
            20_000 + ((seed.wrapping_mul(31).wrapping_add(attempt * 7919)) % 400) as u16 * 100;
        if (1..100).all(|p| TcpListener::bind(("127.0.0.1", base + p)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no window of 100 free loopback ports found")
}

/// The local cluster, driven through its script; `down` on drop.
struct Cluster {
    dir: PathBuf,
    base: u16,
    bin: PathBuf,
    tansu: PathBuf,
    admin: String,
    query: String,
    broker: String,
    /// Coordinators in network namespaces (`--netns`), so `partition` works.
    netns: bool,
}

/// Whether this machine lets the test make network namespaces: root, and
/// `ip netns add` succeeds.
fn netns_available() -> bool {
    let probe = format!("spoor-probe-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    }
    made
}

impl Cluster {
    fn script(&self, args: &[&str]) -> Result<String> {
        script(&self.dir, self.base, &self.bin, &self.tansu, args)
    }

    /// Starts the cluster. The value exists before `up` runs, so a failed
    /// start still stops whatever it started.
    fn up(dir: &Path) -> Result<Cluster> {
        let base = free_port_window()?;
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            base,
            bin: spoor_binary()?,
            tansu: tansu_binary()?,
            admin: String::new(),
            query: format!("http://127.0.0.1:{}", base + 51),
            broker: format!("127.0.0.1:{}", base + 92),
            netns: netns_available(),
        };
        let tenants = TENANTS.join(",");
        let mut args = vec!["up", "--tenants", tenants.as_str()];
        if cluster.netns {
            args.push("--netns");
        }
        let out = cluster.script(&args)?;
        println!("{out}");
        cluster.admin = std::fs::read_to_string(dir.join("tokens/admin.token"))
            .context("the script wrote no admin token")?
            .trim()
            .to_string();
        Ok(cluster)
    }

    /// The coordinator that leads now (`c1`..`c3`), waiting for one.
    fn leader(&self, not: Option<&str>) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(name) = self.script(&["leader"]) {
                let name = name.trim().to_string();
                if Some(name.as_str()) != not {
                    return Ok(name);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "no leader other than {not:?} within 30 s:\n{}",
                    self.logs("c")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self, prefix: &str) -> String {
        let mut out = String::new();
        for n in ["c1", "c2", "c3", "i1", "i2", "w1", "w2", "q1", "q2"] {
            if n.starts_with(prefix) {
                out.push_str(&format!(
                    "--- {n}:\n{}\n",
                    tail(&self.dir.join(format!("logs/{n}.log")))
                ));
            }
        }
        out
    }

    async fn sql(&self, sql: &str) -> Result<Vec<Value>> {
        let body: Value = reqwest::Client::new()
            .post(format!("{}/v1/query", self.query))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .context("POST /v1/query")?
            .json()
            .await
            .context("query response")?;
        body["rows"]
            .as_array()
            .cloned()
            .with_context(|| format!("{sql}: {body}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.script(&["down"]) {
            eprintln!("local-cluster down: {e:#}");
        }
    }
}

fn script(dir: &Path, base: u16, bin: &Path, tansu: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("bash")
        .arg(workspace().join("deploy/local-cluster.sh"))
        .args(args)
        .args(["--dir", &dir.display().to_string()])
        .args(["--base-port", &base.to_string()])
        .args(["--bin", &bin.display().to_string()])
        .env("TANSU_BIN", tansu)
        .stdin(Stdio::null())
        .output()
        .context("running deploy/local-cluster.sh")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    ensure!(
        out.status.success(),
        "local-cluster.sh {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

/// `spoor gen` into the cluster's topic, in the background.
fn start_generator(cluster: &Cluster, manifest: &Path) -> Result<Child> {
    Command::new(&cluster.bin)
        .args([
            "gen",
            "--kafka",
            &cluster.broker,
            "--topic",
            "spoor-gen-{source}",
        ])
        .args(["--tenants", &TENANTS.join(",")])
        .args(["--count", &EVENTS.to_string(), "--rate", &RATE.to_string()])
        .args(["--seed", &SEED.to_string()])
        .args(["--manifest", &manifest.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting spoor gen")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_keeps_every_event_and_alert_exactly_once_through_faults() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cluster = Cluster::up(tmp.path())?;
    let manifest_path = tmp.path().join("manifest.json");
    let mut generator = start_generator(&cluster, &manifest_path)?;
    let started = Instant::now();
    let at = |secs: u64| async move {
        let when = started + Duration::from_secs(secs);
        tokio::time::sleep_until(when.into()).await;
    };

    // 1. The Raft leader dies; a new one is elected; the old one comes back.
    at(6).await;
    let old = cluster.leader(None)?;
    cluster.script(&["kill", &old])?;
    let new = cluster.leader(Some(&old))?;
    println!(
        "chaos: killed leader {old}; {new} leads after {:?}",
        started.elapsed()
    );
    cluster.script(&["start", &old])?;
    // 2. An ingest node dies mid-batch and restarts.
    at(16).await;
    cluster.script(&["kill", "i1"])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.script(&["start", "i1"])?;
    println!(
        "chaos: ingest i1 killed and restarted by {:?}",
        started.elapsed()
    );
    // 3. A worker dies with shards leased to it and restarts.
    at(24).await;
    cluster.script(&["kill", "w1"])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.script(&["start", "w1"])?;
    println!(
        "chaos: worker w1 killed and restarted by {:?}",
        started.elapsed()
    );
    // 4. The leader is cut off (paused) past its election timeout, then
    //    comes back believing it still leads.
    at(32).await;
    let cut = cluster.leader(None)?;
    cluster.script(&["pause", &cut])?;
    let during = cluster.leader(Some(&cut));
    cluster.script(&["resume", &cut])?;
    println!("chaos: leader {cut} paused; {} led meanwhile", during?);
    // 5. The leader is cut off the network while it runs: it can commit
    //    nothing, the others elect a leader and carry on, clients move to
    //    them; reconnected, it follows.
    at(40).await;
    if cluster.netns {
        let cut = cluster.leader(None)?;
        cluster.script(&["partition", &cut])?;
        let during = cluster.leader(Some(&cut));
        if during.is_ok() {
            // Cut off a little longer, with the new leader serving.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        cluster.script(&["heal", &cut])?;
        let after = cluster.leader(None)?;
        println!(
            "chaos: leader {cut} partitioned (network namespace, link down); {} led meanwhile; \
             healed by {:?}, {after} leads",
            during?,
            started.elapsed()
        );
    } else {
        println!(
            "chaos: no network partition: this machine cannot make network namespaces \
             (not root, or no `ip netns`); the pause above stands in for one"
        );
    }

    let status = tokio::task::spawn_blocking(move || -> Result<_> {
        let status = generator.wait()?;
        let mut err = String::new();
        if let Some(mut e) = generator.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err)?;
        }
        Ok((status, err))
    })
    .await??;
    ensure!(status.0.success(), "spoor gen failed: {}", status.1);
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path).context("spoor gen wrote no manifest")?,
    )?;

    // Every event, once.
    let want: BTreeMap<String, i64> = TENANTS
        .iter()
        .map(|t| {
            let n = manifest["tenants"][t]["events"].as_i64().unwrap_or(-1);
            (t.to_string(), n)
        })
        .collect();
    ensure!(
        want.values().sum::<i64>() == EVENTS as i64,
        "the manifest's tenants do not add up to {EVENTS}: {manifest}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let got = loop {
        let rows = cluster
            .sql("SELECT tenant, count(*) AS n FROM events GROUP BY tenant ORDER BY tenant")
            .await?;
        let got: BTreeMap<String, i64> = rows
            .iter()
            .filter_map(|r| Some((r["tenant"].as_str()?.to_string(), r["n"].as_i64()?)))
            .collect();
        if got == want || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("chaos: events per tenant: produced {want:?}, in the lake {got:?}");
    ensure!(
        got == want,
        "events lost or doubled:\n{}",
        cluster.logs("i")
    );
    let twice = cluster
        .sql(
            "SELECT source_topic, source_partition, source_offset, count(*) AS n FROM events \
             GROUP BY source_topic, source_partition, source_offset HAVING count(*) > 1 LIMIT 10",
        )
        .await?;
    println!(
        "chaos: Kafka positions stored more than once: {}",
        twice.len()
    );
    ensure!(twice.is_empty(), "Kafka positions stored twice: {twice:?}");

    // Every expected alert, once.
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    for t in TENANTS {
        for (rule, n) in manifest["tenants"][t]["expected_alerts"]
            .as_object()
            .with_context(|| format!("manifest has no expected_alerts for {t}: {manifest}"))?
        {
            *expected.entry((t.to_string(), rule.clone())).or_default() += n.as_i64().unwrap_or(0);
        }
    }
    ensure!(
        !expected.is_empty(),
        "the generator injected no attacks: {manifest}"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let alerts = loop {
        let rows = cluster
            .sql(
                "SELECT tenant, rule_id, count(*) AS n FROM alerts \
                 GROUP BY tenant, rule_id ORDER BY tenant, rule_id",
            )
            .await?;
        let got: BTreeMap<(String, String), i64> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    (
                        r["tenant"].as_str()?.to_string(),
                        r["rule_id"].as_str()?.to_string(),
                    ),
                    r["n"].as_i64()?,
                ))
            })
            .collect();
        if got == expected || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "chaos: alerts per (tenant, rule): expected {} alerts in {} groups, found {} in {}",
        expected.values().sum::<i64>(),
        expected.len(),
        alerts.values().sum::<i64>(),
        alerts.len()
    );
    ensure!(
        alerts == expected,
        "alerts differ from the manifest:\n expected {expected:?}\n found    {alerts:?}\n{}",
        cluster.logs("w")
    );
    let doubled = cluster
        .sql("SELECT alert_id, count(*) AS n FROM alerts GROUP BY alert_id HAVING count(*) > 1")
        .await?;
    ensure!(doubled.is_empty(), "alert ids stored twice: {doubled:?}");
    println!("chaos: done in {:?}", started.elapsed());
    Ok(())
}
