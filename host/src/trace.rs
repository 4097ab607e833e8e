//! W3C Trace Context (`traceparent`): where a caller sent one, Weft takes
//! part in its trace. Each invocation is a span of its own (same trace id,
//! a new span id), and what it publishes or requests carries the trace on:
//! in the `traceparent` header on NATS, and in the outbox row (not in the
//! contract's JSON envelope) until then.
//!
//! An invalid `traceparent` is ignored, as the recommendation says: the
//! invocation then has no trace context, and nothing downstream gets one.

/// The header (HTTP and NATS) that carries the trace context.
pub const HEADER: &str = "traceparent";

/// A valid version-00 `traceparent`: `00-<trace id>-<span id>-<flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: String,
    span_id: String,
    flags: String,
}

impl TraceParent {
    /// Parses a header value; `None` if it is not a valid `traceparent`.
    /// Future versions are read by their version-00 prefix, as the
    /// recommendation asks.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let mut parts = value.splitn(5, '-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        let rest = parts.next();
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || rest.is_none())
            && hex(trace_id, 32)
            && !zero(trace_id)
            && hex(span_id, 16)
            && !zero(span_id)
            && hex(flags, 2);
        valid.then(|| TraceParent {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
            flags: flags.to_owned(),
        })
    }

    /// The span of an invocation that this one caused: same trace, new id.
    pub fn child(&self) -> TraceParent {
        let bits = uuid::Uuid::new_v4().as_u128() as u64;
        TraceParent {
            trace_id: self.trace_id.clone(),
            // Never all zeros (invalid): the top bit is set.
            span_id: format!("{:016x}", bits | (1 << 63)),
            flags: self.flags.clone(),
        }
    }

    /// The trace this span belongs to.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// The span an invocation caused by `incoming` (a header value, if any)
/// runs as.
pub fn span_for(incoming: Option<&str>) -> Option<TraceParent> {
    incoming.and_then(TraceParent::parse).map(|t| t.child())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() -> Result<(), &'static str> {
        let t = TraceParent::parse(SAMPLE).ok_or("valid")?;
        assert_eq!(t.to_string(), SAMPLE);
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        Ok(())
    }

    #[test]
    fn invalid_headers_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        // A later version is read by its version-00 fields.
        let later = format!("01{}-what-comes-next", &SAMPLE[2..]);
        assert!(TraceParent::parse(&later).is_some());
    }

    #[test]
    fn a_child_keeps_the_trace_and_flags_and_gets_a_new_span() -> Result<(), &'static str> {
        let parent = TraceParent::parse(SAMPLE).ok_or("valid")?;
        let child = parent.child();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.to_string(), parent.to_string());
        assert!(child.to_string().ends_with("-01"));
        let again = TraceParent::parse(&child.to_string()).ok_or("a child is valid")?;
        assert_eq!(again, child);
        assert_eq!(span_for(Some("junk")), None);
        assert_eq!(span_for(None), None);
        Ok(())
    }
}
