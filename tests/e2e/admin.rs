//! The admin portal: access, the passwordless switch with its preview, users, audit log.

use reqwest::StatusCode;
use sesam_app::{Answer, AppClient, EnrolOptions};
use sesam_core::Username;
use sesam_store::NewUser;

use crate::harness::{on_both_databases, Browser, TestDb, TestServer};
use crate::passwordless::{code_on, start_login};

on_both_databases!(
    the_portal_needs_the_admin_role_and_a_substantial_session,
    the_preview_counts_the_population_and_saving_is_audited,
    user_actions_are_stored_and_audited,
    the_audit_log_filters_and_exports,
    user_search_stays_correct_over_100000_users,
    oidc_clients_are_managed_in_the_portal,
    users_are_created_in_the_portal,
    saml_service_providers_are_added_from_metadata_and_bad_uploads_store_nothing,
    an_admin_without_the_app_is_shown_the_way_to_add_it,
    this_was_not_me_has_its_own_page_a_notice_next_time_and_a_resume_button,
    the_settings_form_has_typed_controls_and_says_at_the_field_what_is_wrong,
    times_are_shown_in_the_organisations_time_zone_with_the_zone,
);

async fn add_admin(sesam: &TestServer) -> sesam_core::User {
    sesam
        .store()
        .create_user(
            NewUser {
                username: Username::parse("boss").unwrap(),
                display_name: "Bo Boss".into(),
                email: None,
                password_hash: Some(
                    sesam_server::password::hash_now("correct horse battery").unwrap(),
                ),
                is_admin: true,
                password_only: false,
                must_change_password: false,
            },
            sesam.now(),
        )
        .await
        .unwrap()
}

/// An admin browser with a Substantial session (password, then the app approves).
pub(crate) async fn admin_browser(sesam: &TestServer) -> (Browser, AppClient) {
    let boss = add_admin(sesam).await;
    let (app, _) = sesam.enrol(&boss, EnrolOptions::default()).await;
    let browser = sesam.browser();
    assert_eq!(
        browser
            .log_in("boss", "correct horse battery")
            .await
            .location(),
        Some("/account")
    );
    let first = browser.get("/admin").await;
    assert_eq!(
        first.location(),
        Some("/login/step-up"),
        "a password-only admin session is stepped up"
    );
    assert_eq!(
        browser.get("/login/step-up").await.location(),
        Some("/login/wait")
    );
    let code = code_on(&browser.get("/login/wait").await);
    let id = app.pending().await.unwrap()[0].id.clone();
    assert_eq!(
        app.answer(&id, &Answer::Code(code)).await.unwrap().status,
        "approved"
    );
    assert_eq!(
        browser.get("/login/complete").await.location(),
        Some("/admin"),
        "back where the admin was going"
    );
    (browser, app)
}

