//! The passwordless login and the push approval after a password, end to end: a browser
//! (reqwest with cookies) on one side, `sesam-app` on the other.

use std::time::Duration;

use reqwest::StatusCode;
use sesam_app::{Answer, AppClient, DeviceUpdate, EnrolOptions};
use sesam_core::{ChallengeState, DeviceStatus};

use crate::harness::{free_port, on_both_databases, Browser, Page, Process, TestDb, TestServer};

on_both_databases!(
    the_right_code_logs_in_without_a_password_at_substantial,
    a_wrong_code_ends_the_login_and_retry_gives_a_new_code,
    deny_and_expiry_show_what_happened,
    a_second_login_cancels_the_first_challenge,
    too_many_challenges_fall_back_to_the_password_form,
    everyone_not_eligible_gets_the_password_form,
    a_password_is_stepped_up_with_an_app_approval,
    the_event_stream_reports_the_answer,
);

fn phone() -> EnrolOptions {
    EnrolOptions {
        display_name: "Anna's iPhone".into(),
        ..EnrolOptions::default()
    }
}

async fn passwordless_on(sesam: &TestServer) {
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
}

/// Username step; returns where it sent the browser.
pub async fn start_login(browser: &Browser, username: &str) -> String {
    let form = browser.get("/login").await;
    let answer = browser
        .post_form("/login", &[("csrf", &form.csrf()), ("username", username)])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    answer.location().unwrap().to_owned()
}

/// The big code on the wait page.
pub fn code_on(page: &Page) -> String {
    let marker = "id=\"code\" aria-describedby=\"instruction\">";
    let start = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no code on:\n{}", page.body))
        + marker.len();
    page.body[start..start + 2].to_owned()
}

async fn status(browser: &Browser) -> serde_json::Value {
    let page = browser.get("/login/wait/status").await;
    assert_eq!(page.status, StatusCode::OK);
    serde_json::from_str(&page.body).unwrap()
}

async fn the_right_code_logs_in_without_a_password_at_substantial(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    passwordless_on(&sesam).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, phone()).await;
    let browser = sesam.browser();

    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    let wait = browser.get("/login/wait").await;
    assert_eq!(wait.status, StatusCode::OK);
    let code = code_on(&wait);
    assert!(wait.body.contains("data-poll-url=\"/login/wait/status\""));
    assert!(wait.body.contains("role=\"status\""));
    assert!(
        wait.body.contains("href=\"/login/password\""),
        "the password is offered instead"
    );
    assert_eq!(status(&browser).await["status"], "pending");

    let pending = app.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, "code");
    assert_eq!(
        app.answer(&pending[0].id, &Answer::Code(code))
            .await
            .unwrap()
            .status,
        "approved"
    );

    let s = status(&browser).await;
    assert_eq!(
        (s["status"].as_str(), s["redirect"].as_str()),
        (Some("approved"), Some("/login/complete"))
    );
    let done = browser.get("/login/complete").await;
    assert_eq!(done.location(), Some("/account"));
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("data-level=\"substantial\""),
        "the app gives NSIS Substantial"
    );
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"login.passwordless.succeeded".to_string()));

    // The finished challenge cannot be used again: this browser (another tab) carries on
    // with the login it has, another browser gets nothing.
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    assert_eq!(
        sesam.browser().get("/login/complete").await.location(),
        Some("/login")
    );
    sesam.stop().await;
}

async fn a_wrong_code_ends_the_login_and_retry_gives_a_new_code(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    passwordless_on(&sesam).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, phone()).await;
    let browser = sesam.browser();
    start_login(&browser, "anna").await;
    let code = code_on(&browser.get("/login/wait").await);
    let wrong = if code == "42" { "24" } else { "42" };
    let id = app.pending().await.unwrap()[0].id.clone();
    assert_eq!(
        app.answer(&id, &Answer::Code(wrong.into()))
            .await
            .unwrap()
            .status,
        "wrong_code"
    );
    assert_eq!(
        app.answer(&id, &Answer::Code(code))
            .await
            .unwrap_err()
            .status(),
        Some(409),
        "no second attempt"
    );

    let s = status(&browser).await;
    assert_eq!(
        (s["status"].as_str(), s["redirect"].as_str()),
        (Some("wrong_code"), Some("/login/wait"))
    );
    let outcome = browser.get("/login/wait").await;
    assert!(outcome.body.contains("id=\"outcome\""), "{}", outcome.body);
    assert!(outcome.body.contains("action=\"/login/retry\""));
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/login/wait"),
        "no login from a wrong code"
    );

    let retried = browser
        .post_form("/login/retry", &[("csrf", &outcome.csrf())])
        .await;
    assert_eq!(retried.location(), Some("/login/wait"));
    let fresh = app.pending().await.unwrap();
    assert_eq!(fresh.len(), 1);
    assert_ne!(fresh[0].id, id, "a new challenge");
    let code = code_on(&browser.get("/login/wait").await);
    assert_eq!(
        app.answer(&fresh[0].id, &Answer::Code(code))
            .await
            .unwrap()
            .status,
        "approved"
    );
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    sesam.stop().await;
}

