//! `queues.*`: name -> id lookups for `LISTEN_QUEUE_NAME`, and creation for self-tests.

use serde_json::{json, Map, Value};

use super::super::envelope::ApiError;
use super::super::jwt::Identity;
use super::super::query;
use super::super::state::State;
use super::required_str;

const FILTER_FIELDS: &[&str] = &["id"];

fn own<'a>(state: &'a State, caller: &'a Identity) -> impl Iterator<Item = &'a Value> {
    state.queues.values().filter(move |q| q["company"] == caller.company.as_str())
}

pub fn get_all(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    Ok(json!({ "queues": query::get_all(own(state, caller), body, FILTER_FIELDS)? }))
}

pub fn get_by_id(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = required_str(body, "queue")?;
    own(state, caller)
        .find(|q| q["id"] == id)
        .map(|q| json!({ "queue": q }))
        .ok_or_else(|| ApiError::bad_request(701, format!("Invalid queue id: id={id}")))
}

pub fn get_default(
    state: &mut State,
    caller: &Identity,
    _body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    own(state, caller)
        .find(|q| query::string_list(q.get("system_tags")).iter().any(|t| t == "default"))
        .map(|q| json!({ "id": q["id"], "name": q["name"] }))
        .ok_or_else(|| ApiError::bad_request(707, "No queue is tagged as the default queue for this company"))
}

/// `queues.create {name, tags?, system_tags?}` -> `{id}`; names are unique per company.
pub fn create(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let name = required_str(body, "name")?;
    if state.queue_by_name(&caller.company, name).is_some() {
        return Err(ApiError::bad_request(801, format!("Value combination already exists: name={name}")));
    }
    let id = state.create_queue(name, &caller.company, &caller.user);
    if let Some(queue) = state.queues.get_mut(&id) {
        for key in ["tags", "system_tags"] {
            if let Some(tags) = body.get(key).filter(|v| v.is_array()) {
                queue[key] = tags.clone();
            }
        }
    }
    Ok(json!({ "id": id }))
}
