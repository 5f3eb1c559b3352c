//! The deployment on this machine's real Docker engine, with the two images built by the shipped
//! Dockerfiles (scripts/build-images.sh: a debootstrap base, Debian's nginx, the router binary of
//! this build), against the ClearML emulator in this process.
//!
//! The vendor's compose files (deploy/vendor-2025, deploy/vendor-2026: the vendor's files with only
//! the `image:` lines changed) run as shipped, with an operator's runtime.env: a task asking through
//! the real SDK gets its endpoint written back, served with a login and 401 without, also after the
//! router and the proxy restart.
//!
//! The project's own `docker-compose.yml`: A task's endpoint becomes reachable through the proxy container; a structural change
//! is validated with `nginx -t` inside the proxy container and applied with a SIGHUP over the
//! Docker API; a killed proxy whose files were lost gets the config re-applied; a render that
//! fails `nginx -t` is refused while the old config keeps serving; the file-watch mode reloads
//! without the router signalling. Docker is required: without it these tests fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use clearml_emulator::{self as emulator, EmulatorConfig, NewTask};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(40);
fn repo() -> &'static Path {
    gateway_testkit::paths::repo_root()
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    out
}

fn run_ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails (never skips) with a clear message when Docker or docker-compose is missing.
fn require_docker() {
    let docker = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
    match docker {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "tests/docker.rs needs a running Docker engine: `docker info` failed: {}\n\
             fix: start the Docker daemon (CI machines have it) and run as a user who may use /var/run/docker.sock",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("tests/docker.rs needs Docker: cannot run `docker` ({e}); fix: install Docker and start it"),
    }
    let compose = Command::new("docker-compose").arg("version").output();
    assert!(
        compose.as_ref().is_ok_and(|o| o.status.success()),
        "tests/docker.rs needs docker-compose (v1) on PATH: {compose:?}; fix: scripts/setup.sh installs it"
    );
}

/// Writes to the real stderr, so that the line shows even when the test harness captures output.
fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A compose project of the gateway with test images; `down -v` and image removal on drop, also
/// when a test fails.
struct Stack {
    project: String,
    /// Compose files, in order; run from `workdir` (relative bind mounts land there).
    files: Vec<PathBuf>,
    workdir: PathBuf,
    env_file: Option<PathBuf>,
    _dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    images: Vec<String>,
    router: &'static str,
    proxy: &'static str,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker-compose");
        if let Some(env_file) = &self.env_file {
            cmd.arg("--env-file").arg(env_file);
        }
        cmd.arg("-p").arg(&self.project);
        for file in &self.files {
            cmd.arg("-f").arg(file);
        }
        cmd.current_dir(&self.workdir)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn up(&self) {
        run_ok(&mut self.compose(&["up", "-d", "--remove-orphans"]));
    }

    fn container(&self, service: &str) -> String {
        let id = run_ok(&mut self.compose(&["ps", "-q", service])).trim().to_owned();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn logs(&self, service: &str) -> String {
        let out = run(&mut self.compose(&["logs", "--no-color", service]));
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        strip_ansi(&text)
    }

    fn router_log(&self) -> String {
        self.logs(self.router)
    }

    fn proxy_log(&self) -> String {
        self.logs(self.proxy)
    }

    /// SIGHUPs the running proxy container's nginx logged (nginx's own count of reloads).
    fn proxy_reloads(&self) -> usize {
        self.proxy_log().matches("signal 1 (SIGHUP) received").count()
    }

    fn exec(&self, service: &str, args: &[&str]) -> String {
        run_ok(Command::new("docker").arg("exec").arg(self.container(service)).args(args))
    }

    fn proxy_exec(&self, args: &[&str]) -> String {
        self.exec(self.proxy, args)
    }

    /// The uid of a service's main process.
    fn uid(&self, service: &str) -> String {
        let status = self.exec(service, &["cat", "/proc/1/status"]);
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- router log ---\n{}\n--- proxy log ---\n{}",
            tail(&self.router_log(), 60),
            tail(&self.proxy_log(), 40)
        )
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "2"]).output();
        // --no-prune: the untagged layers below stay as the next build's cache (the apt layers).
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "--no-prune", image]).output();
        }
    }
}

