//! Host capabilities: one module per WIT interface, each implementing that
//! interface's generated `Host` trait on [`HostState`]. This is the one place
//! where they are added to the linker.

pub mod auth;
pub mod config;
pub mod logging;
pub mod messaging;
pub mod realtime;
pub mod storage;
pub mod throttle;

use wasmtime::component::{HasSelf, Linker};

use crate::bindings::weft::service;
use crate::state::HostState;

/// Adds WASI p2 and every Weft interface to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    service::types::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    service::http::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    service::messaging::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    service::storage::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    service::logging::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    service::config::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    service::auth::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    service::realtime::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    service::throttle::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    Ok(())
}

impl service::types::Host for HostState {}
impl service::http::Host for HostState {}
