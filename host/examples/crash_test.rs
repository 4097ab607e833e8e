//! The crash test: runs the real `weft` binary with iam, bpm, lgm, nsm and
//! the `faulty` test component (which records every event it is given),
//! drives registrations and deposits over HTTP, kills the process with
//! SIGKILL at random moments and restarts it on the same data, then stops
//! it cleanly and checks in the SQLite files that nothing acknowledged was
//! lost and every event was handled exactly once.
//!
//! ```sh
//! just crash-test 10      # builds what it needs first; or, with everything built:
//! cargo run --release -p weft_host --example crash_test -- --cycles 10 [--seed S] [--weft PATH] [--nats URL|own]
//! ```
//!
//! It exits with 0 only when no delivery was lost, none was duplicated and
//! every database passes `PRAGMA integrity_check`. Its temporary directory
//! (config, data, the host's log) is deleted on success and kept otherwise.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

const USAGE: &str =
    "usage: crash_test [--cycles N (10)] [--weft PATH] [--seed S] [--nats URL|own (a nats-server of its own)]";

/// The components the test runs; each has `<data>/db/<name>.sqlite`.
const COMPONENTS: [&str; 5] = ["iam", "bpm", "lgm", "nsm", "faulty"];
/// Clients that only register users (Argon2 makes each ~50 ms of CPU).
const REGISTRATION_CLIENTS: u64 = 4;
/// Clients that register a user, then deposit into its default account.
const TRANSACTION_CLIENTS: u64 = 4;
/// Seconds between a (re)start and the next kill: uniform in this range.
const KILL_GAP_SECS: (f64, f64) = (0.3, 2.5);
/// Load after the last restart, so that the restarted host works too (and
/// `--cycles 0` has something to check).
const FINAL_LOAD: Duration = Duration::from_secs(3);
/// Quiet means: no counter in /health changed for this long.
const QUIET_FOR: Duration = Duration::from_secs(2);
const QUIET_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// A transaction client gives up on a user whose default account never
/// appears (its `user.registered` was lost) and registers another.
const ACCOUNT_WAIT: Duration = Duration::from_secs(10);
/// Pause before retrying a request the host did not answer (it is down).
const RETRY_PAUSE: Duration = Duration::from_millis(100);
const PASSWORD: &str = "crash test password";
/// How many offending ids to print per failed check.
const SHOW_OFFENDERS: usize = 5;

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("crash test: {err:#}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("weft-crash-{}-{}", args.seed, std::process::id()));
    let passed = match run(&args, &dir).await {
        Ok(passed) => passed,
        Err(err) => {
            eprintln!("crash test: error: {err:#}");
            false
        }
    };
    if passed {
        if let Err(err) = fs::remove_dir_all(&dir) {
            eprintln!("crash test: could not delete {}: {err}", dir.display());
        }
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "crash test FAILED (seed {}); kept {} (runtime.toml, data/, weft.log)",
            args.seed,
            dir.display()
        );
        ExitCode::FAILURE
    }
}

/// The whole test; `Ok(false)` when the checks found a problem.
async fn run(args: &Args, dir: &Path) -> Result<bool> {
    println!("crash test: seed {} ({} cycles)", args.seed, args.cycles);
    let root = workspace_root()?;
    check_built(&root, &args.weft)?;

    let data = dir.join("data");
    fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let addr = free_addr()?;
    let config = dir.join("runtime.toml");
    // `--nats own`: a nats-server of the test's own, so that no stream of
    // an earlier run feeds this one.
    let own_server = match args.nats.as_deref() {
        Some("own") => {
            let server = weft_host::nats_server::NatsServer::start(&dir.join("nats"), 0)?;
            println!("crash test: nats-server of its own on {}", server.url());
            Some(server)
        }
        _ => None,
    };
    let nats_url = match &own_server {
        Some(server) => Some(server.url()),
        None => args.nats.clone(),
    };
    fs::write(
        &config,
        runtime_toml(&root, &data, addr, nats_url.as_deref()),
    )
    .with_context(|| format!("cannot write {}", config.display()))?;
    println!("crash test: {} on http://{addr}", dir.display());

    let api = Api::new(addr)?;
    let mut weft = Weft {
        bin: args.weft.clone(),
        config,
        log: dir.join("weft.log"),
        child: None,
    };
    weft.spawn()?;
    wait_healthy(&api, &mut weft).await?;

    let acked = drive_load(args, &api, &mut weft).await?;

    let quiet = wait_quiet(&api, &mut weft).await?;
    let status = weft.terminate()?;
    println!("crash test: weft stopped with SIGTERM: {status}");

    let report = check(&data, &acked)?;
    report.print(args, &acked);
    drop(own_server);
    Ok(report.passed() && quiet && status.success())
}

