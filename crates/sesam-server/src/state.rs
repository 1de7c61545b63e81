//! What every handler shares.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use sesam_core::{Clock, UnixTime};
use sesam_store::Store;

use crate::config::Config;
use crate::credentials::PasswordCheck;
use crate::password::Passwords;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub passwords: Passwords,
    /// The organisation's directory, when configured: it checks its users' passwords.
    pub directory: Option<crate::directory::Directory>,
    pub pusher: sesam_push::Pusher,
    /// Ids of challenges that changed on this node.
    pub challenge_events: tokio::sync::broadcast::Sender<String>,
    pub oidc: crate::oidc::OidcProvider,
    /// The WebAuthn relying party of `public_url`; none when its host is no domain name.
    pub passkeys: Option<Arc<crate::passkey::RelyingParty>>,
    pub saml: crate::saml::SamlIdp,
    /// Turns true when the server begins to shut down (event streams end on it).
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Waiting browsers' open event streams, per session.
    pub event_streams: crate::web::streams::StreamCounts,
    /// Per-address request allowance on the endpoints outsiders call.
    pub flood: crate::web::flood::FloodGuard,
    /// Failed client authentications at the token endpoint, per address.
    pub client_auth_failures: crate::web::flood::ClientAuthFailures,
    /// What `/metrics` reports; this server's own.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The upstream eID Sesam logs users in through, when configured.
    pub upstream: Option<crate::upstream::Upstream>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    pub fn new(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
        pusher: sesam_push::Pusher,
        oidc: crate::oidc::OidcProvider,
        saml: crate::saml::SamlIdp,
        directory: Option<crate::directory::Directory>,
    ) -> AppState {
        let passwords = Passwords::new(config.password_hash_concurrency);
        let (challenge_events, _) = tokio::sync::broadcast::channel(1024);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let passkeys = match crate::passkey::RelyingParty::new(&config.public_url, "Sesam") {
            Ok(rp) => Some(Arc::new(rp)),
            Err(reason) => {
                tracing::info!(%reason, "passkeys are not offered");
                None
            }
        };
        let counted = Arc::clone(&metrics);
        // One observer per store: a second server on the same store keeps the first's.
        let _ = store.observe_audit(Arc::new(move |event: &str| counted.audit_event(event)));
        let upstream = config.upstream.clone().and_then(|c| {
            crate::upstream::Upstream::new(c, &config.public_url, config.allow_private_fetch)
                .map_err(|e| tracing::error!(error = %e, "the upstream eID client cannot start; its button is not shown"))
                .ok()
        });
        AppState(Arc::new(Inner {
            upstream,
            metrics,
            stopping,
            stop,
            event_streams: Default::default(),
            flood: crate::web::flood::FloodGuard::new(&config.limits),
            client_auth_failures: Default::default(),
            config,
            store,
            clock,
            passwords,
            directory,
            pusher,
            challenge_events,
            oidc,
            saml,
            passkeys,
        }))
    }
    /// Begins the shutdown: the listener stops accepting, event streams end.
    pub fn begin_stop(&self) {
        let _ = self.0.stop.send(true);
    }

    pub fn now(&self) -> UnixTime {
        self.0.clock.now()
    }

    /// The adapter that checks the password of `user` (`None`: no local user of that name).
    /// A local user keeps Sesam's own password even when a directory is configured; a user
    /// linked to the directory, and a name Sesam does not know, go to the directory.
    pub fn password_check_for(&self, user: Option<&sesam_core::User>) -> &dyn PasswordCheck {
        match (&self.0.directory, user) {
            (Some(directory), None) => directory,
            (Some(directory), Some(u)) if u.directory_id.is_some() => directory,
            _ => &self.0.passwords,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The client's address: the TCP peer, or the last `X-Forwarded-For` hop when the operator
/// said Sesam runs behind its own proxy.
#[derive(Clone, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    pub fn text(&self) -> Option<String> {
        self.0.map(|ip| ip.to_string())
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ClientIp, Self::Rejection> {
        if state.config.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
            if forwarded.is_some() {
                return Ok(ClientIp(forwarded));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(peer))
    }
}
