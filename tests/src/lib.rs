//! Harness for end-to-end tests: a real Kafka-protocol broker (tansu) and the
//! real `spoor` binary, each on free loopback ports, killed on drop.
//!
//! Nothing here skips: a missing broker binary is a test failure that says how
//! to install it (`.ci/run` does).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

pub mod s3;

/// A free loopback port (bound and released; the caller binds it next).
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The tansu broker binary: `$TANSU_BIN`, the cached install that `.ci/run`
/// makes, or `tansu` on PATH.
pub fn tansu_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/spoor/tansu/bin/tansu");
    if cached.exists() {
        return Ok(cached);
    }
    if let Ok(out) = Command::new("which").arg("tansu").output()
        && out.status.success()
    {
        return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    bail!(
        "no tansu broker found: run `bash .ci/run` (it installs one into ~/.cache/spoor/tansu), \
         or `cargo install tansu --version 0.6.0 --features dynostore,libsql`, or set TANSU_BIN"
    )
}

/// A running broker with in-memory storage.
pub struct Broker {
    child: Child,
    /// Where clients bootstrap: `127.0.0.1:port`, or the TLS proxy's
    /// `localhost:port`.
    pub bootstrap: String,
    /// The broker's own listener.
    listen: String,
    /// librdkafka properties every client of the harness sets (TLS).
    client_properties: Vec<(String, String)>,
    /// The TLS proxy in front of the broker, if any.
    proxy: Option<tokio::task::JoinHandle<()>>,
}

impl Broker {
    /// Starts a broker on a free port and waits until it answers metadata.
    pub fn start() -> Result<Broker> {
        Broker::launch(None)
    }

    /// Starts a broker reachable only over TLS: tansu speaks no TLS, so a
    /// proxy terminates it (demanding client certificates from the CA in
    /// `client_ca`) and the broker advertises the proxy. Clients of the
    /// harness set `client_properties`. Needs a Tokio runtime.
    pub fn start_behind_tls(
        cert: &Path,
        key: &Path,
        client_ca: &Path,
        client_properties: Vec<(String, String)>,
    ) -> Result<Broker> {
        use spoor_common::tls::{Listener, Tls, TlsFiles};
        let tls = Tls::load(TlsFiles {
            cert: Some(("cert", cert.to_path_buf())),
            key: Some(("key", key.to_path_buf())),
            ca: None,
            client_ca: Some(("client_ca", client_ca.to_path_buf())),
        })?;
        // The gRPC listener's configuration is the one that demands client
        // certificates; Kafka clients send no ALPN, so its h2 is moot.
        let config = tls
            .server(Listener::Grpc)
            .context("a TLS server configuration")?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let mut broker = Broker::launch(Some(format!("localhost:{port}")))?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let upstream = broker.listen.clone();
        broker.proxy = Some(tokio::spawn(tls_proxy(listener, upstream, config)));
        broker.client_properties = client_properties;
        Ok(broker)
    }

    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.client_properties {
            config.set(k, v);
        }
        config
    }

    fn launch(advertised: Option<String>) -> Result<Broker> {
        let bin = tansu_binary()?;
        let mut last_err = anyhow!("not started");
        for _ in 0..3 {
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let advertised_url = advertised
                .as_ref()
                .map(|a| format!("tcp://{a}"))
                .unwrap_or_else(|| url.clone());
            let child = Command::new(&bin)
                .args([
                    "broker",
                    "--storage-engine",
                    "memory://tansu/",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &advertised_url,
                ])
                .env(
                    "RUST_LOG",
                    std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null())
                .stderr(match std::env::var("TANSU_LOG_FILE") {
                    Ok(path) => Stdio::from(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)
                            .context("TANSU_LOG_FILE")?,
                    ),
                    Err(_) => Stdio::null(),
                })
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            let broker = Broker {
                child,
                bootstrap: advertised
                    .clone()
                    .unwrap_or_else(|| format!("127.0.0.1:{port}")),
                listen: format!("127.0.0.1:{port}"),
                client_properties: Vec::new(),
                proxy: None,
            };
            match broker.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return Ok(broker),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.listen).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "broker at {} did not start listening within {timeout:?}",
            self.listen
        )
    }

    /// Creates a topic with `partitions` partitions.
    pub async fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().context("admin client")?;
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(
                [&topic],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .context("create_topics")?;
        for r in results {
            r.map_err(|(t, e)| anyhow!("creating topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// Produces `payloads` to `topic`, spreading them over partitions by key,
    /// and waits until every one is acknowledged.
    pub async fn produce(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<()> {
        self.produce_with(topic, payloads, &[]).await
    }

    /// [`Broker::produce`] with extra producer properties.
    pub async fn produce_with(
        &self,
        topic: &str,
        payloads: &[Vec<u8>],
        properties: &[(&str, &str)],
    ) -> Result<()> {
        let mut config = self.client_config();
        config
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (k, v) in properties {
            config.set(*k, *v);
        }
        let producer: FutureProducer = config.create().context("producer")?;
        let mut pending = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            let key = format!("k{i}");
            let producer = producer.clone();
            let payload = payload.clone();
            let topic = topic.to_string();
            pending.push(tokio::spawn(async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| anyhow!("produce: {e}"))
            }));
        }
        for p in pending {
            p.await.context("producer task")??;
        }
        Ok(())
    }

    /// Produces `payloads` to partition 0 of `topic` in order, so message
    /// `i` gets offset `first + i` in every run (`produce` sends from many
    /// tasks at once, in no fixed order).
    pub async fn produce_in_order(&self, topic: &str, payloads: &[Vec<u8>]) -> Result<()> {
        let producer: FutureProducer = self
            .client_config()
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5")
            // A retried batch must not overtake the next one.
            .set("max.in.flight.requests.per.connection", "1")
            .create()
            .context("producer")?;
        let mut deliveries = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            let key = format!("k{i}");
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(payload)
                .partition(0);
            // Enqueued here, in this order; librdkafka keeps it per partition.
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| anyhow!("produce: {e}"))?;
            deliveries.push(delivery);
        }
        for d in deliveries {
            d.await
                .context("delivery dropped")?
                .map_err(|(e, _)| anyhow!("produce: {e}"))?;
        }
        Ok(())
    }
}

