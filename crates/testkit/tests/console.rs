//! The operator console (the status page as the place to run the gateway) driven in real
//! headless Chromium over the DevTools protocol: sign in, edit static routes through the page,
//! run the self-test and watch its log stream; plus sign-in over HTTP and the page without
//! JavaScript. Screenshots land in target/test-artifacts/console/.

#[path = "cdp/mod.rs"]
mod cdp;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use cdp::Browser;
use clearml_emulator::NewTask;
use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(20);

fn artifact(name: &str) -> PathBuf {
    gateway_testkit::paths::repo_root().join("target/test-artifacts/console").join(name)
}

/// A gateway with a routes file holding one enabled route to a sample app; returns the app too.
async fn gateway_with_routes_file() -> (Gateway, std::net::SocketAddr, PathBuf, tempfile::TempDir) {
    let app = sample_app("console-app").await;
    let files = tempfile::tempdir().unwrap();
    let routes = files.path().join("routes.json");
    let definitions = json!({"routes": [{"name": "models", "path": "/models", "access": "public", "targets": [app.to_string()]}]});
    std::fs::write(&routes, definitions.to_string()).unwrap();
    let env = vec![("ROUTER_STATIC_ROUTES_FILE", routes.display().to_string())];
    let gw = Gateway::start(Options { env, ..Default::default() }).await;
    wait_for_status_server(&gw).await;
    (gw, app, routes, files)
}