async fn deny_and_expiry_show_what_happened(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    passwordless_on(&sesam).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, phone()).await;

    let browser = sesam.browser();
    start_login(&browser, "anna").await;
    let id = app.pending().await.unwrap()[0].id.clone();
    app.answer(&id, &Answer::Deny).await.unwrap();
    assert_eq!(status(&browser).await["status"], "rejected");
    let page = browser.get("/login/wait").await;
    assert!(page.body.contains("id=\"outcome\""));

    let late = sesam.browser();
    start_login(&late, "anna").await;
    sesam.clock.advance(121);
    assert_eq!(status(&late).await["status"], "expired");
    let challenge_id = sesam
        .store()
        .list_audit(Some("anna"), 50)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.event == "challenge.expired")
        .expect("expiry is audited")
        .detail;
    assert!(challenge_id.starts_with("challenge "));
    assert!(late
        .get("/login/wait")
        .await
        .body
        .contains("id=\"outcome\""));
    sesam.stop().await;
}

async fn a_second_login_cancels_the_first_challenge(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    passwordless_on(&sesam).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, phone()).await;
    let first = sesam.browser();
    start_login(&first, "anna").await;
    let first_id = app.pending().await.unwrap()[0].id.clone();
    let second = sesam.browser();
    start_login(&second, "anna").await;
    assert_eq!(status(&first).await["status"], "cancelled");
    let pending = app.pending().await.unwrap();
    assert_eq!(pending.len(), 1, "only the newest request waits");
    assert_ne!(pending[0].id, first_id);
    assert_eq!(
        sesam
            .store()
            .get_challenge(&first_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        ChallengeState::Cancelled
    );

    // Cancel in the browser, and "password instead", both end the request in the app.
    let page = second.get("/login/wait").await;
    let cancelled = second
        .post_form("/login/cancel", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(cancelled.location(), Some("/login"));
    assert!(app.pending().await.unwrap().is_empty());
    let third = sesam.browser();
    start_login(&third, "anna").await;
    assert_eq!(app.pending().await.unwrap().len(), 1);
    assert_eq!(third.get("/login/password").await.status, StatusCode::OK);
    assert!(
        app.pending().await.unwrap().is_empty(),
        "choosing the password cancels the app request"
    );
    assert_eq!(
        third
            .submit_password("correct horse battery")
            .await
            .location(),
        Some("/account")
    );
    sesam.stop().await;
}

async fn too_many_challenges_fall_back_to_the_password_form(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    passwordless_on(&sesam).await;
    sesam
        .store()
        .set_setting("challenge_limit_per_user", "2", sesam.now())
        .await
        .unwrap();
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    sesam.enrol(&anna, phone()).await;
    let browser = sesam.browser();
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/password",
        "the third within the window is refused"
    );
    let page = browser.get("/login/password").await;
    assert!(
        page.body.contains("class=\"notice-box\""),
        "the page says why: {}",
        page.body
    );
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"challenge.rate_limited".to_string()));
    sesam.clock.advance(15 * 60 + 1);
    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/wait",
        "after the window the app is used again"
    );
    sesam.stop().await;
}

