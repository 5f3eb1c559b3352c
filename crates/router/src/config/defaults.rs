//! Every default in one place: the parser falls back to these and `--help` prints them.

use gateway_render::main_conf::DEBIAN_MODULES_INCLUDE;

use super::values::{LogLevel, ReloaderKind};

/// What each unset (or blank) variable means.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub router_name: &'static str,
    pub listen_port: u16,
    pub auth_enabled: bool,
    pub secure_cookies: bool,
    pub cookie_name: &'static str,
    pub cache_ttl_seconds: f64,
    pub negative_cache_ttl_seconds: f64,
    pub tcp_port_start: u16,
    pub tcp_port_end: u16,
    /// `none`: every queue.
    pub queues: &'static str,
    pub ssl_verify: bool,
    pub log_level: LogLevel,
    pub auto_reload_config: bool,
    pub poll_interval_seconds: f64,
    pub api_timeout_seconds: f64,
    pub conf_dir: &'static str,
    pub lua_dir: &'static str,
    pub control_port: u16,
    pub pid_file: &'static str,
    pub nginx_bin: &'static str,
    pub luajit_bin: &'static str,
    /// The nginx `include` that loads the Lua modules when the router validates a render.
    pub modules_include: &'static str,
    pub allow_loopback_targets: bool,
    pub status_address: &'static str,
    pub reloader: ReloaderKind,
    pub proxy_container: &'static str,
    pub docker_socket: &'static str,
    /// Idle connections to task targets each proxy worker keeps (0: a new one per request).
    pub upstream_keepalive: u32,
    /// How long such a connection may idle: below the 5 s of common app servers (uvicorn,
    /// Node), so the proxy closes first and never sends on a socket the task is closing.
    pub upstream_keepalive_timeout_seconds: f64,
    /// `ROUTER_TASK_RATE_LIMIT`: empty, task endpoints are not limited.
    pub task_rate_limit: &'static str,
    /// `ROUTER_TRUSTED_PROXIES`: empty, the peer address is the client.
    pub trusted_proxies: &'static str,
    pub proxy_protocol: bool,
    /// `ROUTER_TASK_TARGET_NETWORKS`: empty, any address the SSRF rules allow.
    pub task_target_networks: &'static str,
    /// Let's Encrypt's production directory.
    pub acme_directory_url: &'static str,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            router_name: "router",
            listen_port: 8080,
            auth_enabled: true,
            secure_cookies: false,
            cookie_name: "clearml_token_basic",
            cache_ttl_seconds: 30.0,
            negative_cache_ttl_seconds: 5.0,
            tcp_port_start: 10000,
            tcp_port_end: 10100,
            queues: "none",
            ssl_verify: true,
            log_level: LogLevel::Info,
            auto_reload_config: false,
            poll_interval_seconds: 1.0,
            api_timeout_seconds: 10.0,
            conf_dir: "/etc/nginx/conf.d",
            lua_dir: "/usr/local/openresty/nginx/lua",
            control_port: 18080,
            pid_file: "/run/nginx.pid",
            nginx_bin: "nginx",
            luajit_bin: "luajit",
            modules_include: DEBIAN_MODULES_INCLUDE,
            allow_loopback_targets: false,
            status_address: "127.0.0.1:18081",
            reloader: ReloaderKind::Auto,
            proxy_container: "task_traffic_webserver",
            docker_socket: "/var/run/docker.sock",
            upstream_keepalive: 64,
            upstream_keepalive_timeout_seconds: 4.0,
            task_rate_limit: "",
            trusted_proxies: "",
            proxy_protocol: false,
            task_target_networks: "",
            acme_directory_url: "https://acme-v02.api.letsencrypt.org/directory",
        }
    }
}

/// Where the vendor's layouts mount the Lua folder: 2025 (`task_traffic_*`) and 2026
/// (`ai-gateway-*`). The first one mounted into this container is the default `ROUTER_LUA_DIR`.
pub const LUA_DIR_LAYOUTS: [&str; 2] = ["/usr/local/openresty/nginx/lua", "/opt/openresty/nginx/lua"];

/// The Lua folder of the vendor layout whose mount point appears in `mountinfo` (the text of
/// `/proc/self/mountinfo`: the mount point is its fifth field), if any.
pub fn mounted_lua_dir(mountinfo: &str) -> Option<&'static str> {
    let mounted: Vec<&str> = mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).collect();
    LUA_DIR_LAYOUTS.into_iter().find(|dir| mounted.contains(dir))
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
