//! Password hashing with argon2id (OWASP parameters: 19 MiB, 2 passes, 1 lane) on blocking
//! threads, at most N at once so a burst of logins cannot exhaust memory or starve the runtime.

use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// Verified against when the user is unknown or has no password, so that such a
    /// login takes as long as a real one.
    dummy_hash: Arc<String>,
    /// argon2's working memory (19 MiB each), kept for the next verification instead of
    /// being allocated and zeroed every time; at most one per permit ever exists.
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl Passwords {
    pub fn new(concurrency: usize) -> Passwords {
        let dummy_hash =
            hash_now("sesam timing equaliser").expect("argon2 with default parameters hashes");
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: Arc::new(dummy_hash),
            memory: Arc::new(Mutex::new(Vec::new())),
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
        let pool = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let real = stored.is_some();
            let hash = stored.unwrap_or_else(|| dummy.as_str().to_owned());
            let mut memory = pool
                .lock()
                .map(|mut p| p.pop())
                .unwrap_or_default()
                .unwrap_or_default();
            let matches = verify_with_memory(password.as_bytes(), &hash, &mut memory);
            if let Ok(mut p) = pool.lock() {
                p.push(memory);
            }
            real && matches
        })
        .await
        .map_err(Into::into)
    }
}

/// Whether `password` matches the PHC string `stored`, hashing into `memory` (grown to what
/// the stored parameters need and left for the next call). Constant-time comparison.
fn verify_with_memory(password: &[u8], stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&hash) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt.as_ref(), &mut out, &mut memory[..blocks])
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
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
    fn memory_reuse_gives_the_same_answers_as_the_library() {
        use argon2::PasswordVerifier;
        let hash = hash_now("correct horse battery").unwrap();
        let mut memory = Vec::new();
        for (password, expected) in [
            ("correct horse battery", true),
            ("correct horse batterY", false),
            ("", false),
        ] {
            assert_eq!(
                verify_with_memory(password.as_bytes(), &hash, &mut memory),
                expected,
                "{password:?}"
            );
            assert_eq!(
                Argon2::default()
                    .verify_password(password.as_bytes(), hash.as_str())
                    .is_ok(),
                expected
            );
        }
        assert_eq!(memory.len(), 19456, "19 MiB of 1 KiB blocks, kept");
        // Other parameters (a hash made elsewhere): the memory grows as needed.
        let other = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32 * 1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw")
        .unwrap()
        .to_string();
        assert!(verify_with_memory(b"pw", &other, &mut memory));
        assert!(!verify_with_memory(b"pX", &other, &mut memory));
        assert!(!verify_with_memory(
            b"pw",
            "$argon2id$v=19$garbage",
            &mut memory
        ));
    }

    #[test]
    fn one_time_passwords_are_long_and_differ() {
        let a = generate_one_time_password();
        assert_eq!(a.len(), 16);
        assert_ne!(a, generate_one_time_password());
        assert!(!a.contains(['0', 'O', 'l', '1', 'I']));
    }
}
