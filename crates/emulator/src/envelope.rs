//! The ClearML response envelope (`meta` + `data`) and the API errors carried in it.

use serde_json::{json, Value};

use super::ids::new_id;

/// An API failure: HTTP status = `code`, plus ClearML's `result_subcode` and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: u16,
    pub subcode: u32,
    pub msg: String,
}

impl ApiError {
    pub fn new(code: u16, subcode: u32, msg: impl Into<String>) -> Self {
        Self { code, subcode, msg: msg.into() }
    }

    pub fn bad_request(subcode: u32, msg: impl Into<String>) -> Self {
        Self::new(400, subcode, msg)
    }

    pub fn unauthorized(subcode: u32, msg: impl Into<String>) -> Self {
        Self::new(401, subcode, msg)
    }

    /// 400/12, the server's answer to a body that does not fit the endpoint's schema.
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::bad_request(12, format!("Validation error: {}", msg.into()))
    }

    /// 400/101, what `tasks.*` answer for an unknown (or other company's) task.
    pub fn invalid_task_id(id: &str) -> Self {
        Self::bad_request(101, format!("Invalid task id: id={id}"))
    }

    /// 404/0, the server's answer to an endpoint it does not know (clearml-server's
    /// `ServiceRepo._resolve_endpoint_from_call`), given before any authentication.
    pub fn unknown_endpoint(name: &str, version: &str) -> Self {
        Self::new(404, 0, format!("Unable to find endpoint for name {name} and version {version}"))
    }
}

/// The `meta.endpoint` part of an envelope.
#[derive(Debug, Clone)]
pub struct EndpointInfo {
    pub name: String,
    pub requested_version: String,
    pub actual_version: String,
}

fn meta(endpoint: &EndpointInfo, code: u16, subcode: u32, msg: &str) -> Value {
    let id = new_id();
    json!({
        "id": id,
        "trx": id,
        "endpoint": {
            "name": endpoint.name,
            "requested_version": endpoint.requested_version,
            "actual_version": endpoint.actual_version,
        },
        "result_code": code,
        "result_subcode": subcode,
        "result_msg": msg,
        "error_stack": null,
        "error_data": {},
    })
}

/// A successful envelope around `data`.
pub fn success(endpoint: &EndpointInfo, data: Value) -> Value {
    json!({ "meta": meta(endpoint, 200, 0, "OK"), "data": data })
}

/// An error envelope; the caller sends it with HTTP status `err.code`.
pub fn failure(endpoint: &EndpointInfo, err: &ApiError) -> Value {
    json!({ "meta": meta(endpoint, err.code, err.subcode, &err.msg), "data": {} })
}
