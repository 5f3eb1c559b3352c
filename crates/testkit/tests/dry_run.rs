//! `clearml-router config-dry-run` as an operator runs it: the real binary, a snapshot file,
//! real `nginx -t` and `luajit -bl`, exit status 0 valid / 1 invalid / 2 bad input.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const NOTEBOOK: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";
const MODEL: &str = "b1b2c3d4e5f60718293a4b5c6d7e8f90";
const STOPPED: &str = "c1b2c3d4e5f60718293a4b5c6d7e8f90";
const REFUSED: &str = "d1b2c3d4e5f60718293a4b5c6d7e8f90";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/snapshot.json")
}

fn fixture_json() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture()).unwrap()).unwrap()
}

/// A scratch directory; its `lua` path is the ROUTER_LUA_DIR every run in it renders for.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Self {
        Self { dir: tempfile::Builder::new().prefix("dry-run").tempdir().unwrap() }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn write_snapshot(&self, name: &str, doc: &Value) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        path
    }

    /// Runs the binary with a clean environment (no CLEARML_*): PATH, ROUTER_LUA_DIR, and the
    /// nginx/luajit settings of the test environment, then `env` (which may override them).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(gateway_testkit::paths::router_bin());
        cmd.arg("config-dry-run")
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ROUTER_LUA_DIR", self.path("lua"))
            // Authentication renders a login check against CLEARML_API_HOST; the tests that are
            // not about it keep the render independent of ClearML (see also
            // `default_environment_passes_validation`).
            .env("AUTH_ENABLED", "false");
        for var in ["ROUTER_NGINX_MODULES_INCLUDE", "ROUTER_NGINX_BIN", "ROUTER_LUAJIT_BIN"] {
            if let Ok(v) = std::env::var(var) {
                cmd.env(var, v);
            }
        }
        cmd.envs(env.iter().copied());
        let output = cmd.stdin(Stdio::null()).output().expect("the router binary runs");
        Run::from(output)
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "exit status\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
    /// The summary line of one validation check (`  nginx -t     passed`).
    fn check(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} check in:\n{}", self.stdout))
    }
}

/// Every file under `dir`, by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn snapshot_fixture_renders_validates_and_summarises() {
    let s = Scratch::new();
    let fixture = fixture();
    let run = s.run(&["--snapshot", fixture.to_str().unwrap(), "--out", "out"], &[]);
    run.expect(0);

    for file in ["conf.d/clearml-router.conf", "lua/clearml_router.lua", "lua/routes.json", "summary.txt"] {
        assert!(
            s.path("out").join(file).is_file(),
            "{file} missing; written: {:?}",
            tree(&s.path("out")).keys()
        );
    }
    assert!(!s.path("out/lua/clearml_auth.key").exists(), "a secret file reached the dry-run output");

    // The summary: both routes with target, owner and URL; the refusal with its reason; nothing
    // about the stopped task.
    let out = &run.stdout;
    assert!(out.contains("Routes (2):"), "{out}");
    let route_line = |id: &str| out.lines().find(|l| l.trim_start().starts_with(id)).unwrap_or("");
    assert!(route_line(NOTEBOOK).contains("-> 10.0.0.5:8888"), "{out}");
    assert!(route_line(NOTEBOOK).contains("task \"jupyter notebook\" user \"alice\""), "{out}");
    assert!(route_line(&format!("{MODEL}__api")).contains("-> 10.0.0.6:9000"), "{out}");
    assert!(out.contains(&format!("http://localhost:8080/service/{NOTEBOOK}/")), "{out}");
    assert!(out.contains(&format!("http://localhost:8080/service/{MODEL}__api/")), "{out}");
    assert!(out.contains("Refused (1):"), "{out}");
    let refusal =
        out.lines().find(|l| l.contains(&format!("task {REFUSED} endpoint (default): "))).unwrap_or("");
    assert!(refusal.contains("_ADDRESS: address 169.254.169.254"), "{out}");
    assert!(refusal.contains("refused to prevent SSRF"), "{out}");
    assert!(!out.contains(STOPPED), "a stopped task is neither routed nor refused:\n{out}");
    assert!(run.check("nginx -t").ends_with("passed"), "{out}");
    assert!(run.check("luajit -bl clearml_router.lua").ends_with("passed"), "{out}");
    assert!(out.contains("Files written to out"), "{out}");
    assert!(!out.contains("Diff against previous output"), "no --previous, no diff:\n{out}");

    // summary.txt is the summary printed.
    let summary = std::fs::read_to_string(s.path("out/summary.txt")).unwrap();
    assert!(out.starts_with(&summary), "summary.txt:\n{summary}\nstdout:\n{out}");

    // routes.json holds the two routes, no more; the conf refers to ROUTER_LUA_DIR and holds no
    // task address (addresses are data, they change without a reload).
    let routes: Value =
        serde_json::from_slice(&std::fs::read(s.path("out/lua/routes.json")).unwrap()).unwrap();
    let ids: Vec<&String> = routes["routes"].as_object().unwrap().keys().collect();
    assert_eq!(ids, [NOTEBOOK.to_owned(), format!("{MODEL}__api")].iter().collect::<Vec<_>>());
    assert_eq!(routes["routes"][NOTEBOOK]["host"], "10.0.0.5");
    assert_eq!(routes["routes"][NOTEBOOK]["port"], 8888);
    let conf = std::fs::read_to_string(s.path("out/conf.d/clearml-router.conf")).unwrap();
    assert!(conf.contains(&format!("{}/routes.json", s.path("lua").display())), "{conf}");
    assert!(!conf.contains("10.0.0.5") && !conf.contains("169.254"), "{conf}");
}