/// Terminates TLS on `listener` and forwards each connection to
/// `upstream`; a failed handshake closes only that connection.
async fn tls_proxy(
    listener: tokio::net::TcpListener,
    upstream: String,
    config: std::sync::Arc<spoor_common::tls::rustls::ServerConfig>,
) {
    let acceptor = spoor_common::tls::TlsAcceptor::from(config);
    while let Ok((socket, _)) = listener.accept().await {
        let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(socket).await else {
                return;
            };
            let Ok(mut broker) = tokio::net::TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
        });
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.abort();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `spoor` binary, built once per test process so it is never stale.
pub fn spoor_binary() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_spoor().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Prefixes of the variables cargo sets when it runs a crate's tests or
/// build script, none of which a nested `cargo build` should see.
pub const CARGO_SET_FOR_CRATES: [&str; 8] = [
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

fn build_spoor() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("E2E_SPOOR_BIN") {
        return Ok(PathBuf::from(p));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    // A test runs with the variables cargo sets for the test crate
    // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). Build scripts such as ring's
    // declare `rerun-if-env-changed` on those, so passing them on would make
    // this build and a build from the shell rebuild each other's dependency
    // tree (about 5 minutes each time on 2 cores).
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if CARGO_SET_FOR_CRATES.iter().any(|p| key.starts_with(p)) {
            build.env_remove(&*key);
        }
    }
    let out = build
        .current_dir(&workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "spoor",
            "--bin",
            "spoor",
            "--message-format",
            "json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build -p spoor")?;
    if !out.status.success() {
        bail!("cargo build -p spoor failed ({})", out.status);
    }
    // The last compiler-artifact message for the spoor binary names its path.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "spoor")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .context("cargo did not report the spoor executable")
}

/// A running `spoor` process.
pub struct Spoor {
    child: Option<Child>,
    /// Base URL of its HTTP listener.
    pub http: String,
    /// Base URL of its gRPC listener (coordinator, standalone).
    pub grpc: Option<String>,
    /// Address (`host:port`) of its Flight SQL listener (query, standalone).
    pub flight: Option<String>,
    /// Address (`host:port`) of its PostgreSQL listener (query, standalone).
    pub postgres: Option<String>,
    /// Captured stderr, kept for diagnostics.
    pub log_path: PathBuf,
    /// An HTTP client of the node (trusting `SpoorOptions::ca_file`).
    pub client: reqwest::Client,
}

