//! The signed-in user's own pages: the account overview, changing the password, logging out.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_core::flow::Next;
use sesam_core::{AssuranceLevel, UnixTime};
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::service::account::{self as service, PasswordChange, PasswordChanged};
use crate::service::Origin;
use crate::state::AppState;
use crate::web::auth::{self, SignedIn};
use crate::web::csrf;
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{format_time, render, AccountPage, ChangePasswordPage, Chrome, LogoutPage};

#[derive(Deserialize)]
pub struct AccountQuery {
    changed: Option<String>,
}

pub async fn show_account(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    Query(q): Query<AccountQuery>,
) -> Result<Response, AppError> {
    let SignedIn {
        user,
        auth,
        session,
        ..
    } = signed_in;
    let level = auth.level().unwrap_or(AssuranceLevel::Low);
    let settings = state.store.settings().await?;
    let page = AccountPage {
        chrome: Chrome::new(lang, "/account"),
        csrf: csrf::token(&session).await?,
        display_name: user.display_name.clone(),
        username: user.username.to_string(),
        level_code: level.as_str(),
        level_key: match level {
            AssuranceLevel::Low => "account.level.low",
            AssuranceLevel::Substantial => "account.level.substantial",
            AssuranceLevel::High => "account.level.high",
        },
        signed_in_at: format_time(UnixTime(auth.auth_time), &settings.time_zone),
        password_changed: q.changed.is_some(),
        is_admin: user.is_admin,
    };
    render(StatusCode::OK, &page)
}

pub async fn show_change_password(signed_in: SignedIn, lang: Lang) -> Result<Response, AppError> {
    let page = ChangePasswordPage {
        chrome: Chrome::new(lang, "/account/password"),
        csrf: csrf::token(&signed_in.session).await?,
        username: signed_in.user.username.to_string(),
        must_change: signed_in.user.must_change_password,
        error_key: None,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct ChangePasswordForm {
    csrf: Option<String>,
    current: String,
    new: String,
    repeat: String,
}

pub async fn submit_change_password(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<ChangePasswordForm>,
) -> Result<Response, AppError> {
    let SignedIn {
        user,
        mut flow,
        session,
        ..
    } = signed_in;
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let change = PasswordChange {
        current: form.current,
        new: form.new,
        repeat: form.repeat,
    };
    match service::change_password(&state, &mut flow, &user, change, &origin).await? {
        PasswordChanged::Refused(key) => {
            let page = ChangePasswordPage {
                chrome: Chrome::new(lang, "/account/password"),
                csrf: csrf::token(&session).await?,
                username: user.username.to_string(),
                must_change: user.must_change_password,
                error_key: Some(key),
            };
            render(StatusCode::BAD_REQUEST, &page)
        }
        PasswordChanged::Done { next, rotate } => {
            auth::save(&session, &flow, rotate).await?;
            Ok(match next {
                // No service waits: say it worked.
                Next::Continue(path) if path == "/account" => {
                    Redirect::to("/account?changed=1").into_response()
                }
                next => auth::redirect(&next, &flow),
            })
        }
    }
}

pub async fn show_logout(session: Session, lang: Lang) -> Result<Response, AppError> {
    if auth::current(&session).await?.is_none() {
        return Ok(Redirect::to("/login").into_response());
    }
    let page = LogoutPage {
        chrome: Chrome::new(lang, "/logout"),
        csrf: csrf::token(&session).await?,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

pub async fn submit_logout(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<LogoutForm>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let flow = auth::load(&session).await?;
    if let Some(login) = &flow.login {
        service::end_login(&state, login, &origin, "logout", "").await?;
    }
    let sid = flow.login.map(|l| l.sid).unwrap_or_default();
    session.flush().await?;
    // The SAML service providers this login was used at are told too (front channel).
    if let Some(response) = crate::web::saml::start_idp_logout(&state, &session, &sid, lang).await?
    {
        return Ok(response);
    }
    crate::web::pages::logged_out_page(lang)
}
