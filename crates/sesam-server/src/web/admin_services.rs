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
    /// Why the last metadata upload was refused.
    sp_problem: Option<String>,
    attributes: &'static [&'static str],
    scim: ScimSection,
}

/// The SCIM provisioning clients on the services page.
#[derive(Default)]
struct ScimSection {
    clients: Vec<sesam_store::ScimClient>,
    /// A client just made: its name, and its token, shown once.
    made_name: String,
    token: Option<String>,
    /// Why the last client was not made (a catalog key).
    problem: Option<&'static str>,
}

async fn scim_section(
    state: &AppState,
    made: Option<(String, String)>,
    problem: Option<&'static str>,
) -> Result<ScimSection, AppError> {
    let (made_name, token) = match made {
        Some((name, token)) => (name, Some(token)),
        None => (String::new(), None),
    };
    Ok(ScimSection {
        clients: state.store.list_scim_clients().await?,
        made_name,
        token,
        problem,
    })
}

#[derive(Template)]
#[template(path = "admin_saml_sp.html")]
struct SpPage {
    chrome: Chrome,
    csrf: String,
    sp: sesam_store::SamlSp,
    attributes: &'static [&'static str],
    problem: Option<String>,
    saved: bool,
    /// The algorithms its encrypted assertions get (override or from its metadata).
    key_transport: &'static str,
    data_encryption: &'static str,
    weaker: bool,
    /// The options of the selects, the stored choice selected (`auto`: the metadata decides).
    key_transports: Vec<Choice>,
    data_encryptions: Vec<Choice>,
    nameid_formats: Vec<Choice>,
}

/// One option of a select on the SP's page.
struct Choice {
    value: &'static str,
    label: String,
    selected: bool,
}

