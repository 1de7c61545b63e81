//! The SAML identity provider's key and names, loaded once at start-up, and the rules for
//! registering service providers (shared by the CLI and the handlers).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine;
use rand::RngCore;
use sesam_core::{AssuranceLevel, UnixTime, User};
use sesam_saml::{
    DataEncryption, Encryption, IdpKey, KeyTransport, NameIdFormat, ResponseSigning, SpMetadata,
    BINDING_HTTP_POST, MAX_SP_METADATA_BYTES,
};
use sesam_store::{NewSamlSp, SamlSp, Store};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::oidc::stored_or_new;

pub struct SamlIdp {
    /// The IdP's entity ID: `{public_url}/saml/metadata`.
    pub entity_id: String,
    pub key: IdpKey,
    /// `{public_url}/saml/sso`, the Destination requests must name.
    pub sso_url: String,
    /// `{public_url}/saml/slo`.
    pub slo_url: String,
    /// Published in the metadata ahead of a key rollover; signs nothing yet.
    pub next_certificate: Option<sesam_saml::Certificate>,
    /// Mixed into persistent NameIDs so they cannot be computed from outside.
    nameid_salt: Vec<u8>,
    /// Each SP's metadata as parsed, with the text it was parsed from: an SSO round parses
    /// it once per change of the registration, not twice per request.
    parsed: std::sync::Mutex<HashMap<String, (String, Arc<sesam_saml::SpMetadata>)>>,
}

/// At most this many SPs' parsed metadata are kept (a registration is made by an admin).
const MAX_PARSED_SPS: usize = 4096;

