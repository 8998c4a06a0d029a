//! The hunter's console: a single-page web application served at `/` by
//! the query role (and `standalone`), its files compiled into the binary
//! (`query/console/`), so it works with no internet access and no build
//! step besides `cargo build`.
//!
//! The console is plain ES modules, HTML and CSS, no framework and no
//! bundler: nothing to install, nothing fetched, and the files served are
//! the files in the repository (see `docs/console.md` for why). It speaks
//! only to this node's public HTTP API with the token the user signs in
//! with; the pages themselves are not secret and need no token.
//!
//! Every answer carries a strict content security policy (scripts and
//! styles from this origin only, no framing).

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The console's files: (name, content type, content).
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/api.js"),
    ),
    (
        "sql.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/sql.js"),
    ),
    (
        "widgets.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/widgets.js"),
    ),
    (
        "hunt.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/hunt.js"),
    ),
    (
        "alerts.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/alerts.js"),
    ),
    (
        "rules.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/rules.js"),
    ),
    (
        "health.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/health.js"),
    ),
];

/// Scripts, styles, data and connections from this origin only; no
/// plug-ins, no framing, no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// The console's routes: `/` (the page) and `/console/{file}`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route(
            "/console/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

fn file(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Small files, shipped with the binary: revalidate so an
                // upgraded node never serves a stale mix of old and new.
                (header::CACHE_CONTROL, "no-cache"),
                (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::X_FRAME_OPTIONS, "DENY"),
            ],
            *body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": {
                "code": "not_found",
                "message": format!("the console has no file {name:?}"),
            }})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn serves_the_page_and_its_modules_with_a_strict_policy() {
        let app = router();
        let page = app
            .clone()
            .oneshot(Request::get("/").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(page.status(), 200);
        let csp = page
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        // Every module the page or another module imports is served.
        for (name, _, body) in FILES {
            for import in body
                .split("from \"./")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
            {
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == import),
                    "{name} imports ./{import}, which is not served"
                );
            }
        }
        let missing = app
            .oneshot(
                Request::get("/console/nope.js")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("answer");
        assert_eq!(missing.status(), 404);
    }
}
