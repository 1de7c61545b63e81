//! The code display (TOTP) as a second factor: who may add one (the attack first: a
//! password alone), the login with password + code at Substantial as SAML and OIDC see it,
//! replayed and malformed codes, robots enrolled and reset by an administrator.

use std::process::Command;

use reqwest::StatusCode;
use sesam_app::{Answer, AppClient, EnrolOptions};
use sesam_core::totp::TotpSecret;
use sesam_core::{ManualClock, User};
use sesam_server::saml::SpOptions;

use crate::harness::{on_both_databases, test_config_with, Browser, Page, TestDb, TestServer};
use crate::oidc::{authorize_path, exchange, id_token_claims, params_of, register, SUBSTANTIAL};
use crate::passwordless::{code_on, start_login};
use crate::saml::{follow, TestSp, LOA_SUBSTANTIAL};

on_both_databases!(
    a_password_alone_cannot_add_a_code_display,
    a_password_alone_cannot_remove_a_way_to_log_in,
    the_user_chooses_app_or_code_and_the_browser_remembers,
    password_and_code_give_substantial_to_saml_and_oidc_once_per_code,
    bad_codes_are_refused_with_a_clear_message_and_change_nothing,
    a_robot_enrolled_by_an_administrator_logs_in_and_is_reset,
    one_step_is_taken_once_by_parallel_logins_on_two_nodes,
    psd2_mode_hides_which_detail_was_wrong,
);

const PASSWORD: &str = "correct horse battery";
/// 32 bytes, base64: the test server's TOTP sealing key.
const KEY: &str = "c2VzYW0tdGVzdC10b3RwLWtleS0zMi1ieXRlcy1vayE=";

async fn start(db: &TestDb) -> TestServer {
    TestServer::start_with(
        ManualClock::starting_now(),
        test_config_with(&db.url, &[("SESAM_TOTP_KEY", KEY)]),
    )
    .await
}

/// Anna with the app, logged in passwordless (Substantial) in the returned browser.
pub(crate) async fn anna_at_substantial(sesam: &TestServer) -> (User, Browser, AppClient) {
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let anna = sesam.add_user("anna", "Anna Andersen", PASSWORD).await;
    let (app, _) = sesam
        .enrol(
            &anna,
            EnrolOptions {
                display_name: "Anna's phone".into(),
                ..EnrolOptions::default()
            },
        )
        .await;
    let browser = sesam.browser();
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    let code = code_on(&browser.get("/login/wait").await);
    let pending = app.pending().await.unwrap();
    app.answer(&pending[0].id, &Answer::Code(code))
        .await
        .unwrap();
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    (anna, browser, app)
}

async fn start_enrolment(browser: &Browser) -> Page {
    let devices = browser.get("/account/devices").await;
    assert_eq!(devices.status, StatusCode::OK, "{}", devices.body);
    browser
        .post_form("/account/totp", &[("csrf", &devices.csrf())])
        .await
}

fn secret_on(page: &Page) -> TotpSecret {
    let marker = "id=\"totp-secret\">";
    let start = page.body.find(marker).expect("the secret is shown") + marker.len();
    let end = page.body[start..].find('<').unwrap() + start;
    TotpSecret::from_base32(&page.body[start..end]).expect("a base32 secret")
}

fn error_key(page: &Page) -> Option<&str> {
    let marker = "data-error=\"";
    let start = page.body.find(marker)? + marker.len();
    let end = page.body[start..].find('"')? + start;
    Some(&page.body[start..end])
}

/// Enrols a code display for the signed-in `browser`; returns its secret.
async fn enrol(sesam: &TestServer, browser: &Browser) -> TotpSecret {
    let page = start_enrolment(browser).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<svg"), "the QR code is an inline SVG");
    let secret = secret_on(&page);
    let code = secret.code_at(sesam.now());
    let done = browser
        .post_form(
            "/account/totp/confirm",
            &[("csrf", &page.csrf()), ("code", code.as_str())],
        )
        .await;
    assert_eq!(done.location(), Some("/account/devices"), "{}", done.body);
    let devices = browser.get("/account/devices").await;
    assert!(devices.body.contains("id=\"device-totp\""));
    assert!(
        !devices.body.contains(&secret.to_base32()),
        "never shown again"
    );
    secret
}

