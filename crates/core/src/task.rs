//! Reads the endpoint requests a task wrote into its `runtime` dict (PROTOCOL §1) and turns each
//! into a validated route or a refusal with a reason. Nothing here trusts the task.

use serde_json::{Map, Value};

use crate::model::Target;
use crate::model::{display_untrusted, json_kind, EndpointName, Port, RouteId, TargetPolicy, TaskId};
use crate::static_routes::RouteName;
use crate::table::{HttpRoute, Refusal, StaticAsk};

/// Runtime keys (before the optional `__<name>` suffix) the SDK writes and the router answers.
pub mod keys {
    pub const SERVICE: &str = "_SERVICE";
    pub const ADDRESS: &str = "_ADDRESS";
    pub const PORT: &str = "_PORT";
    pub const ENDPOINT: &str = "endpoint";
    pub const BROWSER_ENDPOINT: &str = "browser_endpoint";
    pub const ENDPOINT_MODE: &str = "_ROUTER_ENDPOINT_MODE";
    /// This router's extension: `false` keeps the `/service/<id>` prefix on the way to the task.
    pub const STRIP_PREFIX: &str = "_ROUTER_STRIP_PREFIX";
    pub const ENDPOINT_MODE_PARAM: &str = "_ROUTER_ENDPOINT_MODE_PARAM";
    pub const TCP_ADDRESS: &str = "external_address";
    pub const TCP_PORT: &str = "external_tcp_port";
    pub const TCP_UPSTREAM_PORT: &str = "upstream_task_port";
    /// Router-owned: the task's own address and port of a TCP endpoint, kept when the router
    /// overwrites `external_address`/`external_tcp_port` with its own, so that a restarted router
    /// still knows where to route (and never routes to itself).
    pub const TCP_TARGET_ADDRESS: &str = "_ROUTER_TARGET_ADDRESS";
    pub const TCP_TARGET_PORT: &str = "_ROUTER_TARGET_PORT";
    /// Router-owned: the `ROUTER_NAME` of the router serving this endpoint. Another router
    /// leaves such an endpoint alone.
    pub const OWNER: &str = "_ROUTER_OWNER";

    /// `base` for the first unnamed endpoint, `base__name` otherwise.
    pub fn with_suffix(base: &str, name: Option<&super::EndpointName>) -> String {
        match name {
            None => base.to_owned(),
            Some(n) => format!("{base}__{}", n.as_str()),
        }
    }
}

/// The system tag the SDK adds to every task that asks for an endpoint.
pub const EXTERNAL_SERVICE_TAG: &str = "external_service";

const SERVICE_HTTP: &str = "EXTERNAL";
const SERVICE_TCP: &str = "EXTERNAL_TCP";

/// Who is reading: the router's name, external URL and TCP address. Used to tell the router's own
/// answers (and endpoints it owns) from fresh requests and from other routers' endpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouterIdentity<'a> {
    pub name: Option<&'a str>,
    pub url: Option<&'a str>,
    pub tcp_address: Option<&'a str>,
    /// `TCP_PORT_START..=TCP_PORT_END`: the ports this router publishes TCP endpoints on.
    pub tcp_ports: Option<(u16, u16)>,
}

impl RouterIdentity<'_> {
    /// True if `address:port` is what this router publishes for a TCP endpoint (its address and a
    /// port of its range): the router's answer, not the task's own address.
    fn publishes(&self, address: &str, port: Port) -> bool {
        self.tcp_address == Some(address)
            && self.tcp_ports.is_some_and(|(first, last)| (first..=last).contains(&port.get()))
    }
}

/// A TCP endpoint a task asked for, before a port is allocated to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRequest {
    pub id: RouteId,
    pub task: TaskId,
    pub endpoint: Option<EndpointName>,
    pub target: Target,
    /// The port the task says this router gave it before (from its runtime), to keep it.
    pub claimed_port: Option<Port>,
    pub task_name: String,
}

/// What one task contributes: its routes, its refusals, and its current runtime (for write-back).
#[derive(Debug, Default)]
pub struct TaskEndpoints {
    pub task: Option<TaskId>,
    pub runtime: Map<String, Value>,
    pub routes: Vec<HttpRoute>,
    pub tcp: Vec<TcpRequest>,
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
    read_task_with(task, policy, &RouterIdentity::default())
}

