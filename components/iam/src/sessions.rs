//! Logins as sessions: a short access token and a refresh token that is
//! rotated on every use (OAuth 2.0 Security BCP, refresh token rotation).
//!
//! - `POST /login` starts a session: access token (claim `sid`) and
//!   `refreshToken`.
//! - `POST /token/refresh` `{refreshToken}` → 200 as login, with a new
//!   refresh token; the one presented is spent. A spent one presented again
//!   means it leaked: the whole session ends (its access tokens are revoked
//!   at the host) and the answer is 401. Unknown, expired or ended → 401.
//! - `POST /logout` (auth) → 204: the caller's session ends.
//! - A password change ends every session of the user.
//!
//! Refresh tokens are secrets of 256 bits stored only as hashes. A session
//! lives `refresh_ttl_secs` (config, default 30 days) from its login.

use serde::{Deserialize, Serialize};
use weft_sdk::db::{self, Value};
use weft_sdk::{auth, config, http, log, new_id, now_rfc3339, now_unix, Error, Request, Response};

use crate::roles;
use crate::secrets;
use crate::users::{self, Lookup, User};

pub const DEFAULT_REFRESH_TTL_SECS: i64 = 30 * 24 * 3600;

/// Appended to IAM's migrations.
pub const MIGRATIONS: [&str; 3] = [
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        ended_at TEXT
    )",
    "CREATE INDEX sessions_by_user ON sessions (user_id)",
    "CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        session_id TEXT NOT NULL,
        created_at TEXT NOT NULL,
        used_at TEXT
    )",
];

/// What login and refresh answer.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tokens<'a> {
    access_token: &'a str,
    token_type: &'a str,
    expires_in: u32,
    refresh_token: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

/// Starts a session for `user`, who just proved who they are: 200 with
/// both tokens.
///
/// `user` may have been read outside the transaction: the session starts
/// only if the password hash that was checked is still the stored one (a
/// password change in between refuses the login, as `invalid_credentials`).
pub fn start(user: &User) -> Result<Response, Response> {
    let session = new_id();
    let started = db::execute(
        "INSERT INTO sessions (id, user_id, created_at, expires_at)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (
           SELECT 1 FROM users WHERE id = ?2 AND password_hash = ?5 AND deleted_at IS NULL)",
        &[
            Value::from(&session),
            Value::from(&user.base.id),
            Value::from(&now_rfc3339()),
            Value::Integer(now_unix().saturating_add(refresh_ttl_secs())),
            Value::from(&user.password_hash),
        ],
    )?;
    if started != 1 {
        log::info("login refused: the password changed while it was checked");
        return Err(crate::login::invalid_credentials());
    }
    answer(user, &session)
}

/// Issues a new refresh token and access token in `session`.
fn answer(user: &User, session: &str) -> Result<Response, Response> {
    let refresh = secrets::new_secret()?;
    db::execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?1, ?2, ?3)",
        &[
            Value::from(&secrets::hash(&refresh)),
            Value::from(session),
            Value::from(&now_rfc3339()),
        ],
    )?;
    let roles = roles::for_user(
        &user.username,
        &user.roles,
        config::get("admins").as_deref(),
    );
    let token = auth::issue_session_token(&user.base.id, &user.base.owner.org_id, &roles, session)
        .map_err(crate::login::token_failure)?;
    Ok(http::json(
        200,
        &Tokens {
            access_token: &token.access_token,
            token_type: &token.token_type,
            expires_in: token.expires_in,
            refresh_token: &refresh,
        },
    ))
}

/// `POST /token/refresh`.
pub fn refresh(request: &Request) -> Result<Response, Response> {
    let input: RefreshRequest = http::parse_json(request)?;
    if input.refresh_token.is_empty() || input.refresh_token.len() > 128 {
        return Err(invalid_refresh());
    }
    let rows = db::query(
        "SELECT r.session_id, r.used_at, s.user_id, s.expires_at, s.ended_at
         FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
         WHERE r.token_hash = ?1",
        &[Value::from(&secrets::hash(&input.refresh_token))],
    )?;
    let Some(row) = rows.first() else {
        return Err(invalid_refresh());
    };
    let session = row.text("session_id")?;
    let user_id = row.text("user_id")?;
    if row.opt_text("ended_at")?.is_some() || row.int("expires_at")? <= now_unix() {
        return Err(invalid_refresh());
    }
    // Spent already, or spent by a racing request just now: someone else
    // holds a copy. End the session for everyone.
    let spent = row.opt_text("used_at")?.is_some()
        || db::execute(
            "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
            &[
                Value::from(&secrets::hash(&input.refresh_token)),
                Value::from(&now_rfc3339()),
            ],
        )? != 1;
    if spent {
        log::warn(&format!(
            "refresh token of session {session} reused: the session ends"
        ));
        end(&session)?;
        return Err(http::unauthorized(
            "this refresh token was used before; the login it belonged to has ended",
        ));
    }
    let Some(user) = users::find_live(Lookup::Id(&user_id))? else {
        end(&session)?;
        return Err(invalid_refresh());
    };
    answer(&user, &session)
}

/// `POST /logout`.
pub fn logout(request: &Request) -> Result<Response, Response> {
    http::require_caller(request)?;
    let Some(session) = auth::caller_session() else {
        return Err(http::validation_failed(
            "this token belongs to no login; only a login's token logs out",
        ));
    };
    end(&session)?;
    Ok(http::no_content())
}

/// Ends every session of `user_id` (a password change) and every token
/// issued to them before now.
pub fn end_all(user_id: &str) -> Result<(), Error> {
    let rows = db::query(
        "SELECT id FROM sessions WHERE user_id = ?1 AND ended_at IS NULL",
        &[Value::from(user_id)],
    )?;
    for row in rows.iter() {
        end(&row.text("id")?)?;
    }
    auth::revoke_user(user_id)
}

/// Ends `session`: its refresh tokens stop working here, its access tokens
/// at the host once this invocation commits.
fn end(session: &str) -> Result<(), Error> {
    db::execute(
        "UPDATE sessions SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
        &[Value::from(session), Value::from(&now_rfc3339())],
    )?;
    auth::revoke_session(session)
}

/// 401 for a refresh token that opens nothing.
fn invalid_refresh() -> Response {
    http::unauthorized("the refresh token is unknown, expired or its login has ended")
}

fn refresh_ttl_secs() -> i64 {
    crate::settings::positive("refresh_ttl_secs", DEFAULT_REFRESH_TTL_SECS)
}
