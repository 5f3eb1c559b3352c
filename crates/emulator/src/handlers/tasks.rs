//! `tasks.*`: reading, editing and moving tasks through their statuses. A caller only sees
//! tasks of its own company, like on the server.

use serde_json::{json, Map, Value};

use super::super::clock::now_iso;
use super::super::envelope::ApiError;
use super::super::jwt::Identity;
use super::super::query;
use super::super::state::State;
use super::super::tasks::{self, NewTask, STATUSES};
use super::required_str;

/// Top-level task fields `tasks.get_all` filters on (dotted paths always work).
const FILTER_FIELDS: &[&str] = &["id", "status", "user", "project", "type", "parent", "company"];

/// The caller's task `id`, or 400/101.
fn own_task<'a>(state: &'a mut State, caller: &Identity, id: &str) -> Result<&'a mut Value, ApiError> {
    state
        .tasks
        .get_mut(id)
        .filter(|doc| doc["company"] == caller.company.as_str())
        .ok_or_else(|| ApiError::invalid_task_id(id))
}

fn force(body: &Map<String, Value>) -> bool {
    body.get("force").and_then(Value::as_bool).unwrap_or(false)
}

pub fn get_by_id(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = required_str(body, "task")?;
    let doc = own_task(state, caller, id)?;
    Ok(json!({ "task": doc }))
}

pub fn get_all(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let own = state.tasks.values().filter(|doc| doc["company"] == caller.company.as_str());
    let page = query::get_page(own, body, FILTER_FIELDS, &mut state.scrolls)?;
    Ok(match page.scroll_id {
        Some(scroll_id) => json!({ "tasks": page.docs, "scroll_id": scroll_id }),
        None => json!({ "tasks": page.docs }),
    })
}

pub fn edit(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = required_str(body, "task")?;
    let doc = own_task(state, caller, id)?;
    let fields = tasks::edit(doc, body, &now_iso())?;
    Ok(json!({ "updated": 1, "fields": fields }))
}

/// `tasks.create {name, type?, ...fields}` -> `{id}`; the new task is a draft (`created`).
pub fn create(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let name = required_str(body, "name")?;
    let new_task = NewTask {
        name: name.to_string(),
        status: "created".into(),
        user: Some(caller.user.clone()),
        ..NewTask::default()
    };
    let id = state.create_task(&new_task);
    let doc = own_task(state, caller, &id)?;
    let extra: Map<String, Value> =
        body.iter().filter(|(key, _)| key.as_str() != "name").map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Err(err) = tasks::edit(doc, &extra, &now_iso()) {
        state.tasks.remove(&id);
        return Err(err);
    }
    Ok(json!({ "id": id }))
}

/// `tasks.enqueue {task, queue | queue_name}`: queues the task and records `execution.queue`.
pub fn enqueue(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = required_str(body, "task")?;
    let queue_id = resolve_queue(state, caller, body)?;
    let doc = own_task(state, caller, id)?;
    let status = doc["status"].as_str().unwrap_or_default().to_string();
    if matches!(status.as_str(), "queued" | "in_progress") && !force(body) {
        return Err(ApiError::bad_request(
            110,
            format!("Invalid task status: cannot enqueue a {status} task"),
        ));
    }
    let now = now_iso();
    doc["execution"]["queue"] = json!(queue_id);
    tasks::set_status(doc, "queued", &reason(body), &now);
    let fields = status_fields(doc);
    if let Some(queue) = state.queues.get_mut(&queue_id) {
        if let Some(entries) = queue["entries"].as_array_mut() {
            entries.push(json!({ "task": id, "added": now }));
        }
    }
    Ok(json!({ "queued": 1, "updated": 1, "fields": fields }))
}

fn resolve_queue(
    state: &mut State,
    caller: &Identity,
    body: &Map<String, Value>,
) -> Result<String, ApiError> {
    if let Some(queue) = body.get("queue").and_then(Value::as_str) {
        let known = state.queues.get(queue).is_some_and(|q| q["company"] == caller.company.as_str());
        return known
            .then(|| queue.to_string())
            .ok_or_else(|| ApiError::bad_request(701, format!("Invalid queue id: id={queue}")));
    }
    if let Some(name) = body.get("queue_name").and_then(Value::as_str) {
        let existing = state.queue_by_name(&caller.company, name);
        return Ok(existing.unwrap_or_else(|| state.create_queue(name, &caller.company, &caller.user)));
    }
    state
        .queues
        .values()
        .find(|q| {
            q["company"] == caller.company.as_str()
                && query::string_list(q.get("system_tags")).iter().any(|t| t == "default")
        })
        .and_then(|q| q["id"].as_str().map(str::to_string))
        .ok_or_else(|| ApiError::bad_request(707, "No queue is tagged as the default queue for this company"))
}

fn remove_from_queues(state: &mut State, task: &str) {
    for queue in state.queues.values_mut() {
        if let Value::Array(entries) = &mut queue["entries"] {
            entries.retain(|e| e["task"] != task);
        }
    }
}

pub fn dequeue(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = required_str(body, "task")?.to_string();
    let doc = own_task(state, caller, &id)?;
    if doc["status"] != "queued" {
        return Err(ApiError::bad_request(703, "Invalid queue id or task not in queue"));
    }
    tasks::set_status(doc, "created", &reason(body), &now_iso());
    let fields = status_fields(doc);
    remove_from_queues(state, &id);
    Ok(json!({ "dequeued": 1, "updated": 1, "fields": fields }))
}

/// Shared body of the status-change endpoints (`tasks.started`, `tasks.stopped`, ...).
fn change_status(
    state: &mut State,
    caller: &Identity,
    body: &Map<String, Value>,
    status: &str,
) -> Result<Value, ApiError> {
    debug_assert!(STATUSES.contains(&status));
    let id = required_str(body, "task")?.to_string();
    let doc = own_task(state, caller, &id)?;
    tasks::set_status(doc, status, &reason(body), &now_iso());
    if let Some(message) = body.get("status_message").and_then(Value::as_str) {
        doc["status_message"] = json!(message);
    }
    let fields = status_fields(doc);
    remove_from_queues(state, &id);
    Ok(json!({ "updated": 1, "fields": fields }))
}

pub fn started(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let mut out = change_status(state, caller, body, "in_progress")?;
    out["started"] = json!(1);
    Ok(out)
}

pub fn stopped(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    change_status(state, caller, body, "stopped")
}

pub fn completed(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    change_status(state, caller, body, "completed")
}

pub fn failed(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    change_status(state, caller, body, "failed")
}

/// `tasks.delete {task, force?}`: a running task needs `force`, like on the server.
pub fn delete(state: &mut State, caller: &Identity, body: &Map<String, Value>) -> Result<Value, ApiError> {
    let id = required_str(body, "task")?.to_string();
    let doc = own_task(state, caller, &id)?;
    if doc["status"] == "in_progress" && !force(body) {
        return Err(ApiError::bad_request(112, "Task in progress, use force=true to delete"));
    }
    state.tasks.remove(&id);
    remove_from_queues(state, &id);
    Ok(json!({ "deleted": true, "updated_children": 0, "updated_models": 0, "events": {} }))
}

fn reason(body: &Map<String, Value>) -> String {
    body.get("status_reason").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn status_fields(doc: &Value) -> Value {
    let mut fields = Map::new();
    for key in ["status", "status_reason", "status_changed", "last_update", "execution.queue"] {
        if let Some(value) = query::lookup(doc, key) {
            fields.insert(key.to_string(), value.clone());
        }
    }
    Value::Object(fields)
}
