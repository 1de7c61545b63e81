//! Headless Chromium through chromedriver: a person's whole passwordless tour of the demo —
//! the demo phone (the app, in a second browser) enrols with WebCrypto over the real app
//! API, the computer's browser logs in, the number typed on the phone finishes it.
//! Screenshots land in tests/artifacts/.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::harness::{test_config_with, TestDb, TestServer};

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// chromedriver, or `None` with a loud note locally; under CI a missing browser fails.
fn chromedriver_or_skip() -> Option<PathBuf> {
    let found = chromedriver();
    if found.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but chromedriver is not installed (Debian: chromium-driver)"
        );
        eprintln!("SKIPPED LOUDLY: chromedriver is not installed (Debian: chromium-driver): browser test did not run");
    }
    found
}

async fn start_driver(path: &PathBuf) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=900,1000",
                "--lang=en-GB", format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {"intl.accept_languages": "en-GB,en"}
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// Chromium as a 390 px wide phone (the viewport of a common iPhone).
async fn phone_browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--lang=en-GB", format!("--user-data-dir={}", profile.display()),
            ],
            "mobileEmulation": {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2}},
            "prefs": {"intl.accept_languages": "en-GB,en"}
        }),
    );
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// The page is no wider than the screen: nothing to scroll sideways.
async fn assert_fits(client: &Client, name: &str) {
    let sizes = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, inner) = (sizes[0].as_f64().unwrap(), sizes[1].as_f64().unwrap());
    screenshot(client, &format!("phone-{name}.png")).await;
    assert!(
        inner <= 400.0,
        "{name}: the viewport is {inner} px, not a phone"
    );
    assert!(
        scroll <= inner,
        "{name}: {scroll} px wide on a {inner} px screen (tests/artifacts/phone-{name}.png)"
    );
    assert_accessible(client, &format!("phone {name}")).await;
}

/// axe-core's script from its npm package (`npm ci --prefix tests/axe`); `None` with a loud
/// note locally, a failure under CI.
fn axe_script() -> Option<&'static str> {
    static AXE: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    AXE.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/axe/node_modules/axe-core/axe.min.js");
        match std::fs::read_to_string(&path) {
            Ok(script) => Some(script),
            Err(e) => {
                assert!(
                    std::env::var("CI").map_or(true, |v| v != "true"),
                    "CI=true but axe-core is missing at {}: {e} (npm ci --prefix tests/axe)",
                    path.display()
                );
                eprintln!(
                    "SKIPPED LOUDLY: axe-core is not installed (npm ci --prefix tests/axe): pages were not checked for accessibility"
                );
                None
            }
        }
    })
    .as_deref()
}

