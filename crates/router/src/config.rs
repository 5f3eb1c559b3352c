//! Router settings from the environment, with the enterprise router's variable names (drop-in).
//!
//! Parsing is two steps so tests never touch the process environment: `envy` reads every variable
//! as an optional string into [`RawEnv`], then [`Settings::from_raw`] validates each one and
//! reports a problem as one line naming the variable, what is wrong and how to fix it.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use gateway_core::model::{display_untrusted, Port};

pub use gateway_core::secret::Secret;

/// Every variable the router reads, unparsed. Field names are the variable names, lower-cased.
#[derive(Debug, Default, Deserialize)]
pub struct RawEnv {
    router_name: Option<String>,
    #[serde(rename = "router__webserver__server_port")]
    router_webserver_server_port: Option<String>,
    router_url: Option<String>,
    clearml_api_host: Option<String>,
    clearml_api_access_key: Option<String>,
    clearml_api_secret_key: Option<String>,
    auth_enabled: Option<String>,
    auth_cookie_name: Option<String>,
    auth_secure_enabled: Option<String>,
    auth_base64_jwks_key: Option<String>,
    auth_login_url: Option<String>,
    auth_cache_ttl_seconds: Option<String>,
    auth_negative_cache_ttl_seconds: Option<String>,
    tcp_router_address: Option<String>,
    tcp_port_start: Option<String>,
    tcp_port_end: Option<String>,
    listen_queue_name: Option<String>,
    ssl_verify: Option<String>,
    logger_level: Option<String>,
    #[serde(rename = "router__webserver__auto_reload_config")]
    router_webserver_auto_reload_config: Option<String>,
    router_poll_interval_seconds: Option<String>,
    router_clearml_timeout_seconds: Option<String>,
    router_conf_dir: Option<String>,
    router_lua_dir: Option<String>,
    router_proxy_control_port: Option<String>,
    router_nginx_pid_file: Option<String>,
    router_nginx_bin: Option<String>,
    router_luajit_bin: Option<String>,
    router_allow_loopback_targets: Option<String>,
    router_status_address: Option<String>,
    clearml_web_host: Option<String>,
    // Deployment settings (issue 6)
    router_reloader: Option<String>,
    router_proxy_container: Option<String>,
    router_docker_socket: Option<String>,
    router_static_routes_file: Option<String>,
    router_groups_file: Option<String>,
}

impl RawEnv {
    pub fn from_process_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }
    /// Later pairs override earlier ones with the same name (defaults first, then overrides).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let unique: std::collections::BTreeMap<String, String> =
            vars.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        envy::from_iter(unique).map_err(|e| ConfigError {
            var: "environment".into(),
            problem: e.to_string(),
            fix: "check the variable names in runtime.env".into(),
        })
    }
}

/// One bad setting: the variable, what is wrong with its value, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {problem}; fix: {fix}")]
pub struct ConfigError {
    pub var: String,
    pub problem: String,
    pub fix: String,
}

fn bad(var: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError { var: var.into(), problem: problem.into(), fix: fix.into() }
}

/// Which tasks this router routes, from `LISTEN_QUEUE_NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueFilter {
    /// `none` (or unset): every task that asks for an endpoint.
    All,
    /// Queue name patterns; `*` and `?` are wildcards.
    Names(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub enabled: bool,
    pub cookie_name: String,
    pub secure_cookies: bool,
    /// Base64 of the ClearML server's token secret (`AUTH_BASE64_JWKS_KEY`): verify locally.
    pub token_secret: Option<Secret>,
    /// Where an unauthenticated browser is sent to log in.
    pub login_url: String,
    pub cache_ttl: Duration,
    pub negative_cache_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct TcpSettings {
    pub router_address: Option<String>,
    pub port_start: Port,
    pub port_end: Port,
}

/// Where the proxy's files live and how to reach and check it.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub conf_dir: PathBuf,
    pub lua_dir: PathBuf,
    /// Loopback-only port where the proxy reports the config hash it serves.
    pub control_port: Port,
    pub pid_file: PathBuf,
    pub nginx_bin: PathBuf,
    pub luajit_bin: PathBuf,
    pub auto_reload_config: bool,
    // Deployment settings (issue 6)
    /// How the proxy is told to load new structural config (`ROUTER_RELOADER`).
    pub reloader: ReloaderKind,
    /// The proxy container: its name or its compose service name (`ROUTER_PROXY_CONTAINER`).
    pub container: String,
    /// The Docker API socket (`ROUTER_DOCKER_SOCKET`).
    pub docker_socket: PathBuf,
}

