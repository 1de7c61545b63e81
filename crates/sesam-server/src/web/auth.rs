//! The browser's login flow in its session (one key), and the extractor that turns a
//! session into a signed-in user or a redirect to the login page.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use sesam_core::flow::Next;
use sesam_core::{LoginFlow, User};
use tower_sessions::Session;

use crate::service::Origin;
use crate::state::{AppState, ClientIp};
use crate::web::error::AppError;

/// A finished login as the session keeps it.
pub type Authenticated = sesam_core::Login;

/// The one session key the login lives under.
const FLOW_KEY: &str = "flow";

/// The flow of this browser (a fresh one when there is none).
pub async fn load(session: &Session) -> Result<LoginFlow, AppError> {
    Ok(session
        .get::<LoginFlow>(FLOW_KEY)
        .await?
        .unwrap_or_default())
}

/// Stores `flow`, first giving the session a new id when the login became worth more
/// (so a session id planted before the login is worthless).
pub async fn save(session: &Session, flow: &LoginFlow, rotate: bool) -> Result<(), AppError> {
    if rotate {
        session.cycle_id().await?;
    }
    session.insert(FLOW_KEY, flow).await?;
    Ok(())
}

/// Stores `flow` when a use case changed it.
pub async fn save_if_changed(
    session: &Session,
    before: u64,
    flow: &LoginFlow,
    rotate: bool,
) -> Result<(), AppError> {
    if rotate || flow.version != before {
        save(session, flow, rotate).await?;
    }
    Ok(())
}

/// The finished login of this session, if any (not checked against the user; see
/// [`SignedIn`] for that).
pub async fn current(session: &Session) -> Result<Option<Authenticated>, AppError> {
    Ok(load(session).await?.login)
}

/// What the audit log and the app's request context learn of the browser.
pub fn origin(headers: &HeaderMap, ip: &ClientIp) -> Origin {
    Origin {
        ip: ip.text(),
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        chosen_factor: crate::web::cookies::get(headers, FACTOR_COOKIE)
            .and_then(|v| sesam_core::SecondFactor::parse(&v)),
    }
}

/// Remembers, per browser, which second factor the user chose on the wait or code page.
pub const FACTOR_COOKIE: &str = "sesam_second_factor";

impl FromRequestParts<AppState> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Origin, Self::Rejection> {
        let ip = ClientIp::from_request_parts(parts, state).await?;
        Ok(origin(&parts.headers, &ip))
    }
}

/// The page each "next" of the flow is shown on.
pub fn path_of(next: &Next, flow: &LoginFlow) -> String {
    match next {
        Next::ShowUsername => "/login".into(),
        Next::ShowPassword => "/login/password".into(),
        Next::Wait => "/login/wait".into(),
        Next::ChangePassword => "/account/password".into(),
        Next::StartStepUp => "/login/step-up".into(),
        Next::AskTotp => "/login/totp".into(),
        Next::AskPasskey => "/login/passkey".into(),
        // A service waits for its answer at its resume path; otherwise the explanation.
        Next::LevelUnreachable => match &flow.request {
            Some(r) if r.answers_protocol => r.resume.clone(),
            _ => "/login/unreachable".into(),
        },
        Next::Continue(path) => path.clone(),
        // The upstream's own URL is sent by the use case that starts it.
        Next::GoUpstream => "/login".into(),
    }
}

pub fn redirect(next: &Next, flow: &LoginFlow) -> Response {
    Redirect::to(&path_of(next, flow)).into_response()
}

/// A request from a signed-in, active user whose login still counts. While a one-time
/// password waits to be replaced, only the change page and logout are open.
pub struct SignedIn {
    pub user: User,
    pub auth: Authenticated,
    pub flow: LoginFlow,
    pub session: Session,
}

pub enum NotSignedIn {
    Login,
    ChangePassword,
    Error(AppError),
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        match self {
            NotSignedIn::Login => Redirect::to("/login").into_response(),
            NotSignedIn::ChangePassword => Redirect::to("/account/password").into_response(),
            NotSignedIn::Error(e) => e.into_response(),
        }
    }
}

impl From<AppError> for NotSignedIn {
    fn from(e: AppError) -> Self {
        NotSignedIn::Error(e)
    }
}

/// Paths open to a login whose one-time password must still be changed.
const OPEN_WHILE_MUST_CHANGE: &[&str] = &["/account/password", "/logout"];

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = NotSignedIn;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<SignedIn, NotSignedIn> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::Internal("session layer missing".into()))?;
        let mut flow = load(&session).await?;
        let had_login = flow.login.is_some();
        let Some((user, auth)) = crate::service::login::signed_in(state, &mut flow)
            .await
            .map_err(AppError::from)?
        else {
            if had_login {
                // The login stopped counting (expired, user disabled, password changed).
                save(&session, &flow, true).await?;
            }
            return Err(NotSignedIn::Login);
        };
        if (auth.must_change_password || user.must_change_password)
            && !OPEN_WHILE_MUST_CHANGE.contains(&parts.uri.path())
        {
            return Err(NotSignedIn::ChangePassword);
        }
        Ok(SignedIn {
            user,
            auth,
            flow,
            session,
        })
    }
}
