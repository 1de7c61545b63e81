//! What SAML and OpenID Connect share: a service asks for a login of some level (maybe a
//! fresh one, maybe only if it needs no page), and gets the signed-in user back when the
//! session has it, or the browser is sent through the login and back to `resume`.

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use sesam_core::{AssuranceLevel, ServiceRequest, User};
use tower_sessions::Session;

use crate::service::login::{self as service, ServiceAnswer};
use crate::service::Origin;
use crate::state::AppState;
use crate::web::auth::{self, Authenticated};
use crate::web::error::AppError;

/// What a service asks of the login.
#[derive(Clone, Debug)]
pub struct LoginNeed<'a> {
    /// Shown in the app ("Log in to …").
    pub service: &'a str,
    pub level: AssuranceLevel,
    /// A login older than this (Unix seconds) does not count: `ForceAuthn`, `prompt=login`,
    /// `max_age`.
    pub not_before: Option<i64>,
    /// Answer without showing a page (`IsPassive`, `prompt=none`).
    pub passive: bool,
    /// Where the browser comes back to once the login is done (a local path).
    pub resume: &'a str,
    pub login_hint: Option<&'a str>,
}

pub enum LoginOutcome {
    /// The session has what the service needs.
    Ready { user: User, auth: Authenticated },
    /// The browser must log in (or step up, or change its password) first.
    Login(Response),
    /// A passive request that a page would be needed for.
    PassiveImpossible,
    /// The level asked for cannot be reached by this user: the service gets its error.
    LevelUnreachable,
}

/// Decides whether the session can answer `need` now, and if not, starts the login that can.
pub async fn login_for_service(
    state: &AppState,
    session: &Session,
    need: &LoginNeed<'_>,
    origin: &Origin,
) -> Result<LoginOutcome, AppError> {
    let mut flow = auth::load(session).await?;
    let before = flow.version;
    let request = ServiceRequest {
        service: need.service.to_owned(),
        level: need.level,
        not_before: need.not_before,
        resume: need.resume.to_owned(),
        answers_protocol: true,
    };
    let answer = service::answer_service(
        state,
        &mut flow,
        request,
        need.passive,
        need.login_hint.map(str::to_owned),
        origin,
    )
    .await?;
    let (outcome, rotate) = match answer {
        ServiceAnswer::Ready { user, login } => (
            LoginOutcome::Ready {
                user: *user,
                auth: login,
            },
            false,
        ),
        ServiceAnswer::PassiveImpossible => (LoginOutcome::PassiveImpossible, false),
        ServiceAnswer::LevelUnreachable => (LoginOutcome::LevelUnreachable, false),
        ServiceAnswer::Login(moved) => (
            LoginOutcome::Login(auth::redirect(&moved.next, &flow)),
            moved.rotate,
        ),
    };
    auth::save_if_changed(session, before, &flow, rotate).await?;
    Ok(outcome)
}

/// Ends the browser's login but keeps what a service asked for (ForceAuthn).
pub async fn sign_out_keeping_request(
    state: &AppState,
    session: &Session,
    origin: &Origin,
) -> Result<(), AppError> {
    let mut flow = auth::load(session).await?;
    let rotate = service::sign_out_keeping_request(state, &mut flow, origin).await?;
    auth::save(session, &flow, rotate).await
}

/// A page whose form carries a protocol answer to a service (OIDC `form_post`, SAML POST).
/// Its own CSP lets the form go to that service's origin and nowhere else.
pub fn form_post_page(html: String, action: &str) -> Response {
    let csp = format!(
        "default-src 'none'; script-src 'self'; form-action {}; frame-ancestors 'none'; base-uri 'none'",
        origin_of(action)
    );
    let mut response = Html(html).into_response();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// `scheme://host[:port]` of an absolute URL (registered redirect URIs and ACS URLs are).
pub fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['/', '?', '#', ';', ' ', '\''])
        .map_or(url.len(), |i| after_scheme + i);
    &url[..end]
}
