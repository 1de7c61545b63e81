//! Settings and service registrations kept in memory, because every login step reads them and
//! they change only when an administrator acts. Forgotten on every local change, on a change
//! announced by another node (PostgreSQL NOTIFY), and in any case after [`MAX_AGE`], which is
//! how long a change made by another process without notification (the CLI on SQLite, a lost
//! NOTIFY) can go unseen.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use sesam_core::{Settings, UnixTime};

use crate::{on_pool, OidcClient, SamlSp, Store, StoreError};

/// The longest a cached value is used without reading the database again.
pub const MAX_AGE: Duration = Duration::from_secs(2);

/// Registrations kept at most; more than any organisation registers, so the cache cannot
/// grow without bound.
const MAX_ENTRIES: usize = 4096;

/// How often (in the store's own Unix seconds) expired replay-cache rows are deleted: once per
/// interval instead of once per insert. Rows past their expiry refuse nothing they should not
/// (their proofs and requests are refused as too old anyway), so a late delete only costs space.
pub(crate) const PURGE_EVERY_SECONDS: i64 = 60;

const CONFIG_CHANNEL: &str = "sesam_config";

#[derive(Default)]
pub(crate) struct Shared {
    /// Raised by every change; a read that started under an older generation does not fill
    /// the cache, so a change racing a read is never hidden behind the read's old value.
    pub(crate) generation: AtomicU64,
    settings: RwLock<Option<(Instant, Settings)>>,
    saml_sps: RwLock<HashMap<String, (Instant, SamlSp)>>,
    oidc_clients: RwLock<HashMap<String, (Instant, OidcClient)>>,
    pub(crate) logo: RwLock<Option<(Instant, Option<std::sync::Arc<crate::Logo>>)>>,
    /// When each replay table was last purged, per [`Purge`].
    purged: [AtomicI64; 3],
    /// Told the name of every audit event written (the server counts logins with it).
    pub(crate) audit_observer: std::sync::OnceLock<crate::audit::AuditObserver>,
}

/// The tables whose expired rows are purged on the side of an insert.
#[derive(Clone, Copy)]
pub(crate) enum Purge {
    ProofReplay = 0,
    SamlRequestIds = 1,
    SamlParticipants = 2,
}

pub(crate) fn fresh<T: Clone>(entry: Option<&(Instant, T)>) -> Option<T> {
    entry
        .filter(|(at, _)| at.elapsed() < MAX_AGE)
        .map(|(_, v)| v.clone())
}

impl Shared {
    fn forget(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut s) = self.settings.write() {
            *s = None;
        }
        if let Ok(mut m) = self.saml_sps.write() {
            m.clear();
        }
        if let Ok(mut m) = self.oidc_clients.write() {
            m.clear();
        }
        if let Ok(mut l) = self.logo.write() {
            *l = None;
        }
    }
}