async fn the_portal_needs_the_admin_role_and_a_substantial_session(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let anna = sesam.browser();
    anna.log_in("anna", "correct horse battery").await;
    for path in [
        "/admin",
        "/admin/settings",
        "/admin/users",
        "/admin/audit",
        "/admin/audit.csv",
    ] {
        assert_eq!(anna.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(
        sesam.browser().get("/admin").await.location(),
        Some("/login"),
        "not logged in"
    );

    let (admin, _) = admin_browser(&sesam).await;
    let dashboard = admin.get("/admin").await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert!(
        dashboard.body.contains("id=\"fig-users\">3<"),
        "admin, anna, boss: {}",
        dashboard.body
    );
    assert!(
        dashboard.body.contains("id=\"fig-password-push\">1<"),
        "the admin's own step-up"
    );
    sesam.stop().await;
}

async fn the_preview_counts_the_population_and_saving_is_audited(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let now = sesam.now();
    let store = sesam.store();
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    sesam.enrol(&anna, EnrolOptions::default()).await;
    let robot = sesam
        .add_user("robot", "RPA robot", "correct horse battery")
        .await;
    sesam.enrol(&robot, EnrolOptions::default()).await;
    store.set_password_only(&robot.id, true, now).await.unwrap();
    let old = sesam
        .add_user("old", "Old App", "correct horse battery")
        .await;
    sesam
        .enrol(
            &old,
            EnrolOptions {
                app_version: "2.9.0".into(),
                ..EnrolOptions::default()
            },
        )
        .await;
    let short = sesam
        .add_user("short", "Short Pin", "correct horse battery")
        .await;
    sesam
        .enrol(
            &short,
            EnrolOptions {
                pin_length: 4,
                ..EnrolOptions::default()
            },
        )
        .await;
    sesam
        .add_user("nodevice", "No Device", "correct horse battery")
        .await;
    let locked = sesam
        .add_user("locked", "Locked Out", "correct horse battery")
        .await;
    sesam.enrol(&locked, EnrolOptions::default()).await;
    store
        .set_user_status(&locked.id, sesam_core::UserStatus::Locked, now)
        .await
        .unwrap();
    let (admin, _) = admin_browser(&sesam).await;

    let form = admin.get("/admin/settings").await;
    let csrf = form.csrf();
    let preview = admin
        .post_form(
            "/admin/settings/preview",
            &[("csrf", &csrf), ("passwordless", "on")],
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    // admin (first start, no device), anna, robot, old, short, nodevice, locked, boss
    assert!(
        preview
            .body
            .contains("data-passwordless=\"2\" data-total=\"8\""),
        "{}",
        preview.body
    );
    for (blocker, n) in [
        ("password_only", 1),
        ("app_too_old", 1),
        ("pin_too_short", 1),
        ("no_device", 2),
        ("account_inactive", 1),
    ] {
        assert!(
            preview
                .body
                .contains(&format!("data-blocker=\"{blocker}\" data-count=\"{n}\"")),
            "{blocker}: {}",
            preview.body
        );
    }
    assert!(
        preview.body.contains("RPA"),
        "the warning about robots is shown"
    );
    assert_eq!(
        store.load_settings().await.unwrap().passwordless,
        sesam_core::PasswordlessMode::Off,
        "a preview changes nothing"
    );

    let pilot = admin
        .post_form(
            "/admin/settings/preview",
            &[("csrf", &csrf), ("passwordless", "pilot")],
        )
        .await;
    assert!(
        pilot.body.contains("data-passwordless=\"0\""),
        "nobody is in the pilot group yet"
    );

    let bad = admin
        .post_form(
            "/admin/settings",
            &[
                ("csrf", &csrf),
                ("passwordless", "on"),
                ("lockout_max_failures", "many"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("lockout_max_failures"),
        "the message names the field"
    );
    assert_eq!(
        store.load_settings().await.unwrap().passwordless,
        sesam_core::PasswordlessMode::Off,
        "nothing saved"
    );
    let forged = admin
        .post_form("/admin/settings", &[("passwordless", "on")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let saved = admin
        .post_form(
            "/admin/settings",
            &[("csrf", &csrf), ("passwordless", "on")],
        )
        .await;
    assert_eq!(saved.location(), Some("/admin/settings?saved=1"));
    assert_eq!(
        store.load_settings().await.unwrap().passwordless,
        sesam_core::PasswordlessMode::On
    );
    let changes = store.list_audit(Some("passwordless"), 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (changes[0].actor.as_deref(), changes[0].detail.as_str()),
        (Some("boss"), "off -> on")
    );
    sesam.stop().await;
}

async fn user_actions_are_stored_and_audited(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (admin, _) = admin_browser(&sesam).await;
    let list = admin.get("/admin/users?q=ANN").await;
    assert!(
        list.body
            .contains(&format!("href=\"/admin/users/{}\"", anna.id)),
        "{}",
        list.body
    );
    let page = admin.get(&format!("/admin/users/{}", anna.id)).await;
    let csrf = page.csrf();
    let act = |action: &'static str| {
        let path = format!("/admin/users/{}/{action}", anna.id);
        let csrf = csrf.clone();
        let admin = &admin;
        async move { admin.post_form(&path, &[("csrf", &csrf)]).await }
    };
    assert_eq!(act("lock").await.status, StatusCode::SEE_OTHER);
    let stored = sesam.store().get_user(&anna.id).await.unwrap();
    assert_eq!(stored.status, sesam_core::UserStatus::Locked);
    act("unlock").await;
    act("pilot-on").await;
    act("password-only-on").await;
    let stored = sesam.store().get_user(&anna.id).await.unwrap();
    assert!(stored.is_active() && stored.in_pilot && stored.password_only);

    let reset = act("reset-password").await;
    let marker = "id=\"one-time-password\">";
    let start = reset.body.find(marker).expect("shown once") + marker.len();
    let password = reset.body[start..start + 16].to_owned();
    assert_eq!(
        sesam.browser().log_in("anna", &password).await.location(),
        Some("/account/password")
    );
    let code_page = act("activation-code").await;
    assert!(code_page.body.contains("id=\"activation-code\""));

    assert_eq!(act("explode").await.status, StatusCode::NOT_FOUND);
    let forged = admin
        .post_form(
            &format!("/admin/users/{}/lock", anna.id),
            &[("csrf", "nope")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        admin.get("/admin/users/no-such-user").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        sesam.store().get_user(&anna.id).await.unwrap().is_active(),
        "the forged lock did nothing"
    );

    let events = sesam.audit_events("anna").await;
    for e in [
        "user.locked",
        "user.unlocked",
        "user.pilot",
        "user.password_only",
        "password.set",
        "device.activation_code.issued",
    ] {
        assert!(events.contains(&e.to_string()), "{e} in {events:?}");
    }
    sesam.stop().await;
}

async fn the_audit_log_filters_and_exports(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    sesam.browser().log_in("anna", "=cmd|' /C calc'!A0").await;
    let (admin, _) = admin_browser(&sesam).await;

    let page = admin.get("/admin/audit?user=anna&event=login.").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("login.password.failed"));
    assert!(
        !page.body.contains("login.step_up.succeeded"),
        "boss's events are filtered out"
    );
    let bad = admin.get("/admin/audit?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let future = admin.get("/admin/audit?from=2999-01-01").await;
    assert!(
        !future.body.contains("login.password"),
        "nothing in the future"
    );

    let csv = admin.get("/admin/audit.csv?user=anna").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let mut lines = csv.body.lines();
    assert_eq!(
        lines.next(),
        Some("id,time,actor,event,subject,client_ip,detail")
    );
    assert!(csv.body.contains("\"login.password.failed\""));
    assert!(
        !csv.body.contains("calc"),
        "passwords never reach the audit log"
    );
    assert_eq!(
        admin.get("/admin/audit.csv?until=someday").await.status,
        StatusCode::BAD_REQUEST
    );
    sesam.stop().await;
}

async fn user_search_stays_correct_over_100000_users(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let url = db.url.clone();
    let seed = "INSERT INTO users (id, username, username_key, display_name, status, password_only, is_admin, \
                must_change_password, in_pilot, passwordless_locked, created_at, updated_at) ";
    let started = std::time::Instant::now();
    if db.is_postgres() {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(&format!(
            "{seed} SELECT 'seed-' || n, 'user' || lpad(n::text, 6, '0'), 'user' || lpad(n::text, 6, '0'), \
             'Person ' || n, 'active', FALSE, FALSE, FALSE, FALSE, FALSE, 0, 0 FROM generate_series(1, 100000) AS n"
        ))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000) \
             {seed} SELECT 'seed-' || i, 'user' || printf('%06d', i), 'user' || printf('%06d', i), 'Person ' || i, \
             'active', 0, 0, 0, 0, 0, 0, 0 FROM n"
        ))
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    eprintln!("seeded 100000 users in {:?}", started.elapsed());
    let (admin, _) = admin_browser(&sesam).await;
    let timed = |path: &'static str| {
        let admin = &admin;
        async move {
            let t = std::time::Instant::now();
            let page = admin.get(path).await;
            (page, t.elapsed())
        }
    };
    let (first, t_first) = timed("/admin/users").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.body.matches("href=\"/admin/users/").count(),
        50,
        "a page of 50"
    );
    assert!(first.body.contains("id=\"next-page\""));
    let (one, t_one) = timed("/admin/users?q=user054321").await;
    assert_eq!(
        one.body.matches("href=\"/admin/users/").count(),
        1,
        "exactly the one user"
    );
    assert!(one.body.contains("Person 54321"));
    let (deep, t_deep) = timed("/admin/users?q=&after=user099990").await;
    assert_eq!(
        deep.body.matches("href=\"/admin/users/").count(),
        10,
        "the last page by keyset"
    );
    let (name, t_name) = timed("/admin/users?q=person%209999").await;
    assert_eq!(
        name.body.matches("href=\"/admin/users/").count(),
        11,
        "Person 9999 and 99990..99999"
    );
    eprintln!(
        "admin user search over 100000 users ({}): first page {t_first:?}, one match {t_one:?}, last page {t_deep:?}, by name {t_name:?}",
        if db.is_postgres() { "PostgreSQL" } else { "SQLite" }
    );
    sesam.stop().await;
}

/// The text of the element with `id` (up to its closing tag).
fn element_text<'a>(body: &'a str, id: &str) -> Option<&'a str> {
    let start = body.find(&format!("id=\"{id}\""))?;
    let open_end = start + body[start..].find('>')? + 1;
    let close = open_end + body[open_end..].find('<')?;
    Some(&body[open_end..close])
}

async fn oidc_clients_are_managed_in_the_portal(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (browser, _app) = admin_browser(&sesam).await;
    let page = browser.get("/admin/services").await;
    assert_eq!(page.status, StatusCode::OK);
    let title_start = page.body.find("<title>").unwrap() + "<title>".len();
    let title = &page.body[title_start..page.body.find("</title>").unwrap()];
    assert!(!title.contains('<'), "markup in the title: {title}");
    assert_eq!(
        page.body.matches("id=\"sp-create\"").count(),
        1,
        "one add-SP form"
    );
    let csrf = page.csrf();

    // Missing CSRF token, bad values: refused, nothing stored.
    let fields = |csrf: &str, redirects: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("name".to_owned(), "Borgerservice".to_owned()),
            ("redirect_uris".to_owned(), redirects.to_owned()),
            ("post_logout_redirect_uris".to_owned(), String::new()),
        ]
    };
    let post = |path: &str, fields: Vec<(String, String)>| {
        let path = path.to_owned();
        let browser = &browser;
        async move {
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            browser.post_form(&path, &pairs).await
        }
    };
    let no_csrf = post(
        "/admin/services/oidc",
        fields("", "https://rp.example.dk/cb"),
    )
    .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    let bad = post(
        "/admin/services/oidc",
        fields(&csrf, "http://rp.example.dk/cb"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"client-problems\""), "{}", bad.body);
    assert!(
        bad.body.contains("http://rp.example.dk/cb"),
        "the typed value is kept"
    );
    assert!(sesam.store().list_oidc_clients().await.unwrap().is_empty());

    let created = post(
        "/admin/services/oidc",
        fields(&csrf, "https://rp.example.dk/cb\nhttps://rp.example.dk/cb2"),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let client_id = element_text(&created.body, "client-id").unwrap().to_owned();
    let secret = element_text(&created.body, "client-secret")
        .unwrap()
        .to_owned();
    let stored = sesam
        .store()
        .get_oidc_client(&client_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.redirect_uris,
        ["https://rp.example.dk/cb", "https://rp.example.dk/cb2"]
    );
    assert!(sesam_oidc::verify_client_secret(
        &secret,
        stored.secret_hash.as_deref().unwrap()
    ));
    // The secret is shown once: the client's page does not show it again.
    let page = browser
        .get(&format!("/admin/services/oidc/{client_id}"))
        .await;
    assert!(!page.body.contains(&secret));
    assert!(browser
        .get("/admin/services")
        .await
        .body
        .contains(&client_id));

    // Editing: a bad URI changes nothing; a good one is stored and audited.
    let path = format!("/admin/services/oidc/{client_id}");
    let bad = post(&path, fields(&csrf, "https://rp.example.dk/cb#x")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        sesam
            .store()
            .get_oidc_client(&client_id)
            .await
            .unwrap()
            .unwrap()
            .redirect_uris
            .len(),
        2
    );
    let mut good = fields(&csrf, "https://rp.example.dk/new");
    good.push(("enabled".into(), "on".into()));
    let saved = post(&path, good).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let stored = sesam
        .store()
        .get_oidc_client(&client_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.redirect_uris, ["https://rp.example.dk/new"]);
    assert!(stored.enabled);
    let disabled = post(&path, fields(&csrf, "https://rp.example.dk/new")).await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER);
    assert!(
        !sesam
            .store()
            .get_oidc_client(&client_id)
            .await
            .unwrap()
            .unwrap()
            .enabled
    );

    let rotated = post(
        &format!("{path}/rotate"),
        vec![("csrf".into(), csrf.clone())],
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_secret = element_text(&rotated.body, "client-secret").unwrap();
    let hash = sesam
        .store()
        .get_oidc_client(&client_id)
        .await
        .unwrap()
        .unwrap()
        .secret_hash
        .unwrap();
    assert!(sesam_oidc::verify_client_secret(new_secret, &hash));
    assert!(!sesam_oidc::verify_client_secret(&secret, &hash));

    let removed = post(
        &format!("{path}/remove"),
        vec![("csrf".into(), csrf.clone())],
    )
    .await;
    assert_eq!(removed.location(), Some("/admin/services"));
    assert!(sesam
        .store()
        .get_oidc_client(&client_id)
        .await
        .unwrap()
        .is_none());
    let events = sesam.audit_events(&client_id).await;
    for event in [
        "oidc.client.added",
        "oidc.client.changed",
        "oidc.client.secret_rotated",
        "oidc.client.removed",
    ] {
        assert!(events.contains(&event.to_string()), "{event} in {events:?}");
    }
}

