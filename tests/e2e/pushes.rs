//! Live pushes against a local APNs stand-in (HTTP/2, as Apple speaks it): a push the
//! provider cannot take waits in the database's retry queue and any node sends it later; the
//! queue is bounded and forgets pushes whose challenge ended; and a provider that hangs never
//! holds the browser.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use sesam_app::{DeviceUpdate, EnrolOptions};
use sesam_core::{ChallengeContext, ChallengeKind, ManualClock};
use sesam_server::challenges::{self, PushOutcome, PUSH_ATTEMPTS};

use crate::harness::{on_both_databases, test_config_with, TestDb, TestServer};
use crate::passwordless::start_login;

on_both_databases!(
    a_push_apple_could_not_take_is_sent_again_by_another_node,
    the_retry_queue_gives_up_and_forgets_ended_challenges,
);

const TOKEN: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Unavailable,
    Up,
    /// Holds every request until the test lets go.
    Hang,
}

/// The APNs stand-in: answers as `mode` says and keeps every request path and body.
#[derive(Clone)]
struct Apple {
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    release: Arc<tokio::sync::Notify>,
    url: String,
}

impl Apple {
    async fn start(mode: Mode) -> Apple {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let apple = Apple {
            mode: Arc::new(Mutex::new(mode)),
            seen: Arc::default(),
            release: Arc::default(),
            url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = Router::new().fallback(answer).with_state(apple.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        apple
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(State(apple): State<Apple>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let body = axum::body::to_bytes(request.into_body(), 1 << 16)
        .await
        .unwrap_or_default();
    apple
        .seen
        .lock()
        .unwrap()
        .push((path, String::from_utf8_lossy(&body).into_owned()));
    let mode = *apple.mode.lock().unwrap();
    match mode {
        Mode::Up => (StatusCode::OK, "").into_response(),
        Mode::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"reason":"ServiceUnavailable"}"#,
        )
            .into_response(),
        Mode::Hang => {
            apple.release.notified().await;
            (StatusCode::OK, "").into_response()
        }
    }
}

/// A server that pushes live to `apple`, on `db`, with the shared `clock`.
async fn pushing_server(
    db: &TestDb,
    apple: &Apple,
    key_dir: &std::path::Path,
    clock: ManualClock,
) -> TestServer {
    let key_file = key_dir.join("AuthKey.p8");
    if !key_file.exists() {
        let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(
            &p256::SecretKey::random(&mut rand::rngs::OsRng),
            Default::default(),
        )
        .unwrap();
        std::fs::write(&key_file, pem.as_bytes()).unwrap();
    }
    let config = test_config_with(
        &db.url,
        &[
            ("SESAM_PUSH_PROVIDER", "live"),
            ("SESAM_APNS_BASE_URL", &apple.url),
            ("SESAM_APNS_KEY_FILE", key_file.to_str().unwrap()),
            ("SESAM_APNS_KEY_ID", "ABC123DEFG"),
            ("SESAM_APNS_TEAM_ID", "DEF123GHIJ"),
            ("SESAM_APNS_TOPIC", "dk.sesam.app"),
        ],
    );
    TestServer::start_with(clock, config).await
}

/// Anna with an iPhone that has an APNs token.
async fn anna_with_iphone(sesam: &TestServer) -> sesam_core::User {
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam
        .enrol(
            &anna,
            EnrolOptions {
                display_name: "Anna's iPhone".into(),
                platform: "ios".into(),
                app_version: "3.0.0".into(),
                pin_length: 6,
                push: None,
            },
        )
        .await;
    app.update_device(&DeviceUpdate {
        push: Some(Some(("apns".into(), TOKEN.into()))),
        ..DeviceUpdate::default()
    })
    .await
    .unwrap();
    anna
}

async fn start_challenge(sesam: &TestServer, user: &sesam_core::User) -> challenges::Started {
    start_challenge_for(sesam, user, 120).await
}

async fn start_challenge_for(
    sesam: &TestServer,
    user: &sesam_core::User,
    lifetime_seconds: i64,
) -> challenges::Started {
    let devices = sesam.store().devices_of_user(&user.id).await.unwrap();
    challenges::start(
        &sesam.server.state,
        user,
        ChallengeKind::Code,
        &devices,
        ChallengeContext::default(),
        lifetime_seconds,
    )
    .await
    .unwrap()
}

async fn a_push_apple_could_not_take_is_sent_again_by_another_node(db: TestDb) {
    let apple = Apple::start(Mode::Unavailable).await;
    let keys = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let a = pushing_server(&db, &apple, keys.path(), clock.clone()).await;
    let anna = anna_with_iphone(&a).await;

    let started = start_challenge(&a, &anna).await;
    assert_eq!(
        started.pushes.await.unwrap(),
        vec![PushOutcome::RetryScheduled]
    );
    let tried_first = apple.seen().len();
    assert!(tried_first >= 1, "the first attempt reached Apple");
    let queued = a.store().push_retries().await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    let (retry, due) = &queued[0];
    assert_eq!(
        (retry.challenge_id.as_str(), retry.attempts),
        (started.challenge.id.as_str(), 1)
    );
    assert!(retry.last_error.contains("503"), "{}", retry.last_error);
    assert!(due.0 > a.now().0, "not due at once");
    // Node A goes away before the push is due; node B finds it in the database.
    a.stop().await;

    apple.set(Mode::Up);
    let b = pushing_server(&db, &apple, keys.path(), clock.clone()).await;
    clock.advance(6);
    // B's own round every 2 s, or this one, whichever comes first: the push goes once.
    let _ = challenges::retry_due_pushes(&b.server.state).await.unwrap();
    let mut sent = false;
    for _ in 0..100 {
        if b.store().push_retries().await.unwrap().is_empty() {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent, "the queue emptied");
    let seen = apple.seen();
    let (path, body) = seen.last().unwrap();
    assert_eq!(path, &format!("/3/device/{TOKEN}"));
    assert!(body.contains(&started.challenge.id), "{body}");
    assert_eq!(
        seen.len(),
        tried_first + 1,
        "sent exactly once more, by one node"
    );
    let events = b.audit_events("anna").await;
    assert!(
        events.contains(&"push.retry_scheduled".to_string()),
        "{events:?}"
    );
    assert!(events.contains(&"push.sent".to_string()), "{events:?}");
    b.stop().await;
}

async fn the_retry_queue_gives_up_and_forgets_ended_challenges(db: TestDb) {
    let apple = Apple::start(Mode::Unavailable).await;
    let keys = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let sesam = pushing_server(&db, &apple, keys.path(), clock.clone()).await;
    let anna = anna_with_iphone(&sesam).await;

    // Apple stays down: the push is tried PUSH_ATTEMPTS times in all, then given up. The
    // challenge lives long enough here for the queue, not the deadline, to end it.
    let started = start_challenge_for(&sesam, &anna, 3600).await;
    assert_eq!(
        started.pushes.await.unwrap(),
        vec![PushOutcome::RetryScheduled]
    );
    let per_attempt = apple.seen().len();
    for _ in 0..4 * PUSH_ATTEMPTS {
        if sesam.store().push_retries().await.unwrap().is_empty() {
            break;
        }
        clock.advance(41);
        let _ = challenges::retry_due_pushes(&sesam.server.state)
            .await
            .unwrap();
        settle(&sesam).await;
    }
    assert!(
        sesam.store().push_retries().await.unwrap().is_empty(),
        "a push that never goes through leaves the queue"
    );
    assert_eq!(
        apple.seen().len(),
        per_attempt * PUSH_ATTEMPTS as usize,
        "{PUSH_ATTEMPTS} attempts of {per_attempt} requests each, no more"
    );
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"push.failed".to_string()));

    // A challenge that ends (here: replaced by a newer login) takes its queued push with it.
    let first = start_challenge(&sesam, &anna).await;
    assert_eq!(
        first.pushes.await.unwrap(),
        vec![PushOutcome::RetryScheduled]
    );
    apple.set(Mode::Up);
    sesam
        .store()
        .cancel_challenge(&first.challenge.id, sesam.now())
        .await
        .unwrap();
    let before = apple.seen().len();
    clock.advance(6);
    let outcomes = challenges::retry_due_pushes(&sesam.server.state)
        .await
        .unwrap();
    assert!(outcomes.is_empty(), "{outcomes:?}");
    assert!(sesam.store().push_retries().await.unwrap().is_empty());
    assert_eq!(apple.seen().len(), before, "no push for an ended challenge");
    sesam.stop().await;
}

/// Waits until no push in the queue is held by a round under way (held ones are due a
/// lease ahead, further than any retry delay).
async fn settle(sesam: &TestServer) {
    for _ in 0..100 {
        let now = sesam.now().0;
        let queue = sesam.store().push_retries().await.unwrap();
        if queue.iter().all(|(_, due)| due.0 - now <= 40) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a push retry round did not finish");
}

/// Apple holds the request and does not answer: the browser's login still goes on to the
/// wait page at once, while the push is still under way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_never_holds_the_browser() {
    let db = TestDb::sqlite();
    let apple = Apple::start(Mode::Hang).await;
    let keys = tempfile::tempdir().unwrap();
    let sesam = pushing_server(&db, &apple, keys.path(), ManualClock::starting_now()).await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    anna_with_iphone(&sesam).await;
    let browser = sesam.browser();
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    let wait = browser.get("/login/wait").await;
    assert_eq!(wait.status, reqwest::StatusCode::OK);
    // The push is still waiting for Apple's answer (its timeout is 10 s): nothing about it
    // has been recorded, yet the browser is on the wait page.
    let events = sesam.audit_events("anna").await;
    assert!(
        !events.iter().any(|e| e.starts_with("push.")),
        "the login waited for the push: {events:?}"
    );
    let mut reached = false;
    for _ in 0..100 {
        if !apple.seen().is_empty() {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached, "the push was sent");
    apple.release.notify_waiters();
    sesam.stop().await;
}
