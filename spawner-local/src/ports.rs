//! Free ports for new servers.
//!
//! A port is found by binding port 0 and reading what the kernel chose; the socket is then
//! closed so that the server can bind it. Between that moment and the server's own bind,
//! another start could be handed the same port, so every port handed out stays *reserved*
//! (process-wide, for all spawner instances) until the server is confirmed to listen on it,
//! stops, or the reservation expires.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How often to ask the kernel for a port before giving up.
const ATTEMPTS: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    token: u64,
    until: Instant,
}

fn table() -> MutexGuard<'static, HashMap<u16, Entry>> {
    static TABLE: OnceLock<Mutex<HashMap<u16, Entry>>> = OnceLock::new();
    TABLE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A reserved port. Dropping it releases the reservation unless [`Reservation::keep`] was
/// called (a start that fails or is cancelled gives its port back).
#[derive(Debug)]
pub(crate) struct Reservation {
    port: u16,
    token: u64,
    kept: bool,
}

impl Reservation {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Keeps the reservation after this value is dropped; returns the token that releases it.
    pub fn keep(mut self) -> u64 {
        self.kept = true;
        self.token
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept {
            release(self.port, self.token);
        }
    }
}

/// Releases the reservation of `port` if it is still the one `token` names.
pub(crate) fn release(port: u16, token: u64) {
    let mut table = table();
    if table.get(&port).is_some_and(|e| e.token == token) {
        table.remove(&port);
    }
}

/// Whether `port` is reserved now.
#[cfg(test)]
fn reserved(port: u16) -> bool {
    table().get(&port).is_some_and(|e| e.until > Instant::now())
}

/// A port free on `ip` and not reserved by another start, reserved for `ttl`.
///
/// # Errors
/// When binding fails (e.g. `ip` is not an address of this machine) or no unreserved port
/// turned up.
pub(crate) fn reserve_free_port(ip: IpAddr, ttl: Duration) -> io::Result<Reservation> {
    static TOKENS: AtomicU64 = AtomicU64::new(1);
    // Sockets of ports that were reserved already stay open until the search ends, so the
    // kernel does not offer them again.
    let mut held = Vec::new();
    for _ in 0..ATTEMPTS {
        let socket = TcpListener::bind(SocketAddr::new(ip, 0))?;
        let port = socket.local_addr()?.port();
        let now = Instant::now();
        let mut table = table();
        table.retain(|_, e| e.until > now);
        if table.contains_key(&port) {
            drop(table);
            held.push(socket);
            continue;
        }
        let token = TOKENS.fetch_add(1, Ordering::Relaxed);
        table.insert(
            port,
            Entry {
                token,
                until: now + ttl,
            },
        );
        return Ok(Reservation {
            port,
            token,
            kept: false,
        });
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free port on {ip} after {ATTEMPTS} tries"),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    use super::*;

    const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn reservations_are_distinct_and_released() {
        let ttl = Duration::from_secs(60);
        let many: Vec<Reservation> = (0..200)
            .map(|_| reserve_free_port(LO, ttl).unwrap())
            .collect();
        let ports: HashSet<u16> = many.iter().map(Reservation::port).collect();
        assert_eq!(ports.len(), many.len());
        let first = many[0].port();
        assert!(reserved(first));
        drop(many);
        assert!(!reserved(first));

        let kept = reserve_free_port(LO, ttl).unwrap();
        let port = kept.port();
        let token = kept.keep();
        assert!(reserved(port));
        release(port, token + 1_000_000);
        assert!(reserved(port), "a stale token releases nothing");
        release(port, token);
        assert!(!reserved(port));
    }

    #[test]
    fn reservations_expire() {
        let r = reserve_free_port(LO, Duration::ZERO).unwrap();
        assert!(!reserved(r.port()));
    }
}
