//! Task documents: their shape, status changes and `tasks.edit` semantics.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::envelope::ApiError;

/// Project every emulated task belongs to unless told otherwise.
pub const DEFAULT_PROJECT: &str = "emulator-project";

/// Statuses the SDK's schema knows (it refuses to parse a task with any other).
pub const STATUSES: &[&str] = &[
    "created",
    "queued",
    "in_progress",
    "stopped",
    "published",
    "publishing",
    "closed",
    "failed",
    "completed",
    "unknown",
];

/// A task to seed through the handle or `POST /_emulator/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewTask {
    pub name: String,
    pub status: String,
    /// Queue id, stored as `execution.queue`.
    pub queue: Option<String>,
    pub runtime: Value,
    pub system_tags: Vec<String>,
    /// Owner user id (its company becomes the task's company); default: the config's user.
    pub user: Option<String>,
}

impl Default for NewTask {
    fn default() -> Self {
        Self {
            name: "emulated task".into(),
            status: "in_progress".into(),
            queue: None,
            runtime: json!({}),
            system_tags: Vec::new(),
            user: None,
        }
    }
}

/// Who owns a new task.
pub struct Owner<'a> {
    pub user: &'a str,
    pub company: &'a str,
}

/// A full task document as `tasks.get_by_id` returns it. `company` and `user` are plain ids,
/// as in the server's task schema.
pub fn new_doc(id: &str, task: &NewTask, owner: Owner, now: &str) -> Value {
    let runtime = if task.runtime.is_object() { task.runtime.clone() } else { json!({}) };
    let mut doc = json!({
        "id": id,
        "name": task.name,
        "type": "training",
        "status": "created",
        "status_reason": "",
        "status_message": "",
        "status_changed": now,
        "comment": "",
        "project": DEFAULT_PROJECT,
        "user": owner.user,
        "company": owner.company,
        "created": now,
        "last_update": now,
        "last_change": now,
        "last_iteration": 0,
        "last_metrics": {},
        "tags": [],
        "system_tags": task.system_tags,
        "runtime": runtime,
        "execution": { "queue": task.queue, "parameters": {}, "artifacts": [] },
        "script": {},
        "hyperparams": {},
        "configuration": {},
        "container": {},
        "models": { "input": [], "output": [] },
        "output": {},
    });
    set_status(&mut doc, &task.status, "", now);
    doc
}

/// Moves a task to `status` and stamps the times the server stamps.
pub fn set_status(doc: &mut Value, status: &str, reason: &str, now: &str) {
    doc["status"] = json!(status);
    doc["status_reason"] = json!(reason);
    doc["status_changed"] = json!(now);
    match status {
        "in_progress" if doc.get("started").is_none_or(Value::is_null) => doc["started"] = json!(now),
        "completed" | "stopped" | "failed" | "closed" => doc["completed"] = json!(now),
        _ => {}
    }
    touch(doc, now);
}

/// Marks a task as modified (`last_update` is what pollers compare).
pub fn touch(doc: &mut Value, now: &str) {
    doc["last_update"] = json!(now);
    doc["last_change"] = json!(now);
}

/// Merges `patch` into the task's `runtime`: a `null` value deletes the key.
pub fn merge_runtime(doc: &mut Value, patch: &Map<String, Value>) {
    if !doc["runtime"].is_object() {
        doc["runtime"] = json!({});
    }
    if let Value::Object(runtime) = &mut doc["runtime"] {
        for (key, value) in patch {
            if value.is_null() {
                runtime.remove(key);
            } else {
                runtime.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Fields `tasks.edit` may not change.
const READ_ONLY: &[&str] = &[
    "id",
    "company",
    "user",
    "status",
    "status_changed",
    "status_reason",
    "status_message",
    "created",
    "started",
    "completed",
    "last_update",
    "last_change",
];

/// Request keys of `tasks.edit` that are options, not task fields.
const EDIT_OPTIONS: &[&str] = &["task", "force"];

/// `tasks.edit`: replaces the given top-level fields; returns the `fields` the server reports.
/// Without `force` only drafts (`created`) may be edited, like the server.
pub fn edit(doc: &mut Value, body: &Map<String, Value>, now: &str) -> Result<Value, ApiError> {
    let force = body.get("force").and_then(Value::as_bool).unwrap_or(false);
    let status = doc["status"].as_str().unwrap_or_default().to_string();
    if !force && status != "created" {
        return Err(ApiError::bad_request(
            110,
            format!("Task is not in draft status, use force=true to edit (status={status})"),
        ));
    }
    let changes: Map<String, Value> = body
        .iter()
        .filter(|(key, _)| !EDIT_OPTIONS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(key) = changes.keys().find(|k| READ_ONLY.contains(&k.as_str())) {
        return Err(ApiError::bad_request(14, format!("Invalid fields: {key} cannot be edited")));
    }
    for (key, value) in &changes {
        doc[key.as_str()] = value.clone();
    }
    touch(doc, now);
    let mut fields = changes;
    fields.insert("last_update".into(), json!(now));
    fields.insert("last_change".into(), json!(now));
    Ok(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(status: &str) -> Value {
        let task = NewTask { status: status.into(), queue: Some("q1".into()), ..NewTask::default() };
        let owner = Owner { user: "u1", company: "c1" };
        new_doc("t1", &task, owner, "2024-01-01T00:00:00.000000+00:00")
    }

    #[test]
    fn new_docs_look_like_server_tasks() {
        let d = doc("in_progress");
        assert_eq!(d["execution"]["queue"], "q1");
        assert_eq!(d["company"], "c1");
        assert_eq!(d["started"], d["created"]);
        assert!(doc("created").get("started").is_none());
    }

    #[test]
    fn edit_needs_force_outside_drafts() {
        let mut d = doc("in_progress");
        let body = json!({"task": "t1", "runtime": {"a": 1}});
        let err = edit(&mut d, body.as_object().unwrap(), "later").unwrap_err();
        assert_eq!((err.code, err.subcode), (400, 110));

        let body = json!({"task": "t1", "force": true, "runtime": {"a": 1}});
        let fields = edit(&mut d, body.as_object().unwrap(), "later").unwrap();
        assert_eq!(fields["runtime"], json!({"a": 1}));
        assert_eq!(d["runtime"], json!({"a": 1}));
        assert_eq!(d["last_update"], "later");

        let mut draft = doc("created");
        let body = json!({"task": "t1", "system_tags": ["x"]});
        assert!(edit(&mut draft, body.as_object().unwrap(), "later").is_ok());
        let body = json!({"task": "t1", "force": true, "status": "completed"});
        assert_eq!(edit(&mut draft, body.as_object().unwrap(), "x").unwrap_err().subcode, 14);
    }

    #[test]
    fn runtime_merge_deletes_nulls() {
        let mut d = doc("in_progress");
        d["runtime"] = json!({"a": 1, "b": 2});
        merge_runtime(&mut d, json!({"b": null, "c": 3}).as_object().unwrap());
        assert_eq!(d["runtime"], json!({"a": 1, "c": 3}));
    }
}
