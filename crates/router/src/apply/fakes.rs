//! In-memory stand-ins for the proxy (control listener and reloader) and the validator, for
//! tests of the applier and the loop without nginx. The fake proxy reads the same files nginx
//! would, so what it serves follows what the applier wrote.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::bail;

use super::probe::{ProxyControl, ProxyStatus};
use super::reloader::Reloader;
use super::validate::{BoxFuture, Check, ValidateConfig, ValidationReport};
use gateway_core::table::RouteTable;
use gateway_render::Layout;

/// What the fakes were asked, in order, shared by every fake of one test.
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    pub fn push(&self, entry: impl Into<String>) {
        self.0.lock().unwrap().push(entry.into());
    }

    /// The entries since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// How the fake proxy behaves; tests change it between steps.
#[derive(Debug, Clone)]
pub struct ProxyState {
    pub serving: ProxyStatus,
    /// The control listener answers and a reload reaches a master process.
    pub up: bool,
    /// A reload makes it serve the conf on disk; false: it keeps the old one (never confirms).
    pub takes_reloads: bool,
    /// A routing table load makes it serve routes.json on disk; false: it keeps the old table.
    pub takes_routes: bool,
}

/// The proxy: one value is both the applier's reloader and its control listener.
#[derive(Clone)]
pub struct FakeProxy {
    pub state: Arc<Mutex<ProxyState>>,
    conf_dir: PathBuf,
    lua_dir: PathBuf,
    journal: Journal,
}

impl FakeProxy {
    /// A running proxy with no router config loaded yet.
    pub fn new(conf_dir: &Path, lua_dir: &Path, journal: Journal) -> Self {
        let serving =
            ProxyStatus { config_hash: String::new(), routes_version: String::new(), routes: 0, error: None };
        Self {
            state: Arc::new(Mutex::new(ProxyState {
                serving,
                up: true,
                takes_reloads: true,
                takes_routes: true,
            })),
            conf_dir: conf_dir.to_owned(),
            lua_dir: lua_dir.to_owned(),
            journal,
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut ProxyState)) {
        change(&mut self.state.lock().unwrap());
    }

    pub fn serving(&self) -> ProxyStatus {
        self.state.lock().unwrap().serving.clone()
    }

    /// The hash the conf on disk embeds (what nginx reports after loading it).
    fn conf_hash_on_disk(&self) -> String {
        let conf = std::fs::read_to_string(self.conf_dir.join(gateway_render::CONF_FILE)).unwrap_or_default();
        let marker = "set $clearml_config_hash \"";
        conf.split_once(marker)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(hash, _)| hash.to_owned())
            .unwrap_or_default()
    }

    /// The version and size of the routing table on disk (what the Lua loader reports).
    fn routes_on_disk(&self) -> (String, u64) {
        let bytes = std::fs::read(self.lua_dir.join(gateway_render::ROUTES_FILE)).unwrap_or_default();
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let version = doc["version"].as_str().unwrap_or_default().to_owned();
        let routes = doc["routes"].as_object().map_or(0, |r| r.len() as u64);
        (version, routes)
    }

    fn answer(&self) -> anyhow::Result<ProxyStatus> {
        let state = self.state.lock().unwrap();
        if !state.up {
            bail!("connection refused");
        }
        Ok(state.serving.clone())
    }
}

impl ProxyControl for FakeProxy {
    async fn status(&self) -> anyhow::Result<ProxyStatus> {
        self.answer()
    }

    async fn load_routes(&self) -> anyhow::Result<ProxyStatus> {
        self.answer()?;
        if !self.state.lock().unwrap().takes_routes {
            self.journal.push("proxy keeps its routes");
            return self.answer();
        }
        let (version, routes) = self.routes_on_disk();
        self.journal.push(format!("proxy loads {routes} routes"));
        self.set(|s| {
            s.serving.routes_version = version;
            s.serving.routes = routes;
        });
        self.answer()
    }
}

impl Reloader for FakeProxy {
    async fn reload(&self) -> anyhow::Result<()> {
        self.journal.push("reload");
        let state = self.state.lock().unwrap().clone();
        if !state.up {
            bail!("no nginx master");
        }
        if state.takes_reloads {
            let config_hash = self.conf_hash_on_disk();
            let (routes_version, routes) = self.routes_on_disk();
            self.set(|s| s.serving = ProxyStatus { config_hash, routes_version, routes, error: None });
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "the fake proxy".into()
    }
}

/// Passes every render unless told why not.
#[derive(Clone, Default)]
pub struct FakeValidator {
    pub refuse: Arc<Mutex<Option<String>>>,
    journal: Journal,
}

impl FakeValidator {
    pub fn new(journal: Journal) -> Self {
        Self { refuse: Default::default(), journal }
    }
}

impl ValidateConfig for FakeValidator {
    fn validate<'a>(
        &'a self,
        _layout: &'a Layout,
        _table: &'a RouteTable,
        _staging: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<ValidationReport>> {
        self.journal.push("validate");
        let refused = self.refuse.lock().unwrap().clone();
        let check =
            Check { name: "nginx -t".into(), passed: refused.is_none(), output: refused.unwrap_or_default() };
        Box::pin(async move { Ok(ValidationReport { checks: vec![check] }) })
    }

    fn describe(&self) -> String {
        "the fake validator".into()
    }
}

/// An applier on `dir` (conf.d, lua and staging below it) against a fake proxy, with the
/// timeouts at zero so that nothing waits: an unconfirmed config fails at the first look.
pub fn applier(
    dir: &Path,
    journal: &Journal,
) -> (super::Applier<FakeProxy, FakeProxy>, FakeProxy, FakeValidator) {
    let conf_dir = dir.join("conf.d");
    let lua_dir = dir.join("lua");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&lua_dir).unwrap();
    let layout = Layout {
        router_name: "router".into(),
        listen_port: 8080,
        control_port: 18080,
        lua_dir: lua_dir.clone(),
        auth: gateway_render::AuthLayout::disabled(),
        upstream: Default::default(),
        tcp_ports: None,
        client_address: Default::default(),
        tls: Default::default(),
    };
    let proxy = FakeProxy::new(&conf_dir, &lua_dir, journal.clone());
    let validator = FakeValidator::new(journal.clone());
    let mut applier = super::Applier::new(
        layout,
        conf_dir,
        lua_dir,
        validator.clone(),
        proxy.clone(),
        proxy.clone(),
        dir.join("staging"),
    );
    applier.confirm_timeout = std::time::Duration::ZERO;
    applier.check_interval = std::time::Duration::ZERO;
    (applier, proxy, validator)
}

/// Every file the router wrote below `dir` (as [`applier`] lays it out), with its bytes.
pub fn files_below(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    ["conf.d", "lua"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).unwrap())
        .map(|entry| entry.unwrap().path())
        .map(|path| (path.clone(), std::fs::read(path).unwrap()))
        .collect()
}

/// A running task asking for an HTTP endpoint at 10.0.0.5:8888.
pub fn http_task(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "name": id, "status": "in_progress", "system_tags": ["external_service"],
        "runtime": {"_SERVICE": "EXTERNAL", "_ADDRESS": "10.0.0.5", "_PORT": 8888}})
}

/// A running task asking for a TCP endpoint to 10.0.0.6:22 (a structural change: a new listener).
pub fn tcp_task(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "name": id, "status": "in_progress", "system_tags": ["external_service"],
        "runtime": {"_SERVICE": "EXTERNAL_TCP", "external_address": "10.0.0.6", "external_tcp_port": 22}})
}
