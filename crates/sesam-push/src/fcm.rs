//! FCM HTTP v1: one POST per device token, authorised by an OAuth access token for a service account.
//! gcp_auth does the JWT-bearer grant against the JSON's `token_uri` and caches the token until shortly before it expires.

use std::fmt;
use std::sync::Arc;

use gcp_auth::{CustomServiceAccount, TokenProvider};
use reqwest::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::transport::{self, at_most_twice, clip, Attempt, Tuning};
use crate::{Delivery, Notification, Provider, PushError};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

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
            .finish()
    }
}

/// A configured FCM sender.
pub(crate) struct Fcm {
    client: reqwest::Client,
    send_url: String,
    auth: Arc<CustomServiceAccount>,
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
        let auth = CustomServiceAccount::from_json(&config.service_account_json)
            .map_err(|err| PushError::FcmServiceAccount(transport::error_chain(&err)))?;

        let client = reqwest::Client::builder()
            .timeout(tuning.request_timeout)
            .connect_timeout(tuning.connect_timeout)
            .build()
            .map_err(|err| PushError::HttpClient {
                provider: Provider::Fcm,
                reason: transport::error_chain(&err),
            })?;

        Ok(Fcm {
            client,
            send_url: format!("{base_url}/v1/projects/{project_id}/messages:send"),
            auth: Arc::new(auth),
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
        at_most_twice(self.tuning.retry_backoff, || self.attempt(body.clone())).await
    }

    async fn attempt(&self, body: String) -> Attempt {
        // Asked on every attempt: gcp_auth answers from its cache and renews only near expiry.
        let access_token = match tokio::time::timeout(
            self.tuning.request_timeout,
            self.auth.token(&[SCOPE]),
        )
        .await
        {
            Ok(Ok(token)) => token,
            // gcp_auth has already retried the token endpoint itself, so this is final.
            Ok(Err(err)) => {
                return Attempt::Final(Delivery::Failed(format!(
                    "fcm access token: {}",
                    transport::error_chain(&err)
                )))
            }
            Err(_) => {
                return Attempt::Final(Delivery::Failed("fcm access token: timed out".to_owned()))
            }
        };

        let sent = self
            .client
            .post(&self.send_url)
            .header(AUTHORIZATION, format!("Bearer {}", access_token.as_str()))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(err) => return transport::transport_failure("fcm", err),
        };

        let status = response.status();
        if status.is_success() {
            return Attempt::Final(Delivery::Delivered);
        }
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
        if status.is_server_error() {
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
