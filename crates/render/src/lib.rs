//! The only place that writes nginx or Lua text. Deterministic: the same inputs give the same
//! bytes (sorted maps, no timestamps), so unchanged input means no write and no reload.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use gateway_core::errors::error_chain;
use gateway_core::model::RouteId;
use gateway_core::routes_file::{HttpEntry, RoutesDoc, StaticDoc, StaticEntry, TcpEntry};
use gateway_core::table::RouteTable;

pub mod auth;
pub mod main_conf;
pub mod oracle;
pub mod tls;

pub use auth::AuthLayout;
pub use tls::{TlsCert, TlsLayout};

/// Name of the file the router writes into the proxy's conf.d (http context).
pub const CONF_FILE: &str = "clearml-router.conf";
/// Name of the TCP (stream context) file in conf.d; the proxy's nginx.conf includes
/// `conf.d/*.stream` inside `stream {}`.
pub const STREAM_FILE: &str = "clearml-router.stream";
/// Name of the JSON routing table, in the Lua directory.
pub const ROUTES_FILE: &str = "routes.json";
/// Name of the njs script that routes TCP connections, in the Lua directory.
pub const TCP_SCRIPT_FILE: &str = "clearml_tcp.js";
const TCP_SCRIPT: &str = include_str!("../njs/clearml_tcp.js");
/// Name of the auth module's JSON settings and its key file, in the Lua directory.
pub const AUTH_SETTINGS_FILE: &str = "auth.json";
pub const AUTH_KEY_FILE: &str = "clearml_auth.key";

const ROUTER_CONF_TEMPLATE: &str = include_str!("../templates/router.conf.tera");
const ROUTER_LOCATIONS_TEMPLATE: &str = include_str!("../templates/router.locations.tera");
const ROUTER_STREAM_TEMPLATE: &str = include_str!("../templates/router.stream.tera");
/// How the proxy asks ClearML who a token belongs to, shared by the login check of a request (a
/// subrequest) and the background re-check (through the control listener, so that nginx resolves
/// ClearML's host name and checks its TLS there too, which a Lua socket could not).
const ROUTER_VALIDATE_TEMPLATE: &str = include_str!("../templates/router.validate.tera");

/// The Lua modules (file name, text), one per concern; the conf `require`s them by name.
const LUA_MODULES: &[(&str, &str)] = &[
    ("clearml_auth.lua", include_str!("../lua/clearml_auth.lua")),
    ("clearml_control.lua", include_str!("../lua/clearml_control.lua")),
    ("clearml_gateway_tokens.lua", include_str!("../lua/clearml_gateway_tokens.lua")),
    ("clearml_jwt.lua", include_str!("../lua/clearml_jwt.lua")),
    ("clearml_pages.lua", include_str!("../lua/clearml_pages.lua")),
    ("clearml_ratelimit.lua", include_str!("../lua/clearml_ratelimit.lua")),
    ("clearml_router.lua", include_str!("../lua/clearml_router.lua")),
    ("clearml_rules.lua", include_str!("../lua/clearml_rules.lua")),
    ("clearml_static.lua", include_str!("../lua/clearml_static.lua")),
    ("clearml_store.lua", include_str!("../lua/clearml_store.lua")),
    ("clearml_traffic.lua", include_str!("../lua/clearml_traffic.lua")),
    ("clearml_websocket.lua", include_str!("../lua/clearml_websocket.lua")),
];

/// How long an idle connection (websocket, SSH) is kept open.
const IDLE_TIMEOUT: &str = "1d";

/// CA bundle the proxy trusts when it checks logins against an https ClearML server.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Structural inputs: anything here changing needs an nginx reload.
#[derive(Debug, Clone)]
pub struct Layout {
    pub router_name: String,
    pub listen_port: u16,
    pub control_port: u16,
    /// The Lua directory as the proxy sees it.
    pub lua_dir: PathBuf,
    pub auth: AuthLayout,
    pub upstream: UpstreamLayout,
    /// The TCP port range the proxy binds (first, last), when TCP endpoints are enabled.
    pub tcp_ports: Option<(u16, u16)>,
    pub client_address: ClientAddressLayout,
    pub tls: TlsLayout,
}

