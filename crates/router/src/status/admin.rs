//! The static routes admin API on the status server: list, add, edit, enable, disable, delete.
//! Every change is validated as a whole file and written back atomically to the routes file;
//! the router loop picks the file up at its next tick, like a hand edit.
//!
//! Rules: an enabled route is view-only (edit answers 409: disable it first); names are unique;
//! a file that is invalid right now (a bad hand edit) is not overwritten (409).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::state::{SharedStatus, StaticRouteView};
use crate::static_files::save_file;
use gateway_core::model::TargetPolicy;
use gateway_core::static_routes::{load_file, RawRoute, StaticRoute};

pub struct StaticAdmin {
    pub path: PathBuf,
    pub policy: TargetPolicy,
    /// One change at a time (read-modify-write of the file).
    pub lock: tokio::sync::Mutex<()>,
}

impl StaticAdmin {
    pub fn new(path: PathBuf, policy: TargetPolicy) -> Arc<Self> {
        Arc::new(Self { path, policy, lock: Default::default() })
    }
}

/// What the admin API's handlers share: the routes file (`None`: not configured) and the
/// router's status (what the proxy serves for each route now).
#[derive(Clone)]
pub struct AdminState {
    pub static_admin: Option<Arc<StaticAdmin>>,
    pub status: SharedStatus,
}

pub fn routes(state: AdminState) -> Router {
    Router::new()
        .route("/api/static-routes", get(list).post(add))
        .route("/api/static-routes/:name", get(show).put(edit).delete(remove))
        .route("/api/static-routes/:name/enable", post(enable))
        .route("/api/static-routes/:name/disable", post(disable))
        .with_state(state)
}

/// A refused request: status and a one-line message (`{"error": ...}`).
type Refused = (StatusCode, String);

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn refused(status: StatusCode, message: impl Into<String>) -> Refused {
    (status, message.into())
}

fn not_configured() -> Response {
    let message =
        format!("static routes are not configured (set {})", crate::config::env::ROUTER_STATIC_ROUTES_FILE);
    error(StatusCode::NOT_FOUND, message)
}

/// A route from the file with what the proxy serves for it now.
fn view(route: &StaticRoute, applied: Option<&StaticRouteView>) -> Value {
    let raw = route.to_raw();
    let mut v = serde_json::to_value(&raw).expect("route serializes");
    let status = match applied {
        Some(a) if a.applied.as_ref() == Some(&raw) => a.status.clone(),
        _ if !route.enabled => "Not In Use".to_owned(),
        _ => "Pending".to_owned(),
    };
    v["type"] = json!(route.location.kind());
    v["status"] = json!(status);
    if let Some(a) = applied {
        v["url"] = json!(a.url);
        v["live_targets"] = json!(a.targets);
        v["tasks"] = json!(a.tasks);
    }
    v
}

async fn list(State(server): State<AdminState>) -> Response {
    let Some(admin) = server.static_admin.clone() else { return not_configured() };
    let status = server.status.snapshot();
    match load_file(&admin.path, &admin.policy) {
        Ok(routes) => {
            let views: Vec<Value> = routes
                .iter()
                .map(|r| view(r, status.static_routes.iter().find(|v| v.name == r.name.as_str())))
                .collect();
            Json(json!({"file": admin.path, "routes": views, "errors": status.static_errors})).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, format!("the routes file is invalid: {e}")),
    }
}

async fn show(State(server): State<AdminState>, Path(name): Path<String>) -> Response {
    let Some(admin) = server.static_admin.clone() else { return not_configured() };
    let status = server.status.snapshot();
    match load_file(&admin.path, &admin.policy) {
        Ok(routes) => match routes.iter().find(|r| r.name.as_str() == name) {
            Some(r) => Json(view(r, status.static_routes.iter().find(|v| v.name == name))).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no static route named {name:?}")),
        },
        Err(e) => error(StatusCode::CONFLICT, format!("the routes file is invalid: {e}")),
    }
}

fn now() -> String {
    gateway_core::time::rfc3339(std::time::SystemTime::now())
}

/// Who made a change: `X-Updated-By` (set by whatever fronts the admin API), else "admin-api".
fn who(headers: &HeaderMap) -> String {
    headers
        .get("x-updated-by")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100 && !v.chars().any(char::is_control))
        .unwrap_or("admin-api")
        .to_owned()
}

