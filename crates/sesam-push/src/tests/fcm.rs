//! FCM sender against a mock that is both Google's OAuth token endpoint and the v1 send API.
//! The token endpoint checks the JWT-bearer grant with the public half of a service account key made here.

use axum::http::Method;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use rsa::signature::Verifier as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use std::sync::OnceLock;

use std::time::{Duration, Instant};

use super::{
    gaps, manual_clock, notification, quick_tuning, split_jws, test_ca, Alpn, Mock, Reply, Seen,
};
use crate::transport::Tuning;
use crate::{Delivery, FcmConfig, Provider, PushError, PushToken, Pusher};

const DEVICE: &str = "fcm-device-token:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8OvPVGJ-hQMRKRrZuJAEcl7B338qju59zJMjw2DELjzEvxwYv7hH5Ynpc1ODQ0aT4U4OFEeco8ohsN5PjL1iC2dNtk2BAokeMCg2ZXKqpc8FXKmhX94kIxQ";
const CLIENT_EMAIL: &str = "sesam-push@sesam-test.iam.gserviceaccount.com";

/// RSA key generation is slow-ish, so all tests share one key.
fn service_account_key() -> &'static (String, RsaPublicKey) {
    static KEY: OnceLock<(String, RsaPublicKey)> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("RSA key");
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .expect("PKCS#8 PEM")
            .to_string();
        (pem, private.to_public_key())
    })
}

fn service_account_json(token_uri: &str, project_id: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": "0123456789abcdef",
        "private_key": service_account_key().0,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

struct Google {
    mock: Mock,
    pusher: Pusher,
    token_uri: String,
}

async fn google() -> Google {
    let (mock, base_url) = Mock::start().await;
    google_at(mock, base_url, None)
}

/// The send API and the token endpoint on one mock; `ca_file_pem` is trusted for both.
fn google_at(mock: Mock, base_url: String, ca_file_pem: Option<String>) -> Google {
    google_tuned(mock, base_url, ca_file_pem, quick_tuning())
}

fn google_tuned(
    mock: Mock,
    base_url: String,
    ca_file_pem: Option<String>,
    tuning: Tuning,
) -> Google {
    let token_uri = format!("{base_url}/token");
    let config = FcmConfig {
        base_url,
        project_id: "sesam-test".to_owned(),
        service_account_json: service_account_json(&token_uri, "sesam-test"),
        ca_file_pem,
    };
    let pusher = Pusher::live_tuned(None, Some(config), tuning).expect("FCM config");
    Google {
        mock,
        pusher,
        token_uri,
    }
}

fn to_device() -> PushToken {
    PushToken {
        provider: Provider::Fcm,
        token: DEVICE.to_owned(),
    }
}

impl Google {
    async fn push(&self) -> Delivery {
        self.pusher.send(&to_device(), &notification()).await
    }

    /// Checks a token request the way Google's OAuth server would.
    fn check_grant(&self, seen: &Seen) {
        assert_eq!(seen.method, Method::POST);
        assert_eq!(
            seen.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        let form = String::from_utf8(seen.body.to_vec()).expect("UTF-8 form");
        let url = reqwest::Url::parse(&format!("http://form.invalid/?{form}")).expect("form");
        let field = |name: &str| {
            url.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
                .unwrap_or_else(|| panic!("form field {name} missing in {form}"))
        };
        assert_eq!(
            field("grant_type"),
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        let (header, claims, signing_input, signature) = split_jws(&field("assertion"));
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["iss"], CLIENT_EMAIL);
        assert_eq!(claims["aud"], self.token_uri.as_str());
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/firebase.messaging"
        );
        let iat = claims["iat"].as_i64().expect("iat");
        let exp = claims["exp"].as_i64().expect("exp");
        assert!(exp > iat && exp - iat <= 3600, "iat {iat}, exp {exp}");
        let verifier = VerifyingKey::<Sha256>::new(service_account_key().1.clone());
        let signature = Signature::try_from(signature.as_slice()).expect("signature");
        verifier
            .verify(signing_input.as_bytes(), &signature)
            .expect("assertion signed with the service account key");
    }
}

#[tokio::test]
async fn good_push_gets_an_access_token_and_posts_one_message() {
    let google = google().await;

    assert_eq!(google.push().await, Delivery::Delivered);

    let grants = google.mock.token_requests();
    assert_eq!(grants.len(), 1);
    google.check_grant(&grants[0]);

    let pushes = google.mock.pushes();
    assert_eq!(pushes.len(), 1);
    let seen = &pushes[0];
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, "/v1/projects/sesam-test/messages:send");
    assert_eq!(seen.header("authorization"), "Bearer ya29.access-1");
    assert_eq!(
        seen.json(),
        serde_json::json!({
            "message": {
                "token": DEVICE,
                "notification": {
                    "title": "Sign-in request",
                    "body": "Open Sesam to see the request.",
                },
                "data": { "challenge_id": "ch-0f3a9c" },
                "android": { "priority": "HIGH", "collapse_key": "ch-0f3a9c" },
            }
        })
    );
}

