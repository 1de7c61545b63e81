//! Ways in from issue 17: the QR code on a desktop wait page scanned by `sesam-app`, the
//! "Open the Sesam app" link on a phone, and the association files that let the app claim it.

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sesam_app::{Answer, AppClient, ClientError, EnrolOptions, ProofClaims, SigningKey};
use sesam_core::{ChallengeState, ManualClock};

use crate::harness::{on_both_databases, test_config_with, Browser, Page, TestDb, TestServer};
use crate::passwordless::{code_on, start_login};

on_both_databases!(
    a_qr_login_completes_from_sesam_app,
    a_replayed_expired_or_foreign_payload_is_refused,
    bad_scan_requests_are_refused_and_change_nothing,
    only_the_scanning_device_confirms_and_one_of_two_parallel_scans_wins,
    the_well_known_files_validate_and_the_phone_gets_the_app_link,
);

const FINGERPRINT: &str =
    "14:6D:E9:83:C5:73:06:50:D8:EE:B9:95:2F:34:FC:64:16:A0:83:42:E6:1D:BE:A8:8A:04:96:B2:3F:CF:44:E5";
const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";

/// A server with passwordless on. After its clock is moved on, proofs are made at its time.
async fn server(db: &TestDb) -> TestServer {
    let sesam = TestServer::start_with_clock(db, ManualClock::starting_now()).await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    sesam
}

async fn anna(sesam: &TestServer) -> AppClient {
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    sesam.enrol(&anna, EnrolOptions::default()).await.0
}

fn browser(sesam: &TestServer, user_agent: &str) -> Browser {
    let mut headers = HeaderMap::new();
    headers.insert(USER_AGENT, HeaderValue::from_str(user_agent).unwrap());
    Browser::with_headers(sesam.url(""), headers)
}

/// The text of the wait page's QR code.
fn payload_on(page: &Page) -> String {
    let marker = "data-payload=\"";
    let start = page
        .body
        .find(marker)
        .unwrap_or_else(|| panic!("no QR code on:\n{}", page.body))
        + marker.len();
    let end = page.body[start..].find('"').unwrap() + start;
    page.body[start..end].to_owned()
}

/// A login in `browser` up to its wait page: the page, its QR text and the challenge id.
async fn waiting(browser: &Browser) -> (Page, String, String) {
    assert_eq!(start_login(browser, "anna").await, "/login/wait");
    let page = browser.get("/login/wait").await;
    assert_eq!(page.status, StatusCode::OK);
    let payload = payload_on(&page);
    let id = payload
        .strip_prefix("sesam-login:v1:")
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_owned();
    (page, payload, id)
}

async fn status(browser: &Browser) -> String {
    let page = browser.get("/login/wait/status").await;
    let v: Value = serde_json::from_str(&page.body).unwrap();
    v["status"].as_str().unwrap().to_owned()
}

async fn state_of(sesam: &TestServer, id: &str) -> ChallengeState {
    sesam
        .store()
        .get_challenge(id)
        .await
        .unwrap()
        .unwrap()
        .state
}

fn refused(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Refused { status, error, .. } => (status, error),
        other => panic!("not a refusal: {other:?}"),
    }
}

/// `POST /scans` with a proof made at the server's time (its clock may run behind).
async fn scan_at_server_time(sesam: &TestServer, app: &AppClient, payload: &str) -> (u16, Value) {
    let path = "/api/app/v1/scans";
    let body = serde_json::to_vec(&json!({ "payload": payload })).unwrap();
    send_at(sesam, app, path, body).await
}

