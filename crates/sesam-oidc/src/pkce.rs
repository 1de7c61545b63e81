//! PKCE (RFC 7636), S256 only: the client proves at `/token` that it is the one that started
//! the authorization, by revealing the verifier whose hash it sent to `/authorize`.

use sha2::{Digest, Sha256};

use crate::jwt::base64url;

/// The S256 challenge for a verifier: base64url(SHA-256(verifier)).
pub fn pkce_challenge_s256(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

/// True when `verifier` is well formed (43..=128 characters of `[A-Za-z0-9-._~]`) and hashes
/// to `challenge`. The comparison runs in constant time.
pub fn verify_pkce_s256(verifier: &str, challenge: &str) -> bool {
    if !is_valid_verifier(verifier) {
        return false;
    }
    let computed = pkce_challenge_s256(verifier);
    computed.len() == challenge.len()
        && openssl::memcmp::eq(computed.as_bytes(), challenge.as_bytes())
}

fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// True when `challenge` has the shape of an S256 challenge: 43 base64url characters.
pub(crate) fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(pkce_challenge_s256(VERIFIER), CHALLENGE);
        assert!(verify_pkce_s256(VERIFIER, CHALLENGE));
        assert!(is_valid_s256_challenge(CHALLENGE));
    }

    #[test]
    fn wrong_or_malformed_verifiers_fail() {
        assert!(!verify_pkce_s256(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!verify_pkce_s256(VERIFIER, &CHALLENGE[..42]));
        assert!(!verify_pkce_s256(VERIFIER, ""));
        // The plain method would accept the challenge itself as verifier.
        assert!(!verify_pkce_s256(CHALLENGE, CHALLENGE));
        let short = "a".repeat(42);
        assert!(!verify_pkce_s256(&short, &pkce_challenge_s256(&short)));
        let long = "a".repeat(129);
        assert!(!verify_pkce_s256(&long, &pkce_challenge_s256(&long)));
        let bad_char = format!("{}!", "a".repeat(43));
        assert!(!verify_pkce_s256(
            &bad_char,
            &pkce_challenge_s256(&bad_char)
        ));
        let max = "~".repeat(128);
        assert!(verify_pkce_s256(&max, &pkce_challenge_s256(&max)));
    }
}
