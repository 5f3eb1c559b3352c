//! HTTPS: which certificate the proxy serves for which name. Certificates come from the mounted
//! files folder (`ROUTER_TLS_CERTS_DIR`, re-read every tick and on change; a bad file is refused
//! and its last good version keeps serving) and from ACME (`ROUTER_ACME_ENABLED`) for the
//! router's host and every custom-domain route that no file covers. The result is the
//! [`TlsLayout`] the render turns into HTTPS server blocks.

pub mod acme;
pub mod certs;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::task::JoinHandle;

use crate::config::{Settings, TlsSettings};
use certs::LoadedCert;
use gateway_core::static_routes::Location;
use gateway_core::table::RouteTable;
use gateway_render::{TlsCert, TlsLayout};

/// The first retry of a failed ACME order; doubled per failure up to [`ACME_RETRY_CAP`].
const ACME_RETRY_FIRST: Duration = Duration::from_secs(20);
const ACME_RETRY_CAP: Duration = Duration::from_secs(3600);

/// A certificate as the status page shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CertificateView {
    pub names: Vec<String>,
    /// `file` or `acme`.
    pub source: &'static str,
    pub file: String,
    pub serial: Option<String>,
    pub not_after: Option<String>,
    pub days_left: Option<i64>,
    /// Why it is not served (or, for a file, why its new content is refused and the previous one
    /// still serves).
    pub error: Option<String>,
}

type AcmeJob = JoinHandle<(String, anyhow::Result<LoadedCert>)>;

pub struct Tls {
    settings: TlsSettings,
    /// The folder the proxy serves HTTP-01 answers from, as the router sees it.
    challenges: PathBuf,
    /// Each certificate file's last good content, and why its current one is refused.
    files: BTreeMap<PathBuf, LoadedCert>,
    file_errors: BTreeMap<PathBuf, String>,
    folder_error: Option<String>,
    acme_certs: BTreeMap<String, LoadedCert>,
    /// Per host: the last ACME failure, how many in a row, and when to try again.
    acme_failures: BTreeMap<String, (String, u32, Instant)>,
    acme_job: Option<AcmeJob>,
    wake: Option<Arc<tokio::sync::Notify>>,
}

impl Tls {
    pub fn new(settings: &Settings, lua_dir: &std::path::Path) -> Self {
        Self {
            settings: settings.tls.clone(),
            challenges: lua_dir.join(gateway_render::tls::ACME_CHALLENGE_DIR),
            files: BTreeMap::new(),
            file_errors: BTreeMap::new(),
            folder_error: None,
            acme_certs: BTreeMap::new(),
            acme_failures: BTreeMap::new(),
            acme_job: None,
            wake: None,
        }
    }

    /// The router loop to wake when an ACME order finishes.
    pub fn set_wake(&mut self, wake: Arc<tokio::sync::Notify>) {
        self.wake = Some(wake);
    }

    /// The certificates folder, for the file watcher.
    pub fn certs_dir(&self) -> Option<&PathBuf> {
        self.settings.certs_dir.as_ref()
    }