// --- arguments -----------------------------------------------------------------

struct Args {
    cycles: u32,
    weft: PathBuf,
    seed: u64,
    nats: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        cycles: 10,
        weft: workspace_root()?.join("target/release/weft"),
        seed: seed_from_time(),
        nats: None,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        match flag.as_str() {
            "--cycles" => {
                args.cycles = value(&mut words, &flag)?
                    .parse()
                    .context("--cycles wants a whole number")?
            }
            "--weft" => args.weft = PathBuf::from(value(&mut words, &flag)?),
            "--seed" => {
                args.seed = value(&mut words, &flag)?
                    .parse()
                    .context("--seed wants a whole number")?
            }
            "--nats" => args.nats = Some(value(&mut words, &flag)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}`"),
        }
    }
    Ok(args)
}

fn value(words: &mut impl Iterator<Item = String>, flag: &str) -> Result<String> {
    words
        .next()
        .with_context(|| format!("{flag} needs a value"))
}

fn seed_from_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos() as u64)
        .unwrap_or(1)
}

/// The workspace root, where `target/` and `components/` are.
fn workspace_root() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize()
        .with_context(|| format!("cannot resolve {}", root.display()))
}

/// xorshift64*: enough randomness for kill moments and amounts, and the
/// same seed gives the same schedule.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Mixed so that nearby seeds differ at once; never 0, which xorshift
        // would keep forever.
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15).max(1))
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[low, high)`.
    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        low + (high - low) * unit
    }
}

// --- the host process ------------------------------------------------------------

/// Fails early, with the command to run, when something is not built.
fn check_built(root: &Path, weft: &Path) -> Result<()> {
    if !weft.is_file() {
        bail!(
            "{} is missing: run `cargo build --release -p weft_host --bin weft` (or `just crash-test`)",
            weft.display()
        );
    }
    for name in COMPONENTS {
        let wasm = component_wasm(root, name);
        if !wasm.is_file() {
            bail!(
                "{} is missing: run `bash components/build.sh {}`",
                wasm.display(),
                COMPONENTS.join(" ")
            );
        }
    }
    Ok(())
}

fn component_wasm(root: &Path, name: &str) -> PathBuf {
    root.join("components/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"))
}

/// A free local port: bound, then released for weft to take. Every
/// restart binds the same address.
fn free_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?)
}

/// A TOML string literal (JSON string escapes are valid TOML ones).
fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}