/// The app is gone (lost phone): a step-up can only go to the code display.
async fn remove_apps(sesam: &TestServer, user: &User) {
    for d in sesam.store().devices_of_user(&user.id).await.unwrap() {
        sesam.store().delete_device(&d.device.id).await.unwrap();
    }
}

/// Password for `username` on a fresh browser; the login then asks for the code.
async fn at_code_page(browser: &Browser, first: Page, username: &str) -> Page {
    assert_eq!(first.location(), Some("/login"), "{}", first.body);
    let answer = browser.log_in(username, PASSWORD).await;
    assert_eq!(answer.location(), Some("/login/totp"), "{}", answer.body);
    let page = browser.get("/login/totp").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page
}

async fn send_code(browser: &Browser, page: &Page, code: &str) -> Page {
    browser
        .post_form("/login/totp", &[("csrf", &page.csrf()), ("code", code)])
        .await
}

/// The attack first: a session that proved only a password must not add a factor.
async fn a_password_alone_cannot_add_a_code_display(db: TestDb) {
    let sesam = start(&db).await;
    let anna = sesam.add_user("anna", "Anna Andersen", PASSWORD).await;
    let attacker = sesam.browser();
    assert_eq!(
        attacker.log_in("anna", PASSWORD).await.location(),
        Some("/account")
    );
    let refused = start_enrolment(&attacker).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(!refused.body.contains("totp-secret"));
    assert!(refused.body.contains("role=\"alert\""));
    // Not even the organisation's "first device after a password" opens it.
    sesam
        .store()
        .set_setting("first_device_with_password", "true", sesam.now())
        .await
        .unwrap();
    let refused = start_enrolment(&attacker).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let devices = attacker.get("/account/devices").await;
    let confirm = attacker
        .post_form(
            "/account/totp/confirm",
            &[("csrf", &devices.csrf()), ("code", "123456")],
        )
        .await;
    assert_eq!(confirm.status, StatusCode::FORBIDDEN);
    assert!(sesam
        .store()
        .totp_of_user(&anna.id)
        .await
        .unwrap()
        .is_none());
    // Without the CSRF token: refused before anything.
    let no_csrf = attacker.post_form("/account/totp", &[]).await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let events = sesam.audit_events("anna").await;
    assert!(events.contains(&"totp.enrolment.refused".to_owned()));
    assert!(!events.contains(&"totp.enrolment.started".to_owned()));
    // And a code page without a password login is the login page.
    let stranger = sesam.browser();
    assert_eq!(stranger.get("/login/totp").await.location(), Some("/login"));
    sesam.stop().await;
}

