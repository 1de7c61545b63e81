//! The rules the typed login flow enforces, each written as the attack or the accident that
//! the landed server fell to (the login-flow issue): a password enrolling a second factor,
//! a lockout that a parallel burst got past, two tabs losing the login, an unlock that left
//! the fraud lock in place.

use std::process::Command;

use reqwest::header::{COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use sesam_app::{AppClient, EnrolOptions};

use crate::harness::{on_both_databases, Browser, TestDb, TestServer};
use crate::passwordless::{code_on, start_login};

on_both_databases!(
    a_password_alone_cannot_add_a_device,
    a_parallel_burst_checks_no_more_passwords_than_the_limit,
    a_stale_tab_does_not_end_the_login_of_the_other,
    cli_and_portal_unlock_clear_the_same_locks,
);

const PASSWORD: &str = "correct horse battery";

fn phone() -> EnrolOptions {
    EnrolOptions {
        display_name: "Anna's phone".into(),
        ..EnrolOptions::default()
    }
}

async fn ask_for_code(browser: &Browser) -> crate::harness::Page {
    let devices = browser.get("/account/devices").await;
    assert_eq!(devices.status, StatusCode::OK, "{}", devices.body);
    browser
        .post_form("/account/devices/activation", &[("csrf", &devices.csrf())])
        .await
}

fn activation_code(page: &crate::harness::Page) -> String {
    let marker = "id=\"activation-code\">";
    let start = page.body.find(marker).expect("an activation code") + marker.len();
    let end = page.body[start..].find('<').unwrap() + start;
    page.body[start..end].to_owned()
}

/// Defect 1: a session that proved only a password got an activation code, and the
/// device enrolled with it then gave a Substantial login.
async fn a_password_alone_cannot_add_a_device(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam.add_user("anna", "Anna Andersen", PASSWORD).await;
    let attacker = sesam.browser();
    assert_eq!(
        attacker.log_in("anna", PASSWORD).await.location(),
        Some("/account")
    );
    let refused = ask_for_code(&attacker).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(!refused.body.contains("activation-code"));
    assert!(refused.body.contains("role=\"alert\""));
    let events = sesam.audit_events("anna").await;
    assert!(events.contains(&"device.activation_code.refused".to_owned()));
    assert!(!events.contains(&"device.activation_code.issued".to_owned()));

    // Where the organisation allows it, a first device after a password.
    sesam
        .store()
        .set_setting("first_device_with_password", "true", sesam.now())
        .await
        .unwrap();
    let page = ask_for_code(&attacker).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let (app, _) = AppClient::enroll(&sesam.url(""), &activation_code(&page), phone())
        .await
        .expect("the first device enrols");
    // A second device needs more than the password, setting or not.
    let again = ask_for_code(&attacker).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);

    // With the app (Substantial), adding a device is fine.
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let owner = sesam.browser();
    assert_eq!(start_login(&owner, "anna").await, "/login/wait");
    let code = code_on(&owner.get("/login/wait").await);
    let pending = app.pending().await.unwrap();
    app.answer(&pending[0].id, &sesam_app::Answer::Code(code))
        .await
        .unwrap();
    assert_eq!(
        owner.get("/login/complete").await.location(),
        Some("/account")
    );
    let page = ask_for_code(&owner).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(activation_code(&page).len(), 11);
    sesam.stop().await;
}

/// A browser at the password form for `username`, ready to send it.
async fn at_password_form(sesam: &TestServer, username: &str) -> (Browser, String) {
    let browser = sesam.browser();
    let form = browser.get("/login").await;
    let next = browser
        .post_form("/login", &[("csrf", &form.csrf()), ("username", username)])
        .await;
    assert_eq!(next.location(), Some("/login/password"));
    let page = browser.get("/login/password").await;
    let csrf = page.csrf();
    (browser, csrf)
}

/// Sends a wrong password from every ready browser at once.
async fn wrong_passwords_at_once(ready: &[(Browser, String)]) -> Vec<crate::harness::Page> {
    let burst = ready.iter().map(|(browser, csrf)| async move {
        browser
            .post_form(
                "/login/password",
                &[("csrf", csrf.as_str()), ("password", "wrong guess")],
            )
            .await
    });
    futures_util::future::join_all(burst).await
}

async fn failed_checks(sesam: &TestServer) -> usize {
    sesam
        .store()
        .list_audit(None, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event == "login.password.failed")
        .count()
}

