//! The QR login from another device: the desktop wait page shows a code, the user's own
//! enrolled app scans it, sees the request and confirms. The rules: single use, no longer
//! valid than the challenge, bound to that challenge, and only for a device it was sent to.

use rand::rngs::OsRng;
use sesam_core::{Challenge, ChallengeState, ScanPayload, ScanToken};
use sesam_store::{AuditEvent, DeviceRecord};

use crate::service::ServiceError;
use crate::state::AppState;

/// The text of the QR code for a pending challenge: the same on every reload until the
/// challenge ends.
pub async fn qr_payload(state: &AppState, challenge: &Challenge) -> Result<String, ServiceError> {
    let fresh = ScanToken::random(&mut OsRng);
    let token = state
        .store
        .scan_token(&challenge.id, fresh.as_str(), challenge.expires_at)
        .await?;
    let token = ScanToken::parse(&token).map_err(|e| ServiceError::Internal(e.to_string()))?;
    Ok(ScanPayload {
        challenge_id: challenge.id.clone(),
        token,
    }
    .to_string())
}

/// What became of a scan.
#[derive(Debug)]
pub enum Scanned {
    /// This device now holds the scan; the app shows the request and asks for a yes.
    Taken(Box<Challenge>),
    /// No such challenge for this device: another user's code, or one never sent here.
    NotForDevice,
    /// The token is not this challenge's. One attempt: the challenge ended as wrong_code.
    WrongToken,
    /// This code was scanned before (by this or another device).
    AlreadyUsed,
    /// The challenge has ended or its deadline passed.
    Expired,
}

pub async fn scan(
    state: &AppState,
    device: &DeviceRecord,
    payload: &ScanPayload,
    ip: Option<String>,
) -> Result<Scanned, ServiceError> {
    let device_id = &device.device.id;
    let Some(challenge) = state
        .store
        .challenge_for_device(&payload.challenge_id, device_id)
        .await?
    else {
        return Ok(Scanned::NotForDevice);
    };
    let now = state.now();
    let live = challenge.state == ChallengeState::Pending && !challenge.is_expired(now);
    let record = state.store.get_scan(&challenge.id).await?;
    let matches = record
        .as_ref()
        .and_then(|r| ScanToken::parse(&r.token).ok())
        .is_some_and(|stored| stored.matches(&payload.token));
    let user = state.store.get_user(&device.user_id).await?;
    let audit = |event: &str, detail: String| {
        AuditEvent::new(event)
            .actor(user.username.as_str())
            .subject(user.username.as_str())
            .client_ip(ip.clone())
            .detail(detail)
    };
    if !matches {
        if !live {
            return Ok(Scanned::Expired);
        }
        // A token that is not this challenge's is a guess or a code of another login: as
        // with a wrong number, the challenge ends at once.
        if state
            .store
            .finish_challenge(
                &challenge.id,
                ChallengeState::WrongCode,
                false,
                Some(device_id),
                now,
            )
            .await?
        {
            state.store.append_audit(&audit("challenge.scan_refused", format!(
                "challenge {} by device {device_id}: a QR code of another login; ended as wrong_code",
                challenge.id
            )), now).await?;
            crate::challenges::announce(state, &challenge.id).await;
        }
        return Ok(Scanned::WrongToken);
    }
    if record.as_ref().is_some_and(|r| r.scanned_at.is_some()) {
        return Ok(Scanned::AlreadyUsed);
    }
    if !live {
        return Ok(Scanned::Expired);
    }
    if !state.store.take_scan(&challenge.id, device_id, now).await? {
        // Another scan won the race, or the deadline passed in between.
        return Ok(match state.store.get_scan(&challenge.id).await? {
            Some(r) if r.scanned_at.is_some() => Scanned::AlreadyUsed,
            _ => Scanned::Expired,
        });
    }
    state
        .store
        .append_audit(
            &audit(
                "challenge.scanned",
                format!(
                    "challenge {} by device {device_id}: QR code scanned",
                    challenge.id
                ),
            ),
            now,
        )
        .await?;
    Ok(Scanned::Taken(Box::new(challenge)))
}

/// Whether `device_id` holds the scan of `challenge_id`'s QR code.
pub async fn scanned_by(
    state: &AppState,
    challenge_id: &str,
    device_id: &str,
) -> Result<bool, ServiceError> {
    Ok(state
        .store
        .get_scan(challenge_id)
        .await?
        .is_some_and(|r| r.scanned_at.is_some() && r.scanned_by.as_deref() == Some(device_id)))
}
