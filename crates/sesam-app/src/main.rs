//! `sesam-app`: the reference MFA app on the command line — enrol, list and answer requests.
//! A thin edge over the `sesam_app` library; errors become `anyhow` and an exit status here.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{ArgGroup, Args, Parser, Subcommand};
use sesam_app::{
    unix_now, Answer, AppClient, ChallengeView, ClientError, DeviceUpdate, DeviceView,
    EnrolOptions, Profile,
};
use tokio::io::{AsyncBufReadExt as _, BufReader};

#[derive(Debug, Parser)]
#[command(name = "sesam-app", version, about = "The reference Sesam MFA app")]
struct Cli {
    /// The profile file holding the device key.
    #[arg(
        long,
        global = true,
        env = "SESAM_APP_PROFILE",
        default_value = "./sesam-app.json"
    )]
    profile: PathBuf,
    /// Print the server's answers as JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a device key, enrol it with an activation code and save the profile.
    Enroll(EnrollArgs),
    /// List the requests waiting for this device.
    Pending,
    /// Answer one request.
    Answer(AnswerArgs),
    /// Scan a login's QR code (give its text), show the request and confirm or refuse it.
    Scan(ScanArgs),
    /// Poll for requests and answer them interactively; Ctrl-C ends.
    Watch {
        /// Seconds between polls.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
        interval: u64,
    },
    /// Show this device, or update or remove it.
    Device {
        #[command(subcommand)]
        action: Option<DeviceAction>,
    },
}

#[derive(Debug, Args)]
struct EnrollArgs {
    /// Sesam's base URL, e.g. https://login.example.dk
    #[arg(long)]
    server: String,
    /// The one-time activation code.
    #[arg(long)]
    code: String,
    /// The name the user sees for this device.
    #[arg(long, default_value = "sesam-app")]
    name: String,
    #[arg(long, default_value = "ios", value_parser = ["ios", "android", "desktop", "other"])]
    platform: String,
    #[arg(long, default_value = "3.0.0")]
    app_version: String,
    /// Length of the PIN guarding the app (0: none).
    #[arg(long, default_value_t = 6)]
    pin_length: u32,
    #[command(flatten)]
    push: PushArgs,
    /// Replace an existing profile (its device stays enrolled on the server).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct PushArgs {
    #[arg(long, value_parser = ["apns", "fcm"], requires = "push_token")]
    push_provider: Option<String>,
    #[arg(long, requires = "push_provider")]
    push_token: Option<String>,
}

impl PushArgs {
    fn pair(&self) -> Option<(String, String)> {
        match (&self.push_provider, &self.push_token) {
            (Some(provider), Some(token)) => Some((provider.clone(), token.clone())),
            _ => None,
        }
    }
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("reply")
        .required(true)
        .args(["code", "deny", "report_fraud"])
))]
struct AnswerArgs {
    /// The challenge id, as `pending` shows it.
    #[arg(long)]
    challenge: String,
    /// Approve with the two-digit code the browser shows (passwordless and after a password).
    #[arg(long)]
    code: Option<String>,
    /// Refuse the request.
    #[arg(long)]
    deny: bool,
    /// Refuse and report it as not you: locks passwordless sign-in for your account.
    #[arg(long)]
    report_fraud: bool,
}

impl AnswerArgs {
    fn answer(&self) -> Answer {
        match &self.code {
            Some(code) => Answer::Code(code.clone()),
            None if self.report_fraud => Answer::ReportFraud,
            None => Answer::Deny,
        }
    }
}

#[derive(Debug, Args)]
struct ScanArgs {
    /// The QR code's text, as a scanner reads it (`sesam-login:v1:...`).
    payload: String,
    /// Confirm without asking: the scan proved this phone saw the login's screen.
    #[arg(long, conflicts_with_all = ["deny", "report_fraud"])]
    yes: bool,
    /// Refuse the request.
    #[arg(long, conflicts_with = "report_fraud")]
    deny: bool,
    /// Refuse and report it as not you: locks passwordless sign-in for your account.
    #[arg(long)]
    report_fraud: bool,
}

