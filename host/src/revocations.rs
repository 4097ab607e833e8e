//! Revoked sessions and users: which verified tokens the host refuses
//! before they expire.
//!
//! A component granted `issue_tokens` revokes through `weft:service/auth`
//! (`revoke-session`, `revoke-user`); like its events, a revocation is held
//! until the invocation commits and is written to `_weft_revocations` in
//! the same transaction, so a rolled-back logout revokes nothing and a
//! committed one survives a restart (every database's rows are loaded at
//! start). Entries are kept only while a token they refuse could still be
//! valid: `expires` is the revocation time plus the token lifetime.
//!
//! This module owns `_weft_revocations` and the in-memory set the token
//! service consults on every verification ([`crate::auth::TokenService`]).

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::db::{DbError, HostSql, Tx};

/// The table, created in every database with the host's other tables.
pub(crate) const TABLE: &str = "
    CREATE TABLE IF NOT EXISTS _weft_revocations (
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        before INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        PRIMARY KEY (kind, subject)) WITHOUT ROWID;";

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum Revocation {
    /// Every token of session `sid` (claim `sid`).
    Session {
        /// The session id.
        sid: String,
        /// Unix seconds after which no token of it can be valid anyway.
        expires: u64,
    },
    /// Every token of user `sub` issued before `before` (claim `iat`).
    User {
        /// The user id.
        sub: String,
        /// Unix seconds: tokens with `iat < before` are refused.
        before: u64,
        /// Unix seconds after which no such token can be valid anyway.
        expires: u64,
    },
}

/// Longest session or user id a revocation may name.
const MAX_ID: usize = 256;

impl Revocation {
    /// This revocation as taken from the network: an id of 1-256 bytes, in
    /// force no longer than `window` seconds from `now`, refusing no token
    /// issued after this second. `None` when malformed or no longer in
    /// force.
    pub fn sanitized(self, now: u64, window: u64) -> Option<Revocation> {
        let (_, id) = self.key();
        if id.is_empty() || id.len() > MAX_ID {
            return None;
        }
        let latest = now.saturating_add(window);
        let r = match self {
            Revocation::Session { sid, expires } => Revocation::Session {
                sid,
                expires: expires.min(latest),
            },
            Revocation::User {
                sub,
                before,
                expires,
            } => Revocation::User {
                sub,
                before: before.min(now.saturating_add(1)),
                expires: expires.min(latest),
            },
        };
        (r.entry().expires > now).then_some(r)
    }

    /// Unix seconds after which it refuses nothing a verifier would accept.
    pub fn expires(&self) -> u64 {
        self.entry().expires
    }

    fn key(&self) -> (Kind, &str) {
        match self {
            Revocation::Session { sid, .. } => (Kind::Session, sid),
            Revocation::User { sub, .. } => (Kind::User, sub),
        }
    }

