//! The login as one typed value: where the browser is in the login, what it has proven and
//! when, and what a waiting service asked for. Every step is a pure transition; the use-case
//! layer performs the effects it returns. The diagram is in `docs/login-flow.md`.

use serde::{Deserialize, Serialize};

use crate::assurance::{AssuranceLevel, Factor};
use crate::clock::UnixTime;
use crate::login::LoginBranch;
use crate::settings::Settings;

/// A factor and the time it was proven.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenFactor {
    pub factor: Factor,
    pub at: i64,
}

/// A finished login: who, with which factors, since when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub user_id: String,
    pub factors: Vec<ProvenFactor>,
    /// When the first factor was proven; the absolute lifetime counts from here.
    pub auth_time: i64,
    /// Names this login towards services (OIDC `sid`, SAML `SessionIndex`).
    pub sid: String,
    /// The user's session epoch when this login happened; a password change raises the
    /// user's epoch and every login of an older epoch stops counting.
    #[serde(default)]
    pub epoch: i64,
    /// A one-time password was used: nothing continues until the user chose a new one.
    #[serde(default)]
    pub must_change_password: bool,
}

impl Login {
    pub fn level(&self) -> Option<AssuranceLevel> {
        let factors: Vec<Factor> = self.factors.iter().map(|f| f.factor).collect();
        AssuranceLevel::from_factors(&factors)
    }

    pub fn has(&self, factor: Factor) -> bool {
        self.factors.iter().any(|f| f.factor == factor)
    }

    /// Still a login: within the absolute lifetime and of the user's current epoch.
    pub fn is_current(&self, user_epoch: i64, settings: &Settings, now: UnixTime) -> bool {
        self.epoch == user_epoch && now.0 - self.auth_time <= settings.session_absolute_seconds
    }
}

/// What a service (SAML SP, OIDC client, the portal, the demo) asked of the login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRequest {
    /// Shown in the app ("Log in to …").
    pub service: String,
    pub level: AssuranceLevel,
    /// A login older than this (Unix seconds) does not count.
    pub not_before: Option<i64>,
    /// Where the browser comes back once the login is done: a local path.
    pub resume: String,
    /// The service must get an answer (SAML Response, OIDC redirect) even when the level
    /// cannot be reached; a portal page only needs the browser sent back.
    pub answers_protocol: bool,
}

/// Why a challenge was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChallengePurpose {
    /// Passwordless: the app is the login.
    Login,
    /// After a password: the app adds its factor.
    StepUp,
}

/// Where the browser is in the login.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// The username page.
    #[default]
    Username,
    /// The password page for this username.
    Password { username: String },
    /// The wait page: a challenge to the app.
    Challenge {
        username: String,
        challenge_id: String,
        purpose: ChallengePurpose,
    },
    /// The code-display page: the password is proven, the login waits for the current
    /// TOTP code to reach Substantial.
    Totp,
    /// PSD2 mode: the password for this username was wrong, which is not said yet; the code
    /// page is shown as after a right one, and any code ends in "details were wrong".
    TotpHidden { username: String },
    /// The passkey page: the browser is asked for an assertion of one of the user's passkeys,
    /// as the login (`Login`) or after the password (`StepUp`).
    Passkey {
        username: String,
        purpose: ChallengePurpose,
        /// The relying party's state of this ceremony (its challenge), opaque to the flow:
        /// kept server-side, used once.
        ceremony: String,
    },
    /// Logged in; see [`LoginFlow::login`].
    Done,
    /// The login cannot reach the level the service asked for.
    LevelUnreachable,
    /// Sent to the upstream eID (MitID through an OpenID Connect broker); its answer must
    /// match this attempt, once.
    Upstream(UpstreamAttempt),
}

/// An upstream eID login this browser began: what the answer must match. Kept in the flow
/// (so bound to this browser's session) and used once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamAttempt {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub started_at: i64,
}

/// How long an upstream login may take, from the button to the answer.
pub const UPSTREAM_ATTEMPT_SECONDS: i64 = 600;

/// An upstream identity that is linked to no local user yet, waiting for the user to prove
/// a local password (where the organisation allows linking so).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLink {
    /// The linking claim as stored: keyed hash, never the value itself.
    pub subject: String,
    pub level: AssuranceLevel,
    pub at: i64,
}

/// A notice shown on the password page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// Too many app requests in the window: the password instead.
    ChallengeRateLimited,
    /// The user reported a push as fraud: passwordless waits until a password login (or an
    /// administrator) resumes it.
    PasswordlessPaused,
    /// PSD2 mode: a two-factor login failed; which detail was wrong is not said.
    DetailsWrong,
}

/// The whole login state of one browser session, kept under one session key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFlow {
    /// Raised by every transition, so a stale copy can be told from the current one.
    pub version: u64,
    pub step: Step,
    pub login: Option<Login>,
    pub request: Option<ServiceRequest>,
    /// Prefills the username (OIDC `login_hint`).
    pub hint: Option<String>,
    pub notice: Option<Notice>,
    /// An unlinked upstream identity the next password login links to its user.
    #[serde(default)]
    pub upstream_link: Option<PendingLink>,
}

/// What the user is, as far as the flow needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserFacts {
    pub user_id: String,
    pub must_change_password: bool,
    pub epoch: i64,
    /// The user has an app that can approve a step-up now.
    pub can_step_up: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A service asks for a login.
    ServiceAsked {
        request: ServiceRequest,
        hint: Option<String>,
    },
    UsernameGiven {
        username: String,
        branch: LoginBranch,
    },
    ChallengeStarted {
        challenge_id: String,
        purpose: ChallengePurpose,
    },
    /// No challenge could start: no device for it, or (`limited`) too many requests in the
    /// window. A login falls back to the password; a step-up cannot reach its level.
    ChallengeRefused {
        limited: bool,
    },
    /// "Log in with password instead", or a challenge that ended without approval.
    PasswordInstead,
    PasswordProven {
        user: UserFacts,
        sid: String,
    },
    ChallengeApproved {
        challenge_id: String,
        user: UserFacts,
        sid: String,
    },
    /// The step-up goes to the user's code display (no app can approve it, a TOTP secret
    /// is enrolled).
    TotpAsked,
    /// The code display's current code was typed (checked, and its step used up).
    TotpProven {
        user_id: String,
    },
    /// PSD2 mode: the password was wrong; the login goes on to the code page as if not.
    PasswordFailedHidden,
    /// The browser is asked for a passkey: as the login (the username is pending), or as the
    /// second factor after a password.
    PasskeyAsked {
        purpose: ChallengePurpose,
        ceremony: String,
    },
    /// The browser's assertion verified against a passkey of `user` (user verification
    /// included), for the ceremony this flow waits for.
    PasskeyProven {
        user: UserFacts,
        sid: String,
    },
    /// PSD2 mode: the two-factor login ends, for the password or the code; the password
    /// page says only that one or more details were wrong.
    DetailsWrong {
        username: String,
    },
    PasswordChanged {
        epoch: i64,
    },
    /// The browser cancelled the waiting challenge.
    ChallengeCancelled,
    /// The service that waited got its answer (the assertion, the code, or the error).
    ServiceAnswered,
    /// The login no longer counts (user disabled, lifetime over, password changed).
    LoginLapsed,
    /// The browser is sent to the upstream eID with this attempt.
    UpstreamStarted(UpstreamAttempt),
    /// The upstream's answer for `state` verified and names a linked, active user.
    UpstreamProven {
        state: String,
        user: UserFacts,
        level: AssuranceLevel,
        sid: String,
    },
    /// The upstream's answer verified, but no local user is linked to it; `link` when the
    /// organisation lets a password login link it.
    UpstreamUnlinked {
        state: String,
        link: Option<PendingLink>,
    },
    /// The upstream refused, or its answer did not verify: the attempt is used up.
    UpstreamFailed,
    /// "Switch user", a forced new login: what was proven no longer counts.
    SignedOut,
}

/// What to do next, for whoever drives the flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    ShowUsername,
    ShowPassword,
    Wait,
    ChangePassword,
    /// Start a step-up challenge (number matching) for the signed-in user.
    StartStepUp,
    /// Ask for the code display's current code.
    AskTotp,
    /// Ask the browser for a passkey.
    AskPasskey,
    /// The level cannot be reached: tell the service (if one waits) or show why.
    LevelUnreachable,
    /// Go to this local path: the service's resume path or the account page.
    Continue(String),
    /// Send the browser to the upstream eID's authorization endpoint.
    GoUpstream,
}