/// axe-core finds no WCAG 2.1 A/AA violation on the page as it is now.
async fn assert_accessible(client: &Client, name: &str) {
    let Some(script) = axe_script() else {
        return;
    };
    client
        .execute(&format!("{script}\nreturn typeof window.axe;"), vec![])
        .await
        .unwrap_or_else(|e| panic!("{name}: axe-core did not load: {e}"));
    let found = client
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } })
                 .then((r) => done({ checked: r.passes.length, violations: r.violations.map((v) =>
                   v.id + " (" + v.impact + "): " + v.nodes.map((n) => n.target.join(" ")).join(", ")) }))
                 .catch((e) => done({ checked: 0, violations: ["axe failed: " + e] }));"#,
            vec![],
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: axe-core did not run: {e}"));
    let violations: Vec<String> = found["violations"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|x| x.as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_else(|| vec![format!("no answer: {found}")]);
    assert!(
        violations.is_empty(),
        "{name}: axe-core found WCAG 2.1 A/AA violations: {violations:#?}"
    );
    assert!(
        found["checked"].as_u64().unwrap_or(0) > 0,
        "{name}: axe-core checked nothing: {found}"
    );
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(artifacts().join(name), png).unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    match client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
    {
        // Under load the element can exist before it is laid out; its text then reads empty.
        Ok(element) => {
            for _ in 0..50 {
                let text = element.text().await.unwrap_or_default();
                if !text.is_empty() {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            String::new()
        }
        Err(e) => {
            screenshot(client, "failure.png").await;
            let url = client
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let source = client.source().await.unwrap_or_default();
            panic!("{css} did not appear ({e}) at {url} (tests/artifacts/failure.png):\n{source}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_by_typing_the_code_into_the_demo_phone() {
    let Some(path) = chromedriver_or_skip() else {
        return;
    };
    let db = TestDb::sqlite();
    let sesam = TestServer::start_with(
        sesam_core::ManualClock::starting_now(),
        test_config_with(&db.url, &[("SESAM_DEMO", "true")]),
    )
    .await;
    let base = sesam.url("");
    let driver = start_driver(&path).await;
    let profiles = tempfile::tempdir().unwrap();
    let computer = browser(&driver, &profiles.path().join("computer")).await;
    let phone = browser(&driver, &profiles.path().join("phone")).await;

    // The computer gets an activation code from the demo service.
    computer.goto(&format!("{base}/demo")).await.unwrap();
    computer
        .find(Locator::Css("#demo-code-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let code = text_of(&computer, "#demo-activation-code").await;
    assert_eq!(code.len(), 11, "{code}");
    screenshot(&computer, "demo-service.png").await;
    assert_accessible(&computer, "demo-service").await;

    // The phone enrols with it through the real app API.
    phone.goto(&format!("{base}/demo/phone")).await.unwrap();
    let field = phone
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#setup:not([hidden]) #activation-code"))
        .await
        .unwrap();
    field.send_keys(&code).await.unwrap();
    phone
        .find(Locator::Css("#enrol-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let enrolled_as = text_of(&phone, "#enrolled #username").await;
    assert_eq!(enrolled_as, "anna");
    screenshot(&phone, "phone-enrolled.png").await;
    assert_accessible(&phone, "phone-enrolled").await;

    // The computer logs in: username first, then the code.
    computer
        .find(Locator::Css("#demo-login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let username = computer
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    screenshot(&computer, "login-username.png").await;
    assert_accessible(&computer, "login-username").await;
    username.send_keys("anna").await.unwrap();
    computer
        .find(Locator::Css("form[action='/login'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = text_of(&computer, "#code").await;
    assert_eq!(shown.len(), 2, "{shown}");
    screenshot(&computer, "login-wait.png").await;
    assert_accessible(&computer, "login-wait").await;
    // At desktop size the QR code for another device's app; at phone size (the same page,
    // narrowed) "Open the Sesam app" instead.
    assert_eq!(
        (
            displayed(&computer, "#qr").await,
            displayed(&computer, "#open-app").await
        ),
        (true, false),
        "desktop: the QR code, not the same-phone button"
    );
    let qr_width = computer
        .execute(
            "return document.querySelector('#qr svg').getBoundingClientRect().width;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        qr_width.as_f64().unwrap_or(0.0) >= 150.0,
        "the QR code is big enough to scan: {qr_width}"
    );
    computer.set_window_size(390, 844).await.unwrap();
    computer
        .wait()
        .at_most(Duration::from_secs(5))
        .for_element(Locator::Css("#open-app"))
        .await
        .unwrap();
    for _ in 0..50 {
        if displayed(&computer, "#open-app").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (
            displayed(&computer, "#qr").await,
            displayed(&computer, "#open-app").await
        ),
        (false, true),
        "phone size: the same-phone button, not the QR code"
    );
    let href = computer
        .find(Locator::Css("#open-app"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(href.contains("/app/open?challenge="), "{href}");
    assert!(!href.contains(&format!("code={shown}")), "{href}");
    screenshot(&computer, "login-wait-phone-size.png").await;
    assert_accessible(&computer, "login-wait at phone size").await;
    computer.set_window_size(900, 1000).await.unwrap();
    // The demo phone plays the app the link opens: it shows that very challenge.
    let query = href
        .split_once("/app/open?")
        .map(|(_, q)| q)
        .unwrap_or_default();
    phone
        .goto(&format!("{base}/app/open?{query}"))
        .await
        .unwrap();
    // Note when "Approved" appears and when the page is left (sessionStorage outlives it).
    computer
        .execute(
            r#"const region = document.getElementById("wait-status");
               sessionStorage.clear();
               new MutationObserver(() => {
                 if (region.textContent === region.dataset.textApproved && !sessionStorage.approvedAt)
                   sessionStorage.approvedAt = String(Date.now());
               }).observe(region, { childList: true, characterData: true, subtree: true });
               window.addEventListener("pagehide", () => { sessionStorage.leftAt = String(Date.now()); });"#,
            vec![],
        )
        .await
        .unwrap();

    // The phone shows the request; the person types the number.
    let input = phone
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(".request.linked input.code-input"))
        .await
        .expect("the request reaches the phone, opened by the app link");
    screenshot(&phone, "phone-request.png").await;
    input.send_keys(&shown).await.unwrap();
    phone
        .find(Locator::Css(".request button.send-code"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let back = phone
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#back-to-browser"))
        .await
        .expect("after the answer the phone offers the way back to the browser");
    assert_eq!(
        back.attr("href").await.unwrap().as_deref(),
        Some("/login/wait")
    );

    // The wait page notices by itself and the demo service shows the result.
    let level = computer
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#demo-level"))
        .await
        .expect("back at the demo service, logged in");
    assert_eq!(
        level.attr("data-level").await.unwrap().as_deref(),
        Some("substantial")
    );
    assert_eq!(text_of(&computer, "#demo-user").await, "anna");
    let held = computer
        .execute(
            "return Number(sessionStorage.leftAt) - Number(sessionStorage.approvedAt);",
            vec![],
        )
        .await
        .unwrap();
    let held = held.as_f64().unwrap_or(0.0);
    assert!(
        held >= 1000.0,
        "\"Approved\" was on screen {held} ms: too short for a screen reader to announce"
    );
    screenshot(&computer, "login-result.png").await;
    assert_accessible(&computer, "login-result").await;
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"login.passwordless.succeeded".to_string()));

    // Anna is also this demo's administrator: her Substantial session opens the portal.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE users SET is_admin = 1 WHERE username_key = 'anna'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    for (path, css, file) in [
        ("/admin", "#fig-users", "admin-dashboard.png"),
        ("/admin/settings", "#settings-submit", "admin-settings.png"),
        ("/admin/users", "#users", "admin-users.png"),
        ("/admin/audit", "#audit", "admin-audit.png"),
    ] {
        computer.goto(&format!("{base}{path}")).await.unwrap();
        text_of(&computer, css).await;
        screenshot(&computer, file).await;
        assert_accessible(&computer, file).await;
    }
    computer
        .goto(&format!("{base}/admin/settings"))
        .await
        .unwrap();
    computer
        .find(Locator::Css("input[name=passwordless][value=on]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    computer
        .find(Locator::Css("#settings-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let count = text_of(&computer, "#preview-count").await;
    assert!(count.contains("1 / 3") || count.contains("1 /"), "{count}");
    screenshot(&computer, "admin-settings-preview.png").await;
    assert_accessible(&computer, "admin-settings-preview").await;
    computer
        .goto(&format!("{base}/admin/users?q=anna"))
        .await
        .unwrap();
    computer
        .find(Locator::Css("#users a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(&computer, "#status").await;
    screenshot(&computer, "admin-user.png").await;
    assert_accessible(&computer, "admin-user").await;

    admin_rolls_out_passwordless_and_registers_a_saml_sp(&sesam, &computer).await;
    oidc_client_is_registered_and_a_password_login_reaches_it(&sesam, &computer).await;

    computer.close().await.unwrap();
    phone.close().await.unwrap();
    sesam.stop().await;
}

/// Whether the element is rendered (not `display: none` itself or through a parent).
async fn displayed(client: &Client, css: &str) -> bool {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .is_displayed()
        .await
        .unwrap()
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn type_into(client: &Client, css: &str, text: &str) {
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// The admin registers an OIDC client in the portal for a relying party on this machine;
/// then the password-only robot logs in to it. Chromium applies the login form's CSP
/// `form-action` to the redirects after the password is sent, so this proves they reach the
/// relying party.
async fn oidc_client_is_registered_and_a_password_login_reaches_it(
    sesam: &TestServer,
    computer: &Client,
) {
    let base = sesam.url("");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rp = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/cb",
        axum::routing::get(|| async { axum::response::Html("<h1 id=\"rp\">Relying party</h1>") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    computer
        .goto(&format!("{base}/admin/services"))
        .await
        .unwrap();
    type_into(computer, "#client-name", "Borgerservice").await;
    type_into(computer, "#client-redirects", &format!("{rp}/cb")).await;
    click(computer, "#client-create").await;
    let secret = text_of(computer, "#client-secret").await;
    let client_id = text_of(computer, "#client-id").await;
    screenshot(computer, "admin-oidc-client.png").await;
    computer
        .goto(&format!("{base}/admin/services"))
        .await
        .unwrap();
    text_of(computer, "#services").await;
    screenshot(computer, "admin-services.png").await;
    every_admin_action_is_in_the_audit_log(sesam, computer).await;

    computer.goto(&format!("{base}/logout")).await.unwrap();
    click(computer, "form[action='/logout'] button[type=submit]").await;
    text_of(computer, "h1").await;

    let verifier = "a-verifier-for-the-browser-test-that-is-long-enough-0123456789";
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", &format!("{rp}/cb")),
        ("scope", "openid profile"),
        ("state", "browser-1"),
        ("code_challenge", &sesam_oidc::pkce_challenge_s256(verifier)),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    computer
        .goto(&format!("{base}/authorize?{query}"))
        .await
        .unwrap();
    type_into(computer, "#username", "robot").await;
    click(computer, "form[action='/login'] button[type=submit]").await;
    type_into(computer, "#password", "Robot-demo-login-1").await;
    click(
        computer,
        "form[action='/login/password'] button[type=submit]",
    )
    .await;
    text_of(computer, "#rp").await;
    let url = computer.current_url().await.unwrap();
    assert!(url.as_str().starts_with(&format!("{rp}/cb?code=")), "{url}");
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let tokens: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", &format!("{rp}/cb")),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["token_type"], "Bearer", "{tokens}");
}

/// Pilot first (with the preview), a pilot user, then on for everyone; and a SAML service
/// provider from its metadata file: all through the portal's forms.
async fn admin_rolls_out_passwordless_and_registers_a_saml_sp(
    sesam: &TestServer,
    computer: &Client,
) {
    let base = sesam.url("");
    for mode in ["pilot", "on"] {
        computer
            .goto(&format!("{base}/admin/settings"))
            .await
            .unwrap();
        click(computer, &format!("input[name=passwordless][value={mode}]")).await;
        click(computer, "#settings-submit").await;
        text_of(computer, "#preview-count").await;
        if mode == "pilot" {
            screenshot(computer, "admin-settings-pilot-preview.png").await;
        }
        click(computer, "#settings-submit").await;
        text_of(computer, "#saved").await;
        if mode == "pilot" {
            // A pilot user, created in the portal.
            computer.goto(&format!("{base}/admin/users")).await.unwrap();
            type_into(computer, "#new-username", "pia").await;
            type_into(computer, "#new-display-name", "Pia Pilot").await;
            click(computer, "input[name=pilot]").await;
            click(computer, "#new-user-create").await;
            let password = text_of(computer, "#one-time-password").await;
            assert!(password.len() >= 12, "{password}");
            assert!(text_of(computer, "#flags").await.contains("pilot"));
            screenshot(computer, "admin-user-created.png").await;
        }
    }
    let settings = sesam.store().load_settings().await.unwrap();
    assert_eq!(settings.passwordless.as_str(), "on");

    let cert = sesam_saml::IdpKey::generate("sp.example.dk", 30)
        .unwrap()
        .certificate()
        .to_base64();
    let metadata = format!(
        concat!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://sp.example.dk/shibboleth">"#,
            r#"<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            r#"<md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.dk/acs" index="0"/>"#,
            "</md:SPSSODescriptor></md:EntityDescriptor>"
        ),
        cert
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sp-metadata.xml");
    std::fs::write(&file, metadata).unwrap();
    computer
        .goto(&format!("{base}/admin/services"))
        .await
        .unwrap();
    type_into(computer, "#sp-file", file.to_str().unwrap()).await;
    type_into(computer, "#sp-name", "Sygesikring").await;
    click(computer, "#sp-create").await;
    assert_eq!(
        text_of(computer, "#sp-entity-id").await,
        "https://sp.example.dk/shibboleth"
    );
    screenshot(computer, "admin-saml-sp.png").await;
}

async fn every_admin_action_is_in_the_audit_log(sesam: &TestServer, computer: &Client) {
    computer
        .goto(&format!("{}/admin/audit", sesam.url("")))
        .await
        .unwrap();
    text_of(computer, "#audit").await;
    let page = computer.source().await.unwrap();
    for event in [
        "settings.changed",
        "user.created",
        "saml.sp.added",
        "oidc.client.added",
    ] {
        assert!(page.contains(event), "{event} is not in the audit log page");
    }
    screenshot(computer, "admin-audit-after.png").await;
}

/// Types `username` into this tab's login page and waits for the code the wait page shows.
async fn start_in_tab(client: &Client, base: &str, username: &str) -> String {
    client.goto(&format!("{base}/login")).await.unwrap();
    let field = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    field.send_keys(username).await.unwrap();
    client
        .find(Locator::Css("form[action='/login'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_of(client, "#code").await
}

/// The login-flow issue's two-tabs defect, in a real browser: one browser, two tabs both
/// logging in as the same user; after the app answers, both tabs used to end on `/login`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_logging_in_at_once_both_end_logged_in() {
    let Some(path) = chromedriver_or_skip() else {
        return;
    };
    let db = TestDb::sqlite();
    let sesam = TestServer::start(&db).await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    // Two requests a trial: more than the default limit of app requests allows.
    sesam
        .store()
        .set_setting("challenge_limit_per_user", "50", sesam.now())
        .await
        .unwrap();
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, sesam_app::EnrolOptions::default()).await;
    let base = sesam.url("");
    let driver = start_driver(&path).await;
    let profiles = tempfile::tempdir().unwrap();
    for trial in 0..3 {
        let client = browser(&driver, &profiles.path().join(format!("tabs{trial}"))).await;
        let first = client.window().await.unwrap();
        start_in_tab(&client, &base, "anna").await;
        let second = client.new_window(true).await.unwrap().handle;
        client.switch_to_window(second.clone()).await.unwrap();
        // The second tab's login replaces the first's request; both wait for the newest.
        let code = start_in_tab(&client, &base, "anna").await;
        let pending = app.pending().await.unwrap();
        assert_eq!(pending.len(), 1, "one request waits");
        app.answer(&pending[0].id, &sesam_app::Answer::Code(code))
            .await
            .unwrap();
        for (tab, name) in [(second, "second"), (first, "first")] {
            client.switch_to_window(tab).await.unwrap();
            let shown = text_of(&client, "dd#username").await;
            assert_eq!(shown, "anna", "trial {trial}: the {name} tab is logged in");
            let url = client.current_url().await.unwrap();
            assert_eq!(url.path(), "/account", "trial {trial}: the {name} tab");
        }
        if trial == 0 {
            screenshot(&client, "two-tabs-both-logged-in.png").await;
        }
        client.close().await.unwrap();
    }
    sesam.stop().await;
}

/// The issue's phone check: at 390 px the login, wait, settings, users, audit and services
/// pages scroll only down, never sideways (the portal's tables become cards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_a_390_px_phone() {
    let Some(path) = chromedriver_or_skip() else {
        return;
    };
    let db = TestDb::sqlite();
    let sesam = TestServer::start(&db).await;
    let now = sesam.now();
    sesam
        .store()
        .set_setting("passwordless", "on", now)
        .await
        .unwrap();
    let boss = sesam
        .add_user("boss", "Bo Boss", "correct horse battery")
        .await;
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE users SET is_admin = 1 WHERE username_key = 'boss'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // Long values that used to widen the tables.
    sesam
        .add_user(
            "kommunens.servicekonto.til.robotter.og.integrationer",
            "Kommunens meget lange servicekonto til robotprocesautomatisering",
            "correct horse battery",
        )
        .await;
    let (app, _) = sesam.enrol(&boss, sesam_app::EnrolOptions::default()).await;
    let base = sesam.url("");
    let driver = start_driver(&path).await;
    let profiles = tempfile::tempdir().unwrap();
    let phone = phone_browser(&driver, &profiles.path().join("phone390")).await;

    phone.goto(&format!("{base}/login")).await.unwrap();
    type_into(&phone, "#username", "boss").await;
    assert_fits(&phone, "login").await;
    click(&phone, "form[action='/login'] button[type=submit]").await;
    let code = text_of(&phone, "#code").await;
    assert_fits(&phone, "wait").await;
    let pending = app.pending().await.unwrap();
    app.answer(&pending[0].id, &sesam_app::Answer::Code(code))
        .await
        .unwrap();
    text_of(&phone, "dd#username").await;
    assert_fits(&phone, "account").await;
    for (path, css, name) in [
        ("/admin", "#fig-users", "dashboard"),
        ("/admin/settings", "#settings-submit", "settings"),
        ("/admin/users", "#users", "users"),
        ("/admin/audit", "#audit", "audit"),
        ("/admin/services", "h1", "services"),
        ("/account/devices", "h1", "devices"),
    ] {
        phone.goto(&format!("{base}{path}")).await.unwrap();
        text_of(&phone, css).await;
        assert_fits(&phone, name).await;
    }
    phone
        .goto(&format!("{base}/admin/users/{}", boss.id))
        .await
        .unwrap();
    text_of(&phone, "#status").await;
    assert_fits(&phone, "user").await;
    // Headings in order of size, as the browser draws them.
    let sizes = phone
        .execute(
            r#"const px = (tag) => { const e = document.createElement(tag); document.querySelector("main").append(e);
                 const size = parseFloat(getComputedStyle(e).fontSize); e.remove(); return size; };
               return [px("h1"), px("h2"), px("h3")];"#,
            vec![],
        )
        .await
        .unwrap();
    let (h1, h2, h3) = (
        sizes[0].as_f64().unwrap(),
        sizes[1].as_f64().unwrap(),
        sizes[2].as_f64().unwrap(),
    );
    assert!(h1 > h2 && h2 > h3, "h1 {h1}px, h2 {h2}px, h3 {h3}px");
    phone.close().await.unwrap();
    sesam.stop().await;
}

/// README's "First steps as an administrator", followed literally in Chromium: the printed
/// one-time password, a password of one's own, `sesam device activation-code --user admin`,
/// the app enrolled with that code, the portal link on the account page, the 2-digit number
/// into the app, the portal; then the organisation's name and logo set there show on the pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_follows_the_readme_into_the_portal() {
    let Some(path) = chromedriver_or_skip() else {
        return;
    };
    let readme = include_str!("../../README.md");
    for step in [
        "## First steps as an administrator",
        "one-time password for the user `admin`",
        "`sesam device activation-code --user admin`",
        "\"Admin portal\"",
    ] {
        assert!(readme.contains(step), "README no longer says {step:?}");
    }
    let db = TestDb::sqlite();
    let sesam = TestServer::start(&db).await;
    // Step 1: the first start printed this (it is also on the operator's terminal).
    let one_time = sesam
        .server
        .initial_admin_password
        .clone()
        .expect("a first start makes the admin's one-time password");
    let base = sesam.url("");
    let driver = start_driver(&path).await;
    let profiles = tempfile::tempdir().unwrap();
    let computer = browser(&driver, &profiles.path().join("first-admin")).await;

    // Step 2: log in as admin with it and choose a password of one's own.
    computer.goto(&format!("{base}/login")).await.unwrap();
    assert_accessible(&computer, "first-admin login").await;
    type_into(&computer, "#username", "admin").await;
    click(&computer, "form[action='/login'] button[type=submit]").await;
    type_into(&computer, "#password", &one_time).await;
    assert_accessible(&computer, "first-admin password").await;
    click(&computer, "form button[type=submit]").await;
    type_into(&computer, "#current", &one_time).await;
    assert_accessible(&computer, "first-admin change password").await;
    type_into(&computer, "#new", "Rolig-Morgen-Kaffe-42").await;
    type_into(&computer, "#repeat", "Rolig-Morgen-Kaffe-42").await;
    click(&computer, "form button[type=submit]").await;
    let portal_link = match computer
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#admin-portal"))
        .await
    {
        Ok(link) => link,
        Err(e) => panic!(
            "the account page links an admin to the portal ({e}); at {}: {}",
            computer.current_url().await.unwrap(),
            computer.source().await.unwrap_or_default()
        ),
    };
    let link_text = portal_link.text().await.unwrap();
    assert!(
        link_text.starts_with("Admin portal"),
        "the link says what the README says: {link_text}"
    );
    screenshot(&computer, "first-admin-account.png").await;
    assert_accessible(&computer, "first-admin account").await;

    // Step 3: the activation code from the CLI, on the same database, into the app.
    let out = Command::new(env!("CARGO_BIN_EXE_sesam"))
        .args(["device", "activation-code", "--user", "admin"])
        .env_remove("SESAM_CONFIG")
        .env("SESAM_DATABASE_URL", &db.url)
        .output()
        .expect("run sesam");
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{printed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let code = printed
        .split_whitespace()
        .find(|w| w.len() == 11 && w.as_bytes()[5] == b'-')
        .unwrap_or_else(|| panic!("no activation code in {printed:?}"))
        .to_owned();
    let (app, _) = sesam_app::AppClient::enroll(&base, &code, sesam_app::EnrolOptions::default())
        .await
        .expect("the app enrols with the printed code");

    // Step 4: the portal link; the portal asks for the app; the number goes into the app.
    portal_link.click().await.unwrap();
    let shown = text_of(&computer, "#code").await;
    assert_eq!(shown.len(), 2, "{shown}");
    screenshot(&computer, "first-admin-step-up.png").await;
    assert_accessible(&computer, "first-admin step-up wait").await;
    let pending = app.pending().await.unwrap();
    assert_eq!(pending.len(), 1, "one request reaches the admin's app");
    let answer = app
        .answer(&pending[0].id, &sesam_app::Answer::Code(shown))
        .await
        .unwrap();
    assert_eq!(answer.status, "approved");
    computer
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#fig-users"))
        .await
        .expect("the portal opens after the app approved");
    assert!(computer.current_url().await.unwrap().path() == "/admin");
    screenshot(&computer, "first-admin-portal.png").await;
    assert_accessible(&computer, "first-admin portal").await;

    // Step 5: the organisation's name and logo, set in the portal, on every page.
    computer
        .goto(&format!("{base}/admin/settings"))
        .await
        .unwrap();
    type_into(&computer, "#s-organisation_name", "Aarhus Kommune").await;
    type_into(&computer, "#s-accent_colour", "#7a1f5c").await;
    type_into(&computer, "#s-help_url", "https://www.aarhus.dk/hjaelp").await;
    type_into(
        &computer,
        "#s-login_notice_en",
        "Planned maintenance Saturday 8-10",
    )
    .await;
    click(&computer, "#settings-submit").await;
    text_of(&computer, "#preview-count").await;
    click(&computer, "#settings-submit").await;
    text_of(&computer, "#saved").await;
    let logo = profiles.path().join("logo.png");
    std::fs::write(&logo, LOGO_PNG).unwrap();
    computer
        .find(Locator::Css("#logo-file"))
        .await
        .unwrap()
        .send_keys(&logo.display().to_string())
        .await
        .unwrap();
    click(&computer, "#logo-submit").await;
    computer
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#logo-preview"))
        .await
        .expect("the settings page shows the uploaded logo");
    assert_accessible(&computer, "settings with logo").await;
    computer.goto(&format!("{base}/account")).await.unwrap();
    let drawn = computer
        .execute(
            r#"const img = document.getElementById("brand-logo");
               return img ? [img.complete, img.naturalWidth, img.alt, document.getElementById("brand").textContent.trim()] : null;"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        drawn,
        serde_json::json!([true, 120, "", "Aarhus Kommune"]),
        "the logo loads from /branding/logo, beside the organisation's name"
    );
    let accent = computer
        .execute(
            r#"return [getComputedStyle(document.querySelector("button")).backgroundColor,
                       document.getElementById("site-notice").textContent,
                       document.getElementById("help-link").href];"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        accent,
        serde_json::json!([
            "rgb(122, 31, 92)",
            "Planned maintenance Saturday 8-10",
            "https://www.aarhus.dk/hjaelp"
        ]),
        "the accent colour, the notice and the help link are on the page"
    );
    screenshot(&computer, "first-admin-branded-account.png").await;
    assert_accessible(&computer, "branded account").await;
    computer.close().await.unwrap();
    sesam.stop().await;
}

/// A real 120×40 PNG: a dark red block with a white stripe.
const LOGO_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x78, 0x00, 0x00, 0x00, 0x28, 0x08, 0x02, 0x00, 0x00, 0x00, 0xba, 0x88, 0xa9,
    0x72, 0x00, 0x00, 0x00, 0x61, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0xed, 0xd8, 0x31, 0x11, 0x00,
    0x20, 0x0c, 0x04, 0xc1, 0x38, 0x89, 0x31, 0x94, 0x60, 0x3e, 0x58, 0xa0, 0xc8, 0x04, 0x8a, 0xfd,
    0x39, 0x05, 0x5b, 0x7e, 0xec, 0x5c, 0x1a, 0x28, 0x10, 0x80, 0x06, 0x2d, 0xd0, 0xa0, 0x41, 0x53,
    0x00, 0x0d, 0x5a, 0xa0, 0x41, 0x83, 0xa6, 0x00, 0x1a, 0xb4, 0x9a, 0xa1, 0xcb, 0xae, 0x07, 0x1a,
    0x34, 0x68, 0xd0, 0xa0, 0x41, 0x83, 0x06, 0x0d, 0x1a, 0x34, 0x68, 0xd0, 0xa0, 0x41, 0x83, 0xfe,
    0x1f, 0x5a, 0xde, 0x3b, 0xd0, 0x02, 0x0d, 0x1a, 0xb4, 0x40, 0x83, 0x16, 0x68, 0xd0, 0xa0, 0x05,
    0x1a, 0xb4, 0x40, 0x3f, 0xeb, 0x00, 0x7d, 0x5a, 0x78, 0xd6, 0x22, 0x44, 0x58, 0x71, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Turns on a virtual authenticator in this Chromium session (WebDriver's WebAuthn
/// extension): a built-in, user-verifying one, as a laptop's fingerprint reader or a phone's
/// screen lock is. Its answers go through passkey.js exactly as a real one's would.
async fn add_virtual_authenticator(driver: &Driver, client: &Client) -> String {
    let session = client
        .session_id()
        .await
        .unwrap()
        .expect("a WebDriver session id");
    let r = reqwest::Client::new()
        .post(format!(
            "{}/session/{session}/webauthn/authenticator",
            driver.url
        ))
        .json(&serde_json::json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let answer: serde_json::Value = r.json().await.unwrap();
    assert!(status.is_success(), "virtual authenticator: {answer}");
    let id = answer["value"]
        .as_str()
        .expect("an authenticator id")
        .to_owned();
    format!(
        "{}/session/{session}/webauthn/authenticator/{id}",
        driver.url
    )
}

/// Passkeys in a real browser (#16): Anna, logged in with the app (Substantial), adds a
/// passkey from the devices page; Chromium's authenticator makes it through passkey.js. She
/// logs out, types her username, and the passkey alone logs her in at Substantial, with no
/// password. The authenticator's own record shows the credential was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_is_added_in_the_browser_and_logs_in_without_a_password() {
    let Some(path) = chromedriver_or_skip() else {
        return;
    };
    let db = TestDb::sqlite();
    // WebAuthn needs a domain name: the public URL is localhost, which browsers also treat as
    // a secure origin over plain HTTP.
    let port = crate::harness::free_port();
    let base = format!("http://localhost:{port}");
    let listen = format!("127.0.0.1:{port}");
    let sesam = TestServer::start_with(
        sesam_core::ManualClock::starting_now(),
        test_config_with(
            &db.url,
            &[("SESAM_LISTEN", &listen), ("SESAM_PUBLIC_URL", &base)],
        ),
    )
    .await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, sesam_app::EnrolOptions::default()).await;
    let driver = start_driver(&path).await;
    let profiles = tempfile::tempdir().unwrap();
    let client = browser(&driver, &profiles.path().join("passkey")).await;
    let authenticator = add_virtual_authenticator(&driver, &client).await;

    // A Substantial login with the app, as enrolling any factor needs.
    let code = start_in_tab(&client, &base, "anna").await;
    let pending = app.pending().await.unwrap();
    app.answer(&pending[0].id, &sesam_app::Answer::Code(code))
        .await
        .unwrap();
    assert_eq!(text_of(&client, "dd#username").await, "anna");

    // Devices page → "Add a passkey" → name it → the browser makes it.
    client
        .goto(&format!("{base}/account/devices"))
        .await
        .unwrap();
    click(&client, "#add-passkey").await;
    let name = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#passkey-form #name"))
        .await
        .unwrap();
    assert_accessible(&client, "passkey-enrol").await;
    name.clear().await.unwrap();
    name.send_keys("Laptop").await.unwrap();
    click(&client, "#create-passkey").await;
    let added = text_of(&client, "section.passkey[data-passkey='Laptop']").await;
    assert!(added.contains("Laptop"), "{added}");
    screenshot(&client, "passkey-added.png").await;
    let stored = sesam.store().passkeys_of_user(&anna.id).await.unwrap();
    assert_eq!(stored.len(), 1, "one passkey stored");
    assert_eq!(stored[0].display_name, "Laptop");
    assert!(stored[0].last_used_at.is_none());

    // Log out; the username alone leads to the passkey, and the passkey logs in.
    client.goto(&format!("{base}/account")).await.unwrap();
    click(&client, "form[action='/logout'] button[type=submit]").await;
    client.goto(&format!("{base}/login")).await.unwrap();
    type_into(&client, "#username", "anna").await;
    click(&client, "form[action='/login'] button[type=submit]").await;
    client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#use-passkey"))
        .await
        .unwrap_or_else(|e| panic!("the passkey page did not come: {e}"));
    assert_accessible(&client, "passkey-login").await;
    screenshot(&client, "passkey-login.png").await;
    click(&client, "#use-passkey").await;
    assert_eq!(text_of(&client, "dd#username").await, "anna");
    let level = client
        .find(Locator::Css("dd#level"))
        .await
        .unwrap()
        .attr("data-level")
        .await
        .unwrap();
    assert_eq!(
        level.as_deref(),
        Some("substantial"),
        "a passkey alone is Substantial"
    );
    assert!(
        app.pending().await.unwrap().is_empty(),
        "no push was sent for the passkey login"
    );

    // The authenticator signed twice (made it, then used it); Sesam keeps its counter.
    let creds: serde_json::Value = reqwest::get(format!("{authenticator}/credentials"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let creds = creds["value"].as_array().expect("credentials").clone();
    assert_eq!(creds.len(), 1, "{creds:?}");
    let after = sesam.store().passkeys_of_user(&anna.id).await.unwrap();
    assert_eq!(
        after[0].sign_count,
        creds[0]["signCount"].as_i64().unwrap(),
        "the stored counter is the authenticator's"
    );
    assert!(after[0].last_used_at.is_some(), "the login is recorded");
    client.close().await.unwrap();
    sesam.stop().await;
}
