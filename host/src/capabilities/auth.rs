//! `weft:service/auth`: tokens issued by the host for granted components.

use crate::bindings::weft::service::auth::{Host, IssuedToken};
use crate::bindings::GuestError;
use crate::capabilities::messaging::denied;
use crate::revocations::Revocation;
use crate::state::HostState;

/// Longest id or role a token may carry.
const MAX_CLAIM: usize = 256;
/// Most roles in one token.
const MAX_ROLES: usize = 32;

/// Most revocations one invocation may make.
const MAX_REVOCATIONS: usize = 1000;

fn checked_claims(
    user_id: &str,
    org_id: &str,
    roles: &[String],
    session_id: Option<&str>,
) -> Result<(), GuestError> {
    let too_long = |s: &str| s.is_empty() || s.len() > MAX_CLAIM;
    if too_long(user_id)
        || too_long(org_id)
        || session_id.is_some_and(too_long)
        || roles.len() > MAX_ROLES
        || roles.iter().any(|r| too_long(r))
    {
        return Err(GuestError::Invalid(format!(
            "user id, org id, session id and roles must be 1-{MAX_CLAIM} bytes, at most {MAX_ROLES} roles"
        )));
    }
    Ok(())
}

impl HostState {
    fn issue(
        &mut self,
        call: &str,
        user_id: &str,
        org_id: &str,
        roles: &[String],
        session_id: Option<&str>,
    ) -> Result<IssuedToken, GuestError> {
        if !self.inv.component.grants.issue_tokens {
            return Err(denied(self, call, "issue_tokens"));
        }
        checked_claims(user_id, org_id, roles, session_id)?;
        self.inv
            .component
            .tokens
            .issue_in(user_id, org_id, roles, session_id)
            .map(|t| IssuedToken {
                access_token: t.access_token,
                token_type: "Bearer".into(),
                expires_in: t.expires_in,
            })
            .map_err(|e| match e {
                crate::auth::AuthError::ReservedRole(_) => GuestError::Denied(e.to_string()),
                other => GuestError::Unavailable(other.to_string()),
            })
    }

    /// Holds `revocation` until the invocation commits.
    fn revoke(
        &mut self,
        call: &str,
        subject: &str,
        revocation: impl FnOnce(u64, u64) -> Revocation,
    ) -> Result<(), GuestError> {
        if !self.inv.component.grants.issue_tokens {
            return Err(denied(self, call, "issue_tokens"));
        }
        if subject.is_empty() || subject.len() > MAX_CLAIM {
            return Err(GuestError::Invalid(format!(
                "the id must be 1-{MAX_CLAIM} bytes"
            )));
        }
        if self.revocations.len() >= MAX_REVOCATIONS {
            return Err(GuestError::LimitExceeded(format!(
                "more than {MAX_REVOCATIONS} revocations in one invocation"
            )));
        }
        // Real time, not a test's fake clock: tokens carry real times.
        let now = crate::auth::now_secs();
        // A token issued now expires within its lifetime, plus the
        // verifier's leeway.
        let expires = now + u64::from(self.inv.component.tokens.ttl_secs()) + 60;
        self.revocations.push(revocation(now, expires));
        Ok(())
    }
}

impl Host for HostState {
    async fn issue_token(
        &mut self,
        user_id: String,
        org_id: String,
        roles: Vec<String>,
    ) -> wasmtime::Result<Result<IssuedToken, GuestError>> {
        Ok(self.issue("auth.issue-token", &user_id, &org_id, &roles, None))
    }

    async fn issue_session_token(
        &mut self,
        user_id: String,
        org_id: String,
        roles: Vec<String>,
        session_id: String,
    ) -> wasmtime::Result<Result<IssuedToken, GuestError>> {
        Ok(self.issue(
            "auth.issue-session-token",
            &user_id,
            &org_id,
            &roles,
            Some(&session_id),
        ))
    }

    async fn revoke_session(
        &mut self,
        session_id: String,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        Ok(
            self.revoke("auth.revoke-session", &session_id.clone(), |_, expires| {
                Revocation::Session {
                    sid: session_id,
                    expires,
                }
            }),
        )
    }

    async fn revoke_user(&mut self, user_id: String) -> wasmtime::Result<Result<(), GuestError>> {
        Ok(
            self.revoke("auth.revoke-user", &user_id.clone(), |now, expires| {
                // Tokens carry whole seconds: those of this second go too
                // (new ones are dated after it, see `Revocations::not_before`).
                Revocation::User {
                    sub: user_id,
                    before: now + 1,
                    expires,
                }
            }),
        )
    }

    async fn caller_session(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.inv.session.clone())
    }

    async fn jwks(&mut self) -> wasmtime::Result<String> {
        Ok(self.inv.component.tokens.jwks().to_string())
    }
}
