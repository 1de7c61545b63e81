//! Starting a challenge (code, row, pushes) and telling waiting browsers that one changed.
//! Push failures never stop a challenge: the app can always pull it, and a push the provider
//! could not take just now waits in the retry queue (in the database) for any node to send.

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
    /// Devices with no push address (the app can still pull the challenge).
    pub unreached: usize,
    /// The first attempt of each push, under way on its own task.
    pub pushes: tokio::task::JoinHandle<Vec<PushOutcome>>,
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

    let mut unreached = 0;
    let mut targets = Vec::new();
    for device in devices {
        match push_token(device) {
            Some(to) => targets.push((device.device.id.clone(), to)),
            None => unreached += 1,
        }
    }
    // The pushes go out on their own task: a slow or unreachable provider never holds the
    // browser, which shows the code at once (the app can always pull the challenge).
    let pushes = tokio::spawn({
        let state = state.clone();
        let challenge_id = challenge.id.clone();
        let subject = user.username.as_str().to_owned();
        async move {
            let mut outcomes = Vec::new();
            for (device_id, to) in targets {
                let outcome = deliver(&state, &challenge_id, &device_id, &to, 1, &subject).await;
                outcomes.push(outcome);
            }
            outcomes
        }
    });
    Ok(Started {
        challenge,
        unreached,
        pushes,
    })
}

/// The device's push address, if it has a usable one.
fn push_token(device: &sesam_store::DeviceRecord) -> Option<PushToken> {
    let (Some(provider), Some(token)) = (&device.push_provider, &device.push_token) else {
        return None;
    };
    Some(PushToken {
        provider: provider.parse::<Provider>().ok()?,
        token: token.clone(),
    })
}

/// What became of one push attempt, after the queue was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered,
    /// The provider called the token invalid; it was removed from the device.
    TokenRemoved,
    /// The provider could not take it just now; it waits in the retry queue.
    RetryScheduled,
    /// Refused for good, or out of attempts.
    Failed,
    /// The database failed while recording the result.
    NotRecorded,
}

/// Attempts per push, the first included; with [`retry_delay`] they span about a minute and
/// a half, inside a challenge's two minutes.
pub const PUSH_ATTEMPTS: i64 = 5;

/// Seconds before attempt `next` (2, 3, ...): 5, 10, 20, 40; or the provider's Retry-After
/// when it asked for longer.
fn retry_delay(next: i64, retry_after: Option<u64>) -> i64 {
    let backoff = 5_i64 << (next - 2).clamp(0, 6);
    backoff.max(retry_after.map_or(0, |s| s.min(3600) as i64))
}

/// Sends attempt number `attempt` of the push of `challenge_id` to `device_id`, records the
/// result (audit, metrics, the retry queue) and never fails: a push is not worth a 500.
async fn deliver(
    state: &AppState,
    challenge_id: &str,
    device_id: &str,
    to: &PushToken,
    attempt: i64,
    subject: &str,
) -> PushOutcome {
    let notification = Notification {
        challenge_id: challenge_id.to_owned(),
        title: PUSH_TITLE.into(),
        body: PUSH_BODY.into(),
    };
    let delivery = state.pusher.send(to, &notification).await;
    state.metrics.push(
        to.provider.as_str(),
        match &delivery {
            Delivery::Delivered => "delivered",
            Delivery::TokenInvalid => "token_invalid",
            Delivery::Unavailable { .. } if attempt < PUSH_ATTEMPTS => "retry_scheduled",
            Delivery::Unavailable { .. } | Delivery::Failed(_) => "failed",
        },
    );
    match record_delivery(
        state,
        challenge_id,
        device_id,
        to,
        attempt,
        subject,
        delivery,
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::warn!(error = %e, device = %device_id, "could not record a push result");
            PushOutcome::NotRecorded
        }
    }
}

