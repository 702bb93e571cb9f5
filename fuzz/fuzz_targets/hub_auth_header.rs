//! The hub's `Authorization` header and token parsing: `token X` / `bearer X` only, the
//! lookup prefix and candidate rules, and stored hash strings.

#![no_main]

use hub::identity::tokens::{
    format_token_id, is_candidate, parse_authorization, parse_token_id, token_prefix, verify_token,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = parse_authorization(value) {
        assert!(!token.is_empty());
        assert!(!token.contains(char::is_whitespace), "{value:?}");
        let head = value.strip_suffix('\n').unwrap_or(value);
        assert!(head.ends_with(token), "{value:?}");
        let scheme = head[..head.len() - token.len()].trim_end();
        assert!(
            scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"),
            "{value:?}"
        );
    }
    let prefix = token_prefix(value);
    assert!(value.starts_with(prefix));
    assert!(prefix.chars().count() <= 4);
    let _ = is_candidate(value);
    if let Some(id) = parse_token_id(value) {
        assert_eq!(parse_token_id(&format_token_id(id)), Some(id));
    }
    // A stored hash string and a presented token, split at the first newline. Cheap rounds
    // only: the hash cost is not what is being tested.
    if let Some((stored, token)) = value.split_once('\n')
        && stored
            .split(':')
            .nth(1)
            .is_none_or(|rounds| rounds.trim().parse::<u32>().is_ok_and(|r| r <= 64))
    {
        let _ = verify_token(stored, token);
    }
});
