//! SCIM 2.0 (RFC 7643 / 7644) under `/scim/v2`: an HR system or Entra ID pushes users here
//! with a bearer token of its own. Every refusal is a SCIM error and changes nothing.
//!
//! Users are Sesam's users (the resource id is the user id). Groups are the three role flags
//! Sesam has (admins, pilot, password-only). A DELETE disables the user and takes it out of
//! SCIM's view; its devices and its audit trail stay.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use sesam_core::{User, UserId, UserStatus, Username};
use sesam_store::{RoleFlag, ScimClient, ScimProfile, ScimUser, ScimUserFilter};

use crate::body::BodyError;
use crate::password::MIN_PASSWORD_CHARS;
use crate::service::scim::{self as service, Refused};
use crate::service::ServiceError;
use crate::state::{AppState, ClientIp};

const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const CORE_GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SPC: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const CONTENT_TYPE: &str = "application/scim+json";

/// A request body larger than this is refused with 413 before it is parsed.
pub const MAX_BODY: usize = 64 * 1024;
/// The most resources one page of a listing holds (also the default page size).
const MAX_COUNT: i64 = 200;
/// The most operations one PATCH may carry.
const MAX_OPERATIONS: usize = 100;

/// The role groups: SCIM id and display name, and the flag they stand for.
const GROUPS: [(&str, RoleFlag); 3] = [
    ("admins", RoleFlag::Admin),
    ("pilot", RoleFlag::Pilot),
    ("password-only", RoleFlag::PasswordOnly),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/Users", get(list_users).post(create_user))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups))
        .route("/Groups/{id}", get(get_group).patch(patch_group))
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type))
        .fallback(|| async { ScimError::not_found("no such SCIM endpoint") })
}

/// A SCIM error answer (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, detail)
    }
    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            None,
            "a valid bearer token of a SCIM client is required",
        )
    }
    fn value(detail: impl Into<String>) -> Self {
        Self::bad("invalidValue", detail)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut response = scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sesam-scim\""),
            );
        }
        response
    }
}

impl From<ServiceError> for ScimError {
    fn from(e: ServiceError) -> Self {
        if let ServiceError::Store(s) = &e {
            if s.is_unavailable() {
                tracing::warn!(error = %e, "SCIM: the database is unavailable");
                return ScimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "the database is unavailable; try again",
                );
            }
        }
        tracing::error!(error = %e, "SCIM request failed");
        ScimError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
    }
}

impl From<sesam_store::StoreError> for ScimError {
    fn from(e: sesam_store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

type Answer = Result<Response, ScimError>;

fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}

/// The client the request's bearer token belongs to.
async fn client(state: &AppState, headers: &HeaderMap) -> Result<ScimClient, ScimError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(ScimError::unauthorized)?;
    service::authenticate(&state.store, token)
        .await?
        .ok_or_else(ScimError::unauthorized)
}

