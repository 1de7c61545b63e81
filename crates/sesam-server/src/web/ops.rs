//! Operations and small fixed routes: health, readiness, the stylesheet, the language switch.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::i18n::{Lang, LANG_COOKIE};
use crate::state::AppState;
use crate::web::cookies;
use crate::web::error::AppError;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

/// The few static files, compiled into the binary so Sesam stays one file.
const STATIC_FILES: &[(&str, &str, &str)] = &[
    (
        "phone.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../static/phone.js"),
    ),
    (
        "passkey.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../static/passkey.js"),
    ),
    (
        "form-post.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../static/form-post.js"),
    ),
    (
        "phone.css",
        "text/css; charset=utf-8",
        include_str!("../../../../static/phone.css"),
    ),
    (
        "sesam.css",
        "text/css; charset=utf-8",
        include_str!("../../../../static/sesam.css"),
    ),
    (
        "wait.js",
        "text/javascript; charset=utf-8",
        include_str!("../../../../static/wait.js"),
    ),
];

pub async fn static_file(Path(name): Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *body,
        )
            .into_response(),
        None => AppError::NotFound.into_response(),
    }
}

#[derive(Deserialize)]
pub struct LangQuery {
    next: Option<String>,
}

/// Only paths on this site are followed, so the switch cannot be used as an open redirect.
pub fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && !p.chars().any(char::is_control)
                && p.len() <= 512 =>
        {
            p
        }
        _ => "/login",
    }
}

pub async fn switch_language(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<LangQuery>,
) -> Result<Response, AppError> {
    let lang = Lang::from_code(&code).ok_or(AppError::NotFound)?;
    let cookie = cookies::set(
        LANG_COOKIE,
        lang.code(),
        400 * 24 * 60 * 60,
        state.config.cookie_secure,
    );
    Ok((
        [(header::SET_COOKIE, cookie)],
        Redirect::to(local_path(q.next.as_deref())),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/account")), "/account");
        assert_eq!(local_path(Some("//evil.example")), "/login");
        assert_eq!(local_path(Some("https://evil.example")), "/login");
        assert_eq!(local_path(Some("/\\evil.example")), "/login");
        assert_eq!(local_path(Some("/a\r\nSet-Cookie: x")), "/login");
        assert_eq!(local_path(None), "/login");
    }
}
