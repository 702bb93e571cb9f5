//! Secrets the hub hands out and recognises: API tokens, OAuth access tokens and codes, share
//! codes. Generation, the stored hash, verification, the `Authorization` header and API token
//! ids.
//!
//! Storage format (JupyterHub `orm.Hashed` / `utils.hash_token`, so a database can be shared):
//! `sha512:<rounds>:<salt>:<hexdigest>`, where `salt` is the hex text of 8 random bytes and the
//! digest is SHA-512 over the salt's ASCII bytes once, then the token's UTF-8 bytes `rounds`
//! times into the same hash context (repeated input, not iterated hashing). Lookup is by the
//! first 4 characters (`prefix`), then a constant-time comparison of hashes.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::distr::Alphanumeric;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

/// Length of the clear-text prefix stored for lookup.
pub const PREFIX_LEN: usize = 4;

/// Longest token accepted as a credential; longer ones are refused before any hashing, so a
/// huge header cannot cost a 16384-round hash per candidate row.
pub const MAX_TOKEN_LEN: usize = 64;

/// Shortest user-provided token (service `api_token`, `api_tokens` config) accepted.
pub const MIN_USER_TOKEN_LEN: usize = 8;

/// Hash rounds for hub-generated tokens: they carry about 122 random bits, so one round is
/// enough.
pub const GENERATED_ROUNDS: u32 = 1;

/// Hash rounds for user-provided tokens and OAuth client secrets, which are treated as
/// passwords.
pub const USER_PROVIDED_ROUNDS: u32 = 16384;

/// Random bytes in a salt (hex-encoded to 16 characters).
pub const SALT_BYTES: usize = 8;

/// Length of OAuth access tokens and authorization codes.
pub const OAUTH_TOKEN_LEN: usize = 30;

/// Random bytes behind a share code (43 URL-safe characters).
pub const SHARE_CODE_BYTES: usize = 32;

const ALGORITHM: &str = "sha512";

// === generation ===

/// A new API token: 32 lowercase hex characters of a random UUID (JupyterHub's `new_token`,
/// `uuid4().hex`). Also the format of `cookie_id` and the session id.
pub fn new_api_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A new session id for the `jupyterhub-session-id` cookie (`uuid4().hex`).
pub fn new_session_id() -> String {
    new_api_token()
}

/// A new OAuth access token or authorization code: 30 characters from `[A-Za-z0-9]`, as
/// oauthlib generates them.
pub fn new_oauth_token() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(OAUTH_TOKEN_LEN)
        .map(char::from)
        .collect()
}

/// A new share code: 32 random bytes, URL-safe base64 without padding (43 characters), as
/// Python's `secrets.token_urlsafe()`.
pub fn new_share_code() -> String {
    let mut bytes = [0u8; SHARE_CODE_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn new_salt() -> String {
    let mut bytes = [0u8; SALT_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

// === hashing ===

/// A stored token hash: `sha512:<rounds>:<salt>:<hexdigest>`.
#[derive(Clone, PartialEq, Eq)]
pub struct HashedToken {
    rounds: u32,
    salt: String,
    digest: String,
}

// The digest verifies guesses offline; keep it out of logs.
impl fmt::Debug for HashedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashedToken")
            .field("rounds", &self.rounds)
            .field("salt", &self.salt)
            .finish_non_exhaustive()
    }
}

/// Why a stored hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashFormatError {
    /// Not four `:`-separated fields, or an empty salt or digest.
    #[error("malformed token hash")]
    Malformed,
    /// An algorithm other than `sha512`.
    #[error("unsupported token hash algorithm {0:?}")]
    Algorithm(String),
    /// The rounds field is not a positive integer.
    #[error("invalid token hash rounds {0:?}")]
    Rounds(String),
}

impl HashedToken {
    /// Hashes `token` with a fresh random salt.
    pub fn new(token: &str, rounds: u32) -> Self {
        Self::with_salt(token, &new_salt(), rounds)
    }

    /// Hashes `token` with the given salt text (used to verify, and for known vectors).
    pub fn with_salt(token: &str, salt: &str, rounds: u32) -> Self {
        HashedToken {
            rounds,
            salt: salt.to_owned(),
            digest: hex::encode(digest(token, salt, rounds)),
        }
    }

    /// The hash rounds.
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    /// The salt text.
    pub fn salt(&self) -> &str {
        &self.salt
    }

    /// Whether `token` hashes to this value. The comparison is constant-time; its cost grows with
    /// `rounds`, so callers refuse over-long tokens first ([`is_candidate`]).
    ///
    /// A match of a many-round hash is remembered (in a bounded set of digests), so a client
    /// using a user-provided token pays for the rounds once, not on every request.
    pub fn verify(&self, token: &str) -> bool {
        let mut expected = [0u8; 64];
        if hex::decode_to_slice(&self.digest, &mut expected).is_err() {
            return false;
        }
        let remembered = (self.rounds > GENERATED_ROUNDS).then(|| VerifiedHashes::key(self, token));
        if let Some(key) = &remembered
            && VERIFIED.contains(key)
        {
            return true;
        }
        let actual = digest(token, &self.salt, self.rounds);
        let matches = bool::from(actual.as_slice().ct_eq(&expected));
        if matches && let Some(key) = remembered {
            VERIFIED.insert(key);
        }
        matches
    }
}

/// Matches of many-round hashes already computed in this process, as SHA-256 digests of
/// (stored hash, token): a fact that never changes, so no change to the database can make an
/// entry wrong (a revoked token's row is gone, and lookups start from the rows). Neither tokens
/// nor anything that could be checked faster than the stored hash is kept: finding a token
/// from an entry costs a SHA-256 preimage. Only matches are kept, so failed guesses always pay
/// the full rounds. Bounded: emptied when it would grow past [`VerifiedHashes::MAX`].
struct VerifiedHashes(std::sync::Mutex<std::collections::HashSet<[u8; 32]>>);

static VERIFIED: std::sync::LazyLock<VerifiedHashes> =
    std::sync::LazyLock::new(|| VerifiedHashes(std::sync::Mutex::default()));

impl VerifiedHashes {
    const MAX: usize = 4096;

    fn key(hash: &HashedToken, token: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        for part in [hash.salt.as_str(), hash.digest.as_str(), token] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(hash.rounds.to_le_bytes());
        h.finalize().into()
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(key))
    }

    fn insert(&self, key: [u8; 32]) {
        if let Ok(mut set) = self.0.lock() {
            if set.len() >= Self::MAX {
                set.clear();
            }
            set.insert(key);
        }
    }
}

