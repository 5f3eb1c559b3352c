//! The loop, one tick at a time, against an in-memory ClearML and the fake proxy: the order of
//! its steps, and what it does when a step fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::RouterLoop;
use crate::apply::fakes::{self, files_below, http_task, tcp_task, FakeProxy, FakeValidator, Journal};
use crate::config::{RawEnv, Settings};
use crate::retry::Backoff;
use clearml_api::{ApiError, ClearmlApi, TaskQuery};

/// ClearML as the loop sees it: tasks by id, queues, and the failures a test asks for.
#[derive(Default)]
struct Server {
    tasks: BTreeMap<String, Value>,
    queues: Vec<(String, String)>,
    polls_fail: bool,
    edits_to_fail: usize,
    /// Tasks the router may not edit (403 on every tasks.edit).
    forbidden: Vec<String>,
}

#[derive(Clone, Default)]
struct FakeClearml {
    server: Arc<Mutex<Server>>,
    journal: Journal,
}

impl FakeClearml {
    fn add(&self, task: Value) {
        let id = task["id"].as_str().unwrap().to_owned();
        self.server.lock().unwrap().tasks.insert(id, task);
    }

    fn with(&self, change: impl FnOnce(&mut Server)) {
        change(&mut self.server.lock().unwrap());
    }

    fn runtime(&self, id: &str) -> Value {
        self.server.lock().unwrap().tasks[id]["runtime"].clone()
    }
}

fn unreachable(endpoint: &str) -> ApiError {
    ApiError::Transport { endpoint: endpoint.into(), detail: "connection refused".into() }
}

impl FakeClearml {
    /// One `tasks.get_all`: the tasks on the queried queues that `keep` accepts.
    fn poll(&self, query: &TaskQuery, keep: impl Fn(&Value) -> bool) -> Result<Vec<Value>, ApiError> {
        self.journal.push("tasks.get_all");
        let server = self.server.lock().unwrap();
        if server.polls_fail {
            return Err(unreachable("tasks.get_all"));
        }
        let on_queue = |t: &Value| {
            let queue = t["execution"]["queue"].as_str().unwrap_or_default();
            query.queue_ids.as_ref().is_none_or(|ids| ids.iter().any(|id| id == queue))
        };
        Ok(server.tasks.values().filter(|t| keep(t) && on_queue(t)).cloned().collect())
    }
}

impl ClearmlApi for FakeClearml {
    async fn tasks_requesting_endpoints(&self, query: &TaskQuery) -> Result<Vec<Value>, ApiError> {
        self.poll(query, |t| t["status"] == "in_progress")
    }

    /// Every task in any status: a superset of what changed, which is all the watch needs.
    async fn tasks_changed_since(&self, query: &TaskQuery, _since: &str) -> Result<Vec<Value>, ApiError> {
        self.poll(query, |_| true)
    }

    async fn server_static_routes(&self) -> Result<Option<Vec<Value>>, ApiError> {
        Ok(None)
    }

    async fn task(&self, id: &str) -> Result<Value, ApiError> {
        self.journal.push(format!("tasks.get_by_id {id}"));
        let server = self.server.lock().unwrap();
        server.tasks.get(id).cloned().ok_or_else(|| ApiError::Server {
            endpoint: "tasks.get_by_id".into(),
            code: 400,
            subcode: 101,
            message: "invalid task id".into(),
        })
    }

    async fn set_runtime(&self, id: &str, runtime: &Map<String, Value>) -> Result<(), ApiError> {
        self.journal.push(format!("tasks.edit {id}"));
        let mut server = self.server.lock().unwrap();
        if server.forbidden.iter().any(|t| t == id) {
            return Err(ApiError::Server {
                endpoint: "tasks.edit".into(),
                code: 403,
                subcode: 0,
                message: "forbidden".into(),
            });
        }
        if server.edits_to_fail > 0 {
            server.edits_to_fail -= 1;
            return Err(unreachable("tasks.edit"));
        }
        server.tasks.get_mut(id).unwrap()["runtime"] = Value::Object(runtime.clone());
        Ok(())
    }

    async fn own_company(&self) -> Result<String, ApiError> {
        Ok("c0ffee".into())
    }

    async fn queues_matching(&self, name_regex: &str) -> Result<Vec<(String, String)>, ApiError> {
        self.journal.push("queues.get_all");
        let pattern = regex::Regex::new(name_regex).unwrap();
        let server = self.server.lock().unwrap();
        Ok(server.queues.iter().filter(|(_, name)| pattern.is_match(name)).cloned().collect())
    }
}