#[tokio::test]
async fn access_token_is_fetched_once_for_two_sends() {
    let google = google().await;

    assert_eq!(google.push().await, Delivery::Delivered);
    assert_eq!(google.push().await, Delivery::Delivered);

    assert_eq!(google.mock.token_requests().len(), 1);
    let pushes = google.mock.pushes();
    assert_eq!(pushes.len(), 2);
    for seen in &pushes {
        assert_eq!(seen.header("authorization"), "Bearer ya29.access-1");
    }
}

const UNREGISTERED: &str = r#"{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;

#[tokio::test]
async fn unregistered_404_means_token_invalid() {
    let google = google().await;
    google.mock.status(404, UNREGISTERED);

    assert_eq!(google.push().await, Delivery::TokenInvalid);
    assert_eq!(google.mock.pushes().len(), 1);
}

#[tokio::test]
async fn unregistered_400_means_token_invalid() {
    let google = google().await;
    google.mock.status(400, &UNREGISTERED.replace("404", "400"));

    assert_eq!(google.push().await, Delivery::TokenInvalid);
    assert_eq!(google.mock.pushes().len(), 1);
}

#[tokio::test]
async fn other_client_error_fails_without_retry() {
    let google = google().await;
    google.mock.status(
        403,
        r#"{"error":{"code":403,"message":"SenderId mismatch","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"SENDER_ID_MISMATCH"}]}}"#,
    );

    let delivery = google.push().await;

    assert_eq!(
        delivery,
        Delivery::Failed(
            "fcm answered 403 Forbidden: SENDER_ID_MISMATCH SenderId mismatch".to_owned()
        )
    );
    assert_eq!(google.mock.pushes().len(), 1);
}

#[tokio::test]
async fn not_found_without_unregistered_is_not_token_invalid() {
    let google = google().await;
    google.mock.status(
        404,
        r#"{"error":{"code":404,"message":"Project not found","status":"NOT_FOUND"}}"#,
    );

    let delivery = google.push().await;

    assert_eq!(
        delivery,
        Delivery::Failed("fcm answered 404 Not Found: NOT_FOUND Project not found".to_owned())
    );
}

#[tokio::test]
async fn server_error_then_success_is_delivered_after_two_requests() {
    let google = google().await;
    google.mock.status(
        503,
        r#"{"error":{"code":503,"status":"UNAVAILABLE","message":"try again"}}"#,
    );

    assert_eq!(google.push().await, Delivery::Delivered);
    assert_eq!(google.mock.pushes().len(), 2);
    assert_eq!(google.mock.token_requests().len(), 1);
}

#[tokio::test]
async fn project_id_defaults_to_the_service_accounts() {
    let (mock, base_url) = Mock::start().await;
    let config = FcmConfig {
        service_account_json: service_account_json(&format!("{base_url}/token"), "from-json"),
        base_url,
        project_id: String::new(),
        ca_file_pem: None,
    };
    let pusher = Pusher::live_tuned(None, Some(config), quick_tuning()).expect("FCM config");

    assert_eq!(
        pusher.send(&to_device(), &notification()).await,
        Delivery::Delivered
    );
    assert_eq!(
        mock.pushes()[0].path,
        "/v1/projects/from-json/messages:send"
    );
}

