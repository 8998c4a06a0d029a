//! A real S3-compatible server for the lake tests: `s3s-fs` (crates.io,
//! installed by `scripts/test-all.sh` into `~/.cache/spoor/s3s`), serving a
//! temporary folder on a free loopback port and checking SigV4 signatures
//! against one access key. It can be stopped and started again on the same
//! port and folder, to simulate an outage.
//!
//! s3s-fs keeps bucket `b`'s object `k` at `{root}/b/k`, written to a temp
//! file and renamed, and records each object's ETag in
//! `{root}/.bucket-{b64(b)}.object-{b64(k)}.internal.json`: the MD5 of the
//! bytes for a single PUT, `{md5 of the part MD5s}-{parts}` for a completed
//! multipart upload. The tests read both.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::free_port;

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "spoor-test-access";

/// The secret key the server accepts (tests put it in a file for spoor).
pub const SECRET_KEY: &str = "spoor-test-secret-0123456789abcdef";

/// The s3s-fs binary: `$S3S_BIN`, the cached install that
/// `scripts/test-all.sh` makes, or `s3s-fs` on PATH.
pub fn s3s_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("S3S_BIN") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = PathBuf::from(home).join(".cache/spoor/s3s/bin/s3s-fs");
    if cached.exists() {
        return Ok(cached);
    }
    if let Ok(out) = Command::new("which").arg("s3s-fs").output()
        && out.status.success()
    {
        return Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    bail!(
        "no s3s-fs found: run `bash scripts/test-all.sh` (it installs one into \
         ~/.cache/spoor/s3s), or `cargo install s3s-fs --version 0.14.1 --features binary \
         --locked --root ~/.cache/spoor/s3s`, or set S3S_BIN"
    )
}

/// A running (or stopped) s3s-fs server.
pub struct S3Server {
    child: Option<Child>,
    /// The folder it serves; bucket `b` is the folder `root/b`.
    pub root: PathBuf,
    /// Its loopback port, kept across restarts.
    pub port: u16,
    /// Its stderr, appended across restarts.
    pub log_path: PathBuf,
}

impl S3Server {
    /// Starts a server for `root` (created if missing) on a free port.
    pub fn start(root: &Path) -> Result<S3Server> {
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        let mut last = None;
        // A free port can be taken by someone else before the server binds it.
        for _ in 0..3 {
            let mut server = S3Server {
                child: None,
                root: root.to_path_buf(),
                port: free_port()?,
                log_path: root.with_extension("s3s.log"),
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("s3s-fs did not start")))
    }

    fn launch(&mut self) -> Result<()> {
        let bin = s3s_binary()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .context("s3s-fs log file")?;
        let port = self.port.to_string();
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .env(
                "RUST_LOG",
                std::env::var("S3S_LOG").unwrap_or_else(|_| "s3s_fs=info,s3s=warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "s3s-fs exited at start ({status}); log: {}",
                    crate::tail(&self.log_path)
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "s3s-fs did not listen on port {} within 20 s; log: {}",
            self.port,
            crate::tail(&self.log_path)
        )
    }

    /// The endpoint URL for clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates bucket `name` (s3s-fs: a folder under the root).
    pub fn create_bucket(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Kills the server (an outage: connections are refused until
    /// [`S3Server::restart`]).
    pub fn stop(&mut self) -> Result<()> {
        let mut child = self.child.take().context("s3s-fs is not running")?;
        child.kill().context("killing s3s-fs")?;
        child.wait().context("waiting for s3s-fs")?;
        Ok(())
    }

    /// Starts the server again on the same port and folder.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("s3s-fs is still running");
        }
        // The port was ours a moment ago; retry briefly should the
        // listener's socket still be closing.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Environment that puts spoor's lake at `s3://{bucket}{prefix}` on this
    /// server, with the secret key in `secret_file` (written here).
    pub fn spoor_env(
        &self,
        bucket: &str,
        prefix: &str,
        secret_file: &Path,
    ) -> Result<Vec<(String, String)>> {
        std::fs::write(secret_file, format!("{SECRET_KEY}\n"))
            .with_context(|| format!("writing {}", secret_file.display()))?;
        Ok(vec![
            (
                "SPOOR_STORAGE__URL".into(),
                format!("s3://{bucket}{prefix}"),
            ),
            ("SPOOR_STORAGE__S3__ENDPOINT".into(), self.endpoint()),
            ("SPOOR_STORAGE__S3__ALLOW_HTTP".into(), "true".into()),
            ("SPOOR_STORAGE__S3__ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            (
                "SPOOR_STORAGE__S3__SECRET_ACCESS_KEY_FILE".into(),
                secret_file.display().to_string(),
            ),
        ])
    }

    /// Every object of `bucket` whose key ends with `suffix`: its key, size
    /// and the ETag the server recorded for it.
    pub fn objects(&self, bucket: &str, suffix: &str) -> Result<Vec<StoredObject>> {
        let dir = self.root.join(bucket);
        let mut objects = Vec::new();
        for path in walk(&dir) {
            let Ok(rel) = path.strip_prefix(&dir) else {
                continue;
            };
            let key = rel.to_string_lossy().replace('\\', "/");
            if !key.ends_with(suffix) {
                continue;
            }
            let size = std::fs::metadata(&path)
                .with_context(|| format!("stat {}", path.display()))?
                .len();
            let info = self.root.join(format!(
                ".bucket-{}.object-{}.internal.json",
                base64_url(bucket.as_bytes()),
                base64_url(key.as_bytes())
            ));
            let e_tag = std::fs::read_to_string(&info)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["e_tag"].as_str().map(str::to_string));
            objects.push(StoredObject { key, size, e_tag });
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An object as s3s-fs stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Its key in the bucket.
    pub key: String,
    /// Its size, bytes.
    pub size: u64,
    /// The ETag the server recorded.
    pub e_tag: Option<String>,
}

impl StoredObject {
    /// The number of parts when the object was completed by a multipart
    /// upload (its ETag is `{hex}-{parts}`), `None` for a single PUT.
    pub fn multipart_parts(&self) -> Option<u32> {
        let (hash, parts) = self.e_tag.as_deref()?.split_once('-')?;
        if hash.len() != 32 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        parts.parse().ok()
    }
}

/// Every file under `dir`, recursively (none if it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// URL-safe base64 without padding, as s3s-fs names its metadata files.
fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_url_matches_known_values() {
        assert_eq!(base64_url(b""), "");
        assert_eq!(base64_url(b"f"), "Zg");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(b"foob"), "Zm9vYg");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn multipart_etags_are_recognized() {
        let object = |e_tag: &str| StoredObject {
            key: "k".into(),
            size: 1,
            e_tag: Some(e_tag.into()),
        };
        assert_eq!(
            object("0123456789abcdef0123456789abcdef-2").multipart_parts(),
            Some(2)
        );
        assert_eq!(
            object("0123456789abcdef0123456789abcdef").multipart_parts(),
            None
        );
    }
}
