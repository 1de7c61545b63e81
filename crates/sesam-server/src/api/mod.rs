//! The MFA app API (`/api/app/v1`): enrolment, the device itself, and its challenges.
//! Every route but the OpenAPI document needs a device proof (see `proof`).

pub mod error;
pub mod proof;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sesam_core::{Answer, AnswerError, AppVersion, Challenge, ChallengeState, Platform, Settings};
use sesam_store::{AuditEvent, DeviceChange, DeviceRecord, NewDevice};

use crate::activation;
use crate::service::app::Answered;
use crate::state::{AppState, ClientIp};
use error::ApiError;
use proof::{DeviceRequest, EnrolmentRequest};

pub const OPENAPI: &str = include_str!("../../../../docs/app-api.openapi.json");

/// (method, path under /api/app/v1) of every route; a test holds this and the OpenAPI file together.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/openapi.json"),
    ("post", "/enrolments"),
    ("get", "/devices/self"),
    ("patch", "/devices/self"),
    ("delete", "/devices/self"),
    ("get", "/challenges"),
    ("post", "/challenges/{id}/answer"),
    ("post", "/scans"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/enrolments", post(enrol))
        .route(
            "/devices/self",
            get(get_device).patch(update_device).delete(delete_device),
        )
        .route("/challenges", get(list_challenges))
        .route("/challenges/{id}/answer", post(answer_challenge))
        .route("/scans", post(scan))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "There is no such app API endpoint.",
            )
        })
        .layer(axum::middleware::from_fn(json_only))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        ))
}

/// A request with a body must say it is JSON: 415 otherwise, before any other check.
async fn json_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let headers = request.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if has_body && !is_json {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "The body must be JSON, sent with Content-Type: application/json.",
        )
        .into_response();
    }
    next.run(request).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Every body of the app API is one JSON object. Checked before serde sees it: a JSON array
/// would otherwise fill a struct's fields by position. (Duplicate keys are refused by the
/// derived deserialisers.)
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::bad_request(
            "invalid_body",
            "The JSON body must be an object, {...}.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("The JSON body is not valid: {e}"))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    provider: String,
    token: String,
}

fn check_push(push: Option<PushBody>) -> Result<Option<(String, String)>, ApiError> {
    let Some(p) = push else { return Ok(None) };
    if p.provider != "apns" && p.provider != "fcm" {
        return Err(ApiError::bad_request(
            "invalid_push",
            "push.provider must be apns or fcm.",
        ));
    }
    if p.token.trim().is_empty() || p.token.len() > 4096 || p.token.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_push",
            "push.token must be 1 to 4096 printable characters.",
        ));
    }
    Ok(Some((p.provider, p.token)))
}

fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(sesam_core::is_hidden_char)
    {
        return Err(ApiError::bad_request(
            "invalid_display_name",
            "display_name must be 1 to 100 printable characters, without invisible formatting characters.",
        ));
    }
    Ok(name.to_owned())
}

fn key_in_use() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "key_in_use",
        "This key is already enrolled. Create a new key for a new enrolment.",
    )
}

fn check_version(v: &str) -> Result<AppVersion, ApiError> {
    if v.len() > 32 {
        return Err(ApiError::bad_request(
            "invalid_app_version",
            "app_version must be a version like 3.1.0.",
        ));
    }
    v.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_app_version",
            "app_version must be a version like 3.1.0.",
        )
    })
}

fn check_pin(n: i64) -> Result<u32, ApiError> {
    u32::try_from(n).ok().filter(|n| *n <= 64).ok_or_else(|| {
        ApiError::bad_request("invalid_pin_length", "pin_length must be from 0 to 64.")
    })
}

#[derive(Serialize)]
pub struct Eligibility {
    pub eligible: bool,
    pub reasons: Vec<String>,
}

#[derive(Serialize)]
pub struct DeviceView {
    device_id: String,
    username: String,
    display_name: String,
    platform: &'static str,
    app_version: String,
    pin_length: u32,
    push_provider: Option<String>,
    passwordless: Eligibility,
}

