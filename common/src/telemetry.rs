//! Logs and metrics, the same on every role: `tracing` to stderr, and a
//! Prometheus registry rendered at `/metrics`.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the log subscriber. Errors if the filter does not parse.
pub fn init_logging(config: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_new(&config.filter)
        .map_err(|e| format!("invalid configuration: key `log.filter`: {e}"))?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // A second init (tests, standalone wiring several roles) keeps the first subscriber.
    let _ = result;
    Ok(())
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; its metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// `/health` and `/metrics`, merged into every role's HTTP router.
pub fn ops_router(role: &'static str) -> Router {
    let handle = metrics_handle();
    metrics::gauge!("spoor_build_info", "version" => env!("CARGO_PKG_VERSION"), "role" => role)
        .set(1.0);
    Router::new()
        .route("/health", get(move || async move { axum::Json(serde_json::json!({"status": "ok", "role": role})) }))
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move {
                    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
                }
            }),
        )
}
