//! The `/authorize` request: judged against the client the server looked up, and classified
//! as an error the client may see (redirect) or one only the browser may see (error page).

use serde::{Deserialize, Serialize};

use crate::keys::JwsAlg;
use crate::params::{Params, ParamsProblem};
use crate::pkce::is_valid_s256_challenge;
use crate::response::{
    authorization_error_response, authorization_response, AuthorizationResponse,
};

/// The whole request (names and values, decoded) may hold at most this many bytes.
pub const MAX_REQUEST_LEN: usize = 8 * 1024;
/// Any single parameter value may hold at most this many bytes.
pub const MAX_PARAM_LEN: usize = 2048;
/// `state` is echoed back, so it is held shorter.
pub const MAX_STATE_LEN: usize = 512;
/// `nonce` goes into the ID token, so it is held shorter.
pub const MAX_NONCE_LEN: usize = 512;

/// What the server knows of a registered client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The `client_id`.
    pub client_id: String,
    /// Registered redirect URIs; a request must name one of them exactly.
    pub redirect_uris: Vec<String>,
    /// A public client (native or browser app) has no secret and authenticates with `none`.
    pub public: bool,
    /// For confidential clients: [`crate::hash_client_secret`] of the secret.
    pub secret_hash: Option<String>,
    /// The algorithm its ID tokens are signed with.
    pub id_token_alg: JwsAlg,
    /// Whether `sub` is the user's id or a per-client pseudonym.
    pub subject_type: SubjectType,
}

/// Whether a redirect URI may be registered for a client: absolute `https`, or `http` only on
/// loopback (native apps and development, RFC 8252 §7.3); never a fragment, never userinfo.
pub fn is_valid_redirect_uri(uri: &str) -> bool {
    if uri.len() > MAX_PARAM_LEN || uri.contains('#') || uri.chars().any(char::is_whitespace) {
        return false;
    }
    let rest = if let Some(rest) = uri.strip_prefix("https://") {
        rest
    } else if let Some(rest) = uri.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            return false;
        }
        rest
    } else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    !authority.is_empty() && !authority.contains('@')
}

/// How `sub` is formed for a client (OIDC Core §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// The same `sub` for every client.
    #[default]
    Public,
    /// A different `sub` per client: [`crate::pairwise_sub`].
    Pairwise,
}

// The level carried in `acr_values` and the `acr` claim is sesam-core's AssuranceLevel:
// one level type for the whole server. High is never reached by Sesam's factors; requests
// for it are refused.
pub use sesam_core::AssuranceLevel;

/// The `prompt` the client asked for (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    /// Show nothing: answer from the existing session or fail with `login_required`.
    None,
    /// Log in again even with a session.
    Login,
}

/// How the answer is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// Parameters in the redirect URI's query string.
    #[default]
    Query,
    /// An auto-submitted HTML form posting to the redirect URI.
    FormPost,
}

/// The `error` codes `/authorize` sends to a client (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizeErrorCode {
    /// Missing, malformed or unsupported parameter.
    InvalidRequest,
    /// The client may not use this flow.
    UnauthorizedClient,
    /// The user or policy refused.
    AccessDenied,
    /// Anything but `response_type=code`.
    UnsupportedResponseType,
    /// `scope` lacks `openid`.
    InvalidScope,
    /// Sesam failed.
    ServerError,
    /// Sesam is overloaded or in maintenance.
    TemporarilyUnavailable,
    /// `prompt=none` and no usable session.
    LoginRequired,
    /// `prompt=none` and the user would have to act.
    InteractionRequired,
    /// A `request` object was sent.
    RequestNotSupported,
    /// A `request_uri` was sent.
    RequestUriNotSupported,
    /// The requested level of assurance cannot be met (OpenID Connect Core Unmet
    /// Authentication Requirements 1.0).
    UnmetAuthenticationRequirements,
}

impl AuthorizeErrorCode {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizeErrorCode::InvalidRequest => "invalid_request",
            AuthorizeErrorCode::UnauthorizedClient => "unauthorized_client",
            AuthorizeErrorCode::AccessDenied => "access_denied",
            AuthorizeErrorCode::UnsupportedResponseType => "unsupported_response_type",
            AuthorizeErrorCode::InvalidScope => "invalid_scope",
            AuthorizeErrorCode::ServerError => "server_error",
            AuthorizeErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            AuthorizeErrorCode::LoginRequired => "login_required",
            AuthorizeErrorCode::InteractionRequired => "interaction_required",
            AuthorizeErrorCode::RequestNotSupported => "request_not_supported",
            AuthorizeErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            AuthorizeErrorCode::UnmetAuthenticationRequirements => {
                "unmet_authentication_requirements"
            }
        }
    }
}