/// Reads one task as router `me`: its TCP address tells its own answer from a fresh request, and
/// its name and URL tell the endpoints it owns from those another router serves.
pub fn read_task_with(task: &Value, policy: &TargetPolicy, me: &RouterIdentity<'_>) -> TaskEndpoints {
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
        let service_key = keys::with_suffix(keys::SERVICE, endpoint.as_ref());
        if let Some(owner) = other_owner(&runtime, endpoint.as_ref(), me) {
            out.refusals.push(Refusal::endpoint(
                id.as_str(),
                endpoint_label.to_owned(),
                format!(
                    "served by router {owner:?} (per {}); this router leaves it alone",
                    keys::with_suffix(keys::OWNER, endpoint.as_ref())
                ),
            ));
            continue;
        }
        let read = match service.as_str() {
            Some(SERVICE_HTTP) => read_http_endpoint(&runtime, endpoint.as_ref(), policy).map(|read| {
                out.routes.push(HttpRoute {
                    id: RouteId::for_endpoint(&id, endpoint.as_ref()),
                    task: id.clone(),
                    endpoint: endpoint.clone(),
                    target: read.target,
                    task_name: name.clone(),
                    user: user.clone(),
                    static_route: read.static_route,
                    strip_prefix: read.strip_prefix,
                })
            }),
            Some(SERVICE_TCP) => {
                read_tcp_endpoint(&runtime, endpoint.as_ref(), policy, me).map(|(target, claimed_port)| {
                    out.tcp.push(TcpRequest {
                        id: RouteId::for_endpoint(&id, endpoint.as_ref()),
                        task: id.clone(),
                        endpoint: endpoint.clone(),
                        target,
                        claimed_port,
                        task_name: name.clone(),
                    })
                })
            }
            Some(other) => Err(format!(
                "{service_key}: unknown service {:?} (expected EXTERNAL or EXTERNAL_TCP)",
                display_untrusted(other)
            )),
            None => Err(format!("{service_key}: must be a string, got {}", json_kind(service))),
        };
        if let Err(reason) = read {
            out.refusals.push(Refusal::endpoint(id.as_str(), endpoint_label.to_owned(), reason));
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

/// What an HTTP endpoint asks for.
struct HttpRead {
    target: Target,
    static_route: Option<StaticAsk>,
    strip_prefix: bool,
}

fn read_http_endpoint(
    runtime: &Map<String, Value>,
    endpoint: Option<&EndpointName>,
    policy: &TargetPolicy,
) -> Result<HttpRead, String> {
    let static_route = read_static_ask(runtime, endpoint)?;
    let strip_prefix = read_strip_prefix(runtime, endpoint)?;
    let address_key = keys::with_suffix(keys::ADDRESS, endpoint);
    let address = string_key(runtime, &address_key)?;
    let port = port_key(runtime, &keys::with_suffix(keys::PORT, endpoint))?;
    let target = policy.check(address, port).map_err(|e| format!("{address_key}: {e}"))?;
    Ok(HttpRead { target, static_route, strip_prefix })
}

/// `_ROUTER_STRIP_PREFIX[__name]` (this router's extension, default true): false passes the full
/// `/service/<id>/...` path to apps that serve under it themselves (Jupyter's `base_url`).
fn read_strip_prefix(runtime: &Map<String, Value>, endpoint: Option<&EndpointName>) -> Result<bool, String> {
    let key = keys::with_suffix(keys::STRIP_PREFIX, endpoint);
    match runtime.get(&key) {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => {
            Err(format!("{key}: must be true or false, got {}", display_untrusted(&other.to_string())))
        }
    }
}

/// `_ROUTER_ENDPOINT_MODE` + `_ROUTER_ENDPOINT_MODE_PARAM`: the endpoint asks to be a target of
/// the static route of that name instead of getting its own `/service/` URL.
fn read_static_ask(
    runtime: &Map<String, Value>,
    endpoint: Option<&EndpointName>,
) -> Result<Option<StaticAsk>, String> {
    let mode_key = keys::with_suffix(keys::ENDPOINT_MODE, endpoint);
    let mode = match runtime.get(&mode_key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(m)) if m == "path" => "path",
        Some(Value::String(m)) if m == "subdomain" => "subdomain",
        Some(other) => {
            return Err(format!(
                "{mode_key}: {} is not supported (expected \"path\" or \"subdomain\")",
                display_untrusted(&other.to_string())
            ))
        }
    };
    let param_key = keys::with_suffix(keys::ENDPOINT_MODE_PARAM, endpoint);
    let name = string_key(runtime, &param_key)?;
    let route = RouteName::parse(name).map_err(|e| format!("{param_key}: static route {e}"))?;
    Ok(Some(StaticAsk { mode, route }))
}

/// A TCP endpoint's target, and the port this router published for it before (if any).
///
/// The SDK writes `external_address` + `external_tcp_port` + `upstream_task_port` (the last two
/// equal); clearml-session writes the first two only. A router answers by overwriting
/// `external_*` with its own address and port and keeping the task's under its own keys. So the
/// pair is a router's answer when it is this router's address with a port of its range, or when
/// it differs from `upstream_task_port`; the address alone says nothing (the agent and the
/// gateway may share a host, and then a task's own address is the router's).
fn read_tcp_endpoint(
    runtime: &Map<String, Value>,
    endpoint: Option<&EndpointName>,
    policy: &TargetPolicy,
    me: &RouterIdentity<'_>,
) -> Result<(Target, Option<Port>), String> {
    let address_key = keys::with_suffix(keys::TCP_ADDRESS, endpoint);
    let port_key_name = keys::with_suffix(keys::TCP_PORT, endpoint);
    let address = string_key(runtime, &address_key)?;
    let port = port_key(runtime, &port_key_name)?;
    let upstream_key = keys::with_suffix(keys::TCP_UPSTREAM_PORT, endpoint);
    let upstream = match runtime.get(&upstream_key) {
        Some(v) if !v.is_null() => Some(Port::from_json(v).map_err(|e| format!("{upstream_key}: {e}"))?),
        _ => None,
    };
    let ours = me.publishes(address, port);
    if ours || upstream.is_some_and(|u| u != port) {
        let owned_address_key = keys::with_suffix(keys::TCP_TARGET_ADDRESS, endpoint);
        if !runtime.contains_key(&owned_address_key) {
            return Err(format!(
                "{address_key}/{port_key_name} hold a router's answer and {owned_address_key} is missing, so the \
                 task's own address is unknown; refusing to guess (ask for the endpoint again)"
            ));
        }
        let target_address = string_key(runtime, &owned_address_key)?;
        let owned_port_key = keys::with_suffix(keys::TCP_TARGET_PORT, endpoint);
        let target_port = port_key(runtime, &owned_port_key)?;
        let target =
            policy.check(target_address, target_port).map_err(|e| format!("{owned_address_key}: {e}"))?;
        return Ok((target, ours.then_some(port)));
    }
    // A fresh request (or a re-request after the task moved): the task's own address and port.
    let target =
        policy.check(address, upstream.unwrap_or(port)).map_err(|e| format!("{address_key}: {e}"))?;
    Ok((target, None))
}

/// The name of another router that already serves this endpoint, if any. An endpoint whose
/// published URL or TCP address is this router's own counts as ours whatever the owner key says
/// (the router was renamed).
fn other_owner(
    runtime: &Map<String, Value>,
    endpoint: Option<&EndpointName>,
    me: &RouterIdentity<'_>,
) -> Option<String> {
    let name = me.name?;
    let owner = match runtime.get(&keys::with_suffix(keys::OWNER, endpoint)) {
        Some(Value::String(owner)) if owner != name => owner,
        _ => return None,
    };
    let published = |key: &str| runtime.get(&keys::with_suffix(key, endpoint)).and_then(Value::as_str);
    let our_url =
        me.url.zip(published(keys::ENDPOINT)).is_some_and(|(url, ep)| ep.starts_with(&format!("{url}/")));
    let our_tcp = me.tcp_address.is_some() && me.tcp_address == published(keys::TCP_ADDRESS);
    (!our_url && !our_tcp).then(|| display_untrusted(owner))
}

fn string_key<'a>(runtime: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match runtime.get(key) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(format!("{key}: must be a string, got {}", json_kind(other))),
        None => Err(format!("{key}: missing")),
    }
}

