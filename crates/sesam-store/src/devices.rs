//! MFA devices and the one-time activation codes that enrol them.

use sesam_core::{Device, UnixTime, UserId};

use crate::{new_id, on_pool, Store, StoreError};

/// A device as stored: the eligibility facts (`device`) plus what the API and pages need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device: Device,
    pub user_id: UserId,
    pub display_name: String,
    /// The device's P-256 public key as a JWK (JSON text).
    pub public_key: String,
    pub push_provider: Option<String>,
    pub push_token: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
}

#[derive(Clone, Debug)]
pub struct NewDevice {
    pub user_id: UserId,
    pub display_name: String,
    pub platform: sesam_core::Platform,
    pub app_version: sesam_core::AppVersion,
    pub pin_length: u32,
    pub public_key: String,
    pub key_thumbprint: String,
    pub push_provider: Option<String>,
    pub push_token: Option<String>,
}

/// Fields an app may change; `None` leaves a field alone, `push: Some(None)` removes the token.
#[derive(Clone, Debug, Default)]
pub struct DeviceChange {
    pub display_name: Option<String>,
    pub app_version: Option<sesam_core::AppVersion>,
    pub pin_length: Option<u32>,
    pub push: Option<Option<(String, String)>>,
}

#[derive(sqlx::FromRow)]
struct DeviceRow {
    id: String,
    user_id: String,
    display_name: String,
    platform: String,
    app_version: String,
    pin_length: i64,
    status: String,
    public_key: String,
    push_provider: Option<String>,
    push_token: Option<String>,
    created_at: i64,
    updated_at: i64,
    last_used_at: Option<i64>,
}

impl TryFrom<DeviceRow> for DeviceRecord {
    type Error = StoreError;
    fn try_from(r: DeviceRow) -> Result<DeviceRecord, StoreError> {
        Ok(DeviceRecord {
            device: Device {
                id: r.id,
                platform: r.platform.parse().map_err(StoreError::Corrupt)?,
                app_version: r.app_version.parse().map_err(StoreError::Corrupt)?,
                pin_length: u32::try_from(r.pin_length)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                status: r.status.parse().map_err(StoreError::Corrupt)?,
            },
            user_id: UserId(r.user_id),
            display_name: r.display_name,
            public_key: r.public_key,
            push_provider: r.push_provider,
            push_token: r.push_token,
            created_at: UnixTime(r.created_at),
            updated_at: UnixTime(r.updated_at),
            last_used_at: r.last_used_at.map(UnixTime),
        })
    }
}

const COLUMNS: &str =
    "id, user_id, display_name, platform, app_version, pin_length, status, public_key, \
                       push_provider, push_token, created_at, updated_at, last_used_at";