/// Work the flow asks for; the use-case layer performs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A new session id: the session is worth more now.
    RotateSession,
    /// Cancel this challenge (the browser turned away from it).
    CancelChallenge(String),
    /// Write this audit event.
    Audit(&'static str),
    /// Link this upstream identity to the user whose password was just proven.
    LinkUpstream { user_id: String, link: PendingLink },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub next: Next,
    pub effects: Vec<Effect>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("this step does not follow from where the login is ({0})")]
    OutOfOrder(&'static str),
    #[error("the challenge answered is not the one this browser waits for")]
    OtherChallenge,
    #[error("the approval belongs to another user than the login it would add to")]
    OtherUser,
    #[error("the upstream answer matches no upstream login this browser began")]
    UpstreamState,
}

const ACCOUNT: &str = "/account";

impl LoginFlow {
    /// The level this login must reach: the organisation's minimum or what the service asked.
    pub fn required_level(&self, settings: &Settings) -> AssuranceLevel {
        let asked = self
            .request
            .as_ref()
            .map_or(AssuranceLevel::Low, |r| r.level);
        settings.required_level.max(asked)
    }

    /// The pending username (password page, wait page).
    pub fn username(&self) -> Option<&str> {
        match &self.step {
            Step::Password { username }
            | Step::Challenge { username, .. }
            | Step::TotpHidden { username }
            | Step::Passkey { username, .. } => Some(username),
            _ => None,
        }
    }

    pub fn challenge(&self) -> Option<(&str, ChallengePurpose)> {
        match &self.step {
            Step::Challenge {
                challenge_id,
                purpose,
                ..
            } => Some((challenge_id, *purpose)),
            _ => None,
        }
    }

    /// The passkey ceremony this browser waits for.
    pub fn passkey_ceremony(&self) -> Option<(&str, ChallengePurpose)> {
        match &self.step {
            Step::Passkey {
                ceremony, purpose, ..
            } => Some((ceremony, *purpose)),
            _ => None,
        }
    }

    /// The upstream login this browser waits for, when `state` is its state (compared in
    /// constant time) and it is not too old.
    pub fn upstream_attempt(&self, state: &str, now: UnixTime) -> Option<&UpstreamAttempt> {
        match &self.step {
            Step::Upstream(attempt)
                if bool::from(subtle::ConstantTimeEq::ct_eq(
                    attempt.state.as_bytes(),
                    state.as_bytes(),
                )) && now.0 - attempt.started_at <= UPSTREAM_ATTEMPT_SECONDS =>
            {
                Some(attempt)
            }
            _ => None,
        }
    }

    /// Uses up the attempt `state` names: the step goes back to where a login starts.
    fn take_upstream(&mut self, state: &str, now: UnixTime) -> Result<(), FlowError> {
        if self.upstream_attempt(state, now).is_none() {
            return Err(FlowError::UpstreamState);
        }
        self.step = if self.login.is_some() {
            Step::Done
        } else {
            Step::Username
        };
        Ok(())
    }

    /// PSD2 mode hides a wrong password in this login: the mode is on and the login needs
    /// two factors (Substantial).
    pub fn hides_password_failure(&self, settings: &Settings) -> bool {
        settings.psd2_mode && self.required_level(settings) >= AssuranceLevel::Substantial
    }

    /// The one decision after any factor and at every service entry: what a signed-in
    /// browser may do next. A must-change password gates everything; then the level.
    pub fn continuation(&self, settings: &Settings, can_step_up: bool) -> Next {
        let Some(login) = &self.login else {
            return Next::ShowUsername;
        };
        if login.must_change_password {
            return Next::ChangePassword;
        }
        let fresh = self
            .request
            .as_ref()
            .and_then(|r| r.not_before)
            .is_none_or(|t| login.auth_time >= t);
        if !fresh {
            return Next::ShowUsername;
        }
        if login.level() >= Some(self.required_level(settings)) {
            return Next::Continue(self.resume_path());
        }
        if self.required_level(settings) > AssuranceLevel::Substantial || !can_step_up {
            Next::LevelUnreachable
        } else {
            Next::StartStepUp
        }
    }

    /// Where a finished login goes: the service's local resume path, else the account page.
    pub fn resume_path(&self) -> String {
        self.request
            .as_ref()
            .map(|r| r.resume.clone())
            .filter(|p| is_local_path(p))
            .unwrap_or_else(|| ACCOUNT.to_owned())
    }

    /// Whether the login for `request` ended without reaching its level, so the service is
    /// owed that answer.
    pub fn owes_unreachable(&self, request: &ServiceRequest) -> bool {
        self.step == Step::LevelUnreachable && self.waits_for(request)
    }

    /// Whether `request` is the one this flow keeps (its resume path).
    pub fn waits_for(&self, request: &ServiceRequest) -> bool {
        self.request
            .as_ref()
            .is_some_and(|r| r.resume == request.resume)
    }

    /// Whether the signed-in login answers `request` as it is (no page needed).
    pub fn satisfies(&self, request: &ServiceRequest, settings: &Settings) -> bool {
        self.login.as_ref().is_some_and(|login| {
            !login.must_change_password
                && request.not_before.is_none_or(|t| login.auth_time >= t)
                && login.level() >= Some(settings.required_level.max(request.level))
        })
    }

    /// Applies `event` at `now`: the flow moves on and says what to do and what to perform.
    pub fn apply(
        &mut self,
        event: Event,
        settings: &Settings,
        now: UnixTime,
    ) -> Result<Transition, FlowError> {
        let t = self.transition(event, settings, now)?;
        self.version += 1;
        Ok(t)
    }

