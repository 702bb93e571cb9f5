//! What `/proc` says about processes: identity, user ids, environment, listening sockets; and
//! a last-resort cleanup that stops every process matching a predicate.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// One process, as far as the tests need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// Process group id.
    pub pgid: i32,
    /// State letter (`R`, `S`, `Z` for an exited but unreaped process, ...).
    pub state: char,
    /// Start time (field 22 of `/proc/<pid>/stat`), which tells a reused pid apart.
    pub start_time: u64,
    /// Real user id, when `/proc/<pid>/status` could be read.
    pub uid: Option<u32>,
}

impl Proc {
    /// Whether the process runs (exists and is not a zombie).
    pub fn running(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The process `pid`, if it exists.
pub fn get(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything: fields after it
    // start after the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts with field 3 (state); field N is at index N - 3.
    let state = fields.first()?.chars().next()?;
    let pgid = fields.get(2)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    let uid = ids(pid, "Uid:").and_then(|ids| ids.first().copied());
    Some(Proc {
        pid,
        pgid,
        state,
        start_time,
        uid,
    })
}

/// Whether `pid` runs and is still the process that started at `start_time`.
pub fn running_as(pid: i32, start_time: u64) -> bool {
    get(pid).is_some_and(|p| p.running() && p.start_time == start_time)
}

/// The ids on line `key` (`Uid:` or `Gid:`) of `/proc/<pid>/status`: real, effective, saved,
/// filesystem.
pub fn ids(pid: i32, key: &str) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().ok())
        .collect()
}

/// The supplementary groups of `pid` (`Groups:` of `/proc/<pid>/status`).
pub fn groups(pid: i32) -> Option<Vec<u32>> {
    ids(pid, "Groups:")
}

/// The environment of `pid` (readable for our own processes, or any as root).
pub fn environ(pid: i32) -> Option<Vec<(String, String)>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                match kv.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (kv.into_owned(), String::new()),
                }
            })
            .collect(),
    )
}

/// The value of variable `name` in the environment of `pid`.
pub fn env_var(pid: i32, name: &str) -> Option<String> {
    environ(pid)?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The working directory of `pid`.
pub fn cwd(pid: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

/// The command line of `pid`, arguments joined with spaces.
pub fn cmdline(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Every process visible in `/proc`.
pub fn all() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(get)
        .collect()
}

/// Stops every running process for which `pred` holds, with its process group when that is
/// not ours: SIGTERM, up to 5 s to go, then SIGKILL. Returns how many matched. A last resort
/// for cleanups; never signals this process, its group, or pid 1.
pub fn kill_where(pred: impl Fn(&Proc) -> bool) -> usize {
    let me = std::process::id() as i32;
    let my_group = nix::unistd::getpgrp().as_raw();
    let victims: Vec<Proc> = all()
        .into_iter()
        .filter(|p| p.running() && p.pid != me && p.pid > 1 && pred(p))
        .collect();
    let signal_all = |sig: Signal| {
        for p in &victims {
            if p.pgid > 1 && p.pgid != my_group {
                let _ = killpg(Pid::from_raw(p.pgid), sig);
            } else {
                let _ = kill(Pid::from_raw(p.pid), sig);
            }
        }
    };
    let gone = || victims.iter().all(|p| !running_as(p.pid, p.start_time));
    if victims.is_empty() {
        return 0;
    }
    signal_all(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if !gone() {
        signal_all(Signal::SIGKILL);
    }
    victims.len()
}

/// Whether process `pid` holds a socket listening on TCP `port` on any address; `None` when
/// `/proc` cannot tell.
pub fn listens_on(pid: i32, port: u16) -> Option<bool> {
    crate::proxy::owns_listener(pid as u32, port)
}

/// The IPv4 TCP addresses process `pid` listens on (from `/proc/net/tcp` and the process's
/// socket descriptors).
pub fn listening_v4(pid: i32) -> Vec<std::net::SocketAddrV4> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return Vec::new();
    };
    let mut by_inode = std::collections::HashMap::new();
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
        else {
            continue;
        };
        // State 0A is LISTEN; the address is hex in host byte order, then the port.
        let Some((ip, port)) = local.split_once(':') else {
            continue;
        };
        if *state != "0A" {
            continue;
        }
        if let (Ok(ip), Ok(port), Ok(inode)) = (
            u32::from_str_radix(ip, 16),
            u16::from_str_radix(port, 16),
            inode.parse::<u64>(),
        ) {
            let ip = std::net::Ipv4Addr::from(u32::from_be(ip));
            by_inode.insert(inode, std::net::SocketAddrV4::new(ip, port));
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let link = std::fs::read_link(fd.path()).ok()?;
            let inode = link
                .to_string_lossy()
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()?;
            by_inode.get(&inode).copied()
        })
        .collect()
}
