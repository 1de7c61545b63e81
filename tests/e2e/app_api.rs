//! The MFA app API driven by `sesam-app`, the reference client: enrolment, signed calls,
//! refused proofs, challenge answers and pushes.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use sesam_app::{
    sign_proof, Answer, AppClient, DeviceUpdate, EnrolOptions, ProofClaims, SigningKey,
};
use sesam_core::{Challenge, ChallengeContext, ChallengeKind, ChallengeState, UnixTime, User};
use sesam_server::challenges;

use crate::harness::{on_both_databases, TestDb, TestServer};
use crate::passwordless::{code_on, start_login};

on_both_databases!(
    an_app_enrolled_from_the_account_page_signs_its_calls,
    an_update_that_makes_the_device_ineligible_shows_why,
    bad_proofs_are_refused_with_401_and_change_nothing,
    bad_enrolments_are_refused_and_use_nothing_up,
    guessing_activation_codes_is_rate_limited,
    a_wrong_code_ends_the_challenge_for_good,
    a_step_up_is_approved_only_with_the_code,
    deny_fraud_and_the_deadline,
    of_two_answers_at_once_exactly_one_wins,
    pushes_go_to_the_outbox_and_a_failed_push_does_not_stop_the_challenge,
    removing_a_device_ends_its_key,
);

fn ios() -> EnrolOptions {
    EnrolOptions {
        display_name: "Anna's iPhone".into(),
        platform: "ios".into(),
        app_version: "3.0.0".into(),
        pin_length: 6,
        push: None,
    }
}

