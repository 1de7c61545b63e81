//! What a user or an administrator does to an account: change the password (which ends
//! the user's other logins), enrol a device (only with more than a password), unlock, and
//! end a login. One function each, for the web pages, the portal and the CLI alike.

use sesam_core::flow::{Event, Next};
use sesam_core::{
    may_enrol, may_remove_factor, EnrolDecision, LoginFlow, UnixTime, User, UserStatus,
};
use sesam_store::{AuditEvent, DeviceRecord, Store};

use crate::password::MIN_PASSWORD_CHARS;
use crate::service::{perform, Origin, ServiceError};
use crate::state::AppState;

/// An audit event for something users do to their own account.
pub(crate) fn self_audit(user: &User, origin: &Origin, event: &str) -> AuditEvent {
    AuditEvent::new(event)
        .actor(user.username.as_str())
        .subject(user.username.as_str())
        .client_ip(origin.ip.clone())
}

/// DESIGN's rule for every new factor but the app's activation code, strictly: a Substantial
/// login (the organisation's "first device after a password" is for the app only). When the
/// login is less, `refused_event` is audited with the login's level and `false` comes back.
pub(crate) async fn may_add_factor(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    origin: &Origin,
    refused_event: &str,
    factor: &str,
) -> Result<bool, ServiceError> {
    let settings = state.store.settings().await?;
    let login = flow.login.as_ref();
    if login.is_some_and(|l| may_enrol(l, true, &settings) == EnrolDecision::Allowed) {
        return Ok(true);
    }
    let level = login.and_then(|l| l.level()).map_or("none", |l| l.as_str());
    state
        .store
        .append_audit(
            &self_audit(user, origin, refused_event).detail(format!(
                "the login is {level}; {factor} needs a Substantial login"
            )),
            state.now(),
        )
        .await?;
    Ok(false)
}

pub struct PasswordChange {
    pub current: String,
    pub new: String,
    pub repeat: String,
}

#[derive(Debug)]
pub enum PasswordChanged {
    /// Done; go on (the service that waited, or the account page).
    Done { next: Next, rotate: bool },
    /// Refused; the translation key of the reason.
    Refused(&'static str),
}

/// Changes the signed-in user's password. Every other login of the user ends (their
/// sessions stop counting, their refresh tokens are revoked); this one goes on.
pub async fn change_password(
    state: &AppState,
    flow: &mut LoginFlow,
    user: &User,
    change: PasswordChange,
    origin: &Origin,
) -> Result<PasswordChanged, ServiceError> {
    let problem = if change.new != change.repeat {
        Some("password.mismatch")
    } else if change.new.chars().count() < MIN_PASSWORD_CHARS {
        Some("password.too_short")
    } else if change.new.to_lowercase().contains(&user.username.key()) {
        Some("password.same_as_username")
    } else if change.new == change.current {
        Some("password.unchanged")
    } else {
        let ok = state
            .passwords
            .verify(change.current, user.password_hash.clone())
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        (!ok).then_some("password.wrong_current")
    };
    if let Some(key) = problem {
        return Ok(PasswordChanged::Refused(key));
    }
    let hash = state
        .passwords
        .hash(change.new)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let now = state.now();
    state
        .store
        .set_password(&user.id, &hash, false, now)
        .await?;
    let ended = end_other_logins(&state.store, user, now).await?;
    let settings = state.store.settings().await?;
    let t = flow.apply(
        Event::PasswordChanged { epoch: ended.epoch },
        &settings,
        now,
    )?;
    let rotate = perform(state, &t.effects, user.username.as_str(), origin).await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("password.changed")
                .actor(user.username.as_str())
                .subject(user.username.as_str())
                .client_ip(origin.ip.clone())
                .detail(format!(
                    "other logins ended; {} refresh token(s) revoked",
                    ended.tokens_revoked
                )),
            now,
        )
        .await?;
    Ok(PasswordChanged::Done {
        next: t.next,
        rotate,
    })
}

