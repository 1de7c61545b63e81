//! Passkeys as a way to log in: adding one on the devices page (a Substantial login only),
//! the passkey step of a login (passwordless, or after the password), and removing one.
//! The relying party's checks are in `crate::passkey`; the rules in the flow.

use sesam_core::flow::{ChallengePurpose, Event, Next};
use sesam_core::{LoginFlow, User, UserId, Username};
use sesam_store::{NewPasskey, PasskeyRecord};

use crate::passkey::{Ceremony, PasskeyError, RelyingParty};
use crate::service::account::{may_add_factor, self_audit};
use crate::service::login::{facts, new_sid, signed_in, Moved};
use crate::service::{perform, Origin, ServiceError};
use crate::state::AppState;

/// A user may hold this many passkeys (a phone, a laptop, two security keys… and spares).
pub const MAX_PASSKEYS: usize = 10;
/// The longest name a passkey may have on the devices page.
const MAX_NAME_CHARS: usize = 64;

fn rp(state: &AppState) -> Option<&RelyingParty> {
    state.passkeys.as_deref()
}

/// Why a passkey cannot be added now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A password alone may not add a factor.
    NeedsMore,
    /// The server's public URL has no domain name, so no passkey can name it.
    NotConfigured,
    TooMany,
    /// Nothing was started in this browser (or it was finished in another tab).
    NoPending,
}

impl Refusal {
    pub fn text_key(self) -> &'static str {
        match self {
            Refusal::NeedsMore => "passkey.needs_more",
            Refusal::NotConfigured => "passkey.not_configured",
            Refusal::TooMany => "passkey.too_many",
            Refusal::NoPending => "passkey.no_pending",
        }
    }
}

/// DESIGN's rule for every new factor: a Substantial login (no "first device after a
/// password" here: that is for the app's activation code only).
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
        "passkey.registration.refused",
        "a passkey",
    )
    .await?
    {
        return Ok(Err(Refusal::NeedsMore));
    }
    if rp(state).is_none() {
        return Ok(Err(Refusal::NotConfigured));
    }
    Ok(Ok(()))
}

/// "Add a passkey": the options for the browser and the state to keep until it answers.
pub async fn start_registration(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    origin: &Origin,
) -> Result<Result<Ceremony, Refusal>, ServiceError> {
    if let Err(refusal) = may_add(state, flow, user, origin).await? {
        return Ok(Err(refusal));
    }
    let Some(rp) = rp(state) else {
        return Ok(Err(Refusal::NotConfigured));
    };
    let existing = state.store.passkeys_of_user(&user.id).await?;
    if existing.len() >= MAX_PASSKEYS {
        return Ok(Err(Refusal::TooMany));
    }
    rp.start_registration(
        &user.id.0,
        user.username.as_str(),
        &user.display_name,
        &existing,
    )
    .map(Ok)
    .map_err(|e| ServiceError::Internal(format!("passkey options: {}", e.as_str())))
}

/// Why the browser's new passkey was not added. Nothing stored changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationProblem {
    Refused(Refusal),
    Invalid(PasskeyError),
    /// The name is empty, too long or has control characters.
    BadName,
    /// That authenticator's credential is registered already (here or to someone else).
    AlreadyRegistered,
}

impl RegistrationProblem {
    pub fn text_key(self) -> &'static str {
        match self {
            RegistrationProblem::Refused(r) => r.text_key(),
            RegistrationProblem::Invalid(e) => e.text_key(),
            RegistrationProblem::BadName => "passkey.error.name",
            RegistrationProblem::AlreadyRegistered => "passkey.error.already",
        }
    }
}

/// A passkey's name as typed: trimmed, 1 to 64 characters, no control or format characters.
pub fn parse_name(name: &str) -> Option<String> {
    let name = name.trim();
    let chars = name.chars().count();
    let clean = !name.chars().any(|c| {
        c.is_control() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    });
    ((1..=MAX_NAME_CHARS).contains(&chars) && clean).then(|| name.to_owned())
}

