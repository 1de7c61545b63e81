//! Start-up configuration: defaults, then a TOML file, then `SESAM_*` environment variables,
//! then `SESAM_*_FILE` for secrets. Every problem is reported with the key it concerns.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// How browsers and service providers reach Sesam; used for absolute URLs and cookies.
    pub public_url: String,
    pub database_url: String,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `Secure` on cookies. Defaults to on exactly when `public_url` is https.
    pub cookie_secure: bool,
    /// Take the client IP from the last `X-Forwarded-For` hop (only behind your own proxy).
    pub trust_forwarded_for: bool,
    /// Password hashes computed at once; each takes about 19 MiB and one core for ~20 ms.
    pub password_hash_concurrency: usize,
    /// Seed demo users on start.
    pub demo: bool,
    pub push: PushConfig,
    /// How often a waiting browser's stream re-reads its challenge when no notification came.
    pub challenge_reread_seconds: u64,
    /// The RSA key (PEM) that signs ID tokens; without it one is generated and kept in the
    /// database.
    pub oidc_signing_key_file: Option<PathBuf>,
    /// The next RSA key, published in the JWKS ahead of a rollover.
    pub oidc_next_signing_key_file: Option<PathBuf>,
    /// The SAML signing key and its certificate (one PEM file); without it a key and a
    /// self-signed certificate are generated and kept in the database.
    pub saml_key_file: Option<PathBuf>,
    /// The next SAML certificate, published in the metadata ahead of a rollover.
    pub saml_next_certificate_file: Option<PathBuf>,
    /// Seals the TOTP secrets in the database (AES-256-GCM); without it no code display can
    /// be enrolled. 32 bytes, base64; best given as `SESAM_TOTP_KEY_FILE`.
    pub totp_key: Option<crate::totp::TotpKey>,
    /// Bearer token that `/metrics` asks for; without one, `/metrics` does not exist.
    pub metrics_token: Option<Secret>,
    /// What one client may hold of the server: connections, time, streams.
    pub limits: Limits,
    /// Let outbound fetches (SP metadata URLs) reach loopback, link-local and private
    /// addresses. Off in production; tests and a lab need it.
    pub allow_private_fetch: bool,
    /// Passwords of directory users are checked against LDAP / Active Directory.
    pub directory: Option<DirectoryConfig>,
    /// The iOS and Android apps that open Sesam's "Open the Sesam app" links.
    pub app_links: crate::applinks::AppLinks,
    /// An upstream eID (MitID through an OpenID Connect broker), when configured.
    pub upstream: Option<UpstreamConfig>,
}

/// The upstream OpenID Connect provider Sesam logs users in through, as a confidential
/// client (authorization code + PKCE, nonce, state).
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Discovery lives at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The ID token claim that names the person (`sub`, or e.g. a CPR claim).
    pub link_claim: String,
    /// The key the linking claim is hashed with before it is stored or looked up.
    pub link_key: Secret,
    /// What the button says: "Log in with {label}".
    pub label: String,
    /// The most an upstream login counts as; the upstream's `acr` can only lower it.
    pub level: sesam_core::AssuranceLevel,
    /// An unlinked upstream identity may be linked by then proving the local password.
    pub link_with_password: bool,
    /// The upstream's own `acr` values and the level each counts as, for a broker that does
    /// not use the NSIS URIs. Looked up before the NSIS URIs; an `acr` in neither is Low.
    pub acr_map: Vec<(String, sesam_core::AssuranceLevel)>,
}

impl UpstreamConfig {
    /// The issuer is on this machine (a local test): the only plain-http issuer accepted.
    pub fn issuer_is_loopback(&self) -> bool {
        is_loopback_http(&self.issuer)
    }
}

fn is_loopback_http(url: &str) -> bool {
    ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| url.starts_with(p))
}

/// The organisation's directory (LDAP / Active Directory): where to find a user and how to
/// check the password. Each URL is tried in order until one answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryConfig {
    pub urls: Vec<String>,
    /// `ldap://` URLs upgrade with StartTLS (unless plain is allowed and this is off).
    pub starttls: bool,
    /// Plain `ldap://` without TLS; only for a lab or a test.
    pub allow_plain: bool,
    /// Extra CA certificates (PEM) that sign the directory's TLS certificate; without it
    /// the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The service account that searches for the user.
    pub bind_dn: String,
    pub bind_password: Secret,
    pub base_dn: String,
    /// A search filter with `{username}` where the (escaped) typed username goes.
    pub user_filter: String,
    pub username_attribute: String,
    pub id_attribute: String,
    pub display_name_attribute: String,
    pub email_attribute: String,
    /// For connecting and for each operation, per server.
    pub timeout_seconds: u64,
    /// The groups whose members get a role.
    pub groups: RoleGroups,
    /// How often the server syncs the users from the directory; 0: never by itself.
    pub sync_interval_seconds: u64,
}

/// The directory groups (their DNs) that decide a role: a member has it, anyone else linked
/// to the directory does not. `None`: the role is set in Sesam and the directory leaves it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleGroups {
    pub admin: Option<String>,
    pub pilot: Option<String>,
    pub password_only: Option<String>,
}

impl RoleGroups {
    pub fn any(&self) -> bool {
        self.admin.is_some() || self.pilot.is_some() || self.password_only.is_some()
    }
}

/// A secret from the config: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Server limits: a slow, idle or greedy client is dropped before it costs the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A new connection must have sent a whole request header within this time.
    pub header_read_timeout_seconds: u64,
    /// A kept-alive connection with no request in flight is closed after this time.
    pub idle_timeout_seconds: u64,
    /// A request body must have arrived within this time.
    pub request_body_timeout_seconds: u64,
    /// A waiting browser's event stream ends after this time (the page reconnects).
    pub event_stream_max_seconds: u64,
    /// Event streams one browser session may hold open at once.
    pub event_streams_per_session: usize,
    /// Open connections. The process's file limit is raised to its hard limit at start, and
    /// this is kept well below it.
    pub max_connections: usize,
    /// On SIGTERM: how long requests in flight may take before the process exits anyway.
    pub shutdown_grace_seconds: u64,
    /// Requests per second one address may send to the protocol endpoints, the app API and
    /// the login pages, sustained; `flood_burst` more at once.
    pub flood_requests_per_second: u64,
    pub flood_burst: u64,
}

/// The integer keys of [`Limits`]: name, default, allowed range.
const LIMIT_KEYS: &[(&str, i64, std::ops::RangeInclusive<i64>)] = &[
    ("header_read_timeout_seconds", 10, 1..=600),
    ("idle_timeout_seconds", 60, 1..=3600),
    ("request_body_timeout_seconds", 30, 1..=600),
    ("event_stream_max_seconds", 300, 5..=86_400),
    ("event_streams_per_session", 4, 1..=64),
    ("max_connections", 16_384, 16..=1_000_000),
    ("shutdown_grace_seconds", 10, 0..=600),
    ("flood_requests_per_second", 50, 1..=100_000),
    ("flood_burst", 500, 1..=1_000_000),
];

