//! `routes.json`, the routing table the router writes for the proxy: its one definition. The
//! renderer writes [`RoutesDoc`], the proxy's Lua (`clearml_rules.lua`, `clearml_store.lua`) reads
//! it with the same rules, and a restarted router reads it back with [`table_from_routes_file`] to
//! know what it advertised (to take it back) and which TCP ports it gave out (to keep them).
//!
//! Reading rules, shared with the Lua reader and pinned by the fixtures in
//! `fixtures/routes_json`: the document, its sections and its maps must have the right JSON type
//! or the whole document is refused; an entry of a map that does not parse or validate is skipped
//! alone. Maps are `BTreeMap`s so that the same table always gives the same bytes.

use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::model::{Invalid, Port, RouteId, Target, TargetPolicy};
use crate::rate_limit::RateLimit;
use crate::static_routes::{Access, HostName, Location, RouteName, RoutePath, StaticRoute, SubdomainLabel};
use crate::table::{Attached, HttpRoute, RouteTable, ServedStatic, TcpRoute};

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutesDoc {
    /// Hash of the routing entries; the proxy reports it once it has loaded them.
    pub version: String,
    /// Route id -> the task endpoint served at `/service/<route id>/`.
    #[serde(deserialize_with = "valid_entries")]
    pub routes: BTreeMap<String, HttpEntry>,
    #[serde(default, rename = "static", deserialize_with = "object")]
    pub static_routes: StaticDoc,
    /// TCP endpoints are served by the stream config; listed here so a restarted router keeps
    /// their ports.
    #[serde(default, deserialize_with = "valid_entries")]
    pub tcp: BTreeMap<String, TcpEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpEntry {
    pub host: String,
    pub port: u16,
    /// The task id (also the first part of the route id).
    #[serde(default)]
    pub task: String,
    /// Written only when false, so the common case keeps the table small.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub strip_prefix: bool,
    /// `ROUTER_TASK_RATE_LIMIT`, per route; a limit that does not validate drops the entry.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "optional_object")]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TcpEntry {
    /// The proxy port allocated to this endpoint.
    pub listen: u16,
    pub host: String,
    pub port: u16,
    #[serde(default)]
    pub task: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaticDoc {
    #[serde(default, deserialize_with = "valid_entries")]
    pub routes: BTreeMap<String, StaticEntry>,
    /// Path prefix -> route name.
    #[serde(default, deserialize_with = "valid_entries")]
    pub paths: BTreeMap<String, String>,
    /// Full host name -> route name.
    #[serde(default, deserialize_with = "valid_entries")]
    pub hosts: BTreeMap<String, String>,
    /// The affinity cookie carries `Secure` (AUTH_SECURE_ENABLED).
    #[serde(default)]
    pub secure_cookies: bool,
}

/// One enabled static route as the proxy's Lua sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaticEntry {
    /// Path prefix stripped before the request reaches a target (`""` for subdomain routes).
    #[serde(default)]
    pub prefix: String,
    /// `"<ip> <port>"` each; empty: the route exists but has no target yet (503).
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub load_balanced: bool,
    #[serde(default)]
    pub public: bool,
    /// Who may use it (user ids or names); absent: any login of the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// Task endpoints serving it (route ids): a restarted router knows what it advertised and
    /// which task keeps a single-target route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
    /// Across all of the route's targets; a limit that does not validate drops the entry.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "optional_object")]
    pub rate_limit: Option<RateLimit>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A section that must be a JSON object (serde alone would also build a struct from a list).
fn object<'de, D: Deserializer<'de>, T: DeserializeOwned>(de: D) -> Result<T, D::Error> {
    match Value::deserialize(de)? {
        value @ Value::Object(_) => T::deserialize(value).map_err(D::Error::custom),
        _ => Err(D::Error::custom("expected a JSON object")),
    }
}

/// An optional field that must be an object when present (serde alone would also build a struct
/// from a list); null is absent.
fn optional_object<'de, D: Deserializer<'de>, T: DeserializeOwned>(de: D) -> Result<Option<T>, D::Error> {
    match Value::deserialize(de)? {
        Value::Null => Ok(None),
        value @ Value::Object(_) => T::deserialize(value).map(Some).map_err(D::Error::custom),
        _ => Err(D::Error::custom("expected a JSON object")),
    }
}

/// A map whose entries that do not parse are dropped one by one instead of failing the whole
/// document. Lists are dropped too: no entry of this file is a list, though serde would read one
/// as a struct.
fn valid_entries<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    de: D,
) -> Result<BTreeMap<String, T>, D::Error> {
    let raw = BTreeMap::<String, Value>::deserialize(de)?;
    Ok(raw
        .into_iter()
        .filter(|(_, value)| !value.is_array())
        .filter_map(|(key, value)| Some((key, T::deserialize(value).ok()?)))
        .collect())
}

impl RoutesDoc {
    /// Parses the file's bytes; `None` if the document as a whole is refused.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        match serde_json::from_slice::<Value>(bytes).ok()? {
            value @ Value::Object(_) => serde_json::from_value(value).ok(),
            _ => None,
        }
    }

    /// The file's bytes, laid out for the proxy's text diff (clearml_store): the version on the
    /// first line, then one HTTP route per line in key order, then the static and TCP sections,
    /// so a changed route changes one line and the proxy decodes only the lines that differ.
    pub fn to_bytes(&self) -> Vec<u8> {
        fn json<T: Serialize + ?Sized>(value: &T) -> String {
            serde_json::to_string(value).expect("routes serialize")
        }
        let routes: Vec<String> =
            self.routes.iter().map(|(id, entry)| format!("{}:{}", json(id), json(entry))).collect();
        let mut out = format!("{{\"version\":{},\n\"routes\":{{\n", json(&self.version));
        out.push_str(&routes.join(",\n"));
        if !routes.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "}},\n\"static\":{},\n\"tcp\":{}}}\n",
            json(&self.static_routes),
            json(&self.tcp)
        ));
        out.into_bytes()
    }
}

