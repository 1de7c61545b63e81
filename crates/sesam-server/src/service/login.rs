//! The login steps: username, password, the app's challenge (passwordless or step-up),
//! completion, and what a waiting service gets. Each function applies one event to the
//! browser's [`LoginFlow`] and performs what the flow asks.

use rand::rngs::OsRng;
use rand::RngCore;
use sesam_core::flow::{ChallengePurpose, Event, Next, Step, UserFacts};
use sesam_core::{
    choose_login_branch, second_factor_order, Challenge, ChallengeContext, ChallengeKind,
    ChallengeState, Device, Login, LoginFlow, SecondFactor, ServiceRequest, UnixTime, User, UserId,
    Username,
};
use sesam_store::{Attempt, AuditEvent, DirectoryUser};

use crate::challenges;
use crate::credentials::{Claim, Password, Verdict};
use crate::service::directory::{self, Taken};
use crate::service::{perform, Origin, ServiceError};
use crate::state::AppState;

/// Rate-limit bucket: password attempts per client address.
const IP_FAILURES: &str = "password-failures-ip";
/// How long after its deadline an approved challenge may still finish the login.
const COMPLETE_GRACE_SECONDS: i64 = 300;

/// Where the browser goes after a step, and whether its session id must change first.
#[derive(Debug)]
pub struct Moved {
    pub next: Next,
    pub rotate: bool,
}

pub(crate) fn new_sid() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub(crate) fn facts(user: &User) -> UserFacts {
    UserFacts {
        user_id: user.id.0.clone(),
        must_change_password: user.must_change_password,
        epoch: user.session_epoch,
        // Known for sure only when a step-up starts; it falls back to "unreachable" then.
        can_step_up: true,
    }
}

