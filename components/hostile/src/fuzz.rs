//! `GET /fuzz`: calls to every host import with arguments drawn from a
//! seeded generator: odd characters (`*`, `>`, NUL, non-ASCII), empty and
//! huge strings, extreme numbers, SQL the host must refuse. The host must
//! survive each call and answer it with `Ok` or a typed error.
//!
//! Generating a [`Call`] is pure, so the same seed gives the same calls and
//! the bounds can be tested natively; only [`Call::perform`] needs the host.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use weft_sdk::bindings::weft::service::logging::Level;
use weft_sdk::bindings::weft::service::messaging as raw_messaging;
use weft_sdk::db::{self, Value};
use weft_sdk::{auth, config, log, messaging, realtime, Error};

use crate::variant;

/// Ordinary random strings have fewer characters than this.
pub const MAX_CHARS: usize = 300;
/// The rare huge event type, subject, key, data or message: above any sane
/// limit on what a guest may hand the host.
pub const HUGE: usize = 2 * 1024 * 1024;
/// The rare huge SQL statement, in bytes.
pub const HUGE_SQL: usize = 100 * 1024;
/// The rare long log line, in bytes.
pub const LONG_LOG: usize = 20 * 1024;
/// Long token ids have at least this many characters (and fewer than
/// `LONG_ID + MAX_CHARS`).
pub const LONG_ID: usize = 300;
/// Ordinary statements have fewer parameters than this.
pub const MAX_PARAMS: usize = 5;
/// The rare statement with many parameters has at least this many (and
/// fewer than `MANY_PARAMS + 100`).
pub const MANY_PARAMS: usize = 1000;
/// Blobs have at most this many bytes.
pub const MAX_BLOB: usize = 4 * 1024;
/// Request timeouts are below this.
pub const MAX_TIMEOUT_MS: u32 = 20;
/// Ordinary tokens have fewer roles than this.
pub const MAX_ROLES: usize = 5;
/// The rare token with many roles has exactly this many.
pub const MANY_ROLES: usize = 40;

/// Letters and digits for plausible names, the NATS wildcards and token
/// separators, JSON's specials, and multi-byte and NUL characters.
const CHARSET: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r', 's',
    't', 'u', 'v', 'w', 'x', 'y', 'z', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '.', '.',
    '*', '>', ' ', '-', '_', '"', '\\', '\n', '/', 'é', '€', '😀', '\u{0}',
];

const SQL: &[&str] = &[
    "SELECT ?1",
    "SELECT * FROM things",
    "INSERT INTO things (body) VALUES (?1)",
    "UPDATE things SET body = ?1 WHERE id = ?2",
    "SELECT * FROM _weft_migrations",
    "DELETE FROM _weft_migrations",
    "ATTACH DATABASE 'x' AS y",
    "DETACH DATABASE main",
    "PRAGMA journal_mode",
    "PRAGMA journal_mode = OFF",
    "PRAGMA writable_schema = ON",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s",
    "VACUUM",
    "DROP TABLE nothing",
    "SELECT load_extension('x')",
    "SELECT 1; SELECT 2",
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) SELECT i FROM n",
];

const INVALID_JSON: &[&str] = &[
    "{", "[1, 2", "{\"a\":}", "{'a': 1}", "nope", "{} {}", "\u{0}",
];

const LEVELS: &[Level] = &[
    Level::Trace,
    Level::Debug,
    Level::Info,
    Level::Warn,
    Level::Error,
];

/// splitmix64: tiny and deterministic; statistical quality hardly matters
/// here, only that choices spread.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        // The remainder is below `n`, so it fits a usize.
        (self.next_u64() % n as u64) as usize
    }

    /// True once in `n` times, roughly.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items`, which must not be empty.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// One call to a host import.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Publish {
        event_type: String,
        data: String,
    },
    Request {
        subject: String,
        payload: String,
        timeout_ms: u32,
    },
    Execute {
        sql: String,
        params: Vec<Value>,
    },
    Query {
        sql: String,
        params: Vec<Value>,
    },
    ConfigGet {
        key: String,
    },
    Log {
        level: Level,
        message: String,
    },
    IssueToken {
        user_id: String,
        org_id: String,
        roles: Vec<String>,
    },
    Push {
        user_id: String,
        message: String,
    },
}

