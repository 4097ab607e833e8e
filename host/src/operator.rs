//! The operator's credential: who may use the admin API (`/admin/…`).
//!
//! The operator is whoever can read the host's data directory, not an
//! application user. So the admin API accepts only tokens signed by the
//! operator key, `<keys>/operator/operator.pem`: a key of its own that
//! `auth.issue-token` never uses and that verifies nothing else, with the
//! audience [`AUDIENCE`] that application tokens never carry. The `weft`
//! CLI mints a short-lived one from that file for each admin call; no
//! component, and no application role (`admin` included), can produce one.
//!
//! A request the operator makes *through* a component (`weft iam
//! create-admin`) reaches it with a caller holding [`OPERATOR_ROLE`]; the
//! token service refuses to issue that role and the gateway refuses tokens
//! carrying it, so a component can trust it.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthError, TokenError};

/// The audience of operator tokens.
pub const AUDIENCE: &str = "weft-operator";

/// The role of the caller a component sees when the operator calls it
/// through the admin API. Reserved: never in an application token.
pub const OPERATOR_ROLE: &str = "weft:operator";

/// Roles with this prefix belong to the host and are never issued.
pub const RESERVED_ROLE_PREFIX: &str = "weft:";

/// How long a minted operator token lives: one CLI call.
const TTL_SECS: u64 = 300;

/// The operator key: signs operator tokens (the CLI) and verifies them (the
/// admin API).
pub struct OperatorKey {
    kid: String,
    issuer: String,
    signing: EncodingKey,
    verifying: DecodingKey,
}

/// An operator token's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OperatorClaims {
    sub: String,
    aud: String,
    iss: String,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Where the operator key lives under the keys folder.
pub fn key_path(keys_dir: &Path) -> PathBuf {
    keys_dir.join("operator").join("operator.pem")
}

impl OperatorKey {
    /// Loads the operator key, creating it (0600, in a 0700 folder) on the
    /// first start.
    pub fn load_or_create(keys_dir: &Path, issuer: &str) -> Result<OperatorKey, AuthError> {
        let path = key_path(keys_dir);
        let keys_err = |message: String| AuthError::Keys {
            path: path.clone(),
            message,
        };
        let key = match std::fs::read_to_string(&path) {
            Ok(pem) => SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| keys_err(format!("not an Ed25519 PKCS#8 key: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand_core::OsRng);
                let pem = key
                    .to_pkcs8_pem(Default::default())
                    .map_err(|e| keys_err(e.to_string()))?;
                crate::auth::write_key_file(&path, pem.as_bytes())?;
                tracing::info!(path = %path.display(), "created the operator key");
                key
            }
            Err(e) => return Err(keys_err(e.to_string())),
        };
        let der = key.to_pkcs8_der().map_err(|e| keys_err(e.to_string()))?;
        let public = key.verifying_key().to_bytes();
        Ok(OperatorKey {
            kid: format!("operator-{}", crate::auth::kid_of(&public)),
            issuer: issuer.to_owned(),
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            verifying: DecodingKey::from_ed_der(&public),
        })
    }

    /// A fresh operator token.
    pub fn mint(&self) -> Result<String, AuthError> {
        let now = crate::auth::now_secs();
        let claims = OperatorClaims {
            sub: "operator".into(),
            aud: AUDIENCE.into(),
            iss: self.issuer.clone(),
            iat: now,
            nbf: now,
            exp: now + TTL_SECS,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.signing)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// Verifies an `Authorization` header value as an operator token:
    /// EdDSA, this key's `kid` and signature, audience, issuer, time.
    pub fn verify_bearer(&self, header: &str) -> Result<(), TokenError> {
        let token = crate::auth::bearer_token(header)?;
        if crate::auth::eddsa_kid(token)?.as_deref() != Some(self.kid.as_str()) {
            return Err(TokenError::UnknownKey);
        }
        let mut validation = crate::auth::eddsa_validation(&self.issuer);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub", "aud"]);
        jsonwebtoken::decode::<OperatorClaims>(token, &self.verifying, &validation)
            .map(|_| ())
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenService;
    use crate::config::AuthConfig;

    fn keys() -> (tempfile::TempDir, OperatorKey, TokenService) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let operator = OperatorKey::load_or_create(&dir.path().join("keys"), "weft")
            .unwrap_or_else(|e| panic!("{e}"));
        let tokens = TokenService::load(&AuthConfig::default(), dir.path())
            .unwrap_or_else(|e| panic!("{e}"));
        (dir, operator, tokens)
    }

    #[test]
    fn only_operator_tokens_pass_and_they_open_nothing_else() {
        let (dir, operator, tokens) = keys();
        let minted = operator.mint().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(operator.verify_bearer(&format!("Bearer {minted}")), Ok(()));
        // An application token, even with every role, is not one.
        let app = tokens
            .issue("u", "o", &["user".into(), "admin".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            operator.verify_bearer(&format!("Bearer {}", app.access_token)),
            Err(TokenError::UnknownKey)
        );
        // And an operator token is no application token.
        assert_eq!(tokens.verify(&minted), Err(TokenError::UnknownKey));
        // The key survives a restart; another data directory's does not pass.
        let again = OperatorKey::load_or_create(&dir.path().join("keys"), "weft")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.verify_bearer(&format!("Bearer {minted}")), Ok(()));
        let (_other_dir, other, _) = keys();
        assert!(other.verify_bearer(&format!("Bearer {minted}")).is_err());
    }

    #[test]
    fn the_operator_role_is_never_issued() {
        let (_dir, _operator, tokens) = keys();
        for roles in [
            vec![OPERATOR_ROLE.to_string()],
            vec!["user".into(), "WEFT:x".into()],
        ] {
            assert!(tokens.issue("u", "o", &roles).is_err(), "{roles:?}");
        }
    }
}
