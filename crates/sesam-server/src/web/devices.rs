//! Self-service for the MFA app: the user's devices with their eligibility and why not,
//! a new activation code with its QR code, rename and remove.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use qrcode::render::svg;
use qrcode::QrCode;
use serde::Deserialize;
use sesam_core::Ineligibility;
use sesam_store::{DeviceChange, DeviceRecord};

use crate::activation;
use crate::i18n::{Catalog, Lang};
use crate::service::account::{enrol_device, remove_device, Enrolment};
use crate::service::Origin;
use crate::state::AppState;
use crate::web::auth::SignedIn;
use crate::web::csrf::{self, CsrfOnly};
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{format_time, render, Chrome};

pub struct DeviceRow {
    pub id: String,
    pub name: String,
    pub platform: &'static str,
    pub app_version: String,
    pub eligible: bool,
    pub reasons: String,
    /// May approve the step-up after a password (any active phone app).
    pub step_up: bool,
    /// Has a push address, so login requests arrive as notifications.
    pub notifications: bool,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "devices.html")]
pub struct DevicesPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub devices: Vec<DeviceRow>,
    pub error_key: Option<&'static str>,
    /// The user's confirmed code display (TOTP), if any.
    pub totp: Option<TotpRow>,
    /// A code display can be added: a TOTP key is configured and the user has none.
    pub totp_can_add: bool,
    pub passkeys: Vec<PasskeyRow>,
    /// Passkeys are offered (the public URL has a domain name) and the user has room.
    pub passkey_can_add: bool,
}

/// A passkey as the devices page shows it.
pub struct PasskeyRow {
    pub id: String,
    pub name: String,
    pub transports: String,
    pub added: String,
    pub last_used: String,
}

/// A code display as the devices page shows it; never its secret.
pub struct TotpRow {
    pub added: String,
    pub last_used: String,
}

#[derive(Template)]
#[template(path = "activation.html")]
pub struct ActivationPage {
    pub chrome: Chrome,
    pub code: String,
    pub body: String,
    pub qr_svg: String,
}

impl DeviceRow {
    /// A device as the account and admin pages show it, with the reasons in `t`'s language.
    pub fn of(d: &DeviceRecord, settings: &sesam_core::Settings, t: &Catalog) -> DeviceRow {
        let reasons = d.device.passwordless_ineligibility(settings);
        DeviceRow {
            id: d.device.id.clone(),
            name: d.display_name.clone(),
            platform: d.device.platform.as_str(),
            app_version: d.device.app_version.to_string(),
            eligible: reasons.is_empty(),
            reasons: reasons
                .iter()
                .map(|r| reason_text(t, r))
                .collect::<Vec<_>>()
                .join("; "),
            step_up: d.device.can_approve_step_up(),
            notifications: d.push_token.is_some(),
            last_used: d
                .last_used_at
                .map(|at| format_time(at, &settings.time_zone))
                .unwrap_or_else(|| t.get("devices.never").to_owned()),
        }
    }
}

/// One reason in the reader's language.
pub fn reason_text(t: &Catalog, reason: &Ineligibility) -> String {
    match reason {
        Ineligibility::NotPhoneApp(_) => t.get("reason.not_phone_app").to_owned(),
        Ineligibility::AppTooOld { has, needs } => t
            .fill("reason.app_too_old", "has", &has.to_string())
            .replace("{needs}", &needs.to_string()),
        Ineligibility::PinTooShort { has, needs } => t
            .fill("reason.pin_too_short", "has", &has.to_string())
            .replace("{needs}", &needs.to_string()),
        Ineligibility::Locked => t.get("reason.locked").to_owned(),
        Ineligibility::Disabled => t.get("reason.disabled").to_owned(),
    }
}

/// Shown when a password-only login tries to remove a way to log in.
pub(crate) const REMOVE_NEEDS_MORE: &str = "devices.remove_needs_more";

/// The devices page again, with why the last action was refused, under `status`.
pub(crate) async fn refused(
    state: &AppState,
    signed_in: &SignedIn,
    lang: Lang,
    status: StatusCode,
    key: &'static str,
) -> Result<Response, AppError> {
    render(status, &page(state, signed_in, lang, Some(key)).await?)
}