/// Defect 3: the limit was checked before the hash and the failure recorded after, so 40
/// wrong passwords sent at once were mostly checked, and a right one in the burst got in.
async fn a_parallel_burst_checks_no_more_passwords_than_the_limit(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam.add_user("anna", "Anna Andersen", PASSWORD).await;
    let mut ready = Vec::new();
    for _ in 0..40 {
        ready.push(at_password_form(&sesam, "anna").await);
    }
    let (right, right_csrf) = at_password_form(&sesam, "anna").await;
    let answers = wrong_passwords_at_once(&ready).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|p| p.status).collect();
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let checked = failed_checks(&sesam).await;
    assert!(
        checked <= 5,
        "{checked} passwords were checked; the limit is 5"
    );
    assert!(checked >= 1);
    let late = right
        .post_form(
            "/login/password",
            &[("csrf", right_csrf.as_str()), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(
        late.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the name is locked"
    );
    assert_eq!(
        failed_checks(&sesam).await,
        checked,
        "and nothing more was checked"
    );

    // Per address: 30 names at once against a limit of 10 wrong passwords.
    sesam
        .store()
        .set_setting("password_failures_per_ip", "10", sesam.now())
        .await
        .unwrap();
    sesam.clock.advance(16 * 60);
    let before = failed_checks(&sesam).await;
    let mut ready = Vec::new();
    for i in 0..30 {
        ready.push(at_password_form(&sesam, &format!("guess{i}")).await);
    }
    let answers = wrong_passwords_at_once(&ready).await;
    let limited = answers
        .iter()
        .filter(|p| p.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let checked = failed_checks(&sesam).await - before;
    assert!(
        checked <= 10,
        "{checked} checked from one address; the limit is 10"
    );
    assert_eq!(checked + limited, 30);
    sesam.stop().await;
}

/// Defect 4: two tabs of one browser; the first to finish gave the session a new id, and
/// the other tab's request with the old id got an answer that deleted the session cookie,
/// so both tabs ended on the login page.
async fn a_stale_tab_does_not_end_the_login_of_the_other(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let anna = sesam.add_user("anna", "Anna Andersen", PASSWORD).await;
    let (app, _) = sesam.enrol(&anna, phone()).await;
    let browser = sesam.browser();
    let form = browser.get("/login").await;
    let next = browser
        .post_form("/login", &[("csrf", &form.csrf()), ("username", "anna")])
        .await;
    assert_eq!(next.location(), Some("/login/wait"));
    let old = next
        .set_cookie("sesam_session")
        .expect("the session begins with the username");
    let code = code_on(&browser.get("/login/wait").await);
    let pending = app.pending().await.unwrap();
    app.answer(&pending[0].id, &sesam_app::Answer::Code(code))
        .await
        .unwrap();

    // Both tabs see "approved" and go to /login/complete at once, with the old cookie.
    let tab = || {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    };
    let (a, b) = (tab(), tab());
    let url = sesam.url("/login/complete");
    let cookie = format!("sesam_session={old}");
    let (ra, rb) = tokio::join!(
        a.get(&url).header(COOKIE, &cookie).send(),
        b.get(&url).header(COOKIE, &cookie).send()
    );
    let mut logged_in = Vec::new();
    for response in [ra.unwrap(), rb.unwrap()] {
        let set: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| v.starts_with("sesam_session="))
            .map(str::to_owned)
            .collect();
        for header in &set {
            let value = header["sesam_session=".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            assert!(
                !value.is_empty() && !header.contains("Max-Age=0"),
                "no answer deletes the session cookie: {header}"
            );
            logged_in.push(value);
        }
    }
    assert!(!logged_in.is_empty(), "one tab completed the login");
    for id in logged_in {
        let account = tab()
            .get(sesam.url("/account"))
            .header(COOKIE, format!("sesam_session={id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(account.status(), StatusCode::OK);
    }
    // A request still carrying the old id later gets a page that carries on, and no cookie.
    let stale = tab()
        .get(sesam.url("/login/wait/status"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    assert!(stale.headers().get(SET_COOKIE).is_none());
    let body = stale.text().await.unwrap();
    assert!(body.contains("http-equiv=\"refresh\""), "{body}");
    // And the old id is worth nothing: it is not a login.
    let account = tab()
        .get(sesam.url("/account"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let body = account.text().await.unwrap();
    assert!(
        !body.contains("Anna Andersen") && body.contains("http-equiv"),
        "{body}"
    );
    sesam.stop().await;
}

/// Defect 6: `sesam user unlock` left the fraud report's lock on passwordless in place,
/// while the portal's unlock cleared it. Both call one function now.
async fn cli_and_portal_unlock_clear_the_same_locks(db: TestDb) {
    let store = db.store().await;
    let now = sesam_core::UnixTime(1_800_000_000);
    let anna = crate::harness::add_user(&store, "anna", "Anna", PASSWORD, now).await;
    store
        .set_user_status(&anna.id, sesam_core::UserStatus::Locked, now)
        .await
        .unwrap();
    store
        .set_passwordless_locked(&anna.id, true, now)
        .await
        .unwrap();
    let settings = sesam_core::Settings::default();
    for _ in 0..5 {
        store
            .reserve_password_attempt("anna", now, &settings)
            .await
            .unwrap();
    }
    store
        .login_attempt_failed("anna", 5, now, &settings)
        .await
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sesam"))
        .args(["user", "unlock", "anna"])
        .env_remove("SESAM_CONFIG")
        .env("SESAM_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = store.get_user(&anna.id).await.unwrap();
    assert_eq!(after.status, sesam_core::UserStatus::Active);
    assert!(!after.passwordless_locked, "the fraud lock is cleared too");
    assert!(store
        .throttle_state("anna", now)
        .await
        .unwrap()
        .locked_until
        .is_none());
    let events: Vec<String> = store
        .list_audit(Some("anna"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(events.contains(&"user.unlocked".to_owned()), "{events:?}");
}
