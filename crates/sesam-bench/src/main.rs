//! `sesam-bench`: starts a release Sesam in its own process, seeds it, measures the crypto
//! bounds, drives the logins and reports throughput, latency and memory against the targets.
#![forbid(unsafe_code)]

mod bounds;
mod browser;
mod callgrind;
mod memory;
mod report;
mod scenarios;
mod seed;
mod server;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use sesam_store::Store;

use crate::report::{Report, ScenarioReport};
use crate::scenarios::{Scenario, Target};
use crate::server::SesamProcess;

#[derive(Parser, Debug, serde::Serialize)]
#[command(
    name = "sesam-bench",
    about = "Load benchmark: Sesam's login throughput, latency and memory against the crypto bounds"
)]
pub struct Options {
    /// Users of each kind (with the app; with a password only). At least --concurrency.
    #[arg(long, default_value_t = 200)]
    users: usize,
    /// Concurrent virtual users (browsers with their phones).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds each scenario runs.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds each bound is measured.
    #[arg(long, default_value_t = 3)]
    bound_duration: u64,
    /// Database Sesam uses; a new SQLite file in a temporary directory when absent.
    /// Users and clients are added under fresh names, so a used database is fine.
    #[arg(long)]
    #[serde(skip)]
    database_url: Option<String>,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "saml,saml-sso,oidc,oidc-sso,refresh,password"
    )]
    scenarios: Vec<Scenario>,
    /// Pending challenges held open (each with an event stream) for the memory test; 0 skips it.
    #[arg(long, default_value_t = 10_000)]
    waiting: usize,
    /// After each scenario, list the SQL statements it ran, by text, per login.
    #[arg(long)]
    statement_breakdown: bool,
    /// Run Sesam under valgrind's callgrind and report the instructions it executes per login
    /// (they repeat where CPU time does not). Many times slower: use few users, a concurrency
    /// of 2-4, `--waiting 0`; CPU and latency figures of such a run are valgrind's.
    #[arg(long)]
    instructions: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run Sesam itself (how the benchmark starts its server process).
    #[arg(long, hide = true)]
    #[serde(skip)]
    serve: bool,
}

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    let outcome = if options.serve {
        server::serve()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(options)))
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sesam-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> anyhow::Result<()> {
    ensure!(
        options.users >= options.concurrency && options.concurrency > 0,
        "--users must be at least --concurrency (each virtual user has users of its own)"
    );
    let temp = tempfile::tempdir()?;
    let database_url = options
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/sesam.db", temp.path().display()));
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let load_before = load_average();

    let step = |what: &str| eprintln!("[{}] {what}", elapsed_label());
    step("seeding the database");
    let store = Store::connect(&database_url)
        .await
        .context("opening the database")?;
    store.migrate().await?;
    let seeded = seed::seed(&store, &tag, options.users, options.waiting).await?;

    step("starting Sesam");
    let callgrind = if options.instructions {
        let dir = temp.path().join("callgrind");
        std::fs::create_dir_all(&dir)?;
        Some(callgrind::Callgrind::new(&dir))
    } else {
        None
    };
    let mut sesam = SesamProcess::start(&database_url, callgrind.as_ref()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = sesam.memory()?;
    step(&format!(
        "Sesam (pid {}) listens at {}; idle RSS {:.1} MB",
        sesam.pid,
        sesam.base_url,
        idle.rss as f64 / 1048576.0
    ));

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(options.concurrency * 4)
        .build()?;
    step("enrolling apps");
    let app_users = seed::enrol(&sesam.base_url, seeded.app_users, &http, 8).await?;
    let waiting_users = seed::enrol(&sesam.base_url, seeded.waiting_users, &http, 8).await?;

    let idp_cert = idp_certificate(&http, &sesam.base_url).await?;
    let oidc_pem = store
        .signing_key("oidc-rs256")
        .await?
        .context("Sesam stored no RS256 key")?;
    let target = Arc::new(Target {
        base: sesam.base_url.clone(),
        http: http.clone(),
        app_users,
        password_users: seeded.password_users,
        oidc_key: sesam_oidc::SigningKey::from_pem(oidc_pem.as_bytes())?,
        oidc: seeded.oidc,
        sp: seeded.sp,
        idp_cert,
        concurrency: options.concurrency,
    });

    // The bounds are measured before and after the scenarios and the better of the two is
    // kept: other work on a shared machine only ever lowers them.
    step("measuring the bounds");
    let each = Duration::from_secs(options.bound_duration);
    let bounds_before = tokio::task::spawn_blocking(move || bounds::measure(each)).await??;

    // The memory test runs before any password login: argon2's 19 MiB blocks stay in the
    // allocator's arenas afterwards and would be counted as the streams' memory.
    let mut waiting_users = Some(waiting_users);
    let mut waiting = None;
    let mut measured = Vec::new();
    for &scenario in &options.scenarios {
        if scenario == Scenario::Password {
            waiting = hold_waiting(&sesam, &http, waiting_users.take())
                .await
                .or(waiting);
        }
        step(&format!("scenario {}", scenario.name()));
        // Set-up (a refresh token, a logged-in browser) happens before the counters are read.
        let users = scenarios::prepare(&target, scenario).await;
        let statements = sesam.statements().await?;
        let by_text = if options.statement_breakdown {
            Some(sesam.statements_by_text().await?)
        } else {
            None
        };
        if let Some(c) = &callgrind {
            c.start(sesam.pid).await?;
        }
        let sesam_cpu = sesam.cpu_time();
        let own_cpu = server::cpu_time("self");
        let started = Instant::now();
        let duration = Duration::from_secs(options.duration);
        let (outcome, peak_rss) = server::with_peak_rss(
            &sesam,
            scenarios::run(target.clone(), scenario, users, duration),
        )
        .await;
        let wall = started.elapsed().as_secs_f64();
        let cores = (sesam.cpu_time() - sesam_cpu).as_secs_f64() / wall;
        let generator = (server::cpu_time("self") - own_cpu).as_secs_f64() / wall;
        let statements = sesam.statements().await? - statements;
        let instructions = match &callgrind {
            Some(c) => Some(c.stop(sesam.pid).await?),
            None => None,
        };
        if let Some(before) = by_text {
            let after = sesam.statements_by_text().await?;
            print_breakdown(scenario.name(), &before, &after, outcome.logins);
        }
        measured.push((
            outcome,
            peak_rss,
            cores,
            generator,
            statements,
            instructions,
        ));
    }
    waiting = hold_waiting(&sesam, &http, waiting_users.take())
        .await
        .or(waiting);

    step("measuring the bounds again");
    let bounds_after = tokio::task::spawn_blocking(move || bounds::measure(each)).await??;
    let bounds = bounds_before.best_of(bounds_after);
    let scenario_reports: Vec<ScenarioReport> = measured
        .into_iter()
        .map(
            |(outcome, peak, sesam_cores, generator_cores, statements, instructions)| {
                ScenarioReport::new(outcome, &bounds, peak, sesam_cores, generator_cores)
                    .with_statements(statements)
                    .with_instructions(instructions)
            },
        )
        .collect();

    let peak = sesam.memory()?.peak;
    sesam.stop().await;

    let load = (load_before, load_average());
    let report = Report::new(
        &options,
        load,
        idle.rss,
        peak,
        bounds,
        scenario_reports,
        waiting,
    );
    println!("{}", report.markdown());
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The memory test, if it is asked for and has not run yet.
async fn hold_waiting(
    sesam: &SesamProcess,
    http: &reqwest::Client,
    users: Option<Vec<seed::AppUser>>,
) -> Option<memory::Waiting> {
    let users = users.filter(|u| !u.is_empty())?;
    eprintln!(
        "[{}] opening {} waiting logins",
        elapsed_label(),
        users.len()
    );
    let names: Vec<String> = users.into_iter().map(|u| u.username).collect();
    Some(memory::pending_with_streams(sesam, http, &names, 64).await)
}

/// Sesam's SAML signing certificate (DER), as an SP reads it from the metadata.
async fn idp_certificate(http: &reqwest::Client, base: &str) -> anyhow::Result<Vec<u8>> {
    let metadata = http
        .get(format!("{base}/saml/metadata"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let start = metadata
        .find("X509Certificate>")
        .context("no certificate in the SAML metadata")?
        + "X509Certificate>".len();
    let end = metadata[start..].find('<').context("bad metadata")? + start;
    Ok(sesam_saml::Certificate::from_base64(&metadata[start..end])?
        .der()
        .to_vec())
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every number.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Seconds since the start of the run, for progress lines.
fn elapsed_label() -> String {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    format!(
        "{:6.1}s",
        START.get_or_init(Instant::now).elapsed().as_secs_f64()
    )
}

/// The statements a scenario ran, most frequent first, as counts per login.
fn print_breakdown(
    scenario: &str,
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
    logins: u64,
) {
    let mut ran: Vec<(u64, &str)> = after
        .iter()
        .map(|(text, n)| (n - before.get(text).copied().unwrap_or(0), text.as_str()))
        .filter(|(n, _)| *n > 0)
        .collect();
    ran.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let logins = logins.max(1) as f64;
    println!("\nSQL statements per login, scenario {scenario}:\n");
    println!("| per login | statement |\n|---:|---|");
    for (n, text) in ran {
        let text: String = text.chars().take(140).collect();
        println!(
            "| {:.2} | `{}` |",
            n as f64 / logins,
            text.replace('|', "\\|")
        );
    }
}
