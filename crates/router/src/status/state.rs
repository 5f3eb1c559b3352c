//! What the router reports about itself: written by the router loop after each poll and apply,
//! read by the status server. Task-supplied text in here is already display-safe (escaped, cut).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::retry::{ErrorPolicy, FailingView};
use crate::selftest::SelfTestReport;
use gateway_core::table::{Refusal, RouteTable};
use gateway_core::time::rfc3339;

#[derive(Debug, Clone, Serialize)]
pub struct RouterInfo {
    pub name: String,
    pub url: String,
    pub version: &'static str,
    pub started_at: String,
    pub uptime_seconds: u64,
    pub clearml_api: String,
    pub clearml_web: String,
    pub auth: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct PollInfo {
    pub at: String,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyInfo {
    pub at: String,
    pub ok: bool,
    pub outcome: String,
    pub config_hash: Option<String>,
    pub routes_version: Option<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpRouteView {
    pub id: String,
    pub url: String,
    pub target: String,
    pub task_id: String,
    pub task_name: String,
    pub task_link: String,
    pub owner: String,
    /// Filled when the document is served (the traffic module's windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::traffic::RouteTraffic>,
}

/// A task serving a static route.
#[derive(Debug, Clone, Serialize)]
pub struct LinkedTask {
    pub task_id: String,
    pub task_name: String,
    pub task_link: String,
    pub endpoint: Option<String>,
    pub target: String,
}

/// One static route as the proxy serves it now.
#[derive(Debug, Clone, Serialize)]
pub struct StaticRouteView {
    pub name: String,
    /// `path` or `subdomain`.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub enabled: bool,
    /// `Routing` (enabled, with targets, served by the proxy), `Not In Use` (disabled, or no
    /// target), `Pending` (changed in the file, not applied yet: shown by the admin API).
    pub status: String,
    pub load_balanced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<gateway_core::static_routes::Autoscaling>,
    /// `public`, or `authenticated` with the allowed groups.
    pub access: String,
    pub groups: Vec<String>,
    pub targets: Vec<String>,
    pub tasks: Vec<LinkedTask>,
    /// Filled when the document is served (the traffic module's windows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::traffic::RouteTraffic>,
    /// The definition as applied (the admin API compares it with the file to show `Pending`).
    #[serde(skip)]
    pub applied: Option<gateway_core::static_routes::RawRoute>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TcpRouteView {
    pub id: String,
    pub endpoint: String,
    pub target: String,
    pub task_id: String,
    pub task_name: String,
    pub task_link: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusData {
    pub router: RouterInfo,
    /// True after the first successful apply.
    pub ready: bool,
    /// When ClearML was last read successfully.
    pub last_update: Option<String>,
    pub last_poll: Option<PollInfo>,
    pub last_apply: Option<ApplyInfo>,
    pub reloads: u64,
    pub http_routes: Vec<HttpRouteView>,
    pub tcp_routes: Vec<TcpRouteView>,
    pub refused: Vec<Refusal>,
    pub static_routes: Vec<StaticRouteView>,
    /// Why the static routes or groups file is refused right now (the last good one serves).
    pub static_errors: Vec<String>,
    /// The certificates the proxy serves (files, ACME), their expiry and problems.
    pub certificates: Vec<crate::tls::CertificateView>,
    pub self_test: Option<SelfTestReport>,
    /// Other routers serving tasks of the same ClearML (from the tasks' owner keys).
    pub other_routers: Vec<gateway_core::routers_seen::OtherRouter>,
    /// Things failing now (login, a task's write-back, the structure, a reload) and when each is
    /// tried again.
    pub failing: Vec<FailingView>,
    #[serde(skip)]
    started: SystemTime,
}

/// Counters behind /metrics that are not in the status document.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub applies_ok: u64,
    pub applies_failed: u64,
    pub apply_seconds_sum: f64,
    pub polls_ok: u64,
    pub polls_failed: u64,
    /// Error policy figures by kind of failing thing.
    pub errors: BTreeMap<&'static str, ErrorCounts>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorCounts {
    pub failing: usize,
    pub failures_total: u64,
    pub deferred_total: u64,
    pub recoveries_total: u64,
}

#[derive(Clone)]
pub struct SharedStatus {
    data: Arc<RwLock<StatusData>>,
    counters: Arc<RwLock<Counters>>,
    /// The self-test report as it changes (the page's live log).
    self_test_updates: Arc<tokio::sync::watch::Sender<Option<SelfTestReport>>>,
}

impl SharedStatus {
    pub fn new(router: RouterInfo) -> Self {
        let data = StatusData {
            router,
            ready: false,
            last_update: None,
            last_poll: None,
            last_apply: None,
            reloads: 0,
            http_routes: Vec::new(),
            tcp_routes: Vec::new(),
            refused: Vec::new(),
            static_routes: Vec::new(),
            static_errors: Vec::new(),
            certificates: Vec::new(),
            self_test: None,
            other_routers: Vec::new(),
            failing: Vec::new(),
            started: SystemTime::now(),
        };
        Self {
            data: Arc::new(RwLock::new(data)),
            counters: Default::default(),
            self_test_updates: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }

    /// The status document as of now.
    pub fn snapshot(&self) -> StatusData {
        let mut data = self.data.read().expect("status lock").clone();
        data.router.uptime_seconds = data.started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
        data
    }

    pub fn counters(&self) -> Counters {
        self.counters.read().expect("status lock").clone()
    }

    /// Publishes what the error policies know now.
    pub fn errors(&self, policies: &[&ErrorPolicy]) {
        let now = std::time::Instant::now();
        let mut counters = self.counters.write().expect("status lock");
        for p in policies {
            counters.errors.insert(
                p.kind,
                ErrorCounts {
                    failing: p.failing_count(),
                    failures_total: p.failures_total,
                    deferred_total: p.deferred_total,
                    recoveries_total: p.recoveries_total,
                },
            );
        }
        self.data.write().expect("status lock").failing = policies.iter().flat_map(|p| p.view(now)).collect();
    }

    pub fn poll_succeeded(&self) {
        let now = rfc3339(SystemTime::now());
        let mut data = self.data.write().expect("status lock");
        data.last_update = Some(now.clone());
        data.last_poll = Some(PollInfo { at: now, ok: true, error: None });
        self.counters.write().expect("status lock").polls_ok += 1;
    }

    pub fn poll_failed(&self, error: String) {
        let mut data = self.data.write().expect("status lock");
        data.last_poll = Some(PollInfo { at: rfc3339(SystemTime::now()), ok: false, error: Some(error) });
        self.counters.write().expect("status lock").polls_failed += 1;
    }

    /// Records an apply; on success the routes shown become `table`'s.
    pub fn applied(&self, result: ApplyRecord<'_>) {
        let mut counters = self.counters.write().expect("status lock");
        counters.apply_seconds_sum += result.took.as_secs_f64();
        let mut data = self.data.write().expect("status lock");
        data.reloads = result.reloads;
        let ok = result.error.is_none();
        if ok {
            counters.applies_ok += 1;
            data.ready = true;
        } else {
            counters.applies_failed += 1;
        }
        data.last_apply = Some(ApplyInfo {
            at: rfc3339(SystemTime::now()),
            ok,
            outcome: result.outcome.to_owned(),
            config_hash: result.config_hash.map(str::to_owned),
            routes_version: result.routes_version.map(str::to_owned),
            error: result.error,
            duration_ms: result.took.as_millis() as u64,
        });
    }

    /// The routes now live and the refusals of the last poll.
    pub fn routes(&self, table: &RouteTable, router_url: &str, tcp_address: Option<&str>) {
        let mut data = self.data.write().expect("status lock");
        let web = data.router.clearml_web.clone();
        let link = |task: &str| format!("{web}/projects/*/experiments/{task}");
        data.http_routes = table
            .http
            .values()
            .map(|r| HttpRouteView {
                id: r.id.to_string(),
                url: crate::advertise::route_url(router_url, &r.id),
                target: r.target.to_string(),
                task_id: r.task.to_string(),
                task_name: r.task_name.clone(),
                task_link: link(r.task.as_str()),
                owner: r.user.clone(),
                traffic: None,
            })
            .collect();
        data.tcp_routes = table
            .tcp
            .values()
            .map(|r| TcpRouteView {
                id: r.id.to_string(),
                endpoint: format!("{}:{}", tcp_address.unwrap_or("?"), r.port),
                target: r.target.to_string(),
                task_id: r.task.to_string(),
                task_name: r.task_name.clone(),
                task_link: link(r.task.as_str()),
            })
            .collect();
        data.refused = table.refusals.clone();
        data.static_routes = table
            .static_defined
            .iter()
            .map(|def| {
                let served = table.statics.get(&def.name);
                let targets: Vec<String> =
                    served.map(|s| s.targets.iter().map(ToString::to_string).collect()).unwrap_or_default();
                let tasks = served
                    .map(|s| {
                        s.tasks
                            .iter()
                            .map(|a| LinkedTask {
                                task_id: a.task.to_string(),
                                task_name: a.task_name.clone(),
                                task_link: link(a.task.as_str()),
                                endpoint: a.endpoint.as_ref().map(|e| e.as_str().to_owned()),
                                target: a.target.to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let (access, groups) = match &def.access {
                    gateway_core::static_routes::Access::Public => ("public", vec![]),
                    gateway_core::static_routes::Access::Authenticated { groups } => {
                        ("authenticated", groups.iter().map(|g| g.as_str().to_owned()).collect())
                    }
                };
                StaticRouteView {
                    name: def.name.to_string(),
                    kind: def.location.kind().to_owned(),
                    url: gateway_core::static_routes::static_url(router_url, &def.location),
                    enabled: def.enabled,
                    status: if served.is_some() && !targets.is_empty() { "Routing" } else { "Not In Use" }
                        .into(),
                    load_balanced: def.load_balanced,
                    autoscaling: def.autoscaling,
                    access: access.into(),
                    groups,
                    targets,
                    tasks,
                    traffic: None,
                    applied: Some(def.to_raw()),
                }
            })
            .collect();
    }

    pub fn static_errors(&self, errors: Vec<String>) {
        self.data.write().expect("status lock").static_errors = errors;
    }

    pub fn certificates(&self, certificates: Vec<crate::tls::CertificateView>) {
        self.data.write().expect("status lock").certificates = certificates;
    }

    pub fn set_self_test(&self, report: SelfTestReport) {
        self.data.write().expect("status lock").self_test = Some(report.clone());
        self.self_test_updates.send_replace(Some(report));
    }

    /// The self-test report now and each change after.
    pub fn self_test_updates(&self) -> tokio::sync::watch::Receiver<Option<SelfTestReport>> {
        self.self_test_updates.subscribe()
    }

    pub fn other_routers(&self, routers: Vec<gateway_core::routers_seen::OtherRouter>) {
        self.data.write().expect("status lock").other_routers = routers;
    }
}

/// One apply's result, as the router loop saw it.
pub struct ApplyRecord<'a> {
    pub outcome: &'a str,
    pub config_hash: Option<&'a str>,
    pub routes_version: Option<&'a str>,
    pub error: Option<String>,
    pub took: Duration,
    pub reloads: u64,
}
