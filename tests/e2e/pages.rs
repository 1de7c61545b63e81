//! Health checks, language choice, headers and the pages around the login.

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT_LANGUAGE};
use reqwest::StatusCode;

use crate::harness::{on_both_databases, test_config_with, Browser, TestDb, TestServer};
use crate::passwordless::start_login;

on_both_databases!(
    health_and_readiness_answer,
    language_follows_the_browser_and_the_switch,
    pages_carry_security_headers_and_unknown_paths_are_404,
    the_demo_raises_its_own_limits_says_so_and_its_phone_follows_the_language,
    an_oidc_refusal_gives_its_reason_in_the_readers_language
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

async fn the_demo_raises_its_own_limits_says_so_and_its_phone_follows_the_language(db: TestDb) {
    let sesam = TestServer::start_with(
        sesam_core::ManualClock::starting_now(),
        test_config_with(&db.url, &[("SESAM_DEMO", "true")]),
    )
    .await;
    let settings = sesam.store().load_settings().await.unwrap();
    assert!(
        settings.challenge_limit_per_user >= 50,
        "the demo's own limit"
    );
    let demo = sesam.browser().get("/demo").await;
    assert!(
        demo.body.contains("id=\"demo-limits\"")
            && demo
                .body
                .contains(&settings.challenge_limit_per_user.to_string()),
        "{}",
        demo.body
    );
    // More logins in a row than the production default (5) allows.
    let anna = sesam
        .store()
        .find_user_by_username(&sesam_core::Username::parse("anna").unwrap())
        .await
        .unwrap()
        .unwrap();
    sesam.enrol(&anna, sesam_app::EnrolOptions::default()).await;
    for attempt in 0..8 {
        assert_eq!(
            start_login(&sesam.browser(), "anna").await,
            "/login/wait",
            "login {attempt}"
        );
    }

    // The phone speaks the site's language: the switch's cookie, else the browser's.
    let english = {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_LANGUAGE, HeaderValue::from_static("en-GB,en;q=0.9"));
        Browser::with_headers(sesam.url(""), h)
    };
    let phone = english.get("/demo/phone").await;
    assert!(phone.body.contains("<html lang=\"en\">"), "{}", phone.body);
    assert!(phone
        .body
        .contains("href=\"/lang/da?next=%2Fdemo%2Fphone\""));
    english.get("/lang/da?next=%2Fdemo%2Fphone").await;
    let phone = english.get("/demo/phone").await;
    assert!(phone.body.contains("<html lang=\"da\">"));
    assert!(phone
        .body
        .contains("href=\"/lang/en?next=%2Fdemo%2Fphone\""));
    sesam.stop().await;
}

/// WCAG 1.4.11: the focus ring has 3:1 against white; and h1 > h2 > h3 in size.
#[test]
fn the_stylesheets_keep_focus_rings_visible_and_headings_in_order() {
    fn luminance(hex: &str) -> f64 {
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let mut rings = 0;
    for file in ["static/sesam.css", "static/phone.css"] {
        let css = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        for piece in css.split("outline:").skip(1) {
            let value = piece.split(';').next().unwrap();
            let Some(at) = value.find('#') else { continue };
            let hex = &value[at + 1..at + 7];
            let ratio = 1.05 / (luminance(hex) + 0.05);
            assert!(
                ratio >= 3.0,
                "{file}: outline #{hex} is {ratio:.2}:1 against white"
            );
            rings += 1;
        }
    }
    assert!(rings >= 2, "focus rings found: {rings}");
    let css = std::fs::read_to_string(format!("{root}/static/sesam.css")).unwrap();
    let size = |h: &str| -> f64 {
        let rule = css
            .lines()
            .find(|l| l.starts_with(&format!("{h} {{")))
            .unwrap_or_else(|| panic!("no rule for {h}"));
        let value = rule.split("font-size:").nth(1).unwrap().trim();
        value.split("rem").next().unwrap().parse().unwrap()
    };
    assert!(size("h1") > size("h2") && size("h2") > size("h3"));
}

async fn an_oidc_refusal_gives_its_reason_in_the_readers_language(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let with_lang = |value: &'static str| {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT_LANGUAGE, HeaderValue::from_static(value));
        Browser::with_headers(sesam.url(""), h)
    };
    let unknown = "/authorize?response_type=code&client_id=nobody&redirect_uri=https%3A%2F%2Frp.example%2Fcb&scope=openid";
    for (lang, header) in [
        (sesam_server::i18n::Lang::Da, "da"),
        (sesam_server::i18n::Lang::En, "en"),
    ] {
        let t = lang.catalog();
        let browser = with_lang(header);
        let page = browser.get(unknown).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(
            page.body.contains(t.get("oidc.reason.untrusted")),
            "{header}: {}",
            page.body
        );
        let page = browser
            .get("/end_session?post_logout_redirect_uri=https%3A%2F%2Frp.example%2F")
            .await;
        assert!(
            page.body.contains(t.get("oidc.reason.logout_needs_hint")),
            "{header}: {}",
            page.body
        );
    }
    sesam.stop().await;
}
