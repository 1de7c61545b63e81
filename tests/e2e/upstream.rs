//! Logging in through an upstream eID: a second Sesam is the upstream OP (real and strict),
//! and its login answers a SAML SP and an OIDC client of the first at the upstream's level;
//! it also lets the user enrol a first device. A small fake OP serves the bad answers
//! (signature, key, issuer, nonce, claim) a real one would not give; each is refused with a
//! clear page and nothing stored changes.

use std::sync::{Arc, Mutex};

use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sesam_app::{Answer, AppClient, EnrolOptions};
use sesam_core::{Clock, ManualClock, User, UserId};
use sesam_server::oidc::ClientRegistration;
use sesam_server::upstream::{link_hash, CALLBACK_PATH};

use crate::harness::{
    free_port, on_both_databases, test_config_with, Browser, Page, TestDb, TestServer,
};
use crate::passwordless::{code_on, start_login};
use crate::saml::{TestSp, LOA_SUBSTANTIAL};

on_both_databases!(
    a_login_through_the_upstream_sesam_answers_saml_and_oidc_at_its_level,
    bad_upstream_answers_are_refused_and_change_nothing,
    an_unlinked_identity_is_refused_or_linked_with_the_password,
    an_upstream_on_a_private_address_is_not_fetched,
    after_a_lost_phone_the_upstream_login_enrols_a_new_one,
);

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const PASSWORD: &str = "correct horse battery";
const LINK_KEY: &str = "0123456789abcdef0123456789abcdef-test";

/// A second database of the same kind as `db`, for the upstream.
async fn other_db(db: &TestDb) -> TestDb {
    if db.is_postgres() {
        TestDb::postgres()
            .await
            .expect("a second PostgreSQL database")
    } else {
        TestDb::sqlite()
    }
}

/// The first Sesam, on a port known before it starts (the upstream registers its callback),
/// configured to log in through `issuer`.
async fn local_sesam(
    db: &TestDb,
    issuer: &str,
    secret: &str,
    port: u16,
    extra: &[(&str, &str)],
) -> TestServer {
    let listen = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    let mut env = vec![
        ("SESAM_LISTEN", listen.as_str()),
        ("SESAM_PUBLIC_URL", public.as_str()),
        ("SESAM_UPSTREAM_ISSUER", issuer),
        ("SESAM_UPSTREAM_CLIENT_ID", "sesam-local"),
        ("SESAM_UPSTREAM_CLIENT_SECRET", secret),
    ];
    env.extend_from_slice(extra);
    TestServer::start_with(ManualClock::starting_now(), test_config_with(&db.url, &env)).await
}

/// The path of `url` on `server` (its base stripped).
fn path_on(server: &TestServer, url: &str) -> String {
    url.strip_prefix(&server.url(""))
        .unwrap_or_else(|| panic!("{url} is not on {}", server.url("")))
        .to_owned()
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    crate::oidc::params_of(url)
}

/// "Log in with MitID" on the login page: the button is there; returns where it sends.
async fn press_upstream(browser: &Browser) -> String {
    let login = browser.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.body.contains("Log ind med MitID") || login.body.contains("Log in with MitID"),
        "{}",
        login.body
    );
    let sent = browser
        .post_form("/login/upstream", &[("csrf", &login.csrf())])
        .await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    sent.location().unwrap().to_owned()
}

/// The upstream Sesam with its user (an app enrolled, so its login is Substantial) and the
/// local Sesam as its OIDC client, with anna linked to that user.
struct Pair {
    upstream: TestServer,
    local: TestServer,
    app: AppClient,
    anna: User,
    _db: TestDb,
}

