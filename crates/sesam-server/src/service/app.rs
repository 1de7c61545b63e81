//! The Sesam app's answer to a challenge: checked by the core, stored once (a second
//! answer or another node's finds it taken), audited, and a "this was not me" pauses
//! passwordless for the user.

use sesam_core::{Answer, AnswerError, ChallengeState};
use sesam_store::{AuditEvent, DeviceRecord};

use crate::service::ServiceError;
use crate::state::AppState;

/// What became of the app's answer.
#[derive(Debug)]
pub enum Answered {
    /// Taken; the challenge ended in this state.
    Taken(ChallengeState),
    /// No such challenge for this device (or an id too long to be one).
    NotForDevice,
    /// The core refused the answer (a plain approve, expired, no longer pending).
    Refused(AnswerError),
    /// Another answer was stored first.
    AlreadyAnswered,
}

pub async fn answer_challenge(
    state: &AppState,
    device: &DeviceRecord,
    challenge_id: &str,
    answer: &Answer,
    ip: Option<String>,
) -> Result<Answered, ServiceError> {
    let device_id = &device.device.id;
    let challenge = if challenge_id.len() <= 64 {
        state
            .store
            .challenge_for_device(challenge_id, device_id)
            .await?
    } else {
        None
    };
    let Some(challenge) = challenge else {
        return Ok(Answered::NotForDevice);
    };
    let now = state.now();
    // A confirmation counts only for the device that scanned this challenge's QR code.
    let answer = match answer {
        Answer::ConfirmScan { .. } => &Answer::ConfirmScan {
            scanned: crate::service::scan::scanned_by(state, &challenge.id, device_id).await?,
        },
        other => other,
    };
    let outcome = match challenge.answer(answer, now) {
        Ok(outcome) => outcome,
        Err(e) => return Ok(Answered::Refused(e)),
    };
    if !state
        .store
        .finish_challenge(
            &challenge.id,
            outcome.state,
            outcome.fraud_reported,
            Some(device_id),
            now,
        )
        .await?
    {
        return Ok(Answered::AlreadyAnswered);
    }
    state.metrics.challenge_answered(
        outcome.state.as_str(),
        (now.0 - challenge.created_at.0) as f64,
    );
    let user = state.store.get_user(&device.user_id).await?;
    let audit = |event: &str| {
        AuditEvent::new(event)
            .actor(user.username.as_str())
            .subject(user.username.as_str())
            .client_ip(ip.clone())
    };
    state
        .store
        .append_audit(
            &audit("challenge.answered").detail(format!(
                "challenge {} by device {device_id}: {}",
                challenge.id,
                outcome.state.as_str()
            )),
            now,
        )
        .await?;
    if outcome.fraud_reported {
        state
            .store
            .set_passwordless_locked(&user.id, true, now)
            .await?;
        state
            .store
            .append_audit(
                &audit("challenge.fraud_reported").detail(format!(
                    "challenge {}: passwordless locked until an admin or a password login clears it",
                    challenge.id
                )),
                now,
            )
            .await?;
    }
    crate::challenges::announce(state, &challenge.id).await;
    Ok(Answered::Taken(outcome.state))
}
