//! The hub's XSRF tokens: decoding arbitrary tokens and cookie headers never panics, a token
//! verifies only for the id it was made for, and only when it is the one submitted.

#![no_main]

use hub::identity::xsrf::{
    check_xsrf_token, create_xsrf_token, decode_xsrf_token, find_xsrf_cookie, verify_xsrf,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: i64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = decode_xsrf_token(SECRET, &text, NOW);
    let _ = find_xsrf_cookie(SECRET, &text, NOW);
    let (id, submitted) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = verify_xsrf(SECRET, Some(&text), id, "POST", Some(submitted), NOW);
    let _ = check_xsrf_token("POST", Some(submitted), id);

    // A token made for `id`: its cookie verifies for `id` with the token submitted, and for
    // nothing else.
    let token = create_xsrf_token(SECRET, id, NOW);
    assert_eq!(
        decode_xsrf_token(SECRET, &token, NOW).as_deref(),
        Some(id.as_bytes())
    );
    let header = format!("_xsrf={token}");
    assert!(verify_xsrf(SECRET, Some(&header), id, "POST", Some(&token), NOW).is_ok());
    assert!(verify_xsrf(SECRET, Some(&header), id, "POST", None, NOW).is_err());
    if submitted != token {
        assert!(verify_xsrf(SECRET, Some(&header), id, "POST", Some(submitted), NOW).is_err());
    }
    let other = format!("{id}x");
    assert!(verify_xsrf(SECRET, Some(&header), &other, "POST", Some(&token), NOW).is_err());
    assert!(verify_xsrf(b"another", Some(&header), id, "POST", Some(&token), NOW).is_err());
});
