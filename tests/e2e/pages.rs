//! Health checks, language choice, headers and the pages around the login.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT_LANGUAGE};
use reqwest::StatusCode;

use crate::harness::{on_both_databases, Browser, TestDb, TestServer};

on_both_databases!(
    health_and_readiness_answer,
    language_follows_the_browser_and_the_switch,
    pages_carry_security_headers_and_unknown_paths_are_404
);

async fn health_and_readiness_answer(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let b = sesam.browser();
    let health = b.get("/healthz").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok")
    );
    let ready = b.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (StatusCode::OK, "ready")
    );
    sesam.stop().await;
}

async fn language_follows_the_browser_and_the_switch(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let with_lang = |value: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_LANGUAGE, HeaderValue::from_static(value));
        Browser::with_headers(sesam.url(""), h)
    };
    let english = with_lang("en-GB,en;q=0.9").get("/login").await;
    assert!(
        english.body.contains("<html lang=\"en\">") && english.body.contains("Remember username")
    );
    let danish = with_lang("da-DK,da;q=0.9,en;q=0.5").get("/login").await;
    assert!(danish.body.contains("<html lang=\"da\">") && danish.body.contains("Husk brugernavn"));

    let browser = with_lang("da");
    let switch = browser.get("/lang/en?next=%2Flogin").await;
    assert_eq!(switch.status, StatusCode::SEE_OTHER);
    assert_eq!(switch.location(), Some("/login"));
    assert!(
        browser
            .get("/login")
            .await
            .body
            .contains("Remember username"),
        "the switch wins over the header"
    );

    let elsewhere = browser.get("/lang/da?next=%2F%2Fevil.example").await;
    assert_eq!(
        elsewhere.location(),
        Some("/login"),
        "never an open redirect"
    );
    assert_eq!(browser.get("/lang/xx").await.status, StatusCode::NOT_FOUND);
    sesam.stop().await;
}

async fn pages_carry_security_headers_and_unknown_paths_are_404(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let b = sesam.browser();
    let login = b.get("/login").await;
    let header = |name: &str| {
        login
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("cache-control"), "no-store");

    let account = b.get("/account").await;
    assert_eq!(
        account.location(),
        Some("/login"),
        "the account needs a login"
    );
    let missing = b.get("/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("Siden findes ikke") && missing.body.contains("Page not found"));
    let css = b.get("/static/sesam.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    sesam.stop().await;
}
