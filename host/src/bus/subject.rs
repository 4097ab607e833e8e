//! Subjects with NATS semantics, so that moving from the local bus to NATS
//! changes nothing: tokens separated by `.`, `*` matches one token, `>`
//! matches one or more trailing tokens. Events travel on
//! `events.<eventType>`.

/// The prefix of every event subject.
pub const EVENTS_PREFIX: &str = "events.";

/// The subject an event of `event_type` is published on, or `None` if the
/// type is not a valid literal subject (empty tokens, wildcards, spaces).
pub fn event_subject(event_type: &str) -> Option<String> {
    (is_valid(event_type) && !has_wildcard(event_type))
        .then(|| format!("{EVENTS_PREFIX}{event_type}"))
}

/// The subject pattern for a subscription written in `runtime.toml`: `*`
/// alone means every event (`events.>`); anything else is a NATS pattern over
/// event types (`user.*`, `user.>`, `user.registered`).
pub fn event_subject_pattern(pattern: &str) -> Option<String> {
    if pattern == "*" {
        return Some(format!("{EVENTS_PREFIX}>"));
    }
    is_valid(pattern).then(|| format!("{EVENTS_PREFIX}{pattern}"))
}

/// Whether `subject` is well formed: non-empty tokens of printable,
/// non-space characters, `>` only as the last token, at most 256 bytes.
pub fn is_valid(subject: &str) -> bool {
    if subject.is_empty() || subject.len() > 256 {
        return false;
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    let last = tokens.len() - 1;
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && t.chars().all(|c| c.is_ascii_graphic())
            && (*t != ">" || i == last)
            && (!t.contains('*') || *t == "*")
            && (!t.contains('>') || *t == ">")
    })
}

/// Whether `subject` can be requested: well formed, without wildcards.
pub fn is_literal(subject: &str) -> bool {
    is_valid(subject) && !subject.contains(['*', '>'])
}

fn has_wildcard(subject: &str) -> bool {
    subject.split('.').any(|t| t == "*" || t == ">")
}

/// Whether the literal `subject` matches `pattern`.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_nats() {
        assert!(matches("events.>", "events.user.registered"));
        assert!(!matches("events.>", "events"));
        assert!(matches("events.user.*", "events.user.registered"));
        assert!(!matches("events.user.*", "events.user.registered.x"));
        assert!(matches("events.*.registered", "events.user.registered"));
        assert!(!matches(
            "events.user.registered",
            "events.user.registered2"
        ));
        assert!(!matches("events.user", "events.user.registered"));
    }

    #[test]
    fn star_alone_means_every_event() {
        assert_eq!(event_subject_pattern("*").as_deref(), Some("events.>"));
        assert_eq!(
            event_subject_pattern("user.*").as_deref(),
            Some("events.user.*")
        );
    }

    #[test]
    fn only_literal_subjects_can_be_requested() {
        assert!(is_literal("workflows.create"));
        for bad in ["workflows.*", "workflows.>", ">", "a..b", ""] {
            assert!(!is_literal(bad), "{bad:?}");
        }
    }

    #[test]
    fn malformed_subjects_are_refused() {
        for bad in ["", "a..b", "a.>.b", "a b", "a.b*", ".a", "a."] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert_eq!(event_subject("user.*"), None);
        assert_eq!(
            event_subject("user.registered").as_deref(),
            Some("events.user.registered")
        );
    }
}
