//! The routing table a previous run left on disk (`routes.json`): after a restart the router
//! knows what it advertised (to take it back) and which TCP ports it gave out (to keep them).

use serde::Deserialize;
use std::collections::BTreeMap;

use crate::model::{Port, RouteId, TargetPolicy};
use crate::reconcile::{HttpRoute, RouteTable};
use crate::tcp_ports::TcpRoute;

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    routes: BTreeMap<String, HttpEntry>,
    #[serde(default)]
    tcp: BTreeMap<String, TcpEntry>,
}

#[derive(Deserialize)]
struct HttpEntry {
    host: String,
    port: u16,
}

#[derive(Deserialize)]
struct TcpEntry {
    listen: u16,
    host: String,
    port: u16,
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
    table
}