async fn record_delivery(
    state: &AppState,
    challenge_id: &str,
    device_id: &str,
    to: &PushToken,
    attempt: i64,
    subject: &str,
    delivery: Delivery,
) -> Result<PushOutcome, StoreError> {
    let now = state.now();
    let audit = |event: &str, detail: String| {
        AuditEvent::new(event)
            .actor("system")
            .subject(subject)
            .detail(detail)
    };
    let retried = attempt > 1;
    let (event, detail, outcome) = match delivery {
        Delivery::Delivered => (
            "push.sent",
            format!("challenge {challenge_id} to device {device_id} (attempt {attempt})"),
            PushOutcome::Delivered,
        ),
        Delivery::TokenInvalid => {
            state
                .store
                .remove_push_token(device_id, &to.token, now)
                .await?;
            (
                "push.token_removed",
                format!("device {device_id}: the push service called its token invalid"),
                PushOutcome::TokenRemoved,
            )
        }
        Delivery::Unavailable {
            reason,
            retry_after,
        } if attempt < PUSH_ATTEMPTS => {
            let delay = retry_delay(attempt + 1, retry_after);
            tracing::warn!(device = %device_id, %reason, attempt, delay, "push failed, will retry");
            state
                .store
                .schedule_push_retry(
                    challenge_id,
                    device_id,
                    attempt,
                    now.plus_seconds(delay),
                    &reason,
                )
                .await?;
            // Announced once, at the first failure; later rounds only move the row.
            if retried {
                return Ok(PushOutcome::RetryScheduled);
            }
            (
                "push.retry_scheduled",
                format!(
                    "challenge {challenge_id} to device {device_id}: {reason}; trying again in {delay} s"
                ),
                PushOutcome::RetryScheduled,
            )
        }
        Delivery::Unavailable { reason, .. } | Delivery::Failed(reason) => {
            tracing::warn!(device = %device_id, %reason, attempt, "push failed");
            (
                "push.failed",
                format!(
                    "challenge {challenge_id} to device {device_id} (attempt {attempt}): {reason}"
                ),
                PushOutcome::Failed,
            )
        }
    };
    if retried && outcome != PushOutcome::RetryScheduled {
        state.store.drop_push_retry(challenge_id, device_id).await?;
    }
    state.store.append_audit(&audit(event, detail), now).await?;
    Ok(outcome)
}

/// How often each node looks for pushes due again (one statement when none is).
const RETRY_SCAN: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a node holds the pushes it took before another node may take them.
const RETRY_LEASE_SECONDS: i64 = 60;

/// Sends the queued pushes when they are due, on whichever node gets them first. Runs for
/// the life of the server.
pub async fn retry_pushes(state: AppState) {
    loop {
        tokio::time::sleep(RETRY_SCAN).await;
        if let Err(e) = retry_due_pushes(&state).await {
            tracing::warn!(error = %e, "push retry round failed");
        }
    }
}

/// One round of the retry queue; returns what became of each push it took.
pub async fn retry_due_pushes(state: &AppState) -> Result<Vec<PushOutcome>, StoreError> {
    let now = state.now();
    let taken = state
        .store
        .take_due_push_retries(now, now.plus_seconds(RETRY_LEASE_SECONDS), 50)
        .await?;
    let mut outcomes = Vec::new();
    for retry in taken {
        let device = state.store.get_device(&retry.device_id).await?;
        let Some((device, to)) = device.and_then(|d| push_token(&d).map(|to| (d, to))) else {
            state
                .store
                .drop_push_retry(&retry.challenge_id, &retry.device_id)
                .await?;
            continue;
        };
        let subject = state.store.get_user(&device.user_id).await?.username;
        let outcome = deliver(
            state,
            &retry.challenge_id,
            &retry.device_id,
            &to,
            retry.attempts + 1,
            subject.as_str(),
        )
        .await;
        outcomes.push(outcome);
    }
    Ok(outcomes)
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
