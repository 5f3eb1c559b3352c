//! Telling the proxy to load new structural config. This issue has the local-process reloader
//! (nginx master pid file + SIGHUP); Docker and file-watch reloaders implement the same trait.

use std::future::Future;
use std::path::PathBuf;

use anyhow::{bail, Context};

pub trait Reloader: Send + Sync {
    fn reload(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Human-readable name for logs and status.
    fn describe(&self) -> String;
}

/// Signals an nginx master started on this host: SIGHUP makes it re-read its config and replace
/// workers gracefully (open connections finish on the old workers).
#[derive(Debug, Clone)]
pub struct ProcessReloader {
    pub pid_file: PathBuf,
}

impl Reloader for ProcessReloader {
    async fn reload(&self) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.pid_file).with_context(|| {
            format!(
                "reading nginx pid file {} (set {} to the proxy's pid file)",
                self.pid_file.display(),
                crate::config::env::ROUTER_NGINX_PID_FILE
            )
        })?;
        let pid: i32 = text
            .trim()
            .parse()
            .with_context(|| format!("pid file {} does not hold a process id", self.pid_file.display()))?;
        if pid <= 1 {
            bail!("pid file {} holds pid {pid}, refusing to signal it", self.pid_file.display());
        }
        // SAFETY: kill has no memory-safety preconditions; errors are reported through errno.
        let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            bail!("cannot signal nginx master {pid}: {err}");
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("SIGHUP to the nginx master in {}", self.pid_file.display())
    }
}