async fn users_are_created_in_the_portal(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (browser, _app) = admin_browser(&sesam).await;
    let csrf = browser.get("/admin/users").await.csrf();
    let create = |csrf: String, username: &'static str, name: &'static str, email: &'static str| {
        let browser = &browser;
        async move {
            browser
                .post_form(
                    "/admin/users/new",
                    &[
                        ("csrf", csrf.as_str()),
                        ("username", username),
                        ("display_name", name),
                        ("email", email),
                        ("pilot", "on"),
                    ],
                )
                .await
        }
    };
    assert_eq!(
        create(String::new(), "carl", "Carl", "").await.status,
        StatusCode::FORBIDDEN
    );
    for (username, name, email) in [
        ("carl jensen", "Carl", ""),
        ("carl", "", ""),
        ("carl", "Carl", "not-an-address"),
        ("", "Carl", ""),
    ] {
        let page = create(csrf.clone(), username, name, email).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{username:?} {name:?} {email:?}"
        );
        assert!(page.body.contains("id=\"new-user-error\""));
    }
    let carl = Username::parse("carl").unwrap();
    assert!(sesam
        .store()
        .find_user_by_username(&carl)
        .await
        .unwrap()
        .is_none());

    let page = create(csrf.clone(), "carl", "Carl Carlsen", "carl@kommune.dk").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let marker = "id=\"one-time-password\">";
    let start = page.body.find(marker).unwrap() + marker.len();
    let password = &page.body[start..start + page.body[start..].find('<').unwrap()];
    let stored = sesam
        .store()
        .find_user_by_username(&carl)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.must_change_password && stored.in_pilot && !stored.is_admin);
    assert_eq!(stored.email.as_deref(), Some("carl@kommune.dk"));
    assert!(sesam
        .audit_events("carl")
        .await
        .contains(&"user.created".to_string()));

    let again = create(csrf.clone(), "CARL", "Another Carl", "").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains("new-user-error"));

    // The one-time password works once, and must be changed at once.
    let carls = sesam.browser();
    assert_eq!(
        carls.log_in("carl", password).await.location(),
        Some("/account/password")
    );
}

