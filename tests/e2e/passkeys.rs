//! Passkeys (WebAuthn): who may add one (the attack first: a password alone), a passwordless
//! login with a passkey at Substantial, a passkey as the step-up after a password, removal,
//! and every bad answer (malformed, wrong origin, wrong relying party, another ceremony's
//! challenge, a replay, a foreign key, a counter that went back), each refused with its
//! message and nothing stored changed. The authenticator is a software one built here from
//! the WebAuthn data formats, so each bad case can be made exactly.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use reqwest::StatusCode;
use sesam_core::{ManualClock, User};
use sesam_store::PasskeyRecord;

use crate::harness::{
    free_port, on_both_databases, test_config_with, Browser, Page, TestDb, TestServer,
};
use crate::oidc::{authorize_path, exchange, id_token_claims, params_of, register, SUBSTANTIAL};
use crate::passwordless::start_login;
use crate::totp::anna_at_substantial;

on_both_databases!(
    a_password_alone_cannot_add_a_passkey,
    a_passkey_logs_in_without_a_password_at_substantial,
    a_passkey_steps_up_a_password_login,
    bad_registrations_are_refused_and_store_nothing,
    bad_assertions_are_refused_and_change_nothing,
);

const PASSWORD: &str = "correct horse battery";

/// A server whose public URL has a domain name (`localhost`), as WebAuthn needs; the tests
/// reach it on 127.0.0.1 and speak for `origin` in what the authenticator signs.
async fn start(db: &TestDb) -> (TestServer, String) {
    let port = free_port();
    let origin = format!("http://localhost:{port}");
    let listen = format!("127.0.0.1:{port}");
    let sesam = TestServer::start_with(
        ManualClock::starting_now(),
        test_config_with(
            &db.url,
            &[
                ("SESAM_LISTEN", listen.as_str()),
                ("SESAM_PUBLIC_URL", origin.as_str()),
            ],
        ),
    )
    .await;
    (sesam, origin)
}

// ---- A software authenticator: CBOR, COSE, authenticator data, ES256 ----

fn cbor_head(major: u8, n: u64) -> Vec<u8> {
    let m = major << 5;
    match n {
        0..=23 => vec![m | n as u8],
        24..=0xff => vec![m | 24, n as u8],
        0x100..=0xffff => {
            let mut v = vec![m | 25];
            v.extend_from_slice(&(n as u16).to_be_bytes());
            v
        }
        _ => {
            let mut v = vec![m | 26];
            v.extend_from_slice(&(n as u32).to_be_bytes());
            v
        }
    }
}

fn cbor_int(i: i64) -> Vec<u8> {
    if i >= 0 {
        cbor_head(0, i as u64)
    } else {
        cbor_head(1, (-1 - i) as u64)
    }
}

fn cbor_bytes(b: &[u8]) -> Vec<u8> {
    let mut v = cbor_head(2, b.len() as u64);
    v.extend_from_slice(b);
    v
}

fn cbor_text(s: &str) -> Vec<u8> {
    let mut v = cbor_head(3, s.len() as u64);
    v.extend_from_slice(s.as_bytes());
    v
}

fn cbor_map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut v = cbor_head(5, entries.len() as u64);
    for (k, val) in entries {
        v.extend_from_slice(k);
        v.extend_from_slice(val);
    }
    v
}

fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
}

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// What an answer is made of; each field can be made wrong on purpose.
#[derive(Clone)]
struct Made {
    origin: String,
    rp_id: String,
    kind: &'static str,
    /// None: the ceremony's own challenge.
    challenge: Option<String>,
    flags: u8,
    counter: u32,
}

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

struct SoftPasskey {
    key: SigningKey,
    cred_id: Vec<u8>,
    counter: u32,
    origin: String,
    rp_id: String,
}

impl SoftPasskey {
    fn new(origin: &str) -> SoftPasskey {
        let cred_id: [u8; 16] = rand::random();
        SoftPasskey {
            key: SigningKey::random(&mut rand::rngs::OsRng),
            cred_id: cred_id.to_vec(),
            counter: 0,
            origin: origin.to_owned(),
            rp_id: "localhost".to_owned(),
        }
    }

