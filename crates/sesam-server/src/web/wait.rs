//! The browser's side of a challenge: start it, show the code and wait (Server-Sent Events,
//! a JSON status to poll, or a plain Continue button), then finish the login or say why not.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use futures_util::stream::{self, Stream};
use serde::Serialize;
use sesam_core::flow::ChallengePurpose;
use sesam_core::{Challenge, ChallengeState, LoginFlow, SecondFactor};
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::service::login as service;
use crate::service::login::Completion;
use crate::service::Origin;
use crate::state::{AppState, ClientIp};
use crate::web::auth;
use crate::web::csrf::{self, CsrfOnly};
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{render, Chrome, NeedsAppPage, WaitPage};

#[derive(serde::Deserialize)]
pub struct ChooseForm {
    csrf: Option<String>,
    factor: String,
}

/// "Other ways to log in": the code display instead of the app's step-up, or back. The
/// browser remembers the choice for its next step-up.
pub async fn choose(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<ChooseForm>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let factor = SecondFactor::parse(&form.factor)
        .ok_or(AppError::BadRequest("factor must be app, totp or passkey"))?;
    let mut flow = auth::load(&session).await?;
    let before = flow.version;
    match service::choose_second_factor(&state, &mut flow, factor, &origin).await? {
        Some(next) => {
            auth::save(&session, &flow, false).await?;
            let cookie = crate::web::cookies::set(
                auth::FACTOR_COOKIE,
                factor.as_str(),
                FACTOR_COOKIE_SECONDS,
                state.config.cookie_secure,
            );
            Ok((
                [(axum::http::header::SET_COOKIE, cookie)],
                auth::redirect(&next, &flow),
            )
                .into_response())
        }
        None => {
            auth::save_if_changed(&session, before, &flow, false).await?;
            let t = lang.catalog();
            let page = crate::web::pages::MessagePage {
                chrome: Chrome::new(lang, "/login"),
                title: t.get("choose.not_open_title").to_owned(),
                body: t.get("choose.not_open").to_owned(),
                alert: true,
                link_href: "/login",
                link_label: t.get("login.back").to_owned(),
            };
            render(StatusCode::CONFLICT, &page)
        }
    }
}

/// How long a browser remembers the second factor it chose.
const FACTOR_COOKIE_SECONDS: i64 = 400 * 24 * 60 * 60;

