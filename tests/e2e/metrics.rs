//! `/metrics` for the operator's Prometheus: absent without a token, refused without the
//! right one, and naming every family after a real password login and a passwordless login
//! with a push.

use reqwest::StatusCode;
use sesam_app::{Answer, EnrolOptions};
use sesam_core::ManualClock;

use crate::harness::{on_both_databases, test_config, test_config_with, TestDb, TestServer};
use crate::passwordless::{code_on, start_login};

on_both_databases!(
    metrics_need_the_token_and_name_every_family,
    without_a_token_there_is_no_metrics_endpoint,
);

const TOKEN: &str = "scrape-token-0123456789";
const PASSWORD: &str = "correct horse battery";

async fn scrape(sesam: &TestServer, authorization: Option<&str>) -> (StatusCode, String) {
    scrape_raw(sesam, authorization.map(str::as_bytes)).await
}

async fn scrape_raw(sesam: &TestServer, authorization: Option<&[u8]>) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(sesam.url("/metrics"));
    if let Some(value) = authorization {
        let value = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
        request = request.header("authorization", value);
    }
    let response = request.send().await.expect("GET /metrics");
    (response.status(), response.text().await.unwrap_or_default())
}

/// The value of the one sample line that starts with `series` (name and labels).
fn sample(body: &str, series: &str) -> f64 {
    let line = body
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{body}"));
    line[series.len()..].trim().parse().expect("a number")
}

async fn metrics_need_the_token_and_name_every_family(db: TestDb) {
    let sesam = TestServer::start_with(
        ManualClock::starting_now(),
        test_config_with(&db.url, &[("SESAM_METRICS_TOKEN", TOKEN)]),
    )
    .await;

    // Anyone else is refused, whatever they send.
    let wrong_length = format!("Bearer {TOKEN}x");
    let same_length = format!("Bearer {}", "x".repeat(TOKEN.len()));
    let basic = format!("Basic {TOKEN}");
    for bad in [
        None,
        Some(""),
        Some("Bearer "),
        Some(wrong_length.as_str()),
        Some(same_length.as_str()),
        Some(basic.as_str()),
    ] {
        let (status, body) = scrape(&sesam, bad).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad:?}");
        assert!(!body.contains("sesam_"), "{bad:?} read metrics");
    }
    // Bytes that are no text at all.
    let (status, _) = scrape_raw(&sesam, Some(b"Bearer \xff\xfe\x80")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    // A wrong and a right password for a password-only user.
    let robot = sesam.add_user("robot", "Robot", PASSWORD).await;
    sesam
        .store()
        .set_password_only(&robot.id, true, sesam.now())
        .await
        .unwrap();
    let browser = sesam.browser();
    assert_eq!(
        browser.log_in("robot", "not the password").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sesam.browser().log_in("robot", PASSWORD).await.location(),
        Some("/account")
    );
    // A passwordless login, with a push to the app.
    let anna = sesam.add_user("anna", "Anna Andersen", PASSWORD).await;
    let (app, _) = sesam
        .enrol(
            &anna,
            EnrolOptions {
                push: Some(("apns".into(), "a".repeat(64))),
                ..EnrolOptions::default()
            },
        )
        .await;
    let waiting = sesam.browser();
    assert_eq!(start_login(&waiting, "anna").await, "/login/wait");
    let code = code_on(&waiting.get("/login/wait").await);
    // An event stream open while the operator looks.
    let stream = waiting
        .client
        .get(sesam.url("/login/wait/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let auth = format!("Bearer {TOKEN}");
    let (status, during) = scrape(&sesam, Some(&auth)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sample(&during, "sesam_event_streams_open"), 1.0);
    drop(stream);

    let pending = app.pending().await.unwrap();
    app.answer(&pending[0].id, &Answer::Code(code))
        .await
        .unwrap();
    assert_eq!(
        waiting.get("/login/complete").await.location(),
        Some("/account")
    );
    // A path no route has, which must not become a label.
    assert_eq!(
        sesam.browser().get("/no/such/page-4711").await.status,
        StatusCode::NOT_FOUND
    );

    // The closed stream is noticed at its next write, the login's end: wait a moment.
    let mut body = String::new();
    for _ in 0..50 {
        let (status, text) = scrape(&sesam, Some(&auth)).await;
        assert_eq!(status, StatusCode::OK);
        body = text;
        if sample(&body, "sesam_event_streams_open") == 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(body.ends_with("# EOF\n"), "OpenMetrics text");
    let login = |branch: &str, outcome: &str| {
        sample(
            &body,
            &format!("sesam_logins_total{{branch=\"{branch}\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(login("password", "failed"), 1.0);
    assert_eq!(login("password", "succeeded"), 1.0);
    assert_eq!(login("passwordless", "succeeded"), 1.0);
    assert_eq!(
        sample(
            &body,
            "sesam_audit_events_total{event=\"login.password.failed\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &body,
            "sesam_challenge_answer_seconds_count{result=\"approved\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &body,
            "sesam_push_deliveries_total{provider=\"apns\",result=\"delivered\"}"
        ),
        1.0
    );
    // Routes by their template: the app API's answer names no challenge id.
    assert_eq!(
        sample(
            &body,
            "sesam_http_request_duration_seconds_count{route=\"/api/app/v1/challenges/{id}/answer\",method=\"POST\",status=\"200\"}"
        ),
        1.0
    );
    assert!(
        sample(
            &body,
            "sesam_http_request_duration_seconds_count{route=\"/login\",method=\"POST\",status=\"303\"}"
        ) >= 1.0
    );
    assert!(!body.contains(&pending[0].id), "no challenge id in a label");
    assert!(!body.contains("4711"), "an unknown path is no label");
    assert!(sample(&body, "sesam_db_pool_connections") >= 1.0);
    assert!(body.contains("\nsesam_db_pool_idle_connections "));
    assert_eq!(sample(&body, "sesam_event_streams_open"), 0.0);
    assert!(!body.contains(TOKEN));
    sesam.stop().await;
}

async fn without_a_token_there_is_no_metrics_endpoint(db: TestDb) {
    let sesam = TestServer::start_with(ManualClock::starting_now(), test_config(&db.url)).await;
    let auth = format!("Bearer {TOKEN}");
    for sent in [None, Some(auth.as_str())] {
        let (status, body) = scrape(&sesam, sent).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{sent:?}");
        assert!(!body.contains("sesam_"));
    }
    sesam.stop().await;
}
