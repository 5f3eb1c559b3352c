//! The router self-test: a small task is created in ClearML and enqueued; an agent in the task
//! network runs it; the task serves HTTP and asks for an endpoint; the router must route it and
//! traffic must reach it through the proxy. The task is removed afterwards.

use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::queue_pattern_regex;
use clearml_api::ClearmlClient;
use gateway_core::time::rfc3339;

/// The latest self-test, as the settings page of the enterprise gateway shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SelfTestReport {
    pub status: String,
    pub message: String,
    pub reason: Option<String>,
    pub started: Option<String>,
    pub completed: Option<String>,
    pub run_time_seconds: Option<f64>,
    pub queue: String,
    pub worker: Option<String>,
    pub task_name: String,
    pub task_id: Option<String>,
    pub browser_endpoint: Option<String>,
    pub endpoint: Option<String>,
    pub log: Vec<String>,
}

/// Where a report goes as it changes: at the start, with each log line, at the end (the status
/// page streams the running test).
pub type ReportSink = std::sync::Arc<dyn Fn(SelfTestReport) + Send + Sync>;

/// What the test task serves, so the check knows it reached that task and not something else.
pub fn marker(task_id: &str) -> String {
    format!("clearml-gateway-self-test {task_id}")
}

/// The script an agent runs: serve the marker over HTTP, ask for an endpoint, wait to be stopped.
const TASK_SCRIPT: &str = r#"import http.server, threading, time
from clearml import Task

task = Task.init()
body = ("clearml-gateway-self-test " + task.id).encode()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("serving on port", server.server_address[1])
task.request_external_endpoint(server.server_address[1], wait=True)
while True:
    time.sleep(5)
"#;

pub struct SelfTest {
    pub client: ClearmlClient,
    /// Receives the report when the test starts and when it ends.
    pub publish: ReportSink,
    pub router_name: String,
    /// How long an agent may take to pick the task up.
    pub pickup_timeout: Duration,
    /// How long the task may take to be routed once running.
    pub route_timeout: Duration,
    pub auth_enabled: bool,
}

struct Run {
    report: SelfTestReport,
    started: Instant,
    publish: ReportSink,
}

impl Run {
    fn log(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!(self_test = %line);
        self.report.log.push(format!("{} {line}", rfc3339(SystemTime::now())));
        (self.publish)(self.report.clone());
    }

    fn finish(mut self, passed: bool, message: &str, reason: Option<String>) -> SelfTestReport {
        self.report.status = if passed { "passed" } else { "failed" }.into();
        self.report.message = message.into();
        self.report.reason = reason;
        self.report.completed = Some(rfc3339(SystemTime::now()));
        self.report.run_time_seconds = Some(self.started.elapsed().as_secs_f64());
        self.report
    }
}

impl SelfTest {
    /// Runs one self-test; `pickup_timeout` overrides how long an agent may take.
    pub async fn run(&self, queue: &str, pickup_timeout: Option<Duration>) -> SelfTestReport {
        let task_name = format!("gateway self-test ({})", self.router_name);
        let mut run = Run {
            report: SelfTestReport {
                status: "running".into(),
                queue: queue.to_owned(),
                task_name: task_name.clone(),
                started: Some(rfc3339(SystemTime::now())),
                ..SelfTestReport::default()
            },
            started: Instant::now(),
            publish: self.publish.clone(),
        };
        (self.publish)(run.report.clone());
        let report = match self.create_and_enqueue(&mut run, queue, &task_name).await {
            Err(reason) => run.finish(false, "could not start the test task", Some(reason)),
            Ok(task_id) => {
                let pickup = pickup_timeout.unwrap_or(self.pickup_timeout);
                let outcome = self.check(&mut run, &task_id, pickup).await;
                self.clean_up(&mut run, &task_id).await;
                match outcome {
                    Ok(()) => run.finish(true, "traffic reached the test task through the proxy", None),
                    Err((message, reason)) => run.finish(false, message, Some(reason)),
                }
            }
        };
        (self.publish)(report.clone());
        report
    }

