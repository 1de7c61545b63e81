//! Client secrets and other random tokens: generated from openssl's CSPRNG, stored only as a
//! SHA-256 hash (they are high-entropy, so a slow hash adds nothing), compared in constant time.

use sha2::{Digest, Sha256};

use crate::jwt::base64url;
use crate::Error;

/// 32 random bytes, base64url (43 characters): for client secrets, codes and tokens.
pub fn generate_secret() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)?;
    Ok(base64url(&bytes))
}

/// The stored form of a client secret (or code, or refresh token): SHA-256, lowercase hex.
pub fn hash_client_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// True when `secret` hashes to `stored_hash`; constant time in the secret.
pub fn verify_client_secret(secret: &str, stored_hash: &str) -> bool {
    let computed = hash_client_secret(secret);
    let stored = stored_hash.to_ascii_lowercase();
    computed.len() == stored.len() && openssl::memcmp::eq(computed.as_bytes(), stored.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_verify_against_their_hash_only() {
        let a = generate_secret().unwrap();
        let b = generate_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let stored = hash_client_secret(&a);
        assert_eq!(stored.len(), 64);
        assert!(verify_client_secret(&a, &stored));
        assert!(verify_client_secret(&a, &stored.to_uppercase()));
        assert!(!verify_client_secret(&b, &stored));
        assert!(!verify_client_secret(&a, ""));
        assert!(!verify_client_secret(&a, &stored[..63]));
        assert_eq!(
            hash_client_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
