//! Device proofs: every app API request carries an ES256 JWS by the device key over the
//! method, path, body hash, issued-at and a unique id (docs/app-api.md). Checked here, once.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;
use sesam_store::DeviceRecord;
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;
use crate::body::BodyError;
use crate::state::AppState;

pub const MAX_API_BODY_BYTES: usize = 64 * 1024;
const MAX_PROOF_CHARS: usize = 8 * 1024;
const ALLOWED_SKEW_SECONDS: i64 = 60;

#[derive(Deserialize)]
struct ProofHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    jwk: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ProofClaims {
    htm: String,
    htu: String,
    bh: String,
    iat: i64,
    jti: String,
}

/// A request whose proof checked out, by an enrolled device.
pub struct DeviceRequest {
    pub device: DeviceRecord,
    pub body: Bytes,
}

/// An enrolment request: the proof was made by the key in its own header.
pub struct EnrolmentRequest {
    pub jwk: Jwk,
    pub body: Bytes,
}

/// A P-256 public key as the app sent it, checked to be a point on the curve.
#[derive(Clone, Debug)]
pub struct Jwk {
    pub key: VerifyingKey,
    pub x: String,
    pub y: String,
}

impl Jwk {
    pub fn parse(value: &serde_json::Value) -> Result<Jwk, ApiError> {
        let bad = || {
            ApiError::bad_request("invalid_public_key", "public_key must be a P-256 JWK: {\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":…,\"y\":…}")
        };
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).ok_or_else(bad);
        if field("kty")? != "EC" || field("crv")? != "P-256" {
            return Err(bad());
        }
        let (x, y) = (field("x")?, field("y")?);
        let xb = URL_SAFE_NO_PAD.decode(x).map_err(|_| bad())?;
        let yb = URL_SAFE_NO_PAD.decode(y).map_err(|_| bad())?;
        if xb.len() != 32 || yb.len() != 32 {
            return Err(bad());
        }
        let mut sec1 = vec![0x04];
        sec1.extend_from_slice(&xb);
        sec1.extend_from_slice(&yb);
        let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| bad())?;
        Ok(Jwk {
            key,
            x: x.to_owned(),
            y: y.to_owned(),
        })
    }

    /// The canonical JSON stored for the device.
    pub fn to_json(&self) -> String {
        serde_json::json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y}).to_string()
    }

    /// RFC 7638 thumbprint: one key can enrol one device.
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.x, self.y
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::unauthorized("invalid_proof", message)
}

struct ParsedProof {
    header: ProofHeader,
    claims: ProofClaims,
    signed: String,
    signature: Signature,
}

async fn read(req: Request) -> Result<(ParsedProof, String, String, Bytes), ApiError> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| invalid("The request has no Authorization: DeviceProof header."))?
        .to_str()
        .map_err(|_| invalid("The Authorization header is not readable text."))?
        .to_owned();
    let jws = authorization
        .strip_prefix("DeviceProof ")
        .ok_or_else(|| invalid("The Authorization header must be: DeviceProof <JWS>."))?
        .trim()
        .to_owned();
    if jws.len() > MAX_PROOF_CHARS {
        return Err(invalid("The proof is too long."));
    }
    let method = req.method().as_str().to_owned();
    // Nesting strips /api/app/v1 from the URI; the proof covers the path as the app sent it.
    let uri = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|o| o.0.clone())
        .unwrap_or_else(|| req.uri().clone());
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| uri.path().to_owned());
    let body = crate::body::read_capped(req.into_body(), MAX_API_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("The body is larger than {MAX_API_BODY_BYTES} bytes."),
            ),
            BodyError::Broken => ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_unreadable",
                "The body could not be read; send it again.",
            ),
        })?;
    Ok((parse(&jws)?, method, path, body))
}

