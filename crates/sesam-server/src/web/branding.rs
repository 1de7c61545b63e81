//! The organisation's look on every page: name, logo, accent colour, help and privacy links
//! and a notice, from the settings; and the portal's logo upload.

use std::sync::Arc;

use axum::extract::{Multipart, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_store::Logo;
use sha2::{Digest, Sha256};

use crate::i18n::Lang;
use crate::state::{AppState, ClientIp};
use crate::web::admin::{audit, Admin};
use crate::web::csrf::{self, CsrfOnly};
use crate::web::error::AppError;

/// The largest logo accepted: a login page should not wait for a picture.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;

/// What the page frame shows of the organisation; empty fields show nothing.
#[derive(Clone, Debug, Default)]
pub struct Brand {
    pub organisation_name: String,
    /// The logo's digest (its version), when there is one.
    pub logo: Option<String>,
    /// `#rrggbb` without the `#`, when the organisation chose one.
    pub accent: Option<String>,
    pub help_url: String,
    pub privacy_url: String,
    pub notice_da: String,
    pub notice_en: String,
    /// The upstream eID's name for "Log in with …", when one is configured.
    pub upstream_label: Option<String>,
    /// The configured upstream eID, shown read-only on the portal's settings page.
    pub upstream: Option<UpstreamSummary>,
}

/// What the portal shows of the upstream eID (its configuration is the config file's).
#[derive(Clone, Debug)]
pub struct UpstreamSummary {
    pub issuer: String,
    pub client_id: String,
    pub link_claim: String,
    pub level: &'static str,
    /// The level's text key.
    pub level_key: &'static str,
    pub link_with_password: bool,
    pub redirect_uri: String,
}

impl Brand {
    pub fn notice(&self, lang: Lang) -> &str {
        match lang {
            Lang::Da => &self.notice_da,
            Lang::En => &self.notice_en,
        }
    }
}

tokio::task_local! {
    /// The brand of the request being answered. A task-local rather than a parameter so
    /// that every page's frame (`Chrome::new`) has it without each handler fetching it.
    static BRAND: Arc<Brand>;
}

/// The brand of the current request; Sesam's own outside a branded request.
pub fn current() -> Arc<Brand> {
    BRAND.try_with(Arc::clone).unwrap_or_default()
}

/// Middleware: reads the brand (from the configuration cache) for the pages below it.
pub async fn scope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let brand = match load(&state).await {
        Ok(b) => Arc::new(b),
        Err(e) => {
            // A page without the logo is better than no page.
            tracing::warn!(error = %e, "could not read the branding; showing pages without it");
            Arc::default()
        }
    };
    BRAND.scope(brand, next.run(req)).await
}

async fn load(state: &AppState) -> Result<Brand, sesam_store::StoreError> {
    let s = state.store.settings().await?;
    let logo = state.store.logo().await?;
    Ok(Brand {
        organisation_name: s.organisation_name,
        logo: logo.map(|l| l.digest.clone()),
        accent: s
            .accent_colour
            .strip_prefix('#')
            .map(str::to_owned)
            .filter(|c| !c.is_empty()),
        help_url: s.help_url,
        privacy_url: s.privacy_url,
        notice_da: s.login_notice_da,
        notice_en: s.login_notice_en,
        upstream_label: state.upstream.as_ref().map(|u| u.config.label.clone()),
        upstream: state.upstream.as_ref().map(|u| UpstreamSummary {
            issuer: u.config.issuer.clone(),
            client_id: u.config.client_id.clone(),
            link_claim: u.config.link_claim.clone(),
            level: u.config.level.as_str(),
            level_key: match u.config.level {
                sesam_core::AssuranceLevel::Low => "account.level.low",
                sesam_core::AssuranceLevel::Substantial => "account.level.substantial",
                sesam_core::AssuranceLevel::High => "account.level.high",
            },
            link_with_password: u.config.link_with_password,
            redirect_uri: format!(
                "{}{}",
                state.config.public_url,
                crate::upstream::CALLBACK_PATH
            ),
        }),
    })
}

#[derive(Deserialize)]
pub struct VersionQuery {
    v: Option<String>,
}

/// `GET /branding/logo`: the logo from the database, cacheable for long when the link names
/// its version.
pub async fn logo(
    State(state): State<AppState>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let logo = state.store.logo().await?.ok_or(AppError::NotFound)?;
    let etag = format!("\"{}\"", logo.digest);
    let cache = if q.v.as_deref() == Some(logo.digest.as_str()) {
        "public, max-age=86400, immutable"
    } else {
        "no-cache"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let etag = HeaderValue::from_str(&etag).map_err(|e| AppError::Internal(e.to_string()))?;
    let content_type =
        HeaderValue::from_str(&logo.content_type).map_err(|e| AppError::Internal(e.to_string()))?;
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        logo.bytes.clone().into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}

/// `GET /branding/theme.css`: the accent colour as a style sheet (the pages allow no inline
/// style).
pub async fn theme(State(state): State<AppState>) -> Result<Response, AppError> {
    let s = state.store.settings().await?;
    let css = if s.accent_colour.is_empty() {
        String::new()
    } else {
        // Validated as #rrggbb when it was set.
        format!(":root {{ --accent: {}; }}\n", s.accent_colour)
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        css,
    )
        .into_response())
}

