//! The wasmtime `Engine`, the epoch ticker, and loading components through an
//! on-disk cache of compiled code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of invocation deadlines and
/// of yielding a busy guest back to the scheduler. Measured on 2 cores
/// (BENCHMARKS.md): a 1 ms tick cost 5–8 % of throughput, 2 ms 3.6–4.5 %,
/// 5 ms 2–3 %; 2 ms keeps the cost under 5 % and a looping guest is
/// stopped within about 2.5 ms of its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Bytes of each pooled linear memory kept resident between instances.
const KEEP_RESIDENT: usize = 2 << 20;

/// Failures while building the engine or loading a component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The `.wasm` file could not be read.
    #[error("cannot read {path}: {source} (run `just build` to build the components)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// wasmtime refused the bytes or the engine settings.
    #[error("{context}: {message}")]
    Wasm {
        /// What was being done.
        context: String,
        /// wasmtime's message.
        message: String,
    },
}

fn wasm_err(context: impl Into<String>) -> impl FnOnce(wasmtime::Error) -> LoadError {
    let context = context.into();
    move |e| LoadError::Wasm {
        context,
        message: format!("{e:#}"),
    }
}

/// The guards on every invocation. Both are on in every real host; only
/// benchmarks turn them off, to measure what they cost. With epoch
/// interruption off, deadlines cannot stop a busy guest: a `loop {}` holds a
/// worker thread for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandbox {
    /// Interrupt guests at their deadline (and yield every epoch tick).
    pub epoch_interruption: bool,
    /// Cap memory, tables and instances per store.
    pub store_limits: bool,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox {
            epoch_interruption: true,
            store_limits: true,
        }
    }
}

/// Builds the one engine of a host: async, epoch interruption (unless a
/// benchmark turned it off), pooling allocator.
pub fn build_engine(sandbox: Sandbox) -> Result<Engine, LoadError> {
    let mut config = Config::new();
    config.epoch_interruption(sandbox.epoch_interruption);
    // Weft does not use the component model's async ABI; turning it off
    // halves the cost of a guest call.
    config.concurrency_support(false);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(2000)
        .total_core_instances(8000)
        .total_memories(2000)
        .total_tables(8000)
        .total_stacks(2000)
        .max_memory_size(1 << 30)
        // Reset only the pages an invocation dirtied, with memset, instead of
        // madvise + page faults + TLB shootdowns on every instantiation.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(wasm_err("cannot create the wasm engine"))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    pub fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let engine = engine.weak();
        let _ = std::thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match engine.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            });
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A compiled component and where it came from.
pub struct Loaded {
    /// The compiled component.
    pub component: Component,
    /// Hex sha256 of the `.wasm` bytes: the version shown in `/health`.
    pub sha256: String,
    /// Whether compiled code came from the cache.
    pub cached: bool,
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Loads a component from `.wasm` bytes, using `cache_dir` for compiled
/// code keyed by the wasm's sha256 and the engine's settings.
pub fn load_bytes(engine: &Engine, bytes: &[u8], cache_dir: &Path) -> Result<Loaded, LoadError> {
    let sha256 = sha256_hex(bytes);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let cache_file = cache_dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
    if cache_file.exists() {
        // SAFETY: the cache directory is the host's own (inside its data
        // dir) and files appear there only by atomic rename after wasmtime
        // itself serialized them for this engine's settings, whose hash is
        // part of the name. wasmtime also checks the header and settings.
        #[allow(unsafe_code)]
        let found = unsafe { Component::deserialize_file(engine, &cache_file) };
        match found {
            Ok(component) => {
                return Ok(Loaded {
                    component,
                    sha256,
                    cached: true,
                })
            }
            Err(e) => tracing::warn!(
                file = %cache_file.display(),
                "ignoring unusable cached component: {e:#}"
            ),
        }
    }
    let component =
        Component::from_binary(engine, bytes).map_err(wasm_err("not a valid component"))?;
    if let Err(e) = write_cache(&component, cache_dir, &cache_file) {
        // The cache only saves time; a read-only data dir still runs.
        tracing::warn!(file = %cache_file.display(), "cannot cache compiled component: {e}");
    }
    Ok(Loaded {
        component,
        sha256,
        cached: false,
    })
}

/// Loads the component at `path` (see [`load_bytes`]).
pub fn load_file(engine: &Engine, path: &Path, cache_dir: &Path) -> Result<Loaded, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_bytes(engine, &bytes, cache_dir)
}

fn write_cache(component: &Component, dir: &Path, file: &Path) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    crate::private::create_dir(dir)?;
    crate::private::write_file(file, &bytes)
}
