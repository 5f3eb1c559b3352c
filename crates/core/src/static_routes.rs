//! Static routes: fixed endpoints defined by the operator (a routes file, JSON or YAML, edited by
//! hand or through the admin API) rather than by a task. A route is served at
//! `<ROUTER_URL><path>/` or at `<label>.<router domain>`; its targets are fixed `ip:port`s plus the
//! tasks that asked for it by name (`static_route=` in the SDK).
//!
//! Everything read from the file is parsed into validated types here; a file that does not
//! validate is refused as a whole with a message naming the route and field, and the last good
//! definitions keep serving.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{display_untrusted, invalid, Invalid, Port, Target, TargetPolicy};
use crate::rate_limit::{RateLimit, RawRateLimit};

/// Paths the gateway itself uses; a static route may not shadow them.
const RESERVED_PATHS: &[&str] = &["/service", "/__clearml_auth", "/__clearml_router"];

/// A route's unique name: lowercase letters, digits and '-' (what the SDK's `static_route=` names).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RouteName(String);

impl RouteName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        label_rules(raw, "name")?;
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// 1-63 of `[a-z0-9-]`, not starting or ending with '-' (a DNS label, also a safe name).
fn label_rules(raw: &str, what: &str) -> Result<(), Invalid> {
    if raw.is_empty() || raw.len() > 63 {
        return Err(invalid(format!("{what} must be 1-63 characters")));
    }
    if let Some(bad) = raw.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Err(invalid(format!(
            "{what} contains {:?}; allowed: lowercase letters, digits, '-'",
            display_untrusted(&bad.to_string())
        )));
    }
    if raw.starts_with('-') || raw.ends_with('-') {
        return Err(invalid(format!("{what} must not start or end with '-'")));
    }
    Ok(())
}

/// A URL path prefix: starts with '/', segments of letters, digits and `. _ ~ -`, no empty,
/// `.` or `..` segment, no trailing '/' (it is stripped: `/demo/` and `/demo` are the same route).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct RoutePath(String);

