//! `/_emulator/...`: an unauthenticated HTTP API over the same controls as the handle, for the
//! binary, Python tests and benchmark scripts.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::clock::unix_now;
use super::config::EmulatedUser;
use super::faults::Fault;
use super::state::Shared;
use super::stats::CallStats;
use super::tasks::{self, NewTask};

type AppState = State<Arc<Shared>>;

pub fn router() -> axum::Router<Arc<Shared>> {
    Router::new()
        .route("/tasks", get(list_tasks).post(create_task))
        .route("/tasks/:id", get(get_task).delete(delete_task))
        .route("/tasks/:id/status", post(set_status))
        .route("/tasks/:id/runtime", post(merge_runtime))
        .route("/queues", post(create_queue))
        .route("/users", post(add_user))
        .route("/users/:id/tokens", post(mint_token))
        .route("/users/:id/revoke", post(revoke))
        .route("/faults", post(inject_faults).delete(clear_faults))
        .route("/available", get(available).post(set_available))
        .route("/stats", get(stats))
        .route("/stats/reset", post(reset_stats))
        .route("/calls", get(calls))
        .route("/routes", get(routes).post(set_routes))
        .route("/login", get(browser_login))
}

#[derive(Deserialize)]
struct LoginQuery {
    redirect: Option<String>,
}

/// Stands in for the ClearML web app's login: sets the login cookie of the default user (cookies
/// ignore ports, so a gateway on the same host sees it) and sends the browser back. Only local
/// redirect targets are followed.
async fn browser_login(
    State(shared): AppState,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    let mut state = shared.lock();
    let user = state.config.default_user();
    let token = state.auth.mint(&user, unix_now(), 24 * 3600);
    let local =
        |url: &str| ["http://127.0.0.1:", "http://localhost:", "/"].iter().any(|p| url.starts_with(p));
    let target = q.redirect.filter(|r| local(r) && !r.contains(['\r', '\n'])).unwrap_or_else(|| "/".into());
    let cookie = format!("{}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age=86400", super::AUTH_COOKIE);
    (StatusCode::FOUND, [(axum::http::header::SET_COOKIE, cookie), (axum::http::header::LOCATION, target)])
        .into_response()
}

fn not_found(what: &str, id: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": format!("no such {what}: {id}") }))).into_response()
}

async fn list_tasks(State(shared): AppState) -> Json<Value> {
    Json(Value::Array(shared.lock().tasks.values().cloned().collect()))
}

async fn create_task(State(shared): AppState, Json(task): Json<NewTask>) -> Json<Value> {
    Json(json!({ "id": shared.lock().create_task(&task) }))
}

async fn get_task(State(shared): AppState, Path(id): Path<String>) -> Response {
    match shared.lock().tasks.get(&id) {
        Some(doc) => Json(doc.clone()).into_response(),
        None => not_found("task", &id),
    }
}

async fn delete_task(State(shared): AppState, Path(id): Path<String>) -> Response {
    match shared.lock().tasks.remove(&id) {
        Some(_) => Json(json!({ "deleted": true })).into_response(),
        None => not_found("task", &id),
    }
}

#[derive(Deserialize)]
struct StatusBody {
    status: String,
}

async fn set_status(
    State(shared): AppState,
    Path(id): Path<String>,
    Json(body): Json<StatusBody>,
) -> Response {
    if !tasks::STATUSES.contains(&body.status.as_str()) {
        let error = format!("unknown status {}", body.status);
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    }
    let mut state = shared.lock();
    if !state.set_task_status(&id, &body.status) {
        return not_found("task", &id);
    }
    Json(state.tasks.get(&id).cloned().unwrap_or_default()).into_response()
}

/// Merges keys into `runtime` (`null` deletes) and returns the resulting runtime.
async fn merge_runtime(
    State(shared): AppState,
    Path(id): Path<String>,
    Json(patch): Json<Map<String, Value>>,
) -> Response {
    let mut state = shared.lock();
    if !state.update_task(&id, |doc| tasks::merge_runtime(doc, &patch)) {
        return not_found("task", &id);
    }
    Json(state.tasks.get(&id).map(|doc| doc["runtime"].clone()).unwrap_or_default()).into_response()
}

#[derive(Deserialize)]
struct QueueBody {
    name: String,
}

async fn create_queue(State(shared): AppState, Json(body): Json<QueueBody>) -> Json<Value> {
    let mut state = shared.lock();
    let (company, user) = (state.config.company_id.clone(), state.config.user_id.clone());
    let id = match state.queue_by_name(&company, &body.name) {
        Some(id) => id,
        None => state.create_queue(&body.name, &company, &user),
    };
    Json(json!({ "id": id }))
}

async fn add_user(State(shared): AppState, Json(user): Json<EmulatedUser>) -> Json<Value> {
    shared.lock().auth.add_user(user);
    Json(json!({ "ok": true }))
}

#[derive(Deserialize)]
struct TokenBody {
    /// Lifetime in seconds; negative gives an already expired token.
    #[serde(default = "default_ttl")]
    ttl_sec: i64,
}

fn default_ttl() -> i64 {
    3600
}

async fn mint_token(
    State(shared): AppState,
    Path(id): Path<String>,
    Json(body): Json<TokenBody>,
) -> Response {
    let mut state = shared.lock();
    let Some(user) = state.auth.user(&id).cloned() else {
        return not_found("user", &id);
    };
    let now = unix_now();
    let (iat, ttl) = if body.ttl_sec > 0 { (now, body.ttl_sec) } else { (now + body.ttl_sec - 3600, 3600) };
    Json(json!({ "token": state.auth.mint(&user, iat, ttl) })).into_response()
}

async fn revoke(State(shared): AppState, Path(id): Path<String>) -> Json<Value> {
    shared.lock().auth.revoke_sessions_of(&id);
    Json(json!({ "ok": true }))
}

async fn inject_faults(State(shared): AppState, Json(faults): Json<Vec<Fault>>) -> Json<Value> {
    shared.lock().faults.push(faults);
    Json(json!({ "ok": true }))
}

async fn clear_faults(State(shared): AppState) -> Json<Value> {
    shared.lock().faults.clear();
    Json(json!({ "ok": true }))
}

#[derive(Deserialize)]
struct AvailableBody {
    up: bool,
}

async fn available(State(shared): AppState) -> Json<Value> {
    Json(json!({ "up": shared.is_up() }))
}

async fn set_available(State(shared): AppState, Json(body): Json<AvailableBody>) -> Json<Value> {
    shared.up.send_replace(body.up);
    Json(json!({ "up": body.up }))
}

async fn stats(State(shared): AppState) -> Json<CallStats> {
    Json(shared.lock().stats.clone())
}

async fn reset_stats(State(shared): AppState) -> Json<Value> {
    let mut state = shared.lock();
    state.stats = CallStats::default();
    state.calls.clear();
    Json(json!({ "ok": true }))
}

async fn calls(State(shared): AppState) -> Json<Value> {
    Json(serde_json::to_value(shared.lock().calls.snapshot()).unwrap_or_default())
}

async fn routes(State(shared): AppState) -> Json<Value> {
    Json(Value::Array(shared.lock().routes.clone()))
}

async fn set_routes(State(shared): AppState, Json(routes): Json<Value>) -> Json<Value> {
    let mut state = shared.lock();
    state.set_routes(routes);
    Json(json!({ "routes": state.routes.len() }))
}