/// The browser's new credential for the ceremony `ceremony_state` (kept in this browser's
/// session): checked, and stored under `name`.
pub async fn finish_registration(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    answer: &str,
    name: &str,
    ceremony_state: Option<&str>,
    origin: &Origin,
) -> Result<Result<(), RegistrationProblem>, ServiceError> {
    if let Err(refusal) = may_add(state, flow, user, origin).await? {
        return Ok(Err(RegistrationProblem::Refused(refusal)));
    }
    let (Some(rp), Some(ceremony_state)) = (rp(state), ceremony_state) else {
        return Ok(Err(RegistrationProblem::Refused(Refusal::NoPending)));
    };
    let Some(name) = parse_name(name) else {
        return Ok(Err(RegistrationProblem::BadName));
    };
    let registered = match rp.finish_registration(answer, ceremony_state) {
        Ok(r) => r,
        Err(e) => {
            state
                .store
                .append_audit(
                    &self_audit(user, origin, "passkey.registration.failed").detail(e.as_str()),
                    state.now(),
                )
                .await?;
            return Ok(Err(RegistrationProblem::Invalid(e)));
        }
    };
    if state.store.passkeys_of_user(&user.id).await?.len() >= MAX_PASSKEYS {
        return Ok(Err(RegistrationProblem::Refused(Refusal::TooMany)));
    }
    let now = state.now();
    let added = state
        .store
        .add_passkey(
            NewPasskey {
                user_id: &user.id,
                credential_id: &registered.credential_id,
                display_name: &name,
                passkey: &registered.passkey_json,
                sign_count: registered.sign_count,
                transports: &registered.transports,
            },
            now,
        )
        .await?;
    if added.is_none() {
        return Ok(Err(RegistrationProblem::AlreadyRegistered));
    }
    state
        .store
        .append_audit(
            &self_audit(user, origin, "passkey.registered").detail(name),
            now,
        )
        .await?;
    Ok(Ok(()))
}

/// Whether `user` can prove a passkey here now.
pub async fn available(state: &AppState, user: &User) -> Result<bool, ServiceError> {
    if rp(state).is_none() {
        return Ok(false);
    }
    Ok(!state.store.passkeys_of_user(&user.id).await?.is_empty())
}

/// The passkey step: a new ceremony for the user's passkeys, recorded in the flow. `None`
/// when the flow cannot take it now or the user has no passkey.
pub async fn ask(
    state: &AppState,
    flow: &mut LoginFlow,
    user: &User,
    purpose: ChallengePurpose,
    origin: &Origin,
) -> Result<Option<Next>, ServiceError> {
    let Some(rp) = rp(state) else {
        return Ok(None);
    };
    let passkeys = state.store.passkeys_of_user(&user.id).await?;
    let Some(ceremony) = rp
        .start_authentication(&passkeys)
        .map_err(|e| ServiceError::Internal(format!("passkey options: {}", e.as_str())))?
    else {
        return Ok(None);
    };
    let settings = state.store.settings().await?;
    let Ok(t) = flow.apply(
        Event::PasskeyAsked {
            purpose,
            ceremony: ceremony.to_stored(),
        },
        &settings,
        state.now(),
    ) else {
        return Ok(None);
    };
    perform(state, &t.effects, user.username.as_str(), origin).await?;
    Ok(Some(t.next))
}

/// The options the passkey page gives the browser for the ceremony the flow waits for.
pub fn options_of(flow: &LoginFlow) -> Option<String> {
    let (stored, _) = flow.passkey_ceremony()?;
    Ceremony::from_stored(stored).map(|c| c.options_json)
}

#[derive(Debug)]
pub enum PasskeyOutcome {
    Moved(Moved),
    /// The answer was not taken; a new ceremony waits (the old one cannot be answered again).
    Refused(PasskeyError),
    /// No passkey is asked for now: the login page.
    NotAsked,
}