/// A pending code challenge with a known code, made through the core and the store.
pub(crate) async fn challenge_with_code(
    sesam: &TestServer,
    user: &User,
    devices: &[&str],
    code: &str,
) -> Challenge {
    let now = sesam.now();
    let c = Challenge {
        id: uuid::Uuid::new_v4().to_string(),
        user_id: user.id.0.clone(),
        kind: ChallengeKind::Code,
        code: code.parse().unwrap(),
        state: ChallengeState::Pending,
        created_at: now,
        expires_at: now.plus_seconds(120),
        context: ChallengeContext {
            service: "Borgerservice".into(),
            browser: Some("Firefox 140".into()),
            os: Some("Windows".into()),
            client_ip: Some("192.0.2.7".into()),
            location: Some("Aarhus, DK".into()),
        },
        fraud_reported: false,
    };
    let ids: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    sesam.store().create_challenge(&c, &ids).await.unwrap();
    c
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

fn answer_path(id: &str) -> String {
    format!("/api/app/v1/challenges/{id}/answer")
}

/// Sends a raw request with the given Authorization value.
async fn raw(
    app: &AppClient,
    method: Method,
    path: &str,
    auth: Option<String>,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let mut req = app
        .http()
        .request(method, app.url(path))
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(auth) = auth {
        req = req.header(AUTHORIZATION, auth);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

async fn an_app_enrolled_from_the_account_page_signs_its_calls(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    // A first device after a password alone: only where the organisation allows it.
    sesam
        .store()
        .set_setting("first_device_with_password", "true", sesam.now())
        .await
        .unwrap();
    let browser = sesam.browser();
    browser.log_in("anna", "correct horse battery").await;

    let issued = browser.issue_activation().await;
    assert!(
        issued.body.contains("<svg"),
        "a QR code rendered on the server"
    );
    let code = issued.activation_code();
    assert!(
        code.chars().nth(5) == Some('-'),
        "shown as ABCDE-FGHJK: {code}"
    );

    let (app, device) = AppClient::enroll(&sesam.url(""), &code.to_lowercase(), ios())
        .await
        .expect("enrols");
    assert_eq!(device.username, "anna");
    assert!(
        device.passwordless.eligible,
        "eligible the moment it is enrolled: {:?}",
        device.passwordless
    );
    let again = app.device().await.unwrap();
    assert_eq!(again.device_id, device.device_id);
    assert!(app.pending().await.unwrap().is_empty());

    let page = browser.get("/account/devices").await;
    assert!(
        page.body.contains("Anna&#x27;s iPhone") || page.body.contains("Anna&#39;s iPhone"),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-eligible=\"true\""));
    let reused = AppClient::enroll(&sesam.url(""), &code, ios()).await;
    assert_eq!(
        reused.unwrap_err().error_code(),
        Some("invalid_activation_code"),
        "single use"
    );

    let events = sesam.audit_events("anna").await;
    assert!(
        events.contains(&"device.enrolled".to_string()),
        "{events:?}"
    );
    assert_eq!(
        sesam.store().devices_of_user(&anna.id).await.unwrap().len(),
        1
    );
    sesam.stop().await;
}

async fn an_update_that_makes_the_device_ineligible_shows_why(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, ios()).await;

    let update = DeviceUpdate {
        app_version: Some("2.9.0".into()),
        pin_length: Some(4),
        ..DeviceUpdate::default()
    };
    let after = app.update_device(&update).await.unwrap();
    assert!(!after.passwordless.eligible);
    let reasons = after.passwordless.reasons.join(" | ");
    assert!(
        reasons.contains("2.9.0") && reasons.contains("3.0.0"),
        "{reasons}"
    );
    assert!(reasons.contains("PIN has 4 digits"), "{reasons}");

    let browser = sesam.browser();
    browser.log_in("anna", "correct horse battery").await;
    let page = browser.get("/account/devices").await;
    assert!(page.body.contains("data-eligible=\"false\""));
    assert!(page.body.contains("2.9.0"), "the page says why");
    // Not for passwordless, but it still approves a step-up; without a push address the
    // page says the app must be opened.
    assert!(page.body.contains("data-step-up=\"true\""), "{}", page.body);
    assert!(page.body.contains("data-notifications=\"false\""));
    assert!(
        page.body.contains("open the app to see them")
            || page.body.contains("åbn app&#x27;en for at se dem")
            || page.body.contains("åbn app&#39;en for at se dem"),
        "{}",
        page.body
    );

    let back = app
        .update_device(&DeviceUpdate {
            app_version: Some("3.4.1".into()),
            pin_length: Some(6),
            push: Some(Some(("fcm".into(), "fcm-token-1".into()))),
            ..DeviceUpdate::default()
        })
        .await
        .unwrap();
    assert!(back.passwordless.eligible);
    assert_eq!(back.push_provider.as_deref(), Some("fcm"));
    let page = browser.get("/account/devices").await;
    assert!(page.body.contains("data-notifications=\"true\""));
    assert!(page.body.contains("data-eligible=\"true\""));

    for bad in [
        serde_json::json!({"app_version": "three"}),
        serde_json::json!({"pin_length": -1}),
        serde_json::json!({"pin_length": 1000}),
        serde_json::json!({"push": {"provider": "pigeon", "token": "x"}}),
        serde_json::json!({"display_name": ""}),
        serde_json::json!({"colour": "red"}),
    ] {
        let body = serde_json::to_vec(&bad).unwrap();
        let r = app
            .send(Method::PATCH, "/api/app/v1/devices/self", Some(body))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let unchanged = app.device().await.unwrap();
    assert_eq!(
        (unchanged.app_version.as_str(), unchanged.pin_length),
        ("3.4.1", 6),
        "bad updates change nothing"
    );
    sesam.stop().await;
}

async fn bad_proofs_are_refused_with_401_and_change_nothing(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let bo = sesam
        .add_user("bo", "Bo Berg", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, ios()).await;
    let (other, _) = sesam.enrol(&bo, ios()).await;
    let challenge = challenge_with_code(&sesam, &anna, &[&app.profile().device_id], "42").await;
    let path = answer_path(&challenge.id);
    let body = br#"{"code":"42"}"#.to_vec();
    let now = sesam.now().0;
    let claims = |iat: i64| ProofClaims::new("POST", &path, &body, iat);

    let stranger = SigningKey::random(&mut rand::rngs::OsRng);
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no proof", None, "invalid_proof"),
        ("not a JWS", Some("DeviceProof abc".into()), "invalid_proof"),
        ("wrong scheme", Some(format!("Bearer {}", app.proof("POST", &path, &body))), "invalid_proof"),
        (
            "wrong key",
            Some(sesam_app::authorization(&sign_proof(&stranger, &app.proof_header(), &claims(now)))),
            "invalid_proof",
        ),
        ("issued too long ago", Some(app.proof_with(claims(now - 120))), "stale_proof"),
        ("issued in the future", Some(app.proof_with(claims(now + 120))), "stale_proof"),
        (
            "body changed after signing",
            Some(app.proof_with(ProofClaims::new("POST", &path, br#"{"code":"24"}"#, now))),
            "invalid_proof",
        ),
        ("another path", Some(app.proof_with(ProofClaims::new("POST", "/api/app/v1/challenges", &body, now))), "invalid_proof"),
        (
            "unknown device",
            Some(app.proof_with_header(&sesam_app::device_header("no-such-device"), &claims(now))),
            "unknown_device",
        ),
        (
            "alg none",
            Some(sesam_app::authorization(&sesam_app::unsigned_jws(
                &serde_json::json!({"alg": "none", "typ": "sesam-proof+jwt", "kid": app.profile().device_id}),
                &claims(now),
            ))),
            "invalid_proof",
        ),
        (
            "HS256 header",
            Some(app.proof_with_header(
                &serde_json::json!({"alg": "HS256", "typ": "sesam-proof+jwt", "kid": app.profile().device_id}),
                &claims(now),
            )),
            "invalid_proof",
        ),
    ];
    for (name, auth, expected) in cases {
        let (status, json) = raw(&app, Method::POST, &path, auth, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {json}");
        assert_eq!(json["error"], expected, "{name}: {json}");
        assert!(
            json["message"].as_str().is_some_and(|m| m.len() > 10),
            "{name}: a clear message"
        );
    }

    // The same proof twice: the second is a replay.
    let once = app.proof_with(claims(now));
    let (first, _) = raw(
        &app,
        Method::GET,
        "/api/app/v1/challenges",
        Some(once.clone()),
        vec![],
    )
    .await;
    assert_eq!(
        first,
        StatusCode::UNAUTHORIZED,
        "a proof for another request does not fit"
    );
    let get_proof = app.proof("GET", "/api/app/v1/challenges", b"");
    let (ok, _) = raw(
        &app,
        Method::GET,
        "/api/app/v1/challenges",
        Some(get_proof.clone()),
        vec![],
    )
    .await;
    assert_eq!(ok, StatusCode::OK);
    let (replayed, json) = raw(
        &app,
        Method::GET,
        "/api/app/v1/challenges",
        Some(get_proof),
        vec![],
    )
    .await;
    assert_eq!(
        (replayed, json["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("replayed_proof"))
    );

    // Another user's device answering this challenge.
    let (status, json) = raw(
        &other,
        Method::POST,
        &path,
        Some(other.proof("POST", &path, &body)),
        body.clone(),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("challenge_not_for_device"))
    );

    // An oversized body.
    let big = vec![b' '; 100 * 1024];
    let (status, _) = raw(
        &app,
        Method::POST,
        &path,
        Some(app.proof("POST", &path, &big)),
        big.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(
        state_of(&sesam, &challenge.id).await,
        ChallengeState::Pending,
        "nothing changed"
    );
    assert!(app.device().await.unwrap().passwordless.eligible);
    let answered = app
        .answer(&challenge.id, &Answer::Code("42".into()))
        .await
        .unwrap();
    assert_eq!(
        answered.status, "approved",
        "the real answer still works afterwards"
    );
    sesam.stop().await;
}

async fn bad_enrolments_are_refused_and_use_nothing_up(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let store = sesam.store();
    let server = sesam.url("");

    let unknown = AppClient::enroll(&server, "AAAAA-BBBBB", ios())
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.status(), unknown.error_code()),
        (Some(400), Some("invalid_activation_code"))
    );

    let stale = sesam_server::activation::issue(store, &anna.id, UnixTime(sesam.now().0 - 11 * 60))
        .await
        .unwrap();
    let expired = AppClient::enroll(&server, &stale, ios()).await.unwrap_err();
    assert_eq!(
        expired.error_code(),
        Some("invalid_activation_code"),
        "codes last 10 minutes"
    );

    let code = sesam_server::activation::issue(store, &anna.id, sesam.now())
        .await
        .unwrap();
    let enrol_raw = |body: serde_json::Value, key: SigningKey, header_key: Option<SigningKey>| {
        let server = server.clone();
        async move {
            let bytes = serde_json::to_vec(&body).unwrap();
            let path = "/api/app/v1/enrolments";
            let signer = header_key.unwrap_or(key);
            let header = sesam_app::enrolment_header(signer.verifying_key());
            let proof = sign_proof(&signer, &header, &ProofClaims::now("POST", path, &bytes));
            let r = reqwest::Client::new()
                .post(format!("{server}{path}"))
                .header(AUTHORIZATION, sesam_app::authorization(&proof))
                .header(CONTENT_TYPE, "application/json")
                .body(bytes)
                .send()
                .await
                .unwrap();
            (
                r.status(),
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let jwk = sesam_app::public_jwk(key.verifying_key());
    let good = serde_json::json!({
        "activation_code": code, "public_key": jwk, "platform": "android",
        "app_version": "3.0.0", "pin_length": 6, "display_name": "Pixel"
    });
    let with = |field: &str, value: serde_json::Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    let mut off_curve = jwk.clone();
    off_curve["y"] = serde_json::json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let bad_bodies = [
        (
            with("platform", serde_json::json!("windows-phone")),
            "invalid_platform",
        ),
        (
            with("app_version", serde_json::json!("latest")),
            "invalid_app_version",
        ),
        (
            with("pin_length", serde_json::json!(-6)),
            "invalid_pin_length",
        ),
        (
            with("display_name", serde_json::json!("   ")),
            "invalid_display_name",
        ),
        (
            with("display_name", serde_json::json!("Anna\u{202E}enohp")),
            "invalid_display_name",
        ),
        (
            with("display_name", serde_json::json!("Pixel\u{200B}")),
            "invalid_display_name",
        ),
        (
            with("push", serde_json::json!({"provider": "apns", "token": ""})),
            "invalid_push",
        ),
        (
            with(
                "public_key",
                serde_json::json!({"kty": "RSA", "n": "x", "e": "AQAB"}),
            ),
            "invalid_public_key",
        ),
        (serde_json::json!({"activation_code": code}), "invalid_body"),
    ];
    for (body, expected) in bad_bodies {
        let (status, json) = enrol_raw(body.clone(), key.clone(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {json}");
        assert_eq!(json["error"], expected, "{body}: {json}");
    }
    // The key in the body is not the key that signed.
    let other = SigningKey::random(&mut rand::rngs::OsRng);
    let (status, json) = enrol_raw(good.clone(), key.clone(), Some(other)).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_proof"))
    );
    // A public key that is not a point on the curve, signed by "it" (cannot be): refused.
    let (status, _) = enrol_raw(with("public_key", off_curve), key.clone(), None).await;
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED,
        "{status}"
    );

    assert!(
        store.devices_of_user(&anna.id).await.unwrap().is_empty(),
        "nothing enrolled"
    );
    // Not JSON by its Content-Type: 415 before anything else, and nothing used up.
    let bytes = serde_json::to_vec(&good).unwrap();
    let path = "/api/app/v1/enrolments";
    let header = sesam_app::enrolment_header(key.verifying_key());
    let proof = sign_proof(&key, &header, &ProofClaims::now("POST", path, &bytes));
    let r = reqwest::Client::new()
        .post(format!("{server}{path}"))
        .header(AUTHORIZATION, sesam_app::authorization(&proof))
        .header(CONTENT_TYPE, "text/plain")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        r.headers().get("cache-control").unwrap(),
        "no-store",
        "app API answers are not cached"
    );
    let (status, json) = enrol_raw(good.clone(), key.clone(), None).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the code was not used up by the refusals: {json}"
    );
    assert_eq!(json["platform"], "android");

    // The same key again, with a new code: 409, and the code is still good for a new key.
    let code = sesam_server::activation::issue(store, &anna.id, sesam.now())
        .await
        .unwrap();
    let mut again = good.clone();
    again["activation_code"] = serde_json::json!(code);
    let (status, json) = enrol_raw(again.clone(), key, None).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::CONFLICT, Some("key_in_use"))
    );
    let fresh = SigningKey::random(&mut rand::rngs::OsRng);
    again["public_key"] = sesam_app::public_jwk(fresh.verifying_key());
    let (status, json) = enrol_raw(again, fresh, None).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the refused enrolment did not spend the code: {json}"
    );
    sesam.stop().await;
}

async fn guessing_activation_codes_is_rate_limited(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let code = sesam_server::activation::issue(sesam.store(), &anna.id, sesam.now())
        .await
        .unwrap();
    for guess in 0..10 {
        let wrong = AppClient::enroll(&sesam.url(""), &format!("AAAAA-{guess:05}"), ios())
            .await
            .unwrap_err();
        assert_eq!(
            wrong.error_code(),
            Some("invalid_activation_code"),
            "guess {guess}"
        );
    }
    let blocked = AppClient::enroll(&sesam.url(""), &code, ios())
        .await
        .unwrap_err();
    assert_eq!(
        (blocked.status(), blocked.error_code()),
        (Some(429), Some("too_many_attempts"))
    );
    sesam.clock.advance(15 * 60 + 1);
    let code = sesam_server::activation::issue(sesam.store(), &anna.id, sesam.now())
        .await
        .unwrap();
    // The proof's iat must match the server's clock, which moved: enrol by hand at that time.
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let body = serde_json::to_vec(&serde_json::json!({
        "activation_code": code, "public_key": sesam_app::public_jwk(key.verifying_key()),
        "platform": "ios", "app_version": "3.0.0", "pin_length": 6, "display_name": "Phone"
    }))
    .unwrap();
    let path = "/api/app/v1/enrolments";
    let claims = ProofClaims::new("POST", path, &body, sesam.now().0);
    let proof = sign_proof(
        &key,
        &sesam_app::enrolment_header(key.verifying_key()),
        &claims,
    );
    let r = reqwest::Client::new()
        .post(sesam.url(path))
        .header(AUTHORIZATION, sesam_app::authorization(&proof))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "after the window enrolment works again"
    );
    sesam.stop().await;
}

async fn a_wrong_code_ends_the_challenge_for_good(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, device) = sesam.enrol(&anna, ios()).await;
    let challenge = challenge_with_code(&sesam, &anna, &[&device.device_id], "42").await;

    let pending = app.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].service, "Borgerservice");
    assert_eq!(pending[0].browser.as_deref(), Some("Firefox 140"));
    assert_eq!(pending[0].location.as_deref(), Some("Aarhus, DK"));
    let raw_list: serde_json::Value = app
        .send(Method::GET, "/api/app/v1/challenges", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = raw_list["challenges"][0].as_object().unwrap();
    assert!(!listed.contains_key("code"), "never the code: {raw_list}");
    assert!(
        !listed.values().any(|v| v == "42" || v == 42),
        "never the code: {raw_list}"
    );

    let wrong = app
        .answer(&challenge.id, &Answer::Code("24".into()))
        .await
        .unwrap();
    assert_eq!(wrong.status, "wrong_code");
    let retry = app
        .answer(&challenge.id, &Answer::Code("42".into()))
        .await
        .unwrap_err();
    assert_eq!(
        (retry.status(), retry.error_code()),
        (Some(409), Some("challenge_not_pending"))
    );
    assert_eq!(
        state_of(&sesam, &challenge.id).await,
        ChallengeState::WrongCode
    );
    assert!(app.pending().await.unwrap().is_empty());

    for bad in [
        r#"{"code":"42","decision":"approve"}"#,
        r#"{}"#,
        r#"{"decision":"maybe"}"#,
        "not json",
    ] {
        let c = challenge_with_code(&sesam, &anna, &[&device.device_id], "42").await;
        let r = app
            .send(
                Method::POST,
                &answer_path(&c.id),
                Some(bad.as_bytes().to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            state_of(&sesam, &c.id).await,
            ChallengeState::Pending,
            "{bad} changed nothing"
        );
    }
    sesam.stop().await;
}

async fn a_step_up_is_approved_only_with_the_code(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .store()
        .set_setting("required_level", "substantial", sesam.now())
        .await
        .unwrap();
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, ios()).await;
    let browser = sesam.browser();
    assert_eq!(
        browser
            .log_in("anna", "correct horse battery")
            .await
            .location(),
        Some("/login/wait"),
        "a password alone is not Substantial: step-up"
    );
    let code = code_on(&browser.get("/login/wait").await);
    let pending = app.pending().await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, "approve");
    let id = pending[0].id.clone();

    // A plain approval, as an old app sent it: refused, and nothing moves.
    let r = app
        .send(
            Method::POST,
            &answer_path(&id),
            Some(br#"{"decision":"approve"}"#.to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "code_required", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("code shown in the browser"),
        "{body}"
    );
    assert_eq!(state_of(&sesam, &id).await, ChallengeState::Pending);
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/login/wait"),
        "still waiting"
    );
    assert!(browser
        .get("/account")
        .await
        .body
        .contains("data-level=\"low\""));
    assert!(!sesam
        .audit_events("anna")
        .await
        .contains(&"login.step_up.succeeded".to_string()));

    // The number on the wait page still approves the same request.
    assert_eq!(app.pending().await.unwrap()[0].id, id);
    assert_eq!(
        app.answer(&id, &Answer::Code(code)).await.unwrap().status,
        "approved"
    );
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/account")
    );
    assert!(browser
        .get("/account")
        .await
        .body
        .contains("data-level=\"substantial\""));
    sesam.stop().await;
}