impl SamlIdp {
    pub async fn load(store: &Store, config: &Config, now: UnixTime) -> anyhow::Result<SamlIdp> {
        let entity_id = format!("{}/saml/metadata", config.public_url);
        // Key and certificate in one PEM text: the private key block, then the certificate.
        let pem = match &config.saml_key_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
            None => {
                stored_or_new(store, "saml", now, || {
                    let key = IdpKey::generate(&entity_id, 3650)?;
                    let mut pem = key.private_key_pem()?;
                    pem.extend_from_slice(&key.certificate_pem()?);
                    Ok(pem)
                })
                .await?
            }
        };
        let key = IdpKey::from_pem(pem.as_bytes(), pem.as_bytes())
            .context("the SAML key (a PEM private key followed by its certificate)")?;
        let next_certificate = match &config.saml_next_certificate_file {
            Some(path) => Some(
                sesam_saml::Certificate::from_pem(
                    &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
                )
                .with_context(|| format!("{} is not a PEM certificate", path.display()))?,
            ),
            None => None,
        };
        let salt = stored_or_new(store, "saml-nameid-salt", now, || {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            Ok(base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into_bytes())
        })
        .await?;
        Ok(SamlIdp {
            sso_url: format!("{}/saml/sso", config.public_url),
            slo_url: format!("{}/saml/slo", config.public_url),
            entity_id,
            key,
            next_certificate,
            nameid_salt: salt.into_bytes(),
            parsed: Default::default(),
        })
    }

    /// The registered SP's metadata, parsed. Re-parsed when the stored text changed (an
    /// admin's edit, a refresh from its URL), which the text compare finds without a parse.
    pub fn sp_metadata(
        &self,
        sp: &SamlSp,
    ) -> Result<Arc<sesam_saml::SpMetadata>, sesam_saml::SamlError> {
        let lock = || {
            self.parsed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((xml, parsed)) = lock().get(&sp.entity_id) {
            if *xml == sp.metadata_xml {
                return Ok(Arc::clone(parsed));
            }
        }
        let parsed = Arc::new(sesam_saml::parse_sp_metadata(sp.metadata_xml.as_bytes())?);
        let mut cache = lock();
        if cache.len() >= MAX_PARSED_SPS {
            cache.clear();
        }
        cache.insert(
            sp.entity_id.clone(),
            (sp.metadata_xml.clone(), Arc::clone(&parsed)),
        );
        Ok(parsed)
    }

    /// The persistent pseudonym of `user_id` at `sp_entity_id`: stable, different per SP,
    /// and not linkable across SPs without the salt.
    pub fn name_id(&self, user_id: &str, sp_entity_id: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"sesam-saml-nameid\0");
        h.update(&self.nameid_salt);
        h.update(b"\0");
        h.update(user_id.as_bytes());
        h.update(b"\0");
        h.update(sp_entity_id.as_bytes());
        let digest = h.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// OIOSAML 3 attribute names of what an SP may be given.
pub const ATTR_UUID: &str = "https://data.gov.dk/model/core/eid/professional/uuid/persistent";
pub const ATTR_NAME: &str = "https://data.gov.dk/model/core/eid/fullName";
pub const ATTR_EMAIL: &str = "https://data.gov.dk/model/core/eid/email";
pub const ATTR_ORG_NAME: &str = "https://data.gov.dk/model/core/eid/professional/orgName";

/// The short names `released_attributes` may hold.
pub const ATTR_CVR: &str = "https://data.gov.dk/model/core/eid/professional/cvr";
pub const RELEASABLE: [&str; 5] = ["uuid", "name", "email", "orgName", "cvr"];

/// The attributes `sp` is given for `user` (specVersion and loa are added by the builder).
pub fn released_attributes(
    sp: &SamlSp,
    user: &User,
    settings: &sesam_core::Settings,
) -> Vec<sesam_saml::Attribute> {
    let mut out = Vec::new();
    for short in &sp.released_attributes {
        let (name, value) = match short.as_str() {
            "uuid" => (ATTR_UUID, Some(format!("urn:uuid:{}", user.id.0))),
            "name" => (ATTR_NAME, Some(user.display_name.clone())),
            "email" => (ATTR_EMAIL, user.email.clone()),
            "orgName" => (
                ATTR_ORG_NAME,
                Some(settings.organisation_name.clone()).filter(|n| !n.is_empty()),
            ),
            "cvr" => (
                ATTR_CVR,
                Some(settings.organisation_cvr.clone()).filter(|n| !n.is_empty()),
            ),
            _ => continue,
        };
        if let Some(value) = value {
            out.push(sesam_saml::Attribute {
                name: name.to_owned(),
                values: vec![value],
            });
        }
    }
    out
}

/// Per-SP choices made when it is registered.
#[derive(Clone, Debug)]
pub struct SpOptions {
    pub name: Option<String>,
    pub enabled: bool,
    pub min_level: AssuranceLevel,
    pub encrypt_assertions: bool,
    pub require_signed_requests: bool,
    pub allow_sha1: bool,
    pub released_attributes: Vec<String>,
    /// Given when the request asks for no format (or for unspecified).
    pub nameid_format: NameIdFormat,
    /// `None`: chosen from the SP's metadata.
    pub key_transport: Option<KeyTransport>,
    /// `None`: chosen from the SP's metadata.
    pub data_encryption: Option<DataEncryption>,
    pub response_signing: ResponseSigning,
}

impl Default for SpOptions {
    fn default() -> Self {
        SpOptions {
            name: None,
            enabled: true,
            min_level: AssuranceLevel::Low,
            encrypt_assertions: false,
            require_signed_requests: false,
            allow_sha1: false,
            released_attributes: vec!["uuid".into(), "name".into(), "email".into()],
            nameid_format: NameIdFormat::Persistent,
            key_transport: None,
            data_encryption: None,
            response_signing: ResponseSigning::Assertion,
        }
    }
}

impl SpOptions {
    /// The options a registered SP has, to register its refreshed metadata with.
    pub fn of(sp: &SamlSp) -> SpOptions {
        SpOptions {
            name: Some(sp.name.clone()),
            enabled: sp.enabled,
            min_level: AssuranceLevel::parse(&sp.min_level).unwrap_or(AssuranceLevel::Low),
            encrypt_assertions: sp.encrypt_assertions,
            require_signed_requests: sp.require_signed_requests,
            allow_sha1: sp.allow_sha1,
            released_attributes: sp.released_attributes.clone(),
            nameid_format: default_name_id_format(sp),
            key_transport: sp.key_transport.as_deref().and_then(KeyTransport::parse),
            data_encryption: sp
                .data_encryption
                .as_deref()
                .and_then(DataEncryption::parse),
            response_signing: response_signing(sp),
        }
    }
}

/// The format `sp` gets when its request names none.
pub fn default_name_id_format(sp: &SamlSp) -> NameIdFormat {
    NameIdFormat::parse(&sp.nameid_format)
        .filter(|f| *f != NameIdFormat::Unspecified)
        .unwrap_or(NameIdFormat::Persistent)
}

/// Which parts of `sp`'s Responses are signed.
pub fn response_signing(sp: &SamlSp) -> ResponseSigning {
    ResponseSigning::parse(&sp.response_signing).unwrap_or_default()
}

/// The algorithms of `sp`'s encrypted assertions: its registered override, else the choice
/// from its metadata's EncryptionMethod list.
pub fn encryption_for(sp: &SamlSp, metadata: &SpMetadata) -> Encryption {
    let listed = Encryption::from_metadata(&metadata.encryption_methods);
    Encryption {
        key_transport: sp
            .key_transport
            .as_deref()
            .and_then(KeyTransport::parse)
            .unwrap_or(listed.key_transport),
        data: sp
            .data_encryption
            .as_deref()
            .and_then(DataEncryption::parse)
            .unwrap_or(listed.data),
    }
}

/// The NameID format for a request to `sp` that asks for `requested` (NameIDPolicy Format),
/// or why none can be given (the SP hears InvalidNameIDPolicy). emailAddress only for an SP
/// that is given the email address anyway: as attribute, or as its registered format.
pub fn name_id_format_for(sp: &SamlSp, requested: Option<&str>) -> Result<NameIdFormat, String> {
    let default = default_name_id_format(sp);
    let Some(requested) = requested.map(str::trim) else {
        return Ok(default);
    };
    match NameIdFormat::parse(requested).filter(|_| requested.starts_with("urn:")) {
        Some(NameIdFormat::Unspecified) => Ok(default),
        Some(NameIdFormat::EmailAddress)
            if default != NameIdFormat::EmailAddress
                && !sp.released_attributes.iter().any(|a| a == "email") =>
        {
            Err("the emailAddress NameID format is not offered to this service provider".into())
        }
        Some(format) => Ok(format),
        None => Err(format!(
            "the NameID format {requested} is not offered; persistent, transient and unspecified are"
        )),
    }
}

/// A key transport as typed in the CLI or the portal: a name, or `auto` (from the metadata).
pub fn key_transport_choice(typed: &str) -> anyhow::Result<Option<KeyTransport>> {
    match typed.trim() {
        "auto" => Ok(None),
        t => KeyTransport::parse(t).map(Some).with_context(|| {
            format!("unknown key transport {t:?}; choose auto, rsa-oaep-mgf1p or rsa-oaep")
        }),
    }
}

/// A data encryption as typed: a name, or `auto` (from the metadata).
pub fn data_encryption_choice(typed: &str) -> anyhow::Result<Option<DataEncryption>> {
    match typed.trim() {
        "auto" => Ok(None),
        t => DataEncryption::parse(t).map(Some).with_context(|| {
            format!(
                "unknown data encryption {t:?}; choose auto, aes256-gcm, aes128-gcm, or for an \
                 old SP that reads nothing else aes256-cbc or aes128-cbc"
            )
        }),
    }
}

/// Which parts are signed, as typed: assertion, response or both.
pub fn response_signing_choice(typed: &str) -> anyhow::Result<ResponseSigning> {
    ResponseSigning::parse(typed).with_context(|| {
        format!("unknown signing choice {typed:?}; choose assertion, response or both")
    })
}

/// The default NameID format, as typed: persistent, transient or emailAddress.
pub fn name_id_format_choice(typed: &str) -> anyhow::Result<NameIdFormat> {
    NameIdFormat::parse(typed)
        .filter(|f| *f != NameIdFormat::Unspecified)
        .with_context(|| {
            format!("unknown NameID format {typed:?}; choose persistent, transient or emailAddress")
        })
}

/// Checks SP metadata and options and makes the record to store. Nothing is stored when
/// this fails, and the message says why.
pub fn sp_registration(
    xml: &[u8],
    metadata_url: Option<String>,
    options: &SpOptions,
) -> anyhow::Result<(NewSamlSp, SpMetadata)> {
    let text = std::str::from_utf8(xml).context("the metadata is not UTF-8 text")?;
    let metadata = sesam_saml::parse_sp_metadata(xml).context("the metadata is not usable")?;
    if !metadata
        .assertion_consumer_services
        .iter()
        .any(|a| a.binding == BINDING_HTTP_POST)
    {
        bail!("the metadata has no AssertionConsumerService with the HTTP-POST binding");
    }
    if options.encrypt_assertions && metadata.encryption_certificate.is_none() {
        bail!("assertions cannot be encrypted: the metadata has no encryption certificate");
    }
    if options.require_signed_requests && metadata.signing_certificates.is_empty() {
        bail!("signed requests cannot be required: the metadata has no signing certificate");
    }
    if options.response_signing == ResponseSigning::Response && metadata.want_assertions_signed {
        bail!(
            "the metadata asks for signed assertions (WantAssertionsSigned): sign the assertion \
             or both"
        );
    }
    if options.nameid_format == NameIdFormat::Unspecified {
        bail!("the default NameID format can be persistent, transient or emailAddress");
    }
    if options.min_level >= AssuranceLevel::High {
        bail!("the minimum level can be low or substantial; Sesam never claims high");
    }
    for a in &options.released_attributes {
        if !RELEASABLE.contains(&a.as_str()) {
            bail!(
                "unknown attribute {a:?}; choose from {}",
                RELEASABLE.join(", ")
            );
        }
    }
    let name = options
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| default_name(&metadata.entity_id));
    let record = NewSamlSp {
        entity_id: metadata.entity_id.clone(),
        name,
        metadata_xml: text.to_owned(),
        metadata_url,
        enabled: options.enabled,
        min_level: options.min_level.as_str().to_owned(),
        encrypt_assertions: options.encrypt_assertions,
        require_signed_requests: options.require_signed_requests,
        allow_sha1: options.allow_sha1,
        released_attributes: options.released_attributes.clone(),
        nameid_format: options.nameid_format.uri().to_owned(),
        key_transport: options.key_transport.map(|k| k.name().to_owned()),
        data_encryption: options.data_encryption.map(|d| d.name().to_owned()),
        response_signing: options.response_signing.name().to_owned(),
    };
    Ok((record, metadata))
}