/// The attack first: a stolen password must not take away the owner's app or code display
/// (and with them what would stop the thief at the next Substantial service).
async fn a_password_alone_cannot_remove_a_way_to_log_in(db: TestDb) {
    let sesam = start(&db).await;
    let (anna, owner, _app) = anna_at_substantial(&sesam).await;
    enrol(&sesam, &owner).await;
    let totp = sesam.store().totp_of_user(&anna.id).await.unwrap().unwrap();
    let devices = sesam.store().devices_of_user(&anna.id).await.unwrap();
    assert_eq!(devices.len(), 1);
    let device_path = format!("/account/devices/{}/remove", devices[0].device.id);

    // The thief has the password only (passwordless off, so the name leads to the form).
    sesam
        .store()
        .set_setting("passwordless", "off", sesam.now())
        .await
        .unwrap();
    let attacker = sesam.browser();
    assert_eq!(
        attacker.log_in("anna", PASSWORD).await.location(),
        Some("/account")
    );
    let csrf = attacker.get("/account/devices").await.csrf();
    for path in ["/account/totp/remove", device_path.as_str()] {
        let refused = attacker.post_form(path, &[("csrf", &csrf)]).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            refused.body
        );
        assert_eq!(
            error_key(&refused),
            Some("devices.remove_needs_more"),
            "{path}"
        );
    }
    assert_eq!(
        sesam.store().totp_of_user(&anna.id).await.unwrap(),
        Some(totp),
        "the code display is untouched"
    );
    assert_eq!(
        sesam.store().devices_of_user(&anna.id).await.unwrap().len(),
        1
    );
    let events = sesam.audit_events("anna").await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "factor.removal.refused")
            .count(),
        2
    );

    // The owner, logged in with the app, removes both.
    let csrf = owner.get("/account/devices").await.csrf();
    for path in ["/account/totp/remove", device_path.as_str()] {
        let done = owner.post_form(path, &[("csrf", &csrf)]).await;
        assert_eq!(
            done.location(),
            Some("/account/devices"),
            "{path}: {}",
            done.body
        );
    }
    assert!(sesam
        .store()
        .totp_of_user(&anna.id)
        .await
        .unwrap()
        .is_none());
    assert!(sesam
        .store()
        .devices_of_user(&anna.id)
        .await
        .unwrap()
        .is_empty());
    sesam.stop().await;
}

