//! SAML endpoints: the IdP metadata, single sign-on over HTTP-Redirect and HTTP-POST, and the
//! continuation after the login that posts the signed Response to the service provider.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use percent_encoding::percent_decode;
use serde::{Deserialize, Serialize};
use sesam_core::{AssuranceLevel, UnixTime};
use sesam_saml::{
    AuthnRequest, IdpMetadata, NameIdFormat, SamlError, SignaturePolicy, StatusError,
    UnverifiedAuthnRequest, MAX_RELAY_STATE_BYTES, MAX_REQUEST_XML_BYTES,
};
use sesam_store::SamlSp;
use time::{Duration, OffsetDateTime};
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::service::saml::{SsoAnswer, SsoResponse};
use crate::service::Origin;
use crate::state::{AppState, ClientIp};
use crate::web::error::AppError;
use crate::web::pages::{render, Chrome, MessagePage};
use crate::web::protocol::{login_for_service, LoginNeed, LoginOutcome};

/// The checked request waiting in the session while the user logs in.
const PENDING_KEY: &str = "saml.pending";
/// Where the browser returns after the login.
const RESUME: &str = "/saml/sso/continue";
/// How far a request's IssueInstant may be from our clock.
const SKEW: Duration = Duration::minutes(3);
/// How long a POST-binding request waits for the browser's GET.
const HANDOVER_SECONDS: i64 = 300;
/// How long a login for a request may take before the request is stale.
const PENDING_MAX_AGE_SECONDS: i64 = 3600;
const MAX_REQUEST_ID_CHARS: usize = 256;
/// Form body of the POST binding: base64 of the largest request, RelayState and field names.
const MAX_POST_BODY_BYTES: usize = MAX_REQUEST_XML_BYTES * 3 / 2 + MAX_RELAY_STATE_BYTES * 3 + 256;

/// An accepted AuthnRequest: what the answer needs once the user is logged in.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    sp: String,
    request_id: String,
    acs_url: String,
    relay_state: Option<String>,
    force_authn: bool,
    is_passive: bool,
    level: AssuranceLevel,
    requested_at: i64,
    /// The NameID format's short name (requests kept before there was a choice: persistent).
    #[serde(default = "persistent")]
    name_id_format: String,
}

fn persistent() -> String {
    NameIdFormat::Persistent.name().to_owned()
}

/// Why a request is not served: a page when the SP or its ACS cannot be trusted, else a
/// SAML error Response to the ACS.
enum Refusal {
    Page(StatusCode, &'static str),
    ToSp {
        acs_url: String,
        in_response_to: String,
        relay_state: Option<String>,
        error: StatusError,
        message: String,
    },
    Internal(AppError),
    /// A LogoutRequest refused with a LogoutResponse to the SP.
    Logout(Box<PendingLogout>, sesam_saml::LogoutStatus),
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        Refusal::Internal(e)
    }
}

impl From<sesam_store::StoreError> for Refusal {
    fn from(e: sesam_store::StoreError) -> Self {
        Refusal::Internal(e.into())
    }
}

fn odt(t: UnixTime) -> Result<OffsetDateTime, AppError> {
    OffsetDateTime::from_unix_timestamp(t.0).map_err(|e| AppError::Internal(e.to_string()))
}

fn error_page(lang: Lang, status: StatusCode, body_key: &'static str) -> Response {
    let t = lang.catalog();
    let page = MessagePage {
        chrome: Chrome::new(lang, "/"),
        title: t.get("saml.error_title").to_owned(),
        body: t.get(body_key).to_owned(),
        alert: true,
        link_href: "/",
        link_label: t.get("login.back").to_owned(),
    };
    render(status, &page).unwrap_or_else(IntoResponse::into_response)
}

/// Which page a decoding failure gets: all mean the request cannot be read or trusted.
fn decode_refusal(e: &SamlError) -> Refusal {
    tracing::info!(error = %e, "SAML request refused");
    match e {
        SamlError::TooLarge { .. } => {
            Refusal::Page(StatusCode::PAYLOAD_TOO_LARGE, "saml.bad_request")
        }
        // Read fine, but signed in a shape that is refused before any key is known.
        SamlError::SignatureStructure(_) => signature_refusal(e),
        _ => Refusal::Page(StatusCode::BAD_REQUEST, "saml.bad_request"),
    }
}

