//! The router's environment variable names, the enterprise router's (drop-in). The router's
//! config parses them and every crate that names one in a message uses these (here, at the bottom
//! of the crate graph), so a rename cannot leave a stale name behind.

pub const ROUTER_NAME: &str = "ROUTER_NAME";
pub const ROUTER_URL: &str = "ROUTER_URL";
pub const SERVER_PORT: &str = "ROUTER__WEBSERVER__SERVER_PORT";
pub const AUTO_RELOAD_CONFIG: &str = "ROUTER__WEBSERVER__AUTO_RELOAD_CONFIG";
pub const CLEARML_API_HOST: &str = "CLEARML_API_HOST";
pub const CLEARML_API_ACCESS_KEY: &str = "CLEARML_API_ACCESS_KEY";
pub const CLEARML_API_SECRET_KEY: &str = "CLEARML_API_SECRET_KEY";
pub const CLEARML_WEB_HOST: &str = "CLEARML_WEB_HOST";
pub const AUTH_ENABLED: &str = "AUTH_ENABLED";
pub const AUTH_COOKIE_NAME: &str = "AUTH_COOKIE_NAME";
pub const AUTH_SECURE_ENABLED: &str = "AUTH_SECURE_ENABLED";
pub const AUTH_BASE64_JWKS_KEY: &str = "AUTH_BASE64_JWKS_KEY";
pub const AUTH_LOGIN_URL: &str = "AUTH_LOGIN_URL";
pub const AUTH_CACHE_TTL_SECONDS: &str = "AUTH_CACHE_TTL_SECONDS";
pub const AUTH_NEGATIVE_CACHE_TTL_SECONDS: &str = "AUTH_NEGATIVE_CACHE_TTL_SECONDS";
pub const TCP_ROUTER_ADDRESS: &str = "TCP_ROUTER_ADDRESS";
pub const TCP_PORT_START: &str = "TCP_PORT_START";
pub const TCP_PORT_END: &str = "TCP_PORT_END";
pub const LISTEN_QUEUE_NAME: &str = "LISTEN_QUEUE_NAME";
pub const SSL_VERIFY: &str = "SSL_VERIFY";
pub const LOGGER_LEVEL: &str = "LOGGER_LEVEL";
pub const ROUTER_POLL_INTERVAL_SECONDS: &str = "ROUTER_POLL_INTERVAL_SECONDS";
pub const ROUTER_CLEARML_TIMEOUT_SECONDS: &str = "ROUTER_CLEARML_TIMEOUT_SECONDS";
pub const ROUTER_CONF_DIR: &str = "ROUTER_CONF_DIR";
pub const ROUTER_LUA_DIR: &str = "ROUTER_LUA_DIR";
pub const ROUTER_STATE_DIR: &str = "ROUTER_STATE_DIR";
pub const ROUTER_PROXY_CONTROL_PORT: &str = "ROUTER_PROXY_CONTROL_PORT";
pub const ROUTER_NGINX_PID_FILE: &str = "ROUTER_NGINX_PID_FILE";
pub const ROUTER_NGINX_BIN: &str = "ROUTER_NGINX_BIN";
pub const ROUTER_LUAJIT_BIN: &str = "ROUTER_LUAJIT_BIN";
pub const ROUTER_NGINX_MODULES_INCLUDE: &str = "ROUTER_NGINX_MODULES_INCLUDE";
pub const ROUTER_ALLOW_LOOPBACK_TARGETS: &str = "ROUTER_ALLOW_LOOPBACK_TARGETS";
pub const ROUTER_STATUS_ADDRESS: &str = "ROUTER_STATUS_ADDRESS";
pub const ROUTER_RELOADER: &str = "ROUTER_RELOADER";
pub const ROUTER_PROXY_CONTAINER: &str = "ROUTER_PROXY_CONTAINER";
pub const ROUTER_DOCKER_SOCKET: &str = "ROUTER_DOCKER_SOCKET";
pub const ROUTER_STATIC_ROUTES_FILE: &str = "ROUTER_STATIC_ROUTES_FILE";
pub const ROUTER_GROUPS_FILE: &str = "ROUTER_GROUPS_FILE";
/// `uid:gid` the router drops to when started as root (the image sets 65532:65532; unset or `root`: no drop).
pub const ROUTER_RUN_AS: &str = "ROUTER_RUN_AS";
/// The vendor's 2026 names (router 2.16+) for settings that had other names; both are read, and
/// when both are set the 2026 name wins.
pub const COOKIE_SECURE_2026: &str = "ROUTER__HTTP__AUTHORIZATION__COOKIE__SECURE";
pub const STREAM_EXTERNAL_URL_2026: &str = "ROUTER__STREAM__EXTERNAL_URL";
pub const STREAM_PORT_START_2026: &str = "ROUTER__STREAM__PORT_RANGE__START";
pub const STREAM_PORT_END_2026: &str = "ROUTER__STREAM__PORT_RANGE__END";

