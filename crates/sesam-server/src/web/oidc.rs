//! The OpenID Connect provider over HTTP: discovery and JWKS, `/authorize` (through the
//! passwordless login), `/token`, `/userinfo`, `/revoke` and `/end_session`. The rules live in
//! `sesam-oidc`; this module reads requests, keeps codes and tokens in the store and answers.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sesam_core::{AssuranceLevel, Factor, User, UserId};
use sesam_oidc::{
    AuthorizationResponse, AuthorizeErrorCode, AuthorizeRequest, ClientAuth, ClientInfo,
    IdTokenClaims, IssuedCode, IssuedRefreshToken, JwsAlg, Prompt, SubjectType, TokenError,
    TokenErrorCode, TokenRequest,
};
use sesam_store::{AuditEvent, CodeUse, NewToken, OidcClient, OidcGrant, TokenKind};
use tower_sessions::Session;

use crate::i18n::Lang;
use crate::service::Origin;
use crate::state::{AppState, ClientIp};
use crate::web::auth::{self, Authenticated};
use crate::web::error::AppError;
use crate::web::pages::{render, Chrome, MessagePage};
use crate::web::protocol::{self, LoginNeed, LoginOutcome};

const PENDING_KEY: &str = "oidc.pending";
const RESUME_PATH: &str = "/authorize/continue";
/// Access tokens are short: the client refreshes.
pub const ACCESS_TOKEN_SECONDS: i64 = 600;
pub const ID_TOKEN_SECONDS: i64 = 600;
pub const REFRESH_TOKEN_SECONDS: i64 = 30 * 24 * 60 * 60;
/// Request bodies and query strings larger than this are refused before parsing.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// An authorization request waiting for the login to finish.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    request: AuthorizeRequest,
    /// When the request came (Unix seconds): `max_age` counts from here.
    requested_at: i64,
}

pub fn client_info(c: &OidcClient) -> ClientInfo {
    ClientInfo {
        client_id: c.client_id.clone(),
        redirect_uris: c.redirect_uris.clone(),
        public: c.secret_hash.is_none(),
        secret_hash: c.secret_hash.clone(),
        id_token_alg: if c.id_token_alg == "ES256" {
            JwsAlg::ES256
        } else {
            JwsAlg::RS256
        },
        subject_type: if c.subject_type == "pairwise" {
            SubjectType::Pairwise
        } else {
            SubjectType::Public
        },
    }
}

/// Codes and tokens are high-entropy random strings: a plain SHA-256 is enough to store them.
fn digest(secret: &str) -> String {
    sesam_oidc::hash_client_secret(secret)
}

async fn enabled_client(state: &AppState, client_id: &str) -> Result<Option<OidcClient>, AppError> {
    if client_id.is_empty() || client_id.len() > sesam_oidc::MAX_PARAM_LEN {
        return Ok(None);
    }
    Ok(state
        .store
        .oidc_client_cached(client_id)
        .await?
        .filter(|c| c.enabled))
}

fn pairs(text: &str) -> Option<Vec<(String, String)>> {
    if text.len() > MAX_FORM_BYTES {
        return None;
    }
    serde_urlencoded::from_str::<Vec<(String, String)>>(text).ok()
}

// ---------------------------------------------------------------- discovery

pub async fn discovery(State(state): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(sesam_oidc::discovery(&state.oidc.issuer)),
    )
        .into_response()
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(sesam_oidc::jwks(&state.oidc.published())),
    )
        .into_response()
}

// ---------------------------------------------------------------- authorize

/// The refusal page; `why` is a catalog key (`oidc.reason.…`), `detail` the protocol
/// library's own words for the service's developers (kept as they are, and marked so).
fn bad_request_page(lang: Lang, why: &str) -> Result<Response, AppError> {
    refusal_page(lang, why, None)
}

fn refusal_page(lang: Lang, why: &str, detail: Option<&str>) -> Result<Response, AppError> {
    let t = lang.catalog();
    let mut body = format!("{} {}", t.get("oidc.bad_request_body"), t.get(why));
    if let Some(detail) = detail {
        body = format!("{body} {} {detail}", t.get("oidc.reason.technical"));
    }
    let page = MessagePage {
        chrome: Chrome::new(lang, "/authorize"),
        title: t.get("oidc.bad_request_title").to_owned(),
        body,
        alert: true,
        link_href: "/",
        link_label: t.get("login.back").to_owned(),
    };
    render(StatusCode::BAD_REQUEST, &page)
}

