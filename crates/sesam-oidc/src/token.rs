//! The `/token` request: grant and client authentication read from the form and the
//! `Authorization` header, the client checked against its stored secret, and the rules for
//! redeeming a code or a refresh token. Single use and rotation are the server's storage job.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::authorize::{ClientInfo, MAX_PARAM_LEN, MAX_REQUEST_LEN};
use crate::params::{Params, ParamsProblem};
use crate::pkce::verify_pkce_s256;
use crate::secret::verify_client_secret;

/// An authorization code is good for this many seconds after issue.
pub const CODE_LIFETIME_SECS: u64 = 60;

/// The `error` codes of the token endpoint (RFC 6749 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenErrorCode {
    /// Missing, duplicated, oversized or malformed parameter.
    InvalidRequest,
    /// Client authentication failed.
    InvalidClient,
    /// Code or refresh token invalid, expired, used, for another client, or PKCE failed.
    InvalidGrant,
    /// The client may not use this grant.
    UnauthorizedClient,
    /// Anything but `authorization_code` and `refresh_token`.
    UnsupportedGrantType,
    /// A refresh asked for more scope than was granted.
    InvalidScope,
}

impl TokenErrorCode {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenErrorCode::InvalidRequest => "invalid_request",
            TokenErrorCode::InvalidClient => "invalid_client",
            TokenErrorCode::InvalidGrant => "invalid_grant",
            TokenErrorCode::UnauthorizedClient => "unauthorized_client",
            TokenErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            TokenErrorCode::InvalidScope => "invalid_scope",
        }
    }
}

impl std::fmt::Display for TokenErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token endpoint error, with what the HTTP answer needs (send with `Cache-Control: no-store`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct TokenError {
    /// The OAuth error code.
    pub code: TokenErrorCode,
    /// The `error_description`.
    pub description: String,
    /// The client tried HTTP Basic authentication (then `invalid_client` is a 401).
    pub basic_auth: bool,
}

impl TokenError {
    /// An error for a client that did not use HTTP Basic.
    pub fn new(code: TokenErrorCode, description: impl Into<String>) -> Self {
        TokenError {
            code,
            description: description.into(),
            basic_auth: false,
        }
    }

    fn invalid_client(auth_basic: bool, description: &str) -> Self {
        TokenError {
            basic_auth: auth_basic,
            ..TokenError::new(TokenErrorCode::InvalidClient, description)
        }
    }

    /// The HTTP status: 401 for `invalid_client` after HTTP Basic (RFC 6749 §5.2), else 400.
    pub fn status(&self) -> u16 {
        if self.code == TokenErrorCode::InvalidClient && self.basic_auth {
            401
        } else {
            400
        }
    }

    /// The `WWW-Authenticate` header value to send with a 401.
    pub fn www_authenticate(&self) -> Option<&'static str> {
        (self.status() == 401).then_some("Basic realm=\"token\", charset=\"UTF-8\"")
    }

    /// The JSON body: `{"error": ..., "error_description": ...}`.
    pub fn to_json(&self) -> Value {
        json!({"error": self.code.as_str(), "error_description": self.description})
    }
}

/// How the client authenticated at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: the `Authorization: Basic` header.
    Basic {
        /// The client id.
        client_id: String,
        /// The secret as sent.
        secret: String,
    },
    /// `client_secret_post`: `client_id` and `client_secret` in the form.
    Post {
        /// The client id.
        client_id: String,
        /// The secret as sent.
        secret: String,
    },
    /// `none`: a public client sends only its `client_id` (PKCE protects the code).
    None {
        /// The client id.
        client_id: String,
    },
}

impl ClientAuth {
    /// Reads the client authentication of a form request other than a token request (the
    /// revocation endpoint): Basic header, or `client_id` with or without `client_secret`.
    pub fn parse(
        form: &[(String, String)],
        authorization: Option<&str>,
    ) -> Result<ClientAuth, TokenError> {
        let params = Params::parse(form, MAX_REQUEST_LEN).map_err(|_| {
            TokenError::new(TokenErrorCode::InvalidRequest, "the request is not valid")
        })?;
        client_auth(&params, authorization)
    }

