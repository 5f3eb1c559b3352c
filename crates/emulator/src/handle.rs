//! Starting the emulator and driving it from tests: [`start`] and [`EmulatorHandle`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::clock::unix_now;
use super::config::{EmulatedUser, EmulatorConfig};
use super::faults::Fault;
use super::gate;
use super::server;
use super::state::{Shared, State};
use super::stats::{CallRecord, CallStats};
use super::tasks::{self, NewTask};

/// Binds `bind` (port 0 picks a free port) and serves the emulated API on the current tokio
/// runtime until [`EmulatorHandle::shutdown`] or the runtime ends.
pub async fn start(config: EmulatorConfig, bind: SocketAddr) -> anyhow::Result<EmulatorHandle> {
    let shared = Arc::new(Shared::new(config));
    let public =
        TcpListener::bind(bind).await.with_context(|| format!("binding the ClearML emulator to {bind}"))?;
    let addr = public.local_addr()?;
    // The HTTP server listens privately; the gate in front of it can cut connections.
    let internal = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let backend = internal.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);

    let app = server::router(shared.clone());
    let mut server_stop = stop_rx.clone();
    let server_task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = server_stop.wait_for(|stop| *stop).await;
        };
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = axum::serve(internal, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%err, "ClearML emulator server failed");
        }
    });
    let gate_task = tokio::spawn(gate::run(public, backend, shared.connections.clone(), stop_rx));
    tracing::info!(%addr, "ClearML emulator listening");
    Ok(EmulatorHandle {
        addr,
        shared,
        stop: Arc::new(stop),
        tasks: Arc::new(Mutex::new(vec![gate_task, server_task])),
    })
}

/// Control of a running emulator; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct EmulatorHandle {
    /// The bound public address.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl EmulatorHandle {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// `http://127.0.0.1:PORT` (a wildcard bind is reported as loopback).
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// A copy of the configuration the emulator was started with.
    pub fn config(&self) -> EmulatorConfig {
        self.state().config.clone()
    }

    /// Creates a task and returns its id (32 hex chars).
    pub fn create_task(&self, task: NewTask) -> String {
        self.state().create_task(&task)
    }

    /// The full task document.
    pub fn task(&self, id: &str) -> Option<Value> {
        self.state().tasks.get(id).cloned()
    }

    /// Every task document, in creation order.
    pub fn tasks(&self) -> Vec<Value> {
        self.state().tasks.values().cloned().collect()
    }

    pub fn set_status(&self, id: &str, status: &str) {
        if !self.state().set_task_status(id, status) {
            tracing::warn!(id, "set_status: no such emulated task");
        }
    }

    /// Arbitrary mutation of a task document; bumps `last_update`. No-op for unknown ids.
    pub fn update_task(&self, id: &str, f: impl FnOnce(&mut Value)) {
        if !self.state().update_task(id, f) {
            tracing::warn!(id, "update_task: no such emulated task");
        }
    }

    /// Merges keys into the task's `runtime` (`null` deletes a key); bumps `last_update`.
    pub fn merge_runtime(&self, id: &str, patch: Value) {
        let patch = patch.as_object().cloned().unwrap_or_default();
        self.update_task(id, |doc| tasks::merge_runtime(doc, &patch));
    }

    pub fn remove_task(&self, id: &str) {
        self.state().tasks.remove(id);
    }

    /// Creates a queue in the default company (or returns the existing one of that name).
    pub fn create_queue(&self, name: &str) -> String {
        let mut state = self.state();
        let (company, user) = (state.config.company_id.clone(), state.config.user_id.clone());
        match state.queue_by_name(&company, name) {
            Some(id) => id,
            None => state.create_queue(name, &company, &user),
        }
    }

    /// Adds a user to the credential table (replacing one with the same id or access key).
    pub fn add_user(&self, user: EmulatedUser) {
        self.state().auth.add_user(user);
    }

    /// A signed token for `user_id` valid for `ttl` (a zero ttl gives an already expired token).
    ///
    /// Panics if the user is unknown.
    pub fn mint_token(&self, user_id: &str, ttl: Duration) -> String {
        self.mint(user_id, unix_now(), ttl.as_secs() as i64)
    }

    /// A correctly signed token for `user_id` that expired an hour ago (401/30 when used).
    pub fn mint_expired_token(&self, user_id: &str) -> String {
        self.mint(user_id, unix_now() - 7200, 3600)
    }

    fn mint(&self, user_id: &str, iat: i64, ttl: i64) -> String {
        let mut state = self.state();
        let user = state.auth.user(user_id).cloned();
        let user = user.unwrap_or_else(|| panic!("mint_token: unknown emulated user {user_id}"));
        state.auth.mint(&user, iat, ttl)
    }

    /// Logs `user_id` out everywhere: its existing tokens now get 401/31.
    pub fn revoke_sessions_of(&self, user_id: &str) {
        self.state().auth.revoke_sessions_of(user_id);
    }

    /// The HS256 key tokens (and web-app cookies) are signed with.
    pub fn token_secret(&self) -> Vec<u8> {
        self.state().auth.secret().to_vec()
    }

    /// What `routers.get_routes` serves: a JSON array of routes
    /// (`{name, type: "path"|"subdomain", enabled, status, load_balancer: {enabled}}`).
    pub fn set_routes(&self, routes: Value) {
        self.state().set_routes(routes);
    }

    /// Queues faults; each is consumed by one later API call (of its endpoint, if set).
    pub fn inject_faults(&self, faults: Vec<Fault>) {
        self.state().faults.push(faults);
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// `false` emulates ClearML being down: every API request has its TCP connection closed
    /// without an HTTP answer (clients see "connection closed before message completed").
    /// The `/_emulator/` admin API keeps working.
    pub fn set_available(&self, up: bool) {
        self.shared.up.send_replace(up);
    }

    pub fn is_available(&self) -> bool {
        self.shared.is_up()
    }

    /// API traffic per endpoint since start or the last [`reset_stats`](Self::reset_stats).
    pub fn stats(&self) -> CallStats {
        self.state().stats.clone()
    }

    /// Clears the counters and the call log.
    pub fn reset_stats(&self) {
        let mut state = self.state();
        state.stats = CallStats::default();
        state.calls.clear();
    }

    /// The most recent API calls (up to 1000), oldest first.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.state().calls.snapshot()
    }

    /// Stops accepting, cuts open connections and waits until the port is released.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let tasks: Vec<_> =
            self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}