/// The request body as a JSON object: SCIM's or plain JSON media type, at most
/// [`MAX_BODY`] bytes.
async fn read_object(headers: &HeaderMap, body: Body) -> Result<Map<String, Value>, ScimError> {
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let media = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media != CONTENT_TYPE && media != "application/json" {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "send application/scim+json",
            ));
        }
    }
    let bytes = crate::body::read_capped(body, MAX_BODY)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => ScimError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("the body is larger than {MAX_BODY} bytes"),
            ),
            BodyError::Broken => ScimError::bad("invalidSyntax", "the body could not be read"),
        })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ScimError::bad(
            "invalidSyntax",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

fn base(state: &AppState) -> String {
    format!("{}/scim/v2", state.config.public_url.trim_end_matches('/'))
}

fn time(t: sesam_core::UnixTime) -> String {
    jiff::Timestamp::from_second(t.0)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn user_json(base: &str, u: &ScimUser) -> Value {
    let user = &u.user;
    let mut out = json!({
        "schemas": [CORE_USER],
        "id": user.id.0,
        "userName": user.username.as_str(),
        "displayName": user.display_name,
        "name": { "formatted": user.display_name },
        "active": user.status == UserStatus::Active,
        "meta": {
            "resourceType": "User",
            "created": time(user.created_at),
            "lastModified": time(user.updated_at),
            "location": format!("{base}/Users/{}", user.id.0),
        },
    });
    if let Some(id) = &u.external_id {
        out["externalId"] = json!(id);
    }
    if let Some(email) = &user.email {
        out["emails"] = json!([{ "value": email, "type": "work", "primary": true }]);
    }
    let groups: Vec<Value> = GROUPS
        .iter()
        .filter(|(_, flag)| has_role(user, *flag))
        .map(|(id, _)| json!({ "value": id, "display": id, "$ref": format!("{base}/Groups/{id}") }))
        .collect();
    if !groups.is_empty() {
        out["groups"] = json!(groups);
    }
    out
}

fn has_role(user: &User, flag: RoleFlag) -> bool {
    match flag {
        RoleFlag::Admin => user.is_admin,
        RoleFlag::Pilot => user.in_pilot,
        RoleFlag::PasswordOnly => user.password_only,
    }
}

fn list_json(total: i64, start: i64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// The query's parameters, names compared without case as SCIM's are.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: Option<String>) -> Result<Query, ScimError> {
        serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
            .map(Query)
            .map_err(|_| ScimError::value("the query string is not valid"))
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn number(&self, name: &str) -> Result<Option<i64>, ScimError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| ScimError::value(format!("{name} must be an integer")))
            })
            .transpose()
    }
    /// `startIndex` (1-based; less than 1 counts as 1) and `count` (negative counts as 0;
    /// capped at [`MAX_COUNT`]), per RFC 7644 §3.4.2.4.
    fn page(&self) -> Result<(i64, i64), ScimError> {
        let start = self.number("startIndex")?.unwrap_or(1).max(1);
        let count = self
            .number("count")?
            .unwrap_or(MAX_COUNT)
            .clamp(0, MAX_COUNT);
        Ok((start, count))
    }
}

/// `attribute eq "value"`: the one filter form Sesam answers. `Ok(None)` for a well-formed
/// filter that cannot match (a value no username can be).
fn parse_filter(filter: &str, attributes: &[&str]) -> Result<(String, String), ScimError> {
    let unsupported = || {
        ScimError::bad(
            "invalidFilter",
            format!(
                "only `attribute eq \"value\"` is supported, for {}",
                attributes.join(", ")
            ),
        )
    };
    let filter = filter.trim();
    let (attr, rest) = filter
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    let (op, value) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(unsupported)?;
    if !op.eq_ignore_ascii_case("eq") {
        return Err(unsupported());
    }
    let value: String = serde_json::from_str(value.trim()).map_err(|_| unsupported())?;
    let attr = strip_schema(attr);
    let known = attributes
        .iter()
        .find(|a| a.eq_ignore_ascii_case(attr))
        .ok_or_else(unsupported)?;
    Ok(((*known).to_owned(), value))
}

fn strip_schema(path: &str) -> &str {
    let prefix = format!("{CORE_USER}:");
    match path.get(..prefix.len()) {
        Some(p) if p.eq_ignore_ascii_case(&prefix) => &path[prefix.len()..],
        _ => path,
    }
}

async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Answer {
    client(&state, &headers).await?;
    let query = Query::parse(raw)?;
    let (start, count) = query.page()?;
    let filter = match query.get("filter") {
        None => Some(ScimUserFilter::All),
        Some(f) => match parse_filter(f, &["userName", "externalId"])? {
            (attr, value) if attr == "userName" => {
                Username::parse(&value).ok().map(ScimUserFilter::UserName)
            }
            (_, value) => Some(ScimUserFilter::ExternalId(value)),
        },
    };
    let (total, users) = match filter {
        Some(filter) => state.store.scim_users(&filter, count, start - 1).await?,
        None => (0, Vec::new()),
    };
    let base = base(&state);
    let resources = users.iter().map(|u| user_json(&base, u)).collect();
    Ok(scim_json(
        StatusCode::OK,
        &list_json(total, start, resources),
    ))
}

