//! The admin portal's services: OpenID Connect clients (create with the secret shown once,
//! edit redirect URIs, enable or disable, rotate the secret, remove) and the list of SAML
//! service providers.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sesam_store::OidcClient;

use crate::i18n::Lang;
use crate::oidc::ClientRegistration;
use crate::state::{AppState, ClientIp};
use crate::web::admin::{audit, Admin};
use crate::web::csrf::{self, CsrfOnly};
use crate::web::error::AppError;
use crate::web::form::StrictForm;
use crate::web::pages::{render, Chrome};

/// One row of the service list.
pub struct ServiceRow {
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub href: String,
    pub enabled: bool,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "admin_services.html")]
struct ServicesPage {
    chrome: Chrome,
    csrf: String,
    rows: Vec<ServiceRow>,
    /// The create form as typed, with what is wrong with it.
    form: ClientForm,
    problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "admin_oidc_client.html")]
struct ClientPage {
    chrome: Chrome,
    csrf: String,
    client: OidcClient,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    problems: Vec<String>,
    /// A secret just created or rotated: shown once.
    secret: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ClientForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    post_logout_redirect_uris: String,
    public: Option<String>,
    es256: Option<String>,
    pairwise: Option<String>,
    enabled: Option<String>,
}

fn uri_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn rows(state: &AppState) -> Result<Vec<ServiceRow>, AppError> {
    let mut rows: Vec<ServiceRow> = state
        .store
        .list_oidc_clients()
        .await?
        .into_iter()
        .map(|c| ServiceRow {
            kind: "OpenID Connect",
            href: format!("/admin/services/oidc/{}", c.client_id),
            detail: c.redirect_uris.join(" "),
            id: c.client_id,
            name: c.name,
            enabled: c.enabled,
        })
        .collect();
    rows.extend(
        state
            .store
            .list_saml_sps()
            .await?
            .into_iter()
            .map(|sp| ServiceRow {
                kind: "SAML",
                href: String::new(),
                detail: format!(
                    "min. {}{}",
                    sp.min_level,
                    if sp.encrypt_assertions {
                        ", encrypted"
                    } else {
                        ""
                    }
                ),
                id: sp.entity_id,
                name: sp.name,
                enabled: sp.enabled,
            }),
    );
    Ok(rows)
}

async fn services_page(
    state: &AppState,
    admin: &Admin,
    lang: Lang,
    status: StatusCode,
    form: ClientForm,
    problems: Vec<String>,
) -> Result<Response, AppError> {
    let page = ServicesPage {
        chrome: Chrome::new(lang, "/admin/services"),
        csrf: csrf::token(&admin.0.session).await?,
        rows: rows(state).await?,
        form,
        problems,
    };
    render(status, &page)
}

pub async fn services(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
) -> Result<Response, AppError> {
    services_page(
        &state,
        &admin,
        lang,
        StatusCode::OK,
        ClientForm::default(),
        Vec::new(),
    )
    .await
}

pub async fn create_client(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    StrictForm(form): StrictForm<ClientForm>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    let registration = ClientRegistration {
        name: form.name.clone(),
        redirect_uris: uri_lines(&form.redirect_uris),
        post_logout_redirect_uris: uri_lines(&form.post_logout_redirect_uris),
        public: form.public.is_some(),
        es256: form.es256.is_some(),
        pairwise: form.pairwise.is_some(),
    };
    let now = state.now();
    let (client, secret) = match crate::oidc::register_client(&state.store, &registration, now)
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
    {
        Ok(done) => done,
        Err(problems) => {
            return services_page(
                &state,
                &admin,
                lang,
                StatusCode::BAD_REQUEST,
                form,
                problems,
            )
            .await
        }
    };
    state
        .store
        .append_audit(
            &audit(&admin.0.user, "oidc.client.added", &client.client_id, &ip).detail(format!(
                "{} -> {}",
                client.name,
                client.redirect_uris.join(" ")
            )),
            now,
        )
        .await?;
    client_page(&state, &admin, lang, client, Vec::new(), secret, None).await
}

async fn find_client(state: &AppState, id: &str) -> Result<OidcClient, AppError> {
    state
        .store
        .get_oidc_client(id)
        .await?
        .ok_or(AppError::NotFound)
}

async fn client_page(
    _state: &AppState,
    admin: &Admin,
    lang: Lang,
    client: OidcClient,
    problems: Vec<String>,
    secret: Option<String>,
    typed: Option<&ClientForm>,
) -> Result<Response, AppError> {
    let status = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = ClientPage {
        chrome: Chrome::new(lang, "/admin/services"),
        csrf: csrf::token(&admin.0.session).await?,
        redirect_uris: typed.map_or_else(
            || client.redirect_uris.join("\n"),
            |f| f.redirect_uris.clone(),
        ),
        post_logout_redirect_uris: typed.map_or_else(
            || client.post_logout_redirect_uris.join("\n"),
            |f| f.post_logout_redirect_uris.clone(),
        ),
        client,
        problems,
        secret,
    };
    render(status, &page)
}

pub async fn client(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let client = find_client(&state, &id).await?;
    client_page(&state, &admin, lang, client, Vec::new(), None, None).await
}

pub async fn save_client(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    Path(id): Path<String>,
    StrictForm(form): StrictForm<ClientForm>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    let client = find_client(&state, &id).await?;
    let registration = ClientRegistration {
        name: client.name.clone(),
        redirect_uris: uri_lines(&form.redirect_uris),
        post_logout_redirect_uris: uri_lines(&form.post_logout_redirect_uris),
        ..ClientRegistration::default()
    };
    let problems = registration.problems();
    if !problems.is_empty() {
        return client_page(&state, &admin, lang, client, problems, None, Some(&form)).await;
    }
    let now = state.now();
    let enabled = form.enabled.is_some();
    state
        .store
        .set_oidc_client_redirects(
            &id,
            &registration.redirect_uris,
            &registration.post_logout_redirect_uris,
            now,
        )
        .await?;
    state
        .store
        .set_oidc_client_enabled(&id, enabled, now)
        .await?;
    state
        .store
        .append_audit(
            &audit(&admin.0.user, "oidc.client.changed", &id, &ip).detail(format!(
                "redirect URIs {} -> {}; enabled {} -> {enabled}",
                client.redirect_uris.join(" "),
                registration.redirect_uris.join(" "),
                client.enabled
            )),
            now,
        )
        .await?;
    Ok(Redirect::to(&format!("/admin/services/oidc/{id}")).into_response())
}

pub async fn client_action(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    Path((id, action)): Path<(String, String)>,
    StrictForm(form): StrictForm<CsrfOnly>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    let client = find_client(&state, &id).await?;
    let now = state.now();
    match action.as_str() {
        "rotate" => {
            let Some(secret) = crate::oidc::rotate_secret(&state.store, &id, now)
                .await
                .map_err(|e| AppError::Internal(e.to_string()))?
            else {
                return Err(AppError::BadRequest("a public client has no secret"));
            };
            state
                .store
                .append_audit(
                    &audit(&admin.0.user, "oidc.client.secret_rotated", &id, &ip),
                    now,
                )
                .await?;
            let client = find_client(&state, &id).await?;
            client_page(&state, &admin, lang, client, Vec::new(), Some(secret), None).await
        }
        "remove" => {
            state.store.remove_oidc_client(&id).await?;
            state
                .store
                .append_audit(
                    &audit(&admin.0.user, "oidc.client.removed", &id, &ip).detail(client.name),
                    now,
                )
                .await?;
            Ok(Redirect::to("/admin/services").into_response())
        }
        _ => Err(AppError::NotFound),
    }
}
