//! TLS on every listener and on the calls between roles (rustls with ring).
//!
//! One [`Tls`] per process holds what `[tls]` names, parsed into rustls
//! configurations: one server configuration per kind of listener and one
//! client configuration. [`Tls::watch`] re-reads the files and swaps in new
//! configurations when their contents change, so a renewed certificate (or
//! CA bundle) reaches new connections without a restart; open connections
//! keep what they were made with. Files that fail to load (half written,
//! a key that does not match its certificate) leave the previous
//! configuration in force, and the failure is logged and counted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

pub mod dev;

pub use tokio_rustls::{TlsAcceptor, rustls};

/// How long a client has to finish its TLS handshake before the connection
/// is dropped: a slow or silent client must not hold a task for long.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS file that could not be used, named by its configuration key.
#[derive(Debug, thiserror::Error)]
#[error("{key} ({path}): {reason}")]
pub struct TlsError {
    /// The configuration key (or CLI flag) that names the file.
    pub key: &'static str,
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The kinds of listener; each gets its own protocol list (ALPN), and only
/// the coordinators' gRPC demands client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The HTTP APIs, HTTP ingest and metrics (HTTP/1.1).
    Http,
    /// The coordinators' gRPC (HTTP/2), where roles call each other.
    Grpc,
    /// Arrow Flight SQL (HTTP/2).
    Flight,
    /// The PostgreSQL wire protocol (TLS after SSLRequest, or direct).
    Postgres,
}

impl Listener {
    const ALL: [Listener; 4] = [
        Listener::Http,
        Listener::Grpc,
        Listener::Flight,
        Listener::Postgres,
    ];

    /// The name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Http => "http",
            Listener::Grpc => "grpc",
            Listener::Flight => "flight",
            Listener::Postgres => "postgres",
        }
    }

    fn alpn(self) -> Vec<Vec<u8>> {
        match self {
            // axum is built for HTTP/1.1 only.
            Listener::Http => vec![b"http/1.1".to_vec()],
            Listener::Grpc | Listener::Flight => vec![b"h2".to_vec()],
            // PostgreSQL 17's direct TLS negotiation names this protocol.
            Listener::Postgres => vec![b"postgresql".to_vec()],
        }
    }
}

