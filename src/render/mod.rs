//! The only place that writes nginx or Lua text. Deterministic: the same inputs give the same
//! bytes (sorted maps, no timestamps), so unchanged input means no write and no reload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::errors::error_chain;
use crate::model::RouteId;
use crate::reconcile::RouteTable;

pub mod main_conf;

/// Name of the file the router writes into the proxy's conf.d (http context).
pub const CONF_FILE: &str = "clearml-router.conf";
/// Name of the Lua module, in the Lua directory.
pub const LUA_MODULE_FILE: &str = "clearml_router.lua";
/// Name of the JSON routing table, in the Lua directory.
pub const ROUTES_FILE: &str = "routes.json";

const ROUTER_CONF_TEMPLATE: &str = include_str!("../../templates/router.conf.tera");
const LUA_MODULE: &str = include_str!("../../lua/clearml_router.lua");

/// Structural inputs: anything here changing needs an nginx reload.
#[derive(Debug, Clone, Serialize)]
pub struct Layout {
    pub router_name: String,
    pub listen_port: u16,
    pub control_port: u16,
    /// The Lua directory as the proxy sees it.
    pub lua_dir: PathBuf,
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
    pub name: &'static str,
    pub bytes: Vec<u8>,
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
}

#[derive(Serialize)]
struct RouteEntry<'a> {
    host: String,
    port: u16,
    task: &'a str,
}

#[derive(Serialize)]
struct RoutesDoc<'a> {
    version: &'a str,
    routes: &'a BTreeMap<&'a RouteId, RouteEntry<'a>>,
}

/// Renders the proxy files for `table` with `layout`.
pub fn render(layout: &Layout, table: &RouteTable) -> Result<Rendered, RenderError> {
    let routes: BTreeMap<&RouteId, RouteEntry> = table
        .http
        .values()
        .map(|r| {
            (
                &r.id,
                RouteEntry {
                    host: r.target.addr().ip().to_string(),
                    port: r.target.addr().port(),
                    task: r.task.as_str(),
                },
            )
        })
        .collect();
    let routes_version = sha256_hex(&[serde_json::to_vec(&routes).expect("routes serialize").as_slice()]);
    let routes_bytes = serde_json::to_vec_pretty(&RoutesDoc {
        version: &routes_version,
        routes: &routes,
    })
    .expect("routes serialize");

    // The hash covers the files as rendered without it, so it can be embedded in them.
    let unhashed = render_conf(layout, "")?;
    let config_hash = sha256_hex(&[unhashed.as_bytes(), LUA_MODULE.as_bytes()]);
    let conf = render_conf(layout, &config_hash)?;
    Ok(Rendered {
        structural: vec![
            RenderedFile {
                dir: Dir::Lua,
                name: LUA_MODULE_FILE,
                bytes: LUA_MODULE.as_bytes().to_vec(),
            },
            RenderedFile {
                dir: Dir::Conf,
                name: CONF_FILE,
                bytes: conf.into_bytes(),
            },
        ],
        routes: RenderedFile {
            dir: Dir::Lua,
            name: ROUTES_FILE,
            bytes: routes_bytes,
        },
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
    ctx.insert("idle_timeout", "1d");
    ctx.insert("config_hash", config_hash);
    render_template("router.conf", ROUTER_CONF_TEMPLATE, &ctx)
}

/// Renders one embedded template (no autoescaping: every inserted value is validated first).
pub(crate) fn render_template(
    name: &'static str,
    template: &str,
    ctx: &tera::Context,
) -> Result<String, RenderError> {
    let mut tera = tera::Tera::default();
    tera.autoescape_on(vec![]);
    tera.add_raw_template(name, template)
        .map_err(|e| RenderError::Template(name, error_chain(&e)))?;
    tera.render(name, ctx)
        .map_err(|e| RenderError::Template(name, error_chain(&e)))
}

/// Paths come from settings, not tasks, but still reach nginx text: allow a plain alphabet only.
pub(crate) fn safe_path(path: &Path) -> Result<&str, RenderError> {
    let s = path
        .to_str()
        .ok_or_else(|| RenderError::UnsafePath(path.to_owned()))?;
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
    use crate::model::TargetPolicy;
    use crate::sources::snapshot::Snapshot;
    use serde_json::json;

    fn layout() -> Layout {
        Layout {
            router_name: "r1".into(),
            listen_port: 8080,
            control_port: 18080,
            lua_dir: "/lua".into(),
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
        RouteTable::build(&Snapshot { tasks }, &TargetPolicy::default())
    }

    #[test]
    fn render_is_deterministic_and_routes_are_data_only() {
        let a = render(&layout(), &table(&[1, 2])).unwrap();
        let b = render(&layout(), &table(&[2, 1])).unwrap();
        assert_eq!(a, b);
        let c = render(&layout(), &table(&[1, 2, 3])).unwrap();
        assert_eq!(
            a.structural, c.structural,
            "a new task must not change nginx config"
        );
        assert_eq!(a.config_hash, c.config_hash);
        assert_ne!(a.routes_version, c.routes_version);
        let conf = String::from_utf8(a.structural[1].bytes.clone()).unwrap();
        assert!(conf.contains(&a.config_hash));
        assert!(!conf.contains("10.0.0.1"));
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let mut l = layout();
        l.lua_dir = "/lua\"; evil".into();
        assert!(matches!(render(&l, &table(&[])), Err(RenderError::UnsafePath(_))));
    }
}