/// The log without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn proxy_status(control_port: u16) -> Option<Value> {
    let url = format!("http://127.0.0.1:{control_port}/__clearml_router/status");
    let response = common::http_client().get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
    response.json().await.ok()
}

async fn config_hash(control_port: u16) -> Option<String> {
    proxy_status(control_port).await?.get("config_hash")?.as_str().map(str::to_owned)
}

async fn get_status(url: &str) -> u16 {
    common::http_client().get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Polls `check` every 200 ms until it holds; panics with `what` and the stack's logs after `timeout`.
async fn wait_until<F, Fut>(stack: &Stack, what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            panic!("{what}: not within {timeout:?}\n{}", stack.diagnostics());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compose_deployment_reloads_over_docker_recovers_refuses_and_watches_files() {
    let started = Instant::now();
    require_docker();

    // The compose files are valid as shipped (docker-compose v1 here; v2 reads the same files).
    for dir in [repo().to_owned(), repo().join("deploy/vendor-2025"), repo().join("deploy/vendor-2026")] {
        run_ok(Command::new("docker-compose").current_dir(dir).args([
            "--env-file",
            "runtime.env",
            "config",
            "-q",
        ]));
    }

    let (router_image, proxy_image) = build_images();
    announce(&format!("docker test: images built after {:.1}s", started.elapsed().as_secs_f64()));
    let dir = tempfile::Builder::new().prefix("gw-docker-test").tempdir().unwrap();
    let override_file = dir.path().join("test-override.yml");
    // Test-only router settings; the production compose file stays as shipped.
    std::fs::write(
        &override_file,
        r#"version: "3.6"
services:
  task_traffic_router:
    environment:
      ROUTER_ALLOW_LOOPBACK_TARGETS: "true"
      ROUTER_POLL_INTERVAL_SECONDS: "0.3"
      ROUTER_CLEARML_TIMEOUT_SECONDS: "2"
      ROUTER_NGINX_MODULES_INCLUDE: ${TEST_MODULES_INCLUDE:-/etc/nginx/modules-enabled/*.conf}
"#,
    )
    .unwrap();

    let emulator = emulator::start(EmulatorConfig::default(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let app = common::sample_app("docker-app").await;
    let http_port = common::free_port();
    let control_port = common::free_port();
    let config = EmulatorConfig::default();
    let socket_gid = std::fs::metadata("/var/run/docker.sock")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m).to_string())
        .expect("/var/run/docker.sock");
    let env: Vec<(String, String)> = [
        ("PROXY_IMAGE", proxy_image.clone()),
        ("ROUTER_IMAGE", router_image.clone()),
        ("DOCKER_GID", socket_gid),
        ("ROUTER_NAME", "dock-a".into()),
        ("ROUTER__WEBSERVER__SERVER_PORT", http_port.to_string()),
        ("ROUTER_PROXY_CONTROL_PORT", control_port.to_string()),
        ("ROUTER_URL", format!("http://127.0.0.1:{http_port}")),
        ("CLEARML_API_HOST", emulator.url()),
        ("CLEARML_API_ACCESS_KEY", config.access_key.clone()),
        ("CLEARML_API_SECRET_KEY", config.secret_key.clone()),
        ("AUTH_ENABLED", "false".into()),
        ("TCP_PORT_START", "1".into()),
        ("TCP_PORT_END", "1".into()),
        ("LOGGER_LEVEL", "info".into()),
        ("ROUTER_STATUS_ADDRESS", format!("127.0.0.1:{}", common::free_port())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut stack = Stack {
        project: format!("gwtest{}", unique_suffix()),
        files: vec![repo().join("docker-compose.yml"), override_file],
        workdir: repo().to_owned(),
        env_file: None,
        _dir: dir,
        env,
        images: vec![router_image.clone(), proxy_image.clone()],
        router: "task_traffic_router",
        proxy: "task_traffic_webserver",
    };

    // 0. A Docker reloader without the socket, or without permission on it, stops at start with
    //    an error naming the fix.
    let startup_error = |extra: &[&str]| {
        let mut cmd = Command::new("docker");
        cmd.args(["run", "--rm", "--network", "none"]).args(extra).args([
            "-e",
            "ROUTER_RELOADER=docker",
            "-e",
            "ROUTER_URL=http://127.0.0.1:8080",
            "-e",
            "CLEARML_API_HOST=http://127.0.0.1:8008",
            "-e",
            "CLEARML_API_ACCESS_KEY=k",
            "-e",
            "CLEARML_API_SECRET_KEY=s",
            &router_image,
        ]);
        let out = run(&mut cmd);
        assert!(!out.status.success(), "the router must not start: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = startup_error(&[]);
    assert!(
        err.contains("does not exist") && err.contains("/var/run/docker.sock:/var/run/docker.sock"),
        "{err}"
    );
    // Started as root (the image's default) the router adds the socket's group itself; started
    // as another user it lacks the group.
    let err = startup_error(&["-v", "/var/run/docker.sock:/var/run/docker.sock", "--user", "65532:65532"]);
    assert!(err.contains("no permission") && err.contains("group_add"), "{err}");

    // 1. Up: a task asking for an endpoint becomes reachable through the proxy container.
    stack.up();
    let task = emulator.create_task(NewTask {
        name: "docker".into(),
        status: "in_progress".into(),
        runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": app.ip().to_string(), "_PORT": app.port()}),
        system_tags: vec!["external_service".into()],
        ..NewTask::default()
    });
    let runtime = |key: &str| {
        emulator.task(&task).and_then(|t| t["runtime"].get(key).and_then(Value::as_str).map(str::to_owned))
    };
    wait_until(&stack, "the router publishes the endpoint", T, || {
        let published = runtime("endpoint").is_some();
        async move { published }
    })
    .await;
    let url = runtime("endpoint").unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{http_port}/service/{task}/"));
    wait_until(&stack, "the endpoint answers 200 through the proxy container", T, || {
        let url = url.clone();
        async move { get_status(&url).await == 200 }
    })
    .await;
    let body = common::http_client().get(&url).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("docker-app"), "{body}");
    let log = stack.router_log();
    assert!(log.contains("reloader chosen") && log.contains("reloader=docker"), "{}", stack.diagnostics());
    let first_hash = config_hash(control_port).await.expect("proxy status");
    let reloads = stack.proxy_reloads();
    assert!(reloads >= 1, "the first config arrived through a Docker SIGHUP\n{}", stack.diagnostics());
    announce(&format!("docker test: endpoint served after {:.1}s", started.elapsed().as_secs_f64()));

    // 2. A structural change (new router name): nginx -t in the container, one SIGHUP, new hash.
    stack.set("ROUTER_NAME", "dock-b");
    stack.up();
    wait_until(&stack, "the proxy serves the renamed router's config", T, || async {
        config_hash(control_port).await.is_some_and(|h| h != first_hash)
    })
    .await;
    let second_hash = config_hash(control_port).await.unwrap();
    assert_eq!(
        stack.proxy_reloads(),
        reloads + 1,
        "one reload for one structural change\n{}",
        stack.diagnostics()
    );
    let conf = stack.proxy_exec(&["cat", "/etc/nginx/conf.d/clearml-router.conf"]);
    assert!(conf.contains("router \"dock-b\""), "{conf}");
    let listing = stack.proxy_exec(&["ls", "-a", "/etc/nginx/conf.d"]);
    assert!(!listing.contains(".clearml-router-staging"), "staging copy removed after validation: {listing}");
    assert_eq!(get_status(&url).await, 200);
    let reloads = stack.proxy_reloads();

    // 3. A render that fails `nginx -t` in the proxy container (its Lua module is not loaded) is
    //    refused: no reload, the old config keeps serving.
    stack.set("TEST_MODULES_INCLUDE", "/nonexistent/*.conf");
    stack.set("ROUTER_NAME", "dock-c");
    stack.up();
    wait_until(&stack, "the router refuses the broken render", T, || {
        let log = stack.router_log();
        async move { log.contains("new config is invalid") && log.contains("nginx -t failed") }
    })
    .await;
    assert_eq!(config_hash(control_port).await.as_deref(), Some(second_hash.as_str()));
    assert_eq!(stack.proxy_reloads(), reloads, "no reload for a refused config");
    let conf = stack.proxy_exec(&["cat", "/etc/nginx/conf.d/clearml-router.conf"]);
    assert!(conf.contains("router \"dock-b\""), "live files untouched: {conf}");
    assert_eq!(get_status(&url).await, 200, "the old config keeps serving");
    stack.set("TEST_MODULES_INCLUDE", "/etc/nginx/modules-enabled/*.conf");
    stack.set("ROUTER_NAME", "dock-b");
    stack.up();
    announce(&format!(
        "docker test: reload and refusal checked after {:.1}s",
        started.elapsed().as_secs_f64()
    ));

    // 4. The proxy is killed, its conf.d volume loses the router's files, and it is started again:
    //    it comes up without the gateway config; the router notices and re-applies it.
    let proxy = stack.container("task_traffic_webserver");
    run_ok(Command::new("docker").args(["kill", &proxy]));
    run_ok(Command::new("docker").args(["run", "--rm", "--network", "none", "--entrypoint", "rm"]).args([
        "-v",
        &format!("{}_nginx_conf:/conf", stack.project),
        &proxy_image,
        "-f",
        "/conf/clearml-router.conf",
        "/conf/clearml-router.stream",
    ]));
    // The restart policy (unless-stopped) may have started it again already; either way it must
    // end up serving the current config.
    let _ = run(Command::new("docker").args(["start", &proxy]));
    wait_until(&stack, "the restarted proxy serves the config again", T, || async {
        config_hash(control_port).await.as_deref() == Some(second_hash.as_str())
    })
    .await;
    wait_until(&stack, "the endpoint answers again", T, || {
        let url = url.clone();
        async move { get_status(&url).await == 200 }
    })
    .await;
    assert!(stack.router_log().contains("re-applying the current config"), "{}", stack.diagnostics());
    announce(&format!("docker test: proxy restart recovered after {:.1}s", started.elapsed().as_secs_f64()));

    // 5. File-watch mode: both containers recreated; the router only writes files and the proxy
    //    reloads itself, and the router still confirms the new hash.
    stack.set("ROUTER__WEBSERVER__AUTO_RELOAD_CONFIG", "true");
    stack.up();
    wait_until(&stack, "the router runs in file-watch mode", T, || {
        let log = stack.router_log();
        async move { log.contains("reloader=file") }
    })
    .await;
    wait_until(&stack, "the recreated proxy serves the config", T, || async {
        config_hash(control_port).await.as_deref() == Some(second_hash.as_str())
    })
    .await;
    stack.set("ROUTER_NAME", "dock-d");
    stack.up();
    wait_until(&stack, "the proxy reloads itself for the renamed router", T, || async {
        config_hash(control_port).await.is_some_and(|h| h != second_hash)
    })
    .await;
    assert!(stack.proxy_log().contains("proxy-watch: config changed; reloading"), "{}", stack.diagnostics());
    wait_until(&stack, "the router confirms the file-watch reload", T, || {
        let log = stack.router_log();
        async move { log.contains("ConfigApplied") }
    })
    .await;
    assert_eq!(get_status(&url).await, 200);

    drop(stack);
    emulator.shutdown().await;
    announce(&format!("docker test: done in {:.1}s", started.elapsed().as_secs_f64()));
}

/// The Dockerfiles' public defaults (the router compiled in rust:1-bookworm, both on
/// debian:bookworm-slim) need a registry, which CI machines here do not have: the test is ignored,
/// visibly, and runs with `cargo test -p gateway-testkit --test docker -- --ignored` where the bases
/// can be pulled. The other tests build the same Dockerfiles on a local debootstrap base.
#[test]
#[ignore = "needs a registry for rust:1-bookworm and debian:bookworm-slim; run with --ignored where they can be pulled"]
fn dockerfiles_build_from_their_public_bases() {
    require_docker();
    let unique = unique_suffix();
    for (file, name) in [("Dockerfile.router", "router"), ("Dockerfile.proxy", "proxy")] {
        let tag = format!("clearml-gateway-build-{name}:{unique}");
        let out = run(Command::new("docker")
            .current_dir(repo())
            .env("DOCKER_BUILDKIT", "1")
            .args(["build", "-f", file, "-t", &tag, "."]));
        let _ = Command::new("docker").args(["rmi", "-f", &tag]).output();
        assert!(
            out.status.success(),
            "docker build -f {file} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn unique_suffix() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{}{n:08x}", std::process::id())
}

/// Both images under names of this run only (`clearml-gateway-router:test-…`, so that the vendor
/// files' `clearml-gateway-*:${*_TAG}` lines pick them), built by scripts/build-images.sh one test
/// at a time: the first build fills the layer cache that the others reuse.
fn build_images() -> (String, String) {
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let tag = format!("test-{}", unique_suffix());
    let images = (format!("clearml-gateway-router:{tag}"), format!("clearml-gateway-proxy:{tag}"));
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    run_ok(
        Command::new(repo().join("scripts/build-images.sh"))
            .args([&images.0, &images.1])
            .arg("--router-bin")
            .arg(gateway_testkit::paths::router_bin()),
    );
    images
}

/// The vendor's two deployment generations and the project's own compose file.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Vendor {
    Y2025,
    Y2026,
    Own,
}

impl Vendor {
    fn dir(self) -> PathBuf {
        match self {
            Vendor::Y2025 => repo().join("deploy/vendor-2025"),
            Vendor::Y2026 => repo().join("deploy/vendor-2026"),
            Vendor::Own => repo().to_owned(),
        }
    }
    fn services(self) -> (&'static str, &'static str) {
        match self {
            Vendor::Y2025 | Vendor::Own => ("task_traffic_router", "task_traffic_webserver"),
            Vendor::Y2026 => ("ai-gateway-router", "ai-gateway-proxy"),
        }
    }
}

/// The shipped runtime.env with an operator's values put in (and the test's extra settings added).
fn runtime_env(shipped: &str, values: &[(&str, String)]) -> String {
    let mut out: Vec<String> = shipped
        .lines()
        .map(|line| {
            let key = line.split('=').next().unwrap_or_default();
            match values.iter().find(|(k, _)| *k == key) {
                Some((k, v)) if !line.starts_with('#') => format!("{k}={v}"),
                _ => line.to_owned(),
            }
        })
        .collect();
    for (k, v) in values {
        if !out.iter().any(|l| l.starts_with(&format!("{k}="))) {
            out.push(format!("{k}={v}"));
        }
    }
    out.join("\n") + "\n"
}

/// The host's address on Docker's default bridge: where a container off the host network reaches
/// a server of this process (bound to all interfaces).
fn docker_host_ip() -> String {
    let out = run_ok(Command::new("docker").args([
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}}{{end}}",
    ]));
    let mut fields = out.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(gateway), Some(_)) => gateway.to_owned(),
        // Engines that list only the subnet: the bridge takes its first address.
        (Some(subnet), None) => {
            let net = subnet.split('/').next().unwrap_or_default();
            format!("{}.1", net.rsplit_once('.').map(|(a, _)| a).unwrap_or(net))
        }
        _ => panic!("docker network inspect bridge shows no address: {out:?}"),
    }
}

/// A compose file as shipped, in a fresh folder with an operator's runtime.env: the SDK's
/// endpoint request is answered and served (200 with a login, 401 without), also after a router
/// restart and a proxy restart. The own file passes only the variables it names: the test-only
/// ones come from an override file there.
async fn vendor_layout_serves_an_sdk_endpoint(vendor: Vendor) {
    let started = Instant::now();
    require_docker();
    let (router_image, proxy_image) = build_images();
    let tag = router_image.split_once(':').unwrap().1.to_owned();
    announce(&format!("{vendor:?}: images built after {:.1}s", started.elapsed().as_secs_f64()));

    let dir = tempfile::Builder::new().prefix("gw-vendor").tempdir().unwrap();
    let compose_file = dir.path().join("docker-compose.yml");
    std::fs::copy(vendor.dir().join("docker-compose.yml"), &compose_file).unwrap();
    let mut files = vec![compose_file];
    if vendor == Vendor::Own {
        let override_file = dir.path().join("test-override.yml");
        std::fs::write(
            &override_file,
            "version: \"3.6\"\nservices:\n  task_traffic_router:\n    environment:\n      \
             ROUTER_ALLOW_LOOPBACK_TARGETS: \"true\"\n      ROUTER_POLL_INTERVAL_SECONDS: \"0.3\"\n",
        )
        .unwrap();
        files.push(override_file);
    }
    // The emulator listens on all interfaces: the router container is not on the host network.
    let emulator = emulator::start(EmulatorConfig::default(), "0.0.0.0:0".parse().unwrap()).await.unwrap();
    let api_port = emulator.url().rsplit(':').next().unwrap().to_owned();
    let config = EmulatorConfig::default();
    let app = common::sample_app("vendor-app").await;
    let http_port = common::free_port();
    let control_port = common::free_port();
    let router_url = format!("http://127.0.0.1:{http_port}");
    let shipped = std::fs::read_to_string(vendor.dir().join("runtime.env")).unwrap();
    let env_file = dir.path().join("runtime.env");
    std::fs::write(
        &env_file,
        runtime_env(
            &shipped,
            &[
                ("PROXY_TAG", tag.clone()),
                ("ROUTER_TAG", tag.clone()),
                ("PROXY_IMAGE", proxy_image.clone()),
                ("ROUTER_IMAGE", router_image.clone()),
                ("ROUTER_NAME", format!("vendor-{vendor:?}")),
                ("ROUTER__WEBSERVER__SERVER_PORT", http_port.to_string()),
                ("ROUTER_URL", router_url.clone()),
                ("CLEARML_API_HOST", format!("http://{}:{api_port}", docker_host_ip())),
                ("CLEARML_API_ACCESS_KEY", config.access_key.clone()),
                ("CLEARML_API_SECRET_KEY", config.secret_key.clone()),
                // The SDK and the sample app run on this host's loopback.
                ("ROUTER_ALLOW_LOOPBACK_TARGETS", "true".into()),
                ("ROUTER_PROXY_CONTROL_PORT", control_port.to_string()),
                ("ROUTER_POLL_INTERVAL_SECONDS", "0.3".into()),
                ("ROUTER_CLEARML_TIMEOUT_SECONDS", "2".into()),
                // The own file puts the router on the host network: a port of its own.
                ("ROUTER_STATUS_ADDRESS", format!("127.0.0.1:{}", common::free_port())),
            ],
        ),
    )
    .unwrap();
    let (router, proxy) = vendor.services();
    let stack = Stack {
        project: format!("gwvendor{}", unique_suffix()),
        files,
        workdir: dir.path().to_owned(),
        env_file: Some(env_file),
        _dir: dir,
        env: Vec::new(),
        images: vec![router_image, proxy_image],
        router,
        proxy,
    };
    stack.up();

    // The real SDK asks for the endpoint and waits for the router's answer.
    let task = emulator.create_task(NewTask {
        name: "vendor".into(),
        status: "in_progress".into(),
        ..NewTask::default()
    });
    let port = app.port().to_string();
    let out = common::run_sdk_script(
        &emulator,
        "request_endpoint.py",
        &[&task, "--port", &port, "--wait", "--interval", "0.5", "--timeout", "60"],
    )
    .await;
    let endpoint = format!("{router_url}/service/{task}/");
    assert!(out.contains(&format!("\"endpoint\": \"{endpoint}\"")), "{out}\n{}", stack.diagnostics());
    let written = emulator.task(&task).and_then(|t| t["runtime"]["endpoint"].as_str().map(str::to_owned));
    assert_eq!(written.as_deref(), Some(endpoint.as_str()), "written back to the task");
    announce(&format!("{vendor:?}: endpoint written after {:.1}s", started.elapsed().as_secs_f64()));

    let login = emulator.mint_token("user-1", Duration::from_secs(3600));
    let served = |when: &'static str| {
        let (endpoint, login) = (endpoint.clone(), login.clone());
        let stack = &stack;
        async move {
            wait_until(stack, &format!("{when}: 200 with a login"), T, || {
                let (endpoint, login) = (endpoint.clone(), login.clone());
                async move {
                    let with_login = common::http_client()
                        .get(&endpoint)
                        .header("cookie", format!("clearml_token_basic={login}"))
                        .send()
                        .await;
                    with_login.is_ok_and(|r| r.status() == 200)
                }
            })
            .await;
            let without = common::http_client()
                .get(&endpoint)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            assert_eq!(without.status(), 401, "{when}: 401 without a login\n{}", stack.diagnostics());
        }
    };
    served("first start").await;
    let log = stack.router_log();
    assert!(log.contains("dropped root"), "{}", stack.diagnostics());
    // Off the host network (the vendor files) the router confirms inside the proxy container.
    let asks_inside = log.contains("asking inside the proxy container");
    assert_eq!(asks_inside, vendor != Vendor::Own, "{}", stack.diagnostics());
    assert!(
        !log.contains("Permission denied") && !log.contains("Read-only file system"),
        "{}",
        stack.diagnostics()
    );
    assert_eq!(stack.uid(router), "65532", "the router dropped root");
    assert_eq!(stack.uid(proxy), "65532", "the proxy runs unprivileged");
    match vendor {
        Vendor::Y2025 | Vendor::Own => assert!(log.contains("reloader=docker"), "{}", stack.diagnostics()),
        Vendor::Y2026 => {
            assert!(log.contains("reloader=file"), "{}", stack.diagnostics());
            assert!(
                stack.proxy_log().contains("proxy-watch: config changed; reloading"),
                "{}",
                stack.diagnostics()
            );
        }
    }
    assert!(config_hash(control_port).await.is_some(), "the proxy serves the router's config");

    // A router restart: it starts again (as root, dropping root again) and keeps serving.
    let router_id = stack.container(router);
    run_ok(Command::new("docker").args(["restart", "-t", "2", &router_id]));
    wait_until(&stack, "the restarted router runs its loop again", T, || {
        let log = stack.router_log();
        async move { log.matches("reloader chosen").count() >= 2 }
    })
    .await;
    served("after a router restart").await;
    // A proxy restart: the bind-mounted files are still there; the router re-applies if needed.
    let proxy_id = stack.container(proxy);
    run_ok(Command::new("docker").args(["restart", "-t", "2", &proxy_id]));
    served("after a proxy restart").await;
    let running = run_ok(Command::new("docker").args([
        "inspect",
        "-f",
        "{{.State.Running}} {{.RestartCount}}",
        &router_id,
    ]));
    assert_eq!(running.trim(), "true 0", "the router never crashed\n{}", stack.diagnostics());

    drop(stack);
    emulator.shutdown().await;
    announce(&format!("{vendor:?}: done in {:.1}s", started.elapsed().as_secs_f64()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vendor_2025_compose_file_with_only_the_images_changed_serves_endpoints() {
    vendor_layout_serves_an_sdk_endpoint(Vendor::Y2025).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn own_compose_file_serves_sdk_endpoints_with_login_across_restarts() {
    vendor_layout_serves_an_sdk_endpoint(Vendor::Own).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn vendor_2026_compose_file_with_only_the_images_changed_serves_endpoints() {
    vendor_layout_serves_an_sdk_endpoint(Vendor::Y2026).await;
}
