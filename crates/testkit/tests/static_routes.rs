//! Static routes through the real router binary and real nginx + Lua: path and subdomain routes,
//! load balancing with session affinity, live file edits, a malformed file, tasks attached by
//! name (`_ROUTER_ENDPOINT_MODE_PARAM`), and the single-target rule.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

async fn start(routes: Value) -> Gateway {
    start_with(routes, None).await
}

/// With `groups`: authentication on and that groups file.
async fn start_with(routes: Value, groups: Option<Value>) -> Gateway {
    let mut gw = Gateway::start(Options { no_router: true, ..Default::default() }).await;
    gw.write_static_routes(&routes);
    if let Some(groups) = groups {
        let path = gw.dir.path().join("groups.json");
        std::fs::write(&path, groups.to_string()).unwrap();
        gw.extra_env.push(("ROUTER_GROUPS_FILE".into(), path.display().to_string()));
        gw.extra_env.push(("AUTH_ENABLED".into(), "true".into()));
        gw.extra_env.push(("AUTH_SECURE_ENABLED".into(), "true".into()));
    }
    gw.extra_env.push(("ROUTER_STATIC_ROUTES_FILE".into(), gw.static_routes_file().display().to_string()));
    gw.start_router();
    gw.wait_for_status(&gw.status_url("/readyz"), 200, T).await;
    gw
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value, Option<String>) {
    let r = client.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("clearml_affinity_"))
        .map(str::to_owned);
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body, cookie)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_and_subdomain_routes_with_live_edits_and_a_malformed_file() {
    let a = sample_app("alpha").await;
    let b = sample_app("beta").await;
    let routes = json!({"routes": [
        {"name": "demo", "path": "/demo", "access": "public", "targets": [a.to_string()]},
        {"name": "sub", "subdomain": "sub", "access": "public", "targets": [b.to_string()]},
    ]});
    let gw = start(routes.clone()).await;
    let http = http_client();
    let demo = format!("{}/demo/", gw.router_url);
    gw.wait_for_status(&demo, 200, T).await;

    // Path route: the prefix is stripped (like /service/<id>) and announced.
    let echo: Value = http.get(format!("{demo}x/y?q=%2F")).fetch_json().await;
    assert_eq!(echo["app"], "alpha");
    assert_eq!(echo["uri"], "/x/y?q=%2F");
    assert_eq!(echo["headers"]["x-forwarded-prefix"], "/demo");
    // Whole segments only, and the bare prefix redirects to the canonical URL.
    assert_eq!(http.get(format!("{}/demox/", gw.router_url)).send().await.unwrap().status(), 404);
    let no_redirect =
        reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirect.get(format!("{}/demo?a=1", gw.router_url)).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "/demo/?a=1");

    // Subdomain route: selected by the Host header, the whole path passes through.
    let echo: Value =
        http.get(format!("{}/any/path", gw.router_url)).header("host", "sub.127.0.0.1").fetch_json().await;
    assert_eq!(echo["app"], "beta");
    assert_eq!(echo["uri"], "/any/path");

    // A live edit: demo moves to beta, a new path route appears, no nginx reload.
    let edited = json!({"routes": [
        {"name": "demo", "path": "/demo", "access": "public", "targets": [b.to_string()]},
        {"name": "sub", "subdomain": "sub", "access": "public", "targets": [b.to_string()]},
        {"name": "deep", "path": "/demo/deep", "access": "public", "targets": [a.to_string()]},
    ]});
    gw.write_static_routes(&edited);
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let echo: Value = http.get(format!("{demo}z")).fetch_json().await;
        if echo["app"] == "beta" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the edit was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Longest prefix wins.
    let echo: Value = http.get(format!("{}/demo/deep/k", gw.router_url)).fetch_json().await;
    assert_eq!((echo["app"].as_str(), echo["uri"].as_str()), (Some("alpha"), Some("/k")));

    // A malformed file is refused with the field named, and the routes keep serving. (Two whole
    // rounds first, so that the version taken is the one the good edit settled on.)
    gw.wait_for_polls(2, T).await;
    let version = gw.routes_version().await;
    std::fs::write(
        gw.static_routes_file(),
        r#"{"routes": [{"name": "demo", "path": "no-slash", "access": "public"}]}"#,
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + T;
    while !gw.router_log().contains("route demo: path: path must begin with '/'") {
        assert!(tokio::time::Instant::now() < deadline, "refusal not logged:\n{}", gw.router_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.wait_for_polls(2, T).await;
    assert_eq!(gw.routes_version().await, version, "the refused file changed the routes");
    assert_eq!(http.get(format!("{demo}z")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{}/demo/deep/", gw.router_url)).send().await.unwrap().status(), 200);

    // Disabling a route stops routing it (404), the others stay.
    let mut disabled = edited.clone();
    disabled["routes"][0]["enabled"] = json!(false);
    gw.write_static_routes(&disabled);
    gw.wait_for_status(&format!("{demo}z"), 404, T).await;
    assert_eq!(http.get(format!("{}/demo/deep/", gw.router_url)).send().await.unwrap().status(), 200);
    assert_eq!(gw.nginx_reloads(), 0, "static route data changes must not reload nginx");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_balancing_spreads_sticks_and_moves_only_clients_of_a_removed_target() {
    let apps = [sample_app("a").await, sample_app("b").await, sample_app("c").await];
    let route = |targets: &[std::net::SocketAddr]| {
        json!({"routes": [{"name": "lb", "path": "/lb", "access": "public", "load_balanced": true,
            "targets": targets.iter().map(|t| t.to_string()).collect::<Vec<_>>()}]})
    };
    let gw = start(route(&apps)).await;
    let http = http_client();
    let url = format!("{}/lb/echo", gw.router_url);
    gw.wait_for_status(&url, 200, T).await;

    // Without a cookie: round robin over the three, and each answer sets an affinity cookie.
    let mut seen = BTreeMap::new();
    let mut clients = Vec::new();
    for _ in 0..9 {
        let (status, body, cookie) = get_json(&http, &url).await;
        assert_eq!(status, 200);
        let cookie = cookie.expect("an affinity cookie is set");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
        assert!(cookie.contains("Path=/lb") && !cookie.contains("Secure"), "{cookie}");
        let app = body["app"].as_str().unwrap().to_owned();
        *seen.entry(app.clone()).or_insert(0) += 1;
        clients.push((cookie.split(';').next().unwrap().to_owned(), app));
    }
    assert_eq!(seen.values().copied().collect::<Vec<_>>(), vec![3, 3, 3], "{seen:?}");

    // With the cookie: always the same target, and no new cookie.
    for (cookie, app) in &clients {
        for _ in 0..3 {
            let r = http.get(&url).header("cookie", cookie).send().await.unwrap();
            assert!(r.headers().get("set-cookie").is_none());
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["app"], app.as_str());
        }
    }

    // Target b leaves (the file drops it) while clients keep asking: no request fails, only
    // b's clients move, and a target joining moves nobody.
    gw.write_static_routes(&route(&[apps[0], apps[2]]));
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let mut moved = BTreeSet::new();
        for (i, (cookie, app)) in clients.iter().enumerate() {
            let r = http.get(&url).header("cookie", cookie).send().await.unwrap();
            assert_eq!(r.status(), 200, "no request fails while a target leaves");
            let body: Value = r.json().await.unwrap();
            if body["app"] != app.as_str() {
                assert_eq!(app, "b", "only clients of the removed target move");
                moved.insert(i);
            }
        }
        if moved.len() == 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "b's clients never moved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = sample_app("d").await;
    let version = gw.routes_version().await;
    gw.write_static_routes(&route(&[apps[0], apps[2], d]));
    gw.wait_for_routes_change(&version, T).await;
    for (cookie, app) in clients.iter().filter(|(_, app)| app != "b") {
        let body: Value = http.get(&url).header("cookie", cookie).fetch_json().await;
        assert_eq!(body["app"], app.as_str(), "a joining target moves nobody");
    }
    // A target that died before the file drops it: the proxy tries the next one, nothing fails.
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let version = gw.routes_version().await;
    gw.write_static_routes(&route(&[apps[0], dead]));
    gw.wait_for_routes_change(&version, T).await;
    for _ in 0..6 {
        let (status, body, _) = get_json(&http, &url).await;
        assert_eq!((status, body["app"].as_str()), (200, Some("a")));
    }
    assert_eq!(gw.nginx_reloads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_attach_by_name_and_a_single_target_route_keeps_its_first_task() {
    let routes = json!({"routes": [
        {"name": "single", "path": "/single", "access": "public"},
        {"name": "pool", "subdomain": "pool", "access": "public", "load_balanced": true},
    ]});
    let mut gw = start(routes).await;
    let (one, two) = (sample_app("one").await, sample_app("two").await);
    let ask = |name: &str, mode: &str, route: &str, target: std::net::SocketAddr| {
        gw.emulator.create_task(clearml_emulator::NewTask {
            name: name.into(),
            status: "in_progress".into(),
            runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": target.port(),
                "_ROUTER_ENDPOINT_MODE": mode, "_ROUTER_ENDPOINT_MODE_PARAM": route}),
            system_tags: vec!["external_service".into()],
            ..Default::default()
        })
    };
    let first = ask("first", "path", "single", one);
    let url = gw.wait_for_key(&first, "endpoint", T).await;
    assert_eq!(url, format!("{}/single/", gw.router_url));
    assert_eq!(gw.runtime(&first)["browser_endpoint"], url.as_str());
    let echo: Value = http_client().get(format!("{url}p")).fetch_json().await;
    assert_eq!(echo["app"], "one");
    // No /service/ URL for an endpoint that asked for a static route.
    assert_eq!(
        http_client().get(format!("{}/service/{first}/", gw.router_url)).send().await.unwrap().status(),
        404
    );

    // A second task on the single-target route is refused; the first keeps it.
    let second = ask("second", "path", "single", two);
    let deadline = tokio::time::Instant::now() + T;
    while !gw.router_log().contains("static route single is not load balanced and is already served by task")
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", gw.router_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gw.runtime(&second).get("endpoint").is_none());
    let echo: Value = http_client().get(format!("{url}p")).fetch_json().await;
    assert_eq!(echo["app"], "one");
    // The first stops: the second takes over.
    gw.emulator.set_status(&first, "stopped");
    let url2 = gw.wait_for_key(&second, "endpoint", T).await;
    assert_eq!(url2, url);
    gw.wait_for_key_gone(&first, "endpoint", T).await;
    let echo: Value = http_client().get(format!("{url}p")).fetch_json().await;
    assert_eq!(echo["app"], "two");

    // Subdomain, load balanced: both tasks serve; the URL is <label>.<router host>.
    let p1 = ask("p1", "subdomain", "pool", one);
    let p2 = ask("p2", "subdomain", "pool", two);
    let sub_url = gw.wait_for_key(&p1, "endpoint", T).await;
    assert_eq!(sub_url, format!("http://pool.127.0.0.1:{}/", gw.http_port));
    assert_eq!(gw.wait_for_key(&p2, "endpoint", T).await, sub_url);
    let mut apps = BTreeSet::new();
    for _ in 0..4 {
        let body: Value = http_client()
            .get(format!("{}/echo", gw.router_url))
            .header("host", "pool.127.0.0.1")
            .fetch_json()
            .await;
        apps.insert(body["app"].as_str().unwrap().to_owned());
    }
    assert_eq!(apps.len(), 2, "{apps:?}");

    // Wrong mode and unknown routes are refused with a reason.
    let wrong = ask("wrong", "subdomain", "single", one);
    let unknown = ask("unknown", "path", "nope", one);
    let deadline = tokio::time::Instant::now() + T;
    let log = loop {
        let log = gw.router_log();
        if log.contains("but it is a path route") && log.contains("no static route named nope") {
            break log;
        }
        assert!(tokio::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(log);
    assert!(gw.runtime(&wrong).get("endpoint").is_none());
    assert!(gw.runtime(&unknown).get("endpoint").is_none());

    // A restarted router still knows what it advertised: a task that stopped meanwhile gets its
    // static URL taken back, and the single-target route stays with its task.
    gw.stop_router().await;
    gw.emulator.set_status(&p1, "stopped");
    gw.start_router();
    gw.wait_for_key_gone(&p1, "endpoint", T).await;
    assert_eq!(gw.runtime(&second)["endpoint"], url.as_str());
    assert_eq!(gw.runtime(&p2)["endpoint"], sub_url.as_str());
}

async fn wait_for_app(url: &str, host: Option<&str>, app: &str) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let mut req = http_client().get(url);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let body: Value = match req.send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if body["app"] == app {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} never reached {app}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_adds_edits_enables_disables_and_deletes_persisting_to_the_file() {
    let gw = start(json!({"routes": []})).await;
    let (a, b) = (sample_app("a").await, sample_app("b").await);
    let http = operator_http();
    let api = gw.status_url("/api/static-routes");
    let url = format!("{}/api-x/echo", gw.router_url);

    let r = http
        .post(&api)
        .header("x-updated-by", "ada")
        .json(&json!({"name": "api", "path": "/api-x", "access": "public", "targets": [a.to_string()]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    wait_for_app(&url, None, "a").await;
    let file: Value = serde_json::from_slice(&std::fs::read(gw.static_routes_file()).unwrap()).unwrap();
    assert_eq!(file["routes"][0]["updated_by"], "ada");
    assert!(file["routes"][0]["created"].is_string());

    // Listed with its status once served.
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let list: Value = http.get(&api).fetch_json().await;
        if list["routes"][0]["status"] == "Routing" {
            assert_eq!(list["routes"][0]["url"], format!("{}/api-x/", gw.router_url));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status: Value = http.get(gw.status_url("/api/status")).fetch_json().await;
    assert_eq!(status["static_routes"][0]["name"], "api");
    assert_eq!(status["static_routes"][0]["status"], "Routing");
    let page = http.get(gw.status_url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"static-routes\"") && page.contains("api-x"), "{page}");

    // A duplicate name and an invalid route are refused with the field named.
    let dup = http.post(&api).json(&json!({"name": "api", "path": "/other"})).send().await.unwrap();
    assert_eq!(dup.status(), 409);
    let bad = http.post(&api).json(&json!({"name": "bad", "path": "nope"})).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("route bad: path: path must begin with '/'"));

    // Enabled: view-only.
    let edit = json!({"path": "/api-x", "access": "public", "targets": [b.to_string()], "enabled": false});
    let r = http.put(format!("{api}/api")).json(&edit).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("enabled and view-only; disable it before editing"));

    // Disable: routing stops (404); then edit and enable: served by the new target.
    assert_eq!(http.post(format!("{api}/api/disable")).send().await.unwrap().status(), 200);
    gw.wait_for_status(&url, 404, T).await;
    let r = http.put(format!("{api}/api")).json(&edit).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(http.post(format!("{api}/api/enable")).send().await.unwrap().status(), 200);
    wait_for_app(&url, None, "b").await;

    // Delete: gone from the file and from the proxy.
    assert_eq!(http.delete(format!("{api}/api")).send().await.unwrap().status(), 200);
    gw.wait_for_status(&url, 404, T).await;
    let file: Value = serde_json::from_slice(&std::fs::read(gw.static_routes_file()).unwrap()).unwrap();
    assert_eq!(file["routes"], json!([]));
    assert_eq!(http.delete(format!("{api}/api")).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sdk_static_route_gets_the_static_url_and_traffic_reaches_it() {
    let gw = start(json!({"routes": [
        {"name": "sdk-demo", "path": "/sdk-demo", "access": "public", "load_balanced": true},
    ]}))
    .await;
    // The emulator answers routers.get_routes with what the router's admin API lists.
    let list: Value = http_client().get(gw.status_url("/api/static-routes")).fetch_json().await;
    let routes: Vec<Value> = list["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            json!({"name": r["name"], "type": r["type"], "enabled": r["enabled"],
                "status": if r["status"] == "Routing" { "active" } else { "inactive" },
                "load_balancer": {"enabled": r["load_balanced"]}})
        })
        .collect();
    gw.emulator.set_routes(Value::Array(routes));
    let app = sample_app("sdk-app").await;
    let task = gw.emulator.create_task(clearml_emulator::NewTask {
        name: "served".into(),
        status: "in_progress".into(),
        ..Default::default()
    });
    let port = app.port().to_string();
    let args = [
        task.as_str(),
        "--port",
        &port,
        "--static-route",
        "sdk-demo",
        "--wait",
        "--interval",
        "0.5",
        "--timeout",
        "30",
    ];
    let out = run_sdk_script(&gw.emulator, "request_endpoint.py", &args).await;
    let line = out.lines().find_map(|l| l.strip_prefix("SDK_RESULT=")).expect("a result");
    let reply: Value = serde_json::from_str(line).unwrap();
    let expected = format!("{}/sdk-demo/", gw.router_url);
    assert_eq!(reply["result"]["endpoint"], expected.as_str(), "{reply}");
    assert_eq!(reply["runtime"]["_ROUTER_ENDPOINT_MODE_PARAM"], "sdk-demo");
    wait_for_app(&format!("{expected}hello"), None, "sdk-app").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_access_matrix() {
    let app = sample_app("guarded").await;
    let app2 = sample_app("guarded-2").await;
    let t = app.to_string();
    let gw = start_with(
        json!({"routes": [
            {"name": "ml-only", "path": "/ml", "groups": ["ml"], "targets": [t]},
            {"name": "ops-only", "path": "/ops", "groups": ["ops"], "targets": [t]},
            {"name": "nobody", "path": "/nobody", "groups": ["undefined-group"], "targets": [t]},
            {"name": "any", "path": "/any", "targets": [t]},
            {"name": "open", "path": "/open", "access": "public", "targets": [t]},
            {"name": "pool", "path": "/pool", "access": "public", "load_balanced": true,
             "targets": [t, app2.to_string()]},
        ]}),
        Some(json!({"ml": ["user-1"], "ops": ["Bob Ops"]})),
    )
    .await;
    gw.emulator.add_user(clearml_emulator::EmulatedUser {
        access_key: "bob-ak".into(),
        secret_key: "bob-sk".into(),
        id: "user-3".into(),
        name: "Bob Ops".into(),
        company_id: "company-1".into(),
        company_name: "Emulated Company".into(),
        role: "user".into(),
    });
    let ml_user = gw.emulator.mint_token("user-1", Duration::from_secs(3600));
    let ops_user = gw.emulator.mint_token("user-3", Duration::from_secs(3600));
    let get = |path: &str, token: Option<&str>| {
        let mut req =
            http_client().get(format!("{}{path}/echo", gw.router_url)).header("accept", "application/json");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let deadline = tokio::time::Instant::now() + T;
    while get("/open", None).await != 200 || get("/any", Some(&ml_user)).await != 200 {
        assert!(tokio::time::Instant::now() < deadline, "{}", gw.router_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cases = [
        ("/ml", Some(&ml_user), 200),
        ("/ml", Some(&ops_user), 403),
        ("/ml", None, 401),
        ("/ops", Some(&ml_user), 403),
        ("/ops", Some(&ops_user), 200),
        ("/nobody", Some(&ml_user), 403),
        ("/any", Some(&ml_user), 200),
        ("/any", Some(&ops_user), 200),
        ("/any", None, 401),
        ("/open", None, 200),
        ("/open", Some(&ops_user), 200),
    ];
    for (path, token, want) in cases {
        assert_eq!(get(path, token.map(String::as_str)).await, want, "{path} as {:?}", token.map(|_| "user"));
    }
    // AUTH_SECURE_ENABLED: the affinity cookie is Secure.
    let (_, _, cookie) = get_json(&http_client(), &format!("{}/pool/echo", gw.router_url)).await;
    let cookie = cookie.expect("affinity cookie");
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");
    // The task never sees the ClearML credentials, and sees who is asking.
    let echo: Value = http_client()
        .get(format!("{}/ml/echo", gw.router_url))
        .header("authorization", format!("Bearer {ml_user}"))
        .fetch_json()
        .await;
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert_eq!(echo["headers"]["x-clearml-user-id"], "user-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_file_watcher_applies_edits_between_polls() {
    let mut gw = Gateway::start(Options { no_router: true, ..Default::default() }).await;
    gw.write_static_routes(&json!({"routes": []}));
    gw.extra_env.push(("ROUTER_STATIC_ROUTES_FILE".into(), gw.static_routes_file().display().to_string()));
    // Polls are 60 s apart: only the watcher can bring the edit in time.
    gw.extra_env.push(("ROUTER_POLL_INTERVAL_SECONDS".into(), "60".into()));
    gw.start_router();
    gw.wait_for_status(&gw.status_url("/readyz"), 200, T).await;
    let app = sample_app("watched").await;
    gw.write_static_routes(
        &json!({"routes": [{"name": "w", "path": "/w", "access": "public", "targets": [app.to_string()]}]}),
    );
    let started = std::time::Instant::now();
    wait_for_app(&format!("{}/w/echo", gw.router_url), None, "watched").await;
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disabling_a_route_cuts_its_open_websockets_only() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let app = sample_app("sockets").await;
    let routes = |enabled: bool| {
        json!({"routes": [
            {"name": "ws", "path": "/ws-route", "access": "public", "targets": [app.to_string()], "enabled": enabled},
            {"name": "other", "path": "/other", "access": "public", "targets": [app.to_string()]},
        ]})
    };
    let gw = start(routes(true)).await;
    wait_for_app(&format!("{}/ws-route/echo", gw.router_url), None, "sockets").await;
    let ws_base = gw.router_url.replacen("http", "ws", 1);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{ws_base}/ws-route/ws")).await.expect("upgrade");
    let (mut other, _) =
        tokio_tungstenite::connect_async(format!("{ws_base}/other/ws")).await.expect("upgrade");
    for socket in [&mut ws, &mut other] {
        socket.send(Message::Text("ping".into())).await.unwrap();
        let echoed = tokio::time::timeout(T, socket.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed, Message::Text("ping".into()));
    }

    gw.write_static_routes(&routes(false));
    // Within a poll plus the relay's 1 s check, the route's socket is closed.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the websocket of the disabled route stayed open");
    // The other route's websocket is untouched.
    other.send(Message::Text("still here".into())).await.unwrap();
    let echoed = tokio::time::timeout(T, other.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed, Message::Text("still here".into()));
    assert_eq!(gw.nginx_reloads(), 0);
}

/// On an enterprise server the static routes come from `routers.get_routes` (where admins edit
/// them in the WebApp): no routes file needed. A name also in the file is served as the server
/// defines it and reported on the status page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_routes_defined_on_the_clearml_server_are_served() {
    let mut gw = Gateway::start(Options { no_router: true, ..Default::default() }).await;
    gw.emulator.set_routes(json!([
        {"name": "srv-demo", "type": "path", "enabled": true, "load_balancer": {"enabled": true}},
        {"name": "both", "type": "path", "enabled": true, "load_balancer": {"enabled": false}},
    ]));
    gw.write_static_routes(&json!({"routes": [{"name": "both", "path": "/elsewhere", "access": "public"}]}));
    gw.extra_env.push(("ROUTER_STATIC_ROUTES_FILE".into(), gw.static_routes_file().display().to_string()));
    gw.start_router();
    let app = sample_app("srv-app").await;
    let task = gw.emulator.create_task(clearml_emulator::NewTask {
        name: "srv".into(),
        status: "in_progress".into(),
        runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": app.port(),
            "_ROUTER_ENDPOINT_MODE": "path", "_ROUTER_ENDPOINT_MODE_PARAM": "srv-demo"}),
        system_tags: vec!["external_service".into()],
        ..Default::default()
    });
    let url = gw.wait_for_key(&task, "endpoint", T).await;
    assert_eq!(url, format!("{}/srv-demo/", gw.router_url));
    wait_for_app(&format!("{url}hello"), None, "srv-app").await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let status: Value = http_client().get(gw.status_url("/api/status")).fetch_json().await;
        let errors = status["static_errors"].to_string();
        if errors.contains("both") && errors.contains("ClearML server") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "conflict not reported: {errors}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
