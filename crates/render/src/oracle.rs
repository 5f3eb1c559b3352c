//! Oracles for fuzzing what the router parses from outside (tasks, the static routes file,
//! routes.json, operator API bodies): parsing never panics, and no byte of input reaches a
//! rendered nginx or Lua file except through validated types. Used by the cargo-fuzz targets
//! (fuzz/) and by a test that replays their corpus, so CI checks the same property without
//! nightly.
//!
//! How "nothing leaks" is checked: the structural files must be byte-identical to the render of
//! an empty table (no input reaches nginx.conf or the Lua modules at all); the stream config
//! must consist of the template's lines with only digits, IPs and route ids filled in; every
//! string in routes.json must be free of whitespace (but the single space of "ip port"),
//! control characters and nginx/Lua/JSON metacharacters.

use std::collections::BTreeMap;
use std::path::Path;

use gateway_core::gateway_token::MintRequest;
use gateway_core::model::TargetPolicy;
use gateway_core::routes_file::{table_from_routes_file, RoutesDoc};
use gateway_core::snapshot::Snapshot;
use gateway_core::static_routes::{parse_file, serialize_file, validate_doc, Groups, RawRoute};
use gateway_core::table::RouteTable;
use serde_json::Value;

use crate::{render, AuthLayout, Layout, Rendered};

fn layout() -> Layout {
    Layout {
        router_name: "fuzz".into(),
        listen_port: 8080,
        control_port: 18080,
        lua_dir: "/lua".into(),
        auth: AuthLayout::disabled(),
        upstream: Default::default(),
        tcp_ports: Some((10000, 10100)),
        client_address: Default::default(),
        tls: crate::TlsLayout::default(),
    }
}

fn policy() -> TargetPolicy {
    TargetPolicy {
        allow_loopback: false,
        proxy_ports: vec![8080, 18080, 18081],
        self_addresses: vec![],
        allowed_networks: vec![],
    }
}

/// A task document (JSON) as `tasks.get_all` returns it, read and rendered.
pub fn task(data: &[u8]) {
    let Ok(task) = serde_json::from_slice::<Value>(data) else { return };
    let _ = gateway_core::task::read_task(&task, &policy());
    let table = RouteTable::build(&Snapshot { tasks: vec![task], company: None }, &policy());
    check_render(&table);
}

/// A static routes file (JSON; YAML when the first byte is odd) parsed, validated, rendered, and
/// written back: the written file reads back as the same routes.
pub fn static_routes(data: &[u8]) {
    let path =
        Path::new(if data.first().is_some_and(|b| b % 2 == 1) { "routes.yaml" } else { "routes.json" });
    let Ok(doc) = parse_file(path, data) else { return };
    let Ok(routes) = validate_doc(&doc, &policy()) else { return };
    let written = serialize_file(path, &routes);
    let again = parse_file(path, &written).and_then(|d| validate_doc(&d, &policy()));
    assert_eq!(again.as_ref().ok(), Some(&routes), "a written routes file reads back the same");
    let mut table = RouteTable::build(&Snapshot::default(), &policy());
    table.attach_static(&routes, &Groups::new(), &BTreeMap::new());
    check_render(&table);
}

/// routes.json as the proxy (and a restarted router) reads it.
pub fn routes_json(data: &[u8]) {
    if let Some(doc) = RoutesDoc::parse(data) {
        assert_eq!(RoutesDoc::parse(&doc.to_bytes()).as_ref(), Some(&doc), "routes.json round trip");
    }
    check_render(&table_from_routes_file(data));
}

/// Operator API bodies: a static route (admin API) and a gateway token request.
pub fn operator_bodies(data: &[u8]) {
    if let Ok(raw) = serde_json::from_slice::<RawRoute>(data) {
        if let Ok(route) = raw.validate(&policy()) {
            let mut table = RouteTable::build(&Snapshot::default(), &policy());
            table.attach_static(&[route], &Groups::new(), &BTreeMap::new());
            check_render(&table);
        }
    }
    if let Ok(request) = serde_json::from_slice::<MintRequest>(data) {
        if request.validate().is_ok() {
            assert!(!request.label.chars().any(char::is_control));
            assert!(request.endpoints.iter().chain(&request.user).all(|s| safe_value(s, false)));
        }
    }
}

