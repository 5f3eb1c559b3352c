//! Validated newtypes: every value that can reach nginx config, Lua or a URL is parsed here first.
//!
//! The rule (DESIGN principle 2) is an allowlist per type: a value that does not match is refused
//! with a reason that names the rule, and nothing downstream ever sees the raw string.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use crate::cidr::Cidr;

/// Why a value was refused; `Display` names the rule so operators can fix the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub(crate) fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// Renders an untrusted string for logs and summaries: escaped and cut to a readable length.
pub fn display_untrusted(raw: &str) -> String {
    const MAX: usize = 80;
    // Control characters (newlines, NUL, escapes, bidi overrides) are shown escaped, so a
    // value cannot forge log lines or reorder text; everything else is kept as written.
    let escaped: String = raw
        .chars()
        .flat_map(|c| {
            let hidden = c.is_control()
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c);
            let shown: Vec<char> = if hidden { c.escape_unicode().collect() } else { vec![c] };
            shown
        })
        .collect();
    if escaped.chars().count() > MAX {
        let cut: String = escaped.chars().take(MAX).collect();
        format!("{cut}...({} bytes)", raw.len())
    } else {
        escaped
    }
}

fn check_charset(
    raw: &str,
    what: &str,
    max: usize,
    allowed: fn(char) -> bool,
    rule: &str,
) -> Result<(), Invalid> {
    if raw.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    if raw.len() > max {
        return Err(invalid(format!("{what} is {} bytes long; the limit is {max}", raw.len())));
    }
    if let Some(bad) = raw.chars().find(|c| !allowed(*c)) {
        return Err(invalid(format!("{what} contains {:?}; allowed: {rule}", bad)));
    }
    Ok(())
}

/// A ClearML task id: ASCII letters, digits and '-' (ClearML issues 32 hex characters).
/// No '_' so that a route id `<task>__<endpoint>` splits unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TaskId(String);

impl TaskId {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        check_charset(
            raw,
            "task id",
            64,
            |c| c.is_ascii_alphanumeric() || c == '-',
            "ASCII letters, digits, '-'",
        )?;
        if !raw.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(invalid("task id must start with a letter or digit"));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key suffix that tells several endpoints of one task apart: the SDK's `endpoint_name`
/// (`_PORT__api`) or its counter for unnamed extra endpoints (`_PORT__1`). `None` is the first,
/// unnamed endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EndpointName(String);

impl EndpointName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        check_charset(
            raw,
            "endpoint name",
            64,
            |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
            "ASCII letters, digits, '-', '_'",
        )?;
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of one route: `<task id>` or `<task id>__<endpoint name>`. It is also the URL segment
/// after `/service/`, the key in the Lua routing table and the suffix-free key of write-backs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RouteId(String);

impl RouteId {
    pub fn for_endpoint(task: &TaskId, endpoint: Option<&EndpointName>) -> Self {
        match endpoint {
            None => Self(task.0.clone()),
            Some(name) => Self(format!("{}__{}", task.0, name.0)),
        }
    }
    /// Parses a route id read back from our own routing table (e.g. after a restart).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let (task, endpoint) = Self::split(raw)?;
        Ok(Self::for_endpoint(&task, endpoint.as_ref()))
    }
    /// The task and endpoint this route serves.
    pub fn parts(&self) -> (TaskId, Option<EndpointName>) {
        Self::split(&self.0).expect("a RouteId is built from valid parts")
    }
    fn split(raw: &str) -> Result<(TaskId, Option<EndpointName>), Invalid> {
        let (task, endpoint) = match raw.split_once("__") {
            Some((task, endpoint)) => (task, Some(endpoint)),
            None => (raw, None),
        };
        Ok((TaskId::parse(task)?, endpoint.map(EndpointName::parse).transpose()?))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP port, 1-65535. Accepts a JSON number or a string of digits, as tasks write either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(u16);

impl Port {
    pub fn new(port: u16) -> Result<Self, Invalid> {
        if port == 0 {
            return Err(invalid("port 0 is not a usable port (1-65535)"));
        }
        Ok(Self(port))
    }
    pub fn parse_str(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.len() > 5 || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(format!("port {:?} is not a number in 1-65535", display_untrusted(raw))));
        }
        let n: u32 = trimmed.parse().map_err(|_| invalid("port is not a number"))?;
        u16::try_from(n).map_err(|_| invalid(format!("port {n} is out of range 1-65535"))).and_then(Self::new)
    }
    pub fn from_json(value: &serde_json::Value) -> Result<Self, Invalid> {
        match value {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(n) => u16::try_from(n)
                    .map_err(|_| invalid(format!("port {n} is out of range 1-65535")))
                    .and_then(Self::new),
                None => Err(invalid(format!("port {n} is not a whole number in 1-65535"))),
            },
            serde_json::Value::String(s) => Self::parse_str(s),
            other => Err(invalid(format!("port must be a number, got {}", json_kind(other)))),
        }
    }
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Where the proxy may send traffic. Built only through [`TargetPolicy::check`], which refuses
/// addresses that would turn the gateway into an SSRF relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target(SocketAddr);

