//! Write-back: tell each task where it is served (`endpoint`, `browser_endpoint`), and take the
//! keys back when its route goes away. Writes are read-modify-write against a fresh read of the
//! task, because the server merges nothing and the SDK writes the same dict.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::retry::{api_severity, Backoff, ErrorPolicy};
use clearml_api::{ApiError, ClearmlApi};
use gateway_core::model::{RouteId, TaskId};
use gateway_core::table::RouteTable;
use gateway_core::task::{keys, RouterIdentity};

/// Task write-backs in flight at once.
const WRITE_CONCURRENCY: usize = 8;

/// One runtime key the router wants on a task, and what it goes back to when the route is gone
/// (`None`: the key is removed).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Want {
    pub value: Value,
    pub restore: Option<Value>,
}

impl Want {
    fn removable(value: Value) -> Self {
        Self { value, restore: None }
    }
}

/// Runtime key -> what the router wants there, for one task.
pub type Keys = BTreeMap<String, Want>;

/// The URL a route is served at.
pub fn route_url(router_url: &str, route: &RouteId) -> String {
    format!("{router_url}/service/{route}/")
}

/// Every key the router wants written, per task.
///
/// HTTP: `endpoint` and `browser_endpoint`. TCP: `external_address`/`external_tcp_port` become the
/// router's address and allocated port (restored to the task's own when the route goes), and the
/// task's own address and port are kept under the router-owned keys.
pub fn desired_keys(router: &RouterIdentity<'_>, table: &RouteTable) -> BTreeMap<TaskId, Keys> {
    let mut out: BTreeMap<TaskId, Keys> = BTreeMap::new();
    let owner = Want::removable(Value::String(router.name.unwrap_or_default().to_owned()));
    for route in table.http.values() {
        let url = Value::String(route_url(router.url.unwrap_or_default(), &route.id));
        let keys = out.entry(route.task.clone()).or_default();
        keys.insert(keys::with_suffix(keys::OWNER, route.endpoint.as_ref()), owner.clone());
        for base in [keys::ENDPOINT, keys::BROWSER_ENDPOINT] {
            keys.insert(keys::with_suffix(base, route.endpoint.as_ref()), Want::removable(url.clone()));
        }
    }
    for served in table.statics.values() {
        let url =
            gateway_core::static_routes::static_url(router.url.unwrap_or_default(), &served.route.location);
        let url = Value::String(url);
        for a in &served.tasks {
            let keys = out.entry(a.task.clone()).or_default();
            keys.insert(keys::with_suffix(keys::OWNER, a.endpoint.as_ref()), owner.clone());
            for base in [keys::ENDPOINT, keys::BROWSER_ENDPOINT] {
                keys.insert(keys::with_suffix(base, a.endpoint.as_ref()), Want::removable(url.clone()));
            }
        }
    }
    let Some(tcp_address) = router.tcp_address else { return out };
    for route in table.tcp.values() {
        let keys = out.entry(route.task.clone()).or_default();
        let key = |base| keys::with_suffix(base, route.endpoint.as_ref());
        keys.insert(key(keys::OWNER), owner.clone());
        let task_address = Value::String(route.target.addr().ip().to_string());
        let task_port = Value::from(route.target.addr().port());
        keys.insert(
            key(keys::TCP_ADDRESS),
            Want { value: Value::String(tcp_address.to_owned()), restore: Some(task_address.clone()) },
        );
        keys.insert(
            key(keys::TCP_PORT),
            Want { value: Value::from(route.port.get()), restore: Some(task_port.clone()) },
        );
        keys.insert(key(keys::TCP_TARGET_ADDRESS), Want::removable(task_address));
        keys.insert(key(keys::TCP_TARGET_PORT), Want::removable(task_port));
    }
    out
}

/// Applies `want` to `runtime`: sets wanted keys, and takes back keys we wrote before (`ours`)
/// that are no longer wanted, unless someone else has changed them since. True if it changed.
pub fn merge(runtime: &mut Map<String, Value>, want: &Keys, ours: &Keys) -> bool {
    let mut changed = false;
    for (key, w) in want {
        if runtime.get(key) != Some(&w.value) {
            runtime.insert(key.clone(), w.value.clone());
            changed = true;
        }
    }
    for (key, w) in ours {
        if !want.contains_key(key) && runtime.get(key) == Some(&w.value) {
            match &w.restore {
                Some(previous) => runtime.insert(key.clone(), previous.clone()),
                None => runtime.remove(key),
            };
            changed = true;
        }
    }
    changed
}

