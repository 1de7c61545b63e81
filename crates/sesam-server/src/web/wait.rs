//! The browser's side of a challenge: start it, show the code and wait (Server-Sent Events,
//! a JSON status to poll, or a plain Continue button), then finish the login or say why not.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use sesam_core::{
    AssuranceLevel, Challenge, ChallengeContext, ChallengeKind, ChallengeState, Factor, Platform,
    User, UserId,
};
use sesam_store::AuditEvent;
use tower_sessions::Session;

use crate::challenges;
use crate::i18n::Lang;
use crate::state::{AppState, ClientIp};
use crate::web::auth;
use crate::web::csrf::{self, CsrfOnly};
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{render, Chrome, MessagePage, WaitPage};

const CHALLENGE_KEY: &str = "login.challenge";
/// Where the finished login goes (a protocol request sets it; `/account` otherwise).
pub const RETURN_TO_KEY: &str = "login.return_to";
/// A level a service asked for, beyond the organisation's minimum.
pub const REQUIRED_LEVEL_KEY: &str = "login.required_level";
/// The name of the service asking, shown in the app.
pub const SERVICE_KEY: &str = "login.service";
/// A notice for the password page (e.g. after the challenge limit was reached).
pub const NOTICE_KEY: &str = "login.notice";
/// How long after its deadline an approved challenge may still finish the login.
const COMPLETE_GRACE_SECONDS: i64 = 300;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PendingChallenge {
    id: String,
    /// After a password: the app adds to a login that already happened.
    step_up: bool,
}

pub enum Start {
    Started,
    RateLimited,
    NoDevice,
}

