//! The passkey pages: the passkey step of a login, and adding or removing a passkey on the
//! devices page. Each handler extracts, calls one use case in `service::passkey`, renders.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_core::flow::ChallengePurpose;
use sesam_core::SecondFactor;
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::passkey::Ceremony;
use crate::service::login::other_second_factor;
use crate::service::passkey::{self as service, PasskeyOutcome, RegistrationProblem};
use crate::service::Origin;
use crate::state::AppState;
use crate::web::auth::{self, SignedIn};
use crate::web::csrf::{self, CsrfOnly};
use crate::web::devices;
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{render, Chrome};

/// Where a started registration waits in the session for the browser's answer.
const REGISTRATION_KEY: &str = "passkey_registration";

#[derive(Template)]
#[template(path = "passkey_login.html")]
pub struct PasskeyLoginPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub username: String,
    pub options: String,
    pub error_key: Option<&'static str>,
    pub other_factor: Option<&'static str>,
    pub offer_password: bool,
}

#[derive(Template)]
#[template(path = "passkey_enrol.html")]
pub struct PasskeyEnrolPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub options: String,
    pub error_key: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct CredentialForm {
    csrf: Option<String>,
    #[serde(default)]
    credential: String,
}

#[derive(Deserialize)]
pub struct NewPasskeyForm {
    csrf: Option<String>,
    #[serde(default)]
    credential: String,
    #[serde(default)]
    name: String,
}

async fn login_page(
    state: &AppState,
    session: &Session,
    lang: Lang,
    status: StatusCode,
    error_key: Option<&'static str>,
) -> Result<Response, AppError> {
    let mut flow = auth::load(session).await?;
    let before = flow.version;
    let page = service::page(state, &mut flow).await?;
    let other = other_second_factor(state, &mut flow).await?;
    auth::save_if_changed(session, before, &flow, false).await?;
    let Some(page) = page else {
        return Ok(Redirect::to("/login").into_response());
    };
    render(
        status,
        &PasskeyLoginPage {
            chrome: Chrome::new(lang, "/login/passkey"),
            csrf: csrf::token(session).await?,
            username: page.username,
            options: page.options_json,
            error_key,
            other_factor: other.map(SecondFactor::as_str),
            offer_password: page.purpose == ChallengePurpose::Login,
        },
    )
}

pub async fn show_login(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
) -> Result<Response, AppError> {
    login_page(&state, &session, lang, StatusCode::OK, None).await
}

pub async fn submit_login(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<CredentialForm>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let mut flow = auth::load(&session).await?;
    let before = flow.version;
    match service::submit(&state, &mut flow, &form.credential, &origin).await? {
        PasskeyOutcome::Moved(moved) => {
            auth::save(&session, &flow, moved.rotate).await?;
            Ok(auth::redirect(&moved.next, &flow))
        }
        PasskeyOutcome::NotAsked => {
            auth::save_if_changed(&session, before, &flow, false).await?;
            Ok(Redirect::to("/login").into_response())
        }
        PasskeyOutcome::Refused(e) => {
            auth::save_if_changed(&session, before, &flow, false).await?;
            let status = match e {
                crate::passkey::PasskeyError::Malformed => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            login_page(&state, &session, lang, status, Some(e.text_key())).await
        }
    }
}

/// "Add a passkey": the options for the browser; the ceremony waits in the session.
pub async fn start_enrolment(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    match service::start_registration(&state, &signed_in.flow, &signed_in.user, &origin).await? {
        Ok(ceremony) => {
            signed_in
                .session
                .insert(REGISTRATION_KEY, ceremony.to_stored())
                .await?;
            let page = PasskeyEnrolPage {
                chrome: Chrome::new(lang, "/account/devices"),
                csrf: csrf::token(&signed_in.session).await?,
                options: ceremony.options_json,
                error_key: None,
            };
            render(StatusCode::OK, &page)
        }
        Err(refusal) => {
            devices::refused(
                &state,
                &signed_in,
                lang,
                StatusCode::FORBIDDEN,
                refusal.text_key(),
            )
            .await
        }
    }
}

/// The browser's new passkey. The ceremony counts once, whatever the outcome.
pub async fn finish_enrolment(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<NewPasskeyForm>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    let stored: Option<String> = signed_in.session.remove(REGISTRATION_KEY).await?;
    let ceremony = stored.as_deref().and_then(Ceremony::from_stored);
    let outcome = service::finish_registration(
        &state,
        &signed_in.flow,
        &signed_in.user,
        &form.credential,
        &form.name,
        ceremony.as_ref().map(|c| c.state_json.as_str()),
        &origin,
    )
    .await?;
    match outcome {
        Ok(()) => Ok(Redirect::to("/account/devices").into_response()),
        Err(problem) => {
            let status = match problem {
                RegistrationProblem::Refused(service::Refusal::NeedsMore) => StatusCode::FORBIDDEN,
                RegistrationProblem::Refused(service::Refusal::NoPending) => StatusCode::CONFLICT,
                RegistrationProblem::AlreadyRegistered => StatusCode::CONFLICT,
                RegistrationProblem::Invalid(crate::passkey::PasskeyError::Malformed)
                | RegistrationProblem::BadName => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            devices::refused(&state, &signed_in, lang, status, problem.text_key()).await
        }
    }
}

pub async fn remove(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    Path(id): Path<String>,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    match service::remove(&state, &signed_in.flow, &signed_in.user, &id, &origin).await? {
        service::Removal::Removed => Ok(Redirect::to("/account/devices").into_response()),
        service::Removal::NotFound => Err(AppError::NotFound),
        service::Removal::NeedsMore => {
            devices::refused(
                &state,
                &signed_in,
                lang,
                StatusCode::FORBIDDEN,
                devices::REMOVE_NEEDS_MORE,
            )
            .await
        }
    }
}
