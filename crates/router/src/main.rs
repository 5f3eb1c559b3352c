//! `clearml-router`: the gateway's control plane. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use clearml_api as clearml;
use clearml_router::app;
use clearml_router::config::{env, ConfigError, Defaults, LogLevel, QueueFilter, RawEnv, Settings};
use clearml_router::dry_run::DryRun;
use clearml_router::router::{identity, target_policy, tcp_plan};
use clearml_router::selftest::SelfTest;
use clearml_router::status::StatusServer;
use gateway_core::routes_file::table_from_routes_file;
use gateway_core::snapshot::Snapshot;
use gateway_core::table::RouteTable;

const ABOUT: &str = "Routes ClearML tasks that ask for an external endpoint through an nginx + Lua \
proxy (open-source drop-in for the task_traffic_router container).";

#[derive(Parser)]
#[command(name = "clearml-router", version, about = ABOUT, after_help = clearml_router::config::help())]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = env::ROUTER_LOG_JSON)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router: poll ClearML, keep the proxy's routes current, publish endpoints (default).
    Run,
    /// Render and validate the proxy config without touching ClearML tasks or the proxy.
    ///
    /// Reads the tasks from --snapshot (JSON: {"tasks": [...]}, as tasks.get_all returns them) or,
    /// without it, from one read-only poll of the ClearML server configured in the environment.
    /// Writes the files into --out, prints a summary of routes and refusals, and a diff against
    /// --previous. Exit status: 0 valid, 1 invalid (or refusals with --strict), 2 bad input.
    ConfigDryRun {
        /// Snapshot file with the tasks to render.
        #[arg(long)]
        snapshot: Option<PathBuf>,
        /// Directory for the rendered files (created if missing).
        #[arg(long, default_value = "dry-run")]
        out: PathBuf,
        /// A previous output directory to diff against.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Fail when any task or endpoint is refused.
        #[arg(long)]
        strict: bool,
    },
    /// Self-test a running router: a test task is enqueued on QUEUE, an agent runs it, and the
    /// router must route it and pass traffic to it. Prints the report; exit 0 if it passed.
    ///
    /// Asks the router at ROUTER_STATUS_ADDRESS (same environment as the router).
    Test {
        /// The queue an agent in the task network serves.
        #[arg(long)]
        queue: String,
        /// Seconds an agent may take to pick the test task up.
        #[arg(long, default_value_t = 120)]
        pickup_timeout: u64,
    },
}

