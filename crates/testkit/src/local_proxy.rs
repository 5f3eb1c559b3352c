//! An nginx proxy the router starts on this host (demo, tests): its own prefix directory, the
//! router's conf.d and Lua directory, and a master process that the process reloader signals.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::process::ProcessGroup;

use clearml_router::apply::probe::{ProxyControl, ProxyProbe};
use clearml_router::config::{env, Defaults, RawEnv};
use gateway_core::table::RouteTable;
use gateway_render::main_conf::MainConf;
use gateway_render::{render, Layout};

/// The modules include for an nginx the tests start, from the environment as the router reads it.
pub fn modules_include() -> String {
    let raw = RawEnv::from_process_env().unwrap_or_default();
    raw.var(env::ROUTER_NGINX_MODULES_INCLUDE)
        .present()
        .unwrap_or(Defaults::default().modules_include)
        .to_owned()
}

pub struct LocalProxy {
    pub main: MainConf,
    pub conf_dir: PathBuf,
    pub lua_dir: PathBuf,
    /// The master and its workers; dropping the proxy stops them all.
    nginx: ProcessGroup,
}

impl LocalProxy {
    /// Lays out `prefix` (conf.d, lua, nginx.conf), writes an initial empty render so nginx starts
    /// with the router's listeners, starts nginx and waits until its control listener answers.
    pub async fn start(
        nginx_bin: &Path,
        prefix: &Path,
        layout: &Layout,
        workers: u32,
        access_log: bool,
    ) -> anyhow::Result<Self> {
        let conf_dir = prefix.join("conf.d");
        let lua_dir = layout.lua_dir.clone();
        std::fs::create_dir_all(&lua_dir)?;
        let main = MainConf {
            prefix: prefix.to_owned(),
            conf_dir: conf_dir.clone(),
            workers,
            modules_include: modules_include(),
            access_log,
        };
        let conf_path = main.write()?;
        let initial = render(layout, &RouteTable::default())?;
        clearml_router::apply::validate::write_staged(&initial, &conf_dir, &lua_dir, true)?;
        let mut cmd = Command::new(nginx_bin);
        cmd.arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(main.error_log())
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg("daemon off;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let nginx = ProcessGroup::spawn(&mut cmd, crate::process::NGINX_STOP, Duration::from_secs(3))
            .with_context(|| {
                format!(
                    "starting {} (install nginx with the Lua module: scripts/setup.sh)",
                    nginx_bin.display()
                )
            })?;
        let mut proxy = Self { main, conf_dir, lua_dir, nginx };
        let probe = ProxyProbe::new(layout.control_port);
        let ready = probe.wait_for(Duration::from_secs(10), |s| s.config_hash == initial.config_hash).await;
        if let Err(e) = ready {
            let log = std::fs::read_to_string(proxy.main.error_log()).unwrap_or_default();
            proxy.nginx.stop();
            bail!("nginx did not come up: {e:#}\n{log}");
        }
        Ok(proxy)
    }

    pub fn pid_file(&self) -> PathBuf {
        self.main.pid_file()
    }

    /// Stops nginx, workers included, and waits for it (dropping the proxy does the same).
    pub fn stop(mut self) {
        self.nginx.stop();
    }
}
