//! Where the tests find the repository and the product binary. The router is another package of
//! the workspace, so cargo gives this crate no `CARGO_BIN_EXE_clearml-router`: the first caller
//! builds it (same profile, same target dir) and everyone gets its path.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository's root (the workspace).
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The `clearml-router` binary of this workspace, built on first use.
pub fn router_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Tests run from <target>/<profile>/deps/<test>; the binary lands in <target>/<profile>.
        let exe = std::env::current_exe().expect("the test knows its own path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("<target>/<profile>/deps/<test>");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut build = std::process::Command::new(env!("CARGO"));
        build.current_dir(repo_root()).args([
            "build",
            "--quiet",
            "-p",
            "clearml-router",
            "--bin",
            "clearml-router",
        ]);
        if release {
            build.arg("--release");
        }
        build.env("CARGO_TARGET_DIR", profile_dir.parent().expect("<target>"));
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building clearml-router failed: {status}");
        profile_dir.join("clearml-router")
    })
}