async fn deny_fraud_and_the_deadline(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, device) = sesam.enrol(&anna, ios()).await;
    let id = device.device_id.as_str();

    let denied = challenge_with_code(&sesam, &anna, &[id], "42").await;
    assert_eq!(
        app.answer(&denied.id, &Answer::Deny).await.unwrap().status,
        "rejected"
    );
    assert_eq!(state_of(&sesam, &denied.id).await, ChallengeState::Rejected);

    let fraud = challenge_with_code(&sesam, &anna, &[id], "42").await;
    assert_eq!(
        app.answer(&fraud.id, &Answer::ReportFraud)
            .await
            .unwrap()
            .status,
        "rejected"
    );
    let reported = sesam.store().get_user(&anna.id).await.unwrap();
    assert!(
        reported.passwordless_locked,
        "fraud locks passwordless for the user"
    );
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"challenge.fraud_reported".to_string()));
    sesam
        .browser()
        .log_in("anna", "correct horse battery")
        .await;
    assert!(
        !sesam
            .store()
            .get_user(&anna.id)
            .await
            .unwrap()
            .passwordless_locked,
        "a password login clears it"
    );

    let late = challenge_with_code(&sesam, &anna, &[id], "42").await;
    sesam.clock.advance(121);
    let path = answer_path(&late.id);
    let body = br#"{"code":"42"}"#.to_vec();
    let proof = app.proof_with(ProofClaims::new("POST", &path, &body, sesam.now().0));
    let (status, json) = raw(&app, Method::POST, &path, Some(proof), body).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (StatusCode::CONFLICT, Some("challenge_expired")),
        "{json}"
    );
    assert_eq!(
        state_of(&sesam, &late.id).await,
        ChallengeState::Pending,
        "expiry is not an answer"
    );
    sesam.stop().await;
}