async fn pair(db: &TestDb) -> Pair {
    let up_db = other_db(db).await;
    let upstream = TestServer::start(&up_db).await;
    upstream
        .store()
        .set_setting("passwordless", "on", upstream.now())
        .await
        .unwrap();
    let citizen = upstream
        .add_user("borger", "Anna Andersen", "upstream password 1")
        .await;
    let (app, _) = upstream
        .enrol(
            &citizen,
            EnrolOptions {
                display_name: "MitID-telefon".into(),
                ..EnrolOptions::default()
            },
        )
        .await;
    let port = free_port();
    let (client, secret) = sesam_server::oidc::register_client(
        upstream.store(),
        &ClientRegistration {
            name: "Kommunens login".into(),
            redirect_uris: vec![format!("http://127.0.0.1:{port}{CALLBACK_PATH}")],
            public: false,
            ..ClientRegistration::default()
        },
        upstream.now(),
    )
    .await
    .unwrap()
    .expect("valid registration");
    assert!(!client.client_id.is_empty());
    let local = local_sesam(
        db,
        &upstream.url(""),
        &secret.unwrap(),
        port,
        &[("SESAM_UPSTREAM_CLIENT_ID", client.client_id.as_str())],
    )
    .await;
    let anna = local.add_user("anna", "Anna Andersen", PASSWORD).await;
    let config = local.server.state.config.upstream.clone().unwrap();
    assert!(local
        .store()
        .add_upstream_link(
            &config.issuer,
            &link_hash(&config, &citizen.id.0),
            &anna.id,
            local.now()
        )
        .await
        .unwrap());
    Pair {
        upstream,
        local,
        app,
        anna,
        _db: up_db,
    }
}

/// Through the upstream: the local browser presses the button, the upstream's browser logs
/// in there (with the app the first time), and the local browser takes the answer.
async fn through_upstream(p: &Pair, local: &Browser, up: &Browser) -> Page {
    let to = press_upstream(local).await;
    let q = query_of(&to);
    assert_eq!(q["acr_values"], LOA_SUBSTANTIAL, "the level is asked for");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("nonce") && q.contains_key("state"));
    let mut page = up.get(&path_on(&p.upstream, &to)).await;
    if page.location() == Some("/login") {
        assert_eq!(start_login(up, "borger").await, "/login/wait");
        let code = code_on(&up.get("/login/wait").await);
        let pending = p.app.pending().await.unwrap();
        p.app
            .answer(&pending[0].id, &Answer::Code(code))
            .await
            .unwrap();
        let done = up.get("/login/complete").await;
        assert_eq!(done.location(), Some("/authorize/continue"));
        page = up.get("/authorize/continue").await;
    }
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let back = page.location().unwrap().to_owned();
    assert_eq!(query_of(&back)["iss"], p.upstream.url(""));
    local.get(&path_on(&p.local, &back)).await
}

fn id_token_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap()
}