#[test]
fn bad_service_account_json_is_rejected_at_start_up() {
    let not_json = FcmConfig {
        base_url: FcmConfig::PRODUCTION_URL.to_owned(),
        project_id: "sesam-test".to_owned(),
        service_account_json: "{ not json".to_owned(),
        ca_file_pem: None,
    };
    let err = Pusher::live(None, Some(not_json)).expect_err("must be refused");
    assert!(matches!(err, PushError::FcmServiceAccount(_)), "{err:?}");

    let bad_key = FcmConfig {
        base_url: FcmConfig::PRODUCTION_URL.to_owned(),
        project_id: "sesam-test".to_owned(),
        service_account_json: serde_json::json!({
            "type": "service_account",
            "private_key": "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n",
            "client_email": CLIENT_EMAIL,
            "token_uri": "https://oauth2.googleapis.com/token",
        })
        .to_string(),
        ca_file_pem: None,
    };
    let err = Pusher::live(None, Some(bad_key)).expect_err("must be refused");
    assert!(matches!(err, PushError::FcmServiceAccount(_)), "{err:?}");

    let no_project = FcmConfig {
        base_url: FcmConfig::PRODUCTION_URL.to_owned(),
        project_id: String::new(),
        service_account_json: service_account_json("https://oauth2.googleapis.com/token", ""),
        ca_file_pem: None,
    };
    let err = Pusher::live(None, Some(no_project)).expect_err("must be refused");
    assert!(matches!(err, PushError::FcmProjectId), "{err:?}");
}

#[tokio::test]
async fn https_pushes_fetch_the_oauth_token_once_and_reuse_it() {
    let (mock, base_url) = Mock::start_tls(Alpn::H2AndHttp1).await;
    assert!(base_url.starts_with("https://"));
    let google = google_at(mock, base_url, Some(test_ca().ca_pem.clone()));

    assert_eq!(google.push().await, Delivery::Delivered);
    assert_eq!(google.push().await, Delivery::Delivered);

    let token_requests = google.mock.token_requests();
    assert_eq!(token_requests.len(), 1, "the access token is cached");
    google.check_grant(&token_requests[0]);
    let pushes = google.mock.pushes();
    assert_eq!(pushes.len(), 2);
    for push in &pushes {
        assert_eq!(push.version, axum::http::Version::HTTP_2, "ALPN chose h2");
        assert_eq!(push.header("authorization"), "Bearer ya29.access-1");
        assert_eq!(push.path, "/v1/projects/sesam-test/messages:send");
        assert_eq!(push.json()["message"]["token"], DEVICE);
    }
}

#[tokio::test]
async fn untrusted_token_endpoint_fails_at_once_as_a_certificate_problem() {
    let (mock, base_url) = Mock::start_tls(Alpn::H2AndHttp1).await;
    let google = google_at(mock, base_url, None);

    let Delivery::Failed(reason) = google.push().await else {
        panic!("an untrusted certificate must fail");
    };
    assert!(reason.starts_with("fcm access token"), "{reason}");
    assert!(reason.contains("TLS certificate not trusted"), "{reason}");
    assert!(reason.contains("fcm_ca_file"), "{reason}");
    assert!(google.mock.token_requests().is_empty());
    assert!(google.mock.pushes().is_empty());
    assert_eq!(
        google.mock.connections(),
        1,
        "a certificate failure is not retried"
    );
}

#[tokio::test]
async fn access_token_is_renewed_a_minute_before_it_expires() {
    const START: u64 = 1_700_000_000;
    let (clock, now) = manual_clock(START);
    let (mock, base_url) = Mock::start().await;
    let tuning = Tuning {
        clock,
        ..quick_tuning()
    };
    let google = google_tuned(mock, base_url, None, tuning);
    let bearer = |n: usize| google.mock.pushes()[n].header("authorization").to_owned();

    assert_eq!(google.push().await, Delivery::Delivered);
    // The mock's tokens live 3599 s; 61 s before that the cached one is still used...
    *now.lock().expect("lock") = START + 3599 - 61;
    assert_eq!(google.push().await, Delivery::Delivered);
    assert_eq!(bearer(1), "Bearer ya29.access-1");
    // ...and within the last minute a new one is fetched, its assertion made at the new time.
    *now.lock().expect("lock") = START + 3599 - 59;
    assert_eq!(google.push().await, Delivery::Delivered);
    assert_eq!(bearer(2), "Bearer ya29.access-2");

    let token_requests = google.mock.token_requests();
    assert_eq!(token_requests.len(), 2);
    google.check_grant(&token_requests[1]);
    let form = String::from_utf8(token_requests[1].body.to_vec()).expect("UTF-8 form");
    let url = reqwest::Url::parse(&format!("http://form.invalid/?{form}")).expect("form");
    let assertion = url
        .query_pairs()
        .find(|(key, _)| key == "assertion")
        .map(|(_, value)| value.into_owned())
        .expect("assertion");
    let (_, claims, _, _) = split_jws(&assertion);
    assert_eq!(claims["iat"], START + 3599 - 59);
}

