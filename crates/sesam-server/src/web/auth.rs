//! Who the session belongs to: what was proven and when, and the extractor that turns a
//! session into a signed-in user or a redirect to the login page.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use sesam_core::{AssuranceLevel, Factor, UnixTime, User, UserId};
use tower_sessions::Session;

use crate::state::AppState;
use crate::web::error::AppError;

const AUTH_KEY: &str = "auth";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProvenFactor {
    pub factor: Factor,
    pub at: i64,
}

/// Stored in the session once a login succeeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Authenticated {
    pub user_id: String,
    pub factors: Vec<ProvenFactor>,
    /// When the first factor of this login was proven; the absolute lifetime counts from here.
    pub auth_time: i64,
    /// Names this login towards services (OIDC `sid`, SAML `SessionIndex`); new at each login.
    #[serde(default)]
    pub sid: String,
}

impl Authenticated {
    pub fn level(&self) -> Option<AssuranceLevel> {
        let factors: Vec<Factor> = self.factors.iter().map(|f| f.factor).collect();
        AssuranceLevel::from_factors(&factors)
    }
}

/// Makes `session` the login of `user_id` with `factor`: a new session id (so a session id
/// planted before login is worthless) and the idle lifetime from settings.
pub async fn sign_in(
    session: &Session,
    user_id: &UserId,
    factor: Factor,
    now: UnixTime,
    idle_seconds: i64,
) -> Result<(), AppError> {
    session.cycle_id().await?;
    session.set_expiry(Some(tower_sessions::Expiry::OnInactivity(
        time::Duration::seconds(idle_seconds),
    )));
    let auth = Authenticated {
        user_id: user_id.0.clone(),
        factors: vec![ProvenFactor { factor, at: now.0 }],
        auth_time: now.0,
        sid: uuid::Uuid::new_v4().to_string(),
    };
    session.insert(AUTH_KEY, auth).await?;
    Ok(())
}

/// Adds a factor proven now to the session's login (step-up after a password).
pub async fn add_factor(session: &Session, factor: Factor, now: UnixTime) -> Result<(), AppError> {
    let Some(mut auth) = current(session).await? else {
        return Err(AppError::Internal("step-up without a login".into()));
    };
    if !auth.factors.iter().any(|f| f.factor == factor) {
        auth.factors.push(ProvenFactor { factor, at: now.0 });
    }
    // A new id: the session is worth more now, as after a login.
    session.cycle_id().await?;
    session.insert(AUTH_KEY, auth).await?;
    Ok(())
}

/// Ends the login but keeps what a service asked for (the return path, level, service name),
/// so a forced new login finishes that request.
pub async fn sign_out_keeping_request(session: &Session) -> Result<(), AppError> {
    if session.remove::<Authenticated>(AUTH_KEY).await?.is_some() {
        session.cycle_id().await?;
    }
    Ok(())
}

pub async fn current(session: &Session) -> Result<Option<Authenticated>, AppError> {
    Ok(session.get::<Authenticated>(AUTH_KEY).await?)
}

/// A request from a signed-in, active user whose session is within its absolute lifetime.
pub struct SignedIn {
    pub user: User,
    pub auth: Authenticated,
    pub session: Session,
}

pub enum NotSignedIn {
    Login,
    Error(AppError),
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        match self {
            NotSignedIn::Login => Redirect::to("/login").into_response(),
            NotSignedIn::Error(e) => e.into_response(),
        }
    }
}

impl From<AppError> for NotSignedIn {
    fn from(e: AppError) -> Self {
        NotSignedIn::Error(e)
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = NotSignedIn;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<SignedIn, NotSignedIn> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::Internal("session layer missing".into()))?;
        let Some(auth) = current(&session).await? else {
            return Err(NotSignedIn::Login);
        };
        let settings = state.store.load_settings().await.map_err(AppError::from)?;
        let expired = state.now().0 - auth.auth_time > settings.session_absolute_seconds;
        let user = match state.store.get_user(&UserId(auth.user_id.clone())).await {
            Ok(user) if user.is_active() && !expired => user,
            Ok(_) | Err(sesam_store::StoreError::NotFound(_)) => {
                session.flush().await.map_err(AppError::from)?;
                return Err(NotSignedIn::Login);
            }
            Err(e) => return Err(AppError::from(e).into()),
        };
        Ok(SignedIn {
            user,
            auth,
            session,
        })
    }
}