/// Where the PEM files are, each with the key that names it in errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain this process serves and presents as a client.
    pub cert: Option<(&'static str, PathBuf)>,
    /// Its private key.
    pub key: Option<(&'static str, PathBuf)>,
    /// The CAs this process trusts when it calls https:// endpoints; the
    /// system's roots when absent.
    pub ca: Option<(&'static str, PathBuf)>,
    /// The CAs whose client certificates the gRPC listener demands.
    pub client_ca: Option<(&'static str, PathBuf)>,
}

impl TlsFiles {
    /// The files `[tls]` names.
    pub fn from_config(config: &TlsConfig) -> TlsFiles {
        let file =
            |key: &'static str, path: &str| (!path.is_empty()).then(|| (key, PathBuf::from(path)));
        TlsFiles {
            cert: file("tls.cert_file", &config.cert_file),
            key: file("tls.key_file", &config.key_file),
            ca: file("tls.ca_file", &config.ca_file),
            client_ca: file("tls.client_ca_file", &config.client_ca_file),
        }
    }
}

/// The configurations made from one reading of the files.
struct Loaded {
    /// A digest of the files' contents: unchanged files are not re-parsed.
    digest: [u8; 32],
    /// Per [`Listener::ALL`] entry; `None` without a certificate.
    servers: Option<[Arc<ServerConfig>; 4]>,
    client: Arc<ClientConfig>,
}

/// The process's TLS configurations, reloaded by [`Tls::watch`].
pub struct Tls {
    files: TlsFiles,
    loaded: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads `[tls]`; `None` when it names no file (plaintext everywhere).
    pub fn from_config(config: &TlsConfig) -> Result<Option<Arc<Tls>>, TlsError> {
        let files = TlsFiles::from_config(config);
        if files == TlsFiles::default() {
            return Ok(None);
        }
        Tls::load(files).map(Some)
    }

    /// Loads `files`; every unreadable or unusable file is an error naming
    /// its key.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let loaded = load(&files, &Contents::read(&files)?)?;
        Ok(Arc::new(Tls {
            files,
            loaded: RwLock::new(Arc::new(loaded)),
        }))
    }

    /// A client that trusts the system's roots and presents no certificate:
    /// for https:// endpoints when nothing else is configured.
    pub fn system_roots() -> Result<Arc<Tls>, TlsError> {
        Tls::load(TlsFiles::default())
    }

    fn current(&self) -> Arc<Loaded> {
        // A poisoned lock only means a reload panicked midway; the value
        // inside is still a whole configuration.
        match self.loaded.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Whether this process serves TLS (a certificate is configured).
    pub fn serves(&self) -> bool {
        self.current().servers.is_some()
    }

    /// The server configuration for `listener`, as of the last reload;
    /// `None` without a certificate.
    pub fn server(&self, listener: Listener) -> Option<Arc<ServerConfig>> {
        let i = Listener::ALL.iter().position(|l| *l == listener)?;
        self.current().servers.as_ref().map(|s| s[i].clone())
    }

    /// The client configuration (HTTP/2 for gRPC), as of the last reload.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    /// Re-reads the files and swaps in new configurations if their contents
    /// changed. `Ok(false)`: nothing changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        // Each file is read once a round: hashed, and parsed only if changed.
        let contents = Contents::read(&self.files)?;
        if contents.digest == self.current().digest {
            return Ok(false);
        }
        let loaded = Arc::new(load(&self.files, &contents)?);
        match self.loaded.write() {
            Ok(mut l) => *l = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(true)
    }

    /// Reloads every `interval` until `stop`; failures keep the previous
    /// configuration and are retried on the next tick.
    pub async fn watch(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            match self.reload() {
                Ok(true) => {
                    failing = false;
                    metrics::counter!("spoor_tls_reloads_total", "outcome" => "loaded")
                        .increment(1);
                    tracing::info!("TLS files changed: new connections use the new certificates");
                }
                Ok(false) => failing = false,
                Err(e) => {
                    metrics::counter!("spoor_tls_reloads_total", "outcome" => "failed")
                        .increment(1);
                    if !failing {
                        tracing::warn!(
                            error = %e,
                            "TLS files changed but cannot be loaded; the previous certificates stay in use"
                        );
                    }
                    failing = true;
                }
            }
        }
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError {
        key,
        path: path.display().to_string(),
        reason: format!("cannot read: {e}"),
    })
}

/// The files' bytes, read once, and a digest over all of them.
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
    client_ca: Vec<u8>,
    digest: [u8; 32],
}

impl Contents {
    fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        let mut hash = Sha256::new();
        let mut read_one = |file: &Option<(&'static str, PathBuf)>| -> Result<Vec<u8>, TlsError> {
            let bytes = match file {
                Some((key, path)) => read(key, path)?,
                None => Vec::new(),
            };
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(&bytes);
            Ok(bytes)
        };
        let cert = read_one(&files.cert)?;
        let key = read_one(&files.key)?;
        let ca = read_one(&files.ca)?;
        let client_ca = read_one(&files.client_ca)?;
        Ok(Contents {
            cert,
            key,
            ca,
            client_ca,
            digest: hash.finalize().into(),
        })
    }
}

fn certificates(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError {
        key,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    Ok(certs)
}

fn roots(key: &'static str, path: &Path, bytes: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(key, path, bytes)? {
        store.add(cert).map_err(|e| TlsError {
            key,
            path: path.display().to_string(),
            reason: format!("a certificate cannot be used as a CA: {e}"),
        })?;
    }
    Ok(store)
}

fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "reading the system's CA certificates");
    }
    let (_added, _ignored) = store.add_parsable_certificates(found.certs);
    store
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn load(files: &TlsFiles, contents: &Contents) -> Result<Loaded, TlsError> {
    let digest = contents.digest;
    let provider = provider();
    let tls_error = |(key, path): &(&'static str, PathBuf), e: rustls::Error| TlsError {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let identity = match (&files.cert, &files.key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let certs = certificates(cert.0, &cert.1, &contents.cert)?;
            let private = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|e| TlsError {
                key: key.0,
                path: key.1.display().to_string(),
                reason: format!("holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            })?;
            // A key that is not the certificate's would fail every
            // handshake; refuse it here, naming both files.
            rustls::sign::CertifiedKey::from_der(certs.clone(), private.clone_key(), &provider)
                .map_err(|e| TlsError {
                    key: key.0,
                    path: key.1.display().to_string(),
                    reason: format!("does not fit the certificate in {}: {e}", cert.1.display()),
                })?;
            Some((cert, certs, private))
        }
        (Some((key, path)), None) | (None, Some((key, path))) => {
            return Err(TlsError {
                key,
                path: path.display().to_string(),
                reason: "a certificate needs its key and a key its certificate: set both \
                         tls.cert_file and tls.key_file"
                    .into(),
            });
        }
    };
    let client_roots = match &files.client_ca {
        Some((key, path)) => {
            if identity.is_none() {
                return Err(TlsError {
                    key,
                    path: path.display().to_string(),
                    reason: "client certificates are asked for only on a TLS listener: set \
                             tls.cert_file and tls.key_file too"
                        .into(),
                });
            }
            Some(Arc::new(roots(key, path, &contents.client_ca)?))
        }
        None => None,
    };

    let servers = match &identity {
        None => None,
        Some((cert, certs, private)) => {
            let mut servers = Vec::with_capacity(Listener::ALL.len());
            for listener in Listener::ALL {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| tls_error(cert, e))?;
                let builder = match (&client_roots, listener) {
                    (Some(roots), Listener::Grpc) => {
                        let verifier = WebPkiClientVerifier::builder_with_provider(
                            roots.clone(),
                            provider.clone(),
                        )
                        .build()
                        .map_err(|e| TlsError {
                            key: "tls.client_ca_file",
                            path: files
                                .client_ca
                                .as_ref()
                                .map(|(_, p)| p.display().to_string())
                                .unwrap_or_default(),
                            reason: e.to_string(),
                        })?;
                        builder.with_client_cert_verifier(verifier)
                    }
                    _ => builder.with_no_client_auth(),
                };
                let mut config = builder
                    .with_single_cert(certs.clone(), private.clone_key())
                    .map_err(|e| tls_error(cert, e))?;
                config.alpn_protocols = listener.alpn();
                servers.push(Arc::new(config));
            }
            let servers: [Arc<ServerConfig>; 4] = servers.try_into().map_err(|_| TlsError {
                key: cert.0,
                path: cert.1.display().to_string(),
                reason: "internal: wrong number of listener configurations".into(),
            })?;
            Some(servers)
        }
    };

    let trusted = match &files.ca {
        Some((key, path)) => roots(key, path, &contents.ca)?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            key: "tls",
            path: String::new(),
            reason: e.to_string(),
        })?
        .with_root_certificates(trusted);
    let mut client = match identity {
        // The node's own certificate is its identity when a coordinator
        // demands one (mutual TLS between roles).
        Some((cert, certs, private)) => builder
            .with_client_auth_cert(certs, private)
            .map_err(|e| tls_error(cert, e))?,
        None => builder.with_no_client_auth(),
    };
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        digest,
        servers,
        client: Arc::new(client),
    })
}

/// A connection a listener accepted: plain TCP, or TLS over it.
pub enum Conn {
    /// No TLS configured.
    Plain(TcpStream),
    /// The handshake is done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

/// Connections accepted on one listener, handshaken (when TLS is on)
/// concurrently by a background task: a client that stalls its handshake
/// delays nobody else. Serves axum (as a `Listener`) and tonic (as a
/// stream of connections).
pub struct Incoming {
    accepted: mpsc::Receiver<(Conn, SocketAddr)>,
    local_addr: SocketAddr,
}

impl Incoming {
    /// Accepts on `listener` until `stop`, with TLS when `tls` serves a
    /// certificate. Replies are small: every socket gets TCP_NODELAY, or
    /// Nagle's algorithm holds them for the peer's delayed ACK (~40 ms).
    pub fn new(
        listener: TcpListener,
        tls: Option<Arc<Tls>>,
        kind: Listener,
        stop: CancellationToken,
    ) -> std::io::Result<Incoming> {
        let local_addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (socket, peer) = tokio::select! {
                    () = stop.cancelled() => return,
                    () = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: wait
                            // rather than spin.
                            tracing::warn!(listener = kind.name(), error = %e, "accepting a connection");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = socket.set_nodelay(true);
                let config = tls.as_ref().and_then(|t| t.server(kind));
                let Some(config) = config else {
                    if tx.send((Conn::Plain(socket), peer)).await.is_err() {
                        return;
                    }
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake = TlsAcceptor::from(config).accept(socket);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((Conn::Tls(Box::new(stream)), peer)).await;
                        }
                        Ok(Err(e)) => handshake_failed(kind, peer, &e.to_string()),
                        Err(_) => handshake_failed(kind, peer, "no handshake within 10 s"),
                    }
                });
            }
        });
        Ok(Incoming {
            accepted,
            local_addr,
        })
    }

    /// Connections as tonic's `serve_with_incoming` takes them.
    pub fn into_stream(self) -> impl futures::Stream<Item = std::io::Result<Conn>> + Send {
        futures::stream::unfold(self.accepted, |mut rx| async move {
            let (conn, _) = rx.recv().await?;
            Some((Ok(conn), rx))
        })
    }
}