/// Which page a refused request signature gets: each cause its own words, so the SP's
/// administrator can tell a missing signature from a wrong key or a refused algorithm.
fn signature_refusal(e: &SamlError) -> Refusal {
    let key = match e {
        SamlError::Unsigned => "saml.unsigned",
        SamlError::Sha1Refused(_) => "saml.sha1_refused",
        SamlError::AlgorithmNotAccepted(_) => "saml.unsupported_algorithm",
        SamlError::SignatureStructure(_) => "saml.signature_structure",
        _ => "saml.bad_signature",
    };
    Refusal::Page(StatusCode::FORBIDDEN, key)
}

// ---------------------------------------------------------------- metadata

/// `GET /saml/metadata`: the signed IdP metadata.
pub async fn metadata(State(state): State<AppState>) -> Response {
    let idp = &state.saml;
    let now = match odt(state.now()) {
        Ok(now) => now,
        Err(e) => return e.into_response(),
    };
    let settings = match state.store.settings().await {
        Ok(s) => s,
        Err(e) => return AppError::from(e).into_response(),
    };
    let meta = IdpMetadata {
        entity_id: &idp.entity_id,
        sso_url: &idp.sso_url,
        slo_url: &idp.slo_url,
        want_authn_requests_signed: settings.saml_want_signed_requests,
        valid_until: now + Duration::days(7),
        cache_duration: Duration::hours(6),
        next_signing_certificate: idp.next_certificate.as_ref(),
        encryption_certificate: None,
    };
    match sesam_saml::idp_metadata(&meta, &idp.key) {
        Ok(xml) => (
            [
                (header::CONTENT_TYPE, "application/samlmetadata+xml"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            xml,
        )
            .into_response(),
        Err(e) => AppError::Internal(format!("IdP metadata: {e}")).into_response(),
    }
}

// ---------------------------------------------------------------- single sign-on

/// `GET /saml/sso`: the HTTP-Redirect binding, checked over the query string as received.
pub async fn sso_redirect(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    RawQuery(query): RawQuery,
) -> Response {
    let accepted = match sesam_saml::decode_redirect(query.as_deref().unwrap_or("")) {
        Ok(unverified) => accept(&state, unverified).await,
        Err(e) => Err(decode_refusal(&e)),
    };
    let result = match accepted {
        Ok(pending) => match session.insert(PENDING_KEY, &pending).await {
            Ok(()) => proceed(&state, &session, lang, &origin, pending, true).await,
            Err(e) => Err(AppError::from(e).into()),
        },
        Err(refusal) => Err(refusal),
    };
    answer(&state, lang, result)
}

/// `POST /saml/sso`: the HTTP-POST binding. The cross-site POST carries no session cookie, so
/// the checked request is stored and the browser continues on a GET that has it.
pub async fn sso_post(
    State(state): State<AppState>,
    lang: Lang,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (saml_request, relay_state) = read_post_fields(&headers, &body)?;
        let unverified = sesam_saml::decode_post(&saml_request, relay_state.as_deref())
            .map_err(|e| decode_refusal(&e))?;
        let pending = accept(&state, unverified).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let json = serde_json::to_string(&pending)
            .map_err(|e| AppError::Internal(format!("pending request: {e}")))?;
        state
            .store
            .put_saml_pending(&id, &json, state.now().plus_seconds(HANDOVER_SECONDS))
            .await?;
        Ok(Redirect::to(&format!("{RESUME}?r={id}")).into_response())
    }
    .await;
    answer(&state, lang, result)
}

/// `GET /saml/sso/continue`: picks up a POST-binding request (`?r=`), or comes back from the
/// login to answer the request kept in the session.
pub async fn sso_continue(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        if query.as_deref().unwrap_or("").contains("r=") {
            let pending: Pending = take_handover(&state, query.as_deref()).await?;
            session
                .insert(PENDING_KEY, &pending)
                .await
                .map_err(AppError::from)?;
            return proceed(&state, &session, lang, &origin, pending, true).await;
        }
        let pending = session
            .get::<Pending>(PENDING_KEY)
            .await
            .map_err(AppError::from)?;
        match pending {
            Some(p) if state.now().0 - p.requested_at <= PENDING_MAX_AGE_SECONDS => {
                proceed(&state, &session, lang, &origin, p, false).await
            }
            _ => Err(Refusal::Page(StatusCode::BAD_REQUEST, "saml.no_request")),
        }
    }
    .await;
    answer(&state, lang, result)
}

