//! The small value types settings are made of, each parsed from its variable in one place.

use std::fmt;

use gateway_core::model::display_untrusted;

use super::error::ConfigError;
use super::raw::Var;

/// `LOGGER_LEVEL`, read before the settings (to start logging) and with them (to validate it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// Any case, with the vendor's Python names too (`WARNING`, `CRITICAL`, `FATAL`).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "trace" => Some(Self::Trace),
            "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warn),
            "error" | "critical" | "fatal" => Some(Self::Error),
            _ => None,
        }
    }

    pub(super) fn from_var(var: Var<'_>, default: Self) -> Result<Self, ConfigError> {
        let Some(value) = var.present() else { return Ok(default) };
        Self::parse(value).ok_or_else(|| {
            var.bad(
                format!("{:?} is not a log level", display_untrusted(value)),
                "use one of debug, info, warning, error",
            )
        })
    }

    /// The level as a `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_filter())
    }
}

/// `ROUTER_RELOADER`: how structural changes reach the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloaderKind {
    /// File watch if `ROUTER__WEBSERVER__AUTO_RELOAD_CONFIG`, else the process reloader if the pid
    /// file names a running nginx master, else Docker if the socket exists, else the process reloader.
    Auto,
    /// SIGHUP to the proxy container over the Docker API; `nginx -t` runs inside that container.
    Docker,
    /// SIGHUP to the nginx master in `ROUTER_NGINX_PID_FILE`.
    Process,
    /// The router only writes files; the proxy reloads itself when they change.
    File,
}

impl ReloaderKind {
    pub(super) fn from_var(var: Var<'_>, default: Self) -> Result<Self, ConfigError> {
        let Some(value) = var.present() else { return Ok(default) };
        match value.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "docker" => Ok(Self::Docker),
            "process" | "pid" | "pidfile" => Ok(Self::Process),
            "file" | "file-watch" | "filewatch" => Ok(Self::File),
            _ => Err(var.bad(
                format!("{:?} is not a reloader", display_untrusted(var.value.unwrap_or_default())),
                "use auto, docker, process or file",
            )),
        }
    }
}

impl fmt::Display for ReloaderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReloaderKind::Auto => "auto",
            ReloaderKind::Docker => "docker",
            ReloaderKind::Process => "process",
            ReloaderKind::File => "file",
        })
    }
}

/// Which tasks this router routes, from `LISTEN_QUEUE_NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueFilter {
    /// `none` (or unset): every task that asks for an endpoint.
    All,
    /// Queue name patterns; `*` and `?` are wildcards.
    Names(Vec<String>),
}

impl QueueFilter {
    /// Comma or space separated queue names, wildcards allowed, `none` = all.
    pub(super) fn from_var(var: Var<'_>, default: &str) -> Result<Self, ConfigError> {
        let names: Vec<String> = var
            .present()
            .unwrap_or(default)
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if names.iter().any(|n| n.eq_ignore_ascii_case("none")) {
            if names.len() > 1 {
                return Err(var.bad(
                    "mixes `none` (all tasks) with queue names",
                    "use either `none` or a list of queue names",
                ));
            }
            return Ok(Self::All);
        }
        let is_bad = |n: &&String| {
            n.len() > 200 || !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.*?@:/".contains(c))
        };
        if let Some(name) = names.iter().find(is_bad) {
            return Err(var.bad(
                format!("{:?} is not a queue name", display_untrusted(name)),
                "use queue names (letters, digits, - _ . : / @) with * or ? as wildcards, separated by commas",
            ));
        }
        Ok(Self::Names(names))
    }
}

/// Turns a queue name pattern with `*`/`?` wildcards into an anchored regex for `queues.get_all`.
pub fn queue_pattern_regex(pattern: &str) -> String {
    let mut out = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}
