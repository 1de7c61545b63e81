//! The push retry queue: pushes that failed for a passing reason wait here, in the database,
//! so that any node can send them again while their challenge is still pending.

use sesam_core::UnixTime;

use crate::{on_pool, Store, StoreError};

/// One push to try again: the token is read from the device when it is sent.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PushRetry {
    pub challenge_id: String,
    pub device_id: String,
    /// Attempts made so far, the first one included.
    pub attempts: i64,
    pub last_error: String,
}

impl Store {
    /// Schedules the push of `challenge_id` to `device_id` again at `due_at`, after `attempts`
    /// attempts; replaces an earlier schedule of the same push.
    pub async fn schedule_push_retry(
        &self,
        challenge_id: &str,
        device_id: &str,
        attempts: i64,
        due_at: UnixTime,
        last_error: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO push_retries (challenge_id, device_id, attempts, due_at, last_error) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (challenge_id, device_id) DO UPDATE SET attempts = excluded.attempts, \
             due_at = excluded.due_at, last_error = excluded.last_error"
        )
        .bind(challenge_id)
        .bind(device_id)
        .bind(attempts)
        .bind(due_at.0)
        .bind(last_error)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Takes up to `limit` pushes due at `now`, moving their due time to `lease_until` so no
    /// other node takes them while this one sends (a node that dies leaves them to the next
    /// after the lease). Pushes whose challenge has ended, or whose device has no push token
    /// any more, are dropped first. One statement when nothing is due.
    pub async fn take_due_push_retries(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        limit: i64,
    ) -> Result<Vec<PushRetry>, StoreError> {
        let due: bool = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM push_retries WHERE due_at <= $1)"
        )
        .bind(now.0)
        .fetch_one(p)
        .await?);
        if !due {
            return Ok(Vec::new());
        }
        on_pool!(self, |p| {
            sqlx::query(
            "DELETE FROM push_retries WHERE due_at <= $1 AND (\
               challenge_id IN (SELECT id FROM challenges WHERE state <> 'pending' OR expires_at <= $1) \
               OR device_id IN (SELECT id FROM devices WHERE push_token IS NULL))"
        )
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        let taken = match &self.pool {
            crate::Pool::Postgres(p) => {
                sqlx::query_as(
                    "UPDATE push_retries r SET due_at = $2 FROM (\
                       SELECT challenge_id, device_id FROM push_retries WHERE due_at <= $1 \
                       ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) d \
                     WHERE r.challenge_id = d.challenge_id AND r.device_id = d.device_id \
                     RETURNING r.challenge_id, r.device_id, r.attempts, r.last_error",
                )
                .bind(now.0)
                .bind(lease_until.0)
                .bind(limit)
                .fetch_all(p)
                .await?
            }
            // One writer at a time: the UPDATE itself is the lock.
            crate::Pool::Sqlite(p) => {
                sqlx::query_as(
                    "UPDATE push_retries SET due_at = $2 WHERE rowid IN (\
                       SELECT rowid FROM push_retries WHERE due_at <= $1 ORDER BY due_at LIMIT $3) \
                     RETURNING challenge_id, device_id, attempts, last_error",
                )
                .bind(now.0)
                .bind(lease_until.0)
                .bind(limit)
                .fetch_all(p)
                .await?
            }
        };
        Ok(taken)
    }

    /// Removes a push from the queue (sent, refused for good, or given up).
    pub async fn drop_push_retry(
        &self,
        challenge_id: &str,
        device_id: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "DELETE FROM push_retries WHERE challenge_id = $1 AND device_id = $2"
        )
        .bind(challenge_id)
        .bind(device_id)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// The queue, soonest first: (push, due at). For the tests and the portal.
    pub async fn push_retries(&self) -> Result<Vec<(PushRetry, UnixTime)>, StoreError> {
        let rows: Vec<(String, String, i64, String, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT challenge_id, device_id, attempts, last_error, due_at FROM push_retries \
             ORDER BY due_at, challenge_id, device_id"
        )
        .fetch_all(p)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(challenge_id, device_id, attempts, last_error, due_at)| {
                (
                    PushRetry {
                        challenge_id,
                        device_id,
                        attempts,
                        last_error,
                    },
                    UnixTime(due_at),
                )
            })
            .collect())
    }
}
