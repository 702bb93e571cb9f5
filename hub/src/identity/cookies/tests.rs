//! Tornado v2 signed values (vectors from Python's hmac) and cookie quoting.

use proptest::prelude::*;

use super::*;

const SECRET_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const NOW: i64 = 1_700_000_000;

fn secret() -> Vec<u8> {
    hex::decode(SECRET_HEX).unwrap()
}

// Computed with Python's hmac/hashlib/base64 following tornado's v2 format.
const LOGIN_VECTOR: &str = "2|1:0|10:1700000000|20:jupyterhub-hub-login|\
     44:NWQxYTNlOWYwYzJiNGE2ZDhlN2Y5YTFiM2M1ZDdlOWY=|\
     65aab519434e1b97e92d9ee718f75e585cbd79f48633d5d29deecf49793beb69";

const COOKIE_ID: &[u8] = b"5d1a3e9f0c2b4a6d8e7f9a1b3c5d7e9f";

#[test]
fn signed_values_match_tornado() {
    assert_eq!(
        create_signed_value(&secret(), HUB_LOGIN_COOKIE, COOKIE_ID, NOW),
        LOGIN_VECTOR
    );
    assert_eq!(
        decode_signed_value(
            &secret(),
            HUB_LOGIN_COOKIE,
            LOGIN_VECTOR,
            HUB_LOGIN_MAX_AGE,
            NOW + 60
        ),
        Ok(COOKIE_ID.to_vec())
    );
}

#[test]
fn signed_values_expire_but_future_ones_pass() {
    let day = 86_400;
    let decode = |now| {
        decode_signed_value(
            &secret(),
            HUB_LOGIN_COOKIE,
            LOGIN_VECTOR,
            HUB_LOGIN_MAX_AGE,
            now,
        )
    };
    assert!(decode(NOW + 14 * day).is_ok());
    assert_eq!(decode(NOW + 14 * day + 1), Err(SignedValueError::Expired));
    assert!(decode(NOW - 365 * day).is_ok());
    let fractional = Duration::from_secs_f64(0.5 * 86_400.0);
    assert_eq!(
        decode_signed_value(
            &secret(),
            HUB_LOGIN_COOKIE,
            LOGIN_VECTOR,
            fractional,
            NOW + day
        ),
        Err(SignedValueError::Expired)
    );
}

#[test]
fn tampered_values_are_refused() {
    let decode = |value: &str, name: &str, key: &[u8]| {
        decode_signed_value(key, name, value, HUB_LOGIN_MAX_AGE, NOW)
    };
    // A flipped signature character.
    let mut flipped = LOGIN_VECTOR.to_owned();
    flipped.pop();
    flipped.push('8');
    assert_eq!(
        decode(&flipped, HUB_LOGIN_COOKIE, &secret()),
        Err(SignedValueError::BadSignature)
    );
    // Another secret.
    assert_eq!(
        decode(LOGIN_VECTOR, HUB_LOGIN_COOKIE, b"other"),
        Err(SignedValueError::BadSignature)
    );
    // Another cookie name (e.g. an _xsrf value replayed as a login cookie).
    assert_eq!(
        decode(LOGIN_VECTOR, XSRF_COOKIE, &secret()),
        Err(SignedValueError::WrongName)
    );
    // A changed value with the old signature.
    let swapped = LOGIN_VECTOR.replace("NWQx", "NWQy");
    assert_eq!(
        decode(&swapped, HUB_LOGIN_COOKIE, &secret()),
        Err(SignedValueError::BadSignature)
    );
    // Uppercase hex is not what tornado writes.
    let upper = LOGIN_VECTOR.replace("65aab519", "65AAB519");
    assert_eq!(
        decode(&upper, HUB_LOGIN_COOKIE, &secret()),
        Err(SignedValueError::BadSignature)
    );
}

