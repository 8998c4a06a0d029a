//! Wiring each role from configuration. Role crates never depend on one
//! another: they meet here, through the `Catalog` trait and the lake's
//! object store.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use spoor_common::catalog::Catalog;
use spoor_common::catalog_client::GrpcCatalog;
use spoor_common::config::Config;
use spoor_common::storage::open_lake;
use spoor_coordinator::{CatalogGrpc, ClusterGrpc, CoordinatorNode};
use spoor_ingest::flush::{Fault, Flusher};
use spoor_ingest::lake_writer::LakeWriter;
use spoor_query::QueryEngine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

    fn runs_coordinator(self) -> bool {
        matches!(self, Role::Standalone | Role::Coordinator)
    }

    fn runs_ingest(self) -> bool {
        matches!(self, Role::Standalone | Role::Ingest)
    }

    fn runs_query(self) -> bool {
        matches!(self, Role::Standalone | Role::Query)
    }
}

/// Runs `role` until SIGINT or SIGTERM.
pub(crate) async fn run(role: Role, config: Config) -> Result<()> {
    if role == Role::Worker {
        bail!(
            "the worker role is not in this release: correlation workers arrive with the detection engine; \
             run `spoor standalone` or the coordinator, ingest and query roles"
        );
    }
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    // The catalog: served here (coordinator, standalone) or reached over gRPC.
    let mut coordinator = None;
    let mut grpc_addr = None;
    let catalog: Arc<dyn Catalog> = if role.runs_coordinator() {
        // Bind first: with port 0 the advertised URL is known only after binding.
        let listener = bind(config.node.grpc_addr, "node.grpc_addr").await?;
        let bound = listener.local_addr().context("reading the gRPC address")?;
        grpc_addr = Some(bound);
        let members = config
            .coordinator_members()
            .context("coordinator.initial_members")?;
        let node = CoordinatorNode::open(
            config.node.id,
            members,
            &config.raft_dir(),
            &config.coordinator,
        )
        .await
        .with_context(|| {
            format!(
                "starting the coordinator in {}",
                config.raft_dir().display()
            )
        })?;
        let catalog_service = CatalogGrpc::new(Arc::new(node.clone())).into_server();
        let raft_service = node.raft_service().into_server();
        let cluster_service = ClusterGrpc::new(node.clone()).into_server();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(catalog_service)
                .add_service(raft_service)
                .add_service(cluster_service)
                .serve_with_incoming_shutdown(
                    spoor_coordinator::incoming(listener),
                    stop.cancelled_owned(),
                )
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
            GrpcCatalog::connect_lazy(
                &config.catalog.endpoint,
                Duration::from_millis(config.catalog.timeout_ms),
            )
            .context("configuring the catalog client (catalog.endpoint)")?,
        )
    };

    let mut app = spoor_common::telemetry::ops_router(role.name())
        .merge(status_router(catalog.clone(), role));
    if role.runs_ingest() || role.runs_query() {
        let store = open_lake(&config).context("opening the lake (storage.url / data_dir)")?;
        if role.runs_ingest() {
            let writer = LakeWriter::new(store.clone(), config.ingest.zstd_level);
            let flusher = Flusher::new(
                config.ingest_tenant(),
                writer,
                catalog.clone(),
                Fault::from_env(),
            );
            app = app.merge(spoor_ingest::http::router(
                flusher.clone(),
                config.node.id,
                config.ingest.http_max_body_bytes,
            ));
            if !config.ingest.kafka.brokers.is_empty() {
                let (ingest, catalog, stop) =
                    (config.ingest.clone(), catalog.clone(), shutdown.clone());
                let instance_id = config.kafka_instance_id();
                tasks.spawn(async move {
                    spoor_ingest::kafka::run(ingest, instance_id, catalog, flusher, stop)
                        .await
                        .context("kafka source")
                });
            }
        }
        if role.runs_query() {
            let engine = QueryEngine::new(catalog.clone(), store.clone(), config.query.clone());
            app = app.merge(spoor_query::http::router(engine, config.ingest_tenant()));
        }
    }

    let listener = bind(config.node.http_addr, "node.http_addr").await?;
    let http_addr = listener.local_addr().context("reading the HTTP address")?;
    {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .context("HTTP server")
        });
    }

    // One line on stdout for scripts and tests: where to reach this node.
    let grpc = grpc_addr.map(|a| format!(" grpc={a}")).unwrap_or_default();
    println!("spoor {} ready http={http_addr}{grpc}", role.name());
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
    role: Role,
}

fn status_router(catalog: Arc<dyn Catalog>, role: Role) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .with_state(StatusState { catalog, role })
}

async fn status(State(state): State<StatusState>) -> Response {
    match state.catalog.status().await {
        Ok(s) => axum::Json(serde_json::json!({
            "role": state.role.name(),
            "version": env!("CARGO_PKG_VERSION"),
            "catalog": s,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {"code": "catalog_unavailable", "message": e.to_string()}})),
        )
            .into_response(),
    }
}
