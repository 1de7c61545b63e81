//! The `sesam` command line: serve (default), migrate, config check, users and settings.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use sesam_core::{Clock, SystemClock, UserStatus, Username};
use sesam_store::{AuditEvent, NewUser, Store};

use crate::config::Config;
use crate::password::{generate_one_time_password, hash_now, MIN_PASSWORD_CHARS};
use crate::startup;

#[derive(Parser)]
#[command(
    name = "sesam",
    version,
    about = "Passwordless SAML 2.0 / OpenID Connect identity provider"
)]
pub struct Cli {
    /// Configuration file (TOML). Without one, defaults and SESAM_* variables apply.
    #[arg(long, short, global = true, env = "SESAM_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve {
        /// Seed demo users (for trying Sesam out; never in production).
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Read and change organisation settings.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// MFA devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// OpenID Connect clients (relying parties).
    #[command(subcommand)]
    OidcClient(OidcClientCommand),
    /// SAML service providers.
    #[command(subcommand)]
    Sp(SpCommand),
    /// The organisation's directory (LDAP / Active Directory).
    #[command(subcommand)]
    Directory(DirectoryCommand),
    /// SCIM 2.0 provisioning clients (an HR system, Entra ID) and their bearer tokens.
    #[command(subcommand)]
    ScimClient(ScimClientCommand),
}

#[derive(Subcommand)]
enum ScimClientCommand {
    /// Register a provisioning client; prints its bearer token (shown only now).
    Add {
        #[arg(long)]
        name: String,
    },
    /// List the clients (their tokens are kept only as hashes).
    List,
    /// Remove a client; its token stops working at once.
    Remove { name: String },
}

#[derive(Subcommand)]
enum DirectoryCommand {
    /// Create, update and disable local users from the directory now; prints what changed.
    /// When the directory cannot be read whole, nothing changes.
    Sync,
}