    /// The client id the request claims.
    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::None { client_id } => client_id,
        }
    }

    fn is_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic { .. })
    }
}

/// What the client wants in exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=authorization_code`.
    AuthorizationCode {
        /// The code from the authorization response.
        code: String,
        /// Must equal the one in the authorization request.
        redirect_uri: String,
        /// The PKCE verifier.
        code_verifier: String,
    },
    /// `grant_type=refresh_token`.
    RefreshToken {
        /// The refresh token.
        refresh_token: String,
        /// A narrower scope, if asked.
        scope: Option<String>,
    },
}

/// A parsed token request; the client is not yet authenticated ([`authenticate_client`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The claimed client and its credentials.
    pub client: ClientAuth,
    /// The grant.
    pub grant: Grant,
}

impl TokenRequest {
    /// Reads the decoded form pairs and the raw `Authorization` header, if any.
    pub fn parse(
        form: &[(String, String)],
        authorization: Option<&str>,
    ) -> Result<TokenRequest, TokenError> {
        let basic = authorization.is_some();
        let invalid_request = |description: String| TokenError {
            basic_auth: basic,
            ..TokenError::new(TokenErrorCode::InvalidRequest, description)
        };
        let params = Params::parse(form, MAX_REQUEST_LEN).map_err(|problem| match problem {
            ParamsProblem::TooLarge => invalid_request("the request is too large".into()),
            ParamsProblem::Duplicated(name) => {
                invalid_request(format!("parameter {name} is given more than once"))
            }
        })?;
        if let Some(name) = params.oversized(MAX_PARAM_LEN) {
            return Err(invalid_request(format!("parameter {name} is too long")));
        }

        let client = client_auth(&params, authorization)?;

        let required = |name: &str| {
            params
                .get(name)
                .map(str::to_owned)
                .ok_or_else(|| invalid_request(format!("{name} is missing")))
        };
        let grant = match params.get("grant_type") {
            None => return Err(invalid_request("grant_type is missing".into())),
            Some("authorization_code") => Grant::AuthorizationCode {
                code: required("code")?,
                redirect_uri: required("redirect_uri")?,
                code_verifier: required("code_verifier")?,
            },
            Some("refresh_token") => Grant::RefreshToken {
                refresh_token: required("refresh_token")?,
                scope: params.get("scope").map(str::to_owned),
            },
            Some(_) => {
                return Err(TokenError {
                    basic_auth: basic,
                    ..TokenError::new(
                        TokenErrorCode::UnsupportedGrantType,
                        "grant_type must be authorization_code or refresh_token",
                    )
                })
            }
        };
        Ok(TokenRequest { client, grant })
    }
}

