//! # weft_host
//!
//! Runs event-driven microservices as WebAssembly components: loads each
//! component of a `runtime.toml` against the `weft:service` WIT world, gives
//! it a SQLite database, an event bus and an HTTP route, and runs every
//! invocation as one transaction whose events are dispatched only after it
//! commits.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = weft_host::config::Config::load(std::path::Path::new("runtime.toml"))?;
//! let host = weft_host::Host::start(config).await?;
//! println!("serving on {:?}", host.http_addr());
//! host.shutdown().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod bindings;
pub mod bus;
pub mod capabilities;
pub mod component;
pub mod config;
pub mod db;
pub mod engine;
pub mod gateway;
pub mod health;
pub mod hub;
pub mod limits;
pub mod loader;
pub mod reload;
pub mod runtime;
pub mod state;
pub mod stderr;
pub mod time;
pub mod websocket;

pub use runtime::{Host, StartError};