    fn made(&self, kind: &'static str) -> Made {
        Made {
            origin: self.origin.clone(),
            rp_id: self.rp_id.clone(),
            kind,
            challenge: None,
            flags: UP | UV,
            counter: self.counter,
        }
    }

    fn client_data(made: &Made, options: &serde_json::Value) -> Vec<u8> {
        let challenge = made.challenge.clone().unwrap_or_else(|| {
            options["publicKey"]["challenge"]
                .as_str()
                .unwrap()
                .to_owned()
        });
        serde_json::json!({
            "type": made.kind,
            "challenge": challenge,
            "origin": made.origin,
            "crossOrigin": false,
        })
        .to_string()
        .into_bytes()
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_encoded_point(false);
        cbor_map(&[
            (cbor_int(1), cbor_int(2)),
            (cbor_int(3), cbor_int(-7)),
            (cbor_int(-1), cbor_int(1)),
            (cbor_int(-2), cbor_bytes(point.x().unwrap())),
            (cbor_int(-3), cbor_bytes(point.y().unwrap())),
        ])
    }

    /// `navigator.credentials.create` with "none" attestation, as the browser sends it.
    fn create_with(&self, options: &serde_json::Value, made: &Made) -> String {
        let mut auth_data = sha256(made.rp_id.as_bytes()).to_vec();
        auth_data.push(made.flags | AT);
        auth_data.extend_from_slice(&made.counter.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&(self.cred_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.cred_id);
        auth_data.extend_from_slice(&self.cose_key());
        let attestation = cbor_map(&[
            (cbor_text("fmt"), cbor_text("none")),
            (cbor_text("attStmt"), cbor_map(&[])),
            (cbor_text("authData"), cbor_bytes(&auth_data)),
        ]);
        serde_json::json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&Self::client_data(made, options)),
                "transports": ["internal"],
            }
        })
        .to_string()
    }

    fn create(&self, options: &serde_json::Value) -> String {
        self.create_with(options, &self.made("webauthn.create"))
    }

    /// `navigator.credentials.get`: the signature over authenticator data and the client
    /// data's hash.
    fn get_with(&self, options: &serde_json::Value, made: &Made) -> String {
        let mut auth_data = sha256(made.rp_id.as_bytes()).to_vec();
        auth_data.push(made.flags);
        auth_data.extend_from_slice(&made.counter.to_be_bytes());
        let client_data = Self::client_data(made, options);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha256(&client_data));
        let signature: Signature = self.key.sign(&signed);
        serde_json::json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "extensions": {},
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.to_der().as_bytes()),
                "userHandle": null,
            }
        })
        .to_string()
    }

    /// A good assertion; the counter rises as a real authenticator's does.
    fn get(&mut self, options: &serde_json::Value) -> String {
        self.counter += 1;
        self.get_with(options, &self.made("webauthn.get"))
    }
}

// ---- Pages ----

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The options the page gives the browser.
fn options_on(page: &Page) -> serde_json::Value {
    let marker = "data-options=\"";
    let start = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no passkey options on:\n{}", page.body))
        + marker.len();
    let end = page.body[start..].find('"').unwrap() + start;
    serde_json::from_str(&html_unescape(&page.body[start..end])).expect("options are JSON")
}

fn error_key(page: &Page) -> Option<&str> {
    let marker = "data-error=\"";
    let start = page.body.find(marker)? + marker.len();
    let end = page.body[start..].find('"')? + start;
    Some(&page.body[start..end])
}

async fn start_registration(browser: &Browser) -> Page {
    let devices = browser.get("/account/devices").await;
    assert_eq!(devices.status, StatusCode::OK, "{}", devices.body);
    browser
        .post_form("/account/passkeys/new", &[("csrf", &devices.csrf())])
        .await
}

async fn send_registration(browser: &Browser, page: &Page, answer: &str, name: &str) -> Page {
    browser
        .post_form(
            "/account/passkeys",
            &[
                ("csrf", &page.csrf()),
                ("credential", answer),
                ("name", name),
            ],
        )
        .await
}

/// Adds `key` to the signed-in `browser`'s account.
async fn add(browser: &Browser, key: &SoftPasskey, name: &str) {
    let page = start_registration(browser).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let options = options_on(&page);
    assert_eq!(options["publicKey"]["rp"]["id"], "localhost");
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let done = send_registration(browser, &page, &key.create(&options), name).await;
    assert_eq!(done.location(), Some("/account/devices"), "{}", done.body);
}

