//! Sesam's persistence: one repository API with SQLite and PostgreSQL behind it.
//! Queries are written once in SQL both backends accept (`$N` parameters, Unix-second times).
#![forbid(unsafe_code)]

mod admin;
mod audit;
mod branding;
mod cache;
mod challenges;
mod devices;
mod directory;
mod error;
mod keys;
mod oidc;
mod passkeys;
mod push_retries;
mod saml;
mod scans;
mod scim;
mod settings;
mod throttle;
mod totp;
mod upstream;
mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use admin::AuditFilter;
pub use audit::{AuditEntry, AuditEvent, AuditObserver};
pub use branding::Logo;
pub use cache::{ConfigListener, MAX_AGE as CONFIG_CACHE_MAX_AGE};
pub use challenges::ChallengeListener;
pub use devices::{DeviceChange, DeviceRecord, NewDevice};
pub use directory::{DirectoryRoles, DirectoryUser, SyncLock};
pub use error::StoreError;
pub use oidc::{
    CodeUse, NewOidcClient, NewToken, OidcClient, OidcGrant, StoredCode, StoredToken, TokenKind,
};
pub use passkeys::{NewPasskey, PasskeyRecord};
pub use push_retries::PushRetry;
pub use saml::{NewSamlSp, SamlParticipant, SamlSp};
pub use scans::ScanRecord;
pub use scim::{RoleFlag, ScimClient, ScimProfile, ScimUser, ScimUserFilter};
pub use throttle::{Attempt, ThrottleState};
pub use totp::TotpRecord;
pub use users::NewUser;

/// Runs the same block against whichever pool the store holds. The block sees `$pool`
/// as a `&SqlitePool` or a `&PgPool`; queries must be valid for both.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($pool) => $body,
            $crate::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The backend a database URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::BadUrl(
                "database_url must start with sqlite: or postgres://".into(),
            ))
        }
    }
}

/// The session table for tower-sessions, on the same database.
pub enum SessionStore {
    Sqlite(tower_sessions_sqlx_store::SqliteStore),
    Postgres(tower_sessions_sqlx_store::PostgresStore),
}

#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// What all clones of this store share: the configuration cache and purge times.
    shared: std::sync::Arc<cache::Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// How many connections the pool holds now, and how many of them are idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolUse {
    pub open: u32,
    pub idle: usize,
}

impl Store {
    pub fn pool_use(&self) -> PoolUse {
        let (open, idle) = match &self.pool {
            Pool::Sqlite(p) => (p.size(), p.num_idle()),
            Pool::Postgres(p) => (p.size(), p.num_idle()),
        };
        PoolUse { open, idle }
    }
}

/// The file a SQLite database URL names (`None` for PostgreSQL and in-memory databases).
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    if Backend::of_url(url).ok()? != Backend::Sqlite {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    (!file.as_os_str().is_empty() && file.as_os_str() != ":memory:").then(|| file.to_path_buf())
}

impl Store {
    /// Opens (and for SQLite creates, with its directory) the database. Does not migrate.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let pool = match Backend::of_url(url)? {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::BadUrl(e.to_string()))?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                if let Some(dir) = options.get_filename().parent() {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            StoreError::BadUrl(format!("cannot create {}: {e}", dir.display()))
                        })?;
                    }
                }
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(8)
                        .connect_with(options)
                        .await?,
                )
            }
            Backend::Postgres => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(16)
                    // Connections are quick to get on a healthy database; when it is away
                    // (a restart, a failover) a request should hear so in seconds, as a 503,
                    // rather than hang (tests/e2e/failover.rs).
                    .acquire_timeout(Duration::from_secs(3))
                    .connect(url)
                    .await?,
            ),
        };
        Ok(Store {
            pool,
            shared: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the migrations this binary carries that the database has not seen yet.
    /// Returns how many were applied; a second run applies none.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let before = self.applied_migrations().await?;
        match &self.pool {
            Pool::Sqlite(p) => sqlx::migrate!("../../migrations/sqlite").run(p).await?,
            Pool::Postgres(p) => sqlx::migrate!("../../migrations/postgres").run(p).await?,
        }
        Ok(self.applied_migrations().await? - before)
    }

    async fn applied_migrations(&self) -> Result<usize, StoreError> {
        let exists: bool = match &self.pool {
            Pool::Sqlite(p) => sqlx::query_scalar(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_one(p)
            .await?,
            Pool::Postgres(p) => sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(p)
                .await?,
        };
        if !exists {
            return Ok(0);
        }
        let n: i64 = on_pool!(self, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM _sqlx_migrations WHERE success"
        )
        .fetch_one(p)
        .await?);
        Ok(n as usize)
    }

    /// Readiness: the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: i64 = on_pool!(self, |p| sqlx::query_scalar("SELECT CAST(1 AS BIGINT)")
            .fetch_one(p)
            .await?);
        Ok(())
    }

    pub fn session_store(&self) -> SessionStore {
        match &self.pool {
            Pool::Sqlite(p) => SessionStore::Sqlite(
                tower_sessions_sqlx_store::SqliteStore::new(p.clone())
                    .with_table_name("sessions")
                    .expect("static table name is valid"),
            ),
            Pool::Postgres(p) => SessionStore::Postgres(
                tower_sessions_sqlx_store::PostgresStore::new(p.clone())
                    .with_schema_name("public")
                    .expect("static schema name is valid")
                    .with_table_name("sessions")
                    .expect("static table name is valid"),
            ),
        }
    }

    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