/// Remembers what was advertised so it can be retracted, across polls and router restarts.
#[derive(Debug)]
pub struct Advertiser {
    router_name: String,
    router_url: String,
    tcp_address: Option<String>,
    advertised: BTreeMap<TaskId, Keys>,
    /// When each task whose write-back fails is tried again.
    pub errors: ErrorPolicy,
    /// Where every key that may be on a task is recorded before it is written (see [`journal`]).
    journal: Option<PathBuf>,
    /// `advertised` changed since the journal was last written.
    journal_stale: bool,
}

/// The journal of published endpoint keys: task id -> keys the router may have written there.
/// Written before each write-back and after it, so that whatever a run killed at any point
/// published, the next run finds and takes back when no longer wanted.
pub mod journal {
    use super::*;

    /// The journal's file name in `ROUTER_STATE_DIR` (a dot-file: the proxy never reads it).
    pub const FILE: &str = ".clearml-router-published.json";

    pub fn read(path: &Path) -> BTreeMap<TaskId, Keys> {
        let Ok(Some(bytes)) = crate::apply::files::read_if_exists(path) else { return BTreeMap::new() };
        let raw: BTreeMap<String, Keys> = match serde_json::from_slice(&bytes) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "unreadable journal of published endpoints; ignored");
                return BTreeMap::new();
            }
        };
        raw.into_iter().filter_map(|(id, keys)| Some((TaskId::parse(&id).ok()?, keys))).collect()
    }

    pub fn write(path: &Path, published: &BTreeMap<TaskId, Keys>) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(published)?;
        crate::apply::files::write_atomic_mode(path, &bytes, 0o600)
    }
}

/// What one sync did, for logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub written: Vec<TaskId>,
    pub failed: Vec<(TaskId, String)>,
}

impl Advertiser {
    pub fn new(router_name: &str, router_url: &str, tcp_address: Option<&str>) -> Self {
        Self {
            router_name: router_name.to_owned(),
            router_url: router_url.to_owned(),
            tcp_address: tcp_address.map(str::to_owned),
            advertised: BTreeMap::new(),
            errors: ErrorPolicy::new("write-back", Backoff::default()),
            journal: None,
            journal_stale: false,
        }
    }

    /// Records published keys in `path`, and takes over what an earlier run recorded there.
    pub fn with_journal(mut self, path: PathBuf) -> Self {
        for (task, keys) in journal::read(&path) {
            self.advertised.entry(task).or_default().extend(keys);
        }
        self.journal = Some(path);
        self
    }

    /// Writes the journal: what is advertised, plus `pending` (about to be written).
    fn write_journal(&self, pending: &[(TaskId, Keys, Keys)]) -> anyhow::Result<()> {
        let Some(path) = &self.journal else { return Ok(()) };
        let mut all = self.advertised.clone();
        for (task, want, _) in pending {
            all.entry(task.clone()).or_default().extend(want.iter().map(|(k, w)| (k.clone(), w.clone())));
        }
        journal::write(path, &all)
    }

    /// Seeds what a previous run advertised (from the routing table it left on disk).
    pub fn assume_advertised(&mut self, table: &RouteTable) {
        for (task, keys) in desired_keys(&self.keys(), table) {
            self.advertised.entry(task).or_default().extend(keys);
        }
    }