impl RoutePath {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if !raw.starts_with('/') {
            return Err(invalid("path must begin with '/'"));
        }
        if raw.len() > 200 {
            return Err(invalid("path is longer than 200 bytes"));
        }
        let trimmed = raw.strip_suffix('/').unwrap_or(raw);
        if trimmed.is_empty() {
            return Err(invalid(
                "path '/' would shadow every URL of the gateway; use a prefix such as /demo",
            ));
        }
        for segment in trimmed[1..].split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(invalid(format!("path {raw:?} has an empty, '.' or '..' segment")));
            }
            if let Some(bad) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || "._~-".contains(*c))) {
                return Err(invalid(format!(
                    "path contains {:?}; allowed: letters, digits, '/', '.', '_', '~', '-'",
                    display_untrusted(&bad.to_string())
                )));
            }
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(reserved) =
            RESERVED_PATHS.iter().find(|r| lower == **r || lower.starts_with(&format!("{r}/")))
        {
            return Err(invalid(format!(
                "path {trimmed} is under {reserved}, which the gateway uses itself"
            )));
        }
        Ok(Self(trimmed.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subdomain label, served as `<label>.<router domain>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SubdomainLabel(String);

impl SubdomainLabel {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        label_rules(raw, "subdomain")?;
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A route's own host name (a custom domain): a lowercase DNS name of at least two labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HostName(String);

impl HostName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let labels: Vec<&str> = raw.split('.').collect();
        if raw.len() > 253 || labels.len() < 2 {
            return Err(invalid(format!(
                "{:?} is not a DNS name of at least two labels (e.g. app.example.com)",
                display_untrusted(raw)
            )));
        }
        for label in labels {
            label_rules(label, "host")?;
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a route is served.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Location {
    Path(RoutePath),
    Subdomain(SubdomainLabel),
    /// The whole of its own host (a custom domain), like a subdomain route.
    Host(HostName),
}

impl Location {
    /// `path` or `subdomain`, as the SDK's `_ROUTER_ENDPOINT_MODE` and `routers.get_routes` say
    /// (a custom host is served like a subdomain: from its root).
    pub fn kind(&self) -> &'static str {
        match self {
            Location::Path(_) => "path",
            Location::Subdomain(_) | Location::Host(_) => "subdomain",
        }
    }

    /// The field of the routes file that sets it, and its value.
    pub fn field(&self) -> (&'static str, &str) {
        match self {
            Location::Path(p) => ("path", p.as_str()),
            Location::Subdomain(s) => ("subdomain", s.as_str()),
            Location::Host(h) => ("host", h.as_str()),
        }
    }
}

/// A group name from the groups file or a route's allowed groups.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(invalid(format!(
                "group {:?} must be 1-64 letters, digits, '-', '_' or '.'",
                display_untrusted(raw)
            )));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who may use a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A ClearML login of the router's workspace; with groups, only their members.
    Authenticated { groups: Vec<GroupName> },
    /// No login needed.
    Public,
}

/// The autoscaling signal of a load-balanced route: the router publishes the replicas that the
/// route's traffic asks for, `ceil(rps / target_rps_per_replica)` within `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Autoscaling {
    pub target_rps_per_replica: f64,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

// Validated: the target is finite (never NaN), so equality is total.
impl Eq for Autoscaling {}

/// Most replicas a route may ask for (a typo such as 10000 is refused, not published).
const MAX_REPLICAS: u32 = 1000;

impl Autoscaling {
    /// The replicas `rps` requests per second ask for.
    pub fn desired_replicas(&self, rps: f64) -> u32 {
        let wanted = (rps / self.target_rps_per_replica).ceil();
        let wanted =
            if wanted.is_finite() && wanted > 0.0 { wanted.min(f64::from(MAX_REPLICAS)) as u32 } else { 0 };
        wanted.clamp(self.min_replicas, self.max_replicas)
    }
}

/// `autoscaling` as written in the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoscaling {
    pub target_rps_per_replica: f64,
    #[serde(default = "one")]
    pub min_replicas: u32,
    pub max_replicas: u32,
}

fn one() -> u32 {
    1
}

impl RawAutoscaling {
    fn validate(&self) -> Result<Autoscaling, Invalid> {
        let target = self.target_rps_per_replica;
        if !(target.is_finite() && target > 0.0 && target <= 1e6) {
            return Err(invalid(
                "autoscaling.target_rps_per_replica: must be a number above 0 (at most 1000000)",
            ));
        }
        if self.max_replicas == 0 || self.max_replicas > MAX_REPLICAS {
            return Err(invalid(format!("autoscaling.max_replicas: must be 1-{MAX_REPLICAS}")));
        }
        if self.min_replicas > self.max_replicas {
            return Err(invalid("autoscaling.min_replicas: must not exceed max_replicas"));
        }
        Ok(Autoscaling {
            target_rps_per_replica: target,
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
        })
    }
}

/// One validated static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub name: RouteName,
    pub location: Location,
    pub load_balanced: bool,
    pub autoscaling: Option<Autoscaling>,
    pub access: Access,
    pub targets: Vec<Target>,
    /// Requests per second per client, across all of the route's targets; `None`: unlimited.
    pub rate_limit: Option<RateLimit>,
    pub enabled: bool,
    pub created: Option<String>,
    pub updated: Option<String>,
    pub updated_by: Option<String>,
}

/// A route as written in the file (and sent to the admin API).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// A custom domain the route is served on (instead of a path or a subdomain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default)]
    pub load_balanced: bool,
    /// Load-balanced routes only: publishes the replicas the traffic asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<RawAutoscaling>,
    /// `authenticated` (default) or `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
}

fn yes() -> bool {
    true
}

