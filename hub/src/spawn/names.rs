//! Names around a server: the 6.x rules for new server names, the name used in messages, and
//! the server's OAuth client id.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Longest server name accepted for new servers.
pub const MAX_SERVER_NAME_LEN: usize = 30;

/// Longest display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 255;

/// What Python's `quote(s)` (safe `/`) leaves alone besides ASCII letters and digits.
const CLIENT_ID_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~')
    .remove(b'/');

/// Checks a new server name (JupyterHub 6.x): 1–30 characters of `[a-z0-9-]`, starting with a
/// letter, ending with a letter or digit, without `--`.
///
/// # Errors
/// A message for the user.
pub fn validate_server_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SERVER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .as_bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "Invalid server name {name:?}: server names must be 1-{MAX_SERVER_NAME_LEN} \
             characters of lowercase letters, digits and '-', start with a letter, end with a \
             letter or digit, and not contain '--'"
        ))
    }
}

/// Checks a display name: up to 255 printable characters, no leading, trailing or repeated
/// spaces. The empty string clears the display name.
///
/// # Errors
/// A message for the user.
pub fn validate_display_name(display_name: &str) -> Result<(), String> {
    if display_name.is_empty() {
        return Ok(());
    }
    if display_name.chars().count() > MAX_DISPLAY_NAME_LEN {
        return Err(format!(
            "display_name must be at most {MAX_DISPLAY_NAME_LEN} characters"
        ));
    }
    if display_name
        .chars()
        .any(|c| c.is_control() || (c.is_whitespace() && c != ' '))
    {
        return Err("display_name must contain only printable characters".to_owned());
    }
    if display_name.starts_with(' ') || display_name.ends_with(' ') || display_name.contains("  ") {
        return Err(
            "display_name must not start or end with a space or contain consecutive spaces"
                .to_owned(),
        );
    }
    Ok(())
}

/// How messages name a server: `alice` for the default server, `alice:gpu` for a named one.
pub fn log_name(user: &str, server: &str) -> String {
    if server.is_empty() {
        user.to_owned()
    } else {
        format!("{user}:{server}")
    }
}

/// The OAuth client id of a server: `jupyterhub-user-<user>` or `jupyterhub-user-<user>-<server>`,
/// each name percent-quoted as Python's `quote` does (so `@` becomes `%40`).
pub fn oauth_client_id(user: &str, server: &str) -> String {
    let mut id = format!(
        "jupyterhub-user-{}",
        utf8_percent_encode(user, CLIENT_ID_SAFE)
    );
    if !server.is_empty() {
        id.push('-');
        id.push_str(&utf8_percent_encode(server, CLIENT_ID_SAFE).to_string());
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        for ok in ["a", "gpu2", "my-server", "a1-b2", &"a".repeat(30)] {
            assert!(validate_server_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "-a",
            "a-",
            "a--b",
            "Abc",
            "a_b",
            "a b",
            "ü",
            &"a".repeat(31),
        ] {
            assert!(validate_server_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names() {
        for ok in ["", "My Server", "GPU (A100) — fast", "x"] {
            assert!(validate_display_name(ok).is_ok(), "{ok}");
        }
        for bad in [" a", "a ", "a  b", "a\tb", "a\nb", &"x".repeat(256)] {
            assert!(validate_display_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_ids() {
        assert_eq!(oauth_client_id("alice", ""), "jupyterhub-user-alice");
        assert_eq!(
            oauth_client_id("carol", "gpu2"),
            "jupyterhub-user-carol-gpu2"
        );
        assert_eq!(oauth_client_id("a@b.c", ""), "jupyterhub-user-a%40b.c");
        assert_eq!(oauth_client_id("ü ~", ""), "jupyterhub-user-%C3%BC%20~");
        assert_eq!(log_name("a", ""), "a");
        assert_eq!(log_name("a", "b"), "a:b");
    }
}
