//! The router's main loop: poll ClearML, build the route table, apply it to the proxy, then
//! advertise the live endpoints back to the tasks. A failed poll or apply keeps the last good
//! routes serving; the error policy (`retry`) says when it is tried again.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::advertise::Advertiser;
use crate::apply::probe::{ProxyControl, ProxyProbe};
use crate::apply::reloader::Reloader;
use crate::apply::{Applier, ApplyOutcome};
use crate::config::{env, queue_pattern_regex, QueueFilter, Settings};
use crate::retry::{api_severity, Backoff, ErrorPolicy, Severity};
use clearml_api::{ApiError, ClearmlApi, ClearmlClient, TaskQuery, TaskWatch};
use std::collections::BTreeMap;

use crate::static_files::{groups_parser, routes_parser, Watched};
use crate::status::state::{ApplyRecord, RouterInfo};
use crate::status::SharedStatus;
use gateway_core::model::{Port, RouteId, TargetPolicy, TaskId};
use gateway_core::routes_file::table_from_routes_file;
use gateway_core::snapshot::Snapshot;
use gateway_core::static_routes::{Groups, RouteName, StaticRoute};
use gateway_core::table::RouteTable;
use gateway_core::task::RouterIdentity;
use gateway_core::tcp_ports::TcpPlan;

/// How long the server's static routes are reused before asking again (admins edit them rarely).
const SERVER_ROUTES_TTL: Duration = Duration::from_secs(10);

/// How long resolved queue ids are reused before asking ClearML again (queues come and go rarely).
const QUEUE_CACHE_TTL: Duration = Duration::from_secs(10);

/// How often a poll fetches every task again (the others fetch only what changed): catches what a
/// change poll cannot see (deleted or untagged tasks) within this time.
const FULL_POLL_PERIOD: Duration = Duration::from_secs(60);
/// How far before the newest `last_update` seen a change poll looks: writes that the server
/// stamped earlier but made visible later are still seen.
const CHANGE_POLL_LOOK_BACK: Duration = Duration::from_secs(2);

/// Error policy keys: the ClearML poll, the structural part of an apply, the proxy reload.
const POLL: &str = "poll";
const STRUCTURE: &str = "structure";
const RELOAD: &str = "reload";

/// The poll is what notices ClearML is back: short first retries and a low cap. A refused login
/// is retried every 10 s.
const POLL_BACKOFF: Backoff = Backoff {
    transient_first: Duration::from_millis(250),
    permanent_first: Duration::from_secs(10),
    cap: Duration::from_secs(5),
};

fn clearml_policy(backoff: Backoff) -> ErrorPolicy {
    ErrorPolicy::new("clearml", backoff)
        .with_messages("ClearML poll failed; the last good routes keep serving", "ClearML polling recovered")
}

fn full_poll_every(poll_interval: Duration) -> u32 {
    (FULL_POLL_PERIOD.as_secs_f64() / poll_interval.as_secs_f64().max(0.001)).ceil() as u32
}

/// Generic over ClearML and the proxy's control listener so that tests can stand in for both.
pub struct RouterLoop<R: Reloader, C: ClearmlApi = ClearmlClient, P: ProxyControl = ProxyProbe> {
    settings: Settings,
    client: C,
    applier: Applier<R, P>,
    advertiser: Advertiser,
    policy: TargetPolicy,
    tcp: TcpPlan,
    queues: Option<(Instant, Vec<String>)>,
    /// The tasks asking for endpoints, kept current by polls that fetch only changes.
    tasks: TaskWatch,
    /// Backoff for the ClearML poll (which logs in) and for applies ("structure", "reload").
    clearml_errors: ErrorPolicy,
    apply_errors: ErrorPolicy,
    last_refusals: BTreeSet<String>,
    status: SharedStatus,
    static_routes: StaticInputs,
    tls: crate::tls::Tls,
}