/// Renders `table` and checks that only validated values reached the files.
pub fn check_render(table: &RouteTable) {
    static BASELINE: std::sync::OnceLock<Rendered> = std::sync::OnceLock::new();
    let Ok(rendered) = render(&layout(), table) else { return };
    let baseline =
        BASELINE.get_or_init(|| render(&layout(), &RouteTable::default()).expect("an empty table renders"));
    // Every structural file, the stream config included (TCP targets are routing data now), is
    // the empty table's: no byte of the input reaches them. The conf embeds the hash of all files:
    // compare without it.
    for (file, base) in rendered.structural.iter().zip(&baseline.structural) {
        let text = String::from_utf8_lossy(&file.bytes).replace(&rendered.config_hash, &baseline.config_hash);
        assert_eq!(text.as_bytes(), base.bytes.as_slice(), "{} depends on the input", file.name);
    }
    let doc: Value = serde_json::from_slice(&rendered.routes.bytes).expect("routes.json is JSON");
    check_strings(&doc, false);
}

/// Plain identifiers, IPs, paths and "ip port" targets only.
fn safe_value(s: &str, is_target: bool) -> bool {
    let spaces = s.matches(' ').count();
    s.len() <= 512
        && (spaces == 0 || (is_target && spaces == 1))
        && s.chars().all(|c| c == ' ' || (c.is_ascii_graphic() && !"\"'\\;{}$#`<>".contains(c)))
}

fn check_strings(value: &Value, in_targets: bool) {
    match value {
        Value::String(s) => assert!(safe_value(s, in_targets), "unsafe string in routes.json: {s:?}"),
        Value::Array(items) => items.iter().for_each(|v| check_strings(v, in_targets)),
        Value::Object(map) => {
            for (k, v) in map {
                assert!(safe_value(k, false), "unsafe key in routes.json: {k:?}");
                check_strings(v, k == "targets");
            }
        }
        _ => {}
    }
}

/// The corpus seeds every target starts from (also replayed by the tests).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let task = serde_json::json!({"id": "t1", "status": "in_progress", "system_tags": ["external_service"],
        "runtime": {"_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.1", "_PORT": 8000,
                    "_SERVICE__tcp": "EXTERNAL_TCP", "external_address__tcp": "10.0.0.1", "external_tcp_port__tcp": 22,
                    "upstream_task_port__tcp": 22}});
    let routes = serde_json::json!({"routes": [
        {"name": "demo", "path": "/demo", "access": "public", "targets": ["10.0.0.2:80"], "load_balance": true},
        {"name": "sub", "subdomain": "sub", "access": "authenticated", "groups": ["g"], "targets": []}]});
    let mut table = RouteTable::build(&Snapshot { tasks: vec![task.clone()], company: None }, &policy());
    if let Ok(doc) = parse_file(Path::new("r.json"), routes.to_string().as_bytes()) {
        if let Ok(statics) = validate_doc(&doc, &policy()) {
            table.attach_static(&statics, &Groups::new(), &BTreeMap::new());
        }
    }
    let routes_json = render(&layout(), &table).map(|r: Rendered| r.routes.bytes).unwrap_or_default();
    vec![
        ("task", task.to_string().into_bytes()),
        ("static_routes", routes.to_string().into_bytes()),
        ("static_routes", b"\x01routes:\n  - name: y\n    path: /y\n    access: public\n".to_vec()),
        ("routes_json", routes_json),
        (
            "operator_bodies",
            br#"{"name": "api", "path": "/api", "access": "public", "targets": ["10.0.0.3:81"]}"#.to_vec(),
        ),
        (
            "operator_bodies",
            br#"{"kind": "endpoint", "label": "ci", "endpoints": ["a"], "expires_in_seconds": 600}"#.to_vec(),
        ),
    ]
}

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "task" => task(data),
        "static_routes" => static_routes(data),
        "routes_json" => routes_json(data),
        "operator_bodies" => operator_bodies(data),
        other => panic!("no fuzz target {other}"),
    }
}
