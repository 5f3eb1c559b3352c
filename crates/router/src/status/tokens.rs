//! Gateway tokens on the operator API: `GET /api/gateway-tokens` lists them (no token, no hash),
//! `POST` mints one (the token is in the answer, once), `DELETE /api/gateway-tokens/:id` revokes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::json;

use crate::gateway_tokens::{MintRequest, Record, TokenStore};

pub fn routes(store: Option<Arc<TokenStore>>) -> Router {
    Router::new()
        .route("/api/gateway-tokens", get(list).post(mint))
        .route("/api/gateway-tokens/:id", delete(revoke))
        .with_state(store)
}

type Store = State<Option<Arc<TokenStore>>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn not_configured() -> Response {
    let var = gateway_core::env::ROUTER_GATEWAY_TOKENS_FILE;
    error(StatusCode::NOT_FOUND, format!("gateway tokens are not configured (set {var})"))
}

fn failed(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "gateway tokens");
    error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
}

/// A record as the API shows it: without the hash.
fn view(record: &Record) -> serde_json::Value {
    let mut v = serde_json::to_value(record).expect("record serializes");
    v.as_object_mut().expect("an object").remove("sha256");
    v
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn list(State(store): Store) -> Response {
    let Some(store) = store else { return not_configured() };
    match store.records() {
        Ok(records) => Json(json!({"tokens": records.iter().map(view).collect::<Vec<_>>()})).into_response(),
        Err(e) => failed(e),
    }
}

async fn mint(
    State(store): Store,
    body: Result<Json<MintRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(store) = store else { return not_configured() };
    let request = match body {
        Ok(Json(request)) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Err(problem) = request.validate() {
        return error(StatusCode::BAD_REQUEST, problem);
    }
    match store.mint(&request, now()).await {
        Ok((record, token)) => {
            tracing::info!(id = %record.id, kind = ?record.kind, "gateway token minted");
            let mut v = view(&record);
            v["token"] = json!(token);
            (StatusCode::CREATED, Json(v)).into_response()
        }
        Err(e) => failed(e),
    }
}

async fn revoke(State(store): Store, Path(id): Path<String>) -> Response {
    let Some(store) = store else { return not_configured() };
    match store.revoke(&id).await {
        Ok(Some(record)) => {
            tracing::info!(id = %record.id, "gateway token revoked");
            Json(view(&record)).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "no such gateway token"),
        Err(e) => failed(e),
    }
}
