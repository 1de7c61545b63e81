//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane) on blocking
//! threads, at most N at once so a burst of logins cannot exhaust memory or starve the runtime.

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified against when the user is unknown or has no password, so that such a
    /// login takes as long as a real one.
    dummy_hash: Arc<String>,
}

impl Passwords {
    pub fn new(concurrency: usize) -> Passwords {
        let dummy_hash =
            hash_now("sesam timing equaliser").expect("argon2 with default parameters hashes");
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: Arc::new(dummy_hash),
        }
    }

    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || hash_now(&password)).await?
    }

    /// True only when `stored` is present and matches. Takes the same time either way.
    pub async fn verify(&self, password: String, stored: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let dummy = self.dummy_hash.clone();
        tokio::task::spawn_blocking(move || {
            let real = stored.is_some();
            let hash = stored.unwrap_or_else(|| dummy.as_str().to_owned());
            let matches = Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok();
            real && matches
        })
        .await
        .map_err(Into::into)
    }
}

/// Hashes on the current thread (CLI and start-up use this directly).
pub fn hash_now(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))
}

/// A random password from an alphabet without look-alikes (no 0/O, 1/l/I).
pub fn generate_one_time_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_only_the_right_password() {
        let p = Passwords::new(2);
        let hash = p.hash("correct horse battery".into()).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(p
            .verify("correct horse battery".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!p.verify("wrong".into(), Some(hash)).await.unwrap());
        assert!(
            !p.verify("sesam timing equaliser".into(), None)
                .await
                .unwrap(),
            "the dummy never lets anyone in"
        );
        assert!(!p
            .verify("x".into(), Some("not a phc string".into()))
            .await
            .unwrap());
    }

    #[test]
    fn one_time_passwords_are_long_and_differ() {
        let a = generate_one_time_password();
        assert_eq!(a.len(), 16);
        assert_ne!(a, generate_one_time_password());
        assert!(!a.contains(['0', 'O', 'l', '1', 'I']));
    }
}
