//! The routing table a previous run left on disk (`routes.json`): after a restart the router
//! knows what it advertised (to take it back) and which TCP ports it gave out (to keep them).

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::model::{Port, RouteId, TargetPolicy};
use crate::static_routes::{Access, Location, RouteName, RoutePath, StaticRoute, SubdomainLabel};
use crate::table::{Attached, HttpRoute, RouteTable, ServedStatic, TcpRoute};

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    routes: BTreeMap<String, HttpEntry>,
    #[serde(default)]
    tcp: BTreeMap<String, TcpEntry>,
    #[serde(default, rename = "static")]
    static_routes: StaticDoc,
}

#[derive(Deserialize, Default)]
struct StaticDoc {
    #[serde(default)]
    routes: BTreeMap<String, StaticEntry>,
    #[serde(default)]
    hosts: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct StaticEntry {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    load_balanced: bool,
    #[serde(default)]
    tasks: Vec<String>,
}

#[derive(Deserialize)]
struct HttpEntry {
    host: String,
    port: u16,
    #[serde(default = "default_true")]
    strip_prefix: bool,
}

#[derive(Deserialize)]
struct TcpEntry {
    listen: u16,
    host: String,
    port: u16,
}

fn default_true() -> bool {
    true
}

/// Reads our own file back; entries that do not parse are skipped (the file is ours, but the
/// volume is shared, so it is still read as untrusted input).
pub fn table_from_routes_file(bytes: &[u8]) -> RouteTable {
    let Ok(doc) = serde_json::from_slice::<Doc>(bytes) else { return RouteTable::default() };
    // These targets were checked when they were written; loopback may have been allowed then.
    let policy = TargetPolicy { allow_loopback: true, ..TargetPolicy::default() };
    let mut table = RouteTable::default();
    for (id, entry) in doc.routes {
        let (Ok(id), Ok(port)) = (RouteId::parse(&id), Port::new(entry.port)) else { continue };
        let Ok(target) = policy.check(&entry.host, port) else { continue };
        let (task, endpoint) = id.parts();
        table.http.insert(
            id.clone(),
            HttpRoute {
                id,
                task,
                endpoint,
                target,
                task_name: String::new(),
                user: String::new(),
                static_route: None,
                strip_prefix: entry.strip_prefix,
            },
        );
    }
    for (id, entry) in doc.tcp {
        let (Ok(id), Ok(port), Ok(listen)) =
            (RouteId::parse(&id), Port::new(entry.port), Port::new(entry.listen))
        else {
            continue;
        };
        let Ok(target) = policy.check(&entry.host, port) else { continue };
        let (task, endpoint) = id.parts();
        table.tcp.insert(
            id.clone(),
            TcpRoute { id, task, endpoint, target, port: listen, task_name: String::new() },
        );
    }
    // Static routes: only what is needed to retract their URLs and keep their tasks.
    for (name, entry) in doc.static_routes.routes {
        let Ok(route_name) = RouteName::parse(&name) else { continue };
        let location = if entry.prefix.is_empty() {
            let host = doc.static_routes.hosts.iter().find(|(_, n)| **n == name).map(|(h, _)| h);
            match host.and_then(|h| h.split('.').next()).map(SubdomainLabel::parse) {
                Some(Ok(label)) => Location::Subdomain(label),
                _ => continue,
            }
        } else {
            match RoutePath::parse(&entry.prefix) {
                Ok(path) => Location::Path(path),
                Err(_) => continue,
            }
        };
        // The target is not needed for either purpose; it is not kept in this entry.
        let placeholder =
            policy.check("127.0.0.1", Port::new(1).expect("1 is a port")).expect("loopback allowed");
        let tasks = entry
            .tasks
            .iter()
            .filter_map(|id| RouteId::parse(id).ok())
            .map(|id| {
                let (task, endpoint) = id.parts();
                Attached { task, endpoint, target: placeholder, task_name: String::new() }
            })
            .collect();
        let route = StaticRoute {
            name: route_name.clone(),
            location,
            load_balanced: entry.load_balanced,
            access: Access::Public,
            targets: vec![],
            enabled: true,
            created: None,
            updated: None,
            updated_by: None,
        };
        table.statics.insert(route_name, ServedStatic { route, tasks, targets: vec![], members: None });
    }
    table
}
