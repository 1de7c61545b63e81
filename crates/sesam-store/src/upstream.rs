//! Links between local users and an upstream eID's identities (MitID through an OpenID
//! Connect broker), found by the keyed hash of the linking claim.

use sesam_core::{UnixTime, UserId};

use crate::{on_pool, Store, StoreError};

impl Store {
    /// The user linked to `subject_hash` at `issuer`.
    pub async fn upstream_link(
        &self,
        issuer: &str,
        subject_hash: &str,
    ) -> Result<Option<UserId>, StoreError> {
        let id: Option<String> = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT user_id FROM upstream_links WHERE issuer = $1 AND subject_hash = $2"
        )
        .bind(issuer)
        .bind(subject_hash)
        .fetch_optional(p)
        .await?);
        Ok(id.map(UserId))
    }

    /// Links the identity to `user`; `false` when it is linked already (to anyone), which
    /// leaves the first link as it was.
    pub async fn add_upstream_link(
        &self,
        issuer: &str,
        subject_hash: &str,
        user: &UserId,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let done = on_pool!(self, |p| sqlx::query(
            "INSERT INTO upstream_links (issuer, subject_hash, user_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (issuer, subject_hash) DO NOTHING"
        )
        .bind(issuer)
        .bind(subject_hash)
        .bind(&user.0)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// How many upstream identities are linked to `user`.
    pub async fn count_upstream_links(&self, user: &UserId) -> Result<i64, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM upstream_links WHERE user_id = $1"
        )
        .bind(&user.0)
        .fetch_one(p)
        .await?))
    }
}
