//! `clearml-gateway-demo`: the whole gateway on this machine (ClearML emulator, example tasks,
//! nginx proxy, router); prints URLs to open or curl. See `--help`.

use clap::Parser;
use gateway_testkit::demo::{self, DemoArgs};

#[derive(Parser)]
#[command(
    name = "clearml-gateway-demo",
    version,
    about = "Run the gateway on this machine: a ClearML emulator with example tasks, task apps, \
             an nginx proxy and the router; prints the URLs to open."
)]
struct Cli {
    #[command(flatten)]
    args: DemoArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,hyper=warn,reqwest=warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .init();
    match demo::run(cli.args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
