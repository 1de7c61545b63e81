//! The username-first login: username (remembered on request), then the branch the core
//! chooses, then the password with its throttle and temporary lock.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_core::flow::Notice;
use sesam_core::Username;
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::service::login::{self as service, PasswordOutcome};
use crate::state::{AppState, ClientIp};
use crate::web::auth;
use crate::web::cookies;
use crate::web::csrf;
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{format_time, render, Chrome, MessagePage, PasswordPage, UsernamePage};

pub const REMEMBER_COOKIE: &str = "sesam_username";
const REMEMBER_SECONDS: i64 = 400 * 24 * 60 * 60;

fn remembered(headers: &HeaderMap) -> Option<String> {
    cookies::get(headers, REMEMBER_COOKIE)
        .and_then(|name| Username::parse(&name).ok())
        .map(|u| u.as_str().to_owned())
}

pub async fn show_username(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let flow = auth::load(&session).await?;
    if flow.login.is_some() {
        return Ok(Redirect::to("/account").into_response());
    }
    // No session row for a visitor who has typed nothing: the token lives in a cookie.
    let (token, new_cookie) =
        csrf::login_form_token(&session, &headers, state.config.cookie_secure).await?;
    let page = UsernamePage {
        chrome: Chrome::new(lang, "/login"),
        csrf: token,
        // A service's login_hint names the user to log in; it wins over a remembered name.
        remembered: if flow.hint.is_some() {
            None
        } else {
            remembered(&headers)
        },
        typed: flow.hint.unwrap_or_default(),
        error: None,
    };
    let page = render(StatusCode::OK, &page)?;
    Ok(match new_cookie {
        Some(cookie) => ([(header::SET_COOKIE, cookie)], page).into_response(),
        None => page,
    })
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
    csrf::verify_login_form(&session, &headers, form.csrf.as_deref()).await?;
    let Ok(username) = Username::parse(&form.username) else {
        let (token, _) =
            csrf::login_form_token(&session, &headers, state.config.cookie_secure).await?;
        let page = UsernamePage {
            chrome: Chrome::new(lang, "/login"),
            csrf: token,
            remembered: None,
            typed: form.username.chars().take(128).collect(),
            error: Some(lang.catalog().get("login.username_invalid")),
        };
        return render(StatusCode::BAD_REQUEST, &page);
    };
    let cookie = if form.remember.as_deref() == Some("on") {
        cookies::set(
            REMEMBER_COOKIE,
            username.as_str(),
            REMEMBER_SECONDS,
            state.config.cookie_secure,
        )
    } else {
        cookies::set(REMEMBER_COOKIE, "", 0, state.config.cookie_secure)
    };
    let mut flow = auth::load(&session).await?;
    let moved =
        service::submit_username(&state, &mut flow, &username, &auth::origin(&headers, &ip))
            .await?;
    // The session is written now anyway: it gets a token of its own for the forms that
    // follow (not the cookie's, which a cookie planted by a neighbouring site could fix).
    csrf::token(&session).await?;
    auth::save(&session, &flow, moved.rotate).await?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        auth::redirect(&moved.next, &flow),
    )
        .into_response())
}

pub async fn switch_user(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ip: ClientIp,
) -> Result<Response, AppError> {
    let mut flow = auth::load(&session).await?;
    if flow.login.is_none() {
        let rotate =
            service::sign_out_keeping_request(&state, &mut flow, &auth::origin(&headers, &ip))
                .await?;
        flow.hint = None;
        auth::save(&session, &flow, rotate).await?;
    }
    let clear = cookies::set(REMEMBER_COOKIE, "", 0, state.config.cookie_secure);
    Ok(([(header::SET_COOKIE, clear)], Redirect::to("/login")).into_response())
}

pub async fn show_password(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    headers: HeaderMap,
    ip: ClientIp,
) -> Result<Response, AppError> {
    let mut flow = auth::load(&session).await?;
    let before = flow.version;
    let Some(username) =
        service::show_password(&state, &mut flow, &auth::origin(&headers, &ip)).await?
    else {
        return Ok(Redirect::to("/login").into_response());
    };
    auth::save_if_changed(&session, before, &flow, false).await?;
    let page = PasswordPage {
        chrome: Chrome::new(lang, "/login/password"),
        csrf: csrf::token(&session).await?,
        username,
        failed: false,
        notice: notice_key(flow.notice),
        links_upstream: flow.upstream_link.is_some(),
    };
    render(StatusCode::OK, &page)
}

/// Why the password is asked instead of the app, when the flow knows a reason to say.
fn notice_key(notice: Option<Notice>) -> Option<&'static str> {
    match notice? {
        Notice::ChallengeRateLimited => Some("login.notice.rate_limited"),
        Notice::PasswordlessPaused => Some("login.notice.passwordless_paused"),
        Notice::DetailsWrong => Some("login.notice.details_wrong"),
    }
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
    let mut flow = auth::load(&session).await?;
    let before = flow.version;
    let outcome = service::submit_password(
        &state,
        &mut flow,
        form.password,
        &auth::origin(&headers, &ip),
    )
    .await?;
    let t = lang.catalog();
    let message = |key: &str, body: String| MessagePage {
        chrome: Chrome::new(lang, "/login"),
        title: t.get(&format!("login.{key}_title")).to_owned(),
        body,
        alert: true,
        link_href: "/login/switch",
        link_label: t.get("login.back").to_owned(),
    };
    match outcome {
        PasswordOutcome::Moved(moved) => {
            auth::save(&session, &flow, moved.rotate).await?;
            Ok(auth::redirect(&moved.next, &flow))
        }
        PasswordOutcome::NoUsername => Ok(Redirect::to("/login").into_response()),
        PasswordOutcome::Failed { username } => {
            // PSD2 mode: a two-factor login goes on to the code page as if the password
            // were right (the attempt is counted and audited all the same).
            if let Some(next) = crate::service::totp::hide_password_failure(
                &state,
                &mut flow,
                &auth::origin(&headers, &ip),
            )
            .await?
            {
                auth::save(&session, &flow, false).await?;
                return Ok(auth::redirect(&next, &flow));
            }
            auth::save_if_changed(&session, before, &flow, false).await?;
            let page = PasswordPage {
                chrome: Chrome::new(lang, "/login/password"),
                csrf: csrf::token(&session).await?,
                username,
                failed: true,
                notice: notice_key(flow.notice),
                links_upstream: flow.upstream_link.is_some(),
            };
            render(StatusCode::UNAUTHORIZED, &page)
        }
        PasswordOutcome::Locked(until) => {
            let zone = state.store.settings().await?.time_zone;
            render(
                StatusCode::TOO_MANY_REQUESTS,
                &message(
                    "locked",
                    t.fill("login.locked_body", "until", &format_time(until, &zone)),
                ),
            )
        }
        PasswordOutcome::Inactive => render(
            StatusCode::FORBIDDEN,
            &message("inactive", t.get("login.inactive_body").to_owned()),
        ),
        PasswordOutcome::DirectoryUnavailable => {
            auth::save_if_changed(&session, before, &flow, false).await?;
            let page = MessagePage {
                chrome: Chrome::new(lang, "/login"),
                title: t.get("login.directory_unavailable_title").to_owned(),
                body: t.get("login.directory_unavailable_body").to_owned(),
                alert: true,
                link_href: "/login/password",
                link_label: t.get("login.try_again").to_owned(),
            };
            let mut response = render(StatusCode::SERVICE_UNAVAILABLE, &page)?;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
            Ok(response)
        }
    }
}