fn answer(state: &AppState, lang: Lang, result: Result<Response, Refusal>) -> Response {
    match result {
        Ok(r) => r,
        Err(Refusal::Page(status, key)) => error_page(lang, status, key),
        Err(Refusal::Internal(e)) => e.into_response(),
        Err(Refusal::Logout(pending, status)) => logout_answer(state, &pending, status, lang),
        Err(Refusal::ToSp {
            acs_url,
            in_response_to,
            relay_state,
            error,
            message,
        }) => {
            tracing::info!(?error, %message, "SAML error Response sent");
            let now = match odt(state.now()) {
                Ok(now) => now,
                Err(e) => return e.into_response(),
            };
            match sesam_saml::build_error_response(
                &state.saml.entity_id,
                &acs_url,
                Some(&in_response_to),
                now,
                error,
                Some(&message),
            ) {
                Ok(xml) => deliver(&acs_url, &xml, relay_state.as_deref(), lang),
                Err(e) => AppError::Internal(format!("SAML error response: {e}")).into_response(),
            }
        }
    }
}

/// The `SAMLRequest` and `RelayState` fields of a form body, strictly decoded.
fn read_post_fields(headers: &HeaderMap, body: &[u8]) -> Result<(String, Option<String>), Refusal> {
    let form = read_post_form(headers, body)?;
    let request = form
        .request
        .ok_or(Refusal::Page(StatusCode::BAD_REQUEST, "saml.bad_request"))?;
    Ok((request, form.relay_state))
}

/// The SAML fields of a POST-binding form.
struct PostForm {
    request: Option<String>,
    response: Option<String>,
    relay_state: Option<String>,
}

/// Reads the form strictly: its type, a size cap, UTF-8, each field at most once.
fn read_post_form(headers: &HeaderMap, body: &[u8]) -> Result<PostForm, Refusal> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(Refusal::Page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "saml.bad_request",
        ));
    }
    if body.len() > MAX_POST_BODY_BYTES {
        return Err(Refusal::Page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "saml.bad_request",
        ));
    }
    let bad = || Refusal::Page(StatusCode::BAD_REQUEST, "saml.bad_request");
    let (mut request, mut response, mut relay) = (None, None, None);
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let mut parts = pair.splitn(2, |b| *b == b'=');
        let name = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        let plus_as_space: Vec<u8> = value
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        let decoded = percent_decode(&plus_as_space)
            .decode_utf8()
            .map_err(|_| bad())?
            .into_owned();
        let slot = match name {
            b"SAMLRequest" => &mut request,
            b"SAMLResponse" => &mut response,
            b"RelayState" => &mut relay,
            _ => continue,
        };
        if slot.replace(decoded).is_some() {
            return Err(bad());
        }
    }
    if request.is_some() == response.is_some() {
        return Err(bad());
    }
    Ok(PostForm {
        request,
        response,
        relay_state: relay,
    })
}

/// The checks before a login starts: known SP, signature per its policy, ACS from its
/// metadata; then (answered to the ACS) version, time, Destination, replay, NameID format
/// and the level asked for.
async fn accept(state: &AppState, unverified: UnverifiedAuthnRequest) -> Result<Pending, Refusal> {
    let issuer = unverified
        .issuer()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .ok_or(Refusal::Page(StatusCode::BAD_REQUEST, "saml.unknown_sp"))?
        .to_owned();
    let sp = match state.store.saml_sp_cached(&issuer).await? {
        Some(sp) if sp.enabled => sp,
        _ => {
            tracing::info!(%issuer, "AuthnRequest from an unknown or disabled SP");
            return Err(Refusal::Page(StatusCode::FORBIDDEN, "saml.unknown_sp"));
        }
    };
    let metadata = state
        .saml
        .sp_metadata(&sp)
        .map_err(|e| AppError::Internal(format!("stored metadata of {issuer}: {e}")))?;
    let relay_state = unverified.relay_state().map(str::to_owned);
    let policy = SignaturePolicy {
        require_signed: sp.require_signed_requests
            || metadata.authn_requests_signed
            || state.store.settings().await?.saml_want_signed_requests,
        allow_sha1: sp.allow_sha1,
    };
    let request: AuthnRequest = unverified
        .verify(&metadata.signing_certificates, policy)
        .map_err(|e| {
            tracing::info!(%issuer, error = %e, "AuthnRequest signature refused");
            signature_refusal(&e)
        })?;
    let acs_url = request
        .resolve_acs(&metadata)
        .map_err(|e| {
            tracing::info!(%issuer, error = %e, "AuthnRequest ACS refused");
            Refusal::Page(StatusCode::BAD_REQUEST, "saml.unknown_acs")
        })?
        .location
        .clone();
    if request.id.is_empty() || request.id.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(Refusal::Page(StatusCode::BAD_REQUEST, "saml.bad_request"));
    }
    let to_sp = |error: StatusError, message: String| Refusal::ToSp {
        acs_url: acs_url.clone(),
        in_response_to: request.id.clone(),
        relay_state: relay_state.clone(),
        error,
        message,
    };
    let now = state.now();
    if let Err(e) = request.validate(&state.saml.sso_url, odt(now)?, SKEW) {
        let status = match e {
            SamlError::Version(_) => StatusError::VersionMismatch,
            _ => StatusError::RequestDenied,
        };
        return Err(to_sp(status, e.to_string()));
    }
    let keep_until = now.plus_seconds(2 * SKEW.whole_seconds() + 60);
    if !state
        .store
        .remember_saml_request_id(&sp.entity_id, &request.id, keep_until, now)
        .await?
    {
        return Err(to_sp(
            StatusError::RequestDenied,
            "the request ID was used before".into(),
        ));
    }
    let requested_format = request
        .name_id_policy
        .as_ref()
        .and_then(|p| p.format.as_deref());
    let name_id_format = crate::saml::name_id_format_for(&sp, requested_format)
        .map_err(|why| to_sp(StatusError::InvalidNameIdPolicy, why))?;
    let asked =
        requested_level(&request).map_err(|m| to_sp(StatusError::NoAuthnContext, m.to_owned()))?;
    let level = asked.max(sp_min_level(&sp));
    Ok(Pending {
        sp: sp.entity_id,
        request_id: request.id.clone(),
        acs_url: acs_url.clone(),
        relay_state: relay_state.clone(),
        force_authn: request.force_authn,
        is_passive: request.is_passive,
        level,
        requested_at: now.0,
        name_id_format: name_id_format.name().to_owned(),
    })
}