#[derive(Subcommand)]
enum OidcClientCommand {
    /// Register a client. Prints its client id and, for a confidential client, its secret
    /// (shown only now).
    Add {
        #[arg(long)]
        name: String,
        /// Exactly as the client will send it (repeat for several).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A mobile or browser app without a secret (PKCE is its proof).
        #[arg(long)]
        public: bool,
        /// Where the client may send the user after logout (repeat for several).
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// Sign ID tokens with ES256 instead of RS256.
        #[arg(long)]
        es256: bool,
        /// A different `sub` for this client than for any other.
        #[arg(long)]
        pairwise: bool,
    },
    /// List clients.
    List,
    /// Remove a client with its codes and tokens.
    Remove { client_id: String },
    /// Give a confidential client a new secret; the old one stops working at once.
    RotateSecret { client_id: String },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Make a one-time activation code (valid 10 minutes) to enrol an app for a user.
    ActivationCode {
        #[arg(long)]
        user: String,
    },
    /// List a user's devices and whether each can be used for passwordless login.
    List {
        #[arg(long)]
        user: String,
    },
    /// Give a robot (password-only) account a TOTP secret for scripted Substantial logins;
    /// prints the secret once. Replaces any earlier one.
    TotpEnrol {
        #[arg(long)]
        user: String,
    },
    /// Remove a user's authenticator app (TOTP), e.g. when the phone is lost.
    TotpReset {
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print the effective values (secrets masked).
    Check,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. Prints a one-time password unless --password-stdin is given.
    Add {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// Give the admin role.
        #[arg(long)]
        admin: bool,
        /// Service account or RPA robot: always the password form.
        #[arg(long)]
        password_only: bool,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// List users.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
    /// Set a password. Prints a one-time password unless --password-stdin is given.
    SetPassword {
        username: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Lock a user (no login until unlocked).
    Lock { username: String },
    /// Unlock a user and clear the temporary lock after failed passwords.
    Unlock { username: String },
}

#[derive(Args)]
struct PasswordSource {
    /// Read the password from standard input instead of generating a one-time password.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
enum SettingsCommand {
    /// Show every setting with its current value.
    List,
    /// Change one setting (checked before it is stored).
    Set { key: String, value: String },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sesam: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sesam: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesam: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Option<Command>, mut config: Config) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match command.unwrap_or(Command::Serve { demo: false }) {
        Command::Serve { demo } => {
            config.demo |= demo;
            crate::telemetry::init(&config);
            let signal = startup::StopSignal::install();
            let server = startup::start(config, clock).await?;
            server.stop_on(signal).await
        }
        Command::Directory(DirectoryCommand::Sync) => {
            let Some(directory) = config.directory.clone() else {
                anyhow::bail!("no directory is configured (ldap_urls)");
            };
            let directory = crate::directory::Directory::new(directory)?;
            let store = startup::open_existing_store(&config).await?;
            let report = crate::service::directory::sync(&store, &directory, clock.now()).await?;
            for (what, lines) in [
                ("created", &report.created),
                ("updated", &report.updated),
                ("disabled", &report.disabled),
                ("enabled", &report.enabled),
                ("role", &report.roles),
                ("conflict", &report.conflicts),
                ("unusable", &report.unusable),
            ] {
                for line in lines {
                    println!("{what}: {line}");
                }
            }
            println!(
                "{} created, {} updated, {} disabled, {} enabled, {} role changes, {} conflicts, \
                 {} unusable",
                report.created.len(),
                report.updated.len(),
                report.disabled.len(),
                report.enabled.len(),
                report.roles.len(),
                report.conflicts.len(),
                report.unusable.len()
            );
            Ok(())
        }
        Command::Migrate => {
            let store = Store::connect(&config.database_url).await?;
            let applied = store.migrate().await?;
            println!("{applied} migration(s) applied");
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            println!("configuration is valid");
            println!("  listen                    = {}", config.listen);
            println!("  public_url                = {}", config.public_url);
            println!(
                "  database_url              = {}",
                config.database_url_for_display()
            );
            println!("  log_format                = {:?}", config.log_format);
            println!("  log_level                 = {}", config.log_level);
            println!("  cookie_secure             = {}", config.cookie_secure);
            println!(
                "  trust_forwarded_for       = {}",
                config.trust_forwarded_for
            );
            println!(
                "  password_hash_concurrency = {}",
                config.password_hash_concurrency
            );
            println!("  demo                      = {}", config.demo);
            println!(
                "  totp_key                  = {}",
                if config.totp_key.is_some() {
                    "*** (set)"
                } else {
                    "(not set: no authenticator apps can be added)"
                }
            );
            println!(
                "  metrics_token             = {}",
                if config.metrics_token.is_some() {
                    "*** (set: /metrics answers a scraper that sends it)"
                } else {
                    "(not set: no /metrics)"
                }
            );
            println!(
                "  push_provider             = {}",
                if config.push.live { "live" } else { "outbox" }
            );
            Ok(())
        }
        Command::User(cmd) => {
            let store = startup::open_existing_store(&config).await?;
            user_command(&store, clock.as_ref(), cmd).await
        }
        Command::Device(cmd) => {
            let store = startup::open_existing_store(&config).await?;
            let name = match &cmd {
                DeviceCommand::ActivationCode { user }
                | DeviceCommand::List { user }
                | DeviceCommand::TotpEnrol { user }
                | DeviceCommand::TotpReset { user } => user.clone(),
            };
            let username = Username::parse(&name).with_context(|| format!("{name:?}"))?;
            let user = store
                .find_user_by_username(&username)
                .await?
                .with_context(|| format!("no user named {username}"))?;
            match cmd {
                DeviceCommand::ActivationCode { .. } => {
                    let code = crate::activation::issue(&store, &user.id, clock.now()).await?;
                    store
                        .append_audit(
                            &AuditEvent::new("device.activation_code.issued")
                                .actor("cli")
                                .subject(user.username.as_str()),
                            clock.now(),
                        )
                        .await?;
                    println!(
                        "activation code for {}: {code} (valid {} minutes)",
                        user.username,
                        crate::activation::VALID_SECONDS / 60
                    );
                }
                DeviceCommand::TotpEnrol { .. } => {
                    let secret = crate::service::totp::enrol_robot(
                        &store,
                        config.totp_key.as_ref(),
                        &user,
                        "cli",
                        clock.now(),
                    )
                    .await?;
                    println!(
                        "TOTP secret for {} (shown once): {}",
                        user.username,
                        secret.to_base32()
                    );
                    println!("{}", secret.otpauth_uri("Sesam", user.username.as_str()));
                }
                DeviceCommand::TotpReset { .. } => {
                    let removed =
                        crate::service::totp::reset(&store, &user, "cli", None, clock.now())
                            .await?;
                    if removed {
                        println!("authenticator app (TOTP) removed for {}", user.username);
                    } else {
                        println!("{} has no authenticator app (TOTP)", user.username);
                    }
                }
                DeviceCommand::List { .. } => {
                    let settings = store.load_settings().await?;
                    for d in store.devices_of_user(&user.id).await? {
                        let reasons = d.device.passwordless_ineligibility(&settings);
                        let verdict = if reasons.is_empty() {
                            "passwordless: yes".to_owned()
                        } else {
                            format!(
                                "passwordless: no ({})",
                                reasons
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect::<Vec<_>>()
                                    .join("; ")
                            )
                        };
                        println!(
                            "{}  {:<24} {} {}  {verdict}",
                            d.device.id,
                            d.display_name,
                            d.device.platform.as_str(),
                            d.device.app_version
                        );
                    }
                    if let Some(totp) = store.totp_of_user(&user.id).await? {
                        println!(
                            "{}  {:<24} code display (TOTP){}  passwordless: no (a second factor after the password)",
                            totp.id,
                            totp.display_name,
                            if totp.confirmed { "" } else { ", not yet confirmed" }
                        );
                    }
                }
            }
            Ok(())
        }
        Command::OidcClient(cmd) => {
            let store = startup::open_existing_store(&config).await?;
            oidc_client_command(&store, clock.as_ref(), cmd).await
        }
        Command::ScimClient(cmd) => {
            let store = startup::open_existing_store(&config).await?;
            scim_client_command(&store, clock.as_ref(), cmd).await
        }
        Command::Sp(cmd) => {
            let store = startup::open_existing_store(&config).await?;
            sp_command(&store, clock.as_ref(), cmd).await
        }
        Command::Settings(cmd) => {
            let store = startup::open_existing_store(&config).await?;
            match cmd {
                SettingsCommand::List => {
                    for (key, value) in store.load_settings().await?.to_pairs() {
                        println!("{key} = {value}");
                    }
                }
                SettingsCommand::Set { key, value } => {
                    let now = clock.now();
                    let before = store.set_setting(&key, &value, now).await?;
                    let after = store.load_settings().await?.get(&key)?;
                    store
                        .append_audit(
                            &AuditEvent::new("settings.changed")
                                .actor("cli")
                                .subject(&key)
                                .detail(format!("{before} -> {after}")),
                            now,
                        )
                        .await?;
                    println!("{key} = {after} (was {before})");
                }
            }
            Ok(())
        }
    }
}

fn read_password(source: &PasswordSource) -> anyhow::Result<(String, bool)> {
    if !source.password_stdin {
        return Ok((generate_one_time_password(), true));
    }
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text)?;
    let password = text.trim_end_matches(['\n', '\r']).to_owned();
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password must be at least {MIN_PASSWORD_CHARS} characters");
    }
    Ok((password, false))
}

async fn user_command(store: &Store, clock: &dyn Clock, cmd: UserCommand) -> anyhow::Result<()> {
    let find = |name: String| async move {
        let username = Username::parse(&name).with_context(|| format!("{name:?}"))?;
        store
            .find_user_by_username(&username)
            .await?
            .with_context(|| format!("no user named {username}"))
    };
    let audit = |event: &str, subject: &str| AuditEvent::new(event).actor("cli").subject(subject);
    match cmd {
        UserCommand::Add {
            username,
            display_name,
            email,
            admin,
            password_only,
            password,
        } => {
            let username = Username::parse(&username).with_context(|| format!("{username:?}"))?;
            let (password, one_time) = read_password(&password)?;
            let new = NewUser {
                display_name: display_name.unwrap_or_else(|| username.to_string()),
                username,
                email,
                password_hash: Some(hash_now(&password)?),
                is_admin: admin,
                password_only,
                must_change_password: one_time,
            };
            let user = store.create_user(new, clock.now()).await?;
            store
                .append_audit(&audit("user.created", user.username.as_str()), clock.now())
                .await?;
            println!("created {}", user.username);
            if one_time {
                println!("one-time password: {password}");
            }
        }
        UserCommand::List { limit, offset } => {
            println!(
                "{:<24} {:<28} {:<9} flags",
                "username", "display name", "status"
            );
            for u in store.list_users(limit, offset).await? {
                let mut flags = Vec::new();
                if u.is_admin {
                    flags.push("admin");
                }
                if u.password_only {
                    flags.push("password-only");
                }
                if u.must_change_password {
                    flags.push("must-change-password");
                }
                println!(
                    "{:<24} {:<28} {:<9} {}",
                    u.username,
                    u.display_name,
                    u.status.as_str(),
                    flags.join(",")
                );
            }
        }
        UserCommand::SetPassword { username, password } => {
            let user = find(username).await?;
            let (password, one_time) = read_password(&password)?;
            store
                .set_password(&user.id, &hash_now(&password)?, one_time, clock.now())
                .await?;
            store.clear_login_failures(&user.username.key()).await?;
            crate::service::account::end_other_logins(store, &user, clock.now()).await?;
            store
                .append_audit(&audit("password.set", user.username.as_str()), clock.now())
                .await?;
            println!("password set for {}", user.username);
            if one_time {
                println!("one-time password: {password}");
            }
        }
        UserCommand::Lock { username } => {
            let user = find(username).await?;
            store
                .set_user_status(&user.id, UserStatus::Locked, clock.now())
                .await?;
            store
                .append_audit(&audit("user.locked", user.username.as_str()), clock.now())
                .await?;
            println!("locked {}", user.username);
        }
        UserCommand::Unlock { username } => {
            let user = find(username).await?;
            crate::service::account::unlock_user(store, &user, "cli", None, clock.now()).await?;
            println!("unlocked {}", user.username);
        }
    }
    Ok(())
}

async fn scim_client_command(
    store: &Store,
    clock: &dyn Clock,
    cmd: ScimClientCommand,
) -> anyhow::Result<()> {
    use crate::service::scim;
    let now = clock.now();
    match cmd {
        ScimClientCommand::Add { name } => {
            let (client, token) = match scim::add_client(store, &name, "cli", now).await {
                Ok(done) => done,
                Err(crate::service::ServiceError::Store(sesam_store::StoreError::Conflict(_))) => {
                    bail!("a SCIM client named {} exists already", name.trim())
                }
                Err(e) => return Err(e.into()),
            };
            println!("name:  {}", client.name);
            println!("token: {token}\n(shown only now; Sesam keeps only a hash)");
            println!("SCIM base URL: {{public_url}}/scim/v2");
        }
        ScimClientCommand::List => {
            for c in store.list_scim_clients().await? {
                let since = jiff::Timestamp::from_second(c.created_at)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                println!("{:<32} since {since}", c.name);
            }
        }
        ScimClientCommand::Remove { name } => {
            if !scim::remove_client(store, &name, "cli", now).await? {
                bail!("no SCIM client {name}");
            }
            println!("removed {name}; its token no longer works");
        }
    }
    Ok(())
}

async fn oidc_client_command(
    store: &Store,
    clock: &dyn Clock,
    cmd: OidcClientCommand,
) -> anyhow::Result<()> {
    let now = clock.now();
    match cmd {
        OidcClientCommand::Add {
            name,
            redirect_uris,
            public,
            post_logout_redirect_uris,
            es256,
            pairwise,
        } => {
            let registration = crate::oidc::ClientRegistration {
                name,
                redirect_uris,
                post_logout_redirect_uris,
                public,
                es256,
                pairwise,
            };
            let (client, secret) =
                match crate::oidc::register_client(store, &registration, now).await? {
                    Ok(done) => done,
                    Err(problems) => bail!(
                        "the client was not registered:\n  {}",
                        problems.join("\n  ")
                    ),
                };
            store
                .append_audit(
                    &AuditEvent::new("oidc.client.added")
                        .actor("cli")
                        .subject(&client.client_id)
                        .detail(format!(
                            "{} -> {}",
                            client.name,
                            client.redirect_uris.join(" ")
                        )),
                    now,
                )
                .await?;
            println!("client_id:     {}", client.client_id);
            match secret {
                Some(secret) => {
                    println!("client_secret: {secret}\n(shown only now; Sesam keeps only a hash)")
                }
                None => println!("public client: no secret; PKCE (S256) is required"),
            }
        }
        OidcClientCommand::List => {
            for c in store.list_oidc_clients().await? {
                println!(
                    "{}  {:<24} {:<12} {}{}  {}",
                    c.client_id,
                    c.name,
                    if c.secret_hash.is_some() {
                        "confidential"
                    } else {
                        "public"
                    },
                    c.id_token_alg,
                    if c.enabled { "" } else { " (disabled)" },
                    c.redirect_uris.join(" ")
                );
            }
        }
        OidcClientCommand::Remove { client_id } => {
            if !store.remove_oidc_client(&client_id).await? {
                bail!("no OIDC client {client_id}");
            }
            store
                .append_audit(
                    &AuditEvent::new("oidc.client.removed")
                        .actor("cli")
                        .subject(&client_id),
                    now,
                )
                .await?;
            println!("removed {client_id}");
        }
        OidcClientCommand::RotateSecret { client_id } => {
            let Some(secret) = crate::oidc::rotate_secret(store, &client_id, now).await? else {
                bail!("no confidential OIDC client {client_id}");
            };
            store
                .append_audit(
                    &AuditEvent::new("oidc.client.secret_rotated")
                        .actor("cli")
                        .subject(&client_id),
                    now,
                )
                .await?;
            println!("client_secret: {secret}\n(shown only now; the old secret no longer works)");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum SpCommand {
    /// Register a SAML service provider from its metadata, or update a registered one (same
    /// entity ID) with new metadata and these settings.
    Add {
        /// A metadata file, or an http(s) URL to fetch it from (kept for `sp refresh`).
        #[arg(long)]
        metadata: String,
        /// Shown to the user in the app; defaults to the host of the entity ID.
        #[arg(long)]
        name: Option<String>,
        /// Encrypt assertions to the SP's encryption certificate.
        #[arg(long)]
        encrypt: bool,
        /// Refuse unsigned AuthnRequests.
        #[arg(long)]
        require_signed_requests: bool,
        /// Accept RSA-SHA1 request signatures (legacy SPs only).
        #[arg(long)]
        allow_sha1: bool,
        /// The least level of assurance the SP gets: low or substantial.
        #[arg(long, default_value = "low")]
        min_level: String,
        /// Attributes released, comma-separated: uuid, name, email, orgName.
        #[arg(long, default_value = "uuid,name,email", value_delimiter = ',')]
        attributes: Vec<String>,
        /// Register it switched off.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        choices: SpChoices,
    },
    /// Change the protocol choices of a registered service provider; its metadata and the
    /// choices not given stay.
    Edit {
        entity_id: String,
        #[command(flatten)]
        choices: SpChoices,
    },
    /// Fetch the metadata again from the URL it was added from; settings stay.
    Refresh { entity_id: String },
    /// List service providers.
    List,
    /// Remove a service provider.
    Remove { entity_id: String },
}

/// The per-SP protocol choices `sp add` and `sp edit` take; `None` keeps what is set (for
/// `add` of a new SP: the default).
#[derive(Args)]
struct SpChoices {
    /// How the AES key of an encrypted assertion is wrapped: auto (from the metadata's
    /// EncryptionMethod list, else rsa-oaep-mgf1p), rsa-oaep-mgf1p or rsa-oaep (XML Encryption 1.1).
    #[arg(long)]
    key_transport: Option<String>,
    /// How the assertion is encrypted: auto (from the metadata, else aes256-gcm), aes256-gcm,
    /// aes128-gcm, or for an old SP that reads nothing else (weaker) aes256-cbc or aes128-cbc.
    #[arg(long)]
    data_encryption: Option<String>,
    /// What Sesam signs: assertion (the default), response or both.
    #[arg(long)]
    sign: Option<String>,
    /// The NameID format given when the request asks for none: persistent (the default),
    /// transient or emailAddress.
    #[arg(long)]
    nameid_format: Option<String>,
}

impl SpChoices {
    /// `options` with the choices given applied.
    fn apply(&self, mut options: crate::saml::SpOptions) -> anyhow::Result<crate::saml::SpOptions> {
        use crate::saml::{
            data_encryption_choice, key_transport_choice, name_id_format_choice,
            response_signing_choice,
        };
        if let Some(k) = &self.key_transport {
            options.key_transport = key_transport_choice(k).context("--key-transport")?;
        }
        if let Some(d) = &self.data_encryption {
            options.data_encryption = data_encryption_choice(d).context("--data-encryption")?;
        }
        if let Some(s) = &self.sign {
            options.response_signing = response_signing_choice(s).context("--sign")?;
        }
        if let Some(f) = &self.nameid_format {
            options.nameid_format = name_id_format_choice(f).context("--nameid-format")?;
        }
        Ok(options)
    }
}

async fn sp_command(store: &Store, clock: &dyn Clock, cmd: SpCommand) -> anyhow::Result<()> {
    use crate::saml::{read_metadata, sp_registration, SpOptions};
    let now = clock.now();
    let audit = |event: &str, subject: &str| AuditEvent::new(event).actor("cli").subject(subject);
    match cmd {
        SpCommand::Add {
            metadata,
            name,
            encrypt,
            require_signed_requests,
            allow_sha1,
            min_level,
            attributes,
            disabled,
            choices,
        } => {
            let min_level = match sesam_core::AssuranceLevel::parse(&min_level) {
                Some(level) if level < sesam_core::AssuranceLevel::High => level,
                _ => bail!("--min-level {min_level:?}: choose low or substantial"),
            };
            let (xml, url) = read_metadata(&metadata).await?;
            let options = choices.apply(SpOptions {
                name,
                enabled: !disabled,
                min_level,
                encrypt_assertions: encrypt,
                require_signed_requests,
                allow_sha1,
                released_attributes: attributes
                    .into_iter()
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect(),
                ..SpOptions::default()
            })?;
            let (record, parsed) = sp_registration(&xml, url, &options)?;
            let created = store.upsert_saml_sp(&record, now).await?;
            let event = if created {
                "saml.sp.added"
            } else {
                "saml.sp.updated"
            };
            store
                .append_audit(&audit(event, &record.entity_id), now)
                .await?;
            println!(
                "{} {} ({} ACS, {} signing certificate(s), encryption certificate: {})",
                if created { "added" } else { "updated" },
                record.entity_id,
                parsed.assertion_consumer_services.len(),
                parsed.signing_certificates.len(),
                if parsed.encryption_certificate.is_some() {
                    "yes"
                } else {
                    "no"
                }
            );
        }
        SpCommand::Refresh { entity_id } => {
            let sp = store
                .saml_sp(&entity_id)
                .await?
                .with_context(|| format!("no service provider {entity_id}"))?;
            let url = sp
                .metadata_url
                .clone()
                .with_context(|| format!("{entity_id} was not added from a URL"))?;
            let (xml, url) = read_metadata(&url).await?;
            let (record, _) = sp_registration(&xml, url, &SpOptions::of(&sp))?;
            if record.entity_id != sp.entity_id {
                bail!(
                    "the metadata now names {}, not {entity_id}; nothing changed",
                    record.entity_id
                );
            }
            store.upsert_saml_sp(&record, now).await?;
            store
                .append_audit(&audit("saml.sp.refreshed", &entity_id), now)
                .await?;
            println!("refreshed {entity_id}");
        }
        SpCommand::Edit { entity_id, choices } => {
            let sp = store
                .saml_sp(&entity_id)
                .await?
                .with_context(|| format!("no service provider {entity_id}"))?;
            let options = choices.apply(SpOptions::of(&sp))?;
            let (record, parsed) = sp_registration(
                sp.metadata_xml.as_bytes(),
                sp.metadata_url.clone(),
                &options,
            )?;
            store.upsert_saml_sp(&record, now).await?;
            store
                .append_audit(
                    &audit("saml.sp.changed", &entity_id)
                        .detail(crate::saml::change_summary(&sp, &record)),
                    now,
                )
                .await?;
            let stored = store
                .saml_sp(&entity_id)
                .await?
                .with_context(|| format!("no service provider {entity_id}"))?;
            let encryption = crate::saml::encryption_for(&stored, &parsed);
            println!(
                "changed {entity_id}: key transport {}, data encryption {}{}, signs {}, NameID {}",
                encryption.key_transport.name(),
                encryption.data.name(),
                if encryption.data.is_weaker() {
                    " (weaker)"
                } else {
                    ""
                },
                stored.response_signing,
                crate::saml::default_name_id_format(&stored).name()
            );
        }
        SpCommand::List => {
            for sp in store.list_saml_sps().await? {
                let mut flags = vec![format!("min-level={}", sp.min_level)];
                if !sp.enabled {
                    flags.push("disabled".into());
                }
                if sp.encrypt_assertions {
                    flags.push("encrypt".into());
                }
                if sp.require_signed_requests {
                    flags.push("signed-requests".into());
                }
                if sp.allow_sha1 {
                    flags.push("sha1".into());
                }
                if let Some(k) = &sp.key_transport {
                    flags.push(format!("key-transport={k}"));
                }
                if let Some(d) = &sp.data_encryption {
                    flags.push(format!("data-encryption={d}"));
                }
                flags.push(format!("sign={}", sp.response_signing));
                flags.push(format!(
                    "nameid-format={}",
                    crate::saml::default_name_id_format(&sp).name()
                ));
                flags.push(format!("attributes={}", sp.released_attributes.join(",")));
                println!("{}  {}  {}", sp.entity_id, sp.name, flags.join(" "));
            }
        }
        SpCommand::Remove { entity_id } => {
            if !store.remove_saml_sp(&entity_id).await? {
                bail!("no service provider {entity_id}");
            }
            store
                .append_audit(&audit("saml.sp.removed", &entity_id), now)
                .await?;
            println!("removed {entity_id}");
        }
    }
    Ok(())
}
