//! Keeps the operator's files (static routes, groups) current: re-read on change, keep the last
//! good value when a new one does not validate, and wake the router loop when a file changes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gateway_core::model::{Invalid, TargetPolicy};
use gateway_core::static_routes::{
    parse_file, parse_groups, serialize_file, validate_doc, Groups, StaticRoute,
};

/// Writes the routes back atomically (temp file + rename in the same directory).
pub fn save_file(path: &Path, routes: &[StaticRoute]) -> anyhow::Result<()> {
    crate::apply::files::write_atomic(path, &serialize_file(path, routes))
}

/// Re-reads a file when its content changed, keeping the last good value when it does not
/// validate. One of these per file the router watches.
#[derive(Debug)]
pub struct Watched<T> {
    pub path: PathBuf,
    last_bytes: Option<Option<Vec<u8>>>,
    pub good: T,
    /// Why the current file content is refused (the last good value serves meanwhile).
    pub error: Option<String>,
}

impl<T: Default> Watched<T> {
    pub fn new(path: PathBuf) -> Self {
        Self { path, last_bytes: None, good: T::default(), error: None }
    }

    /// Reads the file; on a change parses it with `parse`. Returns `Some(message)` when the
    /// outcome changed (accepted or refused), for logging once.
    pub fn refresh(&mut self, parse: impl Fn(&Path, Option<&[u8]>) -> Result<T, Invalid>) -> Option<String> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let msg =
                    format!("{}: cannot read: {e}; kept the last good definitions", self.path.display());
                let changed = self.error.as_ref() != Some(&msg);
                self.error = Some(msg.clone());
                return changed.then_some(msg);
            }
        };
        if self.last_bytes.as_ref() == Some(&bytes) {
            return None;
        }
        self.last_bytes = Some(bytes.clone());
        match parse(&self.path, bytes.as_deref()) {
            Ok(value) => {
                self.good = value;
                self.error = None;
                Some(format!("{}: loaded", self.path.display()))
            }
            Err(e) => {
                let msg = format!("{}: {e}; kept the last good definitions", self.path.display());
                self.error = Some(msg.clone());
                Some(msg)
            }
        }
    }
}

/// Watches the directories of `files` (editors and the admin API replace files by rename) and
/// wakes `wake` when one of the files changes. `None` when there is nothing to watch.
pub fn watch(
    files: &[PathBuf],
    wake: std::sync::Arc<tokio::sync::Notify>,
) -> notify::Result<Option<notify::RecommendedWatcher>> {
    use notify::Watcher;
    if files.is_empty() {
        return Ok(None);
    }
    let names: BTreeSet<std::ffi::OsString> =
        files.iter().filter_map(|f| f.file_name()).map(Into::into).collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if event.paths.iter().any(|p| p.file_name().is_some_and(|n| names.contains(n))) {
                wake.notify_one();
            }
        }
    })?;
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .map(|f| f.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned())
        .collect();
    for dir in dirs {
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    }
    Ok(Some(watcher))
}

/// Parser for the routes file, for [`Watched::refresh`].
pub fn routes_parser(
    policy: &TargetPolicy,
) -> impl Fn(&Path, Option<&[u8]>) -> Result<Vec<StaticRoute>, Invalid> + '_ {
    move |path, bytes| match bytes {
        None => Ok(Vec::new()),
        Some(bytes) => validate_doc(&parse_file(path, bytes)?, policy),
    }
}

/// Parser for the groups file, for [`Watched::refresh`].
pub fn groups_parser(_path: &Path, bytes: Option<&[u8]>) -> Result<Groups, Invalid> {
    match bytes {
        None => Ok(Groups::new()),
        Some(bytes) => parse_groups(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TargetPolicy {
        TargetPolicy {
            allow_loopback: false,
            proxy_ports: vec![8080],
            self_addresses: vec![],
            allowed_networks: vec![],
        }
    }

    #[test]
    fn a_bad_file_keeps_the_last_good_routes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.yaml");
        let p = policy();
        let mut w: Watched<Vec<StaticRoute>> = Watched::new(path.clone());
        assert!(w.refresh(routes_parser(&p)).is_some());
        assert!(w.good.is_empty());
        std::fs::write(&path, "routes:\n  - name: demo\n    path: /demo\n").unwrap();
        w.refresh(routes_parser(&p));
        assert_eq!(w.good.len(), 1);
        assert_eq!(w.refresh(routes_parser(&p)), None, "unchanged content: nothing to say");
        std::fs::write(&path, "routes:\n  - name: demo\n    path: demo\n").unwrap();
        let msg = w.refresh(routes_parser(&p)).unwrap();
        assert!(msg.contains("route demo: path:"), "{msg}");
        assert_eq!(w.good.len(), 1, "the last good routes stay");
        assert!(w.error.is_some());
    }
}
