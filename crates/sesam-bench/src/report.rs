//! The results as markdown tables (for docs/PERFORMANCE.md) and JSON, with each target of
//! issue 8 checked.

use std::fmt::Write;

use serde::Serialize;

use crate::bounds::Bounds;
use crate::memory::Waiting;
use crate::scenarios::{Outcome, Scenario};
use crate::Options;

const MB: f64 = 1024.0 * 1024.0;

#[derive(Serialize)]
pub struct ScenarioReport {
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The bound this scenario is held against, and its name.
    pub bound: Option<(&'static str, f64)>,
    pub ratio_to_bound: Option<f64>,
    /// The bound's operation: its CPU time, and that as a share of Sesam's CPU per login
    /// (both CPU times, so the share holds on a busy machine).
    pub bound_cpu_ms: Option<f64>,
    pub bound_share_of_login_cpu: Option<f64>,
    pub sesam_peak_rss_bytes: u64,
    /// Cores Sesam and the load generator kept busy (2 = both cores of this machine).
    pub sesam_cores: f64,
    pub generator_cores: f64,
    /// Sesam's CPU time per completed login.
    pub sesam_cpu_ms_per_login: f64,
    /// SQL statements Sesam ran per completed login (each a database round trip; sessions
    /// included), counted from sqlx's statement events.
    pub sql_statements_per_login: f64,
    /// Instructions Sesam executed per completed login, when it ran under callgrind.
    pub sesam_instructions_per_login: Option<f64>,
}

impl ScenarioReport {
    pub fn new(
        outcome: Outcome,
        bounds: &Bounds,
        peak_rss: u64,
        sesam_cores: f64,
        generator_cores: f64,
    ) -> ScenarioReport {
        let bound = match outcome.scenario {
            Scenario::Saml | Scenario::SamlSso => Some((
                "RSA-2048 XML signatures/s",
                bounds.xml_signatures_per_second,
            )),
            Scenario::Oidc | Scenario::OidcSso => Some(("RS256 JWS/s", bounds.rs256_per_second)),
            // A refresh grant signs nothing (no new ID token; the tokens are random): it has
            // no crypto bound, only its own target.
            Scenario::Refresh => None,
            Scenario::Password => Some(("argon2id hashes/s", bounds.argon2_per_second)),
        };
        let ratio_to_bound = bound.map(|(_, b)| outcome.per_second / b);
        let sesam_cpu_ms_per_login = if outcome.logins > 0 {
            sesam_cores * outcome.seconds * 1000.0 / outcome.logins as f64
        } else {
            0.0
        };
        let bound_cpu_ms = match outcome.scenario {
            Scenario::Saml | Scenario::SamlSso => Some(bounds.xml_signature_cpu_ms),
            Scenario::Oidc | Scenario::OidcSso => Some(bounds.rs256_cpu_ms),
            Scenario::Refresh => None,
            Scenario::Password => Some(bounds.argon2_cpu_ms),
        }
        .filter(|ms| ms.is_finite());
        let bound_share_of_login_cpu = bound_cpu_ms
            .filter(|_| sesam_cpu_ms_per_login > 0.0)
            .map(|ms| ms / sesam_cpu_ms_per_login);
        ScenarioReport {
            sql_statements_per_login: 0.0,
            sesam_instructions_per_login: None,
            outcome,
            bound,
            ratio_to_bound,
            bound_cpu_ms,
            bound_share_of_login_cpu,
            sesam_peak_rss_bytes: peak_rss,
            sesam_cores,
            generator_cores,
            sesam_cpu_ms_per_login,
        }
    }

    /// Adds the statements Sesam ran during the scenario, as a figure per login.
    pub fn with_statements(mut self, statements: u64) -> ScenarioReport {
        if self.outcome.logins > 0 {
            self.sql_statements_per_login = statements as f64 / self.outcome.logins as f64;
        }
        self
    }

