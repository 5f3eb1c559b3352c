//! Reads the endpoint requests a task wrote into its `runtime` dict (PROTOCOL §1) and turns each
//! into a validated route or a refusal with a reason. Nothing here trusts the task.

use serde_json::{Map, Value};

use crate::clearml::EXTERNAL_SERVICE_TAG;
use crate::model::{display_untrusted, json_kind, EndpointName, Port, RouteId, TargetPolicy, TaskId};
use crate::reconcile::{HttpRoute, Refusal};

/// Runtime keys (before the optional `__<name>` suffix) the SDK writes and the router answers.
pub mod keys {
    pub const SERVICE: &str = "_SERVICE";
    pub const ADDRESS: &str = "_ADDRESS";
    pub const PORT: &str = "_PORT";
    pub const ENDPOINT: &str = "endpoint";
    pub const BROWSER_ENDPOINT: &str = "browser_endpoint";
    pub const ENDPOINT_MODE: &str = "_ROUTER_ENDPOINT_MODE";

    /// `base` for the first unnamed endpoint, `base__name` otherwise.
    pub fn with_suffix(base: &str, name: Option<&super::EndpointName>) -> String {
        match name {
            None => base.to_owned(),
            Some(n) => format!("{base}__{}", n.as_str()),
        }
    }
}

const SERVICE_HTTP: &str = "EXTERNAL";
const SERVICE_TCP: &str = "EXTERNAL_TCP";

/// What one task contributes: its routes, its refusals, and its current runtime (for write-back).
#[derive(Debug, Default)]
pub struct TaskEndpoints {
    pub task: Option<TaskId>,
    pub runtime: Map<String, Value>,
    pub routes: Vec<HttpRoute>,
    pub refusals: Vec<Refusal>,
}

/// True if the task is one the router should look at at all (the poll filters server-side; a
/// snapshot file may hold any task).
pub fn wants_routing(task: &Value) -> bool {
    let running = task.get("status").and_then(Value::as_str) == Some("in_progress");
    let tagged = task
        .get("system_tags")
        .and_then(Value::as_array)
        .is_some_and(|tags| tags.iter().any(|t| t.as_str() == Some(EXTERNAL_SERVICE_TAG)));
    running && tagged
}

pub fn read_task(task: &Value, policy: &TargetPolicy) -> TaskEndpoints {
    let mut out = TaskEndpoints::default();
    let raw_id = task.get("id");
    let id = match raw_id.and_then(Value::as_str).map(TaskId::parse) {
        Some(Ok(id)) => id,
        Some(Err(e)) => {
            out.refusals
                .push(Refusal::task(display_untrusted(raw_id.and_then(Value::as_str).unwrap_or("")), e.0));
            return out;
        }
        None => {
            out.refusals.push(Refusal::task("(no id)", "task has no string id"));
            return out;
        }
    };
    let runtime = match task.get("runtime") {
        Some(Value::Object(map)) => map.clone(),
        None | Some(Value::Null) => Map::new(),
        Some(other) => {
            out.refusals
                .push(Refusal::task(id.as_str(), format!("runtime is {}, not an object", json_kind(other))));
            out.task = Some(id);
            return out;
        }
    };
    let name = task.get("name").and_then(Value::as_str).map(display_untrusted).unwrap_or_default();
    let user = task.get("user").and_then(Value::as_str).map(display_untrusted).unwrap_or_default();

    for (suffix, service) in service_keys(&runtime) {
        let endpoint_label = suffix.unwrap_or("(default)");
        let endpoint = match suffix.map(EndpointName::parse).transpose() {
            Ok(endpoint) => endpoint,
            Err(e) => {
                out.refusals.push(Refusal::endpoint(id.as_str(), display_untrusted(endpoint_label), e.0));
                continue;
            }
        };
        match read_http_endpoint(&runtime, endpoint.as_ref(), service, policy) {
            Ok(target) => out.routes.push(HttpRoute {
                id: RouteId::for_endpoint(&id, endpoint.as_ref()),
                task: id.clone(),
                endpoint,
                target,
                task_name: name.clone(),
                user: user.clone(),
            }),
            Err(reason) => {
                out.refusals.push(Refusal::endpoint(id.as_str(), endpoint_label.to_owned(), reason))
            }
        }
    }
    out.task = Some(id);
    out.runtime = runtime;
    out
}