/// The client authentication of a request to the token or revocation endpoint.
fn client_auth(params: &Params<'_>, authorization: Option<&str>) -> Result<ClientAuth, TokenError> {
    let basic = authorization.is_some();
    let invalid_request = |description: String| TokenError {
        basic_auth: basic,
        ..TokenError::new(TokenErrorCode::InvalidRequest, description)
    };
    let client = match authorization {
        Some(header) => {
            let (client_id, secret) = parse_basic(header)
                .ok_or_else(|| TokenError::invalid_client(true, "malformed Basic authorization"))?;
            if params.get("client_secret").is_some() {
                return Err(invalid_request(
                    "only one client authentication method may be used".into(),
                ));
            }
            if params.get("client_id").is_some_and(|id| id != client_id) {
                return Err(invalid_request(
                    "client_id differs from the Basic credentials".into(),
                ));
            }
            ClientAuth::Basic { client_id, secret }
        }
        None => {
            let client_id = params
                .get("client_id")
                .ok_or_else(|| {
                    TokenError::invalid_client(false, "client authentication is missing")
                })?
                .to_owned();
            match params.get("client_secret") {
                Some(secret) => ClientAuth::Post {
                    client_id,
                    secret: secret.to_owned(),
                },
                None => ClientAuth::None { client_id },
            }
        }
    };
    Ok(client)
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || credentials.len() > 2 * MAX_PARAM_LEN {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(credentials.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let form_decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let id = form_decode(id)?;
    let secret = form_decode(secret)?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

/// Checks the client's credentials against the registered client (`None` when the server knows
/// no client by [`ClientAuth::client_id`]). Public clients must use `none`; confidential clients
/// must send their secret, by Basic or in the form.
pub fn authenticate_client(
    auth: &ClientAuth,
    client: Option<&ClientInfo>,
) -> Result<(), TokenError> {
    // One answer for an unknown client, a wrong secret and a missing one, and the same work
    // for each (a secret is hashed even when there is no client), so neither the text nor
    // the time tells an attacker which client ids exist.
    let fail = || Err(TokenError::invalid_client(auth.is_basic(), FAILED));
    let client = client.filter(|c| c.client_id == auth.client_id());
    match (auth, client) {
        (ClientAuth::None { .. }, Some(c)) if c.public => Ok(()),
        (ClientAuth::None { .. }, _) => fail(),
        (ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. }, client) => {
            let stored = client
                .filter(|c| !c.public)
                .and_then(|c| c.secret_hash.as_deref());
            let matches = verify_client_secret(secret, stored.unwrap_or(UNUSABLE_HASH));
            if matches && stored.is_some() {
                Ok(())
            } else {
                fail()
            }
        }
    }
}

/// The description of every client-authentication failure.
const FAILED: &str = "client authentication failed";
/// Compared against when there is no stored secret: no secret hashes to it (not hex).
const UNUSABLE_HASH: &str = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";

/// What the server stored when it issued an authorization code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCode {
    /// The client the code was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The S256 PKCE challenge of the authorization request.
    pub code_challenge: String,
    /// Seconds since the epoch.
    pub issued_at: u64,
}

impl IssuedCode {
    /// Whether an authenticated client may exchange this code now: same client, same redirect
    /// URI, PKCE verifier matches, within [`CODE_LIFETIME_SECS`]. The server must also make the
    /// code single use (delete it atomically; a second use revokes what the first issued).
    pub fn redeem(
        &self,
        client_id: &str,
        redirect_uri: &str,
        code_verifier: &str,
        now: u64,
    ) -> Result<(), TokenError> {
        let fail =
            |description: &str| Err(TokenError::new(TokenErrorCode::InvalidGrant, description));
        if now.saturating_sub(self.issued_at) > CODE_LIFETIME_SECS {
            return fail("the code has expired");
        }
        if self.client_id != client_id {
            return fail("the code was issued to another client");
        }
        if self.redirect_uri != redirect_uri {
            return fail("redirect_uri differs from the authorization request");
        }
        if !verify_pkce_s256(code_verifier, &self.code_challenge) {
            return fail("code_verifier does not match the code_challenge");
        }
        Ok(())
    }
}

/// What the server stored when it issued a refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRefreshToken {
    /// The client the token was issued to.
    pub client_id: String,
    /// The scope granted, space separated.
    pub scope: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

impl IssuedRefreshToken {
    /// Whether the client may refresh now, and the scope of the new tokens: the requested
    /// scope if it is within the granted one (RFC 6749 §6), else the granted scope. The server
    /// rotates the token and treats reuse of a rotated one as theft.
    pub fn redeem(
        &self,
        client_id: &str,
        scope: Option<&str>,
        now: u64,
    ) -> Result<String, TokenError> {
        if now >= self.expires_at {
            return Err(TokenError::new(
                TokenErrorCode::InvalidGrant,
                "the refresh token has expired",
            ));
        }
        if self.client_id != client_id {
            return Err(TokenError::new(
                TokenErrorCode::InvalidGrant,
                "the refresh token was issued to another client",
            ));
        }
        let Some(requested) = scope else {
            return Ok(self.scope.clone());
        };
        let granted: Vec<&str> = self.scope.split(' ').collect();
        if requested.split(' ').any(|s| !granted.contains(&s)) {
            return Err(TokenError::new(
                TokenErrorCode::InvalidScope,
                "scope exceeds what was granted",
            ));
        }
        Ok(requested.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::JwsAlg;
    use crate::secret::hash_client_secret;
    use crate::SubjectType;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn form(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn code_form(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut f = form(&[
            ("grant_type", "authorization_code"),
            ("code", "the-code"),
            ("redirect_uri", "https://sp.example.dk/cb"),
            ("code_verifier", VERIFIER),
        ]);
        f.extend(form(extra));
        f
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn confidential() -> ClientInfo {
        ClientInfo {
            client_id: "sp 1".into(),
            redirect_uris: vec!["https://sp.example.dk/cb".into()],
            public: false,
            secret_hash: Some(hash_client_secret("s3cr:et")),
            id_token_alg: JwsAlg::RS256,
            subject_type: SubjectType::Public,
        }
    }

    fn public() -> ClientInfo {
        ClientInfo {
            client_id: "app".into(),
            public: true,
            secret_hash: None,
            ..confidential()
        }
    }

    #[test]
    fn basic_auth_is_percent_decoded_per_rfc6749() {
        let header = basic("sp+1", "s3cr%3Aet");
        let req = TokenRequest::parse(&code_form(&[]), Some(&header)).unwrap();
        assert_eq!(
            req.client,
            ClientAuth::Basic {
                client_id: "sp 1".into(),
                secret: "s3cr:et".into()
            }
        );
        assert_eq!(
            req.grant,
            Grant::AuthorizationCode {
                code: "the-code".into(),
                redirect_uri: "https://sp.example.dk/cb".into(),
                code_verifier: VERIFIER.into()
            }
        );
        assert_eq!(
            authenticate_client(&req.client, Some(&confidential())),
            Ok(())
        );
        // Lower-case scheme is fine too.
        let header = format!("basic {}", STANDARD.encode("sp%201:s3cr%3Aet"));
        let req = TokenRequest::parse(&code_form(&[]), Some(&header)).unwrap();
        assert_eq!(
            authenticate_client(&req.client, Some(&confidential())),
            Ok(())
        );
    }

    #[test]
    fn wrong_basic_secret_is_401_with_www_authenticate() {
        let req = TokenRequest::parse(&code_form(&[]), Some(&basic("sp+1", "wrong"))).unwrap();
        let err = authenticate_client(&req.client, Some(&confidential())).unwrap_err();
        assert_eq!(err.code, TokenErrorCode::InvalidClient);
        assert_eq!(err.status(), 401);
        assert!(err.www_authenticate().unwrap().starts_with("Basic "));
        assert_eq!(err.to_json()["error"], "invalid_client");
        let err = authenticate_client(&req.client, None).unwrap_err();
        assert_eq!(err.status(), 401);
    }

    #[test]
    fn an_unknown_client_and_a_wrong_secret_get_the_same_answer() {
        let wrong = TokenRequest::parse(&code_form(&[]), Some(&basic("sp+1", "wrong"))).unwrap();
        let unknown = TokenRequest::parse(&code_form(&[]), Some(&basic("nobody", "x"))).unwrap();
        let a = authenticate_client(&wrong.client, Some(&confidential())).unwrap_err();
        let b = authenticate_client(&unknown.client, Some(&confidential())).unwrap_err();
        let c = authenticate_client(&unknown.client, None).unwrap_err();
        assert_eq!(a.to_json(), b.to_json());
        assert_eq!(b.to_json(), c.to_json());
        assert_eq!((a.status(), b.status()), (401, 401));
    }

    #[test]
    fn malformed_basic_headers_are_invalid_client() {
        for header in [
            "Bearer abc".to_string(),
            "Basic".to_string(),
            "Basic !!!".to_string(),
            format!("Basic {}", STANDARD.encode("no-colon")),
            format!("Basic {}", STANDARD.encode(":secret")),
            format!("Basic {}", STANDARD.encode("id:")),
            format!("Basic {}", STANDARD.encode("id:%FF")),
            format!("Basic {}", "A".repeat(5000)),
        ] {
            let err = TokenRequest::parse(&code_form(&[]), Some(&header)).unwrap_err();
            assert_eq!(err.code, TokenErrorCode::InvalidClient, "{header}");
            assert_eq!(err.status(), 401);
        }
    }

    #[test]
    fn post_auth_and_none_auth() {
        let req = TokenRequest::parse(
            &code_form(&[("client_id", "sp 1"), ("client_secret", "s3cr:et")]),
            None,
        )
        .unwrap();
        assert!(matches!(req.client, ClientAuth::Post { .. }));
        assert_eq!(
            authenticate_client(&req.client, Some(&confidential())),
            Ok(())
        );
        let req = TokenRequest::parse(
            &code_form(&[("client_id", "sp 1"), ("client_secret", "bad")]),
            None,
        )
        .unwrap();
        let err = authenticate_client(&req.client, Some(&confidential())).unwrap_err();
        assert_eq!(
            (err.code, err.status(), err.www_authenticate()),
            (TokenErrorCode::InvalidClient, 400, None)
        );

        let req = TokenRequest::parse(&code_form(&[("client_id", "app")]), None).unwrap();
        assert_eq!(
            req.client,
            ClientAuth::None {
                client_id: "app".into()
            }
        );
        assert_eq!(authenticate_client(&req.client, Some(&public())), Ok(()));
        // A confidential client may not skip its secret; a public client has none to send.
        let none_for_confidential = ClientAuth::None {
            client_id: "sp 1".into(),
        };
        assert!(authenticate_client(&none_for_confidential, Some(&confidential())).is_err());
        let post_for_public = ClientAuth::Post {
            client_id: "app".into(),
            secret: "x".into(),
        };
        assert!(authenticate_client(&post_for_public, Some(&public())).is_err());
        // A lookup that returned another client is not trusted.
        assert!(authenticate_client(&req.client, Some(&confidential())).is_err());
        // No client identification at all.
        let err = TokenRequest::parse(&code_form(&[]), None).unwrap_err();
        assert_eq!(err.code, TokenErrorCode::InvalidClient);
    }

    #[test]
    fn two_auth_methods_or_mismatched_ids_are_refused() {
        let header = basic("sp+1", "s3cr%3Aet");
        let err = TokenRequest::parse(&code_form(&[("client_secret", "s3cr:et")]), Some(&header))
            .unwrap_err();
        assert_eq!(err.code, TokenErrorCode::InvalidRequest);
        let err =
            TokenRequest::parse(&code_form(&[("client_id", "other")]), Some(&header)).unwrap_err();
        assert_eq!(err.code, TokenErrorCode::InvalidRequest);
        assert!(TokenRequest::parse(&code_form(&[("client_id", "sp 1")]), Some(&header)).is_ok());
    }

    #[test]
    fn grant_parameters_are_checked() {
        let parse = |f: Vec<(String, String)>| TokenRequest::parse(&f, None).map_err(|e| e.code);
        let with_id = |extra: &[(&str, &str)]| {
            let mut f = form(&[("client_id", "app")]);
            f.extend(form(extra));
            f
        };
        assert_eq!(
            parse(with_id(&[("grant_type", "password")])),
            Err(TokenErrorCode::UnsupportedGrantType)
        );
        assert_eq!(
            parse(with_id(&[("code", "c")])),
            Err(TokenErrorCode::InvalidRequest)
        );
        for missing in ["code", "redirect_uri", "code_verifier"] {
            let mut f = code_form(&[("client_id", "app")]);
            f.retain(|(k, _)| k != missing);
            assert_eq!(parse(f), Err(TokenErrorCode::InvalidRequest), "{missing}");
        }
        assert_eq!(
            parse(code_form(&[("client_id", "app"), ("code", "again")])),
            Err(TokenErrorCode::InvalidRequest)
        );
        assert_eq!(
            parse(code_form(&[
                ("client_id", "app"),
                ("x", &"a".repeat(MAX_PARAM_LEN + 1))
            ])),
            Err(TokenErrorCode::InvalidRequest)
        );
        let big: Vec<(&str, String)> = (0..5).map(|_| ("y", "a".repeat(2000))).collect();
        let mut f = code_form(&[("client_id", "app")]);
        for (i, (_, v)) in big.iter().enumerate() {
            f.push((format!("y{i}"), v.clone()));
        }
        assert_eq!(parse(f), Err(TokenErrorCode::InvalidRequest));
        assert_eq!(
            parse(with_id(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", "rt"),
                ("scope", "openid")
            ])),
            Ok(TokenRequest {
                client: ClientAuth::None {
                    client_id: "app".into()
                },
                grant: Grant::RefreshToken {
                    refresh_token: "rt".into(),
                    scope: Some("openid".into())
                }
            })
        );
        assert_eq!(
            parse(with_id(&[("grant_type", "refresh_token")])),
            Err(TokenErrorCode::InvalidRequest)
        );
    }

    #[test]
    fn code_redemption_rules() {
        let issued = IssuedCode {
            client_id: "app".into(),
            redirect_uri: "https://sp.example.dk/cb".into(),
            code_challenge: CHALLENGE.into(),
            issued_at: 1000,
        };
        let cb = "https://sp.example.dk/cb";
        assert_eq!(issued.redeem("app", cb, VERIFIER, 1000), Ok(()));
        assert_eq!(issued.redeem("app", cb, VERIFIER, 1060), Ok(()));
        let code = |r: Result<(), TokenError>| r.unwrap_err().code;
        assert_eq!(
            code(issued.redeem("app", cb, VERIFIER, 1061)),
            TokenErrorCode::InvalidGrant
        );
        assert_eq!(
            code(issued.redeem("other", cb, VERIFIER, 1001)),
            TokenErrorCode::InvalidGrant
        );
        assert_eq!(
            code(issued.redeem("app", "https://sp.example.dk/cb2", VERIFIER, 1001)),
            TokenErrorCode::InvalidGrant
        );
        assert_eq!(
            code(issued.redeem("app", cb, CHALLENGE, 1001)),
            TokenErrorCode::InvalidGrant
        );
        assert_eq!(
            code(issued.redeem("app", cb, "short", 1001)),
            TokenErrorCode::InvalidGrant
        );
    }

    #[test]
    fn refresh_rules() {
        let issued = IssuedRefreshToken {
            client_id: "app".into(),
            scope: "openid profile".into(),
            expires_at: 2000,
        };
        assert_eq!(issued.redeem("app", None, 1999).unwrap(), "openid profile");
        assert_eq!(
            issued.redeem("app", Some("openid"), 1999).unwrap(),
            "openid"
        );
        assert_eq!(
            issued
                .redeem("app", Some("openid email"), 1999)
                .unwrap_err()
                .code,
            TokenErrorCode::InvalidScope
        );
        assert_eq!(
            issued.redeem("app", None, 2000).unwrap_err().code,
            TokenErrorCode::InvalidGrant
        );
        assert_eq!(
            issued.redeem("sp", None, 1000).unwrap_err().code,
            TokenErrorCode::InvalidGrant
        );
    }
}
