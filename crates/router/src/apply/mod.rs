//! Apply a render to the proxy: validate a staged copy, swap the live files atomically, reload
//! only for structural change, then confirm the proxy serves the new hashes. On failure the last
//! good files stay (or are put back) and the error says why.

pub mod docker;
#[cfg(test)]
pub(crate) mod fakes;
pub mod files;
pub mod filewatch;
pub mod probe;
pub mod reloader;
pub mod validate;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use docker::DockerReloader;
use filewatch::FileWatchReloader;
use gateway_core::table::RouteTable;
use gateway_render::{render, Dir, Layout, Rendered, RenderedFile};
use probe::{ProxyControl, ProxyProbe};
use reloader::{ProcessReloader, Reloader};
use validate::{BoxFuture, ValidateConfig};

/// Tells which proxy instance runs, so that a restarted or recreated proxy gets the current config
/// re-applied: a container id and start time, a master pid. `None` when it cannot be told.
pub trait ProxyIdentity: Send + Sync {
    fn identity(&self) -> BoxFuture<'_, Option<String>>;
}

impl ProxyIdentity for ProcessReloader {
    fn identity(&self) -> BoxFuture<'_, Option<String>> {
        let pid = std::fs::read_to_string(&self.pid_file).ok().map(|t| format!("pid {}", t.trim()));
        Box::pin(async move { pid })
    }
}

/// The reloader chosen at start (`ROUTER_RELOADER`).
#[derive(Debug, Clone)]
pub enum AnyReloader {
    Process(ProcessReloader),
    Docker(DockerReloader),
    File(FileWatchReloader),
}

impl Reloader for AnyReloader {
    async fn reload(&self) -> anyhow::Result<()> {
        match self {
            AnyReloader::Process(r) => r.reload().await,
            AnyReloader::Docker(r) => r.reload().await,
            AnyReloader::File(r) => r.reload().await,
        }
    }

    fn describe(&self) -> String {
        match self {
            AnyReloader::Process(r) => r.describe(),
            AnyReloader::Docker(r) => r.describe(),
            AnyReloader::File(r) => r.describe(),
        }
    }
}

