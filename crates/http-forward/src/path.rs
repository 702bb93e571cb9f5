//! Request paths: the safe decoding used for routing, and joining onto a target.
//!
//! A proxy that routes on a *decoded, normalised* path but forwards the *raw* one can send a
//! request to a backend that reads it differently: `/user/alice/../bob/x` routed by its
//! normalised form reaches bob's server as a path under alice, or the reverse. We refuse every
//! path whose segments could be read two ways, so that the segments we route on are exactly
//! the segments the backend sees after one decoding:
//!
//! - dot segments (`.` and `..`), raw or percent-encoded (`%2e`, `%2E%2e`, ...);
//! - encoded separators and NUL (`%2f`, `%5c`, `%00`), raw backslashes and raw NUL;
//! - malformed escapes (`%`, `%zz`) and escapes that do not decode to UTF-8;
//! - the same things encoded twice (`%252e%252e`, `%252f`), for backends that decode again.
//!
//! Everything else (spaces, `@`, `~`, unicode, empty segments) is allowed and forwarded as the
//! client sent it.

use std::borrow::Cow;

use percent_encoding::percent_decode;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// A `%` not followed by two hex digits, or an escape that does not decode to UTF-8.
    MalformedEscape,
    /// A `.` or `..` segment, in any encoding.
    DotSegment,
    /// An encoded `/`, encoded or raw `\`, or a NUL byte (encoded or raw).
    EncodedSeparator,
    /// The path does not start with `/`.
    NotAbsolute,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::MalformedEscape => "malformed percent-encoding in the path",
            Self::DotSegment => "dot segments are not allowed in the path",
            Self::EncodedSeparator => {
                "encoded slashes, backslashes and NUL are not allowed in the path"
            }
            Self::NotAbsolute => "the path must start with /",
        })
    }
}

impl std::error::Error for PathError {}

/// A checked path, whose decoded segments can be walked in order. The root path `/` has none;
/// a trailing slash gives a final empty segment, and `//` an empty segment in the middle.
/// Checking and walking allocate nothing unless a segment holds percent-escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments<'a> {
    /// The path without its leading slashes.
    rest: &'a str,
}

impl<'a> Segments<'a> {
    /// Checks a raw (still percent-encoded) path.
    ///
    /// # Errors
    /// When the path could be read differently by a backend; see the module documentation.
    pub fn parse(raw: &'a str) -> Result<Self, PathError> {
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        // Leading slashes are one separator, as configurable-http-proxy's trie treats them:
        // `//user/alice` is looked up as `/user/alice`.
        let rest = raw.trim_start_matches('/');
        if !rest.is_empty() {
            for raw_segment in rest.split('/') {
                decode_segment(raw_segment)?;
            }
        }
        Ok(Self { rest })
    }

    /// The decoded segments.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'a, str>> + use<'a> {
        let rest = self.rest;
        rest.split('/')
            .filter(move |_| !rest.is_empty())
            // Every segment was checked by `parse`, so decoding cannot fail here.
            .map(|raw| decode_segment(raw).unwrap_or(Cow::Borrowed(raw)))
    }

    /// How many segments there are.
    pub fn len(&self) -> usize {
        if self.rest.is_empty() {
            0
        } else {
            self.rest.split('/').count()
        }
    }

    /// Whether this is the root path.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

fn decode_segment(raw: &str) -> Result<Cow<'_, str>, PathError> {
    // A raw NUL cannot come through an HTTP parser, but a caller with another source of paths
    // must not get one through either.
    if raw.contains(['\\', '\0']) {
        return Err(PathError::EncodedSeparator);
    }
    if !raw.contains('%') {
        check_dots(raw)?;
        return Ok(Cow::Borrowed(raw));
    }
    check_escapes(raw)?;
    let decoded = percent_decode(raw.as_bytes())
        .decode_utf8()
        .map_err(|_| PathError::MalformedEscape)?;
    check_decoded(&decoded)?;
    // A second decoding must not reveal anything the first one would have refused: some
    // backends decode twice, and lenient decoders decode the valid escapes of a string that
    // also holds malformed ones (`%5c%` still gives a backslash).
    if decoded.contains('%') {
        let twice = percent_decode(decoded.as_bytes()).decode_utf8_lossy();
        check_decoded(&twice)?;
    }
    Ok(decoded)
}

fn check_escapes(raw: &str) -> Result<(), PathError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let ok = bytes.len() > i + 2
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(PathError::MalformedEscape);
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

fn check_decoded(decoded: &str) -> Result<(), PathError> {
    if decoded.contains(['/', '\\', '\0']) {
        return Err(PathError::EncodedSeparator);
    }
    check_dots(decoded)
}

fn check_dots(segment: &str) -> Result<(), PathError> {
    if segment == "." || segment == ".." {
        Err(PathError::DotSegment)
    } else {
        Ok(())
    }
}