async fn passkeys(sesam: &TestServer, user: &User) -> Vec<PasskeyRecord> {
    sesam.store().passkeys_of_user(&user.id).await.unwrap()
}

async fn send_assertion(browser: &Browser, page: &Page, answer: &str) -> Page {
    browser
        .post_form(
            "/login/passkey",
            &[("csrf", &page.csrf()), ("credential", answer)],
        )
        .await
}

/// A passwordless passkey login of `username` in a new browser, up to the passkey page.
async fn at_passkey_page(sesam: &TestServer, username: &str) -> (Browser, Page) {
    let browser = sesam.browser();
    assert_eq!(start_login(&browser, username).await, "/login/passkey");
    let page = browser.get("/login/passkey").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    (browser, page)
}

// ---- Tests ----

/// The attack first: a stolen password must not add a passkey, which would be a way in for
/// good.
async fn a_password_alone_cannot_add_a_passkey(db: TestDb) {
    let (sesam, origin) = start(&db).await;
    let anna = sesam.add_user("anna", "Anna Andersen", PASSWORD).await;
    let attacker = sesam.browser();
    assert_eq!(
        attacker.log_in("anna", PASSWORD).await.location(),
        Some("/account")
    );
    let refused = start_registration(&attacker).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(error_key(&refused), Some("passkey.needs_more"));
    assert!(
        !refused.body.contains("data-options"),
        "no options handed out"
    );
    // Nor by sending an answer straight away.
    let key = SoftPasskey::new(&origin);
    let options = serde_json::json!({"publicKey": {"challenge": b64(b"made-up")}});
    let devices = attacker.get("/account/devices").await;
    let sent = send_registration(&attacker, &devices, &key.create(&options), "mine").await;
    assert_eq!(sent.status, StatusCode::FORBIDDEN, "{}", sent.body);
    assert!(passkeys(&sesam, &anna).await.is_empty());
    let events = sesam.audit_events("anna").await;
    assert!(events.contains(&"passkey.registration.refused".to_owned()));
    sesam.stop().await;
}

