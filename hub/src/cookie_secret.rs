//! The cookie secret: the key that signs the hub's login cookies.
//!
//! Where it comes from, first match wins (as JupyterHub, `app.py` `init_secrets`):
//! 1. `hub.cookie_secret` from the configuration, which is also where the environment
//!    variables `JUPYTERHUB_COOKIE_SECRET` and `JPY_COOKIE_SECRET` (hex) land;
//! 2. the file `hub.cookie_secret_file` (default `jupyterhub_cookie_secret` in the working
//!    directory), hex or, with a warning, legacy base64;
//! 3. 32 fresh random bytes, written to that file as 64 hex digits and a newline.
//!
//! The file must be private to its owner: the hub refuses to start when any group or other
//! permission bit is set. JupyterHub refuses only "other" bits; a group-readable secret lets
//! every member of that group forge anyone's login, so we refuse those too.
//!
//! Changing or deleting the secret invalidates every login cookie: everyone is logged out.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore as _;

/// The default file name, relative to the working directory.
pub const DEFAULT_FILE: &str = "jupyterhub_cookie_secret";

/// How many random bytes a generated secret has.
pub const GENERATED_LEN: usize = 32;

/// Permission bits that must be clear on the secret file: everything for group and other.
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// The key that signs login cookies. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct CookieSecret(Vec<u8>);

impl CookieSecret {
    /// Wraps raw key bytes; an empty key is refused.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, InvalidSecret> {
        if bytes.is_empty() {
            return Err(InvalidSecret::Empty);
        }
        Ok(CookieSecret(bytes))
    }

    /// Decodes hex digits (either case, surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, InvalidSecret> {
        let text = text.trim();
        if !is_hex(text) {
            return Err(InvalidSecret::NotHex);
        }
        Self::from_bytes(hex::decode(text).map_err(|_| InvalidSecret::NotHex)?)
    }

    /// 32 bytes from the operating system's random generator.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; GENERATED_LEN];
        rand::rng().fill_bytes(&mut bytes);
        CookieSecret(bytes)
    }

    /// The key bytes, for HMAC.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lowercase hex, as written to the file.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Debug for CookieSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CookieSecret(<redacted>, {} bytes)", self.0.len())
    }
}

/// Why text is not a usable secret. The text itself is never repeated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    /// Nothing there.
    #[error("the secret is empty")]
    Empty,
    /// Not an even number of hex digits.
    #[error("the secret is not an even number of hexadecimal digits")]
    NotHex,
}

/// Whether `text` is a non-empty, even-length run of hex digits (JupyterHub's
/// `^([a-f0-9]{2})+$`, ignoring case).
fn is_hex(text: &str) -> bool {
    !text.is_empty() && text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where the secret in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `hub.cookie_secret`, from the config file or the environment.
    Config,
    /// Read from this file.
    File(PathBuf),
    /// Generated now and saved to this file.
    Generated(PathBuf),
}

/// Why the hub cannot get its cookie secret. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CookieSecretError {
    /// Group or other permission bits are set on the file.
    #[error(
        "cookie secret file {path} has mode {mode:04o}, so other accounts can read or change it \
         and forge logins; make it private with `chmod 600 {path}` and start again",
        path = path.display()
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file exists but could not be read.
    #[error("cannot read cookie secret file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The file's content is neither hex nor base64.
    #[error(
        "cookie secret file {} holds neither hex nor base64; replace it, or delete it to have a \
         new one generated (which logs everyone out)",
        path.display()
    )]
    Decode {
        /// The file.
        path: PathBuf,
    },
    /// A new secret could not be saved.
    #[error("cannot write cookie secret file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

/// Finds the cookie secret for `hub`: see the module docs for the order.
pub fn load_for(hub: &crate::config::HubSection) -> Result<CookieSecret, CookieSecretError> {
    load(hub.cookie_secret.as_ref(), &hub.cookie_secret_file).map(|(secret, _)| secret)
}

/// Uses `configured` if given, otherwise reads `file`, creating it with a new secret when it
/// does not exist (or is empty).
pub fn load(
    configured: Option<&CookieSecret>,
    file: &Path,
) -> Result<(CookieSecret, Origin), CookieSecretError> {
    if let Some(secret) = configured {
        warn_if_long(secret);
        return Ok((secret.clone(), Origin::Config));
    }
    let loaded = match read_file(file)? {
        Some(secret) => (secret, Origin::File(file.to_owned())),
        None => (create_file(file)?, Origin::Generated(file.to_owned())),
    };
    warn_if_long(&loaded.0);
    match &loaded.1 {
        Origin::Generated(path) => tracing::info!(
            path = %path.display(),
            "generated a new cookie secret in {}", path.display()
        ),
        _ => tracing::debug!(path = %file.display(), "loaded cookie secret"),
    }
    Ok(loaded)
}

