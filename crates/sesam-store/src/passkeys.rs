//! Passkeys (WebAuthn credentials): any number per user, each with the sign counter of its
//! last accepted assertion, which only ever rises, on any node.

use sesam_core::{UnixTime, UserId};

use crate::{new_id, on_pool, Store, StoreError};

/// A passkey as stored. `passkey` is the relying party's record of the credential (JSON as
/// webauthn-rs writes it); the server reads it, the store keeps it whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: String,
    pub user_id: UserId,
    /// base64url, as the browser sends it.
    pub credential_id: String,
    pub display_name: String,
    pub passkey: String,
    pub sign_count: i64,
    /// How the browser reaches the authenticator (`internal`, `hybrid`, `usb`…), comma-separated.
    pub transports: String,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
}

/// A passkey just registered.
#[derive(Clone, Debug)]
pub struct NewPasskey<'a> {
    pub user_id: &'a UserId,
    pub credential_id: &'a str,
    pub display_name: &'a str,
    pub passkey: &'a str,
    pub sign_count: i64,
    pub transports: &'a str,
}

#[derive(sqlx::FromRow)]
struct PasskeyRow {
    id: String,
    user_id: String,
    credential_id: String,
    display_name: String,
    passkey: String,
    sign_count: i64,
    transports: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl From<PasskeyRow> for PasskeyRecord {
    fn from(r: PasskeyRow) -> PasskeyRecord {
        PasskeyRecord {
            id: r.id,
            user_id: UserId(r.user_id),
            credential_id: r.credential_id,
            display_name: r.display_name,
            passkey: r.passkey,
            sign_count: r.sign_count,
            transports: r.transports,
            created_at: UnixTime(r.created_at),
            last_used_at: r.last_used_at.map(UnixTime),
        }
    }
}

const COLUMNS: &str = "id, user_id, credential_id, display_name, passkey, sign_count, \
                       transports, created_at, last_used_at";

impl Store {
    pub async fn passkeys_of_user(&self, user: &UserId) -> Result<Vec<PasskeyRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at, id");
        let rows: Vec<PasskeyRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(&user.0)
            .fetch_all(p)
            .await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Stores a new passkey. `None`, storing nothing, when its credential id is registered
    /// already (to this user or another).
    pub async fn add_passkey(
        &self,
        new: NewPasskey<'_>,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError> {
        let id = new_id();
        let written = on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO passkeys (id, user_id, credential_id, display_name, passkey, sign_count, \
             transports, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (credential_id) DO NOTHING"
        )
        .bind(&id)
        .bind(&new.user_id.0)
        .bind(new.credential_id)
        .bind(new.display_name)
        .bind(new.passkey)
        .bind(new.sign_count)
        .bind(new.transports)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok((written == 1).then_some(id))
    }

    /// Records an accepted assertion: the new record and counter, if the counter still rises
    /// above the stored one (or both are zero, an authenticator without a counter). One
    /// statement, so two nodes cannot both accept the same counter value. False: the counter
    /// did not rise, nothing changed.
    pub async fn use_passkey(
        &self,
        user: &UserId,
        id: &str,
        passkey: &str,
        sign_count: i64,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let changed = on_pool!(self, |p| sqlx::query(
            "UPDATE passkeys SET passkey = $3, sign_count = $4, last_used_at = $5 \
             WHERE id = $1 AND user_id = $2 AND (sign_count < $4 OR (sign_count = 0 AND $4 = 0))"
        )
        .bind(id)
        .bind(&user.0)
        .bind(passkey)
        .bind(sign_count)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(changed == 1)
    }

    /// Removes one of the user's passkeys. True when there was one.
    pub async fn delete_passkey(&self, user: &UserId, id: &str) -> Result<bool, StoreError> {
        let changed = on_pool!(self, |p| sqlx::query(
            "DELETE FROM passkeys WHERE id = $1 AND user_id = $2"
        )
        .bind(id)
        .bind(&user.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(changed == 1)
    }
}
