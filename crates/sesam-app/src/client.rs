//! The app side of the app API: enrol, then signed calls for the device and its challenges.
//! Every request carries a fresh device proof over the exact bytes and path that are sent.

use p256::ecdsa::SigningKey;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ClientError;
use crate::model::{
    Answer, AnswerResult, ChallengeList, ChallengeView, DeviceUpdate, DeviceView, EnrolOptions,
    EnrolmentRequest, ErrorBody, ScanRequest, ScanResult,
};
use crate::profile::Profile;
use crate::proof::{
    authorization, device_header, enrolment_header, public_jwk, sign_proof, ProofClaims,
};

/// Where the app API lives on a Sesam server.
pub const API_PREFIX: &str = "/api/app/v1";

/// The full request path of an app API endpoint, e.g. `api_path("/challenges")`.
pub fn api_path(endpoint: &str) -> String {
    format!("{API_PREFIX}{endpoint}")
}

/// An enrolled device talking to Sesam.
#[derive(Debug, Clone)]
pub struct AppClient {
    profile: Profile,
    http: reqwest::Client,
}

impl AppClient {
    /// Creates a new P-256 key and enrols it with a one-time activation code.
    pub async fn enroll(
        server: &str,
        activation_code: &str,
        opts: EnrolOptions,
    ) -> Result<(AppClient, DeviceView), ClientError> {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        AppClient::enroll_with_key(server, activation_code, opts, key).await
    }

    /// Enrols a key the caller made (a test that wants to reuse or compare keys).
    pub async fn enroll_with_key(
        server: &str,
        activation_code: &str,
        opts: EnrolOptions,
        key: SigningKey,
    ) -> Result<(AppClient, DeviceView), ClientError> {
        let server = server.trim_end_matches('/');
        let http = default_http();
        let request =
            EnrolmentRequest::new(activation_code, public_jwk(key.verifying_key()), &opts);
        let body = to_body(&request)?;
        let url = endpoint_url(server, &api_path("/enrolments"))?;
        let claims = ProofClaims::now("POST", &path_and_query(&url), &body);
        let proof = authorization(&sign_proof(
            &key,
            &enrolment_header(key.verifying_key()),
            &claims,
        ));
        let response = http
            .post(url)
            .header(AUTHORIZATION, proof)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let device: DeviceView = read_json(response).await?;
        let profile = Profile::new(server, &device.device_id, &device.username, key);
        Ok((AppClient { profile, http }, device))
    }

    /// A client for a device enrolled earlier.
    pub fn from_profile(profile: Profile) -> AppClient {
        AppClient {
            profile,
            http: default_http(),
        }
    }