fn sp_min_level(sp: &SamlSp) -> AssuranceLevel {
    AssuranceLevel::parse(&sp.min_level).unwrap_or(AssuranceLevel::Low)
}

fn nsis_level(uri: &str) -> Option<AssuranceLevel> {
    AssuranceLevel::parse(uri).filter(|l| l.nsis_uri() == uri.trim())
}

/// The level a RequestedAuthnContext asks for. Class references that are not NSIS levels
/// are ignored (the answer names the NSIS level reached); High cannot be given.
fn requested_level(request: &AuthnRequest) -> Result<AssuranceLevel, &'static str> {
    let Some(ctx) = &request.requested_authn_context else {
        return Ok(AssuranceLevel::Low);
    };
    let Some(lowest) = ctx.class_refs.iter().filter_map(|c| nsis_level(c)).min() else {
        return Ok(AssuranceLevel::Low);
    };
    let needed = match ctx.comparison.as_str() {
        "better" => match lowest {
            AssuranceLevel::Low => AssuranceLevel::Substantial,
            _ => AssuranceLevel::High,
        },
        "maximum" => AssuranceLevel::Low,
        _ => lowest,
    };
    if needed >= AssuranceLevel::High {
        return Err("NSIS High cannot be given by this identity provider");
    }
    Ok(needed)
}

/// Logs the user in as the request needs (or finds the session enough) and answers the SP.
async fn proceed(
    state: &AppState,
    session: &Session,
    lang: Lang,
    origin: &Origin,
    pending: Pending,
    first: bool,
) -> Result<Response, Refusal> {
    let to_sp = |error: StatusError, message: &str| Refusal::ToSp {
        acs_url: pending.acs_url.clone(),
        in_response_to: pending.request_id.clone(),
        relay_state: pending.relay_state.clone(),
        error,
        message: message.to_owned(),
    };
    let sp = match state.store.saml_sp_cached(&pending.sp).await? {
        Some(sp) if sp.enabled => sp,
        _ => {
            session
                .remove::<Pending>(PENDING_KEY)
                .await
                .map_err(AppError::from)?;
            return Err(Refusal::Page(StatusCode::FORBIDDEN, "saml.unknown_sp"));
        }
    };
    if first && pending.force_authn {
        // ForceAuthn: the login this browser has does not count, even one from this second.
        crate::web::protocol::sign_out_keeping_request(state, session, origin).await?;
    }
    let need = LoginNeed {
        service: &sp.name,
        level: pending.level,
        not_before: pending.force_authn.then_some(pending.requested_at),
        passive: first && pending.is_passive,
        resume: RESUME,
        login_hint: None,
    };
    let outcome = login_for_service(state, session, &need, origin).await?;
    let (user, auth) = match outcome {
        LoginOutcome::Login(response) => return Ok(response),
        LoginOutcome::LevelUnreachable => {
            session
                .remove::<Pending>(PENDING_KEY)
                .await
                .map_err(AppError::from)?;
            // SAML Core 3.2.2.2: the SP hears that the level cannot be given.
            return Err(to_sp(
                StatusError::NoAuthnContext,
                "this user cannot reach the level of assurance the service asked for",
            ));
        }
        LoginOutcome::PassiveImpossible => {
            session
                .remove::<Pending>(PENDING_KEY)
                .await
                .map_err(AppError::from)?;
            return Err(to_sp(
                StatusError::NoPassive,
                "a login page would be needed",
            ));
        }
        LoginOutcome::Ready { user, auth } => (user, auth),
    };
    session
        .remove::<Pending>(PENDING_KEY)
        .await
        .map_err(AppError::from)?;

    let answer = SsoAnswer {
        sp: &sp,
        acs_url: &pending.acs_url,
        request_id: &pending.request_id,
        name_id_format: NameIdFormat::parse(&pending.name_id_format)
            .unwrap_or(NameIdFormat::Persistent),
    };
    let xml = match crate::service::saml::issue_response(state, &answer, &user, &auth, origin)
        .await
        .map_err(AppError::from)?
    {
        SsoResponse::Issued(xml) => xml,
        SsoResponse::Refused(error, message) => return Err(to_sp(error, message)),
    };
    Ok(deliver(
        &pending.acs_url,
        &xml,
        pending.relay_state.as_deref(),
        lang,
    ))
}

