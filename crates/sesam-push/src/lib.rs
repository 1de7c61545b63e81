//! Push delivery for Sesam: wakes the user's app through Apple (APNs) or Google (FCM), or records
//! the push in an outbox during development. Only the challenge id and a neutral text ever leave Sesam.
//!
//! Both services are spoken to directly with reqwest (see DESIGN.md, "Push libraries"), with
//! configurable base URLs so the real code path runs against local mocks in the tests. A push
//! either arrives, or the provider says the token is dead (the caller removes it), or it fails
//! with a reason to log; the app can always pull the challenge, so no failure is fatal.
#![forbid(unsafe_code)]

mod apns;
mod fcm;
mod transport;

#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use apns::ApnsConfig;
pub use fcm::FcmConfig;

use transport::Tuning;

/// The push service a device token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Apns,
    Fcm,
}

impl Provider {
    /// The stored and configured name: `"apns"` or `"fcm"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = PushError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "apns" => Ok(Provider::Apns),
            "fcm" => Ok(Provider::Fcm),
            other => Err(PushError::UnknownProvider(other.to_owned())),
        }
    }
}

/// Where a push goes: the provider and the device token the app registered.
#[derive(Clone, PartialEq, Eq)]
pub struct PushToken {
    pub provider: Provider,
    pub token: String,
}

// By hand, so a token never appears in full in a log.
impl fmt::Debug for PushToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushToken")
            .field("provider", &self.provider)
            .field("token", &transport::redact(&self.token))
            .finish()
    }
}

/// Only the challenge id and a neutral text ever leave Sesam.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub challenge_id: String,
    pub title: String,
    pub body: String,
}

/// What became of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Apple or Google say the token is no longer valid (or it cannot be one): the caller removes it.
    TokenInvalid,
    /// The provider could not take it just now (5xx, 429, a timeout, a lost connection) even
    /// after this call's own retries: worth trying again later, after `retry_after` seconds
    /// if the provider said so.
    Unavailable {
        reason: String,
        retry_after: Option<u64>,
    },
    /// Refused for good (a 4xx, a bad key, a TLS failure: a configuration error), with a
    /// reason fit for the log (no token, no key). Trying again would not help.
    Failed(String),
}

/// Development/test provider: records pushes (the server implements it over its database).
pub trait Outbox: Send + Sync + 'static {
    fn record<'a>(
        &'a self,
        to: &'a PushToken,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// A push configuration that cannot work; reported at start-up by [`Pusher::live`].
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("unknown push provider {0:?} (expected \"apns\" or \"fcm\")")]
    UnknownProvider(String),
    #[error("{provider} base URL {url:?} is not an http:// or https:// URL")]
    BadBaseUrl { provider: Provider, url: String },
    #[error(
        "the APNs key is not a PKCS#8 P-256 private key (the contents of Apple's .p8 file): {0}"
    )]
    ApnsKey(String),
    #[error("the APNs {field} is empty or not usable in an HTTP header")]
    ApnsSetting { field: &'static str },
    #[error("the FCM service account JSON is not usable: {0}")]
    FcmServiceAccount(String),
    #[error("the FCM project id is missing or malformed (set it, or use a service account JSON that has project_id)")]
    FcmProjectId,
    #[error("{provider}_ca_file does not hold usable PEM certificates: {reason}")]
    CaCertificate { provider: Provider, reason: String },
    #[error("could not set up the HTTP client for {provider}: {reason}")]
    HttpClient { provider: Provider, reason: String },
}

/// Sends pushes; cheap to clone (the HTTP clients and token caches are shared).
#[derive(Clone)]
pub struct Pusher {
    mode: Arc<Mode>,
}

#[expect(
    clippy::large_enum_variant,
    reason = "made once and kept behind an Arc, so its size never moves"
)]
enum Mode {
    Outbox(Arc<dyn Outbox>),
    Live {
        apns: Option<apns::Apns>,
        fcm: Option<fcm::Fcm>,
    },
}

impl fmt::Debug for Pusher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.mode {
            Mode::Outbox(_) => f.write_str("Pusher::Outbox"),
            Mode::Live { apns, fcm } => f
                .debug_struct("Pusher::Live")
                .field("apns", &apns.is_some())
                .field("fcm", &fcm.is_some())
                .finish(),
        }
    }
}

impl Pusher {
    /// Records pushes instead of sending them (development, demo, end-to-end tests).
    pub fn outbox(outbox: Arc<dyn Outbox>) -> Pusher {
        Pusher {
            mode: Arc::new(Mode::Outbox(outbox)),
        }
    }

    /// Sends through Apple and/or Google. Checks the keys and URLs now, so a bad configuration
    /// stops start-up instead of failing on the first login.
    pub fn live(apns: Option<ApnsConfig>, fcm: Option<FcmConfig>) -> Result<Pusher, PushError> {
        Pusher::live_tuned(apns, fcm, Tuning::default())
    }

    pub(crate) fn live_tuned(
        apns: Option<ApnsConfig>,
        fcm: Option<FcmConfig>,
        tuning: Tuning,
    ) -> Result<Pusher, PushError> {
        let apns = apns
            .map(|config| apns::Apns::new(config, tuning.clone()))
            .transpose()?;
        let fcm = fcm
            .map(|config| fcm::Fcm::new(config, tuning))
            .transpose()?;
        Ok(Pusher {
            mode: Arc::new(Mode::Live { apns, fcm }),
        })
    }

    /// Sends one push. Never panics; a few bounded retries (see `transport`), each attempt
    /// bounded by a timeout.
    pub async fn send(&self, to: &PushToken, n: &Notification) -> Delivery {
        let delivery = match &*self.mode {
            Mode::Outbox(outbox) => match outbox.record(to, n).await {
                Ok(()) => Delivery::Delivered,
                Err(reason) => Delivery::Failed(format!("outbox: {reason}")),
            },
            Mode::Live { apns, fcm } => match (to.provider, apns, fcm) {
                (Provider::Apns, Some(apns), _) => apns.send(&to.token, n).await,
                (Provider::Fcm, _, Some(fcm)) => fcm.send(&to.token, n).await,
                (provider, _, _) => Delivery::Failed(format!("{provider} is not configured")),
            },
        };

        let token = transport::redact(&to.token);
        let provider = to.provider.as_str();
        let challenge = n.challenge_id.as_str();
        match &delivery {
            Delivery::Delivered => tracing::info!(provider, %token, challenge, "push delivered"),
            Delivery::TokenInvalid => {
                tracing::warn!(provider, %token, challenge, "push token is no longer valid")
            }
            Delivery::Unavailable { reason, .. } => {
                tracing::warn!(provider, %token, challenge, %reason, "push provider unavailable")
            }
            Delivery::Failed(reason) => {
                tracing::warn!(provider, %token, challenge, %reason, "push failed")
            }
        }
        delivery
    }
}

/// Accepts `http://` (mocks, h2c) and `https://` URLs and drops a trailing `/`, since paths are
/// appended to it.
fn check_base_url(provider: Provider, url: &str) -> Result<String, PushError> {
    let bad = || PushError::BadBaseUrl {
        provider,
        url: url.to_owned(),
    };
    let parsed = reqwest::Url::parse(url.trim()).map_err(|_| bad())?;
    let usable = matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some()
        && parsed.query().is_none()
        && parsed.fragment().is_none();
    if !usable {
        return Err(bad());
    }
    Ok(url.trim().trim_end_matches('/').to_owned())
}
