//! The server's one error type and its mapping to HTTP: every failure becomes a clear
//! page (in Danish and English, since an error may come before the language is known).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::i18n::{Catalog, Lang};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Too many requests from one address; retry after this many seconds.
    #[error("too many requests")]
    TooManyRequests(u64),
    /// The database cannot be reached just now; the login is kept, so a retry continues it.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Seconds a client is asked to wait when the database is away.
pub const UNAVAILABLE_RETRY_SECONDS: u64 = 5;

impl From<sesam_store::StoreError> for AppError {
    fn from(e: sesam_store::StoreError) -> Self {
        if e.is_unavailable() {
            AppError::Unavailable(e.to_string())
        } else {
            AppError::Internal(e.to_string())
        }
    }
}

impl From<crate::service::ServiceError> for AppError {
    fn from(e: crate::service::ServiceError) -> Self {
        match e {
            // A step that does not follow (an old tab, a replayed form): a clear 400.
            crate::service::ServiceError::Flow(_) => {
                AppError::BadRequest("this step does not follow from where the login is")
            }
            crate::service::ServiceError::Store(e) => e.into(),
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(e: tower_sessions::session::Error) -> Self {
        match e {
            // The session store is the database; when it fails, the database is away.
            tower_sessions::session::Error::Store(e) => {
                AppError::Unavailable(format!("session: {e}"))
            }
            other => AppError::Internal(format!("session: {other}")),
        }
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        AppError::Internal(format!("template: {e}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    da: &'static Catalog,
    en: &'static Catalog,
    title_key: &'static str,
    body_key: &'static str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, name) = match &self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            AppError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            AppError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            AppError::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "media_type"),
            AppError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many"),
            AppError::Unavailable(detail) => {
                tracing::warn!(%detail, "request failed: database unavailable");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            AppError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        if status.is_client_error() {
            tracing::debug!(error = %self, "request refused");
        }
        let (title_key, body_key) = match name {
            "bad_request" => ("error.bad_request.title", "error.bad_request.body"),
            "csrf" => ("error.csrf.title", "error.csrf.body"),
            "not_found" => ("error.not_found.title", "error.not_found.body"),
            "too_large" => ("error.too_large.title", "error.too_large.body"),
            "media_type" => ("error.media_type.title", "error.media_type.body"),
            "too_many" => ("error.too_many.title", "error.too_many.body"),
            "unavailable" => ("error.unavailable.title", "error.unavailable.body"),
            _ => ("error.internal.title", "error.internal.body"),
        };
        let page = ErrorPage {
            da: Lang::Da.catalog(),
            en: Lang::En.catalog(),
            title_key,
            body_key,
        };
        let mut response = match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => status.into_response(),
        };
        let retry_after = match self {
            AppError::TooManyRequests(seconds) => Some(seconds),
            AppError::Unavailable(_) => Some(UNAVAILABLE_RETRY_SECONDS),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}
