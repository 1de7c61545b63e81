//! The username-first password login, end to end over HTTP.

use reqwest::StatusCode;

use crate::harness::{on_both_databases, Browser, TestDb, TestServer};

on_both_databases!(
    password_login_reaches_the_account_and_logout_ends_it,
    remembered_username_is_prefilled_and_switch_user_clears_it,
    five_wrong_passwords_lock_the_name_until_the_lock_ends,
    unknown_user_and_wrong_password_look_the_same,
    missing_or_wrong_csrf_is_refused_and_counts_nothing,
    bad_form_fields_get_a_clear_4xx_and_change_nothing,
    a_session_survives_a_server_restart,
    first_start_admin_must_choose_a_new_password,
    an_inactive_account_is_refused_after_the_right_password,
    many_wrong_passwords_from_one_address_make_it_wait,
    the_username_page_stores_nothing_and_its_token_is_bound_to_the_browser,
);

async fn password_login_reaches_the_account_and_logout_ends_it(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let browser = sesam.browser();

    let before = browser.get("/login").await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(
        before.set_cookie("sesam_session"),
        None,
        "no session before a username is typed"
    );
    let form_cookie = before.set_cookie_header("sesam_login_csrf").unwrap();
    assert!(form_cookie.contains("HttpOnly"), "{form_cookie}");
    assert!(form_cookie.contains("SameSite=Lax"), "{form_cookie}");
    let username = browser
        .post_form("/login", &[("csrf", &before.csrf()), ("username", "Anna")])
        .await;
    assert_eq!(username.status, StatusCode::SEE_OTHER, "{}", username.body);
    let session_before = username
        .set_cookie("sesam_session")
        .expect("the session begins with the username");
    let session_header = username.set_cookie_header("sesam_session").unwrap();
    assert!(session_header.contains("HttpOnly"), "{session_header}");
    assert!(session_header.contains("SameSite=Lax"), "{session_header}");

    let done = browser.submit_password("correct horse battery").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), Some("/account"));
    let session_after = done
        .set_cookie("sesam_session")
        .expect("a new session id at login");
    assert_ne!(
        session_before, session_after,
        "the session id is rotated at login"
    );

    let account = browser.get("/account").await;
    assert!(
        !account.body.contains("admin-portal"),
        "no portal link for a user without the admin role"
    );
    assert_eq!(account.status, StatusCode::OK);
    assert!(account.body.contains("Anna Andersen"), "{}", account.body);
    assert!(
        account.body.contains("data-level=\"low\""),
        "a password gives NSIS Low"
    );

    let logout = browser
        .post_form("/logout", &[("csrf", &account.csrf())])
        .await;
    assert_eq!(logout.status, StatusCode::OK);
    let after = browser.get("/account").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.location(), Some("/login"));

    let events = sesam.audit_events("anna").await;
    assert!(
        events.contains(&"login.password.succeeded".to_string()),
        "{events:?}"
    );
    assert!(events.contains(&"logout".to_string()), "{events:?}");
    sesam.stop().await;
}

async fn remembered_username_is_prefilled_and_switch_user_clears_it(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let browser = sesam.browser();

    let form = browser.get("/login").await;
    let answer = browser
        .post_form(
            "/login",
            &[
                ("csrf", &form.csrf()),
                ("username", "anna"),
                ("remember", "on"),
            ],
        )
        .await;
    let cookie = answer
        .set_cookie_header("sesam_username")
        .expect("remember cookie");
    assert!(cookie.starts_with("sesam_username=anna;"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Max-Age=34560000"),
        "{cookie}"
    );

    let again = browser.get("/login").await;
    assert!(
        again.body.contains("<p class=\"who\">anna</p>"),
        "{}",
        again.body
    );
    assert!(again.body.contains("href=\"/login/switch\""));
    assert!(
        !again.body.contains("id=\"username\""),
        "no empty username field when remembered"
    );

    let switched = browser.get("/login/switch").await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER);
    assert_eq!(switched.set_cookie("sesam_username").as_deref(), Some(""));
    let fresh = browser.get("/login").await;
    assert!(!fresh.body.contains("class=\"who\""), "{}", fresh.body);
    assert!(fresh.body.contains("id=\"username\""));
    sesam.stop().await;
}