async fn find(state: &AppState, id: &str) -> Result<ScimUser, ScimError> {
    if id.len() > 100 {
        return Err(ScimError::not_found(format!("no user {id}")));
    }
    state
        .store
        .scim_user(&UserId(id.to_owned()))
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no user {id}")))
}

async fn get_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    client(&state, &headers).await?;
    let user = find(&state, &id).await?;
    Ok(scim_json(StatusCode::OK, &user_json(&base(&state), &user)))
}

/// What a client may set of a user, before it is written.
#[derive(Clone, Debug, Default)]
struct Draft {
    username: Option<String>,
    display_name: Option<String>,
    formatted: Option<String>,
    given_family: Option<String>,
    email: Option<String>,
    external_id: Option<String>,
    active: Option<bool>,
    password: Option<String>,
}

impl Draft {
    fn of(user: &ScimUser) -> Draft {
        Draft {
            username: Some(user.user.username.to_string()),
            display_name: Some(user.user.display_name.clone()),
            email: user.user.email.clone(),
            external_id: user.external_id.clone(),
            ..Draft::default()
        }
    }

    /// The profile to write, every value checked; `status` is the stored one (or
    /// `Active` for a new user).
    fn profile(&self, status: UserStatus) -> Result<ScimProfile, ScimError> {
        let raw = self
            .username
            .as_deref()
            .ok_or_else(|| ScimError::value("userName is required"))?;
        let username = Username::parse(raw)
            .map_err(|e| ScimError::value(format!("userName is not usable: {e}")))?;
        let display_name = [&self.display_name, &self.formatted, &self.given_family]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .find(|s| !s.is_empty())
            .unwrap_or(username.as_str())
            .to_owned();
        if display_name.chars().count() > 200 || display_name.chars().any(char::is_control) {
            return Err(ScimError::value(
                "displayName must be at most 200 printable characters",
            ));
        }
        let email = self
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if let Some(e) = email {
            let ok = e.len() <= 254
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                && e.split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty());
            if !ok {
                return Err(ScimError::value(format!("{e:?} is not an email address")));
            }
        }
        let external_id = self.external_id.as_deref().filter(|e| !e.is_empty());
        if external_id.is_some_and(|e| e.len() > 255 || e.chars().any(char::is_control)) {
            return Err(ScimError::value(
                "externalId must be at most 255 characters",
            ));
        }
        if let Some(p) = &self.password {
            if p.chars().count() < MIN_PASSWORD_CHARS || p.len() > 1024 {
                return Err(ScimError::value(format!(
                    "password must be {MIN_PASSWORD_CHARS} to 1024 characters"
                )));
            }
        }
        // An administrator's lock in Sesam stays; SCIM's `active` is the disabled state.
        let status = match (self.active, status) {
            (_, UserStatus::Locked) => UserStatus::Locked,
            (Some(true), _) => UserStatus::Active,
            (Some(false), _) => UserStatus::Disabled,
            (None, s) => s,
        };
        Ok(ScimProfile {
            username,
            display_name,
            email: email.map(str::to_owned),
            external_id: external_id.map(str::to_owned),
            status,
        })
    }

    /// Sets one attribute (a name or a PATCH path, without the schema prefix) to `value`;
    /// `None` removes it.
    fn set(&mut self, path: &str, value: Option<&Value>) -> Result<(), ScimError> {
        let lower = path.to_ascii_lowercase();
        match lower.as_str() {
            "username" => match value {
                Some(v) => self.username = Some(string(path, v)?),
                None => return Err(ScimError::bad("mutability", "userName is required")),
            },
            "displayname" => self.display_name = value.map(|v| string(path, v)).transpose()?,
            "name.formatted" => self.formatted = value.map(|v| string(path, v)).transpose()?,
            "name" => {
                self.formatted = None;
                self.given_family = None;
                if let Some(v) = value {
                    let name = v
                        .as_object()
                        .ok_or_else(|| ScimError::value("name must be an object"))?;
                    let part = |key: &str| -> Result<Option<String>, ScimError> {
                        find_key(name, key)
                            .filter(|v| !v.is_null())
                            .map(|v| string(&format!("name.{key}"), v))
                            .transpose()
                    };
                    self.formatted = part("formatted")?;
                    let given_family: Vec<String> = [part("givenName")?, part("familyName")?]
                        .into_iter()
                        .flatten()
                        .collect();
                    self.given_family = (!given_family.is_empty()).then(|| given_family.join(" "));
                }
            }
            // Kept only as part of the display name, which a client sets as a whole.
            "name.givenname" | "name.familyname" | "name.middlename" => {
                if let Some(v) = value {
                    string(path, v)?;
                }
            }
            "emails" => self.email = value.map(primary_email).transpose()?.flatten(),
            p if p.starts_with("emails[") && p.ends_with("].value") => {
                self.email = value.map(|v| string(path, v)).transpose()?
            }
            "externalid" => self.external_id = value.map(|v| string(path, v)).transpose()?,
            "active" => match value {
                Some(Value::Bool(b)) => self.active = Some(*b),
                // Entra ID has sent "True"/"False" as strings.
                Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => {
                    self.active = Some(true)
                }
                Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => {
                    self.active = Some(false)
                }
                Some(_) => return Err(ScimError::value("active must be true or false")),
                None => return Err(ScimError::value("active cannot be removed; set it false")),
            },
            "password" => match value {
                Some(v) => self.password = Some(string(path, v)?),
                None => return Err(ScimError::value("password cannot be removed")),
            },
            "id" | "meta" | "schemas" | "groups" => {
                return Err(ScimError::bad("mutability", format!("{path} is read-only")))
            }
            p if p.starts_with("meta.") => {
                return Err(ScimError::bad("mutability", format!("{path} is read-only")))
            }
            // Attributes of the core schema Sesam does not keep, and extensions: accepted,
            // not stored (Entra ID sends several of them).
            "nickname" | "profileurl" | "title" | "usertype" | "preferredlanguage" | "locale"
            | "timezone" | "phonenumbers" | "ims" | "photos" | "addresses" | "entitlements"
            | "roles" | "x509certificates" => {}
            p if p.starts_with("urn:") => {}
            _ => {
                return Err(ScimError::bad(
                    "invalidPath",
                    format!("{path} is not an attribute of a Sesam user"),
                ))
            }
        }
        Ok(())
    }
}