// Deployment settings (issue 6)
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

// Deployment settings (issue 6)
fn reloader_var(value: Option<&str>) -> Result<ReloaderKind, ConfigError> {
    match present(value).map(str::to_ascii_lowercase).as_deref() {
        None | Some("auto") => Ok(ReloaderKind::Auto),
        Some("docker") => Ok(ReloaderKind::Docker),
        Some("process" | "pid" | "pidfile") => Ok(ReloaderKind::Process),
        Some("file" | "file-watch" | "filewatch") => Ok(ReloaderKind::File),
        Some(_) => Err(bad(
            "ROUTER_RELOADER",
            format!("{:?} is not a reloader", display_untrusted(value.unwrap_or_default())),
            "use auto, docker, process or file",
        )),
    }
}

// Deployment settings (issue 6)
/// A Docker container or compose service name: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
fn container_var(value: Option<&str>) -> Result<String, ConfigError> {
    let name = present(value).unwrap_or("task_traffic_webserver").trim_start_matches('/');
    let ok = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(bad(
            "ROUTER_PROXY_CONTAINER",
            format!("{:?} is not a container name", display_untrusted(name)),
            "set the proxy container's name or its compose service name (default task_traffic_webserver)",
        ));
    }
    Ok(name.to_owned())
}

// Deployment settings (issue 6)
/// `ROUTER_DOCKER_SOCKET`: an absolute path, `unix://` allowed.
fn docker_socket_var(value: Option<&str>) -> Result<PathBuf, ConfigError> {
    let v = present(value).unwrap_or("/var/run/docker.sock");
    let path = v.strip_prefix("unix://").unwrap_or(v);
    if !path.starts_with('/') {
        return Err(bad(
            "ROUTER_DOCKER_SOCKET",
            format!("{:?} is not an absolute socket path", display_untrusted(v)),
            "use the path of the Docker API socket, e.g. /var/run/docker.sock (unix://... also works)",
        ));
    }
    Ok(PathBuf::from(path))
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub router_name: String,
    pub listen_port: Port,
    /// External base URL, without a trailing slash.
    pub router_url: String,
    pub api_host: String,
    pub access_key: Secret,
    pub secret_key: Secret,
    pub auth: AuthSettings,
    pub tcp: TcpSettings,
    pub queues: QueueFilter,
    pub ssl_verify: bool,
    pub log_level: String,
    pub poll_interval: Duration,
    pub api_timeout: Duration,
    pub proxy: ProxySettings,
    pub allow_loopback_targets: bool,
    /// Where the router serves its status page, JSON API and metrics (loopback by default).
    pub status_address: std::net::SocketAddr,
    /// The ClearML web app, for links to tasks on the status page.
    pub web_host: String,
    /// The static routes file (JSON, or YAML for `.yaml`/`.yml`), watched and edited by the admin API.
    pub static_routes_file: Option<PathBuf>,
    /// The group -> members map for static routes' allowed groups (JSON).
    pub groups_file: Option<PathBuf>,
}

impl Settings {
    pub fn from_env() -> Result<Self, Vec<ConfigError>> {
        Self::from_raw(RawEnv::from_process_env().map_err(|e| vec![e])?)
    }

    /// Validates every setting and returns all problems at once, one line each.
    pub fn from_raw(raw: RawEnv) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();

