use std::collections::BTreeSet;

use chrono::NaiveDateTime;

use super::authorize::{check_client, check_request};
use super::token::{TokenError, check_code, check_params};
use super::*;
use crate::db::models::oauth_codes::OAuthCode;
use crate::rbac::RoleSpec;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn params(query: &str) -> Params {
    Params::parse(query.as_bytes())
}

fn at(secs: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .naive_utc()
}

fn server_client(redirect_uri: &str, allowed: &[&str]) -> Client {
    Client {
        row: OAuthClient {
            id: 2,
            identifier: "jupyterhub-user-alice".to_owned(),
            description: "Server at /user/alice/".to_owned(),
            secret: String::new(),
            redirect_uri: redirect_uri.to_owned(),
            allowed_scopes: strings(allowed),
            spawner_id: Some(1),
            service_id: None,
            created: at(0),
        },
        resource: Resource::Server {
            owner_id: 1,
            owner: "alice".to_owned(),
            server: String::new(),
        },
    }
}

fn code(challenge: Option<(&str, &str)>, redirect_uri: &str) -> OAuthCode {
    OAuthCode {
        id: 1,
        code_hash: code_digest("c"),
        client_id: "jupyterhub-user-alice".to_owned(),
        user_id: 1,
        session_id: Some("s".to_owned()),
        redirect_uri: redirect_uri.to_owned(),
        scopes: strings(&["read:users:name!user"]),
        code_challenge: challenge.map(|(c, _)| c.to_owned()),
        code_challenge_method: challenge.map(|(_, m)| m.to_owned()),
        created: at(0),
        expires_at: at(300),
    }
}

// === Params ===

#[test]
fn params_decode_and_keep_duplicates() {
    let mut p = params("a=1&b=x%20y&a=2&scopes=s1&scopes=s2&empty=");
    assert_eq!(p.get("a"), Some("2"));
    assert_eq!(p.get("b"), Some("x y"));
    assert_eq!(p.get("empty"), None);
    assert_eq!(p.get("missing"), None);
    assert_eq!(p.all("scopes").collect::<Vec<_>>(), ["s1", "s2"]);
    assert_eq!(p.first_duplicate(&["b", "a"]), Some("a"));
    assert_eq!(p.first_duplicate(&["b", "scopes"]), Some("scopes"));
    assert_eq!(p.first_duplicate(&["b"]), None);
    // A body after the query overrides it.
    p.extend(params("b=later"));
    assert_eq!(p.get("b"), Some("later"));
    // Undecodable input never fails.
    let odd = Params::parse(b"x=%zz&y=%FF%FE&=&&z");
    assert_eq!(odd.get("x"), Some("%zz"));
    assert!(odd.get("y").is_some());
}

// === codes, PKCE, URLs ===