/// The host of a URL entity ID, else the entity ID itself.
fn default_name(entity_id: &str) -> String {
    entity_id
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?', '#', ':']).next())
        .filter(|h| !h.is_empty())
        .unwrap_or(entity_id)
        .to_owned()
}

/// The audit detail of a change to an SP's registration, the same from the portal and the CLI.
pub fn change_summary(old: &sesam_store::SamlSp, new: &sesam_store::NewSamlSp) -> String {
    let auto = |v: &Option<String>| v.clone().unwrap_or_else(|| "auto".into());
    format!(
        "enabled {} -> {}; min. {} -> {}; encrypted {} -> {}; signed requests {} -> {}; \
         attributes {} -> {}; key transport {} -> {}; data encryption {} -> {}; \
         signing {} -> {}; NameID {} -> {}",
        old.enabled,
        new.enabled,
        old.min_level,
        new.min_level,
        old.encrypt_assertions,
        new.encrypt_assertions,
        old.require_signed_requests,
        new.require_signed_requests,
        old.released_attributes.join(" "),
        new.released_attributes.join(" "),
        auto(&old.key_transport),
        auto(&new.key_transport),
        auto(&old.data_encryption),
        auto(&new.data_encryption),
        old.response_signing,
        new.response_signing,
        old.nameid_format,
        new.nameid_format
    )
}