        let listen_port = take(
            &mut errors,
            port_var("ROUTER__WEBSERVER__SERVER_PORT", raw.router_webserver_server_port.as_deref(), 8080),
        );
        let router_url = take(
            &mut errors,
            url_var(
                "ROUTER_URL",
                raw.router_url.as_deref(),
                "set it to the gateway's external URL, e.g. http://gateway.example.com:8080",
            ),
        );
        let api_host = take(
            &mut errors,
            url_var(
                "CLEARML_API_HOST",
                raw.clearml_api_host.as_deref(),
                "set it to the ClearML API server, e.g. https://api.clear.ml or http://clearml:8008",
            ),
        );
        let access_key = take(&mut errors, secret_var("CLEARML_API_ACCESS_KEY", raw.clearml_api_access_key));
        let secret_key = take(&mut errors, secret_var("CLEARML_API_SECRET_KEY", raw.clearml_api_secret_key));
        let auth_enabled = take(&mut errors, bool_var("AUTH_ENABLED", raw.auth_enabled.as_deref(), true));
        let secure_cookies =
            take(&mut errors, bool_var("AUTH_SECURE_ENABLED", raw.auth_secure_enabled.as_deref(), false));
        let cookie_name = take(&mut errors, cookie_name_var(raw.auth_cookie_name.as_deref()));
        let token_secret = take(&mut errors, token_secret_var(raw.auth_base64_jwks_key));
        let login_url = take(
            &mut errors,
            match present(raw.auth_login_url.as_deref()) {
                Some(url) => url_var("AUTH_LOGIN_URL", Some(url), "set the ClearML web app's login page URL"),
                None => Ok(String::new()),
            },
        );
        let cache_ttl = take(
            &mut errors,
            seconds_var("AUTH_CACHE_TTL_SECONDS", raw.auth_cache_ttl_seconds.as_deref(), 30.0, (1.0, 3600.0)),
        );
        let negative_cache_ttl = take(
            &mut errors,
            seconds_var(
                "AUTH_NEGATIVE_CACHE_TTL_SECONDS",
                raw.auth_negative_cache_ttl_seconds.as_deref(),
                5.0,
                (1.0, 3600.0),
            ),
        );
        let tcp_address = take(&mut errors, tcp_address_var(raw.tcp_router_address.as_deref()));
        let tcp_start = take(&mut errors, port_var("TCP_PORT_START", raw.tcp_port_start.as_deref(), 10000));
        let tcp_end = take(&mut errors, port_var("TCP_PORT_END", raw.tcp_port_end.as_deref(), 10100));
        let queues = take(&mut errors, queue_filter(raw.listen_queue_name.as_deref()));
        let ssl_verify = take(&mut errors, bool_var("SSL_VERIFY", raw.ssl_verify.as_deref(), true));
        let log_level = take(&mut errors, log_level_var(raw.logger_level.as_deref()));
        let auto_reload = take(
            &mut errors,
            bool_var(
                "ROUTER__WEBSERVER__AUTO_RELOAD_CONFIG",
                raw.router_webserver_auto_reload_config.as_deref(),
                false,
            ),
        );
        let poll_interval = take(
            &mut errors,
            seconds_var(
                "ROUTER_POLL_INTERVAL_SECONDS",
                raw.router_poll_interval_seconds.as_deref(),
                1.0,
                (0.1, 300.0),
            ),
        );
        let api_timeout = take(
            &mut errors,
            seconds_var(
                "ROUTER_CLEARML_TIMEOUT_SECONDS",
                raw.router_clearml_timeout_seconds.as_deref(),
                10.0,
                (0.1, 300.0),
            ),
        );
        let control_port = take(
            &mut errors,
            port_var("ROUTER_PROXY_CONTROL_PORT", raw.router_proxy_control_port.as_deref(), 18080),
        );
        let allow_loopback = take(
            &mut errors,
            bool_var("ROUTER_ALLOW_LOOPBACK_TARGETS", raw.router_allow_loopback_targets.as_deref(), false),
        );
        let path = |v: Option<String>, default: &str| {
            PathBuf::from(v.filter(|s| !s.is_empty()).unwrap_or(default.into()))
        };
        let router_name = raw.router_name.unwrap_or_else(|| "router".into());
        if let Err(e) = check_router_name(&router_name) {
            errors.push(e);
        }

