//! The edge as an attacker meets it: idle and half-sent connections, the connection cap,
//! shutdown with requests in flight, floods, event-stream bounds, bodies that trickle, the
//! portal's outbound fetch, and the smaller headers.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sesam_app::EnrolOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{on_both_databases, test_config_with, TestDb, TestServer};
use crate::passwordless::{code_on, start_login};

on_both_databases!(
    event_streams_are_capped_per_session_and_end_with_reconnect,
    the_portal_fetches_metadata_only_from_public_addresses,
);

/// Reads until the peer closes; `true` when it did within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn server_with(db: &TestDb, extra: &[(&str, &str)]) -> TestServer {
    TestServer::start_with(
        sesam_core::ManualClock::starting_now(),
        test_config_with(&db.url, extra),
    )
    .await
}

/// 1,100 sockets that send nothing or half a header must neither use up the server's files
/// nor keep /healthz from answering; each is dropped after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_dropped_and_health_answers() {
    let db = TestDb::sqlite();
    let sesam = server_with(
        &db,
        &[
            ("SESAM_HEADER_READ_TIMEOUT_SECONDS", "2"),
            ("SESAM_MAX_CONNECTIONS", "200"),
        ],
    )
    .await;
    let addr = sesam.server.addr;
    let mut idle = Vec::new();
    for i in 0..1100 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    // Past the cap, the connections idle the longest were closed to make room.
    let mut oldest = idle.remove(0);
    assert!(
        closed_within(&mut oldest, Duration::from_secs(5)).await,
        "the oldest idle connection was closed at the cap"
    );
    for attempt in 0..5 {
        let r = reqwest::get(sesam.url("/healthz")).await;
        let r = r.unwrap_or_else(|e| panic!("healthz attempt {attempt} failed: {e}"));
        assert_eq!(r.status(), StatusCode::OK);
    }
    // The newest ones are dropped by the header timeout (2 s), half-sent or silent alike.
    let mut newest = idle.pop().unwrap();
    let mut half = idle.pop().unwrap();
    assert!(closed_within(&mut newest, Duration::from_secs(10)).await);
    assert!(closed_within(&mut half, Duration::from_secs(10)).await);
    drop(idle);
    sesam.stop().await;
}

/// A kept-alive connection with nothing in flight is closed after the idle timeout; a
/// request body that trickles is cut off by the body timeout with a 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_and_trickled_bodies_end() {
    let db = TestDb::sqlite();
    let sesam = server_with(
        &db,
        &[
            ("SESAM_IDLE_TIMEOUT_SECONDS", "2"),
            ("SESAM_REQUEST_BODY_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;
    let addr = sesam.server.addr;
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        closed_within(&mut kept, Duration::from_secs(10)).await,
        "the idle kept-alive connection was closed"
    );

    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=a",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 4"),
        "a 4xx, never a 500: {answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    sesam.stop().await;
}

/// Stopping (what SIGTERM does) with a half-sent request and an open event stream: the
/// stream gets `reconnect`, and the server is gone within its grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_streams_and_half_sent_requests_within_the_grace_period() {
    let db = TestDb::sqlite();
    let sesam = server_with(&db, &[("SESAM_SHUTDOWN_GRACE_SECONDS", "3")]).await;
    passwordless_on(&sesam).await;
    let anna = sesam
        .add_user("anna", "Anna", "correct horse battery")
        .await;
    sesam.enrol(&anna, phone()).await;
    let browser = sesam.browser();
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    code_on(&browser.get("/login/wait").await);
    let mut events = browser
        .client
        .get(sesam.url("/login/wait/events"))
        .send()
        .await
        .unwrap();
    let mut half = TcpStream::connect(sesam.server.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let addr = sesam.server.addr;
    let started = Instant::now();
    let stopping = tokio::spawn(sesam.stop());
    let mut seen = String::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_secs(10), events.chunk()).await
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: reconnect"), "{seen}");
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("stopped within the grace period and a margin")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(closed_within(&mut half, Duration::from_secs(1)).await);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