/// These targets were checked when they were written; loopback may have been allowed then.
fn reader_policy() -> TargetPolicy {
    TargetPolicy { allow_loopback: true, ..TargetPolicy::default() }
}

fn target(policy: &TargetPolicy, host: &str, port: u16) -> Result<Target, Invalid> {
    policy.check(host, Port::new(port)?)
}

/// A static route target as written in this file: `"<ip> <port>"`, the port 1-5 digits.
fn static_target(policy: &TargetPolicy, raw: &str) -> Option<Target> {
    let (host, port) = raw.split_once(' ')?;
    let digits_only = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    target(policy, host, port.parse().ok().filter(|_| digits_only)?).ok()
}

/// The label a subdomain route answers on, from a key of `static.hosts`
/// (`<label>.<router host>`): letters, digits and `. - [ ] :` (IPv6 router hosts), 253 at most.
fn static_host_label(host: &str) -> Option<SubdomainLabel> {
    let charset_ok = host.len() <= 253
        && !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c));
    let label = host.split('.').next().filter(|_| charset_ok)?;
    SubdomainLabel::parse(label).ok()
}

/// Where a static entry is served: its prefix, or for a subdomain route (empty prefix) a valid
/// host that names it.
fn static_location(name: &str, entry: &StaticEntry, hosts: &BTreeMap<String, String>) -> Option<Location> {
    if !entry.prefix.is_empty() {
        return RoutePath::parse(&entry.prefix).ok().map(Location::Path);
    }
    // A subdomain route and a custom-domain route are both a host here; read as a custom domain,
    // a subdomain route gives the same URL (`static_url`), which is all the read-back is for.
    let host = hosts.iter().find(|(_, route)| *route == name).map(|(host, _)| host.as_str())?;
    HostName::parse(host)
        .map(Location::Host)
        .ok()
        .or_else(|| static_host_label(host).map(Location::Subdomain))
}