async fn five_wrong_passwords_lock_the_name_until_the_lock_ends(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let browser = sesam.browser();

    for attempt in 1..=4 {
        let answer = browser.log_in("anna", "wrong guess").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let fifth = browser.log_in("anna", "wrong guess").await;
    assert_eq!(
        fifth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the fifth failure locks"
    );
    assert!(fifth.body.contains("role=\"alert\""));

    let right = browser.log_in("anna", "correct horse battery").await;
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right password is refused while locked"
    );

    sesam.clock.advance(14 * 60);
    let still = browser.log_in("anna", "correct horse battery").await;
    assert_eq!(
        still.status,
        StatusCode::TOO_MANY_REQUESTS,
        "still locked after 14 minutes"
    );

    sesam.clock.advance(60 + 1);
    let open = browser.log_in("anna", "correct horse battery").await;
    assert_eq!(open.status, StatusCode::SEE_OTHER, "{}", open.body);
    assert_eq!(open.location(), Some("/account"));

    let events = sesam.audit_events("anna").await;
    let count = |e: &str| events.iter().filter(|x| *x == e).count();
    assert_eq!(count("login.password.failed"), 5, "{events:?}");
    assert_eq!(count("login.locked"), 1, "{events:?}");
    assert_eq!(count("login.refused.locked"), 2, "{events:?}");
    assert_eq!(count("login.password.succeeded"), 1, "{events:?}");
    sesam.stop().await;
}