impl Call {
    pub fn random(rng: &mut Rng) -> Call {
        match rng.below(8) {
            0 => Call::Publish {
                event_type: name(rng),
                data: json_text(rng),
            },
            1 => Call::Request {
                subject: name(rng),
                payload: json_text(rng),
                timeout_ms: rng.below(MAX_TIMEOUT_MS as usize) as u32,
            },
            2 => Call::Execute {
                sql: sql(rng),
                params: params(rng),
            },
            3 => Call::Query {
                sql: sql(rng),
                params: params(rng),
            },
            4 => Call::ConfigGet { key: name(rng) },
            5 => Call::Log {
                level: rng.pick(LEVELS),
                message: if rng.one_in(50) {
                    "m".repeat(LONG_LOG)
                } else {
                    text(rng, MAX_CHARS)
                },
            },
            6 => Call::IssueToken {
                user_id: id(rng),
                org_id: id(rng),
                roles: roles(rng),
            },
            _ => Call::Push {
                user_id: id(rng),
                message: json_text(rng),
            },
        }
    }

    /// Makes the call. Calls without a result (config, logging) are `Ok`.
    pub fn perform(&self) -> Result<(), Error> {
        match self {
            Call::Publish { event_type, data } => {
                raw_messaging::publish(event_type, data).map(drop)
            }
            Call::Request {
                subject,
                payload,
                timeout_ms,
            } => messaging::request(subject, payload, *timeout_ms).map(drop),
            Call::Execute { sql, params } => db::execute(sql, params).map(drop),
            Call::Query { sql, params } => db::query(sql, params).map(drop),
            Call::ConfigGet { key } => {
                config::get(key);
                Ok(())
            }
            Call::Log { level, message } => {
                log::log(*level, message);
                Ok(())
            }
            Call::IssueToken {
                user_id,
                org_id,
                roles,
            } => auth::issue_token(user_id, org_id, roles).map(drop),
            Call::Push { user_id, message } => realtime::push_text(user_id, message),
        }
    }
}

/// What `GET /fuzz` answers: `{"calls", "ok", "errors": {variant: count}}`.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    pub calls: u64,
    pub ok: u64,
    pub errors: BTreeMap<&'static str, u64>,
}

impl Tally {
    pub fn record(&mut self, result: Result<(), Error>) {
        self.calls += 1;
        match result {
            Ok(()) => self.ok += 1,
            Err(err) => *self.errors.entry(variant(&err)).or_default() += 1,
        }
    }
}

/// Makes `calls` random calls from `seed`.
pub fn run(seed: u64, calls: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    for _ in 0..calls {
        // One call alive at a time: the huge arguments are dropped before
        // the next is made, so memory stays bounded.
        let call = Call::random(&mut rng);
        tally.record(call.perform());
    }
    tally
}

/// Exactly `count` characters from [`CHARSET`].
pub fn chars(rng: &mut Rng, count: usize) -> String {
    (0..count).map(|_| rng.pick(CHARSET)).collect()
}

/// Fewer than `max` characters from [`CHARSET`].
pub fn text(rng: &mut Rng, max: usize) -> String {
    let count = rng.below(max);
    chars(rng, count)
}

/// An event type, subject or config key: short text, or once in 50 a
/// [`HUGE`] one.
pub fn name(rng: &mut Rng) -> String {
    if rng.one_in(50) {
        "n".repeat(HUGE)
    } else {
        text(rng, MAX_CHARS)
    }
}

/// Event data, a request payload or a push message: a JSON object or array,
/// invalid JSON or nothing; once in 50 a JSON object of over [`HUGE`]
/// bytes.
pub fn json_text(rng: &mut Rng) -> String {
    if rng.one_in(50) {
        return json!({"huge": "h".repeat(HUGE)}).to_string();
    }
    match rng.below(5) {
        0 => {
            json!({"text": text(rng, MAX_CHARS), "number": rng.next_u64(), "list": [1, null, true]})
                .to_string()
        }
        1 => json!([text(rng, MAX_CHARS), rng.next_u64(), {}]).to_string(),
        2 => rng.pick(INVALID_JSON).to_string(),
        3 => format!("{{{}", text(rng, MAX_CHARS)),
        _ => String::new(),
    }
}