impl Store {
    /// The settings, from memory when read less than [`MAX_AGE`] ago. For the login and
    /// protocol paths; a read that must see another process's change at once (the portal's
    /// settings form, the CLI) uses [`Store::load_settings`].
    pub async fn settings(&self) -> Result<Settings, StoreError> {
        if let Some(s) = self
            .shared
            .settings
            .read()
            .ok()
            .and_then(|s| fresh(s.as_ref()))
        {
            return Ok(s);
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let settings = self.load_settings().await?;
        if let Ok(mut slot) = self.shared.settings.write() {
            if self.shared.generation.load(Ordering::SeqCst) == generation {
                *slot = Some((Instant::now(), settings.clone()));
            }
        }
        Ok(settings)
    }

    /// A SAML SP by entity ID, from memory as [`Store::settings`] is. Unknown IDs are not
    /// remembered (anyone can send them).
    pub async fn saml_sp_cached(&self, entity_id: &str) -> Result<Option<SamlSp>, StoreError> {
        if let Some(sp) = self
            .shared
            .saml_sps
            .read()
            .ok()
            .and_then(|m| fresh(m.get(entity_id)))
        {
            return Ok(Some(sp));
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let sp = self.saml_sp(entity_id).await?;
        if let (Some(sp), Ok(mut map)) = (&sp, self.shared.saml_sps.write()) {
            if self.shared.generation.load(Ordering::SeqCst) == generation
                && (map.len() < MAX_ENTRIES || map.contains_key(entity_id))
            {
                map.insert(entity_id.to_owned(), (Instant::now(), sp.clone()));
            }
        }
        Ok(sp)
    }

    /// An OIDC client by id, from memory as [`Store::settings`] is. Unknown ids are not
    /// remembered.
    pub async fn oidc_client_cached(
        &self,
        client_id: &str,
    ) -> Result<Option<OidcClient>, StoreError> {
        if let Some(c) = self
            .shared
            .oidc_clients
            .read()
            .ok()
            .and_then(|m| fresh(m.get(client_id)))
        {
            return Ok(Some(c));
        }
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let client = self.get_oidc_client(client_id).await?;
        if let (Some(c), Ok(mut map)) = (&client, self.shared.oidc_clients.write()) {
            if self.shared.generation.load(Ordering::SeqCst) == generation
                && (map.len() < MAX_ENTRIES || map.contains_key(client_id))
            {
                map.insert(client_id.to_owned(), (Instant::now(), c.clone()));
            }
        }
        Ok(client)
    }

    /// Forgets every cached setting and registration (another node changed one).
    pub fn forget_cached_config(&self) {
        self.shared.forget();
    }

    /// After a local change to settings or registrations: forget the cache here and tell the
    /// other nodes to forget theirs. A failed notification is logged by the caller's error
    /// path only as far as the write is concerned: the change is stored, and the other nodes
    /// see it within [`MAX_AGE`] regardless.
    pub(crate) async fn config_changed(&self) {
        self.shared.forget();
        if let crate::Pool::Postgres(p) = &self.pool {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CONFIG_CHANNEL)
                .execute(p)
                .await
            {
                tracing::warn!(error = %e, "could not tell the other nodes about a configuration change");
            }
        }
    }

    /// A listener for other nodes' configuration changes; `None` with SQLite.
    pub async fn config_listener(&self) -> Result<Option<ConfigListener>, StoreError> {
        match &self.pool {
            crate::Pool::Sqlite(_) => Ok(None),
            crate::Pool::Postgres(p) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(p).await?;
                listener.listen(CONFIG_CHANNEL).await?;
                Ok(Some(ConfigListener(listener)))
            }
        }
    }

    /// Whether the expired rows of `table` are due to be deleted at `now`; true for one caller
    /// per interval.
    pub(crate) fn purge_due(&self, table: Purge, now: UnixTime) -> bool {
        let last = &self.shared.purged[table as usize];
        let seen = last.load(Ordering::SeqCst);
        // A clock set back (`now < seen`) must not stop the purge for good.
        let due = now.0 >= seen.saturating_add(PURGE_EVERY_SECONDS) || now.0 < seen;
        due && last
            .compare_exchange(seen, now.0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Counts rows of a table, for tests of what a request stores.
    #[doc(hidden)]
    pub async fn count_rows(&self, table: &str) -> Result<i64, StoreError> {
        let sql = match table {
            "proof_replay" | "saml_request_ids" | "saml_participants" | "sessions" => {
                format!("SELECT COUNT(*) FROM {table}")
            }
            _ => return Err(StoreError::Corrupt(format!("no such table: {table}"))),
        };
        Ok(on_pool!(self, |p| sqlx::query_scalar(&sql)
            .fetch_one(p)
            .await?))
    }
}

/// Configuration changes announced by any node (PostgreSQL LISTEN).
pub struct ConfigListener(sqlx::postgres::PgListener);

impl ConfigListener {
    /// Waits for the next change. Reconnects by itself after a lost connection; what was
    /// announced meanwhile is lost, which is why cached values also age out.
    pub async fn recv(&mut self) -> Result<(), StoreError> {
        self.0.recv().await?;
        Ok(())
    }
}
