//! Builds the desired route table from a snapshot. Pure: same snapshot, same table.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{EndpointName, RouteId, Target, TargetPolicy, TaskId};
use crate::sources::snapshot::Snapshot;
use crate::sources::tasks::{read_task_with, wants_routing, RouterIdentity};
use crate::tcp_ports::{allocate, TcpPlan, TcpRoute};

/// One HTTP endpoint of a task, served at `/service/<id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRoute {
    pub id: RouteId,
    pub task: TaskId,
    pub endpoint: Option<EndpointName>,
    pub target: Target,
    /// Display-safe (escaped, cut) task name and owner, for summaries and logs only.
    pub task_name: String,
    pub user: String,
}

/// A task or endpoint the router will not route, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Display-safe task id (escaped if the id itself was the problem).
    pub task: String,
    pub endpoint: Option<String>,
    pub reason: String,
}

impl Refusal {
    pub fn task(task: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { task: task.into(), endpoint: None, reason: reason.into() }
    }
    pub fn endpoint(task: impl Into<String>, endpoint: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { task: task.into(), endpoint: Some(endpoint.into()), reason: reason.into() }
    }
}

/// The desired state: every route that should be live, plus what was refused.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub http: BTreeMap<RouteId, HttpRoute>,
    /// TCP endpoints with their allocated ports.
    pub tcp: BTreeMap<RouteId, TcpRoute>,
    pub refusals: Vec<Refusal>,
    /// Current runtime dict of each routed task, as polled (write-back compares against it).
    pub runtimes: BTreeMap<TaskId, Map<String, Value>>,
}

impl RouteTable {
    /// The table without TCP endpoints (they are refused: no `TCP_ROUTER_ADDRESS`).
    pub fn build(snapshot: &Snapshot, policy: &TargetPolicy) -> Self {
        Self::build_with(snapshot, policy, &TcpPlan::default(), &RouterIdentity::default())
    }

    /// The table for one router: `router_name` leaves endpoints served by other routers alone.
    pub fn build_with(
        snapshot: &Snapshot,
        policy: &TargetPolicy,
        tcp: &TcpPlan,
        me: &RouterIdentity<'_>,
    ) -> Self {
        let mut table = RouteTable::default();
        let mut seen = BTreeSet::new();
        let mut tcp_requests = Vec::new();
        for task in snapshot.tasks.iter().filter(|t| wants_routing(t)) {
            let read = read_task_with(task, policy, me);
            table.refusals.extend(read.refusals);
            let Some(id) = read.task else { continue };
            if !seen.insert(id.clone()) {
                table
                    .refusals
                    .push(Refusal::task(id.as_str(), "duplicate task id in the snapshot; kept the first"));
                continue;
            }
            for route in read.routes {
                table.http.insert(route.id.clone(), route);
            }
            tcp_requests.extend(read.tcp);
            table.runtimes.insert(id, read.runtime);
        }
        let (tcp_routes, tcp_refusals) = allocate(tcp_requests, tcp);
        table.tcp = tcp_routes;
        table.refusals.extend(tcp_refusals);
        table
    }

    /// The allocated TCP ports, to keep them stable at the next build.
    pub fn tcp_ports(&self) -> BTreeMap<RouteId, crate::model::Port> {
        self.tcp.iter().map(|(id, r)| (id.clone(), r.port)).collect()
    }

    /// Ids of tasks with at least one live route.
    pub fn routed_tasks(&self) -> BTreeSet<&TaskId> {
        self.http.values().map(|r| &r.task).chain(self.tcp.values().map(|r| &r.task)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_running_tagged_tasks_are_routed_and_duplicates_refused() {
        let running = |id: &str, port: u16| {
            json!({"id": id, "status": "in_progress", "system_tags": ["external_service"],
                   "runtime": {"_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.1", "_PORT": port}})
        };
        let mut stopped = running("b", 2);
        stopped["status"] = json!("stopped");
        let mut untagged = running("c", 3);
        untagged["system_tags"] = json!([]);
        let snapshot =
            Snapshot { tasks: vec![running("a", 1), stopped, untagged, running("a", 4)], company: None };
        let table = RouteTable::build(&snapshot, &TargetPolicy::default());
        assert_eq!(table.http.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(table.http.values().next().unwrap().target.to_string(), "10.0.0.1:1");
        assert_eq!(table.refusals.len(), 1);
        assert!(table.refusals[0].reason.contains("duplicate"));
    }
}
