//! The key that seals TOTP secrets at rest, and the sealing: AES-256-GCM with a random
//! nonce, the user id as associated data (a sealed secret copied to another user opens no more).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use sesam_core::totp::TotpSecret;
use sesam_core::UserId;

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
/// Names the format, so a later one can be told apart.
const PREFIX: &str = "v1:";

/// The sealing key from the config. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpKey([u8; KEY_BYTES]);

impl fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpKey(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the sealed TOTP secret is damaged or was sealed with another key")]
    Unreadable,
    #[error("sealing: {0}")]
    Crypto(String),
}

impl TotpKey {
    /// 32 bytes in standard base64 (`openssl rand -base64 32`).
    pub fn parse(text: &str) -> Result<TotpKey, String> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| "is not base64 (make one with `openssl rand -base64 32`)".to_owned())?;
        let key: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("has {} bytes; 32 are needed", b.len()))?;
        Ok(TotpKey(key))
    }

    pub fn seal(&self, user: &UserId, secret: &TotpSecret) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_BYTES];
        openssl::rand::rand_bytes(&mut nonce).map_err(|e| SealError::Crypto(e.to_string()))?;
        let mut tag = [0u8; TAG_BYTES];
        let sealed = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(&nonce),
            user.0.as_bytes(),
            secret.as_bytes(),
            &mut tag,
        )
        .map_err(|e| SealError::Crypto(e.to_string()))?;
        let mut all = nonce.to_vec();
        all.extend_from_slice(&sealed);
        all.extend_from_slice(&tag);
        Ok(format!("{PREFIX}{}", STANDARD.encode(all)))
    }

    pub fn open(&self, user: &UserId, sealed: &str) -> Result<TotpSecret, SealError> {
        let all = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_BYTES + TAG_BYTES)
            .ok_or(SealError::Unreadable)?;
        let (nonce, rest) = all.split_at(NONCE_BYTES);
        let (data, tag) = rest.split_at(rest.len() - TAG_BYTES);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(nonce),
            user.0.as_bytes(),
            data,
            tag,
        )
        .map(TotpSecret::from_bytes)
        .map_err(|_| SealError::Unreadable)
    }
}

/// A new secret from openssl's CSPRNG.
pub fn new_secret() -> Result<TotpSecret, SealError> {
    let mut bytes = vec![0u8; sesam_core::totp::SECRET_BYTES];
    openssl::rand::rand_bytes(&mut bytes).map_err(|e| SealError::Crypto(e.to_string()))?;
    Ok(TotpSecret::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TotpKey {
        TotpKey::parse(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_user() {
        let secret = new_secret().unwrap();
        let anna = UserId("anna".into());
        let sealed = key().seal(&anna, &secret).unwrap();
        assert!(!sealed.contains(&secret.to_base32()));
        assert_eq!(key().open(&anna, &sealed).unwrap(), secret);
        assert!(key().open(&UserId("bo".into()), &sealed).is_err());
        let other = TotpKey::parse(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open(&anna, &sealed).is_err());
        let mut bent = sealed.clone();
        bent.pop();
        bent.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key().open(&anna, &bent).is_err());
        assert!(key().open(&anna, "v1:").is_err());
        assert!(key().open(&anna, "garbage").is_err());
        // Two seals of one secret differ (a fresh nonce each time).
        assert_ne!(key().seal(&anna, &secret).unwrap(), sealed);
    }

    #[test]
    fn the_key_must_be_32_bytes_of_base64_and_is_not_shown() {
        assert!(TotpKey::parse("not base64!").is_err());
        assert!(TotpKey::parse(&STANDARD.encode([1u8; 16])).is_err());
        assert_eq!(format!("{:?}", key()), "TotpKey(***)");
    }
}