fn find_key<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn string(path: &str, v: &Value) -> Result<String, ScimError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| ScimError::value(format!("{path} must be a string")))
}

/// The primary email of an `emails` value (else the first); `None` for an empty list.
fn primary_email(v: &Value) -> Result<Option<String>, ScimError> {
    let list = v
        .as_array()
        .ok_or_else(|| ScimError::value("emails must be a list"))?;
    let mut first = None;
    for item in list {
        let entry = item
            .as_object()
            .ok_or_else(|| ScimError::value("each email must be an object"))?;
        let value = find_key(entry, "value")
            .ok_or_else(|| ScimError::value("each email needs a value"))
            .and_then(|v| string("emails.value", v))?;
        let primary = match find_key(entry, "primary") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ScimError::value("emails.primary must be true or false")),
        };
        if primary {
            return Ok(Some(value));
        }
        first.get_or_insert(value);
    }
    Ok(first)
}

/// A whole User resource (POST, PUT) read into a draft. Read-only attributes are ignored,
/// as RFC 7643 §2.2 says.
fn read_user(body: &Map<String, Value>) -> Result<Draft, ScimError> {
    let schemas_ok = find_key(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|s| s.as_str() == Some(CORE_USER)));
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must list {CORE_USER}"),
        ));
    }
    let mut draft = Draft::default();
    for (key, value) in body {
        let lower = key.to_ascii_lowercase();
        if matches!(lower.as_str(), "schemas" | "id" | "meta" | "groups") {
            continue;
        }
        let value = (!value.is_null()).then_some(value);
        if value.is_none() && lower == "username" {
            continue;
        }
        // In a whole resource, an attribute Sesam does not know is a syntax error.
        draft.set(key, value).map_err(|e| match e.scim_type {
            Some("invalidPath") => ScimError::bad("invalidSyntax", e.detail),
            _ => e,
        })?;
    }
    if draft.username.is_none() {
        return Err(ScimError::value("userName is required"));
    }
    Ok(draft)
}