/// Where pushes go: recorded in the database (`outbox`, for development and tests) or sent
/// to Apple and Google (`live`, with the keys below).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushConfig {
    pub live: bool,
    pub apns_base_url: String,
    pub apns_key_file: Option<PathBuf>,
    pub apns_key_id: Option<String>,
    pub apns_team_id: Option<String>,
    pub apns_topic: Option<String>,
    /// Extra CA certificates (PEM) trusted for APNs, besides the bundled roots.
    pub apns_ca_file: Option<PathBuf>,
    pub fcm_base_url: String,
    pub fcm_project_id: Option<String>,
    pub fcm_service_account_file: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for FCM and its token endpoint.
    pub fcm_ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    public_url: Option<String>,
    database_url: Option<String>,
    log_format: Option<String>,
    log_level: Option<String>,
    cookie_secure: Option<bool>,
    trust_forwarded_for: Option<bool>,
    password_hash_concurrency: Option<i64>,
    demo: Option<bool>,
    challenge_reread_seconds: Option<i64>,
    push_provider: Option<String>,
    apns_base_url: Option<String>,
    apns_key_file: Option<String>,
    apns_key_id: Option<String>,
    apns_team_id: Option<String>,
    apns_topic: Option<String>,
    apns_ca_file: Option<String>,
    fcm_base_url: Option<String>,
    fcm_project_id: Option<String>,
    fcm_service_account_file: Option<String>,
    fcm_ca_file: Option<String>,
    oidc_signing_key_file: Option<String>,
    oidc_next_signing_key_file: Option<String>,
    saml_key_file: Option<String>,
    saml_next_certificate_file: Option<String>,
    totp_key: Option<String>,
    metrics_token: Option<String>,
    allow_private_fetch: Option<bool>,
    apple_app_ids: Option<Vec<String>>,
    android_package: Option<String>,
    android_cert_fingerprints: Option<Vec<String>>,
    ldap_urls: Option<Vec<String>>,
    ldap_starttls: Option<bool>,
    ldap_allow_plain: Option<bool>,
    ldap_ca_file: Option<String>,
    ldap_bind_dn: Option<String>,
    ldap_bind_password: Option<String>,
    ldap_base_dn: Option<String>,
    ldap_user_filter: Option<String>,
    ldap_username_attribute: Option<String>,
    ldap_id_attribute: Option<String>,
    ldap_display_name_attribute: Option<String>,
    ldap_email_attribute: Option<String>,
    ldap_timeout_seconds: Option<i64>,
    ldap_admin_group: Option<String>,
    ldap_pilot_group: Option<String>,
    ldap_password_only_group: Option<String>,
    ldap_sync_interval_seconds: Option<i64>,
    header_read_timeout_seconds: Option<i64>,
    idle_timeout_seconds: Option<i64>,
    request_body_timeout_seconds: Option<i64>,
    event_stream_max_seconds: Option<i64>,
    event_streams_per_session: Option<i64>,
    max_connections: Option<i64>,
    shutdown_grace_seconds: Option<i64>,
    flood_requests_per_second: Option<i64>,
    flood_burst: Option<i64>,
    upstream_issuer: Option<String>,
    upstream_client_id: Option<String>,
    upstream_client_secret: Option<String>,
    upstream_scopes: Option<Vec<String>>,
    upstream_link_claim: Option<String>,
    upstream_link_key: Option<String>,
    upstream_label: Option<String>,
    upstream_level: Option<String>,
    upstream_link_with_password: Option<bool>,
    upstream_acr_map: Option<Vec<String>>,
}

impl RawConfig {
    fn limit_mut(&mut self, key: &str) -> Option<&mut Option<i64>> {
        Some(match key {
            "header_read_timeout_seconds" => &mut self.header_read_timeout_seconds,
            "idle_timeout_seconds" => &mut self.idle_timeout_seconds,
            "request_body_timeout_seconds" => &mut self.request_body_timeout_seconds,
            "event_stream_max_seconds" => &mut self.event_stream_max_seconds,
            "event_streams_per_session" => &mut self.event_streams_per_session,
            "max_connections" => &mut self.max_connections,
            "shutdown_grace_seconds" => &mut self.shutdown_grace_seconds,
            "flood_requests_per_second" => &mut self.flood_requests_per_second,
            "flood_burst" => &mut self.flood_burst,
            _ => return None,
        })
    }

    fn limits(&mut self) -> Result<Limits, ConfigError> {
        let mut v = [0u64; LIMIT_KEYS.len()];
        for (slot, (key, default, range)) in v.iter_mut().zip(LIMIT_KEYS) {
            let value = self
                .limit_mut(key)
                .expect("every limit key")
                .unwrap_or(*default);
            if !range.contains(&value) {
                return Err(invalid(
                    key,
                    format!("{value} is outside {}..={}", range.start(), range.end()),
                ));
            }
            *slot = value as u64;
        }
        let [header, idle, body, stream, per_session, connections, grace, rate, burst] = v;
        Ok(Limits {
            header_read_timeout_seconds: header,
            idle_timeout_seconds: idle,
            request_body_timeout_seconds: body,
            event_stream_max_seconds: stream,
            event_streams_per_session: per_session as usize,
            max_connections: connections as usize,
            shutdown_grace_seconds: grace,
            flood_requests_per_second: rate,
            flood_burst: burst,
        })
    }
}

