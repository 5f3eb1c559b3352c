//! Test harness: a real gateway on loopback. ClearML emulator (in-process), real nginx with the
//! Lua module (child process), the real router binary (child process), sample task apps.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clearml_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, NewTask};
use clearml_router::apply::probe::{ProxyControl, ProxyProbe};
use gateway_render::Layout;
use gateway_testkit::local_proxy::LocalProxy;
use gateway_testkit::process::ProcessGroup;
use serde_json::{json, Value};
use tokio::process::Command;

/// The operator API's token in every test gateway (`operator_http` sends it).
pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789abcdef";

/// A port for a listener the test starts later. Binding port 0 and closing it would hand out an
/// ephemeral port that any connection may take before the listener binds it; instead each port
/// comes from a counter over a range below the ephemeral one (32768-60999), at most once per
/// process, starting at an offset from the pid so that test binaries running at the same time
/// start far apart, and only if nothing is bound to it now.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    const BLOCK: u32 = 200;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = std::process::id() % (SPAN / BLOCK) * BLOCK;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "free_port: all {SPAN} ports of this process's range were handed out");
        let port = (FIRST + (offset + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("0.0.0.0", port)).is_ok() {
            return port;
        }
    }
}

/// Starts a helper process (Python app, script) the test stops again: SIGTERM, then SIGKILL to
/// its process group, on drop also when the test panics.
pub fn spawn_helper(cmd: &mut std::process::Command) -> ProcessGroup {
    let shown = format!("{cmd:?}");
    ProcessGroup::spawn(cmd, gateway_testkit::process::TERMINATE, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"))
}

/// A block of `n` consecutive free ports (TCP port ranges), below the ephemeral range
/// (32768-60999) so that no outgoing connection takes one before the proxy binds it.
pub fn free_block(n: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + rand::random::<u16>() % (32_000 - 20_000 - n);
        if (base..base + n).all(|p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok()) {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}

pub struct Gateway {
    pub emulator: EmulatorHandle,
    pub proxy: Option<LocalProxy>,
    pub router: Option<ProcessGroup>,
    pub dir: tempfile::TempDir,
    pub http_port: u16,
    pub control_port: u16,
    /// The router's status server (page, JSON API, metrics).
    pub status_port: u16,
    pub router_url: String,
    pub extra_env: Vec<(String, String)>,
}

#[derive(Default)]
pub struct Options {
    /// Extra router environment (overrides the defaults).
    pub env: Vec<(&'static str, String)>,
    /// Do not start the router process (tests that start it themselves).
    pub no_router: bool,
    /// Share another gateway's ClearML emulator (several routers on one ClearML).
    pub emulator: Option<EmulatorHandle>,
    /// nginx workers (default 2); benchmarks compare peers with one worker each.
    pub proxy_workers: Option<u32>,
    /// No access log (benchmarks: the peers they compare with log nothing either).
    pub no_access_log: bool,
}

impl Gateway {
    pub async fn start(options: Options) -> Gateway {
        let emulator = match options.emulator {
            Some(shared) => shared,
            None => emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap(),
        };
        let dir = tempfile::Builder::new().prefix("gw-test").tempdir().unwrap();
        let http_port = free_port();
        let control_port = free_port();
        let status_port = free_port();
        let router_url = format!("http://127.0.0.1:{http_port}");
        let layout = Layout {
            router_name: "test".into(),
            listen_port: http_port,
            control_port,
            lua_dir: dir.path().join("lua"),
            auth: gateway_render::AuthLayout::disabled(),
            upstream: Default::default(),
            tcp_ports: None,
            client_address: Default::default(),
            tls: Default::default(),
        };
        std::fs::write(dir.path().join("operator.token"), format!("{OPERATOR_TOKEN}\n")).unwrap();
        let proxy = LocalProxy::start(
            Path::new("nginx"),
            dir.path(),
            &layout,
            options.proxy_workers.unwrap_or(2),
            !options.no_access_log,
        )
        .await
        .expect("nginx starts");
        let extra_env = options.env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let mut gw = Gateway {
            emulator,
            proxy: Some(proxy),
            router: None,
            dir,
            http_port,
            control_port,
            status_port,
            router_url,
            extra_env,
        };
        if !options.no_router {
            gw.start_router();
        }
        gw
    }

    pub fn router_env(&self) -> Vec<(String, String)> {
        let config = EmulatorConfig::default();
        let dir = self.dir.path();
        let mut env: Vec<(String, String)> = [
            ("ROUTER_NAME", "test".to_owned()),
            ("ROUTER_URL", self.router_url.clone()),
            ("ROUTER__WEBSERVER__SERVER_PORT", self.http_port.to_string()),
            ("ROUTER_PROXY_CONTROL_PORT", self.control_port.to_string()),
            ("ROUTER_STATUS_ADDRESS", format!("127.0.0.1:{}", self.status_port)),
            ("ROUTER_OPERATOR_TOKEN_FILE", dir.join("operator.token").display().to_string()),
            ("CLEARML_API_HOST", self.emulator.url()),
            ("CLEARML_API_ACCESS_KEY", config.access_key),
            ("CLEARML_API_SECRET_KEY", config.secret_key),
            ("ROUTER_CONF_DIR", dir.join("conf.d").display().to_string()),
            ("ROUTER_LUA_DIR", dir.join("lua").display().to_string()),
            ("ROUTER_NGINX_PID_FILE", dir.join("nginx.pid").display().to_string()),
            ("ROUTER_ALLOW_LOOPBACK_TARGETS", "true".into()),
            ("ROUTER_POLL_INTERVAL_SECONDS", "0.3".into()),
            ("ROUTER_CLEARML_TIMEOUT_SECONDS", "2".into()),
            ("TCP_PORT_START", "1".into()),
            ("TCP_PORT_END", "1".into()),
            ("LOGGER_LEVEL", "debug".into()),
            // Authentication has its own tests (tests/auth.rs); elsewhere it is off.
            ("AUTH_ENABLED", "false".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(self.extra_env.iter().cloned());
        env
    }

    pub fn router_log_path(&self) -> PathBuf {
        self.dir.path().join("router.log")
    }

    pub fn start_router(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.router_log_path()).unwrap();
        let mut cmd = std::process::Command::new(gateway_testkit::paths::router_bin());
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // The router's temporary files land where the test's do (scripts/test.sh checks them).
            .env("TMPDIR", std::env::temp_dir())
            .env("RUST_LOG", "clearml_gateway=debug,clearml_router=debug,info")
            .envs(self.router_env())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.router = Some(spawn_helper(&mut cmd));
    }

    pub async fn stop_router(&mut self) {
        if let Some(mut router) = self.router.take() {
            router.stop();
        }
    }

    pub fn router_log(&self) -> String {
        std::fs::read_to_string(self.router_log_path()).unwrap_or_default()
    }

    /// Where tests that start the router themselves keep its static routes file.
    pub fn static_routes_file(&self) -> PathBuf {
        self.dir.path().join("static-routes.json")
    }

    /// Replaces the static routes file at once (written aside, then renamed), as an editor does.
    pub fn write_static_routes(&self, routes: &Value) {
        let path = self.static_routes_file();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(routes).unwrap()).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    pub fn nginx_error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// nginx reloads so far, as nginx itself logged them.
    pub fn nginx_reloads(&self) -> usize {
        self.nginx_error_log().matches("(SIGHUP) received").count()
    }

    /// Creates an in-progress task whose runtime asks for an HTTP endpoint on `target`.
    pub fn http_task(&self, name: &str, target: SocketAddr) -> String {
        self.emulator.create_task(NewTask {
            name: name.into(),
            status: "in_progress".into(),
            runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": target.ip().to_string(), "_PORT": target.port()}),
            system_tags: vec!["external_service".into()],
            ..NewTask::default()
        })
    }

    /// Creates an in-progress task asking for a TCP endpoint on `target`, clearml-session style:
    /// the keys written directly, no `upstream_task_port`.
    pub fn tcp_task(&self, name: &str, target: SocketAddr) -> String {
        self.emulator.create_task(NewTask {
            name: name.into(),
            status: "in_progress".into(),
            runtime: json!({"_SERVICE": "EXTERNAL_TCP", "external_address": target.ip().to_string(), "external_tcp_port": target.port()}),
            system_tags: vec!["external_service".into()],
            ..NewTask::default()
        })
    }

    /// A task serving a sample app named `name`, routed: its canonical URL answers 200.
    /// Returns the task id and the URL.
    pub async fn routed_task(&self, name: &str) -> (String, String) {
        let app = sample_app(name).await;
        let task = self.http_task(name, app);
        let url = self.wait_for_key(&task, "endpoint", Duration::from_secs(20)).await;
        assert_eq!(url, format!("{}/service/{task}/", self.router_url));
        self.wait_for_status(&url, 200, Duration::from_secs(20)).await;
        (task, url)
    }

    pub fn runtime(&self, task: &str) -> Value {
        self.emulator.task(task).and_then(|t| t.get("runtime").cloned()).unwrap_or(Value::Null)
    }

    /// Waits until the router has published `key` on the task and returns its value.
    pub async fn wait_for_key(&self, task: &str, key: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = self.runtime(task).get(key).and_then(Value::as_str) {
                return v.to_owned();
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "router did not publish {key} on {task} within {timeout:?}\nrouter log:\n{}",
                    self.router_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `key` is gone from the task's runtime.
    pub async fn wait_for_key_gone(&self, task: &str, key: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.runtime(task).get(key).is_some() {
            if tokio::time::Instant::now() > deadline {
                panic!("router did not retract {key} from {task}\nrouter log:\n{}", self.router_log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `url` until it answers `status` (or panics after `timeout`).
    pub async fn wait_for_status(&self, url: &str, status: u16, timeout: Duration) {
        let http = http_client();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = http.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            if got == status {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{url} answered {got}, expected {status}\nrouter log:\n{}", self.router_log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    /// The router first, so that it does not see its proxy go away.
    fn drop(&mut self) {
        drop(self.router.take());
        drop(self.proxy.take());
    }
}

impl Gateway {
    pub fn status_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.status_port)
    }

    /// The routing table version the proxy serves now (its control listener's status).
    pub async fn routes_version(&self) -> String {
        let probe = ProxyProbe::new(self.control_port);
        probe.status().await.expect("the proxy's control listener answers").routes_version
    }

    /// Waits until the proxy serves another routing table than `before`; returns the new version.
    pub async fn wait_for_routes_change(&self, before: &str, timeout: Duration) -> String {
        let probe = ProxyProbe::new(self.control_port);
        match probe.wait_for(timeout, |s| s.routes_version != before).await {
            Ok(status) => status.routes_version,
            Err(e) => panic!("{e:#}\nrouter log:\n{}", self.router_log()),
        }
    }

    /// Successful ClearML polls of the running router so far (0 while it is not up yet).
    pub async fn polls(&self) -> u64 {
        let Ok(response) = http_client().get(self.status_url("/metrics")).send().await else { return 0 };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("clearml_gateway_polls_total{result=\"ok\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the router has polled `n` more times. A poll starts a round (read ClearML and
    /// the route files, apply, advertise) and rounds do not overlap: with `n` = 2 one whole round
    /// ran after the call, so whatever it would do (wrongly) it has done.
    pub async fn wait_for_polls(&self, n: u64, timeout: Duration) {
        let start = self.polls().await;
        let deadline = tokio::time::Instant::now() + timeout;
        while self.polls().await < start + n {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "the router did not poll {n} times within {timeout:?}\nrouter log:\n{}",
                    self.router_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The proxy's own status document (its control listener).
    pub async fn proxy_status(&self) -> Value {
        let url = format!("http://127.0.0.1:{}/__clearml_router/status", self.control_port);
        http_client().get(url).fetch_json().await
    }

    /// Polls the proxy's status until `done` holds for it; returns that status.
    pub async fn wait_for_proxy(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.proxy_status().await;
            if done(&status) {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("proxy never reached: {what}; status {status}\nrouter log:\n{}", self.router_log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `request.fetch_json().await`: send, expect a JSON answer, panic with context otherwise.
pub trait FetchJson {
    fn fetch_json(self) -> impl std::future::Future<Output = Value>;
}

impl FetchJson for reqwest::RequestBuilder {
    async fn fetch_json(self) -> Value {
        let response = self.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"))
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A client of the operator API: sends `OPERATOR_TOKEN`.
pub fn operator_http() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {OPERATOR_TOKEN}").parse().unwrap());
    reqwest::Client::builder()
        .no_proxy()
        .default_headers(headers)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The headless browser of the page tests.
pub fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser"] {
        if std::process::Command::new("which").arg(candidate).output().is_ok_and(|o| o.status.success()) {
            return candidate;
        }
    }
    panic!("chromium is not installed: run scripts/setup.sh");
}

/// Headless Chromium with the throwaway profile `profile`, for `--dump-dom` or `--screenshot`.
pub fn headless_chromium(profile: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args(CHROMIUM_HEADLESS).arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Saves a screenshot of `url` (window `size`, e.g. "1280,1000") as
/// `target/test-artifacts/<name>` and checks that it is a real picture.
pub async fn screenshot(profile: &Path, url: &str, name: &str, size: &str) {
    let artifacts = gateway_testkit::paths::repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join(name);
    let _ = std::fs::remove_file(&shot);
    let out = headless_chromium(profile)
        .arg(format!("--screenshot={}", shot.display()))
        .args([&format!("--window-size={size}"), "--hide-scrollbars", url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot ({} bytes)", png.len());
}

pub async fn sample_app(name: &str) -> SocketAddr {
    gateway_testkit::sample_apps::start("127.0.0.1:0".parse().unwrap(), name).await.unwrap()
}

/// The Python interpreter with the real `clearml` SDK (scripts/setup.sh creates .venv).
pub fn sdk_python() -> PathBuf {
    if let Ok(p) = std::env::var("CLEARML_SDK_PYTHON") {
        return p.into();
    }
    let venv = gateway_testkit::paths::repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the clearml SDK venv is missing: run scripts/setup.sh (or set CLEARML_SDK_PYTHON)"
    );
    venv
}

/// The environment that points the clearml SDK at `emulator`, with `home` as its HOME; the
/// endpoints a script asks for are on loopback.
pub fn sdk_env(emulator: &EmulatorHandle, home: &Path) -> Vec<(&'static str, String)> {
    let config = EmulatorConfig::default();
    vec![
        ("HOME", home.display().to_string()),
        ("CLEARML_API_HOST", emulator.url()),
        ("CLEARML_WEB_HOST", emulator.url()),
        ("CLEARML_FILES_HOST", emulator.url()),
        ("CLEARML_API_ACCESS_KEY", config.access_key),
        ("CLEARML_API_SECRET_KEY", config.secret_key),
        ("CLEARML_AGENT_HOST_IP", "127.0.0.1".into()),
        ("CLEARML_LOG_LEVEL", "WARNING".into()),
    ]
}

/// Points a Python process using the SDK at the emulator (as the default user, with its own HOME).
pub fn clearml_env(command: &mut Command, emulator: &EmulatorHandle, home: &Path) {
    command.envs(sdk_env(emulator, home)).stdin(Stdio::null());
}

/// Runs a script from tests/sdk with the SDK pointed at the emulator, whatever its outcome.
pub async fn sdk_script_output(
    emulator: &EmulatorHandle,
    script: &str,
    args: &[&str],
) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
    let mut command = Command::new(sdk_python());
    command.arg(path).args(args).kill_on_drop(true);
    clearml_env(&mut command, emulator, home.path());
    command.output().await.expect("python runs")
}

/// Runs a script from tests/sdk with the SDK pointed at the emulator; returns stdout.
pub async fn run_sdk_script(emulator: &EmulatorHandle, script: &str, args: &[&str]) -> String {
    let out = sdk_script_output(emulator, script, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "SDK script {script} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The flags every test's Chromium runs with (headless, in a container, no first-run UI).
pub const CHROMIUM_HEADLESS: [&str; 5] =
    ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"];

/// An agent in the task network, simulated: picks queued tasks from `queue`, runs an app that
/// serves what the real test script serves, and asks for an endpoint the way the SDK does.
pub fn simulated_agent(emulator: EmulatorHandle, queue: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let queued: Vec<String> = emulator
                .tasks()
                .into_iter()
                .filter(|t| t["status"] == "queued" && t["execution"]["queue"] == queue.as_str())
                .filter_map(|t| t["id"].as_str().map(str::to_owned))
                .collect();
            for id in queued {
                let app = sample_app(&clearml_router::selftest::marker(&id)).await;
                emulator.update_task(&id, |t| {
                    t["status"] = json!("in_progress");
                    t["last_worker"] = json!("sim-agent:0");
                    t["runtime"] =
                        json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": app.port()});
                    t["system_tags"] = json!(["gateway-self-test", "external_service"]);
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}