async fn a_login_through_the_upstream_sesam_answers_saml_and_oidc_at_its_level(db: TestDb) {
    let p = pair(&db).await;
    let up = p.upstream.browser();

    // A SAML SP of the local Sesam asks; the upstream's Substantial login answers it.
    let sp = TestSp::new("sp.kommune.dk");
    sp.register(&p.local, Default::default()).await;
    let local = p.local.browser();
    let r = sp.request(&p.local);
    let start = local.get(&sp.redirect(&r, None, None)).await;
    assert_eq!(start.location(), Some("/login"));
    let before = start
        .set_cookie("sesam_session")
        .expect("the SAML request is kept in a session");
    let back = through_upstream(&p, &local, &up).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    // The login gets a new session id, and the id from before the login is worth nothing:
    // whoever planted or saw it is not logged in (session fixation).
    let after = back
        .set_cookie("sesam_session")
        .expect("the session id changes at the login");
    assert!(!after.is_empty() && after != before, "{before} -> {after}");
    let with = |id: &str| {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        client
            .get(p.local.url("/account"))
            .header(reqwest::header::COOKIE, format!("sesam_session={id}"))
            .send()
    };
    let logged_in = with(&after).await.unwrap();
    assert_eq!(logged_in.status(), StatusCode::OK);
    assert!(logged_in.text().await.unwrap().contains("Anna Andersen"));
    // The old id gets the page that carries a second tab on (a refresh), not the account.
    let old = with(&before).await.unwrap().text().await.unwrap();
    assert!(
        !old.contains("Anna Andersen") && old.contains("http-equiv=\"refresh\""),
        "the old id is not logged in: {old}"
    );
    let answer = crate::saml::follow(&local, back).await;
    let login = sp.accept(&p.local, &answer, &r.id, None, false);
    assert_eq!(login.loa, LOA_SUBSTANTIAL);
    let events = p.local.audit_events("anna").await;
    assert!(
        events.contains(&"login.upstream.proven".to_owned()),
        "{events:?}"
    );

    // The upstream login is enough to enrol a first device (a password alone is not).
    let devices = local.get("/account/devices").await;
    assert_eq!(devices.status, StatusCode::OK, "{}", devices.body);
    let code = local
        .post_form("/account/devices/activation", &[("csrf", &devices.csrf())])
        .await;
    assert_eq!(code.status, StatusCode::OK, "{}", code.body);
    let password_only = p.local.browser();
    let done = password_only.log_in("anna", PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let devices = password_only.get("/account/devices").await;
    let refused = password_only
        .post_form("/account/devices/activation", &[("csrf", &devices.csrf())])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // An OIDC client of the local Sesam, in a new browser (the upstream reuses its login).
    let rp = crate::oidc::register(&p.local, false).await;
    let local = p.local.browser();
    let first = local
        .get(&crate::oidc::authorize_path(
            &rp.client_id,
            &[("acr_values", LOA_SUBSTANTIAL)],
        ))
        .await;
    assert_eq!(first.location(), Some("/login"));
    let back = through_upstream(&p, &local, &up).await;
    assert_eq!(
        back.location(),
        Some("/authorize/continue"),
        "{}",
        back.body
    );
    let to_rp = local.get("/authorize/continue").await;
    let params = query_of(to_rp.location().unwrap());
    let (status, tokens) = crate::oidc::exchange(&p.local, &rp, &params["code"]).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let claims = id_token_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], LOA_SUBSTANTIAL);
    assert_eq!(claims["sub"], p.anna.id.0);
    assert!(
        claims["amr"].as_array().unwrap().contains(&json!("fed")),
        "{claims}"
    );

    // The same answer again: its state is used up.
    let links = p
        .local
        .store()
        .count_upstream_links(&p.anna.id)
        .await
        .unwrap();
    let local = p.local.browser();
    let to = press_upstream(&local).await;
    let again = up.get(&path_on(&p.upstream, &to)).await;
    let callback = path_on(&p.local, again.location().unwrap());
    let once = local.get(&callback).await;
    assert_eq!(once.status, StatusCode::SEE_OTHER, "{}", once.body);
    let replay = local.get(&callback).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.body.contains("used already") || replay.body.contains("allerede brugt"));
    // A browser that began nothing gets the same.
    let stranger = p.local.browser().get(&callback).await;
    assert_eq!(stranger.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        p.local
            .store()
            .count_upstream_links(&p.anna.id)
            .await
            .unwrap(),
        links
    );
    // A forced new login here (prompt=login) is a forced new login upstream: the upstream
    // does not answer from its session.
    let forced = p.local.browser();
    let first = forced
        .get(&crate::oidc::authorize_path(
            &rp.client_id,
            &[("acr_values", LOA_SUBSTANTIAL), ("prompt", "login")],
        ))
        .await;
    assert_eq!(first.location(), Some("/login"));
    let to = press_upstream(&forced).await;
    assert_eq!(
        query_of(&to).get("prompt").map(String::as_str),
        Some("login"),
        "{to}"
    );
    let asked = up.get(&path_on(&p.upstream, &to)).await;
    assert_eq!(
        asked.location(),
        Some("/login"),
        "the upstream asks for a new login"
    );
    // Without one, the upstream's session answers at once (no prompt is sent).
    let plain = p.local.browser();
    let to = press_upstream(&plain).await;
    assert!(!query_of(&to).contains_key("prompt"), "{to}");

    p.local.stop().await;
    p.upstream.stop().await;
}

