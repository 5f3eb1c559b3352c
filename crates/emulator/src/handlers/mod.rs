//! The API endpoints: a name -> function table, run with the state locked.

mod identity;
mod projects;
mod queues;
mod routers;
mod tasks;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use super::clock::unix_now;
use super::config::FeatureSet;
use super::envelope::ApiError;
use super::jwt::Identity;
use super::state::State;

/// One API call: endpoint name, request headers and the JSON body merged with query params.
pub struct Call<'a> {
    pub endpoint: &'a str,
    /// The requested API version (the emulator's own when the path has none).
    pub version: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Map<String, Value>,
}

/// An endpoint run for an authenticated caller.
type Handler = fn(&mut State, &Identity, &Map<String, Value>) -> Result<Value, ApiError>;

fn handler(endpoint: &str) -> Option<Handler> {
    Some(match endpoint {
        "users.get_current_user" => identity::get_current_user,
        "users.get_vaults" => identity::get_vaults,
        "tasks.get_by_id" => tasks::get_by_id,
        "tasks.get_all" | "tasks.get_all_ex" => tasks::get_all,
        "tasks.edit" => tasks::edit,
        "tasks.create" => tasks::create,
        "tasks.enqueue" => tasks::enqueue,
        "tasks.dequeue" => tasks::dequeue,
        "tasks.started" => tasks::started,
        "tasks.stopped" | "tasks.stop" => tasks::stopped,
        "tasks.completed" => tasks::completed,
        "tasks.failed" => tasks::failed,
        "tasks.delete" => tasks::delete,
        "queues.get_all" | "queues.get_all_ex" => queues::get_all,
        "queues.get_by_id" => queues::get_by_id,
        "queues.create" => queues::create,
        "queues.get_default" => queues::get_default,
        "projects.get_by_id" => projects::get_project,
        "projects.get_all" | "projects.get_all_ex" => projects::get_projects,
        "routers.get_routes" => routers::get_routes,
        _ => return None,
    })
}

/// Services only enterprise servers have; the open-source server does not know them at all.
fn enterprise_only(endpoint: &str) -> bool {
    endpoint.starts_with("routers.")
}

/// Whether a server with `feature_set` has `endpoint` (and the emulator implements it).
pub fn is_known(endpoint: &str, feature_set: FeatureSet) -> bool {
    if feature_set == FeatureSet::Basic && enterprise_only(endpoint) {
        return false;
    }
    matches!(endpoint, "auth.login" | "auth.logout") || handler(endpoint).is_some()
}

/// Runs one call of a known endpoint (see [`is_known`]): logs in, or authenticates the caller
/// and runs the endpoint.
pub fn handle(state: &mut State, call: &Call) -> Result<Value, ApiError> {
    let now = unix_now();
    match call.endpoint {
        "auth.login" => identity::login(state, call.headers, call.body, now),
        "auth.logout" => identity::logout(state, call.headers, now),
        name => {
            let run = handler(name).ok_or_else(|| ApiError::unknown_endpoint(name, call.version))?;
            let caller = state.auth.authenticate(call.headers, now)?;
            run(state, &caller, call.body)
        }
    }
}

/// A required string field of the request body.
fn required_str<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, ApiError> {
    body.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(11, format!("Missing required fields: {key}")))
}