/// The answer to the client: a 303 to its redirect URI, or the auto-submitting form.
fn deliver(answer: AuthorizationResponse, lang: Lang) -> Response {
    match &answer {
        AuthorizationResponse::Redirect { location } => Redirect::to(location).into_response(),
        AuthorizationResponse::FormPost { action, .. } => {
            let label = lang.catalog().get("oidc.form_post_button");
            let html = answer
                .form_post_html(label, Some("/static/form-post.js"))
                .unwrap_or_default();
            protocol::form_post_page(html, action)
        }
    }
}

/// `GET /authorize` (and `POST`, as OIDC allows): validate, then log in or answer at once.
pub async fn authorize_get(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    authorize(
        &state,
        &session,
        lang,
        &origin,
        query.as_deref().unwrap_or(""),
    )
    .await
}

pub async fn authorize_post(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    if !is_form(&headers) {
        return Err(AppError::UnsupportedMediaType);
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request_page(lang, "oidc.reason.not_utf8");
    };
    authorize(&state, &session, lang, &origin, text).await
}

async fn authorize(
    state: &AppState,
    session: &Session,
    lang: Lang,
    origin: &Origin,
    query: &str,
) -> Result<Response, AppError> {
    let Some(params) = pairs(query) else {
        return bad_request_page(lang, "oidc.reason.not_a_form");
    };
    let client_id = params
        .iter()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let client = enabled_client(state, client_id).await?;
    let info = client.as_ref().map(client_info);
    let iss = state.oidc.issuer.as_str();
    let request = match AuthorizeRequest::validate(&params, |id| {
        info.clone().filter(|c| c.client_id == id)
    }) {
        Ok(request) => request,
        Err(e) => {
            return match e.response(iss) {
                Some(answer) => Ok(deliver(answer, lang)),
                None => refusal_page(lang, "oidc.reason.untrusted", Some(&format!("{e}."))),
            }
        }
    };
    let Some(client) = client else {
        return bad_request_page(lang, "oidc.reason.unknown_client");
    };
    let now = state.now().0;
    if request.prompt() == Some(Prompt::Login) || request.max_age() == Some(0) {
        // A new login is asked for: the one this browser has does not count.
        protocol::sign_out_keeping_request(state, session, origin).await?;
    }
    let pending = Pending {
        request,
        requested_at: now,
    };
    session.insert(PENDING_KEY, &pending).await?;
    proceed(state, session, lang, origin, &client, pending).await
}

/// `GET /authorize/continue`: back from the login page.
pub async fn resume(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    origin: Origin,
) -> Result<Response, AppError> {
    let Some(pending) = session.get::<Pending>(PENDING_KEY).await? else {
        return no_pending(lang);
    };
    let Some(client) = enabled_client(&state, pending.request.client_id()).await? else {
        session.remove::<Pending>(PENDING_KEY).await?;
        return bad_request_page(lang, "oidc.reason.client_gone");
    };
    proceed(&state, &session, lang, &origin, &client, pending).await
}

fn no_pending(lang: Lang) -> Result<Response, AppError> {
    let t = lang.catalog();
    let page = MessagePage {
        chrome: Chrome::new(lang, RESUME_PATH),
        title: t.get("oidc.no_pending_title").to_owned(),
        body: t.get("oidc.no_pending_body").to_owned(),
        alert: false,
        link_href: "/",
        link_label: t.get("login.back").to_owned(),
    };
    render(StatusCode::BAD_REQUEST, &page)
}

