//! The configuration part of `clearml-router --help`, from the variable names and defaults.

use super::defaults::Defaults;
use gateway_core::env;

/// Lines of `NAME   meaning`, with the defaults the parser uses.
pub fn help() -> String {
    let d = Defaults::default();
    let rows = [
        (
            format!("{}, {}, {}", env::CLEARML_API_HOST, env::CLEARML_API_ACCESS_KEY, env::CLEARML_API_SECRET_KEY),
            "ClearML server and credentials".to_owned(),
        ),
        (
            env::ROUTER_URL.to_owned(),
            format!("external URL of the gateway (endpoints are <{}>/service/<task id>/)", env::ROUTER_URL),
        ),
        (env::SERVER_PORT.to_owned(), format!("port the proxy serves HTTP on (default {})", d.listen_port)),
        (
            format!("{}, {}", env::ROUTER_NAME, env::LISTEN_QUEUE_NAME),
            format!(
                "router name (default {}); queues to route (comma/space separated, wildcards; default {} = all)",
                d.router_name, d.queues
            ),
        ),
        (env::LOGGER_LEVEL.to_owned(), format!("debug | info | warning | error (default {})", d.log_level)),
        (
            env::ROUTER_STATUS_ADDRESS.to_owned(),
            format!("status page, JSON API and /metrics (default {})", d.status_address),
        ),
        (
            env::ROUTER_OPERATOR_TOKEN_FILE.to_owned(),
            "file holding the operator API's bearer token (writes, self-test, non-loopback access)".to_owned(),
        ),
        (
            format!("{}, {}, {}", env::ROUTER_HTTPS_PORT, env::ROUTER_TLS_CERTS_DIR, env::ROUTER_HTTPS_REDIRECT),
            "HTTPS port of the proxy (unset: none); folder of PEM certificates (watched); redirect HTTP (default false)"
                .to_owned(),
        ),
        (
            format!("{}, {}", env::ROUTER_ACME_ENABLED, env::ROUTER_ACME_DIRECTORY_URL),
            format!("certificates over ACME HTTP-01 (default false); CA directory (default {})", d.acme_directory_url),
        ),
        (
            format!("{}, {}, {}", env::ROUTER_ACME_EMAIL, env::ROUTER_ACME_EAB_KID, env::ROUTER_ACME_EAB_HMAC_KEY),
            "ACME account contact; external account binding key id and base64url HMAC key".to_owned(),
        ),
        (
            format!("{}, {}", env::ROUTER_ACME_CA_FILE, env::ROUTER_ACME_STATE_DIR),
            format!("root CA of a private ACME server; account and certificates (default <{}>/acme)", env::ROUTER_STATE_DIR),
        ),
        (
            env::ROUTER_GATEWAY_TOKENS_FILE.to_owned(),
            "gateway token registry (hashes only; key beside it); enables /api/gateway-tokens".to_owned(),
        ),
        (
            env::ROUTER_TASK_RATE_LIMIT.to_owned(),
            "rate limit of each task endpoint, e.g. rps=20,burst=40,key=client (default: none)".to_owned(),
        ),
        (
            format!("{}, {}", env::ROUTER_TRUSTED_PROXIES, env::ROUTER_PROXY_PROTOCOL),
            format!(
                "CIDRs whose X-Forwarded-For names the client (default: none); read the PROXY protocol instead (default {})",
                d.proxy_protocol
            ),
        ),
        (
            env::ROUTER_TASK_TARGET_NETWORKS.to_owned(),
            "CIDRs task and static route targets must be in (default: any address the SSRF rules allow)".to_owned(),
        ),
    ];
    let mut out =
        String::from("Configuration comes from the environment, with the enterprise router's names:\n");
    for (names, meaning) in rows {
        out.push_str(&format!("  {names:34} {meaning}\n"));
    }
    out.push_str("See README.md for every setting. Secrets are never printed.");
    out
}
