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
            let server = startup::start(config, clock).await?;
            server.wait_for_stop_signal().await
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
                "  push_provider             = {}",
                if config.push.live { "live" } else { "outbox" }
            );
            Ok(())
        }
        Command::User(cmd) => {
            let store = startup::open_store(&config).await?;
            user_command(&store, clock.as_ref(), cmd).await
        }
        Command::Device(cmd) => {
            let store = startup::open_store(&config).await?;
            let name = match &cmd {
                DeviceCommand::ActivationCode { user } | DeviceCommand::List { user } => {
                    user.clone()
                }
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
                }
            }
            Ok(())
        }
        Command::Settings(cmd) => {
            let store = startup::open_store(&config).await?;
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
            store
                .set_user_status(&user.id, UserStatus::Active, clock.now())
                .await?;
            store.clear_login_failures(&user.username.key()).await?;
            store
                .append_audit(&audit("user.unlocked", user.username.as_str()), clock.now())
                .await?;
            println!("unlocked {}", user.username);
        }
    }
    Ok(())
}
