//! Sesam as a confidential OpenID Connect client of an upstream eID (MitID through a broker,
//! or any certified OP): discovery, the authorization request, the code exchange and every
//! check of the ID token. The use cases in `service::upstream` decide what a result means.

use std::time::Duration;

use hmac::{Hmac, Mac};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use sesam_core::flow::UpstreamAttempt;
use sesam_core::{AssuranceLevel, UnixTime};

use crate::config::UpstreamConfig;

/// Where the upstream sends the browser back.
pub const CALLBACK_PATH: &str = "/login/upstream/callback";

/// The upstream as configured, with the HTTP client that talks to it.
pub struct Upstream {
    pub config: UpstreamConfig,
    redirect_uri: String,
    http: UpstreamHttp,
}

/// The most of a discovery document, JWKS or token response that is read.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// The HTTP the OIDC client uses: no redirects, a connect and a total timeout, public
/// addresses only (the discovery document names the other URLs, so they are checked as
/// fetched), and answers capped at [`MAX_ANSWER_BYTES`].
struct UpstreamHttp {
    client: reqwest::Client,
    allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
enum HttpError {
    #[error("{0}")]
    NotPublic(#[from] crate::outbound::NotPublic),
    #[error(transparent)]
    Reqwest(#[from] reqwest::Error),
    #[error("the answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error(transparent)]
    Http(#[from] openidconnect::http::Error),
}

impl<'c> openidconnect::AsyncHttpClient<'c> for UpstreamHttp {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>>
                + Send
                + 'c,
        >,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request: reqwest::Request = request.try_into()?;
            if !self.allow_private {
                crate::outbound::check_literal(request.url())?;
            }
            let mut response = self.client.execute(request).await?;
            let mut builder = openidconnect::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(HttpError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(builder.body(body)?)
        })
    }
}

/// Why an upstream answer is not a login. Each is audited with its detail; the browser is
/// told only which kind of problem it was.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Discovery, the JWKS or the token endpoint could not be reached: the upstream is
    /// down or broken, and nothing about the answer is known.
    #[error("the upstream could not be reached: {0}")]
    Unavailable(String),
    #[error("the code exchange failed: {0}")]
    Exchange(String),
    #[error("the token response carries no ID token")]
    NoIdToken,
    /// Signature, key (`kid`), issuer, audience, expiry or nonce.
    #[error("the ID token does not verify: {0}")]
    IdToken(String),
    #[error("the ID token has no usable {0:?} claim")]
    MissingClaim(String),
}

/// Who the upstream says the user is, checked.
#[derive(Debug)]
pub struct UpstreamIdentity {
    /// The linking claim's keyed hash: what `upstream_links` stores.
    pub subject_hash: String,
    /// The level the login counts as: the configured one, lowered to the upstream's `acr`.
    pub level: AssuranceLevel,
    /// The `acr` the upstream gave, for the audit log.
    pub acr: Option<String>,
}

/// ID tokens signed with a key pair only: an HMAC over the client secret would let anyone
/// who holds the secret mint logins.
const ALGORITHMS: [CoreJwsSigningAlgorithm; 6] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
];

impl Upstream {
    /// `allow_private`: the operator's `allow_private_fetch`. An issuer on this machine
    /// (a local test, the only plain-http issuer the configuration accepts) allows it too.
    pub fn new(
        config: UpstreamConfig,
        public_url: &str,
        allow_private: bool,
    ) -> anyhow::Result<Upstream> {
        let allow_private = allow_private || config.issuer_is_loopback();
        let builder = reqwest::Client::builder()
            // A redirect could point the client anywhere; the OP's URLs are used as given.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10));
        let client = if allow_private {
            builder.build()?
        } else {
            crate::outbound::public_only(builder).build()?
        };
        Ok(Upstream {
            redirect_uri: format!("{public_url}{CALLBACK_PATH}"),
            config,
            http: UpstreamHttp {
                client,
                allow_private,
            },
        })
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, UpstreamError> {
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        // Discovery checks that the document names this issuer, and reads the JWKS; both
        // are read for every login so that a key rotation upstream needs nothing here.
        CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| UpstreamError::Unavailable(error_chain(&e)))
    }

    fn client_id(&self) -> ClientId {
        ClientId::new(self.config.client_id.clone())
    }