impl Eligibility {
    /// `yes`, or the reasons why not, for audit details.
    pub fn summary(&self) -> String {
        if self.eligible {
            "yes".to_owned()
        } else {
            self.reasons.join("; ")
        }
    }
}

pub fn eligibility(device: &DeviceRecord, settings: &Settings) -> Eligibility {
    let reasons: Vec<String> = device
        .device
        .passwordless_ineligibility(settings)
        .iter()
        .map(ToString::to_string)
        .collect();
    Eligibility {
        eligible: reasons.is_empty(),
        reasons,
    }
}

async fn view(state: &AppState, device: &DeviceRecord) -> Result<DeviceView, ApiError> {
    let settings = state.store.settings().await?;
    let user = state.store.get_user(&device.user_id).await?;
    Ok(DeviceView {
        device_id: device.device.id.clone(),
        username: user.username.to_string(),
        display_name: device.display_name.clone(),
        platform: device.device.platform.as_str(),
        app_version: device.device.app_version.to_string(),
        pin_length: device.device.pin_length,
        push_provider: device.push_provider.clone(),
        passwordless: eligibility(device, &settings),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolmentBody {
    activation_code: String,
    public_key: serde_json::Value,
    platform: String,
    app_version: String,
    pin_length: i64,
    push: Option<PushBody>,
    display_name: String,
}

/// Attempts per client address per window, so activation codes cannot be guessed.
const ENROL_ATTEMPTS: i64 = 10;
const ENROL_WINDOW_SECONDS: i64 = 15 * 60;

async fn enrol(
    State(state): State<AppState>,
    ip: ClientIp,
    request: EnrolmentRequest,
) -> Result<Response, ApiError> {
    let now = state.now();
    let ip_key = ip.text().unwrap_or_else(|| "unknown".into());
    // Only wrong codes count, so an office enrolling many phones from one address is fine.
    if state
        .store
        .rate_limit_hits("enrol", &ip_key, now, ENROL_WINDOW_SECONDS)
        .await?
        >= ENROL_ATTEMPTS
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "Too many enrolment attempts from this address. Wait 15 minutes and try again.",
        ));
    }
    let body: EnrolmentBody = parse_body(&request.body)?;
    let body_key = proof::Jwk::parse(&body.public_key)?;
    if body_key.thumbprint() != request.jwk.thumbprint() {
        return Err(ApiError::unauthorized(
            "invalid_proof",
            "The proof must be made with the key being enrolled.",
        ));
    }
    let platform: Platform = body.platform.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_platform",
            "platform must be ios, android, desktop or other.",
        )
    })?;
    let app_version = check_version(&body.app_version)?;
    let pin_length = check_pin(body.pin_length)?;
    let display_name = check_name(&body.display_name)?;
    let push = check_push(body.push)?;

    // A key already enrolled is refused before the activation code is spent on it.
    if state
        .store
        .device_key_in_use(&request.jwk.thumbprint())
        .await?
    {
        return Err(key_in_use());
    }
    let Some(user_id) = activation::consume(&state.store, &body.activation_code, now).await? else {
        state
            .store
            .rate_limit_allows("enrol", &ip_key, now, ENROL_WINDOW_SECONDS, ENROL_ATTEMPTS)
            .await?;
        state
            .store
            .append_audit(
                &AuditEvent::new("device.enrolment.refused")
                    .client_ip(ip.text())
                    .detail("unknown, used or expired activation code"),
                now,
            )
            .await?;
        return Err(ApiError::bad_request(
            "invalid_activation_code",
            "The activation code is unknown, already used or expired. Make a new one on your account's device page.",
        ));
    };
    let (push_provider, push_token) = push.map_or((None, None), |(p, t)| (Some(p), Some(t)));
    let new = NewDevice {
        user_id,
        display_name,
        platform,
        app_version,
        pin_length,
        public_key: request.jwk.to_json(),
        key_thumbprint: request.jwk.thumbprint(),
        push_provider,
        push_token,
    };
    let device = match state.store.create_device(new, now).await {
        Ok(d) => d,
        Err(sesam_store::StoreError::Conflict(_)) => return Err(key_in_use()),
        Err(e) => return Err(e.into()),
    };
    let shown = view(&state, &device).await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("device.enrolled")
                .actor(shown.username.as_str())
                .subject(shown.username.as_str())
                .client_ip(ip.text())
                .detail(format!(
                    "device {} ({} {}, PIN {}), passwordless: {}",
                    device.device.id,
                    platform.as_str(),
                    device.device.app_version,
                    pin_length,
                    shown.passwordless.summary()
                )),
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

