//! Private signing keys shared by every node (OIDC, SAML), kept in the database.

use sesam_core::UnixTime;

use crate::{on_pool, Store, StoreError};

impl Store {
    /// The PEM stored for `purpose`, if any.
    pub async fn signing_key(&self, purpose: &str) -> Result<Option<String>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_scalar(
            "SELECT pem FROM signing_keys WHERE purpose = $1"
        )
        .bind(purpose)
        .fetch_optional(p)
        .await?))
    }

    /// Stores `pem` for `purpose` unless a key is there already, and returns the key that
    /// is stored: when two nodes start together, both end with the first one's key.
    pub async fn insert_signing_key(
        &self,
        purpose: &str,
        pem: &str,
        now: UnixTime,
    ) -> Result<String, StoreError> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO signing_keys (purpose, pem, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (purpose) DO NOTHING"
        )
        .bind(purpose)
        .bind(pem)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        self.signing_key(purpose)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("signing key {purpose}")))
    }
}
