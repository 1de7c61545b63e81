//! What SAML and OpenID Connect share: a service asks for a login of some level (maybe a
//! fresh one, maybe only if it needs no page), and gets the signed-in user back when the
//! session has it, or the browser is sent through the login and back to `resume`.

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Redirect, Response};
use sesam_core::{AssuranceLevel, User, UserId};
use tower_sessions::Session;

use crate::state::AppState;
use crate::web::auth::{self, Authenticated};
use crate::web::error::AppError;
use crate::web::wait;

/// Prefills the username field of the login page (OIDC `login_hint`, SAML `Subject`).
pub const LOGIN_HINT_KEY: &str = "login.hint";

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
    /// The browser must log in (or step up) first.
    Login(Response),
    /// A passive request that a page would be needed for.
    PassiveImpossible,
}

/// The signed-in user of `session` if the login is still valid (active user, within the
/// absolute lifetime).
pub async fn signed_in(
    state: &AppState,
    session: &Session,
) -> Result<Option<(User, Authenticated)>, AppError> {
    let Some(auth) = auth::current(session).await? else {
        return Ok(None);
    };
    let settings = state.store.load_settings().await?;
    if state.now().0 - auth.auth_time > settings.session_absolute_seconds {
        return Ok(None);
    }
    match state.store.get_user(&UserId(auth.user_id.clone())).await {
        Ok(user) if user.is_active() => Ok(Some((user, auth))),
        Ok(_) | Err(sesam_store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Decides whether the session can answer `need` now, and if not, starts the login that can.
pub async fn login_for_service(
    state: &AppState,
    session: &Session,
    need: &LoginNeed<'_>,
) -> Result<LoginOutcome, AppError> {
    let settings = state.store.load_settings().await?;
    let level = need.level.max(settings.required_level);
    let current = signed_in(state, session)
        .await?
        .filter(|(_, auth)| need.not_before.is_none_or(|t| auth.auth_time >= t));
    if let Some((user, auth)) = current.as_ref() {
        if auth.level() >= Some(level) {
            return Ok(LoginOutcome::Ready {
                user: user.clone(),
                auth: auth.clone(),
            });
        }
    }
    if need.passive {
        return Ok(LoginOutcome::PassiveImpossible);
    }
    session.insert(wait::RETURN_TO_KEY, need.resume).await?;
    session.insert(wait::SERVICE_KEY, need.service).await?;
    if level >= AssuranceLevel::Substantial {
        session
            .insert(wait::REQUIRED_LEVEL_KEY, "substantial")
            .await?;
    } else {
        session.remove::<String>(wait::REQUIRED_LEVEL_KEY).await?;
    }
    if current.is_some() {
        // Signed in, but with less than asked: the app adds its factor.
        return Ok(LoginOutcome::Login(
            Redirect::to("/login/step-up").into_response(),
        ));
    }
    // A new login: whatever the session held does not count any more.
    auth::sign_out_keeping_request(session).await?;
    match need
        .login_hint
        .filter(|h| sesam_core::Username::parse(h).is_ok())
    {
        Some(hint) => session.insert(LOGIN_HINT_KEY, hint).await?,
        None => {
            session.remove::<String>(LOGIN_HINT_KEY).await?;
        }
    }
    Ok(LoginOutcome::Login(Redirect::to("/login").into_response()))
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
