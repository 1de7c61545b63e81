//! Code displays (TOTP): one per user, pending until a code confirms it, with the step of
//! the last accepted code so that no code counts twice, on any node.

use sesam_core::{UnixTime, UserId};

use crate::{new_id, on_pool, Store, StoreError};

/// A user's code display as stored. The secret stays sealed here; the server opens it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotpRecord {
    pub id: String,
    pub user_id: UserId,
    pub display_name: String,
    pub secret_sealed: String,
    /// A code confirmed it (or an administrator enrolled it); until then it is no factor.
    pub confirmed: bool,
    pub last_step: Option<i64>,
    pub created_at: UnixTime,
    pub confirmed_at: Option<UnixTime>,
    pub last_used_at: Option<UnixTime>,
}

#[derive(sqlx::FromRow)]
struct TotpRow {
    id: String,
    user_id: String,
    display_name: String,
    secret_sealed: String,
    confirmed: bool,
    last_step: Option<i64>,
    created_at: i64,
    confirmed_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl From<TotpRow> for TotpRecord {
    fn from(r: TotpRow) -> TotpRecord {
        TotpRecord {
            id: r.id,
            user_id: UserId(r.user_id),
            display_name: r.display_name,
            secret_sealed: r.secret_sealed,
            confirmed: r.confirmed,
            last_step: r.last_step,
            created_at: UnixTime(r.created_at),
            confirmed_at: r.confirmed_at.map(UnixTime),
            last_used_at: r.last_used_at.map(UnixTime),
        }
    }
}

const COLUMNS: &str = "id, user_id, display_name, secret_sealed, confirmed, last_step, \
                       created_at, confirmed_at, last_used_at";

impl Store {
    pub async fn totp_of_user(&self, user: &UserId) -> Result<Option<TotpRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM totp_devices WHERE user_id = $1");
        let row: Option<TotpRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(&user.0)
            .fetch_optional(p)
            .await?);
        Ok(row.map(Into::into))
    }

    /// Starts (or restarts) an enrolment: a pending secret replaces an earlier pending one.
    /// Returns false, changing nothing, when the user already has a confirmed code display.
    pub async fn put_pending_totp(
        &self,
        user: &UserId,
        display_name: &str,
        secret_sealed: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let written = on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO totp_devices (id, user_id, display_name, secret_sealed, confirmed, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id) DO UPDATE SET id = excluded.id, \
               display_name = excluded.display_name, secret_sealed = excluded.secret_sealed, \
               created_at = excluded.created_at, last_step = NULL \
             WHERE totp_devices.confirmed = $5"
        )
        .bind(new_id())
        .bind(&user.0)
        .bind(display_name)
        .bind(secret_sealed)
        .bind(false)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(written == 1)
    }

    /// Confirms the pending code display whose sealed secret is `secret_sealed` (the one the
    /// code was checked against; a newer enrolment in another tab is left pending), and
    /// records the confirming code's step as used.
    pub async fn confirm_totp(
        &self,
        user: &UserId,
        secret_sealed: &str,
        step: i64,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let changed = on_pool!(self, |p| sqlx::query(
            "UPDATE totp_devices SET confirmed = $4, confirmed_at = $5, last_step = $3 \
             WHERE user_id = $1 AND secret_sealed = $2 AND confirmed = $6"
        )
        .bind(&user.0)
        .bind(secret_sealed)
        .bind(step)
        .bind(true)
        .bind(now.0)
        .bind(false)
        .execute(p)
        .await?
        .rows_affected());
        Ok(changed == 1)
    }

    /// Gives `user` a confirmed code display at once (an administrator's enrolment of a
    /// robot account), replacing any other.
    pub async fn put_confirmed_totp(
        &self,
        user: &UserId,
        display_name: &str,
        secret_sealed: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO totp_devices (id, user_id, display_name, secret_sealed, confirmed, created_at, confirmed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (user_id) DO UPDATE SET id = excluded.id, \
               display_name = excluded.display_name, secret_sealed = excluded.secret_sealed, \
               confirmed = excluded.confirmed, created_at = excluded.created_at, \
               confirmed_at = excluded.confirmed_at, last_step = NULL, last_used_at = NULL"
        )
        .bind(new_id())
        .bind(&user.0)
        .bind(display_name)
        .bind(secret_sealed)
        .bind(true)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    /// Uses up `step` for the user's confirmed code display: true when no code of this
    /// step or a later one was accepted before. One statement, so concurrent logins on
    /// several nodes accept a code once.
    pub async fn use_totp_step(
        &self,
        user: &UserId,
        step: i64,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let changed = on_pool!(self, |p| sqlx::query(
            "UPDATE totp_devices SET last_step = $2, last_used_at = $3 \
             WHERE user_id = $1 AND confirmed = $4 AND (last_step IS NULL OR last_step < $2)"
        )
        .bind(&user.0)
        .bind(step)
        .bind(now.0)
        .bind(true)
        .execute(p)
        .await?
        .rows_affected());
        Ok(changed == 1)
    }

    /// Removes the user's code display, pending or confirmed. True when there was one.
    pub async fn delete_totp(&self, user: &UserId) -> Result<bool, StoreError> {
        let changed = on_pool!(self, |p| sqlx::query(
            "DELETE FROM totp_devices WHERE user_id = $1"
        )
        .bind(&user.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(changed == 1)
    }
}