// ---------------------------------------------------------------- a fake OP for bad answers

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Good,
    WrongNonce,
    BadSignature,
    UnknownKid,
    WrongIssuer,
    MissingClaim,
    Expired,
    /// An unsigned token (`alg: none`).
    AlgNone,
    /// A token "signed" with HS256 under the client secret, the key-confusion attack.
    Hs256,
    WrongAudience,
    /// A token response without an `id_token`.
    NoIdToken,
    /// Discovery answers 503 at the callback (it worked when the button was pressed).
    DiscoveryDown,
    /// Discovery names a token endpoint nothing listens on.
    TokenUnreachable,
}

struct FakeState {
    base: String,
    key: PKey<Private>,
    other_key: PKey<Private>,
    mode: Mode,
    nonce: String,
    cpr: String,
    acr: String,
}

type Shared = Arc<Mutex<FakeState>>;

fn sign(key: &PKey<Private>, kid: &str, claims: &Value) -> String {
    let header = B64URL.encode(json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string());
    let payload = B64URL.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
    signer.update(input.as_bytes()).unwrap();
    format!("{input}.{}", B64URL.encode(signer.sign_to_vec().unwrap()))
}

async fn start_fake_op() -> Shared {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shared = Arc::new(Mutex::new(FakeState {
        base,
        key: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        other_key: PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap(),
        mode: Mode::Good,
        nonce: String::new(),
        cpr: String::new(),
        acr: LOA_SUBSTANTIAL.into(),
    }));
    let s1 = Arc::clone(&shared);
    let s2 = Arc::clone(&shared);
    let s3 = Arc::clone(&shared);
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || async move {
                let (base, mode) = {
                    let s = s1.lock().unwrap();
                    (s.base.clone(), s.mode)
                };
                if mode == Mode::DiscoveryDown {
                    return axum::response::IntoResponse::into_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                    );
                }
                let token_endpoint = if mode == Mode::TokenUnreachable {
                    // Port 1 on loopback: the connection is refused.
                    "http://127.0.0.1:1/token".to_owned()
                } else {
                    format!("{base}/token")
                };
                axum::response::IntoResponse::into_response(axum::Json(json!({
                    "issuer": base,
                    "authorization_endpoint": format!("{base}/authorize"),
                    "token_endpoint": token_endpoint,
                    "jwks_uri": format!("{base}/jwks"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                })))
            }),
        )
        .route(
            "/jwks",
            get(move || async move {
                let rsa = s2.lock().unwrap().key.rsa().unwrap();
                axum::Json(json!({"keys": [{
                    "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1",
                    "n": B64URL.encode(rsa.n().to_vec()),
                    "e": B64URL.encode(rsa.e().to_vec()),
                }]}))
            }),
        )
        .route(
            "/token",
            post(move || async move {
                let s = s3.lock().unwrap();
                let now = sesam_core::SystemClock.now().0;
                let mut claims = json!({
                    "iss": if s.mode == Mode::WrongIssuer { "https://evil.example".to_owned() } else { s.base.clone() },
                    "sub": "fake-subject",
                    "aud": if s.mode == Mode::WrongAudience { "another-client" } else { "sesam-local" },
                    "iat": now,
                    "exp": if s.mode == Mode::Expired { now - 600 } else { now + 300 },
                    "nonce": if s.mode == Mode::WrongNonce { "another-nonce".to_owned() } else { s.nonce.clone() },
                    "acr": s.acr,
                    "cpr": s.cpr,
                });
                if s.mode == Mode::MissingClaim {
                    claims.as_object_mut().unwrap().remove("cpr");
                }
                let mut token = match s.mode {
                    Mode::UnknownKid => sign(&s.other_key, "k2", &claims),
                    Mode::AlgNone => format!(
                        "{}.{}.",
                        B64URL.encode(json!({"alg": "none", "typ": "JWT"}).to_string()),
                        B64URL.encode(claims.to_string())
                    ),
                    Mode::Hs256 => {
                        let header = B64URL
                            .encode(json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}).to_string());
                        let input = format!("{header}.{}", B64URL.encode(claims.to_string()));
                        let key = PKey::hmac(b"fake-secret").unwrap();
                        let mut signer = Signer::new(MessageDigest::sha256(), &key).unwrap();
                        signer.update(input.as_bytes()).unwrap();
                        format!("{input}.{}", B64URL.encode(signer.sign_to_vec().unwrap()))
                    }
                    _ => sign(&s.key, "k1", &claims),
                };
                if s.mode == Mode::BadSignature {
                    let other = sign(&s.other_key, "k1", &claims);
                    let forged = other.rsplit('.').next().unwrap().to_owned();
                    let cut = token.rfind('.').unwrap();
                    token.truncate(cut + 1);
                    token.push_str(&forged);
                }
                if s.mode == Mode::NoIdToken {
                    return axum::Json(json!({
                        "access_token": "at", "token_type": "Bearer", "expires_in": 300,
                    }));
                }
                axum::Json(json!({
                    "access_token": "at", "token_type": "Bearer", "expires_in": 300,
                    "id_token": token,
                }))
            }),
        );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    shared
}

