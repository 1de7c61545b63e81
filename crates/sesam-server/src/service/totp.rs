//! The code display (TOTP) as a second factor: self-service enrolment (Substantial login
//! only, one code confirms it), the code step of a login, and the administrator's reset and
//! robot enrolment. The rules are in `sesam_core::totp` and the flow; this performs them.

use sesam_core::flow::{Event, Next, Step};
use sesam_core::totp::{TotpCode, TotpCodeError, TotpSecret, Verdict};
use sesam_core::{LoginFlow, UnixTime, User};
use sesam_store::{Attempt, AuditEvent, Store};

use crate::service::account::{may_add_factor, self_audit};
use crate::service::login::{signed_in, Moved};
use crate::service::{perform, Origin, ServiceError};
use crate::state::AppState;
use crate::totp::{new_secret, TotpKey};

/// The name a code display gets in the device list.
const DISPLAY_NAME: &str = "TOTP";

fn key(state: &AppState) -> Option<&TotpKey> {
    state.config.totp_key.as_ref()
}

fn sealing(e: crate::totp::SealError) -> ServiceError {
    ServiceError::Internal(e.to_string())
}

/// What the enrolment page shows while a code display waits for its first code: the only
/// time the secret leaves the server.
pub struct PendingTotp {
    pub secret_base32: String,
    pub otpauth_uri: String,
}

#[derive(Debug)]
pub enum Refusal {
    /// A password alone may not add a factor.
    NeedsMore,
    /// One code display per user: remove the old one first.
    AlreadyEnrolled,
    /// No TOTP key in the config.
    NotConfigured,
    /// Nothing pending (never started, or confirmed in another tab).
    NoPending,
}

impl Refusal {
    /// The translation key of the reason.
    pub fn text_key(&self) -> &'static str {
        match self {
            Refusal::NeedsMore => "totp.needs_more",
            Refusal::AlreadyEnrolled => "totp.already",
            Refusal::NotConfigured => "totp.not_configured",
            Refusal::NoPending => "totp.no_pending",
        }
    }
}

/// DESIGN's rule for every new factor, strictly: a Substantial login. (The organisation's
/// "first device after a password" is for the app's activation code only.)
async fn may_add(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    origin: &Origin,
) -> Result<Result<(), Refusal>, ServiceError> {
    if !may_add_factor(
        state,
        flow,
        user,
        origin,
        "totp.enrolment.refused",
        "a code display",
    )
    .await?
    {
        return Ok(Err(Refusal::NeedsMore));
    }
    if key(state).is_none() {
        return Ok(Err(Refusal::NotConfigured));
    }
    Ok(Ok(()))
}

async fn shown(
    state: &AppState,
    user: &User,
    secret: &TotpSecret,
) -> Result<PendingTotp, ServiceError> {
    let settings = state.store.settings().await?;
    let issuer = if settings.organisation_name.is_empty() {
        "Sesam".to_owned()
    } else {
        settings.organisation_name
    };
    Ok(PendingTotp {
        secret_base32: secret.to_base32(),
        otpauth_uri: secret.otpauth_uri(&issuer, user.username.as_str()),
    })
}

/// "Add an authenticator app": a new secret, sealed and stored as pending, shown once.
pub async fn start_enrolment(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    origin: &Origin,
) -> Result<Result<PendingTotp, Refusal>, ServiceError> {
    if let Err(refusal) = may_add(state, flow, user, origin).await? {
        return Ok(Err(refusal));
    }
    let Some(key) = key(state) else {
        return Ok(Err(Refusal::NotConfigured));
    };
    let secret = new_secret().map_err(sealing)?;
    let sealed = key.seal(&user.id, &secret).map_err(sealing)?;
    let now = state.now();
    if !state
        .store
        .put_pending_totp(&user.id, DISPLAY_NAME, &sealed, now)
        .await?
    {
        return Ok(Err(Refusal::AlreadyEnrolled));
    }
    state
        .store
        .append_audit(&self_audit(user, origin, "totp.enrolment.started"), now)
        .await?;
    Ok(Ok(shown(state, user, &secret).await?))
}

#[derive(Debug)]
pub enum ConfirmProblem {
    Malformed(TotpCodeError),
    Wrong,
}