async fn send_at(sesam: &TestServer, app: &AppClient, path: &str, body: Vec<u8>) -> (u16, Value) {
    let proof = app.proof_with(ProofClaims::new("POST", path, &body, sesam.now().0));
    let r = app
        .http()
        .post(app.url(path))
        .header(AUTHORIZATION, proof)
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn a_qr_login_completes_from_sesam_app(db: TestDb) {
    let sesam = server(&db).await;
    let app = anna(&sesam).await;
    let browser = browser(&sesam, DESKTOP);
    let (page, payload, id) = waiting(&browser).await;
    let code = code_on(&page);
    assert!(page.body.contains("<svg"), "the QR code is drawn");
    assert!(
        !payload.contains(&format!(":{code}"))
            && payload.len() == "sesam-login:v1:".len() + 36 + 1 + 43,
        "the QR code carries the challenge and a token, not the code: {payload}"
    );
    assert_eq!(
        payload_on(&browser.get("/login/wait").await),
        payload,
        "a reload shows the same code"
    );

    // The app scans: it sees the usual context, then confirms.
    let scanned = app.scan(&payload).await.unwrap();
    assert_eq!(scanned.challenge.id, id);
    assert_eq!(scanned.approve_with, "confirm_scan");
    assert_eq!(scanned.challenge.kind, "code");
    assert_eq!(scanned.challenge.browser.as_deref(), Some("Chrome"));
    assert_eq!(
        status(&browser).await,
        "pending",
        "a scan alone approves nothing"
    );
    let answered = app.answer(&id, &Answer::ConfirmScan).await.unwrap();
    assert_eq!(answered.status, "approved");

    assert_eq!(status(&browser).await, "approved");
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    assert!(browser
        .get("/account")
        .await
        .body
        .contains("data-level=\"substantial\""));
    let events = sesam.audit_events("anna").await;
    assert!(
        events.contains(&"challenge.scanned".to_string()),
        "{events:?}"
    );
    assert!(events.contains(&"login.passwordless.succeeded".to_string()));

    // The photo of the screen afterwards: used.
    assert_eq!(
        refused(app.scan(&payload).await.unwrap_err()),
        (409, "payload_used".into())
    );
    sesam.stop().await;
}

async fn a_replayed_expired_or_foreign_payload_is_refused(db: TestDb) {
    let sesam = server(&db).await;
    let app = anna(&sesam).await;
    let browser = browser(&sesam, DESKTOP);

    // Without a scan a confirmation is no answer; the number still works afterwards... but
    // first a replay: the second scan of one code is refused, the first one still counts.
    let (page, payload, id) = waiting(&browser).await;
    assert_eq!(
        refused(app.answer(&id, &Answer::ConfirmScan).await.unwrap_err()),
        (400, "scan_required".into())
    );
    assert_eq!(state_of(&sesam, &id).await, ChallengeState::Pending);
    app.scan(&payload).await.unwrap();
    assert_eq!(
        refused(app.scan(&payload).await.unwrap_err()),
        (409, "payload_used".into())
    );
    let bob = sesam.add_user("bob", "Bob", "correct horse battery").await;
    let (bobs_app, _) = sesam.enrol(&bob, EnrolOptions::default()).await;
    assert_eq!(
        refused(bobs_app.scan(&payload).await.unwrap_err()),
        (401, "challenge_not_for_device".into()),
        "another user's app cannot use Anna's code"
    );
    assert_eq!(
        refused(
            bobs_app
                .answer(&id, &Answer::ConfirmScan)
                .await
                .unwrap_err()
        )
        .0,
        401
    );
    assert_eq!(state_of(&sesam, &id).await, ChallengeState::Pending);
    assert_eq!(
        app.answer(&id, &Answer::Code(code_on(&page)))
            .await
            .unwrap()
            .status,
        "approved",
        "the code still approves"
    );

    // Expired: the code is no longer valid than its challenge.
    let other = crate::harness::Browser::new(sesam.url(""));
    let (_, old_payload, old_id) = waiting(&other).await;
    sesam.clock.advance(121);
    let (status_code, body) = scan_at_server_time(&sesam, &app, &old_payload).await;
    assert_eq!(
        (status_code, body["error"].as_str()),
        (409, Some("payload_expired")),
        "{body}"
    );
    assert_eq!(status(&other).await, "expired");
    assert_eq!(state_of(&sesam, &old_id).await, ChallengeState::Expired);

    // Another login's code: a newer login replaced it (expired), and its token under the
    // newer challenge's id is a wrong answer that ends that challenge (one attempt).
    let third = browser_with_desktop(&sesam);
    let (_, first_payload, first_id) = waiting(&third).await;
    let fourth = browser_with_desktop(&sesam);
    let (_, _, second_id) = waiting(&fourth).await;
    assert_ne!(first_id, second_id);
    let (code, body) = scan_at_server_time(&sesam, &app, &first_payload).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (409, Some("payload_expired")),
        "{body}"
    );
    let token = first_payload.rsplit(':').next().unwrap();
    let forged = format!("sesam-login:v1:{second_id}:{token}");
    let (code, body) = scan_at_server_time(&sesam, &app, &forged).await;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("wrong_payload")),
        "{body}"
    );
    assert_eq!(
        state_of(&sesam, &second_id).await,
        ChallengeState::WrongCode
    );
    assert_eq!(status(&fourth).await, "wrong_code");
    sesam.stop().await;
}