/// The system of `runtime.toml` (same grants and config), plus `faulty`
/// on every event recording what it sees, with short retry backoff.
fn runtime_toml(root: &Path, data: &Path, addr: SocketAddr, nats: Option<&str>) -> String {
    let wasm = |name: &str| quoted(&component_wasm(root, name).to_string_lossy());
    let bus = match nats {
        // A killed host's unacknowledged messages come back after the ack
        // wait: short here, so that the test does not wait a minute.
        Some(url) => format!("kind = \"nats\"\nurl = {}\nack_wait_secs = 5", quoted(url)),
        None => "kind = \"local\"".to_owned(),
    };
    format!(
        r#"# Written by the crash test (host/examples/crash_test.rs).
version = 1

[http]
addr = "{addr}"

[data]
dir = {data}

[bus]
{bus}

[retry]
backoff_ms = 100

[components.iam]
wasm = {iam}
route = "iam"

[components.iam.grants]
publish = ["user.registered", "user.password_changed"]
issue_tokens = true

[components.iam.config]
admins = ["alice"]

[components.bpm]
wasm = {bpm}
route = "bpm"
subscribe = ["user.registered"]

[components.bpm.grants]
publish = ["account.created", "transaction.completed"]

[components.bpm.config]
currency = "USD"

[components.nsm]
wasm = {nsm}
route = "nsm"
subscribe = ["user.registered", "account.created"]
websocket = "/ws"

[components.nsm.grants]
publish = ["notification.sent"]
push = true

[components.lgm]
wasm = {lgm}
route = "lgm"
subscribe = ["*"]

[components.faulty]
wasm = {faulty}
route = "faulty"
subscribe = ["*"]

# faulty imports messaging, which the host refuses without some grant; it
# publishes only on POST /faulty/note, which the test never sends.
[components.faulty.grants]
publish = ["faulty.noted"]

[components.faulty.config]
record_events = "true"
"#,
        data = quoted(&data.to_string_lossy()),
        iam = wasm("iam"),
        bpm = wasm("bpm"),
        nsm = wasm("nsm"),
        lgm = wasm("lgm"),
        faulty = wasm("faulty"),
    )
}