    /// The same device, sending through another HTTP client (timeouts, proxies, ...).
    pub fn with_http(self, http: reqwest::Client) -> AppClient {
        AppClient { http, ..self }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The HTTP client, for tests that send raw requests with a proof of their own.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The absolute URL of a request path, e.g. `url("/api/app/v1/challenges")`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.profile.server)
    }

    /// `GET /devices/self`
    pub async fn device(&self) -> Result<DeviceView, ClientError> {
        let response = self
            .send(Method::GET, &api_path("/devices/self"), None)
            .await?;
        read_json(response).await
    }

    /// `PATCH /devices/self`: the device after the update, eligibility re-evaluated.
    pub async fn update_device(&self, update: &DeviceUpdate) -> Result<DeviceView, ClientError> {
        let body = to_body(update)?;
        let response = self
            .send(Method::PATCH, &api_path("/devices/self"), Some(body))
            .await?;
        read_json(response).await
    }

    /// `DELETE /devices/self`: after this the key is worth nothing.
    pub async fn delete_device(&self) -> Result<(), ClientError> {
        let response = self
            .send(Method::DELETE, &api_path("/devices/self"), None)
            .await?;
        check_response(response).await.map(drop)
    }

    /// `GET /challenges`: what waits for this device, with context, never the code.
    pub async fn pending(&self) -> Result<Vec<ChallengeView>, ClientError> {
        let response = self
            .send(Method::GET, &api_path("/challenges"), None)
            .await?;
        let list: ChallengeList = read_json(response).await?;
        Ok(list.challenges)
    }

    /// `POST /challenges/{id}/answer`
    pub async fn answer(
        &self,
        challenge_id: &str,
        answer: &Answer,
    ) -> Result<AnswerResult, ClientError> {
        let path = api_path(&format!(
            "/challenges/{}/answer",
            encode_path_segment(challenge_id)
        ));
        let body = to_body(answer)?;
        let response = self.send(Method::POST, &path, Some(body)).await?;
        read_json(response).await
    }

    /// `POST /scans`: the text of a desktop wait page's QR code. Gives the request to show;
    /// after the user's yes, [`answer`](Self::answer) with [`Answer::ConfirmScan`].
    pub async fn scan(&self, payload: &str) -> Result<ScanResult, ClientError> {
        let body = to_body(&ScanRequest { payload })?;
        let response = self
            .send(Method::POST, &api_path("/scans"), Some(body))
            .await?;
        read_json(response).await
    }

    /// The Authorization value for a request made now: `DeviceProof <jws>`.
    pub fn proof(&self, method: &str, path_and_query: &str, body: &[u8]) -> String {
        self.proof_with(ProofClaims::now(method, path_and_query, body))
    }

    /// The Authorization value for claims the caller chose (stale `iat`, reused `jti`, ...).
    pub fn proof_with(&self, claims: ProofClaims) -> String {
        self.proof_with_header(&self.proof_header(), &claims)
    }

    /// The Authorization value with a header the caller chose (wrong `alg`, other `kid`, ...),
    /// still signed by this device's key. Sign with another key through [`sign_proof`].
    pub fn proof_with_header(&self, header: &Value, claims: &ProofClaims) -> String {
        authorization(&sign_proof(self.profile.signing_key(), header, claims))
    }

    /// The header this device's proofs carry: `{"alg":"ES256","typ":..,"kid":device_id}`.
    pub fn proof_header(&self) -> Value {
        device_header(&self.profile.device_id)
    }

    /// Sends a signed request to a full request path (`/api/app/v1/...`) and returns the raw
    /// answer, whatever its status. `body` is sent as `application/json`, byte for byte.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let url = endpoint_url(&self.profile.server, path_and_query)?;
        let bytes = body.as_deref().unwrap_or_default();
        let proof = self.proof(method.as_str(), &self::path_and_query(&url), bytes);
        let mut request = self.http.request(method, url).header(AUTHORIZATION, proof);
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        Ok(request.send().await?)
    }
}

/// Turns a non-2xx answer into [`ClientError::Refused`] (Sesam's JSON error) or
/// [`ClientError::UnexpectedStatus`]; passes a 2xx answer through.
pub async fn check_response(response: Response) -> Result<Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let bytes = response.bytes().await?;
    Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => ClientError::Refused {
            status: status.as_u16(),
            error: body.error,
            message: body.message,
        },
        Err(_) => ClientError::UnexpectedStatus {
            status: status.as_u16(),
            body: snippet(&bytes),
        },
    })
}

async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T, ClientError> {
    let bytes = check_response(response).await?.bytes().await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClientError::Protocol(format!("{e} in {}", snippet(&bytes))))
}

fn to_body<T: Serialize>(value: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| ClientError::Protocol(format!("cannot encode: {e}")))
}

fn default_http() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("sesam-app/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

fn endpoint_url(server: &str, path_and_query: &str) -> Result<Url, ClientError> {
    let raw = format!("{}{path_and_query}", server.trim_end_matches('/'));
    Url::parse(&raw).map_err(|e| ClientError::BadServerUrl(format!("{raw}: {e}")))
}

/// The request target as it goes on the wire, which is what `htu` must hold (a server
/// mounted under a prefix included).
fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so an id is one segment.
fn encode_path_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests;