    fn transition(
        &mut self,
        event: Event,
        settings: &Settings,
        now: UnixTime,
    ) -> Result<Transition, FlowError> {
        let mut effects = Vec::new();
        let next = match event {
            Event::ServiceAsked { request, hint } => {
                self.hint = hint;
                let fresh_enough = self
                    .login
                    .as_ref()
                    .is_some_and(|l| request.not_before.is_none_or(|t| l.auth_time >= t));
                if self.login.is_some() && !fresh_enough {
                    // A forced new login: the old one does not count, the request stays.
                    self.login = None;
                    effects.push(Effect::RotateSession);
                }
                self.cancel_pending(&mut effects);
                self.request = Some(request);
                if self.login.is_some() {
                    self.step = Step::Done;
                    // The caller knows whether the user can step up; it asks again with it.
                    self.continuation(settings, true)
                } else {
                    self.step = Step::Username;
                    Next::ShowUsername
                }
            }
            Event::UsernameGiven { username, branch } => {
                if self.login.is_some() {
                    return Err(FlowError::OutOfOrder("already logged in"));
                }
                self.cancel_pending(&mut effects);
                self.notice = None;
                self.step = Step::Password { username };
                // A pending upstream link waits for a password. A user who is sent to the
                // app or a passkey has a second factor, which password-linking refuses
                // anyway; the link is dropped rather than kept for a later password.
                if matches!(branch, LoginBranch::Passwordless | LoginBranch::Passkey) {
                    self.upstream_link = None;
                }
                match branch {
                    // The use-case layer starts the challenge and reports it.
                    LoginBranch::Passwordless => Next::Wait,
                    // The use-case layer starts the ceremony and reports it.
                    LoginBranch::Passkey => Next::AskPasskey,
                    LoginBranch::Password => Next::ShowPassword,
                    LoginBranch::PasswordlessPaused => {
                        self.notice = Some(Notice::PasswordlessPaused);
                        Next::ShowPassword
                    }
                }
            }
            Event::ChallengeStarted {
                challenge_id,
                purpose,
            } => {
                let username = match (&self.step, purpose, &self.login) {
                    (Step::Password { username }, ChallengePurpose::Login, None)
                    | (Step::Passkey { username, .. }, ChallengePurpose::Login, None) => {
                        username.clone()
                    }
                    (Step::Challenge { username, .. }, _, _) => username.clone(),
                    (_, ChallengePurpose::StepUp, Some(_)) => String::new(),
                    _ => return Err(FlowError::OutOfOrder("challenge without a username")),
                };
                self.cancel_pending(&mut effects);
                self.step = Step::Challenge {
                    username,
                    challenge_id,
                    purpose,
                };
                Next::Wait
            }
            Event::ChallengeRefused { limited } => {
                self.notice = limited.then_some(Notice::ChallengeRateLimited);
                if self.login.is_some() {
                    Next::LevelUnreachable
                } else {
                    Next::ShowPassword
                }
            }
            Event::PasswordInstead => match self.step.clone() {
                Step::Challenge {
                    username,
                    challenge_id,
                    purpose: ChallengePurpose::Login,
                } => {
                    effects.push(Effect::CancelChallenge(challenge_id));
                    self.step = Step::Password { username };
                    Next::ShowPassword
                }
                Step::Passkey {
                    username,
                    purpose: ChallengePurpose::Login,
                    ..
                } => {
                    self.step = Step::Password { username };
                    Next::ShowPassword
                }
                Step::Password { .. } => Next::ShowPassword,
                _ => return Err(FlowError::OutOfOrder("no username to ask a password for")),
            },
            Event::PasswordProven { user, sid } => {
                // From the hidden code page too (PSD2 mode): the user typed the password again.
                if !matches!(self.step, Step::Password { .. } | Step::TotpHidden { .. })
                    || self.login.is_some()
                {
                    return Err(FlowError::OutOfOrder("password without a username"));
                }
                let factors = vec![ProvenFactor {
                    factor: Factor::Password,
                    at: now.0,
                }];
                effects.push(Effect::RotateSession);
                effects.push(Effect::Audit("login.password.succeeded"));
                // The upstream identity the user came with is linked now that the password
                // is proven too. Its level does not count in this login: a password alone
                // must not become Substantial; the next upstream login counts.
                if let Some(link) = self.upstream_link.take() {
                    if now.0 - link.at <= UPSTREAM_ATTEMPT_SECONDS {
                        effects.push(Effect::LinkUpstream {
                            user_id: user.user_id.clone(),
                            link,
                        });
                    }
                }
                self.login = Some(Login {
                    user_id: user.user_id.clone(),
                    factors,
                    auth_time: now.0,
                    sid,
                    epoch: user.epoch,
                    must_change_password: user.must_change_password,
                });
                self.step = Step::Done;
                self.notice = None;
                self.continuation(settings, user.can_step_up)
            }
            Event::ChallengeApproved {
                challenge_id,
                user,
                sid,
            } => {
                let Some((waiting, purpose)) = self.challenge() else {
                    return Err(FlowError::OutOfOrder("no challenge is waiting"));
                };
                if waiting != challenge_id {
                    return Err(FlowError::OtherChallenge);
                }
                let audit = self.prove(
                    purpose,
                    Factor::App,
                    &user,
                    sid,
                    now,
                    "login.passwordless.succeeded",
                )?;
                effects.push(Effect::Audit(audit));
                self.step = Step::Done;
                effects.push(Effect::RotateSession);
                self.continuation(settings, user.can_step_up)
            }
            Event::TotpAsked => {
                // A code display adds to a password, never to nothing: no passwordless
                // login, and no login by the code alone.
                match &self.login {
                    Some(login) if login.has(Factor::Password) && !login.has(Factor::Totp) => {}
                    _ => {
                        return Err(FlowError::OutOfOrder(
                            "a code display needs a password first",
                        ))
                    }
                }
                self.cancel_pending(&mut effects);
                self.step = Step::Totp;
                Next::AskTotp
            }
            Event::TotpProven { user_id } => {
                if self.step != Step::Totp {
                    return Err(FlowError::OutOfOrder("no code was asked for"));
                }
                let Some(login) = self.login.as_mut() else {
                    return Err(FlowError::OutOfOrder(
                        "a code display needs a password first",
                    ));
                };
                if login.user_id != user_id {
                    return Err(FlowError::OtherUser);
                }
                login.factors.push(ProvenFactor {
                    factor: Factor::Totp,
                    at: now.0,
                });
                self.step = Step::Done;
                effects.push(Effect::RotateSession);
                effects.push(Effect::Audit("login.totp.succeeded"));
                self.continuation(settings, true)
            }
            Event::PasskeyAsked { purpose, ceremony } => {
                let username = match (&self.step, purpose, &self.login) {
                    (
                        Step::Password { username }
                        | Step::Passkey { username, .. }
                        | Step::Challenge { username, .. },
                        ChallengePurpose::Login,
                        None,
                    ) => username.clone(),
                    (_, ChallengePurpose::StepUp, Some(login)) if !login.has(Factor::Passkey) => {
                        String::new()
                    }
                    _ => return Err(FlowError::OutOfOrder("a passkey for no pending login")),
                };
                self.cancel_pending(&mut effects);
                self.step = Step::Passkey {
                    username,
                    purpose,
                    ceremony,
                };
                Next::AskPasskey
            }
            Event::PasskeyProven { user, sid } => {
                let Some((_, purpose)) = self.passkey_ceremony() else {
                    return Err(FlowError::OutOfOrder("no passkey was asked for"));
                };
                let audit = self.prove(
                    purpose,
                    Factor::Passkey,
                    &user,
                    sid,
                    now,
                    "login.passkey.succeeded",
                )?;
                effects.push(Effect::Audit(audit));
                self.step = Step::Done;
                self.notice = None;
                effects.push(Effect::RotateSession);
                self.continuation(settings, user.can_step_up)
            }
            Event::PasswordFailedHidden => match self.step.clone() {
                Step::Password { username } | Step::TotpHidden { username }
                    if self.login.is_none() && self.hides_password_failure(settings) =>
                {
                    self.step = Step::TotpHidden { username };
                    Next::AskTotp
                }
                _ => return Err(FlowError::OutOfOrder("nothing to hide")),
            },
            Event::DetailsWrong { username } => {
                if !matches!(self.step, Step::Totp | Step::TotpHidden { .. }) || !settings.psd2_mode
                {
                    return Err(FlowError::OutOfOrder("no two-factor login to end"));
                }
                if self.login.take().is_some() {
                    effects.push(Effect::RotateSession);
                }
                self.step = Step::Password { username };
                self.notice = Some(Notice::DetailsWrong);
                Next::ShowPassword
            }
            Event::PasswordChanged { epoch } => {
                let Some(login) = self.login.as_mut() else {
                    return Err(FlowError::OutOfOrder("password change without a login"));
                };
                login.must_change_password = false;
                login.epoch = epoch;
                effects.push(Effect::RotateSession);
                self.continuation(settings, true)
            }
            Event::ChallengeCancelled => {
                self.cancel_pending(&mut effects);
                if self.login.is_some() {
                    self.step = Step::Done;
                }
                Next::ShowUsername
            }
            Event::ServiceAnswered => {
                self.request = None;
                self.step = if self.login.is_some() {
                    Step::Done
                } else {
                    Step::Username
                };
                Next::Continue(ACCOUNT.to_owned())
            }
            Event::UpstreamStarted(attempt) => {
                self.cancel_pending(&mut effects);
                self.step = Step::Upstream(attempt);
                Next::GoUpstream
            }
            Event::UpstreamProven {
                state,
                user,
                level,
                sid,
            } => {
                if let Some(login) = &self.login {
                    if login.user_id != user.user_id {
                        return Err(FlowError::OtherUser);
                    }
                }
                self.take_upstream(&state, now)?;
                let proven = ProvenFactor {
                    factor: Factor::Upstream(level),
                    at: now.0,
                };
                match self.login.as_mut() {
                    // A step-up through the upstream: the login keeps its sid and auth_time.
                    Some(login) => login.factors.push(proven),
                    None => {
                        self.login = Some(Login {
                            user_id: user.user_id.clone(),
                            factors: vec![proven],
                            auth_time: now.0,
                            sid,
                            epoch: user.epoch,
                            must_change_password: user.must_change_password,
                        })
                    }
                }
                self.step = Step::Done;
                self.notice = None;
                self.upstream_link = None;
                effects.push(Effect::RotateSession);
                effects.push(Effect::Audit("login.upstream.succeeded"));
                self.continuation(settings, user.can_step_up)
            }
            Event::UpstreamUnlinked { state, link } => {
                self.take_upstream(&state, now)?;
                match (self.login.as_mut(), link) {
                    // Signed in with a recent password in this session: that is the proof
                    // the link needs, so it is made now. The upstream's level does not count
                    // in this login (a password alone must not become Substantial).
                    (Some(login), Some(link))
                        if login.has(Factor::Password)
                            && now.0 - login.auth_time <= UPSTREAM_ATTEMPT_SECONDS =>
                    {
                        effects.push(Effect::RotateSession);
                        effects.push(Effect::LinkUpstream {
                            user_id: login.user_id.clone(),
                            link,
                        });
                        self.continuation(settings, true)
                    }
                    (Some(_), _) => self.continuation(settings, true),
                    (None, link) => {
                        self.upstream_link = link;
                        Next::ShowUsername
                    }
                }
            }
            Event::UpstreamFailed => {
                if matches!(self.step, Step::Upstream(_)) {
                    self.step = if self.login.is_some() {
                        Step::Done
                    } else {
                        Step::Username
                    };
                }
                if self.login.is_some() {
                    self.continuation(settings, true)
                } else {
                    Next::ShowUsername
                }
            }
            Event::LoginLapsed => {
                self.upstream_link = None;
                self.cancel_pending(&mut effects);
                if self.login.take().is_some() {
                    effects.push(Effect::RotateSession);
                }
                self.step = Step::Username;
                Next::ShowUsername
            }
            Event::SignedOut => {
                self.upstream_link = None;
                self.cancel_pending(&mut effects);
                if self.login.take().is_some() {
                    effects.push(Effect::RotateSession);
                }
                self.step = Step::Username;
                self.notice = None;
                Next::ShowUsername
            }
        };
        if next == Next::LevelUnreachable {
            self.step = Step::LevelUnreachable;
        }
        Ok(Transition { next, effects })
    }

