//! Synchronizer-token CSRF protection: one random token per session, put in every form,
//! compared in constant time on every POST. The username form, the first a visitor sees, takes
//! its token from a cookie of its own instead (double submit), so that a visitor who has typed
//! nothing yet costs no session row.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::web::error::AppError;

const KEY: &str = "csrf";

/// The cookie holding the username form's token until the browser has a session.
pub const LOGIN_COOKIE: &str = "sesam_login_csrf";
const LOGIN_COOKIE_SECONDS: i64 = 3600;

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
    let fresh = random_token();
    session.insert(KEY, &fresh).await?;
    Ok(fresh)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The username form's token: the session's when the browser has one, else the login
/// cookie's, with the `Set-Cookie` that creates that cookie when it is missing or malformed.
/// Writes nothing to the session.
pub async fn login_form_token(
    session: &Session,
    headers: &axum::http::HeaderMap,
    secure: bool,
) -> Result<(String, Option<axum::http::HeaderValue>), AppError> {
    if let Some(existing) = session.get::<String>(KEY).await? {
        return Ok((existing, None));
    }
    if let Some(value) = login_cookie(headers) {
        return Ok((value, None));
    }
    let fresh = random_token();
    let cookie = crate::web::cookies::set(LOGIN_COOKIE, &fresh, LOGIN_COOKIE_SECONDS, secure);
    Ok((fresh, Some(cookie)))
}

/// The login cookie's token, when it has the shape of one.
fn login_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    crate::web::cookies::get(headers, LOGIN_COOKIE).filter(|v| {
        v.len() == 43
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Refuses with 403 unless `submitted` is the session's token or the login cookie's (a
/// username form rendered before another tab gave the browser its session carries the latter).
pub async fn verify_login_form(
    session: &Session,
    headers: &axum::http::HeaderMap,
    submitted: Option<&str>,
) -> Result<(), AppError> {
    let submitted = submitted.ok_or(AppError::Csrf)?;
    let matches = |expected: &str| bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()));
    let by_session = session
        .get::<String>(KEY)
        .await?
        .is_some_and(|t| matches(&t));
    let by_cookie = login_cookie(headers).is_some_and(|t| matches(&t));
    if by_session | by_cookie {
        Ok(())
    } else {
        Err(AppError::Csrf)
    }
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