        if let (Some(start), Some(end)) = (tcp_start, tcp_end) {
            if let Err(e) = check_tcp_range(start, end, listen_port, control_port) {
                errors.push(e);
            }
        }
        if let (Some(listen), Some(control)) = (listen_port, control_port) {
            if listen == control {
                errors.push(bad(
                    "ROUTER_PROXY_CONTROL_PORT",
                    format!("{control} is also ROUTER__WEBSERVER__SERVER_PORT"),
                    "pick a free port for the proxy's loopback control listener",
                ));
            }
        }
        let status_address = take(&mut errors, status_address_var(raw.router_status_address.as_deref()));
        let web_host = take(
            &mut errors,
            match present(raw.clearml_web_host.as_deref()) {
                Some(url) => url_var(
                    "CLEARML_WEB_HOST",
                    Some(url),
                    "set the ClearML web app URL, e.g. https://app.clear.ml",
                ),
                None => Ok(String::new()),
            },
        );
        // Deployment settings (issue 6)
        let reloader = take(&mut errors, reloader_var(raw.router_reloader.as_deref()));
        let container = take(&mut errors, container_var(raw.router_proxy_container.as_deref()));
        let docker_socket = take(&mut errors, docker_socket_var(raw.router_docker_socket.as_deref()));
        let static_routes_file = take(
            &mut errors,
            file_var("ROUTER_STATIC_ROUTES_FILE", raw.router_static_routes_file.as_deref()),
        );
        let groups_file =
            take(&mut errors, file_var("ROUTER_GROUPS_FILE", raw.router_groups_file.as_deref()));
        if !errors.is_empty() {
            return Err(errors);
        }
        let some = "validated above";
        Ok(Settings {
            router_name,
            listen_port: listen_port.expect(some),
            router_url: router_url.expect(some),
            api_host: api_host.clone().expect(some),
            access_key: access_key.expect(some),
            secret_key: secret_key.expect(some),
            auth: AuthSettings {
                enabled: auth_enabled.expect(some),
                cookie_name: cookie_name.expect(some),
                secure_cookies: secure_cookies.expect(some),
                token_secret: token_secret.expect(some),
                login_url: Some(login_url.expect(some))
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| default_login_url(api_host.as_deref().expect(some))),
                cache_ttl: cache_ttl.expect(some),
                negative_cache_ttl: negative_cache_ttl.expect(some),
            },
            tcp: TcpSettings {
                router_address: tcp_address.expect(some),
                port_start: tcp_start.expect(some),
                port_end: tcp_end.expect(some),
            },
            queues: queues.expect(some),
            ssl_verify: ssl_verify.expect(some),
            log_level: log_level.expect(some),
            poll_interval: poll_interval.expect(some),
            api_timeout: api_timeout.expect(some),
            proxy: ProxySettings {
                conf_dir: path(raw.router_conf_dir, "/etc/nginx/conf.d"),
                lua_dir: path(raw.router_lua_dir, "/usr/local/openresty/nginx/lua"),
                control_port: control_port.expect(some),
                pid_file: path(raw.router_nginx_pid_file, "/run/nginx.pid"),
                nginx_bin: path(raw.router_nginx_bin, "nginx"),
                luajit_bin: path(raw.router_luajit_bin, "luajit"),
                auto_reload_config: auto_reload.expect(some),
                // Deployment settings (issue 6)
                reloader: reloader.expect(some),
                container: container.expect(some),
                docker_socket: docker_socket.expect(some),
            },
            allow_loopback_targets: allow_loopback.expect(some),
            status_address: status_address.expect(some),
            web_host: Some(web_host.expect(some))
                .filter(|url| !url.is_empty())
                .unwrap_or_else(|| default_web_host(api_host.as_deref().expect(some))),
            static_routes_file: static_routes_file.expect(some),
            groups_file: groups_file.expect(some),
        })
    }

    /// Addresses that are the proxy host itself, for the routing-loop check.
    pub fn self_addresses(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        if let Some(host) = url_host(&self.router_url) {
            if let Ok(ip) = host.trim_matches(['[', ']']).parse() {
                out.push(ip);
            }
        }
        if let Some(ip) = self.tcp.router_address.as_deref().and_then(|a| a.parse().ok()) {
            out.push(ip);
        }
        out
    }

    /// Ports the proxy listens on itself.
    pub fn proxy_ports(&self) -> Vec<u16> {
        let mut ports = vec![self.listen_port.get(), self.proxy.control_port.get()];
        ports.extend(self.tcp.port_start.get()..=self.tcp.port_end.get());
        ports
    }
}