async fn everyone_not_eligible_gets_the_password_form(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let store = sesam.store();
    let now = sesam.now();
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, device) = sesam.enrol(&anna, phone()).await;
    let browser = sesam.browser();

    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/password",
        "passwordless is off by default"
    );
    store
        .set_setting("passwordless", "pilot", now)
        .await
        .unwrap();
    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/password",
        "pilot without membership"
    );
    store.set_in_pilot(&anna.id, true, now).await.unwrap();
    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/wait",
        "pilot member"
    );
    store.set_setting("passwordless", "on", now).await.unwrap();
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");

    let old = DeviceUpdate {
        app_version: Some("2.9.0".into()),
        ..DeviceUpdate::default()
    };
    app.update_device(&old).await.unwrap();
    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/password",
        "app 2.9.0"
    );
    let short_pin = DeviceUpdate {
        app_version: Some("3.0.0".into()),
        pin_length: Some(4),
        ..DeviceUpdate::default()
    };
    app.update_device(&short_pin).await.unwrap();
    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/password",
        "PIN length 4"
    );
    app.update_device(&DeviceUpdate {
        pin_length: Some(6),
        ..DeviceUpdate::default()
    })
    .await
    .unwrap();
    store
        .set_device_status(&device.device_id, DeviceStatus::Locked, now)
        .await
        .unwrap();
    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/password",
        "locked device"
    );
    store
        .set_device_status(&device.device_id, DeviceStatus::Active, now)
        .await
        .unwrap();
    assert_eq!(
        start_login(&browser, "anna").await,
        "/login/wait",
        "eligible again"
    );

    let bo = sesam
        .add_user("bo", "Bo Berg", "correct horse battery")
        .await;
    sesam
        .enrol(
            &bo,
            EnrolOptions {
                platform: "desktop".into(),
                ..phone()
            },
        )
        .await;
    assert_eq!(
        start_login(&browser, "bo").await,
        "/login/password",
        "a desktop client never qualifies"
    );
    let cy = sesam
        .add_user("cy", "Cy Robot", "correct horse battery")
        .await;
    sesam
        .enrol(
            &cy,
            EnrolOptions {
                platform: "other".into(),
                ..phone()
            },
        )
        .await;
    assert_eq!(
        start_login(&browser, "cy").await,
        "/login/password",
        "a TOTP display or key never qualifies"
    );

    let robot = sesam
        .add_user("robot", "RPA robot", "correct horse battery")
        .await;
    sesam.enrol(&robot, phone()).await;
    store.set_password_only(&robot.id, true, now).await.unwrap();
    assert_eq!(
        start_login(&browser, "robot").await,
        "/login/password",
        "password-only accounts never change"
    );

    assert_eq!(
        start_login(&browser, "nobody").await,
        "/login/password",
        "unknown users too"
    );
    let unknown = browser.get("/login/password").await;
    start_login(&browser, "robot").await;
    let known = browser.get("/login/password").await;
    let normalise = |p: &Page, name: &str| p.body.replace(name, "NAME").replace(&p.csrf(), "CSRF");
    assert_eq!(
        normalise(&unknown, "nobody"),
        normalise(&known, "robot"),
        "the same page"
    );
    sesam.stop().await;
}

async fn a_password_is_stepped_up_with_an_app_approval(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .store()
        .set_setting("required_level", "substantial", sesam.now())
        .await
        .unwrap();
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam
        .enrol(
            &anna,
            EnrolOptions {
                app_version: "2.0.0".into(),
                ..phone()
            },
        )
        .await;
    let browser = sesam.browser();

    let answer = browser.log_in("anna", "correct horse battery").await;
    assert_eq!(
        answer.location(),
        Some("/login/wait"),
        "a password alone is not enough"
    );
    let wait = browser.get("/login/wait").await;
    code_on(&wait); // panics unless the wait page shows a number
    assert!(
        !wait.body.contains("href=\"/login/password\""),
        "the password was already given"
    );
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("data-level=\"low\""),
        "until the app approves, the session is Low"
    );

    let pending = app.pending().await.unwrap();
    assert_eq!(
        pending[0].kind, "approve",
        "an old app gets the step-up, answered with the number like any request"
    );
    let other_login = sesam.browser();
    assert_eq!(
        other_login
            .log_in("anna", "correct horse battery")
            .await
            .location(),
        Some("/login/wait")
    );
    // Wrong for the request being answered: the second login's number, not the first's.
    let other_code = code_on(&other_login.get("/login/wait").await);
    let wrong = if other_code == "42" { "24" } else { "42" };
    // The second login cancelled the first request; use the newest, and match its number.
    let newest = app.pending().await.unwrap()[0].id.clone();
    assert_eq!(
        app.answer(&newest, &Answer::Code(wrong.into()))
            .await
            .unwrap()
            .status,
        "wrong_code",
        "number matching: a wrong number ends the approval"
    );
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/login/wait"),
        "the first request was cancelled: its page says so, no login"
    );
    let browser = sesam.browser();
    browser.log_in("anna", "correct horse battery").await;
    let code = code_on(&browser.get("/login/wait").await);
    let pending = app.pending().await.unwrap();
    assert_eq!(
        app.answer(&pending[0].id, &Answer::Code(code))
            .await
            .unwrap()
            .status,
        "approved"
    );
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("data-level=\"substantial\""),
        "password + app is Substantial"
    );
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"login.step_up.succeeded".to_string()));

    // Without any app, the login that needs Substantial cannot be finished and says so.
    sesam
        .add_user("bo", "Bo Berg", "correct horse battery")
        .await;
    let bo = sesam.browser();
    let refused = bo.log_in("bo", "correct horse battery").await;
    assert_eq!(refused.location(), Some("/login/unreachable"));
    let page = bo.get("/login/unreachable").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("role=\"alert\""));
    sesam.stop().await;
}