/// The static routes file and the groups file, re-read on every tick (a read of two small files;
/// unchanged content is not parsed again) and kept at their last good content.
pub struct StaticInputs {
    pub routes: Option<Watched<Vec<StaticRoute>>>,
    /// The routes the ClearML server defines (`routers.get_routes`); `None` on a server without
    /// that call (open source), where the file is the only source.
    pub server: Option<Vec<StaticRoute>>,
    /// Server routes left out because they do not validate.
    pub server_problems: Vec<String>,
    /// What was last logged about the server's routes (one log line per change).
    logged_problems: Vec<String>,
    /// When the server's routes were last asked for.
    pub server_asked: Option<Instant>,
    pub groups: Option<Watched<Groups>>,
    /// Which task serves each static route, from the last applied table.
    pub incumbents: BTreeMap<RouteName, TaskId>,
    /// The host of `ROUTER_URL` (subdomain routes are under it).
    router_host: String,
}

impl StaticInputs {
    pub fn new(settings: &Settings) -> Self {
        Self {
            routes: settings.static_routes_file.clone().map(Watched::new),
            groups: settings.groups_file.clone().map(Watched::new),
            server: None,
            server_problems: Vec::new(),
            logged_problems: Vec::new(),
            server_asked: None,
            incumbents: BTreeMap::new(),
            router_host: gateway_core::static_routes::router_host(&settings.router_url),
        }
    }

    /// Re-reads the files; logs each accepted or refused content once.
    pub fn refresh(&mut self, policy: &TargetPolicy) {
        if let Some(w) = self.routes.as_mut() {
            if let Some(msg) = w.refresh(routes_parser(policy)) {
                match &w.error {
                    None => tracing::info!(file = %msg, routes = w.good.len(), "static routes loaded"),
                    Some(_) => tracing::error!(error = %msg, "static routes file refused"),
                }
            }
        }
        if let Some(w) = self.groups.as_mut() {
            if let Some(msg) = w.refresh(groups_parser) {
                match &w.error {
                    None => tracing::info!(file = %msg, groups = w.good.len(), "groups loaded"),
                    Some(_) => tracing::error!(error = %msg, "groups file refused"),
                }
            }
        }
    }

    /// Puts the static routes (and the router settings they need) into `table`.
    pub fn attach(&self, settings: &Settings, table: &mut RouteTable) {
        table.router_host = gateway_core::static_routes::router_host(&settings.router_url);
        table.secure_cookies = settings.auth.secure_cookies;
        table.task_rate_limit = settings.traffic.task_rate_limit.clone();
        let empty_groups = Groups::new();
        let groups = self.groups.as_ref().map(|w| &w.good).unwrap_or(&empty_groups);
        let (routes, _) = merge_static_routes(self.server.as_deref(), self.file_routes());
        let (routes, _) = gateway_core::static_routes::drop_host_conflicts(routes, &self.router_host);
        table.attach_static(&routes, groups, &self.incumbents);
    }

    /// The routes file's last good routes (none without a file).
    fn file_routes(&self) -> &[StaticRoute] {
        self.routes.as_ref().map(|w| w.good.as_slice()).unwrap_or_default()
    }

    /// Takes the server's static routes (what `routers.get_routes` answered; `None`: no such call).
    pub fn set_server_routes(&mut self, answer: Option<Vec<serde_json::Value>>, policy: &TargetPolicy) {
        self.server_asked = Some(Instant::now());
        let mut problems = Vec::new();
        self.server = answer.map(|routes| {
            routes
                .iter()
                .filter_map(|r| match gateway_core::static_routes::from_server(r, policy) {
                    Ok(route) => Some(route),
                    Err(e) => {
                        problems.push(format!("routers.get_routes: {e}; left out"));
                        None
                    }
                })
                .collect()
        });
        self.server_problems = problems;
        let now = self.server_errors();
        if now != self.logged_problems {
            for problem in &now {
                tracing::warn!(problem = %problem, "static route from the ClearML server");
            }
            self.logged_problems = now;
        }
    }

