//! Building a [`Host`] from code, for programs that embed Weft: start from a
//! `runtime.toml` or from nothing, add components from files or bytes,
//! choose the data directory and whether the HTTP gateway listens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config::{BusConfig, ComponentConfig, Config, ConfigError};
use crate::runtime::{Host, StartError};

/// Builds a [`Host`]. Without a `runtime.toml` it starts with every default
/// and **no HTTP listener**: an embedding program calls components in
/// process with [`Host::call`] unless it asks for a socket with
/// [`HostBuilder::http`].
#[derive(Debug, Clone)]
pub struct HostBuilder {
    config: Config,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder::new()
    }
}

impl HostBuilder {
    /// Every default, no components, no HTTP listener, data in `.weft`.
    pub fn new() -> HostBuilder {
        let mut config = Config::empty();
        config.http.enabled = false;
        HostBuilder { config }
    }

    /// Starts from a parsed configuration.
    pub fn from_config(config: Config) -> HostBuilder {
        HostBuilder { config }
    }

    /// Starts from a `runtime.toml` file (its `WEFT_*` environment overrides
    /// are not applied; call [`Config::apply_env`] yourself for those).
    pub fn from_file(path: &Path) -> Result<HostBuilder, ConfigError> {
        Ok(HostBuilder::from_config(Config::load(path)?))
    }

    /// Where databases and compiled components live.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.data.dir = dir.into();
        self
    }

    /// Serves the HTTP gateway on `addr` (port 0 picks a free port; see
    /// [`Host::http_addr`]).
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.config.http.enabled = true;
        self.config.http.addr = addr;
        self
    }

    /// No HTTP listener; components are reached with [`Host::call`].
    pub fn without_http(mut self) -> Self {
        self.config.http.enabled = false;
        self
    }

    /// Which bus carries events and requests.
    pub fn bus(mut self, bus: BusConfig) -> Self {
        self.config.bus = bus;
        self
    }

    /// Adds (or replaces) component `name`.
    pub fn component(mut self, name: &str, component: ComponentConfig) -> Self {
        self.config.components.insert(name.to_owned(), component);
        self
    }

    /// The configuration so far, to adjust what has no method here.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Checks the configuration and starts the host.
    pub async fn start(self) -> Result<Host, StartError> {
        self.config.validate().map_err(StartError::Config)?;
        Host::start(self.config).await
    }
}
