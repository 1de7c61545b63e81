//! Synchronizer-token CSRF protection: one random token per session, put in every form,
//! compared in constant time on every POST.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::web::error::AppError;

const KEY: &str = "csrf";

/// A form that carries nothing but its CSRF token (buttons: cancel, remove, lock, ...).
#[derive(serde::Deserialize)]
pub struct CsrfOnly {
    pub csrf: Option<String>,
}

/// The session's token, created on first use.
pub async fn token(session: &Session) -> Result<String, AppError> {
    if let Some(existing) = session.get::<String>(KEY).await? {
        return Ok(existing);
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let fresh = URL_SAFE_NO_PAD.encode(bytes);
    session.insert(KEY, &fresh).await?;
    Ok(fresh)
}

/// Refuses with 403 unless `submitted` is this session's token.
pub async fn verify(session: &Session, submitted: Option<&str>) -> Result<(), AppError> {
    let expected = session.get::<String>(KEY).await?.ok_or(AppError::Csrf)?;
    let submitted = submitted.ok_or(AppError::Csrf)?;
    if bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())) {
        Ok(())
    } else {
        Err(AppError::Csrf)
    }
}