impl ConfirmProblem {
    pub fn text_key(&self) -> &'static str {
        match self {
            ConfirmProblem::Malformed(e) => malformed_key(*e),
            ConfirmProblem::Wrong => "totp.error.wrong",
        }
    }
}

pub fn malformed_key(e: TotpCodeError) -> &'static str {
    match e {
        TotpCodeError::Empty => "totp.error.empty",
        TotpCodeError::NotDigits => "totp.error.not_digits",
        TotpCodeError::WrongLength => "totp.error.wrong_length",
    }
}

pub enum Confirmation {
    Confirmed,
    Refused(Refusal),
    /// The code did not fit; nothing changed, the same secret is shown again.
    Retry(PendingTotp, ConfirmProblem),
}

/// The first code from the new authenticator: right, and the code display counts from now
/// on (its step used up); wrong, and nothing stored changes.
pub async fn confirm_enrolment(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    typed: &str,
    origin: &Origin,
) -> Result<Confirmation, ServiceError> {
    if let Err(refusal) = may_add(state, flow, user, origin).await? {
        return Ok(Confirmation::Refused(refusal));
    }
    let Some(key) = key(state) else {
        return Ok(Confirmation::Refused(Refusal::NotConfigured));
    };
    let pending = match state.store.totp_of_user(&user.id).await? {
        Some(r) if !r.confirmed => r,
        _ => return Ok(Confirmation::Refused(Refusal::NoPending)),
    };
    let secret = key
        .open(&user.id, &pending.secret_sealed)
        .map_err(sealing)?;
    let now = state.now();
    let problem = match TotpCode::parse(typed) {
        Err(e) => ConfirmProblem::Malformed(e),
        Ok(code) => match secret.verify(&code, now, None) {
            Verdict::Accepted { step } => {
                if !state
                    .store
                    .confirm_totp(&user.id, &pending.secret_sealed, step, now)
                    .await?
                {
                    return Ok(Confirmation::Refused(Refusal::NoPending));
                }
                state
                    .store
                    .append_audit(
                        &self_audit(user, origin, "totp.enrolled")
                            .detail("confirmed with a code on the devices page"),
                        now,
                    )
                    .await?;
                return Ok(Confirmation::Confirmed);
            }
            Verdict::Replayed | Verdict::Wrong => ConfirmProblem::Wrong,
        },
    };
    state
        .store
        .append_audit(
            &self_audit(user, origin, "totp.enrolment.failed").detail(format!("{problem:?}")),
            now,
        )
        .await?;
    Ok(Confirmation::Retry(
        shown(state, user, &secret).await?,
        problem,
    ))
}

/// Whether `user` has a confirmed code display that can be opened (a key is configured).
pub async fn available(state: &AppState, user: &User) -> Result<bool, ServiceError> {
    if key(state).is_none() {
        return Ok(false);
    }
    Ok(state
        .store
        .totp_of_user(&user.id)
        .await?
        .is_some_and(|r| r.confirmed))
}

/// The step-up goes to the user's code display (see [`available`]). `None` when the flow
/// cannot take it now.
pub async fn ask(
    state: &AppState,
    flow: &mut LoginFlow,
    user: &User,
    origin: &Origin,
) -> Result<Option<Next>, ServiceError> {
    let settings = state.store.settings().await?;
    let Ok(t) = flow.apply(Event::TotpAsked, &settings, state.now()) else {
        return Ok(None);
    };
    perform(state, &t.effects, user.username.as_str(), origin).await?;
    Ok(Some(t.next))
}

#[derive(Debug)]
pub enum CodeOutcome {
    Moved(Moved),
    /// Not six digits: the page again with why; no attempt counted.
    Malformed(TotpCodeError),
    Wrong,
    /// Right code, but its time step was used already (here or on another node).
    Replayed,
    Locked(UnixTime),
    /// No code is asked for (no login, or another step): the login page.
    NotAsked,
    /// PSD2 mode: the two-factor login ended (a wrong password or a wrong code); the
    /// password page says only that one or more details were wrong.
    DetailsWrong(Moved),
}

/// The name the code page shows: the user at the code step, or (PSD2 mode) the name whose
/// wrong password is not said yet. `None`: no code is asked for.
pub async fn code_page_username(
    state: &AppState,
    flow: &mut LoginFlow,
) -> Result<Option<String>, ServiceError> {
    match flow.step.clone() {
        Step::TotpHidden { username } => Ok(Some(username)),
        Step::Totp => Ok(signed_in(state, flow)
            .await?
            .map(|(user, _)| user.username.to_string())),
        _ => Ok(None),
    }
}