async fn get_device(
    State(state): State<AppState>,
    request: DeviceRequest,
) -> Result<Json<DeviceView>, ApiError> {
    Ok(Json(view(&state, &request.device).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceUpdateBody {
    #[serde(default, deserialize_with = "present")]
    push: Option<Option<PushBody>>,
    #[serde(default, deserialize_with = "not_null")]
    app_version: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pin_length: Option<i64>,
    #[serde(default, deserialize_with = "not_null")]
    display_name: Option<String>,
}

/// A field that may be left out but not sent as `null`, which would mean nothing (only
/// `push` has a meaning for null). As the OpenAPI document says.
fn not_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Tells `"push": null` (remove the token) from no `push` at all (leave it).
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

async fn update_device(
    State(state): State<AppState>,
    ip: ClientIp,
    request: DeviceRequest,
) -> Result<Json<DeviceView>, ApiError> {
    let body: DeviceUpdateBody = parse_body(&request.body)?;
    let change = DeviceChange {
        display_name: body.display_name.as_deref().map(check_name).transpose()?,
        app_version: body.app_version.as_deref().map(check_version).transpose()?,
        pin_length: body.pin_length.map(check_pin).transpose()?,
        push: match body.push {
            None => None,
            Some(p) => Some(check_push(p)?),
        },
    };
    let now = state.now();
    let id = request.device.device.id.clone();
    state.store.update_device(&id, &change, now).await?;
    let device = state
        .store
        .get_device(&id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown_device", "The device was removed."))?;
    let shown = view(&state, &device).await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("device.updated")
                .actor(shown.username.as_str())
                .subject(shown.username.as_str())
                .client_ip(ip.text())
                .detail(format!(
                    "device {id}: passwordless {}",
                    shown.passwordless.summary()
                )),
            now,
        )
        .await?;
    Ok(Json(shown))
}

async fn delete_device(
    State(state): State<AppState>,
    ip: ClientIp,
    request: DeviceRequest,
) -> Result<StatusCode, ApiError> {
    let user = state.store.get_user(&request.device.user_id).await?;
    state.store.delete_device(&request.device.device.id).await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("device.removed")
                .actor(user.username.as_str())
                .subject(user.username.as_str())
                .client_ip(ip.text())
                .detail(format!(
                    "device {} removed by the app",
                    request.device.device.id
                )),
            state.now(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct ChallengeView {
    id: String,
    kind: &'static str,
    service: String,
    created_at: i64,
    expires_at: i64,
    browser: Option<String>,
    os: Option<String>,
    client_ip: Option<String>,
    location: Option<String>,
}

impl From<Challenge> for ChallengeView {
    fn from(c: Challenge) -> Self {
        ChallengeView {
            id: c.id,
            kind: c.kind.as_str(),
            service: c.context.service,
            created_at: c.created_at.0,
            expires_at: c.expires_at.0,
            browser: c.context.browser,
            os: c.context.os,
            client_ip: c.context.client_ip,
            location: c.context.location,
        }
    }
}

async fn list_challenges(
    State(state): State<AppState>,
    request: DeviceRequest,
) -> Result<Response, ApiError> {
    let pending = state
        .store
        .pending_challenges_for_device(&request.device.device.id, state.now())
        .await?;
    let challenges: Vec<ChallengeView> = pending.into_iter().map(ChallengeView::from).collect();
    Ok(Json(serde_json::json!({ "challenges": challenges })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    code: Option<String>,
    decision: Option<String>,
}

async fn answer_challenge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ip: ClientIp,
    request: DeviceRequest,
) -> Result<Response, ApiError> {
    let body: AnswerBody = parse_body(&request.body)?;
    let answer = match (body.code, body.decision.as_deref()) {
        (Some(code), None) => {
            // Exactly as the OpenAPI document says: two digits, 10 to 99. Anything else is
            // not an answer, so it leaves the challenge pending rather than ending it.
            if code.parse::<sesam_core::TwoDigitCode>().is_err() || code.len() != 2 {
                return Err(ApiError::bad_request(
                    "invalid_answer",
                    "code must be the two digits shown in the browser, 10 to 99.",
                ));
            }
            Answer::Code(code)
        }
        // Parsed, not rejected here: the core refuses it, for every kind of challenge.
        (None, Some("approve")) => Answer::Approve,
        // The service looks up whether this device scanned the challenge's QR code.
        (None, Some("confirm_scan")) => Answer::ConfirmScan { scanned: false },
        (None, Some("deny")) => Answer::Deny,
        (None, Some("report_fraud")) => Answer::ReportFraud,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_answer",
                "Send exactly one of {\"code\": \"NN\"} or {\"decision\": \"confirm_scan\" | \"deny\" | \"report_fraud\"}.",
            ))
        }
    };
    let answered =
        crate::service::app::answer_challenge(&state, &request.device, &id, &answer, ip.text())
            .await?;
    let taken = match answered {
        Answered::Taken(taken) => taken,
        Answered::NotForDevice => {
            return Err(ApiError::unauthorized(
                "challenge_not_for_device",
                "This device has no such challenge.",
            ))
        }
        Answered::Refused(AnswerError::CodeRequired) => return Err(ApiError::bad_request(
            "code_required",
            "A plain approve is not accepted: send {\"code\": \"NN\"} with the 2-digit code shown in the browser.",
        )),
        Answered::Refused(AnswerError::ScanRequired) => return Err(ApiError::bad_request(
            "scan_required",
            "confirm_scan approves only after this device scanned the QR code of this login (POST /scans). Otherwise send {\"code\": \"NN\"}.",
        )),
        Answered::Refused(AnswerError::Expired) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "challenge_expired",
                "The challenge expired. Start the login again.",
            ))
        }
        Answered::Refused(AnswerError::NotPending(state)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "challenge_not_pending",
                format!(
                    "The challenge is already {}. Start the login again.",
                    state.as_str()
                ),
            ))
        }
        Answered::AlreadyAnswered => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "challenge_not_pending",
                "The challenge was already answered or expired.",
            ))
        }
    };
    let status = match taken {
        ChallengeState::Approved => "approved",
        ChallengeState::WrongCode => "wrong_code",
        _ => "rejected",
    };
    Ok(Json(serde_json::json!({ "status": status })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanBody {
    payload: String,
}

/// The QR code of a desktop wait page, scanned by the app: on success this device holds the
/// scan and may approve with `{"decision": "confirm_scan"}`.
async fn scan(
    State(state): State<AppState>,
    ip: ClientIp,
    request: DeviceRequest,
) -> Result<Response, ApiError> {
    use crate::service::scan::Scanned;
    let body: ScanBody = parse_body(&request.body)?;
    let payload = sesam_core::ScanPayload::parse(&body.payload).map_err(|e| {
        ApiError::bad_request(
            "invalid_payload",
            format!("This is not a Sesam login QR code: {e}."),
        )
    })?;
    match crate::service::scan::scan(&state, &request.device, &payload, ip.text()).await? {
        Scanned::Taken(challenge) => Ok(Json(serde_json::json!({
            "challenge": ChallengeView::from(*challenge),
            "approve_with": "confirm_scan",
        }))
        .into_response()),
        Scanned::NotForDevice => Err(ApiError::unauthorized(
            "challenge_not_for_device",
            "This QR code is not for a login of this device's user.",
        )),
        Scanned::WrongToken => Err(ApiError::bad_request(
            "wrong_payload",
            "This QR code does not belong to the login it names. For safety that login was stopped; start it again.",
        )),
        Scanned::AlreadyUsed => Err(ApiError::new(
            StatusCode::CONFLICT,
            "payload_used",
            "This QR code was already scanned. Each code is used once; start the login again for a new one.",
        )),
        Scanned::Expired => Err(ApiError::new(
            StatusCode::CONFLICT,
            "payload_expired",
            "This QR code has expired or its login has ended. Start the login again.",
        )),
    }
}
