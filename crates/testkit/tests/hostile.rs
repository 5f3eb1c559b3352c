//! Hostile tasks: ids, names, addresses, ports and endpoint names built to break out of nginx
//! config, Lua, JSON, logs or terminals, SSRF targets and routing loops.
//!
//! At library level `RouteTable::build` must refuse every one with a reason that names the field
//! and the rule, keep routing the good tasks of the same snapshot, and the render of the whole
//! corpus must be byte-identical to the render of the good tasks alone (and pass real `nginx -t`
//! and `luajit -bl`). End to end, the real router must log every refusal, never publish an
//! endpoint for a hostile task, never let one reach nginx, and keep serving the good tasks.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use clearml_emulator::NewTask;
use clearml_router::apply::validate::Validator;
use common::*;
use gateway_core::model::{display_untrusted, TargetPolicy};
use gateway_core::snapshot::Snapshot;
use gateway_core::table::{Refusal, RouteTable};
use gateway_render::{render, AuthLayout, Layout, Rendered};
use gateway_testkit::local_proxy::modules_include;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TAG: &str = "external_service";
/// Marks a line injected through a value with a raw newline.
const INJECTED_LINE: &str = "FAKE-LOG-LINE level=ERROR injected";

/// Strings with every character that means something to nginx, Lua, JSON, a shell, a log reader
/// or a terminal. Each starts with `zq` so that any trace of one in a render is easy to find.
fn nasty_strings() -> Vec<String> {
    let mut out: Vec<String> = [
        ";", "{", "}", "#", "\"", "'", "\\", "$", " ", "\n", "\r", "\t", "\0", "\u{202e}", "🦀", "/", ".",
        "%", "`", "~",
    ]
    .iter()
    .map(|c| format!("zq{c}x"))
    .collect();
    out.extend([
        "zqtâche".to_owned(),
        format!("zq\n{INJECTED_LINE}"),
        "zq\"; proxy_pass http://169.254.169.254; #".to_owned(),
        "zq\"]] os.execute(\"id\") --[[".to_owned(),
        "zq${jndi:ldap://x}$(id)".to_owned(),
        "zq\u{1b}[31mred".to_owned(),
        format!("zq{}", "x".repeat(10_000)),
    ]);
    out
}

/// A name made of all of the above at once (for a task that is otherwise valid).
fn nasty_name() -> String {
    "zq;{}#\"'\\$ \n\0\u{202e}🦀 tâche `id` ${x}".to_owned()
}

/// Where a refusal is expected.
#[derive(Debug, Clone)]
enum At {
    /// The whole task (`endpoint` is `None`).
    Task,
    /// One endpoint, with its label as the refusal shows it.
    Endpoint(String),
}

#[derive(Debug, Clone)]
struct Case {
    what: String,
    /// `Some`: the task's id is this hostile value; `None`: a fresh valid id.
    id: Option<Value>,
    name: String,
    runtime: Value,
    at: At,
    /// Every one of these must be in the refusal's reason.
    reason: Vec<String>,
}

impl Case {
    /// How the refusal names the task: the escaped hostile id, or `valid_id`.
    fn task_label(&self, valid_id: &str) -> String {
        match &self.id {
            Some(Value::String(s)) => display_untrusted(s),
            Some(_) => "(no id)".to_owned(),
            None => valid_id.to_owned(),
        }
    }
    fn endpoint_label(&self) -> &str {
        match &self.at {
            At::Task => "(task)",
            At::Endpoint(label) => label,
        }
    }
    fn matches(&self, valid_id: &str, r: &Refusal) -> bool {
        let at_ok = match &self.at {
            At::Task => r.endpoint.is_none(),
            At::Endpoint(label) => r.endpoint.as_deref() == Some(label.as_str()),
        };
        r.task == self.task_label(valid_id) && at_ok && self.reason.iter().all(|p| r.reason.contains(p))
    }
    /// The refusal as the router logs it and the dry run prints it:
    /// `task <task> endpoint <endpoint>: <reason>`.
    fn matches_line(&self, valid_id: &str, line: &str) -> bool {
        let head = format!("task {} endpoint {}: ", self.task_label(valid_id), self.endpoint_label());
        match line.find(&head) {
            Some(at) => {
                let reason = &line[at + head.len()..];
                self.reason.iter().all(|p| reason.contains(p.as_str()))
            }
            None => false,
        }
    }
}

