//! The app on the same phone: the association files that let the Sesam app claim
//! `/app/open` links, and the page a browser gets when no app claimed one.

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::i18n::Lang;
use crate::state::AppState;
use crate::web::error::AppError;
use crate::web::pages::{render, Chrome, MessagePage};

fn json_file(value: Option<serde_json::Value>) -> Response {
    match value {
        // Apple and Google fetch these directly: JSON, no redirect, short caching.
        Some(v) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            v.to_string(),
        )
            .into_response(),
        None => AppError::NotFound.into_response(),
    }
}

/// `/.well-known/apple-app-site-association`
pub async fn apple(State(state): State<AppState>) -> Response {
    json_file(state.config.app_links.apple_association())
}

/// `/.well-known/assetlinks.json`
pub async fn android(State(state): State<AppState>) -> Response {
    json_file(state.config.app_links.asset_links())
}

#[derive(Deserialize)]
pub struct OpenQuery {
    challenge: Option<String>,
}

/// A challenge id as the link carries it (a UUID); anything else is not ours.
fn challenge_id(q: &OpenQuery) -> Option<&str> {
    q.challenge
        .as_deref()
        .filter(|id| !id.is_empty() && id.len() <= 64)
        .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// `/app/open?challenge=…`: the app did not claim the link (not installed, or opened on a
/// computer). The demo sends it to the demo phone, which plays the app; otherwise a page says
/// so and leads back to the waiting login. The return address is always Sesam's own wait page.
pub async fn open(
    State(state): State<AppState>,
    lang: Lang,
    Query(q): Query<OpenQuery>,
) -> Result<Response, AppError> {
    let Some(id) = challenge_id(&q) else {
        return Err(AppError::BadRequest(
            "challenge must be the id of a login's challenge",
        ));
    };
    if state.config.demo {
        let query = serde_urlencoded::to_string([("challenge", id), ("return", "/login/wait")])
            .map_err(|e| AppError::Internal(format!("query: {e}")))?;
        return Ok(Redirect::to(&format!("/demo/phone?{query}")).into_response());
    }
    let t = lang.catalog();
    let page = MessagePage {
        chrome: Chrome::new(lang, "/login/wait"),
        title: t.get("applink.missing_title").to_owned(),
        body: t.get("applink.missing").to_owned(),
        alert: false,
        link_href: "/login/wait",
        link_label: t.get("applink.back").to_owned(),
    };
    render(StatusCode::OK, &page)
}

/// The "Open the Sesam app" link for a challenge: its id (never the code) and the way back
/// to this browser tab.
pub fn open_link(public_url: &str, challenge_id: &str) -> String {
    let back = format!("{public_url}/login/wait");
    let query = serde_urlencoded::to_string([("challenge", challenge_id), ("return", &back)])
        .unwrap_or_default();
    format!("{public_url}{}?{query}", crate::applinks::OPEN_PATH)
}
