//! Wiring each role from configuration. Role crates never depend on one
//! another: they meet here, through the `Catalog` trait and the lake's
//! object store.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use spoor_common::auth::Credential;
use spoor_common::catalog::Catalog;
use spoor_common::catalog_client::GrpcCatalog;
use spoor_common::config::Config;
use spoor_common::control::{ControlClient, Heartbeat, MemberInfo};
use spoor_common::storage::{check_lake, multipart_threshold, open_lake};
use spoor_common::tenant::TenantId;
use spoor_common::tls::{Incoming, Listener as TlsListener};
use spoor_coordinator::CoordinatorNode;
use spoor_ingest::flush::{Fault, Flusher};
use spoor_ingest::lake_writer::LakeWriter;
use spoor_ingest::routing::{KnownTenants, TenantRouter};
use spoor_query::QueryEngine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often ingest refreshes the registered tenants when a source takes
/// tenants from the data (a new tenant is accepted within this time).
const TENANT_REFRESH: Duration = Duration::from_secs(5);

/// The roles of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Standalone,
    Coordinator,
    Ingest,
    Worker,
    Query,
}

impl Role {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Coordinator => "coordinator",
            Role::Ingest => "ingest",
            Role::Worker => "worker",
            Role::Query => "query",
        }
    }

    fn member_role(self) -> spoor_common::control::Role {
        use spoor_common::control::Role as R;
        match self {
            Role::Standalone => R::Standalone,
            Role::Coordinator => R::Coordinator,
            Role::Ingest => R::Ingest,
            Role::Worker => R::Worker,
            Role::Query => R::Query,
        }
    }

    fn runs_coordinator(self) -> bool {
        matches!(self, Role::Standalone | Role::Coordinator)
    }

    fn runs_ingest(self) -> bool {
        matches!(self, Role::Standalone | Role::Ingest)
    }

    fn runs_query(self) -> bool {
        matches!(self, Role::Standalone | Role::Query)
    }

    fn runs_worker(self) -> bool {
        matches!(self, Role::Standalone | Role::Worker)
    }
}

