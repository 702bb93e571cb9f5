//! Token formats, hashes (vectors from Python's hashlib), the Authorization header, ids.

use proptest::prelude::*;

use super::*;

// Vectors computed with Python's hashlib, as JupyterHub's `hash_token` does it.
const VECTORS: &[(&str, &str, u32, &str)] = &[
    (
        "0123456789abcdef0123456789abcdef",
        "a1b2c3d4e5f60718",
        1,
        "sha512:1:a1b2c3d4e5f60718:db3730979813fe74aeddb6348bc06b47cc99c6868ad055a76ff914acb8e7134a\
         cff0b7070f169c6b346e7bd361b6342082621f41a06185b60b4a4189d4709e09",
    ),
    (
        "my-service-secret",
        "0011223344556677",
        16384,
        "sha512:16384:0011223344556677:0aad53c70ed1403d9f61045eab6a8220830fa5d1a84c3895de15dd2e0a3\
         6fac68436ab62943fb4d00af65148f71ae8c4794bd41e0456c2d3507042b42c5ce812",
    ),
    (
        "h\u{e9}llo w\u{f6}rld",
        "ffeeddccbbaa9988",
        3,
        "sha512:3:ffeeddccbbaa9988:5bc69f4481936a2019c5f0dee6e7817dedd8767a090bbadfc65c6239baa9ed3\
         19c5171a26add4119832dfcd632ece5a05d2dba6279aa250231460c85e2e4ca60",
    ),
];

#[test]
fn hashes_match_jupyterhubs_format() {
    for (token, salt, rounds, stored) in VECTORS {
        let hashed = HashedToken::with_salt(token, salt, *rounds);
        assert_eq!(hashed.to_string(), *stored);
        assert!(verify_token(stored, token));
        assert!(!verify_token(stored, "wrong"));
        let parsed: HashedToken = stored.parse().unwrap();
        assert_eq!(parsed, hashed);
        assert_eq!(parsed.rounds(), *rounds);
        assert_eq!(parsed.salt(), *salt);
    }
}