/// The local Sesam over the fake OP, linking on a CPR-like claim (stored keyed-hashed).
async fn fake_pair(db: &TestDb, extra: &[(&str, &str)]) -> (Shared, TestServer, User) {
    let fake = start_fake_op().await;
    let issuer = fake.lock().unwrap().base.clone();
    let mut env = vec![
        ("SESAM_UPSTREAM_LINK_CLAIM", "cpr"),
        ("SESAM_UPSTREAM_LINK_KEY", LINK_KEY),
    ];
    env.extend_from_slice(extra);
    let local = local_sesam(db, &issuer, "fake-secret", free_port(), &env).await;
    let anna = local.add_user("anna", "Anna Andersen", PASSWORD).await;
    let config = local.server.state.config.upstream.clone().unwrap();
    local
        .store()
        .add_upstream_link(
            &config.issuer,
            &link_hash(&config, "0101901234"),
            &anna.id,
            local.now(),
        )
        .await
        .unwrap();
    (fake, local, anna)
}

/// Presses the button and comes back with `mode`'s answer; returns the callback's page.
async fn answer_with(fake: &Shared, local: &TestServer, browser: &Browser, mode: Mode) -> Page {
    // The button is pressed against a working upstream; `mode` applies to the answer.
    fake.lock().unwrap().mode = Mode::Good;
    let to = press_upstream(browser).await;
    let q = query_of(&to);
    {
        let mut s = fake.lock().unwrap();
        s.mode = mode;
        s.nonce = q["nonce"].clone();
    }
    let _ = local;
    browser
        .get(&format!(
            "{CALLBACK_PATH}?code=c0de&state={}",
            crate::harness::urlencode(&q["state"])
        ))
        .await
}

async fn stored(local: &TestServer, anna: &UserId) -> (User, i64, i64) {
    let store = local.store();
    (
        store.get_user(anna).await.unwrap(),
        store.count_upstream_links(anna).await.unwrap(),
        store.count_users().await.unwrap(),
    )
}