fn sp_metadata(entity_id: &str) -> String {
    let cert = sesam_saml::IdpKey::generate("sp.example.dk", 30)
        .unwrap()
        .certificate()
        .to_base64();
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{eid}">"#,
            r#"<md:SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            r#"<md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"#,
            r#"<md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://sp.example.dk/acs" index="0"/>"#,
            "</md:SPSSODescriptor></md:EntityDescriptor>"
        ),
        eid = entity_id,
        cert = cert
    )
}

/// A multipart/form-data body as a browser sends the add-SP form.
pub(crate) fn multipart(fields: &[(&str, &str)], file: Option<&[u8]>) -> (String, Vec<u8>) {
    let boundary = "----sesam-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    if let Some(bytes) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"sp.xml\"\r\nContent-Type: text/xml\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn saml_service_providers_are_added_from_metadata_and_bad_uploads_store_nothing(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (browser, _app) = admin_browser(&sesam).await;
    let csrf = browser.get("/admin/services").await.csrf();
    let upload = |fields: Vec<(&'static str, String)>, file: Option<Vec<u8>>| {
        let browser = &browser;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (content_type, body) = multipart(&pairs, file.as_deref());
            browser
                .post_raw("/admin/services/saml/new", &content_type, body)
                .await
        }
    };
    let good = sp_metadata("https://sp.example.dk/shibboleth");
    let with_csrf = |extra: &[(&'static str, &str)]| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("min_level", "substantial".to_owned()),
        ];
        f.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        f
    };

    assert_eq!(
        upload(
            vec![("min_level", "low".into())],
            Some(good.clone().into_bytes())
        )
        .await
        .status,
        StatusCode::FORBIDDEN,
        "no CSRF token"
    );
    let doctype = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e \"boom\">]>{}",
        good.split_once("?>").unwrap().1
    );
    let oversized = format!("{good}<!--{}-->", "x".repeat(300 * 1024));
    for (why, file) in [
        ("not XML", b"this is not xml".to_vec()),
        (
            "wrong root",
            br#"<md:EntitiesDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"/>"#.to_vec(),
        ),
        ("DOCTYPE", doctype.into_bytes()),
        ("oversized", oversized.into_bytes()),
    ] {
        let page = upload(with_csrf(&[]), Some(file)).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{why}: {}", page.body);
        assert!(page.body.contains("id=\"sp-problem\""), "{why}");
    }
    let neither = upload(with_csrf(&[]), None).await;
    assert_eq!(neither.status, StatusCode::BAD_REQUEST);
    let bad_level = upload(
        vec![("csrf", csrf.clone()), ("min_level", "high".into())],
        Some(good.clone().into_bytes()),
    )
    .await;
    assert_eq!(bad_level.status, StatusCode::BAD_REQUEST);
    assert!(sesam.store().list_saml_sps().await.unwrap().is_empty());

    let added = upload(
        with_csrf(&[
            ("name", "Sygesikring"),
            ("encrypt", "on"),
            ("attribute", "uuid"),
            ("attribute", "name"),
        ]),
        Some(good.clone().into_bytes()),
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let sp = sesam
        .store()
        .saml_sp("https://sp.example.dk/shibboleth")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            sp.name.as_str(),
            sp.min_level.as_str(),
            sp.encrypt_assertions
        ),
        ("Sygesikring", "substantial", true)
    );
    assert_eq!(sp.released_attributes, ["uuid", "name"]);
    let page = browser.get(added.location().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("https://sp.example.dk/shibboleth"));
    assert!(browser
        .get("/admin/services")
        .await
        .body
        .contains("Sygesikring"));

    // Settings: a bad level changes nothing; a good change is stored and audited.
    let form = |level: &str| {
        vec![
            ("csrf", csrf.as_str()),
            ("entity_id", "https://sp.example.dk/shibboleth"),
            ("action", "save"),
            ("name", "Sygesikring"),
            ("min_level", level),
            ("enabled", "on"),
            ("attribute", "email"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect::<Vec<_>>()
    };
    let post = |fields: Vec<(&'static str, String)>| {
        let browser = &browser;
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser.post_form("/admin/services/saml", &pairs).await
        }
    };
    assert_eq!(post(form("high")).await.status, StatusCode::BAD_REQUEST);
    let mut unknown_action = form("low");
    unknown_action[2].1 = "explode".into();
    assert_eq!(post(unknown_action).await.status, StatusCode::BAD_REQUEST);
    let garbage = browser
        .post_raw(
            "/admin/services/saml",
            "application/x-www-form-urlencoded",
            vec![b'a', b'=', b'%', 0xff],
        )
        .await;
    assert!(garbage.status.is_client_error(), "{}", garbage.status);
    let unchanged = sesam
        .store()
        .saml_sp("https://sp.example.dk/shibboleth")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        unchanged.min_level, "substantial",
        "refused forms change nothing"
    );
    let saved = post(form("low")).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let sp = sesam
        .store()
        .saml_sp("https://sp.example.dk/shibboleth")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (sp.min_level.as_str(), sp.encrypt_assertions),
        ("low", false)
    );
    assert_eq!(sp.released_attributes, ["email"]);
    let mut no_csrf = form("low");
    no_csrf.remove(0);
    assert_eq!(post(no_csrf).await.status, StatusCode::FORBIDDEN);

    let mut remove = form("low");
    remove[2].1 = "remove".into();
    assert_eq!(post(remove).await.location(), Some("/admin/services"));
    assert!(sesam.store().list_saml_sps().await.unwrap().is_empty());
    let events = sesam.audit_events("https://sp.example.dk/shibboleth").await;
    for event in ["saml.sp.added", "saml.sp.changed", "saml.sp.removed"] {
        assert!(events.contains(&event.to_string()), "{event} in {events:?}");
    }
}

