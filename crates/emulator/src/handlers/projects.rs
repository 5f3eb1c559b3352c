//! `projects.*`: the single project every emulated task belongs to.

use serde_json::{json, Map, Value};

use super::super::envelope::ApiError;
use super::super::jwt::Identity;
use super::super::query;
use super::super::state::State;
use super::super::tasks::DEFAULT_PROJECT;
use super::required_str;

fn project(caller: &Identity) -> Value {
    json!({
        "id": DEFAULT_PROJECT,
        "name": "Emulated Project",
        "basename": "Emulated Project",
        "company": caller.company,
        "user": caller.user,
        "description": "",
        "tags": [],
        "system_tags": [],
    })
}

pub fn get_project(
    _state: &mut State,
    caller: &Identity,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let id = required_str(body, "project")?;
    if id != DEFAULT_PROJECT {
        return Err(ApiError::bad_request(401, format!("Invalid project id: id={id}")));
    }
    Ok(json!({ "project": project(caller) }))
}

pub fn get_projects(
    _state: &mut State,
    caller: &Identity,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let projects = [project(caller)];
    Ok(json!({ "projects": query::get_all(projects.iter(), body, &["id"])? }))
}