/// Every `_SERVICE[__suffix]` key with its value, in key order.
fn service_keys(runtime: &Map<String, Value>) -> Vec<(Option<&str>, &Value)> {
    runtime
        .iter()
        .filter_map(|(key, value)| {
            if key == keys::SERVICE {
                Some((None, value))
            } else {
                key.strip_prefix(keys::SERVICE)
                    .and_then(|rest| rest.strip_prefix("__"))
                    .map(|s| (Some(s), value))
            }
        })
        .collect()
}

fn read_http_endpoint(
    runtime: &Map<String, Value>,
    endpoint: Option<&EndpointName>,
    service: &Value,
    policy: &TargetPolicy,
) -> Result<crate::model::Target, String> {
    let service_key = keys::with_suffix(keys::SERVICE, endpoint);
    match service.as_str() {
        Some(SERVICE_HTTP) => {}
        Some(SERVICE_TCP) => {
            return Err(format!("{service_key}: TCP endpoints are not routed by this router version"))
        }
        Some(other) => {
            return Err(format!(
                "{service_key}: unknown service {:?} (expected EXTERNAL or EXTERNAL_TCP)",
                display_untrusted(other)
            ))
        }
        None => return Err(format!("{service_key}: must be a string, got {}", json_kind(service))),
    }
    let mode_key = keys::with_suffix(keys::ENDPOINT_MODE, endpoint);
    if runtime.get(&mode_key).is_some_and(|m| !m.is_null()) {
        return Err(format!("{mode_key}: static routes are not supported by this router version"));
    }
    let address_key = keys::with_suffix(keys::ADDRESS, endpoint);
    let port_key = keys::with_suffix(keys::PORT, endpoint);
    let address = match runtime.get(&address_key) {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(format!("{address_key}: must be a string, got {}", json_kind(other))),
        None => return Err(format!("{address_key}: missing")),
    };
    let port = match runtime.get(&port_key) {
        Some(v) => Port::from_json(v).map_err(|e| format!("{port_key}: {e}"))?,
        None => return Err(format!("{port_key}: missing")),
    };
    policy.check(address, port).map_err(|e| format!("{address_key}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> TargetPolicy {
        TargetPolicy { allow_loopback: false, proxy_ports: vec![8080], self_addresses: vec![] }
    }

    #[test]
    fn reads_unnamed_and_named_http_endpoints() {
        let task = json!({"id": "abc", "name": "nb", "runtime": {
            "_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.5", "_PORT": 8888,
            "_SERVICE__api": "EXTERNAL", "_ADDRESS__api": "10.0.0.5", "_PORT__api": "9000",
        }});
        let got = read_task(&task, &policy());
        assert!(got.refusals.is_empty(), "{:?}", got.refusals);
        let ids: Vec<_> =
            got.routes.iter().map(|r| (r.id.as_str().to_owned(), r.target.to_string())).collect();
        assert_eq!(
            ids,
            vec![("abc".into(), "10.0.0.5:8888".into()), ("abc__api".into(), "10.0.0.5:9000".into())]
        );
    }

    #[test]
    fn one_bad_endpoint_does_not_hide_the_good_one() {
        let task = json!({"id": "abc", "runtime": {
            "_SERVICE": "EXTERNAL", "_ADDRESS": "169.254.169.254", "_PORT": 80,
            "_SERVICE__ok": "EXTERNAL", "_ADDRESS__ok": "10.0.0.5", "_PORT__ok": 80,
            "_SERVICE__b{ad": "EXTERNAL",
        }});
        let got = read_task(&task, &policy());
        assert_eq!(got.routes.len(), 1);
        assert_eq!(got.refusals.len(), 2);
        assert!(got.refusals.iter().any(|r| r.reason.contains("SSRF")));
        assert!(got.refusals.iter().any(|r| r.reason.contains("endpoint name")));
    }
}
