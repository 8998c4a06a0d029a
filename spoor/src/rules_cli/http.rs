//! The HTTP client of `spoor rules apply|list|hunt`: JSON calls to one
//! node's API, its errors (`{"error": {"code", "message"}}`) as
//! [`CallError`].

use reqwest::{Method, StatusCode, Url};
use serde_json::Value as Json;

pub(super) const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:7080";

/// An answer other than success: the HTTP status and the error body's
/// code and message.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) code: String,
    pub(super) message: String,
}

/// A call that failed: the node could not be reached or refused.
#[derive(Debug)]
pub(super) enum CallError {
    Unreachable(String),
    Refused(Refusal),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => f.write_str(e),
            CallError::Refused(r) => write!(f, "{} ({}): {}", r.code, r.status, r.message),
        }
    }
}

/// An HTTP client of one node.
pub(super) struct Api {
    client: reqwest::Client,
    endpoint: Url,
    token: Option<String>,
}

impl Api {
    /// A client of the node at `endpoint` (`--endpoint`), sending `token`
    /// as a bearer token.
    pub(super) fn new(
        endpoint: &str,
        token: Option<String>,
        client: reqwest::Client,
    ) -> Result<Api, String> {
        let url = Url::parse(endpoint)
            .map_err(|e| format!("--endpoint {endpoint:?} is not a URL: {e}"))?;
        if url.cannot_be_a_base() {
            return Err(format!("--endpoint {endpoint:?} is not an HTTP URL"));
        }
        Ok(Api {
            client,
            endpoint: url,
            token,
        })
    }

    /// The URL of `segments` under the endpoint, each segment escaped.
    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `method url` with a JSON `body`: the JSON answer, or why not (a
    /// refusal's message followed by its `refusals`, a line each).
    pub(super) async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Json>,
    ) -> Result<Json, CallError> {
        let mut req = self.client.request(method, url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| CallError::Unreachable(format!("cannot reach {}: {e}", self.endpoint)))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            CallError::Unreachable(format!("reading the answer of {}: {e}", self.endpoint))
        })?;
        let body: Json = serde_json::from_str(&text).map_err(|_| {
            CallError::Refused(Refusal {
                status,
                code: "not_json".into(),
                message: format!(
                    "{} answered with a body that is not JSON (is it a spoor node?): {}",
                    self.endpoint,
                    text.chars().take(200).collect::<String>()
                ),
            })
        })?;
        if status.is_success() {
            return Ok(body);
        }
        let error = &body["error"];
        let mut message = error["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string();
        for line in error["refusals"].as_array().into_iter().flatten() {
            if let Some(line) = line.as_str() {
                message.push_str("\n  ");
                message.push_str(line);
            }
        }
        Err(CallError::Refused(Refusal {
            status,
            code: error["code"].as_str().unwrap_or("error").to_string(),
            message,
        }))
    }
}

/// The runtime the client's calls run on.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the HTTP client's runtime: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_their_segments() {
        let api = Api::new("http://127.0.0.1:7080/", None, reqwest::Client::new()).expect("api");
        assert_eq!(
            api.url(&["v1", "rules", "sets", "acme", "my rules?"])
                .as_str(),
            "http://127.0.0.1:7080/v1/rules/sets/acme/my%20rules%3F"
        );
        assert!(Api::new("localhost", None, reqwest::Client::new()).is_err());
    }
}
