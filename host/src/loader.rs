//! Turning `.wasm` bytes into a runnable [`Version`] of a component:
//! compile (through the on-disk cache), check its imports against its
//! grants, link it against the `weft:service` world. Used at start and by
//! every reload, so both refuse the same things with the same words.

use std::path::PathBuf;
use std::time::Instant;

use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use crate::bindings::ServicePre;
use crate::component::Version;
use crate::config::Grants;
use crate::engine;
use crate::runtime::StartError;
use crate::state::HostState;

/// The engine and linker every version of every component is made with.
pub struct Loader {
    /// The host's one engine.
    pub engine: Engine,
    /// WASI and every Weft interface.
    pub linker: Linker<HostState>,
    /// Where compiled code is cached.
    pub cache_dir: PathBuf,
}

/// A version made ready, and how.
pub struct Prepared {
    /// The version.
    pub version: Version,
    /// Whether its compiled code came from the cache.
    pub cached: bool,
    /// How long compiling (or loading from the cache) and linking took.
    pub took: std::time::Duration,
}

impl Loader {
    /// Builds a loader on `engine`.
    pub fn new(engine: Engine, cache_dir: PathBuf) -> Result<Loader, StartError> {
        let mut linker = Linker::<HostState>::new(&engine);
        crate::capabilities::add_to_linker(&mut linker)
            .map_err(|e| StartError::Setup(format!("linker: {e:#}")))?;
        Ok(Loader {
            engine,
            linker,
            cache_dir,
        })
    }

    /// Makes component `name`'s `.wasm` `bytes` ready to run with `grants`.
    pub fn prepare(
        &self,
        name: &str,
        bytes: &[u8],
        grants: &Grants,
    ) -> Result<Prepared, StartError> {
        let started = Instant::now();
        let loaded =
            engine::load_bytes(&self.engine, bytes, &self.cache_dir).map_err(|source| {
                StartError::Load {
                    name: name.to_owned(),
                    source,
                }
            })?;
        check_imports(name, &loaded.component, &self.engine, grants)?;
        let world_err = |e: wasmtime::Error| StartError::World {
            name: name.to_owned(),
            message: format!("{e:#}"),
        };
        let pre = self
            .linker
            .instantiate_pre(&loaded.component)
            .map_err(world_err)?;
        let pre = ServicePre::new(pre).map_err(world_err)?;
        Ok(Prepared {
            version: Version {
                pre,
                sha256: loaded.sha256,
            },
            cached: loaded.cached,
            took: started.elapsed(),
        })
    }

    /// Prepares a configured component: its in-memory bytes, or its file.
    pub fn prepare_configured(
        &self,
        name: &str,
        component: &crate::config::ComponentConfig,
    ) -> Result<Prepared, StartError> {
        match &component.wasm_bytes {
            Some(bytes) => self.prepare(name, bytes, &component.grants),
            None => self.prepare_file(name, &component.wasm, &component.grants),
        }
    }

    /// Reads `path` and [`Loader::prepare`]s it.
    pub fn prepare_file(
        &self,
        name: &str,
        path: &std::path::Path,
        grants: &Grants,
    ) -> Result<Prepared, StartError> {
        let bytes = std::fs::read(path).map_err(|source| StartError::Load {
            name: name.to_owned(),
            source: engine::LoadError::Read {
                path: path.to_owned(),
                source,
            },
        })?;
        self.prepare(name, &bytes, grants)
    }
}

/// Refuses a component that imports an interface whose every function its
/// grants deny: better a clear error at start than `denied` on first use.
/// (Guest toolchains drop imports a component never calls, so an import
/// means the component means to use it.)
fn check_imports(
    name: &str,
    component: &Component,
    engine: &Engine,
    grants: &Grants,
) -> Result<(), StartError> {
    for (import, _) in component.component_type().imports(engine) {
        let interface = import.split('@').next().unwrap_or(import);
        let why = match interface {
            "weft:service/realtime" if !grants.push => "`grants.push` is not set",
            "weft:service/messaging" if grants.publish.is_empty() && grants.request.is_empty() => {
                "neither `grants.publish` nor `grants.request` lists anything"
            }
            _ => continue,
        };
        return Err(StartError::NotGranted {
            name: name.to_owned(),
            import: interface.to_owned(),
            why: why.to_owned(),
        });
    }
    Ok(())
}
