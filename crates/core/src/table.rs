//! The route table: the desired state the router builds each poll (every route that should be
//! live, plus what was refused). Plain data; [`crate::reconcile`] builds it.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::model::{EndpointName, Port, RouteId, Target, TaskId};
use crate::static_routes::{RouteName, StaticRoute};

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
    /// The endpoint asked to serve a static route (`static_route=` in the SDK) instead of its own
    /// `/service/` URL; [`RouteTable::attach_static`] moves it there.
    pub static_route: Option<StaticAsk>,
    /// Strip `/service/<id>` before proxying (default); false for apps that serve under it.
    pub strip_prefix: bool,
}

/// A task endpoint's request to be a target of a static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAsk {
    /// `path` or `subdomain` (`_ROUTER_ENDPOINT_MODE`).
    pub mode: &'static str,
    pub route: RouteName,
}

/// A task endpoint serving a static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub task: TaskId,
    pub endpoint: Option<EndpointName>,
    pub target: Target,
    pub task_name: String,
}

/// An enabled static route with every target it has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedStatic {
    pub route: StaticRoute,
    pub tasks: Vec<Attached>,
    /// Fixed targets, then task targets (no duplicates).
    pub targets: Vec<Target>,
    /// Members allowed in (union of the allowed groups); `None`: any login of the workspace.
    pub members: Option<BTreeSet<String>>,
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
    /// Every defined static route (enabled or not), for status.
    pub static_defined: Vec<StaticRoute>,
    /// Enabled static routes, served.
    pub statics: BTreeMap<RouteName, ServedStatic>,
    /// Host name of `ROUTER_URL` (subdomain routes are `<label>.<this>`), and whether the
    /// affinity cookie is `Secure`.
    pub router_host: String,
    pub secure_cookies: bool,
    /// `ROUTER_TASK_RATE_LIMIT`: the limit of every task endpoint served at `/service/<id>/`.
    pub task_rate_limit: Option<crate::rate_limit::RateLimit>,
}

/// One TCP endpoint with its port on the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRoute {
    pub id: RouteId,
    pub task: TaskId,
    pub endpoint: Option<EndpointName>,
    pub target: Target,
    pub port: Port,
    pub task_name: String,
}

impl RouteTable {
    /// Which task serves each static route now (for the next build's single-target rule).
    pub fn static_incumbents(&self) -> BTreeMap<RouteName, TaskId> {
        self.statics
            .iter()
            .filter_map(|(name, s)| s.tasks.first().map(|a| (name.clone(), a.task.clone())))
            .collect()
    }

    /// The allocated TCP ports, to keep them stable at the next build.
    pub fn tcp_ports(&self) -> BTreeMap<RouteId, crate::model::Port> {
        self.tcp.iter().map(|(id, r)| (id.clone(), r.port)).collect()
    }

    /// Ids of tasks with at least one live route.
    pub fn routed_tasks(&self) -> BTreeSet<&TaskId> {
        let statics = self.statics.values().flat_map(|s| s.tasks.iter().map(|a| &a.task));
        self.http.values().map(|r| &r.task).chain(self.tcp.values().map(|r| &r.task)).chain(statics).collect()
    }
}