/// Keeps a valid value, or records the error and goes on so every problem is reported at once.
fn take<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// `AUTH_BASE64_JWKS_KEY`: must be base64 (the value itself never appears in a message).
fn token_secret_var(value: Option<String>) -> Result<Option<Secret>, ConfigError> {
    use base64::Engine;
    let Some(v) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else { return Ok(None) };
    let engine = base64::engine::general_purpose::STANDARD;
    match engine.decode(&v) {
        Ok(bytes) if !bytes.is_empty() => Ok(Some(Secret::new(v))),
        _ => Err(bad(
            "AUTH_BASE64_JWKS_KEY",
            "is not standard base64 (value not shown)",
            "set it to base64 of the ClearML server's secure.auth.token_secret, or unset it for remote checks",
        )),
    }
}

fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

fn port_var(var: &str, value: Option<&str>, default: u16) -> Result<Port, ConfigError> {
    match present(value) {
        None => Ok(Port::new(default).expect("defaults are valid ports")),
        Some(v) => Port::parse_str(v).map_err(|_| {
            bad(
                var,
                format!("{:?} is not a port number (1-65535)", display_untrusted(v)),
                format!("set a port such as {default}"),
            )
        }),
    }
}

fn bool_var(var: &str, value: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match present(value).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "no" | "off") => Ok(false),
        Some(_) => Err(bad(
            var,
            format!("{:?} is not a boolean", display_untrusted(value.unwrap_or_default())),
            "use true or false",
        )),
    }
}

fn seconds_var(
    var: &str,
    value: Option<&str>,
    default: f64,
    (min, max): (f64, f64),
) -> Result<Duration, ConfigError> {
    let Some(v) = present(value) else {
        return Ok(Duration::from_secs_f64(default));
    };
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (min..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(bad(
            var,
            format!("{:?} is not a number of seconds in {min}..{max}", display_untrusted(v)),
            format!("set a number of seconds such as {default}"),
        )),
    }
}

fn secret_var(var: &str, value: Option<String>) -> Result<Secret, ConfigError> {
    match value.filter(|v| !v.trim().is_empty()) {
        Some(v) if v.trim() != v => {
            Err(bad(var, "has leading or trailing whitespace", "remove the spaces around the key"))
        }
        Some(v) => Ok(Secret::new(v)),
        None => Err(bad(
            var,
            "is not set",
            "create API credentials in the ClearML web app (Settings > Workspace) and set them",
        )),
    }
}

/// Accepts `http(s)://host[:port][/path]`; returns it without a trailing slash.
fn url_var(var: &str, value: Option<&str>, fix: &str) -> Result<String, ConfigError> {
    let Some(v) = present(value) else {
        return Err(bad(var, "is not set", fix));
    };
    let v = v.trim_end_matches('/');
    let rest = v.strip_prefix("http://").or_else(|| v.strip_prefix("https://"));
    let host_ok = rest
        .and_then(|r| r.split('/').next())
        .map(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c)))
        .unwrap_or(false);
    let rest_ok = v.chars().all(|c| c.is_ascii_graphic())
        && !v.contains(['"', '\'', '\\', '{', '}', ';', '$', '#', '?']);
    if !host_ok || !rest_ok {
        return Err(bad(var, format!("{:?} is not an http(s) URL", display_untrusted(v)), fix));
    }
    Ok(v.to_owned())
}