    /// A factor that can stand alone proven for what this flow waits on: a new login of
    /// `user` (nobody is logged in yet) or the step-up of the same user. Returns the audit
    /// event: `login_audit` for a new login, the step-up's otherwise.
    fn prove(
        &mut self,
        purpose: ChallengePurpose,
        factor: Factor,
        user: &UserFacts,
        sid: String,
        now: UnixTime,
        login_audit: &'static str,
    ) -> Result<&'static str, FlowError> {
        match (purpose, self.login.as_mut()) {
            (ChallengePurpose::StepUp, Some(login)) => {
                if login.user_id != user.user_id {
                    return Err(FlowError::OtherUser);
                }
                if !login.has(factor) {
                    login.factors.push(ProvenFactor { factor, at: now.0 });
                }
                Ok("login.step_up.succeeded")
            }
            (ChallengePurpose::Login, None) => {
                self.login = Some(Login {
                    user_id: user.user_id.clone(),
                    factors: vec![ProvenFactor { factor, at: now.0 }],
                    auth_time: now.0,
                    sid,
                    epoch: user.epoch,
                    // The factor proved who it is; a pending one-time password still has to
                    // be replaced before anything continues.
                    must_change_password: user.must_change_password,
                });
                Ok(login_audit)
            }
            _ => Err(FlowError::OutOfOrder("a proof for another kind of login")),
        }
    }

    fn cancel_pending(&mut self, effects: &mut Vec<Effect>) {
        if let Step::Challenge { challenge_id, .. } = &self.step {
            effects.push(Effect::CancelChallenge(challenge_id.clone()));
            self.step = Step::Username;
        }
    }
}

/// A path on this server (`/…`, not `//host` or a URL): the only kind a login resumes to.
pub fn is_local_path(p: &str) -> bool {
    p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && !p.contains("://")
}

/// Who may add a second factor (an app) to an account: DESIGN's enrolment rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrolDecision {
    /// A Substantial login: an existing factor vouches for the new one.
    Allowed,
    /// A password alone, no device yet, and the organisation allows a first device so.
    AllowedFirstDevice,
    /// A password alone is not enough: an activation code from an administrator, or a
    /// login with the app first.
    NeedsMore,
}

pub fn may_enrol(login: &Login, has_device: bool, settings: &Settings) -> EnrolDecision {
    if login.must_change_password {
        return EnrolDecision::NeedsMore;
    }
    if login.level() >= Some(AssuranceLevel::Substantial) {
        EnrolDecision::Allowed
    } else if settings.first_device_with_password && !has_device {
        EnrolDecision::AllowedFirstDevice
    } else {
        EnrolDecision::NeedsMore
    }
}

/// A second factor a step-up can go to, when the user has more than one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecondFactor {
    /// The Sesam app: number matching on a key held by the phone.
    App,
    /// A code display (TOTP).
    Totp,
    /// A passkey (WebAuthn, user verification required).
    Passkey,
}

impl SecondFactor {
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::App => "app",
            SecondFactor::Totp => "totp",
            SecondFactor::Passkey => "passkey",
        }
    }

    pub fn parse(s: &str) -> Option<SecondFactor> {
        match s {
            "app" => Some(SecondFactor::App),
            "totp" => Some(SecondFactor::Totp),
            "passkey" => Some(SecondFactor::Passkey),
            _ => None,
        }
    }
}

/// The order a step-up offers the factors the user has: the one this browser chose last,
/// where the user still has it, then the strongest first: a passkey (bound to this server's
/// name, so a look-alike site gets nothing), then the app (a key bound to the phone and a
/// code the user carries over), then a code display (six digits that can be phished).
pub fn second_factor_order(
    has_passkey: bool,
    has_app: bool,
    has_totp: bool,
    chosen_before: Option<SecondFactor>,
) -> Vec<SecondFactor> {
    let mut order: Vec<SecondFactor> = [
        (SecondFactor::Passkey, has_passkey),
        (SecondFactor::App, has_app),
        (SecondFactor::Totp, has_totp),
    ]
    .into_iter()
    .filter_map(|(f, has)| has.then_some(f))
    .collect();
    if let Some(i) = chosen_before.and_then(|c| order.iter().position(|f| *f == c)) {
        let chosen = order.remove(i);
        order.insert(0, chosen);
    }
    order
}

