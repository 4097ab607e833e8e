//! Access tokens, signed by the host with its own key (EdDSA); the private
//! key never enters a guest.
//!
//! ```no_run
//! use weft_sdk::auth;
//!
//! # fn demo() -> Result<(), weft_sdk::Error> {
//! let token = auth::issue_token("user-1", "org-1", &["user".to_string()])?;
//! let body = auth::TokenResponse::from(&token); // {accessToken, tokenType, expiresIn}
//! # let _ = body;
//! # Ok(())
//! # }
//! ```

use serde::Serialize;

pub use crate::bindings::weft::service::auth::IssuedToken;
use crate::Error;

/// Issues an access token (claims `sub`, `org`, `roles`, …) for a user the
/// component has authenticated. Only components granted `issue_tokens` may
/// call it; others get [`Error::Denied`].
pub fn issue_token(user_id: &str, org_id: &str, roles: &[String]) -> Result<IssuedToken, Error> {
    crate::bindings::weft::service::auth::issue_token(user_id, org_id, roles)
}

/// As [`issue_token`], for a token of session `session_id` (claim `sid`),
/// which [`revoke_session`] ends.
pub fn issue_session_token(
    user_id: &str,
    org_id: &str,
    roles: &[String],
    session_id: &str,
) -> Result<IssuedToken, Error> {
    crate::bindings::weft::service::auth::issue_session_token(user_id, org_id, roles, session_id)
}

/// Refuses every token of session `session_id` once this invocation
/// commits, on every host. Grant `issue_tokens`.
pub fn revoke_session(session_id: &str) -> Result<(), Error> {
    crate::bindings::weft::service::auth::revoke_session(session_id)
}

/// Refuses every token of `user_id` issued before now, once this
/// invocation commits. Grant `issue_tokens`.
pub fn revoke_user(user_id: &str) -> Result<(), Error> {
    crate::bindings::weft::service::auth::revoke_user(user_id)
}

/// The session of this invocation's verified caller (its token's `sid`).
pub fn caller_session() -> Option<String> {
    crate::bindings::weft::service::auth::caller_session()
}

/// The JWK set (JSON text) of every public key that verifies tokens.
pub fn jwks() -> String {
    crate::bindings::weft::service::auth::jwks()
}

/// A token as the contract answers it:
/// `{"accessToken", "tokenType", "expiresIn"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse<'a> {
    pub access_token: &'a str,
    pub token_type: &'a str,
    pub expires_in: u32,
}

impl<'a> From<&'a IssuedToken> for TokenResponse<'a> {
    fn from(token: &'a IssuedToken) -> TokenResponse<'a> {
        TokenResponse {
            access_token: &token.access_token,
            token_type: &token.token_type,
            expires_in: token.expires_in,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_response_shape() {
        let token = IssuedToken {
            access_token: "a.b.c".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
        };
        assert_eq!(
            serde_json::to_value(TokenResponse::from(&token)).expect("serialises"),
            json!({"accessToken": "a.b.c", "tokenType": "Bearer", "expiresIn": 900})
        );
    }
}