/// Runs `role` until SIGINT or SIGTERM.
pub(crate) async fn run(role: Role, config: Config) -> Result<()> {
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    // What this node presents to the coordinators, and (as one) demands.
    // The cluster secrets, re-read from cluster.secret_file so a secret is
    // rotated without a restart; this node presents the first.
    let secret = config.cluster.cluster_secrets().context("cluster")?;
    let credential = secret
        .as_ref()
        .map_or_else(Credential::none, Credential::cluster);
    if let Some(secrets) = &secret
        && !config.cluster.secret_file.is_empty()
    {
        let interval = Duration::from_millis(config.cluster.reload_interval_ms);
        let (secrets, cluster, stop) = (secrets.clone(), config.cluster.clone(), shutdown.clone());
        tasks.spawn(async move {
            secrets.watch(cluster, interval, stop).await;
            Ok(())
        });
    }
    // TLS on every listener and on calls to https:// coordinators; the
    // files are re-read and a change applies to new connections.
    let tls = spoor_common::tls::Tls::from_config(&config.tls)?;
    if let Some(tls) = &tls {
        let interval = Duration::from_millis(config.tls.reload_interval_ms);
        let (tls, stop) = (tls.clone(), shutdown.clone());
        tasks.spawn(async move {
            tls.watch(interval, stop).await;
            Ok(())
        });
    }
    let listener_tls = tls.clone().filter(|t| t.serves());
    // The lake, checked before anything serves: with an s3:// lake, wrong
    // credentials or a missing bucket stop start-up here, and an unreachable
    // store is waited for (bounded by storage.s3.startup_timeout_ms).
    let lake = open_lake(&config).context("opening the lake (storage.url / data_dir)")?;
    check_lake(&config, lake.as_ref())
        .await
        .context("checking the lake (storage.url, [storage.s3])")?;
    let multipart_threshold = multipart_threshold(&config);
    // The audit trail of everything this node sees (docs/security.md).
    let (audit, audit_queue) = spoor_common::audit::AuditLog::new();
    // The catalog: served here (coordinator, standalone) or reached over gRPC.
    let mut coordinator = None;
    let mut grpc_addr = None;
    let mut own_grpc_url = None;
    let catalog: Arc<dyn Catalog> = if role.runs_coordinator() {
        // Bind first: with port 0 the advertised URL is known only after binding.
        let listener = bind(config.node.grpc_addr, "node.grpc_addr").await?;
        let bound = listener.local_addr().context("reading the gRPC address")?;
        grpc_addr = Some(bound);
        let members = config
            .coordinator_members()
            .context("coordinator.initial_members")?;
        let own_member_url = members.get(&config.node.id).cloned();
        if tls.is_some()
            && let Some(plain) = members.values().find(|url| url.starts_with("http://"))
        {
            anyhow::bail!(
                "coordinator.initial_members: {plain} is http:// but TLS is configured ([tls]): \
                 the cluster secret would cross the network in clear text; list the \
                 coordinators as https:// URLs with the names their certificates carry"
            );
        }
        if secret.is_none() && !bound.ip().is_loopback() {
            tracing::warn!(
                grpc = %bound,
                "the coordinator's gRPC listens beyond loopback without a cluster secret: anyone \
                 who reaches it can change the catalog, tenants and tokens; set cluster.secret_file"
            );
        }
        let coordinator_config = spoor_common::config::CoordinatorConfig {
            peer_credential: credential.clone(),
            peer_tls: spoor_common::tls::PeerTls(tls.clone()),
            ..config.coordinator.clone()
        };
        let node = CoordinatorNode::open(
            config.node.id,
            members,
            &config.raft_dir(),
            &coordinator_config,
        )
        .await
        .with_context(|| {
            format!(
                "starting the coordinator in {}",
                config.raft_dir().display()
            )
        })?;
        let services = spoor_coordinator::services(&node, secret.clone(), audit.clone());
        let stop = shutdown.clone();
        let incoming = Incoming::new(
            listener,
            listener_tls.clone(),
            TlsListener::Grpc,
            stop.clone(),
        )
        .context("serving gRPC")?;
        // This node's own clients (control, heartbeats) reach its gRPC by
        // the name its certificate carries: its URL among the members, else
        // the address it listens on (localhost when that is 0.0.0.0 or ::).
        own_grpc_url = Some(match (&listener_tls, own_member_url) {
            (Some(_), Some(url)) => url,
            (Some(_), None) if bound.ip().is_unspecified() => {
                format!("https://localhost:{}", bound.port())
            }
            (Some(_), None) => format!("https://{bound}"),
            (None, _) => format!("http://{bound}"),
        });
        tasks.spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(services)
                .serve_with_incoming_shutdown(incoming.into_stream(), stop.cancelled_owned())
                .await
                .context("gRPC server")
        });
        if config.coordinator.join && node.membership().voters.is_empty() {
            // A joining node has no members until `spoor cluster add-node`.
            tracing::info!(grpc = %bound, "coordinator waiting to be added to a group (coordinator.join)");
        } else {
            let wait = Duration::from_millis(config.coordinator.election_timeout_max_ms * 30);
            let leader = node
                .wait_for_leader(wait)
                .await
                .context("waiting for a raft leader")?;
            tracing::info!(leader, grpc = %bound, "coordinator ready");
        }
        coordinator = Some(node.clone());
        Arc::new(node)
    } else {
        Arc::new(
            GrpcCatalog::connect_lazy_with_tls(
                &config.catalog.endpoint,
                Duration::from_millis(config.catalog.timeout_ms),
                tls.as_ref(),
            )
            .context("configuring the catalog client (catalog.endpoint)")?
            .with_credential(credential.clone()),
        )
    };

    // A coordinator that serves plaintext gRPC calls itself in plaintext,
    // whatever client TLS it has for its peers.
    let own_plaintext = own_grpc_url
        .as_deref()
        .is_some_and(|u| u.starts_with("http://"));
    let control = ControlClient::connect_lazy_with_tls(
        own_grpc_url.as_deref().unwrap_or(&config.catalog.endpoint),
        Duration::from_millis(config.catalog.timeout_ms),
        if own_plaintext { None } else { tls.as_ref() },
    )
    .context("configuring the control client (catalog.endpoint)")?
    .with_credential(credential.clone());
    let mut app =
        spoor_common::telemetry::ops_router(role.name()).merge(status_router(StatusState {
            catalog: catalog.clone(),
            control: control.clone(),
            role,
            access: Arc::new(crate::rules_api::access(&config, &control, &audit)),
            metrics_client: crate::health::metrics_client(listener_tls.as_deref())?,
        }));
    // Rule sets are managed through any node (the CLI, the console).
    app = app.merge(crate::rules_api::router(
        control.clone(),
        crate::rules_api::access(&config, &control, &audit),
    ));
    app = app.merge(crate::admin_api::router(control.clone(), audit.clone()));
    app = app.merge(crate::alerts_api::router(
        &config, &catalog, &control, &audit,
    )?);
    app = app.merge(crate::retro_api::router(
        &config, &catalog, &control, &audit,
    )?);
    {
        let store = lake.clone();
        let writer = spoor_common::audit::AuditWriter::new(config.node.id, catalog.clone(), store);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            writer.run(audit_queue, stop).await;
            Ok(())
        });
    }
    let mut flight_addr = None;
    let mut postgres_addr = None;
    // Leases the heartbeat replies carry, for the worker's shards.
    let (leases_tx, leases_rx) = tokio::sync::watch::channel(Vec::new());
    let mut loads = None;
    if role.runs_worker() {
        let store = lake.clone();
        let sinks = spoor_correlate::worker::Sinks::new(&config.alerts.sinks)
            .map_err(anyhow::Error::msg)
            .context("starting the alert sinks (alerts.sinks)")?;
        let worker = spoor_correlate::worker::Worker::with_sinks(
            config.node.id,
            &config.worker,
            sinks,
            catalog.clone(),
            Arc::new(control.clone()),
            store,
        );
        loads = Some(worker.load_report());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            worker.run(leases_rx, stop).await;
            Ok(())
        });
    }
    if role.runs_ingest() || role.runs_query() {
        let store = lake.clone();
        if role.runs_ingest() {
            let writer = LakeWriter::new(store.clone(), config.ingest.zstd_level)
                .with_multipart_threshold(multipart_threshold);
            let flusher = Flusher::new(writer, catalog.clone(), Fault::from_env());
            let sources = spoor_ingest::parse::Sources::new(config.ingest.sources.clone())
                .context("ingest.sources")?;
            // Follow the coordinators' tenant records: tenants taken from
            // the data must be registered and enabled, and every tenant's
            // ingest quotas apply on this node.
            let known = KnownTenants::new();
            {
                let (known, control, stop) = (known.clone(), control.clone(), shutdown.clone());
                tasks.spawn(async move {
                    known.follow(control, TENANT_REFRESH, stop).await;
                    Ok(())
                });
            }
            let quotas = spoor_ingest::quota::IngestQuotas::new(known.clone());
            let tenants = TenantRouter::new(
                config.ingest_tenant(),
                TenantId::new(config.ingest.unrouted_tenant.clone())
                    .context("ingest.unrouted_tenant")?,
                &config.ingest.sources,
                known,
            )
            .map_err(anyhow::Error::msg)
            .context("ingest.sources")?;
            let tokens = Arc::new(spoor_common::auth::CoordinatorTokens::new(control.clone()));
            app = app.merge(spoor_ingest::http::router(
                spoor_ingest::http::HttpIngest::new(
                    flusher.clone(),
                    sources,
                    tenants.clone(),
                    tokens,
                    config.ingest.http_auth,
                    config.node.id,
                    config.ingest.http_max_body_bytes,
                )
                .with_quotas(
                    quotas.clone(),
                    config.ingest.quota_exceeded,
                    Duration::from_millis(config.ingest.quota_max_delay_ms),
                    config.ingest.quota_max_delayed_requests,
                )
                .with_audit(audit.clone()),
            ));
            if !config.ingest.kafka.brokers.is_empty() {
                let (ingest, catalog, stop) =
                    (config.ingest.clone(), catalog.clone(), shutdown.clone());
                let instance_id = config.kafka_instance_id();
                tasks.spawn(async move {
                    spoor_ingest::kafka::run(
                        ingest,
                        instance_id,
                        catalog,
                        flusher,
                        tenants,
                        quotas,
                        stop,
                    )
                    .await
                    .context("kafka source")
                });
            }
            if config.ingest.compaction.enabled {
                // Compaction, retention and deferred deletion: every ingest
                // node runs it on its share of the partitions.
                let maintenance = spoor_ingest::compaction::Maintenance::new(
                    config.node.id,
                    config.ingest.compaction.clone(),
                    config.ingest.zstd_level,
                    catalog.clone(),
                    store.clone(),
                )
                .with_multipart_threshold(multipart_threshold);
                let (control, stop) = (control.clone(), shutdown.clone());
                tasks.spawn(async move {
                    maintenance.run(control, stop).await;
                    Ok(())
                });
            }
        }
        if role.runs_query() {
            let engine = QueryEngine::new(catalog.clone(), store.clone(), config.query.clone())
                .with_audit(audit.clone());
            let access = crate::rules_api::access(&config, &control, &audit);
            if !config.query.flight_addr.is_empty() {
                let addr: SocketAddr = config
                    .query
                    .flight_addr
                    .parse()
                    .context("query.flight_addr")?;
                let listener = bind(addr, "query.flight_addr").await?;
                flight_addr = Some(
                    listener
                        .local_addr()
                        .context("reading the Flight SQL address")?,
                );
                let service =
                    spoor_query::flight::SpoorFlightSql::new(engine.clone(), access.clone())
                        .map_err(anyhow::Error::msg)
                        .context("building the Flight SQL service")?;
                let stop = shutdown.clone();
                let incoming = Incoming::new(
                    listener,
                    listener_tls.clone(),
                    TlsListener::Flight,
                    stop.clone(),
                )
                .context("serving Flight SQL")?;
                tasks.spawn(async move {
                    spoor_query::flight::serve(service, incoming, stop.cancelled_owned())
                        .await
                        .context("Flight SQL server")
                });
            }
            if !config.query.postgres_addr.is_empty() {
                let addr: SocketAddr = config
                    .query
                    .postgres_addr
                    .parse()
                    .context("query.postgres_addr")?;
                let listener = bind(addr, "query.postgres_addr").await?;
                postgres_addr = Some(
                    listener
                        .local_addr()
                        .context("reading the PostgreSQL address")?,
                );
                let (engine, access, stop) = (engine.clone(), access.clone(), shutdown.clone());
                let tls = listener_tls.clone();
                tasks.spawn(async move {
                    spoor_query::postgres::serve(
                        engine,
                        access,
                        listener,
                        tls,
                        stop.cancelled_owned(),
                    )
                    .await
                    .context("PostgreSQL server")
                });
            }
            app = app.merge(spoor_query::http::router(engine, access));
            // The hunter's console, at `/`.
            app = app.merge(spoor_query::console::router());
        }
    }

    let listener = bind(config.node.http_addr, "node.http_addr").await?;
    let http_addr = listener.local_addr().context("reading the HTTP address")?;
    {
        let stop = shutdown.clone();
        let incoming = Incoming::new(
            listener,
            listener_tls.clone(),
            TlsListener::Http,
            stop.clone(),
        )
        .context("serving HTTP")?;
        tasks.spawn(async move {
            axum::serve(incoming, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .context("HTTP server")
        });
    }

    // Register with the coordinators and keep heartbeating: `spoor status`
    // lists every member, and a silent one is declared dead.
    {
        let member = MemberInfo {
            node_id: config.node.id,
            role: role.member_role(),
            http_addr: http_addr.to_string(),
            grpc_addr: grpc_addr.map(|a| a.to_string()).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let interval = Duration::from_millis(config.node.heartbeat_interval_ms);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            heartbeat_loop(control, member, interval, leases_tx, loads, stop).await;
            Ok(())
        });
    }

    // One line on stdout for scripts and tests: where to reach this node.
    let grpc = grpc_addr.map(|a| format!(" grpc={a}")).unwrap_or_default();
    let flight = flight_addr
        .map(|a| format!(" flight={a}"))
        .unwrap_or_default();
    let postgres = postgres_addr
        .map(|a| format!(" postgres={a}"))
        .unwrap_or_default();
    let tls_on = if listener_tls.is_some() { " tls" } else { "" };
    println!(
        "spoor {} ready http={http_addr}{grpc}{flight}{postgres}{tls_on}",
        role.name()
    );
    let _ = std::io::stdout().flush();
    tracing::info!(role = role.name(), %http_addr, grpc = ?grpc_addr, "ready");

    let result = tokio::select! {
        _ = wait_for_signal() => Ok(()),
        Some(joined) = tasks.join_next() => match joined {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a task panicked: {e}")),
        },
    };
    tracing::info!("shutting down");
    shutdown.cancel();
    let drain = async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Err(e)) = joined {
                tracing::warn!(error = format!("{e:#}"), "during shutdown");
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        tracing::warn!("tasks did not stop within 30 s");
    }
    if let Some(node) = coordinator {
        node.shutdown().await;
    }
    result
}