fn init_logging(json: bool, level: LogLevel) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn")));
    use std::io::IsTerminal;
    // Colour only on a terminal: `docker logs` and log shippers get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn settings_or_exit(raw: Result<RawEnv, ConfigError>) -> Result<Settings, ExitCode> {
    let result = raw.map_err(|e| vec![e]).and_then(Settings::from_raw);
    result.map_err(|errors| {
        for e in errors {
            eprintln!("configuration error: {e}");
        }
        ExitCode::from(2)
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let raw = RawEnv::from_process_env();
    // Logging starts before the settings are checked; a bad level is reported with them.
    let level = raw.as_ref().ok().and_then(|r| LogLevel::parse(r.var(env::LOGGER_LEVEL).value?));
    init_logging(cli.log_json, level.unwrap_or(Defaults::default().log_level));
    for warning in raw.as_ref().map(RawEnv::warnings).unwrap_or_default() {
        tracing::warn!("{warning}");
    }
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let settings = match settings_or_exit(raw) {
                Ok(s) => s,
                Err(code) => return code,
            };
            run(settings).await
        }
        Command::ConfigDryRun { snapshot, out, previous, strict } => {
            return dry_run(raw, snapshot, out, previous, strict).await;
        }
        Command::Test { queue, pickup_timeout } => {
            let settings = match settings_or_exit(raw) {
                Ok(s) => s,
                Err(code) => return code,
            };
            return self_test(&settings, &queue, pickup_timeout).await;
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let status_address = settings.status_address;
    let router = app::router(settings.clone())?;
    let server = StatusServer {
        static_admin: settings.static_routes_file.clone().map(|path| {
            clearml_router::status::admin::StaticAdmin::new(
                path,
                clearml_router::router::target_policy(&settings),
            )
        }),
        status: router.status(),
        api_metrics: router.api_metrics(),
        probe: router.proxy_probe(),
        self_test: Some(std::sync::Arc::new(SelfTest {
            client: app::clearml_client(&settings)?,
            publish: {
                let status = router.status();
                std::sync::Arc::new(move |report| status.set_self_test(report))
            },
            router_name: settings.router_name.clone(),
            pickup_timeout: std::time::Duration::from_secs(120),
            route_timeout: std::time::Duration::from_secs(60),
            auth_enabled: settings.auth.enabled,
        })),
        self_test_lock: Default::default(),
        gateway_tokens: match &settings.gateway_tokens_file {
            Some(file) => Some(clearml_router::gateway_tokens::TokenStore::open(
                file.clone(),
                settings.proxy.lua_dir.clone(),
            )?),
            None => None,
        },
        guard: clearml_router::status::guard::Guard::new(
            settings.operator_token.clone(),
            status_address,
            &settings.router_url,
            settings.auth.secure_cookies,
        ),
        traffic: Default::default(),
    };
    let bound = server.spawn(status_address).await?;
    tracing::info!(address = %bound, "status page, API and metrics at http://{bound}/");
    router.run(shutdown_signal()).await;
    Ok(())
}

/// `test --queue Q`: asks the running router to self-test and prints its report.
async fn self_test(settings: &Settings, queue: &str, pickup_timeout: u64) -> ExitCode {
    let mut address = settings.status_address;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{address}/api/self-test");
    let http = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(300)).build();
    let response = match http.map(|h| {
        let request = h
            .post(&url)
            .json(&serde_json::json!({ "queue": queue, "pickup_timeout_seconds": pickup_timeout }));
        match &settings.operator_token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }) {
        Ok(request) => request.send().await,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match response {
        Ok(r) => {
            r.json::<serde_json::Value>().await.ok().and_then(clearml_router::selftest::report_from_json)
        }
        Err(e) => {
            eprintln!(
                "error: cannot reach the router at {url}: {e} (is it running? is {} the same?)",
                env::ROUTER_STATUS_ADDRESS
            );
            return ExitCode::from(2);
        }
    };
    let Some(report) = report else {
        eprintln!("error: the router at {url} did not return a self-test report");
        return ExitCode::from(2);
    };
    println!("status:           {}", report.status);
    println!("message:          {}", report.message);
    if let Some(reason) = &report.reason {
        println!("reason:           {reason}");
    }
    println!("queue:            {}", report.queue);
    println!("worker:           {}", report.worker.as_deref().unwrap_or("-"));
    println!("task:             {} {}", report.task_name, report.task_id.as_deref().unwrap_or(""));
    println!("started:          {}", report.started.as_deref().unwrap_or("-"));
    println!("completed:        {}", report.completed.as_deref().unwrap_or("-"));
    println!("run time:         {:.1} s", report.run_time_seconds.unwrap_or_default());
    println!("endpoint:         {}", report.endpoint.as_deref().unwrap_or("-"));
    println!("browser endpoint: {}", report.browser_endpoint.as_deref().unwrap_or("-"));
    for line in &report.log {
        println!("  {line}");
    }
    if report.status == "passed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn dry_run(
    raw: Result<RawEnv, ConfigError>,
    snapshot: Option<PathBuf>,
    out: PathBuf,
    previous: Option<PathBuf>,
    strict: bool,
) -> ExitCode {
    // A snapshot needs no ClearML: fill the connection settings with placeholders the env may override.
    let placeholders = [
        (env::ROUTER_URL, "http://localhost:8080"),
        // An IP, so that nginx -t needs no DNS for the auth subrequest's upstream.
        (env::CLEARML_API_HOST, "http://127.0.0.1:8008"),
        (env::CLEARML_API_ACCESS_KEY, "unused"),
        (env::CLEARML_API_SECRET_KEY, "unused"),
    ];
    let raw = raw.map(|mut raw| {
        if snapshot.is_some() {
            placeholders.into_iter().for_each(|(name, value)| raw.set_if_unset(name, value));
        }
        raw
    });
    let settings = match settings_or_exit(raw) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = async {
        let snapshot = match &snapshot {
            Some(path) => Snapshot::from_file(path)?,
            None => poll_once(&settings).await?,
        };
        // Keep the TCP ports of the previous output, so that the diff shows real changes only.
        let previous_ports = previous
            .as_ref()
            .and_then(|dir| std::fs::read(dir.join("lua").join(gateway_render::ROUTES_FILE)).ok())
            .map(|bytes| table_from_routes_file(&bytes).tcp_ports())
            .unwrap_or_default();
        let plan = tcp_plan(&settings, previous_ports);
        let policy = target_policy(&settings);
        let mut table = RouteTable::build_with(&snapshot, &policy, &plan, &identity(&settings));
        let mut statics = clearml_router::router::StaticInputs::new(&settings);
        statics.refresh(&policy);
        if let Some(error) = statics.errors().first() {
            anyhow::bail!("{error}");
        }
        statics.attach(&settings, &mut table);
        let mut layout = app::layout(&settings, snapshot.company.clone());
        // The certificates the router would serve now (files, ACME certificates already issued).
        let mut tls = clearml_router::tls::Tls::new(&settings, &settings.proxy.lua_dir);
        tls.refresh();
        let hosts = clearml_router::tls::Tls::hosts(&settings, &table);
        layout.tls = tls.layout(&hosts, &table.router_host);
        for cert in tls.views(&hosts) {
            if let Some(error) = &cert.error {
                eprintln!("certificate {} ({}): {error}", cert.names.join(", "), cert.source);
            }
        }
        let dry = DryRun {
            layout,
            router_url: settings.router_url.clone(),
            validator: app::validator(&settings),
            out_dir: out.clone(),
            previous,
        };
        let result = dry.run(&table).await?;
        anyhow::Ok((table, result))
    }
    .await;
    match result {
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Ok((table, result)) => {
            print!("{}", result.summary);
            println!("Files written to {}", out.display());
            if let Some(diff) = &result.diff {
                if diff.is_empty() {
                    println!("Diff against previous output: no changes");
                } else {
                    println!("Diff against previous output:\n{diff}");
                }
            }
            if !result.validation.ok() {
                eprintln!("invalid: {}", result.validation.failure_summary());
                ExitCode::from(1)
            } else if strict && !table.refusals.is_empty() {
                eprintln!("refused {} task endpoint(s) and --strict is set", table.refusals.len());
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

/// One read-only poll of ClearML (same query as the router's).
async fn poll_once(settings: &Settings) -> anyhow::Result<Snapshot> {
    let client = app::clearml_client(settings)?;
    let query = match &settings.queues {
        QueueFilter::All => clearml::TaskQuery { queue_ids: None },
        QueueFilter::Names(patterns) => {
            let mut ids = Vec::new();
            for p in patterns {
                let found = client.queues_matching(&clearml_router::config::queue_pattern_regex(p)).await?;
                ids.extend(found.into_iter().map(|(id, _)| id));
            }
            clearml::TaskQuery { queue_ids: Some(ids) }
        }
    };
    let tasks = client.tasks_requesting_endpoints(&query).await.context("polling ClearML")?;
    let company = if settings.auth.enabled { Some(client.own_company().await?) } else { None };
    Ok(Snapshot { tasks, company })
}