/// PSD2 mode, after a wrong password in a two-factor login: the code page follows as it
/// would after a right one. `None` when the mode is off or the login needs one factor.
pub async fn hide_password_failure(
    state: &AppState,
    flow: &mut LoginFlow,
    origin: &Origin,
) -> Result<Option<Next>, ServiceError> {
    let settings = state.store.settings().await?;
    if !flow.hides_password_failure(&settings) {
        return Ok(None);
    }
    let subject = flow.username().unwrap_or("-").to_owned();
    let Ok(t) = flow.apply(Event::PasswordFailedHidden, &settings, state.now()) else {
        return Ok(None);
    };
    state
        .store
        .append_audit(
            &AuditEvent::new("login.psd2.password_hidden")
                .actor(subject.as_str())
                .subject(subject.as_str())
                .client_ip(origin.ip.clone())
                .detail("wrong password, not shown yet (PSD2 mode); the code page follows"),
            state.now(),
        )
        .await?;
    Ok(Some(t.next))
}

/// Ends a two-factor login in PSD2 mode without saying which detail was wrong.
async fn details_wrong(
    state: &AppState,
    flow: &mut LoginFlow,
    username: String,
    why: &str,
    origin: &Origin,
) -> Result<CodeOutcome, ServiceError> {
    let settings = state.store.settings().await?;
    let now = state.now();
    state
        .store
        .append_audit(
            &AuditEvent::new("login.psd2.details_wrong")
                .actor(username.as_str())
                .subject(username.as_str())
                .client_ip(origin.ip.clone())
                .detail(why),
            now,
        )
        .await?;
    let t = flow.apply(
        Event::DetailsWrong {
            username: username.clone(),
        },
        &settings,
        now,
    )?;
    let rotate = perform(state, &t.effects, &username, origin).await?;
    Ok(CodeOutcome::DetailsWrong(Moved {
        next: t.next,
        rotate,
    }))
}

/// The code step of a login. Attempts count against the same lock as passwords.
pub async fn submit_code(
    state: &AppState,
    flow: &mut LoginFlow,
    typed: &str,
    origin: &Origin,
) -> Result<CodeOutcome, ServiceError> {
    if let Step::TotpHidden { username } = flow.step.clone() {
        // The password was wrong; the code is not checked (a malformed one is still told,
        // which says nothing about the password).
        if let Err(e) = TotpCode::parse(typed) {
            return Ok(CodeOutcome::Malformed(e));
        }
        return details_wrong(
            state,
            flow,
            username,
            "the password was wrong (PSD2 mode: the code was not checked)",
            origin,
        )
        .await;
    }
    if flow.step != Step::Totp {
        return Ok(CodeOutcome::NotAsked);
    }
    let Some((user, _)) = signed_in(state, flow).await? else {
        return Ok(CodeOutcome::NotAsked);
    };
    let code = match TotpCode::parse(typed) {
        Ok(code) => code,
        Err(e) => return Ok(CodeOutcome::Malformed(e)),
    };
    let (Some(key), Some(record)) = (key(state), state.store.totp_of_user(&user.id).await?) else {
        return Ok(CodeOutcome::NotAsked);
    };
    if !record.confirmed {
        return Ok(CodeOutcome::NotAsked);
    }
    let now = state.now();
    let settings = state.store.settings().await?;
    let lock_key = user.username.key();
    let count = match state
        .store
        .reserve_password_attempt(&lock_key, now, &settings)
        .await?
    {
        Attempt::Allowed { count } => count,
        Attempt::Locked(until) => {
            state
                .store
                .append_audit(
                    &self_audit(&user, origin, "login.totp.refused.locked")
                        .detail(format!("locked until {}", until.0)),
                    now,
                )
                .await?;
            return Ok(CodeOutcome::Locked(until));
        }
    };
    let secret = key.open(&user.id, &record.secret_sealed).map_err(sealing)?;
    let verdict = match secret.verify(&code, now, record.last_step) {
        // The check-and-set in the database decides between two nodes.
        Verdict::Accepted { step } if !state.store.use_totp_step(&user.id, step, now).await? => {
            Verdict::Replayed
        }
        v => v,
    };
    if let Verdict::Accepted { .. } = verdict {
        state.store.clear_login_failures(&lock_key).await?;
        let t = flow.apply(
            Event::TotpProven {
                user_id: user.id.0.clone(),
            },
            &settings,
            now,
        )?;
        let rotate = perform(state, &t.effects, user.username.as_str(), origin).await?;
        return Ok(CodeOutcome::Moved(Moved {
            next: t.next,
            rotate,
        }));
    }
    let why = if verdict == Verdict::Replayed {
        "replayed code (its time step was used already)"
    } else {
        "wrong code"
    };
    state
        .store
        .append_audit(
            &self_audit(&user, origin, "login.totp.failed").detail(why),
            now,
        )
        .await?;
    if let Some(until) = state
        .store
        .login_attempt_failed(&lock_key, count, now, &settings)
        .await?
    {
        state
            .store
            .append_audit(
                &self_audit(&user, origin, "login.locked").detail(format!(
                    "{} failures within {} s; locked until {}",
                    settings.lockout_max_failures, settings.lockout_window_seconds, until.0
                )),
                now,
            )
            .await?;
        return Ok(CodeOutcome::Locked(until));
    }
    if settings.psd2_mode {
        return details_wrong(
            state,
            flow,
            user.username.to_string(),
            &format!("the password was right, the code not: {why} (PSD2 mode)"),
            origin,
        )
        .await;
    }
    Ok(if verdict == Verdict::Replayed {
        CodeOutcome::Replayed
    } else {
        CodeOutcome::Wrong
    })
}