/// Starts a challenge for `user` and ties it to this browser session.
pub async fn start_for(
    state: &AppState,
    session: &Session,
    user: &User,
    kind: ChallengeKind,
    headers: &HeaderMap,
    ip: &ClientIp,
) -> Result<Start, AppError> {
    let settings = state.store.load_settings().await?;
    let devices: Vec<_> = state
        .store
        .devices_of_user(&user.id)
        .await?
        .into_iter()
        .filter(|d| match kind {
            ChallengeKind::Code => d.device.is_passwordless_capable(&settings),
            // Approval after a password: any enrolled phone app that is not blocked.
            ChallengeKind::Approve => {
                matches!(d.device.platform, Platform::Ios | Platform::Android)
                    && d.device.status == sesam_core::DeviceStatus::Active
            }
        })
        .collect();
    if devices.is_empty() {
        return Ok(Start::NoDevice);
    }
    let now = state.now();
    let window = settings.challenge_limit_window_seconds;
    let ip_key = ip.text().unwrap_or_else(|| "unknown".into());
    let user_count = state
        .store
        .count_challenges_since(&user.id.0, now.plus_seconds(-window))
        .await?;
    let ip_allows = state
        .store
        .rate_limit_allows(
            "challenge-ip",
            &ip_key,
            now,
            window,
            i64::from(settings.challenge_limit_per_ip),
        )
        .await?;
    if user_count >= i64::from(settings.challenge_limit_per_user) || !ip_allows {
        state
            .store
            .append_audit(
                &AuditEvent::new("challenge.rate_limited")
                    .actor("system")
                    .subject(user.username.as_str())
                    .client_ip(ip.text())
                    .detail(format!("{user_count} challenges for the user in {window} s; address within limit: {ip_allows}")),
                now,
            )
            .await?;
        return Ok(Start::RateLimited);
    }
    let (browser, os) = crate::web::agent::summarise(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    let service = match session.get::<String>(SERVICE_KEY).await? {
        Some(s) => s,
        None if !settings.organisation_name.is_empty() => settings.organisation_name.clone(),
        None => "Sesam".to_owned(),
    };
    let context = ChallengeContext {
        service,
        browser,
        os,
        client_ip: ip.text(),
        location: None,
    };
    let started = challenges::start(
        state,
        user,
        kind,
        &devices,
        context,
        settings.challenge_lifetime_seconds,
    )
    .await?;
    session
        .insert(
            CHALLENGE_KEY,
            PendingChallenge {
                id: started.challenge.id,
                step_up: kind == ChallengeKind::Approve,
            },
        )
        .await?;
    Ok(Start::Started)
}

/// The level this login must reach: the organisation's minimum or what the service asked.
pub async fn required_level(
    state: &AppState,
    session: &Session,
) -> Result<AssuranceLevel, AppError> {
    let settings = state.store.load_settings().await?;
    let asked = match session.get::<String>(REQUIRED_LEVEL_KEY).await?.as_deref() {
        Some("substantial") => AssuranceLevel::Substantial,
        _ => AssuranceLevel::Low,
    };
    Ok(settings.required_level.max(asked))
}

/// The challenge of this session, with an overdue one marked expired.
async fn current(
    state: &AppState,
    session: &Session,
) -> Result<Option<(PendingChallenge, Challenge)>, AppError> {
    let Some(pending) = session.get::<PendingChallenge>(CHALLENGE_KEY).await? else {
        return Ok(None);
    };
    let Some(mut challenge) = state.store.get_challenge(&pending.id).await? else {
        session.remove::<PendingChallenge>(CHALLENGE_KEY).await?;
        return Ok(None);
    };
    let now = state.now();
    if challenge.state == ChallengeState::Pending && challenge.is_expired(now) {
        if state.store.expire_challenge(&challenge.id, now).await? {
            let user = state
                .store
                .get_user(&UserId(challenge.user_id.clone()))
                .await?;
            state
                .store
                .append_audit(
                    &AuditEvent::new("challenge.expired")
                        .actor("system")
                        .subject(user.username.as_str())
                        .detail(format!("challenge {}", challenge.id)),
                    now,
                )
                .await?;
        }
        challenge.state = ChallengeState::Expired;
    }
    Ok(Some((pending, challenge)))
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
    redirect: Option<&'static str>,
}

fn status_of(state: ChallengeState) -> Status {
    Status {
        status: state.as_str(),
        redirect: match state {
            ChallengeState::Pending => None,
            ChallengeState::Approved => Some("/login/complete"),
            _ => Some("/login/wait"),
        },
    }
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
) -> Result<Response, AppError> {
    let Some((pending, challenge)) = current(&state, &session).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let t = lang.catalog();
    let csrf = csrf::token(&session).await?;
    match challenge.state {
        ChallengeState::Pending => {
            let code = challenge.code.to_string();
            let page = WaitPage {
                chrome: Chrome::new(lang, "/login/wait"),
                csrf,
                title: t.get(if pending.step_up {
                    "wait.step_up_title"
                } else {
                    "wait.title"
                }),
                instruction: t.fill(
                    if pending.step_up {
                        "wait.step_up_instruction"
                    } else {
                        "wait.instruction"
                    },
                    "code",
                    &code,
                ),
                code,
                offer_password: !pending.step_up,
                expires_in: (challenge.expires_at.0 - state.now().0).max(0),
            };
            render(StatusCode::OK, &page)
        }
        ChallengeState::Approved => Ok(Redirect::to("/login/complete").into_response()),
        ended => {
            let key = match ended {
                ChallengeState::WrongCode => "wait.result.wrong_code",
                ChallengeState::Rejected => "wait.result.rejected",
                ChallengeState::Expired => "wait.result.expired",
                _ => "wait.result.cancelled",
            };
            let page = crate::web::pages::OutcomePage {
                chrome: Chrome::new(lang, "/login/wait"),
                csrf,
                title: t.get("wait.result.title"),
                body: t.get(key),
                offer_password: !pending.step_up,
            };
            render(StatusCode::OK, &page)
        }
    }
}

pub async fn status(State(state): State<AppState>, session: Session) -> Result<Response, AppError> {
    let s = match current(&state, &session).await? {
        Some((_, c)) => status_of(c.state),
        None => Status {
            status: "cancelled",
            redirect: Some("/login"),
        },
    };
    Ok(Json(s).into_response())
}

/// Server-Sent Events: a `status` event whenever the state changes, until it ends. Woken
/// by this node's announcements (which carry other nodes' via LISTEN/NOTIFY) and by a slow
/// timer, so a lost notification delays but never loses a login.
pub async fn events(State(state): State<AppState>, session: Session) -> Result<Response, AppError> {
    let Some((pending, _)) = current(&state, &session).await? else {
        return Ok((StatusCode::NOT_FOUND, "no challenge").into_response());
    };
    let rx = state.challenge_events.subscribe();
    let stream = status_stream(state, session, pending.id, rx);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn status_stream(
    state: AppState,
    session: Session,
    id: String,
    rx: tokio::sync::broadcast::Receiver<String>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    struct Watch {
        state: AppState,
        session: Session,
        id: String,
        rx: tokio::sync::broadcast::Receiver<String>,
        last: Option<&'static str>,
        done: bool,
    }
    let watch = Watch {
        state,
        session,
        id,
        rx,
        last: None,
        done: false,
    };
    stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        loop {
            if w.last.is_some() {
                // Wait for an announcement of this challenge, or the slow timer.
                let every = Duration::from_secs(w.state.config.challenge_reread_seconds);
                let _ = tokio::time::timeout(every, async {
                    loop {
                        match w.rx.recv().await {
                            Ok(changed) if changed == w.id => return,
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                        }
                    }
                })
                .await;
            }
            let current = match current(&w.state, &w.session).await {
                Ok(Some((_, c))) if c.id == w.id => c.state,
                Ok(_) => ChallengeState::Cancelled,
                Err(_) => continue,
            };
            let s = status_of(current);
            if w.last == Some(s.status) {
                continue;
            }
            w.last = Some(s.status);
            w.done = current != ChallengeState::Pending;
            let event = Event::default()
                .event("status")
                .json_data(&s)
                .unwrap_or_else(|_| Event::default().event("status").data("{}"));
            return Some((Ok(event), w));
        }
    })
}

