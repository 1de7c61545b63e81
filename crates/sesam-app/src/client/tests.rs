//! HTTP-level tests against a small mock of Sesam that checks every proof as the server would.
//! The mock only knows what docs/app-api.md says, so these tests pin the client to the contract.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as AxumMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response as AxumResponse};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::VerifyingKey;
use serde_json::json;

use super::*;
use crate::proof::tests::{key_from_jwk, verify};
use crate::proof::{body_hash, unix_now};

const DEVICE_ID: &str = "dev-7f3a";

#[derive(Default)]
struct Mock {
    key: Mutex<Option<VerifyingKey>>,
    seen_jti: Mutex<HashSet<String>>,
    /// (method, htu) of every request whose proof passed.
    accepted: Mutex<Vec<(String, String)>>,
}

fn refuse(status: StatusCode, error: &str, message: &str) -> AxumResponse {
    (status, Json(json!({"error": error, "message": message}))).into_response()
}

fn device_json(body: &Value) -> Value {
    let push_provider = body
        .get("push")
        .and_then(|p| p.get("provider"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "device_id": DEVICE_ID,
        "username": "anna",
        "display_name": body.get("display_name").cloned().unwrap_or(json!("Phone")),
        "platform": body.get("platform").cloned().unwrap_or(json!("ios")),
        "app_version": body.get("app_version").cloned().unwrap_or(json!("3.0.0")),
        "pin_length": body.get("pin_length").cloned().unwrap_or(json!(6)),
        "push_provider": push_provider,
        "passwordless": if push_provider.is_null() {
            json!({"eligible": false, "reasons": ["no_push"]})
        } else {
            json!({"eligible": true, "reasons": []})
        },
    })
}

/// Checks the proof the way docs/app-api.md describes; returns the JWS header.
fn check_proof(
    mock: &Mock,
    method: &AxumMethod,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    enrolment: bool,
) -> Result<Value, String> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization")?;
    let jws = auth
        .strip_prefix("DeviceProof ")
        .ok_or("not a DeviceProof")?;
    let first = jws.split('.').next().unwrap_or_default();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    if header["alg"] != "ES256" || header["typ"] != "sesam-proof+jwt" {
        return Err(format!("bad header {header}"));
    }
    let key = if enrolment {
        if header.get("kid").is_some() {
            return Err("kid at enrolment".into());
        }
        key_from_jwk(&header["jwk"])
    } else {
        if header["kid"] != DEVICE_ID || header.get("jwk").is_some() {
            return Err(format!("bad kid in {header}"));
        }
        mock.key.lock().unwrap().ok_or("unknown device")?
    };
    let (_, claims) = verify(jws, &key)?;
    let htu = uri.path_and_query().map(|p| p.as_str()).unwrap_or_default();
    if claims.htm != method.as_str() || claims.htu != htu || claims.bh != body_hash(body) {
        return Err(format!("claims {claims:?} do not match {method} {htu}"));
    }
    if (claims.iat - unix_now()).abs() > 60 {
        return Err("stale".into());
    }
    if !(16..=128).contains(&claims.jti.len()) {
        return Err("bad jti".into());
    }
    if !body.is_empty()
        && headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json")
    {
        return Err("body is not application/json".into());
    }
    if !mock.seen_jti.lock().unwrap().insert(claims.jti.clone()) {
        return Err("replayed".into());
    }
    mock.accepted
        .lock()
        .unwrap()
        .push((claims.htm.clone(), claims.htu.clone()));
    Ok(header)
}