/// An optional file path whose directory must exist (the file itself may be created later).
fn file_var(var: &str, value: Option<&str>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(v) = present(value) else { return Ok(None) };
    let path = PathBuf::from(v);
    let dir_ok = path.file_name().is_some()
        && path.parent().map(|d| d.as_os_str().is_empty() || d.is_dir()).unwrap_or(false);
    if !dir_ok || path.is_dir() {
        return Err(bad(
            var,
            format!("{:?} is not a file path in an existing directory", display_untrusted(v)),
            "set the path of a file (it may not exist yet) in an existing directory",
        ));
    }
    Ok(Some(path))
}

/// `ROUTER_STATUS_ADDRESS`: `host:port` of the status server.
fn status_address_var(value: Option<&str>) -> Result<std::net::SocketAddr, ConfigError> {
    let v = present(value).unwrap_or("127.0.0.1:18081");
    v.parse().map_err(|_| {
        bad(
            "ROUTER_STATUS_ADDRESS",
            format!("{:?} is not an IP:port address", display_untrusted(v)),
            "use e.g. 127.0.0.1:18081 (loopback) or 0.0.0.0:18081 to expose the status page",
        )
    })
}

/// The ClearML web app URL guessed from the API URL (`api.` -> `app.`, 8008 -> 8080).
pub fn default_web_host(api_host: &str) -> String {
    default_login_url(api_host).trim_end_matches("/login").to_owned()
}

/// The ClearML web app's login page, guessed from the API URL the way ClearML lays out its
/// hosts (`api.` -> `app.`, port 8008 -> 8080); `AUTH_LOGIN_URL` overrides it.
pub fn default_login_url(api_host: &str) -> String {
    let web = api_host.replacen("://api.", "://app.", 1);
    let web = match web.strip_suffix(":8008") {
        Some(base) => format!("{base}:8080"),
        None => web.replacen(":8008/", ":8080/", 1),
    };
    format!("{web}/login")
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if authority.starts_with('[') {
        return authority.split_once(']').map(|(h, _)| &h[1..]);
    }
    Some(authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority))
}

fn cookie_name_var(value: Option<&str>) -> Result<String, ConfigError> {
    let name = present(value).unwrap_or("clearml_token_basic");
    if name.len() > 128 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(bad(
            "AUTH_COOKIE_NAME",
            format!("{:?} is not a valid cookie name", display_untrusted(name)),
            "use the ClearML server's cookie name: letters, digits, '_' or '-' (e.g. clearml_token_basic)",
        ));
    }
    Ok(name.to_owned())
}

fn tcp_address_var(value: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(v) = present(value) else { return Ok(None) };
    let ok = v.len() <= 253 && v.chars().all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c));
    if !ok {
        return Err(bad(
            "TCP_ROUTER_ADDRESS",
            format!("{:?} is not a host name or IP address", display_untrusted(v)),
            "set the address clients use to reach the proxy's TCP ports",
        ));
    }
    Ok(Some(v.to_owned()))
}

fn check_router_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "ROUTER_NAME",
            format!("{:?} is not a valid router name", display_untrusted(name)),
            "use up to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

fn check_tcp_range(
    start: Port,
    end: Port,
    listen: Option<Port>,
    control: Option<Port>,
) -> Result<(), ConfigError> {
    if start > end {
        return Err(bad(
            "TCP_PORT_START",
            format!("range {start}..{end} is inverted"),
            "set TCP_PORT_START <= TCP_PORT_END",
        ));
    }
    for (var, port) in [("ROUTER__WEBSERVER__SERVER_PORT", listen), ("ROUTER_PROXY_CONTROL_PORT", control)] {
        if let Some(p) = port.filter(|p| (start..=end).contains(p)) {
            return Err(bad(
                "TCP_PORT_START",
                format!("range {start}..{end} contains {var}={p}"),
                "move the TCP port range away from the proxy's HTTP and control ports",
            ));
        }
    }
    Ok(())
}