fn settings(extra: &[(&str, &str)]) -> Settings {
    let base = [
        ("ROUTER_URL", "http://gw.example.com:8080"),
        ("CLEARML_API_HOST", "http://clearml:8008"),
        ("CLEARML_API_ACCESS_KEY", "AK"),
        ("CLEARML_API_SECRET_KEY", "SK"),
        ("AUTH_ENABLED", "false"),
        ("TCP_ROUTER_ADDRESS", "gw.example.com"),
    ];
    let vars = base.iter().chain(extra).map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::from_raw(RawEnv::from_vars(vars)).unwrap()
}

/// Retries on the next tick: tests of what a retry does, not when.
const NO_DELAY: Backoff =
    Backoff { transient_first: Duration::ZERO, permanent_first: Duration::ZERO, cap: Duration::ZERO };

/// Settings whose journal lives in `dir`.
fn settings_in(dir: &std::path::Path, extra: &[(&str, &str)]) -> Settings {
    let state = dir.display().to_string();
    let all: Vec<(&str, &str)> =
        extra.iter().copied().chain([("ROUTER_STATE_DIR", state.as_str())]).collect();
    settings(&all)
}

struct Bench {
    dir: tempfile::TempDir,
    journal: Journal,
    clearml: FakeClearml,
    proxy: FakeProxy,
    validator: FakeValidator,
    router: RouterLoop<FakeProxy, FakeClearml, FakeProxy>,
}

impl Bench {
    fn new(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::default();
        let (applier, proxy, validator) = fakes::applier(dir.path(), &journal);
        let clearml = FakeClearml { journal: journal.clone(), ..Default::default() };
        let router =
            RouterLoop::new(settings_in(dir.path(), extra), clearml.clone(), applier).with_backoff(NO_DELAY);
        Self { dir, journal, clearml, proxy, validator, router }
    }

    /// One tick; what ClearML and the proxy were asked during it.
    async fn tick(&mut self) -> Vec<String> {
        self.router.tick().await;
        self.journal.take()
    }

    /// A new router on the same files, and a proxy that restarted with them: its first tick
    /// takes t1's keys back.
    async fn restart_and_expect_t1_taken_back(&mut self) {
        let (applier, proxy, _) = fakes::applier(self.dir.path(), &self.journal);
        self.router = RouterLoop::new(settings_in(self.dir.path(), &[]), self.clearml.clone(), applier)
            .with_backoff(NO_DELAY);
        self.proxy = proxy;
        let asked = self.tick().await;
        assert_eq!(asked[asked.len() - 2..], then_writes(&[], "t1"), "{asked:?}");
        assert_eq!(endpoint(&self.clearml.runtime("t1")), None);
    }

    fn routes_file(&self) -> PathBuf {
        self.dir.path().join("lua").join(gateway_render::ROUTES_FILE)
    }
}

/// `steps`, then the fresh read and the edit that write `task`'s keys.
fn then_writes(steps: &[&str], task: &str) -> Vec<String> {
    let write = [format!("tasks.get_by_id {task}"), format!("tasks.edit {task}")];
    steps.iter().map(|s| s.to_string()).chain(write).collect()
}

/// A tick that polls, validates and reloads a new config that serves one HTTP route.
const RELOADED: [&str; 4] = ["tasks.get_all", "validate", "reload", "proxy loads 1 routes"];

fn endpoint(runtime: &Value) -> Option<&str> {
    runtime.get("endpoint").and_then(Value::as_str)
}

/// A router whose first tick routed and advertised task t1, and the files it wrote.
async fn routing_t1() -> (Bench, BTreeMap<PathBuf, Vec<u8>>) {
    let mut b = Bench::new(&[]);
    b.clearml.add(http_task("t1"));
    b.tick().await;
    let applied = files_below(b.dir.path());
    (b, applied)
}

#[tokio::test]
async fn endpoints_are_written_back_only_once_the_proxy_serves_them() {
    let mut b = Bench::new(&[]);
    b.clearml.add(http_task("t1"));
    assert_eq!(b.tick().await, then_writes(&RELOADED, "t1"));
    assert_eq!(endpoint(&b.clearml.runtime("t1")), Some("http://gw.example.com:8080/service/t1/"));

    b.clearml.add(http_task("t2"));
    assert_eq!(b.tick().await, then_writes(&["tasks.get_all", "proxy loads 2 routes"], "t2"));

    // A stopped task's route goes first, then its keys are taken back.
    b.clearml.with(|s| s.tasks.get_mut("t1").unwrap()["status"] = json!("stopped"));
    assert_eq!(b.tick().await, then_writes(&["tasks.get_all", "proxy loads 1 routes"], "t1"));
    assert_eq!(endpoint(&b.clearml.runtime("t1")), None);

    // Nothing new: one poll, nothing else.
    assert_eq!(b.tick().await, ["tasks.get_all"]);
}

