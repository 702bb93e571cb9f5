//! Keeping attacker-chosen text and secrets out of logs.

use std::fmt;

/// Names of at most this many characters are logged whole (escaped).
const WHOLE_CHARS: usize = 32;
/// Longer names are logged as this many leading characters plus their length.
const HEAD_CHARS: usize = 16;
/// Upper bound on the escaped text, whatever the input (escapes can be 10 characters each).
const MAX_ESCAPED: usize = 64;

/// A bounded, escaped rendering of untrusted text for a log line (CVE-2026-54338).
///
/// Short text is quoted with control and non-printable characters escaped. Text longer than
/// 32 characters, or whose escaped form would exceed 64 characters, is cut to its first 16
/// characters followed by its length in bytes. The result never exceeds about 100 bytes, so
/// a megabyte of username cannot become a megabyte of log.
#[must_use]
pub fn loggable(text: &str) -> String {
    let short = text.chars().nth(WHOLE_CHARS).is_none();
    if short && let Some(escaped) = escape_bounded(text.chars(), MAX_ESCAPED) {
        return format!("\"{escaped}\"");
    }
    let head = match escape_bounded(text.chars().take(HEAD_CHARS), MAX_ESCAPED) {
        Some(escaped) => escaped,
        None => {
            // Escapes are long: keep as many whole escapes as fit.
            let mut out = String::new();
            for c in text.chars().take(HEAD_CHARS) {
                let piece: String = c.escape_debug().collect();
                if out.len() + piece.len() > MAX_ESCAPED {
                    break;
                }
                out.push_str(&piece);
            }
            out
        }
    };
    format!("\"{head}\"… ({} bytes)", text.len())
}

/// The escaped form of `chars`, or `None` when it would exceed `max` bytes.
fn escape_bounded(chars: impl Iterator<Item = char>, max: usize) -> Option<String> {
    let mut out = String::new();
    for c in chars {
        for e in c.escape_debug() {
            out.push(e);
        }
        if out.len() > max {
            return None;
        }
    }
    Some(out)
}

/// A password: never shown by `Debug`, overwritten when dropped (best effort: copies handed
/// to libpam are that library's to clear).
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: String) -> Self {
        Self(value)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Overwrites and empties the secret now.
    pub(crate) fn wipe(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        // Keep the writes from being optimised away as dead stores.
        std::hint::black_box(&bytes);
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn short_names_are_whole_and_escaped() {
        assert_eq!(loggable("alice"), "\"alice\"");
        assert_eq!(loggable("a\nb"), "\"a\\nb\"");
        assert_eq!(loggable("é\u{7}"), "\"é\\u{7}\"");
        assert_eq!(loggable("x\"y"), "\"x\\\"y\"");
        assert_eq!(loggable(""), "\"\"");
    }

    #[test]
    fn long_names_are_cut_with_their_length() {
        let name = "a".repeat(1 << 20);
        let shown = loggable(&name);
        assert_eq!(shown, format!("\"{}\"… (1048576 bytes)", "a".repeat(16)));
        let exactly = "b".repeat(32);
        assert_eq!(loggable(&exactly), format!("\"{exactly}\""));
        let one_more = "b".repeat(33);
        assert!(loggable(&one_more).ends_with("… (33 bytes)"));
    }

    #[test]
    fn escape_heavy_names_stay_bounded() {
        for name in [
            "\u{1}".repeat(30),
            "\u{1}".repeat(1000),
            "\u{202e}".repeat(20),
            "\0".repeat(5000),
        ] {
            let shown = loggable(&name);
            assert!(shown.len() <= 100, "{} bytes: {shown}", shown.len());
            assert!(!shown.chars().any(char::is_control), "{shown}");
        }
    }

    #[test]
    fn secrets_do_not_debug_and_are_wiped() {
        let mut s = Secret::new("hunter2-password".into());
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(s.expose(), "hunter2-password");
        s.wipe();
        assert_eq!(s.expose(), "");
    }
}