/// The auto-submitting form to the ACS, with a CSP that lets exactly that form go there.
fn deliver(acs_url: &str, xml: &str, relay_state: Option<&str>, lang: Lang) -> Response {
    deliver_field(acs_url, "SAMLResponse", xml, relay_state, lang)
}

/// As [`deliver`], with the message in form field `field` (`SAMLRequest` for a request).
fn deliver_field(
    acs_url: &str,
    field: &str,
    xml: &str,
    relay_state: Option<&str>,
    lang: Lang,
) -> Response {
    let label = lang.catalog().get("saml.post_button");
    let html = sesam_saml::post_form(acs_url, xml, relay_state, label)
        .replacen("name=\"SAMLResponse\"", &format!("name=\"{field}\""), 1)
        .replacen(
            "<form method=\"post\"",
            "<form id=\"form-post\" method=\"post\"",
            1,
        )
        .replacen(
            "</head>",
            "<script src=\"/static/form-post.js\" defer></script></head>",
            1,
        );
    crate::web::protocol::form_post_page(html, acs_url)
}

// ---------------------------------------------------------------- single logout

/// A checked LogoutRequest: what the logout and the answer need.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PendingLogout {
    sp: String,
    request_id: String,
    name_id: Option<String>,
    session_indexes: Vec<String>,
    relay_state: Option<String>,
    /// The SP's SingleLogoutService (its ResponseLocation when given).
    endpoint: String,
    /// Answer over HTTP-Redirect (else HTTP-POST).
    redirect: bool,
}

/// `GET /saml/slo`: a LogoutRequest over HTTP-Redirect (a top-level GET: the session cookie
/// comes along).
pub async fn slo_redirect(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    ip: ClientIp,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let query = query.as_deref().unwrap_or("");
        if query.split('&').any(|p| p.starts_with("SAMLResponse=")) {
            let unverified = sesam_saml::decode_logout_response_redirect(query)
                .map_err(|e| decode_refusal(&e))?;
            return logout_response_arrived(&state, &session, unverified, lang).await;
        }
        let unverified =
            sesam_saml::decode_logout_redirect(query).map_err(|e| decode_refusal(&e))?;
        let pending = accept_logout(&state, unverified).await?;
        log_out(&state, &session, &ip, pending, lang).await
    }
    .await;
    answer(&state, lang, result)
}

/// `POST /saml/slo`: over HTTP-POST. As for sign-on, the checked request is kept and the
/// browser continues on a GET that carries the session cookie.
pub async fn slo_post(
    State(state): State<AppState>,
    lang: Lang,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let form = read_post_form(&headers, &body)?;
        let handover = match (form.request, form.response) {
            (Some(saml_request), _) => {
                let unverified =
                    sesam_saml::decode_logout_post(&saml_request, form.relay_state.as_deref())
                        .map_err(|e| decode_refusal(&e))?;
                SloHandover::Request(accept_logout(&state, unverified).await?)
            }
            (None, Some(saml_response)) => {
                // Checked on the GET, against the logout the session is waiting for.
                sesam_saml::decode_logout_response_post(&saml_response)
                    .map_err(|e| decode_refusal(&e))?;
                SloHandover::Response { saml_response }
            }
            (None, None) => return Err(Refusal::Page(StatusCode::BAD_REQUEST, "saml.bad_request")),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let json = serde_json::to_string(&handover)
            .map_err(|e| AppError::Internal(format!("pending logout: {e}")))?;
        state
            .store
            .put_saml_pending(&id, &json, state.now().plus_seconds(HANDOVER_SECONDS))
            .await?;
        Ok(Redirect::to(&format!("/saml/slo/continue?r={id}")).into_response())
    }
    .await;
    answer(&state, lang, result)
}