#[test]
fn a_second_run_with_previous_shows_no_changes_and_is_byte_identical() {
    let s = Scratch::new();
    let fixture = fixture();
    let fixture = fixture.to_str().unwrap();
    s.run(&["--snapshot", fixture, "--out", "first"], &[]).expect(0);
    let second = s.run(&["--snapshot", fixture, "--out", "second", "--previous", "first"], &[]);
    second.expect(0);
    assert!(second.stdout.contains("Diff against previous output: no changes"), "{}", second.stdout);

    let (first, second) = (tree(&s.path("first")), tree(&s.path("second")));
    assert_eq!(first.keys().collect::<Vec<_>>(), second.keys().collect::<Vec<_>>());
    for (name, bytes) in &first {
        assert!(&second[name] == bytes, "{name} differs between two renders of the same snapshot");
    }
}

#[test]
fn a_changed_port_changes_only_the_routing_table() {
    let s = Scratch::new();
    let fixture = fixture();
    s.run(&["--snapshot", fixture.to_str().unwrap(), "--out", "before"], &[]).expect(0);
    let mut doc = fixture_json();
    let task = doc["tasks"].as_array_mut().unwrap().iter_mut().find(|t| t["id"] == NOTEBOOK).unwrap();
    task["runtime"]["_PORT"] = 8889.into();
    let changed = s.write_snapshot("changed.json", &doc);
    let run =
        s.run(&["--snapshot", changed.to_str().unwrap(), "--out", "after", "--previous", "before"], &[]);
    run.expect(0);

    let out = &run.stdout;
    let diff = out.split("Diff against previous output:").nth(1).unwrap_or_else(|| panic!("no diff:\n{out}"));
    assert!(diff.contains("--- previous/lua/routes.json"), "{diff}");
    assert!(diff.contains("+++ current/lua/routes.json"), "{diff}");
    let changed_files: Vec<&str> = diff.lines().filter_map(|l| l.strip_prefix("+++ current/")).collect();
    assert_eq!(changed_files, ["lua/routes.json"], "only the routing table may change:\n{diff}");
    assert!(diff.lines().any(|l| l.starts_with('-') && l.contains("8888")), "{diff}");
    assert!(diff.lines().any(|l| l.starts_with('+') && l.contains("8889")), "{diff}");

    // On disk: structural files identical (no nginx reload), routes.json changed.
    let (before, after) = (tree(&s.path("before")), tree(&s.path("after")));
    for (name, bytes) in &before {
        match name.as_str() {
            "lua/routes.json" | "summary.txt" => assert!(&after[name] != bytes, "{name} should change"),
            _ => assert!(&after[name] == bytes, "{name} changed with a task's port"),
        }
    }
    // Same structural hash, new routes version.
    let line = |tree: &BTreeMap<String, Vec<u8>>, key: &str| {
        let summary = String::from_utf8_lossy(&tree["summary.txt"]).into_owned();
        summary.lines().find(|l| l.starts_with(key)).map(str::to_owned).unwrap()
    };
    assert_eq!(line(&before, "Config hash:"), line(&after, "Config hash:"));
    assert_ne!(line(&before, "Routes version:"), line(&after, "Routes version:"));
}

#[test]
fn strict_fails_on_a_refused_task_and_passes_without_one() {
    let s = Scratch::new();
    let fixture = fixture();
    let run = s.run(&["--snapshot", fixture.to_str().unwrap(), "--out", "out", "--strict"], &[]);
    run.expect(1);
    assert!(run.stderr.contains("refused 1 task endpoint(s) and --strict is set"), "{}", run.stderr);
    assert!(run.check("nginx -t").ends_with("passed"), "the config itself is valid");

    let mut doc = fixture_json();
    doc["tasks"].as_array_mut().unwrap().retain(|t| t["id"] != REFUSED);
    let clean = s.write_snapshot("clean.json", &doc);
    let run = s.run(&["--snapshot", clean.to_str().unwrap(), "--out", "clean", "--strict"], &[]);
    run.expect(0);
    assert!(run.stdout.contains("Refused (0):"), "{}", run.stdout);
}

