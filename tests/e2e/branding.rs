//! The organisation's branding: set in the portal, shown on every login page, the logo served
//! from the database to every node, and every bad value or upload refused with nothing changed.

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;

use crate::admin::admin_browser;
use crate::harness::{on_both_databases, Browser, Page, TestDb, TestServer};

on_both_databases!(
    the_portal_brands_every_login_page_and_refuses_bad_values,
    the_logo_is_uploaded_checked_served_to_every_node_and_removed,
);

/// A real 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x60, 0x60, 0xf8,
    0x0f, 0x00, 0x01, 0x04, 0x01, 0x00, 0x5f, 0xe5, 0xc3, 0x4b, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

const BOUNDARY: &str = "sesam-test-boundary-7d1f";

/// A multipart body with a CSRF field (when given) and a file field (when given).
fn multipart(csrf: Option<&str>, file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    if let Some(token) = csrf {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{token}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((name, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"logo\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(browser: &Browser, body: Vec<u8>) -> Page {
    browser
        .post_raw(
            "/admin/branding/logo",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
            body,
        )
        .await
}

fn logo_version(page: &Page) -> Option<String> {
    let marker = "id=\"brand-logo\" src=\"/branding/logo?v=";
    let start = page.body.find(marker)? + marker.len();
    let end = page.body[start..].find('"')? + start;
    Some(page.body[start..end].to_owned())
}

async fn the_portal_brands_every_login_page_and_refuses_bad_values(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (admin, _) = admin_browser(&sesam).await;
    let visitor = sesam.browser();
    let plain = visitor.get("/login").await;
    assert!(
        plain.body.contains("id=\"brand\">Sesam<")
            && !plain.body.contains("site-notice")
            && !plain.body.contains("help-link")
            && !plain.body.contains("/branding/theme.css"),
        "unbranded until set: {}",
        plain.body
    );

    let form = admin.get("/admin/settings").await;
    for field in [
        "s-accent_colour",
        "s-help_url",
        "s-privacy_url",
        "s-login_notice_da",
        "s-login_notice_en",
        "name=\"logo\"",
    ] {
        assert!(form.body.contains(field), "{field} on the settings page");
    }
    let csrf = form.csrf();
    let saved = admin
        .post_form(
            "/admin/settings",
            &[
                ("csrf", &csrf),
                ("organisation_name", "Aarhus Kommune"),
                ("accent_colour", "#7A1F5C"),
                ("help_url", "https://www.aarhus.dk/hjaelp"),
                ("privacy_url", "https://www.aarhus.dk/privatliv"),
                ("login_notice_da", "Planlagt vedligehold lørdag kl. 8-10"),
                ("login_notice_en", "Planned maintenance Saturday 8-10"),
            ],
        )
        .await;
    assert_eq!(
        saved.location(),
        Some("/admin/settings?saved=1"),
        "{}",
        saved.body
    );
    let audit = sesam
        .store()
        .list_audit(Some("accent_colour"), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "the change is audited");

    // The username page, the password page and the wait-less error page all carry it.
    let login = visitor.get("/login").await;
    for wanted in [
        "id=\"brand\">Aarhus Kommune<",
        "<title>Log ind · Aarhus Kommune</title>",
        "href=\"/branding/theme.css?v=7a1f5c\"",
        "id=\"help-link\" href=\"https://www.aarhus.dk/hjaelp\">Hjælp<",
        "id=\"privacy-link\" href=\"https://www.aarhus.dk/privatliv\">Privatliv<",
        "id=\"site-notice\" role=\"note\">Planlagt vedligehold lørdag kl. 8-10<",
    ] {
        assert!(login.body.contains(wanted), "{wanted}: {}", login.body);
    }
    sesam.add_user("ida", "Ida", "Ida-login-password-1").await;
    let next = visitor
        .post_form("/login", &[("csrf", &login.csrf()), ("username", "ida")])
        .await;
    assert_eq!(next.location(), Some("/login/password"));
    let password = visitor.get("/login/password").await;
    assert!(
        password.body.contains("Aarhus Kommune") && password.body.contains("id=\"help-link\""),
        "{}",
        password.body
    );
    // The same notice in English for an English reader.
    visitor.get("/lang/en?next=/login").await;
    let english = visitor.get("/login/password").await;
    assert!(
        english
            .body
            .contains("id=\"site-notice\" role=\"note\">Planned maintenance Saturday 8-10<")
            && english.body.contains(">Help<")
            && english.body.contains(">Privacy<"),
        "{}",
        english.body
    );
    let theme = visitor.get("/branding/theme.css?v=7a1f5c").await;
    assert_eq!(theme.status, StatusCode::OK);
    assert_eq!(
        theme.headers[CONTENT_TYPE].to_str().unwrap(),
        "text/css; charset=utf-8"
    );
    assert!(theme.body.contains("--accent: #7a1f5c;"), "{}", theme.body);

    // Bad values: each refused at its field, and nothing of the form is saved.
    for (key, bad) in [
        ("accent_colour", "#ffff00"),
        ("accent_colour", "red;}body{display:none"),
        ("help_url", "javascript:alert(1)"),
        (
            "privacy_url",
            "https://example.dk/\"><script>alert(1)</script>",
        ),
        ("login_notice_da", "to\nlinjer"),
    ] {
        let refused = admin
            .post_form(
                "/admin/settings",
                &[
                    ("csrf", &csrf),
                    ("organisation_name", "Changed"),
                    (key, bad),
                ],
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{key}={bad}");
        assert!(
            refused.body.contains(&format!("id=\"e-{key}\"")),
            "{key}: {}",
            refused.body
        );
        assert!(
            !refused.body.contains("<script>alert"),
            "the typed value is escaped"
        );
        let s = sesam.store().load_settings().await.unwrap();
        assert_eq!(
            (
                s.organisation_name.as_str(),
                s.accent_colour.as_str(),
                s.help_url.as_str(),
                s.privacy_url.as_str(),
                s.login_notice_da.as_str(),
            ),
            (
                "Aarhus Kommune",
                "#7a1f5c",
                "https://www.aarhus.dk/hjaelp",
                "https://www.aarhus.dk/privatliv",
                "Planlagt vedligehold lørdag kl. 8-10",
            ),
            "{key}={bad} changed nothing"
        );
    }
    // Without the form's token nothing is saved either.
    let forged = admin
        .post_form("/admin/settings", &[("accent_colour", "#000000")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        sesam.store().load_settings().await.unwrap().accent_colour,
        "#7a1f5c"
    );
    sesam.stop().await;
}

async fn the_logo_is_uploaded_checked_served_to_every_node_and_removed(db: TestDb) {
    let sesam = TestServer::start(&db).await;
    let (admin, _) = admin_browser(&sesam).await;
    let visitor = sesam.browser();
    assert_eq!(
        visitor.get("/branding/logo").await.status,
        StatusCode::NOT_FOUND
    );
    let csrf = admin.get("/admin/settings").await.csrf();

    // Bad uploads first: each refused clearly, none stores a logo.
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
    let big = {
        let mut b = PNG.to_vec();
        b.resize(256 * 1024 + 1, 0);
        b
    };
    let cases: Vec<(&str, Page, StatusCode)> = vec![
        (
            "svg",
            upload(&admin, multipart(Some(&csrf), Some(("logo.svg", svg)))).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "too large",
            upload(&admin, multipart(Some(&csrf), Some(("logo.png", &big)))).await,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "no file",
            upload(&admin, multipart(Some(&csrf), None)).await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty file",
            upload(&admin, multipart(Some(&csrf), Some(("logo.png", b"")))).await,
            StatusCode::BAD_REQUEST,
        ),
        (
            "no csrf",
            upload(&admin, multipart(None, Some(("logo.png", PNG)))).await,
            StatusCode::FORBIDDEN,
        ),
        (
            "wrong csrf",
            upload(&admin, multipart(Some("forged"), Some(("logo.png", PNG)))).await,
            StatusCode::FORBIDDEN,
        ),
        (
            "not multipart",
            admin
                .post_form("/admin/branding/logo", &[("csrf", &csrf), ("logo", "x")])
                .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "broken multipart",
            upload(
                &admin,
                format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc")
                    .into_bytes(),
            )
            .await,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (case, page, status) in cases {
        assert_eq!(page.status, status, "{case}: {}", page.body);
        assert!(
            sesam.store().logo().await.unwrap().is_none(),
            "{case} stored a logo"
        );
    }
    let wrong_type = upload(&admin, multipart(Some(&csrf), Some(("logo.svg", svg)))).await;
    assert!(
        wrong_type.body.contains("id=\"logo-error\"") && wrong_type.body.contains("SVG"),
        "the settings page says what is wrong: {}",
        wrong_type.body
    );
    // Someone without the portal cannot upload at all.
    let stranger = sesam.browser();
    let refused = upload(&stranger, multipart(Some(&csrf), Some(("logo.png", PNG)))).await;
    assert!(
        refused.status.is_redirection() || refused.status.is_client_error(),
        "{}",
        refused.status
    );
    assert!(sesam.store().logo().await.unwrap().is_none());

    let done = upload(&admin, multipart(Some(&csrf), Some(("logo.png", PNG)))).await;
    assert_eq!(
        done.location(),
        Some("/admin/settings?saved=1#branding"),
        "{}",
        done.body
    );
    assert_eq!(
        sesam.audit_events("logo").await,
        vec!["branding.logo_set".to_owned()]
    );
    let login = visitor.get("/login").await;
    let version = logo_version(&login).unwrap_or_else(|| panic!("no logo: {}", login.body));
    let served = visitor
        .client
        .get(sesam.url(&format!("/branding/logo?v={version}")))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()[CONTENT_TYPE], "image/png");
    assert!(served.headers()[CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let etag = served.headers()[ETAG].clone();
    assert_eq!(served.bytes().await.unwrap().as_ref(), PNG);
    let again = visitor
        .client
        .get(sesam.url("/branding/logo"))
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // A second node on the same database serves the same logo: it lives in the database.
    let other = TestServer::start(&db).await;
    let there = other.browser().get("/login").await;
    assert_eq!(logo_version(&there).as_deref(), Some(version.as_str()));
    let bytes = reqwest::get(other.url("/branding/logo"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes.as_ref(), PNG);
    other.stop().await;

    // A refused upload leaves the stored logo alone.
    upload(&admin, multipart(Some(&csrf), Some(("logo.svg", svg)))).await;
    assert_eq!(sesam.store().logo().await.unwrap().unwrap().bytes, PNG);

    let settings = admin.get("/admin/settings").await;
    assert!(settings.body.contains("id=\"logo-preview\""));
    let removed = admin
        .post_form("/admin/branding/logo/remove", &[("csrf", &settings.csrf())])
        .await;
    assert_eq!(removed.location(), Some("/admin/settings?saved=1#branding"));
    assert!(sesam.store().logo().await.unwrap().is_none());
    assert!(logo_version(&visitor.get("/login").await).is_none());
    assert_eq!(
        visitor.get("/branding/logo").await.status,
        StatusCode::NOT_FOUND
    );
    let forged = admin.post_form("/admin/branding/logo/remove", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    sesam.stop().await;
}