/// `(2026 name, the name the settings know it by)`.
pub const ALIASES: [(&str, &str); 4] = [
    (COOKIE_SECURE_2026, AUTH_SECURE_ENABLED),
    (STREAM_EXTERNAL_URL_2026, TCP_ROUTER_ADDRESS),
    (STREAM_PORT_START_2026, TCP_PORT_START),
    (STREAM_PORT_END_2026, TCP_PORT_END),
];

pub const ROUTER_UPSTREAM_KEEPALIVE: &str = "ROUTER_UPSTREAM_KEEPALIVE";
pub const ROUTER_UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS: &str = "ROUTER_UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS";
pub const ROUTER_OPERATOR_TOKEN_FILE: &str = "ROUTER_OPERATOR_TOKEN_FILE";
pub const ROUTER_GATEWAY_TOKENS_FILE: &str = "ROUTER_GATEWAY_TOKENS_FILE";
/// Default rate limit of task endpoints (`rps=20,burst=40,key=client`; unset: none).
pub const ROUTER_TASK_RATE_LIMIT: &str = "ROUTER_TASK_RATE_LIMIT";
/// Proxies (CIDRs) whose `X-Forwarded-For` or PROXY protocol header names the real client.
pub const ROUTER_TRUSTED_PROXIES: &str = "ROUTER_TRUSTED_PROXIES";
/// The HTTP listener expects the PROXY protocol (v1/v2) on every connection.
pub const ROUTER_PROXY_PROTOCOL: &str = "ROUTER_PROXY_PROTOCOL";
/// The networks (CIDRs) task and static route targets must be in; unset: any allowed address.
pub const ROUTER_TASK_TARGET_NETWORKS: &str = "ROUTER_TASK_TARGET_NETWORKS";
/// Read by clap for `--log-json`, not by the router's settings.
pub const ROUTER_LOG_JSON: &str = "ROUTER_LOG_JSON";

/// Every variable the router's settings read; the rest of the environment is never read.
pub const ALL: [&str; 47] = [
    ROUTER_NAME,
    ROUTER_URL,
    SERVER_PORT,
    AUTO_RELOAD_CONFIG,
    CLEARML_API_HOST,
    CLEARML_API_ACCESS_KEY,
    CLEARML_API_SECRET_KEY,
    CLEARML_WEB_HOST,
    AUTH_ENABLED,
    AUTH_COOKIE_NAME,
    AUTH_SECURE_ENABLED,
    AUTH_BASE64_JWKS_KEY,
    AUTH_LOGIN_URL,
    AUTH_CACHE_TTL_SECONDS,
    AUTH_NEGATIVE_CACHE_TTL_SECONDS,
    TCP_ROUTER_ADDRESS,
    TCP_PORT_START,
    TCP_PORT_END,
    LISTEN_QUEUE_NAME,
    SSL_VERIFY,
    LOGGER_LEVEL,
    ROUTER_POLL_INTERVAL_SECONDS,
    ROUTER_CLEARML_TIMEOUT_SECONDS,
    ROUTER_CONF_DIR,
    ROUTER_LUA_DIR,
    ROUTER_STATE_DIR,
    ROUTER_PROXY_CONTROL_PORT,
    ROUTER_NGINX_PID_FILE,
    ROUTER_NGINX_BIN,
    ROUTER_LUAJIT_BIN,
    ROUTER_NGINX_MODULES_INCLUDE,
    ROUTER_ALLOW_LOOPBACK_TARGETS,
    ROUTER_STATUS_ADDRESS,
    ROUTER_RELOADER,
    ROUTER_PROXY_CONTAINER,
    ROUTER_DOCKER_SOCKET,
    ROUTER_STATIC_ROUTES_FILE,
    ROUTER_GROUPS_FILE,
    ROUTER_RUN_AS,
    ROUTER_UPSTREAM_KEEPALIVE,
    ROUTER_UPSTREAM_KEEPALIVE_TIMEOUT_SECONDS,
    ROUTER_OPERATOR_TOKEN_FILE,
    ROUTER_GATEWAY_TOKENS_FILE,
    ROUTER_TASK_RATE_LIMIT,
    ROUTER_TRUSTED_PROXIES,
    ROUTER_PROXY_PROTOCOL,
    ROUTER_TASK_TARGET_NETWORKS,
];
