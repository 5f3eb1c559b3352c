//! The validated settings and how they are assembled from [`RawEnv`]: every variable is parsed
//! into its type once, problems are collected, and a [`Settings`] exists only if there were none.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::model::Port;
use gateway_core::secret::Secret;

use super::defaults::{default_login_url, default_web_host, Defaults};
use super::error::{bad, ConfigError, Errors};
use super::parse;
use super::raw::RawEnv;
use super::traffic::{traffic, TrafficSettings};
use super::values::{LogLevel, QueueFilter, ReloaderKind};
use gateway_core::env;

/// Bounds of the `*_SECONDS` variables.
const TTL_RANGE: (f64, f64) = (1.0, 3600.0);
const INTERVAL_RANGE: (f64, f64) = (0.1, 300.0);

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
    /// The router's own files (the journal of published endpoints); `ROUTER_STATE_DIR`, else the
    /// Lua folder (its dot-files are never read by the proxy).
    pub state_dir: PathBuf,
    /// Loopback-only port where the proxy reports the config hash it serves.
    pub control_port: Port,
    pub pid_file: PathBuf,
    pub nginx_bin: PathBuf,
    pub luajit_bin: PathBuf,
    /// The nginx `include` that loads the Lua modules for `nginx -t` (`ROUTER_NGINX_MODULES_INCLUDE`).
    pub modules_include: String,
    pub auto_reload_config: bool,
    /// How the proxy is told to load new structural config (`ROUTER_RELOADER`).
    pub reloader: ReloaderKind,
    /// The proxy container: its name or its compose service name (`ROUTER_PROXY_CONTAINER`).
    pub container: String,
    /// The Docker API socket (`ROUTER_DOCKER_SOCKET`).
    pub docker_socket: PathBuf,
    /// Idle upstream connections kept per worker (`ROUTER_UPSTREAM_KEEPALIVE`; 0: none).
    pub upstream_keepalive: u32,
    pub upstream_keepalive_timeout: Duration,
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
    pub log_level: LogLevel,
    pub poll_interval: Duration,
    pub api_timeout: Duration,
    pub proxy: ProxySettings,
    pub allow_loopback_targets: bool,
    /// Where the router serves its status page, JSON API and metrics (loopback by default).
    pub status_address: SocketAddr,
    /// The ClearML web app, for links to tasks on the status page.
    pub web_host: String,
    /// The static routes file (JSON, or YAML for `.yaml`/`.yml`), watched and edited by the admin API.
    pub static_routes_file: Option<PathBuf>,
    /// The group -> members map for static routes' allowed groups (JSON).
    pub groups_file: Option<PathBuf>,
    /// Bearer token of the operator API (writes, self-test, and any request from off loopback).
    /// `None`: those are refused.
    pub operator_token: Option<Secret>,
    /// The gateway token registry (JSON; its key beside it as `<file>.key`). `None`: no tokens.
    pub gateway_tokens_file: Option<PathBuf>,
    pub traffic: TrafficSettings,
    /// HTTPS on the proxy (certificate files, ACME).
    pub tls: super::tls::TlsSettings,
}

impl Settings {
    pub fn from_env() -> Result<Self, Vec<ConfigError>> {
        Self::from_raw(RawEnv::from_process_env().map_err(|e| vec![e])?)
    }

    /// Validates every setting and returns all problems at once, one line each.
    pub fn from_raw(raw: RawEnv) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let settings = assemble(&raw, &Defaults::default(), &mut errors);
        errors.finish(settings)
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
        if !self.status_address.ip().is_unspecified() {
            out.push(self.status_address.ip());
        }
        out
    }

    /// Ports the proxy listens on itself.
    pub fn proxy_ports(&self) -> Vec<u16> {
        let mut ports = vec![self.listen_port.get(), self.proxy.control_port.get()];
        ports.extend(self.tls.https_port.map(Port::get));
        ports.extend(self.tcp.port_start.get()..=self.tcp.port_end.get());
        // The router's own status and operator API is no target either.
        ports.push(self.status_address.port());
        ports
    }
}

// Each part parses all of its variables before the first `?`, so that every problem is recorded
// in `e`; a `None` part always comes with at least one error.