/// The first admin logs in with a password and opens the portal, which needs the app: the
/// refusal says why, leads to the devices page, and its way back is the account, not a loop.
async fn an_admin_without_the_app_is_shown_the_way_to_add_it(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let boss = add_admin(&sesam).await;
    let browser = sesam.browser();
    browser.log_in("boss", "correct horse battery").await;
    assert_eq!(
        browser.get("/admin").await.location(),
        Some("/login/step-up")
    );
    assert_eq!(
        browser.get("/login/step-up").await.location(),
        Some("/login/unreachable")
    );
    let page = browser.get("/login/unreachable").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("href=\"/account/devices\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("data-reason=\"stepup.reason.ask_admin\""),
        "a password alone cannot add the app: ask for a code"
    );
    assert!(page
        .body
        .contains("href=\"/account\" id=\"needs-app-back\""));
    assert_eq!(browser.get("/account/devices").await.status, StatusCode::OK);
    assert_eq!(browser.get("/account").await.status, StatusCode::OK);

    // Where the organisation lets a password add a first device, the page says so and the
    // devices page gives the activation code.
    sesam
        .store()
        .set_setting("first_device_with_password", "true", sesam.now())
        .await
        .unwrap();
    let page = browser.get("/login/unreachable").await;
    assert!(page.body.contains("data-reason=\"stepup.reason.add_now\""));
    let devices = browser.get("/account/devices").await;
    let code = browser
        .post_form(
            "/account/devices/activation",
            &[("csrf", devices.csrf().as_str())],
        )
        .await;
    assert_eq!(code.status, StatusCode::OK, "{}", code.body);

    // A device that cannot approve: the devices page says why.
    let (_, device) = sesam.enrol(&boss, EnrolOptions::default()).await;
    sesam
        .store()
        .set_device_status(
            &device.device_id,
            sesam_core::DeviceStatus::Disabled,
            sesam.now(),
        )
        .await
        .unwrap();
    let page = browser.get("/login/unreachable").await;
    assert!(page
        .body
        .contains("data-reason=\"stepup.reason.device_cannot_approve\""));

    // Not logged in at all: back to the login.
    let stranger = sesam.browser().get("/login/unreachable").await;
    assert!(stranger
        .body
        .contains("href=\"/login/switch\" id=\"needs-app-back\""));
    sesam.stop().await;
}