    fn redirect_url(&self) -> Result<RedirectUrl, UpstreamError> {
        RedirectUrl::new(self.redirect_uri.clone())
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))
    }

    /// The URL to send the browser to, and the attempt the answer must match. `level` goes
    /// to the upstream as `acr_values` (its NSIS URI).
    ///
    /// `fresh`: the service forced a new login (SAML `ForceAuthn`, OIDC `prompt=login` or
    /// `max_age`), so the upstream is asked for one too (`prompt=login`) rather than answering
    /// from its own session.
    pub async fn authorization(
        &self,
        level: AssuranceLevel,
        now: UnixTime,
        fresh: bool,
    ) -> Result<(String, UpstreamAttempt), UpstreamError> {
        let client =
            CoreClient::from_provider_metadata(self.metadata().await?, self.client_id(), None)
                .set_redirect_uri(self.redirect_url()?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_auth_context_value(AuthenticationContextClass::new(self.acr_for(level)))
            .set_pkce_challenge(challenge);
        if fresh {
            request = request.add_prompt(openidconnect::core::CoreAuthPrompt::Login);
        }
        for scope in &self.config.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        Ok((
            url.to_string(),
            UpstreamAttempt {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                started_at: now.0,
            },
        ))
    }

    /// Exchanges `code` (with the attempt's PKCE verifier) and checks the ID token: signature
    /// by a key of the upstream's JWKS, issuer, audience, expiry, and the attempt's nonce.
    pub async fn verify(
        &self,
        attempt: &UpstreamAttempt,
        code: &str,
    ) -> Result<UpstreamIdentity, UpstreamError> {
        let client = CoreClient::from_provider_metadata(
            self.metadata().await?,
            self.client_id(),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_owned(),
            )),
        )
        .set_redirect_uri(self.redirect_url()?);
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| UpstreamError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                // The token endpoint could not be reached (refused, timed out, cut off): the
                // upstream is down, not the answer wrong, and the user is told to try later.
                openidconnect::RequestTokenError::Request(_) => {
                    UpstreamError::Unavailable(error_chain(&e))
                }
                _ => UpstreamError::Exchange(error_chain(&e)),
            })?;
        let id_token = tokens.id_token().ok_or(UpstreamError::NoIdToken)?;
        let verifier = client.id_token_verifier().set_allowed_algs(ALGORITHMS);
        let claims = id_token
            .claims(&verifier, &Nonce::new(attempt.nonce.clone()))
            .map_err(|e| UpstreamError::IdToken(e.to_string()))?;
        let acr = claims.auth_context_ref().map(|a| a.as_str().to_owned());
        let value = if self.config.link_claim == "sub" {
            claims.subject().as_str().to_owned()
        } else {
            // The token verified; its payload is read again for the configured claim, which
            // the standard claim set does not keep.
            extra_claim(&id_token.to_string(), &self.config.link_claim)
                .ok_or_else(|| UpstreamError::MissingClaim(self.config.link_claim.clone()))?
        };
        if value.is_empty() {
            return Err(UpstreamError::MissingClaim(self.config.link_claim.clone()));
        }
        Ok(UpstreamIdentity {
            subject_hash: link_hash(&self.config, &value),
            level: self.level_for(acr.as_deref()),
            acr,
        })
    }

    /// The configured level, lowered to what the upstream's `acr` says: its own value in
    /// `upstream_acr_map`, else an NSIS URI; any other `acr`, or none, gives Low.
    pub fn level_for(&self, acr: Option<&str>) -> AssuranceLevel {
        let said = acr
            .and_then(|acr| {
                self.config
                    .acr_map
                    .iter()
                    .find(|(known, _)| known == acr)
                    .map(|(_, level)| *level)
                    .or_else(|| AssuranceLevel::from_nsis_uri(acr))
            })
            .unwrap_or(AssuranceLevel::Low);
        said.min(self.config.level)
    }

    /// What `acr_values` asks the upstream for: its own value for `level` where the map
    /// names one, else the NSIS URI.
    fn acr_for(&self, level: AssuranceLevel) -> String {
        self.config
            .acr_map
            .iter()
            .find(|(_, l)| *l == level)
            .map(|(acr, _)| acr.clone())
            .unwrap_or_else(|| level.nsis_uri().to_owned())
    }
}

