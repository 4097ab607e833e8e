//! One-time secrets handed to clients (invitation codes, refresh tokens):
//! 256 random bits in hex, of which only a hash is stored, so a reader of
//! the database holds nothing a client could present.

use weft_sdk::{random, Error};

/// A new secret: 64 hex digits.
pub fn new_secret() -> Result<String, Error> {
    Ok(random::bytes::<32>()?
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// What is stored of `secret`.
pub fn hash(secret: &str) -> String {
    weft_sdk::idempotency::digest_hex(secret.as_bytes())
}