#[tokio::test]
async fn a_failed_poll_keeps_the_last_routes_serving() {
    let (mut b, applied) = routing_t1().await;
    let serving = b.proxy.serving();

    b.clearml.with(|s| s.polls_fail = true);
    assert_eq!(b.tick().await, ["tasks.get_all"]);
    assert_eq!(files_below(b.dir.path()), applied);
    assert_eq!(b.proxy.serving(), serving);
    let status = b.router.status().snapshot();
    let poll = status.last_poll.unwrap();
    assert!(!poll.ok && poll.error.unwrap().contains("connection refused"));
    assert_eq!(status.http_routes.len(), 1, "the status still shows the routes that serve");

    b.clearml.with(|s| s.polls_fail = false);
    assert_eq!(b.tick().await, ["tasks.get_all"]);
    assert!(b.router.status().snapshot().last_poll.unwrap().ok);
}

#[tokio::test]
async fn a_failed_write_back_is_retried_on_the_next_tick() {
    let mut b = Bench::new(&[]);
    b.clearml.add(http_task("t1"));
    b.clearml.with(|s| s.edits_to_fail = 1);
    let asked = b.tick().await;
    assert_eq!(asked.last().map(String::as_str), Some("tasks.edit t1"));
    assert_eq!(endpoint(&b.clearml.runtime("t1")), None);

    assert_eq!(b.tick().await, then_writes(&["tasks.get_all"], "t1"));
    assert_eq!(endpoint(&b.clearml.runtime("t1")), Some("http://gw.example.com:8080/service/t1/"));
    assert_eq!(b.tick().await, ["tasks.get_all"]);
}

#[tokio::test]
async fn a_table_the_proxy_never_confirms_is_not_advertised() {
    let (mut b, _) = routing_t1().await;

    // A TCP endpoint is routing data: no reload, but nothing is advertised unconfirmed.
    b.proxy.set(|s| s.takes_routes = false);
    b.clearml.add(tcp_task("t2"));
    let asked = b.tick().await;
    assert!(!asked.iter().any(|a| a == "reload"), "{asked:?}");
    assert_eq!(b.clearml.runtime("t2"), tcp_task("t2")["runtime"], "nothing written to the new task");
    let apply = b.router.status().snapshot().last_apply.unwrap();
    assert!(!apply.ok, "{apply:?}");

    // The proxy loads tables again: a later tick applies and then advertises.
    b.proxy.set(|s| s.takes_routes = true);
    for _ in 0..3 {
        b.tick().await;
    }
    assert_eq!(b.clearml.runtime("t2")["external_address"], "gw.example.com");
}

