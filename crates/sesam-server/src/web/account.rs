//! The signed-in user's own pages: the account overview, changing the password, logging out.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_core::{AssuranceLevel, UnixTime};
use sesam_store::AuditEvent;
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::password::MIN_PASSWORD_CHARS;
use crate::state::{AppState, ClientIp};
use crate::web::auth::{self, SignedIn};
use crate::web::csrf;
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{
    format_time, render, AccountPage, ChangePasswordPage, Chrome, LogoutPage, MessagePage,
};

#[derive(Deserialize)]
pub struct AccountQuery {
    changed: Option<String>,
}

pub async fn show_account(
    signed_in: SignedIn,
    lang: Lang,
    Query(q): Query<AccountQuery>,
) -> Result<Response, AppError> {
    let SignedIn {
        user,
        auth,
        session,
    } = signed_in;
    if user.must_change_password {
        return Ok(Redirect::to("/account/password").into_response());
    }
    let level = auth.level().unwrap_or(AssuranceLevel::Low);
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
        signed_in_at: format_time(UnixTime(auth.auth_time)),
        password_changed: q.changed.is_some(),
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
    ip: ClientIp,
    StrictForm(form): StrictForm<ChangePasswordForm>,
) -> Result<Response, AppError> {
    let SignedIn { user, session, .. } = signed_in;
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let problem = if form.new != form.repeat {
        Some("password.mismatch")
    } else if form.new.chars().count() < MIN_PASSWORD_CHARS {
        Some("password.too_short")
    } else if form.new.to_lowercase().contains(&user.username.key()) {
        Some("password.same_as_username")
    } else if form.new == form.current {
        Some("password.unchanged")
    } else {
        let ok = state
            .passwords
            .verify(form.current, user.password_hash.clone())
            .await
            .map_err(|e| AppError::Internal(e.to_string()))?;
        (!ok).then_some("password.wrong_current")
    };
    if let Some(key) = problem {
        let page = ChangePasswordPage {
            chrome: Chrome::new(lang, "/account/password"),
            csrf: csrf::token(&session).await?,
            username: user.username.to_string(),
            must_change: user.must_change_password,
            error_key: Some(key),
        };
        return render(StatusCode::BAD_REQUEST, &page);
    }
    let hash = state
        .passwords
        .hash(form.new)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;
    let now = state.now();
    state
        .store
        .set_password(&user.id, &hash, false, now)
        .await?;
    session.cycle_id().await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("password.changed")
                .actor(user.username.as_str())
                .subject(user.username.as_str())
                .client_ip(ip.text()),
            now,
        )
        .await?;
    Ok(Redirect::to("/account?changed=1").into_response())
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
    ip: ClientIp,
    StrictForm(form): StrictForm<LogoutForm>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    if let Some(current) = auth::current(&session).await? {
        // Tokens issued to services in this login end with it.
        if !current.sid.is_empty() {
            state
                .store
                .revoke_oidc_session(&current.sid, state.now())
                .await?;
        }
        let username = match state
            .store
            .get_user(&sesam_core::UserId(current.user_id.clone()))
            .await
        {
            Ok(u) => u.username.to_string(),
            Err(_) => current.user_id.clone(),
        };
        state
            .store
            .append_audit(
                &AuditEvent::new("logout")
                    .actor(&username)
                    .subject(&username)
                    .client_ip(ip.text()),
                state.now(),
            )
            .await?;
    }
    let sid = auth::current(&session)
        .await?
        .map(|a| a.sid)
        .unwrap_or_default();
    session.flush().await?;
    // The SAML service providers this login was used at are told too (front channel).
    if let Some(response) = crate::web::saml::start_idp_logout(&state, &session, &sid, lang).await?
    {
        return Ok(response);
    }
    logged_out_page(lang)
}

/// "You are logged out", after `/logout` and after a service's `end_session`.
pub fn logged_out_page(lang: Lang) -> Result<Response, AppError> {
    let t = lang.catalog();
    let page = MessagePage {
        chrome: Chrome::new(lang, "/login"),
        title: t.get("logout.done_title").to_owned(),
        body: t.get("logout.done_body").to_owned(),
        alert: false,
        link_href: "/login",
        link_label: t.get("login.title").to_owned(),
    };
    render(StatusCode::OK, &page)
}