/// Where the proxy learns the client's address: the peer, or what trusted proxies say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientAddressLayout {
    /// Proxies whose `X-Forwarded-For` (or PROXY protocol header) is believed.
    pub trusted_proxies: Vec<gateway_core::cidr::Cidr>,
    /// The HTTP listener reads the PROXY protocol on every connection.
    pub proxy_protocol: bool,
}

/// Connections from the proxy to task targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLayout {
    /// Idle connections each worker keeps (nginx `keepalive`; 0 turns reuse off).
    pub keepalive: u32,
    pub keepalive_timeout_seconds: u32,
}

impl Default for UpstreamLayout {
    fn default() -> Self {
        Self { keepalive: 64, keepalive_timeout_seconds: 4 }
    }
}

/// Which directory a rendered file belongs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    Conf,
    Lua,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub dir: Dir,
    /// A plain file name (no directory part).
    pub name: Cow<'static, str>,
    pub bytes: Vec<u8>,
    /// Holds a secret: written with mode 0600 and left out of dry-run output.
    pub secret: bool,
}

impl RenderedFile {
    fn new(dir: Dir, name: impl Into<Cow<'static, str>>, bytes: Vec<u8>) -> Self {
        Self { dir, name: name.into(), bytes, secret: false }
    }
}

/// One complete render: structural files, the routing table, and their hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub structural: Vec<RenderedFile>,
    pub routes: RenderedFile,
    /// Hash of the structural files; the proxy reports it once it serves them.
    pub config_hash: String,
    /// Hash of the routing table entries; the proxy reports it once it has loaded them.
    pub routes_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {0}: {1}")]
    Template(&'static str, String),
    #[error("path {0:?} cannot be used in nginx config: only letters, digits and / . _ - are allowed")]
    UnsafePath(PathBuf),
    #[error("server name {0:?} is not a DNS name (or *. and a DNS name)")]
    UnsafeServerName(String),
    #[error("ClearML company id {0:?} has characters other than letters, digits, '-' and '_'")]
    UnsafeCompany(String),
}

fn static_doc(table: &RouteTable) -> StaticDoc {
    use gateway_core::static_routes::{Access, Location};
    let mut doc = StaticDoc { secure_cookies: table.secure_cookies, ..StaticDoc::default() };
    for (name, served) in &table.statics {
        let name = name.as_str().to_owned();
        let prefix = match &served.route.location {
            Location::Path(p) => {
                doc.paths.insert(p.as_str().to_owned(), name.clone());
                p.as_str().to_owned()
            }
            Location::Subdomain(label) => {
                doc.hosts.insert(format!("{}.{}", label.as_str(), table.router_host), name.clone());
                String::new()
            }
            Location::Host(host) => {
                doc.hosts.insert(host.as_str().to_owned(), name.clone());
                String::new()
            }
        };
        let entry = StaticEntry {
            prefix,
            targets: served
                .targets
                .iter()
                .map(|t| format!("{} {}", t.addr().ip(), t.addr().port()))
                .collect(),
            load_balanced: served.route.load_balanced,
            public: matches!(served.route.access, Access::Public),
            rate_limit: served.route.rate_limit.clone(),
            members: served.members.as_ref().map(|m| m.iter().cloned().collect()),
            tasks: served
                .tasks
                .iter()
                .map(|a| RouteId::for_endpoint(&a.task, a.endpoint.as_ref()).to_string())
                .collect(),
        };
        doc.routes.insert(name, entry);
    }
    doc
}