    async fn create_and_enqueue(
        &self,
        run: &mut Run,
        queue: &str,
        task_name: &str,
    ) -> Result<String, String> {
        let queues =
            self.client.queues_matching(&queue_pattern_regex(queue)).await.map_err(|e| e.to_string())?;
        let Some((queue_id, _)) = queues.into_iter().find(|(_, name)| name == queue) else {
            return Err(format!("queue {queue:?} does not exist in ClearML"));
        };
        let created = self
            .client
            .call(
                "tasks.create",
                json!({
                    "name": task_name,
                    "type": "application",
                    "system_tags": ["gateway-self-test"],
                    "script": {"diff": TASK_SCRIPT, "entry_point": "gateway_self_test.py", "binary": "python3"},
                }),
            )
            .await
            .map_err(|e| e.to_string())?;
        let task_id = created["id"].as_str().ok_or("tasks.create returned no id")?.to_owned();
        run.report.task_id = Some(task_id.clone());
        run.log(format!("created task {task_id}"));
        self.client
            .call("tasks.enqueue", json!({"task": task_id, "queue": queue_id}))
            .await
            .map_err(|e| e.to_string())?;
        run.log(format!("enqueued on {queue}"));
        Ok(task_id)
    }

    /// Waits for an agent, for the route, then sends a request through the proxy.
    async fn check(
        &self,
        run: &mut Run,
        task_id: &str,
        pickup: Duration,
    ) -> Result<(), (&'static str, String)> {
        let deadline = Instant::now() + pickup;
        let task = loop {
            let task = self.client.task(task_id).await.map_err(|e| ("lost the test task", e.to_string()))?;
            match task["status"].as_str().unwrap_or_default() {
                "in_progress" => break task,
                "failed" | "stopped" | "completed" => {
                    return Err(("the test task ended early", format!("status {}", task["status"])))
                }
                _ if Instant::now() > deadline => {
                    return Err((
                        "no agent picked up the test task",
                        format!(
                            "the task stayed queued for {} s: is a clearml-agent serving queue {:?}?",
                            pickup.as_secs(),
                            run.report.queue
                        ),
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        run.report.worker = task["last_worker"].as_str().map(str::to_owned);
        run.log(format!("running on worker {}", run.report.worker.as_deref().unwrap_or("?")));

        let deadline = Instant::now() + self.route_timeout;
        let endpoint = loop {
            let task = self.client.task(task_id).await.map_err(|e| ("lost the test task", e.to_string()))?;
            if let Some(url) = task["runtime"]["endpoint"].as_str() {
                run.report.browser_endpoint = task["runtime"]["browser_endpoint"].as_str().map(str::to_owned);
                break url.to_owned();
            }
            if Instant::now() > deadline {
                let asked = task["runtime"].get("_SERVICE").is_some();
                let reason = if asked {
                    "the task asked for an endpoint but the router did not publish one (see refusals on the status page)"
                } else {
                    "the task is running but never asked for an endpoint"
                };
                return Err(("the test task was not routed", reason.into()));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        run.report.endpoint = Some(endpoint.clone());
        run.log(format!("routed at {endpoint}"));

        let http =
            reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("client");
        let mut request = http.get(&endpoint);
        if self.auth_enabled {
            let token =
                self.client.bearer().await.map_err(|e| ("cannot log in to ClearML", e.to_string()))?;
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| ("the proxy did not answer", e.to_string()))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status.is_success() && body.contains(&marker(task_id)) {
            run.log(format!("GET {endpoint} -> {status}, served by the test task"));
            Ok(())
        } else {
            Err(("traffic did not reach the test task", format!("GET {endpoint} answered {status}")))
        }
    }

    async fn clean_up(&self, run: &mut Run, task_id: &str) {
        let _ = self.client.call("tasks.stopped", json!({"task": task_id, "force": true})).await;
        match self.client.call("tasks.delete", json!({"task": task_id, "force": true})).await {
            Ok(_) => run.log("removed the test task"),
            Err(e) => run.log(format!("could not remove the test task: {e}")),
        }
    }
}

/// Reads the report a running router answers to `POST /api/self-test`.
pub fn report_from_json(value: Value) -> Option<SelfTestReport> {
    serde_json::from_value(value).ok()
}
