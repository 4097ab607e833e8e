//! Invitations: the only way into an existing organisation.
//!
//! `POST /invitations` (auth, role `org_admin` or `admin`) `{email?}` → 201
//! `{code, orgId, expiresAt}`. The code is 256 random bits; only its hash
//! is stored, so a reader of the database cannot join anyone's org. It is
//! spent by the registration that uses it (`register`), once, before
//! `expiresAt` (config `invitation_ttl_secs`, default 7 days), and only
//! for the email it names when it names one.

use serde::{Deserialize, Serialize};
use weft_sdk::db::{self, Value};
use weft_sdk::{format_rfc3339, http, now_rfc3339, now_unix, Error, Request, Response};

use crate::secrets;

pub const DEFAULT_TTL_SECS: i64 = 7 * 24 * 3600;

/// Appended to IAM's migrations.
pub const MIGRATION: &str = "CREATE TABLE invitations (
        code_hash TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        email TEXT,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at TEXT,
        used_by TEXT
    )";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InvitationRequest {
    #[serde(default)]
    email: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Invitation<'a> {
    code: &'a str,
    org_id: &'a str,
    expires_at: &'a str,
}

pub fn handle(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    if !(caller.has_role("org_admin") || caller.has_role("admin")) {
        return Err(http::error(
            403,
            "forbidden",
            "only an org_admin or an admin invites into an organisation",
        ));
    }
    let input: InvitationRequest = http::parse_json(request)?;
    if let Some(email) = &input.email {
        if !crate::register::valid_email(email) {
            return Err(http::validation_failed(
                "email, when given, must be a valid email address",
            ));
        }
    }
    let code = secrets::new_secret()?;
    let expires = now_unix().saturating_add(ttl_secs());
    db::execute(
        "INSERT INTO invitations (code_hash, org_id, email, created_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            Value::from(&secrets::hash(&code)),
            Value::from(&caller.org_id),
            input.email.as_deref().map_or(Value::Null, Value::from),
            Value::from(&caller.user_id),
            Value::from(&now_rfc3339()),
            Value::Integer(expires),
        ],
    )?;
    Ok(http::json(
        201,
        &Invitation {
            code: &code,
            org_id: &caller.org_id,
            expires_at: &format_rfc3339(expires),
        },
    ))
}

/// Spends `code` for `email` joining `org_id`, as `user_id`. False when
/// there is no such code for that org, it is spent or expired, or it names
/// another email: the caller answers 403 and learns nothing more.
pub fn spend(code: &str, org_id: &str, email: &str, user_id: &str) -> Result<bool, Error> {
    // One statement, so two registrations racing for one code cannot both
    // see it unused.
    let changed = db::execute(
        "UPDATE invitations SET used_at = ?5, used_by = ?4
         WHERE code_hash = ?1 AND org_id = ?2 AND used_at IS NULL AND expires_at > ?6
           AND (email IS NULL OR email = ?3 COLLATE NOCASE)",
        &[
            Value::from(&secrets::hash(code)),
            Value::from(org_id),
            Value::from(email),
            Value::from(user_id),
            Value::from(&now_rfc3339()),
            Value::Integer(now_unix()),
        ],
    )?;
    Ok(changed == 1)
}

/// Gives back the invitation `user_id` spent (its account was not made).
pub fn unspend(user_id: &str) -> Result<(), Error> {
    db::execute(
        "UPDATE invitations SET used_at = NULL, used_by = NULL WHERE used_by = ?1",
        &[Value::from(user_id)],
    )?;
    Ok(())
}

fn ttl_secs() -> i64 {
    crate::settings::positive("invitation_ttl_secs", DEFAULT_TTL_SECS)
}
