//! Challenges and the devices they were sent to; answering is one conditional update, so
//! of two answers at once exactly one wins.

use sesam_core::{Challenge, ChallengeContext, ChallengeState, UnixTime};

use crate::{on_pool, Store, StoreError};

#[derive(sqlx::FromRow)]
struct ChallengeRow {
    id: String,
    user_id: String,
    kind: String,
    code: i64,
    state: String,
    fraud_reported: bool,
    created_at: i64,
    expires_at: i64,
    service: String,
    browser: Option<String>,
    os: Option<String>,
    client_ip: Option<String>,
    location: Option<String>,
}

impl TryFrom<ChallengeRow> for Challenge {
    type Error = StoreError;
    fn try_from(r: ChallengeRow) -> Result<Challenge, StoreError> {
        Ok(Challenge {
            id: r.id,
            user_id: r.user_id,
            kind: r.kind.parse().map_err(StoreError::Corrupt)?,
            code: r.code.to_string().parse().map_err(StoreError::Corrupt)?,
            state: r.state.parse().map_err(StoreError::Corrupt)?,
            created_at: UnixTime(r.created_at),
            expires_at: UnixTime(r.expires_at),
            context: ChallengeContext {
                service: r.service,
                browser: r.browser,
                os: r.os,
                client_ip: r.client_ip,
                location: r.location,
            },
            fraud_reported: r.fraud_reported,
        })
    }
}

const CHALLENGE_CHANNEL: &str = "sesam_challenge";

/// Challenge ids announced by any node (PostgreSQL LISTEN).
pub struct ChallengeListener(sqlx::postgres::PgListener);

impl ChallengeListener {
    /// The next announced challenge id. The listener reconnects by itself after a lost
    /// connection; notifications sent meanwhile are lost, which is why waiters also poll.
    pub async fn recv(&mut self) -> Result<String, StoreError> {
        Ok(self.0.recv().await?.payload().to_owned())
    }
}

const COLUMNS: &str =
    "c.id, c.user_id, c.kind, c.code, c.state, c.fraud_reported, c.created_at, c.expires_at, \
                       c.service, c.browser, c.os, c.client_ip, c.location";

impl Store {
    /// Stores a new pending challenge for `devices`, cancelling the user's older pending
    /// ones (a new login replaces an unanswered one). Returns the ids it cancelled.
    pub async fn create_challenge(
        &self,
        c: &Challenge,
        devices: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let cancelled: Vec<String> = on_pool!(self, |p| sqlx::query_scalar(
            "UPDATE challenges SET state = 'cancelled', answered_at = $2 \
             WHERE user_id = $1 AND state = 'pending' RETURNING id"
        )
        .bind(&c.user_id)
        .bind(c.created_at.0)
        .fetch_all(p)
        .await?);
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO challenges (id, user_id, kind, code, state, fraud_reported, created_at, expires_at, \
                 service, browser, os, client_ip, location) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&c.id)
            .bind(&c.user_id)
            .bind(c.kind.as_str())
            .bind(i64::from(c.code.value()))
            .bind(false)
            .bind(c.created_at.0)
            .bind(c.expires_at.0)
            .bind(&c.context.service)
            .bind(&c.context.browser)
            .bind(&c.context.os)
            .bind(&c.context.client_ip)
            .bind(&c.context.location)
            .execute(&mut *tx)
            .await?;
            for device in devices {
                sqlx::query(
                    "INSERT INTO challenge_devices (challenge_id, device_id) VALUES ($1, $2)",
                )
                .bind(&c.id)
                .bind(device)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(cancelled)
    }