async fn proceed(
    state: &AppState,
    session: &Session,
    lang: Lang,
    origin: &Origin,
    client: &OidcClient,
    pending: Pending,
) -> Result<Response, AppError> {
    let request = &pending.request;
    let iss = state.oidc.issuer.as_str();
    let level = request.required_level().unwrap_or(AssuranceLevel::Low);
    // prompt=login: a login from after the request (an upstream eID is asked for one too).
    let not_before = if request.prompt() == Some(Prompt::Login) {
        Some(pending.requested_at)
    } else {
        request
            .max_age()
            .map(|age| pending.requested_at - i64::try_from(age).unwrap_or(i64::MAX / 2))
    };
    let need = LoginNeed {
        service: &client.name,
        level,
        not_before,
        passive: request.prompt() == Some(Prompt::None),
        resume: RESUME_PATH,
        login_hint: request.login_hint(),
    };
    match protocol::login_for_service(state, session, &need, origin).await? {
        LoginOutcome::Login(response) => Ok(response),
        LoginOutcome::LevelUnreachable => {
            session.remove::<Pending>(PENDING_KEY).await?;
            Ok(deliver(
                request.error(
                    AuthorizeErrorCode::UnmetAuthenticationRequirements,
                    "this user cannot reach the level of assurance asked for",
                    iss,
                ),
                lang,
            ))
        }
        LoginOutcome::PassiveImpossible => {
            session.remove::<Pending>(PENDING_KEY).await?;
            Ok(deliver(
                request.error(
                    AuthorizeErrorCode::LoginRequired,
                    "the user must log in",
                    iss,
                ),
                lang,
            ))
        }
        LoginOutcome::Ready { user, auth } => {
            session.remove::<Pending>(PENDING_KEY).await?;
            let code = issue_code(state, session, client, request, &user, &auth).await?;
            Ok(deliver(request.success(&code, iss), lang))
        }
    }
}

fn amr_of(auth: &Authenticated) -> Vec<String> {
    let mut amr = Vec::new();
    for proven in &auth.factors {
        match proven.factor {
            Factor::Password => amr.push("pwd".to_owned()),
            // The app: possession of the device key, unlocked with the PIN (or biometrics).
            Factor::App => {
                amr.push("pop".to_owned());
                amr.push("pin".to_owned());
            }
            // RFC 8176: a one-time password (the code display).
            Factor::Totp => amr.push("otp".to_owned()),
            // A key held by the authenticator, which verified the user (PIN or biometrics;
            // the browser does not say which): multi-factor on its own.
            Factor::Passkey => {
                amr.push("hwk".to_owned());
                amr.push("user".to_owned());
            }
            // An upstream eID: federated authentication (the upstream's own methods are its own).
            Factor::Upstream(_) => amr.push("fed".to_owned()),
        }
    }
    if auth.factors.len() > 1 || auth.factors.iter().any(|f| f.factor == Factor::Passkey) {
        amr.push("mfa".to_owned());
    }
    amr
}

/// High only ever comes from an upstream eID that gave it.
fn acr_of(auth: &Authenticated) -> &'static str {
    auth.level().unwrap_or(AssuranceLevel::Low).nsis_uri()
}

async fn issue_code(
    state: &AppState,
    session: &Session,
    client: &OidcClient,
    request: &AuthorizeRequest,
    user: &User,
    auth: &Authenticated,
) -> Result<String, AppError> {
    let code = sesam_oidc::generate_secret().map_err(|e| AppError::Internal(e.to_string()))?;
    let sid = if auth.sid.is_empty() {
        session.id().map(|id| id.to_string()).unwrap_or_default()
    } else {
        auth.sid.clone()
    };
    let grant = OidcGrant {
        client_id: client.client_id.clone(),
        user_id: user.id.0.clone(),
        scope: request.scope(),
        auth_time: auth.auth_time,
        acr: acr_of(auth).to_owned(),
        amr: amr_of(auth),
        sid,
    };
    let now = state.now();
    state
        .store
        .insert_oidc_code(
            &digest(&code),
            &grant,
            request.redirect_uri(),
            request.code_challenge(),
            request.nonce(),
            now,
        )
        .await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("oidc.code_issued")
                .actor(user.username.as_str())
                .subject(user.username.as_str())
                .detail(format!("client {} ({})", client.name, client.client_id)),
            now,
        )
        .await?;
    Ok(code)
}

// ---------------------------------------------------------------- token

