//! Password hashing: Argon2id with OWASP's minimum parameters (19 MiB of
//! memory, 2 passes, 1 lane), a random 16-byte salt, stored as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).

use argon2::{password_hash, Algorithm, Argon2, Params, PasswordHasher, Version};

const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Hashes `password` with a fresh random salt; returns the PHC string.
pub fn hash(password: &str) -> Result<String, password_hash::Error> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    Ok(argon2.hash_password(password.as_bytes())?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHash, PasswordVerifier};

    #[test]
    fn hashes_are_salted_argon2id_phc_strings() {
        let first = hash("correct horse").expect("hashes");
        assert!(
            first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{first}"
        );
        assert!(!first.contains("correct horse"));
        let second = hash("correct horse").expect("hashes");
        assert_ne!(first, second, "a fresh salt each time");

        let parsed = PasswordHash::new(&first).expect("a PHC string");
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"wrong horse", &parsed)
            .is_err());
    }
}