    /// Why a file is refused right now (the last good content serves meanwhile).
    pub fn errors(&self) -> Vec<String> {
        let routes = self.routes.as_ref().and_then(|w| w.error.clone());
        let groups = self.groups.as_ref().and_then(|w| w.error.clone());
        routes.into_iter().chain(groups).chain(self.server_errors()).collect()
    }

    /// Server routes left out, and names defined both there and in the file (derived from the
    /// current routes each time, so never stale after a file edit).
    fn server_errors(&self) -> Vec<String> {
        let (routes, conflicts) = merge_static_routes(self.server.as_deref(), self.file_routes());
        let hosts = gateway_core::static_routes::drop_host_conflicts(routes, &self.router_host).1;
        self.server_problems.iter().cloned().chain(conflicts).chain(hosts).collect()
    }
}

/// The server's routes (where enterprise admins edit them) and then the file's; a name defined in
/// both is served as the server defines it, and reported.
fn merge_static_routes(
    server: Option<&[StaticRoute]>,
    file: &[StaticRoute],
) -> (Vec<StaticRoute>, Vec<String>) {
    let server = server.unwrap_or_default();
    let mut routes = server.to_vec();
    let mut conflicts = Vec::new();
    for route in file {
        if server.iter().any(|s| s.name == route.name) {
            conflicts.push(format!(
                "static route {} is defined both on the ClearML server and in the routes file; the server's definition is served",
                route.name
            ));
        } else {
            routes.push(route.clone());
        }
    }
    (routes, conflicts)
}

/// Builds the SSRF policy from the settings.
pub fn target_policy(settings: &Settings) -> TargetPolicy {
    TargetPolicy {
        allow_loopback: settings.allow_loopback_targets,
        proxy_ports: settings.proxy_ports(),
        self_addresses: settings.self_addresses(),
        allowed_networks: settings.traffic.target_networks.clone(),
    }
}

/// Who this router is, for reading tasks.
pub fn identity(settings: &Settings) -> RouterIdentity<'_> {
    RouterIdentity {
        name: Some(&settings.router_name),
        url: Some(&settings.router_url),
        tcp_address: settings.tcp.router_address.as_deref(),
        tcp_ports: Some((settings.tcp.port_start.get(), settings.tcp.port_end.get())),
    }
}

/// TCP allocation settings; `previous` keeps ports stable across polls and restarts.
pub fn tcp_plan(settings: &Settings, previous: BTreeMap<RouteId, Port>) -> TcpPlan {
    TcpPlan {
        router_address: settings.tcp.router_address.clone(),
        first_port: settings.tcp.port_start.get(),
        last_port: settings.tcp.port_end.get(),
        previous,
    }
}

impl<R: Reloader, C: ClearmlApi> RouterLoop<R, C, ProxyProbe> {
    /// The router's way to the proxy's control listener, with its `docker exec` fallback when
    /// the router is not on the proxy's network: the status server's metrics and traffic figures
    /// read the proxy the same way the applier confirms it.
    pub fn proxy_probe(&self) -> ProxyProbe {
        self.applier.probe.clone()
    }
}

impl<R: Reloader, P: ProxyControl> RouterLoop<R, ClearmlClient, P> {
    /// Counts and latency of this router's ClearML calls.
    pub fn api_metrics(&self) -> std::sync::Arc<clearml_api::ApiMetrics> {
        self.client.metrics()
    }
}