fn log_level_var(value: Option<&str>) -> Result<String, ConfigError> {
    let level = present(value).unwrap_or("info").to_ascii_lowercase();
    let level = match level.as_str() {
        "warning" => "warn".to_owned(),
        "critical" | "fatal" => "error".to_owned(),
        _ => level,
    };
    match level.as_str() {
        "trace" | "debug" | "info" | "warn" | "error" => Ok(level),
        _ => Err(bad(
            "LOGGER_LEVEL",
            format!("{:?} is not a log level", display_untrusted(value.unwrap_or_default())),
            "use one of debug, info, warning, error",
        )),
    }
}

/// `LISTEN_QUEUE_NAME`: comma or space separated queue names, wildcards allowed, `none` = all.
fn queue_filter(value: Option<&str>) -> Result<QueueFilter, ConfigError> {
    let names: Vec<String> = present(value)
        .unwrap_or("none")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if names.iter().any(|n| n.eq_ignore_ascii_case("none")) {
        if names.len() > 1 {
            return Err(bad(
                "LISTEN_QUEUE_NAME",
                "mixes `none` (all tasks) with queue names",
                "use either `none` or a list of queue names",
            ));
        }
        return Ok(QueueFilter::All);
    }
    if let Some(badname) = names
        .iter()
        .find(|n| n.len() > 200 || !n.chars().all(|c| c.is_ascii_alphanumeric() || "-_.*?@:/".contains(c)))
    {
        return Err(bad(
            "LISTEN_QUEUE_NAME",
            format!("{:?} is not a queue name", display_untrusted(badname)),
            "use queue names (letters, digits, - _ . : / @) with * or ? as wildcards, separated by commas",
        ));
    }
    Ok(QueueFilter::Names(names))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<Settings, Vec<ConfigError>> {
        let base = [
            ("ROUTER_URL", "http://gw.example.com:8080"),
            ("CLEARML_API_HOST", "http://clearml:8008"),
            ("CLEARML_API_ACCESS_KEY", "AK"),
            ("CLEARML_API_SECRET_KEY", "super-secret-value"),
        ];
        let vars = base.iter().chain(pairs.iter()).map(|(k, v)| (k.to_string(), v.to_string()));
        Settings::from_raw(RawEnv::from_vars(vars).unwrap())
    }

    #[test]
    fn defaults_are_sensible() {
        let s = env(&[]).unwrap();
        assert_eq!(s.listen_port.get(), 8080);
        assert_eq!(s.queues, QueueFilter::All);
        assert!(s.auth.enabled);
        assert_eq!(s.auth.cookie_name, "clearml_token_basic");
        assert_eq!(s.router_url, "http://gw.example.com:8080");
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_fix() {
        let errs = env(&[("ROUTER__WEBSERVER__SERVER_PORT", "eighty")]).unwrap_err();
        assert_eq!(errs.len(), 1);
        let line = errs[0].to_string();
        assert!(line.starts_with("ROUTER__WEBSERVER__SERVER_PORT: \"eighty\" is not a port"), "{line}");
        assert!(line.contains("fix:"), "{line}");
        let errs = env(&[("TCP_PORT_START", "9000"), ("TCP_PORT_END", "8000")]).unwrap_err();
        assert!(errs[0].to_string().contains("inverted"));
        let errs = env(&[("TCP_PORT_START", "8000"), ("TCP_PORT_END", "8100")]).unwrap_err();
        assert!(errs[0].to_string().contains("ROUTER__WEBSERVER__SERVER_PORT=8080"));
        assert!(env(&[("ROUTER_URL", "gw.example.com")]).is_err());
        assert!(env(&[("ROUTER_URL", "http://gw\"; evil")]).is_err());
        assert!(env(&[("LOGGER_LEVEL", "loud")]).is_err());
        let errs = env(&[("ROUTER_STATIC_ROUTES_FILE", "/no/such/dir/routes.json")]).unwrap_err();
        assert!(errs[0].to_string().starts_with("ROUTER_STATIC_ROUTES_FILE: "), "{errs:?}");
        assert!(env(&[("ROUTER_GROUPS_FILE", "/tmp")]).is_err());
        assert!(env(&[("ROUTER_STATIC_ROUTES_FILE", "/tmp/routes.yaml")])
            .unwrap()
            .static_routes_file
            .is_some());
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let s = env(&[]).unwrap();
        assert!(!format!("{s:?}").contains("super-secret-value"));
        let errs = env(&[("CLEARML_API_SECRET_KEY", " super-secret-value ")]).unwrap_err();
        assert!(!errs[0].to_string().contains("super-secret-value"));
    }

    #[test]
    fn login_url_follows_clearml_host_layout() {
        assert_eq!(default_login_url("https://api.clear.ml"), "https://app.clear.ml/login");
        assert_eq!(default_login_url("http://clearml:8008"), "http://clearml:8080/login");
        let s = env(&[("AUTH_LOGIN_URL", "https://web.example.com/login")]).unwrap();
        assert_eq!(s.auth.login_url, "https://web.example.com/login");
        assert!(env(&[("AUTH_BASE64_JWKS_KEY", "not base64!")]).unwrap_err()[0]
            .to_string()
            .contains("value not shown"));
        assert!(env(&[("AUTH_BASE64_JWKS_KEY", "c2VjcmV0")]).unwrap().auth.token_secret.is_some());
    }

    #[test]
    fn queue_names_split_on_commas_and_spaces() {
        let s = env(&[("LISTEN_QUEUE_NAME", "gpu-*, services  default")]).unwrap();
        assert_eq!(s.queues, QueueFilter::Names(vec!["gpu-*".into(), "services".into(), "default".into()]));
        assert_eq!(queue_pattern_regex("gpu-*.a"), "^gpu\\-.*\\.a$");
        assert!(env(&[("LISTEN_QUEUE_NAME", "none, gpu")]).is_err());
        assert!(env(&[("LISTEN_QUEUE_NAME", "a;b")]).is_err());
    }

    // Deployment settings (issue 6)
    #[test]
    fn deployment_settings_parse_with_defaults_and_clear_errors() {
        let s = env(&[]).unwrap();
        assert_eq!(s.proxy.reloader, ReloaderKind::Auto);
        assert_eq!(s.proxy.container, "task_traffic_webserver");
        assert_eq!(s.proxy.docker_socket, PathBuf::from("/var/run/docker.sock"));
        let s = env(&[
            ("ROUTER_RELOADER", "Docker"),
            ("ROUTER_PROXY_CONTAINER", "/gw_task_traffic_webserver_1"),
            ("ROUTER_DOCKER_SOCKET", "unix:///run/user/1000/docker.sock"),
        ])
        .unwrap();
        assert_eq!(s.proxy.reloader, ReloaderKind::Docker);
        assert_eq!(s.proxy.container, "gw_task_traffic_webserver_1");
        assert_eq!(s.proxy.docker_socket, PathBuf::from("/run/user/1000/docker.sock"));
        assert_eq!(env(&[("ROUTER_RELOADER", "file")]).unwrap().proxy.reloader, ReloaderKind::File);
        assert_eq!(env(&[("ROUTER_RELOADER", "process")]).unwrap().proxy.reloader, ReloaderKind::Process);
        let errs = env(&[("ROUTER_RELOADER", "kubectl")]).unwrap_err();
        assert!(
            errs[0].to_string().starts_with("ROUTER_RELOADER: \"kubectl\" is not a reloader"),
            "{}",
            errs[0]
        );
        assert!(env(&[("ROUTER_PROXY_CONTAINER", "a b")]).unwrap_err()[0]
            .to_string()
            .contains("ROUTER_PROXY_CONTAINER"));
        assert!(env(&[("ROUTER_PROXY_CONTAINER", "x;rm")]).is_err());
        assert!(env(&[("ROUTER_DOCKER_SOCKET", "docker.sock")]).unwrap_err()[0]
            .to_string()
            .contains("absolute"));
    }
}