/// The browser's assertion for the ceremony this flow waits for.
pub async fn submit(
    state: &AppState,
    flow: &mut LoginFlow,
    answer: &str,
    origin: &Origin,
) -> Result<PasskeyOutcome, ServiceError> {
    let Some((ceremony, purpose)) = flow.passkey_ceremony().map(|(c, p)| (c.to_owned(), p)) else {
        return Ok(PasskeyOutcome::NotAsked);
    };
    let Some(rp) = rp(state) else {
        return Ok(PasskeyOutcome::NotAsked);
    };
    let user = match purpose {
        ChallengePurpose::StepUp => signed_in(state, flow).await?.map(|(u, _)| u),
        ChallengePurpose::Login => match flow.username().and_then(|n| Username::parse(n).ok()) {
            Some(name) => state.store.find_user_by_username(&name).await?,
            None => None,
        },
    };
    let Some(user) = user.filter(User::is_active) else {
        let settings = state.store.settings().await?;
        flow.apply(Event::SignedOut, &settings, state.now())?;
        return Ok(PasskeyOutcome::NotAsked);
    };
    let passkeys = state.store.passkeys_of_user(&user.id).await?;
    let now = state.now();
    let checked = match Ceremony::from_stored(&ceremony) {
        Some(c) => rp.finish_authentication(answer, &c.state_json, &passkeys),
        None => Err(PasskeyError::WrongChallenge),
    };
    let used = match checked {
        Ok(used) => {
            let counted = state
                .store
                .use_passkey(
                    &user.id,
                    &used.record_id,
                    &used.passkey_json,
                    used.sign_count,
                    now,
                )
                .await?;
            if counted {
                Ok(used)
            } else {
                Err(PasskeyError::CounterRegression)
            }
        }
        Err(e) => Err(e),
    };
    if let Err(e) = used {
        let event = if e == PasskeyError::CounterRegression {
            // A copied authenticator, or one answer sent twice: worth an administrator's look.
            "passkey.counter_regression"
        } else {
            "login.passkey.failed"
        };
        state
            .store
            .append_audit(&self_audit(&user, origin, event).detail(e.as_str()), now)
            .await?;
        // A fresh challenge: the answer just refused (or a copy of it) never counts later.
        ask(state, flow, &user, purpose, origin).await?;
        return Ok(PasskeyOutcome::Refused(e));
    }
    let settings = state.store.settings().await?;
    let mut user_facts = facts(&user);
    user_facts.can_step_up = true;
    let t = flow.apply(
        Event::PasskeyProven {
            user: user_facts,
            sid: new_sid(),
        },
        &settings,
        now,
    )?;
    let rotate = perform(state, &t.effects, user.username.as_str(), origin).await?;
    Ok(PasskeyOutcome::Moved(Moved {
        next: t.next,
        rotate,
    }))
}

/// The user's passkeys for the devices page.
pub async fn of_user(state: &AppState, user: &UserId) -> Result<Vec<PasskeyRecord>, ServiceError> {
    Ok(state.store.passkeys_of_user(user).await?)
}

/// The user removes one of their passkeys (a Substantial login only, as for every way to
/// log in). False when refused or not theirs.
/// What became of "Remove" on a passkey.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// No passkey of this user has that id (or it went in the meantime).
    NotFound,
    /// The login is not enough to remove a way to log in.
    NeedsMore,
}

/// Removes one of the user's own passkeys; the id is the stored one (at most 64 characters).
pub async fn remove(
    state: &AppState,
    flow: &LoginFlow,
    user: &User,
    id: &str,
    origin: &Origin,
) -> Result<Removal, ServiceError> {
    if id.len() > 64 || !of_user(state, &user.id).await?.iter().any(|p| p.id == id) {
        return Ok(Removal::NotFound);
    }
    let what = format!("passkey {id}");
    if !crate::service::account::may_remove(state, flow, user, origin, &what).await? {
        return Ok(Removal::NeedsMore);
    }
    if !state.store.delete_passkey(&user.id, id).await? {
        return Ok(Removal::NotFound);
    }
    state
        .store
        .append_audit(
            &self_audit(user, origin, "passkey.removed").detail(what),
            state.now(),
        )
        .await?;
    Ok(Removal::Removed)
}

/// What the passkey page shows: whose login, the browser's options, and whether the
/// password is the other way (a passwordless login) or the login is cancelled (a step-up).
pub struct PasskeyPage {
    pub username: String,
    pub options_json: String,
    pub purpose: ChallengePurpose,
}

/// The passkey page for the ceremony this flow waits for; `None` when none waits.
pub async fn page(
    state: &AppState,
    flow: &mut LoginFlow,
) -> Result<Option<PasskeyPage>, ServiceError> {
    let Some((_, purpose)) = flow.passkey_ceremony() else {
        return Ok(None);
    };
    let Some(options_json) = options_of(flow) else {
        return Ok(None);
    };
    let username = match purpose {
        ChallengePurpose::Login => flow.username().map(str::to_owned),
        ChallengePurpose::StepUp => signed_in(state, flow)
            .await?
            .map(|(u, _)| u.username.as_str().to_owned()),
    };
    Ok(username.map(|username| PasskeyPage {
        username,
        options_json,
        purpose,
    }))
}
