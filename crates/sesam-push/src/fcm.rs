//! FCM HTTP v1: one POST per device token, authorised by an OAuth access token for a service account.
//! The JWT-bearer grant against the JSON's `token_uri` goes through the same HTTP client as the
//! pushes (so a configured CA applies to both); the token is cached until shortly before it expires.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gcp_auth::CustomServiceAccount;
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::transport::{self, clip, with_retries, Attempt, Clock, Tuning};
use crate::{Delivery, Notification, Provider, PushError};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Google accepts assertions valid for at most an hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A cached access token is renewed this long before it expires, so it never dies in flight.
const RENEW_BEFORE_SECS: u64 = 60;

/// How Sesam reaches Firebase Cloud Messaging.
#[derive(Clone)]
pub struct FcmConfig {
    /// `https://fcm.googleapis.com` in production (see [`FcmConfig::PRODUCTION_URL`]).
    pub base_url: String,
    /// The Firebase project; when empty, the `project_id` of the service account JSON is used.
    pub project_id: String,
    /// The service account key file as downloaded from Google (JSON). Its `token_uri` is where
    /// access tokens are requested.
    pub service_account_json: String,
    /// PEM certificates trusted in addition to the bundled roots, for the send API and the token
    /// endpoint alike; `None` in the usual case.
    pub ca_file_pem: Option<String>,
}

impl FcmConfig {
    pub const PRODUCTION_URL: &'static str = "https://fcm.googleapis.com";
}

// By hand, so the service account's private key never reaches a log through `{:?}`.
impl fmt::Debug for FcmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmConfig")
            .field("base_url", &self.base_url)
            .field("project_id", &self.project_id)
            .field("service_account_json", &"<redacted>")
            .field("ca_file_pem", &self.ca_file_pem.is_some())
            .finish()
    }
}

/// A configured FCM sender.
pub(crate) struct Fcm {
    client: reqwest::Client,
    send_url: String,
    auth: AccessTokens,
    tuning: Tuning,
}

impl Fcm {
    pub(crate) fn new(config: FcmConfig, tuning: Tuning) -> Result<Fcm, PushError> {
        let base_url = crate::check_base_url(Provider::Fcm, &config.base_url)?;
        // Read once ourselves for the project id and a clear message on malformed JSON; serde
        // errors name line and column, never the content, so no key material leaks into it.
        let account: Value = serde_json::from_str(&config.service_account_json)
            .map_err(|err| PushError::FcmServiceAccount(format!("not valid JSON: {err}")))?;
        let project_id = match config.project_id.trim() {
            "" => account
                .get("project_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or(PushError::FcmProjectId)?,
            given => given.to_owned(),
        };
        // The id becomes a path segment; Firebase project ids are lower-case letters, digits and '-'.
        if project_id.is_empty()
            || !project_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(PushError::FcmProjectId);
        }
        // gcp_auth parses the key and signs; the token request itself is ours (see the module doc).
        let account_key = CustomServiceAccount::from_json(&config.service_account_json)
            .map_err(|err| PushError::FcmServiceAccount(transport::error_chain(&err)))?;
        let text_field = |name: &str| {
            account
                .get(name)
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| PushError::FcmServiceAccount(format!("{name} is missing")))
        };
        let client_email = text_field("client_email")?;
        let token_uri = text_field("token_uri")?;
        if !matches!(
            reqwest::Url::parse(&token_uri)
                .map(|url| url.scheme().to_owned())
                .as_deref(),
            Ok("http" | "https")
        ) {
            return Err(PushError::FcmServiceAccount(
                "token_uri is not an http:// or https:// URL".to_owned(),
            ));
        }

        let client =
            transport::client_builder(Provider::Fcm, &tuning, config.ca_file_pem.as_deref())?
                .build()
                .map_err(|err| PushError::HttpClient {
                    provider: Provider::Fcm,
                    reason: transport::error_chain(&err),
                })?;