async fn hash_password(state: &AppState, draft: &Draft) -> Result<Option<String>, ScimError> {
    match &draft.password {
        Some(p) => Ok(Some(state.passwords.hash(p.clone()).await.map_err(
            |e| ScimError::from(ServiceError::Internal(format!("hashing a password: {e}"))),
        )?)),
        None => Ok(None),
    }
}

fn refused(why: Refused) -> ScimError {
    match why {
        Refused::Taken(what) => ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            format!("{what} already exists (userName or externalId)"),
        ),
        Refused::NotFound => ScimError::not_found("no such user"),
        Refused::Administrator => ScimError::new(
            StatusCode::FORBIDDEN,
            None,
            "administrators are managed in Sesam's admin portal, not by provisioning",
        ),
    }
}

async fn create_user(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let client = client(&state, &headers).await?;
    let draft = read_user(&read_object(&headers, body).await?)?;
    let profile = draft.profile(UserStatus::Active)?;
    let hash = hash_password(&state, &draft).await?;
    let user = service::create_user(
        &state.store,
        &client,
        &profile,
        hash.as_deref(),
        state.now(),
        ip.text(),
    )
    .await?
    .map_err(refused)?;
    let base = base(&state);
    let mut response = scim_json(StatusCode::CREATED, &user_json(&base, &user));
    if let Ok(location) = HeaderValue::from_str(&format!("{base}/Users/{}", user.user.id.0)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn write(
    state: &AppState,
    client: &ScimClient,
    before: &ScimUser,
    draft: &Draft,
    ip: ClientIp,
) -> Answer {
    let profile = draft.profile(before.user.status)?;
    let hash = hash_password(state, draft).await?;
    let user = service::update_user(
        &state.store,
        client,
        before,
        &profile,
        hash.as_deref(),
        state.now(),
        ip.text(),
    )
    .await?
    .map_err(refused)?;
    Ok(scim_json(StatusCode::OK, &user_json(&base(state), &user)))
}

async fn replace_user(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let client = client(&state, &headers).await?;
    let before = find(&state, &id).await?;
    let body = read_object(&headers, body).await?;
    if let Some(sent) = find_key(&body, "id").and_then(Value::as_str) {
        if sent != before.user.id.0 {
            return Err(ScimError::bad("mutability", "id cannot be changed"));
        }
    }
    let draft = read_user(&body)?;
    write(&state, &client, &before, &draft, ip).await
}

/// The operations of a PatchOp body, checked for shape.
fn operations(body: &Map<String, Value>) -> Result<&Vec<Value>, ScimError> {
    let schemas_ok = find_key(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|s| s.as_str() == Some(PATCH_OP)));
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must list {PATCH_OP}"),
        ));
    }
    let ops = find_key(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations must be a list"))?;
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("Operations must hold 1 to {MAX_OPERATIONS} operations"),
        ));
    }
    Ok(ops)
}

/// One operation: its verb (`add`, `replace`, `remove`), path and value.
fn operation(op: &Value) -> Result<(String, Option<&str>, Option<&Value>), ScimError> {
    let op = op
        .as_object()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "each operation must be an object"))?;
    let verb = find_key(op, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .filter(|v| matches!(v.as_str(), "add" | "replace" | "remove"))
        .ok_or_else(|| ScimError::bad("invalidSyntax", "op must be add, replace or remove"))?;
    let path = match find_key(op, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.as_str()),
        Some(_) => return Err(ScimError::bad("invalidPath", "path must be a string")),
    };
    let value = find_key(op, "value");
    if verb != "remove" && value.is_none() {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("{verb} needs a value"),
        ));
    }
    Ok((verb, path, value))
}

async fn patch_user(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let client = client(&state, &headers).await?;
    let before = find(&state, &id).await?;
    let body = read_object(&headers, body).await?;
    let mut draft = Draft::of(&before);
    for op in operations(&body)? {
        let (verb, path, value) = operation(op)?;
        match (verb.as_str(), path) {
            ("remove", None) => {
                return Err(ScimError::bad("noTarget", "remove needs a path"));
            }
            ("remove", Some(path)) => draft.set(strip_schema(path), None)?,
            (_, Some(path)) => draft.set(strip_schema(path), value)?,
            (_, None) => {
                let attrs = value
                    .and_then(Value::as_object)
                    .ok_or_else(|| ScimError::value("without a path, value must be an object"))?;
                for (key, value) in attrs {
                    draft.set(strip_schema(key), (!value.is_null()).then_some(value))?;
                }
            }
        }
    }
    write(&state, &client, &before, &draft, ip).await
}