/// The user removes their own code display from the devices page: with a Substantial
/// login only (`service::account::may_remove`). False when refused.
pub async fn remove_own(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    origin: &Origin,
) -> Result<bool, ServiceError> {
    if !crate::service::account::may_remove(state, flow, user, origin, "code display").await? {
        return Ok(false);
    }
    reset(
        &state.store,
        user,
        user.username.as_str(),
        origin.ip.clone(),
        state.now(),
    )
    .await?;
    Ok(true)
}

/// Removes a user's code display: the administrator's reset (portal and CLI) and the
/// user's own "Remove". True when there was one.
pub async fn reset(
    store: &Store,
    user: &User,
    actor: &str,
    ip: Option<String>,
    now: UnixTime,
) -> Result<bool, ServiceError> {
    let removed = store.delete_totp(&user.id).await?;
    if removed {
        let how = if actor == user.username.as_str() {
            "removed by the user"
        } else {
            "reset by an administrator"
        };
        store
            .append_audit(
                &AuditEvent::new("totp.reset")
                    .actor(actor)
                    .subject(user.username.as_str())
                    .client_ip(ip)
                    .detail(how),
                now,
            )
            .await?;
    }
    Ok(removed)
}

#[derive(Debug, thiserror::Error)]
pub enum RobotEnrolError {
    #[error("{0} is not a password-only account; people add an authenticator app themselves on their devices page")]
    NotRobot(String),
    #[error("no totp_key is configured, so no TOTP secret can be stored")]
    NotConfigured,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// An administrator gives a robot (password-only) account a code display for scripted
/// Substantial logins. Returns the secret, to hand to the robot once.
pub async fn enrol_robot(
    store: &Store,
    key: Option<&TotpKey>,
    user: &User,
    actor: &str,
    now: UnixTime,
) -> Result<TotpSecret, RobotEnrolError> {
    if !user.password_only {
        return Err(RobotEnrolError::NotRobot(user.username.to_string()));
    }
    let key = key.ok_or(RobotEnrolError::NotConfigured)?;
    let secret = new_secret().map_err(sealing)?;
    let sealed = key.seal(&user.id, &secret).map_err(sealing)?;
    store
        .put_confirmed_totp(&user.id, DISPLAY_NAME, &sealed, now)
        .await
        .map_err(ServiceError::from)?;
    store
        .append_audit(
            &AuditEvent::new("totp.enrolled")
                .actor(actor)
                .subject(user.username.as_str())
                .detail("robot account, enrolled by an administrator"),
            now,
        )
        .await
        .map_err(ServiceError::from)?;
    Ok(secret)
}