/// `auto` (labelled as chosen from the metadata) and `names`, with `stored` selected.
fn choices(lang: Lang, auto: bool, names: &[&'static str], stored: &str) -> Vec<Choice> {
    let t = lang.catalog();
    let auto = auto.then_some(("auto", t.get("admin.sp.auto").to_owned()));
    auto.into_iter()
        .chain(names.iter().map(|n| {
            let label = if n.ends_with("-cbc") {
                format!("{n} ({})", t.get("admin.sp.weaker_short"))
            } else {
                (*n).to_owned()
            };
            (*n, label)
        }))
        .map(|(value, label)| Choice {
            value,
            label,
            selected: value == stored,
        })
        .collect()
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
                href: format!(
                    "/admin/services/saml?entity_id={}",
                    urlencode(&sp.entity_id)
                ),
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
    scim: ScimSection,
) -> Result<Response, AppError> {
    let page = ServicesPage {
        chrome: Chrome::new(lang, "/admin/services"),
        csrf: csrf::token(&admin.0.session).await?,
        rows: rows(state).await?,
        form,
        problems,
        sp_problem: None,
        attributes: &crate::saml::RELEASABLE,
        scim,
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
        scim_section(&state, None, None).await?,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct ScimClientForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
}

/// Makes a SCIM provisioning client; the page then shows its token once.
pub async fn create_scim_client(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    StrictForm(form): StrictForm<ScimClientForm>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    let actor = admin.0.user.username.as_str();
    let (status, made, problem) = match crate::service::scim::add_client(
        &state.store,
        &form.name,
        actor,
        state.now(),
    )
    .await
    {
        Ok((client, token)) => (StatusCode::OK, Some((client.name, token)), None),
        Err(crate::service::ServiceError::Store(sesam_store::StoreError::Conflict(_))) => {
            (StatusCode::CONFLICT, None, Some("admin.scim.taken"))
        }
        Err(crate::service::ServiceError::Internal(_)) => {
            (StatusCode::BAD_REQUEST, None, Some("admin.scim.bad_name"))
        }
        Err(e) => return Err(AppError::Internal(e.to_string())),
    };
    let scim = scim_section(&state, made, problem).await?;
    services_page(
        &state,
        &admin,
        lang,
        status,
        ClientForm::default(),
        Vec::new(),
        scim,
    )
    .await
}

/// Revokes a SCIM client's token at once.
pub async fn remove_scim_client(
    State(state): State<AppState>,
    admin: Admin,
    StrictForm(form): StrictForm<ScimClientForm>,
) -> Result<Response, AppError> {
    csrf::verify(&admin.0.session, form.csrf.as_deref()).await?;
    let actor = admin.0.user.username.as_str();
    if !crate::service::scim::remove_client(&state.store, &form.name, actor, state.now())
        .await
        .map_err(|e| AppError::Internal(e.to_string()))?
    {
        return Err(AppError::NotFound);
    }
    Ok(Redirect::to("/admin/services#scim").into_response())
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
                scim_section(&state, None, None).await?,
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

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

// ---------------------------------------------------------------- SAML service providers

/// What the add-SP form sent (multipart, so a metadata file can be uploaded).
#[derive(Default)]
struct SpUpload {
    metadata: Vec<u8>,
    metadata_url: String,
    name: String,
    options: crate::saml::SpOptions,
}

fn level_of(value: &str) -> Option<sesam_core::AssuranceLevel> {
    sesam_core::AssuranceLevel::parse(value).filter(|l| *l < sesam_core::AssuranceLevel::High)
}

/// The CSRF token (when it came before any problem) and the upload or what is wrong with it.
async fn read_upload(
    multipart: axum::extract::Multipart,
) -> (Option<String>, Result<SpUpload, String>) {
    let mut csrf = None;
    let upload = read_fields(multipart, &mut csrf).await;
    (csrf, upload)
}

async fn read_fields(
    mut multipart: axum::extract::Multipart,
    csrf: &mut Option<String>,
) -> Result<SpUpload, String> {
    let max = sesam_saml::MAX_SP_METADATA_BYTES;
    let mut upload = SpUpload {
        options: crate::saml::SpOptions {
            released_attributes: Vec::new(),
            ..crate::saml::SpOptions::default()
        },
        ..SpUpload::default()
    };
    let too_large = || format!("The metadata is larger than {} KiB.", max / 1024);
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|_| "The form could not be read.".to_owned())?
    {
        let name = field.name().unwrap_or("").to_owned();
        let mut value = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|_| "The form could not be read.".to_owned())?
        {
            if value.len() + chunk.len() > max {
                return Err(too_large());
            }
            value.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&value).trim().to_owned();
        match name.as_str() {
            "csrf" => *csrf = Some(text()),
            "metadata" | "metadata_text" => {
                if !value.iter().all(u8::is_ascii_whitespace) {
                    upload.metadata = value;
                }
            }
            "metadata_url" => upload.metadata_url = text(),
            "name" => upload.name = text(),
            "min_level" => {
                upload.options.min_level =
                    level_of(&text()).ok_or("The minimum level must be low or substantial.")?
            }
            "encrypt" => upload.options.encrypt_assertions = true,
            "signed_requests" => upload.options.require_signed_requests = true,
            "attribute" => upload.options.released_attributes.push(text()),
            "key_transport" | "data_encryption" | "signing" | "nameid_format" => {
                choose(&mut upload.options, &name, &text()).map_err(|e| format!("{e:#}."))?
            }
            _ => return Err(format!("The form has an unknown field {name:?}.")),
        }
    }
    upload.options.name = Some(upload.name.clone()).filter(|n| !n.is_empty());
    Ok(upload)
}

/// Applies one protocol choice from a form (`name` is the field) to `options`.
fn choose(options: &mut crate::saml::SpOptions, name: &str, value: &str) -> anyhow::Result<()> {
    use crate::saml::{
        data_encryption_choice, key_transport_choice, name_id_format_choice,
        response_signing_choice,
    };
    match name {
        "key_transport" => options.key_transport = key_transport_choice(value)?,
        "data_encryption" => options.data_encryption = data_encryption_choice(value)?,
        "signing" => options.response_signing = response_signing_choice(value)?,
        "nameid_format" => options.nameid_format = name_id_format_choice(value)?,
        _ => {}
    }
    Ok(())
}

pub async fn add_sp(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    multipart: axum::extract::Multipart,
) -> Result<Response, AppError> {
    let (csrf_sent, upload) = read_upload(multipart).await;
    csrf::verify(&admin.0.session, csrf_sent.as_deref()).await?;
    let refused = |problem: String| async {
        let page = ServicesPage {
            chrome: Chrome::new(lang, "/admin/services"),
            csrf: csrf::token(&admin.0.session).await?,
            rows: rows(&state).await?,
            form: ClientForm::default(),
            problems: Vec::new(),
            sp_problem: Some(problem),
            attributes: &crate::saml::RELEASABLE,
            scim: scim_section(&state, None, None).await?,
        };
        render(StatusCode::BAD_REQUEST, &page)
    };
    let upload = match upload {
        Ok(u) => u,
        Err(problem) => return refused(problem).await,
    };
    let (xml, url) = match (upload.metadata.is_empty(), upload.metadata_url.is_empty()) {
        (false, true) => (upload.metadata.clone(), None),
        (true, false) => {
            let url = &upload.metadata_url;
            match crate::saml::fetch_metadata(url, state.config.allow_private_fetch).await {
                Ok(xml) => (xml, Some(url.clone())),
                Err(e) => return refused(crate::saml::fetch_problem(url, &e)).await,
            }
        }
        _ => {
            return refused(lang.catalog().get("admin.sp.one_source").to_owned()).await;
        }
    };
    let (record, _) = match crate::saml::sp_registration(&xml, url, &upload.options) {
        Ok(done) => done,
        Err(e) => return refused(format!("{e:#}.")).await,
    };
    let now = state.now();
    let created = state.store.upsert_saml_sp(&record, now).await?;
    state
        .store
        .append_audit(
            &audit(
                &admin.0.user,
                if created {
                    "saml.sp.added"
                } else {
                    "saml.sp.updated"
                },
                &record.entity_id,
                &ip,
            )
            .detail(format!(
                "{}; min. {}; encrypted {}; signed requests {}; attributes {}; key transport {}; \
                 data encryption {}; signing {}; NameID {}",
                record.name,
                record.min_level,
                record.encrypt_assertions,
                record.require_signed_requests,
                record.released_attributes.join(" "),
                record.key_transport.as_deref().unwrap_or("auto"),
                record.data_encryption.as_deref().unwrap_or("auto"),
                record.response_signing,
                record.nameid_format
            )),
            now,
        )
        .await?;
    Ok(Redirect::to(&format!(
        "/admin/services/saml?entity_id={}",
        urlencode(&record.entity_id)
    ))
    .into_response())
}

#[derive(Deserialize)]
pub struct SpQuery {
    entity_id: String,
    saved: Option<String>,
}

async fn find_sp(state: &AppState, entity_id: &str) -> Result<sesam_store::SamlSp, AppError> {
    if entity_id.len() > 1024 {
        return Err(AppError::NotFound);
    }
    state
        .store
        .saml_sp(entity_id)
        .await?
        .ok_or(AppError::NotFound)
}

async fn sp_page(
    admin: &Admin,
    lang: Lang,
    sp: sesam_store::SamlSp,
    problem: Option<String>,
    saved: bool,
) -> Result<Response, AppError> {
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // The stored metadata was checked when it was registered; unreadable now, it gets the
    // defaults shown, as the Response would fail anyway.
    let encryption = sesam_saml::parse_sp_metadata(sp.metadata_xml.as_bytes())
        .map(|md| crate::saml::encryption_for(&sp, &md))
        .unwrap_or_default();
    let page = SpPage {
        chrome: Chrome::new(lang, "/admin/services"),
        csrf: csrf::token(&admin.0.session).await?,
        attributes: &crate::saml::RELEASABLE,
        problem,
        saved,
        key_transport: encryption.key_transport.name(),
        data_encryption: encryption.data.name(),
        weaker: encryption.data.is_weaker(),
        key_transports: choices(
            lang,
            true,
            &sesam_saml::KeyTransport::ALL.map(|k| k.name()),
            sp.key_transport.as_deref().unwrap_or("auto"),
        ),
        data_encryptions: choices(
            lang,
            true,
            &sesam_saml::DataEncryption::ALL.map(|d| d.name()),
            sp.data_encryption.as_deref().unwrap_or("auto"),
        ),
        nameid_formats: choices(
            lang,
            false,
            &[
                sesam_saml::NameIdFormat::Persistent.name(),
                sesam_saml::NameIdFormat::Transient.name(),
                sesam_saml::NameIdFormat::EmailAddress.name(),
            ],
            crate::saml::default_name_id_format(&sp).name(),
        ),
        sp,
    };
    render(status, &page)
}

pub async fn sp(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    axum::extract::Query(q): axum::extract::Query<SpQuery>,
) -> Result<Response, AppError> {
    let sp = find_sp(&state, &q.entity_id).await?;
    sp_page(&admin, lang, sp, None, q.saved.is_some()).await
}

/// The per-SP settings form, and the refresh and remove buttons (`action`).
pub async fn save_sp(
    State(state): State<AppState>,
    admin: Admin,
    lang: Lang,
    ip: ClientIp,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
        .map_err(|_| AppError::BadRequest("the form is not form-encoded"))?;
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    csrf::verify(&admin.0.session, get("csrf")).await?;
    let sp = find_sp(&state, get("entity_id").unwrap_or("")).await?;
    let now = state.now();
    let mut xml = sp.metadata_xml.clone().into_bytes();
    let (event, options) = match get("action").unwrap_or("save") {
        "remove" => {
            state.store.remove_saml_sp(&sp.entity_id).await?;
            state
                .store
                .append_audit(
                    &audit(&admin.0.user, "saml.sp.removed", &sp.entity_id, &ip).detail(sp.name),
                    now,
                )
                .await?;
            return Ok(Redirect::to("/admin/services").into_response());
        }
        "refresh" => {
            let Some(url) = sp.metadata_url.clone() else {
                return sp_page(
                    &admin,
                    lang,
                    sp,
                    Some(lang.catalog().get("admin.sp.no_url").to_owned()),
                    false,
                )
                .await;
            };
            xml = match crate::saml::fetch_metadata(&url, state.config.allow_private_fetch).await {
                Ok(xml) => xml,
                Err(e) => {
                    let problem = crate::saml::fetch_problem(&url, &e);
                    return sp_page(&admin, lang, sp, Some(problem), false).await;
                }
            };
            ("saml.sp.refreshed", crate::saml::SpOptions::of(&sp))
        }
        "save" => {
            let Some(min_level) = get("min_level").and_then(level_of) else {
                return sp_page(
                    &admin,
                    lang,
                    sp,
                    Some("The minimum level must be low or substantial.".into()),
                    false,
                )
                .await;
            };
            let mut options = crate::saml::SpOptions {
                name: get("name").map(str::to_owned),
                enabled: get("enabled").is_some(),
                min_level,
                encrypt_assertions: get("encrypt").is_some(),
                require_signed_requests: get("signed_requests").is_some(),
                released_attributes: fields
                    .iter()
                    .filter(|(k, _)| k == "attribute")
                    .map(|(_, v)| v.clone())
                    .collect(),
                ..crate::saml::SpOptions::of(&sp)
            };
            for field in [
                "key_transport",
                "data_encryption",
                "signing",
                "nameid_format",
            ] {
                if let Some(value) = get(field) {
                    if let Err(e) = choose(&mut options, field, value) {
                        return sp_page(&admin, lang, sp, Some(format!("{e:#}.")), false).await;
                    }
                }
            }
            ("saml.sp.changed", options)
        }
        _ => return Err(AppError::BadRequest("unknown action")),
    };
    let record = match crate::saml::sp_registration(&xml, sp.metadata_url.clone(), &options) {
        Ok((record, _)) if record.entity_id == sp.entity_id => record,
        Ok(_) => {
            return sp_page(
                &admin,
                lang,
                sp,
                Some(lang.catalog().get("admin.sp.entity_changed").to_owned()),
                false,
            )
            .await
        }
        Err(e) => return sp_page(&admin, lang, sp, Some(format!("{e:#}.")), false).await,
    };
    state.store.upsert_saml_sp(&record, now).await?;
    state
        .store
        .append_audit(
            &audit(&admin.0.user, event, &record.entity_id, &ip)
                .detail(crate::saml::change_summary(&sp, &record)),
            now,
        )
        .await?;
    Ok(Redirect::to(&format!(
        "/admin/services/saml?entity_id={}&saved=1",
        urlencode(&record.entity_id)
    ))
    .into_response())
}