async fn handle(
    State(mock): State<Arc<Mock>>,
    method: AxumMethod,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> AxumResponse {
    // Route on what follows the API prefix, so a server mounted under a prefix works too.
    let path = uri.path();
    let Some(at) = path.find(API_PREFIX) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let endpoint = &path[at + API_PREFIX.len()..];
    let enrolment = endpoint == "/enrolments";
    let header = match check_proof(&mock, &method, &uri, &headers, &body, enrolment) {
        Ok(header) => header,
        Err(reason) if reason == "replayed" => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "replayed_proof",
                "proof was used before",
            )
        }
        Err(reason) => return refuse(StatusCode::UNAUTHORIZED, "invalid_proof", &reason),
    };
    let json_body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method.as_str(), endpoint) {
        ("POST", "/enrolments") => {
            if json_body["public_key"] != header["jwk"] {
                return refuse(StatusCode::BAD_REQUEST, "key_mismatch", "keys differ");
            }
            if json_body["activation_code"] != "GOOD-CODE" {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_activation_code",
                    "The activation code is wrong or used.",
                );
            }
            *mock.key.lock().unwrap() = Some(key_from_jwk(&header["jwk"]));
            (StatusCode::CREATED, Json(device_json(&json_body))).into_response()
        }
        ("GET", "/devices/self") => Json(device_json(&json!({}))).into_response(),
        ("PATCH", "/devices/self") => Json(device_json(&json_body)).into_response(),
        ("DELETE", "/devices/self") => {
            *mock.key.lock().unwrap() = None;
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", "/challenges") => Json(json!({"challenges": [
            {"id": "c1", "kind": "code", "service": "Intranet", "created_at": 100,
             "expires_at": 220, "browser": "Firefox 140", "os": "Linux",
             "client_ip": "192.0.2.7", "location": "Aarhus, DK"},
            {"id": "c2", "kind": "approve", "service": "Mail", "created_at": 100,
             "expires_at": 220, "browser": null, "os": null, "client_ip": null, "location": null},
        ]}))
        .into_response(),
        ("POST", "/challenges/closed/answer") => refuse(
            StatusCode::CONFLICT,
            "challenge_closed",
            "The request was already answered.",
        ),
        ("POST", "/challenges/broken/answer") => {
            (StatusCode::BAD_GATEWAY, "upstream went away").into_response()
        }
        ("POST", e) if e.starts_with("/challenges/") && e.ends_with("/answer") => {
            let status = match (json_body.get("code"), json_body.get("decision")) {
                (Some(code), None) if code == "42" => "approved",
                (Some(_), None) => "wrong_code",
                (None, Some(d)) if d == "deny" || d == "report_fraud" => "rejected",
                _ => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "invalid_answer",
                        "one of code, decision",
                    )
                }
            };
            Json(json!({"status": status})).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn spawn_mock() -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    let app = Router::new().fallback(handle).with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), mock)
}

async fn enrolled() -> (AppClient, Arc<Mock>) {
    let (server, mock) = spawn_mock().await;
    let (client, _) = AppClient::enroll(&server, "GOOD-CODE", EnrolOptions::default())
        .await
        .unwrap();
    (client, mock)
}

#[tokio::test]
async fn enrolment_sends_a_valid_jwk_proof_and_fills_the_profile() {
    let (server, mock) = spawn_mock().await;
    let opts = EnrolOptions {
        display_name: "Anna's phone".into(),
        platform: "android".into(),
        push: Some(("fcm".into(), "tok-1".into())),
        ..EnrolOptions::default()
    };
    let (client, device) = AppClient::enroll(&format!("{server}/"), "GOOD-CODE", opts)
        .await
        .unwrap();
    assert_eq!(device.device_id, DEVICE_ID);
    assert_eq!(device.display_name, "Anna's phone");
    assert_eq!(device.platform, "android");
    assert_eq!(device.push_provider.as_deref(), Some("fcm"));
    assert!(device.passwordless.eligible);
    let profile = client.profile();
    assert_eq!(profile.server, server);
    assert_eq!(profile.device_id, DEVICE_ID);
    assert_eq!(profile.username, "anna");
    assert_eq!(
        mock.key.lock().unwrap().as_ref(),
        Some(profile.verifying_key())
    );
    assert_eq!(
        mock.accepted.lock().unwrap().as_slice(),
        [("POST".to_owned(), "/api/app/v1/enrolments".to_owned())]
    );
}

