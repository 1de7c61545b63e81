//! A form extractor that refuses instead of guessing: wrong content type → 415, body over
//! 16 KiB → 413, a field that is not valid UTF-8 after decoding or longer than
//! [`MAX_FIELD_CHARS`] → 400. (axum's `Form` decodes bad UTF-8 lossily.)

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use percent_encoding::percent_decode;
use serde::de::DeserializeOwned;

use crate::web::error::AppError;

pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const MAX_FIELD_CHARS: usize = 1024;
/// A browser's WebAuthn answer (`credential`) carries an attestation or a signature as
/// base64url JSON: a few kilobytes, within the body cap.
pub const MAX_CREDENTIAL_CHARS: usize = 12 * 1024;

pub struct StrictForm<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for StrictForm<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
            .unwrap_or(false);
        if !is_form {
            return Err(AppError::UnsupportedMediaType);
        }
        let body = read_capped(req.into_body()).await?;
        check_fields(&body)?;
        serde_urlencoded::from_bytes(&body)
            .map(StrictForm)
            .map_err(|_| AppError::BadRequest("form fields missing or malformed"))
    }
}

/// The body if it fits [`MAX_BODY_BYTES`]; an oversized one is drained first (see
/// [`crate::body::read_capped`]), so the client gets the 413 and not a broken connection.
async fn read_capped(body: axum::body::Body) -> Result<Bytes, AppError> {
    crate::body::read_capped(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            crate::body::BodyError::TooLarge => AppError::PayloadTooLarge,
            crate::body::BodyError::Broken => AppError::BadRequest("body could not be read"),
        })
}

fn check_fields(body: &[u8]) -> Result<(), AppError> {
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let limit = if pair.starts_with(b"credential=") {
            MAX_CREDENTIAL_CHARS
        } else {
            MAX_FIELD_CHARS
        };
        for part in pair.splitn(2, |b| *b == b'=') {
            let plus_as_space: Vec<u8> = part
                .iter()
                .map(|b| if *b == b'+' { b' ' } else { *b })
                .collect();
            let decoded = percent_decode(&plus_as_space)
                .decode_utf8()
                .map_err(|_| AppError::BadRequest("a form field is not valid UTF-8"))?;
            if decoded.chars().count() > limit {
                return Err(AppError::BadRequest("a form field is too long"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_fields_and_refuses_bad_ones() {
        assert!(check_fields(b"username=anna&remember=on&csrf=abc%2B").is_ok());
        assert!(check_fields("username=%C3%A6bleg%C3%A5rd".as_bytes()).is_ok());
        assert!(
            check_fields(b"username=%FF%FE").is_err(),
            "invalid UTF-8 after decoding"
        );
        assert!(check_fields(b"username=\xff").is_err(), "raw invalid UTF-8");
        let long = format!("password={}", "a".repeat(MAX_FIELD_CHARS + 1));
        assert!(check_fields(long.as_bytes()).is_err());
        let answer = format!("credential={}", "a".repeat(MAX_FIELD_CHARS + 1));
        assert!(
            check_fields(answer.as_bytes()).is_ok(),
            "a WebAuthn answer is longer"
        );
        let huge = format!("credential={}", "a".repeat(MAX_CREDENTIAL_CHARS + 1));
        assert!(check_fields(huge.as_bytes()).is_err());
        let sneaky = format!("credentials={}", "a".repeat(MAX_FIELD_CHARS + 1));
        assert!(
            check_fields(sneaky.as_bytes()).is_err(),
            "only that one field"
        );
    }
}
