//! APNs sender against an h2c mock: JWT, headers, body, token-invalid answers, retries.
//! The mock checks the provider JWT with the public half of a key made for each test.

use std::time::Duration;

use axum::http::{Method, Version};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{EncodePrivateKey as _, LineEnding};

use super::{
    gaps, manual_clock, notification, quick_tuning, split_jws, test_ca, Alpn, Mock, Reply, Seen,
};
use crate::transport::Tuning;
use crate::{ApnsConfig, Delivery, Provider, PushError, PushToken, Pusher};

const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

struct Apple {
    mock: Mock,
    pusher: Pusher,
    public_key: VerifyingKey,
}

async fn apple_with(tuning: Tuning) -> Apple {
    let (mock, base_url) = Mock::start().await;
    apple_at(mock, base_url, None, tuning)
}

fn apple_at(mock: Mock, base_url: String, ca_file_pem: Option<String>, tuning: Tuning) -> Apple {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let key_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 PEM")
        .to_string();
    let config = ApnsConfig {
        base_url,
        key_pem,
        key_id: "KEY1234567".to_owned(),
        team_id: "TEAM987654".to_owned(),
        topic: "dk.example.sesam".to_owned(),
        ca_file_pem,
    };
    let pusher = Pusher::live_tuned(Some(config), None, tuning).expect("APNs config is good");
    Apple {
        mock,
        pusher,
        public_key: *key.verifying_key(),
    }
}

async fn apple() -> Apple {
    apple_with(quick_tuning()).await
}

fn to_device() -> PushToken {
    PushToken {
        provider: Provider::Apns,
        token: DEVICE.to_owned(),
    }
}

impl Apple {
    async fn push(&self) -> Delivery {
        self.pusher.send(&to_device(), &notification()).await
    }

    /// Checks the provider JWT the way Apple would and returns it with its `iat`.
    fn verified_jwt(&self, seen: &Seen) -> (String, u64) {
        let authorization = seen.header("authorization");
        let jwt = authorization
            .strip_prefix("bearer ")
            .unwrap_or_else(|| panic!("not a bearer token: {authorization}"));
        assert!(!jwt.contains('='), "JWS parts must be unpadded base64url");
        let (header, claims, signing_input, signature) = split_jws(jwt);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "KEY1234567");
        assert_eq!(claims["iss"], "TEAM987654");
        let signature = Signature::from_slice(&signature).expect("64-byte r||s signature");
        self.public_key
            .verify(signing_input.as_bytes(), &signature)
            .expect("JWT signed with the configured .p8 key");
        let iat = claims["iat"].as_u64().expect("numeric iat");
        (jwt.to_owned(), iat)
    }
}

#[tokio::test]
async fn good_push_is_one_http2_request_with_signed_jwt_headers_and_body() {
    let apple = apple().await;

    assert_eq!(apple.push().await, Delivery::Delivered);

    let pushes = apple.mock.pushes();
    assert_eq!(pushes.len(), 1, "exactly one request: {pushes:?}");
    let seen = &pushes[0];
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, format!("/3/device/{DEVICE}"));
    let (_, iat) = apple.verified_jwt(seen);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(now.abs_diff(iat) < 60, "iat {iat} is about now {now}");
    assert_eq!(seen.header("apns-topic"), "dk.example.sesam");
    assert_eq!(seen.header("apns-push-type"), "alert");
    assert_eq!(seen.header("apns-priority"), "10");
    assert_eq!(seen.header("apns-collapse-id"), "ch-0f3a9c");
    assert_eq!(
        seen.json(),
        serde_json::json!({
            "aps": {
                "alert": { "title": "Sign-in request", "body": "Open Sesam to see the request." },
                "sound": "default",
            },
            "challenge_id": "ch-0f3a9c",
        })
    );
}

#[tokio::test]
async fn gone_410_means_token_invalid() {
    let apple = apple().await;
    apple.mock.status(
        410,
        r#"{"reason":"Unregistered","timestamp":1700000000000}"#,
    );

    assert_eq!(apple.push().await, Delivery::TokenInvalid);
    assert_eq!(apple.mock.pushes().len(), 1);
}