/// A statement from [`SQL`], garbage, nothing, or once in 50 a valid one of
/// over [`HUGE_SQL`] bytes.
pub fn sql(rng: &mut Rng) -> String {
    if rng.one_in(50) {
        return format!("SELECT '{}'", "x".repeat(HUGE_SQL));
    }
    match rng.below(10) {
        0 => text(rng, MAX_CHARS),
        1 => String::new(),
        _ => rng.pick(SQL).to_string(),
    }
}

/// Fewer than [`MAX_PARAMS`] parameters, or once in 50 at least
/// [`MANY_PARAMS`].
pub fn params(rng: &mut Rng) -> Vec<Value> {
    let count = if rng.one_in(50) {
        MANY_PARAMS + rng.below(100)
    } else {
        rng.below(MAX_PARAMS)
    };
    (0..count).map(|_| value(rng)).collect()
}

/// A parameter of any kind, extremes included.
pub fn value(rng: &mut Rng) -> Value {
    match rng.below(5) {
        0 => Value::Null,
        1 => {
            // Reinterpreting the bits is the point: any i64 at all.
            let any = rng.next_u64() as i64;
            Value::Integer(rng.pick(&[0, 1, -1, i64::MIN, i64::MAX, any]))
        }
        2 => {
            let any = f64::from_bits(rng.next_u64());
            Value::Real(rng.pick(&[
                0.0,
                -0.0,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MIN_POSITIVE,
                f64::MAX,
                any,
            ]))
        }
        3 => Value::Text(text(rng, MAX_CHARS)),
        _ => {
            let count = rng.below(MAX_BLOB + 1);
            Value::Blob(
                (0..count)
                    .map(|_| rng.next_u64().to_le_bytes()[0])
                    .collect(),
            )
        }
    }
}

/// A user or org id: empty, short, or at least [`LONG_ID`] characters.
pub fn id(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => String::new(),
        1 => {
            let count = LONG_ID + rng.below(MAX_CHARS);
            chars(rng, count)
        }
        _ => text(rng, MAX_CHARS),
    }
}

