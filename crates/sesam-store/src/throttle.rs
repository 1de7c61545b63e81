//! Failed password attempts per username and the temporary lock they lead to.

use sesam_core::{Settings, UnixTime};

use crate::{on_pool, Store, StoreError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleState {
    /// Set while the name is temporarily locked.
    pub locked_until: Option<UnixTime>,
}

impl Store {
    pub async fn throttle_state(
        &self,
        username_key: &str,
        now: UnixTime,
    ) -> Result<ThrottleState, StoreError> {
        let until: Option<Option<i64>> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT locked_until FROM login_throttle WHERE username_key = $1"
        )
        .bind(username_key)
        .fetch_optional(p)
        .await?);
        let locked_until = until.flatten().filter(|t| *t > now.0).map(UnixTime);
        Ok(ThrottleState { locked_until })
    }

    /// Counts one failure in the current window (one atomic upsert, so concurrent failures
    /// all count). Returns the lock's end when this failure reached the limit.
    pub async fn record_login_failure(
        &self,
        username_key: &str,
        now: UnixTime,
        policy: &Settings,
    ) -> Result<Option<UnixTime>, StoreError> {
        let window_opens_after = now.0 - policy.lockout_window_seconds;
        let failures: i64 = on_pool!(self, |p| {
            sqlx::query_scalar(
            "INSERT INTO login_throttle (username_key, failures, window_start, locked_until) \
             VALUES ($1, 1, $2, NULL) \
             ON CONFLICT (username_key) DO UPDATE SET \
               failures = CASE WHEN login_throttle.window_start <= $3 THEN 1 ELSE login_throttle.failures + 1 END, \
               window_start = CASE WHEN login_throttle.window_start <= $3 THEN $2 ELSE login_throttle.window_start END \
             RETURNING failures"
        )
        .bind(username_key)
        .bind(now.0)
        .bind(window_opens_after)
        .fetch_one(p)
        .await?
        });
        if failures < i64::from(policy.lockout_max_failures) {
            return Ok(None);
        }
        let until = now.plus_seconds(policy.lockout_duration_seconds);
        // The lock starts a fresh count: after it ends the user has the full number of tries.
        on_pool!(self, |p| {
            sqlx::query(
            "UPDATE login_throttle SET locked_until = $2, failures = 0, window_start = $3 WHERE username_key = $1"
        )
        .bind(username_key)
        .bind(until.0)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(Some(until))
    }

    pub async fn clear_login_failures(&self, username_key: &str) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "DELETE FROM login_throttle WHERE username_key = $1"
        )
        .bind(username_key)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }
}