async fn bad_upstream_answers_are_refused_and_change_nothing(db: TestDb) {
    // The broker's own acr value for Substantial (not an NSIS URI), as a broker may send.
    let (fake, local, anna) = fake_pair(
        &db,
        &[("SESAM_UPSTREAM_ACR_MAP", "urn:broker:loa:2=substantial")],
    )
    .await;
    fake.lock().unwrap().cpr = "0101901234".into();
    let before = stored(&local, &anna.id).await;
    // An answer that does not verify is 403 "could not be verified"; an upstream that is
    // down at the callback (discovery, or the token endpoint) is 503 "try later", not a
    // wrong answer. Either way no login, and nothing changes.
    let verified = StatusCode::FORBIDDEN;
    let down = StatusCode::SERVICE_UNAVAILABLE;
    for (mode, status) in [
        (Mode::WrongNonce, verified),
        (Mode::BadSignature, verified),
        (Mode::UnknownKid, verified),
        (Mode::WrongIssuer, verified),
        (Mode::MissingClaim, verified),
        (Mode::Expired, verified),
        (Mode::AlgNone, verified),
        (Mode::Hs256, verified),
        (Mode::WrongAudience, verified),
        (Mode::NoIdToken, verified),
        (Mode::DiscoveryDown, down),
        (Mode::TokenUnreachable, down),
    ] {
        let browser = local.browser();
        let page = answer_with(&fake, &local, &browser, mode).await;
        assert_eq!(page.status, status, "{mode:?}: {}", page.body);
        let says_unverified = page.body.contains("could not be verified")
            || page.body.contains("kunne ikke verificeres");
        assert_eq!(
            says_unverified,
            status == verified,
            "{mode:?}: {}",
            page.body
        );
        assert_eq!(
            browser.get("/account").await.location(),
            Some("/login"),
            "{mode:?}"
        );
        assert_eq!(stored(&local, &anna.id).await, before, "{mode:?}");
    }
    fake.lock().unwrap().mode = Mode::Good;

    // The upstream says no (the user cancelled): a page that says so; its state is used up.
    let browser = local.browser();
    let to = press_upstream(&browser).await;
    let state = crate::harness::urlencode(&query_of(&to)["state"]);
    let denied = browser
        .get(&format!(
            "{CALLBACK_PATH}?error=access_denied&state={state}"
        ))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.body.contains("did not confirm") || denied.body.contains("bekræftede ikke"));
    let late = browser
        .get(&format!("{CALLBACK_PATH}?code=c0de&state={state}"))
        .await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    // A forged state, no state, another issuer in the answer, garbage: refused, no 500.
    let to = press_upstream(&browser).await;
    let state = crate::harness::urlencode(&query_of(&to)["state"]);
    for path in [
        format!("{CALLBACK_PATH}?code=c0de&state=forged"),
        format!("{CALLBACK_PATH}?code=c0de"),
        format!("{CALLBACK_PATH}?code=c0de&state={state}&state=twice"),
        format!("{CALLBACK_PATH}?%zz"),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            page.body
        );
    }
    let page = browser
        .get(&format!(
            "{CALLBACK_PATH}?code=c0de&state={state}&iss=https%3A%2F%2Fevil.example"
        ))
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    // The issuer with a trailing slash is another issuer (RFC 9207 compares exactly).
    let to = press_upstream(&browser).await;
    let q = query_of(&to);
    let slashed = format!("{}/", fake.lock().unwrap().base);
    fake.lock().unwrap().nonce = q["nonce"].clone();
    let page = browser
        .get(&format!(
            "{CALLBACK_PATH}?code=c0de&state={}&iss={}",
            crate::harness::urlencode(&q["state"]),
            crate::harness::urlencode(&slashed)
        ))
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert_eq!(stored(&local, &anna.id).await, before);

    // The button's form: no token, another browser's token, a field that is not UTF-8.
    // Refused, and no attempt starts (no redirect upstream).
    let browser = local.browser();
    let own = browser.get("/login").await.csrf();
    let other = local.browser().get("/login").await.csrf();
    for (body, status) in [
        (String::new(), StatusCode::FORBIDDEN),
        (format!("csrf={other}"), StatusCode::FORBIDDEN),
        (format!("csrf={own}&x=%FF%FE"), StatusCode::BAD_REQUEST),
    ] {
        let sent = browser
            .post_raw(
                "/login/upstream",
                "application/x-www-form-urlencoded",
                body.clone().into_bytes(),
            )
            .await;
        assert_eq!(sent.status, status, "{body}: {}", sent.body);
        assert_eq!(sent.location(), None, "{body}");
    }
    assert_eq!(stored(&local, &anna.id).await, before);

    // The same fake, answering well: anna logs in at the upstream's level, found by the
    // keyed hash of her CPR-like claim.
    let browser = local.browser();
    let page = answer_with(&fake, &local, &browser, Mode::Good).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), Some("/account"));
    assert_eq!(browser.get("/account").await.status, StatusCode::OK);
    // The broker's own value counts as mapped, and is what the login asks for.
    fake.lock().unwrap().acr = "urn:broker:loa:2".into();
    let browser = local.browser();
    let to = press_upstream(&browser).await;
    assert_eq!(query_of(&to)["acr_values"], "urn:broker:loa:2");
    let page = answer_with(&fake, &local, &browser, Mode::Good).await;
    assert_eq!(page.location(), Some("/account"));
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("data-level=\"substantial\""),
        "{}",
        account.body
    );
    // An acr below the configured level lowers the login's level.
    fake.lock().unwrap().acr = "https://data.gov.dk/concept/core/nsis/loa/Low".into();
    let browser = local.browser();
    let page = answer_with(&fake, &local, &browser, Mode::Good).await;
    assert_eq!(page.location(), Some("/account"));
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("data-level=\"low\""),
        "{}",
        account.body
    );
    let devices = browser.get("/account/devices").await;
    let refused = browser
        .post_form("/account/devices/activation", &[("csrf", &devices.csrf())])
        .await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "a Low upstream login enrols nothing"
    );
    local.stop().await;
}

