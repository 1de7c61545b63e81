//! Start-up: open and migrate the store, make sure an administrator exists, bind, serve,
//! and stop gracefully.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sesam_core::{Clock, Username};
use sesam_store::{AuditEvent, NewUser, SessionStore, Store, StoreError};
use tokio::task::JoinHandle;
use tower_sessions::ExpiredDeletion;

use crate::config::Config;
use crate::password::{generate_one_time_password, hash_now};
use crate::state::AppState;
use crate::web;

/// A server that is accepting connections.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub store: Store,
    /// What the handlers share (tests start challenges through it).
    pub state: AppState,
    /// Set on the very first start: the administrator's one-time password.
    pub initial_admin_password: Option<String>,
    serving: JoinHandle<std::io::Result<()>>,
    cleanup: JoinHandle<()>,
    relay: JoinHandle<()>,
    /// The scheduled directory sync, when `ldap_sync_interval_seconds` is set.
    directory_sync: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting, lets requests in flight finish, and closes the database.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.state.begin_stop();
        self.serving.await??;
        self.cleanup.abort();
        self.relay.abort();
        if let Some(sync) = &self.directory_sync {
            sync.abort();
        }
        self.store.close().await;
        Ok(())
    }

    /// Runs until SIGTERM or Ctrl-C (listened for since `signal` was installed), then stops
    /// within the shutdown grace period.
    pub async fn stop_on(self, signal: StopSignal) -> anyhow::Result<()> {
        signal.received().await;
        tracing::info!("shutting down");
        self.stop().await
    }
}

/// Opens the database named by `config` and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database_url)
        .await
        .with_context(|| format!("opening {}", config.database_url_for_display()))?;
    let applied = store.migrate().await?;
    if applied > 0 {
        tracing::info!(applied, "database migrated");
    }
    Ok(store)
}

/// For the admin commands: the database `sesam serve` uses, never a new empty one made by
/// running a command in another directory.
pub async fn open_existing_store(config: &Config) -> anyhow::Result<Store> {
    if let Some(path) = sesam_store::sqlite_file(&config.database_url) {
        if !path.exists() {
            let shown = std::path::absolute(&path).unwrap_or(path);
            anyhow::bail!(
                "there is no Sesam database at {}. This command works on the database that \
                 `sesam serve` uses: run it where Sesam runs, or give the same --config or \
                 SESAM_DATABASE_URL. (`sesam migrate` creates a new database on purpose.)",
                shown.display()
            );
        }
    }
    open_store(config).await
}