impl ProxyIdentity for AnyReloader {
    fn identity(&self) -> BoxFuture<'_, Option<String>> {
        match self {
            AnyReloader::Process(r) => r.identity(),
            AnyReloader::Docker(r) => r.identity(),
            AnyReloader::File(_) => Box::pin(async { None }),
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Same bytes as the last confirmed apply.
    Unchanged,
    /// Only the routing table changed; the proxy picked it up without a reload.
    RoutesUpdated,
    /// Structural config changed and the proxy was reloaded (or already served it).
    ConfigApplied { reloaded: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("render failed: {0}")]
    Render(#[from] gateway_render::RenderError),
    #[error("new config is invalid, the previous one keeps serving: {0}")]
    Invalid(String),
    #[error("cannot validate the new config, the previous one keeps serving: {0:#}")]
    CannotValidate(anyhow::Error),
    #[error("proxy is not reachable; config is written and will be confirmed when it answers: {0:#}")]
    ProxyDown(anyhow::Error),
    #[error("proxy did not take the new config, restored the previous one: {0:#}")]
    NotConfirmed(anyhow::Error),
    #[error("{0:#}")]
    Io(anyhow::Error),
}

impl ApplyError {
    /// The proxy did not take a config (not reachable, or did not confirm): retried as a reload.
    pub fn is_reload(&self) -> bool {
        matches!(self, ApplyError::ProxyDown(_) | ApplyError::NotConfirmed(_))
    }

    /// The same input fails the same way until someone changes it.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ApplyError::Invalid(_) | ApplyError::Render(_))
    }
}

/// Generic over the proxy's control listener so that tests can stand in for the proxy.
pub struct Applier<R: Reloader, P: ProxyControl = ProxyProbe> {
    pub layout: Layout,
    pub conf_dir: PathBuf,
    pub lua_dir: PathBuf,
    pub validator: Box<dyn ValidateConfig>,
    pub reloader: R,
    pub probe: P,
    pub staging_dir: PathBuf,
    pub confirm_timeout: Duration,
    /// Tells a restarted or recreated proxy apart (see [`Applier::with_identity`]).
    pub identity: Option<Box<dyn ProxyIdentity>>,
    /// How often an unchanged render checks that the proxy still serves it.
    pub check_interval: Duration,
    last_good: Option<Rendered>,
    reloads: u64,
    last_check: Option<Instant>,
    known_identity: Option<String>,
}

impl<R: Reloader, P: ProxyControl> Applier<R, P> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        layout: Layout,
        conf_dir: PathBuf,
        lua_dir: PathBuf,
        validator: impl ValidateConfig + 'static,
        reloader: R,
        probe: P,
        staging_dir: PathBuf,
    ) -> Self {
        Self {
            layout,
            conf_dir,
            lua_dir,
            validator: Box::new(validator),
            reloader,
            probe,
            staging_dir,
            confirm_timeout: Duration::from_secs(10),
            identity: None,
            check_interval: Duration::from_secs(2),
            last_good: None,
            reloads: 0,
            last_check: None,
            known_identity: None,
        }
    }

    /// Re-apply the current config when `identity` reports another proxy instance than the one
    /// that confirmed it (a container restarted or recreated, a new nginx master).
    pub fn with_identity(mut self, identity: impl ProxyIdentity + 'static) -> Self {
        self.identity = Some(Box::new(identity));
        self
    }

    /// Reloads signalled by this applier since it started.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// The last render the proxy confirmed.
    pub fn last_good(&self) -> Option<&Rendered> {
        self.last_good.as_ref()
    }

    pub async fn apply(&mut self, table: &RouteTable) -> Result<ApplyOutcome, ApplyError> {
        let rendered = render(&self.layout, table)?;
        let structural_changed = match &self.last_good {
            Some(good) if *good == rendered => match self.proxy_drift(&rendered).await {
                None => return Ok(ApplyOutcome::Unchanged),
                Some(reason) => {
                    tracing::warn!(%reason, "re-applying the current config to the proxy");
                    self.last_good = None;
                    true
                }
            },
            Some(good) => good.structural != rendered.structural,
            None => true,
        };
        let outcome = if structural_changed {
            self.apply_structural(table, &rendered).await?
        } else {
            self.apply_routes(&rendered).await?
        };
        if structural_changed {
            self.remove_stale_certificates(&rendered);
            // The instance that confirmed this config; a different one later gets it re-applied.
            if let Some(identity) = &self.identity {
                self.known_identity = identity.identity().await;
            }
            self.last_check = Some(Instant::now());
        }
        self.last_good = Some(rendered);
        Ok(outcome)
    }

    /// Applies only the routing data of `table` on the structure the proxy serves now (the last
    /// good one): while a structural change is parked, tasks that start or stop are still routed.
    /// Nothing to build on (no structure served yet) is an error for the caller to wait on.
    pub async fn apply_data_only(&mut self, table: &RouteTable) -> Result<ApplyOutcome, ApplyError> {
        let Some(good) = self.last_good.clone() else {
            return Err(ApplyError::Io(anyhow::anyhow!("no structure is served yet to apply routes on")));
        };
        let fresh = render(&self.layout, table)?;
        if fresh.routes == good.routes {
            return Ok(ApplyOutcome::Unchanged);
        }
        let rendered = Rendered { routes: fresh.routes, routes_version: fresh.routes_version, ..good };
        let outcome = self.apply_routes(&rendered).await?;
        self.last_good = Some(rendered);
        Ok(outcome)
    }

    /// With nothing new to apply, checks now and then that the proxy still serves the last good
    /// config: a proxy that restarted, was recreated, serves another hash, or whose files were
    /// lost (new volumes) gets it again. Returns why it must be re-applied.
    async fn proxy_drift(&mut self, rendered: &Rendered) -> Option<String> {
        if self.last_check.is_some_and(|at| at.elapsed() < self.check_interval) {
            return None;
        }
        self.last_check = Some(Instant::now());
        if let Some(identity) = &self.identity {
            if let Some(now) = identity.identity().await {
                let before = self.known_identity.replace(now.clone());
                if before.is_some_and(|b| b != now) {
                    return Some(format!("the proxy restarted or was recreated (now {now})"));
                }
            }
        }
        // Files lost or changed under the proxy (volumes recreated, someone edited them): a
        // restart or a reload would load something else than what was confirmed.
        let files_current = match self.read_live(rendered) {
            Ok(live) => {
                let files = rendered.structural.iter().chain([&rendered.routes]);
                files.zip(&live).all(|(f, old)| old.as_deref() == Some(&f.bytes[..]))
            }
            Err(e) => return Some(format!("cannot read the proxy's files: {e:#}")),
        };
        if !files_current {
            return Some("the proxy's files are not the ones last applied".into());
        }
        match self.probe.status().await {
            Ok(s) if s.config_hash == rendered.config_hash && s.routes_version == rendered.routes_version => {
                None
            }
            Ok(s) => Some(format!(
                "the proxy serves config {} with routes {}, not {} with {}",
                short(&s.config_hash),
                short(&s.routes_version),
                short(&rendered.config_hash),
                short(&rendered.routes_version)
            )),
            // Not answering (restarting): it starts from the current files.
            Err(_) => None,
        }
    }

    async fn apply_structural(
        &mut self,
        table: &RouteTable,
        rendered: &Rendered,
    ) -> Result<ApplyOutcome, ApplyError> {
        let previous = self.read_live(rendered).map_err(ApplyError::Io)?;
        let differs = |f: &RenderedFile, old: &Option<Vec<u8>>| old.as_deref() != Some(&f.bytes[..]);
        let conf_changed = rendered.structural.iter().zip(&previous).any(|(f, old)| differs(f, old));
        let files_changed = conf_changed || differs(&rendered.routes, &previous[previous.len() - 1]);
        if conf_changed {
            self.validate(table).await?;
        }
        let before = self.probe.status().await.ok();
        if files_changed {
            self.write_all(rendered).map_err(ApplyError::Io)?;
        }
        if before.as_ref().is_some_and(|s| s.config_hash == rendered.config_hash) {
            self.confirm_routes(rendered).await.map_err(ApplyError::NotConfirmed)?;
            return Ok(ApplyOutcome::ConfigApplied { reloaded: false });
        }
        self.reloads += 1;
        if let Err(e) = self.reloader.reload().await {
            // No proxy to signal. Over an earlier config the unconfirmed files go (a restart
            // loads the old one and the next attempt re-applies); on an empty folder the
            // validated files stay so that the proxy has something to start with.
            if previous.iter().all(Option::is_some) {
                self.restore(rendered, &previous);
            }
            return Err(ApplyError::ProxyDown(e));
        }
        let want_hash = rendered.config_hash.clone();
        let confirmed = match self.probe.wait_for(self.confirm_timeout, |s| s.config_hash == want_hash).await
        {
            Ok(_) => self.confirm_routes(rendered).await,
            Err(e) => Err(e),
        };
        if let Err(e) = confirmed {
            tracing::error!(error = %format!("{e:#}"), "proxy did not confirm the new config; restoring the previous files");
            self.restore(rendered, &previous);
            self.reloads += 1;
            if let Err(e) = self.reloader.reload().await {
                tracing::error!(error = %format!("{e:#}"), "reload after restore failed");
            }
            return Err(ApplyError::NotConfirmed(e));
        }
        Ok(ApplyOutcome::ConfigApplied { reloaded: true })
    }

    async fn apply_routes(&mut self, rendered: &Rendered) -> Result<ApplyOutcome, ApplyError> {
        let path = self.path_of(&rendered.routes);
        if files::read_if_exists(&path).map_err(ApplyError::Io)?.as_deref()
            != Some(&rendered.routes.bytes[..])
        {
            files::write_atomic(&path, &rendered.routes.bytes).map_err(ApplyError::Io)?;
        }
        self.confirm_routes(rendered).await.map_err(|e| {
            self.last_good = None;
            ApplyError::NotConfirmed(e)
        })?;
        Ok(ApplyOutcome::RoutesUpdated)
    }

    async fn confirm_routes(&self, rendered: &Rendered) -> anyhow::Result<()> {
        let want = rendered.routes_version.clone();
        // Ask for an immediate load; the proxy's own poller is the fallback if this fails.
        if let Ok(status) = self.probe.load_routes().await {
            if status.routes_version == want {
                return Ok(());
            }
        }
        self.probe.wait_for(self.confirm_timeout, |s| s.routes_version == want).await.map(|_| ())
    }

    async fn validate(&self, table: &RouteTable) -> Result<(), ApplyError> {
        let _ = std::fs::remove_dir_all(&self.staging_dir);
        let result = self.validator.validate(&self.layout, table, &self.staging_dir).await;
        // The staged copy holds the secret key file too: do not leave it behind.
        let _ = std::fs::remove_dir_all(&self.staging_dir);
        let report = result.map_err(ApplyError::CannotValidate)?;
        if report.ok() {
            Ok(())
        } else {
            Err(ApplyError::Invalid(report.failure_summary()))
        }
    }

    fn path_of(&self, file: &RenderedFile) -> PathBuf {
        match file.dir {
            Dir::Conf => self.conf_dir.join(&*file.name),
            Dir::Lua => self.lua_dir.join(&*file.name),
        }
    }

    /// Live bytes of every file of a render, structural files first, routing table last.
    fn read_live(&self, rendered: &Rendered) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
        rendered
            .structural
            .iter()
            .chain([&rendered.routes])
            .map(|f| files::read_if_exists(&self.path_of(f)))
            .collect()
    }

    /// Lua first, routing table next, nginx conf last: the conf only ever refers to files in place.
    fn write_all(&self, rendered: &Rendered) -> anyhow::Result<()> {
        let mut ordered: Vec<&RenderedFile> = rendered.structural.iter().chain([&rendered.routes]).collect();
        ordered.sort_by_key(|f| f.dir == Dir::Conf);
        for file in ordered {
            let mode = if file.secret { 0o600 } else { 0o644 };
            files::write_atomic_mode(&self.path_of(file), &file.bytes, mode)?;
        }
        Ok(())
    }

    /// Certificate files of earlier configs (each certificate is its own file): once the proxy
    /// confirmed a config, those it does not name go.
    fn remove_stale_certificates(&self, rendered: &Rendered) {
        let Ok(entries) = std::fs::read_dir(&self.lua_dir) else { return };
        let prefix = gateway_render::tls::CERT_FILE_PREFIX;
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let current = rendered.structural.iter().any(|f| f.dir == Dir::Lua && f.name == name);
            if name.starts_with(prefix) && name.ends_with(".pem") && !current {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = %name, error = %e, "cannot remove an old certificate file");
                }
            }
        }
    }

    fn restore(&self, rendered: &Rendered, previous: &[Option<Vec<u8>>]) {
        for (file, old) in rendered.structural.iter().chain([&rendered.routes]).zip(previous) {
            if let Err(e) = files::restore(&self.path_of(file), old.as_deref()) {
                tracing::error!(file = %file.name, error = %format!("{e:#}"), "cannot restore the previous file");
            }
        }
    }
}

/// The first 12 characters of a hash, for logs.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

#[cfg(test)]
mod tests;