/// The file: `{"routes": [...]}` (JSON, or the same shape in YAML).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFileDoc {
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// Free text (timestamps, who) kept for display: bounded, no control characters.
fn meta_text(field: &str, raw: &Option<String>) -> Result<Option<String>, Invalid> {
    match raw {
        None => Ok(None),
        Some(s) if s.len() > 200 || s.chars().any(char::is_control) => {
            Err(invalid(format!("{field} must be at most 200 characters without control characters")))
        }
        Some(s) => Ok(Some(s.clone())),
    }
}

fn parse_target(raw: &str, policy: &TargetPolicy) -> Result<Target, Invalid> {
    let addr: SocketAddr = raw
        .parse()
        .map_err(|_| invalid(format!("{:?} is not ip:port (IPv6 as [addr]:port)", display_untrusted(raw))))?;
    let port = Port::new(addr.port())?;
    policy.check(&addr.ip().to_string(), port)
}

impl RawRoute {
    /// Validates one route; errors are `<field>: <rule>`.
    pub fn validate(&self, policy: &TargetPolicy) -> Result<StaticRoute, Invalid> {
        let field = |f: &str, e: Invalid| invalid(format!("{f}: {e}"));
        let name = RouteName::parse(&self.name).map_err(|e| field("name", e))?;
        let location = match (&self.path, &self.subdomain, &self.host) {
            (Some(p), None, None) => Location::Path(RoutePath::parse(p).map_err(|e| field("path", e))?),
            (None, Some(s), None) => {
                Location::Subdomain(SubdomainLabel::parse(s).map_err(|e| field("subdomain", e))?)
            }
            (None, None, Some(h)) => Location::Host(HostName::parse(h).map_err(|e| field("host", e))?),
            (None, None, None) => {
                return Err(invalid("path: set a path (e.g. /demo), a subdomain label or a host"))
            }
            _ => return Err(invalid("path, subdomain, host: set one of them, not several")),
        };
        let groups = self
            .groups
            .iter()
            .map(|g| GroupName::parse(g).map_err(|e| field("groups", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let access = match self.access.as_deref().unwrap_or("authenticated") {
            "authenticated" => Access::Authenticated { groups },
            "public" if groups.is_empty() => Access::Public,
            "public" => return Err(invalid("groups: a public route has no allowed groups; remove them")),
            other => {
                return Err(invalid(format!(
                    "access: {:?} is not authenticated or public",
                    display_untrusted(other)
                )))
            }
        };
        let mut targets = Vec::new();
        for raw in &self.targets {
            let target = parse_target(raw, policy).map_err(|e| field("targets", e))?;
            if targets.contains(&target) {
                return Err(invalid(format!("targets: {target} is listed twice")));
            }
            targets.push(target);
        }
        if !self.load_balanced && targets.len() > 1 {
            return Err(invalid("targets: a route that is not load balanced has at most one fixed target"));
        }
        let rate_limit = self
            .rate_limit
            .as_ref()
            .map(RateLimit::from_raw)
            .transpose()
            .map_err(|e| field("rate_limit", e))?;
        let autoscaling = match &self.autoscaling {
            Some(_) if !self.load_balanced => {
                return Err(invalid(
                    "autoscaling: only a load-balanced route has replicas; set load_balanced",
                ))
            }
            Some(a) => Some(a.validate()?),
            None => None,
        };
        Ok(StaticRoute {
            name,
            location,
            load_balanced: self.load_balanced,
            autoscaling,
            access,
            targets,
            rate_limit,
            enabled: self.enabled,
            created: meta_text("created", &self.created)?,
            updated: meta_text("updated", &self.updated)?,
            updated_by: meta_text("updated_by", &self.updated_by)?,
        })
    }
}

impl StaticRoute {
    /// Back to the file form.
    pub fn to_raw(&self) -> RawRoute {
        let (path, subdomain, host) = match &self.location {
            Location::Path(p) => (Some(p.as_str().to_owned()), None, None),
            Location::Subdomain(s) => (None, Some(s.as_str().to_owned()), None),
            Location::Host(h) => (None, None, Some(h.as_str().to_owned())),
        };
        let (access, groups) = match &self.access {
            Access::Public => (Some("public".to_owned()), vec![]),
            Access::Authenticated { groups } => {
                (Some("authenticated".to_owned()), groups.iter().map(|g| g.0.clone()).collect())
            }
        };
        RawRoute {
            name: self.name.0.clone(),
            path,
            subdomain,
            host,
            load_balanced: self.load_balanced,
            autoscaling: self.autoscaling.map(|a| RawAutoscaling {
                target_rps_per_replica: a.target_rps_per_replica,
                min_replicas: a.min_replicas,
                max_replicas: a.max_replicas,
            }),
            access,
            groups,
            targets: self.targets.iter().map(Target::to_string).collect(),
            rate_limit: self.rate_limit.clone().map(RawRateLimit::from),
            enabled: self.enabled,
            created: self.created.clone(),
            updated: self.updated.clone(),
            updated_by: self.updated_by.clone(),
        }
    }
}

/// Validates a whole document: every route, unique names, unique paths and subdomains.
pub fn validate_doc(doc: &RoutesFileDoc, policy: &TargetPolicy) -> Result<Vec<StaticRoute>, Invalid> {
    let mut out: Vec<StaticRoute> = Vec::new();
    let mut names = BTreeSet::new();
    let mut locations: BTreeMap<Location, String> = BTreeMap::new();
    for (i, raw) in doc.routes.iter().enumerate() {
        let label = if raw.name.is_empty() { format!("routes[{i}]") } else { display_untrusted(&raw.name) };
        let route = raw.validate(policy).map_err(|e| invalid(format!("route {label}: {e}")))?;
        if !names.insert(route.name.clone()) {
            return Err(invalid(format!("route {label}: name: another route already has this name")));
        }
        if let Some(other) = locations.insert(route.location.clone(), label.clone()) {
            let (field, value) = route.location.field();
            return Err(invalid(format!("route {label}: {field}: route {other} already uses {value}")));
        }
        out.push(route);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn is_yaml(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Parses file bytes (YAML for `.yaml`/`.yml`, JSON otherwise).
pub fn parse_file(path: &Path, bytes: &[u8]) -> Result<RoutesFileDoc, Invalid> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(RoutesFileDoc::default());
    }
    if is_yaml(path) {
        serde_yaml::from_slice(bytes).map_err(|e| invalid(format!("not valid YAML of the routes shape: {e}")))
    } else {
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON of the routes shape: {e}")))
    }
}

/// Serializes routes in the file's format (sorted by name: deterministic).
pub fn serialize_file(path: &Path, routes: &[StaticRoute]) -> Vec<u8> {
    let doc = RoutesFileDoc { routes: routes.iter().map(StaticRoute::to_raw).collect() };
    if is_yaml(path) {
        serde_yaml::to_string(&doc).expect("routes serialize").into_bytes()
    } else {
        let mut bytes = serde_json::to_vec_pretty(&doc).expect("routes serialize");
        bytes.push(b'\n');
        bytes
    }
}

/// A static route as an enterprise ClearML server defines it (`routers.get_routes`: `name`,
/// `type` path|subdomain, `enabled`, `load_balancer.enabled`), where admins edit them in the
/// WebApp. A path route is served at `/<name>`, a subdomain route at `<name>.<router domain>`;
/// the targets are the tasks that ask for it by name; access needs a login.
pub fn from_server(route: &serde_json::Value, policy: &TargetPolicy) -> Result<StaticRoute, Invalid> {
    let name = route.get("name").and_then(serde_json::Value::as_str).unwrap_or_default();
    let kind = route.get("type").and_then(serde_json::Value::as_str).unwrap_or("path");
    let raw = RawRoute {
        name: name.to_owned(),
        path: (kind == "path").then(|| format!("/{name}")),
        subdomain: (kind == "subdomain").then(|| name.to_owned()),
        host: None,
        load_balanced: route
            .pointer("/load_balancer/enabled")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        autoscaling: None,
        access: None,
        groups: Vec::new(),
        targets: Vec::new(),
        rate_limit: None,
        enabled: route.get("enabled").and_then(serde_json::Value::as_bool).unwrap_or(true),
        created: None,
        updated: None,
        updated_by: Some("ClearML server".into()),
    };
    if kind != "path" && kind != "subdomain" {
        return Err(invalid(format!(
            "route {}: type {:?} is neither path nor subdomain",
            display_untrusted(name),
            display_untrusted(kind)
        )));
    }
    raw.validate(policy).map_err(|e| invalid(format!("route {}: {e}", display_untrusted(name))))
}

/// Reads and validates the file; a missing file is no routes.
pub fn load_file(path: &Path, policy: &TargetPolicy) -> Result<Vec<StaticRoute>, Invalid> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(invalid(format!("cannot read {}: {e}", path.display()))),
    };
    validate_doc(&parse_file(path, &bytes)?, policy)
}

/// `(scheme, authority, host)` of `ROUTER_URL` (`http`, `gw.example.com:8080`, `gw.example.com`).
fn split_url(router_url: &str) -> (&str, &str, String) {
    let (scheme, rest) = router_url.split_once("://").unwrap_or(("http", router_url));
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = if authority.starts_with('[') {
        authority.split_once(']').map(|(h, _)| format!("{h}]")).unwrap_or_default()
    } else {
        authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority).to_owned()
    };
    (scheme, authority, host.to_ascii_lowercase())
}

/// The router's domain: subdomain routes are served at `<label>.<this>`.
pub fn router_host(router_url: &str) -> String {
    split_url(router_url).2
}

/// The host name a subdomain route answers on.
pub fn subdomain_host(router_url: &str, label: &SubdomainLabel) -> String {
    format!("{}.{}", label.as_str(), router_host(router_url))
}

/// Custom-domain routes whose host is also a subdomain route's `<label>.<router host>`: the
/// subdomain route keeps the host. Returns the routes to serve and one message per route left out.
pub fn drop_host_conflicts(routes: Vec<StaticRoute>, router_host: &str) -> (Vec<StaticRoute>, Vec<String>) {
    let subdomain_of = |host: &str| {
        routes.iter().find_map(|r| match &r.location {
            Location::Subdomain(label) if format!("{}.{router_host}", label.as_str()) == host => {
                Some(r.name.clone())
            }
            _ => None,
        })
    };
    let mut problems = Vec::new();
    let mut keep = Vec::new();
    for route in &routes {
        if let Location::Host(host) = &route.location {
            if let Some(other) = subdomain_of(host.as_str()) {
                problems.push(format!(
                    "static route {}: host {} is also subdomain route {other}'s host; {other} keeps it",
                    route.name,
                    host.as_str()
                ));
                continue;
            }
        }
        keep.push(route.clone());
    }
    (keep, problems)
}

/// The URL a static route is served at (what attached tasks get as `endpoint`).
pub fn static_url(router_url: &str, location: &Location) -> String {
    match location {
        Location::Path(p) => format!("{router_url}{}/", p.as_str()),
        Location::Subdomain(label) => {
            let (scheme, authority, _) = split_url(router_url);
            format!("{scheme}://{}.{authority}/", label.as_str())
        }
        Location::Host(host) => {
            // Same scheme and port as the router's own URL: one proxy serves both.
            let (scheme, authority, router_host) = split_url(router_url);
            let port = authority.strip_prefix(router_host.as_str()).unwrap_or_default();
            format!("{scheme}://{}{port}/", host.as_str())
        }
    }
}

/// The group -> members map (`ROUTER_GROUPS_FILE`, JSON `{group: [user id or name, ...]}`).
pub type Groups = BTreeMap<GroupName, BTreeSet<String>>;

pub fn parse_groups(bytes: &[u8]) -> Result<Groups, Invalid> {
    let raw: BTreeMap<String, Vec<String>> = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("not JSON of the form {{\"group\": [\"user id or name\"]}}: {e}")))?;
    let mut out = Groups::new();
    for (group, members) in raw {
        let name = GroupName::parse(&group)?;
        let mut set = BTreeSet::new();
        for m in members {
            if m.is_empty() || m.len() > 200 || m.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "group {group}: member {:?} is not a user id or name",
                    display_untrusted(&m)
                )));
            }
            set.insert(m);
        }
        out.insert(name, set);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> TargetPolicy {
        TargetPolicy {
            allow_loopback: false,
            proxy_ports: vec![8080],
            self_addresses: vec![],
            allowed_networks: vec![],
        }
    }

    fn doc(v: serde_json::Value) -> RoutesFileDoc {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn autoscaling_is_validated_round_trips_and_clamps_the_desired_replicas() {
        let route = |autoscaling: serde_json::Value, lb: bool| {
            doc(
                json!({"routes": [{"name": "lb", "path": "/lb", "load_balanced": lb, "autoscaling": autoscaling}]}),
            )
        };
        let d = route(json!({"target_rps_per_replica": 2.5, "min_replicas": 2, "max_replicas": 4}), true);
        let routes = validate_doc(&d, &policy()).unwrap();
        let a = routes[0].autoscaling.unwrap();
        assert_eq!((a.target_rps_per_replica, a.min_replicas, a.max_replicas), (2.5, 2, 4));
        assert_eq!([0.0, 5.0, 7.6, 10.0, 100.0].map(|rps| a.desired_replicas(rps)), [2, 2, 4, 4, 4]);
        let bytes = serialize_file(Path::new("r.json"), &routes);
        assert_eq!(
            validate_doc(&parse_file(Path::new("r.json"), &bytes).unwrap(), &policy()).unwrap(),
            routes
        );
        let one =
            validate_doc(&route(json!({"target_rps_per_replica": 1, "max_replicas": 9}), true), &policy());
        assert_eq!(
            one.unwrap()[0].autoscaling.unwrap().desired_replicas(0.0),
            1,
            "min_replicas defaults to 1"
        );
        for (autoscaling, lb, error) in [
            (
                json!({"target_rps_per_replica": 1, "max_replicas": 2}),
                false,
                "route lb: autoscaling: only a load-balanced",
            ),
            (
                json!({"target_rps_per_replica": 0, "max_replicas": 2}),
                true,
                "route lb: autoscaling.target_rps_per_replica",
            ),
            (
                json!({"target_rps_per_replica": 1, "max_replicas": 0}),
                true,
                "route lb: autoscaling.max_replicas",
            ),
            (
                json!({"target_rps_per_replica": 1, "max_replicas": 5000}),
                true,
                "route lb: autoscaling.max_replicas",
            ),
            (
                json!({"target_rps_per_replica": 1, "min_replicas": 3, "max_replicas": 2}),
                true,
                "route lb: autoscaling.min_replicas",
            ),
        ] {
            let e = validate_doc(&route(autoscaling, lb), &policy()).unwrap_err();
            assert!(e.0.starts_with(error), "{e:?}");
        }
        let unknown =
            serde_json::from_value::<RoutesFileDoc>(json!({"routes": [{"name": "lb", "path": "/lb",
            "autoscaling": {"target_rps_per_replica": 1, "max_replicas": 2, "target": 3}}]}));
        assert!(unknown.unwrap_err().to_string().contains("unknown field `target`"));
    }

    #[test]
    fn a_valid_file_round_trips() {
        let d = doc(json!({"routes": [
            {"name": "demo", "path": "/demo/", "load_balanced": true, "groups": ["ml"],
             "targets": ["10.0.0.5:8000", "[fd00::1]:80"], "created": "2026-01-01T00:00:00Z",
             "rate_limit": {"requests_per_second": 5, "burst": 10, "key": "header:X-Api-Key"}},
            {"name": "pub", "subdomain": "pub", "access": "public", "enabled": false},
        ]}));
        let routes = validate_doc(&d, &policy()).unwrap();
        assert_eq!(routes[0].location, Location::Path(RoutePath("/demo".into())));
        assert_eq!(routes[0].targets.len(), 2);
        assert!(routes[0].enabled);
        assert_eq!(routes[0].rate_limit.as_ref().map(|l| l.burst), Some(10));
        assert_eq!(routes[1].access, Access::Public);
        assert_eq!(routes[1].rate_limit, None);
        for name in ["r.json", "r.yaml"] {
            let bytes = serialize_file(Path::new(name), &routes);
            let again = validate_doc(&parse_file(Path::new(name), &bytes).unwrap(), &policy()).unwrap();
            assert_eq!(again, routes, "{name}");
        }
    }

    #[test]
    fn a_custom_host_that_is_a_subdomain_routes_host_is_left_out() {
        let routes = validate_doc(
            &doc(json!({"routes": [
                {"name": "a", "subdomain": "app"},
                {"name": "b", "host": "app.gw.example.com"},
                {"name": "c", "host": "shop.example.com"},
            ]})),
            &policy(),
        )
        .unwrap();
        let (kept, problems) = drop_host_conflicts(routes, "gw.example.com");
        let names: Vec<&str> = kept.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("static route b: host app.gw.example.com is also subdomain route a"),
            "{problems:?}"
        );
    }

    #[test]
    fn errors_name_the_route_and_field() {
        let cases = [
            (json!({"name": "Demo", "path": "/d"}), "route Demo: name:"),
            (json!({"name": "d", "path": "d"}), "route d: path: path must begin with '/'"),
            (json!({"name": "d", "path": "/a;b"}), "route d: path: path contains"),
            (json!({"name": "d", "path": "/a/../b"}), "'..' segment"),
            (json!({"name": "d", "path": "/service/x"}), "gateway uses itself"),
            (json!({"name": "d", "path": "/"}), "shadow"),
            (json!({"name": "d", "subdomain": "a.b"}), "route d: subdomain:"),
            (json!({"name": "d", "path": "/d", "subdomain": "d"}), "not several"),
            (json!({"name": "d", "subdomain": "d", "host": "app.example.com"}), "not several"),
            (json!({"name": "d", "host": "localhost"}), "route d: host: \"localhost\" is not a DNS name"),
            (json!({"name": "d", "host": "App.example.com"}), "route d: host: host contains \"A\""),
            (json!({"name": "d"}), "route d: path:"),
            (
                json!({"name": "d", "path": "/d", "targets": ["169.254.169.254:80"]}),
                "route d: targets: address 169.254.169.254",
            ),
            (json!({"name": "d", "path": "/d", "targets": ["10.0.0.1"]}), "is not ip:port"),
            (
                json!({"name": "d", "path": "/d", "targets": ["10.0.0.1:1", "10.0.0.1:2"]}),
                "not load balanced",
            ),
            (json!({"name": "d", "path": "/d", "access": "open"}), "route d: access:"),
            (json!({"name": "d", "path": "/d", "access": "public", "groups": ["g"]}), "route d: groups:"),
            (json!({"name": "d", "path": "/d", "groups": ["a b"]}), "route d: groups:"),
            (
                json!({"name": "d", "path": "/d", "rate_limit": {"requests_per_second": 0}}),
                "route d: rate_limit: requests_per_second:",
            ),
            (
                json!({"name": "d", "path": "/d", "rate_limit": {"requests_per_second": 1, "burst": 0}}),
                "route d: rate_limit: burst:",
            ),
            (
                json!({"name": "d", "path": "/d", "rate_limit": {"requests_per_second": 1, "key": "header:a b"}}),
                "route d: rate_limit: key:",
            ),
        ];
        for (route, want) in cases {
            let err = validate_doc(&doc(json!({"routes": [route]})), &policy()).unwrap_err();
            assert!(err.0.contains(want), "{route}: {err}");
        }
        let dup = doc(json!({"routes": [{"name": "a", "path": "/a"}, {"name": "a", "path": "/b"}]}));
        assert!(validate_doc(&dup, &policy()).unwrap_err().0.contains("name: another route"));
        let dup = doc(json!({"routes": [{"name": "a", "path": "/a"}, {"name": "b", "path": "/a/"}]}));
        assert!(validate_doc(&dup, &policy()).unwrap_err().0.contains("path: route a already uses /a"));
        let dup = doc(
            json!({"routes": [{"name": "a", "host": "x.example.com"}, {"name": "b", "host": "x.example.com"}]}),
        );
        let err = validate_doc(&dup, &policy()).unwrap_err().0;
        assert!(err.contains("route b: host: route a already uses x.example.com"), "{err}");
        let ok = doc(json!({"routes": [{"name": "a", "host": "x.example.com"}]}));
        let routes = validate_doc(&ok, &policy()).unwrap();
        assert_eq!(routes[0].to_raw().host.as_deref(), Some("x.example.com"));
        assert_eq!(
            static_url("https://gw.example.com:8443", &routes[0].location),
            "https://x.example.com:8443/"
        );
        let unknown = parse_file(Path::new("r.json"), br#"{"routes": [{"name": "a", "pth": "/a"}]}"#);
        assert!(unknown.unwrap_err().0.contains("pth"));
    }

    #[test]
    fn routes_defined_on_the_server_become_static_routes() {
        let path = from_server(
            &json!({"name": "demo", "type": "path", "enabled": true, "load_balancer": {"enabled": true}}),
            &policy(),
        )
        .unwrap();
        assert_eq!(path.location, Location::Path(RoutePath::parse("/demo").unwrap()));
        assert!(path.load_balanced && path.enabled && path.targets.is_empty());
        let sub =
            from_server(&json!({"name": "chat", "type": "subdomain", "enabled": false}), &policy()).unwrap();
        assert_eq!(sub.location, Location::Subdomain(SubdomainLabel::parse("chat").unwrap()));
        assert!(!sub.enabled && !sub.load_balanced);
        assert!(from_server(&json!({"name": "x", "type": "tcp"}), &policy())
            .unwrap_err()
            .0
            .contains("neither"));
        assert!(from_server(&json!({"name": "Bad Name;", "type": "path"}), &policy()).is_err());
    }

    #[test]
    fn urls_of_static_routes() {
        let path = Location::Path(RoutePath::parse("/demo").unwrap());
        let sub = Location::Subdomain(SubdomainLabel::parse("demo").unwrap());
        assert_eq!(static_url("http://gw.example.com:8080", &path), "http://gw.example.com:8080/demo/");
        assert_eq!(static_url("https://gw.example.com:8080/x", &sub), "https://demo.gw.example.com:8080/");
        assert_eq!(router_host("https://GW.example.com:8080/x"), "gw.example.com");
        assert_eq!(router_host("http://[fd00::1]:80"), "[fd00::1]");
    }

    #[test]
    fn groups_file_parses() {
        let g = parse_groups(br#"{"ml": ["user-1", "Ada"], "ops": []}"#).unwrap();
        assert!(g[&GroupName::parse("ml").unwrap()].contains("Ada"));
        assert!(parse_groups(br#"{"a b": []}"#).is_err());
        assert!(parse_groups(br#"["x"]"#).is_err());
    }
}
