//! The HTTP backend: nginx in the foreground, one process, a fixed small body.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::procs::Spec;

/// Length of the response body the backend serves.
pub const BODY_LEN: usize = 100;

/// The body nginx returns for every path: `BODY_LEN` printable bytes, with no
/// characters that nginx's config parser would treat specially.
pub fn body() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    ALPHABET
        .iter()
        .cycle()
        .take(BODY_LEN)
        .map(|&b| char::from(b))
        .collect()
}

/// Writes a config for a single foreground nginx process on
/// `127.0.0.1:<port>` into `dir`, and returns how to start it.
///
/// `master_process off` keeps everything in the one process that the
/// benchmark starts, pins and kills.
pub fn spec(nginx: &Path, dir: &Path, port: u16) -> Result<Spec<'static>> {
    let conf = format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{body}";
        }}
    }}
}}
"#,
        dir = dir.display(),
        body = body(),
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).with_context(|| format!("writing {}", conf_path.display()))?;
    let mut prefix = dir.as_os_str().to_owned();
    prefix.push("/");
    let mut error_log = dir.as_os_str().to_owned();
    error_log.push("/nginx-error.log");
    Ok(Spec {
        name: "nginx",
        program: nginx.as_os_str().to_owned(),
        args: vec![
            OsString::from("-p"),
            prefix,
            OsString::from("-e"),
            error_log,
            OsString::from("-c"),
            conf_path.into_os_string(),
        ],
        env: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_advertised_length() {
        assert_eq!(body().len(), BODY_LEN);
        assert!(body().bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