/// The challenge of this session's flow, with an overdue one marked expired.
async fn current(
    state: &AppState,
    session: &Session,
) -> Result<Option<(LoginFlow, ChallengePurpose, Challenge)>, AppError> {
    let flow = auth::load(session).await?;
    Ok(service::current_challenge(state, &flow)
        .await?
        .map(|(purpose, challenge)| (flow, purpose, challenge)))
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
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some((mut flow, purpose, challenge)) = current(&state, &session).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let step_up = purpose == ChallengePurpose::StepUp;
    let before = flow.version;
    let other_factor = service::other_second_factor(&state, &mut flow)
        .await?
        .map(SecondFactor::as_str);
    auth::save_if_changed(&session, before, &flow, false).await?;
    let t = lang.catalog();
    let csrf = csrf::token(&session).await?;
    match challenge.state {
        ChallengeState::Pending => {
            let code = challenge.code.to_string();
            // A login names its user in the flow; a step-up's user is the signed-in one.
            let username = match flow.username().filter(|u| !u.is_empty()) {
                Some(u) => u.to_owned(),
                None => state
                    .store
                    .get_user(&sesam_core::UserId(challenge.user_id.clone()))
                    .await?
                    .username
                    .to_string(),
            };
            let who = t
                .get("wait.who")
                .replace("{user}", &username)
                .replace("{service}", &challenge.context.service);
            // The QR code stands in for the number in a passwordless login only; a step-up
            // is approved by typing the number.
            let (payload, qr_svg) = if step_up {
                (String::new(), String::new())
            } else {
                let payload = crate::service::scan::qr_payload(&state, &challenge).await?;
                let svg = qrcode::QrCode::new(payload.as_bytes())
                    .map(|qr| {
                        qr.render::<qrcode::render::svg::Color>()
                            .min_dimensions(200, 200)
                            .build()
                    })
                    .map_err(|e| AppError::Internal(format!("qr: {e}")))?;
                (payload, svg)
            };
            let user_agent = headers
                .get(axum::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let page = WaitPage {
                qr_svg,
                qr_payload: payload,
                app_link: crate::web::applinks::open_link(&state.config.public_url, &challenge.id),
                on_phone: crate::web::agent::is_phone(user_agent),
                chrome: Chrome::new(lang, "/login/wait"),
                csrf,
                title: t.get(if step_up {
                    "wait.step_up_title"
                } else {
                    "wait.title"
                }),
                instruction: t.fill(
                    if step_up {
                        "wait.step_up_instruction"
                    } else {
                        "wait.instruction"
                    },
                    "code",
                    &code,
                ),
                code,
                offer_password: !step_up,
                expires_in: (challenge.expires_at.0 - state.now().0).max(0),
                other_factor,
                who,
            };
            render(StatusCode::OK, &page)
        }
        ChallengeState::Approved => Ok(Redirect::to("/login/complete").into_response()),
        ended => {
            // "This was not me" in the app: not a plain deny; passwordless is paused now.
            let fraud = ended == ChallengeState::Rejected && challenge.fraud_reported;
            let key = match ended {
                _ if fraud => "wait.result.fraud",
                ChallengeState::WrongCode => "wait.result.wrong_code",
                ChallengeState::Rejected => "wait.result.rejected",
                ChallengeState::Expired => "wait.result.expired",
                _ => "wait.result.cancelled",
            };
            let page = crate::web::pages::OutcomePage {
                chrome: Chrome::new(lang, "/login/wait"),
                csrf,
                title: t.get(if fraud {
                    "wait.result.fraud_title"
                } else {
                    "wait.result.title"
                }),
                body: t.get(key),
                offer_retry: !fraud,
                offer_password: !step_up && !fraud,
            };
            render(StatusCode::OK, &page)
        }
    }
}

pub async fn status(State(state): State<AppState>, session: Session) -> Result<Response, AppError> {
    let s = match current(&state, &session).await? {
        Some((_, _, c)) => status_of(c.state),
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
    let Some((_, _, challenge)) = current(&state, &session).await? else {
        return Ok((StatusCode::NOT_FOUND, "no challenge").into_response());
    };
    let key = session.id().map(|id| id.to_string()).unwrap_or_default();
    let Some(slot) = crate::web::streams::open(&state, key) else {
        // The page falls back to polling when its stream is refused.
        return Ok((StatusCode::TOO_MANY_REQUESTS, "too many open event streams").into_response());
    };
    let rx = state.challenge_events.subscribe();
    let stream = status_stream(state, session, challenge.id, rx);
    Ok(Sse::new(crate::web::streams::bounded(slot, stream))
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
                Ok(Some((_, _, c))) if c.id == w.id => c.state,
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
    headers: HeaderMap,
    ip: ClientIp,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let mut flow = auth::load(&session).await?;
    let next = service::cancel(&state, &mut flow, &auth::origin(&headers, &ip)).await?;
    auth::save(&session, &flow, false).await?;
    Ok(auth::redirect(&next, &flow))
}

/// Starts a new challenge for the same login after one ended.
pub async fn retry(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ip: ClientIp,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let mut flow = auth::load(&session).await?;
    let next = service::retry(&state, &mut flow, &auth::origin(&headers, &ip)).await?;
    auth::save(&session, &flow, false).await?;
    Ok(auth::redirect(&next, &flow))
}

/// The page for a login that needs the app when the user cannot use it now, and no
/// service waits for an answer (the portal, the account): why, and the way to a device.
pub async fn unreachable(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
) -> Result<Response, AppError> {
    use crate::service::account::{why_app_missing, AppMissing};
    let mut flow = auth::load(&session).await?;
    let signed_in = service::signed_in(&state, &mut flow).await?;
    let reasons = match &signed_in {
        None => vec!["stepup.reason.log_in_first"],
        Some((user, _)) => match why_app_missing(&state, &flow, user).await? {
            AppMissing::RateLimited => vec!["stepup.reason.rate_limited"],
            AppMissing::DeviceCannotApprove => vec!["stepup.reason.device_cannot_approve"],
            AppMissing::CanAddNow => vec!["stepup.reason.no_device", "stepup.reason.add_now"],
            AppMissing::AskAdministrator => {
                vec!["stepup.reason.no_device", "stepup.reason.ask_admin"]
            }
        },
    };
    let page = NeedsAppPage {
        chrome: Chrome::new(lang, "/login/unreachable"),
        reasons,
        signed_in: signed_in.is_some(),
    };
    render(StatusCode::FORBIDDEN, &page)
}

/// Finishes the login after the app approved.
pub async fn complete(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ip: ClientIp,
) -> Result<Response, AppError> {
    let mut flow = auth::load(&session).await?;
    let before = flow.version;
    match service::complete_challenge(&state, &mut flow, &auth::origin(&headers, &ip)).await? {
        Completion::NotApproved => Ok(Redirect::to("/login/wait").into_response()),
        Completion::Gone => {
            auth::save_if_changed(&session, before, &flow, false).await?;
            Ok(Redirect::to("/login").into_response())
        }
        Completion::Moved(moved) => {
            auth::save(&session, &flow, moved.rotate).await?;
            Ok(auth::redirect(&moved.next, &flow))
        }
    }
}

/// For a signed-in user whose session has less than a request needs: approve in the app.
pub async fn step_up(
    State(state): State<AppState>,
    signed_in: auth::SignedIn,
    headers: HeaderMap,
    ip: ClientIp,
) -> Result<Response, AppError> {
    let auth::SignedIn {
        mut flow, session, ..
    } = signed_in;
    let next = service::step_up(&state, &mut flow, &auth::origin(&headers, &ip)).await?;
    auth::save(&session, &flow, false).await?;
    Ok(auth::redirect(&next, &flow))
}
