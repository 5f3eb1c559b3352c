//! The tests spell variable names out, as an operator would: they pin the drop-in names.

use std::path::PathBuf;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Result<Settings, Vec<ConfigError>> {
    let base = [
        ("ROUTER_URL", "http://gw.example.com:8080"),
        ("CLEARML_API_HOST", "http://clearml:8008"),
        ("CLEARML_API_ACCESS_KEY", "AK"),
        ("CLEARML_API_SECRET_KEY", "super-secret-value"),
    ];
    let vars = base.iter().chain(pairs.iter()).map(|(k, v)| (k.to_string(), v.to_string()));
    Settings::from_raw(RawEnv::from_vars(vars))
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
    assert!(env(&[("ROUTER_STATIC_ROUTES_FILE", "/tmp/routes.yaml")]).unwrap().static_routes_file.is_some());
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

#[test]
fn deployment_settings_parse_with_defaults_and_clear_errors() {
    let s = env(&[]).unwrap();
    assert_eq!(s.proxy.reloader, ReloaderKind::Auto);
    assert_eq!(s.proxy.container, "task_traffic_webserver");
    assert_eq!(s.proxy.docker_socket, PathBuf::from("/var/run/docker.sock"));
    assert_eq!(s.proxy.modules_include, "/etc/nginx/modules-enabled/*.conf");
    let include = env(&[("ROUTER_NGINX_MODULES_INCLUDE", "/x/*.conf")]).unwrap().proxy.modules_include;
    assert_eq!(include, "/x/*.conf");
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
    assert!(errs[0].to_string().starts_with("ROUTER_RELOADER: \"kubectl\" is not a reloader"), "{}", errs[0]);
    assert!(env(&[("ROUTER_PROXY_CONTAINER", "a b")]).unwrap_err()[0]
        .to_string()
        .contains("ROUTER_PROXY_CONTAINER"));
    assert!(env(&[("ROUTER_PROXY_CONTAINER", "x;rm")]).is_err());
    assert!(env(&[("ROUTER_DOCKER_SOCKET", "docker.sock")]).unwrap_err()[0].to_string().contains("absolute"));
}

#[test]
fn every_bad_variable_is_reported_not_just_the_first() {
    let errs = env(&[
        ("ROUTER__WEBSERVER__SERVER_PORT", "eighty"),
        ("AUTH_ENABLED", "maybe"),
        ("ROUTER_RELOADER", "kubectl"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = errs.iter().map(|e| e.var.as_str()).collect();
    assert_eq!(vars, ["ROUTER__WEBSERVER__SERVER_PORT", "AUTH_ENABLED", "ROUTER_RELOADER"], "{errs:?}");
    // A cross-variable check still runs when another group of settings is bad.
    let errs = env(&[("ROUTER_PROXY_CONTROL_PORT", "8080"), ("ROUTER_DOCKER_SOCKET", "rel")]).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
    // A missing required variable does not hide a bad optional one.
    let errs =
        Settings::from_raw(RawEnv::from_vars([("SSL_VERIFY".into(), "sometimes".into())])).unwrap_err();
    assert!(errs.iter().any(|e| e.var == "SSL_VERIFY"), "{errs:?}");
    assert!(errs.iter().any(|e| e.var == "CLEARML_API_HOST"), "{errs:?}");
}

#[test]
fn log_levels_accept_the_vendors_names_in_any_case() {
    for (value, level) in [
        ("INFO", LogLevel::Info),
        ("info", LogLevel::Info),
        ("WARNING", LogLevel::Warn),
        ("warn", LogLevel::Warn),
        (" Debug ", LogLevel::Debug),
        ("CRITICAL", LogLevel::Error),
        ("trace", LogLevel::Trace),
    ] {
        assert_eq!(LogLevel::parse(value), Some(level), "{value}");
        assert_eq!(env(&[("LOGGER_LEVEL", value)]).unwrap().log_level, level, "{value}");
    }
    assert_eq!(LogLevel::parse("loud"), None);
    assert_eq!(env(&[]).unwrap().log_level, Defaults::default().log_level);
    assert_eq!(LogLevel::Warn.as_filter(), "warn");
}

#[test]
fn only_the_routers_variables_are_kept_whatever_their_case() {
    let raw = RawEnv::from_vars([
        ("router_url".to_owned(), "http://x".to_owned()),
        ("HOME".to_owned(), "/root".to_owned()),
        ("CLEARML_API_SECRET_KEY".to_owned(), "super-secret-value".to_owned()),
    ]);
    assert_eq!(raw.var(env::ROUTER_URL).value, Some("http://x"));
    let debug = format!("{raw:?}");
    assert!(!debug.contains("HOME") && !debug.contains("super-secret-value"), "{debug}");
    let mut names = env::ALL.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), env::ALL.len(), "a name is listed twice");
}

#[test]
fn help_shows_the_defaults_the_parser_uses() {
    let d = Defaults::default();
    let text = help();
    assert!(text.contains(&format!("(default {})", d.listen_port)), "{text}");
    assert!(text.contains(d.status_address), "{text}");
    let s = env(&[]).unwrap();
    assert_eq!(s.status_address.to_string(), d.status_address);
    assert_eq!(s.proxy.control_port.get(), d.control_port);
}

#[test]
fn the_2026_names_are_read_and_win_over_the_2025_ones() {
    let s = env(&[
        ("ROUTER__STREAM__PORT_RANGE__START", "20000"),
        ("TCP_PORT_START", "10000"),
        ("ROUTER__STREAM__PORT_RANGE__END", "20010"),
        ("ROUTER__STREAM__EXTERNAL_URL", "gw.example.com"),
        ("ROUTER__HTTP__AUTHORIZATION__COOKIE__SECURE", "true"),
        ("AUTH_SECURE_ENABLED", "false"),
    ])
    .unwrap();
    assert_eq!(s.tcp.port_start.get(), 20000);
    assert_eq!(s.tcp.port_end.get(), 20010);
    assert_eq!(s.tcp.router_address.as_deref(), Some("gw.example.com"));
    assert!(s.auth.secure_cookies);
    // A bad value is reported under the name the operator set.
    let errors = env(&[("ROUTER__STREAM__PORT_RANGE__START", "zero")]).unwrap_err();
    assert!(errors.iter().any(|e| e.to_string().contains("ROUTER__STREAM__PORT_RANGE__START")), "{errors:?}");
}

#[test]
fn the_lua_folder_follows_the_vendor_layout_that_is_mounted() {
    let line =
        |mount_point: &str| format!("42 30 8:1 /srv/gw {mount_point} rw,relatime - ext4 /dev/vda rw\n");
    assert_eq!(
        defaults::mounted_lua_dir(&line("/opt/openresty/nginx/lua")),
        Some("/opt/openresty/nginx/lua")
    );
    assert_eq!(
        defaults::mounted_lua_dir(&line("/usr/local/openresty/nginx/lua")),
        Some("/usr/local/openresty/nginx/lua")
    );
    assert_eq!(defaults::mounted_lua_dir(&line("/data")), None);
}

#[test]
fn an_exposed_status_address_needs_the_operator_token() {
    let errs = env(&[("ROUTER_STATUS_ADDRESS", "0.0.0.0:18081")]).unwrap_err();
    let line = errs[0].to_string();
    assert!(
        line.starts_with("ROUTER_STATUS_ADDRESS:") && line.contains("ROUTER_OPERATOR_TOKEN_FILE"),
        "{line}"
    );
    assert!(!line.contains("0.0.0.0:18081 to expose"), "no hint to expose it: {line}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "short\n").unwrap();
    let path = file.display().to_string();
    let errs = env(&[("ROUTER_OPERATOR_TOKEN_FILE", &path)]).unwrap_err();
    assert!(errs[0].to_string().contains("shorter than 24"), "{}", errs[0]);
    assert!(!errs[0].to_string().contains("short\n"));
    std::fs::write(&file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let s =
        env(&[("ROUTER_STATUS_ADDRESS", "0.0.0.0:18081"), ("ROUTER_OPERATOR_TOKEN_FILE", &path)]).unwrap();
    assert_eq!(s.operator_token.unwrap().expose(), "0123456789abcdef0123456789abcdef");
}

#[test]
fn traffic_settings_parse_and_name_the_variable() {
    let s = env(&[]).unwrap();
    assert!(s.traffic.task_rate_limit.is_none() && s.traffic.trusted_proxies.is_empty());
    assert!(!s.traffic.proxy_protocol && s.traffic.target_networks.is_empty());
    let s = env(&[
        ("ROUTER_TASK_RATE_LIMIT", "rps=20,burst=40,key=header:X-Api-Key"),
        ("ROUTER_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.10"),
        ("ROUTER_PROXY_PROTOCOL", "true"),
        ("ROUTER_TASK_TARGET_NETWORKS", "10.1.0.0/16"),
    ])
    .unwrap();
    assert_eq!(s.traffic.task_rate_limit.unwrap().burst, 40);
    assert_eq!(s.traffic.trusted_proxies.len(), 2);
    assert!(s.traffic.proxy_protocol);
    assert_eq!(s.traffic.target_networks[0].to_string(), "10.1.0.0/16");
    for (name, value, want) in [
        ("ROUTER_TASK_RATE_LIMIT", "20", "rps=20,burst=40"),
        ("ROUTER_TASK_RATE_LIMIT", "rps=0", "requests_per_second"),
        ("ROUTER_TRUSTED_PROXIES", "10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("ROUTER_TASK_TARGET_NETWORKS", "lan", "comma-separated CIDRs"),
        ("ROUTER_PROXY_PROTOCOL", "true", "ROUTER_TRUSTED_PROXIES is empty"),
    ] {
        let errors = env(&[(name, value)]).unwrap_err();
        let line = errors[0].to_string();
        assert!(line.starts_with(name) && line.contains(want), "{line}");
    }
}

#[test]
fn https_settings_are_checked_together() {
    let s = env(&[]).unwrap();
    assert!(s.tls.https_port.is_none() && s.tls.acme.is_none() && !s.tls.redirect);
    let s = env(&[
        ("ROUTER_HTTPS_PORT", "8443"),
        ("ROUTER_ACME_ENABLED", "true"),
        ("ROUTER_STATE_DIR", "/var/lib/router"),
        ("ROUTER_ACME_EAB_KID", "kid-1"),
        ("ROUTER_ACME_EAB_HMAC_KEY", "hmac-secret-value"),
    ])
    .unwrap();
    let acme = s.tls.acme.as_ref().unwrap();
    assert_eq!(acme.directory_url, "https://acme-v02.api.letsencrypt.org/directory");
    assert_eq!(acme.state_dir, PathBuf::from("/var/lib/router/acme"));
    assert!(!format!("{s:?}").contains("hmac-secret-value"), "the EAB key is a secret");
    assert!(s.proxy_ports().contains(&8443), "the HTTPS port is no task target");
    let first = |pairs: &[(&str, &str)]| env(pairs).unwrap_err()[0].to_string();
    assert!(first(&[("ROUTER_HTTPS_PORT", "8080")]).starts_with("ROUTER_HTTPS_PORT: 8080 is also"));
    assert!(first(&[("ROUTER_HTTPS_REDIRECT", "true")]).starts_with("ROUTER_HTTPS_REDIRECT: is on but"));
    assert!(first(&[("ROUTER_ACME_ENABLED", "yes")]).starts_with("ROUTER_ACME_ENABLED: is on but"));
    let half =
        first(&[("ROUTER_HTTPS_PORT", "443"), ("ROUTER_ACME_ENABLED", "1"), ("ROUTER_ACME_EAB_KID", "k")]);
    assert!(half.starts_with("ROUTER_ACME_EAB_KID: needs ROUTER_ACME_EAB_HMAC_KEY"), "{half}");
    assert!(first(&[("ROUTER_TLS_CERTS_DIR", "/no/such/folder")]).starts_with("ROUTER_TLS_CERTS_DIR: "));
    assert!(first(&[("ROUTER_ACME_DIRECTORY_URL", "ftp://ca")]).starts_with("ROUTER_ACME_DIRECTORY_URL: "));
}