#[tokio::test]
async fn routing_files_changed_behind_the_router_are_put_back() {
    let (mut b, applied) = routing_t1().await;

    std::fs::write(b.routes_file(), r#"{"version": "edited", "routes": {}}"#).unwrap();
    // The proxy still serves the confirmed config: the file is written again, no reload, and the
    // task, already advertised, is not written to.
    assert_eq!(b.tick().await, ["tasks.get_all", "proxy loads 1 routes"]);
    assert_eq!(files_below(b.dir.path()), applied);
}

#[tokio::test]
async fn queue_names_are_resolved_once_and_only_their_tasks_are_routed() {
    let mut b = Bench::new(&[("LISTEN_QUEUE_NAME", "gpu*")]);
    b.clearml.with(|s| s.queues = vec![("q1".into(), "gpu-large".into()), ("q2".into(), "cpu".into())]);
    for (id, queue) in [("t1", "q1"), ("t2", "q2")] {
        let mut task = http_task(id);
        task["execution"] = json!({"queue": queue});
        b.clearml.add(task);
    }
    let asked = b.tick().await;
    assert_eq!(asked[..2], ["queues.get_all", "tasks.get_all"]);
    assert!(asked.contains(&"tasks.edit t1".to_owned()) && !asked.contains(&"tasks.edit t2".to_owned()));
    assert_eq!(b.tick().await, ["tasks.get_all"], "queue ids are reused between polls");
}

#[tokio::test]
async fn a_restarted_router_takes_back_what_its_previous_run_advertised() {
    let (mut b, _) = routing_t1().await;
    b.clearml.with(|s| s.tasks.get_mut("t1").unwrap()["status"] = json!("stopped"));

    b.restart_and_expect_t1_taken_back().await;
}

#[tokio::test]
async fn a_write_back_that_is_refused_backs_off_while_other_tasks_are_written() {
    let mut b = Bench::new(&[]);
    b.router = std::mem::replace(&mut b.router, Bench::new(&[]).router).with_backoff(Backoff::default());
    b.clearml.add(http_task("t1"));
    b.clearml.with(|s| s.forbidden = vec!["t1".into()]);
    assert_eq!(b.tick().await, then_writes(&RELOADED, "t1"));
    // Permanent: not tried again on the next ticks, while a new task is written at once.
    b.clearml.add(http_task("t2"));
    assert_eq!(b.tick().await, then_writes(&["tasks.get_all", "proxy loads 2 routes"], "t2"));
    assert_eq!(b.tick().await, ["tasks.get_all"]);
    let status = b.router.status().snapshot();
    assert_eq!(status.failing.len(), 1, "{:?}", status.failing);
    let failing = &status.failing[0];
    assert!(failing.what == "write-back t1" && failing.permanent && failing.retry_in_seconds >= 20);
    let errors = b.router.status().counters().errors;
    assert_eq!((errors["write-back"].failures_total, errors["write-back"].failing), (1, 1));
    assert!(errors["write-back"].deferred_total >= 2);
}

#[tokio::test]
async fn a_structural_change_that_fails_validation_is_parked_while_data_changes_apply() {
    let (mut b, _) = routing_t1().await;
    b.router = std::mem::replace(&mut b.router, Bench::new(&[]).router).with_backoff(Backoff::default());
    *b.validator.refuse.lock().unwrap() = Some("unknown directive".into());
    // A structural change (TCP endpoints are data now; the layout is what remains structure).
    b.router.applier.layout.upstream.keepalive += 1;
    b.clearml.add(http_task("t3"));
    let asked = b.tick().await;
    assert_eq!(asked[..3], ["tasks.get_all", "validate", "proxy loads 2 routes"], "{asked:?}");
    assert!(asked.contains(&"tasks.edit t3".to_owned()), "the new HTTP task is advertised: {asked:?}");

    // Parked: the next ticks do not validate again, and a stopped task still stops being served.
    b.clearml.with(|s| s.tasks.get_mut("t1").unwrap()["status"] = json!("stopped"));
    let asked = b.tick().await;
    assert_eq!(asked[..2], ["tasks.get_all", "proxy loads 1 routes"], "{asked:?}");
    assert_eq!(endpoint(&b.clearml.runtime("t1")), None);
    let status = b.router.status().snapshot();
    assert!(status
        .failing
        .iter()
        .any(|f| f.what == "apply structure" && f.error.contains("unknown directive")));
}

#[tokio::test]
async fn keys_a_killed_run_did_not_take_back_are_found_in_its_journal() {
    let (mut b, _) = routing_t1().await;
    // t1 stops: its route goes from routes.json, but taking its keys back fails, and the router
    // is killed before it tries again.
    b.clearml.with(|s| {
        s.tasks.get_mut("t1").unwrap()["status"] = json!("stopped");
        s.edits_to_fail = 1;
    });
    b.tick().await;
    assert!(endpoint(&b.clearml.runtime("t1")).is_some());
    let routes = std::fs::read_to_string(b.routes_file()).unwrap();
    assert!(!routes.contains("t1"), "routes.json no longer tells of t1");

    b.restart_and_expect_t1_taken_back().await;
    let journal = std::fs::read_to_string(b.dir.path().join(crate::advertise::journal::FILE)).unwrap();
    assert_eq!(journal, "{}", "nothing left to take back");
}

#[test]
fn the_status_port_is_no_target() {
    let vars = [
        ("ROUTER_URL", "http://gw.example.com:8080"),
        ("CLEARML_API_HOST", "http://clearml:8008"),
        ("CLEARML_API_ACCESS_KEY", "AK"),
        ("CLEARML_API_SECRET_KEY", "SK"),
        ("ROUTER_STATUS_ADDRESS", "127.0.0.1:18081"),
        ("ROUTER_ALLOW_LOOPBACK_TARGETS", "true"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    let s = Settings::from_raw(RawEnv::from_vars(vars)).unwrap();
    let policy = super::target_policy(&s);
    let port = gateway_core::model::Port::new(18081).unwrap();
    let err = policy.check("127.0.0.1", port).unwrap_err().to_string();
    assert!(err.contains("own listener"), "{err}");
    assert!(policy.check("127.0.0.1", gateway_core::model::Port::new(18082).unwrap()).is_ok());
}
