//! `weft`: the command-line host, a thin layer over `weft_host`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use hyper::Method;
use weft_host::config::Config;
use weft_host::Host;

const USAGE: &str = "\
weft — runs event-driven microservices as WebAssembly components

usage:
  weft [run] [--config <runtime.toml>] [--components a,b]
                                         start the host (default: ./runtime.toml),
                                         running all its components or the named ones
  weft check [--config <runtime.toml>]   validate the configuration and exit
  weft keys list [--config …]            list the token signing keys (newest signs)
  weft keys rotate [--config …]          add a new signing key; older keys keep
                                         verifying until their files are removed;
                                         restart the host to use it
  weft reload <component> [file.wasm] [--config …] [--url http://host:port]
                                         swap a running component to file.wasm
                                         (default: its configured file, read again)
  weft rollback <component> [--config …] [--url …]
                                         return it to the version it ran before
  weft dlq list [--component <name>] [--config …] [--url …]
                                         list the dead letters (events that failed
                                         every delivery)
  weft dlq replay <id>|--all [--component <name>] [--config …] [--url …]
                                         deliver dead letter <id> (e.g. bpm:3), or all
                                         of them, once more; those that succeed are gone
  weft operator token [--config …]       print an operator token for the admin API
                                         (valid 5 minutes), e.g. for curl
  weft iam create-admin <username> --email <email> [--org <orgId>] [--config …] [--url …]
                                         create the admin account <username> (listed in
                                         iam's `admins`); the password is read from
                                         WEFT_ADMIN_PASSWORD or the first line of stdin
  weft new <name>                        create components/<name> (a handler and its
                                         tests) and wire it in; run from the
                                         project's top folder
  weft --help

environment:
  WEFT_HTTP_ADDR   gateway address, e.g. 127.0.0.1:8080
  WEFT_DATA_DIR    databases and compiled-component cache
  WEFT_NATS_URL    use NATS (core + JetStream) at this URL instead of the local bus
  WEFT_COMPONENTS  run only these components (comma-separated), as --components
  WEFT_WATCH=1     reload every component when its .wasm file changes
  WEFT_LOG         log filter, e.g. info or weft_host=debug
";

/// glibc's allocator took a tenth of the CPU of the durable event path;
/// with mimalloc the durable bench went from ~50k to ~58k events/s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let mut command = "run".to_string();
    let mut config_path = PathBuf::from("runtime.toml");
    if let Some(first) = args.peek() {
        if !first.starts_with('-') {
            command = args.next().unwrap_or_default();
        }
    }
    if command == "new" {
        let name = match (args.next(), args.next()) {
            (Some(name), None) => name,
            _ => bail!("usage: weft new <name>"),
        };
        let created = weft_host::scaffold::new_component(std::path::Path::new("."), &name)?;
        for file in &created.files {
            println!("created {}", file.display());
        }
        for file in &created.edited {
            println!("added {name} to {}", file.display());
        }
        println!("next: just test-component {name}");
        return Ok(());
    }
    if command == "keys" {
        match args.next().as_deref() {
            Some(sub @ ("list" | "rotate")) => command = format!("keys {sub}"),
            _ => bail!("usage: weft keys list|rotate [--config <runtime.toml>]"),
        }
    }
    if command == "operator" {
        match args.next().as_deref() {
            Some("token") => command = "operator token".into(),
            _ => bail!("usage: weft operator token [--config <runtime.toml>]"),
        }
    }
    if command == "iam" {
        match args.next().as_deref() {
            Some("create-admin") => command = "iam create-admin".into(),
            _ => {
                bail!("usage: weft iam create-admin <username> --email <email>  (see weft --help)")
            }
        }
    }
    if command == "dlq" {
        match args.next().as_deref() {
            Some(sub @ ("list" | "replay")) => command = format!("dlq {sub}"),
            _ => bail!("usage: weft dlq list|replay …  (see weft --help)"),
        }
    }
    // reload / rollback: the component, then (reload only) an optional file;
    // dlq replay: the dead letter's id.
    let mut positional = Vec::new();
    let mut url = None;
    let mut only_component = None;
    let mut placement = None;
    let mut all = false;
    let mut email = None;
    let mut org = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--email" if command == "iam create-admin" => {
                email = Some(args.next().context("--email needs an address")?)
            }
            "--org" if command == "iam create-admin" => {
                org = Some(args.next().context("--org needs an org id")?)
            }
            "--url" => url = Some(args.next().context("--url needs an address")?),
            "--component" if command.starts_with("dlq") => {
                only_component = Some(args.next().context("--component needs a name")?)
            }
            "--all" if command == "dlq replay" => all = true,
            "--components" if command == "run" => {
                placement = Some(
                    args.next()
                        .context("--components needs a list like iam,bpm")?,
                )
            }
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
            other
                if !other.starts_with('-')
                    && matches!(
                        command.as_str(),
                        "reload" | "rollback" | "dlq replay" | "iam create-admin"
                    ) =>
            {
                positional.push(other.to_owned());
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
    if let Some(list) = &placement {
        config.only_components(list)?;
    }
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
        "reload" | "rollback" => {
            let (name, file) = match (command.as_str(), positional.as_slice()) {
                ("reload", [name]) => (name, None),
                ("reload", [name, file]) => (name, Some(PathBuf::from(file))),
                ("rollback", [name]) => (name, None),
                _ => bail!(
                    "usage: weft {command} <component>{}  [--config …] [--url …]",
                    if command == "reload" {
                        " [file.wasm]"
                    } else {
                        ""
                    }
                ),
            };
            let body = match &file {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => Vec::new(),
            };
            let path = format!("/admin/components/{name}/{command}");
            let answer = admin(&config, url, Method::POST, &path, body)?;
            print_swap(&answer);
            Ok(())
        }
        "dlq list" | "dlq replay" => {
            let path = match (command.as_str(), positional.as_slice(), all) {
                ("dlq list", [], false) => "/admin/dead-letters".to_owned(),
                ("dlq replay", [id], false) => format!("/admin/dead-letters/{id}/replay"),
                ("dlq replay", [], true) => "/admin/dead-letters/replay".to_owned(),
                _ => {
                    bail!("usage: weft dlq list | weft dlq replay <id>|--all  [--component <name>]")
                }
            };
            let path = match &only_component {
                Some(name) => format!("{path}?component={name}"),
                None => path,
            };
            let method = if command == "dlq list" {
                Method::GET
            } else {
                Method::POST
            };
            let answer = admin(&config, url, method, &path, Vec::new())?;
            if command == "dlq list" {
                print_dead_letters(&answer)
            } else {
                print_replays(&answer)
            }
        }
        "operator token" => {
            println!("{}", operator_key(&config)?.mint()?);
            Ok(())
        }
        "iam create-admin" => {
            let ([username], Some(email)) = (positional.as_slice(), email) else {
                bail!("usage: weft iam create-admin <username> --email <email> [--org <orgId>]");
            };
            let password = match std::env::var("WEFT_ADMIN_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    eprintln!("password for {username} (one line on stdin):");
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("cannot read the password from stdin")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let mut body = serde_json::json!({
                "username": username, "email": email, "password": password,
            });
            if let Some(org) = org {
                body["orgId"] = org.into();
            }
            let answer = admin(
                &config,
                url,
                Method::POST,
                "/admin/components/iam/call/admins",
                body.to_string().into_bytes(),
            )?;
            println!(
                "admin {} created: id {}, org {}",
                answer["username"].as_str().unwrap_or("?"),
                answer["id"].as_str().unwrap_or("?"),
                answer["orgId"].as_str().unwrap_or("?"),
            );
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// Calls the running host's admin API (at `url`, default the configured
/// address) with an operator token minted from the operator key in the
/// data directory.
fn admin(
    config: &Config,
    url: Option<String>,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<serde_json::Value> {
    let base = url.unwrap_or_else(|| format!("http://{}", config.http.addr));
    let token = operator_key(config)?.mint()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(admin_call(&base, method, path, body, &token))
}

/// The operator key of the host `config` describes (created if missing).
fn operator_key(config: &Config) -> anyhow::Result<weft_host::operator::OperatorKey> {
    Ok(weft_host::operator::OperatorKey::load_or_create(
        &config.auth.keys_dir(&config.data.dir),
        &config.auth.issuer,
    )?)
}

/// Calls the running host's admin API; its JSON answer, or why not.
async fn admin_call(
    base: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
    token: &str,
) -> anyhow::Result<serde_json::Value> {
    use http_body_util::BodyExt;
    let authority = base
        .strip_prefix("http://")
        .context("--url must start with http://")?
        .trim_end_matches('/')
        .to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("no weft host answers at {base}; is it running (`just run`)?"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(
            hyper::header::CONTENT_TYPE,
            if path.ends_with("/reload") {
                "application/wasm"
            } else {
                "application/json"
            },
        )
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    let answer: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
    if !status.is_success() {
        let code = answer["error"]["code"].as_str().unwrap_or("no_code");
        let message = answer["error"]["message"].as_str().unwrap_or("no message");
        bail!("{status} {code}: {message}");
    }
    Ok(answer)
}

/// `bpm: 1a2b… → 3c4d… in 0.4 ms`.
fn print_swap(answer: &serde_json::Value) {
    let short = |v: &serde_json::Value| {
        v.as_str()
            .unwrap_or("?")
            .chars()
            .take(12)
            .collect::<String>()
    };
    println!(
        "{}: {} → {} in {:.1} ms{}",
        answer["component"].as_str().unwrap_or("?"),
        short(&answer["from"]),
        short(&answer["to"]),
        answer["tookMs"].as_f64().unwrap_or(0.0),
        match answer["migrationsApplied"].as_u64() {
            Some(n) if n > 0 => format!(", {n} migration(s) applied"),
            _ => String::new(),
        }
    );
}

/// One line per dead letter, then the count.
fn print_dead_letters(answer: &serde_json::Value) -> anyhow::Result<()> {
    let list = answer
        .as_array()
        .context("the host answered something else than a list")?;
    for dl in list {
        let event = &dl["event"];
        println!(
            "{:<16} {:<24} event {}  {} attempt(s), last at {}: {}",
            dl["id"].as_str().unwrap_or("?"),
            event["eventType"].as_str().unwrap_or("?"),
            event["id"].as_str().unwrap_or("?"),
            dl["attempts"].as_u64().unwrap_or(0),
            dl["failedAt"].as_str().unwrap_or("?"),
            dl["lastError"].as_str().unwrap_or("?"),
        );
    }
    println!("{} dead letter(s)", list.len());
    Ok(())
}

/// What a replay did; an error when any failed again.
fn print_replays(answer: &serde_json::Value) -> anyhow::Result<()> {
    let replayed = answer["replayed"].as_array().cloned().unwrap_or_default();
    let failed = answer["failed"].as_array().cloned().unwrap_or_default();
    for id in &replayed {
        println!("replayed {}", id.as_str().unwrap_or("?"));
    }
    for f in &failed {
        println!(
            "failed   {}: {}",
            f["id"].as_str().unwrap_or("?"),
            f["error"].as_str().unwrap_or("?")
        );
    }
    println!(
        "{} replayed, {} failed (still dead letters)",
        replayed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        bail!("{} dead letter(s) failed again", failed.len());
    }
    Ok(())
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
