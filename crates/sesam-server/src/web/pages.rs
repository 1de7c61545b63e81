//! Template structs: markup lives in `templates/`, texts in `locales/`.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::i18n::{Catalog, Lang};
use crate::web::error::AppError;

/// What every page's frame needs: the texts, the language, and the switch to the other one.
pub struct Chrome {
    pub t: &'static Catalog,
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub switch_href: String,
    /// The organisation's name, logo, colours and links for the frame.
    pub brand: std::sync::Arc<crate::web::branding::Brand>,
    /// The organisation's notice in this page's language; empty for none.
    pub notice: String,
}

impl Chrome {
    /// `path` is where the language switch returns to.
    pub fn new(lang: Lang, path: &str) -> Chrome {
        let brand = crate::web::branding::current();
        Chrome {
            notice: brand.notice(lang).to_owned(),
            brand,
            t: lang.catalog(),
            lang: lang.code(),
            other_lang: lang.other().code(),
            switch_href: format!(
                "/lang/{}?next={}",
                lang.other().code(),
                utf8_percent_encode(path, NON_ALPHANUMERIC)
            ),
        }
    }
}

/// Renders a template with a status.
pub fn render(status: StatusCode, page: &impl Template) -> Result<Response, AppError> {
    Ok((status, Html(page.render()?)).into_response())
}

#[derive(Template)]
#[template(path = "login_username.html")]
pub struct UsernamePage {
    pub chrome: Chrome,
    pub csrf: String,
    pub remembered: Option<String>,
    pub typed: String,
    pub error: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "login_password.html")]
pub struct PasswordPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub username: String,
    pub failed: bool,
    /// Why the password form is shown instead of the app, when there is a reason to say.
    pub notice: Option<&'static str>,
    /// This login will link the upstream eID the browser came with: the page says so, with
    /// a way out, so nobody links another person's eID unawares.
    pub links_upstream: bool,
}

/// A title, a sentence and one way forward.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub chrome: Chrome,
    pub title: String,
    pub body: String,
    pub alert: bool,
    pub link_href: &'static str,
    pub link_label: String,
}

/// "This login needs the Sesam app": why, and the way to a device that can give it.
#[derive(Template)]
#[template(path = "needs_app.html")]
pub struct NeedsAppPage {
    pub chrome: Chrome,
    /// The sentences that say why and what to do (translation keys), in order.
    pub reasons: Vec<&'static str>,
    /// Signed in (with a password): the devices page and the account are open.
    pub signed_in: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub display_name: String,
    pub username: String,
    pub level_code: &'static str,
    pub level_key: &'static str,
    pub signed_in_at: String,
    pub password_changed: bool,
    /// An administrator sees the way to the portal.
    pub is_admin: bool,
}

#[derive(Template)]
#[template(path = "change_password.html")]
pub struct ChangePasswordPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub username: String,
    pub must_change: bool,
    pub error_key: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "wait.html")]
pub struct WaitPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub title: &'static str,
    pub instruction: String,
    pub code: String,
    /// Not after a password (step-up): then the password is already given.
    pub offer_password: bool,
    pub expires_in: i64,
    /// "Other ways to log in": the code display instead of the app, on a step-up.
    pub other_factor: Option<&'static str>,
    /// Who is logging in to which service, as the app shows it too.
    pub who: String,
    /// The QR code (SVG) another device's app scans; the page shows it at desktop size.
    pub qr_svg: String,
    /// The QR code's text, for a test or a scanner that reads the page.
    pub qr_payload: String,
    /// "Open the Sesam app" on this phone: the link the app claims (challenge id, return URL).
    pub app_link: String,
    /// The User-Agent says phone: the app link comes first whatever the window's size.
    pub on_phone: bool,
}

/// How a challenge ended, and the ways forward.
#[derive(Template)]
#[template(path = "outcome.html")]
pub struct OutcomePage {
    pub chrome: Chrome,
    pub csrf: String,
    pub title: &'static str,
    pub body: &'static str,
    /// Not after a fraud report: another request to the same app is not wanted.
    pub offer_retry: bool,
    pub offer_password: bool,
}

#[derive(Template)]
#[template(path = "logout.html")]
pub struct LogoutPage {
    pub chrome: Chrome,
    pub csrf: String,
}

/// The organisation's time zone (setting `time_zone`), UTC when the name is not in the
/// zone database.
pub fn time_zone(name: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(name).unwrap_or(jiff::tz::TimeZone::UTC)
}

/// Whether the zone database knows `name` (for the settings form).
pub fn is_known_time_zone(name: &str) -> bool {
    jiff::tz::TimeZone::get(name).is_ok()
}

/// `2026-11-22 15:05 CET`: in the organisation's time zone, with the zone shown.
pub fn format_time(t: sesam_core::UnixTime, zone: &str) -> String {
    match jiff::Timestamp::from_second(t.0) {
        Ok(at) => at
            .to_zoned(time_zone(zone))
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => "?".into(),
    }
}

/// `2026-11-22T14:05:09Z`, for exports.
pub fn format_iso(t: sesam_core::UnixTime) -> String {
    match time::OffsetDateTime::from_unix_timestamp(t.0) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => String::new(),
    }
}

/// "You are logged out", after `/logout` and after a service's `end_session`.
pub fn logged_out_page(lang: Lang) -> Result<Response, AppError> {
    let t = lang.catalog();
    let page = MessagePage {
        chrome: Chrome::new(lang, "/login"),
        title: t.get("logout.done_title").to_owned(),
        body: t.get("logout.done_body").to_owned(),
        alert: false,
        link_href: "/login",
        link_label: t.get("login.title").to_owned(),
    };
    render(StatusCode::OK, &page)
}