async fn wait_for_status_server(gw: &Gateway) {
    let deadline = tokio::time::Instant::now() + T;
    while !http_client().get(gw.status_url("/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(tokio::time::Instant::now() < deadline, "router not ready\n{}", gw.router_log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Signs in through the page's form: a wrong token first (its error shows beside the field),
/// then the right one.
async fn sign_in(browser: &Browser, gw: &Gateway) {
    browser.open(&gw.status_url("/")).await;
    browser.wait_for("document.querySelector('#sign-in-form')", "the sign-in form").await;
    assert_eq!(browser.eval("document.body.dataset.operator").await, "false");
    browser.fill("#sign-in-token", "not-the-token").await;
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "document.querySelector('[data-error-for=token]').textContent.includes('wrong operator token')",
            "the wrong-token error beside the field",
        )
        .await;
    browser.fill("#sign-in-token", OPERATOR_TOKEN).await;
    browser.click("#sign-in").await;
    browser
        .wait_for(
            "document.body.dataset.operator === 'true' && document.querySelector('#sign-out')",
            "signed in",
        )
        .await;
    // The token is not in the page, its URL or script-readable storage; the cookie is HttpOnly.
    let visible = browser.eval("location.href + document.cookie + JSON.stringify(localStorage) + document.documentElement.outerHTML").await;
    assert!(!visible.as_str().unwrap().contains(OPERATOR_TOKEN));
}

fn row(name: &str) -> String {
    format!("document.querySelector('#static-routes tr[data-route=\"{name}\"]')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_adds_fixes_enables_disables_edits_and_deletes_a_route_in_chromium() {
    let (gw, app, routes_file, _files) = gateway_with_routes_file().await;
    let browser = Browser::start().await;
    sign_in(&browser, &gw).await;
    browser
        .wait_for(
            &format!(
                "{} && {}.querySelector('.state').textContent === 'Routing'",
                row("models"),
                row("models")
            ),
            "the models route routing",
        )
        .await;

    // Add a route whose target is refused by the target policy: the error shows beside Targets.
    browser.click("#add-route").await;
    browser.wait_for("!document.querySelector('#route-form').hidden", "the route form").await;
    browser.fill("#route-name", "demo").await;
    browser.fill("#route-location", "/demo").await;
    browser.fill("#route-targets", "169.254.169.254:80").await;
    browser.eval("document.querySelector('#route-access').value = 'public'").await;
    browser.click("#route-save").await;
    browser
        .wait_for(
            "document.querySelector('[data-error-for=targets]').textContent.includes('169.254.169.254')",
            "the targets error",
        )
        .await;
    let error = browser.text("[data-error-for=targets]").await;
    assert!(error.contains("link-local") || error.contains("metadata"), "{error}");
    assert_eq!(browser.text("[data-error-for=name]").await, "", "only the field at fault shows an error");
    browser.screenshot(&artifact("1-field-error.png")).await;
    assert!(!std::fs::read_to_string(&routes_file).unwrap().contains("demo"), "nothing was written");

    // Fixed: saved, listed as a disabled route, editable.
    browser.fill("#route-targets", &app.to_string()).await;
    browser.click("#route-save").await;
    browser
        .wait_for(
            &format!("{} && document.querySelector('#route-form').hidden", row("demo")),
            "the new route's row",
        )
        .await;
    let demo = row("demo");
    assert_eq!(browser.eval(&format!("{demo}.querySelector('.toggle').checked")).await, false);
    assert_eq!(browser.eval(&format!("{demo}.querySelector('.state').textContent")).await, "Disabled");
    assert_eq!(browser.eval(&format!("{demo}.querySelector('.edit').disabled")).await, false);
    assert_eq!(browser.eval(&format!("{demo}.cells[10].textContent")).await, "admin-api", "updated by");

    // Enabled from the toggle: the proxy routes it and the row says Routing; Edit is off.
    browser.click("#static-routes tr[data-route=\"demo\"] .toggle").await;
    browser
        .wait_for(&format!("{demo}.querySelector('.state').textContent === 'Routing'"), "demo Routing")
        .await;
    assert_eq!(
        browser.eval(&format!("{demo}.querySelector('.edit').disabled")).await,
        true,
        "enabled routes are view-only"
    );
    gw.wait_for_status(&format!("{}/demo/", gw.router_url), 200, T).await;
    browser.screenshot(&artifact("2-routing.png")).await;

    // Disabled, edited, then deleted after the confirmation dialog.
    browser.click("#static-routes tr[data-route=\"demo\"] .toggle").await;
    browser
        .wait_for(&format!("{demo}.querySelector('.state').textContent === 'Disabled' && !{demo}.querySelector('.edit').disabled"), "demo disabled")
        .await;
    // Disabled, it can be edited: the form comes prefilled and the name cannot change.
    browser.click("#static-routes tr[data-route=\"demo\"] .edit").await;
    browser.wait_for("!document.querySelector('#route-form').hidden", "the edit form").await;
    assert_eq!(browser.eval("document.querySelector('#route-name').readOnly").await, true);
    assert_eq!(browser.eval("document.querySelector('#route-location').value").await, "/demo");
    assert_eq!(browser.eval("document.querySelector('#route-targets').value").await, app.to_string());
    browser.eval("document.querySelector('#route-access').value = 'authenticated'").await;
    browser.fill("#route-groups", "ml, ops").await;
    browser.click("#route-save").await;
    browser
        .wait_for(&format!("{demo}.cells[4].textContent === 'authenticated: ml, ops'"), "the edited access")
        .await;
    assert!(std::fs::read_to_string(&routes_file).unwrap().contains("\"ops\""));
    browser.click("#static-routes tr[data-route=\"demo\"] .delete").await;
    browser.wait_for(&format!("!{demo}"), "the demo row gone").await;
    assert_eq!(browser.dialogs.lock().unwrap().as_slice(), ["Delete static route demo?"]);
    let file = std::fs::read_to_string(&routes_file).unwrap();
    assert!(!file.contains("\"demo\"") && file.contains("\"models\""), "{file}");
    browser.screenshot(&artifact("3-deleted.png")).await;
    assert!(browser.exceptions.lock().unwrap().is_empty(), "{:?}", browser.exceptions.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_self_test_streams_its_log_into_the_page() {
    let gw = Gateway::start(Options::default()).await;
    wait_for_status_server(&gw).await;
    let queue = gw.emulator.create_queue("gateway-test");
    let browser = Browser::start().await;
    sign_in(&browser, &gw).await;
    browser.fill("#self-test-queue", "gateway-test").await;
    browser.click("#self-test-run").await;
    // No agent yet: the test waits for one, and the page already shows the lines logged so far.
    browser
        .wait_for(
            "document.querySelector('#self-test-log').textContent.includes('enqueued on gateway-test') && \
             document.querySelector('#st-status').textContent === 'running'",
            "the running test's log",
        )
        .await;
    assert!(browser.text("#self-test-log").await.contains("created task"));
    browser.screenshot(&artifact("4-self-test-running.png")).await;
    let agent = simulated_agent(gw.emulator.clone(), queue);
    browser
        .wait_for("document.querySelector('#st-status').textContent === 'passed'", "the self-test passed")
        .await;
    assert_eq!(browser.text("#st-worker").await, "sim-agent:0");
    assert_eq!(browser.text("#st-queue").await, "gateway-test");
    assert!(browser.text("#st-endpoint").await.starts_with(&format!("{}/service/", gw.router_url)));
    assert!(browser.text("#st-message").await.contains("traffic reached the test task"));
    assert!(browser.text("#st-run-time").await.ends_with(" s"));
    assert!(!browser.text("#st-completed").await.is_empty());
    let log = browser.text("#self-test-log").await;
    for line in [
        "created task",
        "running on worker sim-agent:0",
        "routed at",
        "served by the test task",
        "removed the test task",
    ] {
        assert!(log.contains(line), "{line} in {log}");
    }
    browser.screenshot(&artifact("5-self-test-passed.png")).await;
    agent.abort();
    assert!(browser.exceptions.lock().unwrap().is_empty(), "{:?}", browser.exceptions.lock().unwrap());
}

/// The SSE stream: one `report` event per change, the last one final, then the stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn self_test_events_stream_ends_with_the_final_report() {
    let gw = Gateway::start(Options::default()).await;
    wait_for_status_server(&gw).await;
    let none = http_client().get(gw.status_url("/api/self-test/events")).send().await.unwrap();
    assert_eq!(none.headers()["content-type"], "text/event-stream");
    assert!(none.text().await.unwrap().contains("event: none"), "no test yet: one event, then the end");
    let report = operator_http()
        .post(gw.status_url("/api/self-test"))
        .json(&json!({"queue": "no-such-queue"}))
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);
    let text =
        http_client().get(gw.status_url("/api/self-test/events")).send().await.unwrap().text().await.unwrap();
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(data.len(), 1, "{text}");
    assert_eq!(data[0]["status"], "failed");
    assert!(data[0]["reason"].as_str().unwrap().contains("does not exist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_sets_an_http_only_cookie_that_authorises_writes_from_the_page_origin() {
    let (gw, _app, _routes, _files) = gateway_with_routes_file().await;
    let http = http_client();
    let session = gw.status_url("/api/session");
    let wrong = http.post(&session).json(&json!({"token": "nope"})).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let ok = http.post(&session).json(&json!({"token": OPERATOR_TOKEN})).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "the status listener is plain http here");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let origin = gw.status_url("");
    let disable = gw.status_url("/api/static-routes/models/disable");
    // The cookie authorises a write that carries this server's Origin, not one without.
    let no_origin = http.post(&disable).header("cookie", &pair).send().await.unwrap();
    assert_eq!(no_origin.status(), 403);
    let foreign = http
        .post(&disable)
        .header("cookie", &pair)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let done = http.post(&disable).header("cookie", &pair).header("origin", &origin).send().await.unwrap();
    assert_eq!(done.status(), 200);
    let me: Value = http.get(&session).header("cookie", &pair).send().await.unwrap().json().await.unwrap();
    assert_eq!(me["signed_in"], true);
    // Signed out: the same cookie no longer works.
    let out = http.delete(&session).header("cookie", &pair).header("origin", &origin).send().await.unwrap();
    assert!(out.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = http.post(&disable).header("cookie", &pair).header("origin", &origin).send().await.unwrap();
    assert_eq!(after.status(), 401);
    // Failed sign-ins are limited: the eleventh wrong try in a minute is 429, even the right token.
    for _ in 0..10 {
        http.post(&session).json(&json!({"token": "nope"})).send().await.unwrap();
    }
    let limited = http.post(&session).json(&json!({"token": OPERATOR_TOKEN})).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "60");
}

/// Without JavaScript the page is readable: tables are rendered on the server, including other
/// routers seen on the same ClearML.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_renders_its_tables_without_javascript() {
    let (gw, _app, _routes, _files) = gateway_with_routes_file().await;
    gw.emulator.create_task(NewTask {
        name: "served elsewhere".into(),
        status: "in_progress".into(),
        runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "10.1.2.3", "_PORT": 8000, "_ROUTER_OWNER": "east",
                        "endpoint": "https://east.example/gw/service/abc/"}),
        system_tags: vec!["external_service".into()],
        ..Default::default()
    });
    let deadline = tokio::time::Instant::now() + T;
    let status = loop {
        let status: Value =
            http_client().get(gw.status_url("/api/status")).send().await.unwrap().json().await.unwrap();
        let models_routing = status["static_routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "models" && r["status"] == "Routing");
        if models_routing && !status["other_routers"].as_array().unwrap().is_empty() {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        status["other_routers"],
        json!([{"name": "east", "url": "https://east.example/gw", "endpoints": 1}])
    );
    let html = http_client().get(gw.status_url("/")).send().await.unwrap().text().await.unwrap();
    // Tera's autoescape writes `/` as `&#x2F;`; read it back as a browser would.
    let html = html.replace("&#x2F;", "/");
    assert!(
        html.contains("<tr data-route=\"models\"><td class=\"name\">models</td><td>/models</td>"),
        "{html}"
    );
    assert!(html.contains("<span class=\"ok\">Routing</span>"), "{html}");
    assert!(
        html.contains(
            "<td>east</td><td><a href=\"https://east.example/gw\">https://east.example/gw</a></td><td>1</td>"
        ),
        "{html}"
    );
    assert!(html.contains("<noscript><meta http-equiv=\"refresh\""), "refreshes itself without JavaScript");
    assert!(
        html.contains("id=\"sign-in-form\" method=\"post\" action=\"api/session\""),
        "sign-in works as a plain form"
    );
    // The form post (no JavaScript) signs in and comes back to the page.
    let no_redirects =
        reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = no_redirects
        .post(gw.status_url("/api/session"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", gw.status_url(""))
        .body(format!("token={OPERATOR_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 303);
    assert_eq!(form.headers()["location"], "./");
    let cookie = form.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let signed_in = http_client()
        .get(gw.status_url("/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(signed_in.contains("data-operator=\"true\"") && signed_in.contains("id=\"sign-out\""));
    let js = http_client().get(gw.status_url("/console.js")).send().await.unwrap();
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let openapi: Value =
        http_client().get(gw.status_url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(openapi["paths"]["/api/static-routes/{name}/enable"]["post"].is_object());
}

/// With JavaScript the page is never reloaded, so the traffic charts must redraw themselves: a
/// route's chart appears and moves in the page that stays open while requests are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_open_page_redraws_the_traffic_charts_without_reloading() {
    let (gw, _app, _routes, _files) = gateway_with_routes_file().await;
    let browser = Browser::start().await;
    browser.open(&gw.status_url("/")).await;
    // A mark a reload would erase.
    browser.eval("window.__not_reloaded = true").await;
    let series = "(document.querySelector('[data-route=\"static/models\"][data-metric=\"rps\"]') || \
                  {dataset: {series: ''}}).dataset.series";
    assert_eq!(browser.eval(series).await, "", "no chart before any request");

    let http = http_client();
    for _ in 0..30 {
        let response = http.get(format!("{}/models/", gw.router_url)).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // The router samples the proxy every 2 s and the page redraws every 10 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let drawn = loop {
        let values = browser.eval(series).await.as_str().unwrap_or("").to_owned();
        let total: f64 = values.split(',').filter_map(|v| v.parse::<f64>().ok()).sum();
        if total > 0.0 {
            break values;
        }
        assert!(tokio::time::Instant::now() < deadline, "the open page's chart never moved: {values:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(browser.eval("window.__not_reloaded === true").await, true, "redrawn in place: {drawn}");
    browser.screenshot(&artifact("6-traffic-redrawn.png")).await;
}