/// What a POST to `/saml/slo` hands over to the GET.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind")]
enum SloHandover {
    Request(PendingLogout),
    Response { saml_response: String },
}

/// `GET /saml/slo/continue?r=`: the logout of a POST-binding LogoutRequest, or the next step
/// after an SP's POST-binding LogoutResponse.
pub async fn slo_continue(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    ip: ClientIp,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        match take_handover(&state, query.as_deref()).await? {
            SloHandover::Request(pending) => log_out(&state, &session, &ip, pending, lang).await,
            SloHandover::Response { saml_response } => {
                let unverified = sesam_saml::decode_logout_response_post(&saml_response)
                    .map_err(|e| decode_refusal(&e))?;
                logout_response_arrived(&state, &session, unverified, lang).await
            }
        }
    }
    .await;
    answer(&state, lang, result)
}

/// The request handed over from a POST under `?r=`; single use.
async fn take_handover<T: serde::de::DeserializeOwned>(
    state: &AppState,
    query: Option<&str>,
) -> Result<T, Refusal> {
    let none = || Refusal::Page(StatusCode::BAD_REQUEST, "saml.no_request");
    let id = query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("r="))
        .filter(|id| id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(none)?;
    let json = state
        .store
        .take_saml_pending(id, state.now())
        .await?
        .ok_or_else(none)?;
    serde_json::from_str(&json).map_err(|_| none())
}

/// Known SP, signature always required, an SLO endpoint in its metadata; then (answered to
/// the SP) version, time, Destination and replay.
async fn accept_logout(
    state: &AppState,
    unverified: sesam_saml::UnverifiedLogoutRequest,
) -> Result<PendingLogout, Refusal> {
    let issuer = unverified
        .issuer()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .ok_or(Refusal::Page(StatusCode::BAD_REQUEST, "saml.unknown_sp"))?
        .to_owned();
    let Some(sp) = state.store.saml_sp_cached(&issuer).await? else {
        tracing::info!(%issuer, "LogoutRequest from an unknown SP");
        return Err(Refusal::Page(StatusCode::FORBIDDEN, "saml.unknown_sp"));
    };
    let metadata = state
        .saml
        .sp_metadata(&sp)
        .map_err(|e| AppError::Internal(format!("stored metadata of {issuer}: {e}")))?;
    let relay_state = unverified.relay_state().map(str::to_owned);
    let policy = SignaturePolicy {
        require_signed: true,
        allow_sha1: sp.allow_sha1,
    };
    let request = unverified
        .verify(&metadata.signing_certificates, policy)
        .map_err(|e| {
            tracing::info!(%issuer, error = %e, "LogoutRequest signature refused");
            signature_refusal(&e)
        })?;
    let services = &metadata.single_logout_services;
    let chosen = services
        .iter()
        .find(|s| s.binding == sesam_saml::BINDING_HTTP_REDIRECT)
        .or_else(|| {
            services
                .iter()
                .find(|s| s.binding == sesam_saml::BINDING_HTTP_POST)
        })
        .ok_or(Refusal::Page(
            StatusCode::BAD_REQUEST,
            "saml.no_logout_endpoint",
        ))?;
    if request.id.is_empty() || request.id.chars().count() > MAX_REQUEST_ID_CHARS {
        return Err(Refusal::Page(StatusCode::BAD_REQUEST, "saml.bad_request"));
    }
    let pending = PendingLogout {
        sp: sp.entity_id.clone(),
        request_id: request.id.clone(),
        name_id: request.name_id.clone(),
        session_indexes: request.session_indexes.clone(),
        relay_state,
        endpoint: chosen
            .response_location
            .clone()
            .unwrap_or_else(|| chosen.location.clone()),
        redirect: chosen.binding == sesam_saml::BINDING_HTTP_REDIRECT,
    };
    let now = state.now();
    let denied = request
        .validate(&state.saml.slo_url, odt(now)?, SKEW)
        .map_err(|e| e.to_string())
        .err();
    let replayed = !state
        .store
        .remember_saml_request_id(
            &sp.entity_id,
            &request.id,
            now.plus_seconds(2 * SKEW.whole_seconds() + 60),
            now,
        )
        .await?;
    if let Some(why) = denied.or(replayed.then(|| "the request ID was used before".to_owned())) {
        tracing::info!(%issuer, %why, "LogoutRequest refused");
        return Err(Refusal::Logout(
            Box::new(pending),
            sesam_saml::LogoutStatus::RequestDenied,
        ));
    }
    Ok(pending)
}