#[test]
fn code_digest_is_hex_sha256() {
    assert_eq!(
        code_digest("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_ne!(code_digest("abc"), code_digest("abd"));
}

#[test]
fn pkce_s256_and_plain() {
    // RFC 7636 appendix B.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    assert!(verify_pkce("S256", challenge, verifier));
    assert!(!verify_pkce(
        "S256",
        challenge,
        "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"
    ));
    assert!(!verify_pkce("S256", challenge, ""));
    assert!(!verify_pkce("plain", challenge, verifier));
    assert!(verify_pkce("plain", verifier, verifier));
    assert!(!verify_pkce("S512", challenge, verifier));
    assert!(!verify_pkce("s256", challenge, verifier));
}

#[test]
fn code_challenge_format() {
    assert!(valid_code_challenge(
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    ));
    assert!(valid_code_challenge("a.b_c~d-e"));
    assert!(!valid_code_challenge(""));
    assert!(!valid_code_challenge("has space"));
    assert!(!valid_code_challenge("plus+slash/"));
    assert!(valid_code_challenge(&"a".repeat(128)));
    assert!(!valid_code_challenge(&"a".repeat(129)));
}

#[test]
fn query_params_are_appended_and_encoded() {
    let p = [("code", "abc"), ("state", "a b&c=d/é")];
    assert_eq!(
        add_query_params("/user/alice/oauth_callback", &p),
        "/user/alice/oauth_callback?code=abc&state=a+b%26c%3Dd%2F%C3%A9"
    );
    assert_eq!(
        add_query_params("https://x.example/cb?next=1", &p[..1]),
        "https://x.example/cb?next=1&code=abc"
    );
    assert_eq!(add_query_params("/cb?", &p[..1]), "/cb?code=abc");
    assert_eq!(add_query_params("/cb?a=1&", &p[..1]), "/cb?a=1&code=abc");
    assert_eq!(add_query_params("/cb#frag", &p[..1]), "/cb?code=abc#frag");
    assert_eq!(add_query_params("/cb", &[]), "/cb");
}

// === authorize: client and redirect URI ===

#[test]
fn client_and_redirect_uri_checks() {
    let registered = Some("/user/alice/oauth_callback");
    let ok = |q: &str| check_client(&params(q), registered);
    assert_eq!(
        ok("client_id=c&redirect_uri=%2Fuser%2Falice%2Foauth_callback"),
        Ok("/user/alice/oauth_callback".to_owned())
    );
    // Omitted: the registered URI.
    assert_eq!(
        ok("client_id=c"),
        Ok("/user/alice/oauth_callback".to_owned())
    );
    for bad in [
        "/user/alice/oauth_callback/",
        "/user/alice/oauth_callback/x",
        "/user/alice/oauth_callback?x=1",
        "/user/alice/oauth_callback#x",
        "/USER/alice/oauth_callback",
        "/user/alice/oauth%5Fcallback",
        "//evil.example/user/alice/oauth_callback",
        "https://evil.example@host/user/alice/oauth_callback",
        "/user/alice/oauth_callback@evil.example",
        " /user/alice/oauth_callback",
    ] {
        let q = format!(
            "client_id=c&redirect_uri={}",
            form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
        );
        assert_eq!(ok(&q), Err("Mismatching redirect URI.".to_owned()), "{bad}");
    }
    assert_eq!(ok(""), Err("Missing client_id parameter.".to_owned()));
    assert_eq!(
        ok("client_id="),
        Err("Missing client_id parameter.".to_owned())
    );
    assert_eq!(
        check_client(&params("client_id=c"), None),
        Err("Invalid client_id parameter value.".to_owned())
    );
    assert_eq!(
        check_client(&params("client_id=c"), Some("")),
        Err("Invalid client_id parameter value.".to_owned())
    );
    assert_eq!(
        ok("client_id=c&client_id=d"),
        Err("Duplicate client_id parameter.".to_owned())
    );
    assert_eq!(
        ok("client_id=c&state=1&state=2"),
        Err("Duplicate state parameter.".to_owned())
    );
}

#[test]
fn request_checks() {
    let check = |q: &str, pkce: bool| check_request(&params(q), "/cb".to_owned(), pkce);
    let req = check(
        "client_id=c&response_type=code&state=s%20t&scope=a%20%20b",
        false,
    )
    .unwrap();
    assert_eq!(req.client_id, "c");
    assert_eq!(req.redirect_uri, "/cb");
    assert_eq!(req.state.as_deref(), Some("s t"));
    assert_eq!(req.scope, Some(strings(&["a", "b"])));
    assert_eq!(req.pkce, None);

    let req = check("response_type=code&scope=", false).unwrap();
    assert_eq!((req.state, req.scope), (None, None));

    let err = |q: &str, pkce: bool| check(q, pkce).unwrap_err();
    assert_eq!(err("", false).0.error, "invalid_request");
    assert_eq!(err("", false).1, "/cb");
    assert_eq!(
        err("response_type=token", false).0.error,
        "unsupported_response_type"
    );
    assert_eq!(
        err("response_type=code", true).0,
        RedirectError::new("invalid_request", "Code challenge required.")
    );

    let req = check("response_type=code&code_challenge=abc", true).unwrap();
    assert_eq!(req.pkce, Some(("abc".to_owned(), "plain".to_owned())));
    let req = check(
        "response_type=code&code_challenge=abc&code_challenge_method=S256",
        false,
    )
    .unwrap();
    assert_eq!(req.pkce, Some(("abc".to_owned(), "S256".to_owned())));
    assert_eq!(
        err(
            "response_type=code&code_challenge=abc&code_challenge_method=S512",
            false
        )
        .0
        .error,
        "invalid_request"
    );
    assert_eq!(
        err("response_type=code&code_challenge=a%20b", false)
            .0
            .error,
        "invalid_request"
    );
}

// === scopes ===

#[test]
fn requested_scopes_defaults_roles_and_limits() {
    let registry = ScopeRegistry::new();
    let roles = RoleTable::load(
        &registry,
        &[RoleSpec {
            name: "reader".to_owned(),
            scopes: Some(strings(&["read:users:activity!user"])),
            ..RoleSpec::default()
        }],
        &[] as &[&str],
    )
    .unwrap();
    let client = server_client(
        "/cb",
        &["access:servers!server=alice/", "read:users:activity!user"],
    );
    let required = client.required_scopes();
    assert_eq!(
        required,
        set(&[
            "access:servers!server=alice/",
            "read:users:groups!user",
            "read:users:name!user"
        ])
    );
    let allowed = &client.row.allowed_scopes;
    let resolve = |requested: Option<&[String]>| {
        requested_scopes(&registry, &roles, requested, allowed, &required)
    };

    // Nothing requested: everything the client may have.
    let all = set(&[
        "access:servers!server=alice/",
        "read:users:activity!user",
        "read:users:groups!user",
        "read:users:name!user",
    ]);
    assert_eq!(resolve(None).unwrap(), all);
    assert_eq!(resolve(Some(&[])).unwrap(), all);
    // `identify` alone: the required scopes only.
    assert_eq!(resolve(Some(&strings(&["identify"]))).unwrap(), required);
    // A subset of the allowed scopes.
    assert_eq!(
        resolve(Some(&strings(&["identify", "read:users:activity!user"]))).unwrap(),
        all
    );
    // A role standing for allowed scopes.
    assert_eq!(resolve(Some(&strings(&["reader"]))).unwrap(), all);
    // Beyond the allowed set.
    let e = resolve(Some(&strings(&["admin:users"]))).unwrap_err();
    assert_eq!(e.error, "invalid_scope");
    assert!(e.description.unwrap().contains("admin:users"));
    // A role whose scopes are not allowed, an unknown name, a mix of roles and scopes.
    assert!(resolve(Some(&strings(&["user"]))).is_err());
    assert!(resolve(Some(&strings(&["no-such-thing"]))).is_err());
    assert!(resolve(Some(&strings(&["reader", "read:users:activity!user"]))).is_err());
    // Same base, other filter: not allowed.
    assert!(resolve(Some(&strings(&["read:users:activity!user=bob"]))).is_err());
    assert!(resolve(Some(&strings(&["access:servers!server=bob/"]))).is_err());
}

#[test]
fn confirmation_rules() {
    let scopes = set(&["a", "b"]);
    assert!(!needs_confirmation(true, false, &set(&[]), &scopes));
    assert!(!needs_confirmation(false, true, &set(&[]), &scopes));
    assert!(needs_confirmation(false, false, &set(&[]), &scopes));
    assert!(needs_confirmation(false, false, &set(&["a"]), &scopes));
    assert!(!needs_confirmation(
        false,
        false,
        &set(&["a", "b", "c"]),
        &scopes
    ));
    assert!(!needs_confirmation(false, false, &set(&["x"]), &set(&[])));
}

#[test]
fn scope_descriptions() {
    let registry = ScopeRegistry::new();
    let scopes = set(&[
        "access:servers!server=alice/",
        "identify",
        "read:users:name!user",
        "read:users!group=team",
        "read:hub",
        "access:services!service",
    ]);
    let d = describe_scopes(
        &registry,
        &scopes,
        "bob",
        ClientTarget::Server {
            user: "alice",
            server: "",
        },
    );
    let by_scope = |s: &str| d.iter().find(|x| x.scope == s).unwrap();
    assert_eq!(d.len(), 5);
    assert_eq!(
        by_scope("access:servers!server=alice/").filter,
        "server alice/"
    );
    assert_eq!(by_scope("read:users:name!user").filter, "user bob");
    assert_eq!(
        by_scope("read:users!group=team").filter,
        "members of group team"
    );
    assert_eq!(by_scope("read:hub").filter, "");
    assert_eq!(
        by_scope("read:hub").description,
        registry.description("read:hub").unwrap()
    );
    assert_eq!(by_scope("access:services!service").filter, "this service");
}

// === token ===

#[test]
fn token_param_checks() {
    assert_eq!(
        check_params(&params("grant_type=authorization_code&code=x")),
        Ok("x")
    );
    assert_eq!(
        check_params(&params("code=x")),
        Err(TokenError::UNSUPPORTED_GRANT_TYPE)
    );
    assert_eq!(
        check_params(&params("grant_type=refresh_token&code=x")),
        Err(TokenError::UNSUPPORTED_GRANT_TYPE)
    );
    assert_eq!(
        check_params(&params("grant_type=authorization_code")),
        Err(TokenError::invalid_request("Missing code parameter."))
    );
    assert_eq!(
        check_params(&params(
            "grant_type=authorization_code&code=x&client_id=a&client_id=a"
        )),
        Err(TokenError::invalid_request(
            "Duplicate client_id parameter."
        ))
    );
}

#[test]
fn token_code_checks() {
    let client = server_client("/cb", &[]);
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let plain = code(None, "/cb");
    let s256 = code(Some((challenge, "S256")), "/cb");

    assert_eq!(
        check_code(&plain, &client, None, Some("/cb"), false),
        Ok(())
    );
    assert_eq!(check_code(&plain, &client, None, None, false), Ok(()));
    // A verifier without a stored challenge is ignored, unless PKCE is required.
    assert_eq!(check_code(&plain, &client, Some("x"), None, false), Ok(()));
    assert_eq!(
        check_code(&plain, &client, None, None, true),
        Err(TokenError::invalid_request("Code verifier required."))
    );
    assert_eq!(
        check_code(&plain, &client, Some("x"), None, true),
        Err(TokenError::INVALID_GRANT)
    );

    assert_eq!(
        check_code(&s256, &client, Some(verifier), None, true),
        Ok(())
    );
    assert_eq!(
        check_code(&s256, &client, None, None, false),
        Err(TokenError::invalid_request("Code verifier required."))
    );
    assert_eq!(
        check_code(&s256, &client, Some("wrong"), None, false),
        Err(TokenError::INVALID_GRANT)
    );
    assert_eq!(
        check_code(&s256, &client, Some(challenge), None, false),
        Err(TokenError::INVALID_GRANT)
    );

    let mismatch = Err(TokenError::invalid_request("Mismatching redirect URI."));
    assert_eq!(
        check_code(&plain, &client, None, Some("/cb/"), false),
        mismatch
    );
    assert_eq!(
        check_code(&plain, &client, None, Some("/CB"), false),
        mismatch
    );
    // The client's URI changed since the code was issued.
    let moved = server_client("/elsewhere", &[]);
    assert_eq!(check_code(&plain, &moved, None, None, false), mismatch);
    assert_eq!(
        check_code(&plain, &moved, None, Some("/cb"), false),
        mismatch
    );
}