#[tokio::test]
async fn wrong_activation_code_is_refused_with_the_servers_error() {
    let (server, _) = spawn_mock().await;
    let err = AppClient::enroll(&server, "WRONG", EnrolOptions::default())
        .await
        .unwrap_err();
    match err {
        ClientError::Refused {
            status,
            error,
            message,
        } => {
            assert_eq!(status, 400);
            assert_eq!(error, "invalid_activation_code");
            assert_eq!(message, "The activation code is wrong or used.");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn device_calls_carry_kid_proofs_over_the_exact_path_and_body() {
    let (client, mock) = enrolled().await;
    let device = client.device().await.unwrap();
    assert_eq!(device.device_id, DEVICE_ID);
    let updated = client
        .update_device(&DeviceUpdate {
            push: Some(None),
            app_version: Some("3.1.0".into()),
            ..DeviceUpdate::default()
        })
        .await
        .unwrap();
    assert_eq!(updated.app_version, "3.1.0");
    assert_eq!(updated.push_provider, None);
    assert_eq!(updated.passwordless.reasons, vec!["no_push"]);
    client.delete_device().await.unwrap();
    let accepted = mock.accepted.lock().unwrap().clone();
    let expected: Vec<(String, String)> = [
        ("POST", "/api/app/v1/enrolments"),
        ("GET", "/api/app/v1/devices/self"),
        ("PATCH", "/api/app/v1/devices/self"),
        ("DELETE", "/api/app/v1/devices/self"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(accepted, expected);
    // The key of a removed device is worth nothing.
    let err = client.device().await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.error_code(), Some("invalid_proof"));
}

#[tokio::test]
async fn pending_lists_challenges_with_context() {
    let (client, _) = enrolled().await;
    let pending = client.pending().await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].id, "c1");
    assert_eq!(pending[0].kind, "code");
    assert_eq!(pending[0].location.as_deref(), Some("Aarhus, DK"));
    assert_eq!(pending[1].kind, "approve");
    assert_eq!(pending[1].browser, None);
}

#[tokio::test]
async fn answers_reach_the_server_and_return_the_status() {
    let (client, mock) = enrolled().await;
    let cases = [
        (Answer::Code("42".into()), "approved"),
        (Answer::Code("17".into()), "wrong_code"),
        (Answer::Deny, "rejected"),
        (Answer::ReportFraud, "rejected"),
    ];
    for (answer, status) in cases {
        let result = client.answer("c1", &answer).await.unwrap();
        assert_eq!(result.status, status, "{answer:?}");
    }
    // An id with characters that are not safe in a path stays one encoded segment, and the
    // proof covers the path exactly as sent.
    client.answer("a b/c", &Answer::Deny).await.unwrap();
    let last = mock.accepted.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, "/api/app/v1/challenges/a%20b%2Fc/answer");
}

#[tokio::test]
async fn refusals_and_foreign_errors_map_to_client_errors() {
    let (client, _) = enrolled().await;
    match client.answer("closed", &Answer::Deny).await.unwrap_err() {
        ClientError::Refused {
            status,
            error,
            message,
        } => {
            assert_eq!((status, error.as_str()), (409, "challenge_closed"));
            assert_eq!(message, "The request was already answered.");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
    match client.answer("broken", &Answer::Deny).await.unwrap_err() {
        ClientError::UnexpectedStatus { status, body } => {
            assert_eq!(status, 502);
            assert_eq!(body, "upstream went away");
        }
        other => panic!("expected UnexpectedStatus, got {other:?}"),
    }
}

#[tokio::test]
async fn raw_requests_with_hand_made_proofs_for_negative_tests() {
    let (client, _) = enrolled().await;
    let path = api_path("/devices/self");
    let send = |auth: String| {
        client
            .http()
            .get(client.url(&path))
            .header(AUTHORIZATION, auth)
            .send()
    };
    // The same proof twice: the second is a replay.
    let proof = client.proof("GET", &path, b"");
    check_response(send(proof.clone()).await.unwrap())
        .await
        .unwrap();
    let err = check_response(send(proof).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("replayed_proof"));
    // A stale iat.
    let mut claims = ProofClaims::now("GET", &path, b"");
    claims.iat -= 3600;
    let err = check_response(send(client.proof_with(claims)).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("invalid_proof"));
    // Signed by another key under this device's kid.
    let other = SigningKey::random(&mut rand::rngs::OsRng);
    let forged = authorization(&sign_proof(
        &other,
        &client.proof_header(),
        &ProofClaims::now("GET", &path, b""),
    ));
    let err = check_response(send(forged).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    // A wrong alg in the header, still signed by the device key.
    let mut header = client.proof_header();
    header["alg"] = json!("none");
    let bad_alg = client.proof_with_header(&header, &ProofClaims::now("GET", &path, b""));
    let err = check_response(send(bad_alg).await.unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("invalid_proof"));
    // The send helper signs whatever it sends.
    let response = client.send(Method::GET, &path, None).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_server_under_a_path_prefix_gets_the_full_path_in_htu() {
    let (server, mock) = spawn_mock().await;
    let (client, _) = AppClient::enroll(
        &format!("{server}/sesam"),
        "GOOD-CODE",
        EnrolOptions::default(),
    )
    .await
    .unwrap();
    client.device().await.unwrap();
    let accepted = mock.accepted.lock().unwrap().clone();
    assert_eq!(accepted[0].1, "/sesam/api/app/v1/enrolments");
    assert_eq!(accepted[1].1, "/sesam/api/app/v1/devices/self");
}

#[tokio::test]
async fn a_saved_profile_keeps_working_after_reload() {
    let (client, _) = enrolled().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sesam-app.json");
    client.profile().save(&path).unwrap();
    let reloaded = AppClient::from_profile(Profile::load(&path).unwrap());
    assert_eq!(reloaded.device().await.unwrap().device_id, DEVICE_ID);
}

#[test]
fn path_segments_are_percent_encoded() {
    assert_eq!(encode_path_segment("c1-_.~"), "c1-_.~");
    assert_eq!(encode_path_segment("a b/c?d"), "a%20b%2Fc%3Fd");
    assert_eq!(encode_path_segment("æ"), "%C3%A6");
}
