//! The shim's own secret: it signs the cookies the shim sets (the login cookie holding the
//! user's OAuth token, the OAuth state cookie) and derives the XSRF tokens.
//!
//! Like `jupyterhub-singleuser`, which signs with its own Jupyter cookie secret, the hub never
//! reads these values, so the format is ours: `1.<unix seconds>.<base64url value>.<base64url
//! mac>`, the MAC being HMAC-SHA256 over the cookie's *name*, the timestamp and the value. A
//! value signed for one cookie name therefore never verifies under another (a state cookie
//! cannot be replayed as a login cookie). Every character is cookie-safe, so no quoting.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Version tag at the start of every signed value.
const FORMAT: &str = "1";

/// How far in the future a timestamp may lie (clock steps between restarts).
const FUTURE_SLACK_SECS: i64 = 300;

/// The signing key: 32 random bytes. `Debug` never shows them.
#[derive(Clone)]
pub struct CookieKey([u8; 32]);

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieKey(<redacted>)")
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or creating the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file does not hold 32 to 64 bytes as hex.
    #[error("{0}: expected 64 to 128 hex digits (32 to 64 random bytes)")]
    Content(String),
    /// Group or others may read or write the file.
    #[error("{0}: group or others have access to it; run `chmod 600` on it")]
    Permissions(String),
}

impl CookieKey {
    /// A fresh random key; cookies signed with it do not survive a restart.
    pub fn random() -> Self {
        let mut key = [0; 32];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// A key from raw bytes (tests, derived keys).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads the key from `path` (hex), or creates the file with a random key, mode 0600.
    ///
    /// # Errors
    /// When the file cannot be read or written, holds something else, or is open to others.
    pub fn from_file(path: &Path) -> Result<Self, KeyFileError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let shown = path.display().to_string();
        let io = |source| KeyFileError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::metadata(path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(KeyFileError::Permissions(shown));
                }
                let text = std::fs::read_to_string(path).map_err(io)?;
                let bytes =
                    decode_hex(text.trim()).ok_or_else(|| KeyFileError::Content(shown.clone()))?;
                if !(32..=64).contains(&bytes.len()) {
                    return Err(KeyFileError::Content(shown));
                }
                if let Ok(exact) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    return Ok(Self(exact));
                }
                // Longer secrets are folded into 32 bytes.
                let mut mac = new_mac(b"cookie-key-file");
                mac.update(&bytes);
                Ok(Self(mac.finalize().into_bytes().into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::random();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                writeln!(file, "{}", encode_hex(&key.0)).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Signs `value` for the cookie `name` at time `now` (unix seconds).
    pub fn sign(&self, name: &str, value: &str, now: i64) -> String {
        let encoded = URL_SAFE_NO_PAD.encode(value.as_bytes());
        let mac = self.mac(name, now, &encoded);
        format!(
            "{FORMAT}.{now}.{encoded}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    /// The value of a signed cookie `name`, if the signature holds and it is at most `max_age`
    /// old at `now`.
    pub fn verify(&self, name: &str, signed: &str, max_age: Duration, now: i64) -> Option<String> {
        let mut parts = signed.split('.');
        let (Some(FORMAT), Some(ts), Some(encoded), Some(sig), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let ts: i64 = ts.parse().ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        self.mac(name, ts, encoded).verify_slice(&sig).ok()?;
        let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        if ts > now.saturating_add(FUTURE_SLACK_SECS) || now.saturating_sub(ts) > max_age {
            return None;
        }
        String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()
    }

    /// A keyed digest of `data` for `purpose`, e.g. the XSRF token of a session.
    pub fn derive(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let mut mac = new_mac(&self.0);
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, name: &str, ts: i64, encoded: &str) -> HmacSha256 {
        let mut mac = new_mac(&self.0);
        mac.update(FORMAT.as_bytes());
        mac.update(b"|");
        mac.update(name.as_bytes());
        mac.update(b"|");
        mac.update(ts.to_string().as_bytes());
        mac.update(b"|");
        mac.update(encoded.as_bytes());
        mac
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// `n` random bytes as unpadded base64url text.
pub fn random_urlsafe(n: usize) -> String {
    let mut bytes = vec![0; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Lowercase hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn round_trip() {
        let key = CookieKey::from_bytes([7; 32]);
        let signed = key.sign("jupyterhub-user-alice", "tok|en\"; x", 1_000);
        assert!(
            signed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
        assert_eq!(
            key.verify("jupyterhub-user-alice", &signed, DAY, 1_000)
                .as_deref(),
            Some("tok|en\"; x")
        );
    }

    #[test]
    fn refused_values() {
        let key = CookieKey::from_bytes([7; 32]);
        let other = CookieKey::from_bytes([8; 32]);
        let signed = key.sign("a", "v", 1_000);
        // Another name, another key, too old, from the far future, tampered, malformed.
        assert_eq!(key.verify("b", &signed, DAY, 1_000), None);
        assert_eq!(other.verify("a", &signed, DAY, 1_000), None);
        assert_eq!(key.verify("a", &signed, DAY, 1_000 + 86_401), None);
        assert_eq!(key.verify("a", &signed, DAY, 1_000 - 301), None);
        let tampered = signed.replacen(".dg", ".dh", 1);
        assert_eq!(key.verify("a", &tampered, DAY, 1_000), None);
        for bad in [
            "",
            "1",
            "1.2.3",
            "1.x.dg.abc",
            "2.1000.dg.abc",
            "1.1000.dg.abc.extra",
        ] {
            assert_eq!(key.verify("a", bad, DAY, 1_000), None, "{bad}");
        }
    }

    #[test]
    fn key_file_created_private_and_reread() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let key = CookieKey::from_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = CookieKey::from_file(&path).unwrap();
        assert_eq!(key.0, again.0);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            CookieKey::from_file(&path),
            Err(KeyFileError::Permissions(_))
        ));
        std::fs::write(&path, "not hex").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            CookieKey::from_file(&path),
            Err(KeyFileError::Content(_))
        ));
    }

    #[test]
    fn derived_values_depend_on_purpose_and_data() {
        let key = CookieKey::from_bytes([1; 32]);
        assert_ne!(key.derive("xsrf", b"a"), key.derive("xsrf", b"b"));
        assert_ne!(key.derive("xsrf", b"a"), key.derive("other", b"a"));
        assert_eq!(key.derive("xsrf", b"a"), key.derive("xsrf", b"a"));
    }
}