fn assemble(raw: &RawEnv, d: &Defaults, e: &mut Errors) -> Option<Settings> {
    let router_name = e.take(parse::router_name(raw.var(env::ROUTER_NAME), d.router_name));
    let listen_port = e.take(parse::port(raw.var(env::SERVER_PORT), d.listen_port));
    let router_url = e.take(parse::url(
        raw.var(env::ROUTER_URL),
        "set it to the gateway's external URL, e.g. http://gateway.example.com:8080",
    ));
    let api_host = e.take(parse::url(
        raw.var(env::CLEARML_API_HOST),
        "set it to the ClearML API server, e.g. https://api.clear.ml or http://clearml:8008",
    ));
    let access_key = e.take(parse::secret(raw.var(env::CLEARML_API_ACCESS_KEY)));
    let secret_key = e.take(parse::secret(raw.var(env::CLEARML_API_SECRET_KEY)));
    let web_host = e.take(parse::optional_url(
        raw.var(env::CLEARML_WEB_HOST),
        "set the ClearML web app URL, e.g. https://app.clear.ml",
    ));
    let auth = auth(raw, d, e, api_host.as_deref());
    let control_port = e.take(parse::port(raw.var(env::ROUTER_PROXY_CONTROL_PORT), d.control_port));
    if let (Some(listen), Some(control)) = (listen_port, control_port) {
        e.check(check_control_port(listen, control));
    }
    let tcp = tcp(raw, d, e, listen_port, control_port);
    let proxy = proxy(raw, d, e, control_port);
    let tls = super::tls::tls(raw, d, e, listen_port, proxy.as_ref().map(|p| &p.state_dir));
    let queues = e.take(QueueFilter::from_var(raw.var(env::LISTEN_QUEUE_NAME), d.queues));
    let ssl_verify = e.take(parse::boolean(raw.var(env::SSL_VERIFY), d.ssl_verify));
    let log_level = e.take(LogLevel::from_var(raw.var(env::LOGGER_LEVEL), d.log_level));
    let poll_interval = e.take(parse::seconds(
        raw.var(env::ROUTER_POLL_INTERVAL_SECONDS),
        d.poll_interval_seconds,
        INTERVAL_RANGE,
    ));
    let api_timeout = e.take(parse::seconds(
        raw.var(env::ROUTER_CLEARML_TIMEOUT_SECONDS),
        d.api_timeout_seconds,
        INTERVAL_RANGE,
    ));
    let allow_loopback_targets =
        e.take(parse::boolean(raw.var(env::ROUTER_ALLOW_LOOPBACK_TARGETS), d.allow_loopback_targets));
    let status_address = e.take(parse::socket_address(raw.var(env::ROUTER_STATUS_ADDRESS), d.status_address));
    let static_routes_file = e.take(parse::file(raw.var(env::ROUTER_STATIC_ROUTES_FILE)));
    let groups_file = e.take(parse::file(raw.var(env::ROUTER_GROUPS_FILE)));
    let operator_token = e.take(parse::token_file(raw.var(env::ROUTER_OPERATOR_TOKEN_FILE)));
    let gateway_tokens_file = e.take(parse::file(raw.var(env::ROUTER_GATEWAY_TOKENS_FILE)));
    let traffic = traffic(raw, d, e);
    if let (Some(address), Some(token)) = (status_address, &operator_token) {
        e.check(check_status_exposure(address, token.is_some()));
    }

    let api_host = api_host?;
    Some(Settings {
        web_host: web_host?.unwrap_or_else(|| default_web_host(&api_host)),
        router_name: router_name?,
        listen_port: listen_port?,
        router_url: router_url?,
        api_host,
        access_key: access_key?,
        secret_key: secret_key?,
        auth: auth?,
        tcp: tcp?,
        queues: queues?,
        ssl_verify: ssl_verify?,
        log_level: log_level?,
        poll_interval: poll_interval?,
        api_timeout: api_timeout?,
        proxy: proxy?,
        allow_loopback_targets: allow_loopback_targets?,
        status_address: status_address?,
        static_routes_file: static_routes_file?,
        groups_file: groups_file?,
        operator_token: operator_token?,
        gateway_tokens_file: gateway_tokens_file?,
        traffic: traffic?,
        tls: tls?,
    })
}

/// A status server reachable from other hosts must authenticate its operator API.
fn check_status_exposure(address: SocketAddr, has_token: bool) -> Result<(), ConfigError> {
    if address.ip().is_loopback() || has_token {
        return Ok(());
    }
    Err(bad(
        env::ROUTER_STATUS_ADDRESS,
        format!("{address} is not a loopback address and the operator API has no credentials"),
        format!(
            "set {} to a file holding a long random token (e.g. `openssl rand -hex 32`), or keep the default loopback address",
            env::ROUTER_OPERATOR_TOKEN_FILE
        ),
    ))
}

fn auth(raw: &RawEnv, d: &Defaults, e: &mut Errors, api_host: Option<&str>) -> Option<AuthSettings> {
    let enabled = e.take(parse::boolean(raw.var(env::AUTH_ENABLED), d.auth_enabled));
    let secure_cookies = e.take(parse::boolean(raw.var(env::AUTH_SECURE_ENABLED), d.secure_cookies));
    let cookie_name = e.take(parse::cookie_name(raw.var(env::AUTH_COOKIE_NAME), d.cookie_name));
    let token_secret = e.take(parse::base64_secret(raw.var(env::AUTH_BASE64_JWKS_KEY)));
    let login_url =
        e.take(parse::optional_url(raw.var(env::AUTH_LOGIN_URL), "set the ClearML web app's login page URL"));
    let cache_ttl =
        e.take(parse::seconds(raw.var(env::AUTH_CACHE_TTL_SECONDS), d.cache_ttl_seconds, TTL_RANGE));
    let negative_cache_ttl = e.take(parse::seconds(
        raw.var(env::AUTH_NEGATIVE_CACHE_TTL_SECONDS),
        d.negative_cache_ttl_seconds,
        TTL_RANGE,
    ));
    let login_url = match login_url? {
        Some(url) => url,
        None => default_login_url(api_host?),
    };
    Some(AuthSettings {
        enabled: enabled?,
        cookie_name: cookie_name?,
        secure_cookies: secure_cookies?,
        token_secret: token_secret?,
        login_url,
        cache_ttl: cache_ttl?,
        negative_cache_ttl: negative_cache_ttl?,
    })
}

