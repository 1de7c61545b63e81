//! One-time activation codes that enrol an app: 10 characters from an alphabet without
//! look-alikes, valid 10 minutes, stored only as a hash.

use rand::Rng;
use sesam_core::{UnixTime, UserId};
use sesam_store::{Store, StoreError};
use sha2::{Digest, Sha256};

pub const VALID_SECONDS: i64 = 10 * 60;
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const LENGTH: usize = 10;

/// Creates a code for `user`; returns it as shown to people (`ABCDE-FGHJK`).
pub async fn issue(store: &Store, user: &UserId, now: UnixTime) -> Result<String, StoreError> {
    let mut rng = rand::rngs::OsRng;
    let raw: String = (0..LENGTH)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect();
    store
        .create_activation_code(user, &hash(&raw), now, VALID_SECONDS)
        .await?;
    Ok(format!("{}-{}", &raw[..5], &raw[5..]))
}

/// Uses a code as typed (case, spaces and dashes do not matter); its user when valid.
pub async fn consume(
    store: &Store,
    typed: &str,
    now: UnixTime,
) -> Result<Option<UserId>, StoreError> {
    let normalised = normalise(typed);
    if normalised.len() != LENGTH {
        return Ok(None);
    }
    store.consume_activation_code(&hash(&normalised), now).await
}

fn normalise(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .take(64)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn hash(code: &str) -> String {
    Sha256::digest(code.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_variations_are_forgiven() {
        assert_eq!(normalise(" abcde-fghjk "), "ABCDEFGHJK");
        assert_eq!(normalise("ABCDE FGHJK"), "ABCDEFGHJK");
        assert_eq!(hash("ABCDEFGHJK"), hash(&normalise("abcde-fghjk")));
    }
}
