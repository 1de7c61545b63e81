//! Organisation settings as typed values over a key/value table.

use sesam_core::{Settings, UnixTime};

use crate::{on_pool, Store, StoreError};

impl Store {
    /// Defaults overlaid with what has been stored.
    pub async fn load_settings(&self) -> Result<Settings, StoreError> {
        let rows: Vec<(String, String)> =
            on_pool!(self, |p| sqlx::query_as("SELECT key, value FROM settings")
                .fetch_all(p)
                .await?);
        Settings::from_pairs(rows.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Whether `key` has ever been set (as opposed to running on its default).
    pub async fn setting_is_stored(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM settings WHERE key = $1"
        )
        .bind(key)
        .fetch_one(p)
        .await?);
        Ok(n > 0)
    }

    /// Checks the value against the typed settings before anything is written.
    /// Returns the value it replaced.
    pub async fn set_setting(
        &self,
        key: &str,
        value: &str,
        now: UnixTime,
    ) -> Result<String, StoreError> {
        let mut settings = self.load_settings().await?;
        let before = settings
            .get(key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        settings
            .set(key, value)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let normalised = settings
            .get(key)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        on_pool!(self, |p| {
            sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        )
        .bind(key)
        .bind(&normalised)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected()
        });
        self.config_changed().await;
        Ok(before)
    }
}
