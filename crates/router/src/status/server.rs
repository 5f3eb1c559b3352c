//! The status server: HTML page, JSON API, Prometheus metrics, health and readiness, self-test.
//! The operator API is described by `openapi.json` (served at `/api/openapi.json`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use serde::Deserialize;

use super::guard::Access;
use super::metrics::{self, MetricsInput, ProxyCounters};
use super::state::{SharedStatus, StatusData};
use super::traffic_view;
use crate::selftest::SelfTest;
use clearml_api::ApiMetrics;

#[derive(Clone)]
pub struct StatusServer {
    pub status: SharedStatus,
    pub api_metrics: Arc<ApiMetrics>,
    /// The proxy's control listener (request counts, login cache figures).
    pub probe: crate::apply::probe::ProxyProbe,
    pub self_test: Option<Arc<SelfTest>>,
    /// One self-test at a time.
    pub self_test_lock: Arc<tokio::sync::Mutex<()>>,
    /// The static routes admin API (`None`: no routes file configured).
    pub static_admin: Option<Arc<super::admin::StaticAdmin>>,
    /// Host, Origin and operator-token checks in front of every route.
    pub guard: Arc<super::guard::Guard>,
    /// Gateway tokens (`None`: not configured).
    pub gateway_tokens: Option<Arc<crate::gateway_tokens::TokenStore>>,
    /// The proxy's traffic per route, read by a sampler that `spawn` starts.
    pub traffic: crate::traffic::Traffic,
}

impl StatusServer {
    pub fn router(self) -> Router {
        let admin =
            super::admin::AdminState { static_admin: self.static_admin.clone(), status: self.status.clone() };
        let guard = self.guard.clone();
        let tokens = super::tokens::routes(self.gateway_tokens.clone());
        let events = super::events::routes(self.status.clone());
        Router::new()
            .route("/", get(page))
            .route("/console.js", get(console_js))
            .route("/api/openapi.json", get(openapi))
            .route("/api/status", get(status_json))
            .route("/api/traffic", get(traffic_json))
            .route("/api/self-test", get(last_self_test).post(run_self_test))
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(self)
            .merge(super::admin::routes(admin))
            .merge(tokens)
            .merge(super::sign_in::routes(guard.clone()))
            .merge(events)
            .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path (see /api/openapi.json)") })
            .layer(axum::middleware::from_fn_with_state(guard, super::guard::gate))
    }

    /// Binds and serves until the process ends. Binding errors are returned (a clear startup error).
    pub async fn spawn(self, address: SocketAddr) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot serve the status page on {address}: {e} (set {var} to a free address)",
                var = crate::config::env::ROUTER_STATUS_ADDRESS
            )
        })?;
        let bound = listener.local_addr()?;
        tokio::spawn(crate::traffic::sample::run(self.probe.clone(), self.traffic.clone()));
        let app = self.router();
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "status server stopped");
            }
        });
        Ok(bound)
    }

    async fn proxy_counters(&self) -> Option<ProxyCounters> {
        self.probe.status_as().await.ok()
    }

    /// The status document with each route's traffic.
    fn snapshot(&self) -> StatusData {
        let mut status = self.status.snapshot();
        self.traffic.read(|store| traffic_view::annotate(&mut status, store));
        status
    }
}

/// The operator API's description (checked in; a unit test keeps it in step with the routes).
pub const OPENAPI: &str = include_str!("../../openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The page's script: progressive enhancement only (the page reads fine without it).
async fn console_js() -> Response {
    let js = include_str!("../../templates/console.js");
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], js)
        .into_response()
}

async fn page(State(server): State<StatusServer>, access: Option<Extension<Access>>) -> Response {
    let access = access.map(|a| a.0).unwrap_or(Access { operator: false, loopback: false });
    let status = server.snapshot();
    let routes = server.static_admin.as_ref().map(|admin| super::admin::views(admin, &status));
    let traffic = server.traffic.read(|store| traffic_view::page_rows(&status, store));
    let view = super::page::PageView {
        status: &status,
        access,
        sign_in_enabled: server.guard.has_token(),
        static_routes: routes,
        traffic: &traffic,
    };
    match super::page::render(&view) {
        Ok(html) => Html(html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("status page: {e}")).into_response(),
    }
}