/// "This was not me" in the app: the browser is told the login was stopped (not a plain
/// deny), the next login says why the password is asked, and the portal shows the pause
/// with one button that lifts it.
async fn this_was_not_me_has_its_own_page_a_notice_next_time_and_a_resume_button(db: TestDb) {
    let t = sesam_server::i18n::Lang::Da.catalog();
    let sesam = TestServer::start(&db).await;
    // The admin's portal session first (a password and a step-up, before passwordless is on).
    let (admin, _) = admin_browser(&sesam).await;
    sesam
        .store()
        .set_setting("passwordless", "on", sesam.now())
        .await
        .unwrap();
    let anna = sesam
        .add_user("anna", "Anna Andersen", "correct horse battery")
        .await;
    let (app, _) = sesam.enrol(&anna, EnrolOptions::default()).await;
    let browser = sesam.browser();
    assert_eq!(start_login(&browser, "anna").await, "/login/wait");
    let id = app.pending().await.unwrap()[0].id.clone();
    app.answer(&id, &Answer::ReportFraud).await.unwrap();
    let stopped = browser.get("/login/wait").await;
    assert!(
        stopped.body.contains(t.get("wait.result.fraud_title"))
            && stopped.body.contains(t.get("wait.result.fraud")),
        "{}",
        stopped.body
    );
    assert!(!stopped.body.contains(t.get("wait.result.rejected")));
    assert!(
        !stopped.body.contains("id=\"retry\""),
        "no new request to the same app"
    );
    let csrf = browser.get("/login").await.csrf();
    let retry = browser
        .post_form("/login/retry", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(
        retry.location(),
        Some("/login/password"),
        "and a forged retry starts none either"
    );
    assert!(app.pending().await.unwrap().is_empty());

    // The next login asks for the password and says why.
    let next = sesam.browser();
    assert_eq!(start_login(&next, "anna").await, "/login/password");
    let password = next.get("/login/password").await;
    assert!(
        password
            .body
            .contains("data-notice=\"login.notice.passwordless_paused\""),
        "{}",
        password.body
    );
    // Nobody else's password page says it (an unknown name gets the plain form).
    let stranger = sesam.browser();
    start_login(&stranger, "nobody").await;
    assert!(!stranger
        .get("/login/password")
        .await
        .body
        .contains("login.notice.passwordless_paused"));

    // The portal shows the pause and lifts it with one button.
    let page = admin.get(&format!("/admin/users/{}", anna.id)).await;
    assert!(page.body.contains("id=\"passwordless-paused\""));
    assert!(page.body.contains(t.get("user.flag.passwordless_paused")));
    assert!(page.body.contains(&format!(
        "action=\"/admin/users/{}/passwordless-resume\"",
        anna.id
    )));
    let resumed = admin
        .post_form(
            &format!("/admin/users/{}/passwordless-resume", anna.id),
            &[("csrf", page.csrf().as_str())],
        )
        .await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER);
    let stored = sesam.store().get_user(&anna.id).await.unwrap();
    assert!(!stored.passwordless_locked && stored.is_active());
    assert!(sesam
        .audit_events("anna")
        .await
        .contains(&"passwordless.unlocked".to_string()));
    let page = admin.get(&format!("/admin/users/{}", anna.id)).await;
    assert!(!page.body.contains("id=\"passwordless-paused\""));
    assert_eq!(
        start_login(&sesam.browser(), "anna").await,
        "/login/wait",
        "passwordless again"
    );
    sesam.stop().await;
}

