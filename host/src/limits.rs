//! The per-store resource limiter: caps a guest's memory, tables and
//! instances, and remembers which cap it hit so that the failure can say so
//! ("memory limit of 64 MiB exceeded") instead of a bare trap.
//!
//! A refused growth traps at once rather than returning -1 to the guest: a
//! guest that cannot allocate can do nothing useful, and the trap discards
//! the instance with everything it holds.

use wasmtime::ResourceLimiter;

use crate::config::ResolvedLimits;

/// Which cap an invocation hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitHit {
    /// Linear memory would have grown past the cap.
    Memory {
        /// The cap, in bytes.
        limit: usize,
        /// The size asked for, in bytes.
        wanted: usize,
    },
    /// A table would have grown past the cap.
    TableElements {
        /// The cap.
        limit: usize,
    },
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitHit::Memory { limit, wanted } => write!(
                f,
                "memory limit of {} MiB exceeded (asked for {} MiB)",
                limit >> 20,
                wanted.div_ceil(1 << 20)
            ),
            LimitHit::TableElements { limit } => {
                write!(f, "table limit of {limit} elements exceeded")
            }
        }
    }
}

/// A [`ResourceLimiter`] built from a component's [`ResolvedLimits`].
#[derive(Debug)]
pub struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    /// The first cap hit, if any.
    pub hit: Option<LimitHit>,
}

impl Limiter {
    /// A limiter for one store.
    pub fn new(limits: &ResolvedLimits) -> Limiter {
        Limiter {
            memory_bytes: limits.memory_bytes,
            table_elements: limits.table_elements,
            instances: limits.instances,
            hit: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired <= self.memory_bytes {
            return Ok(true);
        }
        let hit = LimitHit::Memory {
            limit: self.memory_bytes,
            wanted: desired,
        };
        let message = hit.to_string();
        self.hit.get_or_insert(hit);
        Err(wasmtime::Error::msg(message))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired <= self.table_elements {
            return Ok(true);
        }
        let hit = LimitHit::TableElements {
            limit: self.table_elements,
        };
        let message = hit.to_string();
        self.hit.get_or_insert(hit);
        Err(wasmtime::Error::msg(message))
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;

    fn limiter(memory_mib: u64, table_elements: usize) -> Limiter {
        Limiter::new(
            &Limits {
                memory_mib: Some(memory_mib),
                table_elements: Some(table_elements),
                ..Limits::default()
            }
            .resolve(&Limits::default()),
        )
    }

    #[test]
    fn growth_within_the_cap_is_allowed() {
        let mut l = limiter(2, 10);
        assert!(matches!(l.memory_growing(0, 2 << 20, None), Ok(true)));
        assert!(matches!(l.table_growing(0, 10, None), Ok(true)));
        assert_eq!(l.hit, None);
    }

    #[test]
    fn growth_past_the_cap_traps_and_is_remembered() {
        let mut l = limiter(2, 10);
        let err = l.memory_growing(1 << 20, 3 << 20, None).err();
        assert!(err.is_some_and(|e| e.to_string().contains("memory limit of 2 MiB")));
        assert_eq!(
            l.hit,
            Some(LimitHit::Memory {
                limit: 2 << 20,
                wanted: 3 << 20
            })
        );
        // The first hit is the one reported.
        let _ = l.table_growing(0, 11, None);
        assert!(matches!(l.hit, Some(LimitHit::Memory { .. })));
        let mut t = limiter(2, 10);
        assert!(t.table_growing(0, 11, None).is_err());
        assert_eq!(t.hit, Some(LimitHit::TableElements { limit: 10 }));
    }
}
