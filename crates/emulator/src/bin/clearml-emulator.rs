//! Stand-alone ClearML API server emulator for demos, Python tests and benchmarks.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use clearml_emulator::{self as emulator, EmulatorConfig, FeatureSet, NewTask};
use gateway_core::env;
use serde_json::json;
use tracing_subscriber::EnvFilter;

/// Emulates the ClearML API server (auth, tasks, queues, users, routers) well enough for the
/// `clearml` SDK's `Task.request_external_endpoint` and for the gateway router.
///
/// Prints `CLEARML_API_HOST=<url>` on stdout once listening, then serves until SIGINT/SIGTERM.
/// Tokens are HS256 JWTs with `feature_set: advanced` (an enterprise server), or `basic` with
/// `--feature-set basic` (the open-source server: the SDK refuses endpoint requests and
/// `routers.*` answers 404 like any unknown endpoint). An unauthenticated admin API lives under
/// `/_emulator/` on the same port: `POST /_emulator/tasks` (create a task), `GET|DELETE
/// /_emulator/tasks/{id}`, `POST /_emulator/tasks/{id}/status`, `POST
/// /_emulator/tasks/{id}/runtime`, `POST /_emulator/queues`, `POST /_emulator/users`, `POST
/// /_emulator/users/{id}/tokens`, `POST /_emulator/users/{id}/revoke`, `POST /_emulator/faults`,
/// `POST /_emulator/available`, `GET /_emulator/stats`, `POST /_emulator/stats/reset`, `GET
/// /_emulator/calls`, `POST /_emulator/routes`. Logging follows RUST_LOG (default: info; use
/// `debug` to see every API call).
#[derive(Debug, Parser)]
#[command(name = "clearml-emulator", version, verbatim_doc_comment)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8008")]
    bind: SocketAddr,

    /// Access key of the default user [default: emulator-access-key].
    #[arg(long, env = env::CLEARML_API_ACCESS_KEY)]
    access_key: Option<String>,

    /// Secret key of the default user [default: emulator-secret-key].
    #[arg(long, env = env::CLEARML_API_SECRET_KEY, hide_env_values = true)]
    secret_key: Option<String>,

    /// HS256 secret for tokens and cookies (default: the emulator's fixed test secret).
    #[arg(long, env = "CLEARML_EMULATOR_TOKEN_SECRET", hide_env_values = true)]
    token_secret: Option<String>,

    /// `advanced` plays an enterprise server, `basic` the open-source one.
    #[arg(long, env = "CLEARML_EMULATOR_FEATURE_SET", default_value = "advanced", value_parser = str::parse::<FeatureSet>)]
    feature_set: FeatureSet,

    /// Create this queue (repeatable); seeded tasks go to the first one.
    #[arg(long = "queue", value_name = "NAME")]
    queues: Vec<String>,

    /// Create N in_progress tasks asking for an http endpoint (tag `external_service`, runtime
    /// `_SERVICE: EXTERNAL, _ADDRESS: 127.0.0.1, _PORT: 9000 + i % 1000`), for benchmarks.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed_tasks: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    // An empty variable (e.g. `CLEARML_API_ACCESS_KEY=` in an env file) means "unset".
    let given = |value: Option<String>| value.filter(|v| !v.is_empty());
    let mut config = EmulatorConfig { feature_set: args.feature_set, ..EmulatorConfig::default() };
    if let Some(key) = given(args.access_key) {
        config.access_key = key;
    }
    if let Some(secret) = given(args.secret_key) {
        config.secret_key = secret;
    }
    if let Some(secret) = given(args.token_secret) {
        config.token_secret = secret.into_bytes();
    }
    let handle = emulator::start(config, args.bind).await?;

    let queue = args.queues.iter().map(|name| handle.create_queue(name)).next();
    for i in 0..args.seed_tasks {
        handle.create_task(NewTask {
            name: format!("seed-task-{i}"),
            queue: queue.clone(),
            runtime: json!({"_SERVICE": "EXTERNAL", "_ADDRESS": "127.0.0.1", "_PORT": 9000 + i % 1000}),
            system_tags: vec!["external_service".into()],
            ..NewTask::default()
        });
    }

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}={}", env::CLEARML_API_HOST, handle.url())?;
    stdout.flush()?;
    drop(stdout);

    wait_for_signal().await?;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
