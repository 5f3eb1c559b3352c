//! Asks the proxy which config and routing table it serves (the control listener's status).

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

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
    url: String,
}

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
        self.ask(self.http.get(&self.url)).await
    }

    async fn load_routes(&self) -> anyhow::Result<ProxyStatus> {
        self.ask(self.http.post(&self.url)).await
    }
}

impl ProxyProbe {
    pub fn new(control_port: u16) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .expect("static client settings are valid");
        Self { http, url: format!("http://127.0.0.1:{control_port}/__clearml_router/status") }
    }

    /// The status document read as another shape (e.g. the counters the metrics need).
    pub async fn status_as<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        self.ask(self.http.get(&self.url)).await
    }

    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response =
            request.send().await.with_context(|| format!("proxy control {} unreachable", self.url))?;
        response.error_for_status()?.json().await.context("proxy status is not the expected JSON")
    }
}