/// Who may take away a way to log in: what adding one needs, a Substantial login. A password
/// alone (perhaps a stolen one) must not remove the factor that would stop its thief, nor lock
/// the owner out of their app. Without one, the administrator removes it (portal or CLI).
pub fn may_remove_factor(login: &Login) -> bool {
    !login.must_change_password && login.level() >= Some(AssuranceLevel::Substantial)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(must_change: bool, can_step_up: bool) -> UserFacts {
        UserFacts {
            user_id: "u1".into(),
            must_change_password: must_change,
            epoch: 3,
            can_step_up,
        }
    }

    fn request(level: AssuranceLevel) -> ServiceRequest {
        ServiceRequest {
            service: "Mail".into(),
            level,
            not_before: None,
            resume: "/saml/sso/continue".into(),
            answers_protocol: true,
        }
    }

    fn at_password(flow: &mut LoginFlow, s: &Settings) {
        flow.apply(
            Event::UsernameGiven {
                username: "anna".into(),
                branch: LoginBranch::Password,
            },
            s,
            UnixTime(100),
        )
        .unwrap();
    }

    fn proven(flow: &mut LoginFlow, s: &Settings, user: UserFacts) -> Transition {
        flow.apply(
            Event::PasswordProven {
                user,
                sid: "sid".into(),
            },
            s,
            UnixTime(110),
        )
        .unwrap()
    }

    #[test]
    fn a_password_login_without_a_service_goes_to_the_account() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        at_password(&mut flow, &s);
        assert_eq!(flow.username(), Some("anna"));
        let t = proven(&mut flow, &s, facts(false, false));
        assert_eq!(t.next, Next::Continue("/account".into()));
        assert!(t.effects.contains(&Effect::RotateSession));
        let login = flow.login.as_ref().unwrap();
        assert_eq!(login.level(), Some(AssuranceLevel::Low));
        assert_eq!((login.auth_time, login.epoch), (110, 3));
        assert_eq!(flow.step, Step::Done);
        assert_eq!(flow.version, 2);
    }

    #[test]
    fn a_paused_passwordless_shows_the_password_with_its_notice_until_proven() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        let t = flow
            .apply(
                Event::UsernameGiven {
                    username: "anna".into(),
                    branch: LoginBranch::PasswordlessPaused,
                },
                &s,
                UnixTime(100),
            )
            .unwrap();
        assert_eq!(t.next, Next::ShowPassword);
        assert_eq!(flow.notice, Some(Notice::PasswordlessPaused));
        proven(&mut flow, &s, facts(false, false));
        assert_eq!(flow.notice, None, "the password login resumes passwordless");
        let mut other = LoginFlow::default();
        at_password(&mut other, &s);
        assert_eq!(other.notice, None, "a plain password branch says nothing");
    }

    #[test]
    fn a_must_change_password_gates_every_continuation() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        flow.apply(
            Event::ServiceAsked {
                request: request(AssuranceLevel::Low),
                hint: None,
            },
            &s,
            UnixTime(90),
        )
        .unwrap();
        at_password(&mut flow, &s);
        let t = proven(&mut flow, &s, facts(true, true));
        assert_eq!(t.next, Next::ChangePassword);
        assert!(!flow.satisfies(&request(AssuranceLevel::Low), &s));
        assert_eq!(flow.continuation(&s, true), Next::ChangePassword);
        let t = flow
            .apply(Event::PasswordChanged { epoch: 4 }, &s, UnixTime(120))
            .unwrap();
        assert_eq!(t.next, Next::Continue("/saml/sso/continue".into()));
        assert_eq!(flow.login.as_ref().unwrap().epoch, 4);
        assert!(flow.satisfies(&request(AssuranceLevel::Low), &s));
    }

    #[test]
    fn substantial_after_a_password_steps_up_or_is_unreachable() {
        let s = Settings::default();
        for (can, expected) in [(true, Next::StartStepUp), (false, Next::LevelUnreachable)] {
            let mut flow = LoginFlow {
                request: Some(request(AssuranceLevel::Substantial)),
                ..LoginFlow::default()
            };
            at_password(&mut flow, &s);
            let t = proven(&mut flow, &s, facts(false, can));
            assert_eq!(t.next, expected);
        }
        // High is never reached by these factors, app or not.
        let mut flow = LoginFlow {
            request: Some(request(AssuranceLevel::High)),
            ..LoginFlow::default()
        };
        at_password(&mut flow, &s);
        assert_eq!(
            proven(&mut flow, &s, facts(false, true)).next,
            Next::LevelUnreachable
        );
        assert_eq!(flow.step, Step::LevelUnreachable);
    }

    #[test]
    fn the_organisations_minimum_counts_without_a_service() {
        let s = Settings {
            required_level: AssuranceLevel::Substantial,
            ..Settings::default()
        };
        let mut flow = LoginFlow::default();
        at_password(&mut flow, &s);
        assert_eq!(
            proven(&mut flow, &s, facts(false, true)).next,
            Next::StartStepUp
        );
    }

    #[test]
    fn a_step_up_adds_the_app_and_keeps_the_login() {
        let s = Settings::default();
        let mut flow = LoginFlow {
            request: Some(request(AssuranceLevel::Substantial)),
            ..LoginFlow::default()
        };
        at_password(&mut flow, &s);
        proven(&mut flow, &s, facts(false, true));
        flow.apply(
            Event::ChallengeStarted {
                challenge_id: "c1".into(),
                purpose: ChallengePurpose::StepUp,
            },
            &s,
            UnixTime(111),
        )
        .unwrap();
        // An approval of another challenge, or for another user, is refused.
        let mut other = facts(false, true);
        other.user_id = "u2".into();
        assert_eq!(
            flow.clone().apply(
                Event::ChallengeApproved {
                    challenge_id: "c0".into(),
                    user: facts(false, true),
                    sid: "x".into()
                },
                &s,
                UnixTime(112)
            ),
            Err(FlowError::OtherChallenge)
        );
        assert_eq!(
            flow.clone().apply(
                Event::ChallengeApproved {
                    challenge_id: "c1".into(),
                    user: other,
                    sid: "x".into()
                },
                &s,
                UnixTime(112)
            ),
            Err(FlowError::OtherUser)
        );
        let t = flow
            .apply(
                Event::ChallengeApproved {
                    challenge_id: "c1".into(),
                    user: facts(false, true),
                    sid: "new".into(),
                },
                &s,
                UnixTime(115),
            )
            .unwrap();
        assert_eq!(t.next, Next::Continue("/saml/sso/continue".into()));
        let login = flow.login.as_ref().unwrap();
        assert_eq!(login.level(), Some(AssuranceLevel::Substantial));
        assert_eq!(login.sid, "sid", "a step-up keeps the login's sid");
        assert_eq!(login.auth_time, 110);
    }

    fn at_totp(flow: &mut LoginFlow, s: &Settings) -> Transition {
        flow.apply(Event::TotpAsked, s, UnixTime(111)).unwrap()
    }

    #[test]
    fn password_and_code_display_reach_substantial() {
        let s = Settings::default();
        let mut flow = LoginFlow {
            request: Some(request(AssuranceLevel::Substantial)),
            ..LoginFlow::default()
        };
        at_password(&mut flow, &s);
        assert_eq!(
            proven(&mut flow, &s, facts(false, true)).next,
            Next::StartStepUp
        );
        let t = at_totp(&mut flow, &s);
        assert_eq!(t.next, Next::AskTotp);
        assert_eq!(flow.step, Step::Totp);
        assert!(!flow.satisfies(&request(AssuranceLevel::Substantial), &s));
        let t = flow
            .apply(
                Event::TotpProven {
                    user_id: "u1".into(),
                },
                &s,
                UnixTime(120),
            )
            .unwrap();
        assert_eq!(t.next, Next::Continue("/saml/sso/continue".into()));
        assert!(t.effects.contains(&Effect::RotateSession));
        assert!(t.effects.contains(&Effect::Audit("login.totp.succeeded")));
        let login = flow.login.as_ref().unwrap();
        assert_eq!(login.level(), Some(AssuranceLevel::Substantial));
        assert_eq!((login.auth_time, login.sid.as_str()), (110, "sid"));
        assert_eq!(flow.step, Step::Done);
        assert!(flow.satisfies(&request(AssuranceLevel::Substantial), &s));
        // Once is enough: a second code is out of order.
        assert!(flow
            .apply(
                Event::TotpProven {
                    user_id: "u1".into()
                },
                &s,
                UnixTime(121)
            )
            .is_err());
        assert!(flow.apply(Event::TotpAsked, &s, UnixTime(121)).is_err());
    }

    #[test]
    fn a_code_display_never_stands_alone() {
        let s = Settings::default();
        // No login at all: no code page, no code.
        let mut flow = LoginFlow::default();
        assert!(flow.apply(Event::TotpAsked, &s, UnixTime(1)).is_err());
        at_password(&mut flow, &s);
        assert!(
            flow.apply(Event::TotpAsked, &s, UnixTime(1)).is_err(),
            "a username is not a password"
        );
        assert!(flow
            .apply(
                Event::TotpProven {
                    user_id: "u1".into()
                },
                &s,
                UnixTime(1)
            )
            .is_err());
        assert!(flow.login.is_none());
        // A passwordless (app) login has no password for the code to add to.
        let mut app = LoginFlow {
            login: Some(Login {
                user_id: "u1".into(),
                factors: vec![ProvenFactor {
                    factor: Factor::App,
                    at: 1,
                }],
                auth_time: 1,
                sid: String::new(),
                epoch: 0,
                must_change_password: false,
            }),
            step: Step::Done,
            ..LoginFlow::default()
        };
        assert!(app.apply(Event::TotpAsked, &s, UnixTime(2)).is_err());
    }

    #[test]
    fn a_code_for_another_user_or_without_the_page_is_refused() {
        let s = Settings::default();
        let mut flow = LoginFlow {
            request: Some(request(AssuranceLevel::Substantial)),
            ..LoginFlow::default()
        };
        at_password(&mut flow, &s);
        proven(&mut flow, &s, facts(false, true));
        assert_eq!(
            flow.clone().apply(
                Event::TotpProven {
                    user_id: "u1".into()
                },
                &s,
                UnixTime(112)
            ),
            Err(FlowError::OutOfOrder("no code was asked for"))
        );
        at_totp(&mut flow, &s);
        assert_eq!(
            flow.clone().apply(
                Event::TotpProven {
                    user_id: "u2".into()
                },
                &s,
                UnixTime(112)
            ),
            Err(FlowError::OtherUser)
        );
        // Signing out at the code page drops the password too.
        let t = flow.apply(Event::SignedOut, &s, UnixTime(113)).unwrap();
        assert!(flow.login.is_none());
        assert_eq!((t.next, flow.step), (Next::ShowUsername, Step::Username));
    }

    #[test]
    fn a_code_display_does_not_reach_high() {
        let s = Settings::default();
        let mut flow = LoginFlow {
            request: Some(request(AssuranceLevel::High)),
            ..LoginFlow::default()
        };
        at_password(&mut flow, &s);
        proven(&mut flow, &s, facts(false, true));
        at_totp(&mut flow, &s);
        let t = flow
            .apply(
                Event::TotpProven {
                    user_id: "u1".into(),
                },
                &s,
                UnixTime(112),
            )
            .unwrap();
        assert_eq!(t.next, Next::LevelUnreachable);
        assert_eq!(flow.step, Step::LevelUnreachable);
    }

    #[test]
    fn a_code_display_vouches_for_enrolment_with_the_password() {
        let mut login = Login {
            user_id: "u".into(),
            factors: vec![ProvenFactor {
                factor: Factor::Totp,
                at: 1,
            }],
            auth_time: 1,
            sid: String::new(),
            epoch: 0,
            must_change_password: false,
        };
        assert_eq!(
            may_enrol(&login, true, &Settings::default()),
            EnrolDecision::NeedsMore
        );
        login.factors.push(ProvenFactor {
            factor: Factor::Password,
            at: 1,
        });
        assert_eq!(
            may_enrol(&login, true, &Settings::default()),
            EnrolDecision::Allowed
        );
    }

    fn passkey_asked(flow: &mut LoginFlow, s: &Settings, purpose: ChallengePurpose) -> Transition {
        flow.apply(
            Event::PasskeyAsked {
                purpose,
                ceremony: "ceremony-1".into(),
            },
            s,
            UnixTime(105),
        )
        .unwrap()
    }

    #[test]
    fn a_passkey_alone_logs_in_at_substantial() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        flow.apply(
            Event::ServiceAsked {
                request: request(AssuranceLevel::Substantial),
                hint: None,
            },
            &s,
            UnixTime(90),
        )
        .unwrap();
        let t = flow
            .apply(
                Event::UsernameGiven {
                    username: "anna".into(),
                    branch: LoginBranch::Passkey,
                },
                &s,
                UnixTime(100),
            )
            .unwrap();
        assert_eq!(t.next, Next::AskPasskey);
        let t = passkey_asked(&mut flow, &s, ChallengePurpose::Login);
        assert_eq!(t.next, Next::AskPasskey);
        assert_eq!(
            flow.passkey_ceremony(),
            Some(("ceremony-1", ChallengePurpose::Login))
        );
        assert_eq!(flow.username(), Some("anna"));
        let t = flow
            .apply(
                Event::PasskeyProven {
                    user: facts(false, false),
                    sid: "sid".into(),
                },
                &s,
                UnixTime(120),
            )
            .unwrap();
        assert_eq!(t.next, Next::Continue("/saml/sso/continue".into()));
        assert!(t.effects.contains(&Effect::RotateSession));
        assert!(t
            .effects
            .contains(&Effect::Audit("login.passkey.succeeded")));
        let login = flow.login.as_ref().unwrap();
        assert_eq!(login.level(), Some(AssuranceLevel::Substantial));
        assert_eq!(login.auth_time, 120);
        assert_eq!(flow.passkey_ceremony(), None, "a ceremony counts once");
        let again = flow.apply(
            Event::PasskeyProven {
                user: facts(false, false),
                sid: "sid".into(),
            },
            &s,
            UnixTime(121),
        );
        assert_eq!(
            again,
            Err(FlowError::OutOfOrder("no passkey was asked for"))
        );
    }

    #[test]
    fn a_passkey_steps_up_a_password_login_of_the_same_user_only() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        at_password(&mut flow, &s);
        proven(&mut flow, &s, facts(false, true));
        passkey_asked(&mut flow, &s, ChallengePurpose::StepUp);
        let mallory = UserFacts {
            user_id: "u2".into(),
            ..facts(false, true)
        };
        let other = flow.apply(
            Event::PasskeyProven {
                user: mallory,
                sid: "sid".into(),
            },
            &s,
            UnixTime(130),
        );
        assert_eq!(other, Err(FlowError::OtherUser));
        assert_eq!(
            flow.login.as_ref().unwrap().level(),
            Some(AssuranceLevel::Low)
        );
        let t = flow
            .apply(
                Event::PasskeyProven {
                    user: facts(false, true),
                    sid: "sid2".into(),
                },
                &s,
                UnixTime(131),
            )
            .unwrap();
        assert!(t
            .effects
            .contains(&Effect::Audit("login.step_up.succeeded")));
        let login = flow.login.as_ref().unwrap();
        assert_eq!(login.level(), Some(AssuranceLevel::Substantial));
        assert_eq!(login.sid, "sid", "a step-up keeps the login's sid");
        assert_eq!(login.auth_time, 110);
        // A second passkey step-up of the same login has nothing to add.
        let twice = flow.apply(
            Event::PasskeyAsked {
                purpose: ChallengePurpose::StepUp,
                ceremony: "c2".into(),
            },
            &s,
            UnixTime(132),
        );
        assert!(twice.is_err());
    }

    #[test]
    fn a_passkey_needs_a_pending_username_or_a_login() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        let t = flow.apply(
            Event::PasskeyAsked {
                purpose: ChallengePurpose::Login,
                ceremony: "c".into(),
            },
            &s,
            UnixTime(1),
        );
        assert!(t.is_err(), "no username yet");
        let t = flow.apply(
            Event::PasskeyAsked {
                purpose: ChallengePurpose::StepUp,
                ceremony: "c".into(),
            },
            &s,
            UnixTime(1),
        );
        assert!(t.is_err(), "no login to step up");
        at_password(&mut flow, &s);
        passkey_asked(&mut flow, &s, ChallengePurpose::Login);
        // "Log in with password instead" leaves the ceremony behind.
        let t = flow.apply(Event::PasswordInstead, &s, UnixTime(2)).unwrap();
        assert_eq!(t.next, Next::ShowPassword);
        assert_eq!(
            flow.step,
            Step::Password {
                username: "anna".into()
            }
        );
        assert!(flow
            .apply(
                Event::PasskeyProven {
                    user: facts(false, false),
                    sid: "s".into()
                },
                &s,
                UnixTime(3)
            )
            .is_err());
        assert!(flow.login.is_none());
    }

    #[test]
    fn the_strongest_second_factor_first_unless_the_browser_chose_another() {
        use SecondFactor::{App, Passkey, Totp};
        assert_eq!(
            second_factor_order(false, true, true, None),
            vec![App, Totp]
        );
        assert_eq!(
            second_factor_order(false, true, true, Some(Totp)),
            vec![Totp, App]
        );
        assert_eq!(
            second_factor_order(false, true, true, Some(App)),
            vec![App, Totp]
        );
        assert_eq!(
            second_factor_order(true, true, true, None),
            vec![Passkey, App, Totp],
            "a passkey cannot be phished: first"
        );
        assert_eq!(
            second_factor_order(true, true, true, Some(Totp)),
            vec![Totp, Passkey, App]
        );
        // A choice the user no longer has is no choice.
        assert_eq!(
            second_factor_order(false, true, false, Some(Totp)),
            vec![App]
        );
        assert_eq!(
            second_factor_order(false, false, true, Some(App)),
            vec![Totp]
        );
        assert_eq!(
            second_factor_order(true, false, false, Some(App)),
            vec![Passkey]
        );
        assert!(second_factor_order(false, false, false, Some(App)).is_empty());
        assert_eq!(SecondFactor::parse("totp"), Some(Totp));
        assert_eq!(SecondFactor::parse(App.as_str()), Some(App));
        assert_eq!(SecondFactor::parse("passkey"), Some(Passkey));
        assert_eq!(SecondFactor::parse("key"), None);
        assert_eq!(SecondFactor::parse("TOTP"), None);
    }

    #[test]
    fn removing_a_factor_needs_a_substantial_login() {
        let mut login = Login {
            user_id: "u".into(),
            factors: vec![ProvenFactor {
                factor: Factor::Password,
                at: 1,
            }],
            auth_time: 1,
            sid: String::new(),
            epoch: 0,
            must_change_password: false,
        };
        assert!(!may_remove_factor(&login), "a password alone");
        login.factors.push(ProvenFactor {
            factor: Factor::App,
            at: 2,
        });
        assert!(may_remove_factor(&login), "password and app");
        login.must_change_password = true;
        assert!(
            !may_remove_factor(&login),
            "a one-time password gates it too"
        );
    }

    #[test]
    fn psd2_mode_hides_a_wrong_password_until_the_end() {
        let on = Settings {
            psd2_mode: true,
            ..Settings::default()
        };
        let mut flow = LoginFlow {
            request: Some(request(AssuranceLevel::Substantial)),
            ..LoginFlow::default()
        };
        at_password(&mut flow, &on);
        // Off, or a login that needs one factor only: nothing to hide.
        assert!(flow
            .clone()
            .apply(
                Event::PasswordFailedHidden,
                &Settings::default(),
                UnixTime(101)
            )
            .is_err());
        let mut low = LoginFlow::default();
        at_password(&mut low, &on);
        assert!(!low.hides_password_failure(&on));
        assert!(low
            .apply(Event::PasswordFailedHidden, &on, UnixTime(101))
            .is_err());

        let t = flow
            .apply(Event::PasswordFailedHidden, &on, UnixTime(101))
            .unwrap();
        assert_eq!(
            t.next,
            Next::AskTotp,
            "the same page as after a right password"
        );
        assert!(flow.login.is_none(), "nothing is proven");
        assert_eq!(flow.username(), Some("anna"));
        // A code cannot make it a login.
        assert!(flow
            .clone()
            .apply(
                Event::TotpProven {
                    user_id: "u1".into()
                },
                &on,
                UnixTime(102)
            )
            .is_err());
        let t = flow
            .apply(
                Event::DetailsWrong {
                    username: "anna".into(),
                },
                &on,
                UnixTime(102),
            )
            .unwrap();
        assert_eq!(t.next, Next::ShowPassword);
        assert_eq!(flow.notice, Some(Notice::DetailsWrong));
        assert_eq!(
            flow.step,
            Step::Password {
                username: "anna".into()
            }
        );
    }

    #[test]
    fn psd2_mode_ends_a_right_password_with_a_wrong_code_the_same_way() {
        let on = Settings {
            psd2_mode: true,
            ..Settings::default()
        };
        let mut flow = LoginFlow {
            request: Some(request(AssuranceLevel::Substantial)),
            ..LoginFlow::default()
        };
        at_password(&mut flow, &on);
        proven(&mut flow, &on, facts(false, true));
        at_totp(&mut flow, &on);
        let t = flow
            .apply(
                Event::DetailsWrong {
                    username: "anna".into(),
                },
                &on,
                UnixTime(112),
            )
            .unwrap();
        assert!(flow.login.is_none(), "the password counts no more");
        assert_eq!(t.effects, vec![Effect::RotateSession]);
        assert_eq!(flow.notice, Some(Notice::DetailsWrong));
        // Without PSD2 mode a wrong code just asks again; this event is out of order.
        let mut off = LoginFlow {
            request: Some(request(AssuranceLevel::Substantial)),
            ..LoginFlow::default()
        };
        let s = Settings::default();
        at_password(&mut off, &s);
        proven(&mut off, &s, facts(false, true));
        at_totp(&mut off, &s);
        assert!(off
            .apply(
                Event::DetailsWrong {
                    username: "anna".into()
                },
                &s,
                UnixTime(112)
            )
            .is_err());
    }

    #[test]
    fn passwordless_login_and_giving_up_on_it() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        let t = flow
            .apply(
                Event::UsernameGiven {
                    username: "anna".into(),
                    branch: LoginBranch::Passwordless,
                },
                &s,
                UnixTime(100),
            )
            .unwrap();
        assert_eq!(t.next, Next::Wait);
        flow.apply(
            Event::ChallengeStarted {
                challenge_id: "c1".into(),
                purpose: ChallengePurpose::Login,
            },
            &s,
            UnixTime(100),
        )
        .unwrap();
        let mut tried = flow.clone();
        let t = tried
            .apply(Event::PasswordInstead, &s, UnixTime(101))
            .unwrap();
        assert_eq!(t.next, Next::ShowPassword);
        assert_eq!(t.effects, vec![Effect::CancelChallenge("c1".into())]);
        assert_eq!(tried.username(), Some("anna"));

        let t = flow
            .apply(
                Event::ChallengeApproved {
                    challenge_id: "c1".into(),
                    user: facts(false, true),
                    sid: "s".into(),
                },
                &s,
                UnixTime(105),
            )
            .unwrap();
        assert_eq!(t.next, Next::Continue("/account".into()));
        assert_eq!(
            flow.login.as_ref().unwrap().level(),
            Some(AssuranceLevel::Substantial)
        );
        // Approving twice (a second tab) is out of order, not a second login.
        assert!(flow
            .apply(
                Event::ChallengeApproved {
                    challenge_id: "c1".into(),
                    user: facts(false, true),
                    sid: "s".into()
                },
                &s,
                UnixTime(106)
            )
            .is_err());
    }

    #[test]
    fn an_unreachable_level_is_owed_once_to_the_service_that_asked() {
        let s = Settings::default();
        let mut flow = LoginFlow {
            request: Some(request(AssuranceLevel::Substantial)),
            ..LoginFlow::default()
        };
        at_password(&mut flow, &s);
        proven(&mut flow, &s, facts(false, false));
        let asked = request(AssuranceLevel::Substantial);
        let mut other = asked.clone();
        other.resume = "/authorize/continue".into();
        assert!(flow.owes_unreachable(&asked));
        assert!(!flow.owes_unreachable(&other));
        flow.apply(Event::ServiceAnswered, &s, UnixTime(120))
            .unwrap();
        assert!(!flow.owes_unreachable(&asked));
        assert_eq!(
            (flow.request.clone(), flow.step.clone()),
            (None, Step::Done)
        );
        // A login that lapses is dropped, and the session id changes.
        let t = flow.apply(Event::LoginLapsed, &s, UnixTime(130)).unwrap();
        assert!(flow.login.is_none());
        assert_eq!(t.effects, vec![Effect::RotateSession]);
    }

    #[test]
    fn a_new_username_cancels_the_waiting_challenge() {
        let s = Settings::default();
        let mut flow = LoginFlow {
            step: Step::Challenge {
                username: "anna".into(),
                challenge_id: "c1".into(),
                purpose: ChallengePurpose::Login,
            },
            ..LoginFlow::default()
        };
        let t = flow
            .apply(
                Event::UsernameGiven {
                    username: "bo".into(),
                    branch: LoginBranch::Password,
                },
                &s,
                UnixTime(1),
            )
            .unwrap();
        assert_eq!(t.effects, vec![Effect::CancelChallenge("c1".into())]);
        assert_eq!(flow.username(), Some("bo"));
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        assert!(flow
            .apply(
                Event::PasswordProven {
                    user: facts(false, false),
                    sid: "s".into()
                },
                &s,
                UnixTime(1)
            )
            .is_err());
        assert!(flow
            .apply(Event::PasswordChanged { epoch: 1 }, &s, UnixTime(1))
            .is_err());
        assert!(flow.apply(Event::PasswordInstead, &s, UnixTime(1)).is_err());
        assert!(flow.login.is_none());
    }

    #[test]
    fn a_forced_login_drops_the_old_one_but_keeps_the_request() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        at_password(&mut flow, &s);
        proven(&mut flow, &s, facts(false, false));
        let mut forced = request(AssuranceLevel::Low);
        forced.not_before = Some(200);
        let t = flow
            .apply(
                Event::ServiceAsked {
                    request: forced.clone(),
                    hint: Some("anna".into()),
                },
                &s,
                UnixTime(200),
            )
            .unwrap();
        assert_eq!(t.next, Next::ShowUsername);
        assert!(t.effects.contains(&Effect::RotateSession));
        assert!(flow.login.is_none());
        assert_eq!(flow.request, Some(forced));
        assert_eq!(flow.hint.as_deref(), Some("anna"));
    }

    #[test]
    fn login_currency_follows_epoch_and_lifetime() {
        let s = Settings::default();
        let login = Login {
            user_id: "u".into(),
            factors: vec![],
            auth_time: 1000,
            sid: String::new(),
            epoch: 2,
            must_change_password: false,
        };
        assert!(login.is_current(2, &s, UnixTime(1000 + s.session_absolute_seconds)));
        assert!(!login.is_current(3, &s, UnixTime(1001)), "password changed");
        assert!(!login.is_current(2, &s, UnixTime(1001 + s.session_absolute_seconds)));
    }

    #[test]
    fn enrolment_needs_more_than_a_password() {
        let mut login = Login {
            user_id: "u".into(),
            factors: vec![ProvenFactor {
                factor: Factor::Password,
                at: 1,
            }],
            auth_time: 1,
            sid: String::new(),
            epoch: 0,
            must_change_password: false,
        };
        let off = Settings::default();
        let on = Settings {
            first_device_with_password: true,
            ..Settings::default()
        };
        assert_eq!(may_enrol(&login, false, &off), EnrolDecision::NeedsMore);
        assert_eq!(
            may_enrol(&login, false, &on),
            EnrolDecision::AllowedFirstDevice
        );
        assert_eq!(may_enrol(&login, true, &on), EnrolDecision::NeedsMore);
        login.factors.push(ProvenFactor {
            factor: Factor::App,
            at: 2,
        });
        assert_eq!(may_enrol(&login, true, &off), EnrolDecision::Allowed);
        login.must_change_password = true;
        assert_eq!(may_enrol(&login, true, &on), EnrolDecision::NeedsMore);
    }

    #[test]
    fn only_local_paths_resume() {
        for good in ["/account", "/saml/sso/continue", "/admin/users?x=1"] {
            assert!(is_local_path(good), "{good}");
        }
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "account",
        ] {
            assert!(!is_local_path(bad), "{bad}");
        }
    }
}