/// What the corpus is built against.
struct Targets {
    /// An allowed target, for the parts of a task that are not under test.
    addr: String,
    port: u16,
    /// Targets that are the proxy's own listeners.
    loops: Vec<(String, u16)>,
    /// Loopback is refused (library level); the end-to-end harness allows it for its sample apps.
    loopback_refused: bool,
}

fn http_runtime(address: Value, port: Value) -> Value {
    json!({"_SERVICE": "EXTERNAL", "_ADDRESS": address, "_PORT": port})
}

/// The hostile corpus: every task is refused exactly once.
fn corpus(t: &Targets) -> Vec<Case> {
    let good_runtime = http_runtime(json!(t.addr), json!(t.port));
    let mut names = nasty_strings().into_iter().cycle();
    let mut cases = Vec::new();
    let mut add = |what: String, id: Option<Value>, runtime: Value, at: At, reason: &[&str]| {
        cases.push(Case {
            what,
            id,
            name: names.next().expect("cycle"),
            runtime,
            at,
            reason: reason.iter().map(|s| s.to_string()).collect(),
        })
    };

    // Task ids (the id is also the URL segment and the Lua table key).
    for s in nasty_strings().into_iter().chain(["zq_x".into(), "zq__x".into(), "".into()]) {
        let reason: &[&str] = if s.is_empty() { &["task id is empty"] } else { &["task id"] };
        add(
            format!("task id {:?}", display_untrusted(&s)),
            Some(json!(s)),
            good_runtime.clone(),
            At::Task,
            reason,
        );
    }
    add("task id is a number".into(), Some(json!(42)), good_runtime.clone(), At::Task, &["no string id"]);

    // Endpoint names: the `__<name>` suffix of `_SERVICE__<name>`.
    for s in nasty_strings().into_iter().chain(["".into()]) {
        let mut runtime = Map::new();
        runtime.insert(format!("_SERVICE__{s}"), json!("EXTERNAL"));
        runtime.insert(format!("_ADDRESS__{s}"), json!(t.addr));
        runtime.insert(format!("_PORT__{s}"), json!(t.port));
        add(
            format!("endpoint name {:?}", display_untrusted(&s)),
            None,
            Value::Object(runtime),
            At::Endpoint(display_untrusted(&s)),
            &["endpoint name"],
        );
    }

    // Addresses that are not a bare IP address.
    let not_ips = nasty_strings().into_iter().chain(
        [
            "",
            " 10.0.0.5",
            "10.0.0.5 ",
            "10.0.0.5\n",
            "10.0.0.5\0",
            "10.0.0.5;",
            "10.0.0.5}",
            "10.0.0.5#",
            "tâche",
            "10.0.0.5\u{202e}",
            "🦀",
            "example.com",
            "localhost",
            "metadata.google.internal",
            "10.0.0.5:8080",
            "10.0.0.5:80; proxy_pass http://169.254.169.254",
            "[fd00::1]:80",
            "[::1]",
            "10.0.0.5/32",
            "0x7f000001",
            "2130706433",
            "0177.0.0.1",
            "1.2.3",
            "fe80::1%eth0",
            "http://10.0.0.5/",
        ]
        .map(String::from),
    );
    for s in not_ips.chain([format!("1{}", "0".repeat(10_000))]) {
        add(
            format!("address {:?}", display_untrusted(&s)),
            None,
            http_runtime(json!(s), json!(t.port)),
            At::Endpoint("(default)".into()),
            &["_ADDRESS: address"],
        );
    }
    for (what, v) in [("a number", json!(10)), ("null", Value::Null), ("a list", json!(["10.0.0.5"]))] {
        add(
            format!("address is {what}"),
            None,
            http_runtime(v, json!(t.port)),
            At::Endpoint("(default)".into()),
            &["_ADDRESS: must be a string", what],
        );
    }
    add(
        "address missing".into(),
        None,
        json!({"_SERVICE": "EXTERNAL", "_PORT": t.port}),
        At::Endpoint("(default)".into()),
        &["_ADDRESS: missing"],
    );

    // SSRF: cloud metadata, this host, multicast, link-local.
    for ip in [
        "169.254.169.254",
        "169.254.170.2",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "fe80::1",
        "febf::1",
        "::",
        "ff02::1",
    ] {
        add(
            format!("SSRF address {ip}"),
            None,
            http_runtime(json!(ip), json!(t.port)),
            At::Endpoint("(default)".into()),
            &["_ADDRESS: address", "refused to prevent SSRF"],
        );
    }
    if t.loopback_refused {
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            add(
                format!("loopback address {ip}"),
                None,
                http_runtime(json!(ip), json!(t.port)),
                At::Endpoint("(default)".into()),
                &["_ADDRESS: address", "loopback", "SSRF"],
            );
        }
    }
    for (ip, port) in &t.loops {
        add(
            format!("routing loop {ip} port {port}"),
            None,
            http_runtime(json!(ip), json!(port)),
            At::Endpoint("(default)".into()),
            &["_ADDRESS: target", "proxy's own listener", "routing loop"],
        );
    }
    // A named endpoint: the refusal names the suffixed key.
    add(
        "named endpoint to 169.254.169.254".into(),
        None,
        json!({"_SERVICE__api": "EXTERNAL", "_ADDRESS__api": "169.254.169.254", "_PORT__api": t.port}),
        At::Endpoint("api".into()),
        &["_ADDRESS__api: address 169.254.169.254", "SSRF"],
    );

    // Ports.
    let bad_ports = nasty_strings()
        .into_iter()
        .chain(
            [
                "80a",
                "1e3",
                "",
                " ",
                "+80",
                "-1",
                "0",
                "00000",
                "65536",
                "99999",
                "99999999999",
                "８０",
                "80 80",
                "0x50",
                "80.5",
                "80;",
            ]
            .map(String::from),
        )
        .map(Value::String)
        .chain([
            Value::Null,
            json!([80]),
            json!({"x": 1}),
            json!(80.5),
            json!(1e3),
            json!(true),
            json!(0),
            json!(65536),
            json!(-1),
            json!(99_999_999_999u64),
        ]);
    for v in bad_ports {
        let shown = match &v {
            Value::String(s) => format!("{:?}", display_untrusted(s)),
            other => other.to_string(),
        };
        add(
            format!("port {shown}"),
            None,
            http_runtime(json!(t.addr), v),
            At::Endpoint("(default)".into()),
            &["_PORT: port"],
        );
    }
    add(
        "port missing".into(),
        None,
        json!({"_SERVICE": "EXTERNAL", "_ADDRESS": t.addr}),
        At::Endpoint("(default)".into()),
        &["_PORT: missing"],
    );

    // A runtime that is not an object.
    for v in [json!("zq;x"), json!(["_SERVICE", "EXTERNAL"]), json!(5), json!(true)] {
        add(format!("runtime {v}"), None, v, At::Task, &["runtime is", "not an object"]);
    }

    // `_SERVICE` values the router does not know.
    for v in [
        json!("INTERNAL"),
        json!("external"),
        json!("EXTERNAL "),
        json!("zq;EXTERNAL"),
        json!("EXTERNAL\n"),
        json!(1),
        Value::Null,
        json!({"EXTERNAL": true}),
        json!(["EXTERNAL"]),
    ] {
        let mut runtime = good_runtime.clone();
        runtime["_SERVICE"] = v.clone();
        add(format!("_SERVICE {v}"), None, runtime, At::Endpoint("(default)".into()), &["_SERVICE: "]);
    }
    let mut static_mode = good_runtime.clone();
    static_mode["_ROUTER_ENDPOINT_MODE"] = json!("static");
    add(
        "static endpoint mode".into(),
        None,
        static_mode,
        At::Endpoint("(default)".into()),
        &["_ROUTER_ENDPOINT_MODE", "not supported"],
    );
    add(
        "TCP endpoint without TCP_ROUTER_ADDRESS".into(),
        None,
        json!({"_SERVICE": "EXTERNAL_TCP", "external_address": t.addr, "external_tcp_port": t.port}),
        At::Endpoint("(default)".into()),
        &["TCP_ROUTER_ADDRESS is not set"],
    );
    cases
}