async fn delete_user(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let client = client(&state, &headers).await?;
    let user = find(&state, &id).await?;
    service::delete_user(&state.store, &client, &user, state.now(), ip.text())
        .await?
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn group(id: &str) -> Result<(&'static str, RoleFlag), ScimError> {
    GROUPS
        .iter()
        .find(|(g, _)| *g == id)
        .copied()
        .ok_or_else(|| ScimError::not_found(format!("no group {id}")))
}

async fn group_json(
    state: &AppState,
    (id, flag): (&str, RoleFlag),
    with_members: bool,
) -> Result<Value, ScimError> {
    let base = base(state);
    let mut out = json!({
        "schemas": [CORE_GROUP],
        "id": id,
        "displayName": id,
        "meta": {
            "resourceType": "Group",
            "location": format!("{base}/Groups/{id}"),
        },
    });
    if with_members {
        let members: Vec<Value> = state
            .store
            .users_with_role(flag)
            .await?
            .iter()
            .map(|u| {
                json!({
                    "value": u.id.0,
                    "display": u.username.as_str(),
                    "$ref": format!("{base}/Users/{}", u.id.0),
                })
            })
            .collect();
        out["members"] = json!(members);
    }
    Ok(out)
}

/// Whether `excludedAttributes` leaves out the members (Entra ID asks so).
fn members_wanted(query: &Query) -> bool {
    !query.get("excludedAttributes").is_some_and(|x| {
        x.split(',')
            .any(|a| a.trim().eq_ignore_ascii_case("members"))
    })
}

async fn list_groups(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Answer {
    client(&state, &headers).await?;
    let query = Query::parse(raw)?;
    let (start, count) = query.page()?;
    let wanted = match query.get("filter") {
        None => None,
        Some(f) => Some(parse_filter(f, &["displayName", "id"])?.1),
    };
    let selected: Vec<_> = GROUPS
        .iter()
        .filter(|(id, _)| wanted.as_deref().is_none_or(|w| w == *id))
        .collect();
    let mut resources = Vec::new();
    for g in selected
        .iter()
        .skip((start - 1) as usize)
        .take(count as usize)
    {
        resources.push(group_json(&state, **g, members_wanted(&query)).await?);
    }
    let total = selected.len() as i64;
    Ok(scim_json(
        StatusCode::OK,
        &list_json(total, start, resources),
    ))
}

async fn get_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Answer {
    client(&state, &headers).await?;
    let query = Query::parse(raw)?;
    let g = group(&id)?;
    Ok(scim_json(
        StatusCode::OK,
        &group_json(&state, g, members_wanted(&query)).await?,
    ))
}

/// The user ids in a members value (`[{"value": id}]`).
fn member_ids(value: Option<&Value>) -> Result<Vec<String>, ScimError> {
    let list = value
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::value("members must be a list of {\"value\": user id}"))?;
    list.iter()
        .map(|m| {
            m.as_object()
                .and_then(|m| find_key(m, "value"))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ScimError::value("each member needs a value (a user id)"))
        })
        .collect()
}

