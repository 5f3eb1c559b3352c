//! The static routes admin API on the status server: list, add, edit, enable, disable, delete.
//! Every change is validated as a whole file and written back atomically to the routes file;
//! the router loop picks the file up at its next tick, like a hand edit.
//!
//! Rules: an enabled route is view-only (edit answers 409: disable it first); names are unique;
//! a file that is invalid right now (a bad hand edit) is not overwritten (409).

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::state::{SharedStatus, StaticRouteView, StatusData};
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

/// The fields of a route, as the API names them (the page shows an error beside its field).
const FIELDS: [&str; 14] = [
    "name",
    "path",
    "subdomain",
    "host",
    "load_balanced",
    "autoscaling",
    "rate_limit",
    "access",
    "groups",
    "targets",
    "enabled",
    "created",
    "updated_by",
    "updated",
];

/// The field an error message is about: validation messages read `[route <name>: ]<field>: ...`
/// (or `<field>[i]`); the first field named that way wins.
fn field_of(message: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .filter_map(|f| {
            message
                .match_indices(f)
                .find(|(at, _)| {
                    let before = &message[..*at];
                    let after = &message[at + f.len()..];
                    (before.is_empty() || before.ends_with(": ") || before.ends_with(", "))
                        && (after.starts_with(':')
                            || after.starts_with('[')
                            || after.starts_with(',')
                            || after.starts_with('.'))
                })
                .map(|(at, _)| (at, *f))
        })
        .min_by_key(|(at, _)| *at)
        .map(|(_, f)| f)
}

/// `{"error": message, "field": <the field it is about, or null>}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    let field = field_of(&message);
    (status, Json(json!({"error": message, "field": field}))).into_response()
}

/// A body that is not a route: 400 naming the field serde complained about, when it says.
fn bad_body(rejection: JsonRejection) -> Response {
    let status = match rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    let text = rejection.body_text();
    let field = FIELDS.iter().find(|f| text.contains(&format!("`{f}`")) || text.contains(&format!("{f}:")));
    (status, Json(json!({"error": text, "field": field}))).into_response()
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

/// The routes of the file with what the proxy serves for each (the list answer and the page).
pub fn views(admin: &StaticAdmin, status: &StatusData) -> Result<Vec<Value>, String> {
    let routes =
        load_file(&admin.path, &admin.policy).map_err(|e| format!("the routes file is invalid: {e}"))?;
    Ok(routes
        .iter()
        .map(|r| view(r, status.static_routes.iter().find(|v| v.name == r.name.as_str())))
        .collect())
}

async fn list(State(server): State<AdminState>) -> Response {
    let Some(admin) = server.static_admin.clone() else { return not_configured() };
    let status = server.status.snapshot();
    match views(&admin, &status) {
        Ok(views) => {
            Json(json!({"file": admin.path, "routes": views, "errors": status.static_errors})).into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e),
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
    body: Result<Json<RawRoute>, JsonRejection>,
) -> Response {
    let mut route = match body {
        Ok(Json(route)) => route,
        Err(rejection) => return bad_body(rejection),
    };
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
    body: Result<Json<RawRoute>, JsonRejection>,
) -> Response {
    let mut route = match body {
        Ok(Json(route)) => route,
        Err(rejection) => return bad_body(rejection),
    };
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

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn errors_name_the_field_they_are_about() {
        let cases = [
            ("route demo: targets: 169.254.169.254:80 is link-local", Some("targets")),
            ("route demo: targets[1]: bad", Some("targets")),
            ("name: a static route named \"x\" already exists", Some("name")),
            ("route routes[0]: name: must not be empty", Some("name")),
            ("route a: path, subdomain: set one of them, not both", Some("path")),
            ("route a: subdomain: bad label", Some("subdomain")),
            ("route a: groups: a public route has no allowed groups; remove them", Some("groups")),
            ("route a: updated_by: too long", Some("updated_by")),
            ("static route \"a\" is enabled and view-only; disable it before editing", None),
            ("the routes file is invalid: ...", None),
        ];
        for (message, field) in cases {
            assert_eq!(field_of(message), field, "{message}");
        }
    }
}
