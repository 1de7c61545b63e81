//! The QR code of a challenge's wait page: its token, and the one scan that uses it up.
//! Taking the scan is one conditional update, so of two scans at once exactly one wins.

use sesam_core::UnixTime;

use crate::{on_pool, Store, StoreError};

/// A challenge's QR token and whether (and by which device) it was scanned.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScanRecord {
    pub challenge_id: String,
    pub token: String,
    pub expires_at: i64,
    pub scanned_by: Option<String>,
    pub scanned_at: Option<i64>,
}

impl Store {
    /// The token of `challenge_id`'s QR code: `fresh` when it has none yet, else the one it
    /// has (a reload, a second tab and another node all show the same code).
    pub async fn scan_token(
        &self,
        challenge_id: &str,
        fresh: &str,
        expires_at: UnixTime,
    ) -> Result<String, StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO challenge_scans (challenge_id, token, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (challenge_id) DO NOTHING"
        )
        .bind(challenge_id)
        .bind(fresh)
        .bind(expires_at.0)
        .execute(p)
        .await?;
        });
        let token: String = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT token FROM challenge_scans WHERE challenge_id = $1"
        )
        .bind(challenge_id)
        .fetch_one(p)
        .await?);
        Ok(token)
    }

    pub async fn get_scan(&self, challenge_id: &str) -> Result<Option<ScanRecord>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT challenge_id, token, expires_at, scanned_by, scanned_at \
             FROM challenge_scans WHERE challenge_id = $1"
        )
        .bind(challenge_id)
        .fetch_optional(p)
        .await?))
    }

    /// Uses the QR code up for `device_id`. False when it was scanned already or is past
    /// its deadline; then nothing changed.
    pub async fn take_scan(
        &self,
        challenge_id: &str,
        device_id: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE challenge_scans SET scanned_by = $2, scanned_at = $3 \
             WHERE challenge_id = $1 AND scanned_at IS NULL AND expires_at > $3"
        )
        .bind(challenge_id)
        .bind(device_id)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }
}