/// Members added and removed (PATCH `members`, RFC 7644 §3.5.2): every user is checked
/// before any flag changes.
async fn patch_group(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Answer {
    let client = client(&state, &headers).await?;
    let g = group(&id)?;
    let body = read_object(&headers, body).await?;
    let mut changes: Vec<(String, bool)> = Vec::new();
    for op in operations(&body)? {
        let (verb, path, value) = operation(op)?;
        let path = path.map(str::trim);
        match (verb.as_str(), path) {
            ("add", Some(p)) if p.eq_ignore_ascii_case("members") => {
                changes.extend(member_ids(value)?.into_iter().map(|id| (id, true)))
            }
            ("remove", Some(p)) if p.eq_ignore_ascii_case("members") => {
                changes.extend(member_ids(value)?.into_iter().map(|id| (id, false)))
            }
            ("remove", Some(p)) if p.to_ascii_lowercase().starts_with("members[") => {
                let inner = p[8..].strip_suffix(']').ok_or_else(|| {
                    ScimError::bad("invalidPath", "members[value eq \"id\"] expected")
                })?;
                let (_, user) = parse_filter(inner, &["value"])?;
                changes.push((user, false));
            }
            _ => {
                return Err(ScimError::bad(
                    "invalidPath",
                    "a group's members are changed with add or remove on members",
                ))
            }
        }
    }
    let mut users = Vec::new();
    for (user, on) in changes {
        let found = state
            .store
            .scim_user(&UserId(user.clone()))
            .await?
            .ok_or_else(|| ScimError::value(format!("no user {user}")))?;
        users.push((found, on));
    }
    for (user, on) in users {
        // Read again: an earlier operation of this request may have changed it.
        let Some(now_user) = state.store.scim_user(&user.user.id).await? else {
            continue;
        };
        service::set_role(
            &state.store,
            &client,
            &now_user,
            (g.1, g.0),
            on,
            state.now(),
            ip.text(),
        )
        .await?
        .map_err(refused)?;
    }
    Ok(scim_json(
        StatusCode::OK,
        &group_json(&state, g, true).await?,
    ))
}

async fn service_provider_config(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    client(&state, &headers).await?;
    let base = base(&state);
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [SPC],
            "documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_COUNT },
            "changePassword": { "supported": true },
            "sort": { "supported": false },
            "etag": { "supported": false },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A token per provisioning client, made with `sesam scim-client add`",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{base}/ServiceProviderConfig"),
            },
        }),
    ))
}

fn attribute(name: &str, kind: &str, required: bool, mutability: &str, uniqueness: &str) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "required": required,
        "caseExact": false,
        "mutability": mutability,
        "returned": if name == "password" { "never" } else { "default" },
        "uniqueness": uniqueness,
    })
}

fn schema_list(base: &str) -> Vec<Value> {
    let mut emails = attribute("emails", "complex", false, "readWrite", "none");
    emails["multiValued"] = json!(true);
    emails["subAttributes"] = json!([
        attribute("value", "string", false, "readWrite", "none"),
        attribute("type", "string", false, "readWrite", "none"),
        attribute("primary", "boolean", false, "readWrite", "none"),
    ]);
    let mut name = attribute("name", "complex", false, "readWrite", "none");
    name["subAttributes"] = json!([
        attribute("formatted", "string", false, "readWrite", "none"),
        attribute("givenName", "string", false, "readWrite", "none"),
        attribute("familyName", "string", false, "readWrite", "none"),
    ]);
    let mut groups = attribute("groups", "complex", false, "readOnly", "none");
    groups["multiValued"] = json!(true);
    let mut members = attribute("members", "complex", false, "readWrite", "none");
    members["multiValued"] = json!(true);
    members["subAttributes"] = json!([
        attribute("value", "string", false, "immutable", "none"),
        attribute("display", "string", false, "readOnly", "none"),
    ]);
    vec![
        json!({
            "schemas": [SCHEMA],
            "id": CORE_USER,
            "name": "User",
            "description": "A Sesam user",
            "attributes": [
                attribute("userName", "string", true, "readWrite", "server"),
                name,
                attribute("displayName", "string", false, "readWrite", "none"),
                emails,
                attribute("active", "boolean", false, "readWrite", "none"),
                attribute("password", "string", false, "writeOnly", "none"),
                groups,
            ],
            "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{CORE_USER}") },
        }),
        json!({
            "schemas": [SCHEMA],
            "id": CORE_GROUP,
            "name": "Group",
            "description": "A role in Sesam: admins, pilot, password-only",
            "attributes": [
                attribute("displayName", "string", true, "readOnly", "server"),
                members,
            ],
            "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{CORE_GROUP}") },
        }),
    ]
}

