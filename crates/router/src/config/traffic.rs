//! Settings of the traffic the proxy lets through: the default rate limit of task endpoints,
//! whose word on the client's address it believes, and which networks targets may be in.

use gateway_core::cidr::Cidr;
use gateway_core::env;
use gateway_core::model::display_untrusted;
use gateway_core::rate_limit::RateLimit;

use super::defaults::Defaults;
use super::error::{bad, ConfigError, Errors};
use super::raw::{RawEnv, Var};

#[derive(Debug, Clone, Default)]
pub struct TrafficSettings {
    /// The limit of every task endpoint (`ROUTER_TASK_RATE_LIMIT`); `None`: unlimited.
    pub task_rate_limit: Option<RateLimit>,
    /// Proxies whose `X-Forwarded-For` or PROXY protocol header names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// The HTTP listener reads the PROXY protocol (`ROUTER_PROXY_PROTOCOL`).
    pub proxy_protocol: bool,
    /// Networks task and static route targets must be in; empty: any the SSRF rules allow.
    pub target_networks: Vec<Cidr>,
}

fn rate_limit(var: Var<'_>, default: &str) -> Result<Option<RateLimit>, ConfigError> {
    let Some(v) = var.present().or(Some(default).filter(|d| !d.is_empty())) else { return Ok(None) };
    RateLimit::parse_setting(v).map(Some).map_err(|e| {
        var.bad(
            format!("{:?}: {e}", display_untrusted(v)),
            "set e.g. rps=20,burst=40,key=client (or key=header:X-Api-Key), or leave it empty for no limit",
        )
    })
}

fn cidrs(var: Var<'_>, default: &str, example: &str) -> Result<Vec<Cidr>, ConfigError> {
    Cidr::parse_list(var.present().unwrap_or(default))
        .map_err(|e| var.bad(e, format!("set comma-separated CIDRs, e.g. {example}")))
}

pub(super) fn traffic(raw: &RawEnv, d: &Defaults, e: &mut Errors) -> Option<TrafficSettings> {
    let task_rate_limit = e.take(rate_limit(raw.var(env::ROUTER_TASK_RATE_LIMIT), d.task_rate_limit));
    let trusted_proxies =
        e.take(cidrs(raw.var(env::ROUTER_TRUSTED_PROXIES), d.trusted_proxies, "10.0.0.0/8,192.168.1.10"));
    let proxy_protocol = e.take(super::parse::boolean(raw.var(env::ROUTER_PROXY_PROTOCOL), d.proxy_protocol));
    let target_networks = e.take(cidrs(
        raw.var(env::ROUTER_TASK_TARGET_NETWORKS),
        d.task_target_networks,
        "10.0.0.0/16,fd00::/8",
    ));
    if let (Some(true), Some(trusted)) = (proxy_protocol, &trusted_proxies) {
        if trusted.is_empty() {
            e.check(Err(bad(
                env::ROUTER_PROXY_PROTOCOL,
                format!(
                    "is on but {} is empty, so no PROXY protocol header would be believed",
                    env::ROUTER_TRUSTED_PROXIES
                ),
                format!(
                    "set {} to the load balancers that send it, e.g. 10.0.0.0/8",
                    env::ROUTER_TRUSTED_PROXIES
                ),
            )));
            return None;
        }
    }
    Some(TrafficSettings {
        task_rate_limit: task_rate_limit?,
        trusted_proxies: trusted_proxies?,
        proxy_protocol: proxy_protocol?,
        target_networks: target_networks?,
    })
}