#[test]
fn new_hashes_use_a_random_hex_salt() {
    let token = new_api_token();
    let a = HashedToken::new(&token, GENERATED_ROUNDS);
    let b = HashedToken::new(&token, GENERATED_ROUNDS);
    assert_ne!(a.salt(), b.salt());
    assert_eq!(a.salt().len(), 16);
    assert!(
        a.salt()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert!(a.to_string().starts_with("sha512:1:"));
    assert!(a.verify(&token) && b.verify(&token));
    assert!(
        HashedToken::new("secret-secret", USER_PROVIDED_ROUNDS)
            .to_string()
            .starts_with("sha512:16384:")
    );
    // The digest stays out of debug output.
    assert!(!format!("{a:?}").contains(&a.to_string()[30..]));
}

#[test]
fn unreadable_hashes_never_match() {
    for stored in [
        "",
        "sha512:1:salt",
        "sha512:1:salt:digest:extra",
        "md5:1:salt:abcd",
        "sha512:0:salt:abcd",
        "sha512:x:salt:abcd",
        "sha512:1::abcd",
        "sha512:1:salt:",
        "sha512:1:salt:not-hex",
    ] {
        assert!(!verify_token(stored, "token"), "{stored}");
    }
    assert_eq!(
        "md5:1:s:d".parse::<HashedToken>(),
        Err(HashFormatError::Algorithm("md5".into()))
    );
    assert_eq!(
        "sha512:-1:s:d".parse::<HashedToken>(),
        Err(HashFormatError::Rounds("-1".into()))
    );
}

#[test]
fn generated_secrets_have_jupyterhubs_shapes() {
    let api = new_api_token();
    assert_eq!(api.len(), 32);
    assert!(api.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
    assert_ne!(api, new_api_token());
    assert_eq!(new_session_id().len(), 32);

    let oauth = new_oauth_token();
    assert_eq!(oauth.len(), OAUTH_TOKEN_LEN);
    assert!(oauth.bytes().all(|c| c.is_ascii_alphanumeric()));
    assert_ne!(oauth, new_oauth_token());

    let code = new_share_code();
    assert_eq!(code.len(), 43);
    assert!(
        code.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
}

#[test]
fn prefix_and_candidate_rules() {
    assert_eq!(token_prefix("abcdef"), "abcd");
    assert_eq!(token_prefix("ab"), "ab");
    assert_eq!(
        token_prefix("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}"),
        "\u{e9}\u{e9}\u{e9}\u{e9}"
    );
    assert!(is_candidate(&"x".repeat(64)));
    assert!(!is_candidate(&"x".repeat(65)));
    assert!(!is_candidate(""));
}

#[test]
fn user_provided_tokens_need_eight_to_sixty_four_characters() {
    assert!(check_user_provided_token("12345678").is_ok());
    assert_eq!(
        check_user_provided_token("1234567")
            .unwrap_err()
            .to_string(),
        "token must be at least 8 characters, got 7: 1234..."
    );
    assert!(matches!(
        check_user_provided_token(&"y".repeat(65)),
        Err(UserTokenError::TooLong { len: 65, .. })
    ));
}

#[test]
fn authorization_header_matches_jupyterhubs_pattern() {
    // Expected results computed with Python's `re` and JupyterHub's pattern.
    let cases: &[(&str, Option<&str>)] = &[
        ("token abc", Some("abc")),
        ("Bearer abc", Some("abc")),
        ("bearer abc", Some("abc")),
        ("TOKEN\tabc", Some("abc")),
        ("token abc\n", Some("abc")),
        ("token   abc", Some("abc")),
        ("token  abc def", None),
        ("tokenabc", None),
        ("Basic abc", None),
        ("token: abc", None),
        ("bearer abc\n\n", None),
        (" token abc", None),
        ("token abc ", None),
        ("token ", None),
        ("", None),
        ("tok\u{e9}n abc", None),
    ];
    for (header, expected) in cases {
        assert_eq!(parse_authorization(header), *expected, "{header:?}");
    }
}

#[test]
fn token_ids() {
    assert_eq!(format_token_id(9), "a9");
    assert_eq!(parse_token_id("a9"), Some(9));
    assert_eq!(parse_token_id("a007"), Some(7));
    for bad in [
        "9",
        "a",
        "a-1",
        "a+1",
        "b9",
        "a9x",
        "a 9",
        "a99999999999999999999",
    ] {
        assert_eq!(parse_token_id(bad), None, "{bad}");
    }
}

proptest! {
    #[test]
    fn hashes_verify_only_their_token(token in "\\PC{0,64}", other in "\\PC{0,64}", rounds in 1u32..4) {
        let hashed = HashedToken::new(&token, rounds);
        prop_assert!(hashed.verify(&token));
        prop_assert!(verify_token(&hashed.to_string(), &token));
        prop_assert_eq!(hashed.verify(&other), other == token);
    }

    #[test]
    fn token_ids_round_trip(id in 0i64..i64::MAX) {
        prop_assert_eq!(parse_token_id(&format_token_id(id)), Some(id));
    }

    #[test]
    fn authorization_parsing_never_panics(header in "\\PC{0,80}") {
        if let Some(token) = parse_authorization(&header) {
            prop_assert!(!token.is_empty());
            prop_assert!(!token.contains(char::is_whitespace));
        }
    }
}

#[test]
fn remembered_matches_never_let_another_token_or_hash_through() {
    let hash = HashedToken::new("a-user-provided-secret", USER_PROVIDED_ROUNDS);
    assert!(hash.verify("a-user-provided-secret"));
    // Second time from the remembered match: same answer.
    assert!(hash.verify("a-user-provided-secret"));
    assert!(!hash.verify("a-user-provided-secreT"));
    assert!(!hash.verify(""));
    // The same token under another salt is a different stored hash, checked on its own.
    let other = HashedToken::new("another-secret", USER_PROVIDED_ROUNDS);
    assert!(!other.verify("a-user-provided-secret"));
    let tampered: HashedToken = format!(
        "sha512:{USER_PROVIDED_ROUNDS}:{}:{}",
        hash.salt(),
        "0".repeat(128)
    )
    .parse()
    .unwrap();
    assert!(!tampered.verify("a-user-provided-secret"));
}