/// Anna has two devices; both get the request. Both scan at once: one scan wins, the other
/// is told the code was used; and only the device that scanned may confirm.
async fn only_the_scanning_device_confirms_and_one_of_two_parallel_scans_wins(db: TestDb) {
    let sesam = server(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (phone, _) = sesam.enrol(&anna, EnrolOptions::default()).await;
    let (tablet, _) = sesam.enrol(&anna, EnrolOptions::default()).await;
    let browser = browser(&sesam, DESKTOP);
    let (_, payload, id) = waiting(&browser).await;
    let (a, b) = tokio::join!(phone.scan(&payload), tablet.scan(&payload));
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one of two parallel scans wins"
    );
    let (winner, loser, lost) = match (a, b) {
        (Ok(_), Err(e)) => (&phone, &tablet, e),
        (Err(e), Ok(_)) => (&tablet, &phone, e),
        _ => unreachable!(),
    };
    assert_eq!(refused(lost), (409, "payload_used".into()));
    assert_eq!(
        refused(loser.answer(&id, &Answer::ConfirmScan).await.unwrap_err()),
        (400, "scan_required".into()),
        "the device that did not scan cannot confirm"
    );
    assert_eq!(state_of(&sesam, &id).await, ChallengeState::Pending);
    assert_eq!(
        winner
            .answer(&id, &Answer::ConfirmScan)
            .await
            .unwrap()
            .status,
        "approved"
    );
    assert_eq!(state_of(&sesam, &id).await, ChallengeState::Approved);
    assert_eq!(status(&browser).await, "approved");
    sesam.stop().await;
}

fn browser_with_desktop(sesam: &TestServer) -> Browser {
    browser(sesam, DESKTOP)
}