/// Heartbeats until `stop`; logs when the coordinators stop or start
/// answering. A worker reports its shards' loads and learns its leases
/// from the replies.
async fn heartbeat_loop(
    control: ControlClient,
    member: MemberInfo,
    interval: Duration,
    leases: tokio::sync::watch::Sender<Vec<spoor_common::control::ShardLease>>,
    loads: Option<spoor_correlate::worker::LoadReport>,
    stop: CancellationToken,
) {
    let mut hb = Heartbeat {
        member,
        shard_loads: Vec::new(),
    };
    let mut failing = false;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        if let Some(loads) = &loads {
            hb.shard_loads = loads.shard_loads();
        }
        match control.heartbeat(&hb).await {
            Ok(reply) => {
                if failing {
                    failing = false;
                    tracing::info!("heartbeats reach the coordinators again");
                }
                leases.send_if_modified(|held| {
                    let changed = *held != reply.leases;
                    if changed {
                        *held = reply.leases;
                    }
                    changed
                });
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "heartbeat failed; retrying every interval");
            }
            Err(_) => {}
        }
    }
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({key})"))
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[derive(Clone)]
struct StatusState {
    catalog: Arc<dyn Catalog>,
    control: ControlClient,
    role: Role,
    access: Arc<spoor_query::access::Access>,
    /// Reads the other members' `/metrics` (Kafka consumer lag).
    metrics_client: crate::health::MetricsClient,
}