async fn schemas(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    client(&state, &headers).await?;
    let list = schema_list(&base(&state));
    Ok(scim_json(
        StatusCode::OK,
        &list_json(list.len() as i64, 1, list),
    ))
}

async fn schema(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    client(&state, &headers).await?;
    schema_list(&base(&state))
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(|s| scim_json(StatusCode::OK, &s))
        .ok_or_else(|| ScimError::not_found(format!("no schema {id}")))
}

fn resource_type_list(base: &str) -> Vec<Value> {
    [
        ("User", "/Users", CORE_USER),
        ("Group", "/Groups", CORE_GROUP),
    ]
    .into_iter()
    .map(|(name, endpoint, schema)| {
        json!({
            "schemas": [RESOURCE_TYPE],
            "id": name,
            "name": name,
            "endpoint": endpoint,
            "schema": schema,
            "meta": {
                "resourceType": "ResourceType",
                "location": format!("{base}/ResourceTypes/{name}"),
            },
        })
    })
    .collect()
}

async fn resource_types(State(state): State<AppState>, headers: HeaderMap) -> Answer {
    client(&state, &headers).await?;
    let list = resource_type_list(&base(&state));
    Ok(scim_json(
        StatusCode::OK,
        &list_json(list.len() as i64, 1, list),
    ))
}

async fn resource_type(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    client(&state, &headers).await?;
    resource_type_list(&base(&state))
        .into_iter()
        .find(|s| s["id"] == id.as_str())
        .map(|s| scim_json(StatusCode::OK, &s))
        .ok_or_else(|| ScimError::not_found(format!("no resource type {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_eq_on_a_known_attribute_with_a_json_string() {
        let attrs = ["userName", "externalId"];
        assert_eq!(
            parse_filter("userName eq \"anna\"", &attrs).unwrap(),
            ("userName".into(), "anna".into())
        );
        assert_eq!(
            parse_filter("  externalid  EQ \"a b\\\"c\"", &attrs).unwrap(),
            ("externalId".into(), "a b\"c".into())
        );
        assert_eq!(
            parse_filter(&format!("{CORE_USER}:userName eq \"x\""), &attrs)
                .unwrap()
                .0,
            "userName"
        );
        for bad in [
            "userName co \"a\"",
            "userName eq anna",
            "userName eq \"a\" and active eq true",
            "title eq \"x\"",
            "userName",
            "",
        ] {
            let e = parse_filter(bad, &attrs).unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{bad}");
        }
    }

    #[test]
    fn pages_follow_rfc_7644_for_out_of_range_values() {
        let q = |s: &str| Query::parse(Some(s.into())).unwrap().page();
        assert_eq!(q("").unwrap(), (1, MAX_COUNT));
        assert_eq!(q("startIndex=0&count=-5").unwrap(), (1, 0));
        assert_eq!(q("startindex=3&COUNT=100000").unwrap(), (3, MAX_COUNT));
        assert_eq!(q("count=x").unwrap_err().scim_type, Some("invalidValue"));
    }

    #[test]
    fn a_display_name_comes_from_display_name_then_name_then_the_username() {
        let mut d = Draft {
            username: Some("anna".into()),
            ..Draft::default()
        };
        assert_eq!(d.profile(UserStatus::Active).unwrap().display_name, "anna");
        d.set(
            "name",
            Some(&json!({"givenName": "Anna", "familyName": "A"})),
        )
        .unwrap();
        assert_eq!(
            d.profile(UserStatus::Active).unwrap().display_name,
            "Anna A"
        );
        d.set("displayName", Some(&json!("Anna Andersen"))).unwrap();
        assert_eq!(
            d.profile(UserStatus::Active).unwrap().display_name,
            "Anna Andersen"
        );
    }

    #[test]
    fn an_administrators_lock_is_not_undone_by_active() {
        let d = Draft {
            username: Some("anna".into()),
            active: Some(true),
            ..Draft::default()
        };
        assert_eq!(
            d.profile(UserStatus::Locked).unwrap().status,
            UserStatus::Locked
        );
        assert_eq!(
            d.profile(UserStatus::Disabled).unwrap().status,
            UserStatus::Active
        );
    }
}