impl Target {
    pub fn addr(&self) -> SocketAddr {
        self.0
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The SSRF rules for task-supplied targets.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// Loopback targets are normally refused (they reach the proxy host itself); single-host demos
    /// and tests opt in with `ROUTER_ALLOW_LOOPBACK_TARGETS`.
    pub allow_loopback: bool,
    /// Ports the proxy itself listens on; a target on one of them at a local address would loop.
    pub proxy_ports: Vec<u16>,
    /// Addresses known to be the proxy host (ROUTER_URL host, TCP_ROUTER_ADDRESS, ...).
    pub self_addresses: Vec<IpAddr>,
    /// The networks targets must be in (`ROUTER_TASK_TARGET_NETWORKS`); empty: any address the
    /// rules above allow.
    pub allowed_networks: Vec<Cidr>,
}

impl TargetPolicy {
    pub fn check(&self, raw_address: &str, port: Port) -> Result<Target, Invalid> {
        if raw_address.trim() != raw_address || raw_address.is_empty() {
            return Err(invalid(format!(
                "address {:?} must be a bare IP address",
                display_untrusted(raw_address)
            )));
        }
        let ip: IpAddr = raw_address.parse().map_err(|_| {
            invalid(format!("address {:?} is not an IPv4 or IPv6 address", display_untrusted(raw_address)))
        })?;
        let ip = canonical_ip(ip);
        if let Some(why) = forbidden_range(ip, self.allow_loopback) {
            return Err(invalid(format!("address {ip} is {why}; refused to prevent SSRF")));
        }
        let is_self = ip.is_loopback() || ip.is_unspecified() || self.self_addresses.contains(&ip);
        if is_self && self.proxy_ports.contains(&port.get()) {
            return Err(invalid(format!(
                "target {ip}:{port} is the proxy's own listener; refused to prevent a routing loop"
            )));
        }
        if !self.allowed_networks.is_empty() && !self.allowed_networks.iter().any(|n| n.contains(ip)) {
            let networks: Vec<String> = self.allowed_networks.iter().map(Cidr::to_string).collect();
            return Err(invalid(format!(
                "address {ip} is outside {} ({}); refused",
                crate::env::ROUTER_TASK_TARGET_NETWORKS,
                networks.join(", ")
            )));
        }
        Ok(Target(SocketAddr::new(ip, port.get())))
    }
}

/// IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is judged as the IPv4 address it carries.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn forbidden_range(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4, allow_loopback),
        IpAddr::V6(v6) => forbidden_v6(v6, allow_loopback),
    }
}

fn forbidden_v4(ip: Ipv4Addr, allow_loopback: bool) -> Option<&'static str> {
    if ip.is_loopback() && !allow_loopback {
        Some("a loopback address (the proxy host itself)")
    } else if ip.is_link_local() {
        Some("link-local (169.254.0.0/16, where cloud metadata services live)")
    } else if ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud metadata address")
    } else if ip.is_unspecified() || ip.octets()[0] == 0 {
        Some("in 0.0.0.0/8 (this host)")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("a multicast or broadcast address")
    } else {
        None
    }
}