impl std::fmt::Display for AuthorizeErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an authorization request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted (unknown client, unregistered or missing
    /// redirect URI, duplicated parameters, oversized request or state): show an error page,
    /// never redirect.
    #[error("{message}")]
    NotRedirectable {
        /// For the error page and the log; names no secrets.
        message: String,
    },
    /// Client and redirect URI are valid: send the error there ([`AuthorizeError::response`]).
    #[error("{error}: {description}")]
    Redirect {
        /// The validated redirect URI.
        redirect_uri: String,
        /// The OAuth error code.
        error: AuthorizeErrorCode,
        /// The `error_description`.
        description: String,
        /// The client's `state`, echoed.
        state: Option<String>,
        /// How to deliver it.
        response_mode: ResponseMode,
    },
}

impl AuthorizeError {
    /// The answer to send the client, or `None` when this error must not leave Sesam.
    pub fn response(&self, iss: &str) -> Option<AuthorizationResponse> {
        match self {
            AuthorizeError::NotRedirectable { .. } => None,
            AuthorizeError::Redirect {
                redirect_uri,
                error,
                description,
                state,
                response_mode,
            } => Some(authorization_error_response(
                redirect_uri,
                *error,
                Some(description),
                state.as_deref(),
                iss,
                *response_mode,
            )),
        }
    }

    fn not_redirectable(message: impl Into<String>) -> Self {
        AuthorizeError::NotRedirectable {
            message: message.into(),
        }
    }
}

/// A validated authorization request; only [`AuthorizeRequest::validate`] makes one (the serde
/// impls are for keeping it in the server's session while the user logs in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    scopes: Vec<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: String,
    response_mode: ResponseMode,
    prompt: Option<Prompt>,
    max_age: Option<u64>,
    login_hint: Option<String>,
    ui_locales: Option<String>,
    required_level: Option<AssuranceLevel>,
}

impl AuthorizeRequest {
    /// Judges the decoded query (GET) or form (POST) parameters. `lookup` finds a registered
    /// client by `client_id`. Unknown parameters are ignored, as OAuth requires.
    pub fn validate(
        params: &[(String, String)],
        lookup: impl Fn(&str) -> Option<ClientInfo>,
    ) -> Result<AuthorizeRequest, AuthorizeError> {
        let params = Params::parse(params, MAX_REQUEST_LEN).map_err(|problem| match problem {
            ParamsProblem::TooLarge => AuthorizeError::not_redirectable("the request is too large"),
            ParamsProblem::Duplicated(name) => AuthorizeError::not_redirectable(format!(
                "parameter {name} is given more than once"
            )),
        })?;

        // Until client and redirect URI are known good, nothing may go back to the client.
        let client_id = params
            .get("client_id")
            .ok_or_else(|| AuthorizeError::not_redirectable("client_id is missing"))?;
        if client_id.len() > MAX_PARAM_LEN {
            return Err(AuthorizeError::not_redirectable("client_id is too long"));
        }
        let client = lookup(client_id)
            .ok_or_else(|| AuthorizeError::not_redirectable("the client is not known"))?;
        let redirect_uri = params
            .get("redirect_uri")
            .ok_or_else(|| AuthorizeError::not_redirectable("redirect_uri is missing"))?;
        if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
            return Err(AuthorizeError::not_redirectable(
                "redirect_uri is not registered for this client",
            ));
        }
        let state = params.get("state");
        if state.is_some_and(|s| s.len() > MAX_STATE_LEN) {
            return Err(AuthorizeError::not_redirectable("state is too long"));
        }

