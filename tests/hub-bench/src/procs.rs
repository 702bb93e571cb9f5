//! Child processes (pinned to a core with `taskset`) and what `/proc` says about them and the
//! machine: CPU time, resident memory, load.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// What to start.
#[derive(Debug)]
pub struct Spec {
    /// Short name for messages.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
}

/// A process started by the benchmark; killed when dropped, so an early return leaves nothing
/// running.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Proc {
    /// Starts `spec`, under `taskset -c <core>` when `core` is given (`taskset` execs the
    /// program, so the pid is the program's own). Output goes to `log`.
    pub fn spawn(spec: Spec, core: Option<u32>, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log file handle")?;
        let mut command = match core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(&spec.program);
                c
            }
            None => Command::new(&spec.program),
        };
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("{} exited at once", spec.name))?;
        Ok(Self {
            name: spec.name,
            child,
            pid,
            log: log.to_owned(),
        })
    }

    /// Fails, with the end of the log, if the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait().context("polling the child")? {
            bail!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                self.log_tail(30)
            );
        }
        Ok(())
    }

    /// User plus system CPU time so far, in clock ticks.
    pub fn cpu_ticks(&self) -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .with_context(|| format!("reading /proc/{}/stat", self.pid))?;
        parse_cpu_ticks(&stat).context("parsing /proc/<pid>/stat")
    }

    /// `(VmRSS, VmHWM)`: resident memory now and at its peak, in KiB.
    pub fn memory_kib(&self) -> Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .with_context(|| format!("reading /proc/{}/status", self.pid))?;
        let rss = status_kib(&status, "VmRSS:").context("no VmRSS")?;
        let hwm = status_kib(&status, "VmHWM:").unwrap_or(rss);
        Ok((rss, hwm))
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub async fn stop(mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).context("pid out of range")?);
        let _ = kill(pid, Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.start_kill()?;
            self.child.wait().await?;
        }
        Ok(())
    }
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name (field 2)
/// may hold spaces, so fields are counted after its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")" the fields start at number 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of this process (all threads) so far, in clock ticks.
pub fn own_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    parse_cpu_ticks(&stat).context("parsing /proc/self/stat")
}

/// Ticks all CPUs spent busy (not idle or waiting for I/O) since boot.
pub fn machine_busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    if v.len() < 8 {
        bail!("short /proc/stat line: {line}");
    }
    Ok(v[0] + v[1] + v[2] + v[5] + v[6] + v[7])
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
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

/// The CPU model name and how many CPUs are online.
pub fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cpus} CPUs")
}

/// How many CPUs this process may run on (before any pinning).
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Pins the calling thread, and every thread it starts later, to `core`.
pub fn pin_current_thread(core: u32) -> Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    set.set(usize::try_from(core)?)
        .with_context(|| format!("core {core}"))?;
    sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pinning to core {core}"))
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on a quiet machine).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// CPU used by processes other than the ones measured, between two snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    machine: u64,
    known: u64,
}

impl Snapshot {
    /// Busy ticks of the machine and of `known` processes plus this one.
    pub fn take(known: &[&Proc]) -> Result<Self> {
        let mut sum = own_ticks()?;
        for p in known {
            sum += p.cpu_ticks()?;
        }
        Ok(Self {
            machine: machine_busy_ticks()?,
            known: sum,
        })
    }

    /// Percent of one core that other processes used from `self` to `later`, over `secs`.
    pub fn others_percent(&self, later: &Self, secs: f64) -> f64 {
        let machine = later.machine.saturating_sub(self.machine);
        let known = later.known.saturating_sub(self.known);
        let others = machine.saturating_sub(known) as f64 / clock_ticks_per_sec() as f64;
        if secs > 0.0 {
            100.0 * others / secs
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_the_command_name() {
        let stat = "4242 (my (odd) prog) S 1 2 3 4 5 6 7 8 9 10 110 22 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(132));
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