impl<R: Reloader, C: ClearmlApi, P: ProxyControl> RouterLoop<R, C, P> {
    pub fn new(settings: Settings, client: C, applier: Applier<R, P>) -> Self {
        let advertiser = Advertiser::new(
            &settings.router_name,
            &settings.router_url,
            settings.tcp.router_address.as_deref(),
        );
        let routes_file = applier.lua_dir.join(gateway_render::ROUTES_FILE);
        let left_on_disk = match crate::apply::files::read_if_exists(&routes_file) {
            Ok(Some(bytes)) => table_from_routes_file(&bytes),
            _ => RouteTable::default(),
        };
        let mut advertiser =
            advertiser.with_journal(settings.proxy.state_dir.join(crate::advertise::journal::FILE));
        advertiser.assume_advertised(&left_on_disk);
        let mut static_routes = StaticInputs::new(&settings);
        static_routes.incumbents = left_on_disk.static_incumbents();
        let tcp = tcp_plan(&settings, left_on_disk.tcp_ports());
        let policy = target_policy(&settings);
        let status = SharedStatus::new(RouterInfo {
            name: settings.router_name.clone(),
            url: settings.router_url.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started_at: gateway_core::time::rfc3339(std::time::SystemTime::now()),
            uptime_seconds: 0,
            clearml_api: settings.api_host.clone(),
            clearml_web: settings.web_host.clone(),
            auth: applier.layout.auth.state(),
        });
        let tasks = TaskWatch::new(full_poll_every(settings.poll_interval), CHANGE_POLL_LOOK_BACK);
        let tls = crate::tls::Tls::new(&settings, &applier.lua_dir);
        Self {
            tls,
            tasks,
            settings,
            client,
            applier,
            advertiser,
            policy,
            tcp,
            queues: None,
            clearml_errors: clearml_policy(POLL_BACKOFF),
            apply_errors: ErrorPolicy::new("apply", Backoff::default()),
            last_refusals: BTreeSet::new(),
            status,
            static_routes,
        }
    }