/// "Other ways to log in": a user with the app and a code display picks the code on the
/// step-up's wait page, the browser remembers it, and the app is one click away again.
async fn the_user_chooses_app_or_code_and_the_browser_remembers(db: TestDb) {
    let sesam = start(&db).await;
    let (anna, owner, app) = anna_at_substantial(&sesam).await;
    let secret = enrol(&sesam, &owner).await;
    // Every login needs Substantial; the name leads to the password form.
    for (key, value) in [("passwordless", "off"), ("required_level", "substantial")] {
        sesam
            .store()
            .set_setting(key, value, sesam.now())
            .await
            .unwrap();
    }
    let browser = sesam.browser();
    let answer = browser.log_in("anna", PASSWORD).await;
    assert_eq!(
        answer.location(),
        Some("/login/wait"),
        "the app comes first"
    );
    let wait = browser.get("/login/wait").await;
    assert!(wait.body.contains("id=\"other-factor\""), "{}", wait.body);
    assert_eq!(app.pending().await.unwrap().len(), 1);

    // Bad choices change nothing: an unknown factor, a passkey anna does not have, no
    // CSRF token.
    for (fields, status) in [
        (
            vec![("csrf", wait.csrf()), ("factor", "key".to_owned())],
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("csrf", wait.csrf()), ("factor", "passkey".to_owned())],
            StatusCode::CONFLICT,
        ),
        (
            vec![("csrf", wait.csrf()), ("factor", "x".repeat(5000))],
            StatusCode::BAD_REQUEST,
        ),
        (vec![("factor", "totp".to_owned())], StatusCode::FORBIDDEN),
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = browser.post_form("/login/choose", &fields).await;
        assert_eq!(refused.status, status, "{fields:?}");
        assert_eq!(
            app.pending().await.unwrap().len(),
            1,
            "the challenge still waits"
        );
    }

    let chosen = browser
        .post_form(
            "/login/choose",
            &[("csrf", &wait.csrf()), ("factor", "totp")],
        )
        .await;
    assert_eq!(chosen.location(), Some("/login/totp"), "{}", chosen.body);
    assert!(chosen
        .set_cookie("sesam_second_factor")
        .is_some_and(|v| v == "totp"));
    assert!(
        app.pending().await.unwrap().is_empty(),
        "the app's request is withdrawn"
    );
    let page = browser.get("/login/totp").await;
    assert!(
        page.body.contains("id=\"other-factor\""),
        "the app, one click away"
    );
    // The confirming code's step is used up: the next code.
    sesam.clock.advance(30);
    let code = secret.code_at(sesam.now());
    let done = send_code(&browser, &page, code.as_str()).await;
    assert_eq!(done.location(), Some("/account"), "{}", done.body);

    // The next login in this browser goes to the code display at once.
    let account = browser.get("/account").await;
    browser
        .post_form("/logout", &[("csrf", &account.csrf())])
        .await;
    let answer = browser.log_in("anna", PASSWORD).await;
    assert_eq!(answer.location(), Some("/login/totp"), "remembered");
    assert!(app.pending().await.unwrap().is_empty());
    let page = browser.get("/login/totp").await;
    let back = browser
        .post_form(
            "/login/choose",
            &[("csrf", &page.csrf()), ("factor", "app")],
        )
        .await;
    assert_eq!(back.location(), Some("/login/wait"), "{}", back.body);
    assert_eq!(app.pending().await.unwrap().len(), 1);
    // A choice nobody offered is refused: the code display again, twice over, is not open
    // from a browser that has only typed a name.
    let stranger = sesam.browser();
    let form = stranger.get("/login").await;
    stranger
        .post_form("/login", &[("csrf", &form.csrf()), ("username", "anna")])
        .await;
    let at_password = stranger.get("/login/password").await;
    let refused = stranger
        .post_form(
            "/login/choose",
            &[("csrf", &at_password.csrf()), ("factor", "totp")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(stranger.get("/login/password").await.status, StatusCode::OK);
    assert!(sesam
        .store()
        .totp_of_user(&anna.id)
        .await
        .unwrap()
        .is_some_and(|t| t.confirmed));
    sesam.stop().await;
}

async fn password_and_code_give_substantial_to_saml_and_oidc_once_per_code(db: TestDb) {
    let sesam = start(&db).await;
    let (anna, owner, _app) = anna_at_substantial(&sesam).await;
    let secret = enrol(&sesam, &owner).await;
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"totp.enrolled".to_owned()));
    remove_apps(&sesam, &anna).await;
    // The confirming code's step is used up: the next login needs the next code.
    sesam.clock.advance(30);

    // SAML: Substantial asked for; password, then the code.
    let sp = TestSp::new("totp.example.test");
    sp.register(&sesam, SpOptions::default()).await;
    let browser = sesam.browser();
    let mut r = sp.request(&sesam);
    r.context = Some(("minimum", vec![LOA_SUBSTANTIAL]));
    let first = browser.get(&sp.redirect(&r, None, None)).await;
    let page = at_code_page(&browser, first, "anna").await;
    let code = secret.code_at(sesam.now());
    let answer = send_code(&browser, &page, code.as_str()).await;
    assert!(
        answer
            .location()
            .is_some_and(|l| l.starts_with("/saml/sso/continue")),
        "{:?}",
        answer.location()
    );
    let posted = follow(&browser, answer).await;
    let login = sp.accept(&sesam, &posted, &r.id, None, false);
    assert_eq!(login.loa, LOA_SUBSTANTIAL);

    // OIDC in another browser: the same code again is a replay, refused.
    let rp = register(&sesam, false).await;
    let other = sesam.browser();
    let first = other
        .get(&authorize_path(
            &rp.client_id,
            &[("acr_values", SUBSTANTIAL)],
        ))
        .await;
    let page = at_code_page(&other, first, "anna").await;
    let replayed = send_code(&other, &page, code.as_str()).await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        replayed.body
    );
    assert_eq!(error_key(&replayed), Some("totp.error.replayed"));
    // The previous step's code (still within the skew) is no better.
    let older = secret.code_at(sesam.now().plus_seconds(-30));
    let replayed = send_code(&other, &page, older.as_str()).await;
    assert_eq!(error_key(&replayed), Some("totp.error.replayed"));
    // The next step's code is fine.
    sesam.clock.advance(30);
    let fresh = secret.code_at(sesam.now());
    let answer = send_code(&other, &page, fresh.as_str()).await;
    assert_eq!(
        answer.location(),
        Some("/authorize/continue"),
        "{}",
        answer.body
    );
    let back = other.get("/authorize/continue").await;
    let code = params_of(back.location().unwrap())["code"].clone();
    let claims = id_token_claims(
        exchange(&sesam, &rp, &code).await.1["id_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(claims["acr"], SUBSTANTIAL);
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    let events = sesam.audit_events("anna").await;
    assert!(events.contains(&"login.totp.succeeded".to_owned()));
    assert!(events.contains(&"login.totp.failed".to_owned()));
    sesam.stop().await;
}

async fn bad_codes_are_refused_with_a_clear_message_and_change_nothing(db: TestDb) {
    let sesam = start(&db).await;
    let (anna, owner, _app) = anna_at_substantial(&sesam).await;

    // Enrolment: a wrong or malformed confirmation changes nothing stored.
    let page = start_enrolment(&owner).await;
    let secret = secret_on(&page);
    let stored = sesam.store().totp_of_user(&anna.id).await.unwrap().unwrap();
    assert!(!stored.confirmed);
    let right = secret.code_at(sesam.now());
    let wrong = if right.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    };
    for (typed, key) in [
        (wrong, "totp.error.wrong"),
        ("12ab56", "totp.error.not_digits"),
        ("1234567", "totp.error.wrong_length"),
        ("12345", "totp.error.wrong_length"),
        ("", "totp.error.empty"),
    ] {
        let again = owner
            .post_form(
                "/account/totp/confirm",
                &[("csrf", &page.csrf()), ("code", typed)],
            )
            .await;
        assert_eq!(
            again.status,
            StatusCode::BAD_REQUEST,
            "{typed}: {}",
            again.body
        );
        assert_eq!(error_key(&again), Some(key), "{typed}");
        assert_eq!(secret_on(&again), secret, "the same secret is shown again");
        assert_eq!(
            sesam.store().totp_of_user(&anna.id).await.unwrap().unwrap(),
            stored,
            "{typed}: nothing stored changed"
        );
    }
    let huge = "9".repeat(5000);
    let refused = owner
        .post_form(
            "/account/totp/confirm",
            &[("csrf", &page.csrf()), ("code", &huge)],
        )
        .await;
    assert!(refused.status.is_client_error(), "{}", refused.status);
    assert_eq!(
        sesam.store().totp_of_user(&anna.id).await.unwrap().unwrap(),
        stored
    );
    let done = owner
        .post_form(
            "/account/totp/confirm",
            &[("csrf", &page.csrf()), ("code", right.as_str())],
        )
        .await;
    assert_eq!(done.location(), Some("/account/devices"));
    // One is enough: another enrolment is refused until this one is removed.
    let twice = start_enrolment(&owner).await;
    assert_eq!(twice.status, StatusCode::FORBIDDEN);
    assert!(!twice.body.contains("totp-secret"));
    remove_apps(&sesam, &anna).await;
    sesam.clock.advance(30);

    // Login: malformed codes are refused without counting; wrong ones count to the lock.
    let browser = sesam.browser();
    let answer = browser.log_in("anna", PASSWORD).await;
    assert_eq!(
        answer.location(),
        Some("/account"),
        "Low is enough for the account"
    );
    // The organisation wants Substantial everywhere: the code is asked for.
    sesam
        .store()
        .set_setting("required_level", "substantial", sesam.now())
        .await
        .unwrap();
    assert_eq!(
        browser.get("/login/step-up").await.location(),
        Some("/login/totp")
    );
    let page = browser.get("/login/totp").await;
    for (typed, key) in [
        ("12ab56", "totp.error.not_digits"),
        ("1234567", "totp.error.wrong_length"),
        ("   ", "totp.error.empty"),
    ] {
        let again = send_code(&browser, &page, typed).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST, "{typed}");
        assert_eq!(error_key(&again), Some(key), "{typed}");
    }
    let no_csrf = browser
        .post_form("/login/totp", &[("code", "123456")])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let right = secret.code_at(sesam.now());
    let wrong = if right.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..4 {
        let again = send_code(&browser, &page, wrong).await;
        assert_eq!(again.status, StatusCode::UNAUTHORIZED);
        assert_eq!(error_key(&again), Some("totp.error.wrong"));
    }
    // The fifth wrong code locks the name, as five wrong passwords do; then even the
    // right code waits.
    let locked = send_code(&browser, &page, wrong).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    let still = send_code(&browser, &page, right.as_str()).await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
    let stored = sesam.store().totp_of_user(&anna.id).await.unwrap().unwrap();
    assert!(stored.confirmed);
    let events = sesam.audit_events("anna").await;
    assert!(events.contains(&"login.locked".to_owned()));
    assert!(!events.contains(&"login.totp.succeeded".to_owned()));
    sesam.stop().await;
}

