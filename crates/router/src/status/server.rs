//! The status server: HTML page, JSON API, Prometheus metrics, health and readiness, self-test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

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
        Router::new()
            .route("/", get(page))
            .route("/api/status", get(status_json))
            .route("/api/traffic", get(traffic_json))
            .route("/api/self-test", get(last_self_test).post(run_self_test))
            .route("/metrics", get(metrics_text))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(self)
            .merge(super::admin::routes(admin))
            .merge(tokens)
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

async fn page(State(server): State<StatusServer>) -> Response {
    let status = server.snapshot();
    let rows = server.traffic.read(|store| traffic_view::page_rows(&status, store));
    match super::page::render(&status, &rows) {
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
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "no self-test has run"})))
            .into_response(),
    }
}

#[derive(Deserialize)]
struct SelfTestRequest {
    queue: String,
    /// Overrides how long an agent may take to pick the task up.
    pickup_timeout_seconds: Option<u64>,
}

async fn run_self_test(State(server): State<StatusServer>, Json(request): Json<SelfTestRequest>) -> Response {
    let Some(self_test) = server.self_test.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "self-test is not available").into_response();
    };
    let Ok(_running) = server.self_test_lock.try_lock() else {
        return (StatusCode::CONFLICT, Json(serde_json::json!({"error": "a self-test is already running"})))
            .into_response();
    };
    if request.queue.trim().is_empty() || request.queue.len() > 200 {
        return (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": "queue must be a queue name"})))
            .into_response();
    }
    let pickup = request.pickup_timeout_seconds.map(|s| Duration::from_secs(s.clamp(1, 3600)));
    Json(self_test.run(request.queue.trim(), pickup).await).into_response()
}
