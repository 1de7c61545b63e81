//! Logging in through the upstream eID (MitID through an OpenID Connect broker): the start,
//! the answer, and linking an upstream identity to a local user. The flow keeps the attempt
//! (state, nonce, PKCE verifier) and decides; these functions do the talking and the storing.

use sesam_core::flow::{Effect, Event, PendingLink};
use sesam_core::{LoginFlow, User, UserId};
use sesam_store::AuditEvent;

use crate::service::login::{facts, follow, new_sid, Moved};
use crate::service::{perform, Origin, ServiceError};
use crate::state::AppState;
use crate::upstream::UpstreamError;

/// How the start went.
#[derive(Debug)]
pub enum Begin {
    /// Send the browser here (the upstream's authorization endpoint).
    Redirect(String),
    /// No upstream is configured.
    NotConfigured,
    /// The upstream's discovery could not be read: try again later.
    Unavailable,
}

/// The browser's way back from the upstream, as it arrived.
#[derive(Debug, Default)]
pub struct Answer {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: who sent the answer, when the upstream says.
    pub iss: Option<String>,
}

/// Why an upstream answer gave no login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The answer belongs to no login this browser began (replayed, old, forged).
    UnknownAttempt,
    /// The upstream said no (the user cancelled, or was refused).
    Denied,
    /// The answer did not verify (signature, key, issuer, nonce, claims).
    Unverified,
    /// The upstream could not be reached.
    Unavailable,
    /// The linked user may not log in (disabled, locked).
    Inactive,
}

#[derive(Debug)]
pub enum Outcome {
    Moved(Moved),
    Refused(Refusal),
    /// Verified, but linked to no local user; `can_link` when a password login now links it.
    Unlinked {
        can_link: bool,
    },
    NotConfigured,
}

fn audit(event: &str, subject: &str, origin: &Origin, detail: String) -> AuditEvent {
    AuditEvent::new(event)
        .actor("upstream")
        .subject(subject)
        .client_ip(origin.ip.clone())
        .detail(detail)
}

/// "Log in with MitID": the attempt goes into the flow, the browser to the upstream. The
/// upstream is asked for the level the login must reach, and at least the level Sesam counts
/// it as (so a first device can be enrolled with it).
pub async fn begin(
    state: &AppState,
    flow: &mut LoginFlow,
    origin: &Origin,
) -> Result<Begin, ServiceError> {
    let Some(upstream) = &state.upstream else {
        return Ok(Begin::NotConfigured);
    };
    let settings = state.store.settings().await?;
    let now = state.now();
    let level = flow.required_level(&settings).max(upstream.config.level);
    let fresh = flow
        .request
        .as_ref()
        .is_some_and(|r| r.not_before.is_some());
    let (url, attempt) = match upstream.authorization(level, now, fresh).await {
        Ok(found) => found,
        Err(e) => {
            state
                .store
                .append_audit(
                    &audit("login.upstream.unavailable", "-", origin, e.to_string()),
                    now,
                )
                .await?;
            tracing::warn!(error = %e, "upstream eID unavailable");
            return Ok(Begin::Unavailable);
        }
    };
    let t = flow.apply(Event::UpstreamStarted(attempt), &settings, now)?;
    perform(state, &t.effects, "-", origin).await?;
    Ok(Begin::Redirect(url))
}