/// Without JavaScript: "Continue" re-reads the state on the server.
pub async fn continue_without_js(
    session: Session,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    Ok(Redirect::to("/login/wait").into_response())
}

pub async fn cancel(
    State(state): State<AppState>,
    session: Session,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    if let Some(pending) = session.remove::<PendingChallenge>(CHALLENGE_KEY).await? {
        cancel_challenge(&state, &pending.id).await?;
    }
    Ok(Redirect::to("/login").into_response())
}

/// Cancels this session's challenge when the user turns to the password instead.
pub async fn abandon(state: &AppState, session: &Session) -> Result<(), AppError> {
    if let Some(pending) = session.get::<PendingChallenge>(CHALLENGE_KEY).await? {
        if !pending.step_up {
            session.remove::<PendingChallenge>(CHALLENGE_KEY).await?;
            cancel_challenge(state, &pending.id).await?;
        }
    }
    Ok(())
}

async fn cancel_challenge(state: &AppState, id: &str) -> Result<(), AppError> {
    let now = state.now();
    if state.store.cancel_challenge(id, now).await? {
        if let Some(c) = state.store.get_challenge(id).await? {
            let user = state.store.get_user(&UserId(c.user_id)).await?;
            state
                .store
                .append_audit(
                    &AuditEvent::new("challenge.cancelled")
                        .actor(user.username.as_str())
                        .subject(user.username.as_str())
                        .detail(format!("challenge {id}: cancelled in the browser")),
                    now,
                )
                .await?;
        }
        challenges::announce(state, id).await;
    }
    Ok(())
}