fn digest(token: &str, salt: &str, rounds: u32) -> sha2::digest::Output<Sha512> {
    let mut hasher = Sha512::new();
    hasher.update(salt.as_bytes());
    for _ in 0..rounds {
        hasher.update(token.as_bytes());
    }
    hasher.finalize()
}

impl fmt::Display for HashedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ALGORITHM}:{}:{}:{}",
            self.rounds, self.salt, self.digest
        )
    }
}

impl FromStr for HashedToken {
    type Err = HashFormatError;

    fn from_str(stored: &str) -> Result<Self, Self::Err> {
        let mut fields = stored.split(':');
        let (Some(algorithm), Some(rounds), Some(salt), Some(digest), None) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            return Err(HashFormatError::Malformed);
        };
        if algorithm != ALGORITHM {
            return Err(HashFormatError::Algorithm(algorithm.to_owned()));
        }
        let rounds = rounds
            .parse::<u32>()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| HashFormatError::Rounds(rounds.to_owned()))?;
        if salt.is_empty() || digest.is_empty() {
            return Err(HashFormatError::Malformed);
        }
        Ok(HashedToken {
            rounds,
            salt: salt.to_owned(),
            digest: digest.to_owned(),
        })
    }
}

/// Verifies `token` against a stored hash string; an unreadable hash never matches.
pub fn verify_token(stored: &str, token: &str) -> bool {
    stored
        .parse::<HashedToken>()
        .is_ok_and(|hashed| hashed.verify(token))
}

// === lookup rules ===

/// The lookup prefix: the first [`PREFIX_LEN`] characters (characters, not bytes, as Python
/// slices strings).
pub fn token_prefix(token: &str) -> &str {
    match token.char_indices().nth(PREFIX_LEN) {
        Some((end, _)) => &token[..end],
        None => token,
    }
}

/// Whether a presented token is worth looking up: non-empty and at most [`MAX_TOKEN_LEN`]
/// characters. Anything else is refused without hashing.
pub fn is_candidate(token: &str) -> bool {
    !token.is_empty() && token.chars().count() <= MAX_TOKEN_LEN
}

/// Why a user-provided token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserTokenError {
    /// Fewer than [`MIN_USER_TOKEN_LEN`] characters.
    #[error("token must be at least {MIN_USER_TOKEN_LEN} characters, got {len}: {prefix}...")]
    TooShort {
        /// The token's length in characters.
        len: usize,
        /// Its first characters, for the log.
        prefix: String,
    },
    /// More than [`MAX_TOKEN_LEN`] characters: it could never authenticate.
    #[error("token must be at most {MAX_TOKEN_LEN} characters, got {len}: {prefix}...")]
    TooLong {
        /// The token's length in characters.
        len: usize,
        /// Its first characters, for the log.
        prefix: String,
    },
}

/// Checks a token provided in configuration (service `api_token`, `api_tokens`). JupyterHub
/// only enforces the minimum; a token over the maximum would be silently unusable, so it is
/// refused here too.
pub fn check_user_provided_token(token: &str) -> Result<(), UserTokenError> {
    let len = token.chars().count();
    let prefix = token_prefix(token).to_owned();
    if len < MIN_USER_TOKEN_LEN {
        Err(UserTokenError::TooShort { len, prefix })
    } else if len > MAX_TOKEN_LEN {
        Err(UserTokenError::TooLong { len, prefix })
    } else {
        Ok(())
    }
}

// === Authorization header ===

/// The token in an `Authorization` header value, as JupyterHub's
/// `^(?:token|bearer)\s+(\S+)$` (case-insensitive) extracts it: `token X`, `Bearer X`,
/// `TOKEN X`. Anything else (`Basic …`, `token: X`, two words after the scheme) gives `None`.
/// As in Python, `$` also matches before one final newline.
pub fn parse_authorization(value: &str) -> Option<&str> {
    let value = value.strip_suffix('\n').unwrap_or(value);
    let scheme_len = ["token", "bearer"].into_iter().find_map(|scheme| {
        value
            .get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| scheme.len())
    })?;
    let rest = &value[scheme_len..];
    let token = rest.trim_start();
    if token.len() == rest.len() || token.is_empty() || token.contains(char::is_whitespace) {
        return None;
    }
    Some(token)
}

// === token ids ===

/// The API id of a token: `a` followed by its database id.
pub fn format_token_id(id: i64) -> String {
    format!("a{id}")
}

/// The database id in an API token id (`a42` → 42). Anything else is `None`, which the API
/// answers with 404 (`No such token …`).
pub fn parse_token_id(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('a')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests;