/// The upstream's answer at the callback. Whatever it is, an attempt it matches is used up;
/// an answer that matches none changes nothing.
pub async fn answer(
    state: &AppState,
    flow: &mut LoginFlow,
    answer: Answer,
    origin: &Origin,
) -> Result<Outcome, ServiceError> {
    let Some(upstream) = &state.upstream else {
        return Ok(Outcome::NotConfigured);
    };
    let settings = state.store.settings().await?;
    let now = state.now();
    let given_state = answer.state.unwrap_or_default();
    let Some(attempt) = flow.upstream_attempt(&given_state, now).cloned() else {
        state
            .store
            .append_audit(
                &audit(
                    "login.upstream.refused",
                    "-",
                    origin,
                    "the answer's state matches no upstream login of this browser".into(),
                ),
                now,
            )
            .await?;
        return Ok(Outcome::Refused(Refusal::UnknownAttempt));
    };
    let failed = |flow: &mut LoginFlow| flow.apply(Event::UpstreamFailed, &settings, now);
    let refuse = |detail: String| audit("login.upstream.refused", "-", origin, detail);
    // RFC 9207: the `iss` of the answer, when given, is the configured issuer exactly (no
    // trailing-slash or case folding: the ID token's `iss` is compared exactly too). An
    // answer without it is not refused: Sesam has one upstream, so there is no other OP to
    // mix it up with, and the ID token's own `iss` is checked in `Upstream::verify`.
    if let Some(iss) = answer.iss.as_deref() {
        if iss != upstream.config.issuer {
            failed(flow)?;
            let detail = format!("the answer names another issuer ({})", clip(iss));
            state.store.append_audit(&refuse(detail), now).await?;
            return Ok(Outcome::Refused(Refusal::Unverified));
        }
    }
    if let Some(error) = answer.error {
        failed(flow)?;
        let detail = format!("the upstream answered {}", clip(&error));
        state.store.append_audit(&refuse(detail), now).await?;
        return Ok(Outcome::Refused(Refusal::Denied));
    }
    let Some(code) = answer.code.filter(|c| !c.is_empty() && c.len() <= 2048) else {
        failed(flow)?;
        let detail = "the answer carries no code".to_owned();
        state.store.append_audit(&refuse(detail), now).await?;
        return Ok(Outcome::Refused(Refusal::Unverified));
    };
    let identity = match upstream.verify(&attempt, &code).await {
        Ok(identity) => identity,
        Err(e) => {
            failed(flow)?;
            state
                .store
                .append_audit(&refuse(e.to_string()), now)
                .await?;
            tracing::warn!(error = %e, "upstream eID answer refused");
            return Ok(Outcome::Refused(match e {
                UpstreamError::Unavailable(_) => Refusal::Unavailable,
                _ => Refusal::Unverified,
            }));
        }
    };
    let acr = identity.acr.as_deref().unwrap_or("none").to_owned();
    let linked = state
        .store
        .upstream_link(&upstream.config.issuer, &identity.subject_hash)
        .await?;
    let Some(user_id) = linked else {
        let can_link = upstream.config.link_with_password;
        let link = can_link.then(|| PendingLink {
            subject: identity.subject_hash.clone(),
            level: identity.level,
            at: now.0,
        });
        let t = flow.apply(
            Event::UpstreamUnlinked {
                state: given_state,
                link,
            },
            &settings,
            now,
        )?;
        state
            .store
            .append_audit(
                &audit(
                    "login.upstream.unlinked",
                    "-",
                    origin,
                    format!("no local user is linked to this identity (acr {acr})"),
                ),
                now,
            )
            .await?;
        let linked_now = t
            .effects
            .iter()
            .any(|e| matches!(e, Effect::LinkUpstream { .. }));
        let rotate = perform(state, &t.effects, "-", origin).await?;
        if let (true, Some(login)) = (linked_now, &flow.login) {
            // Signed in with the password already: linked now, and the login goes on.
            let user = state.store.get_user(&UserId(login.user_id.clone())).await?;
            let next = follow(state, flow, t.next, &user, origin).await?;
            return Ok(Outcome::Moved(Moved { next, rotate }));
        }
        return Ok(Outcome::Unlinked { can_link });
    };
    let user = state.store.get_user(&user_id).await?;
    let listed = crate::service::login::directory_lists(state, user, origin).await?;
    let Some(user) = listed.filter(|u: &User| u.is_active()) else {
        failed(flow)?;
        state
            .store
            .append_audit(
                &audit(
                    "login.refused.inactive",
                    "-",
                    origin,
                    "the user linked to this upstream identity may not log in".into(),
                ),
                now,
            )
            .await?;
        return Ok(Outcome::Refused(Refusal::Inactive));
    };
    let t = match flow.apply(
        Event::UpstreamProven {
            state: given_state,
            user: facts(&user),
            level: identity.level,
            sid: new_sid(),
        },
        &settings,
        now,
    ) {
        Ok(t) => t,
        // Signed in as someone else already: this answer adds nothing to that login.
        Err(sesam_core::flow::FlowError::OtherUser) => {
            failed(flow)?;
            let detail = format!(
                "the identity belongs to {}, not to the signed-in user",
                user.username
            );
            state.store.append_audit(&refuse(detail), now).await?;
            return Ok(Outcome::Refused(Refusal::Unverified));
        }
        Err(e) => return Err(e.into()),
    };
    let subject = user.username.as_str();
    state
        .store
        .append_audit(
            &audit(
                "login.upstream.proven",
                subject,
                origin,
                format!("acr {acr}; counts as {}", identity.level.as_str()),
            ),
            now,
        )
        .await?;
    let rotate = perform(state, &t.effects, subject, origin).await?;
    tracing::info!(user = %user.username, level = identity.level.as_str(), "upstream eID login");
    let next = follow(state, flow, t.next, &user, origin).await?;
    Ok(Outcome::Moved(Moved { next, rotate }))
}

/// Stores the link the flow asks for (after the user proved the local password too).
pub(crate) async fn link(
    state: &AppState,
    user_id: &str,
    link: &PendingLink,
    origin: &Origin,
) -> Result<(), ServiceError> {
    let Some(upstream) = &state.upstream else {
        return Ok(());
    };
    let now = state.now();
    let user = state.store.get_user(&UserId(user_id.to_owned())).await?;
    // A password alone links only an account that has no stronger way in to lose: not an
    // administrator, not one already linked, not one with an app, a code display or a
    // passkey (their owners link after a Substantial login, which a password is not).
    let why_not = if user.is_admin {
        Some("the user is an administrator")
    } else if state.store.count_upstream_links(&user.id).await? > 0 {
        Some("the user is linked to an upstream identity already")
    } else if !state.store.devices_of_user(&user.id).await?.is_empty()
        || state.store.totp_of_user(&user.id).await?.is_some()
        || !state.store.passkeys_of_user(&user.id).await?.is_empty()
    {
        Some("the user has a second factor")
    } else {
        None
    };
    let added = match why_not {
        Some(_) => false,
        None => {
            state
                .store
                .add_upstream_link(&upstream.config.issuer, &link.subject, &user.id, now)
                .await?
        }
    };
    if !added {
        // Refused above, or linked to someone in the moments between the answer and the
        // password: the login goes on without the link.
        let why = why_not.unwrap_or("the identity was linked to another user meanwhile");
        state
            .store
            .append_audit(
                &AuditEvent::new("upstream.link_refused")
                    .actor(user.username.as_str())
                    .subject(user.username.as_str())
                    .client_ip(origin.ip.clone())
                    .detail(format!(
                        "{} identity not linked: {why}",
                        upstream.config.label
                    )),
                now,
            )
            .await?;
        return Ok(());
    }
    state
        .store
        .append_audit(
            &AuditEvent::new("upstream.linked")
                .actor(user.username.as_str())
                .subject(user.username.as_str())
                .client_ip(origin.ip.clone())
                .detail(format!(
                    "{} identity linked after the password was proven",
                    upstream.config.label
                )),
            now,
        )
        .await?;
    Ok(())
}

/// At most 100 characters of an outsider's text, for the audit log.
fn clip(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(100).collect()
}