async fn unknown_user_and_wrong_password_look_the_same(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;

    let known = sesam.browser().log_in("anna", "wrong guess").await;
    let unknown = sesam.browser().log_in("nobody", "wrong guess").await;
    assert_eq!(known.status, StatusCode::UNAUTHORIZED);
    assert_eq!(known.status, unknown.status);
    let normalise =
        |body: &str, name: &str, csrf: &str| body.replace(name, "NAME").replace(csrf, "CSRF");
    assert_eq!(
        normalise(&known.body, "anna", &known.csrf()),
        normalise(&unknown.body, "nobody", &unknown.csrf()),
        "same page apart from the echoed name"
    );

    // Unknown names lock exactly like real ones, so the lock says nothing either.
    let browser = sesam.browser();
    for _ in 1..=4 {
        browser.log_in("nobody", "x").await;
    }
    assert_eq!(
        browser.log_in("nobody", "x").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    sesam.stop().await;
}

async fn missing_or_wrong_csrf_is_refused_and_counts_nothing(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let browser = sesam.browser();
    browser.get("/login").await;

    let missing = browser.post_form("/login", &[("username", "anna")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = browser
        .post_form("/login", &[("csrf", "not-the-token"), ("username", "anna")])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(
        wrong.body.contains("Formularen er udløbet") && wrong.body.contains("The form has expired")
    );

    // A real username step, then password posts with a bad token: nothing is counted.
    let form = browser.get("/login").await;
    browser
        .post_form("/login", &[("csrf", &form.csrf()), ("username", "anna")])
        .await;
    for _ in 0..6 {
        let forged = browser
            .post_form(
                "/login/password",
                &[("csrf", "forged"), ("password", "wrong guess")],
            )
            .await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN);
    }
    let events = sesam.audit_events("anna").await;
    assert!(
        !events.iter().any(|e| e.starts_with("login.")),
        "{events:?}"
    );
    let right = browser.submit_password("correct horse battery").await;
    assert_eq!(
        right.location(),
        Some("/account"),
        "no lock from forged posts"
    );

    // A cross-site page has no session, so it has no token to send.
    let stranger = sesam.browser();
    let logout = stranger.post_form("/logout", &[("csrf", "")]).await;
    assert_eq!(logout.status, StatusCode::FORBIDDEN);
    sesam.stop().await;
}

async fn bad_form_fields_get_a_clear_4xx_and_change_nothing(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let browser = sesam.browser();
    let csrf = browser.get("/login").await.csrf();

    let long_name = "a".repeat(5000);
    let oversized = browser
        .post_form("/login", &[("csrf", &csrf), ("username", &long_name)])
        .await;
    assert_eq!(oversized.status, StatusCode::BAD_REQUEST);

    let not_utf8 = browser
        .post_raw(
            "/login",
            "application/x-www-form-urlencoded",
            format!("csrf={csrf}&username=%FF%FEanna").into_bytes(),
        )
        .await;
    assert_eq!(not_utf8.status, StatusCode::BAD_REQUEST);
    let raw_bytes = browser
        .post_raw(
            "/login",
            "application/x-www-form-urlencoded",
            [b"csrf=x&username=\xff\xfe".as_slice()].concat(),
        )
        .await;
    assert_eq!(raw_bytes.status, StatusCode::BAD_REQUEST);

    let huge_body = browser
        .post_raw(
            "/login",
            "application/x-www-form-urlencoded",
            vec![b'a'; 200_000],
        )
        .await;
    assert_eq!(huge_body.status, StatusCode::PAYLOAD_TOO_LARGE);

    let json = browser
        .post_raw(
            "/login",
            "application/json",
            b"{\"username\":\"anna\"}".to_vec(),
        )
        .await;
    assert_eq!(json.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let missing_field = browser.post_form("/login", &[("csrf", &csrf)]).await;
    assert_eq!(missing_field.status, StatusCode::BAD_REQUEST);

    let spaces = browser
        .post_form("/login", &[("csrf", &csrf), ("username", "anna hansen")])
        .await;
    assert_eq!(spaces.status, StatusCode::BAD_REQUEST);
    assert!(
        spaces.body.contains("role=\"alert\""),
        "the form comes back with a message"
    );

    // The password step with a password over the field limit.
    browser
        .post_form("/login", &[("csrf", &csrf), ("username", "anna")])
        .await;
    let long_password = "p".repeat(5000);
    let refused = browser
        .post_form(
            "/login/password",
            &[("csrf", &csrf), ("password", &long_password)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    // A garbage remembered-username cookie is ignored, not trusted.
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "cookie",
        "sesam_username=%FF%00; sesam_lang=xx".parse().unwrap(),
    );
    let odd = Browser::with_headers(sesam.url(""), headers)
        .get("/login")
        .await;
    assert_eq!(odd.status, StatusCode::OK);
    assert!(!odd.body.contains("class=\"who\""));

    let stored = sesam.store().get_user(&anna.id).await.unwrap();
    assert_eq!(stored, anna, "nothing about the user changed");
    assert!(sesam.audit_events("anna").await.is_empty());
    let ok = browser.submit_password("correct horse battery").await;
    assert_eq!(ok.location(), Some("/account"));
    sesam.stop().await;
}

async fn a_session_survives_a_server_restart(db: TestDb) {
    let first = TestServer::start(&db).await;
    first
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let mut browser = first.browser();
    assert_eq!(
        browser
            .log_in("anna", "correct horse battery")
            .await
            .location(),
        Some("/account")
    );
    let clock = first.clock.clone();
    first.stop().await;

    let second = TestServer::start_with_clock(&db, clock).await;
    browser.retarget(second.url(""));
    let account = browser.get("/account").await;
    assert_eq!(account.status, StatusCode::OK, "{}", account.body);
    assert!(account.body.contains("Anna Andersen"));
    second.stop().await;
}

async fn first_start_admin_must_choose_a_new_password(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let one_time = sesam
        .server
        .initial_admin_password
        .clone()
        .expect("a one-time password on first start");
    let browser = sesam.browser();
    let login = browser.log_in("admin", &one_time).await;
    assert_eq!(login.location(), Some("/account/password"));
    let account = browser.get("/account").await;
    assert_eq!(
        account.location(),
        Some("/account/password"),
        "nothing else until the password is changed"
    );

    let form = browser.get("/account/password").await;
    let csrf = form.csrf();
    let mismatch = browser
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", &one_time),
                ("new", "a long new secret"),
                ("repeat", "another"),
            ],
        )
        .await;
    assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    let short = browser
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", &one_time),
                ("new", "short"),
                ("repeat", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    let wrong_current = browser
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", "guess"),
                ("new", "a long new secret"),
                ("repeat", "a long new secret"),
            ],
        )
        .await;
    assert_eq!(wrong_current.status, StatusCode::BAD_REQUEST);

    let changed = browser
        .post_form(
            "/account/password",
            &[
                ("csrf", &csrf),
                ("current", &one_time),
                ("new", "a long new secret"),
                ("repeat", "a long new secret"),
            ],
        )
        .await;
    assert_eq!(
        changed.location(),
        Some("/account?changed=1"),
        "{}",
        changed.body
    );
    let account = browser.get("/account").await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(
        account.body.contains("id=\"admin-portal\""),
        "the first admin sees the way to the portal"
    );

    assert!(sesam
        .audit_events("admin")
        .await
        .contains(&"password.changed".to_string()));
    let clock = sesam.clock.clone();
    sesam.stop().await;
    let again = TestServer::start_with_clock(&db, clock).await;
    assert!(
        again.server.initial_admin_password.is_none(),
        "only the first start creates the admin"
    );
    let fresh = again.browser();
    assert_eq!(
        fresh.log_in("admin", &one_time).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        fresh.log_in("admin", "a long new secret").await.location(),
        Some("/account")
    );
    again.stop().await;
}

async fn an_inactive_account_is_refused_after_the_right_password(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let browser = sesam.browser();
    assert_eq!(
        browser
            .log_in("anna", "correct horse battery")
            .await
            .location(),
        Some("/account")
    );

    sesam
        .store()
        .set_user_status(
            &anna.id,
            sesam_core::UserStatus::Locked,
            sesam_core::Clock::now(&sesam.clock),
        )
        .await
        .unwrap();
    let kicked = browser.get("/account").await;
    assert_eq!(
        kicked.location(),
        Some("/login"),
        "a locked user's session ends"
    );

    let refused = sesam
        .browser()
        .log_in("anna", "correct horse battery")
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = sesam.browser().log_in("anna", "wrong guess").await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "a wrong password says nothing about the lock"
    );
    sesam.stop().await;
}