/// The signed-in user of `flow` while the login still counts (active user, within the
/// absolute lifetime, no password change since). A login that no longer counts is dropped
/// from the flow.
pub async fn signed_in(
    state: &AppState,
    flow: &mut LoginFlow,
) -> Result<Option<(User, Login)>, ServiceError> {
    let Some(login) = flow.login.clone() else {
        return Ok(None);
    };
    let settings = state.store.settings().await?;
    let user = match state.store.get_user(&UserId(login.user_id.clone())).await {
        Ok(user) => Some(user),
        Err(sesam_store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    match user {
        Some(user)
            if user.is_active() && login.is_current(user.session_epoch, &settings, state.now()) =>
        {
            Ok(Some((user, login)))
        }
        _ => {
            let lapsed = flow.apply(Event::LoginLapsed, &settings, state.now())?;
            perform(state, &lapsed.effects, "-", &Origin::default()).await?;
            Ok(None)
        }
    }
}

/// The username page's form: the branch the core chooses, and the challenge when it is
/// passwordless.
pub async fn submit_username(
    state: &AppState,
    flow: &mut LoginFlow,
    username: &Username,
    origin: &Origin,
) -> Result<Moved, ServiceError> {
    if flow.login.is_some() {
        // Already logged in (another tab finished first): carry on from there.
        let settings = state.store.settings().await?;
        return Ok(Moved {
            next: flow.continuation(&settings, true),
            rotate: false,
        });
    }
    let settings = state.store.settings().await?;
    let user = state.store.find_user_by_username(username).await?;
    // The device lookup runs for unknown names too, so both take the same path and time.
    let user_id = user
        .as_ref()
        .map_or_else(|| UserId("-".into()), |u| u.id.clone());
    let devices: Vec<Device> = state
        .store
        .devices_of_user(&user_id)
        .await?
        .into_iter()
        .map(|d| d.device)
        .collect();
    // Looked up for unknown names too, for the same reason.
    let has_passkey =
        state.passkeys.is_some() && !state.store.passkeys_of_user(&user_id).await?.is_empty();
    let branch = choose_login_branch(
        &settings,
        user.as_ref(),
        &devices,
        has_passkey,
        origin.chosen_factor,
    );
    let t = flow.apply(
        Event::UsernameGiven {
            username: username.as_str().to_owned(),
            branch,
        },
        &settings,
        state.now(),
    )?;
    perform(state, &t.effects, username.as_str(), origin).await?;
    let next = match (t.next, user) {
        (Next::Wait, Some(user)) => {
            start_challenge_for(state, flow, &user, ChallengePurpose::Login, origin).await?
        }
        (Next::AskPasskey, Some(user)) => {
            // No readable passkey after all: the password page, where the flow already is.
            crate::service::passkey::ask(state, flow, &user, ChallengePurpose::Login, origin)
                .await?
                .unwrap_or(Next::ShowPassword)
        }
        (next, _) => next,
    };
    Ok(Moved {
        next,
        rotate: false,
    })
}

/// The password page is shown: a passwordless challenge this browser waited on is no
/// longer wanted ("Log in with password instead"). `None` when no username is pending.
pub async fn show_password(
    state: &AppState,
    flow: &mut LoginFlow,
    origin: &Origin,
) -> Result<Option<String>, ServiceError> {
    let Some(username) = flow.username().map(str::to_owned) else {
        return Ok(None);
    };
    let waits_passkey = matches!(flow.passkey_ceremony(), Some((_, ChallengePurpose::Login)));
    if waits_passkey || matches!(flow.challenge(), Some((_, ChallengePurpose::Login))) {
        let settings = state.store.settings().await?;
        let t = flow.apply(Event::PasswordInstead, &settings, state.now())?;
        perform(state, &t.effects, &username, origin).await?;
    }
    Ok(Some(username))
}

#[derive(Debug)]
pub enum PasswordOutcome {
    Moved(Moved),
    /// Wrong password (or unknown user): the form again.
    Failed {
        username: String,
    },
    Locked(UnixTime),
    Inactive,
    /// No username is pending: back to the username page.
    NoUsername,
    /// The directory that checks this user's password could not be asked: try again later.
    DirectoryUnavailable,
}

/// The password form. The attempt is reserved before the hash (per name and per address,
/// atomically), so a burst of parallel requests checks no more passwords than the limit.
pub async fn submit_password(
    state: &AppState,
    flow: &mut LoginFlow,
    password: String,
    origin: &Origin,
) -> Result<PasswordOutcome, ServiceError> {
    let Some(typed) = show_password(state, flow, origin).await? else {
        return Ok(PasswordOutcome::NoUsername);
    };
    let Ok(username) = Username::parse(&typed) else {
        return Ok(PasswordOutcome::NoUsername);
    };
    let Some(password) = Password::new(password) else {
        // Refused before any check: to a directory an empty password is an anonymous bind.
        return Ok(PasswordOutcome::Failed {
            username: username.as_str().to_owned(),
        });
    };
    let key = username.key();
    let now = state.now();
    let settings = state.store.settings().await?;
    let user = state.store.find_user_by_username(&username).await?;
    // Audit under the stored spelling when the user exists, so one user's events group.
    let subject = user
        .as_ref()
        .map_or(username.as_str(), |u| u.username.as_str())
        .to_owned();
    let subject_known = user.is_some();
    let audit = |event: &str| {
        AuditEvent::new(event)
            .actor(subject.as_str())
            .subject(subject.as_str())
            .client_ip(origin.ip.clone())
    };

    // Many wrong passwords from one address (for any users): that address waits.
    let ip_key = origin.ip.clone().unwrap_or_else(|| "unknown".into());
    let window = settings.lockout_window_seconds;
    let ip_allows = state
        .store
        .rate_limit_allows(
            IP_FAILURES,
            &ip_key,
            now,
            window,
            i64::from(settings.password_failures_per_ip),
        )
        .await?;
    if !ip_allows {
        state
            .store
            .append_audit(
                &audit("login.refused.address").detail(format!(
                    "{} failed passwords from this address within {window} s",
                    settings.password_failures_per_ip
                )),
                now,
            )
            .await?;
        return Ok(PasswordOutcome::Locked(now.plus_seconds(window)));
    }
    let count = match state
        .store
        .reserve_password_attempt(&key, now, &settings)
        .await?
    {
        Attempt::Allowed { count } => count,
        Attempt::Locked(until) => {
            state.store.rate_limit_release(IP_FAILURES, &ip_key).await?;
            state
                .store
                .append_audit(
                    &audit("login.refused.locked").detail(format!("locked until {}", until.0)),
                    now,
                )
                .await?;
            return Ok(PasswordOutcome::Locked(until));
        }
    };

    let verdict = state
        .password_check_for(user.as_ref())
        .check(Claim {
            username: &username,
            password: &password,
            user: user.as_ref(),
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let proven = match (verdict, user) {
        (Verdict::Proven(None), Some(user)) => Some(user),
        (Verdict::Proven(Some(entry)), user) => directory_user(state, user, &entry, origin).await?,
        (Verdict::Unavailable, _) => {
            // Nothing was learnt about the password; the reserved attempt stays counted
            // (an outage gives no extra guesses) but does not lock the name.
            state
                .store
                .append_audit(
                    &audit("login.directory.unavailable")
                        .detail("the directory could not check the password"),
                    now,
                )
                .await?;
            return Ok(PasswordOutcome::DirectoryUnavailable);
        }
        (_, _) => None,
    };
    let user = match proven {
        Some(user) => user,
        None => {
            let why = if subject_known {
                "wrong password"
            } else {
                "unknown user"
            };
            state
                .store
                .append_audit(&audit("login.password.failed").detail(why), now)
                .await?;
            if let Some(until) = state
                .store
                .login_attempt_failed(&key, count, now, &settings)
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
                return Ok(PasswordOutcome::Locked(until));
            }
            return Ok(PasswordOutcome::Failed {
                username: username.as_str().to_owned(),
            });
        }
    };
    // A right password is not a failure: neither limit keeps it.
    state.store.rate_limit_release(IP_FAILURES, &ip_key).await?;
    state.store.clear_login_failures(&key).await?;

    if !user.is_active() {
        state
            .store
            .append_audit(
                &audit("login.refused.inactive").detail(user.status.as_str()),
                now,
            )
            .await?;
        return Ok(PasswordOutcome::Inactive);
    }
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
    let t = flow.apply(
        Event::PasswordProven {
            user: facts(&user),
            sid: new_sid(),
        },
        &settings,
        now,
    )?;
    let rotate = perform(state, &t.effects, user.username.as_str(), origin).await?;
    tracing::info!(user = %user.username, "password login");
    let next = follow(state, flow, t.next, &user, origin).await?;
    Ok(PasswordOutcome::Moved(Moved { next, rotate }))
}

/// The local user for a directory entry whose password was just proven: found by the
/// entry's stable id (a rename in the directory follows), created at the first login, or
/// `None` when the name belongs to a different local user or directory entry.
async fn directory_user(
    state: &AppState,
    local: Option<User>,
    entry: &DirectoryUser,
    origin: &Origin,
) -> Result<Option<User>, ServiceError> {
    let now = state.now();
    let mismatch = |why: String| {
        AuditEvent::new("login.directory.mismatch")
            .actor("directory")
            .subject(entry.username.as_str())
            .client_ip(origin.ip.clone())
            .detail(why)
    };
    if let Some(user) = &local {
        if user.directory_id.as_deref() != Some(entry.directory_id.as_str()) {
            let why = format!(
                "the name belongs to another user than directory entry {}",
                entry.directory_id
            );
            state.store.append_audit(&mismatch(why), now).await?;
            return Ok(None);
        }
    }
    match directory::take_entry(&state.store, entry, now, origin.ip.clone())
        .await?
        .taken
    {
        Taken::Created(user) | Taken::Unchanged(user) | Taken::Updated { user, .. } => {
            Ok(Some(user))
        }
        Taken::Conflict(why) => {
            state.store.append_audit(&mismatch(why), now).await?;
            Ok(None)
        }
    }
}

/// Whether a user linked to the directory is still listed there: a user disabled in the
/// directory cannot log in with the app either, before any sync has told Sesam; and the
/// roles its groups give are taken now (an admin removed from the group is no longer one).
/// When the directory cannot be asked, the app's proof stands (it needs no directory).
pub(crate) async fn directory_lists(
    state: &AppState,
    user: User,
    origin: &Origin,
) -> Result<Option<User>, ServiceError> {
    let (Some(directory), Some(id)) = (&state.directory, &user.directory_id) else {
        return Ok(Some(user));
    };
    match directory.current_entry(id).await {
        Some(Some(entry)) => {
            let took =
                directory::take_entry(&state.store, &entry, state.now(), origin.ip.clone()).await?;
            Ok(Some(match took.taken {
                Taken::Created(user) | Taken::Updated { user, .. } | Taken::Unchanged(user) => user,
                Taken::Conflict(why) => {
                    tracing::warn!(user = %user.username, %why, "directory entry not taken at login");
                    user
                }
            }))
        }
        None => Ok(Some(user)),
        Some(None) => {
            state
                .store
                .append_audit(
                    &AuditEvent::new("login.refused.directory")
                        .actor("directory")
                        .subject(user.username.as_str())
                        .client_ip(origin.ip.clone())
                        .detail("the directory no longer lists the user (disabled or removed)"),
                    state.now(),
                )
                .await?;
            Ok(None)
        }
    }
}

/// Resolves the one "next" a use case can act on itself: a step-up to start.
pub(crate) async fn follow(
    state: &AppState,
    flow: &mut LoginFlow,
    next: Next,
    user: &User,
    origin: &Origin,
) -> Result<Next, ServiceError> {
    match next {
        Next::StartStepUp => {
            start_challenge_for(state, flow, user, ChallengePurpose::StepUp, origin).await
        }
        other => Ok(other),
    }
}

/// For a signed-in user whose login has less than the request needs: the app approves
/// (number matching), or the level cannot be reached.
pub async fn step_up(
    state: &AppState,
    flow: &mut LoginFlow,
    origin: &Origin,
) -> Result<Next, ServiceError> {
    let Some((user, _)) = signed_in(state, flow).await? else {
        return Ok(Next::ShowUsername);
    };
    let settings = state.store.settings().await?;
    let next = flow.continuation(&settings, true);
    follow(state, flow, next, &user, origin).await
}

/// The other way to log in than the one the current page asks for ("other ways to log in"):
/// the next of the user's factors in the order of [`second_factor_order`], leaving out the
/// page's own. At a step-up: a passkey, the app or the code display; at a passwordless
/// login: the app or a passkey (the password is always offered there). Not in PSD2 mode,
/// where the code page must look the same after a wrong password.
pub async fn other_second_factor(
    state: &AppState,
    flow: &mut LoginFlow,
) -> Result<Option<SecondFactor>, ServiceError> {
    let (current, purpose) = match &flow.step {
        Step::Challenge { purpose, .. } => (SecondFactor::App, *purpose),
        Step::Totp => (SecondFactor::Totp, ChallengePurpose::StepUp),
        Step::Passkey { purpose, .. } => (SecondFactor::Passkey, *purpose),
        _ => return Ok(None),
    };
    let settings = state.store.settings().await?;
    if settings.psd2_mode && purpose == ChallengePurpose::StepUp {
        return Ok(None);
    }
    let user = match purpose {
        ChallengePurpose::StepUp => signed_in(state, flow).await?.map(|(u, _)| u),
        ChallengePurpose::Login => match flow.username().and_then(|n| Username::parse(n).ok()) {
            Some(name) => state.store.find_user_by_username(&name).await?,
            None => None,
        },
    };
    let Some(user) = user else {
        return Ok(None);
    };
    let has_passkey = crate::service::passkey::available(state, &user).await?;
    let has_app = !devices_for(state, &user, purpose, &settings)
        .await?
        .is_empty();
    let has_totp = purpose == ChallengePurpose::StepUp
        && crate::service::totp::available(state, &user).await?;
    Ok(second_factor_order(has_passkey, has_app, has_totp, None)
        .into_iter()
        .find(|f| *f != current))
}

/// The user takes the other way offered on the wait, code or passkey page. The choice is
/// what the browser remembers for its next login. `None`: that way is not open now (nothing
/// waits, or the user lacks that factor); nothing changed.
pub async fn choose_second_factor(
    state: &AppState,
    flow: &mut LoginFlow,
    factor: SecondFactor,
    origin: &Origin,
) -> Result<Option<Next>, ServiceError> {
    if other_second_factor(state, flow).await? != Some(factor) {
        return Ok(None);
    }
    let purpose = match &flow.step {
        Step::Challenge { purpose, .. } | Step::Passkey { purpose, .. } => *purpose,
        _ => ChallengePurpose::StepUp,
    };
    let user = match purpose {
        ChallengePurpose::StepUp => signed_in(state, flow).await?.map(|(u, _)| u),
        ChallengePurpose::Login => match flow.username().and_then(|n| Username::parse(n).ok()) {
            Some(name) => state.store.find_user_by_username(&name).await?,
            None => None,
        },
    };
    let Some(user) = user else {
        return Ok(None);
    };
    let origin = Origin {
        chosen_factor: Some(factor),
        ..origin.clone()
    };
    match factor {
        SecondFactor::Totp => crate::service::totp::ask(state, flow, &user, &origin).await,
        SecondFactor::Passkey => {
            crate::service::passkey::ask(state, flow, &user, purpose, &origin).await
        }
        SecondFactor::App => Ok(Some(
            start_challenge_for(state, flow, &user, purpose, &origin).await?,
        )),
    }
}

/// The devices a challenge of `purpose` may go to.
pub(crate) async fn devices_for(
    state: &AppState,
    user: &User,
    purpose: ChallengePurpose,
    settings: &sesam_core::Settings,
) -> Result<Vec<sesam_store::DeviceRecord>, ServiceError> {
    Ok(state
        .store
        .devices_of_user(&user.id)
        .await?
        .into_iter()
        .filter(|d| match purpose {
            // After "this was not me", no new passwordless request (a retry, another tab).
            ChallengePurpose::Login => {
                !user.passwordless_locked && d.device.is_passwordless_capable(settings)
            }
            ChallengePurpose::StepUp => d.device.can_approve_step_up(),
        })
        .collect())
}

/// Starts a challenge for `user` and records it in the flow. Without a device or over the
/// limit, a login falls back to the password and a step-up cannot reach its level.
pub(crate) async fn start_challenge_for(
    state: &AppState,
    flow: &mut LoginFlow,
    user: &User,
    purpose: ChallengePurpose,
    origin: &Origin,
) -> Result<Next, ServiceError> {
    let settings = state.store.settings().await?;
    let now = state.now();
    let devices = devices_for(state, user, purpose, &settings).await?;
    let refused = |flow: &mut LoginFlow, limited: bool| -> Result<Next, ServiceError> {
        Ok(flow
            .apply(Event::ChallengeRefused { limited }, &settings, now)?
            .next)
    };
    if purpose == ChallengePurpose::StepUp {
        // A passkey, the app or the code display: the one this browser chose last, else
        // the strongest.
        let has_totp = crate::service::totp::available(state, user).await?;
        let has_passkey = crate::service::passkey::available(state, user).await?;
        let order = second_factor_order(
            has_passkey,
            !devices.is_empty(),
            has_totp,
            origin.chosen_factor,
        );
        let asked = match order.first() {
            Some(SecondFactor::Totp) => {
                crate::service::totp::ask(state, flow, user, origin).await?
            }
            Some(SecondFactor::Passkey) => {
                crate::service::passkey::ask(state, flow, user, purpose, origin).await?
            }
            _ => None,
        };
        if let Some(next) = asked {
            return Ok(next);
        }
    }
    if devices.is_empty() {
        return refused(flow, false);
    }
    let window = settings.challenge_limit_window_seconds;
    let ip_key = origin.ip.clone().unwrap_or_else(|| "unknown".into());
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
                    .client_ip(origin.ip.clone())
                    .detail(format!("{user_count} challenges for the user in {window} s; address within limit: {ip_allows}")),
                now,
            )
            .await?;
        return refused(flow, true);
    }
    let (browser, os) = crate::web::agent::summarise(&origin.user_agent);
    let service = match flow.request.as_ref().map(|r| r.service.clone()) {
        Some(s) => s,
        None if !settings.organisation_name.is_empty() => settings.organisation_name.clone(),
        None => "Sesam".to_owned(),
    };
    let context = ChallengeContext {
        service,
        browser,
        os,
        client_ip: origin.ip.clone(),
        location: None,
    };
    let kind = match purpose {
        ChallengePurpose::Login => ChallengeKind::Code,
        ChallengePurpose::StepUp => ChallengeKind::Approve,
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
    let t = flow.apply(
        Event::ChallengeStarted {
            challenge_id: started.challenge.id,
            purpose,
        },
        &settings,
        now,
    )?;
    perform(state, &t.effects, user.username.as_str(), origin).await?;
    Ok(t.next)
}

/// The challenge this browser waits on, with an overdue one marked expired.
pub async fn current_challenge(
    state: &AppState,
    flow: &LoginFlow,
) -> Result<Option<(ChallengePurpose, Challenge)>, ServiceError> {
    let Some((id, purpose)) = flow.challenge() else {
        return Ok(None);
    };
    let Some(mut challenge) = state.store.get_challenge(id).await? else {
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
    Ok(Some((purpose, challenge)))
}

#[derive(Debug)]
pub enum Completion {
    /// Not approved (yet): the wait page.
    NotApproved,
    /// Nothing to complete here: the username page.
    Gone,
    Moved(Moved),
}

/// Finishes the login after the app approved: a new login (passwordless) or one more factor
/// on the login the password began (step-up).
pub async fn complete_challenge(
    state: &AppState,
    flow: &mut LoginFlow,
    origin: &Origin,
) -> Result<Completion, ServiceError> {
    let Some((purpose, challenge)) = current_challenge(state, flow).await? else {
        return Ok(if flow.login.is_some() {
            // Completed already (another tab of this browser): carry on.
            let settings = state.store.settings().await?;
            Completion::Moved(Moved {
                next: flow.continuation(&settings, true),
                rotate: false,
            })
        } else {
            Completion::Gone
        });
    };
    let now = state.now();
    if challenge.state != ChallengeState::Approved
        || now.0 > challenge.expires_at.0 + COMPLETE_GRACE_SECONDS
    {
        return Ok(Completion::NotApproved);
    }
    let user = state
        .store
        .get_user(&UserId(challenge.user_id.clone()))
        .await?;
    let settings = state.store.settings().await?;
    let listed = if purpose == ChallengePurpose::Login {
        directory_lists(state, user, origin).await?
    } else {
        Some(user)
    };
    let Some(user) = listed.filter(User::is_active) else {
        flow.apply(Event::SignedOut, &settings, now)?;
        return Ok(Completion::Gone);
    };
    let t = match flow.apply(
        Event::ChallengeApproved {
            challenge_id: challenge.id.clone(),
            user: facts(&user),
            sid: new_sid(),
        },
        &settings,
        now,
    ) {
        Ok(t) => t,
        Err(_) => return Ok(Completion::Gone),
    };
    let rotate = perform(state, &t.effects, user.username.as_str(), origin).await?;
    let next = follow(state, flow, t.next, &user, origin).await?;
    Ok(Completion::Moved(Moved { next, rotate }))
}

/// "Cancel" on the wait page.
pub async fn cancel(
    state: &AppState,
    flow: &mut LoginFlow,
    origin: &Origin,
) -> Result<Next, ServiceError> {
    let settings = state.store.settings().await?;
    let subject = flow.username().unwrap_or("-").to_owned();
    let t = flow.apply(Event::ChallengeCancelled, &settings, state.now())?;
    perform(state, &t.effects, &subject, origin).await?;
    Ok(t.next)
}

/// A new challenge for the same login after one ended.
pub async fn retry(
    state: &AppState,
    flow: &mut LoginFlow,
    origin: &Origin,
) -> Result<Next, ServiceError> {
    let Some((purpose, old)) = current_challenge(state, flow).await? else {
        return Ok(Next::ShowUsername);
    };
    let user = state.store.get_user(&UserId(old.user_id)).await?;
    start_challenge_for(state, flow, &user, purpose, origin).await
}

/// Cancels a challenge (the browser turned away from it) and tells whoever waits on it.
pub async fn cancel_challenge(state: &AppState, id: &str) -> Result<(), ServiceError> {
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

/// What a service gets when it asks for a login.
#[derive(Debug)]
pub enum ServiceAnswer {
    /// The login answers the request: issue the assertion or the code.
    Ready { user: Box<User>, login: Login },
    /// The browser must do something first (log in, change the password, step up).
    Login(Moved),
    /// A passive request (`IsPassive`, `prompt=none`) would need a page.
    PassiveImpossible,
    /// The level asked for cannot be reached by this user: answer the service with its
    /// protocol's error (SAML `NoAuthnContext`, OIDC `unmet_authentication_requirements`).
    LevelUnreachable,
}

/// A service (SAML SP, OIDC client, the portal, the demo) asks for a login; also called
/// when the browser comes back to the service's resume path after the login.
pub async fn answer_service(
    state: &AppState,
    flow: &mut LoginFlow,
    request: ServiceRequest,
    passive: bool,
    hint: Option<String>,
    origin: &Origin,
) -> Result<ServiceAnswer, ServiceError> {
    let settings = state.store.settings().await?;
    let current = signed_in(state, flow).await?;
    if flow.owes_unreachable(&request) {
        // The login ended without the level: the service hears it now.
        flow.apply(Event::ServiceAnswered, &settings, state.now())?;
        return Ok(ServiceAnswer::LevelUnreachable);
    }
    if let Some((user, login)) = current.clone() {
        if flow.satisfies(&request, &settings) {
            if flow.waits_for(&request) {
                flow.apply(Event::ServiceAnswered, &settings, state.now())?;
            }
            return Ok(ServiceAnswer::Ready {
                user: Box::new(user),
                login,
            });
        }
    }
    if passive {
        return Ok(ServiceAnswer::PassiveImpossible);
    }
    let hint = hint.filter(|h| Username::parse(h).is_ok());
    let t = flow.apply(
        Event::ServiceAsked { request, hint },
        &settings,
        state.now(),
    )?;
    let subject = current
        .as_ref()
        .map_or("-".to_owned(), |(u, _)| u.username.to_string());
    let rotate = perform(state, &t.effects, &subject, origin).await?;
    if t.next == Next::LevelUnreachable {
        flow.apply(Event::ServiceAnswered, &settings, state.now())?;
        return Ok(ServiceAnswer::LevelUnreachable);
    }
    // A step-up starts on its own page (`step_up`), which can still find it unreachable.
    Ok(ServiceAnswer::Login(Moved {
        next: t.next,
        rotate,
    }))
}

/// "Switch user" and a forced new login: what the browser had proven no longer counts.
pub async fn sign_out_keeping_request(
    state: &AppState,
    flow: &mut LoginFlow,
    origin: &Origin,
) -> Result<bool, ServiceError> {
    let settings = state.store.settings().await?;
    let t = flow.apply(Event::SignedOut, &settings, state.now())?;
    perform(state, &t.effects, "-", origin).await
}
