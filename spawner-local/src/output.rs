//! A server's output: in the hub's log, one log record per line, prefixed with
//! `[user/server]` (`[alice/]` for a default server), under the target
//! `spawner_local::server`; or, with a log directory, appended to a file per server.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt};

/// Longer lines are logged in pieces of this size, so a server that never writes a newline
/// cannot make the hub buffer without bound.
const MAX_LINE: usize = 16 * 1024;

/// Where the log records go.
pub(crate) const TARGET: &str = "spawner_local::server";

fn emit(name: &str, stream: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches(['\r', '\n']);
    tracing::info!(target: TARGET, stream, "[{name}] {text}");
}

/// Copies `reader` into the log until it ends (the server and every process that inherited the
/// stream have exited or closed it).
pub(crate) async fn forward(
    mut reader: impl AsyncRead + Unpin,
    name: String,
    stream: &'static str,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(chunk.get(..n).unwrap_or_default());
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            emit(&name, stream, pending.get(..end).unwrap_or_default());
            pending.drain(..=end);
        }
        while pending.len() >= MAX_LINE {
            emit(&name, stream, pending.get(..MAX_LINE).unwrap_or_default());
            pending.drain(..MAX_LINE);
        }
    }
    if !pending.is_empty() {
        emit(&name, stream, &pending);
    }
}

/// The log file of a server in `dir`: `<user>.log` for a default server, `<user>-<server>.log`
/// for a named one. Bytes that could change the path's meaning (`/`, a leading `.`, controls,
/// `%`, `-` and anything else outside `[A-Za-z0-9._@+]`) are written as `%XX`, so
/// two servers never share a file.
pub fn log_path(dir: &Path, user: &str, server: &str) -> PathBuf {
    let escape = |s: &str| {
        let mut out = String::new();
        for (i, b) in s.bytes().enumerate() {
            let plain = b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'@' | b'+')
                || (b == b'.' && i > 0);
            if plain {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    let name = if server.is_empty() {
        format!("{}.log", escape(user))
    } else {
        format!("{}-{}.log", escape(user), escape(server))
    };
    dir.join(name)
}

/// Opens (creating it, mode 0600) a server's log file for appending. A symbolic link in its
/// place is refused, so nobody who can write to the directory can point the hub elsewhere.
///
/// # Errors
/// When the file cannot be opened.
pub(crate) fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_names() {
        let dir = Path::new("/var/log/servers");
        assert_eq!(log_path(dir, "alice", ""), dir.join("alice.log"));
        assert_eq!(log_path(dir, "alice", "gpu.2"), dir.join("alice-gpu.2.log"));
        // `a-b`'s default server and `a`'s server `b` do not collide.
        assert_eq!(log_path(dir, "a-b", ""), dir.join("a%2Db.log"));
        assert_eq!(log_path(dir, "a", "b"), dir.join("a-b.log"));
        assert_eq!(log_path(dir, "..", "a b/c"), dir.join("%2E.-a%20b%2Fc.log"));
        assert_eq!(
            log_path(dir, "bob@example.org", ""),
            dir.join("bob@example.org.log")
        );
    }
}
