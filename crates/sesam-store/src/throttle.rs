//! Failed password attempts per username and the temporary lock they lead to.

use sesam_core::{Settings, UnixTime};

use crate::{on_pool, Store, StoreError};

/// The answer to a reserved password attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Check the password; this is attempt `count` in the window.
    Allowed {
        count: i64,
    },
    Locked(UnixTime),
}

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

    /// Reserves one password attempt before the password is checked: it counts as a
    /// failure at once, in one atomic upsert that changes nothing while the name is locked.
    /// So a burst of parallel attempts can never check more passwords than the limit; a
    /// right password then clears the count ([`Store::clear_login_failures`]).
    pub async fn reserve_password_attempt(
        &self,
        username_key: &str,
        now: UnixTime,
        policy: &Settings,
    ) -> Result<Attempt, StoreError> {
        let window_opens_after = now.0 - policy.lockout_window_seconds;
        let (count, locked_until): (i64, Option<i64>) = on_pool!(self, |p| {
            sqlx::query_as(
            "INSERT INTO login_throttle (username_key, failures, window_start, locked_until) \
             VALUES ($1, 1, $2, NULL) \
             ON CONFLICT (username_key) DO UPDATE SET \
               failures = CASE WHEN login_throttle.locked_until > $2 THEN login_throttle.failures \
                               WHEN login_throttle.window_start <= $3 THEN 1 \
                               ELSE login_throttle.failures + 1 END, \
               window_start = CASE WHEN login_throttle.locked_until > $2 THEN login_throttle.window_start \
                                   WHEN login_throttle.window_start <= $3 THEN $2 \
                                   ELSE login_throttle.window_start END \
             RETURNING failures, locked_until"
        )
        .bind(username_key)
        .bind(now.0)
        .bind(window_opens_after)
        .fetch_one(p)
        .await?
        });
        if let Some(until) = locked_until.filter(|t| *t > now.0) {
            return Ok(Attempt::Locked(UnixTime(until)));
        }
        if count > i64::from(policy.lockout_max_failures) {
            // Beyond the limit (the others of a burst are still being checked): lock now.
            return Ok(Attempt::Locked(
                self.lock_login(username_key, now, policy).await?,
            ));
        }
        Ok(Attempt::Allowed { count })
    }

    /// The attempt reserved as number `count` failed: locks the name when that was the
    /// last one allowed. Returns the lock's end.
    pub async fn login_attempt_failed(
        &self,
        username_key: &str,
        count: i64,
        now: UnixTime,
        policy: &Settings,
    ) -> Result<Option<UnixTime>, StoreError> {
        if count < i64::from(policy.lockout_max_failures) {
            return Ok(None);
        }
        Ok(Some(self.lock_login(username_key, now, policy).await?))
    }

    async fn lock_login(
        &self,
        username_key: &str,
        now: UnixTime,
        policy: &Settings,
    ) -> Result<UnixTime, StoreError> {
        let until = now.plus_seconds(policy.lockout_duration_seconds);
        // The lock starts a fresh count: after it ends the user has the full number of tries.
        // A lock already running keeps its end.
        on_pool!(self, |p| {
            sqlx::query(
                "UPDATE login_throttle SET locked_until = $2, failures = 0, window_start = $3 \
             WHERE username_key = $1 AND (locked_until IS NULL OR locked_until <= $3)",
            )
            .bind(username_key)
            .bind(until.0)
            .bind(now.0)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(self
            .throttle_state(username_key, now)
            .await?
            .locked_until
            .unwrap_or(until))
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