/// Reads the secret file: `None` when it does not exist or holds nothing.
fn read_file(path: &Path) -> Result<Option<CookieSecret>, CookieSecretError> {
    let read_error = |source| CookieSecretError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & FORBIDDEN_MODE_BITS != 0 {
        return Err(CookieSecretError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = fs::read_to_string(path).map_err(read_error)?;
    let text = text.trim();
    if text.is_empty() {
        tracing::warn!(path = %path.display(), "cookie secret file is empty; generating a new secret");
        return Ok(None);
    }
    if is_hex(text) {
        return CookieSecret::from_hex(text)
            .map(Some)
            .map_err(|_| CookieSecretError::Decode {
                path: path.to_owned(),
            });
    }
    // Old JupyterHub releases wrote base64.
    let bytes = base64_engine()
        .decode(text)
        .map_err(|_| CookieSecretError::Decode {
            path: path.to_owned(),
        })?;
    tracing::warn!(
        path = %path.display(),
        "cookie secret file {} is base64, a legacy format; hex is expected", path.display()
    );
    CookieSecret::from_bytes(bytes)
        .map(Some)
        .map_err(|_| CookieSecretError::Decode {
            path: path.to_owned(),
        })
}

fn base64_engine() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

/// Writes a new secret to `path`. The file is created with mode 0600 by the `open` call
/// itself, so it is never readable by others, not even for a moment.
fn create_file(path: &Path) -> Result<CookieSecret, CookieSecretError> {
    let secret = CookieSecret::generate();
    let write_error = |source| CookieSecretError::Write {
        path: path.to_owned(),
        source,
    };
    let existed = path.exists();
    let mut file = if existed {
        // Only reached for an empty file whose mode has been checked; truncate keeps the mode.
        OpenOptions::new().write(true).truncate(true).open(path)
    } else {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    }
    .map_err(write_error)?;
    let written = file
        .write_all(format!("{}\n", secret.to_hex()).as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // A half-written secret would be read back on the next start; leave nothing instead.
        if !existed {
            let _ = fs::remove_file(path);
        }
        return Err(write_error(e));
    }
    Ok(secret)
}

fn warn_if_long(secret: &CookieSecret) {
    // Mirrors JupyterHub: a longer key buys nothing for HMAC-SHA256 and hints at a mistake.
    if secret.as_bytes().len() > GENERATED_LEN {
        tracing::warn!(
            bytes = secret.as_bytes().len(),
            "cookie secret is {} bytes; 32 is enough",
            secret.as_bytes().len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn write_with_mode(path: &Path, content: &str, mode: u32) {
        fs::write(path, content).unwrap();
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn missing_file_is_generated_private_and_hex() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DEFAULT_FILE);
        let (secret, origin) = load(None, &path).unwrap();
        assert_eq!(origin, Origin::Generated(path.clone()));
        assert_eq!(secret.as_bytes().len(), 32);
        assert_eq!(mode_of(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65, "64 hex digits and a newline");
        assert!(text.ends_with('\n'));
        assert_eq!(text.trim(), secret.to_hex());
        assert!(
            text.trim()
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );

        // The next start reads the same secret back.
        let (again, origin) = load(None, &path).unwrap();
        assert_eq!(again, secret);
        assert_eq!(origin, Origin::File(path));
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(CookieSecret::generate(), CookieSecret::generate());
    }

    #[test]
    fn world_readable_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_with_mode(&path, &"ab".repeat(32), 0o644);
        let err = load(None, &path).unwrap_err();
        assert!(matches!(
            err,
            CookieSecretError::Permissions { mode: 0o644, .. }
        ));
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
        assert!(message.contains("0644"), "{message}");
    }

    #[test]
    fn group_bits_are_refused_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        for mode in [0o640, 0o620, 0o610, 0o604, 0o602, 0o601] {
            write_with_mode(&path, &"ab".repeat(32), mode);
            assert!(
                matches!(
                    load(None, &path),
                    Err(CookieSecretError::Permissions { .. })
                ),
                "mode {mode:o} must be refused"
            );
        }
        write_with_mode(&path, &"ab".repeat(32), 0o400);
        assert!(load(None, &path).is_ok(), "owner read-only is fine");
    }

    #[test]
    fn hex_file_is_read_in_either_case_and_stripped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_with_mode(&path, "  DEADbeef00\n\n", 0o600);
        let (secret, _) = load(None, &path).unwrap();
        assert_eq!(secret.as_bytes(), [0xde, 0xad, 0xbe, 0xef, 0x00]);
    }

    #[test]
    fn legacy_base64_file_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let bytes: Vec<u8> = (0u8..32).collect();
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(!is_hex(&text));
        write_with_mode(&path, &format!("{text}\n"), 0o600);
        let (secret, _) = load(None, &path).unwrap();
        assert_eq!(secret.as_bytes(), bytes.as_slice());
    }

    #[test]
    fn garbage_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_with_mode(&path, "not a secret!", 0o600);
        assert!(matches!(
            load(None, &path),
            Err(CookieSecretError::Decode { .. })
        ));
    }

    #[test]
    fn long_secret_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_with_mode(&path, &"01".repeat(64), 0o600);
        let (secret, _) = load(None, &path).unwrap();
        assert_eq!(secret.as_bytes().len(), 64);
    }

    #[test]
    fn empty_file_gets_a_new_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_with_mode(&path, "\n", 0o600);
        let (secret, origin) = load(None, &path).unwrap();
        assert_eq!(origin, Origin::Generated(path.clone()));
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), secret.to_hex());
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn configured_secret_wins_and_the_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let configured = CookieSecret::from_hex("00ff").unwrap();
        let (secret, origin) = load(Some(&configured), &path).unwrap();
        assert_eq!(secret, configured);
        assert_eq!(origin, Origin::Config);
        assert!(!path.exists());
    }

    #[test]
    fn missing_directory_is_a_write_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/dir/secret");
        let err = load(None, &path).unwrap_err();
        assert!(matches!(err, CookieSecretError::Write { .. }));
        assert!(err.to_string().contains("no/such/dir/secret"));
    }

    #[test]
    fn hex_parsing() {
        assert!(CookieSecret::from_hex("abc").is_err(), "odd length");
        assert!(CookieSecret::from_hex("zz").is_err());
        assert!(CookieSecret::from_hex("").is_err());
        assert_eq!(
            CookieSecret::from_hex(" 0A0b ").unwrap().as_bytes(),
            [10, 11]
        );
        let secret = CookieSecret::from_hex("00ff").unwrap();
        assert!(!format!("{secret:?}").contains("00ff"));
    }
}
