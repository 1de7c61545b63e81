//! Queries for the admin portal: user search with keyset pagination, the whole population
//! for the passwordless preview, audit filters and the dashboard's counts.

use sesam_core::{Device, UnixTime, User};

use crate::audit::AuditEntry;
use crate::users::{UserRow, COLUMNS};
use crate::{on_pool, Store, StoreError};

/// What the audit log view filters on; every part optional.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    /// Events starting with this (e.g. `login.` or `device.enrolled`).
    pub event_prefix: Option<String>,
    pub from: Option<UnixTime>,
    pub until: Option<UnixTime>,
    /// Only entries older than this id (the next page).
    pub before_id: Option<i64>,
}

impl Store {
    /// Users whose username or display name contains `query` (case-insensitive), ordered
    /// by username, after `after_key` (keyset pagination: fast on any page).
    pub async fn search_users(
        &self,
        query: &str,
        after_key: Option<&str>,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        let pattern = format!(
            "%{}%",
            query
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE (username_key LIKE $1 ESCAPE '\\' OR LOWER(display_name) LIKE $1 ESCAPE '\\') \
             AND username_key > $2 ORDER BY username_key LIMIT $3"
        );
        let rows: Vec<UserRow> = on_pool!(self, |p| sqlx::query_as(&sql)
            .bind(&pattern)
            .bind(after_key.unwrap_or(""))
            .bind(limit)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(User::try_from).collect()
    }

    pub async fn count_users(&self) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM users"
        )
        .fetch_one(p)
        .await?))
    }

    /// Every user with their devices, for the passwordless preview.
    pub async fn population(&self) -> Result<Vec<(User, Vec<Device>)>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM users ORDER BY id");
        let rows: Vec<UserRow> = on_pool!(self, |p| sqlx::query_as(&sql).fetch_all(p).await?);
        let devices: Vec<(String, String, String, String, i64, String)> = on_pool!(self, |p| {
            sqlx::query_as(
            "SELECT user_id, id, platform, app_version, pin_length, status FROM devices ORDER BY user_id"
        )
        .fetch_all(p)
        .await?
        });
        let mut by_user: std::collections::HashMap<String, Vec<Device>> =
            std::collections::HashMap::new();
        for (user_id, id, platform, version, pin, status) in devices {
            let device = Device {
                id,
                platform: platform.parse().map_err(StoreError::Corrupt)?,
                app_version: version.parse().map_err(StoreError::Corrupt)?,
                pin_length: u32::try_from(pin).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                status: status.parse().map_err(StoreError::Corrupt)?,
            };
            by_user.entry(user_id).or_default().push(device);
        }
        rows.into_iter()
            .map(|r| {
                let user = User::try_from(r)?;
                let devices = by_user.remove(&user.id.0).unwrap_or_default();
                Ok((user, devices))
            })
            .collect()
    }

    /// Newest first.
    pub async fn filter_audit(
        &self,
        f: &AuditFilter,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let prefix = f.event_prefix.as_ref().map(|p| {
            format!(
                "{}%",
                p.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        });
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT id, at, actor, event, subject, client_ip, detail FROM audit_log \
             WHERE (CAST($1 AS TEXT) IS NULL OR subject = $1) \
               AND (CAST($2 AS TEXT) IS NULL OR event LIKE $2 ESCAPE '\\') \
               AND (CAST($3 AS BIGINT) IS NULL OR at >= $3) \
               AND (CAST($4 AS BIGINT) IS NULL OR at < $4) \
               AND (CAST($5 AS BIGINT) IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6"
        )
        .bind(&f.subject)
        .bind(&prefix)
        .bind(f.from.map(|t| t.0))
        .bind(f.until.map(|t| t.0))
        .bind(f.before_id)
        .bind(limit)
        .fetch_all(p)
        .await?))
    }

    /// How many audit events of each name since `since`.
    pub async fn count_events_since(
        &self,
        since: UnixTime,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as(
            "SELECT event, COUNT(*) FROM audit_log WHERE at >= $1 GROUP BY event ORDER BY event"
        )
        .bind(since.0)
        .fetch_all(p)
        .await?))
    }

    pub async fn count_pending_challenges(&self, now: UnixTime) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM challenges WHERE state = 'pending' AND expires_at > $1"
        )
        .bind(now.0)
        .fetch_one(p)
        .await?))
    }
}
