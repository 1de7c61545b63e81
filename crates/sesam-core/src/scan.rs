//! The QR code a desktop wait page shows for the app to scan: which challenge, and a
//! single-use token that proves the phone saw this screen. Neither part alone logs anyone in.

use std::fmt;

use rand::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;

/// What the QR code says: `sesam-login:v1:<challenge id>:<token>`.
#[derive(Clone)]
pub struct ScanPayload {
    pub challenge_id: String,
    pub token: ScanToken,
}

/// 32 random bytes, base64url without padding (43 characters).
/// No `PartialEq`: the only comparison is [`ScanToken::matches`], in constant time.
#[derive(Clone)]
pub struct ScanToken(String);

const PREFIX: &str = "sesam-login:v1:";
const TOKEN_BYTES: usize = 32;
const TOKEN_CHARS: usize = 43;
/// Challenge ids are UUIDs; a little room, never an unbounded string.
const MAX_ID_CHARS: usize = 64;

/// Why a scanned text is not a Sesam login code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the text is not a Sesam login QR code (it starts with {PREFIX})")]
    NotOurs,
    #[error("the challenge id in the QR code is not valid")]
    BadChallenge,
    #[error("the token in the QR code is not 43 base64url characters")]
    BadToken,
}

impl ScanToken {
    pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> ScanToken {
        let mut bytes = [0u8; TOKEN_BYTES];
        rng.fill_bytes(&mut bytes);
        ScanToken(data_encoding::BASE64URL_NOPAD.encode(&bytes))
    }

    pub fn parse(text: &str) -> Result<ScanToken, PayloadError> {
        // The length first: nothing long is decoded.
        if text.len() != TOKEN_CHARS {
            return Err(PayloadError::BadToken);
        }
        let decoded = data_encoding::BASE64URL_NOPAD
            .decode(text.as_bytes())
            .map_err(|_| PayloadError::BadToken)?;
        if decoded.len() != TOKEN_BYTES {
            return Err(PayloadError::BadToken);
        }
        Ok(ScanToken(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares without an early exit, so timing tells nothing about a stored token.
    pub fn matches(&self, other: &ScanToken) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

// Kept out of logs: with the device key it approves the login.
impl fmt::Debug for ScanToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScanToken(**)")
    }
}

impl fmt::Debug for ScanPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanPayload")
            .field("challenge_id", &self.challenge_id)
            .field("token", &self.token)
            .finish()
    }
}

impl ScanPayload {
    pub fn parse(text: &str) -> Result<ScanPayload, PayloadError> {
        let rest = text.strip_prefix(PREFIX).ok_or(PayloadError::NotOurs)?;
        let (id, token) = rest.split_once(':').ok_or(PayloadError::BadChallenge)?;
        if id.is_empty()
            || id.len() > MAX_ID_CHARS
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(PayloadError::BadChallenge);
        }
        Ok(ScanPayload {
            challenge_id: id.to_owned(),
            token: ScanToken::parse(token)?,
        })
    }
}

impl fmt::Display for ScanPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}:{}", self.challenge_id, self.token.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_reads_back_and_bad_ones_are_named() {
        let token = ScanToken::random(&mut rand::rngs::OsRng);
        let payload = ScanPayload {
            challenge_id: "6f1c2d9e-0b7a-4e39-9a53-2f0d6c1b8e47".into(),
            token: token.clone(),
        };
        let text = payload.to_string();
        let read = ScanPayload::parse(&text).unwrap();
        assert_eq!(read.challenge_id, payload.challenge_id);
        assert!(read.token.matches(&payload.token));
        assert!(token.matches(&ScanToken::parse(token.as_str()).unwrap()));
        assert!(!token.matches(&ScanToken::random(&mut rand::rngs::OsRng)));
        assert_eq!(format!("{token:?}"), "ScanToken(**)");
        assert!(!format!("{payload:?}").contains(token.as_str()));

        let t = token.as_str();
        for (bad, why) in [
            ("", PayloadError::NotOurs),
            ("https://evil.example/x", PayloadError::NotOurs),
            ("sesam-login:v2:c1:x", PayloadError::NotOurs),
            ("sesam-login:v1:", PayloadError::BadChallenge),
            ("sesam-login:v1:c1", PayloadError::BadChallenge),
            (&format!("sesam-login:v1::{t}"), PayloadError::BadChallenge),
            (
                &format!("sesam-login:v1:c 1:{t}"),
                PayloadError::BadChallenge,
            ),
            (
                &format!("sesam-login:v1:{}:{t}", "a".repeat(65)),
                PayloadError::BadChallenge,
            ),
            ("sesam-login:v1:c1:short", PayloadError::BadToken),
            (&format!("sesam-login:v1:c1:{t}A"), PayloadError::BadToken),
            (&format!("sesam-login:v1:c1:{t}:x"), PayloadError::BadToken),
            (
                &format!("sesam-login:v1:c1:{}", "+".repeat(43)),
                PayloadError::BadToken,
            ),
            // Long text is refused by its length, before any decoding.
            (
                &format!("sesam-login:v1:c1:{}", "A".repeat(60_000)),
                PayloadError::BadToken,
            ),
        ] {
            assert_eq!(ScanPayload::parse(bad).err(), Some(why), "{bad:?}");
        }
    }
}