/// How to start `spoor standalone`.
#[derive(Debug, Clone, Default)]
pub struct SpoorOptions {
    /// Environment variables (`SPOOR_*` config, `SPOOR_TEST_FAULT`).
    pub env: Vec<(String, String)>,
    /// The CA that signed the node's certificate, when it serves TLS: its
    /// URLs are then `https://localhost:PORT` and `client` trusts the CA.
    pub ca_file: Option<PathBuf>,
}

impl Spoor {
    /// Starts `spoor standalone` with its data in `data_dir` on free ports and
    /// waits for its ready line.
    pub fn standalone(data_dir: &Path, options: &SpoorOptions) -> Result<Spoor> {
        Spoor::role("standalone", data_dir, &[], options)
    }

    /// Starts `spoor <role>` with its data in `data_dir` on free ports, with
    /// extra `--set key=value` flags, and waits for its ready line.
    pub fn role(
        role: &str,
        data_dir: &Path,
        sets: &[String],
        options: &SpoorOptions,
    ) -> Result<Spoor> {
        let bin = spoor_binary()?;
        let log_path = data_dir.with_extension(format!("{role}.{}.log", std::process::id()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("log file")?;
        let mut cmd = Command::new(bin);
        cmd.arg(role)
            .args(["--data-dir", &data_dir.display().to_string()])
            .args(["--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"])
            .args(["--set", "query.flight_addr=127.0.0.1:0"])
            .args(["--set", "query.postgres_addr=127.0.0.1:0"])
            .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
            .env("SPOOR_LOG__FILTER", "info,openraft=warn")
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("starting spoor standalone")?;
        let stdout = child.stdout.take().context("spoor stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| {
            let _ = child.kill();
            anyhow!(
                "spoor did not print its ready line within 60 s; log: {}",
                tail(&log_path)
            )
        })?;
        // Over TLS the node is reached by the name on its certificate.
        let tls = line.split_whitespace().any(|w| w == "tls");
        let url = |addr: &str| match (tls, addr.rsplit_once(':')) {
            (true, Some((_, port))) => format!("https://localhost:{port}"),
            _ => format!("http://{addr}"),
        };
        let http = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("http="))
            .with_context(|| format!("no http= in ready line {line:?}"))?;
        let grpc = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("grpc="))
            .map(url);
        let flight = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("flight="))
            .map(str::to_string);
        let postgres = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("postgres="))
            .map(str::to_string);
        let mut client = reqwest::Client::builder().tls_info(true);
        if let Some(ca) = &options.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        Ok(Spoor {
            child: Some(child),
            http: url(http),
            grpc,
            flight,
            postgres,
            log_path,
            client: client.build()?,
        })
    }

    /// Runs SQL over HTTP and returns the JSON body (error bodies included).
    pub async fn sql(&self, sql: &str) -> Result<Value> {
        let resp = self
            .client
            .post(format!("{}/v1/query", self.http))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .context("POST /v1/query")?;
        resp.json().await.context("query response")
    }

    /// Runs a `SELECT count(*)`-like query and returns the single integer.
    pub async fn scalar(&self, sql: &str) -> Result<i64> {
        let body = self.sql(sql).await?;
        let row = body["rows"]
            .get(0)
            .with_context(|| format!("no rows for {sql}: {body}"))?;
        let obj = row.as_object().context("row object")?;
        obj.values()
            .next()
            .and_then(Value::as_i64)
            .with_context(|| format!("not an integer: {body}"))
    }

    /// Polls `sql` until it returns `want` or `timeout` passes; returns the last value.
    pub async fn wait_for(&self, sql: &str, want: i64, timeout: Duration) -> Result<i64> {
        let deadline = Instant::now() + timeout;
        let mut last = -1;
        while Instant::now() < deadline {
            last = self.scalar(sql).await?;
            if last == want {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{sql} = {last} after {timeout:?}, wanted {want}; log: {}",
            tail(&self.log_path)
        )
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Value> {
        Ok(self
            .client
            .get(format!("{}/v1/status", self.http))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Waits until `events` holds `events` rows, then until every shard is
    /// held and its checkpoint has reached tenant `default`'s last file;
    /// each wait at most `timeout`.
    pub async fn wait_caught_up(&self, events: i64, timeout: Duration) -> Result<()> {
        self.wait_for("SELECT count(*) FROM events", events, timeout)
            .await?;
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status().await?;
            let head = s["catalog"]["tenants"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["tenant"] == "default"))
                .and_then(|t| t["last_sequence"].as_u64());
            let shards = s["cluster"]["shards"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let done = !shards.is_empty()
                && head.is_some()
                && shards.iter().all(|sh| {
                    sh["holder"].as_u64().is_some()
                        && sh["checkpoint"]["catalog_sequence"].as_u64() >= head
                });
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "shards did not catch up: {s}; log: {}",
                    tail(&self.log_path)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `spoor rules apply <dir> --tenant default [--buckets N]` against
    /// this node; an error with the command's output when it fails.
    pub fn apply_rules(&self, dir: &Path, buckets: Option<u32>) -> Result<()> {
        let dir = dir.display().to_string();
        let buckets = buckets.map(|b| b.to_string());
        let mut args = vec!["rules", "apply", &dir, "--tenant", "default"];
        if let Some(b) = &buckets {
            args.extend(["--buckets", b]);
        }
        args.extend(["--endpoint", &self.http]);
        let (code, out, err) = spoor_cli(&args).context("running spoor rules apply")?;
        if code != 0 {
            bail!("spoor rules apply failed: {out}{err}");
        }
        Ok(())
    }

    /// Waits for the process to exit by itself (an injected fault).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("already stopped")?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "spoor did not exit within {timeout:?}; log: {}",
            tail(&self.log_path)
        )
    }

    /// Kills the process (SIGKILL): a crash, no cleanup.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("already stopped")?;
        child.kill().context("kill")?;
        child.wait().context("wait")?;
        Ok(())
    }

    /// Stops the process with SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        let pid = child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        bail!(
            "spoor did not stop within 40 s of SIGTERM; log: {}",
            tail(&self.log_path)
        )
    }
}