fn token_error(e: &TokenError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, no_store(), Json(e.to_json())).into_response();
    if let Some(challenge) = e.www_authenticate() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn form_body(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, TokenError> {
    let invalid = |d: &str| TokenError::new(TokenErrorCode::InvalidRequest, d);
    if !is_form(headers) {
        return Err(invalid(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    std::str::from_utf8(body)
        .ok()
        .and_then(pairs)
        .ok_or_else(|| invalid("the body is too large or not form-encoded"))
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("-"))
}

/// The registered client the request authenticates as, or the answer to send instead. An
/// address that failed too often in the last minute is refused before its secret is checked.
async fn authenticated_client(
    state: &AppState,
    auth: &ClientAuth,
    ip: &ClientIp,
) -> Result<Result<OidcClient, Response>, AppError> {
    if let Err(seconds) = state.client_auth_failures.reserve(ip.0) {
        return Ok(Err(crate::web::flood::auth_failures_exceeded(seconds)));
    }
    let client = enabled_client(state, auth.client_id()).await?;
    let info = client.as_ref().map(client_info);
    Ok(match sesam_oidc::authenticate_client(auth, info.as_ref()) {
        Ok(()) => {
            state.client_auth_failures.release(ip.0);
            Ok(client.expect("checked"))
        }
        Err(e) => Err(token_error(&e)),
    })
}

pub async fn token(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let form = match form_body(&headers, &body) {
        Ok(form) => form,
        Err(e) => return Ok(token_error(&e)),
    };
    let request = match TokenRequest::parse(&form, authorization(&headers)) {
        Ok(r) => r,
        Err(e) => return Ok(token_error(&e)),
    };
    let client = match authenticated_client(&state, &request.client, &ip).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let answer = match request.grant {
        sesam_oidc::Grant::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => redeem_code(&state, &client, &code, &redirect_uri, &code_verifier).await?,
        sesam_oidc::Grant::RefreshToken {
            refresh_token,
            scope,
        } => refresh(&state, &client, &refresh_token, scope.as_deref()).await?,
    };
    Ok(match answer {
        Ok(body) => (StatusCode::OK, no_store(), Json(body)).into_response(),
        Err(e) => token_error(&e),
    })
}

fn invalid_grant(description: &str) -> TokenError {
    TokenError::new(TokenErrorCode::InvalidGrant, description)
}

async fn redeem_code(
    state: &AppState,
    client: &OidcClient,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
) -> Result<Result<Value, TokenError>, AppError> {
    let now = state.now();
    let family = digest(code);
    let Some((stored, used)) = state.store.peek_oidc_code(&family).await? else {
        return Ok(Err(invalid_grant("the code is not valid")));
    };
    if !used {
        // Checked before the code is spent: a wrong request changes nothing.
        let issued = IssuedCode {
            client_id: stored.grant.client_id.clone(),
            redirect_uri: stored.redirect_uri.clone(),
            code_challenge: stored.code_challenge.clone(),
            issued_at: u64::try_from(stored.issued_at).unwrap_or(0),
        };
        let unix_now = u64::try_from(now.0).unwrap_or(0);
        if let Err(e) = issued.redeem(&client.client_id, redirect_uri, code_verifier, unix_now) {
            return Ok(Err(e));
        }
    }
    let stored = match state.store.use_oidc_code(&family, now).await? {
        CodeUse::First(stored) if !used => stored,
        CodeUse::First(stored) | CodeUse::Replayed(stored) => {
            if stored.grant.client_id != client.client_id {
                return Ok(Err(invalid_grant("the code is not valid")));
            }
            // RFC 6749 §4.1.2: a code used twice revokes what the first use issued.
            let revoked = state.store.revoke_oidc_family(&family, now).await?;
            state
                .store
                .append_audit(
                    &AuditEvent::new("oidc.code_replayed")
                        .actor(&client.client_id)
                        .subject(&stored.grant.user_id)
                        .detail(format!("{revoked} tokens revoked")),
                    now,
                )
                .await?;
            return Ok(Err(invalid_grant("the code has been used already")));
        }
        CodeUse::Unknown => return Ok(Err(invalid_grant("the code is not valid"))),
    };
    let Some(user) = active_user(state, &stored.grant.user_id).await? else {
        return Ok(Err(invalid_grant("the user can no longer log in")));
    };
    let body = issue_tokens(
        state,
        client,
        &user,
        &stored.grant,
        &family,
        None,
        Some(stored.nonce.as_deref()),
    )
    .await?
    .ok_or_else(|| AppError::Internal("new tokens were not stored".into()))?;
    Ok(Ok(body))
}

async fn active_user(state: &AppState, user_id: &str) -> Result<Option<User>, AppError> {
    match state.store.get_user(&UserId(user_id.to_owned())).await {
        Ok(user) if user.is_active() => Ok(Some(user)),
        Ok(_) | Err(sesam_store::StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn refresh(
    state: &AppState,
    client: &OidcClient,
    refresh_token: &str,
    scope: Option<&str>,
) -> Result<Result<Value, TokenError>, AppError> {
    let now = state.now();
    let hash = digest(refresh_token);
    let Some(stored) = state
        .store
        .get_oidc_token(&hash)
        .await?
        .filter(|t| t.kind == TokenKind::Refresh && t.grant.client_id == client.client_id)
    else {
        return Ok(Err(invalid_grant("the refresh token is not valid")));
    };
    if stored.revoked_at.is_some() {
        return Ok(Err(invalid_grant("the refresh token has been revoked")));
    }
    let issued = IssuedRefreshToken {
        client_id: stored.grant.client_id.clone(),
        scope: stored.grant.scope.clone(),
        expires_at: u64::try_from(stored.expires_at).unwrap_or(0),
    };
    let scope = match issued.redeem(&client.client_id, scope, u64::try_from(now.0).unwrap_or(0)) {
        Ok(scope) => scope,
        Err(e) => return Ok(Err(e)),
    };
    if stored.used_at.is_some() {
        return refresh_reused(state, client, &stored).await;
    }
    let Some(user) = active_user(state, &stored.grant.user_id).await? else {
        state.store.revoke_oidc_family(&stored.family, now).await?;
        return Ok(Err(invalid_grant("the user can no longer log in")));
    };
    let grant = OidcGrant {
        scope,
        ..stored.grant.clone()
    };
    // No new ID token on refresh (OIDC Core 12.2 allows leaving it out): the login it would
    // describe has not changed, and signing one per grant halves the refresh rate.
    let issued = issue_tokens(
        state,
        client,
        &user,
        &grant,
        &stored.family,
        Some(&hash),
        None,
    )
    .await?;
    match issued {
        Some(body) => Ok(Ok(body)),
        // Another request rotated this token a moment ago: the same theft as a late reuse.
        None => refresh_reused(state, client, &stored).await,
    }
}

/// A rotated refresh token came back: someone holds a copy. The whole family ends.
async fn refresh_reused(
    state: &AppState,
    client: &OidcClient,
    stored: &sesam_store::StoredToken,
) -> Result<Result<Value, TokenError>, AppError> {
    let now = state.now();
    let revoked = state.store.revoke_oidc_family(&stored.family, now).await?;
    state
        .store
        .append_audit(
            &AuditEvent::new("oidc.refresh_reused")
                .actor(&client.client_id)
                .subject(&stored.grant.user_id)
                .detail(format!("{revoked} tokens revoked")),
            now,
        )
        .await?;
    Ok(Err(invalid_grant(
        "the refresh token has been used already",
    )))
}

fn subject(state: &AppState, client: &OidcClient, user_id: &str) -> String {
    if client.subject_type == "pairwise" {
        sesam_oidc::pairwise_sub(user_id, &client.client_id, &state.oidc.pairwise_salt)
    } else {
        user_id.to_owned()
    }
}

/// Claims for the granted scopes (ID token and userinfo).
fn profile_claims(user: &User, scope: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    let scopes: Vec<&str> = scope.split(' ').collect();
    if scopes.contains(&"profile") {
        claims.insert("name".into(), json!(user.display_name));
        claims.insert("preferred_username".into(), json!(user.username.as_str()));
    }
    if scopes.contains(&"email") {
        if let Some(email) = &user.email {
            claims.insert("email".into(), json!(email));
            // Sesam stores what the organisation entered; it has not verified the address.
            claims.insert("email_verified".into(), json!(false));
        }
    }
    claims
}

/// A new access and refresh token for `grant` (spending `rotating` first, if given), and for
/// a code exchange (`id_token` = the request's nonce, if any) an ID token. `None` when
/// `rotating` was no longer live.
async fn issue_tokens(
    state: &AppState,
    client: &OidcClient,
    user: &User,
    grant: &OidcGrant,
    family: &str,
    rotating: Option<&str>,
    id_token: Option<Option<&str>>,
) -> Result<Option<Value>, AppError> {
    let now = state.now();
    let secret = || sesam_oidc::generate_secret().map_err(|e| AppError::Internal(e.to_string()));
    let access = secret()?;
    let refresh = secret()?;
    let (access_hash, refresh_hash) = (digest(&access), digest(&refresh));
    let tokens = [
        NewToken {
            hash: &access_hash,
            kind: TokenKind::Access,
            expires_at: now.0 + ACCESS_TOKEN_SECONDS,
        },
        NewToken {
            hash: &refresh_hash,
            kind: TokenKind::Refresh,
            expires_at: now.0 + REFRESH_TOKEN_SECONDS,
        },
    ];
    if !state
        .store
        .store_oidc_tokens(&tokens, family, grant, now, rotating)
        .await?
    {
        return Ok(None);
    }
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_SECONDS,
        "refresh_token": refresh,
        "scope": grant.scope,
    });
    let Some(nonce) = id_token else {
        return Ok(Some(body));
    };
    let info = client_info(client);
    let unix = |t: i64| u64::try_from(t).unwrap_or(0);
    let claims = IdTokenClaims {
        iss: state.oidc.issuer.clone(),
        sub: subject(state, client, &user.id.0),
        aud: client.client_id.clone(),
        exp: unix(now.0 + ID_TOKEN_SECONDS),
        iat: unix(now.0),
        auth_time: unix(grant.auth_time),
        nonce: nonce.map(str::to_owned),
        acr: Some(grant.acr.clone()),
        amr: grant.amr.clone(),
        at_hash: Some(sesam_oidc::at_hash(&access, info.id_token_alg)),
        sid: Some(grant.sid.clone()),
        extra: profile_claims(user, &grant.scope),
    };
    let id_token = sesam_oidc::issue_id_token(state.oidc.signer(info.id_token_alg), &claims)
        .map_err(|e| AppError::Internal(e.to_string()))?;
    body["id_token"] = json!(id_token);
    Ok(Some(body))
}

// ---------------------------------------------------------------- userinfo

fn bearer_error(description: Option<&str>) -> Response {
    let challenge = match description {
        None => "Bearer realm=\"sesam\"".to_owned(),
        Some(d) => {
            format!("Bearer realm=\"sesam\", error=\"invalid_token\", error_description=\"{d}\"")
        }
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        no_store(),
        Json(json!({"error": "invalid_token", "error_description": description.unwrap_or("a Bearer access token is required")})),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

pub async fn userinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(header_value) = authorization(&headers) else {
        return Ok(bearer_error(None));
    };
    let token = match header_value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && token.len() < 512 => {
            token.trim()
        }
        _ => {
            return Ok(bearer_error(Some(
                "the Authorization header is not a Bearer token",
            )))
        }
    };
    let now = state.now();
    let Some(stored) = state
        .store
        .get_oidc_token(&digest(token))
        .await?
        .filter(|t| t.kind == TokenKind::Access && t.is_live(now))
    else {
        return Ok(bearer_error(Some("the access token is not valid")));
    };
    let Some(client) = enabled_client(&state, &stored.grant.client_id).await? else {
        return Ok(bearer_error(Some("the access token is not valid")));
    };
    let Some(user) = active_user(&state, &stored.grant.user_id).await? else {
        return Ok(bearer_error(Some("the access token is not valid")));
    };
    let mut claims = profile_claims(&user, &stored.grant.scope);
    claims.insert("sub".into(), json!(subject(&state, &client, &user.id.0)));
    Ok((StatusCode::OK, no_store(), Json(Value::Object(claims))).into_response())
}

// ---------------------------------------------------------------- revoke

/// RFC 7009: the client revokes one of its tokens; the rest of the family goes with it.
/// Unknown tokens, and tokens of other clients, are answered 200 and left alone.
pub async fn revoke(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let form = match form_body(&headers, &body) {
        Ok(form) => form,
        Err(e) => return Ok(token_error(&e)),
    };
    let client_auth = match ClientAuth::parse(&form, authorization(&headers)) {
        Ok(a) => a,
        Err(e) => return Ok(token_error(&e)),
    };
    let client = match authenticated_client(&state, &client_auth, &ip).await? {
        Ok(c) => c,
        Err(refused) => return Ok(refused),
    };
    let Some(token) = form.iter().find(|(k, _)| k == "token").map(|(_, v)| v) else {
        return Ok(token_error(&TokenError::new(
            TokenErrorCode::InvalidRequest,
            "token is missing",
        )));
    };
    let now = state.now();
    if let Some(stored) = state
        .store
        .get_oidc_token(&digest(token))
        .await?
        .filter(|t| t.grant.client_id == client.client_id)
    {
        state.store.revoke_oidc_family(&stored.family, now).await?;
        state
            .store
            .append_audit(
                &AuditEvent::new("oidc.revoked")
                    .actor(&client.client_id)
                    .subject(&stored.grant.user_id),
                now,
            )
            .await?;
    }
    Ok((StatusCode::OK, no_store()).into_response())
}

// ---------------------------------------------------------------- end_session

/// RP-initiated logout. With a valid `id_token_hint` for this browser's login, the user is
/// logged out at once and sent to the exactly registered `post_logout_redirect_uri`; without
/// one, the user is asked on the logout page (a third party must not log people out).
pub async fn end_session(
    State(state): State<AppState>,
    session: Session,
    lang: Lang,
    ip: ClientIp,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let Some(params) = pairs(query.as_deref().unwrap_or("")) else {
        return bad_request_page(lang, "oidc.reason.not_a_form");
    };
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let keys: [&dyn sesam_oidc::JwsSigner; 2] = [&state.oidc.rs256, &state.oidc.es256];
    let hint = get("id_token_hint").and_then(|t| sesam_oidc::verify_jwt(t, &keys));
    let hint = hint.filter(|claims| claims["iss"] == json!(state.oidc.issuer));
    let Some(hint) = hint else {
        if get("post_logout_redirect_uri").is_some() {
            return bad_request_page(lang, "oidc.reason.logout_needs_hint");
        }
        return Ok(Redirect::to("/logout").into_response());
    };
    let client_id = hint["aud"].as_str().unwrap_or("");
    if get("client_id").is_some_and(|c| c != client_id) {
        return bad_request_page(lang, "oidc.reason.logout_wrong_client");
    }
    let client = enabled_client(&state, client_id).await?;
    let target = match (get("post_logout_redirect_uri"), &client) {
        (None, _) => None,
        (Some(uri), Some(c)) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri),
        (Some(_), _) => return bad_request_page(lang, "oidc.reason.logout_unregistered"),
    };
    let now = state.now();
    let current = auth::current(&session).await?;
    let same_login = current
        .as_ref()
        .is_some_and(|a| !a.sid.is_empty() && hint["sid"] == json!(a.sid));
    // Only the browser that holds the login ends it and its tokens: an id_token_hint alone
    // (it may be old, and travels in URLs and logs) proves nothing about who sends it.
    if let (true, Some(sid)) = (same_login, hint["sid"].as_str()) {
        state.store.revoke_oidc_session(sid, now).await?;
    }
    if let (true, Some(login)) = (same_login, &current) {
        let origin = Origin {
            ip: ip.text(),
            user_agent: String::new(),
            chosen_factor: None,
        };
        let how = format!("requested by client {client_id}");
        crate::service::account::end_login(&state, login, &origin, "logout", &how).await?;
        session.flush().await?;
    }
    match target {
        Some(uri) => {
            let mut location = uri.to_owned();
            if let Some(st) = get("state") {
                location.push(if uri.contains('?') { '&' } else { '?' });
                location.push_str("state=");
                location.push_str(&urlencode(st));
            }
            Ok(Redirect::to(&location).into_response())
        }
        None => crate::web::pages::logged_out_page(lang),
    }
}

/// Everything but RFC 3986 unreserved characters encoded.
fn urlencode(s: &str) -> String {
    const VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, VALUE).to_string()
}
