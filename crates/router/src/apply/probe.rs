//! Asks the proxy which config and routing table it serves (the control listener's status).
//!
//! The control listener is on the proxy's loopback (127.0.0.1:ROUTER_PROXY_CONTROL_PORT). A router
//! that does not share the proxy's network (the vendor's compose files put only the proxy on the
//! host network) cannot connect there; with the Docker socket it then asks from inside the proxy
//! container (`docker exec` of bash's /dev/tcp), so the vendor's files work unchanged.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::apply::docker::DockerProxy;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ProxyStatus {
    pub config_hash: String,
    pub routes_version: String,
    #[serde(default)]
    pub routes: u64,
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProxyProbe {
    http: reqwest::Client,
    /// `http://127.0.0.1:<control port>`.
    base: String,
    port: u16,
    /// Asks through `docker exec` in the proxy container when the port is not reachable here.
    docker: Option<Arc<DockerProxy>>,
    /// Logged once: the answers come through the Docker API.
    through_docker: Arc<AtomicBool>,
}

/// One HTTP/1.0 request to the control listener from inside the proxy container; bash is in
/// every Debian-based image (the proxy's shell tools need nothing else).
const EXEC_REQUEST: &str = r#"exec 3<>"/dev/tcp/127.0.0.1/$1" && printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n' "$2" "$3" >&3 && cat <&3"#;

/// What the applier asks the proxy: the applier depends on this, not on HTTP, so that it can be
/// tested against an in-memory proxy.
pub trait ProxyControl: Send + Sync {
    /// What the proxy serves now.
    fn status(&self) -> impl Future<Output = anyhow::Result<ProxyStatus>> + Send;

    /// Makes the proxy load the routing table file now (instead of at its next poll) and
    /// returns what it serves afterwards.
    fn load_routes(&self) -> impl Future<Output = anyhow::Result<ProxyStatus>> + Send;

    /// Polls until `done(status)` or the deadline; returns the last status seen.
    fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&ProxyStatus) -> bool + Send,
    ) -> impl Future<Output = anyhow::Result<ProxyStatus>> + Send {
        async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let last_error = match self.status().await {
                    Ok(status) if done(&status) => return Ok(status),
                    Ok(status) => anyhow::anyhow!("proxy still serves {status:?}"),
                    Err(e) => e,
                };
                if tokio::time::Instant::now() >= deadline {
                    return Err(last_error
                        .context(format!("proxy did not confirm within {:.1}s", timeout.as_secs_f64())));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl ProxyControl for ProxyProbe {
    async fn status(&self) -> anyhow::Result<ProxyStatus> {
        self.ask(false).await
    }

    async fn load_routes(&self) -> anyhow::Result<ProxyStatus> {
        self.ask(true).await
    }
}

impl ProxyProbe {
    pub fn new(control_port: u16) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .expect("static client settings are valid");
        Self {
            http,
            base: format!("http://127.0.0.1:{control_port}"),
            port: control_port,
            docker: None,
            through_docker: Arc::default(),
        }
    }

    /// Falls back to asking inside the proxy container when the port cannot be reached here.
    pub fn with_docker(mut self, docker: Arc<DockerProxy>) -> Self {
        self.docker = Some(docker);
        self
    }

    /// The status document read as another shape (e.g. the counters the metrics need).
    pub async fn status_as<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        self.ask(false).await
    }

    /// Another document of the control listener (`path` with its query), read as `T`.
    pub async fn get_as<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.ask_at(false, path).await
    }

    async fn ask<T: serde::de::DeserializeOwned>(&self, post: bool) -> anyhow::Result<T> {
        self.ask_at(post, STATUS_PATH).await
    }

    async fn ask_at<T: serde::de::DeserializeOwned>(&self, post: bool, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let request = if post { self.http.post(&url) } else { self.http.get(&url) };
        let response = match (request.send().await, &self.docker) {
            (Ok(response), _) => response,
            (Err(e), Some(docker)) if e.is_connect() && !self.reaches_proxy(docker).await => {
                return self.ask_inside(docker, post, path).await
            }
            (Err(e), _) => return Err(e).with_context(|| format!("proxy control {url} unreachable")),
        };
        response.error_for_status()?.json().await.context("proxy status is not the expected JSON")
    }

    /// Whether the control port is reachable from here at all (a refused connection then only
    /// means that the proxy is (re)loading).
    async fn reaches_proxy(&self, docker: &DockerProxy) -> bool {
        match docker.find().await {
            Ok(container) => docker.shares_network_with(&container).await,
            Err(_) => true,
        }
    }

    async fn ask_inside<T: serde::de::DeserializeOwned>(
        &self,
        docker: &DockerProxy,
        post: bool,
        path: &str,
    ) -> anyhow::Result<T> {
        let container = docker.find().await?;
        let method = if post { "POST" } else { "GET" };
        let cmd: Vec<String> = ["bash", "-c", EXEC_REQUEST, "bash", &self.port.to_string(), method, path]
            .map(str::to_owned)
            .into();
        let (code, answer) = docker.exec(&container, &cmd).await?;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer.as_str(), ""));
        let status = head.lines().next().unwrap_or_default();
        if code == 126 || code == 127 {
            anyhow::bail!(
                "cannot ask the proxy's control port from inside proxy container {}: it has no bash (exit {code}); \
                 fix: use the gateway's proxy image, or run the router on the proxy's network (network_mode: host)",
                container.name
            );
        }
        if code != 0 || status.split_whitespace().nth(1) != Some("200") {
            anyhow::bail!(
                "proxy control 127.0.0.1:{} inside proxy container {} did not answer 200 (exit {code}): {}",
                self.port,
                container.name,
                answer.trim().lines().next().unwrap_or_default()
            );
        }
        if !self.through_docker.swap(true, Ordering::Relaxed) {
            tracing::info!(
                container = %container.name,
                "the proxy's control port 127.0.0.1:{} is not reachable from the router's network; asking inside the proxy container over the Docker API",
                self.port
            );
        }
        serde_json::from_str(body).context("proxy status is not the expected JSON")
    }
}

const STATUS_PATH: &str = "/__clearml_router/status";