fn parse(jws: &str) -> Result<ParsedProof, ApiError> {
    let mut parts = jws.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(
            "The proof is not a compact JWS (three dot-separated parts).",
        ));
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| invalid("The proof is not valid base64url."))
    };
    let header: ProofHeader = serde_json::from_slice(&decode(h)?)
        .map_err(|_| invalid("The proof header is not the expected JSON."))?;
    if header.alg != "ES256" {
        return Err(invalid(format!(
            "The proof must be signed with ES256, not {:?}.",
            header.alg
        )));
    }
    if header
        .typ
        .as_deref()
        .is_some_and(|t| t != "sesam-proof+jwt")
    {
        return Err(invalid("The proof's typ must be sesam-proof+jwt."));
    }
    let claims: ProofClaims = serde_json::from_slice(&decode(c)?)
        .map_err(|_| invalid("The proof claims must be htm, htu, bh, iat and jti."))?;
    let signature = Signature::from_slice(&decode(s)?)
        .map_err(|_| invalid("The proof signature is not a 64-byte ES256 signature."))?;
    Ok(ParsedProof {
        header,
        claims,
        signed: format!("{h}.{c}"),
        signature,
    })
}

/// Checks signature, method, path, body hash, time and replay. `key_id` scopes the replay memory.
async fn check(
    state: &AppState,
    proof: &ParsedProof,
    key: &VerifyingKey,
    key_id: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    key.verify(proof.signed.as_bytes(), &proof.signature)
        .map_err(|_| invalid("The proof signature does not match the device key."))?;
    let c = &proof.claims;
    if c.htm != method {
        return Err(invalid("The proof was made for another HTTP method."));
    }
    if c.htu != path {
        return Err(invalid("The proof was made for another path."));
    }
    let body_hash = URL_SAFE_NO_PAD.encode(Sha256::digest(body));
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        c.bh.as_bytes(),
        body_hash.as_bytes(),
    )) {
        return Err(invalid("The body is not the one the proof was made for."));
    }
    let now = state.now();
    if (c.iat - now.0).abs() > ALLOWED_SKEW_SECONDS {
        return Err(ApiError::unauthorized(
            "stale_proof",
            "The proof's issued-at is more than 60 seconds from the server's clock. Check the phone's clock.",
        ));
    }
    if c.jti.len() < 16
        || c.jti.len() > 128
        || !c
            .jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "The proof's jti must be 16 to 128 characters from A-Z a-z 0-9 - _.",
        ));
    }
    let remember_until = now.plus_seconds(2 * ALLOWED_SKEW_SECONDS + 1);
    if !state
        .store
        .remember_proof(key_id, &c.jti, remember_until, now)
        .await?
    {
        return Err(ApiError::unauthorized(
            "replayed_proof",
            "This proof was already used. Make a new one for every request.",
        ));
    }
    Ok(())
}

impl FromRequest<AppState> for DeviceRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (proof, method, path, body) = read(req).await?;
        let kid = proof
            .header
            .kid
            .clone()
            .ok_or_else(|| invalid("The proof header must name the device in kid."))?;
        if kid.len() > 64 {
            return Err(ApiError::unauthorized(
                "unknown_device",
                "No device is enrolled with this id.",
            ));
        }
        let device = state.store.get_device(&kid).await?.ok_or_else(|| {
            ApiError::unauthorized(
                "unknown_device",
                "No device is enrolled with this id. Enrol the app again.",
            )
        })?;
        let stored: serde_json::Value = serde_json::from_str(&device.public_key)
            .map_err(|e| sesam_store::StoreError::Corrupt(e.to_string()))?;
        let jwk = Jwk::parse(&stored)
            .map_err(|_| sesam_store::StoreError::Corrupt("stored device key".into()))?;
        check(state, &proof, &jwk.key, &kid, &method, &path, &body).await?;
        // "Last used" is shown to the minute; touching once a minute saves a write per call.
        let now = state.now();
        if device
            .last_used_at
            .is_none_or(|at| now.0 - at.0 >= 60 || now.0 < at.0)
        {
            state.store.touch_device(&device.device.id, now).await?;
        }
        Ok(DeviceRequest { device, body })
    }
}

impl FromRequest<AppState> for EnrolmentRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (proof, method, path, body) = read(req).await?;
        let jwk_value = proof.header.jwk.as_ref().ok_or_else(|| {
            invalid("An enrolment proof carries the new public key as jwk in its header.")
        })?;
        let jwk = Jwk::parse(jwk_value).map_err(|e| invalid(e.message))?;
        check(
            state,
            &proof,
            &jwk.key,
            &jwk.thumbprint(),
            &method,
            &path,
            &body,
        )
        .await?;
        Ok(EnrolmentRequest { jwk, body })
    }
}