impl Drop for Spoor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last lines of a log file, for failure messages.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs `spoor args…` as a client (`SPOOR_TOKEN` and `SPOOR_ENDPOINT` of
/// the environment left out): its exit code, stdout and stderr.
pub fn spoor_cli(args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(spoor_binary()?)
        .args(args)
        .env_remove("SPOOR_TOKEN")
        .env_remove("SPOOR_ENDPOINT")
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs `spoor import args…` against `node` (its data folder `data`, its
/// gRPC catalog): the process output and its JSON summary (stdout; null
/// when it printed none).
pub fn import(
    node: &Spoor,
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<(std::process::Output, Value)> {
    let grpc = node
        .grpc
        .as_deref()
        .context("standalone has a gRPC address")?;
    let mut cmd = Command::new(spoor_binary()?);
    cmd.arg("import")
        .args(["--data-dir", &data.display().to_string(), "--catalog", grpc])
        .args(args)
        .env("SPOOR_LOG__FILTER", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running spoor import")?;
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    Ok((out, summary))
}

/// `method url` with `token` (as a bearer token) and a JSON `body`: the
/// status and the JSON answer (an error when it is not JSON).
pub async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let body = serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
    Ok((status, body))
}

/// Writes the rule files `(name, text)` into `dir`, creating it.
pub fn write_rules(dir: &Path, files: &[(&str, &str)]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// The time `seconds` after 2026-11-30T08:00:00Z (RFC 3339): the day the
/// events of the detection tests are on.
pub fn test_time(seconds: usize) -> String {
    format!(
        "2026-11-30T{:02}:{:02}:{:02}Z",
        8 + seconds / 3600,
        (seconds / 60) % 60,
        seconds % 60
    )
}

/// Event `i` at `time` of `user` (`test_user`): an encoded shell
/// (`test_action: exec`, `test_cmd: powershell -enc AAA<i>`) when
/// `shell`, else a failed logon (`test_action: logon_failed`). The rules
/// below detect them.
pub fn logon_event(i: usize, time: String, user: String, shell: bool) -> Value {
    if shell {
        serde_json::json!({"time": time, "test_action": "exec", "test_cmd": format!("powershell -enc AAA{i}"), "test_user": user})
    } else {
        serde_json::json!({"time": time, "test_action": "logon_failed", "test_user": user})
    }
}

/// A Sigma detection `id` of `product: spoortest` events: `title`, the
/// one `selection` line (such as `test_action: logon_failed`), `level`.
pub fn spoortest_detection(title: &str, id: &str, selection: &str, level: &str) -> String {
    format!(
        r#"title: {title}
id: {id}
status: test
logsource:
    product: spoortest
detection:
    selection:
        {selection}
    condition: selection
level: {level}
"#
    )
}

/// A Sigma detection `id` of every failed logon ([`logon_event`]), level
/// low.
pub fn failed_logon_rule(id: &str) -> String {
    spoortest_detection("Failed logon", id, "test_action: logon_failed", "low")
}

/// A Sigma `event_count` correlation `id`: `gte` failed logons (the
/// detection `base_id`) of one `test_user` within 10 minutes, level high,
/// with `tags`.
pub fn repeated_failed_logons_rule(id: &str, base_id: &str, gte: u32, tags: &[&str]) -> String {
    let mut rule = format!(
        r#"title: Repeated failed logons for one account
id: {id}
status: test
correlation:
    type: event_count
    rules:
        - {base_id}
    group-by:
        - test_user
    timespan: 10m
    condition:
        gte: {gte}
level: high
"#
    );
    if !tags.is_empty() {
        rule.push_str("tags:\n");
        for tag in tags {
            rule.push_str(&format!("    - {tag}\n"));
        }
    }
    rule
}

/// A Sigma detection `id` of an encoded shell ([`logon_event`]: a
/// `test_cmd` with `-enc `), level high.
pub fn encoded_shell_rule(id: &str) -> String {
    spoortest_detection("Encoded shell", id, "test_cmd|contains: '-enc '", "high")
}

/// Environment that points standalone's Kafka source at `broker`.
pub fn kafka_env(broker: &Broker, topic: &str, group: &str) -> Vec<(String, String)> {
    vec![
        (
            "SPOOR_INGEST__KAFKA__BROKERS".into(),
            broker.bootstrap.clone(),
        ),
        (
            "SPOOR_INGEST__KAFKA__TOPICS".into(),
            format!("[\"{topic}\"]"),
        ),
        ("SPOOR_INGEST__KAFKA__GROUP_ID".into(), group.into()),
        ("SPOOR_INGEST__FLUSH_INTERVAL_MS".into(), "500".into()),
    ]
}

/// `n` well-formed events, numbered from `start`.
pub fn good_events(start: usize, n: usize) -> Vec<Vec<u8>> {
    (start..start + n)
        .map(|i| {
            serde_json::json!({
                "time": format!("2024-03-05T07:{:02}:{:02}Z", (i / 60) % 60, i % 60),
                "src_ip": format!("10.0.{}.{}", i / 256, i % 256),
                "dst_port": 443,
                "process_name": "curl",
                "seq": i,
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

/// `n` malformed events.
pub fn bad_events(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{{\"broken\": {i},").into_bytes())
        .collect()
}

/// Runs `spoor args…` as a client ([`spoor_cli`]) and parses its JSON
/// output; an error with its stderr when it fails.
pub fn spoor_cli_json(args: &[&str]) -> Result<Value> {
    let (code, out, err) = spoor_cli(args)?;
    if code != 0 {
        bail!("spoor {} failed ({code}): {err}{out}", args.join(" "));
    }
    serde_json::from_str(&out).with_context(|| format!("spoor {}: not JSON: {out}", args.join(" ")))
}

/// `spoor token create --role <role> [--tenant <tenant>]` against the
/// coordinator at `grpc`: the token.
pub fn create_token(grpc: &str, role: &str, tenant: Option<&str>) -> Result<String> {
    create_token_for(grpc, role, tenant.as_slice())
}

/// `spoor token create --role <role> --tenant <t>…` (one `--tenant` per
/// tenant: an MSSP operator's token) against the coordinator at `grpc`:
/// the token.
pub fn create_token_for(grpc: &str, role: &str, tenants: &[&str]) -> Result<String> {
    let mut args = vec!["token", "create", "--role", role, "--coordinator", grpc];
    for t in tenants {
        args.extend(["--tenant", t]);
    }
    spoor_cli_json(&args)?["token"]
        .as_str()
        .map(str::to_string)
        .context("spoor token create printed no token")
}

/// Seconds since the epoch as RFC 3339 UTC (days to civil date: Howard
/// Hinnant's algorithm).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Now as RFC 3339 UTC, to the second.
pub fn now_rfc3339() -> Result<String> {
    Ok(rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
    ))
}

/// The catalog's file count of `tenant` in a `/v1/status` answer (the
/// cluster's own tenant `spoor` holds the audit trail's files besides).
pub fn tenant_file_count(status: &Value, tenant: &str) -> Option<i64> {
    status["catalog"]["tenants"]
        .as_array()?
        .iter()
        .find(|t| t["tenant"] == tenant)?["file_count"]
        .as_i64()
}

#[cfg(test)]
mod time_tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_formats_civil_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_623_800), "2024-03-05T07:30:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