#[cfg(test)]
mod upstream_tests {
    use super::*;

    fn attempt(state: &str, at: i64) -> UpstreamAttempt {
        UpstreamAttempt {
            state: state.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            started_at: at,
        }
    }

    fn user(id: &str) -> UserFacts {
        UserFacts {
            user_id: id.into(),
            must_change_password: false,
            epoch: 1,
            can_step_up: false,
        }
    }

    fn proven(state: &str, id: &str, level: AssuranceLevel) -> Event {
        Event::UpstreamProven {
            state: state.into(),
            user: user(id),
            level,
            sid: "sid".into(),
        }
    }

    fn started(flow: &mut LoginFlow, s: &Settings) {
        let t = flow
            .apply(Event::UpstreamStarted(attempt("st", 100)), s, UnixTime(100))
            .unwrap();
        assert_eq!(t.next, Next::GoUpstream);
    }

    #[test]
    fn an_upstream_login_counts_at_its_level_and_answers_the_service() {
        let s = Settings::default();
        let mut flow = LoginFlow {
            request: Some(ServiceRequest {
                service: "Mail".into(),
                level: AssuranceLevel::Substantial,
                not_before: None,
                resume: "/saml/sso/continue".into(),
                answers_protocol: true,
            }),
            ..LoginFlow::default()
        };
        started(&mut flow, &s);
        assert!(flow.upstream_attempt("st", UnixTime(101)).is_some());
        assert!(flow.upstream_attempt("sT", UnixTime(101)).is_none());
        let t = flow
            .apply(
                proven("st", "u1", AssuranceLevel::Substantial),
                &s,
                UnixTime(110),
            )
            .unwrap();
        assert_eq!(t.next, Next::Continue("/saml/sso/continue".into()));
        assert!(t.effects.contains(&Effect::RotateSession));
        assert!(t
            .effects
            .contains(&Effect::Audit("login.upstream.succeeded")));
        let login = flow.login.clone().unwrap();
        assert_eq!(login.level(), Some(AssuranceLevel::Substantial));
        assert_eq!(login.auth_time, 110);
        // The attempt is used up: the same answer again is refused.
        assert_eq!(
            flow.apply(
                proven("st", "u1", AssuranceLevel::Substantial),
                &s,
                UnixTime(111)
            ),
            Err(FlowError::UpstreamState)
        );
        // And the upstream login lets the user enrol a first device (DESIGN's rule).
        assert_eq!(may_enrol(&login, false, &s), EnrolDecision::Allowed);
    }