/// The real binary: SIGTERM with a half-sent request open exits within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let db = format!("sqlite://{}/sesam.db", dir.path().display());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sesam"))
        .arg("serve")
        .env_remove("SESAM_CONFIG")
        .env("SESAM_LISTEN", format!("127.0.0.1:{port}"))
        .env("SESAM_DATABASE_URL", &db)
        .env("SESAM_SHUTDOWN_GRACE_SECONDS", "2")
        .env("SESAM_PASSWORD_HASH_CONCURRENCY", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start sesam serve");
    let mut half = None;
    for _ in 0..200 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            half = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut half = half.expect("sesam serve listens");
    half.write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nab")
        .await
        .unwrap();
    // The shell's own `kill` (procps may be missing on a fresh machine).
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id().unwrap())])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(Duration::from_secs(15), child.wait()).await;
    let exit = exited.expect("sesam exited after SIGTERM").unwrap();
    assert!(exit.success(), "a clean exit: {exit:?}");
}

/// The flood guard: /token and the app API answer 429 with Retry-After in their own JSON
/// format past the allowance, pages get a page, and /healthz is never limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_get_429_in_the_callers_format() {
    let db = TestDb::sqlite();
    let sesam = server_with(
        &db,
        &[
            ("SESAM_FLOOD_REQUESTS_PER_SECOND", "1"),
            ("SESAM_FLOOD_BURST", "5"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = http
            .post(sesam.url("/token"))
            .form(&[("grant_type", "authorization_code"), ("client_id", "x")])
            .send()
            .await
            .unwrap();
        statuses.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            assert_eq!(r.headers()["cache-control"], "no-store");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "temporarily_unavailable");
        }
    }
    assert!(
        statuses[..5]
            .iter()
            .all(|s| *s != StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert!(
        statuses[5..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // One address, one allowance: the app API and the pages are already over it too.
    let api = http
        .get(sesam.url("/api/app/v1/challenges"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    let page = http.get(sesam.url("/login")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers().contains_key("retry-after"));
    for _ in 0..20 {
        let r = http.get(sesam.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    sesam.stop().await;
}

/// Guessing client secrets: an unknown client and a wrong secret get the same answer, and
/// after 20 failures in a minute the address is refused before any secret is checked, also
/// when the requests come in parallel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_client_secrets_is_limited_and_tells_nothing() {
    let db = TestDb::sqlite();
    let sesam = TestServer::start(&db).await;
    let (client, _secret) = sesam_server::oidc::register_client(
        sesam.store(),
        &sesam_server::oidc::ClientRegistration {
            name: "RP".into(),
            redirect_uris: vec!["https://rp.example.dk/cb".into()],
            ..Default::default()
        },
        sesam.now(),
    )
    .await
    .unwrap()
    .unwrap();
    let http = reqwest::Client::new();
    let attempt = |id: String| {
        let http = http.clone();
        let url = sesam.url("/token");
        async move {
            let r = http
                .post(url)
                .basic_auth(id, Some("wrong"))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", "x"),
                    ("redirect_uri", "https://rp.example.dk/cb"),
                    ("code_verifier", &"v".repeat(43)),
                ])
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let wrong = attempt(client.client_id.clone()).await;
    let unknown = attempt("no-such-client".into()).await;
    assert_eq!(wrong.0, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown, "the same answer for both");
    let burst: Vec<_> = (0..40).map(|_| attempt(client.client_id.clone())).collect();
    let results = futures_util::future::join_all(burst).await;
    let unauthorized = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(
        unauthorized, 18,
        "20 failures per minute and address, 2 used before the burst"
    );
    assert!(results
        .iter()
        .all(|(s, _)| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS));
    sesam.stop().await;
}

async fn passwordless_on(sesam: &TestServer) {
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
}

fn phone() -> EnrolOptions {
    EnrolOptions {
        display_name: "Phone".into(),
        platform: "ios".into(),
        app_version: "3.0.0".into(),
        pin_length: 6,
        push: None,
    }
}

async fn event_streams_are_capped_per_session_and_end_with_reconnect(db: TestDb) {
    let sesam = server_with(
        &db,
        &[
            ("SESAM_EVENT_STREAMS_PER_SESSION", "2"),
            ("SESAM_EVENT_STREAM_MAX_SECONDS", "5"),
        ],
    )
    .await;
    passwordless_on(&sesam).await;
    let anna = sesam
        .add_user("anna", "Anna", "correct horse battery")
        .await;
    sesam.enrol(&anna, phone()).await;
    let browser = sesam.browser();
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    code_on(&browser.get("/login/wait").await);
    let open = || browser.client.get(sesam.url("/login/wait/events")).send();
    let mut first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    let third = open().await.unwrap();
    assert_eq!(
        third.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "two streams per session"
    );
    drop(second);
    // A closed stream frees its place (the server notices on its next write or at once).
    let mut reopened = None;
    for _ in 0..50 {
        let r = open().await.unwrap();
        if r.status() == StatusCode::OK {
            reopened = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the freed place can be used again");
    // At its maximum lifetime the stream ends with `reconnect`.
    let started = Instant::now();
    let mut seen = String::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_secs(15), first.chunk()).await
    {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: reconnect"), "{seen}");
    assert!(started.elapsed() < Duration::from_secs(15));
    // The wait page still works by polling, and the login was not lost.
    let status = browser.get("/login/wait/status").await;
    assert!(status.body.contains("\"pending\""), "{}", status.body);
    sesam.stop().await;
}

async fn the_portal_fetches_metadata_only_from_public_addresses(db: TestDb) {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { "<EntityDescriptor/>" }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let sesam = TestServer::start(&db).await;
    let (browser, _app) = crate::admin::admin_browser(&sesam).await;
    let before = sesam.store().list_saml_sps().await.unwrap().len();
    for url in [
        format!("http://{local}/metadata.xml"),
        format!("http://localhost:{}/metadata.xml", local.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]/metadata.xml".to_string(),
        "http://2130706433/metadata.xml".to_string(),
    ] {
        let csrf = browser.get("/admin/services").await.csrf();
        let (content_type, body) = crate::admin::multipart(
            &[
                ("csrf", csrf.as_str()),
                ("min_level", "low"),
                ("metadata_url", url.as_str()),
            ],
            None,
        );
        let page = browser
            .post_raw("/admin/services/saml/new", &content_type, body)
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(page.body.contains("not public"), "{url}: {}", page.body);
        assert!(!page.body.contains("Connection refused"), "{url}");
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request reached the local service"
    );
    assert_eq!(sesam.store().list_saml_sps().await.unwrap().len(), before);
    sesam.stop().await;
}

/// HSTS only when the public URL is https; forms over axum's 2 MB cap get 413 like smaller
/// oversized ones, with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_follows_the_public_url_and_every_oversized_form_is_413() {
    let db = TestDb::sqlite();
    let plain = TestServer::start(&db).await;
    let r = reqwest::get(plain.url("/healthz")).await.unwrap();
    assert!(!r.headers().contains_key("strict-transport-security"));
    let browser = plain.browser();
    for size in [20 * 1024, 3 * 1024 * 1024] {
        let page = browser
            .post_raw(
                "/login",
                "application/x-www-form-urlencoded",
                format!("username={}", "a".repeat(size)).into_bytes(),
            )
            .await;
        assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes");
        // Part of the body may be unread: the connection is not offered for reuse.
        assert_eq!(page.headers["connection"], "close", "{size} bytes");
    }
    plain.stop().await;

    let db = TestDb::sqlite();
    let secure = server_with(&db, &[("SESAM_PUBLIC_URL", "https://login.example.dk")]).await;
    let r = reqwest::get(secure.url("/healthz")).await.unwrap();
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    secure.stop().await;
}