/// Every key, in the order the example file documents them.
pub const KEYS: &[&str] = &[
    "listen",
    "public_url",
    "database_url",
    "log_format",
    "log_level",
    "cookie_secure",
    "trust_forwarded_for",
    "password_hash_concurrency",
    "demo",
    "challenge_reread_seconds",
    "push_provider",
    "apns_base_url",
    "apns_key_file",
    "apns_key_id",
    "apns_team_id",
    "apns_topic",
    "apns_ca_file",
    "fcm_base_url",
    "fcm_project_id",
    "fcm_service_account_file",
    "fcm_ca_file",
    "oidc_signing_key_file",
    "oidc_next_signing_key_file",
    "saml_key_file",
    "saml_next_certificate_file",
    "totp_key",
    "metrics_token",
    "allow_private_fetch",
    "apple_app_ids",
    "android_package",
    "android_cert_fingerprints",
    "ldap_urls",
    "ldap_starttls",
    "ldap_allow_plain",
    "ldap_ca_file",
    "ldap_bind_dn",
    "ldap_bind_password",
    "ldap_base_dn",
    "ldap_user_filter",
    "ldap_username_attribute",
    "ldap_id_attribute",
    "ldap_display_name_attribute",
    "ldap_email_attribute",
    "ldap_timeout_seconds",
    "ldap_admin_group",
    "ldap_pilot_group",
    "ldap_password_only_group",
    "ldap_sync_interval_seconds",
    "upstream_issuer",
    "upstream_client_id",
    "upstream_client_secret",
    "upstream_scopes",
    "upstream_link_claim",
    "upstream_link_key",
    "upstream_label",
    "upstream_level",
    "upstream_link_with_password",
    "upstream_acr_map",
    "header_read_timeout_seconds",
    "idle_timeout_seconds",
    "request_body_timeout_seconds",
    "event_stream_max_seconds",
    "event_streams_per_session",
    "max_connections",
    "shutdown_grace_seconds",
    "flood_requests_per_second",
    "flood_burst",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{var}: {message}")]
    Env { var: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Config {
    /// Loads from the optional file and the given environment (pass `std::env::vars()`).
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut raw = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<RawConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?
            }
            None => RawConfig::default(),
        };
        apply_env(&mut raw, env.into_iter().collect())?;
        Config::validate(raw)
    }

    fn validate(mut raw: RawConfig) -> Result<Config, ConfigError> {
        let limits = raw.limits()?;
        let directory = directory(&mut raw)?;
        let upstream = upstream(&mut raw)?;
        let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
            invalid(
                "listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:8080"),
            )
        })?;

        let public_url = raw
            .public_url
            .unwrap_or_else(|| format!("http://localhost:{}", listen.port()));
        let public_url = public_url.trim_end_matches('/').to_owned();
        let is_https = public_url.starts_with("https://");
        if !(is_https || public_url.starts_with("http://")) || public_url.len() < "http://x".len() {
            return Err(invalid(
                "public_url",
                format!("{public_url:?} must start with http:// or https://"),
            ));
        }

        let database_url = raw
            .database_url
            .unwrap_or_else(|| "sqlite://data/sesam.db".into());
        sesam_store::Backend::of_url(&database_url)
            .map_err(|_| invalid("database_url", "must start with sqlite: or postgres://"))?;

        let log_format = match raw.log_format.as_deref().unwrap_or("human") {
            "human" => LogFormat::Human,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is not one of human, json"),
                ))
            }
        };
        let log_level = raw.log_level.unwrap_or_else(|| "info".into());
        tracing_subscriber::EnvFilter::try_new(&log_level)
            .map_err(|e| invalid("log_level", format!("{log_level:?}: {e}")))?;

        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let concurrency = raw.password_hash_concurrency.unwrap_or(cores as i64);
        if !(1..=256).contains(&concurrency) {
            return Err(invalid(
                "password_hash_concurrency",
                format!("{concurrency} is outside 1..=256"),
            ));
        }

        let live = match raw.push_provider.as_deref().unwrap_or("outbox") {
            "outbox" => false,
            "live" => true,
            other => {
                return Err(invalid(
                    "push_provider",
                    format!("{other:?} is not one of outbox, live"),
                ))
            }
        };
        let push = PushConfig {
            live,
            apns_base_url: raw
                .apns_base_url
                .unwrap_or_else(|| "https://api.push.apple.com".into()),
            apns_key_file: raw.apns_key_file.map(PathBuf::from),
            apns_key_id: raw.apns_key_id,
            apns_team_id: raw.apns_team_id,
            apns_topic: raw.apns_topic,
            apns_ca_file: raw.apns_ca_file.map(PathBuf::from),
            fcm_base_url: raw
                .fcm_base_url
                .unwrap_or_else(|| "https://fcm.googleapis.com".into()),
            fcm_project_id: raw.fcm_project_id,
            fcm_service_account_file: raw.fcm_service_account_file.map(PathBuf::from),
            fcm_ca_file: raw.fcm_ca_file.map(PathBuf::from),
        };
        for (key, url) in [
            ("apns_base_url", &push.apns_base_url),
            ("fcm_base_url", &push.fcm_base_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(invalid(
                    key,
                    format!(
                        "{url:?} must start with https:// (or http:// for a local test server)"
                    ),
                ));
            }
        }
        let apns_parts = [&push.apns_key_id, &push.apns_team_id, &push.apns_topic];
        let apns_given = push.apns_key_file.is_some() || apns_parts.iter().any(|p| p.is_some());
        if apns_given && (push.apns_key_file.is_none() || apns_parts.iter().any(|p| p.is_none())) {
            return Err(invalid(
                "apns_key_file",
                "APNs needs apns_key_file, apns_key_id, apns_team_id and apns_topic together",
            ));
        }
        if push.fcm_project_id.is_some() != push.fcm_service_account_file.is_some() {
            return Err(invalid(
                "fcm_project_id",
                "FCM needs fcm_project_id and fcm_service_account_file together",
            ));
        }

        let app_links = crate::applinks::AppLinks::new(
            raw.apple_app_ids.take().unwrap_or_default(),
            raw.android_package.take(),
            raw.android_cert_fingerprints.take().unwrap_or_default(),
        )
        .map_err(|(key, message)| invalid(key, message))?;

        let reread = raw.challenge_reread_seconds.unwrap_or(2);
        if !(1..=600).contains(&reread) {
            return Err(invalid(
                "challenge_reread_seconds",
                format!("{reread} is outside 1..=600"),
            ));
        }

        Ok(Config {
            directory,
            app_links,
            upstream,
            challenge_reread_seconds: reread as u64,
            push,
            listen,
            public_url,
            database_url,
            log_format,
            log_level,
            cookie_secure: raw.cookie_secure.unwrap_or(is_https),
            trust_forwarded_for: raw.trust_forwarded_for.unwrap_or(false),
            password_hash_concurrency: concurrency as usize,
            demo: raw.demo.unwrap_or(false),
            oidc_signing_key_file: raw.oidc_signing_key_file.map(PathBuf::from),
            oidc_next_signing_key_file: raw.oidc_next_signing_key_file.map(PathBuf::from),
            saml_key_file: raw.saml_key_file.map(PathBuf::from),
            saml_next_certificate_file: raw.saml_next_certificate_file.map(PathBuf::from),
            totp_key: raw
                .totp_key
                .map(|k| crate::totp::TotpKey::parse(&k).map_err(|m| invalid("totp_key", m)))
                .transpose()?,
            metrics_token: raw
                .metrics_token
                .filter(|t| !t.is_empty())
                .map(|t| {
                    if t.chars().count() < MIN_METRICS_TOKEN_CHARS || t.chars().any(char::is_whitespace) {
                        Err(invalid(
                            "metrics_token",
                            format!("must be at least {MIN_METRICS_TOKEN_CHARS} characters without spaces"),
                        ))
                    } else {
                        Ok(Secret::new(t))
                    }
                })
                .transpose()?,
            limits,
            allow_private_fetch: raw.allow_private_fetch.unwrap_or(false),
        })
    }

    /// `database_url` with any password replaced, for logs and `config check`.
    pub fn database_url_for_display(&self) -> String {
        match (self.database_url.find("://"), self.database_url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let userinfo = &self.database_url[scheme_end + 3..at];
                let user = userinfo.split(':').next().unwrap_or("");
                format!(
                    "{}{user}:***{}",
                    &self.database_url[..scheme_end + 3],
                    &self.database_url[at..]
                )
            }
            _ => self.database_url.clone(),
        }
    }
}