fn port_key(runtime: &Map<String, Value>, key: &str) -> Result<Port, String> {
    match runtime.get(key) {
        Some(v) => Port::from_json(v).map_err(|e| format!("{key}: {e}")),
        None => Err(format!("{key}: missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gw() -> RouterIdentity<'static> {
        RouterIdentity {
            tcp_address: Some("gw.example.com"),
            tcp_ports: Some((10000, 10100)),
            ..Default::default()
        }
    }

    fn policy() -> TargetPolicy {
        TargetPolicy {
            allow_loopback: false,
            proxy_ports: vec![8080],
            self_addresses: vec![],
            allowed_networks: vec![],
        }
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
    fn reads_tcp_requests_from_the_sdk_clearml_session_and_the_routers_own_answer() {
        // The SDK writes the same (agent-mapped) port to both keys.
        let sdk = json!({"id": "t1", "runtime": {"_SERVICE__ssh": "EXTERNAL_TCP", "external_address__ssh": "10.0.0.5",
            "external_tcp_port__ssh": 2222, "upstream_task_port__ssh": 2222}});
        let got = read_task_with(&sdk, &policy(), &gw());
        assert_eq!(got.tcp[0].target.to_string(), "10.0.0.5:2222");
        assert_eq!(got.tcp[0].id.as_str(), "t1__ssh");
        assert_eq!(got.tcp[0].claimed_port, None);
        let session = json!({"id": "t2", "runtime": {"_SERVICE": "EXTERNAL_TCP", "external_address": "10.0.0.6", "external_tcp_port": "10022"}});
        let got = read_task_with(&session, &policy(), &gw());
        assert_eq!(got.tcp[0].target.to_string(), "10.0.0.6:10022");
        let answered = json!({"id": "t3", "runtime": {"_SERVICE": "EXTERNAL_TCP", "external_address": "gw.example.com",
            "external_tcp_port": 10005, "_ROUTER_TARGET_ADDRESS": "10.0.0.7", "_ROUTER_TARGET_PORT": 22}});
        let got = read_task_with(&answered, &policy(), &gw());
        assert_eq!(got.tcp[0].target.to_string(), "10.0.0.7:22");
        assert_eq!(got.tcp[0].claimed_port.map(|p| p.get()), Some(10005));
        let looping = json!({"id": "t4", "runtime": {"_SERVICE": "EXTERNAL_TCP", "external_address": "gw.example.com", "external_tcp_port": 10005}});
        let got = read_task_with(&looping, &policy(), &gw());
        assert!(got.refusals[0].reason.contains("refusing to guess"), "{:?}", got.refusals);
    }

    #[test]
    fn tcp_on_one_host_and_other_routers_answers() {
        let same_host = RouterIdentity {
            tcp_address: Some("10.0.0.9"),
            tcp_ports: Some((10000, 10100)),
            ..Default::default()
        };
        // Agent and gateway on one host: the task's own address is the router's, its port is not
        // one the router publishes, so it is a fresh request.
        let fresh = json!({"id": "t5", "runtime": {"_SERVICE": "EXTERNAL_TCP", "external_address": "10.0.0.9",
            "external_tcp_port": 2222, "upstream_task_port": 2222}});
        let got = read_task_with(&fresh, &policy(), &same_host);
        assert!(got.refusals.is_empty(), "{:?}", got.refusals);
        assert_eq!(got.tcp[0].target.to_string(), "10.0.0.9:2222");
        assert_eq!(got.tcp[0].claimed_port, None);
        // After this router answered on the same host, the owned keys give the target back.
        let answered = json!({"id": "t5", "runtime": {"_SERVICE": "EXTERNAL_TCP", "external_address": "10.0.0.9",
            "external_tcp_port": 10003, "upstream_task_port": 2222,
            "_ROUTER_TARGET_ADDRESS": "10.0.0.9", "_ROUTER_TARGET_PORT": 2222}});
        let got = read_task_with(&answered, &policy(), &same_host);
        assert_eq!(got.tcp[0].target.to_string(), "10.0.0.9:2222");
        assert_eq!(got.tcp[0].claimed_port.map(|p| p.get()), Some(10003));
        // Another router's answer (its address, its port): never routed to that address.
        let foreign = json!({"id": "t6", "runtime": {"_SERVICE": "EXTERNAL_TCP", "external_address": "10.9.9.9",
            "external_tcp_port": 31000, "upstream_task_port": 22}});
        let got = read_task_with(&foreign, &policy(), &same_host);
        assert!(got.tcp.is_empty());
        assert!(got.refusals[0].reason.contains("refusing to guess"), "{:?}", got.refusals);
        let foreign_with_keys = json!({"id": "t6", "runtime": {"_SERVICE": "EXTERNAL_TCP", "external_address": "10.9.9.9",
            "external_tcp_port": 31000, "upstream_task_port": 22,
            "_ROUTER_TARGET_ADDRESS": "10.0.0.7", "_ROUTER_TARGET_PORT": 22}});
        let got = read_task_with(&foreign_with_keys, &policy(), &same_host);
        assert_eq!(got.tcp[0].target.to_string(), "10.0.0.7:22");
        assert_eq!(got.tcp[0].claimed_port, None, "another router's port is not ours to keep");
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
