//! The client commands' TLS options, and `spoor tls dev-certs`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use spoor_common::tls::dev::{DevCa, Usage};
use spoor_common::tls::{Tls, TlsFiles};

/// How a client command reaches `https://` endpoints.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct TlsArgs {
    /// PEM CA bundle to trust for `https://` endpoints (the cluster's CA,
    /// `tls.ca_file` of the nodes); without it, the system's roots.
    #[arg(long, env = "SPOOR_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// PEM client certificate, for coordinators that demand one
    /// (`tls.client_ca_file`); needs --client-key.
    #[arg(long, env = "SPOOR_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's PEM private key.
    #[arg(long, env = "SPOOR_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
}

impl TlsArgs {
    /// TLS for gRPC calls; `None` when no option is given (an `https://`
    /// endpoint then trusts the system's roots).
    pub(crate) fn grpc(&self) -> Result<Option<Arc<Tls>>, String> {
        let files = TlsFiles {
            cert: self.client_cert.clone().map(|p| ("--client-cert", p)),
            key: self.client_key.clone().map(|p| ("--client-key", p)),
            ca: self.ca_file.clone().map(|p| ("--ca-file", p)),
            client_ca: None,
        };
        if files == TlsFiles::default() {
            return Ok(None);
        }
        Tls::load(files).map(Some).map_err(|e| e.to_string())
    }

    /// An HTTP client trusting --ca-file besides the system's roots and
    /// presenting the client certificate, if given.
    pub(crate) fn http_client(&self) -> Result<reqwest::Client, String> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))
        };
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &self.ca_file {
            for cert in reqwest::Certificate::from_pem_bundle(&read("--ca-file", path)?)
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            let mut pem = read("--client-cert", cert)?;
            pem.push(b'\n');
            pem.extend(read("--client-key", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "--client-cert {} / --client-key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        builder
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))
    }
}

/// `spoor tls …`.
#[derive(Debug, Subcommand)]
pub(crate) enum TlsCommand {
    /// Write a private CA and certificates it signed, for trying TLS on
    /// one machine or a test cluster (not for production: the keys are
    /// unencrypted and the CA key is not kept).
    DevCerts(DevCertsArgs),
}

/// Options of `spoor tls dev-certs`.
#[derive(Debug, Args)]
pub(crate) struct DevCertsArgs {
    /// The folder to write `ca.pem`, `node.pem`, `node.key`, `client.pem`
    /// and `client.key` into; existing files are never overwritten.
    #[arg(long)]
    out: PathBuf,
    /// A host name or IP address the node certificate is valid for;
    /// repeatable.
    #[arg(long = "host", default_values = ["localhost", "127.0.0.1", "::1"])]
    hosts: Vec<String>,
    /// Days the certificates are valid.
    #[arg(long, default_value_t = 365)]
    days: i64,
}

pub(crate) fn tls(command: TlsCommand) -> ExitCode {
    let TlsCommand::DevCerts(args) = command;
    match dev_certs(&args) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spoor tls dev-certs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dev_certs(args: &DevCertsArgs) -> Result<Vec<PathBuf>, String> {
    if args.days < 1 {
        return Err(format!("--days {}: must be at least 1", args.days));
    }
    let names = ["ca.pem", "node.pem", "node.key", "client.pem", "client.key"];
    let paths: Vec<PathBuf> = names.iter().map(|n| args.out.join(n)).collect();
    if let Some(taken) = paths.iter().find(|p| p.exists()) {
        return Err(format!(
            "{} exists: choose another --out (keys are never overwritten)",
            taken.display()
        ));
    }
    let ca = DevCa::new("Spoor development CA", args.days)?;
    let node = ca.issue("spoor node", &args.hosts, Usage::Node)?;
    let client = ca.issue("spoor client", &[], Usage::Client)?;
    std::fs::create_dir_all(&args.out).map_err(|e| format!("--out {}: {e}", args.out.display()))?;
    let contents = [
        ca.cert_pem(),
        &node.cert_pem,
        &node.key_pem,
        &client.cert_pem,
        &client.key_pem,
    ];
    for (path, text) in paths.iter().zip(contents) {
        write_new(path, text, path.extension().is_some_and(|e| e == "key"))?;
    }
    Ok(paths)
}

/// Creates `path` (never replacing a file); keys are readable by their
/// owner only.
fn write_new(path: &std::path::Path, text: &str, secret: bool) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}
