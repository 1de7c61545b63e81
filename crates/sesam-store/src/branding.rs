//! The organisation's logo: one row, read through the configuration cache because every
//! page names whether there is one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use sesam_core::UnixTime;

use crate::{on_pool, Store, StoreError};

/// An uploaded logo; `digest` (hex) names this version, for caching and the page's link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logo {
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Store {
    /// Replaces the logo; every node sees it within the cache's age.
    pub async fn set_logo(&self, logo: &Logo, now: UnixTime) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO branding_logo (id, content_type, bytes, digest, updated_at) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
             content_type = excluded.content_type, bytes = excluded.bytes, \
             digest = excluded.digest, updated_at = excluded.updated_at"
        )
        .bind(&logo.content_type)
        .bind(&logo.bytes)
        .bind(&logo.digest)
        .bind(now.0)
        .execute(p)
        .await?
        .rows_affected());
        self.config_changed().await;
        Ok(())
    }

    /// Removes the logo; whether there was one.
    pub async fn remove_logo(&self) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query("DELETE FROM branding_logo")
            .execute(p)
            .await?
            .rows_affected());
        self.config_changed().await;
        Ok(n > 0)
    }

    async fn load_logo(&self) -> Result<Option<Logo>, StoreError> {
        let row: Option<(String, Vec<u8>, String)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT content_type, bytes, digest FROM branding_logo WHERE id = 1"
        )
        .fetch_optional(p)
        .await?);
        Ok(row.map(|(content_type, bytes, digest)| Logo {
            content_type,
            bytes,
            digest,
        }))
    }

    /// The logo, from memory when read less than the cache's age ago.
    pub async fn logo(&self) -> Result<Option<Arc<Logo>>, StoreError> {
        if let Some(logo) = self
            .shared
            .logo
            .read()
            .ok()
            .and_then(|l| crate::cache::fresh(l.as_ref()))
        {
            return Ok(logo);
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let logo = self.load_logo().await?.map(Arc::new);
        if let Ok(mut slot) = self.shared.logo.write() {
            if self.shared.generation.load(Ordering::SeqCst) == generation {
                *slot = Some((Instant::now(), logo.clone()));
            }
        }
        Ok(logo)
    }
}