impl crate::api::TenantApi for StatusState {
    fn access(&self) -> &spoor_query::access::Access {
        &self.access
    }
    const DOING: &'static str = "the cluster status is read";
}

fn status_router(state: StatusState) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/status/kafka-lag", get(kafka_lag))
        .with_state(state)
}

/// The Kafka consumer lag of every ingest member, per topic and partition,
/// read from each member's `/metrics`: cluster admin only, as
/// `/v1/status`.
async fn kafka_lag(State(state): State<StatusState>, caller: crate::api::Caller) -> Response {
    if !caller.is_cluster_admin() {
        return *caller.forbidden(
            "the consumer lag names every topic and node: it needs an admin token that names no \
             tenant"
                .to_string(),
        );
    }
    match state.control.cluster_status().await {
        Ok(cluster) => {
            let members: Vec<_> = cluster
                .members
                .iter()
                .filter(|m| {
                    m.member.alive
                        && matches!(
                            m.member.info.role,
                            spoor_common::control::Role::Ingest
                                | spoor_common::control::Role::Standalone
                        )
                })
                .map(|m| (m.member.info.node_id, m.member.info.http_addr.clone()))
                .collect();
            axum::Json(crate::health::kafka_lag(&state.metrics_client, &members).await)
                .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {"code": "coordinator_unavailable", "message": e.to_string()}})),
        )
            .into_response(),
    }
}

/// This node's view and the cluster's (from the Raft leader): members with
/// roles and heartbeats, coordinators with their replication lag, shards.
/// It names every tenant, rule group and node, so with `query.auth =
/// "token"` only the cluster's admin (an admin token naming no tenant) may
/// read it; liveness is `/health`, for anyone.
async fn status(State(state): State<StatusState>, caller: crate::api::Caller) -> Response {
    if !caller.is_cluster_admin() {
        return *caller.forbidden(
            "the cluster status names every tenant and node: it needs an admin token that names \
             no tenant (liveness is GET /health)"
                .to_string(),
        );
    }
    match state.catalog.status().await {
        Ok(s) => axum::Json(serde_json::json!({
            "role": state.role.name(),
            "version": env!("CARGO_PKG_VERSION"),
            "catalog": s,
            "cluster": match state.control.cluster_status().await {
                Ok(c) => serde_json::to_value(&c).unwrap_or_default(),
                Err(e) => serde_json::json!({"error": e.to_string()}),
            },
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {"code": "catalog_unavailable", "message": e.to_string()}})),
        )
            .into_response(),
    }
}