/// Fewer than [`MAX_ROLES`] roles, or once in 10 exactly [`MANY_ROLES`].
pub fn roles(rng: &mut Rng) -> Vec<String> {
    let count = if rng.one_in(10) {
        MANY_ROLES
    } else {
        rng.below(MAX_ROLES)
    };
    (0..count).map(|_| id(rng)).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// `count` draws of `make` from `seed`, each boiled down by `make` so
    /// that the huge ones are not all kept.
    fn draws<T>(seed: u64, count: usize, mut make: impl FnMut(&mut Rng) -> T) -> Vec<T> {
        let mut rng = Rng::new(seed);
        (0..count).map(|_| make(&mut rng)).collect()
    }

    fn short(text: &str) -> bool {
        text.chars().count() < MAX_CHARS
    }

    #[test]
    fn the_generator_is_deterministic() {
        let first = draws(42, 1000, Rng::next_u64);
        assert_eq!(first, draws(42, 1000, Rng::next_u64));
        assert_ne!(first, draws(43, 1000, Rng::next_u64));
        // Whole calls, NaNs and all (compared as Debug text, as NaN != NaN).
        let calls = |seed| draws(seed, 300, |rng| format!("{:?}", Call::random(rng)));
        assert_eq!(calls(7), calls(7));
        assert_ne!(calls(7), calls(8));
    }

    #[test]
    fn below_stays_below() {
        let mut rng = Rng::new(1);
        assert_eq!(rng.below(0), 0);
        for n in [1, 2, 3, 300, usize::MAX] {
            assert!((0..1000).all(|_| rng.below(n) < n));
        }
        let seen: HashSet<_> = (0..1000).map(|_| rng.below(4)).collect();
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn texts_respect_their_bounds() {
        assert_eq!(chars(&mut Rng::new(1), 17).chars().count(), 17);
        assert!(draws(2, 2000, |rng| short(&text(rng, MAX_CHARS)))
            .into_iter()
            .all(|ok| ok));
        assert!(draws(3, 100, |rng| text(rng, 1).is_empty())
            .into_iter()
            .all(|empty| empty));
    }

    #[test]
    fn names_are_short_or_huge() {
        // (short, huge, has a wildcard, NUL or non-ASCII character)
        let names = draws(4, 2000, |rng| {
            let name = name(rng);
            let odd = name.contains(['*', '>', '\u{0}', 'é']);
            (short(&name), name.len() == HUGE, odd)
        });
        assert!(names.iter().all(|&(short, huge, _)| short || huge));
        assert!(names.iter().any(|&(_, huge, _)| huge));
        assert!(names.iter().any(|&(_, _, odd)| odd));
    }

    #[test]
    fn json_texts_are_bounded_and_varied() {
        #[derive(PartialEq)]
        enum Kind {
            Huge,
            Empty,
            Object,
            Array,
            Invalid,
        }
        let kinds = draws(5, 2000, |rng| {
            let text = json_text(rng);
            // A NUL escapes to six bytes, `\u0000`.
            assert!(text.len() < 6 * MAX_CHARS + 100 || (HUGE..HUGE + 100).contains(&text.len()));
            match serde_json::from_str::<serde_json::Value>(&text) {
                _ if text.len() > HUGE => Kind::Huge,
                _ if text.is_empty() => Kind::Empty,
                Ok(value) if value.is_object() => Kind::Object,
                Ok(value) if value.is_array() => Kind::Array,
                _ => Kind::Invalid,
            }
        });
        for kind in [
            Kind::Huge,
            Kind::Empty,
            Kind::Object,
            Kind::Array,
            Kind::Invalid,
        ] {
            assert!(kinds.contains(&kind));
        }
    }

    #[test]
    fn sql_is_bounded() {
        let statements = draws(6, 2000, |rng| {
            let sql = sql(rng);
            let huge = sql.len() > HUGE_SQL && sql.len() < HUGE_SQL + 20;
            (short(&sql) || huge, huge, sql.is_empty(), sql == "BEGIN")
        });
        assert!(statements.iter().all(|s| s.0));
        assert!(statements.iter().any(|s| s.1));
        assert!(statements.iter().any(|s| s.2));
        assert!(statements.iter().any(|s| s.3));
    }

    #[test]
    fn params_are_bounded() {
        let counts = draws(7, 2000, |rng| params(rng).len());
        let many = |count: &usize| (MANY_PARAMS..MANY_PARAMS + 100).contains(count);
        assert!(counts
            .iter()
            .all(|count| *count < MAX_PARAMS || many(count)));
        assert!(counts.iter().any(many));

        let values = draws(8, 2000, value);
        assert!(values.iter().all(|value| match value {
            Value::Text(text) => short(text),
            Value::Blob(bytes) => bytes.len() <= MAX_BLOB,
            _ => true,
        }));
        assert!(values.contains(&Value::Integer(i64::MIN)));
        assert!(values.contains(&Value::Integer(i64::MAX)));
        assert!(values.contains(&Value::Real(f64::NEG_INFINITY)));
        assert!(values
            .iter()
            .any(|value| matches!(value, Value::Real(real) if real.is_nan())));
    }

    #[test]
    fn ids_and_roles_are_bounded() {
        let ids = draws(9, 2000, id);
        let long = |id: &String| (LONG_ID..LONG_ID + MAX_CHARS).contains(&id.chars().count());
        assert!(ids.iter().all(|id| short(id) || long(id)));
        assert!(ids.iter().any(String::is_empty));
        assert!(ids.iter().any(long));

        let counts = draws(10, 2000, |rng| roles(rng).len());
        assert!(counts
            .iter()
            .all(|&count| count < MAX_ROLES || count == MANY_ROLES));
        assert!(counts.contains(&MANY_ROLES));
    }

    #[test]
    fn calls_reach_every_import() {
        let kinds = draws(11, 500, |rng| {
            let call = Call::random(rng);
            match &call {
                Call::Request { timeout_ms, .. } => assert!(*timeout_ms < MAX_TIMEOUT_MS),
                Call::Log { message, .. } => assert!(short(message) || message.len() == LONG_LOG),
                _ => {}
            }
            std::mem::discriminant(&call)
        });
        assert_eq!(kinds.into_iter().collect::<HashSet<_>>().len(), 8);
    }

    #[test]
    fn the_tally_counts_by_variant() {
        let mut tally = Tally::default();
        tally.record(Ok(()));
        tally.record(Err(Error::Denied("no".into())));
        tally.record(Err(Error::LimitExceeded("big".into())));
        tally.record(Err(Error::LimitExceeded("bigger".into())));
        tally.record(Err(Error::NoResponder));
        assert_eq!(
            serde_json::to_value(&tally).expect("serialises"),
            json!({"calls": 5, "ok": 1,
                   "errors": {"denied": 1, "limit-exceeded": 2, "no-responder": 1}})
        );
    }
}
