//! `weft`: the command-line host, a thin layer over `weft_host`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use weft_host::config::Config;
use weft_host::Host;

const USAGE: &str = "\
weft — runs event-driven microservices as WebAssembly components

usage:
  weft [run] [--config <runtime.toml>]   start the host (default: ./runtime.toml)
  weft check [--config <runtime.toml>]   validate the configuration and exit
  weft keys list [--config …]            list the token signing keys (newest signs)
  weft keys rotate [--config …]          add a new signing key; older keys keep
                                         verifying until their files are removed;
                                         restart the host to use it
  weft --help

environment:
  WEFT_HTTP_ADDR   gateway address, e.g. 127.0.0.1:8080
  WEFT_DATA_DIR    databases and compiled-component cache
  WEFT_NATS_URL    use NATS instead of the local bus (not in this version)
  WEFT_LOG         log filter, e.g. info or weft_host=debug
";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let mut command = "run".to_string();
    let mut config_path = PathBuf::from("runtime.toml");
    if let Some(first) = args.peek() {
        if !first.starts_with('-') {
            command = args.next().unwrap_or_default();
        }
    }
    if command == "keys" {
        match args.next().as_deref() {
            Some(sub @ ("list" | "rotate")) => command = format!("keys {sub}"),
            _ => bail!("usage: weft keys list|rotate [--config <runtime.toml>]"),
        }
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                config_path = args
                    .next()
                    .map(PathBuf::from)
                    .context("--config needs a path")?;
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument `{other}`\n\n{USAGE}"),
        }
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut config = Config::load(&config_path)?;
    config.apply_env(std::env::vars())?;
    match command.as_str() {
        "check" => {
            println!(
                "{}: ok, {} component(s)",
                config_path.display(),
                config.components.len()
            );
            Ok(())
        }
        "run" => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?
            .block_on(run(config)),
        "keys list" | "keys rotate" => {
            let dir = config
                .auth
                .keys_dir
                .clone()
                .unwrap_or_else(|| config.data.dir.join("keys"));
            if command == "keys rotate" {
                let kid = weft_host::auth::generate_key(&dir)?;
                println!("new signing key {kid} in {}", dir.display());
            }
            let tokens = weft_host::auth::TokenService::load(&config.auth, &config.data.dir)?;
            for key in tokens.jwks()["keys"].as_array().into_iter().flatten() {
                let kid = key["kid"].as_str().unwrap_or("?");
                let role = if kid == tokens.signing_kid() {
                    "signs and verifies"
                } else {
                    "verifies"
                };
                println!("{kid}  {role}");
            }
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let host = Host::start(config).await?;
    if let Some(addr) = host.http_addr() {
        println!("weft listening on http://{addr}");
    }
    wait_for_signal().await?;
    host.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