#[test]
fn malformed_values_are_refused() {
    for bad in [
        "",
        "1|1:0|10:1700000000",
        "2|",
        "2|1:0",
        "2|x:0|",
        "2|2:0|",
        "2|1:0|10:1700000000|20:jupyterhub-hub-login|44:short|",
        "2|1:0|10:1700000000|20:jupyterhub-hub-login",
        "5d1a3e9f0c2b4a6d8e7f9a1b3c5d7e9f",
        "2|1:0|10:1700000000|20:jupyterhub-hub-login|44:NWQxYTNlOWYwYzJiNGE2ZDhlN2Y5YTFiM2M1ZDdlOWY=X",
    ] {
        assert_eq!(
            decode_signed_value(&secret(), HUB_LOGIN_COOKIE, bad, HUB_LOGIN_MAX_AGE, NOW),
            Err(SignedValueError::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn bad_base64_inside_a_validly_signed_value_is_refused() {
    // Sign a value field that is not base64 by building the string by hand.
    let mut body = String::from("2|");
    for field in ["0", "1700000000", HUB_LOGIN_COOKIE, "@@@@"] {
        body.push_str(&format!("{}:{field}|", field.len()));
    }
    let signed = format!("{body}{}", signature(&secret(), body.as_bytes()));
    assert_eq!(
        decode_signed_value(&secret(), HUB_LOGIN_COOKIE, &signed, HUB_LOGIN_MAX_AGE, NOW),
        Err(SignedValueError::BadValue)
    );
}

#[test]
fn cookie_values_are_quoted_like_python() {
    // Python's http.cookies quotes the signed value (it contains `=`).
    assert_eq!(
        quote_cookie_value(LOGIN_VECTOR),
        format!("\"{LOGIN_VECTOR}\"")
    );
    assert_eq!(quote_cookie_value("abc123|:~"), "abc123|:~");
    assert_eq!(
        quote_cookie_value("a\"b\\c\u{1}\u{e9}"),
        "\"a\\\"b\\\\c\\001\\351\""
    );
    assert_eq!(
        unquote_cookie_value("\"a\\\"b\\\\c\\001\\351\""),
        "a\"b\\c\u{1}\u{e9}"
    );
    assert_eq!(unquote_cookie_value("plain"), "plain");
    assert_eq!(unquote_cookie_value("\""), "\"");
    assert_eq!(unquote_cookie_value("\"\""), "");
    // Octal escapes stop at \377; a trailing backslash stays.
    assert_eq!(unquote_cookie_value("\"\\400\""), "400");
    assert_eq!(unquote_cookie_value("\"a\\\""), "a\\");
}

#[test]
fn cookie_headers_parse_like_tornado() {
    let header = format!(
        "jupyterhub-session-id=f690f8ad; {HUB_LOGIN_COOKIE}=\"{LOGIN_VECTOR}\"; flag; _xsrf=one; _xsrf=two"
    );
    let parsed = parse_cookie_header(&header);
    assert_eq!(
        parsed[0],
        ("jupyterhub-session-id".to_owned(), "f690f8ad".to_owned())
    );
    assert_eq!(parsed[1].1, LOGIN_VECTOR);
    assert_eq!(parsed[2], (String::new(), "flag".to_owned()));
    assert_eq!(
        get_cookie(&header, HUB_LOGIN_COOKIE).as_deref(),
        Some(LOGIN_VECTOR)
    );
    assert_eq!(get_cookie(&header, "_xsrf").as_deref(), Some("two"));
    assert_eq!(get_cookie(&header, "missing"), None);
    assert!(parse_cookie_header(" ; ;").is_empty());
}

proptest! {
    #[test]
    fn signed_values_round_trip(
        name in "[a-z_-]{1,30}",
        value in prop::collection::vec(any::<u8>(), 0..64),
        key in prop::collection::vec(any::<u8>(), 0..64),
        ts in 0i64..4_000_000_000,
    ) {
        let signed = create_signed_value(&key, &name, &value, ts);
        prop_assert_eq!(decode_signed_value(&key, &name, &signed, HUB_LOGIN_MAX_AGE, ts), Ok(value));
    }

    #[test]
    fn quoting_round_trips(value in "\\PC{0,40}|[\\x00-\\xff]{0,20}") {
        let quoted = quote_cookie_value(&value);
        prop_assert_eq!(unquote_cookie_value(&quoted), value.as_str());
    }

    #[test]
    fn decoding_never_panics(value in "\\PC{0,120}") {
        let _ = decode_signed_value(b"k", "n", &value, HUB_LOGIN_MAX_AGE, NOW);
    }
}
