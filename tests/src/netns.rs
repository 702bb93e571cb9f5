//! A network namespace joined to this one by a veth pair: a stand-in for another host, for
//! tests that run one daemon apart from the others. The namespace sees this one only through
//! the pair's two addresses (it has its own loopback and no other route), so whatever runs in
//! it must be configured with real addresses, as on separate machines.
//!
//! Needs root (`ip netns`). Dropping the value stops every process in the namespace and
//! removes the namespace and the pair, also when the test fails.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::accounts::random_suffix;

/// A namespace with a veth pair to this one.
#[derive(Debug)]
pub struct NetNs {
    /// The namespace's name (`ip netns exec <name>`).
    pub name: String,
    /// The pair's interface on this side.
    host_if: String,
    /// This side's address on the pair.
    pub host_addr: Ipv4Addr,
    /// The namespace's address on the pair.
    pub ns_addr: Ipv4Addr,
}

/// Runs `ip <args>`; fails with its error output.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running ip (iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether an IPv4 address in `10.<a>.<b>.0/24` is configured on any interface here.
fn subnet_in_use(a: u8, b: u8) -> bool {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.contains(&format!(" 10.{a}.{b}."))
}

impl NetNs {
    /// Creates the namespace `jhrs-<random>` and a veth pair with addresses in a free
    /// `10.200.x.0/24` (this side `.1`, the namespace `.2`), both ends and the namespace's
    /// loopback up.
    ///
    /// # Errors
    /// When not root, or `ip` fails (what was made so far is removed).
    pub fn create() -> anyhow::Result<Self> {
        anyhow::ensure!(
            crate::accounts::is_root(),
            "creating a network namespace needs root (CI runs as root)"
        );
        let suffix = random_suffix();
        let third = (1..=254u8)
            .cycle()
            .skip(usize::from(
                u8::from_str_radix(&suffix[..2], 16).unwrap_or(0),
            ))
            .take(254)
            .find(|&b| !subnet_in_use(200, b))
            .context("no free 10.200.x.0/24 subnet")?;
        let ns = Self {
            name: format!("jhrs-{suffix}"),
            host_if: format!("jh{suffix}h"),
            host_addr: Ipv4Addr::new(10, 200, third, 1),
            ns_addr: Ipv4Addr::new(10, 200, third, 2),
        };
        // From here on, dropping `ns` removes whatever was made.
        ip(&["netns", "add", &ns.name])?;
        let ns_if = format!("jh{suffix}n");
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
            "netns",
            &ns.name,
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", ns.host_addr),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", ns.name.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{}/24", ns.ns_addr), "dev", &ns_if])?;
        inside(&["link", "set", &ns_if, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// The processes running in the namespace.
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether process `pid` runs in this namespace.
    pub fn contains(&self, pid: i32) -> bool {
        self.pids().contains(&pid)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let pids = self.pids();
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in self.pids() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("cleanup: {e}");
        }
        // Gone with the namespace's end, unless something kept the namespace alive.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
    }
}