/// Settings as controls of their type (numbers with their range and unit, switches, a choice
/// of levels) in sections, and a refused value is named next to its field, still typed in.
async fn the_settings_form_has_typed_controls_and_says_at_the_field_what_is_wrong(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (admin, _) = admin_browser(&sesam).await;
    let form = admin.get("/admin/settings").await;
    for control in [
        "type=\"number\" id=\"s-challenge_limit_per_user\" name=\"challenge_limit_per_user\" value=\"5\" min=\"1\" max=\"1000\"",
        "type=\"checkbox\" id=\"s-first_device_with_password\" name=\"first_device_with_password\" value=\"true\"",
        "type=\"radio\" name=\"required_level\" value=\"substantial\"",
        "class=\"settings-group\"",
    ] {
        assert!(form.body.contains(control), "{control}: {}", form.body);
    }
    assert!(
        !form.body.contains("true eller false") && !form.body.contains("(lockout_max_failures)"),
        "no typed booleans, no raw key names"
    );
    let csrf = form.csrf();
    // An unticked box sends only the hidden "false"; a ticked one sends "false" then "true".
    let saved = admin
        .post_form(
            "/admin/settings",
            &[
                ("csrf", &csrf),
                ("first_device_with_password", "false"),
                ("first_device_with_password", "true"),
                ("required_level", "substantial"),
                ("challenge_limit_per_user", "7"),
            ],
        )
        .await;
    assert_eq!(saved.location(), Some("/admin/settings?saved=1"));
    let settings = sesam.store().load_settings().await.unwrap();
    assert!(settings.first_device_with_password);
    assert_eq!(settings.challenge_limit_per_user, 7);
    assert_eq!(
        settings.required_level,
        sesam_core::AssuranceLevel::Substantial
    );

    let refused = admin
        .post_form(
            "/admin/settings",
            &[
                ("csrf", &csrf),
                ("first_device_with_password", "false"),
                ("lockout_max_failures", "0"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("id=\"e-lockout_max_failures\"")
            && refused.body.contains("value=\"0\" min=\"1\" max=\"1000\"")
            && refused.body.contains("aria-invalid=\"true\""),
        "{}",
        refused.body
    );
    assert!(
        sesam
            .store()
            .load_settings()
            .await
            .unwrap()
            .first_device_with_password,
        "nothing of a refused form is saved"
    );
    sesam.stop().await;
}

/// The portal shows times in the organisation's zone (default Europe/Copenhagen), naming the
/// zone; another zone is a setting away, and one the zone database lacks is refused.
async fn times_are_shown_in_the_organisations_time_zone_with_the_zone(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (admin, _) = admin_browser(&sesam).await;
    let entry = sesam
        .store()
        .list_audit(Some("boss"), 1)
        .await
        .unwrap()
        .remove(0);
    let shown = |offset_hours: i64, zone: &str| {
        let at = time::OffsetDateTime::from_unix_timestamp(entry.at + offset_hours * 3600).unwrap();
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} {zone}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        )
    };
    let audit = admin.get("/admin/audit?user=boss").await;
    assert!(
        audit.body.contains(&shown(1, "CET")) || audit.body.contains(&shown(2, "CEST")),
        "Copenhagen time: {}",
        audit.body
    );
    assert!(!audit.body.contains(" UTC<"), "no UTC times left");

    let form = admin.get("/admin/settings").await;
    assert!(form
        .body
        .contains("id=\"s-time_zone\" name=\"time_zone\" value=\"Europe/Copenhagen\""));
    let csrf = form.csrf();
    let refused = admin
        .post_form(
            "/admin/settings",
            &[("csrf", csrf.as_str()), ("time_zone", "Mars/Olympus_Mons")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("id=\"e-time_zone\""));
    let saved = admin
        .post_form(
            "/admin/settings",
            &[("csrf", csrf.as_str()), ("time_zone", "America/New_York")],
        )
        .await;
    assert_eq!(saved.location(), Some("/admin/settings?saved=1"));
    let audit = admin.get("/admin/audit?user=boss").await;
    assert!(
        audit.body.contains(&shown(-5, "EST")) || audit.body.contains(&shown(-4, "EDT")),
        "New York time: {}",
        audit.body
    );
    sesam.stop().await;
}
