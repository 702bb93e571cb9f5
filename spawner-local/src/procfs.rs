//! What `/proc` tells about processes and listening sockets: a process's start time (the part
//! of its identity that a reused pid does not share), its process group, the members of a
//! process group, and which process holds the socket listening on a port.
//!
//! Everything here is blocking file I/O on a pseudo file system; callers on the async runtime
//! keep it short (one process) or move it to the blocking pool (scans).

use std::collections::HashSet;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::unistd::Pid;

/// The facts of `/proc/<pid>/stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 5: the process group.
    pub pgrp: i32,
    /// Field 22: when the process started, in clock ticks since boot. Together with the pid
    /// it names one process for the machine's uptime.
    pub start_time: u64,
}

impl ProcStat {
    /// Whether the process still runs (a zombie has finished; only its entry is left).
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so the fields after it are found from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 of the man page, so field n is fields[n - 3].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// `/proc/<pid>/stat` of a process; `None` when there is no such process.
pub(crate) fn stat(pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The live (not zombie) processes whose process group is `pgid`.
pub(crate) fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|s| s.pgrp == pgid && s.alive()))
        .collect()
}

/// Whether any live process is left in process group `pgid`. A cheap signal-0 probe answers
/// most calls; the `/proc` scan only runs when the group exists, to leave zombies out.
pub(crate) fn group_alive(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => false,
        _ => !group_members(pgid).is_empty(),
    }
}

/// The inodes of the sockets process `pid` has open.
pub(crate) fn socket_inodes(pid: i32) -> HashSet<u64> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    entries
        .filter_map(|e| {
            let target = fs::read_link(e.ok()?.path()).ok()?;
            parse_socket_link(target.to_str()?)
        })
        .collect()
}

/// `socket:[12345]` → 12345.
fn parse_socket_link(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listener {
    /// The local address (IPv4-mapped IPv6 addresses are given as IPv4).
    pub addr: IpAddr,
    /// The local port.
    pub port: u16,
    /// The socket's inode, as in `/proc/<pid>/fd/*` links.
    pub inode: u64,
}

/// `TCP_LISTEN` in the kernel's state numbering.
const TCP_LISTEN: u8 = 0x0A;

/// One line of `/proc/net/tcp` (`v6 == false`) or `/proc/net/tcp6`; `None` for the header,
/// malformed lines and sockets that do not listen.
pub(crate) fn parse_net_line(line: &str, v6: bool) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (addr, port) = fields.get(1)?.split_once(':')?;
    if u8::from_str_radix(fields.get(3)?, 16).ok()? != TCP_LISTEN {
        return None;
    }
    // The kernel prints each 32-bit word of the address as a number in the machine's byte
    // order; its bytes in memory are the address in network order.
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let addr = if v6 {
        if addr.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&word(i)?);
        }
        let v6 = Ipv6Addr::from(bytes);
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    } else {
        if addr.len() != 8 {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(word(0)?))
    };
    Some(Listener {
        addr,
        port: u16::from_str_radix(port, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// The listening TCP sockets on `port`, IPv4 and IPv6.
pub(crate) fn listeners(port: u16) -> Vec<Listener> {
    let mut found = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = fs::read_to_string(path) {
            found.extend(
                text.lines()
                    .filter_map(|l| parse_net_line(l, v6))
                    .filter(|l| l.port == port),
            );
        }
    }
    found
}

/// Of the sockets listening on one port, those that take a connection to `target`: the ones
/// bound to exactly that address when there are any, else the wildcard ones (`0.0.0.0` takes
/// IPv4 only, `::` both). With no target address (a host name), all of them.
pub(crate) fn serving(listeners: &[Listener], target: Option<IpAddr>) -> Vec<u64> {
    let Some(target) = target else {
        return listeners.iter().map(|l| l.inode).collect();
    };
    let target = match target {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(target, IpAddr::V4),
        v4 => v4,
    };
    let exact: Vec<u64> = listeners
        .iter()
        .filter(|l| l.addr == target)
        .map(|l| l.inode)
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    listeners
        .iter()
        .filter(|l| match l.addr {
            IpAddr::V6(a) => a.is_unspecified(),
            IpAddr::V4(a) => a.is_unspecified() && target.is_ipv4(),
        })
        .map(|l| l.inode)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_awkward_name() {
        let text = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000000 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            s,
            ProcStat {
                state: 'S',
                pgrp: 4242,
                start_time: 987_654,
            }
        );
        assert!(s.alive());
        assert!(!ProcStat { state: 'Z', ..s }.alive());
        assert!(parse_stat("12 (x) S 1").is_none());
    }

    #[test]
    fn own_process_is_found() {
        let me = i32::try_from(std::process::id()).unwrap();
        let s = stat(me).unwrap();
        assert!(s.alive());
        assert!(s.start_time > 0);
        assert!(stat(-1).is_none());
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link("socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link("pipe:[12345]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
    }

    #[test]
    fn net_lines() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        assert!(parse_net_line(header, false).is_none());
        let v4 = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0";
        let l = parse_net_line(v4, false).unwrap();
        // On little-endian machines 0100007F is 127.0.0.1.
        if cfg!(target_endian = "little") {
            assert_eq!(l.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        assert_eq!((l.port, l.inode), (8080, 31337));
        let established = v4.replace(" 0A ", " 01 ");
        assert!(parse_net_line(&established, false).is_none());
        let v6_any = "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4711 1 0000000000000000 100 0 0 10 0";
        let l = parse_net_line(v6_any, true).unwrap();
        assert_eq!(l.addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(l.inode, 4711);
        if cfg!(target_endian = "little") {
            let mapped = "   0: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000000000000000 100 0 0 10 0";
            let l = parse_net_line(mapped, true).unwrap();
            assert_eq!(l.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
    }

    #[test]
    fn real_listener_is_seen() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let found = listeners(port);
        assert_eq!(found.len(), 1, "{found:?}");
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(socket_inodes(me).contains(&found[0].inode));
    }

    #[test]
    fn which_sockets_serve_an_address() {
        let l = |addr: &str, inode| Listener {
            addr: addr.parse().unwrap(),
            port: 1,
            inode,
        };
        let lo = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        // Exact address wins over wildcards.
        let both = [l("0.0.0.0", 1), l("127.0.0.1", 2), l("::", 3)];
        assert_eq!(serving(&both, lo), vec![2]);
        // Without an exact one, the wildcards; 0.0.0.0 does not take IPv6.
        let any = [l("0.0.0.0", 1), l("::", 3), l("10.0.0.1", 4)];
        assert_eq!(serving(&any, lo), vec![1, 3]);
        assert_eq!(serving(&any, Some("::1".parse().unwrap())), vec![3]);
        // Another address entirely: nothing serves it.
        assert!(serving(&[l("10.0.0.1", 4)], lo).is_empty());
        // A host name: everything on the port.
        assert_eq!(serving(&any, None), vec![1, 3, 4]);
    }
}
