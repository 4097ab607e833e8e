//! Access tokens: Ed25519 signing keys kept by the host, issuing for granted
//! components, and verification at the gateway.
//!
//! Keys live as PKCS#8 PEM files in the keys folder (`<data>/keys` unless
//! `[auth] keys_dir` says otherwise); the host creates the first on its first
//! start. The newest key signs; every key in the folder verifies, so tokens
//! signed before a rotation stay valid until they expire. Each key's `kid` is
//! derived from its public key. The private keys never enter a guest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;

/// Failures of the key store.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The keys folder or a key file could not be read or written.
    #[error("keys: {path}: {message}")]
    Keys {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A token could not be signed.
    #[error("cannot sign a token: {0}")]
    Sign(String),
    /// A role reserved for the host (`weft:…`) was asked for.
    #[error("role `{0}` is reserved for the host and never issued")]
    ReservedRole(String),
}

/// Why a token was refused. The gateway answers every one with the same
/// 401; the reason goes to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `Bearer <token>`.
    #[error("the Authorization header is not `Bearer <token>`")]
    Malformed,
    /// No `kid`, or one the host does not know.
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature, algorithm, expiry, not-before, issuer or claims are wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Valid, but its session or its user's earlier tokens were revoked
    /// (a logout, a password change).
    #[error("the token was revoked")]
    Revoked,
}

/// The claims of a Weft access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The organisation id.
    pub org: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expires (Unix seconds).
    pub exp: u64,
    /// Issuer.
    pub iss: String,
    /// The session (login) it belongs to, if issued for one: revoked
    /// together ([`crate::revocations`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

struct VerifyKey {
    decoding: DecodingKey,
    x: String,
}

/// A token just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u32,
}

/// Signs and verifies access tokens.
pub struct TokenService {
    issuer: String,
    ttl_secs: u32,
    signing_kid: String,
    signing: EncodingKey,
    verifying: HashMap<String, VerifyKey>,
    /// Kids, newest first, for the JWK set.
    order: Vec<String>,
    /// Sessions and users whose tokens are refused before they expire.
    revocations: crate::revocations::Revocations,
}

fn keys_err(path: &Path) -> impl FnOnce(String) -> AuthError + '_ {
    move |message| AuthError::Keys {
        path: path.to_owned(),
        message,
    }
}

/// The key id of a public key: the first 16 hex digits of its sha256.
pub(crate) fn kid_of(public: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public)[..8])
}

/// Creates a new signing key in `dir` and returns its kid. The file name
/// starts with the time, so the newest key sorts last.
pub fn generate_key(dir: &Path) -> Result<String, AuthError> {
    crate::private::create_dir(dir).map_err(|e| keys_err(dir)(e.to_string()))?;
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let kid = kid_of(key.verifying_key().as_bytes());
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| keys_err(dir)(e.to_string()))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let path = dir.join(format!("ed25519-{nanos:024}-{kid}.pem"));
    write_key_file(&path, pem.as_bytes())?;
    Ok(kid)
}

/// Writes a private key file (0600) by atomic rename, creating its folder.
pub(crate) fn write_key_file(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    crate::private::write_file(path, bytes).map_err(|e| keys_err(path)(e.to_string()))
}

/// The token of an `Authorization: Bearer <token>` header value.
pub(crate) fn bearer_token(header: &str) -> Result<&str, TokenError> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::Malformed)
}

/// The `kid` of a token whose header pins EdDSA; any other algorithm is
/// refused before a key is looked at.
pub(crate) fn eddsa_kid(token: &str) -> Result<Option<String>, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Invalid(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    Ok(header.kid)
}

/// EdDSA validation of `exp`, `nbf` (with [`LEEWAY_SECS`]) and `iss`.
pub(crate) fn eddsa_validation(issuer: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[issuer]);
    validation
}