/// The Lua folder the vendor layout mounted here (2025 or 2026), else the default.
fn lua_dir_default(d: &Defaults) -> &'static str {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    super::defaults::mounted_lua_dir(&mountinfo).unwrap_or(d.lua_dir)
}

fn proxy(raw: &RawEnv, d: &Defaults, e: &mut Errors, control_port: Option<Port>) -> Option<ProxySettings> {
    let auto_reload_config = e.take(parse::boolean(raw.var(env::AUTO_RELOAD_CONFIG), d.auto_reload_config));
    let reloader = e.take(ReloaderKind::from_var(raw.var(env::ROUTER_RELOADER), d.reloader));
    let container = e.take(parse::container_name(raw.var(env::ROUTER_PROXY_CONTAINER), d.proxy_container));
    let docker_socket = e.take(parse::socket_path(raw.var(env::ROUTER_DOCKER_SOCKET), d.docker_socket));
    let upstream_keepalive =
        e.take(parse::count(raw.var(env::ROUTER_UPSTREAM_KEEPALIVE), d.upstream_keepalive, 10_000));
    let upstream_keepalive_timeout = e.take(parse::seconds(
        raw.var(env::ROUTER_UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS),
        d.upstream_keepalive_timeout_seconds,
        (1.0, 3600.0),
    ));
    Some(ProxySettings {
        conf_dir: parse::path(raw.var(env::ROUTER_CONF_DIR), d.conf_dir),
        lua_dir: parse::path(raw.var(env::ROUTER_LUA_DIR), lua_dir_default(d)),
        state_dir: parse::path(
            raw.var(env::ROUTER_STATE_DIR),
            &parse::path(raw.var(env::ROUTER_LUA_DIR), lua_dir_default(d)).to_string_lossy(),
        ),
        control_port: control_port?,
        pid_file: parse::path(raw.var(env::ROUTER_NGINX_PID_FILE), d.pid_file),
        nginx_bin: parse::path(raw.var(env::ROUTER_NGINX_BIN), d.nginx_bin),
        luajit_bin: parse::path(raw.var(env::ROUTER_LUAJIT_BIN), d.luajit_bin),
        modules_include: raw
            .var(env::ROUTER_NGINX_MODULES_INCLUDE)
            .present()
            .unwrap_or(d.modules_include)
            .to_owned(),
        auto_reload_config: auto_reload_config?,
        reloader: reloader?,
        container: container?,
        docker_socket: docker_socket?,
        upstream_keepalive: upstream_keepalive?,
        upstream_keepalive_timeout: upstream_keepalive_timeout?,
    })
}

fn tcp(
    raw: &RawEnv,
    d: &Defaults,
    e: &mut Errors,
    listen: Option<Port>,
    control: Option<Port>,
) -> Option<TcpSettings> {
    let router_address = e.take(parse::host_address(raw.var(env::TCP_ROUTER_ADDRESS)));
    let port_start = e.take(parse::port(raw.var(env::TCP_PORT_START), d.tcp_port_start));
    let port_end = e.take(parse::port(raw.var(env::TCP_PORT_END), d.tcp_port_end));
    let (port_start, port_end) = (port_start?, port_end?);
    e.check(check_tcp_range(port_start, port_end, listen, control));
    Some(TcpSettings { router_address: router_address?, port_start, port_end })
}

fn check_control_port(listen: Port, control: Port) -> Result<(), ConfigError> {
    if listen != control {
        return Ok(());
    }
    Err(bad(
        env::ROUTER_PROXY_CONTROL_PORT,
        format!("{control} is also {}", env::SERVER_PORT),
        "pick a free port for the proxy's loopback control listener",
    ))
}

fn check_tcp_range(
    start: Port,
    end: Port,
    listen: Option<Port>,
    control: Option<Port>,
) -> Result<(), ConfigError> {
    if start > end {
        return Err(bad(
            env::TCP_PORT_START,
            format!("range {start}..{end} is inverted"),
            format!("set {} <= {}", env::TCP_PORT_START, env::TCP_PORT_END),
        ));
    }
    for (var, port) in [(env::SERVER_PORT, listen), (env::ROUTER_PROXY_CONTROL_PORT, control)] {
        if let Some(p) = port.filter(|p| (start..=end).contains(p)) {
            return Err(bad(
                env::TCP_PORT_START,
                format!("range {start}..{end} contains {var}={p}"),
                "move the TCP port range away from the proxy's HTTP and control ports",
            ));
        }
    }
    Ok(())
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    if authority.starts_with('[') {
        return authority.split_once(']').map(|(h, _)| &h[1..]);
    }
    Some(authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority))
}