async fn an_unlinked_identity_is_refused_or_linked_with_the_password(db: TestDb) {
    // Without the setting: a clear page, nothing linked.
    let (fake, local, _) = fake_pair(&db, &[]).await;
    fake.lock().unwrap().cpr = "0202802345".into();
    let bob = local.add_user("bob", "Bob Bertelsen", PASSWORD).await;
    let browser = local.browser();
    let page = answer_with(&fake, &local, &browser, Mode::Good).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("not linked") || page.body.contains("ikke knyttet"));
    assert_eq!(browser.get("/account").await.location(), Some("/login"));
    let done = browser.log_in("bob", PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        local.store().count_upstream_links(&bob.id).await.unwrap(),
        0
    );
    local.stop().await;

    // With it: the password login that follows links the identity; it counts from the next
    // upstream login on, never in the linking login (the attack: a password and one's own
    // eID would otherwise make a Substantial login of another's account).
    let db2 = other_db(&db).await;
    let (fake, local, _) = fake_pair(&db2, &[("SESAM_UPSTREAM_LINK_WITH_PASSWORD", "true")]).await;
    fake.lock().unwrap().cpr = "0202802345".into();
    let bob = local.add_user("bob", "Bob Bertelsen", PASSWORD).await;
    let browser = local.browser();
    let page = answer_with(&fake, &local, &browser, Mode::Good).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("will be linked") || page.body.contains("bliver dit eID knyttet"));
    let done = browser.log_in("bob", PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        local.store().count_upstream_links(&bob.id).await.unwrap(),
        1
    );
    assert!(local
        .audit_events("bob")
        .await
        .contains(&"upstream.linked".to_owned()));
    let devices = browser.get("/account/devices").await;
    let code = browser
        .post_form("/account/devices/activation", &[("csrf", &devices.csrf())])
        .await;
    assert_eq!(
        code.status,
        StatusCode::FORBIDDEN,
        "the linking login is the password's alone: {}",
        code.body
    );
    // Next time the eID alone logs bob in, at the upstream's level.
    let browser = local.browser();
    let page = answer_with(&fake, &local, &browser, Mode::Good).await;
    assert_eq!(page.location(), Some("/account"), "{}", page.body);
    let devices = browser.get("/account/devices").await;
    let code = browser
        .post_form("/account/devices/activation", &[("csrf", &devices.csrf())])
        .await;
    assert_eq!(code.status, StatusCode::OK, "the eID login is Substantial");

    // An account with a stronger way in (here the app) is not linked by a password alone.
    fake.lock().unwrap().cpr = "0303703456".into();
    let carl = local.add_user("carl", "Carl Carlsen", PASSWORD).await;
    local.enrol(&carl, EnrolOptions::default()).await;
    let browser = local.browser();
    let page = answer_with(&fake, &local, &browser, Mode::Good).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let done = browser.log_in("carl", PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        local.store().count_upstream_links(&carl.id).await.unwrap(),
        0
    );
    assert!(local
        .audit_events("carl")
        .await
        .contains(&"upstream.link_refused".to_owned()));
    // The password page says the eID will be linked, with a way out: after "cancel" the
    // password links nothing.
    let dora = local.add_user("dora", "Dora Dahl", PASSWORD).await;
    let browser = local.browser();
    answer_with(&fake, &local, &browser, Mode::Good).await;
    let asked = browser.get("/login").await;
    let password_page = browser
        .post_form("/login", &[("csrf", &asked.csrf()), ("username", "dora")])
        .await;
    let password_page = browser.get(password_page.location().unwrap()).await;
    assert!(
        password_page.body.contains("id=\"upstream-link-notice\""),
        "{}",
        password_page.body
    );
    let cancelled = browser.get("/login/switch").await;
    assert_eq!(cancelled.location(), Some("/login"));
    assert_eq!(
        browser.log_in("dora", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        local.store().count_upstream_links(&dora.id).await.unwrap(),
        0,
        "cancelled: nothing linked"
    );

    // Nor is bob linked a second time, to another identity.
    let browser = local.browser();
    answer_with(&fake, &local, &browser, Mode::Good).await;
    browser.log_in("bob", PASSWORD).await;
    assert_eq!(
        local.store().count_upstream_links(&bob.id).await.unwrap(),
        1
    );
    local.stop().await;
}