/// Google over TLS with ALPN h2 and the test CA trusted, for the send API and the token endpoint.
async fn google_https(tuning: Tuning) -> Google {
    let (mock, base_url) = Mock::start_tls(Alpn::H2AndHttp1).await;
    google_tuned(mock, base_url, Some(test_ca().ca_pem.clone()), tuning)
}

impl Google {
    /// The sends the mock saw, each checked to have come over h2 with the cached access token.
    fn h2_pushes(&self) -> Vec<Seen> {
        let pushes = self.mock.pushes();
        for seen in &pushes {
            assert_eq!(seen.version, axum::http::Version::HTTP_2, "ALPN chose h2");
            assert_eq!(seen.header("authorization"), "Bearer ya29.access-1");
        }
        assert_eq!(
            self.mock.token_requests().len(),
            1,
            "one token for all attempts"
        );
        pushes
    }
}

const UNAVAILABLE: &str = r#"{"error":{"code":503,"status":"UNAVAILABLE","message":"try again"}}"#;
const QUOTA_EXCEEDED: &str = r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"QUOTA_EXCEEDED"}]}}"#;

#[tokio::test]
async fn https_unregistered_means_token_invalid() {
    let google = google_https(quick_tuning()).await;
    google.mock.status(404, UNREGISTERED);

    assert_eq!(google.push().await, Delivery::TokenInvalid);
    assert_eq!(google.h2_pushes().len(), 1, "a dead token is not retried");
}

#[tokio::test]
async fn https_429_with_a_short_retry_after_waits_that_long_then_delivers() {
    let google = google_https(quick_tuning()).await;
    google.mock.reply(Reply::WithHeaders(
        429,
        vec![("retry-after", "1".to_owned())],
        QUOTA_EXCEEDED.to_owned(),
    ));

    assert_eq!(google.push().await, Delivery::Delivered);

    let pushes = google.h2_pushes();
    assert_eq!(pushes.len(), 2);
    let gap = gaps(&pushes)[0];
    assert!(
        gap >= Duration::from_secs(1),
        "second request after {gap:?}"
    );
}

#[tokio::test]
async fn https_429_with_a_long_retry_after_fails_at_once_without_sleeping() {
    let google = google_https(quick_tuning()).await;
    google.mock.reply(Reply::WithHeaders(
        429,
        vec![("retry-after", "3600".to_owned())],
        QUOTA_EXCEEDED.to_owned(),
    ));
    let started = Instant::now();

    let Delivery::Unavailable {
        reason,
        retry_after: Some(3600),
    } = google.push().await
    else {
        panic!("a wait beyond max_retry_after must fail the push");
    };

    assert!(
        reason.starts_with("rate limited by fcm, retry after 3600 s"),
        "{reason}"
    );
    assert!(reason.contains("QUOTA_EXCEEDED"), "{reason}");
    assert_eq!(google.h2_pushes().len(), 1, "only one request");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn https_503_always_fails_after_exactly_three_requests() {
    let google = google_https(quick_tuning()).await;
    for _ in 0..3 {
        google.mock.status(503, UNAVAILABLE);
    }

    let delivery = google.push().await;

    assert_eq!(
        delivery,
        Delivery::Unavailable {
            reason: "fcm answered 503 Service Unavailable: UNAVAILABLE try again".to_owned(),
            retry_after: None,
        }
    );
    assert_eq!(google.h2_pushes().len(), 3, "exactly three attempts");
}

#[tokio::test]
async fn https_503_then_200_is_delivered_after_two_requests() {
    let google = google_https(quick_tuning()).await;
    google.mock.status(503, UNAVAILABLE);

    assert_eq!(google.push().await, Delivery::Delivered);
    assert_eq!(google.h2_pushes().len(), 2);
}

#[tokio::test]
async fn https_provider_that_never_answers_fails_after_three_timed_out_requests() {
    let timeout = Duration::from_millis(400);
    let google = google_https(Tuning {
        request_timeout: timeout,
        ..quick_tuning()
    })
    .await;
    for _ in 0..3 {
        google.mock.reply(Reply::Hang(Duration::from_secs(30)));
    }
    let started = Instant::now();

    let Delivery::Unavailable { reason, .. } = google.push().await else {
        panic!("a provider that never answers must fail the push");
    };

    assert!(reason.starts_with("fcm timed out"), "{reason}");
    assert_eq!(
        google.h2_pushes().len(),
        3,
        "each attempt timed out, then no more"
    );
    let bound = timeout * 3 + Duration::from_millis(20 + 40) + Duration::from_secs(3);
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
}
