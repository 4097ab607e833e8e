//! `/health` and `/<component>/health`, shaped as the contract says.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::component::LoadedComponent;
use crate::runtime::Shared;

/// One component's entry.
pub fn component(c: &LoadedComponent) -> Value {
    json!({
        "status": c.status(),
        "version": c.current().sha256,
        "previousVersion": c.previous().map(|v| v.sha256.clone()),
        "swaps": c.swaps.load(Ordering::Relaxed),
        "instances": c.instances.len(),
        "handled": c.stats.handled.load(Ordering::Relaxed),
        "failed": c.stats.failed.load(Ordering::Relaxed),
        "duplicates": c.stats.duplicates.load(Ordering::Relaxed),
        "deadLetters": c.ctx.db.dead_letter_count(),
        "backlog": c.backlog(),
    })
}

/// The whole host: `degraded` when any component or the bus is.
pub fn overall(shared: &Shared) -> Value {
    let components: serde_json::Map<String, Value> = shared
        .components
        .iter()
        .map(|(name, c)| (name.clone(), component(c)))
        .collect();
    let connected = shared.bus.connected();
    let healthy = connected && shared.components.values().all(|c| c.status() == "ok");
    json!({
        "status": if healthy { "ok" } else { "degraded" },
        "bus": {"kind": shared.bus.kind(), "connected": connected},
        "components": components,
    })
}