async fn of_two_answers_at_once_exactly_one_wins(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (phone, d1) = sesam.enrol(&anna, ios()).await;
    let (tablet, d2) = sesam
        .enrol(
            &anna,
            EnrolOptions {
                platform: "android".into(),
                ..ios()
            },
        )
        .await;
    for round in 0..5 {
        let c = challenge_with_code(&sesam, &anna, &[&d1.device_id, &d2.device_id], "42").await;
        let right = Answer::Code("42".into());
        let (a, b) = tokio::join!(phone.answer(&c.id, &right), tablet.answer(&c.id, &right));
        let wins = [&a, &b]
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|r| r.status == "approved"))
            .count();
        let conflicts = [&a, &b]
            .iter()
            .filter(|r| r.as_ref().is_err_and(|e| e.status() == Some(409)))
            .count();
        assert_eq!((wins, conflicts), (1, 1), "round {round}: {a:?} / {b:?}");
    }
    sesam.stop().await;
}

async fn pushes_go_to_the_outbox_and_a_failed_push_does_not_stop_the_challenge(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let opts = EnrolOptions {
        push: Some(("fcm".into(), "fcm-token-anna".into())),
        ..ios()
    };
    let (app, _) = sesam.enrol(&anna, opts).await;
    let devices = sesam.store().devices_of_user(&anna.id).await.unwrap();
    let started = challenges::start(
        &sesam.server.state,
        &anna,
        ChallengeKind::Code,
        &devices,
        ChallengeContext::default(),
        120,
    )
    .await
    .unwrap();
    assert_eq!(started.unreached, 0);
    assert_eq!(
        started.pushes.await.unwrap(),
        vec![challenges::PushOutcome::Delivered]
    );
    let pushes = sesam.store().outbox_pushes().await.unwrap();
    assert_eq!(
        pushes,
        vec![(
            "fcm".into(),
            "fcm-token-anna".into(),
            started.challenge.id.clone()
        )]
    );
    let second = challenges::start(
        &sesam.server.state,
        &anna,
        ChallengeKind::Code,
        &devices,
        ChallengeContext::default(),
        120,
    )
    .await
    .unwrap();
    assert_eq!(
        state_of(&sesam, &started.challenge.id).await,
        ChallengeState::Cancelled,
        "a new login cancels the old"
    );
    let code = second.challenge.code.to_string();
    assert_eq!(
        app.answer(&second.challenge.id, &Answer::Code(code))
            .await
            .unwrap()
            .status,
        "approved"
    );
    let clock = sesam.clock.clone();
    sesam.stop().await;

    // Live push to an APNs that cannot be reached: the challenge still stands and the app pulls it.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("AuthKey.p8");
    let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(
        &p256::SecretKey::random(&mut rand::rngs::OsRng),
        Default::default(),
    )
    .unwrap();
    std::fs::write(&key_file, pem.as_bytes()).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let config = crate::harness::test_config_with(
        &db.url,
        &[
            ("SESAM_PUSH_PROVIDER", "live"),
            ("SESAM_APNS_BASE_URL", &dead_url),
            ("SESAM_APNS_KEY_FILE", key_file.to_str().unwrap()),
            ("SESAM_APNS_KEY_ID", "ABC123DEFG"),
            ("SESAM_APNS_TEAM_ID", "DEF123GHIJ"),
            ("SESAM_APNS_TOPIC", "dk.sesam.app"),
        ],
    );
    let sesam = TestServer::start_with(clock, config).await;
    let mut profile = app.profile().clone();
    profile.server = sesam.url("");
    let app = AppClient::from_profile(profile);
    app.update_device(&DeviceUpdate {
        push: Some(Some((
            "apns".into(),
            "a1b2c3d4e5f60718293a4b5c6d7e8f90".into(),
        ))),
        ..DeviceUpdate::default()
    })
    .await
    .unwrap();
    let devices = sesam.store().devices_of_user(&anna.id).await.unwrap();
    let started = challenges::start(
        &sesam.server.state,
        &anna,
        ChallengeKind::Code,
        &devices,
        ChallengeContext::default(),
        120,
    )
    .await
    .unwrap();
    assert_eq!(started.unreached, 0, "the device has a push address");
    assert_eq!(
        started.pushes.await.unwrap(),
        vec![challenges::PushOutcome::RetryScheduled],
        "an unreachable provider is tried again later"
    );
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"push.retry_scheduled".to_string()));
    let queued = sesam.store().push_retries().await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].0.challenge_id, started.challenge.id);
    let pulled = app.pending().await.unwrap();
    assert_eq!(pulled.len(), 1, "the app can still pull the challenge");
    assert_eq!(pulled[0].id, started.challenge.id);
    sesam.stop().await;
}

