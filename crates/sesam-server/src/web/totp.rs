//! The code display's pages: the code step of a login, and adding (QR code, one code to
//! confirm) or removing an authenticator app on the devices page. Each handler extracts,
//! calls one use case in `service::totp`, and renders.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use qrcode::render::svg;
use qrcode::QrCode;
use serde::Deserialize;
use sesam_core::SecondFactor;
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::service::login::other_second_factor;
use crate::service::totp::{self as service, CodeOutcome, Confirmation, PendingTotp};
use crate::service::Origin;
use crate::state::AppState;
use crate::web::auth::{self, SignedIn};
use crate::web::csrf::{self, CsrfOnly};
use crate::web::devices;
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{format_time, render, Chrome, MessagePage};

#[derive(Template)]
#[template(path = "totp_login.html")]
pub struct TotpLoginPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub username: String,
    pub error_key: Option<&'static str>,
    /// "Other ways to log in": the app instead of the code.
    pub other_factor: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "totp_enrol.html")]
pub struct TotpEnrolPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub secret: String,
    pub qr_svg: String,
    pub error_key: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: Option<String>,
    code: String,
}

fn login_page(
    lang: Lang,
    csrf: String,
    username: String,
    error_key: Option<&'static str>,
    other_factor: Option<SecondFactor>,
) -> TotpLoginPage {
    TotpLoginPage {
        chrome: Chrome::new(lang, "/login/totp"),
        csrf,
        username,
        error_key,
        other_factor: other_factor.map(SecondFactor::as_str),
    }
}

/// The code page. Not behind `SignedIn`: in PSD2 mode it also follows a wrong password,
/// and must look the same then.
pub async fn show_login(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
) -> Result<Response, AppError> {
    let mut flow = auth::load(&session).await?;
    let before = flow.version;
    let username = service::code_page_username(&state, &mut flow).await?;
    let other = other_second_factor(&state, &mut flow).await?;
    auth::save_if_changed(&session, before, &flow, before != flow.version).await?;
    let Some(username) = username else {
        return Ok(Redirect::to("/login").into_response());
    };
    let csrf = csrf::token(&session).await?;
    render(
        StatusCode::OK,
        &login_page(lang, csrf, username, None, other),
    )
}

/// The code page again, with why the code was not taken.
async fn again(
    session: &Session,
    lang: Lang,
    username: String,
    status: StatusCode,
    key: &'static str,
) -> Result<Response, AppError> {
    let csrf = csrf::token(session).await?;
    // Without the other way: after a wrong code the page must not differ with PSD2 mode off
    // from on, and the user can still reload for it.
    render(status, &login_page(lang, csrf, username, Some(key), None))
}

pub async fn submit_login(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<CodeForm>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let mut flow = auth::load(&session).await?;
    let before = flow.version;
    let username = service::code_page_username(&state, &mut flow)
        .await?
        .unwrap_or_default();
    let outcome = service::submit_code(&state, &mut flow, &form.code, &origin).await?;
    match outcome {
        CodeOutcome::Moved(moved) | CodeOutcome::DetailsWrong(moved) => {
            auth::save(&session, &flow, moved.rotate).await?;
            Ok(auth::redirect(&moved.next, &flow))
        }
        CodeOutcome::NotAsked => {
            auth::save_if_changed(&session, before, &flow, false).await?;
            Ok(Redirect::to("/login").into_response())
        }
        CodeOutcome::Malformed(e) => {
            again(
                &session,
                lang,
                username,
                StatusCode::BAD_REQUEST,
                service::malformed_key(e),
            )
            .await
        }
        CodeOutcome::Wrong => {
            again(
                &session,
                lang,
                username,
                StatusCode::UNAUTHORIZED,
                "totp.error.wrong",
            )
            .await
        }
        CodeOutcome::Replayed => {
            again(
                &session,
                lang,
                username,
                StatusCode::UNAUTHORIZED,
                "totp.error.replayed",
            )
            .await
        }
        CodeOutcome::Locked(until) => {
            let t = lang.catalog();
            let zone = state.store.settings().await?.time_zone;
            let page = MessagePage {
                chrome: Chrome::new(lang, "/login"),
                title: t.get("login.locked_title").to_owned(),
                body: t.fill("login.locked_body", "until", &format_time(until, &zone)),
                alert: true,
                link_href: "/logout",
                link_label: t.get("totp.cancel").to_owned(),
            };
            render(StatusCode::TOO_MANY_REQUESTS, &page)
        }
    }
}

fn enrol_page(
    lang: Lang,
    csrf: String,
    pending: PendingTotp,
    error_key: Option<&'static str>,
) -> Result<TotpEnrolPage, AppError> {
    let qr_svg = QrCode::new(pending.otpauth_uri.as_bytes())
        .map(|qr| qr.render::<svg::Color>().min_dimensions(200, 200).build())
        .map_err(|e| AppError::Internal(format!("qr: {e}")))?;
    Ok(TotpEnrolPage {
        chrome: Chrome::new(lang, "/account/devices"),
        csrf,
        secret: pending.secret_base32,
        qr_svg,
        error_key,
    })
}

pub async fn start_enrolment(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    match service::start_enrolment(&state, &signed_in.flow, &signed_in.user, &origin).await? {
        Ok(pending) => {
            let csrf = csrf::token(&signed_in.session).await?;
            render(StatusCode::OK, &enrol_page(lang, csrf, pending, None)?)
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

pub async fn confirm_enrolment(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<CodeForm>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    match service::confirm_enrolment(
        &state,
        &signed_in.flow,
        &signed_in.user,
        &form.code,
        &origin,
    )
    .await?
    {
        Confirmation::Confirmed => Ok(Redirect::to("/account/devices").into_response()),
        Confirmation::Refused(refusal) => {
            devices::refused(
                &state,
                &signed_in,
                lang,
                StatusCode::FORBIDDEN,
                refusal.text_key(),
            )
            .await
        }
        Confirmation::Retry(pending, problem) => {
            let csrf = csrf::token(&signed_in.session).await?;
            render(
                StatusCode::BAD_REQUEST,
                &enrol_page(lang, csrf, pending, Some(problem.text_key()))?,
            )
        }
    }
}

pub async fn remove(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    if !service::remove_own(&state, &signed_in.flow, &signed_in.user, &origin).await? {
        return devices::refused(
            &state,
            &signed_in,
            lang,
            StatusCode::FORBIDDEN,
            devices::REMOVE_NEEDS_MORE,
        )
        .await;
    }
    Ok(Redirect::to("/account/devices").into_response())
}