/// A scraper's token is a secret like a password: long enough not to be guessed.
const MIN_METRICS_TOKEN_CHARS: usize = 16;

/// A list in one environment variable: comma- or space-separated.
fn list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

fn env_name(key: &str) -> String {
    format!("SESAM_{}", key.to_uppercase())
}

fn apply_env(raw: &mut RawConfig, env: HashMap<String, String>) -> Result<(), ConfigError> {
    for key in KEYS {
        let var = env_name(key);
        let file_var = format!("{var}_FILE");
        let (value, source) = match (env.get(&var), env.get(&file_var)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Env {
                    var: var.clone(),
                    message: format!("set either {var} or {file_var}, not both"),
                })
            }
            (Some(v), None) => (v.clone(), var.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Env {
                    var: file_var.clone(),
                    message: format!("cannot read {path}: {e}"),
                })?;
                (
                    text.trim_end_matches(['\n', '\r']).to_owned(),
                    file_var.clone(),
                )
            }
            (None, None) => continue,
        };
        let bad = |what: &str| ConfigError::Env {
            var: source.clone(),
            message: format!("{value:?} is not {what}"),
        };
        match *key {
            "listen" => raw.listen = Some(value.clone()),
            "public_url" => raw.public_url = Some(value.clone()),
            "database_url" => raw.database_url = Some(value.clone()),
            "log_format" => raw.log_format = Some(value.clone()),
            "log_level" => raw.log_level = Some(value.clone()),
            "cookie_secure" => {
                raw.cookie_secure = Some(parse_bool(&value).ok_or_else(|| bad("true or false"))?)
            }
            "trust_forwarded_for" => {
                raw.trust_forwarded_for =
                    Some(parse_bool(&value).ok_or_else(|| bad("true or false"))?)
            }
            "password_hash_concurrency" => {
                raw.password_hash_concurrency =
                    Some(value.trim().parse().map_err(|_| bad("a whole number"))?)
            }
            "demo" => raw.demo = Some(parse_bool(&value).ok_or_else(|| bad("true or false"))?),
            "push_provider" => raw.push_provider = Some(value.clone()),
            "challenge_reread_seconds" => {
                raw.challenge_reread_seconds =
                    Some(value.trim().parse().map_err(|_| bad("a whole number"))?)
            }
            "apns_base_url" => raw.apns_base_url = Some(value.clone()),
            "apns_key_file" => raw.apns_key_file = Some(value.clone()),
            "apns_key_id" => raw.apns_key_id = Some(value.clone()),
            "apns_team_id" => raw.apns_team_id = Some(value.clone()),
            "apns_topic" => raw.apns_topic = Some(value.clone()),
            "apns_ca_file" => raw.apns_ca_file = Some(value.clone()),
            "fcm_base_url" => raw.fcm_base_url = Some(value.clone()),
            "fcm_project_id" => raw.fcm_project_id = Some(value.clone()),
            "fcm_service_account_file" => raw.fcm_service_account_file = Some(value.clone()),
            "fcm_ca_file" => raw.fcm_ca_file = Some(value.clone()),
            "oidc_signing_key_file" => raw.oidc_signing_key_file = Some(value.clone()),
            "oidc_next_signing_key_file" => raw.oidc_next_signing_key_file = Some(value.clone()),
            "saml_key_file" => raw.saml_key_file = Some(value.clone()),
            "saml_next_certificate_file" => raw.saml_next_certificate_file = Some(value.clone()),
            "totp_key" => raw.totp_key = Some(value.clone()),
            "metrics_token" => raw.metrics_token = Some(value.clone()),
            "allow_private_fetch" => {
                raw.allow_private_fetch =
                    Some(parse_bool(&value).ok_or_else(|| bad("true or false"))?)
            }
            "apple_app_ids" => raw.apple_app_ids = Some(list(&value)),
            "android_package" => raw.android_package = Some(value.clone()),
            "android_cert_fingerprints" => raw.android_cert_fingerprints = Some(list(&value)),
            "ldap_urls" => raw.ldap_urls = Some(list(&value)),
            "ldap_starttls" => {
                raw.ldap_starttls = Some(parse_bool(&value).ok_or_else(|| bad("true or false"))?)
            }
            "ldap_allow_plain" => {
                raw.ldap_allow_plain = Some(parse_bool(&value).ok_or_else(|| bad("true or false"))?)
            }
            "ldap_ca_file" => raw.ldap_ca_file = Some(value.clone()),
            "ldap_bind_dn" => raw.ldap_bind_dn = Some(value.clone()),
            "ldap_bind_password" => raw.ldap_bind_password = Some(value.clone()),
            "ldap_base_dn" => raw.ldap_base_dn = Some(value.clone()),
            "ldap_user_filter" => raw.ldap_user_filter = Some(value.clone()),
            "ldap_username_attribute" => raw.ldap_username_attribute = Some(value.clone()),
            "ldap_id_attribute" => raw.ldap_id_attribute = Some(value.clone()),
            "ldap_display_name_attribute" => raw.ldap_display_name_attribute = Some(value.clone()),
            "ldap_email_attribute" => raw.ldap_email_attribute = Some(value.clone()),
            "ldap_timeout_seconds" => {
                raw.ldap_timeout_seconds =
                    Some(value.trim().parse().map_err(|_| bad("a whole number"))?)
            }
            "ldap_admin_group" => raw.ldap_admin_group = Some(value.clone()),
            "ldap_pilot_group" => raw.ldap_pilot_group = Some(value.clone()),
            "ldap_password_only_group" => raw.ldap_password_only_group = Some(value.clone()),
            "ldap_sync_interval_seconds" => {
                raw.ldap_sync_interval_seconds = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| bad("a whole number of seconds"))?,
                )
            }
            "upstream_issuer" => raw.upstream_issuer = Some(value.clone()),
            "upstream_client_id" => raw.upstream_client_id = Some(value.clone()),
            "upstream_client_secret" => raw.upstream_client_secret = Some(value.clone()),
            "upstream_scopes" => raw.upstream_scopes = Some(list(&value)),
            "upstream_acr_map" => raw.upstream_acr_map = Some(list(&value)),
            "upstream_link_claim" => raw.upstream_link_claim = Some(value.clone()),
            "upstream_link_key" => raw.upstream_link_key = Some(value.clone()),
            "upstream_label" => raw.upstream_label = Some(value.clone()),
            "upstream_level" => raw.upstream_level = Some(value.clone()),
            "upstream_link_with_password" => {
                raw.upstream_link_with_password =
                    Some(parse_bool(&value).ok_or_else(|| bad("true or false"))?)
            }
            limit => {
                let slot = raw.limit_mut(limit).expect("every key in KEYS is handled");
                *slot = Some(value.trim().parse().map_err(|_| bad("a whole number"))?);
            }
        }
    }
    Ok(())
}