async fn status_json(State(server): State<StatusServer>) -> Response {
    Json(server.snapshot()).into_response()
}

/// The last hour of every live route, per 10 s.
async fn traffic_json(State(server): State<StatusServer>) -> Response {
    let status = server.status.snapshot();
    let (settled, routes) =
        server.traffic.read(|store| (store.settled(), traffic_view::series(&status, store)));
    Json(serde_json::json!({
        "resolution_seconds": crate::traffic::store::SERIES_RESOLUTION,
        "settled": settled,
        "routes": routes,
    }))
    .into_response()
}

async fn ready(State(server): State<StatusServer>) -> Response {
    if server.status.snapshot().ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no successful apply yet\n").into_response()
    }
}

async fn metrics_text(State(server): State<StatusServer>) -> Response {
    let proxy = server.proxy_counters().await;
    let status = server.snapshot();
    let counters = server.status.counters();
    let api = server.api_metrics.snapshot();
    let body = metrics::render(&MetricsInput {
        status: &status,
        counters: &counters,
        api: &api,
        proxy: proxy.as_ref(),
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn last_self_test(State(server): State<StatusServer>) -> Response {
    match server.status.snapshot().self_test {
        Some(report) => Json(report).into_response(),
        None => error(StatusCode::NOT_FOUND, "no self-test has run"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelfTestRequest {
    queue: String,
    /// Overrides how long an agent may take to pick the task up.
    pickup_timeout_seconds: Option<u64>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": message.into()}))).into_response()
}

async fn run_self_test(
    State(server): State<StatusServer>,
    body: Result<Json<SelfTestRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    let Some(self_test) = server.self_test.clone() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "self-test is not available");
    };
    let Ok(_running) = server.self_test_lock.try_lock() else {
        return error(StatusCode::CONFLICT, "a self-test is already running");
    };
    if request.queue.trim().is_empty() || request.queue.len() > 200 {
        return error(StatusCode::BAD_REQUEST, "queue: must be a queue name (1 to 200 characters)");
    }
    let pickup = request.pickup_timeout_seconds.map(|s| Duration::from_secs(s.clamp(1, 3600)));
    Json(self_test.run(request.queue.trim(), pickup).await).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// `(METHOD, /path/{param})` of every `.route(...)` in the status server's sources.
    fn served() -> BTreeSet<(String, String)> {
        let sources = [
            include_str!("server.rs"),
            include_str!("admin.rs"),
            include_str!("tokens.rs"),
            include_str!("sign_in.rs"),
            include_str!("events.rs"),
        ];
        let mut out = BTreeSet::new();
        for source in sources {
            for (at, _) in source.match_indices(".route(\"") {
                let rest = &source[at + 8..];
                let path = &rest[..rest.find('"').unwrap()];
                // The call's text up to its closing parenthesis: the method routers it chains.
                let mut depth = 1;
                let end = rest.char_indices().find(|(_, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth == 0
                });
                let call = &rest[..end.unwrap().0];
                let openapi_path: String = path
                    .split('/')
                    .map(|seg| seg.strip_prefix(':').map(|p| format!("{{{p}}}")).unwrap_or(seg.to_owned()))
                    .collect::<Vec<_>>()
                    .join("/");
                for method in ["get", "post", "put", "delete", "patch"] {
                    let called = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                        i == 0
                            || !call.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && call.as_bytes()[i - 1] != b'_'
                    });
                    if called {
                        out.insert((method.to_uppercase(), openapi_path.clone()));
                    }
                }
            }
        }
        out
    }

    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_is_in_the_openapi_document_and_every_documented_path_is_served() {
        let served = served();
        let documented = documented();
        assert!(served.len() > 20, "the route scan found too little: {served:?}");
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(missing.is_empty(), "served but not in openapi.json: {missing:?}");
        let stale: Vec<_> = documented.difference(&served).collect();
        assert!(stale.is_empty(), "in openapi.json but not served: {stale:?}");
    }

    #[test]
    fn every_operation_answers_json_errors_described_by_a_schema() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                for code in ["401", "403", "421"] {
                    assert!(responses.contains_key(code), "{method} {path} lacks the guard's {code}");
                }
                assert!(
                    responses.keys().any(|c| c.starts_with('2')),
                    "{method} {path} has no success answer"
                );
            }
        }
    }
}