/// The routing table as the proxy reads it (`routes.json`), with its version.
fn routes_doc(table: &RouteTable) -> RoutesDoc {
    let routes: BTreeMap<String, HttpEntry> = table
        .http
        .values()
        .map(|r| {
            let entry = HttpEntry {
                host: r.target.addr().ip().to_string(),
                port: r.target.addr().port(),
                task: r.task.to_string(),
                strip_prefix: r.strip_prefix,
                rate_limit: table.task_rate_limit.clone(),
            };
            (r.id.to_string(), entry)
        })
        .collect();
    let static_routes = static_doc(table);
    let tcp: BTreeMap<String, TcpEntry> = table
        .tcp
        .values()
        .map(|r| {
            let entry = TcpEntry {
                listen: r.port.get(),
                host: r.target.addr().ip().to_string(),
                port: r.target.addr().port(),
                task: r.task.to_string(),
            };
            (r.id.to_string(), entry)
        })
        .collect();
    let version = sha256_hex(&[
        serde_json::to_vec(&routes).expect("routes serialize").as_slice(),
        serde_json::to_vec(&static_routes).expect("routes serialize").as_slice(),
        serde_json::to_vec(&tcp).expect("routes serialize").as_slice(),
    ]);
    RoutesDoc { version, routes, static_routes, tcp }
}

/// Renders the proxy files for `table` with `layout`.
pub fn render(layout: &Layout, table: &RouteTable) -> Result<Rendered, RenderError> {
    let routes_doc = routes_doc(table);
    let routes_bytes = routes_doc.to_bytes();
    let routes_version = routes_doc.version;

    let mut structural: Vec<RenderedFile> = LUA_MODULES
        .iter()
        .map(|(name, text)| RenderedFile::new(Dir::Lua, *name, text.as_bytes().to_vec()))
        .collect();
    structural.extend([
        RenderedFile::new(Dir::Lua, AUTH_SETTINGS_FILE, layout.auth.settings_json()),
        RenderedFile { secret: true, ..RenderedFile::new(Dir::Lua, AUTH_KEY_FILE, layout.auth.key_file()) },
        RenderedFile::new(Dir::Lua, TCP_SCRIPT_FILE, TCP_SCRIPT.as_bytes().to_vec()),
        RenderedFile::new(Dir::Conf, STREAM_FILE, render_stream(layout)?.into_bytes()),
    ]);
    // Certificates (with their keys) are structural: a new one is a new file and a reload.
    if layout.tls.https_port.is_some() {
        structural.extend(layout.tls.certs.iter().map(|cert| RenderedFile {
            secret: true,
            ..RenderedFile::new(Dir::Lua, cert.file_name(), cert.pem.clone())
        }));
    }
    if let Some(company) = layout.auth.company_id.as_deref().filter(|c| !auth::valid_company_id(c)) {
        return Err(RenderError::UnsafeCompany(gateway_core::model::display_untrusted(company)));
    }
    // The hash covers every structural file, the conf as rendered without the hash, so that it
    // can be embedded in the conf.
    let unhashed = render_conf(layout, "")?;
    let mut parts: Vec<&[u8]> = vec![unhashed.as_bytes()];
    parts.extend(structural.iter().map(|f| f.bytes.as_slice()));
    let config_hash = sha256_hex(&parts);
    let conf = render_conf(layout, &config_hash)?;
    // The conf goes last: it refers to the Lua files, which are written first.
    structural.push(RenderedFile::new(Dir::Conf, CONF_FILE, conf.into_bytes()));
    Ok(Rendered {
        structural,
        routes: RenderedFile::new(Dir::Lua, ROUTES_FILE, routes_bytes),
        config_hash,
        routes_version,
    })
}