/// HMAC-SHA256 of the linking claim under the configured key, bound to the issuer and the
/// claim's name, hex: the only form in which an upstream identity is stored.
pub fn link_hash(config: &UpstreamConfig, value: &str) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(config.link_key.expose().as_bytes())
    else {
        // HMAC takes a key of any length; this branch is never taken.
        return String::new();
    };
    for part in [config.issuer.as_str(), config.link_claim.as_str(), value] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A string (or number) claim from a compact JWT's payload.
fn extra_claim(jwt: &str, name: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    match claims.get(name)? {
        serde_json::Value::String(s) => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An error with its causes, for the audit log.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(claim: &str, key: &str) -> UpstreamConfig {
        UpstreamConfig {
            issuer: "https://broker.example.dk".into(),
            client_id: "sesam".into(),
            client_secret: Secret::new("s"),
            scopes: vec![],
            link_claim: claim.into(),
            link_key: Secret::new(key),
            label: "MitID".into(),
            level: AssuranceLevel::Substantial,
            link_with_password: false,
            acr_map: vec![],
        }
    }

    #[test]
    fn the_linking_claim_is_stored_keyed_and_bound_to_issuer_and_claim() {
        let a = link_hash(&config("cpr", "k1"), "0101901234");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("0101901234"));
        assert_eq!(a, link_hash(&config("cpr", "k1"), "0101901234"));
        assert_ne!(a, link_hash(&config("cpr", "k2"), "0101901234"));
        assert_ne!(a, link_hash(&config("sub", "k1"), "0101901234"));
        assert_ne!(a, link_hash(&config("cpr", "k1"), "0101901235"));
    }

    #[test]
    fn the_level_is_the_lower_of_the_configured_one_and_the_acr() {
        let up = Upstream::new(config("sub", ""), "http://localhost", false).unwrap();
        let low = AssuranceLevel::Low.nsis_uri();
        let high = AssuranceLevel::High.nsis_uri();
        assert_eq!(up.level_for(None), AssuranceLevel::Low);
        assert_eq!(up.level_for(Some("urn:other")), AssuranceLevel::Low);
        assert_eq!(up.level_for(Some(low)), AssuranceLevel::Low);
        assert_eq!(up.level_for(Some(high)), AssuranceLevel::Substantial);
        assert_eq!(
            up.acr_for(AssuranceLevel::Substantial),
            AssuranceLevel::Substantial.nsis_uri()
        );
    }

    #[test]
    fn a_brokers_own_acr_values_count_as_mapped_and_are_asked_for() {
        let mut c = config("sub", "");
        c.acr_map = vec![
            ("urn:broker:loa:3".into(), AssuranceLevel::High),
            ("urn:broker:loa:2".into(), AssuranceLevel::Substantial),
        ];
        let up = Upstream::new(c, "http://localhost", false).unwrap();
        // Mapped values count (never above the configured level); others stay Low.
        assert_eq!(
            up.level_for(Some("urn:broker:loa:2")),
            AssuranceLevel::Substantial
        );
        assert_eq!(
            up.level_for(Some("urn:broker:loa:3")),
            AssuranceLevel::Substantial
        );
        assert_eq!(up.level_for(Some("urn:broker:loa:1")), AssuranceLevel::Low);
        assert_eq!(up.level_for(Some("URN:BROKER:LOA:2")), AssuranceLevel::Low);
        let nsis = AssuranceLevel::Substantial.nsis_uri();
        assert_eq!(up.level_for(Some(nsis)), AssuranceLevel::Substantial);
        assert_eq!(up.acr_for(AssuranceLevel::Substantial), "urn:broker:loa:2");
        assert_eq!(
            up.acr_for(AssuranceLevel::Low),
            AssuranceLevel::Low.nsis_uri()
        );
    }

    #[test]
    fn extra_claims_come_from_the_payload() {
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"x","cpr":" 0101901234 ","n":7,"o":{}}"#);
        let jwt = format!("h.{payload}.s");
        assert_eq!(extra_claim(&jwt, "cpr").as_deref(), Some("0101901234"));
        assert_eq!(extra_claim(&jwt, "n").as_deref(), Some("7"));
        assert_eq!(extra_claim(&jwt, "o"), None);
        assert_eq!(extra_claim(&jwt, "missing"), None);
        assert_eq!(extra_claim("garbage", "cpr"), None);
    }
}
