//! The OpenID Connect provider's keys and names, loaded once at start-up. Keys live in the
//! database so every node signs with the same ones; the first node generates them.

use anyhow::Context;
use sesam_core::UnixTime;
use sesam_oidc::{EcSigningKey, JwsAlg, JwsSigner, SigningKey};
use sesam_store::Store;

use crate::config::Config;

pub struct OidcProvider {
    /// `public_url`: discovery lives at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub rs256: SigningKey,
    /// Published in the JWKS ahead of a rollover; signs nothing yet.
    pub next_rs256: Option<SigningKey>,
    pub es256: EcSigningKey,
    /// Mixed into pairwise subject identifiers so they cannot be computed from outside.
    pub pairwise_salt: Vec<u8>,
}

impl OidcProvider {
    pub async fn load(
        store: &Store,
        config: &Config,
        now: UnixTime,
    ) -> anyhow::Result<OidcProvider> {
        let rs256 = match &config.oidc_signing_key_file {
            Some(path) => read_key(path)?,
            None => {
                stored_or_new(store, "oidc-rs256", now, || {
                    Ok(SigningKey::generate()?.to_pem()?)
                })
                .await?
            }
        };
        let next_rs256 = match &config.oidc_next_signing_key_file {
            Some(path) => Some(
                SigningKey::from_pem(read_key(path)?.as_bytes())
                    .with_context(|| format!("{}", path.display()))?,
            ),
            None => None,
        };
        let es256 = stored_or_new(store, "oidc-es256", now, || {
            Ok(EcSigningKey::generate()?.to_pem()?)
        })
        .await?;
        let salt = stored_or_new(store, "oidc-pairwise-salt", now, || {
            Ok(sesam_oidc::generate_secret()?.into_bytes())
        })
        .await?;
        Ok(OidcProvider {
            issuer: config.public_url.clone(),
            rs256: SigningKey::from_pem(rs256.as_bytes()).context("stored oidc-rs256 key")?,
            next_rs256,
            es256: EcSigningKey::from_pem(es256.as_bytes()).context("stored oidc-es256 key")?,
            pairwise_salt: salt.into_bytes(),
        })
    }

    /// The keys relying parties may see signatures from (and the next one).
    pub fn published(&self) -> Vec<&dyn JwsSigner> {
        let mut keys: Vec<&dyn JwsSigner> = vec![&self.rs256, &self.es256];
        if let Some(next) = &self.next_rs256 {
            keys.push(next);
        }
        keys
    }

    pub fn signer(&self, alg: JwsAlg) -> &dyn JwsSigner {
        match alg {
            JwsAlg::ES256 => &self.es256,
            JwsAlg::RS256 => &self.rs256,
        }
    }
}

fn read_key(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The key stored for `purpose`, or a new one from `generate` stored now.
pub async fn stored_or_new(
    store: &Store,
    purpose: &str,
    now: UnixTime,
    generate: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<String> {
    if let Some(pem) = store.signing_key(purpose).await? {
        return Ok(pem);
    }
    let pem = String::from_utf8(generate()?).context("generated key is not text")?;
    Ok(store.insert_signing_key(purpose, &pem, now).await?)
}

/// What an administrator registers (CLI or admin portal).
#[derive(Clone, Debug, Default)]
pub struct ClientRegistration {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// A public client (a mobile or browser app) has no secret; PKCE is its proof.
    pub public: bool,
    pub es256: bool,
    pub pairwise: bool,
}

impl ClientRegistration {
    /// Every problem, in words an administrator can act on.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            problems.push("The name must have 1 to 100 characters.".to_owned());
        }
        if self.redirect_uris.is_empty() {
            problems.push("At least one redirect URI is needed.".to_owned());
        }
        for uri in self
            .redirect_uris
            .iter()
            .chain(&self.post_logout_redirect_uris)
        {
            if !sesam_oidc::is_valid_redirect_uri(uri) {
                problems.push(format!(
                    "{uri:?} is not a usable redirect URI (absolute https, or http on localhost; no fragment)."
                ));
            }
        }
        problems
    }
}

/// Registers a client. Returns it with its secret (shown once; only a hash is kept), or
/// the problems with the registration.
pub async fn register_client(
    store: &Store,
    registration: &ClientRegistration,
    now: UnixTime,
) -> anyhow::Result<Result<(sesam_store::OidcClient, Option<String>), Vec<String>>> {
    let problems = registration.problems();
    if !problems.is_empty() {
        return Ok(Err(problems));
    }
    let secret = if registration.public {
        None
    } else {
        Some(sesam_oidc::generate_secret()?)
    };
    let client = store
        .create_oidc_client(
            &sesam_store::NewOidcClient {
                name: registration.name.trim().to_owned(),
                secret_hash: secret.as_deref().map(sesam_oidc::hash_client_secret),
                redirect_uris: registration.redirect_uris.clone(),
                post_logout_redirect_uris: registration.post_logout_redirect_uris.clone(),
                id_token_alg: if registration.es256 { "ES256" } else { "RS256" }.to_owned(),
                subject_type: if registration.pairwise {
                    "pairwise"
                } else {
                    "public"
                }
                .to_owned(),
            },
            now,
        )
        .await?;
    Ok(Ok((client, secret)))
}

/// A new secret for a confidential client (the old one stops working at once).
pub async fn rotate_secret(
    store: &Store,
    client_id: &str,
    now: UnixTime,
) -> anyhow::Result<Option<String>> {
    let secret = sesam_oidc::generate_secret()?;
    let rotated = store
        .set_oidc_client_secret(client_id, &sesam_oidc::hash_client_secret(&secret), now)
        .await?;
    Ok(rotated.then_some(secret))
}