/// The directory keys: all of URLs, service account, password and base, or none of them.
fn directory(raw: &mut RawConfig) -> Result<Option<DirectoryConfig>, ConfigError> {
    let urls = raw.ldap_urls.take().unwrap_or_default();
    let (bind_dn, bind_password, base_dn) = (
        raw.ldap_bind_dn.take(),
        raw.ldap_bind_password.take(),
        raw.ldap_base_dn.take(),
    );
    let groups = RoleGroups {
        admin: group_dn("ldap_admin_group", raw.ldap_admin_group.take())?,
        pilot: group_dn("ldap_pilot_group", raw.ldap_pilot_group.take())?,
        password_only: group_dn(
            "ldap_password_only_group",
            raw.ldap_password_only_group.take(),
        )?,
    };
    let interval = raw.ldap_sync_interval_seconds.take().unwrap_or(0);
    if !(0..=MAX_SYNC_INTERVAL).contains(&interval) {
        return Err(invalid(
            "ldap_sync_interval_seconds",
            format!("{interval} is outside 0..={MAX_SYNC_INTERVAL} (0: no scheduled sync)"),
        ));
    }
    if urls.is_empty() {
        if bind_dn.is_some() || bind_password.is_some() || base_dn.is_some() || groups.any() {
            return Err(invalid(
                "ldap_urls",
                "the directory needs ldap_urls with ldap_bind_dn, ldap_bind_password and ldap_base_dn",
            ));
        }
        if interval > 0 {
            return Err(invalid(
                "ldap_sync_interval_seconds",
                "a scheduled sync needs a directory (ldap_urls)",
            ));
        }
        return Ok(None);
    }
    let starttls = raw.ldap_starttls.unwrap_or(true);
    let allow_plain = raw.ldap_allow_plain.unwrap_or(false);
    for url in &urls {
        let plain = url.starts_with("ldap://");
        if !(plain || url.starts_with("ldaps://")) {
            return Err(invalid(
                "ldap_urls",
                format!("{url:?} must start with ldaps:// or ldap://"),
            ));
        }
        if plain && !starttls && !allow_plain {
            return Err(invalid(
                "ldap_urls",
                format!(
                    "{url:?} without StartTLS sends passwords in the clear; \
                     set ldap_allow_plain = true only for a lab or a test"
                ),
            ));
        }
    }
    // An empty password makes a simple bind unauthenticated, which many servers accept.
    let required = |key: &'static str, value: Option<String>| match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(invalid(
            key,
            "required (and not empty) when ldap_urls is set",
        )),
    };
    let bind_dn = required("ldap_bind_dn", bind_dn)?;
    let bind_password = Secret(required("ldap_bind_password", bind_password)?);
    let base_dn = required("ldap_base_dn", base_dn)?;
    let user_filter = raw
        .ldap_user_filter
        .take()
        .unwrap_or_else(|| "(&(objectClass=inetOrgPerson)(uid={username}))".into());
    if !user_filter.contains("{username}") {
        return Err(invalid("ldap_user_filter", "must contain {username}"));
    }
    let timeout = raw.ldap_timeout_seconds.unwrap_or(5);
    if !(1..=60).contains(&timeout) {
        return Err(invalid(
            "ldap_timeout_seconds",
            format!("{timeout} is outside 1..=60"),
        ));
    }
    let attribute = |value: Option<String>, default: &str| value.unwrap_or_else(|| default.into());
    Ok(Some(DirectoryConfig {
        urls,
        starttls,
        allow_plain,
        ca_file: raw.ldap_ca_file.take().map(PathBuf::from),
        bind_dn,
        bind_password,
        base_dn,
        user_filter,
        username_attribute: attribute(raw.ldap_username_attribute.take(), "uid"),
        id_attribute: attribute(raw.ldap_id_attribute.take(), "entryUUID"),
        display_name_attribute: attribute(raw.ldap_display_name_attribute.take(), "displayName"),
        email_attribute: attribute(raw.ldap_email_attribute.take(), "mail"),
        timeout_seconds: timeout as u64,
        groups,
        sync_interval_seconds: interval as u64,
    }))
}

/// Standard claims that the user (or the upstream's admins) can change: never a link.
const MUTABLE_CLAIMS: &[&str] = &[
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "preferred_username",
    "profile",
    "picture",
    "website",
    "email",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    "upn",
    "unique_name",
];