    /// Adds the instructions Sesam executed during the scenario, as a figure per login.
    pub fn with_instructions(mut self, instructions: Option<u64>) -> ScenarioReport {
        self.sesam_instructions_per_login = instructions
            .filter(|_| self.outcome.logins > 0)
            .map(|n| n as f64 / self.outcome.logins as f64);
        self
    }
}

#[derive(Serialize)]
pub struct Check {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Serialize)]
pub struct Report {
    pub command: String,
    pub users: usize,
    pub concurrency: usize,
    pub duration_seconds: u64,
    pub database: &'static str,
    pub cores: usize,
    /// The machine's load averages (1, 5, 15 min) at the start and the end of the run.
    pub load_average: (String, String),
    pub idle_rss_bytes: u64,
    pub peak_rss_bytes: u64,
    pub bounds: Bounds,
    pub scenarios: Vec<ScenarioReport>,
    pub waiting: Option<Waiting>,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(
        options: &Options,
        load_average: (String, String),
        idle_rss: u64,
        peak_rss: u64,
        bounds: Bounds,
        scenarios: Vec<ScenarioReport>,
        waiting: Option<Waiting>,
    ) -> Report {
        let checks = checks(idle_rss, &scenarios, waiting.as_ref());
        Report {
            command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            users: options.users,
            concurrency: options.concurrency,
            duration_seconds: options.duration,
            database: match &options.database_url {
                Some(u) if u.starts_with("postgres") => "PostgreSQL",
                _ => "SQLite",
            },
            cores: bounds.threads,
            load_average,
            idle_rss_bytes: idle_rss,
            peak_rss_bytes: peak_rss,
            bounds,
            scenarios,
            waiting,
            checks,
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Sesam benchmark: {} database, {} cores, {} users per kind, {} concurrent, {} s per scenario; \
             load average {} at the start, {} at the end.\n",
            self.database,
            self.cores,
            self.users,
            self.concurrency,
            self.duration_seconds,
            self.load_average.0,
            self.load_average.1
        );
        out.push_str("| scenario | logins/s | bound | ratio | errors | p50 ms | p95 ms | p99 ms | Sesam CPU ms/login | bound CPU ms/op | bound share of login CPU | SQL statements/login | HTTP requests/login | Sesam cores | generator cores | Sesam peak RSS MB |\n");
        out.push_str(
            "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for s in &self.scenarios {
            let whole = s.outcome.steps.iter().find(|(n, _)| n == "whole login");
            let (p50, p95, p99) =
                whole.map_or((0.0, 0.0, 0.0), |(_, w)| (w.p50_ms, w.p95_ms, w.p99_ms));
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} | {} | {} | {p50:.1} | {p95:.1} | {p99:.1} | {:.2} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.1} |",
                s.outcome.scenario.name(),
                s.outcome.per_second,
                s.bound.map_or("-".into(), |(n, b)| format!("{b:.0} {n}")),
                s.ratio_to_bound.map_or("-".into(), |r| format!("{:.0} %", r * 100.0)),
                s.outcome.errors,
                s.sesam_cpu_ms_per_login,
                s.bound_cpu_ms.map_or("-".into(), |ms| format!("{ms:.3}")),
                s.bound_share_of_login_cpu.map_or("-".into(), |r| format!("{:.0} %", r * 100.0)),
                s.sql_statements_per_login,
                s.outcome.http_requests_per_login,
                s.sesam_cores,
                s.generator_cores,
                s.sesam_peak_rss_bytes as f64 / MB,
            );
        }

        if self
            .scenarios
            .iter()
            .any(|s| s.sesam_instructions_per_login.is_some())
        {
            out.push_str("\nSesam ran under callgrind: its CPU times and the latencies above are valgrind's, not Sesam's.\n\n| scenario | logins | Sesam instructions/login (millions) |\n|---|---:|---:|\n");
            for s in &self.scenarios {
                if let Some(n) = s.sesam_instructions_per_login {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {:.1} |",
                        s.outcome.scenario.name(),
                        s.outcome.logins,
                        n / 1e6
                    );
                }
            }
        }

        out.push_str("\nLatency per step (ms):\n\n| scenario | step | n | p50 | p95 | p99 |\n|---|---|---:|---:|---:|---:|\n");
        for s in &self.scenarios {
            for (step, v) in &s.outcome.steps {
                let _ = writeln!(
                    out,
                    "| {} | {step} | {} | {:.2} | {:.2} | {:.2} |",
                    s.outcome.scenario.name(),
                    v.count,
                    v.p50_ms,
                    v.p95_ms,
                    v.p99_ms
                );
            }
        }

        let b = &self.bounds;
        let _ = writeln!(
            out,
            "\nBounds ({} threads, Sesam idle; the better of a measurement before and one after the scenarios): {:.0} RSA-2048 signed SAML Responses/s, {:.0} RS256 ID tokens/s, {:.1} argon2id hashes/s; CPU per operation (thread CPU clock) {:.3} ms, {:.3} ms, {:.2} ms.\n",
            b.threads, b.xml_signatures_per_second, b.rs256_per_second, b.argon2_per_second,
            b.xml_signature_cpu_ms, b.rs256_cpu_ms, b.argon2_cpu_ms
        );

        let _ = writeln!(
            out,
            "Memory: idle RSS after start-up {:.1} MB; peak RSS over the run {:.1} MB.",
            self.idle_rss_bytes as f64 / MB,
            self.peak_rss_bytes as f64 / MB
        );
        if let Some(w) = &self.waiting {
            let _ = writeln!(
                out,
                "Waiting logins: {} event streams open ({} failed) in {:.1} s; RSS {:.1} MB before, {:.1} MB with them open; Sesam busy {:.2} cores while they only wait; {}.",
                w.streams_open,
                w.failed,
                w.seconds_to_open,
                w.rss_before as f64 / MB,
                w.rss_with_streams as f64 / MB,
                w.sesam_cores_while_waiting,
                w.seconds_to_close.map_or("Sesam still held them 20 s after the browsers left".into(), |s| format!("all closed {s:.1} s after the browsers left"))
            );
        }

        out.push_str("\n| target | measured | met |\n|---|---|---|\n");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                c.target,
                c.measured,
                if c.met { "yes" } else { "**no**" }
            );
        }
        for s in &self.scenarios {
            for e in &s.outcome.error_samples {
                let _ = writeln!(out, "\nerror in {}: {e}", s.outcome.scenario.name());
            }
        }
        if let Some(w) = &self.waiting {
            for e in &w.error_samples {
                let _ = writeln!(out, "\nerror opening a waiting login: {e}");
            }
        }
        out
    }
}