/// The `weft run` child process.
struct Weft {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Weft {
    /// Starts `weft run --config …`, its output appended to the log.
    fn spawn(&mut self) -> Result<()> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        writeln!(log, "===== crash test: starting weft =====")?;
        let mut command = Command::new(&self.bin);
        command
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // The environment overrides the config (WEFT_HTTP_ADDR,
        // WEFT_DATA_DIR, …); the test's own config must win.
        for (name, _) in std::env::vars() {
            if name.starts_with("WEFT_") && name != "WEFT_LOG" {
                command.env_remove(name);
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL (what `Child::kill` sends), and reaps it.
    fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("cannot kill weft")?;
            child.wait().context("cannot reap weft")?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the graceful shutdown (SIGKILL after
    /// [`STOP_TIMEOUT`], which is an error).
    fn terminate(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("weft is not running");
        };
        // No `libc` among the dependencies: kill(1) sends the signal.
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("cannot run kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed: {sent}", child.id());
        }
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > STOP_TIMEOUT {
                child.kill()?;
                child.wait()?;
                bail!("weft did not stop within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status, if the child has exited on its own.
    fn exited(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }
}

impl Drop for Weft {
    /// Never leave a host running behind an error.
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `GET /health` until it answers 200.
async fn wait_healthy(api: &Api, weft: &mut Weft) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Some(status) = weft.exited()? {
            bail!(
                "weft exited ({status}) before it was healthy; see {}",
                weft.log.display()
            );
        }
        if let Ok((200, _)) = api.get("/health", None).await {
            return Ok(());
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "weft was not healthy within {START_TIMEOUT:?}; see {}",
                weft.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- HTTP ------------------------------------------------------------------------

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(addr: SocketAddr) -> Result<Api> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            // A request to a host that gets killed must not hang a client.
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api {
            http,
            base: format!("http://{addr}"),
        })
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, Value)> {
        self.send(self.http.get(format!("{}{path}", self.base)), token)
            .await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<(u16, Value)> {
        let request = self.http.post(format!("{}{path}", self.base)).json(body);
        self.send(request, token).await
    }

    /// The status and JSON body (`null` when it is not JSON); an error only
    /// when no answer came (the host is down or was killed mid-request).
    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
        token: Option<&str>,
    ) -> Result<(u16, Value)> {
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}

// --- load ------------------------------------------------------------------------

/// What the host acknowledged with a 2xx: these must survive any kill.
#[derive(Default)]
struct Acked {
    registrations: Vec<String>,
    transactions: Vec<String>,
}

/// Running totals, for the progress lines.
#[derive(Default)]
struct Progress {
    registrations: AtomicU64,
    transactions: AtomicU64,
}

impl Progress {
    fn line(&self) -> String {
        format!(
            "{} registrations, {} transactions acknowledged",
            self.registrations.load(Ordering::Relaxed),
            self.transactions.load(Ordering::Relaxed)
        )
    }
}

/// Runs the clients through `args.cycles` kill-and-restart cycles and a
/// last stretch, then stops them and gathers what was acknowledged.
async fn drive_load(args: &Args, api: &Api, weft: &mut Weft) -> Result<Acked> {
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let mut clients = Vec::new();
    for index in 0..REGISTRATION_CLIENTS {
        let (api, stop, progress) = (api.clone(), stop.clone(), progress.clone());
        clients.push(tokio::spawn(registration_client(
            api, index, stop, progress,
        )));
    }
    for index in 0..TRANSACTION_CLIENTS {
        let (api, stop, progress) = (api.clone(), stop.clone(), progress.clone());
        let seed = args.seed.wrapping_add(index + 1);
        clients.push(tokio::spawn(transaction_client(
            api, index, seed, stop, progress,
        )));
    }

    let mut rng = Rng::new(args.seed);
    for cycle in 1..=args.cycles {
        let gap = rng.uniform(KILL_GAP_SECS.0, KILL_GAP_SECS.1);
        tokio::time::sleep(Duration::from_secs_f64(gap)).await;
        weft.kill()?;
        let down = Instant::now();
        weft.spawn()?;
        wait_healthy(api, weft).await?;
        println!(
            "cycle {cycle}/{}: killed after {gap:.2} s, restarted in {:.2} s, so far: {}",
            args.cycles,
            down.elapsed().as_secs_f64(),
            progress.line()
        );
    }
    tokio::time::sleep(FINAL_LOAD).await;
    stop.store(true, Ordering::Relaxed);

    let mut acked = Acked::default();
    for client in clients {
        let done = client.await.context("a client task panicked")?;
        acked.registrations.extend(done.registrations);
        acked.transactions.extend(done.transactions);
    }
    println!("load stopped: {}", progress.line());
    Ok(acked)
}

/// Registers users `r<index>n0`, `r<index>n1`, … until stopped.
async fn registration_client(
    api: Api,
    index: u64,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Acked {
    let mut acked = Acked::default();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(id) = register(&api, &format!("r{index}n{n}"), &stop).await {
            acked.registrations.push(id);
            progress.registrations.fetch_add(1, Ordering::Relaxed);
        }
    }
    acked
}

/// Registers user `t<index>n<n>`, logs in, waits for its default account
/// and deposits into it until stopped (a user whose account never comes is
/// left for a new one).
async fn transaction_client(
    api: Api,
    index: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Acked {
    let mut rng = Rng::new(seed);
    let mut acked = Acked::default();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let username = format!("t{index}n{n}");
        let Some(id) = register(&api, &username, &stop).await else {
            continue;
        };
        acked.registrations.push(id);
        progress.registrations.fetch_add(1, Ordering::Relaxed);
        let Some(token) = login(&api, &username, &stop).await else {
            continue;
        };
        let Some(account) = default_account(&api, &token, &stop).await else {
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            let amount = 1 + rng.next_u64() % 1000;
            let order = json!({"type": "deposit", "accountId": account, "amount": amount});
            match api.post("/bpm/transactions", Some(&token), &order).await {
                Ok((201, body)) => {
                    if let Some(id) = body["id"].as_str() {
                        acked.transactions.push(id.to_owned());
                        progress.transactions.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok((status, body)) => {
                    eprintln!("deposit by {username}: unexpected {status} {body}");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }
    acked
}

/// Registers `username`, retrying while the host is down. `Some(id)` when
/// acknowledged with 201; `None` when stopped, or when refused: a 409 means
/// an earlier attempt committed but its answer was lost to a kill (that
/// user is still checked, as every user in iam is).
async fn register(api: &Api, username: &str, stop: &AtomicBool) -> Option<String> {
    let body = json!({
        "username": username,
        "email": format!("{username}@example.com"),
        "password": PASSWORD,
    });
    while !stop.load(Ordering::Relaxed) {
        match api.post("/iam/register", None, &body).await {
            Ok((201, answer)) => return answer["id"].as_str().map(str::to_owned),
            Ok((409, _)) => return None,
            Ok((status, answer)) if status < 500 => {
                eprintln!("register {username}: unexpected {status} {answer}");
                return None;
            }
            Ok(_) | Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
    None
}

/// An access token for `username`, retrying while the host is down.
async fn login(api: &Api, username: &str, stop: &AtomicBool) -> Option<String> {
    let body = json!({"username": username, "password": PASSWORD});
    while !stop.load(Ordering::Relaxed) {
        match api.post("/iam/login", None, &body).await {
            Ok((200, answer)) => return answer["accessToken"].as_str().map(str::to_owned),
            Ok((status, answer)) if status < 500 => {
                eprintln!("login {username}: unexpected {status} {answer}");
                return None;
            }
            Ok(_) | Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
        }
    }
    None
}

/// The id of the caller's default account, which bpm opens on
/// `user.registered` some time after the registration; `None` if it has not
/// appeared within [`ACCOUNT_WAIT`] (the event was lost) or when stopped.
async fn default_account(api: &Api, token: &str, stop: &AtomicBool) -> Option<String> {
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && started.elapsed() < ACCOUNT_WAIT {
        if let Ok((200, Value::Array(accounts))) = api.get("/bpm/accounts", Some(token)).await {
            if let Some(id) = accounts.first().and_then(|a| a["id"].as_str()) {
                return Some(id.to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

// --- quiet -----------------------------------------------------------------------

/// Waits until no component's counters in `/health` changed for
/// [`QUIET_FOR`] and every `backlog` number (when the host reports one) is
/// 0: then every event has been handled. `false` after [`QUIET_TIMEOUT`].
async fn wait_quiet(api: &Api, weft: &mut Weft) -> Result<bool> {
    let started = Instant::now();
    let mut last = None;
    let mut unchanged_since = Instant::now();
    loop {
        if let Some(status) = weft.exited()? {
            bail!(
                "weft exited on its own ({status}); see {}",
                weft.log.display()
            );
        }
        let (status, health) = api.get("/health", None).await?;
        if status != 200 {
            bail!("GET /health answered {status}: {health}");
        }
        let counters = counters(&health);
        let backlog = backlog(&health);
        if last.as_ref() != Some(&counters) {
            last = Some(counters);
            unchanged_since = Instant::now();
        } else if unchanged_since.elapsed() >= QUIET_FOR && backlog == 0 {
            println!(
                "quiet after {:.1} s: {}",
                started.elapsed().as_secs_f64(),
                summary(&health)
            );
            return Ok(true);
        }
        if started.elapsed() > QUIET_TIMEOUT {
            println!(
                "warning: not quiet after {QUIET_TIMEOUT:?} (backlog {backlog}): {}",
                summary(&health)
            );
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each component's entry in /health without its `status` (which may flip
/// without any work being done): the counters that move while it works.
fn counters(health: &Value) -> BTreeMap<String, String> {
    let mut counters = BTreeMap::new();
    if let Some(components) = health["components"].as_object() {
        for (name, entry) in components {
            let mut entry = entry.clone();
            if let Some(fields) = entry.as_object_mut() {
                fields.remove("status");
            }
            counters.insert(name.clone(), entry.to_string());
        }
    }
    counters
}

/// The sum of every number under the components' `backlog` (absent: 0).
fn backlog(health: &Value) -> u64 {
    fn sum(value: &Value) -> u64 {
        match value {
            // Anything but a whole count (-1, 0.5) counts as not empty.
            Value::Number(n) => n
                .as_u64()
                .unwrap_or_else(|| u64::from(n.as_f64() != Some(0.0))),
            Value::Array(items) => items.iter().map(sum).sum(),
            Value::Object(fields) => fields.values().map(sum).sum(),
            _ => 0,
        }
    }
    health["components"]
        .as_object()
        .map(|components| components.values().map(|c| sum(&c["backlog"])).sum())
        .unwrap_or(0)
}

fn summary(health: &Value) -> String {
    let Some(components) = health["components"].as_object() else {
        return health.to_string();
    };
    components
        .iter()
        .map(|(name, c)| {
            format!(
                "{name} handled {} failed {} dead {}",
                c["handled"], c["failed"], c["deadLetters"]
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

// --- checks ----------------------------------------------------------------------

/// One "exactly once" check: how many things it looked at, which had
/// nothing (lost) and which had more than one (duplicated).
struct Check {
    what: &'static str,
    checked: usize,
    missing: Vec<String>,
    duplicated: Vec<String>,
}

/// Checks that each of `expected` occurs exactly once in `counts`.
fn exactly_once<'a>(
    what: &'static str,
    expected: impl IntoIterator<Item = &'a String>,
    counts: &HashMap<String, usize>,
) -> Check {
    let mut check = Check {
        what,
        checked: 0,
        missing: Vec::new(),
        duplicated: Vec::new(),
    };
    for key in expected {
        check.checked += 1;
        match counts.get(key).copied().unwrap_or(0) {
            0 => check.missing.push(key.clone()),
            1 => {}
            _ => check.duplicated.push(key.clone()),
        }
    }
    check
}

/// How often each key occurs.
fn tally(keys: impl IntoIterator<Item = String>) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for key in keys {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// What the databases hold, as far as the checks need it.
struct Stored {
    users: Vec<String>,
    /// `(id, owner, is the default savings account)`.
    accounts: Vec<(String, String, bool)>,
    transactions: Vec<String>,
    /// `(owner, kind, body)`.
    notifications: Vec<(String, String, String)>,
    /// `(id, event type, data)`; `transaction.completed` data is the
    /// transaction itself (flattened) plus `userId`.
    logs: Vec<(String, String, Value)>,
    /// faulty's `seen`: event id → deliveries.
    seen: HashMap<String, usize>,
    /// Database → what `PRAGMA integrity_check` said other than `ok`.
    integrity: BTreeMap<&'static str, Vec<String>>,
    dead_letters: BTreeMap<&'static str, i64>,
}

fn open(data: &Path, name: &str) -> Result<Connection> {
    let path = data.join("db").join(format!("{name}.sqlite"));
    Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Every row of `sql`, each made by `row`.
fn rows<T>(
    db: &Connection,
    sql: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut statement = db.prepare(sql).with_context(|| format!("in {sql}"))?;
    let rows = statement.query_map([], row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<T>>>()?)
}

/// Table and column names are those of the components' migrations
/// (`iam/src/users.rs`, `bpm/src/schema.rs`, `nsm/src/notifications.rs`,
/// `lgm/src/store.rs`, faulty's `seen`).
fn load(data: &Path) -> Result<Stored> {
    let iam = open(data, "iam")?;
    let bpm = open(data, "bpm")?;
    let nsm = open(data, "nsm")?;
    let lgm = open(data, "lgm")?;
    let faulty = open(data, "faulty")?;
    let mut stored = Stored {
        users: rows(&iam, "SELECT id FROM users", |r| r.get(0))?,
        accounts: rows(
            &bpm,
            "SELECT id, owner_user_id, is_default = 1 AND account_type = 'savings' FROM accounts",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?,
        transactions: rows(&bpm, "SELECT id FROM transactions", |r| r.get(0))?,
        notifications: rows(
            &nsm,
            "SELECT owner_user_id, kind, body FROM notifications",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?,
        logs: rows(&lgm, "SELECT id, event_type, data FROM events", |r| {
            let data: String = r.get(2)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                serde_json::from_str(&data).unwrap_or(Value::Null),
            ))
        })?,
        seen: rows(
            &faulty,
            "SELECT event_id, COUNT(*) FROM seen GROUP BY event_id",
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)),
        )?
        .into_iter()
        .collect(),
        integrity: BTreeMap::new(),
        dead_letters: BTreeMap::new(),
    };
    for (name, db) in COMPONENTS
        .into_iter()
        .zip([&iam, &bpm, &lgm, &nsm, &faulty])
    {
        let said: Vec<String> = rows(db, "PRAGMA integrity_check", |r| r.get(0))?;
        let problems = said.into_iter().filter(|line| line != "ok").collect();
        stored.integrity.insert(name, problems);
        // The host's own table; absent until something died there.
        if let Ok(count) = db.query_row("SELECT COUNT(*) FROM _weft_dead_letters", [], |r| {
            r.get::<_, i64>(0)
        }) {
            stored.dead_letters.insert(name, count);
        }
    }
    Ok(stored)
}

/// The ids that lgm's logs of `event_type` name at `pointer` in the data.
fn logged(stored: &Stored, event_type: &str, pointer: &str) -> HashMap<String, usize> {
    tally(
        stored
            .logs
            .iter()
            .filter(|(_, kind, _)| kind == event_type)
            .filter_map(|(_, _, data)| data.pointer(pointer)?.as_str().map(str::to_owned)),
    )
}

/// The account an `account_created` notification is about: nsm stores no
/// account id, only the text "Account <id> is ready, …" (`nsm/src/compose.rs`).
fn account_in(body: &str) -> Option<String> {
    let rest = body.strip_prefix("Account ")?;
    let end = rest.find(" is ready")?;
    Some(rest[..end].to_owned())
}

fn check(data: &Path, acked: &Acked) -> Result<Report> {
    let stored = load(data)?;
    let users = tally(stored.users.iter().cloned());
    let transactions = tally(stored.transactions.iter().cloned());
    let default_accounts = tally(
        stored
            .accounts
            .iter()
            .filter(|(_, _, default)| *default)
            .map(|(_, owner, _)| owner.clone()),
    );
    let notified = |kind: &str| {
        stored
            .notifications
            .iter()
            .filter(move |(_, k, _)| k == kind)
            .collect::<Vec<_>>()
    };
    let welcomes = tally(
        notified("welcome")
            .into_iter()
            .map(|(owner, _, _)| owner.clone()),
    );
    let account_notes = tally(
        notified("account_created")
            .into_iter()
            .filter_map(|(_, _, body)| account_in(body)),
    );
    let account_ids: Vec<String> = stored.accounts.iter().map(|a| a.0.clone()).collect();
    let log_ids: Vec<String> = stored.logs.iter().map(|l| l.0.clone()).collect();
    let seen_ids: Vec<String> = stored.seen.keys().cloned().collect();

    let checks = vec![
        exactly_once(
            "acknowledged registration → user in iam",
            &acked.registrations,
            &users,
        ),
        exactly_once(
            "acknowledged transaction → row in bpm",
            &acked.transactions,
            &transactions,
        ),
        exactly_once(
            "user → default savings account (bpm)",
            &stored.users,
            &default_accounts,
        ),
        exactly_once(
            "user → welcome notification (nsm)",
            &stored.users,
            &welcomes,
        ),
        exactly_once(
            "user → user.registered log (lgm)",
            &stored.users,
            &logged(&stored, "user.registered", "/userId"),
        ),
        exactly_once(
            "account → account_created notification (nsm)",
            &account_ids,
            &account_notes,
        ),
        exactly_once(
            "account → account.created log (lgm)",
            &account_ids,
            &logged(&stored, "account.created", "/accountId"),
        ),
        exactly_once(
            "transaction → transaction.completed log (lgm)",
            &stored.transactions,
            &logged(&stored, "transaction.completed", "/id"),
        ),
        exactly_once("lgm event → seen by faulty", &log_ids, &stored.seen),
        exactly_once(
            "faulty's event → in lgm",
            &seen_ids,
            &tally(log_ids.iter().cloned()),
        ),
    ];
    Ok(Report { stored, checks })
}

struct Report {
    stored: Stored,
    checks: Vec<Check>,
}

impl Report {
    fn lost(&self) -> usize {
        self.checks.iter().map(|c| c.missing.len()).sum()
    }

    fn duplicated(&self) -> usize {
        self.checks.iter().map(|c| c.duplicated.len()).sum()
    }

    fn integrity_ok(&self) -> bool {
        self.stored.integrity.values().all(Vec::is_empty)
    }

    fn passed(&self) -> bool {
        self.lost() == 0 && self.duplicated() == 0 && self.integrity_ok()
    }

    fn print(&self, args: &Args, acked: &Acked) {
        let s = &self.stored;
        let integrity = if self.integrity_ok() {
            format!("ok ({} databases)", s.integrity.len())
        } else {
            let bad: Vec<&str> = s
                .integrity
                .iter()
                .filter(|(_, problems)| !problems.is_empty())
                .map(|(name, _)| *name)
                .collect();
            format!("FAILED: {}", bad.join(", "))
        };
        let dead: i64 = s.dead_letters.values().sum();
        println!();
        println!("{:<44} {:>10}", "cycles (kill -9 + restart)", args.cycles);
        println!(
            "{:<44} {:>10}",
            "registrations acknowledged",
            acked.registrations.len()
        );
        println!(
            "{:<44} {:>10}",
            "transactions acknowledged",
            acked.transactions.len()
        );
        println!(
            "{:<44} {:>10}",
            "users / accounts / transactions stored",
            format!(
                "{} / {} / {}",
                s.users.len(),
                s.accounts.len(),
                s.transactions.len()
            )
        );
        println!(
            "{:<44} {:>10}",
            "notifications (nsm)",
            s.notifications.len()
        );
        println!("{:<44} {:>10}", "events (lgm)", s.logs.len());
        println!(
            "{:<44} {:>10}",
            "event deliveries to faulty",
            s.seen.values().sum::<usize>()
        );
        println!("{:<44} {:>10}", "dead letters", dead);
        println!("{:<44} {:>10}", "lost", self.lost());
        println!("{:<44} {:>10}", "duplicated", self.duplicated());
        println!("{:<44} {:>10}", "integrity", integrity);
        println!();
        println!(
            "{:<48} {:>8} {:>8} {:>10}",
            "check (each exactly once)", "checked", "lost", "duplicated"
        );
        for c in &self.checks {
            println!(
                "{:<48} {:>8} {:>8} {:>10}",
                c.what,
                c.checked,
                c.missing.len(),
                c.duplicated.len()
            );
        }
        self.print_offenders();
        println!();
        if self.passed() {
            println!("crash test PASSED");
        }
    }

    fn print_offenders(&self) {
        for c in &self.checks {
            for (kind, ids) in [("lost", &c.missing), ("duplicated", &c.duplicated)] {
                if ids.is_empty() {
                    continue;
                }
                let shown: Vec<&str> = ids
                    .iter()
                    .take(SHOW_OFFENDERS)
                    .map(String::as_str)
                    .collect();
                let more = ids.len().saturating_sub(SHOW_OFFENDERS);
                let tail = if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                };
                println!("  {} — {kind}: {}{tail}", c.what, shown.join(", "));
            }
        }
        for (name, problems) in &self.stored.integrity {
            for problem in problems.iter().take(SHOW_OFFENDERS) {
                println!("  integrity of {name}: {problem}");
            }
        }
    }
}
