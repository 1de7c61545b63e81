//! The admin portal: passwordless switch with a preview of its effect, users, the audit
//! log. Admins only, and only with a Substantial session (a password-only one steps up).

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_core::{preview, AssuranceLevel, Settings, UnixTime, User, UserId, UserStatus};
use sesam_store::{AuditEvent, AuditFilter};

use crate::i18n::{Catalog, Lang};
use crate::state::{AppState, ClientIp};
use crate::web::auth::{NotSignedIn, SignedIn};
use crate::web::csrf::{self, CsrfOnly};
use crate::web::error::AppError;
use crate::web::pages::{format_time, render, Chrome, MessagePage};

/// A signed-in administrator with a Substantial session.
pub struct Admin(pub SignedIn);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Admin, Response> {
        let path = parts.uri.path().to_owned();
        let signed_in = match SignedIn::from_request_parts(parts, state).await {
            Ok(s) => s,
            Err(NotSignedIn::Login) => {
                if let Some(session) = parts.extensions.get::<tower_sessions::Session>() {
                    // Back to this page after the login.
                    if let Ok(mut flow) = crate::web::auth::load(session).await {
                        flow.request = Some(portal_request(&path));
                        let _ = crate::web::auth::save(session, &flow, false).await;
                    }
                }
                return Err(Redirect::to("/login").into_response());
            }
            Err(e) => return Err(e.into_response()),
        };
        let lang = Lang::from_request_parts(parts, state)
            .await
            .unwrap_or(Lang::Da);
        if !signed_in.user.is_admin {
            let t = lang.catalog();
            let page = MessagePage {
                chrome: Chrome::new(lang, "/admin"),
                title: t.get("admin.forbidden_title").to_owned(),
                body: t.get("admin.forbidden_body").to_owned(),
                alert: true,
                link_href: "/account",
                link_label: t.get("account.title").to_owned(),
            };
            return Err(
                render(StatusCode::FORBIDDEN, &page).unwrap_or_else(IntoResponse::into_response)
            );
        }
        if signed_in.auth.level() < Some(AssuranceLevel::Substantial) {
            let mut flow = signed_in.flow.clone();
            flow.request = Some(portal_request(&path));
            let _ = crate::web::auth::save(&signed_in.session, &flow, false).await;
            return Err(Redirect::to("/login/step-up").into_response());
        }
        Ok(Admin(signed_in))
    }
}

/// The portal as a service of the login: Substantial, and back to the page asked for.
fn portal_request(path: &str) -> sesam_core::ServiceRequest {
    sesam_core::ServiceRequest {
        service: "Sesam admin".into(),
        level: AssuranceLevel::Substantial,
        not_before: None,
        resume: path.to_owned(),
        answers_protocol: false,
    }
}

pub fn audit(admin: &User, event: &str, subject: &str, ip: &ClientIp) -> AuditEvent {
    AuditEvent::new(event)
        .actor(admin.username.as_str())
        .subject(subject)
        .client_ip(ip.text())
}

// ---------------------------------------------------------------- dashboard

#[derive(Template)]
#[template(path = "admin_dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    figures: Vec<(&'static str, i64, &'static str)>,
}