    pub async fn get_challenge(&self, id: &str) -> Result<Option<Challenge>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM challenges c WHERE c.id = $1");
        let row: Option<ChallengeRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await?);
        row.map(Challenge::try_from).transpose()
    }

    /// A challenge only when it was sent to `device_id`.
    pub async fn challenge_for_device(
        &self,
        id: &str,
        device_id: &str,
    ) -> Result<Option<Challenge>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM challenges c JOIN challenge_devices d ON d.challenge_id = c.id \
             WHERE c.id = $1 AND d.device_id = $2"
        );
        let row: Option<ChallengeRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(device_id)
            .fetch_optional(p)
            .await?);
        row.map(Challenge::try_from).transpose()
    }

    /// Pending, unexpired challenges sent to `device_id`, newest first.
    pub async fn pending_challenges_for_device(
        &self,
        device_id: &str,
        now: UnixTime,
    ) -> Result<Vec<Challenge>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM challenges c JOIN challenge_devices d ON d.challenge_id = c.id \
             WHERE d.device_id = $1 AND c.state = 'pending' AND c.expires_at > $2 ORDER BY c.created_at DESC, c.id"
        );
        let rows: Vec<ChallengeRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(device_id)
            .bind(now.0)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(Challenge::try_from).collect()
    }

    /// Moves a pending, unexpired challenge to `state`. False when another answer (or the
    /// deadline) got there first; then nothing changed.
    pub async fn finish_challenge(
        &self,
        id: &str,
        state: ChallengeState,
        fraud_reported: bool,
        device_id: Option<&str>,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| {
            sqlx::query(
            "UPDATE challenges SET state = $2, fraud_reported = $3, answered_by = $4, answered_at = $5 \
             WHERE id = $1 AND state = 'pending' AND expires_at > $5"
        )
        .bind(id)
        .bind(state.as_str())
        .bind(fraud_reported)
        .bind(device_id)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(n == 1)
    }

    /// Marks one pending challenge past its deadline as expired; false when it was not.
    pub async fn expire_challenge(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| {
            sqlx::query(
            "UPDATE challenges SET state = 'expired', answered_at = $2 WHERE id = $1 AND state = 'pending' AND expires_at <= $2"
        )
        .bind(id)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(n == 1)
    }

    /// Cancels a pending challenge (the browser gave up on it).
    pub async fn cancel_challenge(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| {
            sqlx::query(
            "UPDATE challenges SET state = 'cancelled', answered_at = $2 WHERE id = $1 AND state = 'pending'"
        )
        .bind(id)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(n == 1)
    }

    /// Challenges created for `user_id` since `since` (for the per-user limit).
    pub async fn count_challenges_since(
        &self,
        user_id: &str,
        since: UnixTime,
    ) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM challenges WHERE user_id = $1 AND created_at > $2"
        )
        .bind(user_id)
        .bind(since.0)
        .fetch_one(p)
        .await?))
    }

    /// Tells other nodes that a challenge changed (PostgreSQL NOTIFY; nothing with SQLite,
    /// where every waiter is in this process).
    pub async fn notify_challenge(&self, id: &str) -> Result<(), StoreError> {
        if let crate::Pool::Postgres(p) = &self.pool {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHALLENGE_CHANNEL)
                .bind(id)
                .execute(p)
                .await?;
        }
        Ok(())
    }

    /// A listener for other nodes' challenge notifications; `None` with SQLite.
    pub async fn challenge_listener(&self) -> Result<Option<ChallengeListener>, StoreError> {
        match &self.pool {
            crate::Pool::Sqlite(_) => Ok(None),
            crate::Pool::Postgres(p) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(p).await?;
                listener.listen(CHALLENGE_CHANNEL).await?;
                Ok(Some(ChallengeListener(listener)))
            }
        }
    }

    /// Marks pending challenges past their deadline as expired; returns them (for audit).
    pub async fn expire_challenges(
        &self,
        now: UnixTime,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(on_pool!(self, |p| {
            sqlx::query_as(
            "UPDATE challenges SET state = 'expired' WHERE state = 'pending' AND expires_at <= $1 RETURNING id, user_id"
        )
        .bind(now.0)
        .fetch_all(p)
        .await?
        }))
    }

    pub async fn record_outbox_push(
        &self,
        provider: &str,
        token: &str,
        challenge_id: &str,
        title: &str,
        body: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO push_outbox (provider, token, challenge_id, title, body, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(provider)
        .bind(token)
        .bind(challenge_id)
        .bind(title)
        .bind(body)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// Pushes recorded by the outbox provider: (provider, token, challenge id), oldest first.
    pub async fn outbox_pushes(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT provider, token, challenge_id FROM push_outbox ORDER BY id"
        )
        .fetch_all(p)
        .await?))
    }
}