/// Reads our own file back; entries that do not validate are skipped (the file is ours, but the
/// volume is shared, so it is still read as untrusted input).
pub fn table_from_routes_file(bytes: &[u8]) -> RouteTable {
    let Some(doc) = RoutesDoc::parse(bytes) else { return RouteTable::default() };
    let policy = reader_policy();
    let mut table = RouteTable::default();
    for (id, entry) in doc.routes {
        let (Ok(id), Ok(target)) = (RouteId::parse(&id), target(&policy, &entry.host, entry.port)) else {
            continue;
        };
        let (task, endpoint) = id.parts();
        table.http.insert(
            id.clone(),
            HttpRoute {
                id,
                task,
                endpoint,
                target,
                task_name: String::new(),
                user: String::new(),
                static_route: None,
                strip_prefix: entry.strip_prefix,
            },
        );
    }
    for (id, entry) in doc.tcp {
        let (Ok(id), Ok(target), Ok(listen)) =
            (RouteId::parse(&id), target(&policy, &entry.host, entry.port), Port::new(entry.listen))
        else {
            continue;
        };
        let (task, endpoint) = id.parts();
        table.tcp.insert(
            id.clone(),
            TcpRoute { id, task, endpoint, target, port: listen, task_name: String::new() },
        );
    }
    // Static routes: only what is needed to retract their URLs and keep their tasks.
    let hosts = &doc.static_routes.hosts;
    for (name, entry) in &doc.static_routes.routes {
        let Ok(route_name) = RouteName::parse(name) else { continue };
        let Some(location) = static_location(name, entry, hosts) else { continue };
        if !entry.targets.iter().all(|t| static_target(&policy, t).is_some()) {
            continue;
        }
        // The target is not needed for either purpose; it is not kept in this entry.
        let placeholder = target(&policy, "127.0.0.1", 1).expect("loopback allowed");
        let tasks = entry
            .tasks
            .iter()
            .filter_map(|id| RouteId::parse(id).ok())
            .map(|id| {
                let (task, endpoint) = id.parts();
                Attached { task, endpoint, target: placeholder, task_name: String::new() }
            })
            .collect();
        let route = StaticRoute {
            name: route_name.clone(),
            location,
            load_balanced: entry.load_balanced,
            autoscaling: None,
            access: Access::Public,
            targets: vec![],
            rate_limit: entry.rate_limit.clone(),
            enabled: true,
            created: None,
            updated: None,
            updated_by: None,
        };
        table.statics.insert(route_name, ServedStatic { route, tasks, targets: vec![], members: None });
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    #[test]
    fn the_file_has_one_route_per_line_and_reads_back() {
        let entry = |port| HttpEntry {
            host: "10.0.0.1".into(),
            port,
            task: "t".into(),
            strip_prefix: port != 2,
            rate_limit: (port == 3).then(|| RateLimit::parse_setting("rps=2").unwrap()),
        };
        for n in [0, 1, 3] {
            let doc = RoutesDoc {
                version: "v".into(),
                routes: (1..=n).map(|p| (format!("r{p}"), entry(p))).collect(),
                static_routes: StaticDoc::default(),
                tcp: BTreeMap::new(),
            };
            let bytes = doc.to_bytes();
            assert_eq!(RoutesDoc::parse(&bytes), Some(doc.clone()));
            let text = String::from_utf8(bytes).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(&lines[..2], ["{\"version\":\"v\",", "\"routes\":{"]);
            assert_eq!(lines[2 + n as usize], "},", "{text}");
            for p in 1..=n {
                assert!(lines[1 + p as usize].starts_with(&format!("\"r{p}\":{{")), "{text}");
            }
        }
    }

    /// What a reader accepted: route ids, TCP ids, static route names.
    fn accepted(table: &RouteTable) -> [BTreeSet<String>; 3] {
        [
            table.http.keys().map(|id| id.to_string()).collect(),
            table.tcp.keys().map(|id| id.to_string()).collect(),
            table.statics.keys().map(|name| name.to_string()).collect(),
        ]
    }

    fn strings(value: &Value) -> BTreeSet<String> {
        let list = value.as_array().expect("expect lists");
        list.iter().map(|s| s.as_str().expect("expect lists of strings").to_owned()).collect()
    }

    /// Every fixture: the reader accepts exactly what `expect` lists. The Lua reader is held to
    /// the same files by `crates/render/lua/tests/test_fixtures.lua`.
    #[test]
    fn the_reader_accepts_exactly_what_each_fixture_expects() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/routes_json");
        let mut checked = 0;
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let fixture: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let document = serde_json::to_vec(&fixture["document"]).unwrap();
            let expect = &fixture["expect"];
            let want = [strings(&expect["routes"]), strings(&expect["tcp"]), strings(&expect["static"])];
            assert_eq!(accepted(&table_from_routes_file(&document)), want, "{}", path.display());
            checked += 1;
        }
        assert!(checked >= 5, "fixtures missing in {}", dir.display());
    }

    /// A document with a route whose unknown field nests lists to a total depth of `depth`.
    fn nested(depth: usize) -> String {
        let lists = depth - 3;
        let extra = format!("{}0{}", "[".repeat(lists), "]".repeat(lists));
        format!(r#"{{"version":"v","routes":{{"abc":{{"host":"10.0.0.1","port":80,"extra":{extra}}}}}}}"#)
    }

    /// serde_json's nesting limit; the Lua reader sets cjson's to the same depth (its tests
    /// check the same two documents).
    #[test]
    fn documents_nested_deeper_than_127_are_refused() {
        assert_eq!(table_from_routes_file(nested(127).as_bytes()).http.len(), 1);
        assert_eq!(table_from_routes_file(nested(128).as_bytes()).http.len(), 0);
    }

    #[test]
    fn a_written_document_reads_back_to_the_same_bytes() {
        let fixture: Value =
            serde_json::from_str(include_str!("../fixtures/routes_json/valid_full.json")).unwrap();
        let doc: RoutesDoc = serde_json::from_value(fixture["document"].clone()).unwrap();
        let bytes = doc.to_bytes();
        assert_eq!(RoutesDoc::parse(&bytes), Some(doc.clone()));
        assert_eq!(RoutesDoc::parse(&bytes).unwrap().to_bytes(), bytes);
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;
    use crate::static_routes::{static_url, SubdomainLabel};

    #[test]
    fn a_host_read_back_gives_the_url_it_was_served_at() {
        let hosts: BTreeMap<String, String> = [
            ("docs.gw.example.com".to_owned(), "docs".to_owned()),
            ("shop.example.org".to_owned(), "shop".to_owned()),
        ]
        .into();
        let entry = StaticEntry::default();
        let url = "https://gw.example.com:8443";
        let docs = static_location("docs", &entry, &hosts).unwrap();
        let subdomain = Location::Subdomain(SubdomainLabel::parse("docs").unwrap());
        assert_eq!(static_url(url, &docs), static_url(url, &subdomain));
        let shop = static_location("shop", &entry, &hosts).unwrap();
        assert_eq!(static_url(url, &shop), "https://shop.example.org:8443/");
    }
}