/// Loads the file, applies `change` to its routes, validates the result and writes it back.
async fn change(
    server: &AdminState,
    status_ok: StatusCode,
    change: impl FnOnce(&mut Vec<RawRoute>) -> Result<String, Refused>,
) -> Response {
    let Some(admin) = server.static_admin.clone() else { return not_configured() };
    let _guard = admin.lock.lock().await;
    let current = match load_file(&admin.path, &admin.policy) {
        Ok(routes) => routes,
        Err(e) => {
            return error(
                StatusCode::CONFLICT,
                format!("the routes file is invalid, fix it first (nothing was changed): {e}"),
            )
        }
    };
    let mut raw: Vec<RawRoute> = current.iter().map(StaticRoute::to_raw).collect();
    let name = match change(&mut raw) {
        Ok(name) => name,
        Err((status, message)) => return error(status, message),
    };
    let doc = gateway_core::static_routes::RoutesFileDoc { routes: raw };
    let routes = match gateway_core::static_routes::validate_doc(&doc, &admin.policy) {
        Ok(routes) => routes,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    if let Err(e) = save_file(&admin.path, &routes) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write the routes file: {e:#}"));
    }
    tracing::info!(route = %name, "static routes file changed through the admin API");
    match routes.iter().find(|r| r.name.as_str() == name) {
        Some(r) => (status_ok, Json(view(r, None))).into_response(),
        None => (status_ok, Json(json!({"deleted": name}))).into_response(),
    }
}

fn find<'a>(routes: &'a mut [RawRoute], name: &str) -> Result<&'a mut RawRoute, Refused> {
    routes
        .iter_mut()
        .find(|r| r.name == name)
        .ok_or_else(|| refused(StatusCode::NOT_FOUND, format!("no static route named {name:?}")))
}

async fn add(
    State(server): State<AdminState>,
    headers: HeaderMap,
    Json(mut route): Json<RawRoute>,
) -> Response {
    let by = who(&headers);
    change(&server, StatusCode::CREATED, move |routes| {
        if routes.iter().any(|r| r.name == route.name) {
            return Err(refused(
                StatusCode::CONFLICT,
                format!("name: a static route named {:?} already exists", route.name),
            ));
        }
        let at = now();
        route.created = Some(at.clone());
        route.updated = Some(at);
        route.updated_by = Some(by);
        let name = route.name.clone();
        routes.push(route);
        Ok(name)
    })
    .await
}

async fn edit(
    State(server): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(mut route): Json<RawRoute>,
) -> Response {
    let by = who(&headers);
    change(&server, StatusCode::OK, move |routes| {
        let existing = find(routes, &name)?;
        if existing.enabled {
            return Err(refused(
                StatusCode::CONFLICT,
                format!("static route {name:?} is enabled and view-only; disable it before editing"),
            ));
        }
        if route.name.is_empty() {
            route.name = name.clone();
        }
        if route.name != name {
            return Err(refused(StatusCode::BAD_REQUEST, "name: a route cannot be renamed; add a new one"));
        }
        route.created = existing.created.clone();
        route.updated = Some(now());
        route.updated_by = Some(by);
        *existing = route;
        Ok(name)
    })
    .await
}

async fn set_enabled(server: AdminState, name: String, headers: HeaderMap, enabled: bool) -> Response {
    let by = who(&headers);
    change(&server, StatusCode::OK, move |routes| {
        let existing = find(routes, &name)?;
        if existing.enabled != enabled {
            existing.enabled = enabled;
            existing.updated = Some(now());
            existing.updated_by = Some(by);
        }
        Ok(name)
    })
    .await
}

async fn enable(State(server): State<AdminState>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    set_enabled(server, name, headers, true).await
}

async fn disable(State(server): State<AdminState>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    set_enabled(server, name, headers, false).await
}

async fn remove(State(server): State<AdminState>, Path(name): Path<String>) -> Response {
    change(&server, StatusCode::OK, move |routes| {
        find(routes, &name)?;
        routes.retain(|r| r.name != name);
        Ok(name)
    })
    .await
}
