//! Builds the desired route table from a snapshot. Pure: same snapshot, same table.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{TargetPolicy, TaskId};
use crate::snapshot::Snapshot;
use crate::static_routes::{Access, Groups, RouteName, StaticRoute};
use crate::table::{Attached, HttpRoute, Refusal, RouteTable, ServedStatic};
use crate::task::{read_task_with, wants_routing, RouterIdentity};
use crate::tcp_ports::{allocate, TcpPlan};

impl RouteTable {
    /// The table without TCP endpoints (they are refused: no `TCP_ROUTER_ADDRESS`).
    pub fn build(snapshot: &Snapshot, policy: &TargetPolicy) -> Self {
        let mut table = Self::build_with(snapshot, policy, &TcpPlan::default(), &RouterIdentity::default());
        // No static routes defined: endpoints asking for one are refused.
        table.attach_static(&[], &Groups::new(), &BTreeMap::new());
        table
    }

    /// The table for one router: `router_name` leaves endpoints served by other routers alone.
    /// Endpoints asking for a static route stay in `http` until [`Self::attach_static`].
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

    /// Moves endpoints that asked for a static route from `http` onto that route.
    ///
    /// A route that is not load balanced has one target: a fixed target if it has one, else the
    /// task that already serves it (`incumbents`, from the previous table), else the task with
    /// the smallest id. Any other task asking for it is refused ("first one keeps it"), as the
    /// SDK itself refuses to attach to an active route that is not load balanced.
    pub fn attach_static(
        &mut self,
        routes: &[StaticRoute],
        groups: &Groups,
        incumbents: &BTreeMap<RouteName, TaskId>,
    ) {
        self.static_defined = routes.to_vec();
        self.statics = routes
            .iter()
            .filter(|r| r.enabled)
            .map(|r| {
                let members = match &r.access {
                    Access::Public => None,
                    Access::Authenticated { groups: allowed } if allowed.is_empty() => None,
                    Access::Authenticated { groups: allowed } => {
                        Some(allowed.iter().filter_map(|g| groups.get(g)).flatten().cloned().collect())
                    }
                };
                let served =
                    ServedStatic { route: r.clone(), tasks: vec![], targets: r.targets.clone(), members };
                (r.name.clone(), served)
            })
            .collect();
        let mut asks: Vec<HttpRoute> = Vec::new();
        self.http.retain(|_, r| {
            if r.static_route.is_some() {
                asks.push(r.clone());
                false
            } else {
                true
            }
        });
        // Incumbents first, then by task id (the map order): deterministic.
        asks.sort_by_key(|r| {
            let ask = r.static_route.as_ref().expect("filtered");
            (incumbents.get(&ask.route) != Some(&r.task), r.id.clone())
        });
        for r in asks {
            let ask = r.static_route.clone().expect("filtered");
            let endpoint = r.endpoint.as_ref().map(|e| e.as_str().to_owned()).unwrap_or("(default)".into());
            let refuse = |reason: String| Refusal::endpoint(r.task.as_str(), endpoint.clone(), reason);
            let Some(served) = self.statics.get_mut(&ask.route) else {
                let why = if routes.iter().any(|d| d.name == ask.route) {
                    format!("static route {} is disabled", ask.route)
                } else {
                    format!("no static route named {} is defined", ask.route)
                };
                self.refusals.push(refuse(why));
                continue;
            };
            if served.route.location.kind() != ask.mode {
                self.refusals.push(refuse(format!(
                    "asked for static route {} as {}, but it is a {} route",
                    ask.route,
                    ask.mode,
                    served.route.location.kind()
                )));
                continue;
            }
            if !served.route.load_balanced && !served.targets.is_empty() {
                let by = served
                    .tasks
                    .first()
                    .map(|a| format!("task {}", a.task))
                    .unwrap_or_else(|| "its fixed target".into());
                self.refusals.push(refuse(format!(
                    "static route {} is not load balanced and is already served by {by}",
                    ask.route
                )));
                continue;
            }
            if !served.targets.contains(&r.target) {
                served.targets.push(r.target);
            }
            served.tasks.push(Attached {
                task: r.task.clone(),
                endpoint: r.endpoint.clone(),
                target: r.target,
                task_name: r.task_name.clone(),
            });
        }
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

    #[test]
    fn static_asks_attach_by_name_with_the_single_target_rule() {
        use crate::static_routes::{validate_doc, RoutesFileDoc};
        let ask = |id: &str, port: u16, mode: &str, route: &str| {
            json!({"id": id, "status": "in_progress", "system_tags": ["external_service"],
                   "runtime": {"_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.1", "_PORT": port,
                               "_ROUTER_ENDPOINT_MODE": mode, "_ROUTER_ENDPOINT_MODE_PARAM": route}})
        };
        let tasks = vec![
            ask("a", 1, "path", "single"),
            ask("b", 2, "path", "single"),
            ask("c", 3, "path", "pool"),
            ask("d", 4, "path", "pool"),
            ask("e", 5, "subdomain", "pool"),
            ask("f", 6, "path", "off"),
            ask("g", 7, "path", "fixed"),
            ask("h", 8, "path", "Bad Name"),
        ];
        let doc: RoutesFileDoc = serde_json::from_value(json!({"routes": [
            {"name": "single", "path": "/single"},
            {"name": "pool", "path": "/pool", "load_balanced": true, "targets": ["10.0.0.9:80"]},
            {"name": "off", "path": "/off", "enabled": false},
            {"name": "fixed", "path": "/fixed", "targets": ["10.0.0.9:81"]},
        ]}))
        .unwrap();
        let policy = TargetPolicy::default();
        let routes = validate_doc(&doc, &policy).unwrap();
        let snapshot = Snapshot { tasks, company: None };
        let mut table =
            RouteTable::build_with(&snapshot, &policy, &TcpPlan::default(), &RouterIdentity::default());
        let b = TaskId::parse("b").unwrap();
        let incumbents = [(RouteName::parse("single").unwrap(), b)].into();
        table.attach_static(&routes, &Groups::new(), &incumbents);
        assert!(table.http.is_empty(), "static asks get no /service/ route");
        let served = |name: &str| {
            let s = &table.statics[&RouteName::parse(name).unwrap()];
            let tasks: Vec<&str> = s.tasks.iter().map(|a| a.task.as_str()).collect();
            (tasks, s.targets.iter().map(ToString::to_string).collect::<Vec<_>>())
        };
        assert_eq!(served("single"), (vec!["b"], vec!["10.0.0.1:2".to_owned()]), "the incumbent keeps it");
        assert_eq!(served("pool").0, vec!["c", "d"]);
        assert_eq!(served("pool").1, vec!["10.0.0.9:80", "10.0.0.1:3", "10.0.0.1:4"]);
        assert_eq!(served("fixed").0, Vec::<&str>::new(), "a fixed target wins");
        let reason = |task: &str| {
            table.refusals.iter().find(|r| r.task == task).map(|r| r.reason.clone()).unwrap_or_default()
        };
        assert!(reason("a").contains("already served by task b"), "{}", reason("a"));
        assert!(reason("e").contains("as subdomain, but it is a path route"), "{}", reason("e"));
        assert!(reason("f").contains("static route off is disabled"), "{}", reason("f"));
        assert!(reason("g").contains("already served by its fixed target"), "{}", reason("g"));
        assert!(
            reason("h").contains("_ROUTER_ENDPOINT_MODE_PARAM: static route name contains"),
            "{}",
            reason("h")
        );
    }
}
