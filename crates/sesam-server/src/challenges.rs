//! Starting a challenge (code, row, pushes) and telling waiting browsers that one changed.
//! Push failures never stop a challenge: the app can always pull it.

use rand::rngs::OsRng;
use sesam_core::{Challenge, ChallengeContext, ChallengeKind, ChallengeState, TwoDigitCode, User};
use sesam_push::{Delivery, Notification, Provider, PushToken};
use sesam_store::{AuditEvent, StoreError};

use crate::state::AppState;

/// Push texts: neutral on purpose (they show on a locked screen).
const PUSH_TITLE: &str = "Sesam";
const PUSH_BODY: &str = "Open the app to see a login request.";

pub struct Started {
    pub challenge: Challenge,
    /// Devices whose push did not go through (the app can still pull the challenge).
    pub unreached: usize,
}

/// Starts a challenge of `kind` for `user` on `devices`: a fresh code, the row (cancelling
/// the user's older pending one), a push to each device with a token, audit events.
pub async fn start(
    state: &AppState,
    user: &User,
    kind: ChallengeKind,
    devices: &[sesam_store::DeviceRecord],
    context: ChallengeContext,
    lifetime_seconds: i64,
) -> Result<Started, StoreError> {
    let now = state.now();
    let challenge = Challenge {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.id.0.clone(),
        kind,
        code: TwoDigitCode::random(&mut OsRng),
        state: ChallengeState::Pending,
        created_at: now,
        expires_at: now.plus_seconds(lifetime_seconds),
        context,
        fraud_reported: false,
    };
    let ids: Vec<String> = devices.iter().map(|d| d.device.id.clone()).collect();
    let cancelled = state.store.create_challenge(&challenge, &ids).await?;
    let audit = |event: &str| {
        AuditEvent::new(event)
            .actor("system")
            .subject(user.username.as_str())
    };
    for old in &cancelled {
        state
            .store
            .append_audit(
                &audit("challenge.cancelled")
                    .detail(format!("challenge {old}: replaced by a newer login")),
                now,
            )
            .await?;
        announce(state, old).await;
    }
    state
        .store
        .append_audit(
            &audit("challenge.created").detail(format!(
                "challenge {} ({}) to {} device(s)",
                challenge.id,
                kind.as_str(),
                ids.len()
            )),
            now,
        )
        .await?;

    let notification = Notification {
        challenge_id: challenge.id.clone(),
        title: PUSH_TITLE.into(),
        body: PUSH_BODY.into(),
    };
    let mut unreached = 0;
    for device in devices {
        let (Some(provider), Some(token)) = (&device.push_provider, &device.push_token) else {
            unreached += 1;
            continue;
        };
        let Ok(provider) = provider.parse::<Provider>() else {
            unreached += 1;
            continue;
        };
        let to = PushToken {
            provider,
            token: token.clone(),
        };
        let id = &device.device.id;
        let delivery = state.pusher.send(&to, &notification).await;
        state.metrics.push(
            provider.as_str(),
            match &delivery {
                Delivery::Delivered => "delivered",
                Delivery::TokenInvalid => "token_invalid",
                Delivery::Failed(_) => "failed",
            },
        );
        match delivery {
            Delivery::Delivered => {
                state
                    .store
                    .append_audit(
                        &audit("push.sent")
                            .detail(format!("challenge {} to device {id}", challenge.id)),
                        now,
                    )
                    .await?;
            }
            Delivery::TokenInvalid => {
                unreached += 1;
                state.store.remove_push_token(id, token, now).await?;
                state
                    .store
                    .append_audit(
                        &audit("push.token_removed").detail(format!(
                            "device {id}: the push service called its token invalid"
                        )),
                        now,
                    )
                    .await?;
            }
            Delivery::Failed(reason) => {
                unreached += 1;
                tracing::warn!(device = %id, %reason, "push failed");
                state
                    .store
                    .append_audit(
                        &audit("push.failed").detail(format!(
                            "challenge {} to device {id}: {reason}",
                            challenge.id
                        )),
                        now,
                    )
                    .await?;
            }
        }
    }
    Ok(Started {
        challenge,
        unreached,
    })
}

/// Tells whoever waits on `challenge_id`, on this node at once and on other nodes through
/// the database, to re-read it. A lost announcement only delays: waiters also poll.
pub async fn announce(state: &AppState, challenge_id: &str) {
    let _ = state.challenge_events.send(challenge_id.to_owned());
    if let Err(e) = state.store.notify_challenge(challenge_id).await {
        tracing::warn!(error = %e, "could not announce a challenge change to other nodes");
    }
}

/// Forwards other nodes' announcements (PostgreSQL LISTEN) to this node's waiters, and
/// reconnects after a lost connection. Returns at once with SQLite.
pub async fn relay_notifications(state: AppState) {
    loop {
        match state.store.challenge_listener().await {
            Ok(None) => return,
            Ok(Some(mut listener)) => loop {
                match listener.recv().await {
                    Ok(id) => {
                        let _ = state.challenge_events.send(id);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "challenge notifications interrupted");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot listen for challenge notifications"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