fn task_doc(id: &Value, name: &str, runtime: &Value) -> Value {
    json!({"id": id, "name": name, "user": name, "status": "in_progress", "system_tags": [TAG], "runtime": runtime})
}

/// The id a library-level case gets unless its id is the hostile value.
fn case_id(i: usize) -> String {
    format!("hostile{i:04}")
}

fn corpus_docs(cases: &[Case]) -> Vec<Value> {
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| task_doc(c.id.as_ref().unwrap_or(&json!(case_id(i))), &c.name, &c.runtime))
        .collect()
}

/// Good tasks: an unnamed endpoint, a named one, and a valid task with a hostile name and user.
fn good_docs() -> Vec<Value> {
    vec![
        task_doc(&json!("good0001"), "notebook", &http_runtime(json!("10.0.0.5"), json!(8888))),
        task_doc(
            &json!("good0002"),
            "model",
            &json!({"_SERVICE__api": "EXTERNAL", "_ADDRESS__api": "10.0.0.6", "_PORT__api": "9000"}),
        ),
        task_doc(&json!("good0003"), &nasty_name(), &http_runtime(json!("10.0.0.7"), json!(80))),
    ]
}

fn good_routes() -> Vec<(&'static str, &'static str)> {
    vec![("good0001", "10.0.0.5:8888"), ("good0002__api", "10.0.0.6:9000"), ("good0003", "10.0.0.7:80")]
}