/// The IPv4 address inside IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) and 6to4
/// (`2002:AABB:CCDD::/48`) addresses, which can reach IPv4 destinations.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let seg = ip.segments();
    let o = ip.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let compatible = seg[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified();
    let nat64 = seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    if compatible || nat64 {
        Some(low)
    } else if seg[0] == 0x2002 {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr, allow_loopback: bool) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4, allow_loopback);
    }
    let first = ip.segments()[0];
    if ip.is_loopback() && !allow_loopback {
        Some("a loopback address (the proxy host itself)")
    } else if (first & 0xffc0) == 0xfe80 {
        Some("link-local (fe80::/10)")
    } else if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254) {
        Some("a cloud metadata address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_allow_only_the_safe_alphabet() {
        assert!(TaskId::parse("0123456789abcdef0123456789abcdef").is_ok());
        for bad in [
            "", "a b", "a;b", "a{b", "a}b", "a#b", "a\"b", "a'b", "a\\b", "a$b", "a\nb", "a\0b", "tâche",
            "a__b", "a/b",
        ] {
            let err = TaskId::parse(bad).expect_err(bad);
            assert!(err.0.contains("task id"), "{err}");
        }
        assert!(TaskId::parse(&"a".repeat(10_000)).unwrap_err().0.contains("limit is 64"));
    }

    #[test]
    fn route_ids_round_trip() {
        let task = TaskId::parse("abc123").unwrap();
        let name = EndpointName::parse("my_api").unwrap();
        let id = RouteId::for_endpoint(&task, Some(&name));
        assert_eq!(id.as_str(), "abc123__my_api");
        assert_eq!(RouteId::parse("abc123__my_api").unwrap(), id);
        assert_eq!(RouteId::parse("abc123").unwrap().as_str(), "abc123");
        assert!(RouteId::parse("abc__x y").is_err());
    }

    #[test]
    fn ports_accept_numbers_and_digit_strings_only() {
        use serde_json::json;
        assert_eq!(Port::from_json(&json!(8080)).unwrap().get(), 8080);
        assert_eq!(Port::from_json(&json!("8080")).unwrap().get(), 8080);
        for bad in [
            json!(0),
            json!(65536),
            json!(-1),
            json!(80.5),
            json!("80a"),
            json!("1e3"),
            json!(null),
            json!([80]),
            json!(""),
        ] {
            assert!(Port::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_refuse_ssrf_ranges() {
        let policy = TargetPolicy {
            allow_loopback: false,
            proxy_ports: vec![8080],
            self_addresses: vec!["10.0.0.1".parse().unwrap()],
            allowed_networks: vec![],
        };
        let p = Port::new(8000).unwrap();
        assert!(policy.check("10.2.3.4", p).is_ok());
        assert!(policy.check("fd12::5", p).is_ok());
        assert!(policy.check("2001:db8::1", p).is_ok());
        for bad in [
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "100.100.100.200",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "fe80::1",
            "224.0.0.1",
            "255.255.255.255",
            "localhost",
            " 10.2.3.4",
            "10.2.3.4:80",
            "10.2.3.4\n",
        ] {
            assert!(policy.check(bad, p).is_err(), "{bad:?}");
        }
        assert!(policy.check("10.0.0.1", Port::new(8080).unwrap()).unwrap_err().0.contains("routing loop"));
        assert!(policy.check("10.0.0.1", p).is_ok());
        let demo = TargetPolicy { allow_loopback: true, ..policy };
        assert!(demo.check("127.0.0.1", p).is_ok());
        assert!(demo.check("127.0.0.1", Port::new(8080).unwrap()).is_err());
        assert!(demo.check("169.254.169.254", p).is_err());
    }

    #[test]
    fn targets_outside_the_allowed_networks_are_refused_with_the_setting_named() {
        let policy = TargetPolicy {
            allowed_networks: Cidr::parse_list("10.0.0.0/8, fd00::/8").unwrap(),
            ..TargetPolicy::default()
        };
        let p = Port::new(8000).unwrap();
        assert!(policy.check("10.2.3.4", p).is_ok());
        assert!(policy.check("fd12::5", p).is_ok());
        let err = policy.check("192.168.1.5", p).unwrap_err().0;
        assert_eq!(
            err,
            "address 192.168.1.5 is outside ROUTER_TASK_TARGET_NETWORKS (10.0.0.0/8, fd00::/8); refused"
        );
        // The SSRF rules still come first.
        assert!(policy.check("169.254.169.254", p).unwrap_err().0.contains("SSRF"));
    }

    #[test]
    fn untrusted_strings_are_escaped_and_cut() {
        assert_eq!(display_untrusted("a\nb"), "a\\u{a}b");
        assert_eq!(display_untrusted("it's \"x\""), "it's \"x\"");
        assert_eq!(display_untrusted("a\u{202e}b"), "a\\u{202e}b");
        assert!(display_untrusted(&"x".repeat(10_000)).ends_with("(10000 bytes)"));
    }
}
