//! Hot swap: replacing a running component's code without stopping the
//! host, failing a request or losing an event.
//!
//! A new version is compiled, checked against the component's grants and
//! the world, and its migrations are applied — all while the old version
//! keeps serving. Only then does one pointer swap make every replica run the
//! new version for every invocation that starts afterwards; invocations in
//! flight finish on the version they began with. Queues, redeliveries,
//! databases and slots belong to the component, not to a version, so
//! nothing queued or being retried is lost or applied twice.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::component::LoadedComponent;
use crate::runtime::{Shared, StartError};

/// Why a reload or rollback did not happen. In every case the version that
/// was serving goes on serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// No component of that name runs here.
    #[error("no component `{0}` runs on this host")]
    UnknownComponent(String),
    /// The new code is not a component, does not fit the world, or imports
    /// what its grants never allow.
    #[error("refused: {0}")]
    Refused(StartError),
    /// Its migrations failed (and were rolled back).
    #[error("refused: component `{name}`: migrations failed: {message}")]
    Migration {
        /// The component.
        name: String,
        /// Why.
        message: String,
    },
    /// Rollback asked, but there is no earlier version to return to.
    #[error("component `{0}` has no previous version to roll back to")]
    NoPrevious(String),
}

/// A swap that happened.
#[derive(Debug, Clone)]
pub struct Swapped {
    /// The component.
    pub component: String,
    /// sha256 of the version replaced.
    pub from: String,
    /// sha256 of the version now serving.
    pub to: String,
    /// From the call to the swap: compile (or cache load), link, migrate.
    pub took: Duration,
    /// Whether the compiled code came from the cache (always, for rollback).
    pub cached: bool,
    /// Migrations the new version applied.
    pub migrations_applied: usize,
}

fn component<'a>(shared: &'a Shared, name: &str) -> Result<&'a Arc<LoadedComponent>, ReloadError> {
    shared
        .components
        .get(name)
        .ok_or_else(|| ReloadError::UnknownComponent(name.to_owned()))
}

/// Replaces component `name`'s code with `wasm` (or, when `None`, with the
/// file it was configured with, read again). One reload of a component at a
/// time; a second waits for the first.
pub async fn reload(
    shared: &Arc<Shared>,
    name: &str,
    wasm: Option<Vec<u8>>,
) -> Result<Swapped, ReloadError> {
    let started = Instant::now();
    let target = component(shared, name)?.clone();
    let _one_at_a_time = target.reload_lock.lock().await;
    // Compiling can take seconds of CPU: off the async workers.
    let prepared = {
        let shared = shared.clone();
        let (name, path) = (name.to_owned(), target.ctx.wasm.clone());
        let grants = target.ctx.grants.clone();
        tokio::task::spawn_blocking(move || match wasm {
            Some(bytes) => shared.loader.prepare(&name, &bytes, &grants),
            None => shared.loader.prepare_file(&name, &path, &grants),
        })
        .await
        .map_err(|e| ReloadError::Refused(StartError::Setup(format!("compile task: {e}"))))?
        .map_err(ReloadError::Refused)?
    };
    let next = Arc::new(prepared.version);
    let migration_err = |message: String| ReloadError::Migration {
        name: name.to_owned(),
        message,
    };
    let migrations = target
        .migrations(next.clone())
        .await
        .map_err(|e| migration_err(format!("cannot list migrations: {e}")))?;
    let applied = target
        .ctx
        .db
        .migrate(migrations, target.ctx.limits.timeout)
        .await
        .map_err(|e| migration_err(e.to_string()))?;
    let replaced = target.swap(next.clone());
    let swapped = Swapped {
        component: name.to_owned(),
        from: replaced.sha256.clone(),
        to: next.sha256.clone(),
        took: started.elapsed(),
        cached: prepared.cached,
        migrations_applied: applied,
    };
    tracing::info!(
        component = name,
        from = %&swapped.from[..12],
        to = %&swapped.to[..12],
        cached = swapped.cached,
        migrations_applied = applied,
        "reloaded in {:.1} ms",
        swapped.took.as_secs_f64() * 1e3
    );
    Ok(swapped)
}

/// Returns component `name` to the version the current one replaced. Code
/// only: migrations are append-only, so the earlier version runs on the
/// newer schema.
pub async fn rollback(shared: &Arc<Shared>, name: &str) -> Result<Swapped, ReloadError> {
    let started = Instant::now();
    let target = component(shared, name)?.clone();
    let _one_at_a_time = target.reload_lock.lock().await;
    let previous = target
        .previous()
        .ok_or_else(|| ReloadError::NoPrevious(name.to_owned()))?;
    let replaced = target.swap(previous.clone());
    let swapped = Swapped {
        component: name.to_owned(),
        from: replaced.sha256.clone(),
        to: previous.sha256.clone(),
        took: started.elapsed(),
        cached: true,
        migrations_applied: 0,
    };
    tracing::info!(
        component = name,
        from = %&swapped.from[..12],
        to = %&swapped.to[..12],
        "rolled back"
    );
    Ok(swapped)
}

/// How often a watched `.wasm` file is looked at.
pub const WATCH_EVERY: Duration = Duration::from_millis(300);

/// Reloads component `name` whenever its configured `.wasm` file changes,
/// until `stop`. A change counts once the file's size and modification time
/// held still for one more look, so a file still being written is not
/// loaded half-way; a version that is refused is logged and the next change
/// tried.
pub async fn watch_file(shared: Arc<Shared>, name: String, mut stop: watch::Receiver<bool>) {
    let Some(path) = shared.components.get(&name).map(|c| c.ctx.wasm.clone()) else {
        return;
    };
    let stamp = |path: &PathBuf| -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    let mut loaded = stamp(&path);
    let mut seen = loaded;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = stop.changed() => return,
        }
        let now = stamp(&path);
        let settled = now == seen;
        seen = now;
        if now.is_none() || now == loaded || !settled {
            continue;
        }
        loaded = now;
        tracing::info!(component = %name, file = %path.display(), "changed; reloading");
        if let Err(e) = reload(&shared, &name, None).await {
            tracing::error!(component = %name, "reload failed, the old version keeps serving: {e}");
        }
    }
}