pub struct Ended {
    pub epoch: i64,
    pub tokens_revoked: u64,
}

/// Ends every login of `user` made before now: a new session epoch, and the user's OIDC
/// tokens revoked. (Password changes and resets, by the user, the portal or the CLI.)
pub async fn end_other_logins(
    store: &Store,
    user: &User,
    now: UnixTime,
) -> Result<Ended, ServiceError> {
    let epoch = store.bump_session_epoch(&user.id, now).await?;
    let tokens_revoked = store.revoke_oidc_user(&user.id.0, now).await?;
    Ok(Ended {
        epoch,
        tokens_revoked,
    })
}

/// Ends one login (`/logout`, SAML single logout, OIDC `end_session`): the OIDC tokens issued in it are revoked and the event is audited. The
/// caller then clears the browser's session and tells the SAML service providers.
pub async fn end_login(
    state: &AppState,
    login: &sesam_core::Login,
    origin: &Origin,
    event: &str,
    how: &str,
) -> Result<(), ServiceError> {
    let now = state.now();
    if !login.sid.is_empty() {
        state.store.revoke_oidc_session(&login.sid, now).await?;
    }
    let username = match state
        .store
        .get_user(&sesam_core::UserId(login.user_id.clone()))
        .await
    {
        Ok(u) => u.username.to_string(),
        Err(_) => login.user_id.clone(),
    };
    let mut event = AuditEvent::new(event)
        .actor(&username)
        .subject(&username)
        .client_ip(origin.ip.clone());
    if !how.is_empty() {
        event = event.detail(how);
    }
    state.store.append_audit(&event, now).await?;
    Ok(())
}

/// Unlocks a user: active again, the failed-password lock and the fraud report's lock on
/// passwordless cleared. The portal and `sesam user unlock` both call this.
pub async fn unlock_user(
    store: &Store,
    user: &User,
    actor: &str,
    ip: Option<String>,
    now: UnixTime,
) -> Result<(), ServiceError> {
    store
        .set_user_status(&user.id, UserStatus::Active, now)
        .await?;
    store.clear_login_failures(&user.username.key()).await?;
    store.set_passwordless_locked(&user.id, false, now).await?;
    store
        .append_audit(
            &AuditEvent::new("user.unlocked")
                .actor(actor)
                .subject(user.username.as_str())
                .client_ip(ip)
                .detail(format!(
                    "{} -> active; failed-password lock and passwordless lock cleared",
                    user.status.as_str()
                )),
            now,
        )
        .await?;
    Ok(())
}

/// Lifts the pause a fraud report put on passwordless, leaving the account's status as it
/// is (the portal's "Resume passwordless sign-in").
pub async fn resume_passwordless(
    store: &Store,
    user: &User,
    actor: &str,
    ip: Option<String>,
    now: UnixTime,
) -> Result<(), ServiceError> {
    store.set_passwordless_locked(&user.id, false, now).await?;
    store
        .append_audit(
            &AuditEvent::new("passwordless.unlocked")
                .actor(actor)
                .subject(user.username.as_str())
                .client_ip(ip)
                .detail("resumed by an administrator after a fraud report"),
            now,
        )
        .await?;
    Ok(())
}

#[derive(Debug)]
pub enum Enrolment {
    /// The activation code (as shown to people) for the user's app.
    Code(String),
    /// A password alone may not add a factor.
    NeedsMore,
}