        Ok(Fcm {
            client,
            send_url: format!("{base_url}/v1/projects/{project_id}/messages:send"),
            auth: AccessTokens {
                account_key,
                client_email,
                token_uri,
                clock: tuning.clock.clone(),
                cached: tokio::sync::Mutex::new(None),
            },
            tuning,
        })
    }

    pub(crate) async fn send(&self, device_token: &str, n: &Notification) -> Delivery {
        if device_token.is_empty() {
            return Delivery::TokenInvalid;
        }
        let body = json!({
            "message": {
                "token": device_token,
                "notification": { "title": n.title, "body": n.body },
                "data": { "challenge_id": n.challenge_id },
                // HIGH wakes a dozing phone; the collapse key keeps one banner per challenge.
                "android": { "priority": "HIGH", "collapse_key": n.challenge_id },
            }
        })
        .to_string();
        with_retries(Provider::Fcm, &self.tuning, || self.attempt(body.clone())).await
    }

    async fn attempt(&self, body: String) -> Attempt {
        // Asked on every attempt: answered from the cache, renewed only near expiry.
        let access_token = match self.auth.current(&self.client).await {
            Ok(token) => token,
            Err(attempt) => return attempt,
        };

        let sent = self
            .client
            .post(&self.send_url)
            .header(AUTHORIZATION, format!("Bearer {access_token}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return transport::transport_failure(Provider::Fcm, "fcm", err),
        };

        let status = response.status();
        if status.is_success() {
            return Attempt::Final(Delivery::Delivered);
        }
        let headers = response.headers().clone();
        let rejection = match response.bytes().await {
            Ok(bytes) => serde_json::from_slice::<FcmRejection>(&bytes).ok(),
            Err(_) => None,
        };
        let unregistered = rejection
            .as_ref()
            .is_some_and(|r| r.error.error_codes().any(|code| code == "UNREGISTERED"));
        if unregistered && matches!(status.as_u16(), 400 | 404) {
            return Attempt::Final(Delivery::TokenInvalid);
        }

        let described = match &rejection {
            Some(r) => {
                let code = r
                    .error
                    .error_codes()
                    .next()
                    .unwrap_or(r.error.status.as_str());
                format!(
                    "fcm answered {status}: {} {}",
                    clip(code),
                    clip(&r.error.message)
                )
                .trim_end()
                .to_owned()
            }
            None => format!("fcm answered {status}"),
        };
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Attempt::rate_limited(&headers, &self.tuning.clock, described)
        } else if status.is_server_error() {
            Attempt::Transient(described)
        } else {
            Attempt::Final(Delivery::Failed(described))
        }
    }
}

/// Google's error envelope: `{"error":{"code":404,"status":"NOT_FOUND","details":[{"errorCode":..}]}}`.
#[derive(Deserialize)]
struct FcmRejection {
    error: FcmErrorBody,
}

#[derive(Deserialize)]
struct FcmErrorBody {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl FcmErrorBody {
    fn error_codes(&self) -> impl Iterator<Item = &str> {
        self.details
            .iter()
            .filter_map(|detail| detail.get("errorCode").and_then(Value::as_str))
    }
}

/// Access tokens for the service account, fetched with the JWT-bearer grant and cached.
struct AccessTokens {
    account_key: CustomServiceAccount,
    client_email: String,
    token_uri: String,
    clock: Clock,
    /// (access token, expiry in unix seconds). An async lock, held while fetching, so pushes
    /// that start together wait for one token request instead of each making their own.
    cached: tokio::sync::Mutex<Option<(String, u64)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

impl AccessTokens {
    /// The current token, or the attempt's outcome when none could be had. Never logs the token.
    async fn current(&self, client: &reqwest::Client) -> Result<String, Attempt> {
        let mut cached = self.cached.lock().await;
        let now = (self.clock)();
        if let Some((token, expires_at)) = cached.as_ref() {
            if now.saturating_add(RENEW_BEFORE_SECS) < *expires_at {
                return Ok(token.clone());
            }
        }
        let assertion = self
            .assertion(now)
            .map_err(|reason| Attempt::Final(Delivery::Failed(reason)))?;
        let sent = client
            .post(&self.token_uri)
            .form(&[
                ("grant_type", GRANT_TYPE),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                return Err(transport::transport_failure(
                    Provider::Fcm,
                    "fcm access token",
                    err,
                ))
            }
        };
        let status = response.status();
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(err) => {
                return Err(transport::transport_failure(
                    Provider::Fcm,
                    "fcm access token",
                    err,
                ))
            }
        };
        if !status.is_success() {
            // Google's OAuth errors (`invalid_grant`, ...) hold no secret, only what went wrong.
            let reason = format!(
                "fcm access token: token endpoint answered {status}: {}",
                clip(String::from_utf8_lossy(&bytes).trim())
            );
            return Err(if status.is_server_error() {
                Attempt::Transient(reason)
            } else {
                Attempt::Final(Delivery::Failed(reason))
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(|err| {
            Attempt::Final(Delivery::Failed(format!(
                "fcm access token: unexpected answer from the token endpoint: {err}"
            )))
        })?;
        let expires_at = now.saturating_add(answer.expires_in);
        *cached = Some((answer.access_token.clone(), expires_at));
        tracing::debug!(expires_at, "fetched a new FCM access token");
        Ok(answer.access_token)
    }

    /// The signed RS256 assertion that asks for a token with the FCM scope.
    fn assertion(&self, now: u64) -> Result<String, String> {
        let header = json!({ "alg": "RS256", "typ": "JWT" });
        let claims = json!({
            "iss": self.client_email,
            "aud": self.token_uri,
            "scope": SCOPE,
            "iat": now,
            "exp": now.saturating_add(ASSERTION_LIFETIME_SECS),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .account_key
            .signer()
            .sign(signing_input.as_bytes())
            .map_err(|err| {
                format!(
                    "fcm access token: could not sign the assertion: {}",
                    transport::error_chain(&err)
                )
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}