#[tokio::test]
async fn bad_device_token_400_means_token_invalid() {
    let apple = apple().await;
    apple.mock.status(400, r#"{"reason":"BadDeviceToken"}"#);

    assert_eq!(apple.push().await, Delivery::TokenInvalid);
    assert_eq!(apple.mock.pushes().len(), 1);
}

#[tokio::test]
async fn unregistered_400_means_token_invalid() {
    let apple = apple().await;
    apple.mock.status(400, r#"{"reason":"Unregistered"}"#);

    assert_eq!(apple.push().await, Delivery::TokenInvalid);
    assert_eq!(apple.mock.pushes().len(), 1);
}

#[tokio::test]
async fn other_400_fails_without_retry() {
    let apple = apple().await;
    apple.mock.status(400, r#"{"reason":"BadCollapseId"}"#);

    let delivery = apple.push().await;

    assert_eq!(
        delivery,
        Delivery::Failed("apns answered 400 Bad Request: BadCollapseId".to_owned())
    );
    assert_eq!(apple.mock.pushes().len(), 1, "4xx is not retried");
}

#[tokio::test]
async fn server_error_then_success_is_delivered_after_two_requests() {
    let apple = apple().await;
    apple
        .mock
        .status(500, r#"{"reason":"InternalServerError"}"#);

    assert_eq!(apple.push().await, Delivery::Delivered);
    let pushes = apple.mock.pushes();
    assert_eq!(pushes.len(), 2);
    assert_eq!(
        pushes[0].body, pushes[1].body,
        "the retry sends the same push"
    );
}

#[tokio::test]
async fn two_server_errors_then_success_is_delivered_on_the_third_request() {
    let apple = apple().await;
    apple
        .mock
        .status(500, r#"{"reason":"InternalServerError"}"#);
    apple.mock.status(503, r#"{"reason":"ServiceUnavailable"}"#);

    assert_eq!(apple.push().await, Delivery::Delivered);
    assert_eq!(apple.mock.pushes().len(), 3);
}

#[tokio::test]
async fn timeout_then_success_is_delivered_after_two_requests() {
    let apple = apple().await;
    apple.mock.reply(Reply::Hang(Duration::from_secs(3)));

    assert_eq!(apple.push().await, Delivery::Delivered);
    assert_eq!(apple.mock.pushes().len(), 2);
}

#[tokio::test]
async fn provider_jwt_is_reused_across_pushes() {
    let apple = apple().await;

    assert_eq!(apple.push().await, Delivery::Delivered);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(apple.push().await, Delivery::Delivered);

    let pushes = apple.mock.pushes();
    assert_eq!(pushes.len(), 2);
    let (first, _) = apple.verified_jwt(&pushes[0]);
    let (second, _) = apple.verified_jwt(&pushes[1]);
    // A second later a freshly made token would carry a new iat, so equality means reuse.
    assert_eq!(first, second);
}

#[tokio::test]
async fn provider_jwt_is_remade_after_fifty_minutes() {
    let (clock, now) = manual_clock(1_700_000_000);
    let apple = apple_with(Tuning {
        clock,
        ..quick_tuning()
    })
    .await;

    apple.push().await;
    *now.lock().expect("lock") += 49 * 60;
    apple.push().await;
    *now.lock().expect("lock") += 2 * 60;
    apple.push().await;

    let iats: Vec<u64> = apple
        .mock
        .pushes()
        .iter()
        .map(|seen| apple.verified_jwt(seen).1)
        .collect();
    assert_eq!(
        iats,
        vec![1_700_000_000, 1_700_000_000, 1_700_000_000 + 51 * 60]
    );
}

#[tokio::test]
async fn expired_provider_token_answer_makes_the_next_push_sign_anew() {
    let (clock, now) = manual_clock(1_700_000_000);
    let apple = apple_with(Tuning {
        clock,
        ..quick_tuning()
    })
    .await;
    apple
        .mock
        .status(403, r#"{"reason":"ExpiredProviderToken"}"#);

    assert!(matches!(apple.push().await, Delivery::Failed(_)));
    *now.lock().expect("lock") += 60;
    assert_eq!(apple.push().await, Delivery::Delivered);

    let pushes = apple.mock.pushes();
    assert_eq!(pushes.len(), 2, "a 403 is not retried");
    assert_eq!(apple.verified_jwt(&pushes[0]).1, 1_700_000_000);
    assert_eq!(apple.verified_jwt(&pushes[1]).1, 1_700_000_060);
}

#[tokio::test]
async fn token_that_is_not_hex_is_invalid_and_never_sent() {
    let apple = apple().await;
    let to = PushToken {
        provider: Provider::Apns,
        token: "../../other/path".to_owned(),
    };

    assert_eq!(
        apple.pusher.send(&to, &notification()).await,
        Delivery::TokenInvalid
    );
    assert!(apple.mock.pushes().is_empty());
}

#[tokio::test]
async fn unreachable_service_fails_with_a_reason() {
    // Bind and drop, so the port is very likely closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let config = ApnsConfig {
        base_url: format!("http://127.0.0.1:{port}"),
        key_pem: key.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string(),
        key_id: "KEY1234567".to_owned(),
        team_id: "TEAM987654".to_owned(),
        topic: "dk.example.sesam".to_owned(),
        ca_file_pem: None,
    };
    let pusher = Pusher::live_tuned(Some(config), None, quick_tuning()).expect("config");

    let delivery = pusher.send(&to_device(), &notification()).await;

    let Delivery::Unavailable { reason, .. } = delivery else {
        panic!("expected a failure, got {delivery:?}");
    };
    assert!(reason.starts_with("apns "), "{reason}");
    assert!(
        !reason.contains(DEVICE),
        "the token stays out of the reason: {reason}"
    );
}

#[test]
fn bad_p8_key_is_rejected_at_start_up() {
    let config = ApnsConfig {
        base_url: ApnsConfig::PRODUCTION_URL.to_owned(),
        key_pem: "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
            .to_owned(),
        key_id: "KEY1234567".to_owned(),
        team_id: "TEAM987654".to_owned(),
        topic: "dk.example.sesam".to_owned(),
        ca_file_pem: None,
    };

    let err = Pusher::live(Some(config), None).expect_err("a bad key must be refused");

    assert!(matches!(err, PushError::ApnsKey(_)), "{err:?}");
    assert!(err.to_string().contains(".p8"), "{err}");
}

#[test]
fn missing_team_id_and_bad_base_url_are_rejected_at_start_up() {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let good = ApnsConfig {
        base_url: ApnsConfig::PRODUCTION_URL.to_owned(),
        key_pem: key.to_pkcs8_pem(LineEnding::LF).expect("PEM").to_string(),
        key_id: "KEY1234567".to_owned(),
        team_id: "TEAM987654".to_owned(),
        topic: "dk.example.sesam".to_owned(),
        ca_file_pem: None,
    };
    assert!(Pusher::live(Some(good.clone()), None).is_ok());

    let no_team = ApnsConfig {
        team_id: " ".to_owned(),
        ..good.clone()
    };
    assert!(matches!(
        Pusher::live(Some(no_team), None),
        Err(PushError::ApnsSetting { field: "team_id" })
    ));

    let ftp = ApnsConfig {
        base_url: "ftp://api.push.apple.com".to_owned(),
        ..good
    };
    assert!(matches!(
        Pusher::live(Some(ftp), None),
        Err(PushError::BadBaseUrl {
            provider: Provider::Apns,
            ..
        })
    ));
}

/// Apple over TLS: the mock's certificate is trusted only through `ca_file_pem`.
async fn apple_over_tls(alpn: Alpn, trust_test_ca: bool) -> Apple {
    let (mock, base_url) = Mock::start_tls(alpn).await;
    let ca = trust_test_ca.then(|| test_ca().ca_pem.clone());
    apple_at(mock, base_url, ca, quick_tuning())
}

/// Apple over TLS with ALPN h2 and the test CA trusted: the production client configuration.
async fn apple_https(tuning: Tuning) -> Apple {
    let (mock, base_url) = Mock::start_tls(Alpn::H2AndHttp1).await;
    apple_at(mock, base_url, Some(test_ca().ca_pem.clone()), tuning)
}

impl Apple {
    /// The requests the mock saw, each checked to have come over h2 with a valid JWT.
    fn h2_pushes(&self) -> Vec<Seen> {
        let pushes = self.mock.pushes();
        for seen in &pushes {
            assert_eq!(seen.version, Version::HTTP_2, "APNs is spoken to over h2");
            self.verified_jwt(seen);
        }
        pushes
    }
}

#[tokio::test]
async fn https_push_negotiates_h2_and_trusts_the_configured_ca() {
    let apple = apple_over_tls(Alpn::H2AndHttp1, true).await;

    assert_eq!(apple.push().await, Delivery::Delivered);

    let pushes = apple.mock.pushes();
    assert_eq!(pushes.len(), 1);
    assert_eq!(
        pushes[0].version,
        Version::HTTP_2,
        "APNs must be spoken to over h2"
    );
    assert_eq!(pushes[0].path, format!("/3/device/{DEVICE}"));
    apple.verified_jwt(&pushes[0]);
}

#[tokio::test]
async fn https_server_without_h2_is_refused_not_spoken_to_in_http1() {
    let apple = apple_over_tls(Alpn::Http1Only, true).await;

    let Delivery::Failed(reason) = apple.push().await else {
        panic!("APNs over HTTP/1.1 must fail");
    };
    assert!(reason.contains("TLS"), "{reason}");
    assert!(apple.mock.pushes().is_empty(), "no request may reach it");
    assert_eq!(apple.mock.connections(), 1, "a TLS refusal is not retried");
}

#[tokio::test]
async fn untrusted_certificate_fails_at_once_as_a_certificate_problem() {
    let apple = apple_over_tls(Alpn::H2AndHttp1, false).await;

    let Delivery::Failed(reason) = apple.push().await else {
        panic!("an untrusted certificate must fail");
    };
    assert!(reason.contains("TLS certificate not trusted"), "{reason}");
    assert!(reason.contains("apns_ca_file"), "{reason}");
    assert!(
        !reason.contains(DEVICE),
        "the token must not be in the reason"
    );
    assert!(apple.mock.pushes().is_empty());
    assert_eq!(
        apple.mock.connections(),
        1,
        "a certificate failure is not retried"
    );
}

#[test]
fn ca_file_without_a_certificate_is_rejected_at_start_up() {
    let key_pem = SigningKey::random(&mut rand::rngs::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 PEM")
        .to_string();
    for not_a_ca in ["", "hello", key_pem.as_str()] {
        let config = ApnsConfig {
            base_url: ApnsConfig::PRODUCTION_URL.to_owned(),
            key_pem: key_pem.clone(),
            key_id: "KEY1234567".to_owned(),
            team_id: "TEAM987654".to_owned(),
            topic: "dk.example.sesam".to_owned(),
            ca_file_pem: Some(not_a_ca.to_owned()),
        };
        let err = Pusher::live(Some(config), None).expect_err("must be refused");
        assert!(
            matches!(
                err,
                PushError::CaCertificate {
                    provider: Provider::Apns,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("apns_ca_file"), "{err}");
    }
}

#[tokio::test]
async fn https_410_unregistered_means_token_invalid() {
    let apple = apple_https(quick_tuning()).await;
    apple.mock.status(
        410,
        r#"{"reason":"Unregistered","timestamp":1700000000000}"#,
    );

    assert_eq!(apple.push().await, Delivery::TokenInvalid);
    assert_eq!(apple.h2_pushes().len(), 1, "a dead token is not retried");
}

#[tokio::test]
async fn https_400_bad_device_token_means_token_invalid() {
    let apple = apple_https(quick_tuning()).await;
    apple.mock.status(400, r#"{"reason":"BadDeviceToken"}"#);

    assert_eq!(apple.push().await, Delivery::TokenInvalid);
    assert_eq!(apple.h2_pushes().len(), 1);
}

#[tokio::test]
async fn https_429_with_a_short_retry_after_waits_that_long_then_delivers() {
    let apple = apple_https(quick_tuning()).await;
    apple.mock.reply(Reply::WithHeaders(
        429,
        vec![("retry-after", "1".to_owned())],
        r#"{"reason":"TooManyRequests"}"#.to_owned(),
    ));

    assert_eq!(apple.push().await, Delivery::Delivered);

    let pushes = apple.h2_pushes();
    assert_eq!(pushes.len(), 2);
    let gap = gaps(&pushes)[0];
    // Not the 20 ms backoff: the wait Apple asked for.
    assert!(
        gap >= Duration::from_secs(1),
        "second request after {gap:?}"
    );
}

#[tokio::test]
async fn https_429_with_a_long_retry_after_fails_at_once_without_sleeping() {
    let apple = apple_https(quick_tuning()).await;
    apple.mock.reply(Reply::WithHeaders(
        429,
        vec![("retry-after", "3600".to_owned())],
        r#"{"reason":"TooManyRequests"}"#.to_owned(),
    ));
    let started = std::time::Instant::now();

    let Delivery::Unavailable {
        reason,
        retry_after: Some(3600),
    } = apple.push().await
    else {
        panic!("a wait beyond max_retry_after must fail the push");
    };

    assert!(
        reason.starts_with("rate limited by apns, retry after 3600 s"),
        "{reason}"
    );
    assert!(reason.contains("TooManyRequests"), "{reason}");
    assert_eq!(apple.h2_pushes().len(), 1, "only one request");
    // max_retry_after is 2 s here: finishing sooner means nothing was slept.
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn https_429_with_retry_after_as_an_http_date_is_read_against_the_clock() {
    const NOW: u64 = 1_700_000_000;
    let (clock, _) = manual_clock(NOW);
    let apple = apple_https(Tuning {
        clock,
        ..quick_tuning()
    })
    .await;
    let at = std::time::UNIX_EPOCH + Duration::from_secs(NOW + 600);
    apple.mock.reply(Reply::WithHeaders(
        429,
        vec![("retry-after", httpdate::fmt_http_date(at))],
        r#"{"reason":"TooManyRequests"}"#.to_owned(),
    ));

    let Delivery::Unavailable { reason, .. } = apple.push().await else {
        panic!("ten minutes is beyond max_retry_after");
    };

    assert!(
        reason.starts_with("rate limited by apns, retry after 600 s"),
        "{reason}"
    );
    assert_eq!(apple.h2_pushes().len(), 1);
}

#[tokio::test]
async fn https_429_is_waited_for_once_only() {
    let apple = apple_https(quick_tuning()).await;
    for _ in 0..2 {
        apple.mock.reply(Reply::WithHeaders(
            429,
            vec![("retry-after", "0".to_owned())],
            r#"{"reason":"TooManyRequests"}"#.to_owned(),
        ));
    }

    let Delivery::Unavailable { reason, .. } = apple.push().await else {
        panic!("a second 429 ends the push");
    };

    assert!(
        reason.starts_with("rate limited by apns, retry after 0 s"),
        "{reason}"
    );
    assert_eq!(apple.h2_pushes().len(), 2);
}

#[tokio::test]
async fn https_503_always_fails_after_exactly_three_requests_with_growing_pauses() {
    let backoff = Duration::from_millis(150);
    let apple = apple_https(Tuning {
        retry_backoff: backoff,
        ..quick_tuning()
    })
    .await;
    for _ in 0..3 {
        apple.mock.status(503, r#"{"reason":"ServiceUnavailable"}"#);
    }
    // A fourth request would be answered 200 and turn the failure into a delivery.

    let delivery = apple.push().await;

    assert_eq!(
        delivery,
        Delivery::Unavailable {
            reason: "apns answered 503 Service Unavailable: ServiceUnavailable".to_owned(),
            retry_after: None,
        }
    );
    let pushes = apple.h2_pushes();
    assert_eq!(pushes.len(), 3, "exactly three attempts");
    let gaps = gaps(&pushes);
    assert!(gaps[0] >= backoff, "first pause {:?}", gaps[0]);
    assert!(gaps[1] >= backoff * 2, "second pause {:?}", gaps[1]);
}

#[tokio::test]
async fn https_503_then_200_is_delivered_after_two_requests() {
    let apple = apple_https(quick_tuning()).await;
    apple.mock.status(503, r#"{"reason":"ServiceUnavailable"}"#);

    assert_eq!(apple.push().await, Delivery::Delivered);
    let pushes = apple.h2_pushes();
    assert_eq!(pushes.len(), 2);
    assert_eq!(
        pushes[0].body, pushes[1].body,
        "the retry sends the same push"
    );
}

#[tokio::test]
async fn https_provider_that_never_answers_fails_after_three_timed_out_requests() {
    let timeout = Duration::from_millis(400);
    let apple = apple_https(Tuning {
        request_timeout: timeout,
        ..quick_tuning()
    })
    .await;
    for _ in 0..3 {
        apple.mock.reply(Reply::Hang(Duration::from_secs(30)));
    }
    let started = std::time::Instant::now();

    let Delivery::Unavailable { reason, .. } = apple.push().await else {
        panic!("a provider that never answers must fail the push");
    };

    assert!(reason.contains("timed out"), "{reason}");
    assert_eq!(
        apple.h2_pushes().len(),
        3,
        "each attempt timed out, then no more"
    );
    // Bounded by the attempts' timeouts and pauses, with room for a slow machine.
    let bound = timeout * 3 + Duration::from_millis(20 + 40) + Duration::from_secs(3);
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
}
