//! The hub's signed cookies (tornado's version 2 format) and cookie header parsing: nothing
//! panics, a signed value decodes to what was signed, and a value changed anywhere is refused.

#![no_main]

use std::time::Duration;

use hub::identity::cookies::{
    create_signed_value, decode_signed_value, get_cookie, parse_cookie_header, quote_cookie_value,
    unquote_cookie_value,
};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: i64 = 1_800_000_000;
const MAX_AGE: Duration = Duration::from_secs(14 * 86_400);

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Arbitrary input as a signed value, with the right and a wrong secret.
    let _ = decode_signed_value(SECRET, "jupyterhub-hub-login", &text, MAX_AGE, NOW);
    let _ = decode_signed_value(b"", "", &text, Duration::ZERO, i64::MIN);
    // As a Cookie header.
    let pairs = parse_cookie_header(&text);
    for (name, _) in pairs.iter().take(8) {
        let _ = get_cookie(&text, name);
    }
    let _ = unquote_cookie_value(&text);
    assert_eq!(unquote_cookie_value(&quote_cookie_value(&text)), text);

    // Round trip: sign the input, decode it back; flip one byte: refused.
    let signed = create_signed_value(SECRET, "name", data, NOW);
    let decoded = decode_signed_value(SECRET, "name", &signed, MAX_AGE, NOW);
    assert_eq!(decoded.as_deref(), Ok(data));
    assert!(decode_signed_value(SECRET, "other", &signed, MAX_AGE, NOW).is_err());
    assert!(decode_signed_value(b"another secret", "name", &signed, MAX_AGE, NOW).is_err());
    if let Some(&first) = data.first() {
        let mut bytes = signed.into_bytes();
        let i = usize::from(first) % bytes.len();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        if let Ok(tampered) = String::from_utf8(bytes) {
            let back = decode_signed_value(SECRET, "name", &tampered, MAX_AGE, NOW);
            assert!(back.is_err() || back.as_deref() == Ok(data), "{tampered:?}");
        }
    }
});