/// The upstream eID keys: issuer, client id and secret, or none of them.
fn upstream(raw: &mut RawConfig) -> Result<Option<UpstreamConfig>, ConfigError> {
    let issuer = raw.upstream_issuer.take().filter(|v| !v.trim().is_empty());
    let client_id = raw
        .upstream_client_id
        .take()
        .filter(|v| !v.trim().is_empty());
    let secret = raw
        .upstream_client_secret
        .take()
        .filter(|v| !v.trim().is_empty());
    let Some(issuer) = issuer else {
        if client_id.is_some() || secret.is_some() {
            return Err(invalid(
                "upstream_issuer",
                "the upstream eID needs upstream_issuer with upstream_client_id and upstream_client_secret",
            ));
        }
        return Ok(None);
    };
    let issuer = issuer.trim().trim_end_matches('/').to_owned();
    // The client secret and the ID token travel to and from it: https, except to this
    // machine itself (a local test).
    if !(issuer.starts_with("https://") || is_loopback_http(&issuer)) {
        return Err(invalid(
            "upstream_issuer",
            format!("{issuer:?} must start with https:// (http:// only to 127.0.0.1 or localhost, for a local test)"),
        ));
    }
    let client_id = client_id
        .ok_or_else(|| invalid("upstream_client_id", "required when upstream_issuer is set"))?;
    let client_secret = Secret(secret.ok_or_else(|| {
        invalid(
            "upstream_client_secret",
            "required when upstream_issuer is set",
        )
    })?);
    let link_claim = raw
        .upstream_link_claim
        .take()
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|| "sub".into());
    if link_claim.is_empty() || link_claim.len() > 100 {
        return Err(invalid(
            "upstream_link_claim",
            "must name an ID token claim",
        ));
    }
    // The link decides who logs in, so it must be a claim the user cannot change at the
    // upstream: the standard profile claims (OpenID Connect Core 5.1) other than `sub` are
    // edited by the user or the upstream's admins, and an e-mail address is reassigned.
    if MUTABLE_CLAIMS.contains(&link_claim.to_ascii_lowercase().as_str()) {
        return Err(invalid(
            "upstream_link_claim",
            format!(
                "{link_claim:?} can be changed by the user at the upstream; use \"sub\" or \
                 a fixed identifier the upstream issues (a UUID, a CPR-like number)"
            ),
        ));
    }
    // A CPR number has few enough values to be found from an unkeyed hash by trying them
    // all; such a claim is only ever stored under a secret key.
    let link_key = match raw.upstream_link_key.take().filter(|k| !k.is_empty()) {
        Some(key) if key.chars().count() >= MIN_LINK_KEY_CHARS => Secret(key),
        Some(_) => {
            return Err(invalid(
                "upstream_link_key",
                format!("must be at least {MIN_LINK_KEY_CHARS} characters"),
            ))
        }
        None if link_claim == "sub" => Secret(String::new()),
        None => {
            return Err(invalid(
                "upstream_link_key",
                format!(
                    "required when upstream_link_claim is {link_claim:?}: a claim such as a CPR \
                     number is stored only as a keyed hash"
                ),
            ))
        }
    };
    let level_text = raw
        .upstream_level
        .take()
        .unwrap_or_else(|| "substantial".into());
    let level = sesam_core::AssuranceLevel::parse(&level_text).ok_or_else(|| {
        invalid(
            "upstream_level",
            format!("{level_text:?} is not one of low, substantial, high"),
        )
    })?;
    let label = raw
        .upstream_label
        .take()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "MitID".into());
    if label.chars().count() > 40 {
        return Err(invalid("upstream_label", "at most 40 characters"));
    }
    let mut acr_map = Vec::new();
    for entry in raw.upstream_acr_map.take().unwrap_or_default() {
        let parsed = entry.rsplit_once('=').and_then(|(acr, level)| {
            let acr = acr.trim();
            let level = sesam_core::AssuranceLevel::parse(level.trim())?;
            (!acr.is_empty() && acr.len() <= 200).then(|| (acr.to_owned(), level))
        });
        let Some((acr, level)) = parsed else {
            return Err(invalid(
                "upstream_acr_map",
                format!("{entry:?} is not \"<the upstream's acr>=<low, substantial or high>\""),
            ));
        };
        if acr_map.iter().any(|(known, _)| *known == acr) {
            return Err(invalid(
                "upstream_acr_map",
                format!("{acr:?} is given twice"),
            ));
        }
        acr_map.push((acr, level));
    }
    Ok(Some(UpstreamConfig {
        issuer,
        client_id,
        client_secret,
        scopes: raw
            .upstream_scopes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s != "openid")
            .collect(),
        link_claim,
        link_key,
        label,
        level,
        link_with_password: raw.upstream_link_with_password.take().unwrap_or(false),
        acr_map,
    }))
}

/// The shortest key the linking claim may be hashed with.
const MIN_LINK_KEY_CHARS: usize = 32;

/// A week: a longer interval is a typo more often than a wish.
const MAX_SYNC_INTERVAL: i64 = 7 * 24 * 3600;