fn is_reserved(role: &str) -> bool {
    let prefix = crate::operator::RESERVED_ROLE_PREFIX;
    role.len() >= prefix.len() && role[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The key files in `dir`, oldest first.
pub fn key_files(dir: &Path) -> Result<Vec<PathBuf>, AuthError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(keys_err(dir)(e.to_string())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    files.sort();
    Ok(files)
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenService {
    /// Loads the keys in the configured folder, creating the first key when
    /// there is none.
    pub fn load(config: &AuthConfig, data_dir: &Path) -> Result<TokenService, AuthError> {
        let dir = config.keys_dir(data_dir);
        let mut files = key_files(&dir)?;
        if files.is_empty() {
            let kid = generate_key(&dir)?;
            tracing::info!(kid, dir = %dir.display(), "created the first token signing key");
            files = key_files(&dir)?;
        }
        let mut verifying = HashMap::new();
        let mut order = Vec::new();
        let mut newest = None;
        for path in &files {
            let pem = std::fs::read_to_string(path).map_err(|e| keys_err(path)(e.to_string()))?;
            let key = SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| keys_err(path)(format!("not an Ed25519 PKCS#8 key: {e}")))?;
            let public = key.verifying_key().to_bytes();
            let kid = kid_of(&public);
            verifying.insert(
                kid.clone(),
                VerifyKey {
                    decoding: DecodingKey::from_ed_der(&public),
                    x: URL_SAFE_NO_PAD.encode(public),
                },
            );
            order.insert(0, kid.clone());
            newest = Some((kid, key));
        }
        let Some((signing_kid, key)) = newest else {
            return Err(keys_err(&dir)("no key".into()));
        };
        let der = key
            .to_pkcs8_der()
            .map_err(|e| keys_err(&dir)(e.to_string()))?;
        Ok(TokenService {
            issuer: config.issuer.clone(),
            ttl_secs: config.token_ttl_secs,
            signing_kid,
            signing: EncodingKey::from_ed_der(der.as_bytes()),
            verifying,
            order,
            revocations: Default::default(),
        })
    }

    /// The kid of the key that signs new tokens.
    pub fn signing_kid(&self) -> &str {
        &self.signing_kid
    }

    /// Issues a token for a user.
    pub fn issue(
        &self,
        user_id: &str,
        org_id: &str,
        roles: &[String],
    ) -> Result<IssuedToken, AuthError> {
        self.issue_in(user_id, org_id, roles, None)
    }

    /// Issues a token for a user that belongs to session `sid` (or to none).
    pub fn issue_in(
        &self,
        user_id: &str,
        org_id: &str,
        roles: &[String],
        sid: Option<&str>,
    ) -> Result<IssuedToken, AuthError> {
        if let Some(role) = roles.iter().find(|r| is_reserved(r)) {
            return Err(AuthError::ReservedRole(role.clone()));
        }
        let now = now_secs();
        let iat = now.max(self.revocations.not_before(user_id));
        let claims = Claims {
            sub: user_id.to_owned(),
            org: org_id.to_owned(),
            roles: roles.to_vec(),
            iat,
            nbf: now,
            exp: iat.saturating_add(u64::from(self.ttl_secs)),
            iss: self.issuer.clone(),
            sid: sid.map(str::to_owned),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &self.signing)
            .map_err(|e| AuthError::Sign(e.to_string()))?;
        Ok(IssuedToken {
            access_token,
            expires_in: self.ttl_secs,
        })
    }

    /// Verifies a raw token: algorithm pinned to EdDSA, a known `kid`,
    /// signature, `exp`, `nbf`, `iss`.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let key = eddsa_kid(token)?
            .as_deref()
            .and_then(|kid| self.verifying.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let mut validation = eddsa_validation(&self.issuer);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        if let Some(role) = claims.roles.iter().find(|r| is_reserved(r)) {
            return Err(TokenError::Invalid(format!("role `{role}` is reserved")));
        }
        if self.is_revoked(&claims) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Whether `claims` (verified once) have been revoked since.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        self.revocations
            .refuses(&claims.sub, claims.sid.as_deref(), claims.iat)
    }

    /// The revocations in force.
    pub fn revocations(&self) -> &crate::revocations::Revocations {
        &self.revocations
    }

    /// How long a token lives: a revocation needs to outlive it no longer.
    pub fn ttl_secs(&self) -> u32 {
        self.ttl_secs
    }

    /// Verifies an `Authorization` header value.
    pub fn verify_bearer(&self, header: &str) -> Result<Claims, TokenError> {
        self.verify(bearer_token(header)?)
    }

    /// The JWK set of the verifying keys, newest first.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .order
            .iter()
            .filter_map(|kid| {
                let key = self.verifying.get(kid)?;
                Some(serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                    "kid": kid, "x": key.x,
                }))
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &Path) -> TokenService {
        let config = AuthConfig::default();
        match TokenService::load(&config, dir) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_caller() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = service(dir.path());
        let t = s
            .issue("u1", "o1", &["user".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        let claims = s.verify(&t.access_token).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((claims.sub.as_str(), claims.org.as_str()), ("u1", "o1"));
        assert_eq!(claims.roles, ["user"]);
        assert_eq!(claims.iss, "weft");
        assert_eq!(t.expires_in, 900);
    }

    #[test]
    fn a_rotated_key_still_verifies_old_tokens_and_signs_new_ones() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let before = service(dir.path());
        let old = before
            .issue("u", "o", &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let new_kid = generate_key(&dir.path().join("keys")).unwrap_or_else(|e| panic!("{e}"));
        let after = service(dir.path());
        assert_eq!(after.signing_kid(), new_kid);
        assert_ne!(before.signing_kid(), new_kid);
        assert!(after.verify(&old.access_token).is_ok());
        let jwks = after.jwks();
        assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
        assert_eq!(jwks["keys"][0]["kid"], new_kid.as_str());
        // A host with other keys does not accept these tokens.
        let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            service(other.path()).verify(&old.access_token),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn bearer_parsing_refuses_other_schemes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let s = service(dir.path());
        assert_eq!(s.verify_bearer("Basic abc"), Err(TokenError::Malformed));
        assert_eq!(s.verify_bearer("Bearer "), Err(TokenError::Malformed));
        assert!(matches!(
            s.verify_bearer("Bearer a.b.c"),
            Err(TokenError::Invalid(_))
        ));
    }
}
