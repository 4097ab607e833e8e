//! Password hashing: Argon2id with OWASP's minimum parameters (19 MiB of
//! memory, 2 passes, 1 lane), a random 16-byte salt, stored as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
//!
//! Checking a password for a user who does not exist costs the same as for
//! one who does ([`verify_nobody`]), so a login's timing does not tell.

use argon2::{
    password_hash, Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier,
    Version,
};

const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Passwords have 8 to 1024 characters (not bytes).
pub const MIN_CHARS: usize = 8;
pub const MAX_CHARS: usize = 1024;

/// The hash of a random password nobody knows, with the same parameters as
/// [`hash`]: what an unknown user's login is checked against.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$1L3/pTLyFlXpFST97Sy/nA$bdTFnQsY56AUYf32I/JBEXXDV7EZLYoQBv2cm1ysoyg";

/// Checks a new password's length; the message names the rule.
pub fn validate(field: &str, password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if (MIN_CHARS..=MAX_CHARS).contains(&chars) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be {MIN_CHARS} to {MAX_CHARS} characters long"
        ))
    }
}

/// Whether `password` could be anyone's: longer ones are refused without
/// hashing (no stored password is longer), which says nothing about users.
pub fn plausible(password: &str) -> bool {
    password.chars().count() <= MAX_CHARS
}

/// Hashes `password` with a fresh random salt; returns the PHC string.
pub fn hash(password: &str) -> Result<String, password_hash::Error> {
    Ok(argon2()?.hash_password(password.as_bytes())?.to_string())
}

/// Whether `password` matches the stored PHC string `phc`. A malformed
/// stored hash is an error, not a mismatch.
pub fn verify(password: &str, phc: &str) -> Result<bool, password_hash::Error> {
    let parsed = PasswordHash::new(phc)?;
    match argon2()?.verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::PasswordInvalid) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Spends the time [`verify`] would on a real user, for a login naming
/// nobody. Always false.
pub fn verify_nobody(password: &str) -> bool {
    // The dummy's password is unknown, so a match is not a login either.
    let _ = verify(password, DUMMY_HASH);
    false
}

fn argon2() -> Result<Argon2<'static>, password_hash::Error> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

#[cfg(test)]
mod tests {
    use super::*;

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

        assert_eq!(verify("correct horse", &first), Ok(true));
        assert_eq!(verify("wrong horse", &first), Ok(false));
        assert!(verify("correct horse", "not a phc string").is_err());
    }

    #[test]
    fn the_dummy_costs_what_a_real_hash_costs() {
        // Same algorithm and parameters as `hash`, so the same work.
        let real = hash("x").expect("hashes");
        let params = |phc: &str| phc.split('$').take(4).collect::<Vec<_>>().join("$");
        assert_eq!(params(DUMMY_HASH), params(&real));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        // A real verification runs (not a parse error) and fails.
        assert_eq!(verify("guess", DUMMY_HASH), Ok(false));
        assert!(!verify_nobody("guess"));
    }

    #[test]
    fn lengths_count_characters() {
        assert!(validate("password", "1234567").is_err());
        assert!(validate("password", &"é".repeat(8)).is_ok());
        assert!(validate("password", &"a".repeat(1024)).is_ok());
        let message = validate("newPassword", &"a".repeat(1025)).expect_err("too long");
        assert!(message.starts_with("newPassword"), "{message}");
        assert!(plausible(&"é".repeat(1024)));
        assert!(!plausible(&"a".repeat(1025)));
    }
}