    /// Replaces the backoff of every error policy (tests use zero delays).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.clearml_errors = clearml_policy(backoff);
        self.apply_errors = ErrorPolicy::new("apply", backoff);
        self.advertiser.errors = ErrorPolicy::new("write-back", backoff);
        self
    }

    /// What the status server shows; updated by every tick.
    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tracing::info!(
            router = %self.settings.router_name,
            url = %self.settings.router_url,
            clearml = %self.settings.api_host,
            reloader = %self.applier.reloader.describe(),
            "router started"
        );
        if !self.settings.auth.enabled {
            tracing::warn!(
                "{}=false: every endpoint is open to anyone who can reach the gateway",
                env::AUTH_ENABLED
            );
        } else if self.settings.auth.token_secret.is_some() {
            tracing::info!(
                "logins are verified locally with {}: a ClearML logout is not seen until the token expires",
                env::AUTH_BASE64_JWKS_KEY
            );
        }
        if self.settings.allow_loopback_targets {
            tracing::warn!(
                "{} is on: tasks may route to this host's loopback services (demo/test setting)",
                env::ROUTER_ALLOW_LOOPBACK_TARGETS
            );
        }
        let mut ticker = tokio::time::interval(self.settings.poll_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // File edits wake the loop at once (debounced); every tick re-reads the files anyway,
        // so a missed event (or a watcher that could not start) only delays a change to the
        // next poll.
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let files: Vec<std::path::PathBuf> = [&self.settings.static_routes_file, &self.settings.groups_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let _watcher = match crate::static_files::watch(&files, wake.clone()) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the static routes files; they are re-read every poll");
                None
            }
        };
        self.tls.set_wake(wake.clone());
        let _certs_watcher = self.tls.certs_dir().cloned().and_then(|dir| {
            crate::tls::watch_dir(&dir, wake.clone())
                .map_err(|e| tracing::warn!(error = %e, "cannot watch the certificate folder; it is re-read every poll"))
                .ok()
        });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.tick().await,
                _ = wake.notified() => {
                    // Debounce: an editor's write-rename-chmod burst becomes one apply.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    self.tick().await;
                    ticker.reset();
                }
                _ = &mut shutdown => break,
            }
        }
        tracing::info!("router stopped; the proxy keeps serving the last applied routes");
    }

    /// Asks the server for its static routes every [`SERVER_ROUTES_TTL`]; an error keeps the
    /// last answer (the server may be briefly away), an absent service means the file only.
    async fn ask_server_static_routes(&mut self) {
        if self.static_routes.server_asked.is_some_and(|at| at.elapsed() < SERVER_ROUTES_TTL) {
            return;
        }
        match self.client.server_static_routes().await {
            Ok(answer) => self.static_routes.set_server_routes(answer, &self.policy),
            Err(e) => {
                self.static_routes.server_asked = Some(Instant::now());
                tracing::debug!(error = %e, "routers.get_routes failed; the last answer stays");
            }
        }
    }

    /// One poll-apply-advertise round.
    pub async fn tick(&mut self) {
        self.round().await;
        let policies = [&self.clearml_errors, &self.apply_errors, &self.advertiser.errors];
        self.status.errors(&policies);
    }

    async fn round(&mut self) {
        let now = Instant::now();
        if !self.clearml_errors.ready(POLL, now) {
            return;
        }
        let snapshot = match self.poll().await {
            Ok(snapshot) => {
                self.clearml_errors.succeeded(POLL, Instant::now());
                self.status.poll_succeeded();
                snapshot
            }
            Err(e) => {
                let message = e.to_string();
                self.clearml_errors.failed(POLL, message.clone(), api_severity(&e), Instant::now());
                self.status.poll_failed(message);
                return;
            }
        };
        if !self.learn_company().await {
            return;
        }
        let mut table = RouteTable::build_with(&snapshot, &self.policy, &self.tcp, &identity(&self.settings));
        self.status.other_routers(gateway_core::routers_seen::other_routers(
            &snapshot.tasks,
            &identity(&self.settings),
        ));
        self.static_routes.refresh(&self.policy);
        self.ask_server_static_routes().await;
        self.static_routes.attach(&self.settings, &mut table);
        self.status.static_errors(self.static_routes.errors());
        let tls_hosts = crate::tls::Tls::hosts(&self.settings, &table);
        self.tls.refresh();
        self.applier.layout.tls = self.tls.layout(&tls_hosts, &table.router_host);
        self.status.certificates(self.tls.views(&tls_hosts));
        self.log_refusals(&table);
        // A failed reload waits for its backoff. A parked structural change does not hold back
        // data: the routing table (HTTP, static and TCP routes alike) goes out on the last good
        // structure.
        if !self.apply_errors.ready(RELOAD, now) {
            return;
        }
        let mut full = self.apply_errors.ready(STRUCTURE, now);
        loop {
            if !full && self.applier.last_good().is_none() {
                return;
            }
            match self.apply(&table, full).await {
                Ok(()) => break,
                // Parked: the same tick still applies the data on the last good structure.
                Err(key) if full && key == STRUCTURE => full = false,
                Err(_) => return,
            }
        }
        self.status.routes(&table, &self.settings.router_url, self.settings.tcp.router_address.as_deref());
        // The proxy serves the challenge folder now: orders can be answered.
        self.tls.start_acme(&tls_hosts);
        // Applied: these ports are the ones to keep from now on.
        self.tcp.previous = table.tcp_ports();
        self.static_routes.incumbents = table.static_incumbents();
        let report = self.advertiser.sync(&self.client, &table).await;
        for task in &report.written {
            tracing::info!(task = %task, "endpoint keys updated on the task");
        }
    }

    /// Applies `table`, recording the outcome with the error policy; on failure returns the policy
    /// key that failed.
    async fn apply(&mut self, table: &RouteTable, full: bool) -> Result<(), &'static str> {
        let started = Instant::now();
        let result =
            if full { self.applier.apply(table).await } else { self.applier.apply_data_only(table).await };
        let took = started.elapsed();
        let good = self.applier.last_good();
        let mut record = ApplyRecord {
            outcome: "",
            config_hash: good.map(|r| r.config_hash.as_str()),
            routes_version: good.map(|r| r.routes_version.as_str()),
            error: None,
            took,
            reloads: self.applier.reloads(),
        };
        match result {
            Ok(outcome) => {
                if full {
                    self.apply_errors.succeeded(STRUCTURE, Instant::now());
                }
                self.apply_errors.succeeded(RELOAD, Instant::now());
                if outcome != ApplyOutcome::Unchanged {
                    tracing::info!(
                        ?outcome,
                        routes = table.http.len(),
                        tcp = table.tcp.len(),
                        reloads = self.applier.reloads(),
                        structure_parked = !full,
                        "applied"
                    );
                    record.outcome = match outcome {
                        ApplyOutcome::RoutesUpdated => "routes updated (no reload)",
                        ApplyOutcome::ConfigApplied { reloaded: true } => "config applied (reloaded)",
                        _ => "config applied",
                    };
                    self.status.applied(record);
                }
                Ok(())
            }
            Err(e) => {
                let key = if e.is_reload() { RELOAD } else { STRUCTURE };
                let severity = if e.is_permanent() { Severity::Permanent } else { Severity::Transient };
                self.apply_errors.failed(key, e.to_string(), severity, Instant::now());
                record.outcome = "failed";
                record.error = Some(e.to_string());
                self.status.applied(record);
                Err(key)
            }
        }
    }

    /// With authentication on, the proxy must know the router's company before it serves
    /// anything (tenant isolation). Until then nothing is applied: the proxy keeps its last config.
    async fn learn_company(&mut self) -> bool {
        let auth = &self.applier.layout.auth;
        if !auth.enabled || auth.company_id.is_some() {
            return true;
        }
        match self.client.own_company().await {
            Ok(company) if gateway_render::auth::valid_company_id(&company) => {
                tracing::info!(company = %company, "learned the router's ClearML company");
                self.applier.layout.auth.company_id = Some(company);
                true
            }
            Ok(company) => {
                tracing::error!(company = %gateway_core::model::display_untrusted(&company), "ClearML returned an unusable company id");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot learn the router's ClearML company yet; nothing applied");
                false
            }
        }
    }

    async fn poll(&mut self) -> Result<Snapshot, ApiError> {
        let query = match &self.settings.queues {
            QueueFilter::All => TaskQuery { queue_ids: None },
            QueueFilter::Names(patterns) => {
                let ids = self.queue_ids(&patterns.clone()).await?;
                if ids.is_empty() {
                    tracing::debug!("no queue matches {}; routing nothing", env::LISTEN_QUEUE_NAME);
                    return Ok(Snapshot::default());
                }
                TaskQuery { queue_ids: Some(ids) }
            }
        };
        let tasks = self.tasks.poll(&self.client, &query).await?;
        Ok(Snapshot { tasks, company: None })
    }

    async fn queue_ids(&mut self, patterns: &[String]) -> Result<Vec<String>, ApiError> {
        if let Some((at, ids)) = &self.queues {
            if at.elapsed() < QUEUE_CACHE_TTL {
                return Ok(ids.clone());
            }
        }
        let mut ids = BTreeSet::new();
        for pattern in patterns {
            for (id, _name) in self.client.queues_matching(&queue_pattern_regex(pattern)).await? {
                ids.insert(id);
            }
        }
        let ids: Vec<String> = ids.into_iter().collect();
        // Nothing matching yet is not cached: a queue created next minute is picked up at once.
        self.queues = (!ids.is_empty()).then(|| (Instant::now(), ids.clone()));
        Ok(ids)
    }

    /// Logs each refusal once (not on every poll), naming the task and the reason.
    fn log_refusals(&mut self, table: &RouteTable) {
        let current: BTreeSet<String> = table
            .refusals
            .iter()
            .map(|r| {
                format!(
                    "task {} endpoint {}: {}",
                    r.task,
                    r.endpoint.as_deref().unwrap_or("(task)"),
                    r.reason
                )
            })
            .collect();
        for line in current.difference(&self.last_refusals) {
            tracing::warn!(refusal = %line, "task endpoint refused");
        }
        self.last_refusals = current;
    }
}

#[cfg(test)]
mod tests;