fn library_targets(loopback_refused: bool) -> Targets {
    let mut loops = vec![("10.9.9.9".to_owned(), 8080), ("10.9.9.9".to_owned(), 18080)];
    if !loopback_refused {
        loops.extend([
            ("127.0.0.1".to_owned(), 8080),
            ("127.0.0.2".to_owned(), 18080),
            ("::1".to_owned(), 8080),
            ("::ffff:127.0.0.1".to_owned(), 8080),
        ]);
    }
    Targets { addr: "10.0.0.5".into(), port: 8888, loops, loopback_refused }
}

fn library_policy(allow_loopback: bool) -> TargetPolicy {
    TargetPolicy {
        allow_loopback,
        proxy_ports: vec![8080, 18080],
        self_addresses: vec!["10.9.9.9".parse::<IpAddr>().unwrap()],
        allowed_networks: vec![],
    }
}

/// Asserts that every case has its refusal, nothing else is refused, and only the good routes
/// are in the table.
fn assert_refused(table: &RouteTable, cases: &[Case], extra_refusals: usize) {
    let missing: Vec<String> = cases
        .iter()
        .enumerate()
        .filter(|(i, c)| !table.refusals.iter().any(|r| c.matches(&case_id(*i), r)))
        .map(|(i, c)| format!("{} ({}): no refusal with {:?}", c.what, case_id(i), c.reason))
        .collect();
    assert!(
        missing.is_empty(),
        "hostile tasks without the expected refusal:\n{}\nrefusals:\n{:#?}",
        missing.join("\n"),
        table.refusals
    );
    assert_eq!(
        table.refusals.len(),
        cases.len() + extra_refusals,
        "each hostile task is refused exactly once: {:#?}",
        table.refusals
    );
    let routes: Vec<(String, String)> =
        table.http.values().map(|r| (r.id.as_str().to_owned(), r.target.to_string())).collect();
    let expected: Vec<(String, String)> =
        good_routes().into_iter().map(|(a, b)| (a.to_owned(), b.to_owned())).collect();
    assert_eq!(routes, expected, "only the good tasks are routed");
    assert!(table.tcp.is_empty());
}

#[test]
fn library_refuses_every_hostile_task_and_keeps_routing_the_good_ones() {
    for allow_loopback in [false, true] {
        let cases = corpus(&library_targets(!allow_loopback));
        let mut tasks = good_docs();
        tasks.extend(corpus_docs(&cases));
        // A task claiming a good task's id (route hijack) is refused; the first one keeps it.
        tasks.push(task_doc(&json!("good0001"), "hijack", &http_runtime(json!("10.6.6.6"), json!(80))));
        // Not running / not tagged: ignored, not refused, whatever they hold.
        let mut stopped = task_doc(&json!("zq;stopped"), "stopped", &json!("zq"));
        stopped["status"] = json!("stopped");
        let mut untagged = task_doc(&json!("zq;untagged"), "untagged", &json!("zq"));
        untagged["system_tags"] = json!([]);
        tasks.extend([stopped, untagged]);

        let table = RouteTable::build(&Snapshot { tasks, company: None }, &library_policy(allow_loopback));
        assert_refused(&table, &cases, 1);
        assert!(
            table.refusals.iter().any(|r| r.task == "good0001" && r.reason.contains("duplicate task id")),
            "{:#?}",
            table.refusals
        );
        // Refusals are display-safe: no raw control or bidi characters, cut to a readable length.
        for r in &table.refusals {
            let text = format!("{} {:?} {}", r.task, r.endpoint, r.reason);
            assert!(!text.contains(['\n', '\r', '\0', '\u{1b}', '\u{202e}']), "unescaped refusal: {r:?}");
            assert!(text.len() < 600, "refusal too long ({} bytes): {}", text.len(), &text[..200]);
        }
    }
}