/// The picture formats a logo may have, by their first bytes. No SVG: it can carry script.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Why an upload was refused, as the settings page says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogoProblem {
    Missing,
    TooLarge,
    NotAnImage,
}

impl LogoProblem {
    pub fn text_key(self) -> &'static str {
        match self {
            LogoProblem::Missing => "admin.branding.logo_missing",
            LogoProblem::TooLarge => "admin.branding.logo_too_large",
            LogoProblem::NotAnImage => "admin.branding.logo_wrong_type",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            LogoProblem::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            LogoProblem::NotAnImage => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            LogoProblem::Missing => StatusCode::BAD_REQUEST,
        }
    }
}

/// The form's two fields: its CSRF token and the file, read no further than the cap.
async fn read_upload(
    mut form: Multipart,
) -> Result<(Option<String>, Result<Vec<u8>, LogoProblem>), AppError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest("the upload could not be read; choose the file again")
        }
    };
    let mut csrf = None;
    let mut file = Err(LogoProblem::Missing);
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("csrf") => {
                let mut token = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if token.len() + chunk.len() > 256 {
                        return Err(AppError::Csrf);
                    }
                    token.extend_from_slice(&chunk);
                }
                csrf = String::from_utf8(token).ok();
            }
            Some("logo") => {
                let mut bytes = Vec::new();
                let mut too_large = false;
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    if bytes.len() + chunk.len() > MAX_LOGO_BYTES {
                        too_large = true;
                        break;
                    }
                    bytes.extend_from_slice(&chunk);
                }
                file = if too_large {
                    Err(LogoProblem::TooLarge)
                } else if bytes.is_empty() {
                    Err(LogoProblem::Missing)
                } else {
                    Ok(bytes)
                };
                if too_large {
                    break;
                }
            }
            _ => {}
        }
    }
    Ok((csrf, file))
}

/// `POST /admin/branding/logo`: a new logo, checked for type and size.
pub async fn upload_logo(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, AppError> {
    let form = form.map_err(|_| AppError::UnsupportedMediaType)?;
    let (token, file) = read_upload(form).await?;
    csrf::verify(&admin.0.session, token.as_deref()).await?;
    let checked = file.and_then(|bytes| match image_type(&bytes) {
        Some(content_type) => Ok((content_type, bytes)),
        None => Err(LogoProblem::NotAnImage),
    });
    let (content_type, bytes) = match checked {
        Ok(ok) => ok,
        Err(problem) => {
            let mut page =
                crate::web::admin::settings_with_logo_problem(&state, &admin, lang, problem)
                    .await?;
            *page.status_mut() = problem.status();
            return Ok(page);
        }
    };
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = state.now();
    let size = bytes.len();
    state
        .store
        .set_logo(
            &Logo {
                content_type: content_type.to_owned(),
                bytes,
                digest: digest.clone(),
            },
            now,
        )
        .await?;
    state
        .store
        .append_audit(
            &audit(&admin.0.user, "branding.logo_set", "logo", &ip)
                .detail(format!("{content_type}, {size} bytes, {digest}")),
            now,
        )
        .await?;
    Ok(Redirect::to("/admin/settings?saved=1#branding").into_response())
}

/// `POST /admin/branding/logo/remove`.
pub async fn remove_logo(
    State(state): State<AppState>,
    admin: Admin,
    ip: ClientIp,
    crate::web::form::StrictForm(form): crate::web::form::StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    if state.store.remove_logo().await? {
        state
            .store
            .append_audit(
                &audit(&admin.0.user, "branding.logo_removed", "logo", &ip),
                state.now(),
            )
            .await?;
    }
    Ok(Redirect::to("/admin/settings?saved=1#branding").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_raster_pictures_are_logos() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_type(b"\xff\xd8\xff\xe0..JFIF"), Some("image/jpeg"));
        assert_eq!(image_type(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        for bad in [
            &b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"[..],
            b"<html>",
            b"GIF89a",
            b"\x89PN",
            b"RIFF\x10\0\0\0WAVE",
            b"",
        ] {
            assert_eq!(image_type(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn outside_a_branded_request_the_brand_is_sesams_own() {
        let b = current();
        assert!(b.organisation_name.is_empty() && b.logo.is_none() && b.accent.is_none());
    }
}