fn render_conf(layout: &Layout, config_hash: &str) -> Result<String, RenderError> {
    let lua_dir = safe_path(&layout.lua_dir)?;
    let mut ctx = tera::Context::new();
    ctx.insert("router_name", &layout.router_name);
    ctx.insert("listen_port", &layout.listen_port);
    ctx.insert("control_port", &layout.control_port);
    ctx.insert("lua_dir", lua_dir);
    ctx.insert("routes_file", &format!("{lua_dir}/{ROUTES_FILE}"));
    ctx.insert("poll_seconds", "0.25");
    ctx.insert("connect_timeout", "10s");
    ctx.insert("idle_timeout", IDLE_TIMEOUT);
    ctx.insert("config_hash", config_hash);
    ctx.insert("upstream_keepalive", &layout.upstream.keepalive);
    ctx.insert("upstream_keepalive_timeout", &layout.upstream.keepalive_timeout_seconds);
    ctx.insert("auth_settings_file", &format!("{lua_dir}/{AUTH_SETTINGS_FILE}"));
    ctx.insert("auth_key_file", &format!("{lua_dir}/{AUTH_KEY_FILE}"));
    let auth = &layout.auth;
    ctx.insert("auth_remote", &(auth.enabled && auth.local_key.is_none()));
    ctx.insert("auth_api_url", &auth.api_url);
    ctx.insert("auth_api_https", &auth.api_url.starts_with("https://"));
    ctx.insert("auth_verify_tls", &auth.verify_tls);
    ctx.insert("ca_bundle", CA_BUNDLE);
    let client = &layout.client_address;
    let trusted: Vec<String> = client.trusted_proxies.iter().map(ToString::to_string).collect();
    ctx.insert("trusted_proxies", &trusted);
    ctx.insert("proxy_protocol", &client.proxy_protocol);
    let validate_proxy = render_template("router.validate", ROUTER_VALIDATE_TEMPLATE, &ctx)?;
    ctx.insert("validate_proxy", &validate_proxy);
    let locations = render_template("router.locations", ROUTER_LOCATIONS_TEMPLATE, &ctx)?;
    ctx.insert("locations", &locations);
    insert_tls(&mut ctx, &layout.tls, lua_dir)?;
    render_template("router.conf", ROUTER_CONF_TEMPLATE, &ctx)
}

/// The HTTPS servers, the ACME answers and the redirect.
fn insert_tls(ctx: &mut tera::Context, tls: &TlsLayout, lua_dir: &str) -> Result<(), RenderError> {
    #[derive(serde::Serialize)]
    struct Served {
        names: Vec<String>,
        file: String,
    }
    let mut certs = Vec::new();
    if let Some(port) = tls.https_port {
        for cert in &tls.certs {
            if let Some(bad) = cert.names.iter().find(|n| !tls::valid_server_name(n)) {
                return Err(RenderError::UnsafeServerName(bad.clone()));
            }
            certs.push(Served { names: cert.names.clone(), file: format!("{lua_dir}/{}", cert.file_name()) });
        }
        ctx.insert("https_port", &port);
        ctx.insert("https_port_suffix", &if port == 443 { String::new() } else { format!(":{port}") });
    }
    ctx.insert("tls_serving", &tls.serving());
    ctx.insert("tls_certs", &certs);
    ctx.insert("https_redirect", &(tls.redirect && tls.serving()));
    let challenges = tls.acme_challenges.then(|| format!("{lua_dir}/{}", tls::ACME_CHALLENGE_DIR));
    ctx.insert("acme_challenge_dir", &challenges);
    Ok(())
}

fn render_stream(layout: &Layout) -> Result<String, RenderError> {
    let lua_dir = safe_path(&layout.lua_dir)?;
    let mut ctx = tera::Context::new();
    ctx.insert("router_name", &layout.router_name);
    ctx.insert("tcp_ports", &layout.tcp_ports);
    ctx.insert("tcp_script", &format!("{lua_dir}/{TCP_SCRIPT_FILE}"));
    ctx.insert("routes_file", &format!("{lua_dir}/{ROUTES_FILE}"));
    ctx.insert("idle_timeout", IDLE_TIMEOUT);
    render_template("router.stream", ROUTER_STREAM_TEMPLATE, &ctx)
}

