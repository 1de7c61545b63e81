//! "Log in with MitID": the button's form sends the browser to the upstream eID, and its
//! answer comes back to the callback. The use cases are in `service::upstream`.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::service::upstream::{self as service, Answer, Begin, Outcome, Refusal};
use crate::service::Origin;
use crate::state::AppState;
use crate::web::auth;
use crate::web::csrf::{self, CsrfOnly};
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{render, Chrome, MessagePage};

/// `POST /login/upstream`: from the username, password or wait page.
pub async fn begin(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    headers: HeaderMap,
    origin: Origin,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    // The username page's form carries the login cookie's token when there is no session yet.
    csrf::verify_login_form(&session, &headers, form.csrf.as_deref()).await?;
    let mut flow = auth::load(&session).await?;
    match service::begin(&state, &mut flow, &origin).await? {
        Begin::Redirect(url) => {
            auth::save(&session, &flow, false).await?;
            Ok(Redirect::to(&url).into_response())
        }
        Begin::NotConfigured => Err(AppError::NotFound),
        Begin::Unavailable => unavailable(lang),
    }
}

fn unavailable(lang: Lang) -> Result<Response, AppError> {
    let t = lang.catalog();
    let page = MessagePage {
        chrome: Chrome::new(lang, "/login"),
        title: t.get("upstream.unavailable_title").to_owned(),
        body: t.get("upstream.unavailable_body").to_owned(),
        alert: true,
        link_href: "/login",
        link_label: t.get("login.back").to_owned(),
    };
    let mut response = render(StatusCode::SERVICE_UNAVAILABLE, &page)?;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    Ok(response)
}

/// The upstream's answer: only these parameters are read; others (`session_state`, …) are
/// the upstream's business.
#[derive(Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// `GET /login/upstream/callback`.
pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let t = lang.catalog();
    let message = |status: StatusCode, title: &str, body: &str, href, label: &str| {
        let page = MessagePage {
            chrome: Chrome::new(lang, "/login"),
            title: t.get(title).to_owned(),
            body: t.get(body).to_owned(),
            alert: status != StatusCode::OK,
            link_href: href,
            link_label: t.get(label).to_owned(),
        };
        render(status, &page)
    };
    let refused = |body: &str, status| {
        message(
            status,
            "upstream.refused_title",
            body,
            "/login",
            "login.back",
        )
    };
    let Ok(Query(query)) = query else {
        return refused("upstream.unknown_body", StatusCode::BAD_REQUEST);
    };
    let mut flow = auth::load(&session).await?;
    let before = flow.version;
    let answer = Answer {
        state: query.state,
        code: query.code,
        error: query.error,
        iss: query.iss,
    };
    let outcome = service::answer(&state, &mut flow, answer, &origin).await?;
    if let Outcome::Moved(moved) = outcome {
        auth::save(&session, &flow, moved.rotate).await?;
        return Ok(auth::redirect(&moved.next, &flow));
    }
    auth::save_if_changed(&session, before, &flow, false).await?;
    match outcome {
        Outcome::Moved(_) | Outcome::NotConfigured => Err(AppError::NotFound),
        Outcome::Unlinked { can_link: true } => message(
            StatusCode::OK,
            "upstream.unlinked_title",
            "upstream.unlinked_can_link",
            "/login",
            "upstream.link_now",
        ),
        Outcome::Unlinked { can_link: false } => message(
            StatusCode::FORBIDDEN,
            "upstream.unlinked_title",
            "upstream.unlinked_body",
            "/login",
            "login.back",
        ),
        Outcome::Refused(Refusal::UnknownAttempt) => {
            refused("upstream.unknown_body", StatusCode::BAD_REQUEST)
        }
        Outcome::Refused(Refusal::Denied) => refused("upstream.denied_body", StatusCode::FORBIDDEN),
        Outcome::Refused(Refusal::Unverified) => {
            refused("upstream.unverified_body", StatusCode::FORBIDDEN)
        }
        Outcome::Refused(Refusal::Inactive) => {
            refused("upstream.inactive_body", StatusCode::FORBIDDEN)
        }
        Outcome::Refused(Refusal::Unavailable) => unavailable(lang),
    }
}
