//! The username-first login: username (remembered on request), then the branch the core
//! chooses, then the password with its throttle and temporary lock.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_core::{
    choose_login_branch, AssuranceLevel, ChallengeKind, Factor, LoginBranch, Username,
};
use sesam_store::AuditEvent;
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::state::{AppState, ClientIp};
use crate::web::auth;
use crate::web::cookies;
use crate::web::csrf;
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{format_time, render, Chrome, MessagePage, PasswordPage, UsernamePage};
use crate::web::wait;

pub const REMEMBER_COOKIE: &str = "sesam_username";
const REMEMBER_SECONDS: i64 = 400 * 24 * 60 * 60;
pub const PENDING_KEY: &str = "login.username";
/// Rate-limit bucket: failed passwords per client address.
const IP_FAILURES: &str = "password-failures-ip";

fn remembered(headers: &HeaderMap) -> Option<String> {
    cookies::get(headers, REMEMBER_COOKIE)
        .and_then(|name| Username::parse(&name).ok())
        .map(|u| u.as_str().to_owned())
}

pub async fn show_username(
    session: Session,
    lang: Lang,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if auth::current(&session).await?.is_some() {
        return Ok(Redirect::to("/account").into_response());
    }
    let hint = session
        .get::<String>(crate::web::protocol::LOGIN_HINT_KEY)
        .await?;
    let page = UsernamePage {
        chrome: Chrome::new(lang, "/login"),
        csrf: csrf::token(&session).await?,
        // A service's login_hint names the user to log in; it wins over a remembered name.
        remembered: if hint.is_some() {
            None
        } else {
            remembered(&headers)
        },
        typed: hint.unwrap_or_default(),
        error: None,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct UsernameForm {
    csrf: Option<String>,
    username: String,
    remember: Option<String>,
}

pub async fn submit_username(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    headers: HeaderMap,
    ip: ClientIp,
    StrictForm(form): StrictForm<UsernameForm>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let username = match Username::parse(&form.username) {
        Ok(name) => name,
        Err(_) => {
            let page = UsernamePage {
                chrome: Chrome::new(lang, "/login"),
                csrf: csrf::token(&session).await?,
                remembered: None,
                typed: form.username.chars().take(128).collect(),
                error: Some(lang.catalog().get("login.username_invalid")),
            };
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let remember = form.remember.as_deref() == Some("on");
    let cookie = if remember {
        cookies::set(
            REMEMBER_COOKIE,
            username.as_str(),
            REMEMBER_SECONDS,
            state.config.cookie_secure,
        )
    } else {
        cookies::set(REMEMBER_COOKIE, "", 0, state.config.cookie_secure)
    };

    let settings = state.store.load_settings().await?;
    let user = state.store.find_user_by_username(&username).await?;
    // The device lookup runs for unknown names too, so both take the same path and time.
    let user_id = user
        .as_ref()
        .map_or_else(|| sesam_core::UserId("-".into()), |u| u.id.clone());
    let devices: Vec<sesam_core::Device> = state
        .store
        .devices_of_user(&user_id)
        .await?
        .into_iter()
        .map(|d| d.device)
        .collect();
    let branch = choose_login_branch(&settings, user.as_ref(), &devices);
    session.insert(PENDING_KEY, username.as_str()).await?;
    session.remove::<String>(wait::NOTICE_KEY).await?;
    let next = match (branch, user) {
        (LoginBranch::Passwordless, Some(user)) => {
            match wait::start_for(&state, &session, &user, ChallengeKind::Code, &headers, &ip)
                .await?
            {
                wait::Start::Started => "/login/wait",
                wait::Start::RateLimited => {
                    session.insert(wait::NOTICE_KEY, "rate_limited").await?;
                    "/login/password"
                }
                wait::Start::NoDevice => "/login/password",
            }
        }
        _ => "/login/password",
    };
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(next)).into_response())
}

pub async fn switch_user(
    State(state): State<AppState>,
    session: Session,
) -> Result<Response, AppError> {
    session.remove::<String>(PENDING_KEY).await?;
    let clear = cookies::set(REMEMBER_COOKIE, "", 0, state.config.cookie_secure);
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response())
}

pub async fn show_password(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
) -> Result<Response, AppError> {
    let Some(username) = session.get::<String>(PENDING_KEY).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    // "Log in with password instead": the app request shown before is no longer wanted.
    wait::abandon(&state, &session).await?;
    let notice = match session.get::<String>(wait::NOTICE_KEY).await?.as_deref() {
        Some("rate_limited") => Some("login.notice.rate_limited"),
        _ => None,
    };
    let page = PasswordPage {
        chrome: Chrome::new(lang, "/login/password"),
        csrf: csrf::token(&session).await?,
        username,
        failed: false,
        notice,
    };
    render(StatusCode::OK, &page)
}

#[derive(Deserialize)]
pub struct PasswordForm {
    csrf: Option<String>,
    password: String,
}

pub async fn submit_password(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    headers: HeaderMap,
    ip: ClientIp,
    StrictForm(form): StrictForm<PasswordForm>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let Some(typed) = session.get::<String>(PENDING_KEY).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let username =
        Username::parse(&typed).map_err(|_| AppError::BadRequest("bad pending username"))?;
    let key = username.key();
    let now = state.now();
    let settings = state.store.load_settings().await?;
    let t = lang.catalog();
    let user = state.store.find_user_by_username(&username).await?;
    // Audit under the stored spelling when the user exists, so one user's events group.
    let subject = user
        .as_ref()
        .map_or(username.as_str(), |u| u.username.as_str())
        .to_owned();
    let audit = |event: &str| {
        AuditEvent::new(event)
            .actor(subject.as_str())
            .subject(subject.as_str())
            .client_ip(ip.text())
    };

    let locked_page = |until: sesam_core::UnixTime| MessagePage {
        chrome: Chrome::new(lang, "/login"),
        title: t.get("login.locked_title").to_owned(),
        body: t.fill("login.locked_body", "until", &format_time(until)),
        alert: true,
        link_href: "/login/switch",
        link_label: t.get("login.back").to_owned(),
    };

    if let Some(until) = state.store.throttle_state(&key, now).await?.locked_until {
        state
            .store
            .append_audit(
                &audit("login.refused.locked").detail(format!("locked until {}", until.0)),
                now,
            )
            .await?;
        return render(StatusCode::TOO_MANY_REQUESTS, &locked_page(until));
    }

    // Many wrong passwords from one address (for any users): that address waits.
    let ip_key = ip.text().unwrap_or_else(|| "unknown".into());
    let window = settings.lockout_window_seconds;
    let ip_failures = state
        .store
        .rate_limit_hits(IP_FAILURES, &ip_key, now, window)
        .await?;
    if ip_failures >= i64::from(settings.password_failures_per_ip) {
        state
            .store
            .append_audit(
                &audit("login.refused.address").detail(format!(
                    "{ip_failures} failed passwords from this address within {window} s"
                )),
                now,
            )
            .await?;
        return render(
            StatusCode::TOO_MANY_REQUESTS,
            &locked_page(now.plus_seconds(window)),
        );
    }

    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let matches = state
        .passwords
        .verify(form.password, stored)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?;

    let user = match (matches, user) {
        (true, Some(user)) => user,
        (_, user) => {
            let why = if user.is_some() {
                "wrong password"
            } else {
                "unknown user"
            };
            state
                .store
                .append_audit(&audit("login.password.failed").detail(why), now)
                .await?;
            state
                .store
                .rate_limit_allows(IP_FAILURES, &ip_key, now, window, i64::MAX)
                .await?;
            if let Some(until) = state
                .store
                .record_login_failure(&key, now, &settings)
                .await?
            {
                state
                    .store
                    .append_audit(
                        &audit("login.locked").detail(format!(
                            "{} failures within {} s; locked until {}",
                            settings.lockout_max_failures, settings.lockout_window_seconds, until.0
                        )),
                        now,
                    )
                    .await?;
                return render(StatusCode::TOO_MANY_REQUESTS, &locked_page(until));
            }
            let page = PasswordPage {
                chrome: Chrome::new(lang, "/login/password"),
                csrf: csrf::token(&session).await?,
                username: username.as_str().to_owned(),
                failed: true,
                notice: None,
            };
            return render(StatusCode::UNAUTHORIZED, &page);
        }
    };

    if !user.is_active() {
        state
            .store
            .append_audit(
                &audit("login.refused.inactive").detail(user.status.as_str()),
                now,
            )
            .await?;
        let page = MessagePage {
            chrome: Chrome::new(lang, "/login"),
            title: t.get("login.inactive_title").to_owned(),
            body: t.get("login.inactive_body").to_owned(),
            alert: true,
            link_href: "/login/switch",
            link_label: t.get("login.back").to_owned(),
        };
        return render(StatusCode::FORBIDDEN, &page);
    }

    state.store.clear_login_failures(&key).await?;
    if user.passwordless_locked {
        // DESIGN: a password login clears the lock a fraud report put on passwordless.
        state
            .store
            .set_passwordless_locked(&user.id, false, now)
            .await?;
        state
            .store
            .append_audit(
                &audit("passwordless.unlocked").detail("cleared by a password login"),
                now,
            )
            .await?;
    }
    session.remove::<String>(PENDING_KEY).await?;
    auth::sign_in(
        &session,
        &user.id,
        Factor::Password,
        now,
        settings.session_idle_seconds,
    )
    .await?;
    state
        .store
        .append_audit(&audit("login.password.succeeded"), now)
        .await?;
    session.remove::<String>(wait::NOTICE_KEY).await?;
    tracing::info!(user = %user.username, "password login");
    if user.must_change_password {
        return Ok(Redirect::to("/account/password").into_response());
    }
    if wait::required_level(&state, &session).await? > AssuranceLevel::Low {
        // A password gives Low: the app must approve before the login counts as more.
        return match wait::start_for(
            &state,
            &session,
            &user,
            ChallengeKind::Approve,
            &headers,
            &ip,
        )
        .await?
        {
            wait::Start::Started => Ok(Redirect::to("/login/wait").into_response()),
            _ => wait::step_up_impossible(lang),
        };
    }
    wait::continue_to_service(&session).await
}