/// Renders one embedded template (no autoescaping: every inserted value is validated first).
/// Each template is parsed once per thread: `name` always comes with the same embedded text.
pub(crate) fn render_template(
    name: &'static str,
    template: &str,
    ctx: &tera::Context,
) -> Result<String, RenderError> {
    thread_local! {
        static PARSED: std::cell::RefCell<BTreeMap<&'static str, tera::Tera>> = Default::default();
    }
    PARSED.with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if !parsed.contains_key(name) {
            let mut tera = tera::Tera::default();
            tera.autoescape_on(vec![]);
            tera.add_raw_template(name, template)
                .map_err(|e| RenderError::Template(name, error_chain(&e)))?;
            parsed.insert(name, tera);
        }
        parsed[name].render(name, ctx).map_err(|e| RenderError::Template(name, error_chain(&e)))
    })
}

/// Paths come from settings, not tasks, but still reach nginx text: allow a plain alphabet only.
pub(crate) fn safe_path(path: &Path) -> Result<&str, RenderError> {
    let s = path.to_str().ok_or_else(|| RenderError::UnsafePath(path.to_owned()))?;
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok {
        Ok(s.trim_end_matches('/'))
    } else {
        Err(RenderError::UnsafePath(path.to_owned()))
    }
}

pub fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::model::TargetPolicy;
    use gateway_core::snapshot::Snapshot;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn layout() -> Layout {
        Layout {
            router_name: "r1".into(),
            listen_port: 8080,
            control_port: 18080,
            lua_dir: "/lua".into(),
            auth: AuthLayout::disabled(),
            upstream: UpstreamLayout::default(),
            tcp_ports: Some((10000, 10100)),
            client_address: Default::default(),
            tls: TlsLayout::default(),
        }
    }

    fn table(ports: &[u16]) -> RouteTable {
        let tasks = ports
            .iter()
            .map(|p| {
                json!({"id": format!("t{p}"), "status": "in_progress", "system_tags": ["external_service"],
                       "runtime": {"_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.1", "_PORT": p}})
            })
            .collect();
        RouteTable::build(&Snapshot { tasks, company: None }, &TargetPolicy::default())
    }

    #[test]
    fn render_is_deterministic_and_routes_are_data_only() {
        let a = render(&layout(), &table(&[1, 2])).unwrap();
        let b = render(&layout(), &table(&[2, 1])).unwrap();
        assert_eq!(a, b);
        let c = render(&layout(), &table(&[1, 2, 3])).unwrap();
        assert_eq!(a.structural, c.structural, "a new task must not change nginx config");
        assert_eq!(a.config_hash, c.config_hash);
        assert_ne!(a.routes_version, c.routes_version);
        let conf = a.structural.iter().find(|f| f.name == CONF_FILE).unwrap();
        let conf = String::from_utf8(conf.bytes.clone()).unwrap();
        assert!(conf.contains(&a.config_hash));
        assert!(!conf.contains("10.0.0.1"));
    }

    fn conf_text(rendered: &Rendered) -> String {
        let conf = rendered.structural.iter().find(|f| f.name == CONF_FILE).unwrap();
        String::from_utf8(conf.bytes.clone()).unwrap()
    }

    #[test]
    fn rate_limits_are_data_and_the_client_address_is_the_peer_unless_a_proxy_is_trusted() {
        use gateway_core::rate_limit::RateLimit;
        let plain = render(&layout(), &table(&[1])).unwrap();
        let mut limited_table = table(&[1]);
        limited_table.task_rate_limit = Some(RateLimit::parse_setting("rps=20,burst=40").unwrap());
        let limited = render(&layout(), &limited_table).unwrap();
        assert_eq!(plain.structural, limited.structural, "a limit must not change nginx config");
        assert_ne!(plain.routes_version, limited.routes_version);
        let text = String::from_utf8(limited.routes.bytes.clone()).unwrap();
        assert!(
            text.contains(r#""rate_limit":{"requests_per_second":20.0,"burst":40,"key":"client"}"#),
            "{text}"
        );

        let conf = conf_text(&plain);
        assert!(!conf.contains("set_real_ip_from") && !conf.contains("proxy_protocol"), "{conf}");
        assert!(
            !conf.contains("$proxy_add_x_forwarded_for"),
            "a client's X-Forwarded-For is never passed on"
        );
        let mut trusting = layout();
        trusting.client_address = ClientAddressLayout {
            trusted_proxies: gateway_core::cidr::Cidr::parse_list("10.0.0.0/8,fd00::/8").unwrap(),
            proxy_protocol: false,
        };
        let conf = conf_text(&render(&trusting, &table(&[1])).unwrap());
        assert!(
            conf.contains("    set_real_ip_from 10.0.0.0/8;\n    set_real_ip_from fd00::/8;\n"),
            "{conf}"
        );
        assert!(conf.contains("real_ip_header X-Forwarded-For;") && conf.contains("real_ip_recursive on;"));
        trusting.client_address.proxy_protocol = true;
        let conf = conf_text(&render(&trusting, &table(&[1])).unwrap());
        assert!(
            conf.contains("default_server proxy_protocol;")
                && conf.contains("real_ip_header proxy_protocol;")
        );
    }

    #[test]
    fn every_lua_module_is_rendered_and_every_required_one_exists() {
        let rendered = render(&layout(), &table(&[])).unwrap();
        let lua: BTreeSet<&str> =
            rendered.structural.iter().filter(|f| f.dir == Dir::Lua).map(|f| &*f.name).collect();
        let lua_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
        for entry in std::fs::read_dir(&lua_dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".lua") {
                assert!(lua.contains(name.as_str()), "{name} is in {} but not rendered", lua_dir.display());
            }
        }
        for file in &rendered.structural {
            let text = String::from_utf8_lossy(&file.bytes);
            for call in text.split("require(\"").skip(1) {
                let module = call.split('"').next().unwrap();
                if module.starts_with("clearml_") {
                    assert!(
                        lua.contains(format!("{module}.lua").as_str()),
                        "{} requires {module}",
                        file.name
                    );
                }
            }
        }
    }

    #[test]
    fn https_servers_serve_what_the_plain_listener_serves() {
        let mut l = layout();
        let cert = |name: &str, pem: &str| TlsCert { names: vec![name.into()], pem: pem.as_bytes().to_vec() };
        l.tls = TlsLayout {
            https_port: Some(8443),
            redirect: true,
            acme_challenges: true,
            certs: vec![cert("gw.example.com", "A"), cert("*.gw.example.com", "B")],
        };
        let rendered = render(&l, &table(&[])).unwrap();
        let conf = rendered.structural.iter().find(|f| f.name == CONF_FILE).unwrap();
        let conf = String::from_utf8(conf.bytes.clone()).unwrap();
        assert_eq!(conf.matches("listen 8443 ssl").count(), 2);
        assert_eq!(conf.matches("listen 8443 ssl default_server;").count(), 1);
        assert!(conf.contains("server_name *.gw.example.com;"));
        // Each HTTPS server has the whole set of locations; the plain one only redirects.
        assert_eq!(conf.matches("location /service/ {").count(), 2);
        assert!(conf.contains("return 301 https://$host:8443$request_uri;"));
        assert!(conf.contains("alias /lua/acme-challenge/;"));
        let files: Vec<&RenderedFile> =
            rendered.structural.iter().filter(|f| f.name.starts_with(tls::CERT_FILE_PREFIX)).collect();
        assert_eq!(files.len(), 2);
        assert!(files.iter().all(|f| f.secret && f.dir == Dir::Lua));
        assert!(!format!("{:?}", l.tls).contains("\"A\""), "the key never shows in Debug");
        l.tls.certs = vec![cert("bad name;", "A")];
        assert!(matches!(render(&l, &table(&[])), Err(RenderError::UnsafeServerName(_))));
        // No certificate yet: no HTTPS server and no redirect (nothing would serve).
        l.tls.certs.clear();
        let conf = render_conf(&l, "").unwrap();
        assert!(!conf.contains("ssl") && !conf.contains("return 301"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let mut l = layout();
        l.lua_dir = "/lua\"; evil".into();
        assert!(matches!(render(&l, &table(&[])), Err(RenderError::UnsafePath(_))));
    }
}