async fn bad_scan_requests_are_refused_and_change_nothing(db: TestDb) {
    let sesam = server(&db).await;
    let app = anna(&sesam).await;
    let browser = browser(&sesam, DESKTOP);
    let (_, payload, id) = waiting(&browser).await;
    let path = "/api/app/v1/scans";

    let malformed = [
        "".to_owned(),
        "hello".to_owned(),
        format!(" {payload}"),
        format!("{payload}\n"),
        payload.replace("sesam-login:v1:", "sesam-login:v2:"),
        format!("{payload}A"),
        payload[..payload.len() - 1].to_owned(),
        format!(
            "sesam-login:v1:{}:{}",
            "a".repeat(65),
            payload.rsplit(':').next().unwrap()
        ),
        "sesam-login:v1:../../x:abc".to_owned(),
        format!("sesam-login:v1:{id}:{}", "A".repeat(60_000)),
    ];
    for text in &malformed {
        let (code, body) = scan_at_server_time(&sesam, &app, text).await;
        assert_eq!(
            (code, body["error"].as_str()),
            (400, Some("invalid_payload")),
            "{text:?}: {body}"
        );
    }
    for body in [
        json!({}),
        json!({"payload": 42}),
        json!({"payload": null}),
        json!({"payload": [payload]}),
        json!({"payload": payload, "code": "42"}),
        json!([payload]),
    ] {
        let (code, answer) = send_at(&sesam, &app, path, serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(
            (code, answer["error"].as_str()),
            (400, Some("invalid_body")),
            "{body}"
        );
    }

    // A repeated key, and arrays for the other calls too (they would fill fields by position).
    let twice = format!(r#"{{"payload": "{payload}", "payload": "x"}}"#).into_bytes();
    let (code, answer) = send_at(&sesam, &app, path, twice).await;
    assert_eq!(
        (code, answer["error"].as_str()),
        (400, Some("invalid_body")),
        "{answer}"
    );
    let answer_path = format!("/api/app/v1/challenges/{id}/answer");
    for body in [json!(["42"]), json!(["42", null]), json!([null, "deny"])] {
        let (code, answer) = send_at(
            &sesam,
            &app,
            &answer_path,
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        assert_eq!(
            (code, answer["error"].as_str()),
            (400, Some("invalid_body")),
            "{body}: {answer}"
        );
    }

    // Unsigned, signed by another key, signed for another body.
    let body = serde_json::to_vec(&json!({ "payload": payload })).unwrap();
    let post = |auth: Option<String>, body: Vec<u8>| {
        let mut r = app
            .http()
            .post(app.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(auth) = auth {
            r = r.header(AUTHORIZATION, auth);
        }
        async move { r.send().await.unwrap().status() }
    };
    assert_eq!(post(None, body.clone()).await, StatusCode::UNAUTHORIZED);
    let stranger = SigningKey::random(&mut rand::rngs::OsRng);
    let claims = ProofClaims::new("POST", path, &body, sesam.now().0);
    let forged = sesam_app::authorization(&sesam_app::sign_proof(
        &stranger,
        &app.proof_header(),
        &claims,
    ));
    assert_eq!(
        post(Some(forged), body.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    let other_body = app.proof_with(ProofClaims::new("POST", path, b"{}", sesam.now().0));
    assert_eq!(
        post(Some(other_body), body.clone()).await,
        StatusCode::UNAUTHORIZED
    );
    let as_text = app
        .http()
        .post(app.url(path))
        .header(CONTENT_TYPE, "text/plain")
        .header(
            AUTHORIZATION,
            app.proof_with(ProofClaims::new("POST", path, &body, sesam.now().0)),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(as_text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let get = app.send(Method::GET, path, None).await.unwrap().status();
    assert_eq!(get, StatusCode::METHOD_NOT_ALLOWED);

    // None of it touched the login or used the code.
    assert_eq!(state_of(&sesam, &id).await, ChallengeState::Pending);
    let scan = sesam.store().get_scan(&id).await.unwrap().unwrap();
    assert_eq!((scan.scanned_by, scan.scanned_at), (None, None));
    assert_eq!(status(&browser).await, "pending");
    let (code, _) = scan_at_server_time(&sesam, &app, &payload).await;
    assert_eq!(code, 200, "the code still works");
    sesam.stop().await;
}

/// `value` is a list of strings, each matching `ok`.
fn strings(value: &Value, ok: impl Fn(&str) -> bool) -> bool {
    value
        .as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(|v| v.as_str().is_some_and(&ok)))
}

fn is_fingerprint(fp: &str) -> bool {
    let pairs: Vec<&str> = fp.split(':').collect();
    pairs.len() == 32
        && pairs.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        })
}

/// The Apple App Site Association format for universal links (the `components` form).
fn check_aasa(doc: &Value) {
    let top = doc.as_object().expect("an object");
    assert!(
        top.keys()
            .all(|k| ["applinks", "webcredentials", "appclips"].contains(&k.as_str())),
        "{doc}"
    );
    let details = doc["applinks"]["details"]
        .as_array()
        .expect("applinks.details is a list");
    assert!(!details.is_empty());
    for detail in details {
        assert!(
            strings(&detail["appIDs"], |id| {
                id.split_once('.').is_some_and(|(team, bundle)| {
                    team.len() == 10
                        && team
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                        && !bundle.is_empty()
                })
            }),
            "appIDs are TEAMID.bundle.id: {detail}"
        );
        let components = detail["components"]
            .as_array()
            .expect("components is a list");
        assert!(!components.is_empty());
        for c in components {
            let c = c.as_object().expect("a component is an object");
            assert!(
                c.keys().all(|k| [
                    "/",
                    "?",
                    "#",
                    "exclude",
                    "comment",
                    "caseSensitive",
                    "percentEncoded"
                ]
                .contains(&k.as_str())),
                "{c:?}"
            );
            assert!(c["/"].as_str().is_some_and(|p| p.starts_with('/')), "{c:?}");
            if let Some(q) = c.get("?") {
                assert!(
                    q.as_object()
                        .is_some_and(|q| q.values().all(Value::is_string)),
                    "{c:?}"
                );
            }
        }
    }
}

/// Google's Digital Asset Links format for app links.
fn check_assetlinks(doc: &Value) {
    let statements = doc.as_array().expect("a list of statements");
    assert!(!statements.is_empty());
    for s in statements {
        let s = s.as_object().expect("a statement is an object");
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            s["relation"],
            json!(["delegate_permission/common.handle_all_urls"])
        );
        let target = s["target"].as_object().expect("target is an object");
        assert_eq!(target.len(), 3, "{target:?}");
        assert_eq!(target["namespace"], "android_app");
        assert!(target["package_name"]
            .as_str()
            .is_some_and(|p| p.contains('.')));
        assert!(
            strings(&target["sha256_cert_fingerprints"], is_fingerprint),
            "{target:?}"
        );
    }
}

async fn the_well_known_files_validate_and_the_phone_gets_the_app_link(db: TestDb) {
    let config = test_config_with(
        &db.url,
        &[
            ("SESAM_APPLE_APP_IDS", "ABCDE12345.dk.sesam.app"),
            ("SESAM_ANDROID_PACKAGE", "dk.sesam.app"),
            ("SESAM_ANDROID_CERT_FINGERPRINTS", FINGERPRINT),
        ],
    );
    let sesam = TestServer::start_with(ManualClock::starting_now(), config).await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let _app = anna(&sesam).await;
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, check) in [
        (
            "/.well-known/apple-app-site-association",
            check_aasa as fn(&Value),
        ),
        ("/.well-known/assetlinks.json", check_assetlinks),
    ] {
        let r = raw.get(sesam.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}: no redirect");
        assert_eq!(
            r.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{path}"
        );
        let doc: Value = r.json().await.unwrap();
        check(&doc);
    }
    let aasa: Value = raw
        .get(sesam.url("/.well-known/apple-app-site-association"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        aasa["applinks"]["details"][0]["components"][0]["/"],
        "/app/open"
    );

    // The wait page on a phone: the app link with the challenge id and the way back, never
    // the code; on a computer the same page draws the QR code first.
    let phone = browser(&sesam, IPHONE);
    let (page, _, id) = waiting(&phone).await;
    let code = code_on(&page);
    assert!(
        page.body.contains("class=\"same-phone on-phone\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("class=\"qr-login on-phone\""));
    let href_at =
        page.body.find("id=\"open-app\" href=\"").unwrap() + "id=\"open-app\" href=\"".len();
    let href = &page.body[href_at..href_at + page.body[href_at..].find('"').unwrap()];
    let link = reqwest::Url::parse(&href.replace("&amp;", "&").replace("&#38;", "&")).unwrap();
    assert_eq!(link.path(), "/app/open");
    let query: Vec<(String, String)> = link.query_pairs().into_owned().collect();
    assert_eq!(
        query,
        vec![
            ("challenge".to_owned(), id.clone()),
            (
                "return".to_owned(),
                format!("{}/login/wait", sesam.server.state.config.public_url)
            ),
        ]
    );
    assert!(
        !code.is_empty(),
        "the page shows the code; the link (two parameters) does not"
    );
    let (desktop, _, _) = waiting(&browser(&sesam, DESKTOP)).await;
    assert!(!desktop.body.contains("on-phone"));
    assert!(desktop.body.contains("id=\"qr\""));

    // Opened in a browser (no app claimed it): a page that leads back; bad ids are refused.
    let fallback = raw
        .get(sesam.url(&format!("/app/open?challenge={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(fallback.status(), StatusCode::OK);
    assert!(fallback
        .text()
        .await
        .unwrap()
        .contains("href=\"/login/wait\""));
    for bad in [
        "",
        "?challenge=",
        "?challenge=a%20b",
        "?challenge=%3Cscript%3E",
    ] {
        let r = raw
            .get(sesam.url(&format!("/app/open{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    sesam.stop().await;

    // Without configuration there is nothing to associate; bad values stop the start.
    let plain_db = TestDb::sqlite();
    let plain = TestServer::start(&plain_db).await;
    for path in [
        "/.well-known/apple-app-site-association",
        "/.well-known/assetlinks.json",
    ] {
        let r = raw.get(plain.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    plain.stop().await;
    for (key, value) in [
        ("SESAM_APPLE_APP_IDS", "dk.sesam.app"),
        ("SESAM_ANDROID_CERT_FINGERPRINTS", FINGERPRINT),
    ] {
        let e = sesam_server::Config::load(None, vec![(key.to_owned(), value.to_owned())])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("apple_app_ids") || e.contains("android_package"),
            "{e}"
        );
    }

    // The demo sends the link to the demo phone, which plays the app.
    let demo_db = TestDb::sqlite();
    let demo = TestServer::start_with(
        ManualClock::starting_now(),
        test_config_with(&demo_db.url, &[("SESAM_DEMO", "true")]),
    )
    .await;
    let r = raw
        .get(demo.url("/app/open?challenge=6f1c2d9e-0b7a-4e39-9a53-2f0d6c1b8e47"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers().get(LOCATION).and_then(|v| v.to_str().ok()),
        Some("/demo/phone?challenge=6f1c2d9e-0b7a-4e39-9a53-2f0d6c1b8e47&return=%2Flogin%2Fwait")
    );
    demo.stop().await;
}