pub async fn start(mut config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<RunningServer> {
    let files = raise_file_limit();
    // Room for the database pool, key files and the log beside the connections.
    let room = files.saturating_sub(64).max(16) as usize;
    if config.limits.max_connections > room {
        tracing::info!(
            configured = config.limits.max_connections,
            room,
            "max_connections lowered to fit the open-files limit"
        );
        config.limits.max_connections = room;
    }
    let store = open_store(&config).await?;
    let initial_admin_password = ensure_admin(&store, clock.as_ref()).await?;
    if let Some(password) = &initial_admin_password {
        // Printed once, on purpose, straight to the operator's terminal rather than through
        // the log pipeline: it is the only way in on a fresh installation.
        eprintln!(
            "\n  First start: created administrator 'admin' with one-time password: {password}\n  \
             It is shown only now. Log in at {url}/login and choose a new password.\n  \
             The admin portal ({url}/admin) needs a login with the Sesam app: enrol the app with\n  \
             the code that `sesam device activation-code --user admin` prints.\n",
            url = config.public_url
        );
    }
    if config.demo {
        crate::demo::seed(&store, clock.as_ref()).await?;
    }
    let settings = store.load_settings().await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    if config.listen.port() == 0 && config.public_url == "http://localhost:0" {
        // A random port (tests, the benchmark) and no public URL: the address is the URL.
        config.public_url = format!("http://{addr}");
    }
    let oidc = crate::oidc::OidcProvider::load(&store, &config, clock.now()).await?;
    let saml = crate::saml::SamlIdp::load(&store, &config, clock.now()).await?;
    let pusher = crate::push::build(&config.push, &store, clock.clone())?;
    let directory = match config.directory.clone() {
        Some(d) => Some(crate::directory::Directory::new(d)?),
        None => None,
    };
    let sync_every = config
        .directory
        .as_ref()
        .map(|d| d.sync_interval_seconds)
        .filter(|&s| s > 0)
        .map(std::time::Duration::from_secs);
    let state = AppState::new(
        config,
        store.clone(),
        clock.clone(),
        pusher,
        oidc,
        saml,
        directory,
    );
    let shared = state.clone();
    let directory_sync = sync_every.map(|every| {
        tokio::spawn(crate::service::directory::sync_on_schedule(
            state.clone(),
            every,
        ))
    });
    let relay = tokio::spawn({
        let store = store.clone();
        let challenges = crate::challenges::relay_notifications(state.clone());
        let push_retries = crate::challenges::retry_pushes(state.clone());
        async move {
            tokio::join!(challenges, relay_config_changes(store), push_retries);
        }
    });
    let (app, cleanup) = match store.session_store() {
        SessionStore::Sqlite(s) => (
            web::router(state, s.clone(), settings.session_idle_seconds),
            tokio::spawn(delete_expired(s, store.clone(), clock.clone())),
        ),
        SessionStore::Postgres(s) => (
            web::router(state, s.clone(), settings.session_idle_seconds),
            tokio::spawn(delete_expired(s, store.clone(), clock.clone())),
        ),
    };

    let limits = shared.config.limits.clone();
    let stopping = shared.stopping.clone();
    let serving = tokio::spawn(crate::serve::serve(listener, app, limits, stopping));
    tracing::info!(%addr, "Sesam is listening");
    Ok(RunningServer {
        addr,
        store,
        state: shared,
        initial_admin_password,
        serving,
        cleanup,
        relay,
        directory_sync,
    })
}

/// Forgets the cached settings and registrations when another node changed one (PostgreSQL
/// LISTEN), and reconnects after a lost connection; forgets them once more after reconnecting,
/// since what was announced meanwhile is lost. Returns at once with SQLite.
async fn relay_config_changes(store: Store) {
    loop {
        match store.config_listener().await {
            Ok(None) => return,
            Ok(Some(mut listener)) => {
                store.forget_cached_config();
                while listener.recv().await.is_ok() {
                    store.forget_cached_config();
                }
                tracing::warn!("configuration-change notifications interrupted");
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for configuration changes"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Every ten minutes: forget expired sessions, and OIDC codes and tokens that can no longer
/// be used.
async fn delete_expired<S: ExpiredDeletion>(sessions: S, store: Store, clock: Arc<dyn Clock>) {
    let sessions = async {
        if let Err(e) = sessions
            .continuously_delete_expired(tokio::time::Duration::from_secs(600))
            .await
        {
            tracing::warn!(error = %e, "expired-session clean-up stopped");
        }
    };
    let oidc = async {
        let mut every = tokio::time::interval(tokio::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            let lifetime = sesam_oidc::CODE_LIFETIME_SECS as i64;
            if let Err(e) = store.delete_expired_oidc(clock.now(), lifetime).await {
                tracing::warn!(error = %e, "OIDC clean-up failed");
            }
        }
    };
    tokio::join!(sessions, oidc);
}

/// Creates `admin` with a one-time password when no administrator exists. Returns the
/// password when it did. Another node doing the same at once is not an error.
pub async fn ensure_admin(store: &Store, clock: &dyn Clock) -> anyhow::Result<Option<String>> {
    if store.count_admins().await? > 0 {
        return Ok(None);
    }
    let password = generate_one_time_password();
    let hash = hash_now(&password)?;
    let new = NewUser {
        username: Username::parse("admin").expect("static username is valid"),
        display_name: "Administrator".into(),
        email: None,
        password_hash: Some(hash),
        is_admin: true,
        password_only: false,
        must_change_password: true,
    };
    match store.create_user(new, clock.now()).await {
        Ok(_) => {
            store
                .append_audit(
                    &AuditEvent::new("admin.bootstrapped")
                        .actor("system")
                        .subject("admin")
                        .detail("first start: administrator created with a one-time password"),
                    clock.now(),
                )
                .await?;
            Ok(Some(password))
        }
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Raises the soft open-files limit to the hard one and returns the limit now in force.
fn raise_file_limit() -> u64 {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let limit = getrlimit(Resource::Nofile);
        let current = limit.current.unwrap_or(u64::MAX);
        if let (Some(cur), Some(max)) = (limit.current, limit.maximum) {
            if cur < max {
                let raised = Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                };
                if setrlimit(Resource::Nofile, raised).is_ok() {
                    return max;
                }
            }
        } else if limit.current.is_some() && limit.maximum.is_none() {
            // The hard limit is unlimited: raise the soft one to something large but finite.
            let raised = Rlimit {
                current: Some(1 << 20),
                maximum: None,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                return 1 << 20;
            }
        }
        current
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}

/// SIGTERM and Ctrl-C, listened for from the moment it is installed: install it before the
/// listener binds, so a signal that comes as soon as the port answers is not lost.
pub struct StopSignal {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    pub fn install() -> StopSignal {
        StopSignal {
            #[cfg(unix)]
            terminate: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok(),
        }
    }

    async fn received(self) {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match self.terminate {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate => {},
        }
    }
}