fn cli(db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sesam"))
        .args(args)
        .env_remove("SESAM_CONFIG")
        .env("SESAM_DATABASE_URL", &db.url)
        .env("SESAM_TOTP_KEY", KEY)
        .output()
        .expect("run sesam");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn a_robot_enrolled_by_an_administrator_logs_in_and_is_reset(db: TestDb) {
    let sesam = start(&db).await;
    let robot = sesam.add_user("robot", "RPA robot", PASSWORD).await;
    let anna = sesam.add_user("anna", "Anna Andersen", PASSWORD).await;
    // People add their own; the CLI enrols robots (password-only accounts) only.
    let out = Command::new(env!("CARGO_BIN_EXE_sesam"))
        .args(["device", "totp-enrol", "--user", "anna"])
        .env_remove("SESAM_CONFIG")
        .env("SESAM_DATABASE_URL", &db.url)
        .env("SESAM_TOTP_KEY", KEY)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(sesam
        .store()
        .totp_of_user(&anna.id)
        .await
        .unwrap()
        .is_none());
    sesam
        .store()
        .set_password_only(&robot.id, true, sesam.now())
        .await
        .unwrap();
    let out = cli(&db, &["device", "totp-enrol", "--user", "robot"]);
    let secret = out
        .lines()
        .find_map(|l| l.split_once("(shown once): "))
        .and_then(|(_, s)| TotpSecret::from_base32(s))
        .expect("the secret is printed once");
    let listed = cli(&db, &["device", "list", "--user", "robot"]);
    assert!(listed.contains("code display (TOTP)"), "{listed}");
    assert!(!listed.contains(&secret.to_base32()), "never shown again");

    // The robot's scripted login: password, then the code, at Substantial.
    let rp = register(&sesam, false).await;
    let browser = sesam.browser();
    let first = browser
        .get(&authorize_path(
            &rp.client_id,
            &[("acr_values", SUBSTANTIAL)],
        ))
        .await;
    let page = at_code_page(&browser, first, "robot").await;
    let answer = send_code(&browser, &page, secret.code_at(sesam.now()).as_str()).await;
    assert_eq!(
        answer.location(),
        Some("/authorize/continue"),
        "{}",
        answer.body
    );
    let back = browser.get("/authorize/continue").await;
    let code = params_of(back.location().unwrap())["code"].clone();
    let claims = id_token_claims(
        exchange(&sesam, &rp, &code).await.1["id_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(claims["acr"], SUBSTANTIAL);

    // The administrator resets it from the portal; the CLI then finds nothing to reset.
    let (admin, _app) = crate::admin::admin_browser(&sesam).await;
    let user_page = admin.get(&format!("/admin/users/{}", robot.id)).await;
    assert!(user_page.body.contains("/totp-reset"), "{}", user_page.body);
    let reset = admin
        .post_form(
            &format!("/admin/users/{}/totp-reset", robot.id),
            &[("csrf", &user_page.csrf())],
        )
        .await;
    assert!(reset.status.is_redirection(), "{}", reset.body);
    assert!(sesam
        .store()
        .totp_of_user(&robot.id)
        .await
        .unwrap()
        .is_none());
    assert!(
        cli(&db, &["device", "totp-reset", "--user", "robot"]).contains("has no authenticator app")
    );
    // Enrolled again and reset by the CLI: the same function, the same audit event.
    cli(&db, &["device", "totp-enrol", "--user", "robot"]);
    assert!(cli(&db, &["device", "totp-reset", "--user", "robot"]).contains("removed"));
    assert!(sesam
        .store()
        .totp_of_user(&robot.id)
        .await
        .unwrap()
        .is_none());
    let events = sesam.audit_events("robot").await;
    assert_eq!(
        events.iter().filter(|e| *e == "totp.reset").count(),
        2,
        "{events:?}"
    );
    // Without the code display, Substantial cannot be reached any more.
    let again = sesam.browser();
    let first = again
        .get(&authorize_path(
            &rp.client_id,
            &[("acr_values", SUBSTANTIAL)],
        ))
        .await;
    assert_eq!(first.location(), Some("/login"));
    let answer = again.log_in("robot", PASSWORD).await;
    assert_eq!(
        answer.location(),
        Some("/authorize/continue"),
        "the service hears that the level is out of reach"
    );
    let back = again.get("/authorize/continue").await;
    assert_eq!(
        params_of(back.location().unwrap())["error"],
        "unmet_authentication_requirements"
    );
    sesam.stop().await;
}

/// The replay guard is one statement in the database: two nodes that checked the same code
/// at once cannot both use its step, and an older step never comes back.
async fn one_step_is_taken_once_by_parallel_logins_on_two_nodes(db: TestDb) {
    let node_a = db.store().await;
    let node_b = sesam_store::Store::connect(&db.url).await.unwrap();
    let now = sesam_core::UnixTime(1_800_000_000);
    let anna = crate::harness::add_user(&node_a, "anna", "Anna", PASSWORD, now).await;
    node_a
        .put_confirmed_totp(&anna.id, "TOTP", "v1:sealed", now)
        .await
        .unwrap();
    for step in [100, 101, 102] {
        let (a, b) = tokio::join!(
            node_a.use_totp_step(&anna.id, step, now),
            node_b.use_totp_step(&anna.id, step, now)
        );
        assert!(
            a.unwrap() ^ b.unwrap(),
            "step {step}: exactly one node takes it"
        );
    }
    assert!(!node_a.use_totp_step(&anna.id, 101, now).await.unwrap());
    assert!(!node_b.use_totp_step(&anna.id, 102, now).await.unwrap());
    assert!(node_b.use_totp_step(&anna.id, 103, now).await.unwrap());
    let stored = node_a.totp_of_user(&anna.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.last_step, stored.last_used_at),
        (Some(103), Some(now))
    );
    // A pending enrolment is no factor: its steps are never taken.
    let bo = crate::harness::add_user(&node_a, "bo", "Bo", PASSWORD, now).await;
    assert!(node_a
        .put_pending_totp(&bo.id, "TOTP", "v1:x", now)
        .await
        .unwrap());
    assert!(!node_a.use_totp_step(&bo.id, 100, now).await.unwrap());
    // And a confirmed one is not replaced by a new pending one.
    assert!(!node_a
        .put_pending_totp(&anna.id, "TOTP", "v1:y", now)
        .await
        .unwrap());
    assert_eq!(
        node_a
            .totp_of_user(&anna.id)
            .await
            .unwrap()
            .unwrap()
            .secret_sealed,
        "v1:sealed"
    );
}

/// The code page as a user sees it, without the per-session CSRF token.
fn without_csrf(page: &Page) -> String {
    page.body.replace(&page.csrf(), "")
}

fn notice_of(page: &Page) -> Option<&str> {
    let marker = "data-notice=\"";
    let start = page.body.find(marker)? + marker.len();
    let end = page.body[start..].find('"')? + start;
    Some(&page.body[start..end])
}

async fn psd2_mode_hides_which_detail_was_wrong(db: TestDb) {
    let sesam = start(&db).await;
    let (anna, owner, _app) = anna_at_substantial(&sesam).await;
    let secret = enrol(&sesam, &owner).await;
    remove_apps(&sesam, &anna).await;
    sesam.clock.advance(30);
    sesam
        .store()
        .set_setting("psd2_mode", "true", sesam.now())
        .await
        .unwrap();
    let rp = register(&sesam, false).await;
    let substantial = authorize_path(&rp.client_id, &[("acr_values", SUBSTANTIAL)]);

    // A right password and a wrong one lead to the same code page.
    let right = sesam.browser();
    let right_page = at_code_page(&right, right.get(&substantial).await, "anna").await;
    let wrong = sesam.browser();
    assert_eq!(wrong.get(&substantial).await.location(), Some("/login"));
    let answer = wrong.log_in("anna", "not the password").await;
    assert_eq!(answer.location(), Some("/login/totp"), "{}", answer.body);
    let wrong_page = wrong.get("/login/totp").await;
    assert_eq!(wrong_page.status, StatusCode::OK);
    assert_eq!(without_csrf(&wrong_page), without_csrf(&right_page));

    // Even the right code ends the login after a wrong password, saying only "details".
    let code = secret.code_at(sesam.now());
    let ended = send_code(&wrong, &wrong_page, code.as_str()).await;
    assert_eq!(ended.location(), Some("/login/password"), "{}", ended.body);
    let told = wrong.get("/login/password").await;
    assert_eq!(notice_of(&told), Some("login.notice.details_wrong"));
    assert!(
        sesam
            .store()
            .totp_of_user(&anna.id)
            .await
            .unwrap()
            .unwrap()
            .last_step
            < Some(sesam_core::totp::step_of(sesam.now())),
        "the code was not checked, so its step is still free"
    );

    // A right password with a wrong code ends the same way, and the password counts no more.
    let bad = if code.as_str() == "000000" {
        "111111"
    } else {
        "000000"
    };
    let ended = send_code(&right, &right_page, bad).await;
    assert_eq!(ended.location(), Some("/login/password"));
    let told_too = right.get("/login/password").await;
    assert_eq!(notice_of(&told_too), Some("login.notice.details_wrong"));
    assert_eq!(right.get("/account").await.location(), Some("/login"));

    // The audit log knows which was wrong.
    let events = sesam.audit_events("anna").await;
    for event in [
        "login.password.failed",
        "login.psd2.password_hidden",
        "login.psd2.details_wrong",
        "login.totp.failed",
    ] {
        assert!(events.contains(&event.to_owned()), "{event}: {events:?}");
    }

    // Hidden or not, the attempts count: five failures (two so far) lock the name.
    for _ in 0..2 {
        let again = wrong.submit_password("still not it").await;
        assert_eq!(again.location(), Some("/login/totp"));
    }
    let locked = wrong.submit_password("still not it").await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );

    // Off again: a wrong password is said at once.
    sesam
        .store()
        .set_setting("psd2_mode", "false", sesam.now())
        .await
        .unwrap();
    sesam.clock.advance(
        sesam
            .store()
            .load_settings()
            .await
            .unwrap()
            .lockout_duration_seconds
            + 1,
    );
    let plain = sesam.browser();
    plain.get(&substantial).await;
    let answer = plain.log_in("anna", "not the password").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // And in PSD2 mode a login that needs one factor says it at once too.
    sesam
        .store()
        .set_setting("psd2_mode", "true", sesam.now())
        .await
        .unwrap();
    let low = sesam.browser();
    let answer = low.log_in("anna", "not the password").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    sesam.stop().await;
}