    fn keys(&self) -> RouterIdentity<'_> {
        RouterIdentity {
            name: Some(&self.router_name),
            url: Some(&self.router_url),
            tcp_address: self.tcp_address.as_deref(),
            // Writing keys needs no port range (only reading a task's answer does).
            tcp_ports: None,
        }
    }

    /// Brings every task's runtime in line with the live table. Only called after the proxy
    /// confirmed the table, so an advertised URL always works.
    pub async fn sync(&mut self, client: &impl ClearmlApi, table: &RouteTable) -> SyncReport {
        let now = std::time::Instant::now();
        let mut desired = desired_keys(&self.keys(), table);
        let tasks: BTreeSet<TaskId> = desired.keys().chain(self.advertised.keys()).cloned().collect();
        let mut writes = Vec::new();
        for task in tasks {
            let want = desired.remove(&task).unwrap_or_default();
            let ours = self.advertised.get(&task).cloned().unwrap_or_default();
            // Cheap check against the polled runtime first: most polls change nothing.
            if let Some(polled) = table.runtimes.get(&task) {
                let mut copy = polled.clone();
                if !merge(&mut copy, &want, &ours) {
                    self.record(&task, want);
                    continue;
                }
            }
            // A task whose write-back fails waits for its backoff; the others go on.
            if self.errors.ready(task.as_str(), now) {
                writes.push((task, want, ours));
            }
        }
        if writes.is_empty() {
            self.flush_journal();
            return SyncReport::default();
        }
        // Recorded before anything is written: a kill during the writes leaves keys it can find.
        if let Err(e) = self.write_journal(&writes) {
            tracing::error!(error = %format!("{e:#}"), "cannot write the journal of published endpoints; nothing written to tasks");
            return SyncReport::default();
        }
        crate::startup::crash_point("before-write-back");
        // Independent tasks are written concurrently (a router starting on many tasks).
        let results: Vec<_> = futures_util::stream::iter(writes)
            .map(|(task, want, ours)| async move {
                let result = write_keys(client, &task, &want, &ours).await;
                (task, want, result)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut report = SyncReport::default();
        for (task, want, result) in results {
            match result {
                Ok(wrote) => {
                    if wrote {
                        report.written.push(task.clone());
                    }
                    self.errors.succeeded(task.as_str(), now);
                    self.record(&task, want);
                }
                Err(e) if is_missing_task(&e) => {
                    self.errors.forget(task.as_str());
                    self.advertised.remove(&task);
                }
                Err(e) => {
                    self.errors.failed(task.as_str(), e.to_string(), api_severity(&e), now);
                    report.failed.push((task, e.to_string()));
                }
            }
        }
        // Tasks neither wanted nor advertised any more have nothing left to retry.
        let gone: Vec<String> = self
            .errors
            .keys()
            .filter(|t| {
                !self.advertised.keys().any(|a| a.as_str() == t.as_str())
                    && !table.runtimes.keys().any(|r| r.as_str() == t.as_str())
            })
            .cloned()
            .collect();
        for t in gone {
            self.errors.forget(&t);
        }
        self.journal_stale = true;
        self.flush_journal();
        report.written.sort();
        report
    }

    fn record(&mut self, task: &TaskId, want: Keys) {
        let before = if want.is_empty() {
            self.advertised.remove(task)
        } else {
            self.advertised.insert(task.clone(), want.clone())
        };
        let unchanged = match before {
            Some(old) => old == want,
            None => want.is_empty(),
        };
        self.journal_stale |= !unchanged;
    }

    fn flush_journal(&mut self) {
        if !self.journal_stale {
            return;
        }
        match self.write_journal(&[]) {
            Ok(()) => self.journal_stale = false,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot update the journal of published endpoints")
            }
        }
    }
}

/// Re-reads the task, merges, and writes only if something changed. Returns whether it wrote.
async fn write_keys(
    client: &impl ClearmlApi,
    task: &TaskId,
    want: &Keys,
    ours: &Keys,
) -> Result<bool, ApiError> {
    let fresh = client.task(task.as_str()).await?;
    let mut runtime = match fresh.get("runtime") {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    if !merge(&mut runtime, want, ours) {
        return Ok(false);
    }
    client.set_runtime(task.as_str(), &runtime).await?;
    Ok(true)
}

/// The server answers 400/101 for an unknown task id: nothing left to retract.
fn is_missing_task(e: &ApiError) -> bool {
    matches!(e, ApiError::Server { code: 400, subcode: 101, .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_sets_wanted_and_retracts_only_unchanged_keys() {
        let url = json!("http://gw/service/t/");
        let ours: Keys = [
            ("endpoint".into(), Want::removable(url.clone())),
            ("browser_endpoint".into(), Want::removable(url.clone())),
            ("external_address".into(), Want { value: json!("gw"), restore: Some(json!("10.0.0.5")) }),
        ]
        .into();
        let mut runtime = json!({"_PORT": 1, "endpoint": url, "browser_endpoint": "http://other/", "external_address": "gw"})
            .as_object()
            .unwrap()
            .clone();
        assert!(merge(&mut runtime, &Keys::new(), &ours));
        assert_eq!(
            Value::Object(runtime.clone()),
            json!({"_PORT": 1, "browser_endpoint": "http://other/", "external_address": "10.0.0.5"})
        );
        assert!(!merge(&mut runtime, &Keys::new(), &ours));
        assert!(merge(&mut runtime, &ours, &Keys::new()));
        assert_eq!(runtime["browser_endpoint"], url);
    }
}
