//! The demo service (`serve --demo` only): a stand-in for a municipal self-service that
//! sends people to Sesam and shows what came back, plus the browser "phone".

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_core::{AssuranceLevel, Factor, UserId, Username};
use sesam_store::AuditEvent;
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::service::login::ServiceAnswer;
use crate::service::Origin;
use crate::state::AppState;
use crate::web::auth;
use crate::web::csrf::{self, CsrfOnly};
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{render, Chrome};

#[derive(Template)]
#[template(path = "demo.html")]
pub struct DemoPage {
    pub chrome: Chrome,
    pub csrf: String,
    pub signed_in_as: Option<String>,
    pub level_code: &'static str,
    pub level_key: &'static str,
    pub factors: String,
    pub activation_code: Option<String>,
    /// The demo's own limit on app requests, said on the page.
    pub limits: String,
}

fn demo_only(state: &AppState) -> Result<(), AppError> {
    if state.config.demo {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

async fn page(
    state: &AppState,
    session: &Session,
    lang: Lang,
    activation_code: Option<String>,
) -> Result<Response, AppError> {
    let t = lang.catalog();
    let mut signed_in_as = None;
    let (mut level_code, mut level_key, mut factors) = ("", "account.level.low", String::new());
    if let Some(current) = auth::current(session).await? {
        if let Ok(user) = state.store.get_user(&UserId(current.user_id.clone())).await {
            signed_in_as = Some(user.username.to_string());
            let level = current.level().unwrap_or(AssuranceLevel::Low);
            level_code = level.as_str();
            level_key = match level {
                AssuranceLevel::Low => "account.level.low",
                AssuranceLevel::Substantial => "account.level.substantial",
                AssuranceLevel::High => "account.level.high",
            };
            factors = current
                .factors
                .iter()
                .map(|f| match f.factor {
                    Factor::Password => t.get("demo.factor.password"),
                    Factor::App => t.get("demo.factor.app"),
                    Factor::Totp => t.get("demo.factor.totp"),
                    Factor::Passkey => t.get("demo.factor.passkey"),
                    Factor::Upstream(_) => t.get("demo.factor.upstream"),
                })
                .collect::<Vec<_>>()
                .join(" + ");
        }
    }
    let settings = state.store.settings().await?;
    let limits = t
        .fill(
            "demo.limits",
            "per_user",
            &settings.challenge_limit_per_user.to_string(),
        )
        .replace("{per_ip}", &settings.challenge_limit_per_ip.to_string())
        .replace(
            "{minutes}",
            &(settings.challenge_limit_window_seconds / 60).to_string(),
        );
    let page = DemoPage {
        limits,
        chrome: Chrome::new(lang, "/demo"),
        csrf: csrf::token(session).await?,
        signed_in_as,
        level_code,
        level_key,
        factors,
        activation_code,
    };
    render(StatusCode::OK, &page)
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
) -> Result<Response, AppError> {
    demo_only(&state)?;
    page(&state, &session, lang, None).await
}

#[derive(Deserialize)]
pub struct LoginQuery {
    level: Option<String>,
}

/// What a service does: say who is asking and what it needs, then send the user to log in.
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    origin: Origin,
    Query(q): Query<LoginQuery>,
) -> Result<Response, AppError> {
    demo_only(&state)?;
    let level = if q.level.as_deref() == Some("substantial") {
        AssuranceLevel::Substantial
    } else {
        AssuranceLevel::Low
    };
    let request = sesam_core::ServiceRequest {
        service: "Demo-kommunen".into(),
        level,
        not_before: None,
        resume: "/demo".into(),
        answers_protocol: false,
    };
    let mut flow = auth::load(&session).await?;
    let answer =
        crate::service::login::answer_service(&state, &mut flow, request, false, None, &origin)
            .await?;
    let response = match answer {
        ServiceAnswer::Ready { .. } => Redirect::to("/demo").into_response(),
        ServiceAnswer::Login(moved) => {
            auth::save(&session, &flow, moved.rotate).await?;
            return Ok(auth::redirect(&moved.next, &flow));
        }
        ServiceAnswer::LevelUnreachable | ServiceAnswer::PassiveImpossible => {
            Redirect::to("/login/unreachable").into_response()
        }
    };
    auth::save(&session, &flow, false).await?;
    Ok(response)
}

/// Demo only: an activation code for anna without logging in first, so the whole tour
/// takes a minute. The phone still enrols through the real app API.
pub async fn activation(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    demo_only(&state)?;
    csrf::verify(&session, form.csrf.as_deref()).await?;
    let anna = Username::parse("anna").map_err(|_| AppError::Internal("demo user name".into()))?;
    let user = state
        .store
        .find_user_by_username(&anna)
        .await?
        .ok_or(AppError::NotFound)?;
    let code = crate::activation::issue(&state.store, &user.id, state.now()).await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("device.activation_code.issued")
                .actor("demo")
                .subject("anna")
                .detail("demo page"),
            state.now(),
        )
        .await?;
    page(&state, &session, lang, Some(code)).await
}

/// The phone page in the site's language (the phone's script reads it from `<html lang>`),
/// with the switch to the other one.
pub async fn phone(State(state): State<AppState>, lang: Lang) -> Result<Response, AppError> {
    demo_only(&state)?;
    let page = include_str!("../../../../static/phone.html");
    let (code, other) = (lang.code(), lang.other().code());
    let page = page
        .replacen("<html lang=\"en\">", &format!("<html lang=\"{code}\">"), 1)
        .replacen(
            "href=\"/lang/da?next=%2Fdemo%2Fphone\" lang=\"da\" hreflang=\"da\">Dansk</a>",
            &format!(
                "href=\"/lang/{other}?next=%2Fdemo%2Fphone\" lang=\"{other}\" hreflang=\"{other}\">{}</a>",
                lang.catalog().get("lang.other_name")
            ),
            1,
        );
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
}