/// Reads Server-Sent Events until one says `status` is `want`.
pub async fn wait_for_event(mut response: reqwest::Response, want: &str) -> bool {
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        if buffer.contains(&format!("\"status\":\"{want}\"")) {
            return true;
        }
    }
    false
}

async fn the_event_stream_reports_the_answer(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    passwordless_on(&sesam).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, phone()).await;
    let browser = sesam.browser();
    start_login(&browser, "anna").await;
    let code = code_on(&browser.get("/login/wait").await);
    let events = browser
        .client
        .get(sesam.url("/login/wait/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let id = app.pending().await.unwrap()[0].id.clone();
    let answer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app.answer(&id, &Answer::Code(code)).await.unwrap()
    };
    let (seen, _) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(20), wait_for_event(events, "approved")),
        answer
    );
    assert_eq!(seen, Ok(true), "the stream reported the approval");
    sesam.stop().await;
}

/// Two Sesam nodes on one PostgreSQL: the browser waits on A, the app answers through B.
/// A re-reads on its own only every 60 s here, so the event can only come from B's NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_on_another_node_reaches_the_waiting_browser() {
    let Some(db) = crate::harness::required_postgres("the two-node case").await else {
        return;
    };
    let clock = sesam_core::ManualClock::starting_now();
    let slow = [("SESAM_CHALLENGE_REREAD_SECONDS", "60")];
    let a = TestServer::start_with(
        clock.clone(),
        crate::harness::test_config_with(&db.url, &slow),
    )
    .await;
    let b = TestServer::start_with(
        clock.clone(),
        crate::harness::test_config_with(&db.url, &slow),
    )
    .await;
    passwordless_on(&a).await;
    let anna = a
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app_on_a, _) = a.enrol(&anna, phone()).await;
    let mut profile = app_on_a.profile().clone();
    profile.server = b.url("");
    let app = AppClient::from_profile(profile);

    let browser = a.browser();
    start_login(&browser, "anna").await;
    let code = code_on(&browser.get("/login/wait").await);
    let events = browser
        .client
        .get(a.url("/login/wait/events"))
        .send()
        .await
        .unwrap();
    let id = app.pending().await.unwrap()[0].id.clone();
    let started = std::time::Instant::now();
    let answer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.answer(&id, &Answer::Code(code)).await.unwrap()
    };
    let (seen, _) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(30), wait_for_event(events, "approved")),
        answer
    );
    assert_eq!(
        seen,
        Ok(true),
        "node A's stream reported the answer given on node B"
    );
    eprintln!(
        "answer on B reached the stream on A after {:?} (including the 300 ms before answering)",
        started.elapsed()
    );
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    a.stop().await;
    b.stop().await;
}

on_both_databases!(a_login_survives_the_server_being_killed_while_the_browser_waits);

async fn a_login_survives_the_server_being_killed_while_the_browser_waits(db: TestDb) {
    let (store, code) = crate::harness::anna_ready_to_enrol(&db).await;

    let port = free_port();
    let first = Process::start(&db.url, port).await;
    let (app, _) = AppClient::enroll(&first.base, &code, phone())
        .await
        .unwrap();
    let browser = Browser::new(first.base.clone());
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    let shown = code_on(&browser.get("/login/wait").await);
    first.kill();

    let second = Process::start(&db.url, port).await;
    let pending = app.pending().await.unwrap();
    assert_eq!(pending.len(), 1, "the challenge lived through the crash");
    assert_eq!(
        app.answer(&pending[0].id, &Answer::Code(shown))
            .await
            .unwrap()
            .status,
        "approved"
    );
    assert_eq!(status(&browser).await["status"], "approved");
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    assert!(browser
        .get("/account")
        .await
        .body
        .contains("data-level=\"substantial\""));
    second.kill();
    store.close().await;
}
