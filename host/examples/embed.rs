//! A program that embeds Weft: it runs IAM, BPM and LGM inside its own
//! process (no HTTP listener), drives them through in-process calls from its
//! own loop, and reacts to their events as they happen.
//!
//! ```sh
//! just build-components          # once: the .wasm files it loads
//! cargo run -p weft_host --example embed
//! ```
//!
//! It registers three users, waits until BPM has opened an account for each
//! (reacting to every `account.created` on the way), logs one user in and
//! reads their accounts, publishes an event of its own, and stops. It exits
//! with an error if any of that does not happen.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use weft_host::http::{Bytes, Request, Response};
use weft_host::{ComponentConfig, Host, HostBuilder};

/// Where `just build-components` puts the components.
fn built(name: &str) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../components/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    if !path.exists() {
        bail!(
            "{} is missing: run `just build-components` first",
            path.display()
        );
    }
    Ok(path)
}

/// One in-process HTTP call; the answer's status and JSON body.
async fn call(host: &Host, request: Request<Bytes>) -> anyhow::Result<(u16, Value)> {
    let response: Response<Bytes> = host.call(request).await;
    let status = response.status().as_u16();
    let body = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
    Ok((status, body))
}

fn post(path: &str, body: &Value) -> anyhow::Result<Request<Bytes>> {
    Ok(Request::post(path)
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("weft-embed-{}", std::process::id()));
    let host = HostBuilder::new()
        .data_dir(&data)
        .component(
            "iam",
            ComponentConfig::from_file(built("iam")?)
                .publish(["user.registered", "user.password_changed"])
                .issue_tokens()
                .config_value("invitation_ttl_secs", 86_400),
        )
        .component(
            "bpm",
            ComponentConfig::from_file(built("bpm")?)
                .subscribe(["user.registered"])
                .publish(["account.created", "transaction.completed"]),
        )
        .component(
            "lgm",
            ComponentConfig::from_file(built("lgm")?).subscribe(["*"]),
        )
        .start()
        .await
        .context("starting the embedded host")?;
    let result = run(&host).await;
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(&data);
    result
}

async fn run(host: &Host) -> anyhow::Result<()> {
    // React to BPM's events on the app's own task.
    let accounts = host.subscribe(&["account.created"]).await?;
    let reactor = tokio::spawn(async move {
        let mut opened = Vec::new();
        while opened.len() < 3 {
            let Ok(event) = accounts.recv().await else {
                break;
            };
            println!(
                "app: BPM opened account {} for user {}",
                event.data["accountId"], event.data["userId"]
            );
            opened.push(event.data["userId"].clone());
        }
        opened
    });

    // The app's own loop: three registrations through IAM, in process.
    for name in ["ada", "grace", "edsger"] {
        let body = json!({"username": name, "email": format!("{name}@example.com"), "password": "correct horse battery"});
        let (status, user) = call(host, post("/iam/register", &body)?).await?;
        if status != 201 {
            bail!("registering {name}: {status} {user}");
        }
        println!("app: registered {name} as {}", user["id"]);
    }
    let opened = tokio::time::timeout(Duration::from_secs(10), reactor)
        .await
        .context("BPM did not open three accounts within 10 s")??;
    println!("app: {} accounts opened", opened.len());

    // The app publishes an event of its own; LGM (subscribed to `*`) keeps it.
    let id = host
        .publish("app.report", json!({"accountsOpened": opened.len()}))
        .await?;
    println!("app: published app.report {id}");

    // Log in and read the user's accounts, as a client of the components.
    let login = json!({"username": "ada", "password": "correct horse battery"});
    let (status, token) = call(host, post("/iam/login", &login)?).await?;
    if status != 200 {
        bail!("login: {status} {token}");
    }
    let token = token["accessToken"].as_str().unwrap_or_default().to_owned();
    let request = Request::get("/bpm/accounts")
        .header("authorization", format!("Bearer {token}"))
        .body(Bytes::new())?;
    let (status, accounts) = call(host, request).await?;
    if status != 200 {
        bail!("accounts: {status} {accounts}");
    }
    println!("app: ada's accounts: {accounts}");
    Ok(())
}