#[test]
fn a_bad_snapshot_exits_2_naming_the_file() {
    let s = Scratch::new();
    let cases = [
        ("truncated.json", "{\"tasks\": [", "is not JSON"),
        ("not-json.json", "tasks: []", "is not JSON"),
        ("wrong-shape.json", "{\"tasks\": 5}", "is not JSON of the form"),
    ];
    for (name, text, expected) in cases {
        let path = s.path(name);
        std::fs::write(&path, text).unwrap();
        let run = s.run(&["--snapshot", path.to_str().unwrap(), "--out", "out"], &[]);
        run.expect(2);
        assert!(run.stderr.contains(path.to_str().unwrap()), "{name}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{name}: {}", run.stderr);
    }
    let missing = s.path("missing.json");
    let run = s.run(&["--snapshot", missing.to_str().unwrap(), "--out", "out"], &[]);
    run.expect(2);
    assert!(run.stderr.contains(&format!("reading snapshot {}", missing.display())), "{}", run.stderr);
}

#[test]
fn an_invalid_environment_exits_2_with_one_line_naming_the_variable_and_the_fix() {
    let s = Scratch::new();
    let fixture = fixture();
    let run = s.run(
        &["--snapshot", fixture.to_str().unwrap(), "--out", "out"],
        &[("ROUTER__WEBSERVER__SERVER_PORT", "abc")],
    );
    run.expect(2);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line per problem:\n{}", run.stderr);
    assert!(lines[0].contains("ROUTER__WEBSERVER__SERVER_PORT"), "{}", lines[0]);
    assert!(lines[0].contains("\"abc\" is not a port number"), "{}", lines[0]);
    assert!(lines[0].contains("fix: set a port such as 8080"), "{}", lines[0]);
    assert!(!s.path("out").exists(), "nothing is rendered from an invalid environment");
}

#[test]
fn a_config_nginx_rejects_exits_1_and_says_nginx_failed() {
    let s = Scratch::new();
    // No module is loaded: the Lua directives of the rendered conf are unknown to nginx.
    std::fs::create_dir(s.path("no-modules")).unwrap();
    let include = format!("{}/*.conf", s.path("no-modules").display());
    let fixture = fixture();
    let run = s.run(
        &["--snapshot", fixture.to_str().unwrap(), "--out", "out"],
        &[("ROUTER_NGINX_MODULES_INCLUDE", &include)],
    );
    run.expect(1);
    let nginx = run.check("nginx -t");
    assert!(nginx.ends_with("FAILED"), "{}", run.stdout);
    assert!(run.stdout.contains("unknown directive"), "nginx's own message is shown:\n{}", run.stdout);
    assert!(run.stderr.contains("invalid: nginx -t failed"), "{}", run.stderr);
    // The Lua itself is still fine, and the files are there to inspect.
    assert!(run.check("luajit -bl clearml_router.lua").ends_with("passed"));
    assert!(s.path("out/conf.d/clearml-router.conf").is_file());
}

#[test]
fn a_snapshot_dry_run_never_contacts_clearml() {
    let s = Scratch::new();
    let fixture = fixture();
    let fixture = fixture.to_str().unwrap();
    // With authentication on (the default), the render refers to the ClearML API host: a closed
    // port and a listener that must see no connection.
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let run = s.run(
        &["--snapshot", fixture, "--out", "closed"],
        &[("AUTH_ENABLED", "true"), ("CLEARML_API_HOST", &closed), ("ROUTER_CLEARML_TIMEOUT_SECONDS", "1")],
    );
    run.expect(0);
    assert!(run.check("nginx -t").ends_with("passed"));

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    for auth in ["true", "false"] {
        let out = format!("listening-{auth}");
        let run = s.run(
            &["--snapshot", fixture, "--out", &out],
            &[
                ("AUTH_ENABLED", auth),
                ("CLEARML_API_HOST", &host),
                ("CLEARML_API_ACCESS_KEY", "key"),
                ("CLEARML_API_SECRET_KEY", "secret"),
            ],
        );
        run.expect(0);
        assert!(run.stdout.contains("Routes (2):"), "{}", run.stdout);
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Ok((_, peer)) => panic!("the dry run connected to ClearML (from {peer})"),
        Err(e) => panic!("accept: {e}"),
    }
}

/// Out of the box (only ROUTER_LUA_DIR set) a snapshot dry run should validate.
#[test]
fn default_environment_passes_validation() {
    let s = Scratch::new();
    let fixture = fixture();
    let run = s.run(&["--snapshot", fixture.to_str().unwrap(), "--out", "out"], &[("AUTH_ENABLED", "")]);
    run.expect(0);
}