/// Guessing one password each for many users (below each user's lock) is stopped per
/// address; other users' own accounts are not locked by it.
async fn many_wrong_passwords_from_one_address_make_it_wait(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .store()
        .set_setting("password_failures_per_ip", "3", sesam.now())
        .await
        .unwrap();
    for name in ["u1", "u2", "u3", "u4"] {
        sesam.add_user(name, name, "correct horse battery").await;
    }
    let browser = sesam.browser();
    for name in ["u1", "u2", "u3"] {
        let answer = browser.log_in(name, "wrong guess").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}");
    }
    let fourth = browser.log_in("u4", "correct horse battery").await;
    assert_eq!(
        fourth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address waits, even with a right password"
    );
    assert!(fourth.body.contains("role=\"alert\""));
    assert!(sesam
        .audit_events("u4")
        .await
        .contains(&"login.refused.address".to_string()));
    // No user was locked by it: after the window the right password works at once.
    sesam.clock.advance(15 * 60 + 1);
    let open = browser.log_in("u4", "correct horse battery").await;
    assert_eq!(open.location(), Some("/account"), "{}", open.body);
    sesam.stop().await;
}

/// A visitor who has not typed a username costs no session row; the username form's token
/// lives in a cookie of its own and works only from the browser that holds that cookie.
async fn the_username_page_stores_nothing_and_its_token_is_bound_to_the_browser(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let rows = sesam.store().count_rows("sessions").await.unwrap();
    let mut visitors = Vec::new();
    for _ in 0..20 {
        let browser = sesam.browser();
        let page = browser.get("/login").await;
        assert_eq!(page.status, StatusCode::OK);
        visitors.push((browser, page.csrf()));
    }
    assert_eq!(
        sesam.store().count_rows("sessions").await.unwrap(),
        rows,
        "twenty visitors of the username page store nothing"
    );
    let (first, first_token) = &visitors[0];
    let (second, second_token) = &visitors[1];
    assert_ne!(first_token, second_token, "each browser its own token");
    assert_eq!(
        first.get("/login").await.csrf(),
        *first_token,
        "the same browser keeps its token (two tabs agree)"
    );

    // Attacks: no token, a made-up one, another browser's, a cookie forged to match.
    for (browser, token) in [
        (first, None),
        (first, Some("not-the-token".to_owned())),
        (first, Some(second_token.clone())),
        (second, Some(first_token.clone())),
    ] {
        let mut fields = vec![("username", "anna")];
        if let Some(token) = &token {
            fields.push(("csrf", token.as_str()));
        }
        let refused = browser.post_form("/login", &fields).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{token:?}");
        assert_eq!(refused.set_cookie("sesam_session"), None);
    }
    let forged = "A".repeat(43);
    for (cookie, token) in [
        (format!("sesam_login_csrf={forged}"), forged.clone()),
        ("sesam_login_csrf=short".to_owned(), "short".to_owned()),
        ("sesam_login_csrf=".to_owned(), String::new()),
    ] {
        let answer = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(sesam.url("/login"))
            .header(reqwest::header::COOKIE, cookie.as_str())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(format!("csrf={token}&username=anna"))
            .send()
            .await
            .unwrap();
        // A cookie the attacker chose himself matches his own token: that is the login CSRF
        // double submit cannot tell apart, and why the session gets a fresh token (below).
        if token.len() == 43 {
            assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{cookie}");
        } else {
            assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{cookie}");
        }
    }
    // The real form: accepted, and only now is there a session, with a token of its own.
    let answer = first
        .post_form("/login", &[("csrf", first_token), ("username", "anna")])
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), Some("/login/password"));
    assert!(answer.set_cookie("sesam_session").is_some());
    let password = first.get("/login/password").await;
    assert_ne!(
        password.csrf(),
        *first_token,
        "the session's forms do not carry the cookie's token"
    );
    assert_eq!(
        first
            .submit_password("correct horse battery")
            .await
            .location(),
        Some("/account")
    );
    // A second tab opened before the username was typed still submits its form.
    let tab = first
        .post_form("/login", &[("csrf", first_token), ("username", "anna")])
        .await;
    assert_ne!(tab.status, StatusCode::FORBIDDEN, "{}", tab.body);
}
