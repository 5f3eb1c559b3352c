//! Test harness: a real gateway on loopback. ClearML emulator (in-process), real nginx with the
//! Lua module (child process), the real router binary (child process), sample task apps.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clearml_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, NewTask};
use gateway_render::Layout;
use gateway_testkit::local_proxy::LocalProxy;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// The operator API's token in every test gateway (`operator_http` sends it).
pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789abcdef";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Gateway {
    pub emulator: EmulatorHandle,
    pub proxy: Option<LocalProxy>,
    pub router: Option<Child>,
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
        };
        std::fs::write(dir.path().join("operator.token"), format!("{OPERATOR_TOKEN}\n")).unwrap();
        let proxy =
            LocalProxy::start(Path::new("nginx"), dir.path(), &layout, 2).await.expect("nginx starts");
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
        let child = Command::new(gateway_testkit::paths::router_bin())
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "clearml_gateway=debug,clearml_router=debug,info")
            .envs(self.router_env())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("router binary starts");
        self.router = Some(child);
    }

    pub async fn stop_router(&mut self) {
        if let Some(mut child) = self.router.take() {
            let _ = child.kill().await;
        }
    }

    pub fn router_log(&self) -> String {
        std::fs::read_to_string(self.router_log_path()).unwrap_or_default()
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

impl Gateway {
    pub fn status_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.status_port)
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

/// Runs a script from tests/sdk with the SDK pointed at the emulator; returns stdout.
pub async fn run_sdk_script(emulator: &EmulatorHandle, script: &str, args: &[&str]) -> String {
    let home = tempfile::tempdir().unwrap();
    let config = EmulatorConfig::default();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk").join(script);
    let out = Command::new(sdk_python())
        .arg(path)
        .args(args)
        .env("HOME", home.path())
        .env("CLEARML_API_HOST", emulator.url())
        .env("CLEARML_WEB_HOST", emulator.url())
        .env("CLEARML_FILES_HOST", emulator.url())
        .env("CLEARML_API_ACCESS_KEY", &config.access_key)
        .env("CLEARML_API_SECRET_KEY", &config.secret_key)
        .env("CLEARML_AGENT_HOST_IP", "127.0.0.1")
        .env("CLEARML_LOG_LEVEL", "WARNING")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "SDK script {script} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