/// Fetches SP metadata from an http(s) URL, with a timeout and a size cap. Without
/// `allow_private`, only from public addresses (see [`crate::outbound`]).
pub async fn fetch_metadata(url: &str, allow_private: bool) -> anyhow::Result<Vec<u8>> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("{url:?} is not an http(s) URL");
    }
    let parsed = reqwest::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
    if !allow_private {
        crate::outbound::check_literal(&parsed)?;
    }
    let client = crate::outbound::client(
        allow_private,
        reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5)),
    )?;
    let mut response = client
        .get(parsed)
        .send()
        .await
        .with_context(|| format!("fetching {url}"))?;
    if !response.status().is_success() {
        bail!("fetching {url}: HTTP {}", response.status());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        if body.len() + chunk.len() > MAX_SP_METADATA_BYTES {
            bail!("the metadata at {url} is larger than {MAX_SP_METADATA_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What the portal shows when a metadata fetch failed: whether the address was refused, or
/// a general reason (the details, which could map the network behind Sesam, go to the log).
pub fn fetch_problem(url: &str, error: &anyhow::Error) -> String {
    let refused = error.chain().any(crate::outbound::was_not_public)
        || error.downcast_ref::<crate::outbound::NotPublic>().is_some();
    tracing::warn!(
        url,
        error = format!("{error:#}"),
        "fetching SP metadata failed"
    );
    if refused {
        "The metadata URL points to an address that is not public. Sesam fetches metadata only \
         from public addresses: use the SP's public URL, or upload the metadata file."
            .into()
    } else {
        "The metadata could not be fetched from this URL. Check that it answers over http(s) \
         with the SP's metadata (at most 256 KiB), or upload the metadata file."
            .into()
    }
}

/// Reads metadata from a file path or an http(s) URL; the URL is returned for storage.
pub async fn read_metadata(source: &str) -> anyhow::Result<(Vec<u8>, Option<String>)> {
    if source.starts_with("https://") || source.starts_with("http://") {
        // The operator's own command line: any address it names may be fetched.
        return Ok((fetch_metadata(source, true).await?, Some(source.to_owned())));
    }
    let meta = std::fs::metadata(source).with_context(|| format!("reading {source}"))?;
    if meta.len() > MAX_SP_METADATA_BYTES as u64 {
        bail!("{source} is larger than {MAX_SP_METADATA_BYTES} bytes");
    }
    Ok((
        std::fs::read(source).with_context(|| format!("reading {source}"))?,
        None,
    ))
}