/// A failed handshake is the client's problem (wrong CA, plaintext on a
/// TLS port, no client certificate where one is demanded): logged at debug
/// and counted, never fatal.
fn handshake_failed(kind: Listener, peer: SocketAddr, reason: &str) {
    metrics::counter!("spoor_tls_handshake_failures_total", "listener" => kind.name()).increment(1);
    tracing::debug!(listener = kind.name(), %peer, reason, "TLS handshake failed");
}

impl axum::serve::Listener for Incoming {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept task stopped (shutdown): accept nothing more and
            // let graceful shutdown finish the open connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local_addr)
    }
}

/// The TLS a coordinator uses to call its peers (Raft, forwarding to the
/// leader), carried in its configuration. Equal when it is the same
/// loaded configuration.
#[derive(Debug, Clone, Default)]
pub struct PeerTls(pub Option<Arc<Tls>>);

impl PartialEq for PeerTls {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// A lazily connecting gRPC channel to `endpoint`. An `https://` endpoint
/// is reached over TLS with `tls`'s client configuration (or the system's
/// roots without one), checked against the endpoint's host name or IP;
/// with `tls`, any other endpoint is refused.
pub fn lazy_channel(
    endpoint: &str,
    timeout: Duration,
    tls: Option<&Arc<Tls>>,
) -> Result<tonic::transport::Channel, String> {
    let ep = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| format!("{endpoint:?} is not a valid URI: {e}"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if ep.uri().scheme_str() != Some("https") {
        // With [tls] configured, a plaintext endpoint is a mistake that
        // would send the cluster secret (or a token) in clear text.
        if tls.is_some() {
            return Err(format!(
                "{endpoint:?} is not https:// but TLS is configured ([tls]): the credential \
                 would cross the network in clear text; use https:// with the name on the \
                 coordinator's certificate"
            ));
        }
        return Ok(ep.connect_lazy());
    }
    let tls = match tls {
        Some(t) => t.clone(),
        None => Tls::system_roots().map_err(|e| e.to_string())?,
    };
    let connector = tower::service_fn(move |uri: tonic::transport::Uri| {
        let tls = tls.clone();
        async move {
            let host = uri.host().unwrap_or_default().to_string();
            let port = uri.port_u16().unwrap_or(443);
            // "[::1]" in a URI is "::1" to the certificate check.
            let name = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let server_name = ServerName::try_from(name.clone()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{name:?} is not a TLS server name: {e}"),
                )
            })?;
            let tcp = TcpStream::connect((name.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(tls.client())
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    Ok(ep.connect_with_connector_lazy(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_without_its_key_names_both_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "").expect("write a test file");
        let e = Tls::load(TlsFiles {
            cert: Some(("tls.cert_file", cert)),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "tls.cert_file");
        assert!(e.reason.contains("tls.key_file"), "{e}");
    }

    #[test]
    fn unreadable_and_empty_files_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("missing.pem");
        let e = Tls::load(TlsFiles {
            ca: Some(("tls.ca_file", missing)),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert_eq!(e.key, "tls.ca_file");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        assert!(e.reason.contains("cannot read"), "{e}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").expect("write a test file");
        let e = Tls::load(TlsFiles {
            ca: Some(("tls.ca_file", empty)),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(e.reason.contains("no PEM certificate"), "{e}");
    }

    /// A CA, and a node certificate for localhost it signed, in `dir`.
    fn pki(dir: &Path) -> (dev::DevCa, TlsFiles) {
        let ca = dev::DevCa::new("test CA", 30).expect("a test CA");
        let node = ca
            .issue(
                "node",
                &["localhost".into(), "127.0.0.1".into()],
                dev::Usage::Node,
            )
            .expect("issue a certificate");
        std::fs::write(dir.join("ca.pem"), ca.cert_pem()).expect("write a test file");
        std::fs::write(dir.join("node.pem"), &node.cert_pem).expect("write a test file");
        std::fs::write(dir.join("node.key"), &node.key_pem).expect("write a test file");
        let files = TlsFiles {
            cert: Some(("tls.cert_file", dir.join("node.pem"))),
            key: Some(("tls.key_file", dir.join("node.key"))),
            ca: Some(("tls.ca_file", dir.join("ca.pem"))),
            client_ca: None,
        };
        (ca, files)
    }

    /// Handshakes with `listener` of a server on `tls` and returns the
    /// certificate it served, or the handshake's error.
    async fn handshake(
        server: &Arc<Tls>,
        client: &Arc<Tls>,
        kind: Listener,
    ) -> Result<CertificateDer<'static>, String> {
        let stop = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut incoming =
            Incoming::new(listener, Some(server.clone()), kind, stop.clone()).expect("listen");
        let addr = axum::serve::Listener::local_addr(&incoming).expect("address");
        let server_side = tokio::spawn(async move {
            let (mut conn, _) = axum::serve::Listener::accept(&mut incoming).await;
            tokio::io::AsyncWriteExt::write_all(&mut conn, b"ok")
                .await
                .expect("write to the client");
        });
        let mut config = (*client.client()).clone();
        config.alpn_protocols = kind.alpn();
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let result = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await;
        let outcome = match result {
            Ok(mut stream) => {
                // Under TLS 1.3 a refused client certificate surfaces on
                // the first read, after the client's handshake finished.
                let mut buf = [0u8; 2];
                match tokio::io::AsyncReadExt::read_exact(&mut stream, &mut buf).await {
                    Ok(_) => Ok(stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .expect("a peer certificate")
                        .clone()),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        stop.cancel();
        server_side.abort();
        outcome
    }

    #[tokio::test]
    async fn a_renewed_certificate_is_served_after_reload_and_a_bad_one_is_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, files) = pki(dir.path());
        let server = Tls::load(files.clone()).expect("load the TLS files");
        let client = Tls::load(TlsFiles {
            ca: files.ca.clone(),
            ..TlsFiles::default()
        })
        .expect("load the TLS files");
        let first = handshake(&server, &client, Listener::Http)
            .await
            .expect("handshake");
        assert!(
            !server.reload().expect("reload"),
            "unchanged files are not reloaded"
        );

        // Renewal: same CA, new key and certificate.
        let renewed = ca
            .issue("node", &["localhost".into()], dev::Usage::Node)
            .expect("issue a certificate");
        std::fs::write(dir.path().join("node.pem"), &renewed.cert_pem).expect("write a test file");
        std::fs::write(dir.path().join("node.key"), &renewed.key_pem).expect("write a test file");
        assert!(server.reload().expect("reload"));
        let second = handshake(&server, &client, Listener::Http)
            .await
            .expect("handshake");
        assert_ne!(first, second, "the renewed certificate is served");

        // Half a renewal (a new certificate, the old key) is refused and
        // the working pair stays in force.
        let other = ca
            .issue("node", &["localhost".into()], dev::Usage::Node)
            .expect("issue a certificate");
        std::fs::write(dir.path().join("node.pem"), &other.cert_pem).expect("write a test file");
        let e = server.reload().unwrap_err();
        assert_eq!(e.key, "tls.key_file", "{e}");
        assert!(e.reason.contains("does not fit the certificate"), "{e}");
        let third = handshake(&server, &client, Listener::Http)
            .await
            .expect("handshake");
        assert_eq!(second, third);
    }

    #[tokio::test]
    async fn grpc_demands_a_client_certificate_from_the_cluster_ca() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (ca, mut files) = pki(dir.path());
        let clients = dir.path().join("clients.pem");
        std::fs::write(&clients, ca.cert_pem()).expect("write a test file");
        files.client_ca = Some(("tls.client_ca_file", clients.clone()));
        let server = Tls::load(files.clone()).expect("load the TLS files");
        // A client with the CA's node certificate is let in, on gRPC and
        // elsewhere.
        let member = Tls::load(files.clone()).expect("load the TLS files");
        handshake(&server, &member, Listener::Grpc)
            .await
            .expect("handshake");
        // Without a certificate: refused on gRPC only (HTTP, Flight SQL and
        // PostgreSQL authenticate users with tokens).
        let anonymous = Tls::load(TlsFiles {
            ca: files.ca.clone(),
            ..TlsFiles::default()
        })
        .expect("load the TLS files");
        let refused = handshake(&server, &anonymous, Listener::Grpc).await;
        assert!(refused.is_err(), "{refused:?}");
        handshake(&server, &anonymous, Listener::Http)
            .await
            .expect("handshake");
        // A certificate from another CA: refused.
        let stranger_ca = dev::DevCa::new("another CA", 30).expect("a test CA");
        let stranger = stranger_ca
            .issue("intruder", &["localhost".into()], dev::Usage::Node)
            .expect("issue a certificate");
        std::fs::write(dir.path().join("stranger.pem"), &stranger.cert_pem)
            .expect("write a test file");
        std::fs::write(dir.path().join("stranger.key"), &stranger.key_pem)
            .expect("write a test file");
        let intruder = Tls::load(TlsFiles {
            cert: Some(("tls.cert_file", dir.path().join("stranger.pem"))),
            key: Some(("tls.key_file", dir.path().join("stranger.key"))),
            ca: files.ca.clone(),
            client_ca: None,
        })
        .expect("load the TLS files");
        let refused = handshake(&server, &intruder, Listener::Grpc).await;
        assert!(refused.is_err(), "{refused:?}");
        // The client CA bundle is reloaded like the certificate: once the
        // other CA is added to it, its certificates get in.
        std::fs::write(
            &clients,
            format!("{}{}", ca.cert_pem(), stranger_ca.cert_pem()),
        )
        .expect("write a test file");
        assert!(server.reload().expect("reload"));
        handshake(&server, &intruder, Listener::Grpc)
            .await
            .expect("handshake after the CA bundle grew");
    }

    #[tokio::test]
    async fn a_client_refuses_a_server_from_another_ca() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_ca, files) = pki(dir.path());
        let server = Tls::load(files).expect("load the TLS files");
        let stranger_ca = dev::DevCa::new("another CA", 30).expect("a test CA");
        std::fs::write(dir.path().join("other-ca.pem"), stranger_ca.cert_pem())
            .expect("write a test file");
        let client = Tls::load(TlsFiles {
            ca: Some(("tls.ca_file", dir.path().join("other-ca.pem"))),
            ..TlsFiles::default()
        })
        .expect("load the TLS files");
        let refused = handshake(&server, &client, Listener::Http)
            .await
            .unwrap_err();
        assert!(refused.contains("UnknownIssuer"), "{refused}");
    }

    #[tokio::test]
    async fn with_tls_a_plaintext_endpoint_is_refused() {
        let tls = Tls::system_roots().expect("system roots");
        let e =
            lazy_channel("http://10.0.0.1:7070", Duration::from_secs(1), Some(&tls)).unwrap_err();
        assert!(e.contains("clear text"), "{e}");
        lazy_channel("https://10.0.0.1:7070", Duration::from_secs(1), Some(&tls))
            .expect("a channel");
        lazy_channel("http://10.0.0.1:7070", Duration::from_secs(1), None).expect("a channel");
    }

    #[test]
    fn system_roots_make_a_client_without_a_server() {
        let tls = Tls::system_roots().expect("system roots");
        assert!(!tls.serves());
        assert!(tls.server(Listener::Http).is_none());
        assert_eq!(tls.client().alpn_protocols, vec![b"h2".to_vec()]);
    }
}
