//! Sesam in a process of its own (this binary again, with `--serve`), so its memory can be
//! read apart from the load generator's: start it, read its RSS, and end it.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use sesam_core::SystemClock;
use sesam_server::Config;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::callgrind::Callgrind;

/// What the child prints once it listens: `LISTENING 127.0.0.1:PORT`.
const READY: &str = "LISTENING ";
const STATEMENTS: &str = "STATEMENTS ";
/// One line per statement text: `STATEMENT <count>\t<sql>`, then `STATEMENTS-END`.
const STATEMENT: &str = "STATEMENT ";
const STATEMENTS_END: &str = "STATEMENTS-END";

/// The `--serve` side: Sesam exactly as `sesam serve` runs it, configured by `SESAM_*`.
pub fn serve() -> anyhow::Result<()> {
    let config = Config::load(None, std::env::vars())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let statements = sesam_server::telemetry::init_counting_statements(&config);
        let signal = sesam_server::startup::StopSignal::install();
        let server = sesam_server::start(config, Arc::new(SystemClock)).await?;
        println!("{READY}{}", server.addr);
        // Each line on stdin asks for the SQL statements run so far: `statements` for the
        // total, `by-text` for each statement's count.
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if line.trim() == "by-text" {
                    for (text, n) in statements.by_text() {
                        println!("{STATEMENT}{n}\t{text}");
                    }
                    println!("{STATEMENTS_END}");
                } else {
                    println!("{STATEMENTS}{}", statements.total());
                }
            }
        });
        server.stop_on(signal).await
    })
}

pub struct SesamProcess {
    child: Child,
    pub pid: u32,
    pub base_url: String,
    stdin: tokio::process::ChildStdin,
    replies: tokio::sync::mpsc::Receiver<Reply>,
}

/// What the child answers on stdout to a question on stdin.
enum Reply {
    Total(u64),
    ByText(std::collections::HashMap<String, u64>),
}

impl SesamProcess {
    /// Starts Sesam on a random port against `database_url` with the outbox push provider;
    /// under `callgrind` when given.
    pub async fn start(
        database_url: &str,
        callgrind: Option<&Callgrind>,
    ) -> anyhow::Result<SesamProcess> {
        let exe = std::env::current_exe().context("locating this program")?;
        let mut command = match callgrind {
            Some(c) => c.command(&exe),
            None => Command::new(exe),
        };
        command.arg("--serve");
        // Only our settings: a SESAM_* variable of the caller's shell must not change the run.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SESAM_")) {
            command.env_remove(key);
        }
        command
            .env("SESAM_LISTEN", "127.0.0.1:0")
            .env("SESAM_DATABASE_URL", database_url)
            .env("SESAM_PUSH_PROVIDER", "outbox")
            .env("SESAM_LOG_LEVEL", "warn")
            // Every simulated browser comes from 127.0.0.1: the per-address flood guard would
            // measure itself, so it is set far above what the load reaches.
            .env("SESAM_FLOOD_REQUESTS_PER_SECOND", "100000")
            .env("SESAM_FLOOD_BURST", "1000000")
            // As the Dockerfile runs Sesam: argon2's 19 MiB blocks go back to the system after
            // each hash instead of staying in glibc's heap (see docs/PERFORMANCE.md).
            .env("MALLOC_MMAP_THRESHOLD_", "131072")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().context("starting Sesam")?;
        let pid = child.id().context("Sesam exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // Under valgrind start-up (two argon2 hashes among it) takes many times longer.
        let patience = Duration::from_secs(if callgrind.is_some() { 600 } else { 60 });
        let addr = tokio::time::timeout(patience, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix(READY) {
                    return Ok(addr.to_owned());
                }
            }
            bail!("Sesam stopped before it listened")
        })
        .await
        .with_context(|| format!("Sesam did not start within {patience:?}"))??;
        // Keep draining stdout so the child never blocks on a full pipe; pass on the counts.
        let (counts, replies) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let mut by_text = std::collections::HashMap::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(n) = line.strip_prefix(STATEMENTS).and_then(|n| n.parse().ok()) {
                    let _ = counts.send(Reply::Total(n)).await;
                } else if let Some((n, text)) = line
                    .strip_prefix(STATEMENT)
                    .and_then(|l| l.split_once('\t'))
                {
                    if let Ok(n) = n.parse::<u64>() {
                        by_text.insert(text.to_owned(), n);
                    }
                } else if line == STATEMENTS_END {
                    let _ = counts
                        .send(Reply::ByText(std::mem::take(&mut by_text)))
                        .await;
                }
            }
        });
        let stdin = child.stdin.take().context("no stdin")?;
        Ok(SesamProcess {
            child,
            pid,
            base_url: format!("http://{addr}"),
            stdin,
            replies,
        })
    }

    /// SQL statements Sesam has run so far (sessions included).
    pub async fn statements(&mut self) -> anyhow::Result<u64> {
        match self.ask(b"statements\n").await? {
            Reply::Total(n) => Ok(n),
            Reply::ByText(_) => bail!("Sesam answered the wrong question"),
        }
    }

    /// How often each SQL statement (by its text) has run so far.
    pub async fn statements_by_text(
        &mut self,
    ) -> anyhow::Result<std::collections::HashMap<String, u64>> {
        match self.ask(b"by-text\n").await? {
            Reply::ByText(map) => Ok(map),
            Reply::Total(_) => bail!("Sesam answered the wrong question"),
        }
    }

    async fn ask(&mut self, question: &[u8]) -> anyhow::Result<Reply> {
        use tokio::io::AsyncWriteExt;
        self.stdin.write_all(question).await?;
        self.stdin.flush().await?;
        tokio::time::timeout(Duration::from_secs(10), self.replies.recv())
            .await
            .context("Sesam did not report its statement count")?
            .context("Sesam stopped")
    }

    /// Resident memory now (`VmRSS`) and at its peak so far (`VmHWM`), in bytes.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        Ok(Memory {
            rss: status_kib(&status, "VmRSS:").context("no VmRSS")? * 1024,
            peak: status_kib(&status, "VmHWM:").context("no VmHWM")? * 1024,
        })
    }

    /// CPU time (user + system) Sesam has used so far.
    pub fn cpu_time(&self) -> Duration {
        cpu_time(&self.pid.to_string())
    }

    /// How many files and sockets Sesam has open.
    pub fn open_descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

/// CPU time (user + system) of process `pid` (or `self`) so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (which may hold spaces) come the state (field 3) and more;
    // utime and stime are fields 14 and 15, in clock ticks of 10 ms on Linux.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples the RSS every 100 ms while `work` runs; returns its result and the largest sample.
pub async fn with_peak_rss<T>(
    sesam: &SesamProcess,
    work: impl std::future::Future<Output = T>,
) -> (T, u64) {
    let mut peak = sesam.memory().map(|m| m.rss).unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return (out, peak),
            _ = tick.tick() => {
                if let Ok(m) = sesam.memory() {
                    peak = peak.max(m.rss);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_lines_of_proc_status() {
        let status = "Name:\tsesam\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(20480));
        assert_eq!(status_kib(status, "VmHWM:"), Some(40960));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
