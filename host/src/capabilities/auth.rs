//! `weft:service/auth`: tokens issued by the host for granted components.

use crate::bindings::weft::service::auth::{Host, IssuedToken};
use crate::bindings::GuestError;
use crate::capabilities::messaging::denied;
use crate::state::HostState;

/// Longest id or role a token may carry.
const MAX_CLAIM: usize = 256;
/// Most roles in one token.
const MAX_ROLES: usize = 32;

impl Host for HostState {
    async fn issue_token(
        &mut self,
        user_id: String,
        org_id: String,
        roles: Vec<String>,
    ) -> wasmtime::Result<Result<IssuedToken, GuestError>> {
        if !self.inv.component.grants.issue_tokens {
            return Ok(Err(denied(self, "auth.issue-token", "issue_tokens")));
        }
        let ctx = &self.inv.component;
        let too_long = |s: &String| s.is_empty() || s.len() > MAX_CLAIM;
        if too_long(&user_id)
            || too_long(&org_id)
            || roles.len() > MAX_ROLES
            || roles.iter().any(too_long)
        {
            return Ok(Err(GuestError::Invalid(format!(
                "user id, org id and roles must be 1-{MAX_CLAIM} bytes, at most {MAX_ROLES} roles"
            ))));
        }
        Ok(ctx
            .tokens
            .issue(&user_id, &org_id, &roles)
            .map(|t| IssuedToken {
                access_token: t.access_token,
                token_type: "Bearer".into(),
                expires_in: t.expires_in,
            })
            .map_err(|e| match e {
                crate::auth::AuthError::ReservedRole(_) => GuestError::Denied(e.to_string()),
                other => GuestError::Unavailable(other.to_string()),
            }))
    }

    async fn jwks(&mut self) -> wasmtime::Result<String> {
        Ok(self.inv.component.tokens.jwks().to_string())
    }
}