    #[test]
    fn a_low_upstream_login_does_not_open_enrolment() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        started(&mut flow, &s);
        flow.apply(proven("st", "u1", AssuranceLevel::Low), &s, UnixTime(110))
            .unwrap();
        let login = flow.login.unwrap();
        assert_eq!(login.level(), Some(AssuranceLevel::Low));
        assert_eq!(may_enrol(&login, false, &s), EnrolDecision::NeedsMore);
    }

    #[test]
    fn a_wrong_old_or_missing_attempt_is_refused_and_changes_nothing() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        assert_eq!(
            flow.apply(proven("st", "u1", AssuranceLevel::High), &s, UnixTime(1)),
            Err(FlowError::UpstreamState)
        );
        started(&mut flow, &s);
        let before = flow.clone();
        for (state, at) in [
            ("other", 110),
            ("", 110),
            ("st", 100 + UPSTREAM_ATTEMPT_SECONDS + 1),
        ] {
            assert_eq!(
                flow.apply(proven(state, "u1", AssuranceLevel::High), &s, UnixTime(at)),
                Err(FlowError::UpstreamState)
            );
            assert_eq!(flow, before);
        }
        // A refusal from the upstream uses the attempt up.
        let t = flow
            .apply(Event::UpstreamFailed, &s, UnixTime(110))
            .unwrap();
        assert_eq!(t.next, Next::ShowUsername);
        assert_eq!(flow.step, Step::Username);
        assert!(flow.upstream_attempt("st", UnixTime(110)).is_none());
        assert!(flow.login.is_none());
    }

    /// Signed in with a password, then the upstream: linked only when the password is
    /// recent, and the login stays the password's level either way.
    #[test]
    fn a_signed_in_password_links_only_when_recent_and_gains_no_level() {
        let s = Settings::default();
        let link = PendingLink {
            subject: "h".into(),
            level: AssuranceLevel::Substantial,
            at: 0,
        };
        for (signed_in_at, links) in [(50, true), (100 - UPSTREAM_ATTEMPT_SECONDS - 1, false)] {
            let mut flow = LoginFlow {
                login: Some(Login {
                    user_id: "u1".into(),
                    factors: vec![ProvenFactor {
                        factor: Factor::Password,
                        at: signed_in_at,
                    }],
                    auth_time: signed_in_at,
                    sid: "sid".into(),
                    epoch: 0,
                    must_change_password: false,
                }),
                step: Step::Done,
                ..LoginFlow::default()
            };
            started(&mut flow, &s);
            let t = flow
                .apply(
                    Event::UpstreamUnlinked {
                        state: "st".into(),
                        link: Some(link.clone()),
                    },
                    &s,
                    UnixTime(110),
                )
                .unwrap();
            assert_eq!(
                t.effects
                    .iter()
                    .any(|e| matches!(e, Effect::LinkUpstream { .. })),
                links,
                "password at {signed_in_at}"
            );
            assert_eq!(
                flow.login.unwrap().level(),
                Some(AssuranceLevel::Low),
                "password at {signed_in_at}"
            );
        }
    }

    #[test]
    fn an_unlinked_identity_is_linked_by_the_next_password_login_only() {
        let s = Settings::default();
        let link = PendingLink {
            subject: "h".into(),
            level: AssuranceLevel::Substantial,
            at: 110,
        };
        let mut flow = LoginFlow::default();
        started(&mut flow, &s);
        let t = flow
            .apply(
                Event::UpstreamUnlinked {
                    state: "st".into(),
                    link: Some(link.clone()),
                },
                &s,
                UnixTime(110),
            )
            .unwrap();
        assert_eq!(t.next, Next::ShowUsername);
        assert!(flow.login.is_none());
        flow.apply(
            Event::UsernameGiven {
                username: "anna".into(),
                branch: LoginBranch::Password,
            },
            &s,
            UnixTime(120),
        )
        .unwrap();
        let t = flow
            .apply(
                Event::PasswordProven {
                    user: user("u1"),
                    sid: "sid".into(),
                },
                &s,
                UnixTime(130),
            )
            .unwrap();
        assert!(t.effects.contains(&Effect::LinkUpstream {
            user_id: "u1".into(),
            link
        }));
        let login = flow.login.clone().unwrap();
        assert_eq!(
            login.level(),
            Some(AssuranceLevel::Low),
            "the linking login is the password's alone: it must not become Substantial"
        );
        assert_eq!(flow.upstream_link, None, "used once");

        // Switching user forgets a pending link; a stale one links nothing.
        let mut flow = LoginFlow {
            upstream_link: Some(PendingLink {
                subject: "h".into(),
                level: AssuranceLevel::Substantial,
                at: 0,
            }),
            ..LoginFlow::default()
        };
        let mut signed_out = flow.clone();
        signed_out
            .apply(Event::SignedOut, &s, UnixTime(10))
            .unwrap();
        assert_eq!(signed_out.upstream_link, None);
        flow.apply(
            Event::UsernameGiven {
                username: "anna".into(),
                branch: LoginBranch::Password,
            },
            &s,
            UnixTime(UPSTREAM_ATTEMPT_SECONDS + 5),
        )
        .unwrap();
        let t = flow
            .apply(
                Event::PasswordProven {
                    user: user("u1"),
                    sid: "sid".into(),
                },
                &s,
                UnixTime(UPSTREAM_ATTEMPT_SECONDS + 6),
            )
            .unwrap();
        assert!(!t
            .effects
            .iter()
            .any(|e| matches!(e, Effect::LinkUpstream { .. })));
        assert_eq!(flow.login.unwrap().level(), Some(AssuranceLevel::Low));
    }

    #[test]
    fn a_pending_link_is_dropped_when_the_user_is_sent_to_the_app_or_a_passkey() {
        let s = Settings::default();
        let pending = || LoginFlow {
            upstream_link: Some(PendingLink {
                subject: "h".into(),
                level: AssuranceLevel::Substantial,
                at: 100,
            }),
            ..LoginFlow::default()
        };
        for (branch, kept) in [
            (LoginBranch::Password, true),
            (LoginBranch::PasswordlessPaused, true),
            (LoginBranch::Passwordless, false),
            (LoginBranch::Passkey, false),
        ] {
            let mut flow = pending();
            flow.apply(
                Event::UsernameGiven {
                    username: "anna".into(),
                    branch,
                },
                &s,
                UnixTime(110),
            )
            .unwrap();
            assert_eq!(flow.upstream_link.is_some(), kept, "{branch:?}");
        }
    }

    #[test]
    fn an_upstream_answer_for_another_user_adds_nothing_to_a_login() {
        let s = Settings::default();
        let mut flow = LoginFlow::default();
        flow.apply(
            Event::UsernameGiven {
                username: "anna".into(),
                branch: LoginBranch::Password,
            },
            &s,
            UnixTime(100),
        )
        .unwrap();
        flow.apply(
            Event::PasswordProven {
                user: user("u1"),
                sid: "sid".into(),
            },
            &s,
            UnixTime(100),
        )
        .unwrap();
        started(&mut flow, &s);
        assert_eq!(
            flow.clone().apply(
                proven("st", "u2", AssuranceLevel::Substantial),
                &s,
                UnixTime(110)
            ),
            Err(FlowError::OtherUser)
        );
        flow.apply(
            proven("st", "u1", AssuranceLevel::Substantial),
            &s,
            UnixTime(110),
        )
        .unwrap();
        let login = flow.login.unwrap();
        assert_eq!(login.level(), Some(AssuranceLevel::Substantial));
        assert_eq!((login.auth_time, login.sid.as_str()), (100, "sid"));
    }
}
