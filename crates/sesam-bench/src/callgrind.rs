//! Instructions Sesam executes per login, counted by valgrind's callgrind: unlike CPU time they
//! repeat from run to run on a busy machine. Sesam runs under callgrind with instrumentation
//! off; each scenario's measured part switches it on and dumps the count at its end.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tokio::process::Command;

/// Where Sesam's callgrind writes its dumps (`callgrind.out.N`) and its log.
pub struct Callgrind {
    dir: PathBuf,
}

impl Callgrind {
    pub fn new(dir: &Path) -> Callgrind {
        Callgrind {
            dir: dir.to_owned(),
        }
    }

    /// `valgrind` running `exe` under callgrind, counting nothing until told to.
    pub fn command(&self, exe: &Path) -> Command {
        let mut command = Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg("--instr-atstart=no")
            .arg(format!(
                "--callgrind-out-file={}",
                self.dir.join("callgrind.out").display()
            ))
            .arg(format!(
                "--log-file={}",
                self.dir.join("valgrind.log").display()
            ))
            .arg(exe);
        command
    }

    /// From now on, count what `pid` executes.
    pub async fn start(&self, pid: u32) -> anyhow::Result<()> {
        control(pid, &["--zero"]).await?;
        control(pid, &["--instr=on"]).await
    }

    /// The instructions `pid` executed since `start`; counting stops.
    pub async fn stop(&self, pid: u32) -> anyhow::Result<u64> {
        control(pid, &["--dump"]).await?;
        control(pid, &["--instr=off"]).await?;
        let dump = self.latest_dump()?;
        let text = std::fs::read_to_string(&dump)
            .with_context(|| format!("reading {}", dump.display()))?;
        total_instructions(&text).with_context(|| format!("no totals in {}", dump.display()))
    }

    /// The dump with the highest part number.
    fn latest_dump(&self) -> anyhow::Result<PathBuf> {
        let mut best: Option<(u64, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let part = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(dump_part);
            if let Some(part) = part {
                if best.as_ref().is_none_or(|(b, _)| part > *b) {
                    best = Some((part, path));
                }
            }
        }
        best.map(|(_, p)| p)
            .context("callgrind wrote no dump (see valgrind.log)")
    }
}

async fn control(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .await
        .context("running callgrind_control")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// `7` of `callgrind.out.7`, the part number callgrind gives each dump.
fn dump_part(name: &str) -> Option<u64> {
    name.strip_prefix("callgrind.out.")?.parse().ok()
}

/// The instructions (`Ir`, the first event) of a callgrind dump: its `totals:` line, else its
/// `summary:` line.
pub fn total_instructions(dump: &str) -> Option<u64> {
    let first = |key: &str| {
        dump.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    first("totals:").or_else(|| first("summary:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_instruction_total_of_a_dump() {
        let dump = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 141253998\n\nfn=(1) main\n3 12\ntotals: 141253998\n";
        assert_eq!(total_instructions(dump), Some(141_253_998));
        // With more events, Ir comes first.
        let dump = "events: Ir Dr Dw\nsummary: 900 300 200\n";
        assert_eq!(total_instructions(dump), Some(900));
        assert_eq!(total_instructions("events: Ir\n"), None);
    }

    #[test]
    fn only_numbered_dumps_count() {
        assert_eq!(dump_part("callgrind.out.12"), Some(12));
        assert_eq!(dump_part("callgrind.out"), None);
        assert_eq!(dump_part("callgrind.out.12.tmp"), None);
        assert_eq!(dump_part("valgrind.log"), None);
    }
}
