//! `demo`: the whole gateway on one machine. A ClearML emulator with example tasks, small task
//! apps, a local nginx proxy and the router; prints URLs to open or curl.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;

use crate::local_proxy::LocalProxy;
use clearml_emulator::{self as emulator, EmulatorConfig, EmulatorHandle, NewTask};
use clearml_router::config::{env, Defaults, RawEnv, Settings};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Port the proxy serves endpoints on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port of the ClearML emulator.
    #[arg(long, default_value_t = 8008)]
    pub clearml_port: u16,
    /// Loopback port of the proxy's control listener.
    #[arg(long, default_value_t = 18080)]
    pub control_port: u16,
    /// Port of the router's status page (loopback).
    #[arg(long, default_value_t = 18081)]
    pub status_port: u16,
    /// Working directory for the proxy's config, Lua and logs.
    #[arg(long, default_value = "/tmp/clearml-gateway-demo")]
    pub dir: PathBuf,
    /// Check every example URL, print the results and exit (non-zero if one fails).
    #[arg(long)]
    pub smoke: bool,
}

struct ExampleTask {
    id: String,
    title: &'static str,
    path_hint: &'static str,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let emulator =
        emulator::start(EmulatorConfig::default(), SocketAddr::from(([127, 0, 0, 1], args.clearml_port)))
            .await
            .context("starting the ClearML emulator (is the port free? try --clearml-port)")?;
    let notebook_app = crate::sample_apps::start(SocketAddr::from(([127, 0, 0, 1], 0)), "notebook").await?;
    let model_app = crate::sample_apps::start(SocketAddr::from(([127, 0, 0, 1], 0)), "model-server").await?;
    let tasks = create_example_tasks(&emulator, notebook_app, model_app);

    let settings = demo_settings(&args, &emulator)?;
    let _ = std::fs::remove_dir_all(&args.dir);
    let proxy = LocalProxy::start(
        &settings.proxy.nginx_bin,
        &args.dir,
        &clearml_router::app::layout(&settings, None),
        2,
        true,
    )
    .await
    .context("starting nginx for the demo")?;
    let mut settings = settings;
    settings.proxy.pid_file = proxy.pid_file();
    let router = clearml_router::app::router(settings.clone())?;
    let status_address = SocketAddr::from(([127, 0, 0, 1], args.status_port));
    let status = clearml_router::status::StatusServer {
        status: router.status(),
        api_metrics: router.api_metrics(),
        probe: clearml_router::apply::probe::ProxyProbe::new(args.control_port),
        self_test: None,
        self_test_lock: Default::default(),
        static_admin: None,
        gateway_tokens: None,
        guard: clearml_router::status::guard::Guard::new(
            None,
            status_address,
            &settings.router_url,
            settings.auth.secure_cookies,
        ),
        traffic: Default::default(),
    }
    .spawn(status_address)
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let router_task = tokio::spawn(router.run(async {
        let _ = stop_rx.await;
    }));

    wait_for_endpoints(&emulator, &tasks).await?;
    let token = emulator.mint_token(&EmulatorConfig::default().user_id, Duration::from_secs(24 * 3600));
    print_guide(&settings.router_url, &emulator, &tasks, &args, &token);
    println!("Status page, JSON and metrics: http://{status}/  (api/status, metrics)");

    let result = if args.smoke {
        smoke_check(&settings.router_url, &emulator, &tasks, &token).await
    } else {
        tokio::signal::ctrl_c().await?;
        Ok(())
    };
    let _ = stop_tx.send(());
    let _ = router_task.await;
    proxy.stop();
    emulator.shutdown().await;
    result
}

fn demo_settings(args: &DemoArgs, emulator: &EmulatorHandle) -> anyhow::Result<Settings> {
    let config = EmulatorConfig::default();
    let nginx_bin =
        std::env::var(env::ROUTER_NGINX_BIN).unwrap_or_else(|_| Defaults::default().nginx_bin.into());
    let vars = [
        (env::ROUTER_NAME, "demo".to_owned()),
        (env::ROUTER_URL, format!("http://127.0.0.1:{}", args.port)),
        (env::SERVER_PORT, args.port.to_string()),
        (env::ROUTER_PROXY_CONTROL_PORT, args.control_port.to_string()),
        (env::CLEARML_API_HOST, emulator.url()),
        (env::CLEARML_API_ACCESS_KEY, config.access_key),
        (env::CLEARML_API_SECRET_KEY, config.secret_key),
        (env::ROUTER_CONF_DIR, args.dir.join("conf.d").display().to_string()),
        (env::ROUTER_LUA_DIR, args.dir.join("lua").display().to_string()),
        (env::ROUTER_NGINX_PID_FILE, args.dir.join("nginx.pid").display().to_string()),
        (env::ROUTER_NGINX_BIN, nginx_bin),
        (env::ROUTER_ALLOW_LOOPBACK_TARGETS, "true".into()),
        // The emulator stands in for the web app's login page (sets the cookie, comes back).
        (env::AUTH_LOGIN_URL, format!("{}/_emulator/login", emulator.url())),
        (env::ROUTER_POLL_INTERVAL_SECONDS, "0.5".into()),
        (env::TCP_PORT_START, "10000".into()),
        (env::TCP_PORT_END, "10100".into()),
    ];
    let raw = RawEnv::from_vars(vars.into_iter().map(|(k, v)| (k.to_owned(), v)));
    Settings::from_raw(raw).map_err(|errors| {
        anyhow::anyhow!(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    })
}

/// Tasks as the SDK leaves them after `request_external_endpoint`, plus one the router must refuse.
fn create_example_tasks(
    emulator: &EmulatorHandle,
    notebook: SocketAddr,
    model: SocketAddr,
) -> Vec<ExampleTask> {
    let tagged = |name: &str, runtime: serde_json::Value| NewTask {
        name: name.into(),
        status: "in_progress".into(),
        runtime,
        system_tags: vec!["external_service".into()],
        ..NewTask::default()
    };
    let notebook_id = emulator.create_task(tagged(
        "Jupyter-like notebook",
        json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": notebook.port()}),
    ));
    let model_id = emulator.create_task(tagged(
        "Model server (named endpoint 'api')",
        json!({"_SERVICE__api": "EXTERNAL", "_ADDRESS__api": "127.0.0.1", "_PORT__api": model.port()}),
    ));
    emulator.create_task(tagged(
        "Hostile task (asks for the cloud metadata service)",
        json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "169.254.169.254", "_PORT": 80}),
    ));
    vec![
        ExampleTask { id: notebook_id, title: "notebook", path_hint: "" },
        ExampleTask { id: model_id, title: "model server", path_hint: "__api" },
    ]
}