pub async fn dashboard(
    State(state): State<AppState>,
    _admin: Admin,
    lang: Lang,
) -> Result<Response, AppError> {
    let now = state.now();
    let midnight = UnixTime(now.0 - now.0.rem_euclid(86_400));
    let counts = state.store.count_events_since(midnight).await?;
    let count = |name: &str| {
        counts
            .iter()
            .filter(|(e, _)| e == name)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let figures = vec![
        (
            "admin.dashboard.passwordless",
            count("login.passwordless.succeeded"),
            "fig-passwordless",
        ),
        (
            "admin.dashboard.password",
            count("login.password.succeeded") - count("login.step_up.succeeded"),
            "fig-password",
        ),
        (
            "admin.dashboard.password_push",
            count("login.step_up.succeeded"),
            "fig-password-push",
        ),
        (
            "admin.dashboard.failures",
            count("login.password.failed"),
            "fig-failures",
        ),
        (
            "admin.dashboard.pending",
            state.store.count_pending_challenges(now).await?,
            "fig-pending",
        ),
        (
            "admin.dashboard.push_failures",
            count("push.failed") + count("push.token_removed"),
            "fig-push-failures",
        ),
        (
            "admin.dashboard.users",
            state.store.count_users().await?,
            "fig-users",
        ),
    ];
    render(
        StatusCode::OK,
        &DashboardPage {
            chrome: Chrome::new(lang, "/admin"),
            figures,
        },
    )
}

// ---------------------------------------------------------------- settings

struct PreviewView {
    total: usize,
    passwordless: usize,
    summary: String,
    blocked: Vec<(String, &'static str, usize)>,
}

#[derive(Template)]
#[template(path = "admin_settings.html")]
struct SettingsPage {
    chrome: Chrome,
    csrf: String,
    /// (value, text key, chosen)
    modes: Vec<(&'static str, &'static str, bool)>,
    /// The other settings in sections: (title key, help key, fields).
    groups: Vec<(&'static str, &'static str, Vec<SettingField>)>,
    preview: Option<PreviewView>,
    saved: bool,
    error: Option<String>,
    /// Why the last logo upload was refused (a text key).
    logo_error: Option<&'static str>,
}

/// One setting as a typed control.
struct SettingField {
    key: &'static str,
    label: String,
    value: String,
    /// `choice`, `switch`, `number` or `text`.
    kind: &'static str,
    /// For a choice: (value, text key, chosen).
    choices: Vec<(&'static str, String, bool)>,
    min: i64,
    max: i64,
    /// The unit's text key (empty: a plain count).
    unit: String,
    max_chars: usize,
    /// What is wrong with the value typed, next to the field.
    error: Option<String>,
}

const MODES: [(&str, &str); 3] = [
    ("off", "admin.settings.off"),
    ("pilot", "admin.settings.pilot"),
    ("on", "admin.settings.on"),
];

/// The settings other than the passwordless switch, by section.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "app",
        &[
            "min_app_version",
            "min_pin_length",
            "first_device_with_password",
            "required_level",
        ],
    ),
    (
        "requests",
        &[
            "challenge_lifetime_seconds",
            "challenge_limit_per_user",
            "challenge_limit_per_ip",
            "challenge_limit_window_seconds",
        ],
    ),
    (
        "passwords",
        &[
            "lockout_max_failures",
            "lockout_window_seconds",
            "lockout_duration_seconds",
            "password_failures_per_ip",
            "psd2_mode",
        ],
    ),
    (
        "sessions",
        &["session_idle_seconds", "session_absolute_seconds"],
    ),
    (
        "organisation",
        &[
            "organisation_name",
            "organisation_cvr",
            "time_zone",
            "saml_want_signed_requests",
        ],
    ),
    (
        "branding",
        &[
            "accent_colour",
            "help_url",
            "privacy_url",
            "login_notice_da",
            "login_notice_en",
        ],
    ),
];

fn setting_field(key: &'static str, value: String) -> SettingField {
    use sesam_core::settings::SettingInput;
    let mut field = SettingField {
        key,
        label: format!("setting.{key}"),
        value,
        kind: "text",
        choices: Vec::new(),
        min: 0,
        max: 0,
        unit: String::new(),
        max_chars: 200,
        error: None,
    };
    match SettingInput::of(key) {
        Some(SettingInput::Choice(values)) => {
            field.kind = "choice";
            field.choices = values
                .iter()
                .map(|v| (*v, format!("level.{v}"), *v == field.value))
                .collect();
        }
        Some(SettingInput::Switch) => field.kind = "switch",
        Some(SettingInput::Number { min, max, unit }) => {
            field.kind = "number";
            (field.min, field.max) = (min, max);
            if !unit.is_empty() {
                field.unit = format!("admin.settings.unit.{unit}");
            }
        }
        Some(SettingInput::Text { max_chars }) => field.max_chars = max_chars,
        None => {}
    }
    field
}

fn settings_page(chrome: Chrome, csrf: String, s: &Settings) -> SettingsPage {
    let values = s.to_pairs();
    let value = |key: &str| {
        values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    SettingsPage {
        chrome,
        csrf,
        modes: MODES
            .iter()
            .map(|(v, k)| (*v, *k, *v == s.passwordless.as_str()))
            .collect(),
        groups: GROUPS
            .iter()
            .map(|(group, keys)| {
                let (title, help) = match *group {
                    "app" => ("admin.settings.group.app", "admin.settings.group.app_help"),
                    "requests" => (
                        "admin.settings.group.requests",
                        "admin.settings.group.requests_help",
                    ),
                    "passwords" => (
                        "admin.settings.group.passwords",
                        "admin.settings.group.passwords_help",
                    ),
                    "sessions" => (
                        "admin.settings.group.sessions",
                        "admin.settings.group.sessions_help",
                    ),
                    "branding" => (
                        "admin.settings.group.branding",
                        "admin.settings.group.branding_help",
                    ),
                    _ => (
                        "admin.settings.group.organisation",
                        "admin.settings.group.organisation_help",
                    ),
                };
                let fields = keys.iter().map(|k| setting_field(k, value(k))).collect();
                (title, help, fields)
            })
            .collect(),
        preview: None,
        saved: false,
        error: None,
        logo_error: None,
    }
}

/// The page again with what was typed, the problem next to its field.
fn refused_settings_page(
    chrome: Chrome,
    csrf: String,
    current: &Settings,
    form: &[(String, String)],
    (key, problem): (String, String),
) -> SettingsPage {
    let t = chrome.t;
    let mut page = settings_page(chrome, csrf, current);
    for (_, _, fields) in &mut page.groups {
        for field in fields {
            if let Some((_, typed)) = form.iter().rev().find(|(k, _)| k == field.key) {
                field.value = typed.chars().take(256).collect();
                for (value, _, chosen) in &mut field.choices {
                    *chosen = *value == field.value;
                }
            }
            if field.key == key {
                field.error = Some(match field.kind {
                    "number" => t
                        .fill("admin.settings.bad_number", "min", &field.min.to_string())
                        .replace("{max}", &field.max.to_string()),
                    "switch" | "choice" => t.get("admin.settings.bad_choice").to_owned(),
                    _ => problem.clone(),
                });
            }
        }
    }
    page.error = Some(problem);
    page
}

#[derive(Deserialize)]
pub struct SavedQuery {
    saved: Option<String>,
}

pub async fn show_settings(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    Query(q): Query<SavedQuery>,
) -> Result<Response, AppError> {
    let settings = state.store.load_settings().await?;
    let mut page = settings_page(
        Chrome::new(lang, "/admin/settings"),
        csrf::token(&admin.0.session).await?,
        &settings,
    );
    page.saved = q.saved.is_some();
    render(StatusCode::OK, &page)
}

/// The settings page saying why a logo was refused (the caller sets the status).
pub async fn settings_with_logo_problem(
    state: &AppState,
    admin: &Admin,
    lang: Lang,
    problem: crate::web::branding::LogoProblem,
) -> Result<Response, AppError> {
    let settings = state.store.load_settings().await?;
    let mut page = settings_page(
        Chrome::new(lang, "/admin/settings"),
        csrf::token(&admin.0.session).await?,
        &settings,
    );
    page.logo_error = Some(problem.text_key());
    render(StatusCode::BAD_REQUEST, &page)
}

/// The submitted form as settings, checked; the error is the first bad field's key and
/// what is wrong with it.
fn apply_form(current: &Settings, form: &[(String, String)]) -> Result<Settings, (String, String)> {
    let mut next = current.clone();
    for (key, value) in form {
        if key == "csrf" {
            continue;
        }
        next.set(key, value)
            .map_err(|e| (key.clone(), e.to_string()))?;
        if key == "time_zone" && !crate::web::pages::is_known_time_zone(&next.time_zone) {
            return Err((
                key.clone(),
                format!(
                    "setting time_zone: {:?} is not in the time zone database",
                    next.time_zone
                ),
            ));
        }
    }
    Ok(next)
}

/// The settings form after its CSRF token checked out.
async fn checked(
    admin: &Admin,
    pairs: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, AppError> {
    let token = pairs
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str());
    csrf::verify(&admin.0.session, token).await?;
    Ok(pairs)
}

pub async fn preview_settings(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    crate::web::form::StrictForm(pairs): crate::web::form::StrictForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let pairs = checked(&admin, pairs).await?;
    let current = state.store.load_settings().await?;
    let chrome = Chrome::new(lang, "/admin/settings");
    let csrf = csrf::token(&admin.0.session).await?;
    let next = match apply_form(&current, &pairs) {
        Ok(next) => next,
        Err(problem) => {
            let page = refused_settings_page(chrome, csrf, &current, &pairs, problem);
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let population = state.store.population().await?;
    let p = preview(&next, population.iter().map(|(u, d)| (u, d.as_slice())));
    let t = lang.catalog();
    let view = PreviewView {
        total: p.total,
        passwordless: p.passwordless,
        summary: t.fill(
            "admin.settings.preview_count",
            "count",
            &format!("{} / {}", p.passwordless, p.total),
        ),
        blocked: p
            .blocked
            .iter()
            .map(|(b, n)| (format!("blocker.{}", b.as_str()), b.as_str(), *n))
            .collect(),
    };
    let mut page = settings_page(chrome, csrf, &next);
    page.preview = Some(view);
    render(StatusCode::OK, &page)
}

pub async fn save_settings(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    crate::web::form::StrictForm(pairs): crate::web::form::StrictForm<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    let pairs = checked(&admin, pairs).await?;
    let current = state.store.load_settings().await?;
    let next = match apply_form(&current, &pairs) {
        Ok(next) => next,
        Err(problem) => {
            let page = refused_settings_page(
                Chrome::new(lang, "/admin/settings"),
                csrf::token(&admin.0.session).await?,
                &current,
                &pairs,
                problem,
            );
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let now = state.now();
    for ((key, before), (_, after)) in current.to_pairs().into_iter().zip(next.to_pairs()) {
        if before != after {
            state.store.set_setting(key, &after, now).await?;
            state
                .store
                .append_audit(
                    &audit(&admin.0.user, "settings.changed", key, &ip)
                        .detail(format!("{before} -> {after}")),
                    now,
                )
                .await?;
        }
    }
    Ok(Redirect::to("/admin/settings?saved=1").into_response())
}

// ---------------------------------------------------------------- users

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    chrome: Chrome,
    csrf: String,
    /// The create-user form as typed, and what is wrong with it.
    new_user: NewUserForm,
    new_user_error: Option<String>,
    query: String,
    users: Vec<(String, String, String, &'static str, String)>,
    next_href: Option<String>,
}

#[derive(Deserialize)]
pub struct UsersQuery {
    q: Option<String>,
    after: Option<String>,
}

const PAGE: i64 = 50;

/// The user's flags in the reader's language.
fn flags(u: &User, t: &Catalog) -> String {
    let mut f = Vec::new();
    if u.is_admin {
        f.push(t.get("user.flag.admin"));
    }
    if u.password_only {
        f.push(t.get("user.flag.password_only"));
    }
    if u.in_pilot {
        f.push(t.get("user.flag.pilot"));
    }
    if u.passwordless_locked {
        f.push(t.get("user.flag.passwordless_paused"));
    }
    f.join(", ")
}

/// `active`, `locked`, `disabled` in the reader's language.
fn status_text(u: &User, t: &'static Catalog) -> &'static str {
    match u.status {
        UserStatus::Active => t.get("user.status.active"),
        UserStatus::Locked => t.get("user.status.locked"),
        UserStatus::Disabled => t.get("user.status.disabled"),
    }
}

pub async fn users(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    Query(q): Query<UsersQuery>,
) -> Result<Response, AppError> {
    let query: String = q.q.unwrap_or_default().trim().chars().take(128).collect();
    let after: Option<String> = q.after.map(|a| a.chars().take(256).collect());
    let found = state
        .store
        .search_users(&query, after.as_deref(), PAGE + 1)
        .await?;
    let more = found.len() as i64 > PAGE;
    let shown: Vec<&User> = found.iter().take(PAGE as usize).collect();
    let next_href = if more {
        shown.last().map(|u| {
            format!(
                "/admin/users?q={}&after={}",
                percent_encoding::utf8_percent_encode(&query, percent_encoding::NON_ALPHANUMERIC),
                percent_encoding::utf8_percent_encode(
                    &u.username.key(),
                    percent_encoding::NON_ALPHANUMERIC
                )
            )
        })
    } else {
        None
    };
    let t = lang.catalog();
    let users = shown
        .iter()
        .map(|u| {
            (
                u.id.0.clone(),
                u.username.to_string(),
                u.display_name.clone(),
                status_text(u, t),
                flags(u, t),
            )
        })
        .collect();
    render(
        StatusCode::OK,
        &UsersPage {
            chrome: Chrome::new(lang, "/admin/users"),
            csrf: csrf::token(&admin.0.session).await?,
            new_user: NewUserForm::default(),
            new_user_error: None,
            query,
            users,
            next_href,
        },
    )
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NewUserForm {
    csrf: Option<String>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    admin: Option<String>,
    password_only: Option<String>,
    pilot: Option<String>,
}

/// Creates a user with a one-time password (shown once on the user's page, to be changed
/// at the first login).
pub async fn create_user(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    crate::web::form::StrictForm(form): crate::web::form::StrictForm<NewUserForm>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    let t = lang.catalog();
    let display_name = form.display_name.trim();
    let email = form.email.trim();
    let problem = match sesam_core::Username::parse(form.username.trim()) {
        Err(_) => Some(t.get("login.username_invalid").to_owned()),
        Ok(_) if display_name.is_empty() || display_name.chars().count() > 200 => {
            Some(t.get("admin.users.new_name_invalid").to_owned())
        }
        Ok(_) if !email.is_empty() && (email.len() > 254 || !email.contains('@')) => {
            Some(t.get("admin.users.new_email_invalid").to_owned())
        }
        Ok(_) => None,
    };
    let created = match (problem, sesam_core::Username::parse(form.username.trim())) {
        (None, Ok(username)) => {
            let password = crate::password::generate_one_time_password();
            let hash = state
                .passwords
                .hash(password.clone())
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?;
            let new = sesam_store::NewUser {
                username,
                display_name: display_name.to_owned(),
                email: (!email.is_empty()).then(|| email.to_owned()),
                password_hash: Some(hash),
                is_admin: form.admin.is_some(),
                password_only: form.password_only.is_some(),
                must_change_password: true,
            };
            match state.store.create_user(new, state.now()).await {
                Ok(user) => Ok((user, password)),
                Err(sesam_store::StoreError::Conflict(_)) => {
                    Err(t.get("admin.users.new_exists").to_owned())
                }
                Err(e) => return Err(e.into()),
            }
        }
        (Some(problem), _) => Err(problem),
        (None, Err(_)) => Err(t.get("login.username_invalid").to_owned()),
    };
    let (user, password) = match created {
        Ok(done) => done,
        Err(problem) => {
            let page = UsersPage {
                chrome: Chrome::new(lang, "/admin/users"),
                csrf: csrf::token(&admin.0.session).await?,
                new_user: form,
                new_user_error: Some(problem),
                query: String::new(),
                users: Vec::new(),
                next_href: None,
            };
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let now = state.now();
    if form.pilot.is_some() {
        state.store.set_in_pilot(&user.id, true, now).await?;
    }
    state
        .store
        .append_audit(
            &audit(&admin.0.user, "user.created", user.username.as_str(), &ip).detail(format!(
                "admin: {}, password-only: {}, pilot: {}",
                user.is_admin,
                user.password_only,
                form.pilot.is_some()
            )),
            now,
        )
        .await?;
    let user = find_user(&state, &user.id.0).await?;
    user_page(&state, &admin, lang, &user, Some(password), None).await
}

#[derive(Template)]
#[template(path = "admin_user.html")]
struct UserPage {
    chrome: Chrome,
    csrf: String,
    id: String,
    username: String,
    display_name: String,
    status: &'static str,
    flags: String,
    passwordless: String,
    /// A fraud report paused passwordless: the box that says so, with the button to resume.
    passwordless_paused: bool,
    actions: Vec<(&'static str, &'static str)>,
    devices: Vec<crate::web::devices::DeviceRow>,
    events: Vec<String>,
    one_time_password: Option<String>,
    activation_code: Option<String>,
}

async fn user_page(
    state: &AppState,
    admin: &Admin,
    lang: Lang,
    user: &User,
    one_time_password: Option<String>,
    activation_code: Option<String>,
) -> Result<Response, AppError> {
    let settings = state.store.load_settings().await?;
    let t = lang.catalog();
    let records = state.store.devices_of_user(&user.id).await?;
    let cores: Vec<sesam_core::Device> = records.iter().map(|d| d.device.clone()).collect();
    let passwordless = match sesam_core::preview::blocker(&settings, user, &cores) {
        None => t.get("devices.yes").to_owned(),
        Some(b) => format!(
            "{} {}",
            t.get("devices.no_because"),
            t.get(&format!("blocker.{}", b.as_str()))
        ),
    };
    let devices = records
        .iter()
        .map(|d| crate::web::devices::DeviceRow::of(d, &settings, t))
        .collect();
    let events = state
        .store
        .list_audit(Some(user.username.as_str()), 10)
        .await?
        .into_iter()
        .map(|e| {
            format!(
                "{} {} {}",
                format_time(UnixTime(e.at), &settings.time_zone),
                e.event,
                e.client_ip.unwrap_or_default()
            )
        })
        .collect();
    let mut actions = vec![if user.status == UserStatus::Active {
        ("lock", "admin.user.lock")
    } else {
        ("unlock", "admin.user.unlock")
    }];
    actions.push(("reset-password", "admin.user.reset_password"));
    actions.push(if user.password_only {
        ("password-only-off", "admin.user.password_only_off")
    } else {
        ("password-only-on", "admin.user.password_only_on")
    });
    actions.push(if user.in_pilot {
        ("pilot-off", "admin.user.pilot_off")
    } else {
        ("pilot-on", "admin.user.pilot_on")
    });
    if state.store.totp_of_user(&user.id).await?.is_some() {
        actions.push(("totp-reset", "totp.admin_reset"));
    }
    let page = UserPage {
        chrome: Chrome::new(lang, "/admin/users"),
        csrf: csrf::token(&admin.0.session).await?,
        id: user.id.0.clone(),
        username: user.username.to_string(),
        display_name: user.display_name.clone(),
        status: status_text(user, t),
        flags: flags(user, t),
        passwordless,
        passwordless_paused: user.passwordless_locked,
        actions,
        devices,
        events,
        one_time_password,
        activation_code,
    };
    render(StatusCode::OK, &page)
}

async fn find_user(state: &AppState, id: &str) -> Result<User, AppError> {
    if id.len() > 64 {
        return Err(AppError::NotFound);
    }
    match state.store.get_user(&UserId(id.to_owned())).await {
        Ok(u) => Ok(u),
        Err(sesam_store::StoreError::NotFound(_)) => Err(AppError::NotFound),
        Err(e) => Err(e.into()),
    }
}

pub async fn user(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let user = find_user(&state, &id).await?;
    user_page(&state, &admin, lang, &user, None, None).await
}

pub async fn user_action(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    Path((id, action)): Path<(String, String)>,
    crate::web::form::StrictForm(form): crate::web::form::StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    let user = find_user(&state, &id).await?;
    let now = state.now();
    let name = user.username.as_str().to_owned();
    let actor = admin.0.user.username.as_str();
    let back = Redirect::to(&format!("/admin/users/{}", user.id)).into_response();
    let (event, detail): (&str, String) = match action.as_str() {
        "lock" => {
            state
                .store
                .set_user_status(&user.id, UserStatus::Locked, now)
                .await?;
            ("user.locked", format!("{} -> locked", user.status.as_str()))
        }
        "unlock" => {
            crate::service::account::unlock_user(&state.store, &user, actor, ip.text(), now)
                .await?;
            return Ok(back);
        }
        "totp-reset" => {
            crate::service::totp::reset(&state.store, &user, actor, ip.text(), now).await?;
            return Ok(back);
        }
        "passwordless-resume" => {
            crate::service::account::resume_passwordless(
                &state.store,
                &user,
                actor,
                ip.text(),
                now,
            )
            .await?;
            return Ok(back);
        }
        "password-only-on" | "password-only-off" => {
            let on = action.ends_with("-on");
            state.store.set_password_only(&user.id, on, now).await?;
            (
                "user.password_only",
                format!("{} -> {on}", user.password_only),
            )
        }
        "pilot-on" | "pilot-off" => {
            let on = action.ends_with("-on");
            state.store.set_in_pilot(&user.id, on, now).await?;
            ("user.pilot", format!("{} -> {on}", user.in_pilot))
        }
        "reset-password" => {
            let password = crate::password::generate_one_time_password();
            let hash = state
                .passwords
                .hash(password.clone())
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?;
            state.store.set_password(&user.id, &hash, true, now).await?;
            state
                .store
                .clear_login_failures(&user.username.key())
                .await?;
            // Whoever was logged in as this user is not any more.
            crate::service::account::end_other_logins(&state.store, &user, now).await?;
            state
                .store
                .append_audit(
                    &audit(&admin.0.user, "password.set", &name, &ip)
                        .detail("one-time password by an administrator"),
                    now,
                )
                .await?;
            let user = find_user(&state, &id).await?;
            return user_page(&state, &admin, lang, &user, Some(password), None).await;
        }
        "activation-code" => {
            let code = crate::activation::issue(&state.store, &user.id, now).await?;
            state
                .store
                .append_audit(
                    &audit(&admin.0.user, "device.activation_code.issued", &name, &ip),
                    now,
                )
                .await?;
            return user_page(&state, &admin, lang, &user, None, Some(code)).await;
        }
        _ => return Err(AppError::NotFound),
    };
    state
        .store
        .append_audit(&audit(&admin.0.user, event, &name, &ip).detail(detail), now)
        .await?;
    Ok(Redirect::to(&format!("/admin/users/{}", user.id)).into_response())
}

pub async fn remove_device(
    State(state): State<AppState>,
    admin: Admin,
    ip: ClientIp,
    Path((id, device_id)): Path<(String, String)>,
    crate::web::form::StrictForm(form): crate::web::form::StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    let user = find_user(&state, &id).await?;
    match state.store.get_device(&device_id).await? {
        Some(d) if d.user_id == user.id => {
            state.store.delete_device(&device_id).await?;
            state
                .store
                .append_audit(
                    &audit(&admin.0.user, "device.removed", user.username.as_str(), &ip)
                        .detail(format!("device {device_id} by an administrator")),
                    state.now(),
                )
                .await?;
            Ok(Redirect::to(&format!("/admin/users/{}", user.id)).into_response())
        }
        _ => Err(AppError::NotFound),
    }
}

// ---------------------------------------------------------------- audit log

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    chrome: Chrome,
    user: String,
    event: String,
    from: String,
    until: String,
    bad_date: bool,
    rows: Vec<(String, String, String, String, String, String)>,
    csv_href: String,
    next_href: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    user: Option<String>,
    event: Option<String>,
    from: Option<String>,
    until: Option<String>,
    before: Option<i64>,
}

/// `2026-11-22` as the Unix time of that midnight in the organisation's time zone.
fn parse_day(s: &str, zone: &str) -> Option<UnixTime> {
    let mut parts = s.trim().split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let date = jiff::civil::Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()?;
    let midnight = date.to_zoned(crate::web::pages::time_zone(zone)).ok()?;
    Some(UnixTime(midnight.timestamp().as_second()))
}

fn filter_of(q: &AuditQuery, zone: &str) -> (AuditFilter, bool) {
    let text = |v: &Option<String>| {
        v.as_ref()
            .map(|s| s.trim().chars().take(128).collect::<String>())
            .filter(|s| !s.is_empty())
    };
    let mut bad = false;
    let mut day = |v: &Option<String>| match text(v) {
        None => None,
        Some(s) => {
            let parsed = parse_day(&s, zone);
            bad |= parsed.is_none();
            parsed
        }
    };
    let from = day(&q.from);
    let until = day(&q.until);
    (
        AuditFilter {
            subject: text(&q.user),
            event_prefix: text(&q.event),
            from,
            until,
            before_id: q.before,
        },
        bad,
    )
}

fn query_string(q: &AuditQuery) -> String {
    let enc = |v: &Option<String>| {
        percent_encoding::utf8_percent_encode(
            v.as_deref().unwrap_or(""),
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string()
    };
    format!(
        "user={}&event={}&from={}&until={}",
        enc(&q.user),
        enc(&q.event),
        enc(&q.from),
        enc(&q.until)
    )
}

pub async fn audit_log(
    State(state): State<AppState>,
    _admin: Admin,
    lang: Lang,
    Query(q): Query<AuditQuery>,
) -> Result<Response, AppError> {
    let zone = state.store.load_settings().await?.time_zone;
    let (filter, bad_date) = filter_of(&q, &zone);
    let entries = state.store.filter_audit(&filter, PAGE + 1).await?;
    let more = entries.len() as i64 > PAGE;
    let shown: Vec<_> = entries.into_iter().take(PAGE as usize).collect();
    let next_href = if more {
        shown
            .last()
            .map(|e| format!("/admin/audit?{}&before={}", query_string(&q), e.id))
    } else {
        None
    };
    let rows = shown
        .into_iter()
        .map(|e| {
            (
                format_time(UnixTime(e.at), &zone),
                e.actor.unwrap_or_default(),
                e.event,
                e.subject.unwrap_or_default(),
                e.client_ip.unwrap_or_default(),
                e.detail,
            )
        })
        .collect();
    let page = AuditPage {
        chrome: Chrome::new(lang, "/admin/audit"),
        user: q.user.clone().unwrap_or_default(),
        event: q.event.clone().unwrap_or_default(),
        from: q.from.clone().unwrap_or_default(),
        until: q.until.clone().unwrap_or_default(),
        bad_date,
        rows,
        csv_href: format!("/admin/audit.csv?{}", query_string(&q)),
        next_href,
    };
    render(
        if bad_date {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        &page,
    )
}

/// A field as CSV: quoted, quotes doubled, and a leading formula character neutralised so
/// a spreadsheet never runs what a user typed.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub async fn audit_csv(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<AuditQuery>,
) -> Result<Response, AppError> {
    let zone = state.store.load_settings().await?.time_zone;
    let (filter, bad_date) = filter_of(&q, &zone);
    if bad_date {
        return Err(AppError::BadRequest("dates must look like 2026-11-22"));
    }
    let entries = state.store.filter_audit(&filter, 100_000).await?;
    let mut out = String::from("id,time,actor,event,subject,client_ip,detail\n");
    for e in entries {
        let at = crate::web::pages::format_iso(UnixTime(e.at));
        out.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            e.id,
            csv_field(&at),
            csv_field(e.actor.as_deref().unwrap_or("")),
            csv_field(&e.event),
            csv_field(e.subject.as_deref().unwrap_or("")),
            csv_field(e.client_ip.as_deref().unwrap_or("")),
            csv_field(&e.detail)
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"sesam-audit.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_and_bad_ones_do_not() {
        assert_eq!(parse_day("1970-01-02", "UTC"), Some(UnixTime(86_400)));
        assert_eq!(
            parse_day("2026-11-22", "Europe/Copenhagen"),
            Some(UnixTime(1_795_302_000)),
            "midnight in Copenhagen is 23:00 UTC the day before"
        );
        assert_eq!(parse_day("2026-02-30", "UTC"), None);
        assert_eq!(parse_day("yesterday", "UTC"), None);
        assert_eq!(parse_day("2026-11-22-1", "UTC"), None);
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_neutralised() {
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("=cmd()"), "\"'=cmd()\"");
    }
}