/// An issuer (or a URL its discovery names) on a private or link-local address is not
/// fetched unless the operator allows private fetches: the button says the eID service is
/// unavailable, and the audit log says why.
async fn an_upstream_on_a_private_address_is_not_fetched(db: TestDb) {
    for issuer in ["https://10.255.255.1", "https://169.254.169.254"] {
        let local = local_sesam(&db, issuer, "secret", free_port(), &[]).await;
        let browser = local.browser();
        let login = browser.get("/login").await;
        let sent = browser
            .post_form("/login/upstream", &[("csrf", &login.csrf())])
            .await;
        assert_eq!(
            sent.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{issuer}: {}",
            sent.body
        );
        let audit = local.store().list_audit(Some("-"), 10).await.unwrap();
        let refused = audit
            .iter()
            .find(|e| e.event == "login.upstream.unavailable")
            .unwrap_or_else(|| panic!("{issuer}: no audit event"));
        assert!(
            refused.detail.contains("not a public address"),
            "{issuer}: {refused:?}"
        );
        local.stop().await;
    }
}

/// Recovery: anna's only app is gone (lost phone). A Substantial upstream login enrols a
/// new one (a password alone may not: see the first test), and the new app then logs her in
/// without a password.
async fn after_a_lost_phone_the_upstream_login_enrols_a_new_one(db: TestDb) {
    let (fake, local, anna) = fake_pair(&db, &[]).await;
    fake.lock().unwrap().cpr = "0101901234".into();
    local
        .store()
        .set_setting("passwordless", "on", local.now())
        .await
        .unwrap();
    let (_lost, lost_device) = local
        .enrol(
            &anna,
            EnrolOptions {
                display_name: "Mistet telefon".into(),
                ..EnrolOptions::default()
            },
        )
        .await;

    let devices_before = local.store().devices_of_user(&anna.id).await.unwrap().len();

    // The upstream login at Substantial: a new activation code, a new app.
    let browser = local.browser();
    let page = answer_with(&fake, &local, &browser, Mode::Good).await;
    assert_eq!(page.location(), Some("/account"), "{}", page.body);
    let issued = browser.issue_activation().await;
    let code = issued.activation_code().to_lowercase();
    let (new_app, new_device) = AppClient::enroll(
        &local.url(""),
        &code,
        EnrolOptions {
            display_name: "Ny telefon".into(),
            ..EnrolOptions::default()
        },
    )
    .await
    .expect("the new phone enrols");
    assert_eq!(new_device.username, "anna");
    assert_ne!(new_device.device_id, lost_device.device_id);
    assert_eq!(
        local.store().devices_of_user(&anna.id).await.unwrap().len(),
        devices_before + 1
    );

    // The new app logs anna in without a password.
    let later = local.browser();
    assert_eq!(start_login(&later, "anna").await, "/login/wait");
    let shown = code_on(&later.get("/login/wait").await);
    let pending = new_app.pending().await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    new_app
        .answer(&pending[0].id, &Answer::Code(shown))
        .await
        .unwrap();
    let done = later.get("/login/complete").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let account = later.get("/account").await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(
        account.body.contains("data-level=\"substantial\""),
        "{}",
        account.body
    );
    local.stop().await;
}