impl Store {
    pub async fn create_device(
        &self,
        new: NewDevice,
        now: UnixTime,
    ) -> Result<DeviceRecord, StoreError> {
        let id = new_id();
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO devices (id, user_id, display_name, platform, app_version, pin_length, status, \
             public_key, key_thumbprint, push_provider, push_token, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $10, $11, $11)"
        )
        .bind(&id)
        .bind(&new.user_id.0)
        .bind(&new.display_name)
        .bind(new.platform.as_str())
        .bind(new.app_version.to_string())
        .bind(i64::from(new.pin_length))
        .bind(&new.public_key)
        .bind(&new.key_thumbprint)
        .bind(&new.push_provider)
        .bind(&new.push_token)
        .bind(now.0)
        .execute(p)
        .await
        .map_err(|e| StoreError::from_insert(e, "a device with this key"))?
        .rows_affected()
        });
        self.get_device(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("device {id}")))
    }

    /// Whether a device (in any state) holds the key with this thumbprint.
    pub async fn device_key_in_use(&self, thumbprint: &str) -> Result<bool, StoreError> {
        let found: Option<(String,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT id FROM devices WHERE key_thumbprint = $1"
        )
        .bind(thumbprint)
        .fetch_optional(p)
        .await?);
        Ok(found.is_some())
    }

    pub async fn get_device(&self, id: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM devices WHERE id = $1");
        let row: Option<DeviceRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await?);
        row.map(DeviceRecord::try_from).transpose()
    }

    pub async fn devices_of_user(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_at, id");
        let rows: Vec<DeviceRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(&user.0)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(DeviceRecord::try_from).collect()
    }

    pub async fn update_device(
        &self,
        id: &str,
        change: &DeviceChange,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let (set_push, provider, token) = match &change.push {
            None => (false, None, None),
            Some(None) => (true, None, None),
            Some(Some((p, t))) => (true, Some(p.clone()), Some(t.clone())),
        };
        let done = on_pool!(self, |p| sqlx::query(
            "UPDATE devices SET \
               display_name = COALESCE($2, display_name), \
               app_version = COALESCE($3, app_version), \
               pin_length = COALESCE($4, pin_length), \
               push_provider = CASE WHEN $5 THEN $6 ELSE push_provider END, \
               push_token = CASE WHEN $5 THEN $7 ELSE push_token END, \
               updated_at = $8 \
             WHERE id = $1"
        )
        .bind(id)
        .bind(&change.display_name)
        .bind(change.app_version.map(|v| v.to_string()))
        .bind(change.pin_length.map(i64::from))
        .bind(set_push)
        .bind(provider)
        .bind(token)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        if done == 0 {
            return Err(StoreError::NotFound(format!("device {id}")));
        }
        Ok(())
    }

    /// Drops a push token Apple or Google called invalid (only if it is still the same one).
    pub async fn remove_push_token(
        &self,
        device_id: &str,
        token: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
            "UPDATE devices SET push_provider = NULL, push_token = NULL, updated_at = $3 WHERE id = $1 AND push_token = $2"
        )
        .bind(device_id)
        .bind(token)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(())
    }

    pub async fn set_device_status(
        &self,
        id: &str,
        status: sesam_core::DeviceStatus,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE devices SET status = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(id)
        .bind(status.as_str())
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn touch_device(&self, id: &str, now: UnixTime) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE devices SET last_used_at = $2 WHERE id = $1"
        )
        .bind(id)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn delete_device(&self, id: &str) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n > 0)
    }

    pub async fn create_activation_code(
        &self,
        user: &UserId,
        code_hash: &str,
        now: UnixTime,
        valid_seconds: i64,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO activation_codes (code_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)"
        )
        .bind(code_hash)
        .bind(&user.0)
        .bind(now.0)
        .bind(now.plus_seconds(valid_seconds).0)
        .execute(p)
        .await
        .map_err(|e| StoreError::from_insert(e, "activation code"))?
        .rows_affected()
        });
        Ok(())
    }

    /// Uses the code once: returns its user when it was unused and unexpired. Atomic, so
    /// two enrolments racing with one code cannot both succeed.
    pub async fn consume_activation_code(
        &self,
        code_hash: &str,
        now: UnixTime,
    ) -> Result<Option<UserId>, StoreError> {
        let user: Option<String> = on_pool!(self, |p| sqlx::query_scalar(
            "UPDATE activation_codes SET used_at = $2 \
             WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2 RETURNING user_id"
        )
        .bind(code_hash)
        .bind(now.0)
        .fetch_optional(p)
        .await?);
        Ok(user.map(UserId))
    }

    /// Remembers a proof id; false when this key has used it before (a replay).
    pub async fn remember_proof(
        &self,
        key_id: &str,
        jti: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        if self.purge_due(crate::cache::Purge::ProofReplay, now) {
            on_pool!(self, |p| sqlx::query(
                "DELETE FROM proof_replay WHERE expires_at < $1"
            )
            .bind(now.0)
            .execute(p)
            .await?
            .rows_affected());
        }
        let inserted = on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO proof_replay (key_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        )
        .bind(key_id)
        .bind(jti)
        .bind(expires_at.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Hits for `key` in `bucket` within the current window, without counting one.
    pub async fn rate_limit_hits(
        &self,
        bucket: &str,
        key: &str,
        now: UnixTime,
        window_seconds: i64,
    ) -> Result<i64, StoreError> {
        let hits: Option<i64> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT hits FROM rate_limits WHERE bucket = $1 AND key = $2 AND window_start > $3"
        )
        .bind(bucket)
        .bind(key)
        .bind(now.0 - window_seconds)
        .fetch_optional(p)
        .await?);
        Ok(hits.unwrap_or(0))
    }

    /// Gives back one hit counted by [`Store::rate_limit_allows`] (an attempt reserved
    /// before the work, which turned out not to count, such as a right password).
    pub async fn rate_limit_release(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE rate_limits SET hits = hits - 1 WHERE bucket = $1 AND key = $2 AND hits > 0"
        )
        .bind(bucket)
        .bind(key)
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Counts one hit for `key` in `bucket`; true while the count in the current window is
    /// within `max`. One upsert, so concurrent hits on several nodes all count.
    pub async fn rate_limit_allows(
        &self,
        bucket: &str,
        key: &str,
        now: UnixTime,
        window_seconds: i64,
        max: i64,
    ) -> Result<bool, StoreError> {
        let hits: i64 = on_pool!(self, |p| {
            sqlx::query_scalar(
            "INSERT INTO rate_limits (bucket, key, window_start, hits) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (bucket, key) DO UPDATE SET \
               hits = CASE WHEN rate_limits.window_start <= $4 THEN 1 ELSE rate_limits.hits + 1 END, \
               window_start = CASE WHEN rate_limits.window_start <= $4 THEN $3 ELSE rate_limits.window_start END \
             RETURNING hits"
        )
        .bind(bucket)
        .bind(key)
        .bind(now.0)
        .bind(now.0 - window_seconds)
        .fetch_one(p)
        .await?
        });
        Ok(hits <= max)
    }
}
