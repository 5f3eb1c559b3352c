//! The file-watch mode (`ROUTER__WEBSERVER__AUTO_RELOAD_CONFIG=true`), for setups without the
//! Docker socket (Kubernetes): the router only writes the files; the proxy container watches
//! conf.d and the Lua directory and runs `nginx -t` and `nginx -s reload` itself when a structural
//! file changes (`docker/proxy-entrypoint.sh`). The router still confirms the new config hash on
//! the proxy's control listener and puts the previous files back if it never shows up.

use std::path::{Path, PathBuf};

use crate::apply::reloader::Reloader;
use crate::apply::validate::{BoxFuture, ValidateConfig, ValidationReport};
use gateway_core::table::RouteTable;
use gateway_render::Layout;

/// Sends nothing: the proxy notices the new files itself.
#[derive(Debug, Clone)]
pub struct FileWatchReloader {
    pub conf_dir: PathBuf,
    pub lua_dir: PathBuf,
}

impl Reloader for FileWatchReloader {
    async fn reload(&self) -> anyhow::Result<()> {
        tracing::debug!("file-watch mode: the proxy reloads itself when it sees the new files");
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "file watch: the proxy reloads itself when {} or {} change ({})",
            self.conf_dir.display(),
            self.lua_dir.display(),
            crate::config::env::AUTO_RELOAD_CONFIG
        )
    }
}

/// For the file-watch mode when the router has no nginx of its own (its image has none): the
/// proxy's watcher runs `nginx -t` on the new files before it reloads and keeps the running config
/// if that fails; the router then sees no new hash and restores the previous files.
#[derive(Debug, Clone, Default)]
pub struct DeferredValidator;

impl ValidateConfig for DeferredValidator {
    fn validate<'a>(
        &'a self,
        _layout: &'a Layout,
        _table: &'a RouteTable,
        _staging: &'a Path,
    ) -> BoxFuture<'a, anyhow::Result<ValidationReport>> {
        Box::pin(async { Ok(ValidationReport::default()) })
    }

    fn describe(&self) -> String {
        "nginx -t by the proxy's file watcher before it reloads (no nginx in the router)".into()
    }
}
