//! Port allocation for TCP endpoints from `TCP_PORT_START..=TCP_PORT_END`. Deterministic and
//! stable: an endpoint keeps the port it had (from the last applied table, or the port its task
//! says it was given), new endpoints take the lowest free port, and ports of endpoints that are
//! gone are free again.

use std::collections::{BTreeMap, BTreeSet};

use crate::env;
use crate::model::{Port, RouteId};
use crate::table::{Refusal, TcpRoute};
use crate::task::TcpRequest;

/// What allocation needs besides the requests.
#[derive(Debug, Clone, Default)]
pub struct TcpPlan {
    /// `TCP_ROUTER_ADDRESS`: what clients connect to; without it no TCP endpoint is published.
    pub router_address: Option<String>,
    pub first_port: u16,
    pub last_port: u16,
    /// Ports of the last applied table (or the one left on disk by a previous run).
    pub previous: BTreeMap<RouteId, Port>,
}

impl TcpPlan {
    fn in_range(&self, port: Port) -> bool {
        (self.first_port..=self.last_port).contains(&port.get())
    }
}

pub fn allocate(
    mut requests: Vec<TcpRequest>,
    plan: &TcpPlan,
) -> (BTreeMap<RouteId, TcpRoute>, Vec<Refusal>) {
    let mut refusals = Vec::new();
    if plan.router_address.is_none() {
        for r in requests {
            refusals.push(refusal(
                &r,
                &format!(
                    "{} is not set, so the router cannot publish TCP endpoints",
                    env::TCP_ROUTER_ADDRESS
                ),
            ));
        }
        return (BTreeMap::new(), refusals);
    }
    requests.sort_by(|a, b| a.id.cmp(&b.id));
    let mut used = BTreeSet::new();
    let mut chosen: BTreeMap<RouteId, Port> = BTreeMap::new();
    // Keep what endpoints had: our own record first, then what the task says we gave it.
    reserve(&requests, plan, &mut chosen, &mut used, |r| plan.previous.get(&r.id).copied());
    reserve(&requests, plan, &mut chosen, &mut used, |r| r.claimed_port);
    let mut free =
        (plan.first_port..=plan.last_port).filter_map(|p| Port::new(p).ok()).filter(|p| !used.contains(p));
    let mut routes = BTreeMap::new();
    for r in requests {
        let port = match chosen.get(&r.id).copied().or_else(|| free.next()) {
            Some(port) => port,
            None => {
                let size = plan.last_port - plan.first_port + 1;
                refusals.push(refusal(
                    &r,
                    &format!(
                        "no free TCP port: all {size} ports of {}..{} ({}..{}) are in use",
                        env::TCP_PORT_START,
                        env::TCP_PORT_END,
                        plan.first_port,
                        plan.last_port
                    ),
                ));
                continue;
            }
        };
        routes.insert(
            r.id.clone(),
            TcpRoute {
                id: r.id,
                task: r.task,
                endpoint: r.endpoint,
                target: r.target,
                port,
                task_name: r.task_name,
            },
        );
    }
    (routes, refusals)
}

/// Gives each request without a port the one `pick` names, if it is in range and still free.
fn reserve(
    requests: &[TcpRequest],
    plan: &TcpPlan,
    chosen: &mut BTreeMap<RouteId, Port>,
    used: &mut BTreeSet<Port>,
    pick: impl Fn(&TcpRequest) -> Option<Port>,
) {
    for r in requests {
        if chosen.contains_key(&r.id) {
            continue;
        }
        if let Some(port) = pick(r).filter(|p| plan.in_range(*p) && !used.contains(p)) {
            used.insert(port);
            chosen.insert(r.id.clone(), port);
        }
    }
}

fn refusal(r: &TcpRequest, reason: &str) -> Refusal {
    let endpoint = r.endpoint.as_ref().map(|e| e.as_str().to_owned()).unwrap_or_else(|| "(default)".into());
    Refusal::endpoint(r.task.as_str(), endpoint, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TargetPolicy, TaskId};

    fn request(id: &str, claimed: Option<u16>) -> TcpRequest {
        let task = TaskId::parse(id).unwrap();
        TcpRequest {
            id: RouteId::for_endpoint(&task, None),
            task,
            endpoint: None,
            target: TargetPolicy::default().check("10.0.0.1", Port::new(22).unwrap()).unwrap(),
            claimed_port: claimed.map(|p| Port::new(p).unwrap()),
            task_name: String::new(),
        }
    }

    fn plan(previous: &[(&str, u16)]) -> TcpPlan {
        TcpPlan {
            router_address: Some("gw".into()),
            first_port: 100,
            last_port: 102,
            previous: previous
                .iter()
                .map(|(id, p)| (RouteId::parse(id).unwrap(), Port::new(*p).unwrap()))
                .collect(),
        }
    }

    fn ports(routes: &BTreeMap<RouteId, TcpRoute>) -> Vec<(String, u16)> {
        routes.values().map(|r| (r.id.as_str().to_owned(), r.port.get())).collect()
    }

    #[test]
    fn keeps_ports_fills_lowest_and_refuses_when_exhausted() {
        let (routes, refused) = allocate(vec![request("b", None), request("a", None)], &plan(&[("b", 102)]));
        assert_eq!(ports(&routes), vec![("a".into(), 100), ("b".into(), 102)]);
        assert!(refused.is_empty());
        // A restarted router with no record adopts the port the task was given.
        let (routes, _) = allocate(vec![request("c", Some(101)), request("d", None)], &plan(&[]));
        assert_eq!(ports(&routes), vec![("c".into(), 101), ("d".into(), 100)]);
        let many = ["a", "b", "c", "d"].map(|id| request(id, None)).to_vec();
        let (routes, refused) = allocate(many, &plan(&[]));
        assert_eq!(routes.len(), 3);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].reason.contains("no free TCP port"), "{}", refused[0].reason);
        assert_eq!(refused[0].task, "d");
    }

    #[test]
    fn without_a_router_address_nothing_is_published() {
        let (routes, refused) = allocate(vec![request("a", None)], &TcpPlan::default());
        assert!(routes.is_empty());
        assert!(refused[0].reason.contains("TCP_ROUTER_ADDRESS"));
    }
}