async fn wait_for_endpoints(emulator: &EmulatorHandle, tasks: &[ExampleTask]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = tasks.iter().all(|t| endpoint_of(emulator, t).is_some());
        if ready {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the router did not publish the example endpoints within 20 s; see the log above");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn endpoint_of(emulator: &EmulatorHandle, task: &ExampleTask) -> Option<String> {
    let key = format!("endpoint{}", task.path_hint);
    emulator.task(&task.id)?.get("runtime")?.get(&key)?.as_str().map(str::to_owned)
}

fn print_guide(
    router_url: &str,
    emulator: &EmulatorHandle,
    tasks: &[ExampleTask],
    args: &DemoArgs,
    token: &str,
) {
    println!("\nClearML gateway demo is running.\n");
    println!("  ClearML emulator: {}", emulator.url());
    println!("  Proxy:            {router_url}  (nginx, config in {})", args.dir.display());
    println!("\nEndpoints need a ClearML login. In a browser, open an endpoint: the login page links to");
    println!("the emulator's stand-in for the ClearML login, which sets the cookie and brings you back.");
    println!("Scripts send a token as `Authorization: Bearer $TOKEN`; one for the emulator's user (24 h):");
    println!("  TOKEN={token}");
    println!("\nEndpoints the router published on the tasks:");
    for task in tasks {
        if let Some(url) = endpoint_of(emulator, task) {
            println!("  {:<14} {url}", task.title);
            println!("  {:<14} curl -H \"Authorization: Bearer $TOKEN\" {url}echo/hello", "");
        }
    }
    println!(
        "\nWithout a login:                      curl -i {}",
        tasks.first().and_then(|t| endpoint_of(emulator, t)).unwrap_or_default()
    );
    println!("A task that stopped or never existed: curl -i -H \"Authorization: Bearer $TOKEN\" {router_url}/service/0123456789abcdef/");
    println!("The hostile task (metadata address) was refused; see the warning in the log.");
    if !args.smoke {
        println!("\nPress Ctrl-C to stop.");
    }
}

/// Fetches every example URL through the proxy and checks the answers.
async fn smoke_check(
    router_url: &str,
    emulator: &EmulatorHandle,
    tasks: &[ExampleTask],
    token: &str,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().build()?;
    let mut failures = Vec::new();
    let mut check = |what: String, ok: bool| {
        println!("smoke: {what} {}", if ok { "ok" } else { "UNEXPECTED" });
        if !ok {
            failures.push(what);
        }
    };
    for task in tasks {
        let url = endpoint_of(emulator, task).context("endpoint disappeared")?;
        let response = http.get(format!("{url}echo/hello?x=1")).bearer_auth(token).send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        check(
            format!("GET {url}echo/hello?x=1 with a login -> {status}"),
            status == 200 && body["uri"] == "/echo/hello?x=1",
        );
        let anonymous = http.get(&url).send().await?.status();
        check(format!("GET {url} without a login -> {anonymous}"), anonymous == 401);
    }
    let first = tasks.first().and_then(|t| endpoint_of(emulator, t)).context("no endpoint")?;
    let login_page = http.get(&first).header("accept", "text/html").send().await?.text().await?;
    check(
        format!("login page of {first} links to the login"),
        login_page.contains("/_emulator/login?redirect="),
    );
    let no_redirects =
        reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build()?;
    let login =
        no_redirects.get(format!("{}/_emulator/login?redirect={first}", emulator.url())).send().await?;
    let cookie = login.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();
    let with_cookie = http.get(&first).header("cookie", cookie).send().await?.status();
    check(format!("GET {first} with the login cookie -> {with_cookie}"), with_cookie == 200);
    let missing =
        http.get(format!("{router_url}/service/0123456789abcdef/")).bearer_auth(token).send().await?.status();
    check(format!("GET {router_url}/service/0123456789abcdef/ -> {missing}"), missing == 404);
    if failures.is_empty() {
        println!("smoke: all checks passed");
        Ok(())
    } else {
        bail!("smoke checks failed: {failures:?}")
    }
}