fn layout(lua_dir: &Path) -> Layout {
    Layout {
        router_name: "hostile".into(),
        listen_port: 8080,
        control_port: 18080,
        lua_dir: lua_dir.to_owned(),
        auth: AuthLayout::disabled(),
        upstream: Default::default(),
        tcp_ports: None,
        client_address: Default::default(),
        tls: Default::default(),
    }
}

fn render_files(rendered: &Rendered) -> Vec<(&str, &[u8])> {
    rendered.structural.iter().chain([&rendered.routes]).map(|f| (&*f.name, f.bytes.as_slice())).collect()
}

/// Every string a case holds: id, name, runtime keys and string values.
fn case_strings(c: &Case) -> Vec<String> {
    let mut out = vec![c.name.clone()];
    if let Some(Value::String(id)) = &c.id {
        out.push(id.clone());
    }
    if let Value::Object(runtime) = &c.runtime {
        for (k, v) in runtime {
            out.push(k.clone());
            if let Value::String(s) = v {
                out.push(s.clone());
            }
        }
    } else if let Value::String(s) = &c.runtime {
        out.push(s.clone());
    }
    out
}

#[tokio::test]
async fn render_of_the_corpus_holds_none_of_its_strings_and_passes_nginx_and_luajit() {
    let dir = tempfile::Builder::new().prefix("hostile-render").tempdir().unwrap();
    let layout = layout(&dir.path().join("lua"));
    let policy = library_policy(false);
    let cases = corpus(&library_targets(true));
    let baseline_table = RouteTable::build(&Snapshot { tasks: good_docs(), company: None }, &policy);
    let mut tasks = good_docs();
    tasks.extend(corpus_docs(&cases));
    let table = RouteTable::build(&Snapshot { tasks, company: None }, &policy);
    assert_refused(&table, &cases, 0);

    let baseline = render(&layout, &baseline_table).expect("the good tasks render");
    let rendered = render(&layout, &table).expect("the corpus renders");
    // Refused tasks leave no trace: the render is the good tasks' render, byte for byte.
    assert_eq!(rendered, baseline, "the hostile corpus changed the render");

    let files = render_files(&rendered);
    for (name, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains("zq"), "{name} holds a hostile string");
        assert!(!text.contains(['\0', '\u{202e}', '\u{1b}']), "{name} holds a control character");
    }
    let baseline_files = render_files(&baseline);
    let mut checked = 0;
    for c in &cases {
        for s in case_strings(c).into_iter().filter(|s| s.len() >= 4) {
            // Strings a clean render holds anyway ("EXTERNAL", "_PORT", ...) prove nothing.
            if baseline_files.iter().any(|(_, b)| contains(b, s.as_bytes())) {
                continue;
            }
            checked += 1;
            for (name, bytes) in &files {
                assert!(
                    !contains(bytes, s.as_bytes()),
                    "{name} holds {:?} from {}",
                    display_untrusted(&s),
                    c.what
                );
            }
        }
    }
    assert!(checked > 100, "only {checked} hostile strings checked");
    // routes.json holds only the good targets.
    let doc: Value = serde_json::from_slice(&rendered.routes.bytes).unwrap();
    let hosts: BTreeSet<String> = doc["routes"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| format!("{}:{}", r["host"].as_str().unwrap(), r["port"]))
        .collect();
    assert_eq!(hosts, ["10.0.0.5:8888", "10.0.0.6:9000", "10.0.0.7:80"].map(String::from).into());

    // Real nginx -t and luajit -bl on the staged render of the whole corpus.
    let validator = Validator {
        nginx_bin: "nginx".into(),
        luajit_bin: "luajit".into(),
        modules_include: modules_include(),
    };
    let staging = dir.path().join("staging");
    let report = validator.validate(&layout, &table, &staging).await.expect("validation runs");
    assert!(report.ok(), "nginx/luajit rejected the render: {}", report.failure_summary());
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"nginx -t"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("luajit -bl")), "{names:?}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// `clearml-router config-dry-run` on the corpus: the summary lists every refusal, escaped.
#[test]
fn dry_run_summary_of_the_corpus_is_escaped_and_strict_fails() {
    let dir = tempfile::Builder::new().prefix("hostile-dry-run").tempdir().unwrap();
    let cases = corpus(&library_targets(true));
    let mut tasks = good_docs();
    tasks.extend(corpus_docs(&cases));
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, serde_json::to_vec(&json!({"tasks": tasks})).unwrap()).unwrap();
    let run = |out: &str, strict: bool| {
        let mut cmd = std::process::Command::new(gateway_testkit::paths::router_bin());
        cmd.arg("config-dry-run").arg("--snapshot").arg(&snapshot).arg("--out").arg(dir.path().join(out));
        if strict {
            cmd.arg("--strict");
        }
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ROUTER_LUA_DIR", dir.path().join("lua"))
            // The routing-loop cases target 10.9.9.9:8080, this gateway's own address and port.
            .env("ROUTER_URL", "http://10.9.9.9:8080")
            .env("ROUTER__WEBSERVER__SERVER_PORT", "8080")
            .env("ROUTER_PROXY_CONTROL_PORT", "18080")
            .env("AUTH_ENABLED", "false")
            .stdin(Stdio::null())
            .output()
            .expect("the router binary runs")
    };
    let out = run("out", false);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Routes (3):"), "{stdout}");
    assert!(stdout.contains(&format!("Refused ({}):", cases.len())), "{stdout}");
    assert!(stdout.contains("nginx -t                         passed"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let missing: Vec<&str> = cases
        .iter()
        .enumerate()
        .filter(|(i, c)| !lines.iter().any(|l| c.matches_line(&case_id(*i), l)))
        .map(|(_, c)| c.what.as_str())
        .collect();
    assert!(missing.is_empty(), "refusals missing from the summary: {missing:?}\n{stdout}");
    // Nothing in the output can forge a line, move the cursor or flip text direction.
    for text in [&stdout, &stderr] {
        assert!(!text.contains(['\0', '\r', '\u{1b}', '\u{202e}']), "unescaped control character:\n{text}");
        assert!(!text.contains(&format!("\n{INJECTED_LINE}")), "a value injected a line:\n{text}");
        assert!(text.lines().all(|l| l.len() < 600), "a value was not cut to a readable length");
    }
    let summary = std::fs::read_to_string(dir.path().join("out/summary.txt")).unwrap();
    assert!(summary.contains(&format!("Refused ({}):", cases.len())));

    let strict = run("strict", true);
    assert_eq!(strict.status.code(), Some(1), "--strict with refusals must fail");
    assert!(String::from_utf8_lossy(&strict.stderr).contains("--strict"));
}

/// Sends one raw request line (no client-side normalisation of the path); returns status and text.
async fn raw_get(port: u16, target: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(
        b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    );
    stream.write_all(&request).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "no answer to {}", String::from_utf8_lossy(target));
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Adds a case to the emulator as a running, tagged task; returns the emulator's key for it.
/// Hostile ids and non-object runtimes are set while the task is still a draft, so the router
/// never sees a half-built task.
fn create_case(gw: &Gateway, c: &Case) -> String {
    let key = gw.emulator.create_task(NewTask {
        name: c.name.clone(),
        status: "created".into(),
        runtime: if c.runtime.is_object() { c.runtime.clone() } else { json!({}) },
        system_tags: vec![TAG.into()],
        ..NewTask::default()
    });
    let (id, runtime) = (c.id.clone(), c.runtime.clone());
    gw.emulator.update_task(&key, move |doc| {
        if let Some(id) = id {
            doc["id"] = id;
        }
        if !runtime.is_object() {
            doc["runtime"] = runtime;
        }
    });
    gw.emulator.set_status(&key, "in_progress");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_hostile_tasks_are_refused_and_good_tasks_keep_routing() {
    let gw = Gateway::start(Options::default()).await;
    let http = http_client();
    let (app1, app2) = (sample_app("notebook").await, sample_app("model").await);
    let good1 = gw.http_task("notebook", app1);
    let good2 = gw.http_task("model", app2);
    let url = |id: &str| format!("{}/service/{id}/", gw.router_url);
    for id in [&good1, &good2] {
        gw.wait_for_status(&url(id), 200, Duration::from_secs(15)).await;
    }

    let targets = Targets {
        addr: "127.0.0.1".into(),
        port: app1.port(),
        loops: vec![
            ("127.0.0.1".into(), gw.http_port),
            ("127.0.0.1".into(), gw.control_port),
            // The router's own status and operator API.
            ("127.0.0.1".into(), gw.status_port),
            ("127.0.0.2".into(), gw.http_port),
            ("::1".into(), gw.http_port),
            ("::ffff:127.0.0.1".into(), gw.http_port),
        ],
        loopback_refused: false,
    };
    let cases = corpus(&targets);
    let keys: Vec<String> = cases.iter().map(|c| create_case(&gw, c)).collect();

    // The router logs each refusal, naming the task and the rule.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = gw.router_log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("refused")).collect();
        let missing: Vec<String> = cases
            .iter()
            .zip(&keys)
            .filter(|(c, key)| !lines.iter().any(|l| c.matches_line(key, l)))
            .map(|(c, key)| format!("{} ({key}): {:?}", c.what, c.reason))
            .collect();
        if missing.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("refusals not logged:\n{}\nrouter log:\n{log}", missing.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A valid task with a hostile name, added after the corpus, routes like any other.
    let app3 = sample_app("tâche").await;
    let good3 = gw.emulator.create_task(NewTask {
        name: nasty_name(),
        status: "in_progress".into(),
        runtime: http_runtime(json!("127.0.0.1"), json!(app3.port())),
        system_tags: vec![TAG.into()],
        ..NewTask::default()
    });
    gw.wait_for_status(&url(&good3), 200, Duration::from_secs(15)).await;
    for (id, app) in [(&good1, "notebook"), (&good2, "model"), (&good3, "tâche")] {
        let echo: Value = http.get(format!("{}echo", url(id))).fetch_json().await;
        assert_eq!(echo["app"], app, "{id} no longer reaches its app");
        let endpoint = gw.wait_for_key(id, "endpoint", Duration::from_secs(10)).await;
        assert_eq!(endpoint, url(id));
    }

    // No hostile task got an endpoint, and none is served.
    for (c, key) in cases.iter().zip(&keys) {
        let runtime = gw.runtime(key);
        for k in ["endpoint", "browser_endpoint"] {
            assert!(runtime.get(k).is_none(), "{} ({key}) got {k}: {runtime}", c.what);
        }
        if c.id.is_none() {
            let (status, text) = raw_get(gw.http_port, format!("/service/{key}/").as_bytes()).await;
            assert_eq!(status, 404, "{} ({key}) is served:\n{text}", c.what);
        }
    }

    // Paths that try to smuggle a route id past the proxy's matching.
    let upper = good1.to_ascii_uppercase();
    let not_found: Vec<String> = vec![
        "/service/..%2F/".into(),
        "/service/%2e%2e/".into(),
        "/service/a;b/".into(),
        "/service/a%3Bb/".into(),
        format!("/service/{good1}%2F/"),
        format!("/service/{good1}%20/"),
        format!("/service/{good1};/"),
        format!("/service/{good1}__x/"),
        format!("/service/{good1}{good2}/"),
        format!("/service/{upper}/"),
        "/service//".into(),
        "/service/".into(),
        "/".into(),
    ];
    for path in &not_found {
        let (status, text) = raw_get(gw.http_port, path.as_bytes()).await;
        // Not found, or refused outright when it holds a dot segment or an encoded separator.
        assert!(status == 404 || status == 400, "{path}: {status}\n{text}");
        assert!(!text.contains("\"app\""), "{path} reached a task:\n{text}");
    }
    // Dot segments, plain or encoded, are refused before a route is chosen.
    for path in [
        format!("/service/..%2F{good1}/"),
        format!("/service/%2E%2E%2F{good1}/"),
        format!("/service/x/../{good1}/"),
        format!("/service/{good1}/../{good2}/x"),
    ] {
        let (status, text) = raw_get(gw.http_port, path.as_bytes()).await;
        assert_eq!(status, 400, "{path}:\n{text}");
        assert!(!text.contains("\"app\""), "{path} reached a task:\n{text}");
    }
    // nginx itself answers 400 to some (an encoded NUL); either way no task sees them.
    let raw: Vec<Vec<u8>> = vec![
        format!("/service/{good1}%00/").into_bytes(),
        format!("/service/{good1}%00x/").into_bytes(),
        [b"/service/".as_slice(), good1.as_bytes(), b"\0/"].concat(),
        [b"/service/".as_slice(), good1.as_bytes(), b"\x7f/"].concat(),
        b"/service/a b/".to_vec(),
        "/service/tâche/".as_bytes().to_vec(),
        "/service/\u{202e}/".as_bytes().to_vec(),
    ];
    for path in &raw {
        let (status, text) = raw_get(gw.http_port, path).await;
        assert!(matches!(status, 400 | 404), "{}: {status}\n{text}", String::from_utf8_lossy(path));
        assert!(!text.contains("\"app\""), "{} reached a task:\n{text}", String::from_utf8_lossy(path));
    }

    // The good tasks still route, the hostile ones cost no reload, and nothing forged a log line.
    for id in [&good1, &good2, &good3] {
        assert_eq!(http.get(url(id)).send().await.unwrap().status(), 200, "{id}");
    }
    assert_eq!(gw.nginx_reloads(), 0, "tasks must not reload nginx");
    let log = gw.router_log();
    assert!(!log.contains(&format!("\n{INJECTED_LINE}")), "a task value injected a log line");
    assert!(!log.contains(['\0', '\u{202e}']), "the router log holds a raw control or bidi character");
    assert!(!log.contains("panicked"), "{log}");
}

/// Asks the proxy's own rule for route ids (lua/clearml_rules.lua `route_id`, run by luajit)
/// which of `ids` it accepts: a route the router accepts but the proxy skips is advertised to
/// the task and then answers 404.
fn proxy_accepted_route_ids(ids: &[&str]) -> Vec<bool> {
    let lua_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../render/lua");
    let script =
        "local rules = require('clearml_rules') for id in io.lines() do print(rules.route_id(id)) end";
    let mut child = std::process::Command::new("luajit")
        .args(["-e", script])
        .env("LUA_PATH", format!("{}/?.lua;;", lua_dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("luajit runs");
    let input = ids.iter().map(|id| format!("{id}\n")).collect::<String>();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|line| line == "true").collect()
}

#[test]
fn every_route_the_router_accepts_is_one_the_proxy_serves() {
    let runtime = http_runtime(json!("10.0.0.5"), json!(80));
    // Positive controls: ids at the edges of what the router accepts, each of which must be
    // routed (so the check below runs on them) and served.
    let longest_task = "f".repeat(64);
    let mut named = runtime.clone();
    for endpoint in ["api", "-x", "_", "a-b_c", &"e".repeat(64)] {
        for key in ["_SERVICE", "_ADDRESS", "_PORT"] {
            named[format!("{key}__{endpoint}")] = runtime[key].clone();
        }
    }
    let accepted = [
        ("0123456789abcdef0123456789abcdef", &runtime),
        ("a", &runtime),
        ("Z-9", &runtime),
        ("a--b", &runtime),
        (longest_task.as_str(), &named),
    ];
    // Ids the proxy would skip; the router must refuse them.
    let dashes = ["-zz", "-", "--", "-a__b"].map(|id| (id, &runtime));
    let tasks = accepted.iter().chain(&dashes).map(|(id, rt)| task_doc(&json!(id), "edge", rt)).collect();
    let table = RouteTable::build(&Snapshot { tasks, company: None }, &library_policy(false));
    // Every accepted task id plus the five named endpoints of the last one.
    let expected = accepted.len() + 5;
    let ids: Vec<&str> = table.http.keys().map(|id| id.as_str()).collect();
    // The proxy's own rule (clearml_rules.lua, run by luajit) judges every routed id.
    let answers = proxy_accepted_route_ids(&ids);
    assert_eq!(answers.len(), ids.len(), "one answer per id");
    let mut checked = 0;
    for (id, served) in ids.iter().zip(answers) {
        assert!(served, "route {id} is routed by the router but skipped by the proxy");
        checked += 1;
    }
    let routed: Vec<&str> = table.http.keys().map(|id| id.as_str()).collect();
    assert_eq!(checked, expected, "the positive controls must all be routed: {routed:?}");
    for (id, _) in &accepted {
        assert!(routed.contains(id), "{id} is not routed: {routed:?}");
    }
    assert!(routed.contains(&format!("{longest_task}__{}", "e".repeat(64)).as_str()), "{routed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_target_is_served() {
    let gw = Gateway::start(Options::default()).await;
    let app = gateway_testkit::sample_apps::start("[::1]:0".parse().unwrap(), "six").await.unwrap();
    let task = gw.http_task("six", app);
    let url = format!("{}/service/{task}/", gw.router_url);
    gw.wait_for_key(&task, "endpoint", Duration::from_secs(30)).await;
    gw.wait_for_status(&url, 200, Duration::from_secs(15)).await;
}
