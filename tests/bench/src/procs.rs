//! Child processes pinned to a core, and what `/proc` says about them.

use std::ffi::OsString;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A server process started by the benchmark. It is killed when dropped, so
/// an early return or a panic leaves nothing running.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
}

/// What to start: the program, its arguments and extra environment.
#[derive(Debug)]
pub struct Spec<'a> {
    pub name: &'a str,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
}

impl Proc {
    /// Starts `spec` under `taskset -c <core>`. `taskset` execs the program,
    /// so the child's pid is the server's own pid. Output goes to `log`.
    pub fn spawn_pinned(spec: Spec<'_>, core: u32, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let mut command = Command::new("taskset");
        command
            .arg("-c")
            .arg(core.to_string())
            .arg(&spec.program)
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| {
            format!(
                "starting {} ({}) under taskset",
                spec.name,
                Path::new(&spec.program).display()
            )
        })?;
        let pid = child
            .id()
            .with_context(|| format!("{} exited at once", spec.name))?;
        Ok(Self {
            name: spec.name.to_owned(),
            child,
            pid,
            log: log.to_owned(),
        })
    }

    /// Waits until every address accepts TCP connections, failing early if
    /// the process exits.
    pub async fn wait_listening(&mut self, addrs: &[SocketAddr], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for addr in addrs {
            loop {
                if let Some(status) = self.child.try_wait().context("polling the child")? {
                    bail!(
                        "{} exited ({status}) before listening on {addr}; log tail:\n{}",
                        self.name,
                        self.log_tail(20)
                    );
                }
                if TcpStream::connect(addr).await.is_ok() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{} did not listen on {addr} within {timeout:?}; log tail:\n{}",
                        self.name,
                        self.log_tail(20)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Fails if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("polling the child")? {
            bail!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// User plus system CPU time of the whole process, in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_cpu_ticks(&stat).with_context(|| format!("parsing {path}"))
    }

    /// Resident set size, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_vm_rss(&status).with_context(|| format!("no VmRSS in {path}"))
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends SIGTERM, waits up to 5 s, then kills.
    pub async fn stop(mut self) -> Result<()> {
        if self
            .child
            .try_wait()
            .context("polling the child")?
            .is_some()
        {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).context("pid out of range")?);
        // The process may exit between the check and the signal; that is fine.
        let _ = kill(pid, Signal::SIGTERM);
        match tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await {
            Ok(waited) => {
                waited.with_context(|| format!("waiting for {}", self.name))?;
            }
            Err(_) => {
                self.child
                    .kill()
                    .await
                    .with_context(|| format!("killing {}", self.name))?;
            }
        }
        Ok(())
    }
}

/// utime + stime (fields 14 and 15 of `/proc/<pid>/stat`), which cover all
/// threads of the process.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    stat_fields_sum(stat, 14..=15)
}

/// The sum of the numbered (1-based) fields of a `/proc/<pid>/stat` line.
fn stat_fields_sum(stat: &str, fields: std::ops::RangeInclusive<usize>) -> Option<u64> {
    // The command name is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let values: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    fields.map(|n| values.get(n - 3)?.parse::<u64>().ok()).sum()
}

/// CPU time of this program plus its waited-for children (each finished wrk
/// run), in clock ticks.
fn self_and_children_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // utime, stime, cutime, cstime.
    stat_fields_sum(&stat, 14..=17).context("parsing /proc/self/stat")
}

/// user + nice + system time of the whole machine, in clock ticks (interrupt
/// time is left out: it is not charged to any process).
pub fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    line.split_whitespace()
        .skip(1)
        .take(3)
        .map(|v| v.parse::<u64>().context("parsing /proc/stat"))
        .sum()
}

/// CPU time counters at one instant, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// The process under test.
    target: u64,
    /// Every process the benchmark accounts for: the one under test, the
    /// backends, this program and its finished children.
    known: u64,
    /// The whole machine.
    busy: u64,
}

/// CPU time used between two snapshots, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// By the process under test.
    pub target: u64,
    /// By processes the benchmark did not start: anything above a few
    /// percent of a core means the figures are disturbed.
    pub other: u64,
}

impl Snapshot {
    /// Reads the counters of `target`, of `backends` (skipping `target` if it
    /// is one of them), of this program and of the machine.
    pub fn take(target: &Proc, backends: &[&Proc]) -> Result<Self> {
        let target_ticks = target.cpu_ticks()?;
        let mut known = target_ticks + self_and_children_ticks()?;
        for proc in backends.iter().filter(|p| p.pid != target.pid) {
            known += proc.cpu_ticks()?;
        }
        Ok(Self {
            target: target_ticks,
            known,
            busy: machine_busy_ticks()?,
        })
    }

    pub fn until(&self, later: &Self) -> Usage {
        let known = later.known.saturating_sub(self.known);
        Usage {
            target: later.target.saturating_sub(self.target),
            other: later.busy.saturating_sub(self.busy).saturating_sub(known),
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `VmRSS:` line of `/proc/<pid>/status`, in KiB.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Clock ticks per second, the unit of `/proc/<pid>/stat` CPU times.
pub fn clock_ticks_per_sec() -> Result<u64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("running getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("parsing the output of getconf CLK_TCK")
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener
        .local_addr()
        .context("reading the bound port")?
        .port())
}

/// Pins the calling thread (and so every thread and child it creates later)
/// to `core`.
pub fn pin_current_process(core: u32) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .context("running taskset (is util-linux installed?)")?;
    if !status.success() {
        bail!("taskset could not pin the benchmark to core {core}: {status}");
    }
    Ok(())
}

/// The first line a command prints on stdout or stderr, for version reports.
pub fn first_line_of(program: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_the_command_name() {
        let stat = "1234 (my proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn stat_fields_are_numbered_from_one() {
        let stat = "1 (x) S 1 1 1 0 -1 0 0 0 0 0 10 20 30 40 20 0";
        assert_eq!(stat_fields_sum(stat, 14..=17), Some(100));
        assert_eq!(stat_fields_sum(stat, 14..=30), None);
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tnode\nVmPeak:\t  100 kB\nVmRSS:\t   51234 kB\nThreads:\t7\n";
        assert_eq!(parse_vm_rss(status), Some(51234));
    }
}
