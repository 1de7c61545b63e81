//! APNs: one HTTP/2 POST per push, authenticated with a provider JWT signed by the team's .p8 key.
//! The JWT is cached and re-made before Apple's one-hour limit, because Apple refuses renewals that come too often.

use std::fmt;
use std::sync::Mutex;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::json;

use crate::transport::{self, clip, with_retries, Attempt, Clock, Tuning};
use crate::{Delivery, Notification, Provider, PushError};

/// Apple asks for a new provider token at most every 20 and at least every 60 minutes.
const TOKEN_LIFETIME_SECS: u64 = 50 * 60;

/// How Sesam reaches Apple's push service.
#[derive(Clone)]
pub struct ApnsConfig {
    /// `https://api.push.apple.com` in production (see [`ApnsConfig::PRODUCTION_URL`]).
    pub base_url: String,
    /// Contents of the `.p8` file: a PKCS#8 PEM P-256 private key.
    pub key_pem: String,
    /// The key's id (10 characters, shown next to the key in Apple's developer account).
    pub key_id: String,
    /// The Apple developer team id.
    pub team_id: String,
    /// The app's bundle id.
    pub topic: String,
    /// PEM certificates trusted in addition to the bundled roots (a TLS-inspecting proxy's CA,
    /// or a test CA); `None` in the usual case.
    pub ca_file_pem: Option<String>,
}

impl ApnsConfig {
    pub const PRODUCTION_URL: &'static str = "https://api.push.apple.com";
    /// For development builds of the app, whose tokens only the sandbox accepts.
    pub const SANDBOX_URL: &'static str = "https://api.sandbox.push.apple.com";
}

// By hand, so the private key never reaches a log through `{:?}`.
impl fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("base_url", &self.base_url)
            .field("key_pem", &"<redacted>")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .field("ca_file_pem", &self.ca_file_pem.is_some())
            .finish()
    }
}

/// A configured APNs sender.
pub(crate) struct Apns {
    client: reqwest::Client,
    base_url: String,
    topic: HeaderValue,
    provider_token: ProviderToken,
    tuning: Tuning,
}

impl Apns {
    pub(crate) fn new(config: ApnsConfig, tuning: Tuning) -> Result<Apns, PushError> {
        let base_url = crate::check_base_url(Provider::Apns, &config.base_url)?;
        let key = SigningKey::from_pkcs8_pem(config.key_pem.trim())
            .map_err(|err| PushError::ApnsKey(err.to_string()))?;
        let key_id = required(config.key_id, "key_id")?;
        let team_id = required(config.team_id, "team_id")?;
        let topic = required(config.topic, "topic")?;
        let topic =
            HeaderValue::from_str(&topic).map_err(|_| PushError::ApnsSetting { field: "topic" })?;

        // APNs speaks only HTTP/2. Insisting on it makes TLS offer just "h2" (no silent fallback
        // to HTTP/1.1, which Apple refuses) and lets a plain http:// mock be spoken to as h2c.
        let client =
            transport::client_builder(Provider::Apns, &tuning, config.ca_file_pem.as_deref())?
                .http2_prior_knowledge()
                .build()
                .map_err(|err| PushError::HttpClient {
                    provider: Provider::Apns,
                    reason: transport::error_chain(&err),
                })?;

        Ok(Apns {
            client,
            base_url,
            topic,
            provider_token: ProviderToken {
                key,
                key_id,
                team_id,
                clock: tuning.clock.clone(),
                cached: Mutex::new(None),
            },
            tuning,
        })
    }

    pub(crate) async fn send(&self, device_token: &str, n: &Notification) -> Delivery {
        // The token becomes part of the URL path; anything but hex cannot be an APNs token and
        // must not be able to change the path.
        if device_token.is_empty() || !device_token.chars().all(|c| c.is_ascii_hexdigit()) {
            return Delivery::TokenInvalid;
        }
        let url = format!("{}/3/device/{device_token}", self.base_url);
        let body = json!({
            "aps": {
                "alert": { "title": n.title, "body": n.body },
                "sound": "default",
            },
            "challenge_id": n.challenge_id,
        })
        .to_string();
        with_retries(Provider::Apns, &self.tuning, || {
            self.attempt(&url, &n.challenge_id, body.clone())
        })
        .await
    }

    async fn attempt(&self, url: &str, challenge_id: &str, body: String) -> Attempt {
        let jwt = match self.provider_token.current() {
            Ok(jwt) => jwt,
            Err(reason) => return Attempt::Final(Delivery::Failed(reason)),
        };
        let sent = self
            .client
            .post(url)
            .header(AUTHORIZATION, format!("bearer {jwt}"))
            .header("apns-topic", self.topic.clone())
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            // A newer challenge for the same id replaces the banner instead of stacking.
            .header("apns-collapse-id", challenge_id)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return transport::transport_failure(Provider::Apns, "apns", err),
        };

        let status = response.status();
        if status.is_success() {
            return Attempt::Final(Delivery::Delivered);
        }
        let headers = response.headers().clone();
        let reason = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice::<ApnsRejection>(&bytes)
                .map(|rejection| rejection.reason)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned()),
            Err(_) => String::new(),
        };
        let reason = clip(reason.trim());
        let described = if reason.is_empty() {
            format!("apns answered {status}")
        } else {
            format!("apns answered {status}: {reason}")
        };

        match (status.as_u16(), reason.as_str()) {
            (410, _) | (400, "BadDeviceToken" | "Unregistered") => {
                Attempt::Final(Delivery::TokenInvalid)
            }
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                // Not retried (a 4xx), but the next push must not present the same JWT again.
                self.provider_token.forget();
                Attempt::Final(Delivery::Failed(described))
            }
            (429, _) => Attempt::rate_limited(&headers, &self.tuning.clock, described),
            (code, _) if code >= 500 => Attempt::Transient(described),
            _ => Attempt::Final(Delivery::Failed(described)),
        }
    }
}

#[derive(Deserialize)]
struct ApnsRejection {
    #[serde(default)]
    reason: String,
}

fn required(value: String, field: &'static str) -> Result<String, PushError> {
    let value = value.trim().to_owned();
    if value.is_empty() {
        Err(PushError::ApnsSetting { field })
    } else {
        Ok(value)
    }
}

/// The ES256 provider JWT, made on demand and kept for [`TOKEN_LIFETIME_SECS`].
struct ProviderToken {
    key: SigningKey,
    key_id: String,
    team_id: String,
    clock: Clock,
    /// (compact JWS, its `iat`)
    cached: Mutex<Option<(String, u64)>>,
}

impl ProviderToken {
    fn current(&self) -> Result<String, String> {
        let now = (self.clock)();
        // A poisoned lock only means another push panicked mid-update; the cache stays usable.
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((jwt, issued_at)) = cached.as_ref() {
            // `now < issued_at` means the clock was set back; a fresh token is the safe answer.
            if now >= *issued_at && now - issued_at < TOKEN_LIFETIME_SECS {
                return Ok(jwt.clone());
            }
        }
        let jwt = self.sign(now)?;
        *cached = Some((jwt.clone(), now));
        tracing::debug!(kid = %self.key_id, iat = now, "made a new APNs provider token");
        Ok(jwt)
    }

    fn forget(&self) {
        *self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    fn sign(&self, now: u64) -> Result<String, String> {
        let header = json!({ "alg": "ES256", "kid": self.key_id });
        let claims = json!({ "iss": self.team_id, "iat": now });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature: Signature = self
            .key
            .try_sign(signing_input.as_bytes())
            .map_err(|err| format!("could not sign the APNs provider token: {err}"))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}
