//! `routers.get_routes`: static routes (an enterprise API) from the list set through the handle.

use serde_json::{json, Map, Value};

use super::super::envelope::ApiError;
use super::super::jwt::Identity;
use super::super::query;
use super::super::state::State;

/// `routers.get_routes {name?: regex}` -> `{routes}` from the list set through the handle.
pub fn get_routes(
    state: &mut State,
    _caller: &Identity,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    Ok(json!({ "routes": query::get_all(state.routes.iter(), body, &["type", "enabled", "status"])? }))
}