pub(crate) async fn page(
    state: &AppState,
    signed_in: &SignedIn,
    lang: Lang,
    error_key: Option<&'static str>,
) -> Result<DevicesPage, AppError> {
    let settings = state.store.settings().await?;
    let t = lang.catalog();
    let devices = state
        .store
        .devices_of_user(&signed_in.user.id)
        .await?
        .into_iter()
        .map(|d| DeviceRow::of(&d, &settings, t))
        .collect();
    let totp = state
        .store
        .totp_of_user(&signed_in.user.id)
        .await?
        .filter(|r| r.confirmed)
        .map(|r| TotpRow {
            added: format_time(r.confirmed_at.unwrap_or(r.created_at), &settings.time_zone),
            last_used: r
                .last_used_at
                .map(|at| format_time(at, &settings.time_zone))
                .unwrap_or_else(|| t.get("devices.never").to_owned()),
        });
    let passkeys: Vec<PasskeyRow> = crate::service::passkey::of_user(state, &signed_in.user.id)
        .await?
        .into_iter()
        .map(|p| PasskeyRow {
            id: p.id,
            name: p.display_name,
            transports: p.transports,
            added: format_time(p.created_at, &settings.time_zone),
            last_used: p
                .last_used_at
                .map(|at| format_time(at, &settings.time_zone))
                .unwrap_or_else(|| t.get("devices.never").to_owned()),
        })
        .collect();
    Ok(DevicesPage {
        passkey_can_add: state.passkeys.is_some()
            && passkeys.len() < crate::service::passkey::MAX_PASSKEYS,
        passkeys,
        chrome: Chrome::new(lang, "/account/devices"),
        csrf: csrf::token(&signed_in.session).await?,
        devices,
        error_key,
        totp_can_add: totp.is_none() && state.config.totp_key.is_some(),
        totp,
    })
}

pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
) -> Result<Response, AppError> {
    render(StatusCode::OK, &page(&state, &signed_in, lang, None).await?)
}

pub async fn new_activation_code(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    let code = match enrol_device(&state, &signed_in.flow, &signed_in.user, &origin).await? {
        Enrolment::Code(code) => code,
        Enrolment::NeedsMore => {
            return refused(
                &state,
                &signed_in,
                lang,
                StatusCode::FORBIDDEN,
                "devices.needs_more",
            )
            .await;
        }
    };
    let t = lang.catalog();
    let payload =
        serde_json::json!({ "server": state.config.public_url, "code": code }).to_string();
    let qr_svg = QrCode::new(payload.as_bytes())
        .map(|qr| qr.render::<svg::Color>().min_dimensions(200, 200).build())
        .map_err(|e| AppError::Internal(format!("qr: {e}")))?;
    let page = ActivationPage {
        chrome: Chrome::new(lang, "/account/devices"),
        body: t.fill(
            "devices.code_body",
            "minutes",
            &(activation::VALID_SECONDS / 60).to_string(),
        ),
        code,
        qr_svg,
    };
    render(StatusCode::OK, &page)
}

/// The signed-in user's device, or 404 (another user's device looks like no device).
async fn own_device(
    state: &AppState,
    signed_in: &SignedIn,
    id: &str,
) -> Result<DeviceRecord, AppError> {
    if id.len() > 64 {
        return Err(AppError::NotFound);
    }
    match state.store.get_device(id).await? {
        Some(d) if d.user_id == signed_in.user.id => Ok(d),
        _ => Err(AppError::NotFound),
    }
}

#[derive(Deserialize)]
pub struct RenameForm {
    csrf: Option<String>,
    name: String,
}

pub async fn rename(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    Path(id): Path<String>,
    StrictForm(form): StrictForm<RenameForm>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    let device = own_device(&state, &signed_in, &id).await?;
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return refused(
            &state,
            &signed_in,
            lang,
            StatusCode::BAD_REQUEST,
            "devices.name_invalid",
        )
        .await;
    }
    let change = DeviceChange {
        display_name: Some(name.to_owned()),
        ..DeviceChange::default()
    };
    state
        .store
        .update_device(&device.device.id, &change, state.now())
        .await?;
    Ok(Redirect::to("/account/devices").into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    signed_in: SignedIn,
    lang: Lang,
    origin: Origin,
    Path(id): Path<String>,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&signed_in.session, form.csrf.as_deref()).await?;
    let device = own_device(&state, &signed_in, &id).await?;
    if !remove_device(&state, &signed_in.flow, &signed_in.user, &device, &origin).await? {
        return refused(
            &state,
            &signed_in,
            lang,
            StatusCode::FORBIDDEN,
            REMOVE_NEEDS_MORE,
        )
        .await;
    }
    Ok(Redirect::to("/account/devices").into_response())
}