/// Byte offset in `raw` (a path accepted by [`Segments::parse`]) just after its first `n`
/// segments; used to cut a matched route prefix off the raw path.
pub fn raw_prefix_len(raw: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    // Start at the last slash of the leading run.
    let mut offset = (raw.len() - raw.trim_start_matches('/').len()).saturating_sub(1);
    for _ in 0..n {
        // Each segment starts after a '/'.
        let start = offset + 1;
        if start > raw.len() {
            return raw.len();
        }
        offset = raw[start..].find('/').map_or(raw.len(), |i| start + i);
    }
    offset
}

/// Joins a target's path and query with the request's, as configurable-http-proxy does: the
/// slash at the seam is collapsed, and queries are merged with `&`, the target's first.
pub fn join(
    target_path: &str,
    target_query: Option<&str>,
    path: &str,
    query: Option<&str>,
) -> String {
    let base = target_path.trim_end_matches('/');
    let mut out = String::with_capacity(
        base.len() + path.len() + 2 + target_query.map_or(0, str::len) + query.map_or(0, str::len),
    );
    out.push_str(base);
    if path.is_empty() {
        if out.is_empty() {
            out.push('/');
        }
    } else {
        if !path.starts_with('/') {
            out.push('/');
        }
        out.push_str(path);
    }
    match (
        target_query.filter(|q| !q.is_empty()),
        query.filter(|q| !q.is_empty()),
    ) {
        (Some(t), Some(q)) => {
            out.push('?');
            out.push_str(t);
            out.push('&');
            out.push_str(q);
        }
        (Some(q), None) | (None, Some(q)) => {
            out.push('?');
            out.push_str(q);
        }
        (None, None) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segs(raw: &str) -> Vec<String> {
        Segments::parse(raw)
            .unwrap()
            .iter()
            .map(Cow::into_owned)
            .collect()
    }

    #[test]
    fn plain_paths() {
        assert!(segs("/").is_empty());
        assert_eq!(segs("/user/alice"), ["user", "alice"]);
        assert_eq!(segs("/user/alice/"), ["user", "alice", ""]);
        assert_eq!(segs("//dbl//x"), ["dbl", "", "x"]);
        assert_eq!(segs("/b%40r/b%20r"), ["b@r", "b r"]);
        assert_eq!(segs("/%C3%BC%C3%B1"), ["üñ"]);
        assert_eq!(segs("/a.b/..c/.d"), ["a.b", "..c", ".d"]);
    }

    #[test]
    fn refused_paths() {
        use PathError::*;
        for (raw, err) in [
            ("/user/alice/../bob/x", DotSegment),
            ("/user/./x", DotSegment),
            ("/user/alice/%2e%2e/bob", DotSegment),
            ("/user/%2E/x", DotSegment),
            ("/user/alice%2F..%2Fbob", EncodedSeparator),
            ("/user/alice%2fbob", EncodedSeparator),
            ("/user/a%5cb", EncodedSeparator),
            ("/user/a\\b", EncodedSeparator),
            ("/user/a%00", EncodedSeparator),
            ("/user/a\0", EncodedSeparator),
            ("//\0", EncodedSeparator),
            ("/user/%252e%252e/x", DotSegment),
            ("/user/a%252fb", EncodedSeparator),
            ("/76#%255c%25/x", EncodedSeparator),
            ("/user/a%252f%25b", EncodedSeparator),
            ("/%", MalformedEscape),
            ("/%zz", MalformedEscape),
            ("/a%2", MalformedEscape),
            ("/%ff%fe", MalformedEscape),
            ("relative", NotAbsolute),
        ] {
            assert_eq!(Segments::parse(raw), Err(err), "{raw}");
        }
    }

    #[test]
    fn prefix_offsets() {
        assert_eq!(raw_prefix_len("/user/b%40r/x", 2), "/user/b%40r".len());
        assert_eq!(raw_prefix_len("/user/alice", 2), "/user/alice".len());
        assert_eq!(raw_prefix_len("/user/alice", 0), 0);
        assert_eq!(raw_prefix_len("/a", 3), 2);
        assert_eq!(raw_prefix_len("//dbl/x", 1), "//dbl".len());
    }

    #[test]
    fn joining() {
        assert_eq!(join("/T5/", None, "/user/trail", None), "/T5/user/trail");
        assert_eq!(
            join("/T4", Some("tq=1"), "/q/z", Some("rq=2")),
            "/T4/q/z?tq=1&rq=2"
        );
        assert_eq!(join("", None, "/bar", Some("query=foo")), "/bar?query=foo");
        assert_eq!(join("/", None, "/", None), "/");
        assert_eq!(join("/foo", None, "", None), "/foo");
        assert_eq!(join("", None, "", None), "/");
    }

    proptest! {
        // Whatever is accepted decodes segment by segment to text with no separator or dot
        // segment, and re-joining the raw segments gives the raw path back.
        #[test]
        fn accepted_paths_are_unambiguous(raw in "/[a-zA-Z0-9%./@~ -]{0,40}") {
            if let Ok(segments) = Segments::parse(&raw) {
                for s in segments.iter() {
                    prop_assert!(!s.contains('/'));
                    prop_assert!(s != "." && s != "..");
                }
                if !segments.is_empty() {
                    prop_assert_eq!(raw_prefix_len(&raw, segments.len()), raw.len());
                }
            }
        }
    }
}