async fn removing_a_device_ends_its_key(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let bo = sesam
        .add_user("bo", "Bo Berg", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, ios()).await;
    let (kept, kept_view) = sesam.enrol(&anna, ios()).await;
    let (_, bos_device) = sesam.enrol(&bo, ios()).await;

    app.delete_device().await.unwrap();
    let gone = app.device().await.unwrap_err();
    assert_eq!(
        (gone.status(), gone.error_code()),
        (Some(401), Some("unknown_device"))
    );

    // On the account page: another user's device is not there to rename or remove.
    let browser = sesam.browser();
    browser.log_in("anna", "correct horse battery").await;
    let csrf = browser.get("/account/devices").await.csrf();
    let foreign = browser
        .post_form(
            &format!("/account/devices/{}/remove", bos_device.device_id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    let forged = browser
        .post_form(
            &format!("/account/devices/{}/remove", kept_view.device_id),
            &[("csrf", "x")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let bad_name = browser
        .post_form(
            &format!("/account/devices/{}/rename", kept_view.device_id),
            &[("csrf", &csrf), ("name", "  ")],
        )
        .await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);
    let renamed = browser
        .post_form(
            &format!("/account/devices/{}/rename", kept_view.device_id),
            &[("csrf", &csrf), ("name", "Work phone")],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER);
    assert_eq!(kept.device().await.unwrap().display_name, "Work phone");
    // A password login may rename, but not remove (that needs the app).
    let refused = browser
        .post_form(
            &format!("/account/devices/{}/remove", kept_view.device_id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        sesam.store().devices_of_user(&anna.id).await.unwrap().len(),
        1
    );
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let owner = sesam.browser();
    assert_eq!(start_login(&owner, "anna").await, "/login/wait");
    let code = code_on(&owner.get("/login/wait").await);
    let pending = kept.pending().await.unwrap();
    kept.answer(&pending[0].id, &sesam_app::Answer::Code(code))
        .await
        .unwrap();
    assert_eq!(
        owner.get("/login/complete").await.location(),
        Some("/account")
    );
    let csrf = owner.get("/account/devices").await.csrf();
    let removed = owner
        .post_form(
            &format!("/account/devices/{}/remove", kept_view.device_id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    assert!(sesam
        .store()
        .devices_of_user(&anna.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        sesam.store().devices_of_user(&bo.id).await.unwrap().len(),
        1,
        "bo's device untouched"
    );
    sesam.stop().await;
}

#[tokio::test]
async fn the_openapi_document_and_the_routes_agree() {
    let db = TestDb::sqlite();
    let sesam = TestServer::start(&db).await;
    let doc: serde_json::Value = reqwest::get(sesam.url("/api/app/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = sesam_server::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(
        documented, served,
        "every served route is documented and vice versa"
    );

    // And each route is really served: without a proof it answers 401, never the 404 fallback.
    let client = reqwest::Client::new();
    for (method, path) in &served {
        let url = sesam.url(&format!("/api/app/v1{}", path.replace("{id}", "x")));
        let r = client
            .request(method.to_uppercase().parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        let expected = if path == "/openapi.json" {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        assert_eq!(r.status(), expected, "{method} {path}");
    }
    let none = client
        .get(sesam.url("/api/app/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    sesam.stop().await;
}