        let (response_mode, mode_ok) = match params.get("response_mode") {
            None | Some("query") => (ResponseMode::Query, true),
            Some("form_post") => (ResponseMode::FormPost, true),
            Some(_) => (ResponseMode::Query, false),
        };
        let fail = |error: AuthorizeErrorCode, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.to_owned(),
            error,
            description: description.to_owned(),
            state: state.map(str::to_owned),
            response_mode,
        };
        use AuthorizeErrorCode::*;

        if !mode_ok {
            return Err(fail(
                InvalidRequest,
                "response_mode must be query or form_post",
            ));
        }
        if let Some(name) = params.oversized(MAX_PARAM_LEN) {
            return Err(fail(
                InvalidRequest,
                &format!("parameter {name} is too long"),
            ));
        }
        if params.get("request").is_some() {
            return Err(fail(
                RequestNotSupported,
                "request objects are not supported",
            ));
        }
        if params.get("request_uri").is_some() {
            return Err(fail(RequestUriNotSupported, "request_uri is not supported"));
        }
        match params.get("response_type") {
            None => return Err(fail(InvalidRequest, "response_type is missing")),
            Some("code") => {}
            Some(_) => {
                return Err(fail(
                    UnsupportedResponseType,
                    "only response_type=code is supported",
                ))
            }
        }
        let requested: Vec<&str> = params.get("scope").unwrap_or("").split(' ').collect();
        if !requested.contains(&"openid") {
            return Err(fail(InvalidScope, "scope must include openid"));
        }
        // Unknown scope values are ignored (OIDC Core §5.4 / RFC 6749 §3.3).
        let scopes: Vec<String> = crate::discovery::SUPPORTED_SCOPES
            .iter()
            .filter(|s| requested.contains(s))
            .map(|s| (*s).to_owned())
            .collect();

        let code_challenge = params
            .get("code_challenge")
            .ok_or_else(|| fail(InvalidRequest, "code_challenge is required (PKCE S256)"))?;
        if params.get("code_challenge_method") != Some("S256") {
            return Err(fail(InvalidRequest, "code_challenge_method must be S256"));
        }
        if !is_valid_s256_challenge(code_challenge) {
            return Err(fail(
                InvalidRequest,
                "code_challenge is not an S256 challenge",
            ));
        }

        let nonce = params.get("nonce");
        if nonce.is_some_and(|n| n.len() > MAX_NONCE_LEN) {
            return Err(fail(InvalidRequest, "nonce is too long"));
        }

        let prompt = match params.get("prompt") {
            None => None,
            Some(value) => {
                let values: Vec<&str> = value.split(' ').collect();
                if values.contains(&"none") && values.len() > 1 {
                    return Err(fail(InvalidRequest, "prompt=none cannot be combined"));
                }
                // Sesam has no consent screen and no account chooser: those are no-ops.
                if let Some(bad) = values
                    .iter()
                    .find(|v| !matches!(**v, "none" | "login" | "consent" | "select_account"))
                {
                    return Err(fail(
                        InvalidRequest,
                        &format!("prompt value {bad} is not supported"),
                    ));
                }
                if values.contains(&"none") {
                    Some(Prompt::None)
                } else if values.contains(&"login") {
                    Some(Prompt::Login)
                } else {
                    None
                }
            }
        };

        let max_age = match params.get("max_age") {
            None => None,
            Some(value) if value.bytes().all(|b| b.is_ascii_digit()) => Some(
                value
                    .parse::<u64>()
                    .map_err(|_| fail(InvalidRequest, "max_age is out of range"))?,
            ),
            Some(_) => return Err(fail(InvalidRequest, "max_age must be a number of seconds")),
        };

        let required_level = match params.get("acr_values") {
            None => None,
            Some(value) => {
                // The client accepts any listed level, so the lowest one it names is required;
                // values that are not NSIS levels are ignored, but one must be.
                let level = value
                    .split(' ')
                    .filter_map(AssuranceLevel::from_nsis_uri)
                    .min()
                    .ok_or_else(|| {
                        fail(
                            InvalidRequest,
                            "acr_values names no NSIS level of assurance",
                        )
                    })?;
                if level == AssuranceLevel::High {
                    return Err(fail(
                        UnmetAuthenticationRequirements,
                        "NSIS High cannot be met by this identity provider",
                    ));
                }
                Some(level)
            }
        };

        Ok(AuthorizeRequest {
            client_id: client.client_id,
            redirect_uri: redirect_uri.to_owned(),
            scopes,
            state: state.map(str::to_owned),
            nonce: nonce.map(str::to_owned),
            code_challenge: code_challenge.to_owned(),
            response_mode,
            prompt,
            max_age,
            login_hint: params.get("login_hint").map(str::to_owned),
            ui_locales: params.get("ui_locales").map(str::to_owned),
            required_level,
        })
    }

    /// The client.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    /// The (registered) redirect URI; the token request must repeat it.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }
    /// The granted scopes: `openid` plus any of `profile`, `email` requested.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// The granted scopes, space separated (as stored with the code).
    pub fn scope(&self) -> String {
        self.scopes.join(" ")
    }
    /// Whether `scope` was requested and is supported.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
    /// The client's `state`, to echo.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }
    /// The `nonce`, to put in the ID token.
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }
    /// The S256 PKCE challenge, to store with the code.
    pub fn code_challenge(&self) -> &str {
        &self.code_challenge
    }
    /// How to deliver the answer.
    pub fn response_mode(&self) -> ResponseMode {
        self.response_mode
    }
    /// `prompt=none` or `prompt=login`, if asked.
    pub fn prompt(&self) -> Option<Prompt> {
        self.prompt
    }
    /// `max_age` in seconds, if asked.
    pub fn max_age(&self) -> Option<u64> {
        self.max_age
    }
    /// `login_hint` (a username to prefill), if given.
    pub fn login_hint(&self) -> Option<&str> {
        self.login_hint.as_deref()
    }
    /// `ui_locales` (e.g. `"da en"`), if given.
    pub fn ui_locales(&self) -> Option<&str> {
        self.ui_locales.as_deref()
    }
    /// The lowest NSIS level the client accepts, from `acr_values`; `None` when it named none.
    pub fn required_level(&self) -> Option<AssuranceLevel> {
        self.required_level
    }

    /// Whether a login at `auth_time` is recent enough for `max_age` at `now` (seconds since the
    /// epoch). Without `max_age` any login is.
    pub fn auth_time_is_fresh(&self, auth_time: u64, now: u64) -> bool {
        self.max_age
            .is_none_or(|max_age| now.saturating_sub(auth_time) <= max_age)
    }

    /// The success answer carrying `code`, `state` and `iss`.
    pub fn success(&self, code: &str, iss: &str) -> AuthorizationResponse {
        authorization_response(
            &self.redirect_uri,
            code,
            self.state(),
            iss,
            self.response_mode,
        )
    }

    /// An error answer after validation, e.g. `login_required` for `prompt=none`, or
    /// `access_denied` when the user cancels.
    pub fn error(
        &self,
        error: AuthorizeErrorCode,
        description: &str,
        iss: &str,
    ) -> AuthorizationResponse {
        authorization_error_response(
            &self.redirect_uri,
            error,
            Some(description),
            self.state(),
            iss,
            self.response_mode,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT: &str = "https://sp.example.dk/cb";
    const ISS: &str = "https://idp.example.dk";

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: "sp1".into(),
            redirect_uris: vec![REDIRECT.into(), "https://sp.example.dk/other".into()],
            public: false,
            secret_hash: None,
            id_token_alg: JwsAlg::RS256,
            subject_type: SubjectType::Public,
        }
    }

    fn lookup(id: &str) -> Option<ClientInfo> {
        (id == "sp1").then(client)
    }

    fn base() -> Vec<(String, String)> {
        [
            ("response_type", "code"),
            ("client_id", "sp1"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile"),
            ("state", "st"),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn with(name: &str, value: &str) -> Vec<(String, String)> {
        let mut p: Vec<_> = base().into_iter().filter(|(k, _)| k != name).collect();
        p.push((name.into(), value.into()));
        p
    }

    fn without(name: &str) -> Vec<(String, String)> {
        base().into_iter().filter(|(k, _)| k != name).collect()
    }

    fn redirect_error(params: &[(String, String)]) -> AuthorizeErrorCode {
        match AuthorizeRequest::validate(params, lookup) {
            Err(AuthorizeError::Redirect {
                error,
                state,
                redirect_uri,
                ..
            }) => {
                assert_eq!(redirect_uri, REDIRECT);
                assert_eq!(state.as_deref(), Some("st"));
                error
            }
            other => panic!("expected a redirectable error, got {other:?}"),
        }
    }

    fn not_redirectable(params: &[(String, String)]) -> String {
        match AuthorizeRequest::validate(params, lookup) {
            Err(AuthorizeError::NotRedirectable { message }) => message,
            other => panic!("expected a non-redirectable error, got {other:?}"),
        }
    }

    #[test]
    fn valid_request_exposes_what_the_server_needs() {
        let p = with("acr_values", AssuranceLevel::Substantial.nsis_uri());
        let mut p = p;
        p.push(("login_hint".into(), "alice".into()));
        p.push(("max_age".into(), "300".into()));
        p.push(("prompt".into(), "login".into()));
        p.push(("response_mode".into(), "form_post".into()));
        p.push(("unknown_extension".into(), "ignored".into()));
        p.push(("scope_extra".into(), "".into()));
        let r = AuthorizeRequest::validate(&p, lookup).unwrap();
        assert_eq!(r.client_id(), "sp1");
        assert_eq!(r.redirect_uri(), REDIRECT);
        assert_eq!(r.scope(), "openid profile");
        assert!(r.has_scope("profile") && !r.has_scope("email"));
        assert_eq!(r.state(), Some("st"));
        assert_eq!(r.nonce(), Some("n-0S6_WzA2Mj"));
        assert_eq!(r.code_challenge(), CHALLENGE);
        assert_eq!(r.response_mode(), ResponseMode::FormPost);
        assert_eq!(r.prompt(), Some(Prompt::Login));
        assert_eq!(r.max_age(), Some(300));
        assert_eq!(r.login_hint(), Some("alice"));
        assert_eq!(r.required_level(), Some(AssuranceLevel::Substantial));
        assert!(r.auth_time_is_fresh(1000, 1300));
        assert!(!r.auth_time_is_fresh(1000, 1301));
        let AuthorizationResponse::FormPost { action, fields } = r.success("the-code", ISS) else {
            panic!("form_post expected")
        };
        assert_eq!(action, REDIRECT);
        assert_eq!(
            fields,
            vec![
                ("code".to_string(), "the-code".to_string()),
                ("state".to_string(), "st".to_string()),
                ("iss".to_string(), ISS.to_string())
            ]
        );
    }

    #[test]
    fn minimal_request_defaults() {
        let p: Vec<_> = without("state")
            .into_iter()
            .filter(|(k, _)| k != "nonce")
            .collect();
        let r = AuthorizeRequest::validate(&p, lookup).unwrap();
        assert_eq!(r.state(), None);
        assert_eq!(r.nonce(), None);
        assert_eq!(r.prompt(), None);
        assert_eq!(r.response_mode(), ResponseMode::Query);
        assert_eq!(r.required_level(), None);
        assert!(r.auth_time_is_fresh(0, u64::MAX));
        let AuthorizationResponse::Redirect { location } = r.success("c", ISS) else {
            panic!()
        };
        assert_eq!(
            location,
            format!("{REDIRECT}?code=c&iss=https%3A%2F%2Fidp.example.dk")
        );
    }

    #[test]
    fn unknown_client_is_not_redirected() {
        let msg = not_redirectable(&with("client_id", "evil"));
        assert!(msg.contains("not known"));
        not_redirectable(&without("client_id"));
    }

    #[test]
    fn unregistered_or_missing_redirect_uri_is_not_redirected() {
        not_redirectable(&with("redirect_uri", "https://evil.example/cb"));
        // Exact match: no prefix, no trailing slash, no case folding, no extra query.
        not_redirectable(&with("redirect_uri", "https://sp.example.dk/cb/"));
        not_redirectable(&with("redirect_uri", "https://SP.example.dk/cb"));
        not_redirectable(&with("redirect_uri", "https://sp.example.dk/cb?x=1"));
        not_redirectable(&without("redirect_uri"));
        // A redirect URI of another client is not this client's.
        let other = |id: &str| {
            (id == "sp1").then(|| ClientInfo {
                redirect_uris: vec!["https://other.example/cb".into()],
                ..client()
            })
        };
        assert!(matches!(
            AuthorizeRequest::validate(&base(), other),
            Err(AuthorizeError::NotRedirectable { .. })
        ));
    }

    #[test]
    fn duplicated_parameters_are_not_redirected() {
        let mut p = base();
        p.push(("state".into(), "other".into()));
        assert!(not_redirectable(&p).contains("state"));
        let mut p = base();
        p.push(("redirect_uri".into(), "https://evil.example/cb".into()));
        not_redirectable(&p);
    }

    #[test]
    fn oversized_parameters_are_refused() {
        // Whole request over 8 KiB.
        let mut p = base();
        for i in 0..5 {
            p.push((format!("x{i}"), "a".repeat(2000)));
        }
        assert!(not_redirectable(&p).contains("too large"));
        // One parameter over 2048 bytes: redirected as invalid_request.
        assert_eq!(
            redirect_error(&with("login_hint", &"a".repeat(MAX_PARAM_LEN + 1))),
            AuthorizeErrorCode::InvalidRequest
        );
        assert!(AuthorizeRequest::validate(
            &with("login_hint", &"a".repeat(MAX_PARAM_LEN)),
            lookup
        )
        .is_ok());
        assert_eq!(
            redirect_error(&with("nonce", &"n".repeat(MAX_NONCE_LEN + 1))),
            AuthorizeErrorCode::InvalidRequest
        );
        // An oversized state is never echoed.
        not_redirectable(&with("state", &"s".repeat(MAX_STATE_LEN + 1)));
        assert!(
            AuthorizeRequest::validate(&with("state", &"s".repeat(MAX_STATE_LEN)), lookup).is_ok()
        );
        not_redirectable(&with("client_id", &"c".repeat(MAX_PARAM_LEN + 1)));
    }

    #[test]
    fn response_type_other_than_code_is_unsupported() {
        for rt in ["token", "id_token", "code id_token", "code token"] {
            assert_eq!(
                redirect_error(&with("response_type", rt)),
                AuthorizeErrorCode::UnsupportedResponseType
            );
        }
        assert_eq!(
            redirect_error(&without("response_type")),
            AuthorizeErrorCode::InvalidRequest
        );
    }

    #[test]
    fn pkce_s256_is_required() {
        use AuthorizeErrorCode::InvalidRequest;
        assert_eq!(redirect_error(&without("code_challenge")), InvalidRequest);
        // RFC 7636 defaults a missing method to plain, which is refused.
        assert_eq!(
            redirect_error(&without("code_challenge_method")),
            InvalidRequest
        );
        assert_eq!(
            redirect_error(&with("code_challenge_method", "plain")),
            InvalidRequest
        );
        assert_eq!(
            redirect_error(&with("code_challenge_method", "s256")),
            InvalidRequest
        );
        assert_eq!(
            redirect_error(&with("code_challenge", "too-short")),
            InvalidRequest
        );
        assert_eq!(
            redirect_error(&with("code_challenge", &format!("{}=", &CHALLENGE[..42]))),
            InvalidRequest
        );
    }

    #[test]
    fn scope_must_include_openid_and_unknown_scopes_are_dropped() {
        assert_eq!(
            redirect_error(&with("scope", "profile email")),
            AuthorizeErrorCode::InvalidScope
        );
        assert_eq!(
            redirect_error(&without("scope")),
            AuthorizeErrorCode::InvalidScope
        );
        assert_eq!(
            redirect_error(&with("scope", "openidx")),
            AuthorizeErrorCode::InvalidScope
        );
        let r = AuthorizeRequest::validate(&with("scope", "email openid admin"), lookup).unwrap();
        assert_eq!(r.scope(), "openid email");
    }

    #[test]
    fn acr_values_map_to_nsis_levels_and_high_is_refused() {
        let level = |v: &str| {
            AuthorizeRequest::validate(&with("acr_values", v), lookup)
                .unwrap()
                .required_level()
        };
        assert_eq!(
            level(AssuranceLevel::Low.nsis_uri()),
            Some(AssuranceLevel::Low)
        );
        assert_eq!(
            level(AssuranceLevel::Substantial.nsis_uri()),
            Some(AssuranceLevel::Substantial)
        );
        // Any listed level is acceptable to the client: the lowest is required.
        assert_eq!(
            level(&format!(
                "{} {}",
                AssuranceLevel::High.nsis_uri(),
                AssuranceLevel::Substantial.nsis_uri()
            )),
            Some(AssuranceLevel::Substantial)
        );
        assert_eq!(
            level(&format!("urn:other {}", AssuranceLevel::Low.nsis_uri())),
            Some(AssuranceLevel::Low)
        );
        assert_eq!(
            redirect_error(&with("acr_values", AssuranceLevel::High.nsis_uri())),
            AuthorizeErrorCode::UnmetAuthenticationRequirements
        );
        for bad in [
            "urn:unknown",
            "Substantial",
            "https://data.gov.dk/concept/core/nsis/loa/substantial",
        ] {
            assert_eq!(
                redirect_error(&with("acr_values", bad)),
                AuthorizeErrorCode::InvalidRequest
            );
        }
        assert_eq!(
            AssuranceLevel::from_nsis_uri(AssuranceLevel::High.nsis_uri()),
            Some(AssuranceLevel::High)
        );
        assert!(AssuranceLevel::Low < AssuranceLevel::Substantial);
    }

    #[test]
    fn prompt_values_parse() {
        let prompt = |v: &str| {
            AuthorizeRequest::validate(&with("prompt", v), lookup)
                .unwrap()
                .prompt()
        };
        assert_eq!(prompt("none"), Some(Prompt::None));
        assert_eq!(prompt("login"), Some(Prompt::Login));
        assert_eq!(prompt("login consent"), Some(Prompt::Login));
        assert_eq!(prompt("consent"), None);
        assert_eq!(
            redirect_error(&with("prompt", "none login")),
            AuthorizeErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_error(&with("prompt", "create")),
            AuthorizeErrorCode::InvalidRequest
        );
        let r = AuthorizeRequest::validate(&with("prompt", "none"), lookup).unwrap();
        let AuthorizationResponse::Redirect { location } =
            r.error(AuthorizeErrorCode::LoginRequired, "no session", ISS)
        else {
            panic!()
        };
        assert!(location.starts_with(&format!("{REDIRECT}?error=login_required&")));
        assert!(location.contains("&state=st&"));
    }

    #[test]
    fn max_age_must_be_a_number() {
        assert_eq!(
            AuthorizeRequest::validate(&with("max_age", "0"), lookup)
                .unwrap()
                .max_age(),
            Some(0)
        );
        for bad in ["-1", "1.5", "abc", "99999999999999999999999"] {
            assert_eq!(
                redirect_error(&with("max_age", bad)),
                AuthorizeErrorCode::InvalidRequest
            );
        }
    }

    #[test]
    fn response_mode_and_request_objects() {
        assert_eq!(
            redirect_error(&with("response_mode", "fragment")),
            AuthorizeErrorCode::InvalidRequest
        );
        assert_eq!(
            redirect_error(&with("request", "eyJ...")),
            AuthorizeErrorCode::RequestNotSupported
        );
        assert_eq!(
            redirect_error(&with("request_uri", "https://x/r")),
            AuthorizeErrorCode::RequestUriNotSupported
        );
        // An error in form_post mode is delivered by form_post.
        let mut p = with("response_mode", "form_post");
        p.retain(|(k, _)| k != "code_challenge");
        let err = AuthorizeRequest::validate(&p, lookup).unwrap_err();
        let Some(AuthorizationResponse::FormPost { fields, .. }) = err.response(ISS) else {
            panic!("form_post expected")
        };
        assert_eq!(
            fields[0],
            ("error".to_string(), "invalid_request".to_string())
        );
        assert!(fields.contains(&("iss".to_string(), ISS.to_string())));
        assert_eq!(
            AuthorizeError::NotRedirectable {
                message: "x".into()
            }
            .response(ISS),
            None
        );
    }

    #[test]
    fn validated_request_survives_the_session_round_trip() {
        let r = AuthorizeRequest::validate(&base(), lookup).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<AuthorizeRequest>(&json).unwrap(), r);
    }

    #[test]
    fn redirect_uri_registration_rules() {
        assert!(is_valid_redirect_uri("https://sp.example.dk/cb"));
        assert!(is_valid_redirect_uri("https://sp.example.dk/cb?tenant=1"));
        assert!(is_valid_redirect_uri("http://localhost:8080/cb"));
        assert!(is_valid_redirect_uri("http://127.0.0.1/cb"));
        assert!(!is_valid_redirect_uri("http://sp.example.dk/cb"));
        assert!(!is_valid_redirect_uri("http://localhost.evil.dk/cb"));
        assert!(!is_valid_redirect_uri("https://sp.example.dk/cb#frag"));
        assert!(!is_valid_redirect_uri("https://user@sp.example.dk/cb"));
        assert!(!is_valid_redirect_uri("javascript:alert(1)"));
        assert!(!is_valid_redirect_uri("https:///cb"));
        assert!(!is_valid_redirect_uri("/relative"));
    }
}