impl ScanArgs {
    /// The reply the flags give; `None`: ask.
    fn answer(&self) -> Option<Answer> {
        if self.yes {
            Some(Answer::ConfirmScan)
        } else if self.deny {
            Some(Answer::Deny)
        } else if self.report_fraud {
            Some(Answer::ReportFraud)
        } else {
            None
        }
    }
}

#[derive(Debug, Subcommand)]
enum DeviceAction {
    /// Show the device and whether it can be used for passwordless sign-in.
    Show,
    /// Change what Sesam knows about the device.
    Update(UpdateArgs),
    /// Remove the device from Sesam and delete the profile file.
    Remove,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["name", "app_version", "pin_length", "push_provider", "no_push"])
))]
struct UpdateArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    app_version: Option<String>,
    #[arg(long)]
    pin_length: Option<u32>,
    #[command(flatten)]
    push: PushArgs,
    /// Remove the push token.
    #[arg(long, conflicts_with = "push_provider")]
    no_push: bool,
}

impl UpdateArgs {
    fn update(&self) -> DeviceUpdate {
        let push = if self.no_push {
            Some(None)
        } else {
            self.push.pair().map(Some)
        };
        DeviceUpdate {
            push,
            app_version: self.app_version.clone(),
            pin_length: self.pin_length,
            display_name: self.name.clone(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesam-app: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Enroll(args) => enroll(&cli.profile, &args, json).await,
        Command::Pending => {
            let pending = client(&cli.profile)?.pending().await?;
            if json {
                print_json(&pending)
            } else if pending.is_empty() {
                println!("no pending requests");
                Ok(())
            } else {
                let now = unix_now();
                for challenge in &pending {
                    println!("{}", describe(challenge, now));
                }
                Ok(())
            }
        }
        Command::Answer(args) => {
            let result = client(&cli.profile)?
                .answer(&args.challenge, &args.answer())
                .await?;
            if json {
                print_json(&result)
            } else {
                println!("{}", result.status);
                Ok(())
            }
        }
        Command::Scan(args) => scan(&client(&cli.profile)?, &args, json).await,
        Command::Watch { interval } => {
            watch(&client(&cli.profile)?, Duration::from_secs(interval)).await
        }
        Command::Device { action } => {
            let client = client(&cli.profile)?;
            match action.unwrap_or(DeviceAction::Show) {
                DeviceAction::Show => show_device(&client.device().await?, json),
                DeviceAction::Update(args) => {
                    show_device(&client.update_device(&args.update()).await?, json)
                }
                DeviceAction::Remove => {
                    client.delete_device().await?;
                    std::fs::remove_file(&cli.profile).with_context(|| {
                        format!("device removed, but {} remains", cli.profile.display())
                    })?;
                    println!(
                        "device {} removed; {} deleted",
                        client.profile().device_id,
                        cli.profile.display()
                    );
                    Ok(())
                }
            }
        }
    }
}

fn client(profile: &Path) -> anyhow::Result<AppClient> {
    let profile =
        Profile::load(profile).context("no usable profile; run `sesam-app enroll` first")?;
    Ok(AppClient::from_profile(profile))
}

async fn enroll(path: &Path, args: &EnrollArgs, json: bool) -> anyhow::Result<()> {
    // Checked first: the activation code is one-time, and an overwritten key is lost.
    if path.exists() && !args.force {
        bail!(
            "{} already exists; use another --profile or --force",
            path.display()
        );
    }
    let opts = EnrolOptions {
        display_name: args.name.clone(),
        platform: args.platform.clone(),
        app_version: args.app_version.clone(),
        pin_length: args.pin_length,
        push: args.push.pair(),
    };
    let (client, device) = AppClient::enroll(&args.server, &args.code, opts).await?;
    client.profile().save(path).with_context(|| {
        format!(
            "device {} was enrolled but its key could not be saved",
            device.device_id
        )
    })?;
    if json {
        return print_json(&device);
    }
    println!(
        "enrolled device {} for {} (profile: {})",
        device.device_id,
        device.username,
        path.display()
    );
    print!("{}", eligibility(&device));
    Ok(())
}

fn show_device(device: &DeviceView, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(device);
    }
    println!("device:     {}", device.device_id);
    println!("user:       {}", device.username);
    println!("name:       {}", device.display_name);
    println!(
        "platform:   {} (app {})",
        device.platform, device.app_version
    );
    println!("PIN length: {}", device.pin_length);
    println!(
        "push:       {}",
        device.push_provider.as_deref().unwrap_or("none")
    );
    print!("{}", eligibility(device));
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// "passwordless: eligible", or "not eligible" and one indented line per reason.
fn eligibility(device: &DeviceView) -> String {
    let mut text = format!(
        "passwordless: {}\n",
        if device.passwordless.eligible {
            "eligible"
        } else {
            "not eligible"
        }
    );
    for reason in &device.passwordless.reasons {
        text.push_str(&format!("  - {reason}\n"));
    }
    text
}

/// One line per request: id, kind, service and where it comes from.
fn describe(challenge: &ChallengeView, now: i64) -> String {
    let unknown =
        |v: &Option<String>, what: &str| v.clone().unwrap_or_else(|| format!("unknown {what}"));
    let mut line = format!(
        "{}  {:<7}  {}  from {} on {}, IP {}",
        challenge.id,
        challenge.kind,
        challenge.service,
        unknown(&challenge.browser, "browser"),
        unknown(&challenge.os, "OS"),
        unknown(&challenge.client_ip, "address"),
    );
    if let Some(location) = &challenge.location {
        line.push_str(&format!(" ({location})"));
    }
    let left = challenge.expires_at - now;
    if left > 0 {
        line.push_str(&format!(", expires in {left} s"));
    } else {
        line.push_str(", expired");
    }
    line
}

/// Scans, shows the request, and answers it with the flags' reply or the one typed.
async fn scan(client: &AppClient, args: &ScanArgs, json: bool) -> anyhow::Result<()> {
    let scanned = client.scan(&args.payload).await?;
    let challenge = &scanned.challenge;
    if !json {
        println!("request: {}", describe(challenge, unix_now()));
    }
    let answer = match args.answer() {
        Some(answer) => answer,
        None => {
            let mut stdin = BufReader::new(tokio::io::stdin()).lines();
            loop {
                print!("approve this login? (y: yes, n: deny, f: not me): ");
                std::io::stdout().flush()?;
                let Some(line) = stdin.next_line().await? else {
                    bail!("no reply; the request was left unanswered");
                };
                match line.trim().to_ascii_lowercase().as_str() {
                    "y" | "yes" => break Answer::ConfirmScan,
                    "n" | "no" | "d" | "deny" => break Answer::Deny,
                    "f" | "fraud" => break Answer::ReportFraud,
                    _ => continue,
                }
            }
        }
    };
    let result = client.answer(&challenge.id, &answer).await?;
    if json {
        print_json(&serde_json::json!({ "challenge": challenge, "status": result.status }))
    } else {
        println!("{}", result.status);
        Ok(())
    }
}

/// What a typed reply means; `None` asks again. An empty reply skips the request. Every
/// request, a step-up after a password too, is approved only with the number in the browser.
fn parse_reply(reply: &str) -> Option<Option<Answer>> {
    let reply = reply.trim().to_ascii_lowercase();
    match reply.as_str() {
        "" | "s" | "skip" => Some(None),
        "f" | "fraud" => Some(Some(Answer::ReportFraud)),
        "n" | "no" | "d" | "deny" => Some(Some(Answer::Deny)),
        code if code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()) => {
            Some(Some(Answer::Code(code.to_owned())))
        }
        _ => None,
    }
}

type StdinLines = tokio::io::Lines<BufReader<tokio::io::Stdin>>;

async fn watch(client: &AppClient, interval: Duration) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    println!(
        "watching for requests to {} on {}; Ctrl-C ends",
        client.profile().username,
        client.profile().server
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            more = answer_new(client, &mut seen, &mut stdin) => {
                if !more? {
                    return Ok(());
                }
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Shows and answers each request not seen before. `Ok(false)` when stdin has ended.
async fn answer_new(
    client: &AppClient,
    seen: &mut HashSet<String>,
    stdin: &mut StdinLines,
) -> anyhow::Result<bool> {
    let pending = match client.pending().await {
        Ok(pending) => pending,
        // The device was removed or its key refused: polling on is pointless.
        Err(e @ ClientError::Refused { status: 401, .. }) => return Err(e.into()),
        Err(e) => {
            eprintln!("could not fetch requests: {e}");
            return Ok(true);
        }
    };
    for challenge in pending {
        if !seen.insert(challenge.id.clone()) || challenge.expires_at <= unix_now() {
            continue;
        }
        println!("\nnew request: {}", describe(&challenge, unix_now()));
        let answer = loop {
            print!("code shown in the browser (n: deny, f: not me, empty: skip): ");
            std::io::stdout().flush()?;
            let Some(line) = stdin.next_line().await? else {
                return Ok(false);
            };
            if let Some(answer) = parse_reply(&line) {
                break answer;
            }
        };
        let Some(answer) = answer else {
            println!("skipped");
            continue;
        };
        match client.answer(&challenge.id, &answer).await {
            Ok(result) => println!("{}", result.status),
            Err(e) => eprintln!("could not answer: {e}"),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sesam-app").chain(args.iter().copied()))
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn scan_takes_the_payload_and_at_most_one_reply() {
        let Command::Scan(args) = parse(&["scan", "sesam-login:v1:c1:t"]).unwrap().command else {
            panic!("not scan")
        };
        assert_eq!(
            (args.payload.as_str(), args.answer()),
            ("sesam-login:v1:c1:t", None)
        );
        let Command::Scan(args) = parse(&["scan", "p", "--yes"]).unwrap().command else {
            panic!("not scan")
        };
        assert_eq!(args.answer(), Some(Answer::ConfirmScan));
        assert!(parse(&["scan", "p", "--yes", "--deny"]).is_err());
        assert!(parse(&["scan"]).is_err());
    }

    #[test]
    fn answer_takes_exactly_one_reply() {
        let cli = parse(&["answer", "--challenge", "c1", "--code", "42"]).unwrap();
        let Command::Answer(args) = cli.command else {
            panic!("not answer")
        };
        assert_eq!(args.answer(), Answer::Code("42".into()));
        for (flag, answer) in [
            ("--deny", Answer::Deny),
            ("--report-fraud", Answer::ReportFraud),
        ] {
            let Command::Answer(args) = parse(&["answer", "--challenge", "c", flag])
                .unwrap()
                .command
            else {
                panic!("not answer")
            };
            assert_eq!(args.answer(), answer);
        }
        assert!(parse(&["answer", "--challenge", "c1"]).is_err());
        assert!(parse(&["answer", "--challenge", "c1", "--deny", "--report-fraud"]).is_err());
        assert!(
            parse(&["answer", "--challenge", "c1", "--approve"]).is_err(),
            "no plain approval: only the code approves"
        );
        assert!(parse(&["answer", "--challenge", "c1", "--code", "42", "--deny"]).is_err());
    }

    #[test]
    fn enroll_defaults_and_push_pairing() {
        let cli = parse(&["enroll", "--server", "http://s", "--code", "X"]).unwrap();
        assert_eq!(cli.profile, PathBuf::from("./sesam-app.json"));
        let Command::Enroll(args) = cli.command else {
            panic!("not enroll")
        };
        assert_eq!(
            (
                args.name.as_str(),
                args.platform.as_str(),
                args.app_version.as_str()
            ),
            ("sesam-app", "ios", "3.0.0")
        );
        assert_eq!(args.pin_length, 6);
        assert_eq!(args.push.pair(), None);
        assert!(parse(&[
            "enroll",
            "--server",
            "s",
            "--code",
            "X",
            "--push-provider",
            "fcm"
        ])
        .is_err());
        assert!(parse(&[
            "enroll",
            "--server",
            "s",
            "--code",
            "X",
            "--platform",
            "nokia"
        ])
        .is_err());
        let cli = parse(&[
            "--profile",
            "/tmp/p.json",
            "enroll",
            "--server",
            "s",
            "--code",
            "X",
            "--push-provider",
            "apns",
            "--push-token",
            "t",
        ])
        .unwrap();
        assert_eq!(cli.profile, PathBuf::from("/tmp/p.json"));
        let Command::Enroll(args) = cli.command else {
            panic!("not enroll")
        };
        assert_eq!(args.push.pair(), Some(("apns".into(), "t".into())));
    }

    #[test]
    fn device_update_maps_flags_to_the_update() {
        let update = |args: &[&str]| {
            let mut all = vec!["device", "update"];
            all.extend_from_slice(args);
            match parse(&all).map(|c| c.command) {
                Ok(Command::Device {
                    action: Some(DeviceAction::Update(u)),
                }) => Ok(u.update()),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(update(&["--no-push"]).unwrap().push, Some(None));
        let u = update(&["--name", "N", "--pin-length", "4"]).unwrap();
        assert_eq!(u.push, None);
        assert_eq!(u.display_name.as_deref(), Some("N"));
        assert_eq!(u.pin_length, Some(4));
        assert!(update(&[]).is_err());
        assert!(update(&["--no-push", "--push-provider", "fcm", "--push-token", "t"]).is_err());
    }

    #[test]
    fn replies_approve_only_with_the_code() {
        assert_eq!(parse_reply(" 42\n"), Some(Some(Answer::Code("42".into()))));
        assert_eq!(parse_reply("y"), None, "no plain yes, even for a step-up");
        assert_eq!(parse_reply("yes"), None);
        assert_eq!(parse_reply("123"), None);
        assert_eq!(parse_reply("4"), None);
        assert_eq!(parse_reply("n"), Some(Some(Answer::Deny)));
        assert_eq!(parse_reply("f"), Some(Some(Answer::ReportFraud)));
        assert_eq!(parse_reply(""), Some(None));
    }

    #[test]
    fn pending_lines_show_the_context() {
        let mut challenge = ChallengeView {
            id: "c1".into(),
            kind: "code".into(),
            service: "Intranet".into(),
            created_at: 1000,
            expires_at: 1120,
            browser: Some("Firefox".into()),
            os: Some("Linux".into()),
            client_ip: Some("192.0.2.7".into()),
            location: Some("Aarhus, DK".into()),
        };
        assert_eq!(
            describe(&challenge, 1000),
            "c1  code     Intranet  from Firefox on Linux, IP 192.0.2.7 (Aarhus, DK), expires in 120 s"
        );
        challenge.browser = None;
        challenge.location = None;
        let line = describe(&challenge, 2000);
        assert!(line.contains("unknown browser"), "{line}");
        assert!(line.ends_with(", expired"), "{line}");
    }

    #[test]
    fn eligibility_lists_the_reasons() {
        let device: DeviceView = serde_json::from_value(serde_json::json!({
            "device_id": "d", "username": "u", "display_name": "n", "platform": "ios",
            "app_version": "3.0.0", "pin_length": 4, "push_provider": null,
            "passwordless": {"eligible": false, "reasons": ["pin_too_short", "no_push"]}
        }))
        .unwrap();
        assert_eq!(
            eligibility(&device),
            "passwordless: not eligible\n  - pin_too_short\n  - no_push\n"
        );
    }
}