/// The user asks for an activation code on the self-service page. Allowed with a
/// Substantial login, or a password login for a first device where the organisation
/// allows that (DESIGN: who may add a factor).
pub async fn enrol_device(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    origin: &Origin,
) -> Result<Enrolment, ServiceError> {
    let Some(login) = &flow.login else {
        return Ok(Enrolment::NeedsMore);
    };
    let now = state.now();
    let settings = state.store.settings().await?;
    let has_device = !state.store.devices_of_user(&user.id).await?.is_empty();
    let username = user.username.as_str();
    let decision = may_enrol(login, has_device, &settings);
    if decision == EnrolDecision::NeedsMore {
        state
            .store
            .append_audit(
                &AuditEvent::new("device.activation_code.refused")
                    .actor(username)
                    .subject(username)
                    .client_ip(origin.ip.clone())
                    .detail(format!(
                        "the login is {}; a device needs a login with the app or a code from an administrator",
                        login.level().map_or("none", |l| l.as_str())
                    )),
                now,
            )
            .await?;
        return Ok(Enrolment::NeedsMore);
    }
    let code = crate::activation::issue(&state.store, &user.id, now).await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("device.activation_code.issued")
                .actor(username)
                .subject(username)
                .client_ip(origin.ip.clone())
                .detail(match decision {
                    EnrolDecision::AllowedFirstDevice => "first device after a password login",
                    _ => "with a Substantial login",
                }),
            now,
        )
        .await?;
    Ok(Enrolment::Code(code))
}

/// A password alone may not take away a way to log in (DESIGN: who may add a factor, and so
/// remove one). Audits the refusal; `Ok(false)` means refused.
pub async fn may_remove(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    origin: &Origin,
    what: &str,
) -> Result<bool, ServiceError> {
    if flow.login.as_ref().is_some_and(may_remove_factor) {
        return Ok(true);
    }
    let level = flow
        .login
        .as_ref()
        .and_then(|l| l.level())
        .map_or("none", |l| l.as_str());
    let username = user.username.as_str();
    state
        .store
        .append_audit(
            &AuditEvent::new("factor.removal.refused")
                .actor(username)
                .subject(username)
                .client_ip(origin.ip.clone())
                .detail(format!(
                    "{what}: the login is {level}; removing a way to log in needs a Substantial login"
                )),
            state.now(),
        )
        .await?;
    Ok(false)
}

/// The user removes one of their own app devices on the account page. False when refused.
pub async fn remove_device(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    device: &DeviceRecord,
    origin: &Origin,
) -> Result<bool, ServiceError> {
    let what = format!("device {}", device.device.id);
    if !may_remove(state, flow, user, origin, &what).await? {
        return Ok(false);
    }
    state.store.delete_device(&device.device.id).await?;
    let username = user.username.as_str();
    state
        .store
        .append_audit(
            &AuditEvent::new("device.removed")
                .actor(username)
                .subject(username)
                .client_ip(origin.ip.clone())
                .detail(format!("{what} removed on the account page")),
            state.now(),
        )
        .await?;
    Ok(true)
}

/// Why a login that needs the app cannot get it now, and so what the user can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppMissing {
    /// Too many requests were sent to the app lately: wait and try again.
    RateLimited,
    /// The user has devices, but none can approve (blocked, or not a phone app).
    DeviceCannotApprove,
    /// No device yet, and this login may add one now (the organisation allows a first
    /// device after a password).
    CanAddNow,
    /// No device yet, and a password alone may not add one: an administrator's activation code.
    AskAdministrator,
}

/// Tells the signed-in user of `flow` why the app is out of reach (DESIGN: who may add a factor).
pub async fn why_app_missing(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
) -> Result<AppMissing, ServiceError> {
    if flow.notice == Some(sesam_core::flow::Notice::ChallengeRateLimited) {
        return Ok(AppMissing::RateLimited);
    }
    let devices = state.store.devices_of_user(&user.id).await?;
    if !devices.is_empty() {
        return Ok(if devices.iter().any(|d| d.device.can_approve_step_up()) {
            // A device that can approve but was not asked: the limit or a race; try again.
            AppMissing::RateLimited
        } else {
            AppMissing::DeviceCannotApprove
        });
    }
    let settings = state.store.settings().await?;
    Ok(match &flow.login {
        Some(login) if may_enrol(login, false, &settings) != EnrolDecision::NeedsMore => {
            AppMissing::CanAddNow
        }
        _ => AppMissing::AskAdministrator,
    })
}