/// Ends the session the request names (when it is this browser's), tells the session's other
/// SPs one after another (front channel), then answers the initiating SP.
async fn log_out(
    state: &AppState,
    session: &Session,
    ip: &ClientIp,
    pending: PendingLogout,
    lang: Lang,
) -> Result<Response, Refusal> {
    use sesam_saml::LogoutStatus;
    let mut status = LogoutStatus::Success;
    if let Some(auth) = crate::web::auth::current(session).await? {
        let participants = state.store.saml_participants(&auth.sid).await?;
        // The NameID this login gave the SP (transient, email or persistent).
        let expected_name_id = participants
            .iter()
            .find(|p| p.sp == pending.sp)
            .map(|p| p.name_id.clone())
            .unwrap_or_else(|| state.saml.name_id(&auth.user_id, &pending.sp));
        let names_this_login = pending.name_id.as_deref() == Some(expected_name_id.as_str())
            && (pending.session_indexes.is_empty() || pending.session_indexes.contains(&auth.sid));
        if names_this_login {
            let others: Vec<(String, String)> = participants
                .into_iter()
                .filter(|p| p.sp != pending.sp)
                .map(|p| (p.sp, p.name_id))
                .collect();
            let origin = Origin {
                ip: ip.text(),
                user_agent: String::new(),
                chosen_factor: None,
            };
            crate::service::account::end_login(state, &auth, &origin, "saml.logout", &pending.sp)
                .await
                .map_err(AppError::from)?;
            session.flush().await.map_err(AppError::from)?;
            let chain = LogoutChain {
                initiator: Some(pending),
                sid: auth.sid.clone(),
                remaining: others,
                waiting: None,
                partial: false,
            };
            return continue_chain(state, session, chain, lang).await;
        } else {
            // The browser is signed in, but not as the login the SP names: leave it.
            status = LogoutStatus::RequestDenied;
        }
    }
    Ok(logout_answer(state, &pending, status, lang))
}

fn logout_answer(
    state: &AppState,
    pending: &PendingLogout,
    status: sesam_saml::LogoutStatus,
    lang: Lang,
) -> Response {
    let now = match odt(state.now()) {
        Ok(now) => now,
        Err(e) => return e.into_response(),
    };
    let params = sesam_saml::LogoutResponseParams {
        idp_entity_id: &state.saml.entity_id,
        destination: &pending.endpoint,
        in_response_to: &pending.request_id,
        now,
        status,
    };
    let relay = pending.relay_state.as_deref();
    if pending.redirect {
        match sesam_saml::logout_response_redirect_url(&params, relay, &state.saml.key) {
            Ok(url) => Redirect::to(&url).into_response(),
            Err(e) => AppError::Internal(format!("LogoutResponse: {e}")).into_response(),
        }
    } else {
        match sesam_saml::build_logout_response(&params, &state.saml.key) {
            Ok(xml) => deliver(&pending.endpoint, &xml, relay, lang),
            Err(e) => AppError::Internal(format!("LogoutResponse: {e}")).into_response(),
        }
    }
}