/// A role group's DN, checked as a DN (RFC 4514) so that a typo is a start-up error rather
/// than a group nobody is a member of, which would take the role from everyone.
fn group_dn(key: &'static str, value: Option<String>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => match crate::directory::normalize_dn(&v) {
            Some(_) => Ok(Some(v.trim().to_owned())),
            None => Err(invalid(
                key,
                format!("{v:?} is not a DN like \"CN=Sesam admins,OU=Groups,DC=kommune,DC=local\""),
            )),
        },
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_links_come_from_the_environment_and_bad_ones_stop_the_start() {
        let fp = vec!["0A"; 32].join(":");
        let c = Config::load(
            None,
            env(&[
                (
                    "SESAM_APPLE_APP_IDS",
                    "ABCDE12345.dk.sesam.app,ABCDE12345.dk.sesam.beta",
                ),
                ("SESAM_ANDROID_PACKAGE", "dk.sesam.app"),
                ("SESAM_ANDROID_CERT_FINGERPRINTS", &fp),
            ]),
        )
        .unwrap();
        assert_eq!(c.app_links.apple_app_ids.len(), 2);
        assert_eq!(c.app_links.android_cert_fingerprints, vec![fp.clone()]);
        assert_eq!(
            Config::load(None, env(&[])).unwrap().app_links,
            crate::applinks::AppLinks::default()
        );
        let e = Config::load(None, env(&[("SESAM_APPLE_APP_IDS", "dk.sesam.app")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("apple_app_ids:"), "{e}");
        let e = Config::load(
            None,
            env(&[
                ("SESAM_ANDROID_PACKAGE", "dk.sesam.app"),
                ("SESAM_ANDROID_CERT_FINGERPRINTS", &fp.to_lowercase()),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("android_cert_fingerprints:"), "{e}");
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn no_file_gives_working_defaults() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url, "http://localhost:8080");
        assert_eq!(c.database_url, "sqlite://data/sesam.db");
        assert!(
            !c.cookie_secure,
            "plain http development has no Secure cookies"
        );
    }

    #[test]
    fn environment_overrides_the_file_and_file_secrets_are_read() {
        let f = file("listen = \"0.0.0.0:9000\"\npublic_url = \"https://login.example.dk\"\n");
        let secret = file("postgres://sesam:hunter2@db/sesam\n");
        let c = Config::load(
            Some(f.path()),
            env(&[
                ("SESAM_LISTEN", "127.0.0.1:9100"),
                ("SESAM_DATABASE_URL_FILE", secret.path().to_str().unwrap()),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert!(c.cookie_secure, "https public_url means Secure cookies");
        assert_eq!(c.database_url, "postgres://sesam:hunter2@db/sesam");
        assert_eq!(
            c.database_url_for_display(),
            "postgres://sesam:***@db/sesam"
        );
    }

    #[test]
    fn push_ca_files_come_from_the_file_or_the_environment() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!((c.push.apns_ca_file, c.push.fcm_ca_file), (None, None));
        let f = file("apns_ca_file = \"/etc/sesam/apns-ca.pem\"\n");
        let c = Config::load(
            Some(f.path()),
            env(&[("SESAM_FCM_CA_FILE", "/etc/sesam/fcm-ca.pem")]),
        )
        .unwrap();
        assert_eq!(
            c.push.apns_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/sesam/apns-ca.pem"))
        );
        assert_eq!(
            c.push.fcm_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/sesam/fcm-ca.pem"))
        );
    }

    #[test]
    fn limits_have_safe_defaults_and_refuse_nonsense() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.limits.header_read_timeout_seconds, 10);
        assert_eq!(c.limits.shutdown_grace_seconds, 10);
        assert!(!c.allow_private_fetch);
        let f = file("max_connections = 500\nidle_timeout_seconds = 5\n");
        let c = Config::load(Some(f.path()), env(&[("SESAM_FLOOD_BURST", "7")])).unwrap();
        assert_eq!(
            (
                c.limits.max_connections,
                c.limits.idle_timeout_seconds,
                c.limits.flood_burst
            ),
            (500, 5, 7)
        );
        let e = Config::load(None, env(&[("SESAM_MAX_CONNECTIONS", "3")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("max_connections:"), "{e}");
        let e = Config::load(None, env(&[("SESAM_SHUTDOWN_GRACE_SECONDS", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SESAM_SHUTDOWN_GRACE_SECONDS"), "{e}");
    }

    #[test]
    fn the_directory_needs_tls_unless_plain_is_allowed_and_its_password_can_be_a_file() {
        assert!(Config::load(None, env(&[])).unwrap().directory.is_none());
        let secret = file("s3rvice-pass\n");
        let base = [
            (
                "SESAM_LDAP_URLS",
                "ldaps://dc1.example.dk, ldap://dc2.example.dk",
            ),
            ("SESAM_LDAP_BIND_DN", "cn=sesam,dc=example,dc=dk"),
            ("SESAM_LDAP_BASE_DN", "dc=example,dc=dk"),
        ];
        let mut vars = base.to_vec();
        let path = secret.path().to_str().unwrap().to_owned();
        vars.push(("SESAM_LDAP_BIND_PASSWORD_FILE", &path));
        let d = Config::load(None, env(&vars)).unwrap().directory.unwrap();
        assert_eq!(d.urls, ["ldaps://dc1.example.dk", "ldap://dc2.example.dk"]);
        assert_eq!(d.bind_password.expose(), "s3rvice-pass");
        assert!(d.starttls && !d.allow_plain);
        assert_eq!(d.timeout_seconds, 5);
        assert!(
            !format!("{d:?}").contains("s3rvice"),
            "Debug hides the secret"
        );

        // ldap:// without StartTLS is refused unless plain is allowed explicitly.
        let mut plain = vars.clone();
        plain.push(("SESAM_LDAP_STARTTLS", "false"));
        let e = Config::load(None, env(&plain)).unwrap_err().to_string();
        assert!(
            e.starts_with("ldap_urls:") && e.contains("ldap_allow_plain"),
            "{e}"
        );
        plain.push(("SESAM_LDAP_ALLOW_PLAIN", "true"));
        assert!(Config::load(None, env(&plain)).unwrap().directory.is_some());

        // An empty service password would be an anonymous bind.
        let mut empty = base.to_vec();
        empty.push(("SESAM_LDAP_BIND_PASSWORD", ""));
        let e = Config::load(None, env(&empty)).unwrap_err().to_string();
        assert!(e.starts_with("ldap_bind_password:"), "{e}");

        let mut bad = vars.clone();
        bad.push(("SESAM_LDAP_USER_FILTER", "(uid=anna)"));
        let e = Config::load(None, env(&bad)).unwrap_err().to_string();
        assert!(e.starts_with("ldap_user_filter:"), "{e}");

        let e = Config::load(None, env(&[("SESAM_LDAP_URLS", "http://dc1")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ldap_urls:"), "{e}");
        let e = Config::load(None, env(&[("SESAM_LDAP_BASE_DN", "dc=x")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ldap_urls:"), "{e}");

        let f = file(
            "ldap_urls = [\"ldaps://dc1\"]\nldap_bind_dn = \"cn=s\"\nldap_bind_password = \"p\"\n\
             ldap_base_dn = \"dc=x\"\nldap_id_attribute = \"objectGUID\"\n",
        );
        let d = Config::load(Some(f.path()), env(&[]))
            .unwrap()
            .directory
            .unwrap();
        assert_eq!(d.id_attribute, "objectGUID");
    }

    #[test]
    fn the_metrics_token_is_long_and_secret() {
        assert!(Config::load(None, env(&[]))
            .unwrap()
            .metrics_token
            .is_none());
        let token = "scrape-token-0123456789";
        let c = Config::load(None, env(&[("SESAM_METRICS_TOKEN", token)])).unwrap();
        assert_eq!(c.metrics_token.as_ref().map(Secret::expose), Some(token));
        assert!(!format!("{c:?}").contains(token), "Debug hides it");
        for bad in ["short", "sixteen chars ok but spaced"] {
            let e = Config::load(None, env(&[("SESAM_METRICS_TOKEN", bad)]))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("metrics_token:"), "{bad}: {e}");
            assert!(
                !e.contains(bad),
                "the error does not repeat the secret: {e}"
            );
        }
    }

    #[test]
    fn role_groups_must_be_dns_and_the_sync_interval_a_sane_number() {
        let base = [
            ("SESAM_LDAP_URLS", "ldaps://dc1.example.dk"),
            ("SESAM_LDAP_BIND_DN", "cn=sesam,dc=example,dc=dk"),
            ("SESAM_LDAP_BIND_PASSWORD", "s3rvice"),
            ("SESAM_LDAP_BASE_DN", "dc=example,dc=dk"),
        ];
        let d = Config::load(None, env(&base)).unwrap().directory.unwrap();
        assert_eq!(
            d.groups,
            RoleGroups::default(),
            "no group: Sesam sets the roles"
        );
        assert_eq!(d.sync_interval_seconds, 0, "no scheduled sync by default");

        let mut vars = base.to_vec();
        vars.push((
            "SESAM_LDAP_ADMIN_GROUP",
            "CN=Sesam admins, OU=Groups,DC=example,DC=dk",
        ));
        vars.push((
            "SESAM_LDAP_PILOT_GROUP",
            "cn=pilot\\, wave 1,dc=example,dc=dk",
        ));
        vars.push(("SESAM_LDAP_SYNC_INTERVAL_SECONDS", "900"));
        let d = Config::load(None, env(&vars)).unwrap().directory.unwrap();
        assert_eq!(
            d.groups.admin.as_deref(),
            Some("CN=Sesam admins, OU=Groups,DC=example,DC=dk")
        );
        assert!(d.groups.pilot.is_some() && d.groups.password_only.is_none());
        assert_eq!(d.sync_interval_seconds, 900);

        for (key, value) in [
            ("SESAM_LDAP_ADMIN_GROUP", "Sesam admins"),
            ("SESAM_LDAP_PILOT_GROUP", "cn=pilot,,dc=example"),
            ("SESAM_LDAP_PASSWORD_ONLY_GROUP", "cn=robots,dc=example,"),
            ("SESAM_LDAP_ADMIN_GROUP", "=admins,dc=example"),
            ("SESAM_LDAP_ADMIN_GROUP", "cn=a\\qdmins,dc=example"),
            ("SESAM_LDAP_ADMIN_GROUP", "cn=admins,dc=\"example\""),
        ] {
            let mut bad = base.to_vec();
            bad.push((key, value));
            let e = Config::load(None, env(&bad)).unwrap_err().to_string();
            let name = key.trim_start_matches("SESAM_").to_lowercase();
            assert!(
                e.starts_with(&format!("{name}:")) && e.contains("is not a DN"),
                "{value}: {e}"
            );
        }
        for (value, expected) in [
            ("-5", "outside"),
            ("soon", "whole number"),
            ("604801", "outside"),
        ] {
            let mut bad = base.to_vec();
            bad.push(("SESAM_LDAP_SYNC_INTERVAL_SECONDS", value));
            let e = Config::load(None, env(&bad)).unwrap_err().to_string();
            assert!(
                e.contains("LDAP_SYNC_INTERVAL_SECONDS")
                    || e.contains("ldap_sync_interval_seconds"),
                "{e}"
            );
            assert!(e.contains(expected), "{value}: {e}");
        }
        // Without a directory, neither a group nor a schedule means anything.
        let e = Config::load(None, env(&[("SESAM_LDAP_ADMIN_GROUP", "cn=a,dc=x")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ldap_urls:"), "{e}");
        let e = Config::load(None, env(&[("SESAM_LDAP_SYNC_INTERVAL_SECONDS", "60")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("ldap_sync_interval_seconds:"), "{e}");
    }

    #[test]
    fn the_upstream_needs_its_client_and_hashes_a_cpr_claim_only_with_a_key() {
        assert!(Config::load(None, env(&[])).unwrap().upstream.is_none());
        let secret = file("s3cret\n");
        let path = secret.path().to_str().unwrap().to_owned();
        let base = [
            ("SESAM_UPSTREAM_ISSUER", "https://broker.example.dk/"),
            ("SESAM_UPSTREAM_CLIENT_ID", "sesam"),
            ("SESAM_UPSTREAM_CLIENT_SECRET_FILE", path.as_str()),
        ];
        let up = Config::load(None, env(&base)).unwrap().upstream.unwrap();
        assert_eq!(up.issuer, "https://broker.example.dk");
        assert_eq!(up.client_secret.expose(), "s3cret");
        assert_eq!(
            (up.link_claim.as_str(), up.label.as_str()),
            ("sub", "MitID")
        );
        assert_eq!(up.level, sesam_core::AssuranceLevel::Substantial);
        assert!(!up.link_with_password);

        let e = Config::load(None, env(&base[..2])).unwrap_err().to_string();
        assert!(e.starts_with("upstream_client_secret:"), "{e}");
        let e = Config::load(None, env(&base[1..])).unwrap_err().to_string();
        assert!(e.starts_with("upstream_issuer:"), "{e}");
        let mut cpr = base.to_vec();
        cpr.push(("SESAM_UPSTREAM_LINK_CLAIM", "dk:gov:cpr"));
        let e = Config::load(None, env(&cpr)).unwrap_err().to_string();
        assert!(e.starts_with("upstream_link_key:"), "{e}");
        cpr.push((
            "SESAM_UPSTREAM_LINK_KEY",
            "0123456789abcdef0123456789abcdef",
        ));
        assert!(Config::load(None, env(&cpr)).is_ok());
        // A claim the user can change at the upstream never links an account, keyed or not.
        for claim in ["email", "preferred_username", " Email ", "name"] {
            let mut mutable = base.to_vec();
            mutable.push(("SESAM_UPSTREAM_LINK_CLAIM", claim));
            mutable.push((
                "SESAM_UPSTREAM_LINK_KEY",
                "0123456789abcdef0123456789abcdef",
            ));
            let e = Config::load(None, env(&mutable)).unwrap_err().to_string();
            assert!(e.starts_with("upstream_link_claim:"), "{claim}: {e}");
            assert!(e.contains("can be changed"), "{claim}: {e}");
        }
        // A broker's own acr values, mapped to levels; a bad entry is a start-up error.
        let mut mapped = base.to_vec();
        mapped.push((
            "SESAM_UPSTREAM_ACR_MAP",
            "urn:broker:loa:2=substantial, urn:broker:loa:1=low",
        ));
        let up = Config::load(None, env(&mapped)).unwrap().upstream.unwrap();
        assert_eq!(
            up.acr_map,
            vec![
                (
                    "urn:broker:loa:2".to_owned(),
                    sesam_core::AssuranceLevel::Substantial
                ),
                (
                    "urn:broker:loa:1".to_owned(),
                    sesam_core::AssuranceLevel::Low
                ),
            ]
        );
        for entry in ["urn:broker:loa:2", "=high", "urn:x=medium", "a=low,a=high"] {
            let mut bad = base.to_vec();
            bad.push(("SESAM_UPSTREAM_ACR_MAP", entry));
            let e = Config::load(None, env(&bad)).unwrap_err().to_string();
            assert!(e.starts_with("upstream_acr_map:"), "{entry}: {e}");
        }
        let mut bad = base.to_vec();
        bad.push(("SESAM_UPSTREAM_LEVEL", "medium"));
        let e = Config::load(None, env(&bad)).unwrap_err().to_string();
        assert!(e.starts_with("upstream_level:"), "{e}");
        // The secret never goes over plain http, except to this machine.
        for (issuer, ok) in [
            ("http://broker.example.dk", false),
            ("http://127.0.0.1.example.dk", false),
            ("ftp://broker.example.dk", false),
            ("http://127.0.0.1:8443", true),
            ("http://localhost:8443", true),
        ] {
            let mut with = base[1..].to_vec();
            with.push(("SESAM_UPSTREAM_ISSUER", issuer));
            let loaded = Config::load(None, env(&with));
            assert_eq!(loaded.is_ok(), ok, "{issuer}");
            if let Err(e) = loaded {
                assert!(e.to_string().starts_with("upstream_issuer:"), "{e}");
            }
        }
    }

    #[test]
    fn problems_name_the_key() {
        let unknown = file("lissten = \"x\"\n");
        let e = Config::load(Some(unknown.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lissten") && e.contains("line 1"), "{e}");

        let bad_listen = file("listen = \"localhost\"\n");
        let e = Config::load(Some(bad_listen.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("listen:"), "{e}");

        let e = Config::load(None, env(&[("SESAM_DEMO", "perhaps")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SESAM_DEMO"), "{e}");

        let e = Config::load(None, env(&[("SESAM_DATABASE_URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("database_url:"), "{e}");

        let wrong_type = file("demo = \"yes\"\n");
        let e = Config::load(Some(wrong_type.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("demo") || e.contains("boolean"), "{e}");
    }
}
