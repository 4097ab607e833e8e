//! # weft_host
//!
//! Runs event-driven microservices as WebAssembly components: loads each
//! component of a `runtime.toml` against the `weft:service` WIT world, gives
//! it a SQLite database, an event bus and an HTTP route, and runs every
//! invocation as one transaction whose events are dispatched only after it
//! commits.
//!
//! Two ways in: [`Host::start`] with a `runtime.toml` (what the `weft`
//! binary does), or [`HostBuilder`] from code — components from files or
//! bytes, with or without an HTTP listener — for a program that embeds the
//! host, calls its components in process and reacts to their events:
//!
//! ```no_run
//! use std::time::Duration;
//! use weft_host::http::{Bytes, Request};
//! use weft_host::{ComponentConfig, HostBuilder};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let built = "components/target/wasm32-wasip2/release";
//! let host = HostBuilder::new()
//!     .data_dir("/tmp/my-app-weft")
//!     .component(
//!         "iam",
//!         ComponentConfig::from_file(format!("{built}/iam.wasm"))
//!             .publish(["user.registered"]),
//!     )
//!     .start()
//!     .await?;
//! let registered = host.subscribe(&["user.registered"]).await?;
//!
//! // An HTTP request to a component, in process: no socket.
//! let request = Request::post("/iam/register")
//!     .header("content-type", "application/json")
//!     .body(Bytes::from(
//!         r#"{"username":"ada","email":"ada@example.com","password":"correct horse battery"}"#,
//!     ))?;
//! let response = host.call(request).await;
//! assert_eq!(response.status(), 201);
//!
//! // React to the component's events.
//! let event = tokio::time::timeout(Duration::from_secs(5), registered.recv()).await??;
//! println!("{} {}", event.event_type, event.data);
//!
//! host.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The embedding API: [`HostBuilder`], [`Host::call`], [`Host::publish`],
//! [`Host::request`], [`Host::subscribe`], [`Host::reload`],
//! [`Host::rollback`], [`Host::shutdown`]. Errors are typed enums:
//! [`StartError`], [`PublishError`], [`bus::BusError`],
//! [`reload::ReloadError`].
#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod bindings;
pub mod builder;
pub mod bus;
pub mod capabilities;
pub mod component;
pub mod config;
pub mod conns;
pub mod db;
pub mod deadletters;
pub mod engine;
pub mod fakes;
pub mod gateway;
pub mod health;
pub mod hub;
pub mod limits;
pub mod loader;
pub mod nats_server;
pub mod operator;
pub mod outbox;
pub mod private;
pub mod reload;
pub mod revocations;
pub mod runtime;
pub mod scaffold;
pub mod state;
pub mod stderr;
pub mod testing;
pub mod throttle;
pub mod time;
pub mod trace;
pub mod websocket;

pub use builder::HostBuilder;

/// The HTTP types [`Host::call`] takes and returns.
pub mod http {
    pub use bytes::Bytes;
    pub use hyper::{header, Method, Request, Response, StatusCode};
}
pub use config::ComponentConfig;
pub use runtime::{Host, PublishError, StartError};