    fn entry(&self) -> Entry {
        match self {
            Revocation::Session { expires, .. } => Entry {
                before: u64::MAX,
                expires: *expires,
            },
            Revocation::User {
                before, expires, ..
            } => Entry {
                before: *before,
                expires: *expires,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Session,
    User,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::User => "user",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    before: u64,
    expires: u64,
}

/// The revocations in force, shared by the gateway, the WebSockets and
/// every component.
#[derive(Debug)]
pub struct Revocations {
    entries: RwLock<HashMap<(Kind, String), Entry>>,
    /// Bumped at every change, so open WebSockets look again.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Revocations {
    fn default() -> Self {
        Revocations {
            entries: RwLock::default(),
            changed: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Revocations {
    /// Whether a token of session `sid` (if any) for user `sub`, issued at
    /// `iat`, is revoked as of now.
    pub fn refuses(&self, sub: &str, sid: Option<&str>, iat: u64) -> bool {
        let Ok(entries) = self.entries.read() else {
            // A panic while writing the set: refuse rather than let a
            // revoked token through.
            return true;
        };
        let user = entries
            .get(&(Kind::User, sub.to_owned()))
            .is_some_and(|e| iat < e.before);
        let session = sid.is_some_and(|sid| entries.contains_key(&(Kind::Session, sid.to_owned())));
        user || session
    }

    /// The earliest `iat` a new token of `sub` may carry: a user revocation
    /// refuses whole seconds, so a token issued in the second of a password
    /// change is dated after it.
    pub fn not_before(&self, sub: &str) -> u64 {
        self.entries
            .read()
            .ok()
            .and_then(|entries| entries.get(&(Kind::User, sub.to_owned())).map(|e| e.before))
            .unwrap_or(0)
    }

    /// Puts `revocations` in force (after their commit, or as loaded), and
    /// drops the entries that expired by `now`.
    pub fn apply(&self, revocations: &[Revocation], now: u64) {
        if revocations.is_empty() {
            return;
        }
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.expires > now);
            for r in revocations {
                let (kind, subject) = r.key();
                let new = r.entry();
                entries
                    .entry((kind, subject.to_owned()))
                    .and_modify(|e| {
                        e.before = e.before.max(new.before);
                        e.expires = e.expires.max(new.expires);
                    })
                    .or_insert(new);
            }
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes as they happen, for long-lived connections.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Writes `revocations` in transaction `tx` (they commit with it).
pub(crate) fn store(tx: &Tx, revocations: &[Revocation]) -> Result<(), DbError> {
    tx.host(|sql| {
        for r in revocations {
            let (kind, subject) = r.key();
            let entry = r.entry();
            sql.execute(
                "INSERT INTO _weft_revocations (kind, subject, before, expires)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, subject) DO UPDATE SET
                   before = max(before, excluded.before),
                   expires = max(expires, excluded.expires)",
                rusqlite::params![
                    kind.as_str(),
                    subject,
                    clamp(entry.before),
                    clamp(entry.expires)
                ],
            )?;
        }
        Ok(())
    })
}

/// The revocations stored in a database and still in force at `now`;
/// deletes the expired ones.
pub(crate) fn load(sql: &HostSql<'_>, now: u64) -> Result<Vec<Revocation>, DbError> {
    sql.execute(
        "DELETE FROM _weft_revocations WHERE expires <= ?1",
        rusqlite::params![clamp(now)],
    )?;
    let rows = sql.query_rows(
        "SELECT kind, subject, before, expires FROM _weft_revocations",
        |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        },
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|(kind, subject, before, expires)| {
            let expires = u64::try_from(expires).ok()?;
            match kind.as_str() {
                "session" => Some(Revocation::Session {
                    sid: subject,
                    expires,
                }),
                "user" => Some(Revocation::User {
                    sub: subject,
                    before: u64::try_from(before).ok()?,
                    expires,
                }),
                _ => None,
            }
        })
        .collect())
}

/// SQLite integers are signed.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_comes_from_the_network_is_bounded() {
        let user = |sub: &str, before, expires| Revocation::User {
            sub: sub.into(),
            before,
            expires,
        };
        assert_eq!(
            user("u", u64::MAX, u64::MAX).sanitized(100, 50),
            Some(user("u", 101, 150))
        );
        assert_eq!(user("u", 90, 99).sanitized(100, 50), None);
        assert_eq!(user("", 90, 120).sanitized(100, 50), None);
        assert_eq!(user(&"x".repeat(257), 90, 120).sanitized(100, 50), None);
        assert_eq!(
            Revocation::Session {
                sid: "s".into(),
                expires: 120
            }
            .sanitized(100, 50),
            Some(Revocation::Session {
                sid: "s".into(),
                expires: 120
            })
        );
    }

    #[test]
    fn a_session_refuses_all_its_tokens_a_user_only_older_ones() {
        let set = Revocations::default();
        let mut watch = set.watch();
        set.apply(
            &[
                Revocation::Session {
                    sid: "s1".into(),
                    expires: 2000,
                },
                Revocation::User {
                    sub: "u2".into(),
                    before: 1000,
                    expires: 2000,
                },
            ],
            900,
        );
        assert!(watch.has_changed().unwrap_or(false));
        assert!(set.refuses("u1", Some("s1"), 5000));
        assert!(!set.refuses("u1", Some("s2"), 5000));
        assert!(!set.refuses("u1", None, 5000));
        assert!(set.refuses("u2", None, 999));
        assert!(set.refuses("u2", Some("s9"), 999));
        assert!(!set.refuses("u2", Some("s9"), 1000));
        assert_eq!(set.not_before("u2"), 1000);
        assert_eq!(set.not_before("u1"), 0);
        // A later revocation of the same user moves the line forward only.
        set.apply(
            &[Revocation::User {
                sub: "u2".into(),
                before: 500,
                expires: 1500,
            }],
            900,
        );
        assert!(set.refuses("u2", None, 999));
        let _ = watch.borrow_and_update();
        // Expired entries go at the next change.
        set.apply(
            &[Revocation::Session {
                sid: "s3".into(),
                expires: 3000,
            }],
            2500,
        );
        assert!(!set.refuses("u1", Some("s1"), 5000));
        assert!(!set.refuses("u2", None, 1));
        assert!(set.refuses("u3", Some("s3"), 1));
    }
}