fn checks(idle_rss: u64, scenarios: &[ScenarioReport], waiting: Option<&Waiting>) -> Vec<Check> {
    let mut out = Vec::new();
    let ratio = |target: &str, s: &ScenarioReport, min: f64| {
        let r = s.ratio_to_bound.unwrap_or(0.0);
        Check {
            target: target.into(),
            measured: format!("{:.1}/s = {:.0} %", s.outcome.per_second, r * 100.0),
            met: r >= min,
        }
    };
    for s in scenarios {
        out.push(match s.outcome.scenario {
            Scenario::Saml => ratio("passwordless SAML >= 50 % of the XML-signing bound", s, 0.5),
            Scenario::Oidc => ratio("OIDC code flow >= 50 % of the RS256 bound", s, 0.5),
            Scenario::Refresh => Check {
                target: "refresh >= 3,000 grants/s".into(),
                measured: format!("{:.0}/s", s.outcome.per_second),
                met: s.outcome.per_second >= 3000.0,
            },
            Scenario::Password => ratio("password logins >= 85 % of the argon2 bound", s, 0.85),
            // Their targets are ratios to an older build, measured side by side: not a check
            // one run can make.
            Scenario::SamlSso | Scenario::OidcSso => continue,
        });
    }
    let errors: u64 = scenarios.iter().map(|s| s.outcome.errors).sum::<u64>()
        + waiting.map_or(0, |w| w.failed as u64);
    out.push(Check {
        target: "0 errors".into(),
        measured: errors.to_string(),
        met: errors == 0,
    });
    out.push(Check {
        target: "idle RSS <= 30 MB".into(),
        measured: format!("{:.1} MB", idle_rss as f64 / MB),
        met: idle_rss as f64 <= 30.0 * MB,
    });
    if let Some(w) = waiting {
        let above = w.rss_with_streams.saturating_sub(idle_rss) as f64 / MB;
        out.push(Check {
            target: format!(
                "{} pending challenges with open streams <= 100 MB above idle",
                w.streams_open + w.failed
            ),
            measured: format!(
                "{above:.1} MB above idle ({:.1} MB above the RSS just before)",
                w.rss_with_streams.saturating_sub(w.rss_before) as f64 / MB
            ),
            met: above <= 100.0 && w.failed == 0,
        });
    }
    out
}
