//! The app API's errors: JSON `{"error", "message"}` with a status, never a page.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            message: message.into(),
        }
    }
    pub fn unauthorized(error: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, error, message)
    }
    pub fn bad_request(error: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }
}

impl From<sesam_store::StoreError> for ApiError {
    fn from(e: sesam_store::StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "app API request failed: database unavailable");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Sesam cannot reach its database just now. Try again in a moment.",
            );
        }
        tracing::error!(error = %e, "app API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Something went wrong on the server. Try again in a moment.",
        )
    }
}

impl From<crate::service::ServiceError> for ApiError {
    fn from(e: crate::service::ServiceError) -> Self {
        if let crate::service::ServiceError::Store(e) = e {
            return e.into();
        }
        tracing::error!(error = %e, "app API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Something went wrong on the server. Try again in a moment.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            tracing::debug!(status = %self.status, error = self.error, "app API request refused");
        }
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.error, "message": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                crate::web::error::UNAVAILABLE_RETRY_SECONDS.into(),
            );
        }
        response
    }
}