/// Logout at Sesam (`/logout`): after the session has ended, the SPs that login was used
/// at are told one at a time, and the last answer shows the logged-out page. `None` when
/// no SP took part.
pub async fn start_idp_logout(
    state: &AppState,
    session: &Session,
    sid: &str,
    lang: Lang,
) -> Result<Option<Response>, AppError> {
    if sid.is_empty() {
        return Ok(None);
    }
    let remaining: Vec<(String, String)> = state
        .store
        .saml_participants(sid)
        .await?
        .into_iter()
        .map(|p| (p.sp, p.name_id))
        .collect();
    if remaining.is_empty() {
        return Ok(None);
    }
    let chain = LogoutChain {
        initiator: None,
        sid: sid.to_owned(),
        remaining,
        waiting: None,
        partial: false,
    };
    match continue_chain(state, session, chain, lang).await {
        Ok(response) => Ok(Some(response)),
        Err(Refusal::Internal(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

/// A logout under way: the other SPs of the session are told one at a time.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LogoutChain {
    /// The SP whose LogoutRequest began it; `None` when the user logged out at Sesam.
    initiator: Option<PendingLogout>,
    sid: String,
    /// (SP entity ID, the NameID it was given), told from the back.
    remaining: Vec<(String, String)>,
    /// The SP and LogoutRequest ID whose answer is awaited.
    waiting: Option<(String, String)>,
    /// Some SP could not be told or did not confirm.
    partial: bool,
}

const CHAIN_KEY: &str = "saml.logout";

/// Sends the next SP its LogoutRequest, or, when all are done, answers the initiator.
async fn continue_chain(
    state: &AppState,
    session: &Session,
    mut chain: LogoutChain,
    lang: Lang,
) -> Result<Response, Refusal> {
    use sesam_saml::{LogoutRequestParams, LogoutStatus};
    while let Some((sp_id, name_id)) = chain.remaining.pop() {
        let Some(sp) = state.store.saml_sp_cached(&sp_id).await? else {
            chain.partial = true;
            continue;
        };
        let endpoint = state.saml.sp_metadata(&sp).ok().and_then(|md| {
            let services = &md.single_logout_services;
            services
                .iter()
                .find(|s| s.binding == sesam_saml::BINDING_HTTP_REDIRECT)
                .or_else(|| {
                    services
                        .iter()
                        .find(|s| s.binding == sesam_saml::BINDING_HTTP_POST)
                })
                .cloned()
        });
        let Some(endpoint) = endpoint else {
            chain.partial = true;
            continue;
        };
        let name_id_format = state
            .store
            .saml_participants(&chain.sid)
            .await?
            .into_iter()
            .find(|p| p.sp == sp.entity_id && p.name_id == name_id)
            .and_then(|p| NameIdFormat::parse(&p.name_id_format))
            .unwrap_or(NameIdFormat::Persistent);
        let params = LogoutRequestParams {
            idp_entity_id: &state.saml.entity_id,
            sp_entity_id: &sp.entity_id,
            destination: &endpoint.location,
            name_id: &name_id,
            name_id_format,
            session_index: &chain.sid,
            now: odt(state.now())?,
        };
        let key = &state.saml.key;
        let signing_failed = |e: SamlError| AppError::Internal(format!("LogoutRequest: {e}"));
        let (id, response) = if endpoint.binding == sesam_saml::BINDING_HTTP_REDIRECT {
            let (id, url) = sesam_saml::logout_request_redirect_url(&params, None, key)
                .map_err(signing_failed)?;
            (id, Redirect::to(&url).into_response())
        } else {
            let (id, xml) =
                sesam_saml::build_logout_request(&params, key).map_err(signing_failed)?;
            (
                id,
                deliver_field(&endpoint.location, "SAMLRequest", &xml, None, lang),
            )
        };
        chain.waiting = Some((sp.entity_id.clone(), id));
        session
            .insert(CHAIN_KEY, &chain)
            .await
            .map_err(AppError::from)?;
        return Ok(response);
    }
    session
        .remove::<LogoutChain>(CHAIN_KEY)
        .await
        .map_err(AppError::from)?;
    let status = if chain.partial {
        LogoutStatus::PartialLogout
    } else {
        LogoutStatus::Success
    };
    match &chain.initiator {
        Some(initiator) => Ok(logout_answer(state, initiator, status, lang)),
        None => Ok(crate::web::pages::logged_out_page(lang)?),
    }
}

/// An SP answered the LogoutRequest of the chain: note whether it confirmed, and go on.
async fn logout_response_arrived(
    state: &AppState,
    session: &Session,
    unverified: sesam_saml::UnverifiedLogoutResponse,
    lang: Lang,
) -> Result<Response, Refusal> {
    let Some(mut chain) = session
        .get::<LogoutChain>(CHAIN_KEY)
        .await
        .map_err(AppError::from)?
    else {
        return Err(Refusal::Page(StatusCode::BAD_REQUEST, "saml.no_request"));
    };
    let Some((sp_id, request_id)) = chain.waiting.take() else {
        return Err(Refusal::Page(StatusCode::BAD_REQUEST, "saml.no_request"));
    };
    let mut confirmed = false;
    if unverified.issuer().map(str::trim) == Some(sp_id.as_str()) {
        if let Some(sp) = state.store.saml_sp_cached(&sp_id).await? {
            let certs = state
                .saml
                .sp_metadata(&sp)
                .map(|md| md.signing_certificates.clone())
                .unwrap_or_default();
            let policy = SignaturePolicy {
                require_signed: true,
                allow_sha1: sp.allow_sha1,
            };
            match unverified.verify(&certs, policy) {
                Ok(response) => {
                    confirmed = response.in_response_to.as_deref() == Some(request_id.as_str())
                        && response.is_success();
                }
                Err(e) => tracing::info!(sp = %sp_id, error = %e, "LogoutResponse refused"),
            }
        }
    }
    if !confirmed {
        chain.partial = true;
    }
    continue_chain(state, session, chain, lang).await
}