    /// Re-reads the certificate files and the ACME folder; collects a finished ACME order.
    pub fn refresh(&mut self) {
        if let Some(dir) = self.settings.certs_dir.clone() {
            self.refresh_files(&dir);
        }
        self.collect_acme();
        if let Some(acme) = &self.settings.acme {
            self.acme_certs = acme::stored(acme)
                .into_iter()
                .filter_map(|(path, cert)| match cert {
                    Ok(cert) => Some((host_of(&path)?, cert)),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "stored ACME certificate left out");
                        None
                    }
                })
                .collect();
        }
    }

    fn refresh_files(&mut self, dir: &std::path::Path) {
        let scanned = match certs::scan_dir(dir) {
            Ok(scanned) => scanned,
            Err(e) => {
                if self.folder_error.as_ref() != Some(&e) {
                    tracing::error!(error = %e, "certificate folder unreadable; the last good certificates keep serving");
                    self.folder_error = Some(e);
                }
                return;
            }
        };
        self.folder_error = None;
        let present: Vec<PathBuf> = scanned.iter().map(|(p, _)| p.clone()).collect();
        self.files.retain(|p, _| present.contains(p));
        self.file_errors.retain(|p, _| present.contains(p));
        for (path, outcome) in scanned {
            match outcome {
                Ok(cert) => {
                    if self.files.get(&path) != Some(&cert) {
                        tracing::info!(file = %path.display(), names = ?cert.names, "certificate file loaded");
                    }
                    self.file_errors.remove(&path);
                    self.files.insert(path, cert);
                }
                Err(e) => {
                    let message = format!("{}: {e}", path.display());
                    if self.file_errors.get(&path) != Some(&message) {
                        let kept = if self.files.contains_key(&path) {
                            "its last good content keeps serving"
                        } else {
                            "not served"
                        };
                        tracing::error!(error = %message, "certificate file refused; {kept}");
                        self.file_errors.insert(path, message);
                    }
                }
            }
        }
    }

    /// The host names that need a certificate: the router's own (unless it is an IP address)
    /// and each custom-domain static route's.
    pub fn hosts(settings: &Settings, table: &RouteTable) -> Vec<String> {
        let router_host = gateway_core::static_routes::router_host(&settings.router_url);
        let mut hosts: Vec<String> = table
            .static_defined
            .iter()
            .filter_map(|r| match &r.location {
                Location::Host(h) => Some(h.as_str().to_owned()),
                _ => None,
            })
            .collect();
        if gateway_render::tls::valid_server_name(&router_host) && router_host.contains('.') {
            hosts.push(router_host);
        }
        hosts.sort();
        hosts.dedup();
        hosts
    }

    fn file_covers(&self, host: &str) -> bool {
        self.files.values().any(|c| c.covers(host))
    }

    /// Hosts ACME is responsible for: wanted and not covered by a file.
    fn acme_hosts<'h>(&self, hosts: &'h [String]) -> Vec<&'h String> {
        if self.settings.acme.is_none() {
            return Vec::new();
        }
        hosts.iter().filter(|h| !self.file_covers(h)).collect()
    }

    /// What the proxy serves: file certificates first (in file order), then ACME ones; a name
    /// goes to the first certificate that has it; the certificate of `default_host` is the
    /// default (clients without SNI).
    pub fn layout(&self, hosts: &[String], default_host: &str) -> TlsLayout {
        let mut candidates: Vec<&LoadedCert> = self.files.values().collect();
        for host in self.acme_hosts(hosts) {
            candidates.extend(self.acme_certs.get(host.as_str()));
        }
        let mut taken = std::collections::BTreeSet::new();
        let mut certs: Vec<TlsCert> = Vec::new();
        for cert in candidates {
            let names: Vec<String> =
                cert.names.iter().filter(|n| taken.insert((*n).clone())).cloned().collect();
            if !names.is_empty() {
                certs.push(TlsCert { names, pem: cert.pem.clone() });
            }
        }
        let covers_default = |c: &TlsCert| c.names.iter().any(|n| certs::name_covers(n, default_host));
        if let Some(i) = certs.iter().position(covers_default) {
            let default = certs.remove(i);
            certs.insert(0, default);
        }
        TlsLayout {
            https_port: self.settings.https_port.map(|p| p.get()),
            redirect: self.settings.redirect,
            acme_challenges: self.settings.acme.is_some(),
            certs,
        }
    }

    /// Starts an ACME order for the first host that has no certificate or whose renewal is due
    /// (one order at a time; failures wait their backoff). Call once the proxy serves the
    /// challenge folder.
    pub fn start_acme(&mut self, hosts: &[String]) {
        let Some(settings) = self.settings.acme.clone() else { return };
        if self.acme_job.is_some() {
            return;
        }
        let now = SystemTime::now();
        let due = self.acme_hosts(hosts).into_iter().find(|host| {
            let needed =
                self.acme_certs.get(host.as_str()).is_none_or(|c| c.due_for_renewal(now) || !c.covers(host));
            let waiting =
                self.acme_failures.get(host.as_str()).is_some_and(|(_, _, at)| Instant::now() < *at);
            needed && !waiting
        });
        let Some(host) = due.cloned() else { return };
        let renewal = self.acme_certs.contains_key(&host);
        tracing::info!(host = %host, renewal, "ordering a certificate over ACME");
        let challenges = self.challenges.clone();
        let wake = self.wake.clone();
        self.acme_job = Some(tokio::spawn(async move {
            let result = acme::issue(&settings, &challenges, &host).await;
            if let Some(wake) = wake {
                wake.notify_one();
            }
            (host, result)
        }));
    }

    fn collect_acme(&mut self) {
        if !self.acme_job.as_ref().is_some_and(|j| j.is_finished()) {
            return;
        }
        let job = self.acme_job.take().expect("checked");
        let Some(Ok((host, result))) = futures_util::FutureExt::now_or_never(job) else { return };
        match result {
            Ok(cert) => {
                tracing::info!(host = %host, serial = %cert.serial, not_after = %gateway_core::time::rfc3339(cert.not_after), "certificate issued over ACME");
                self.acme_failures.remove(&host);
            }
            Err(e) => {
                let failures = self.acme_failures.get(&host).map_or(0, |(_, n, _)| *n) + 1;
                let wait = ACME_RETRY_FIRST.saturating_mul(1 << (failures - 1).min(16)).min(ACME_RETRY_CAP);
                let message = format!("{e:#}");
                tracing::error!(host = %host, error = %message, retry_in = ?wait, "ACME order failed");
                self.acme_failures.insert(host, (message, failures, Instant::now() + wait));
            }
        }
    }

    /// Every certificate and every problem, for the status page.
    pub fn views(&self, hosts: &[String]) -> Vec<CertificateView> {
        let now = SystemTime::now();
        let view = |cert: &LoadedCert, source: &'static str, error: Option<String>| CertificateView {
            names: cert.names.clone(),
            source,
            file: cert.file.display().to_string(),
            serial: Some(cert.serial.clone()),
            not_after: Some(gateway_core::time::rfc3339(cert.not_after)),
            days_left: Some(match cert.not_after.duration_since(now) {
                Ok(left) => (left.as_secs() / 86_400) as i64,
                Err(past) => -((past.duration().as_secs() / 86_400) as i64) - 1,
            }),
            error,
        };
        let failed = |names: Vec<String>, source, file: String, error: String| CertificateView {
            names,
            source,
            file,
            serial: None,
            not_after: None,
            days_left: None,
            error: Some(error),
        };
        let mut out = Vec::new();
        for (path, cert) in &self.files {
            out.push(view(cert, "file", self.file_errors.get(path).cloned()));
        }
        for (path, error) in &self.file_errors {
            if !self.files.contains_key(path) {
                out.push(failed(vec![], "file", path.display().to_string(), error.clone()));
            }
        }
        if let Some(e) = &self.folder_error {
            out.push(failed(vec![], "file", String::new(), e.clone()));
        }
        for host in self.acme_hosts(hosts) {
            let error = self.acme_failures.get(host.as_str()).map(|(e, _, _)| e.clone());
            match self.acme_certs.get(host.as_str()) {
                Some(cert) => out.push(view(cert, "acme", error)),
                None => out.push(failed(
                    vec![host.clone()],
                    "acme",
                    String::new(),
                    error.unwrap_or_else(|| "not issued yet".into()),
                )),
            }
        }
        out
    }
}

/// The host an ACME certificate file is for (`<host>.pem`).
fn host_of(path: &std::path::Path) -> Option<String> {
    path.file_stem().and_then(|s| s.to_str()).map(str::to_owned)
}

/// Wakes `wake` on any change in the certificate folder (a Kubernetes secret update swaps a
/// symlink; an operator copies files in).
pub fn watch_dir(
    dir: &std::path::Path,
    wake: Arc<tokio::sync::Notify>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            wake.notify_one();
        }
    })?;
    watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
    Ok(watcher)
}