async fn a_passkey_logs_in_without_a_password_at_substantial(db: TestDb) {
    let (sesam, origin) = start(&db).await;
    let (anna, owner, _app) = anna_at_substantial(&sesam).await;
    let mut key = SoftPasskey::new(&origin);
    add(&owner, &key, "Anna's laptop").await;
    let stored = passkeys(&sesam, &anna).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].display_name, "Anna's laptop");
    assert_eq!(stored[0].transports, "internal");
    assert_eq!(stored[0].credential_id, b64(&key.cred_id));
    let devices = owner.get("/account/devices").await;
    assert!(devices.body.contains("data-passkey="), "{}", devices.body);
    assert!(devices.body.contains("s laptop"));
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"passkey.registered".to_owned()));

    // OIDC asks for Substantial; the passkey comes first though anna has the app too.
    let rp = register(&sesam, false).await;
    let browser = sesam.browser();
    let first = browser
        .get(&authorize_path(
            &rp.client_id,
            &[("acr_values", SUBSTANTIAL)],
        ))
        .await;
    assert_eq!(first.location(), Some("/login"), "{}", first.body);
    assert_eq!(start_login(&browser, "anna").await, "/login/passkey");
    let page = browser.get("/login/passkey").await;
    assert!(
        page.body.contains("id=\"use-password\""),
        "the password is another way"
    );
    assert!(
        page.body.contains("name=\"factor\" value=\"app\""),
        "and the app: {}",
        page.body
    );
    let options = options_on(&page);
    assert_eq!(
        options["publicKey"]["allowCredentials"][0]["id"],
        b64(&key.cred_id)
    );
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let answer = send_assertion(&browser, &page, &key.get(&options)).await;
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
    assert_eq!(claims["amr"], serde_json::json!(["hwk", "user", "mfa"]));
    let used = passkeys(&sesam, &anna).await;
    assert_eq!(used[0].sign_count, 1);
    assert!(used[0].last_used_at.is_some());
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"login.passkey.succeeded".to_owned()));

    // The passkey login may remove the passkey (Substantial); a password login may not.
    let thief = sesam.browser();
    assert_eq!(start_login(&thief, "anna").await, "/login/passkey");
    assert_eq!(
        thief.submit_password(PASSWORD).await.location(),
        Some("/account"),
        "the password is always another way"
    );
    let devices = thief.get("/account/devices").await;
    let path = format!("/account/passkeys/{}/remove", used[0].id);
    let refused = thief.post_form(&path, &[("csrf", &devices.csrf())]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(passkeys(&sesam, &anna).await.len(), 1);
    // An id that is none of anna's passkeys is no passkey.
    let devices = browser.get("/account/devices").await;
    let other = browser
        .post_form(
            "/account/passkeys/not-a-passkey/remove",
            &[("csrf", &devices.csrf())],
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    // Ids past the stored length, or with odd characters, are no passkey either.
    for bad in [
        "a".repeat(65),
        "x".repeat(5000),
        "%00".into(),
        "..%2F..%2Fetc".into(),
    ] {
        let other = browser
            .post_form(
                &format!("/account/passkeys/{bad}/remove"),
                &[("csrf", &devices.csrf())],
            )
            .await;
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{bad}");
    }
    assert_eq!(passkeys(&sesam, &anna).await.len(), 1);
    let removed = browser.post_form(&path, &[("csrf", &devices.csrf())]).await;
    assert_eq!(
        removed.location(),
        Some("/account/devices"),
        "{}",
        removed.body
    );
    assert!(passkeys(&sesam, &anna).await.is_empty());
    // Without a passkey the login goes to the app again.
    assert_eq!(start_login(&sesam.browser(), "anna").await, "/login/wait");
    sesam.stop().await;
}

async fn a_passkey_steps_up_a_password_login(db: TestDb) {
    let (sesam, origin) = start(&db).await;
    let (anna, owner, _app) = anna_at_substantial(&sesam).await;
    let mut key = SoftPasskey::new(&origin);
    add(&owner, &key, "Key").await;
    // Passwordless off: the username leads to the password; Substantial asked: the passkey.
    sesam
        .store()
        .set_setting("passwordless", "off", sesam.now())
        .await
        .unwrap();
    let rp = register(&sesam, false).await;
    let browser = sesam.browser();
    browser
        .get(&authorize_path(
            &rp.client_id,
            &[("acr_values", SUBSTANTIAL)],
        ))
        .await;
    let after = browser.log_in("anna", PASSWORD).await;
    let mut location = after.location().unwrap().to_owned();
    if location == "/login/step-up" {
        location = browser
            .get("/login/step-up")
            .await
            .location()
            .unwrap()
            .to_owned();
    }
    assert_eq!(location, "/login/passkey");
    let page = browser.get("/login/passkey").await;
    assert!(
        !page.body.contains("id=\"use-password\""),
        "the password is in already"
    );
    assert!(
        page.body.contains("name=\"factor\" value=\"app\""),
        "{}",
        page.body
    );
    let options = options_on(&page);
    let answer = send_assertion(&browser, &page, &key.get(&options)).await;
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
    assert_eq!(
        claims["amr"],
        serde_json::json!(["pwd", "hwk", "user", "mfa"])
    );
    assert_eq!(passkeys(&sesam, &anna).await[0].sign_count, 1);
    sesam.stop().await;
}

async fn bad_registrations_are_refused_and_store_nothing(db: TestDb) {
    let (sesam, origin) = start(&db).await;
    let (anna, owner, _app) = anna_at_substantial(&sesam).await;
    let key = SoftPasskey::new(&origin);
    let check = |page: &Page, status: StatusCode, key: &str| {
        assert_eq!(page.status, status, "{key}: {}", page.body);
        assert_eq!(error_key(page), Some(key), "{}", page.body);
    };

    let page = start_registration(&owner).await;
    let options = options_on(&page);
    let good = key.create(&options);
    // No CSRF token: refused before anything is read.
    let no_csrf = owner
        .post_form(
            "/account/passkeys",
            &[("credential", good.as_str()), ("name", "x")],
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    // Each bad answer spends the ceremony; start a new one for the next.
    type Make<'a> = Box<dyn Fn(&serde_json::Value) -> String + 'a>;
    let cases: Vec<(Make, &str, StatusCode, &str)> = vec![
        (
            Box::new(|_| "{not json".to_owned()),
            "k",
            StatusCode::BAD_REQUEST,
            "passkey.error.malformed",
        ),
        (
            Box::new(|_| "{}".to_owned()),
            "k",
            StatusCode::BAD_REQUEST,
            "passkey.error.malformed",
        ),
        (
            Box::new(|o| {
                let mut m = key.made("webauthn.create");
                m.origin = "https://sesam.evil.example".into();
                key.create_with(o, &m)
            }),
            "k",
            StatusCode::UNPROCESSABLE_ENTITY,
            "passkey.error.origin",
        ),
        (
            Box::new(|o| {
                let mut m = key.made("webauthn.create");
                m.rp_id = "evil.example".into();
                key.create_with(o, &m)
            }),
            "k",
            StatusCode::UNPROCESSABLE_ENTITY,
            "passkey.error.rp_id",
        ),
        (
            Box::new(|o| {
                let mut m = key.made("webauthn.create");
                m.challenge = Some(b64(b"another ceremony's challenge"));
                key.create_with(o, &m)
            }),
            "k",
            StatusCode::UNPROCESSABLE_ENTITY,
            "passkey.error.challenge",
        ),
        (
            Box::new(|o| {
                let mut m = key.made("webauthn.create");
                m.flags = UP;
                key.create_with(o, &m)
            }),
            "k",
            StatusCode::UNPROCESSABLE_ENTITY,
            "passkey.error.not_verified",
        ),
        (
            Box::new(|o| key.create(o)),
            "",
            StatusCode::BAD_REQUEST,
            "passkey.error.name",
        ),
        (
            Box::new(|o| key.create(o)),
            "\u{202e}evil",
            StatusCode::BAD_REQUEST,
            "passkey.error.name",
        ),
    ];
    for (make, name, status, expected) in &cases {
        let page = start_registration(&owner).await;
        let options = options_on(&page);
        let sent = send_registration(&owner, &page, &make(&options), name).await;
        check(&sent, *status, expected);
        assert!(passkeys(&sesam, &anna).await.is_empty(), "{expected}");
    }
    let long_name = "n".repeat(65);
    let page = start_registration(&owner).await;
    let sent = send_registration(&owner, &page, &key.create(&options_on(&page)), &long_name).await;
    check(&sent, StatusCode::BAD_REQUEST, "passkey.error.name");

    // The right answer to an old ceremony (this one was spent by the case before).
    let sent = send_registration(&owner, &page, &key.create(&options_on(&page)), "Key").await;
    check(&sent, StatusCode::CONFLICT, "passkey.no_pending");
    assert!(passkeys(&sesam, &anna).await.is_empty());

    // Once right; the same authenticator again is refused (to anna or anyone).
    add(&owner, &key, "Key").await;
    let page = start_registration(&owner).await;
    let options = options_on(&page);
    assert_eq!(
        options["publicKey"]["excludeCredentials"][0]["id"],
        b64(&key.cred_id),
        "the browser is told which authenticator has one already"
    );
    let sent = send_registration(&owner, &page, &key.create(&options), "Again").await;
    assert!(
        sent.status == StatusCode::CONFLICT || sent.status == StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        sent.body
    );
    assert_eq!(passkeys(&sesam, &anna).await.len(), 1);
    sesam.stop().await;
}

async fn bad_assertions_are_refused_and_change_nothing(db: TestDb) {
    let (sesam, origin) = start(&db).await;
    let (anna, owner, _app) = anna_at_substantial(&sesam).await;
    let mut key = SoftPasskey::new(&origin);
    add(&owner, &key, "Key").await;
    // A good login first, so the stored counter is 5.
    key.counter = 4;
    let (browser, page) = at_passkey_page(&sesam, "anna").await;
    let good = key.get(&options_on(&page));
    let answer = send_assertion(&browser, &page, &good).await;
    assert_eq!(answer.location(), Some("/account"), "{}", answer.body);
    let before = passkeys(&sesam, &anna).await;
    assert_eq!(before[0].sign_count, 5);

    let stranger = SoftPasskey::new(&origin);
    let mut clone = SoftPasskey::new(&origin);
    clone.key = key.key.clone();
    clone.cred_id = key.cred_id.clone();
    type Make<'a> = Box<dyn Fn(&serde_json::Value) -> String + 'a>;
    let cases: Vec<(Make, StatusCode, &str)> = vec![
        (
            Box::new(|_| "[]".to_owned()),
            StatusCode::BAD_REQUEST,
            "passkey.error.malformed",
        ),
        (
            Box::new(|_| String::new()),
            StatusCode::BAD_REQUEST,
            "passkey.error.malformed",
        ),
        (
            Box::new(|o| {
                let mut m = key.made("webauthn.get");
                m.counter = 9;
                m.origin = "http://localhost:1".into();
                key.get_with(o, &m)
            }),
            StatusCode::UNAUTHORIZED,
            "passkey.error.origin",
        ),
        (
            Box::new(|o| {
                let mut m = key.made("webauthn.get");
                m.counter = 9;
                m.rp_id = "evil.example".into();
                key.get_with(o, &m)
            }),
            StatusCode::UNAUTHORIZED,
            "passkey.error.rp_id",
        ),
        (
            Box::new(|o| {
                let mut m = key.made("webauthn.get");
                m.counter = 9;
                m.kind = "webauthn.create";
                key.get_with(o, &m)
            }),
            StatusCode::UNAUTHORIZED,
            "passkey.error.challenge",
        ),
        (
            Box::new(|o| {
                let mut m = key.made("webauthn.get");
                m.counter = 9;
                m.flags = UP;
                key.get_with(o, &m)
            }),
            StatusCode::UNAUTHORIZED,
            "passkey.error.not_verified",
        ),
        (
            // The first login's answer again: its challenge is spent.
            Box::new(|_| good.clone()),
            StatusCode::UNAUTHORIZED,
            "passkey.error.challenge",
        ),
        (
            Box::new(|o| {
                let mut m = stranger.made("webauthn.get");
                m.counter = 9;
                stranger.get_with(o, &m)
            }),
            StatusCode::UNAUTHORIZED,
            "passkey.error.unknown",
        ),
        (
            // A copy of the key that signs with an older counter: possibly cloned.
            Box::new(|o| {
                let mut m = clone.made("webauthn.get");
                m.counter = 3;
                clone.get_with(o, &m)
            }),
            StatusCode::UNAUTHORIZED,
            "passkey.error.counter",
        ),
        (
            Box::new(|o| {
                let mut m = clone.made("webauthn.get");
                m.counter = 5;
                clone.get_with(o, &m)
            }),
            StatusCode::UNAUTHORIZED,
            "passkey.error.counter",
        ),
    ];
    let (browser, mut page) = at_passkey_page(&sesam, "anna").await;
    for (make, status, expected) in &cases {
        let sent = send_assertion(&browser, &page, &make(&options_on(&page))).await;
        assert_eq!(sent.status, *status, "{expected}: {}", sent.body);
        assert_eq!(error_key(&sent), Some(*expected), "{}", sent.body);
        assert_eq!(passkeys(&sesam, &anna).await, before, "{expected}");
        assert_eq!(
            browser.get("/account").await.location(),
            Some("/login"),
            "{expected}: not logged in"
        );
        page = browser.get("/login/passkey").await;
        assert_eq!(page.status, StatusCode::OK);
    }
    drop(cases);
    // No CSRF token.
    let no_csrf = browser
        .post_form("/login/passkey", &[("credential", "{}")])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let events = sesam.audit_events("anna").await;
    assert!(events.contains(&"passkey.counter_regression".to_owned()));
    assert!(events.contains(&"login.passkey.failed".to_owned()));
    // After all that, the real key still works (a new ceremony each time).
    key.counter = 9;
    let answer = send_assertion(&browser, &page, &key.get(&options_on(&page))).await;
    assert_eq!(answer.location(), Some("/account"), "{}", answer.body);
    assert_eq!(passkeys(&sesam, &anna).await[0].sign_count, 10);
    // Without a pending ceremony, an answer leads back to the login and counts nothing.
    let devices = owner.get("/account/devices").await;
    let stray = send_assertion(&owner, &devices, &key.get(&options_on(&page))).await;
    assert_eq!(passkeys(&sesam, &anna).await[0].sign_count, 10);
    assert_eq!(
        stray.location(),
        Some("/login"),
        "{}: {}",
        stray.status,
        stray.body
    );
    sesam.stop().await;
}