/// Starts a new challenge for the same username after one ended.
pub async fn retry(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    headers: HeaderMap,
    ip: ClientIp,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let Some(pending) = session.remove::<PendingChallenge>(CHALLENGE_KEY).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let Some(old) = state.store.get_challenge(&pending.id).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let user = state.store.get_user(&UserId(old.user_id)).await?;
    let kind = if pending.step_up {
        ChallengeKind::Approve
    } else {
        ChallengeKind::Code
    };
    match start_for(&state, &session, &user, kind, &headers, &ip).await? {
        Start::Started => Ok(Redirect::to("/login/wait").into_response()),
        Start::RateLimited if !pending.step_up => {
            session.insert(NOTICE_KEY, "rate_limited").await?;
            Ok(Redirect::to("/login/password").into_response())
        }
        _ => step_up_impossible(lang),
    }
}

/// The page for a login that needs the app when the user cannot use it now.
pub fn step_up_impossible(lang: Lang) -> Result<Response, AppError> {
    let t = lang.catalog();
    let page = MessagePage {
        chrome: Chrome::new(lang, "/login"),
        title: t.get("stepup.impossible_title").to_owned(),
        body: t.get("stepup.impossible_body").to_owned(),
        alert: true,
        link_href: "/login/switch",
        link_label: t.get("login.back").to_owned(),
    };
    render(StatusCode::FORBIDDEN, &page)
}

/// Finishes the login after the app approved: a new login (passwordless) or one more factor
/// on the login the password began (step-up).
pub async fn complete(
    State(state): State<AppState>,
    session: Session,
    ip: ClientIp,
) -> Result<Response, AppError> {
    let Some((pending, challenge)) = current(&state, &session).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let now = state.now();
    if challenge.state != ChallengeState::Approved
        || now.0 > challenge.expires_at.0 + COMPLETE_GRACE_SECONDS
    {
        return Ok(Redirect::to("/login/wait").into_response());
    }
    let user = state
        .store
        .get_user(&UserId(challenge.user_id.clone()))
        .await?;
    if !user.is_active() {
        session.flush().await?;
        return Ok(Redirect::to("/login").into_response());
    }
    session.remove::<PendingChallenge>(CHALLENGE_KEY).await?;
    let settings = state.store.load_settings().await?;
    let event = if pending.step_up {
        match auth::current(&session).await? {
            Some(current) if current.user_id == user.id.0 => {
                auth::add_factor(&session, Factor::App, now).await?;
                "login.step_up.succeeded"
            }
            _ => return Ok(Redirect::to("/login").into_response()),
        }
    } else {
        auth::sign_in(
            &session,
            &user.id,
            Factor::App,
            now,
            settings.session_idle_seconds,
        )
        .await?;
        "login.passwordless.succeeded"
    };
    session
        .remove::<String>(crate::web::login::PENDING_KEY)
        .await?;
    state
        .store
        .append_audit(
            &AuditEvent::new(event)
                .actor(user.username.as_str())
                .subject(user.username.as_str())
                .client_ip(ip.text())
                .detail(format!("challenge {}", challenge.id)),
            now,
        )
        .await?;
    continue_to_service(&session).await
}

/// Where a finished login goes: the page that asked for it (a local path only), else the
/// account page. The stored target is used once.
pub async fn continue_to_service(session: &Session) -> Result<Response, AppError> {
    let next = session
        .remove::<String>(RETURN_TO_KEY)
        .await?
        .filter(|p| crate::web::ops::local_path(Some(p)) == p)
        .unwrap_or_else(|| "/account".to_owned());
    Ok(Redirect::to(&next).into_response())
}

/// For a signed-in user whose session has less than a request needs: approve in the app.
pub async fn step_up(
    State(state): State<AppState>,
    signed_in: auth::SignedIn,
    lang: Lang,
    headers: HeaderMap,
    ip: ClientIp,
) -> Result<Response, AppError> {
    if signed_in.auth.level() >= Some(AssuranceLevel::Substantial) {
        return continue_to_service(&signed_in.session).await;
    }
    match start_for(
        &state,
        &signed_in.session,
        &signed_in.user,
        ChallengeKind::Approve,
        &headers,
        &ip,
    )
    .await?
    {
        Start::Started => Ok(Redirect::to("/login/wait").into_response()),
        _ => step_up_impossible(lang),
    }
}
