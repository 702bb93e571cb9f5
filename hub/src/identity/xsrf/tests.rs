//! When XSRF applies, token sources, ids, and the `_xsrf` cookie (vectors from Python).

use super::*;

const SECRET_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const NOW: i64 = 1_700_000_000;
const SESSION: &str = "f690f8ad4e9d4c95bdec17bd84d5e20d";
const COOKIE_ID: &str = "5d1a3e9f0c2b4a6d8e7f9a1b3c5d7e9f";

// Computed with Python: urlsafe_b64encode(tornado v2 signed value of b"<session>:<cookie_id>"
// named "_xsrf" at NOW).rstrip(b"=").
const TOKEN_VECTOR: &str = "MnwxOjB8MTA6MTcwMDAwMDAwMHw1Ol94c3JmfDg4OlpqWTVNR1k0WVdRMFpUbGtOR001TldKa1pXTXhOMkprT0RSa05XVXlNR1E2TldReFlUTmxPV1l3WXpKaU5HRTJaRGhsTjJZNVlURmlNMk0xWkRkbE9XWT18MzJkMjNiMTdmMDg4M2IyYTAxNWRlZTY1M2QwZmZmNjU3NGUyNTA1ZDJlN2RiNjFmM2I2NTlmZjMzNDMyNGVjOA";

fn secret() -> Vec<u8> {
    hex::decode(SECRET_HEX).unwrap()
}

fn request(kind: HandlerKind, method: &str, auth: RequestAuth) -> XsrfRequest<'_> {
    XsrfRequest {
        kind,
        method,
        auth,
        has_origin: false,
        sec_fetch_mode: None,
        sec_fetch_site: None,
    }
}

// === when the check applies ===

#[test]
fn token_authenticated_requests_are_never_checked() {
    for method in ["GET", "POST", "DELETE", "PATCH"] {
        let mut req = request(HandlerKind::Api, method, RequestAuth::Token);
        req.sec_fetch_mode = Some("cors");
        req.has_origin = true;
        assert!(!xsrf_check_required(&req), "{method}");
    }
}

#[test]
fn cookie_api_requests() {
    use HandlerKind::Api;
    use RequestAuth::Cookie;
    let with = |method, mode: Option<&'static str>, site: Option<&'static str>| {
        let mut req = request(Api, method, Cookie);
        req.sec_fetch_mode = mode;
        req.sec_fetch_site = site;
        xsrf_check_required(&req)
    };
    // A cookie-only curl GET of /hub/api/user works; with Sec-Fetch-Mode: cors it needs a token.
    assert!(!with("GET", None, None));
    assert!(with("GET", Some("cors"), Some("same-origin")));
    assert!(!with("GET", Some("navigate"), None));
    assert!(!with("GET", Some("websocket"), None));
    assert!(!with("GET", Some("no-cors"), Some("same-origin")));
    assert!(with("GET", Some("no-cors"), Some("cross-site")));
    assert!(!with("HEAD", Some("cors"), None));
    assert!(!with("OPTIONS", Some("cors"), None));
    // Every write is checked, navigation or not.
    for method in ["POST", "PUT", "PATCH", "DELETE", "post"] {
        assert!(with(method, None, None), "{method}");
        assert!(with(method, Some("navigate"), None), "{method}");
        assert!(
            with(method, Some("no-cors"), Some("same-origin")),
            "{method}"
        );
    }
    assert!(!with("POST", Some("websocket"), None));
}

#[test]
fn page_requests() {
    use HandlerKind::Page;
    let with = |method, auth, mode: Option<&'static str>, site: Option<&'static str>| {
        let mut req = request(Page, method, auth);
        req.sec_fetch_mode = mode;
        req.sec_fetch_site = site;
        xsrf_check_required(&req)
    };
    // Pages never check reads, even cross-site cors.
    assert!(!with(
        "GET",
        RequestAuth::Cookie,
        Some("cors"),
        Some("cross-site")
    ));
    // The login POST is checked while anonymous.
    assert!(with(
        "POST",
        RequestAuth::Anonymous,
        Some("navigate"),
        Some("same-origin")
    ));
    // CVE-2026-40864: a cross-site no-cors form post (e.g. to /hub/spawn) is checked.
    assert!(with(
        "POST",
        RequestAuth::Cookie,
        Some("no-cors"),
        Some("cross-site")
    ));
    assert!(!with("POST", RequestAuth::Token, None, None));
}

#[test]
fn anonymous_api_requests_are_checked_only_with_an_origin() {
    let mut req = request(HandlerKind::Api, "POST", RequestAuth::Anonymous);
    assert!(!xsrf_check_required(&req));
    req.has_origin = true;
    assert!(xsrf_check_required(&req));
}

#[test]
fn cookies_are_ignored_on_non_json_posts() {
    assert!(cookie_auth_allowed("POST", None));
    assert!(cookie_auth_allowed("POST", Some("")));
    assert!(cookie_auth_allowed("POST", Some("application/json")));
    assert!(cookie_auth_allowed(
        "POST",
        Some("Application/JSON; charset=utf-8")
    ));
    assert!(cookie_auth_allowed(
        "POST",
        Some("text/plain; application/json")
    ));
    assert!(!cookie_auth_allowed("POST", Some("text/plain")));
    assert!(!cookie_auth_allowed(
        "post",
        Some("application/x-www-form-urlencoded")
    ));
    assert!(!cookie_auth_allowed(
        "POST",
        Some("multipart/form-data; boundary=x")
    ));
    assert!(cookie_auth_allowed("PATCH", Some("text/plain")));
}

// === where the token comes from ===

#[test]
fn token_sources_in_order() {
    assert_eq!(
        submitted_xsrf_token(Some(" a "), Some("b"), Some("c")),
        Some("a")
    );
    assert_eq!(
        submitted_xsrf_token(Some(""), Some("b"), Some("c")),
        Some("b")
    );
    assert_eq!(submitted_xsrf_token(None, None, Some("c")), Some("c"));
    assert_eq!(submitted_xsrf_token(None, Some(""), Some("")), None);
}

#[test]
fn error_messages_are_jupyterhubs() {
    assert_eq!(
        check_xsrf_token("GET", None, "x").unwrap_err().to_string(),
        "'_xsrf' argument missing from GET"
    );
    assert_eq!(
        check_xsrf_token("post", Some("y"), "x")
            .unwrap_err()
            .to_string(),
        "XSRF cookie does not match POST argument"
    );
    assert_eq!(check_xsrf_token("POST", Some("x"), "x"), Ok(()));
}

// === ids ===

#[test]
fn xsrf_ids() {
    assert_eq!(
        logged_in_xsrf_id(SESSION, COOKIE_ID),
        format!("{SESSION}:{COOKIE_ID}")
    );
    assert_eq!(anonymous_xsrf_id(Some("s"), "anon"), "s:anon");
    // The 6.1.1 quirk: no session cookie gives a literal `None`.
    assert_eq!(anonymous_xsrf_id(None, "anon"), "None:anon");
}

#[test]
fn anonymous_ids_match_python() {
    // base64.urlsafe_b64encode(sha256(ip + header + b"\xff" ...)), padding kept.
    assert_eq!(
        anonymous_id("127.0.0.1", &["curl/8.5.0"]),
        "dt3jLbjBZ3s65r2ERsLNmE42YlmlF3e4AX_phcXESG4="
    );
    assert_eq!(
        anonymous_id("10.0.0.0/8", &["Mozilla/5.0 \u{fc}", "en"]),
        "_ABCRcCoYJnbNDKPFDP6bU_5n2bv05oz2MNmTzZ8U84="
    );
    assert_ne!(
        anonymous_id("127.0.0.1", &["curl/8.5.0"]),
        anonymous_id("127.0.0.2", &["curl/8.5.0"])
    );
    assert_ne!(
        anonymous_id("127.0.0.1", &["curl/8.5.0"]),
        anonymous_id("127.0.0.1", &["curl/8.6.0"])
    );
}

#[test]
fn anonymous_ips_are_generalised_to_configured_networks() {
    let cidrs = parse_ip_cidrs("10.0.0.0/8;fd00::/8").unwrap();
    assert_eq!(cidrs[0].to_string(), "10.0.0.0/8");
    assert_eq!(cidrs[1].to_string(), "fd00::/8");
    assert_eq!(generalise_ip("10.1.2.3", &cidrs), "10.0.0.0/8");
    assert_eq!(generalise_ip("fd12::1", &cidrs), "fd00::/8");
    assert_eq!(generalise_ip("192.168.1.1", &cidrs), "192.168.1.1");
    assert_eq!(generalise_ip("not-an-ip", &cidrs), "not-an-ip");
    assert!(parse_ip_cidrs("").unwrap().is_empty());

    let host: IpCidr = "192.168.1.1".parse().unwrap();
    assert_eq!(host.to_string(), "192.168.1.1/32");
    assert!(host.contains("192.168.1.1".parse().unwrap()));
    assert!(!host.contains("192.168.1.2".parse().unwrap()));
    let all: IpCidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    assert!(!all.contains("::1".parse().unwrap()));

    // Host bits set, bad prefixes and garbage are refused, as Python's strict ip_network does.
    for bad in [
        "10.1.0.0/8",
        "10.0.0.0/33",
        "fd00::/129",
        "x/8",
        "10.0.0.0/",
        "10.0.0.0/-1",
    ] {
        assert!(bad.parse::<IpCidr>().is_err(), "{bad}");
    }
}

// === the _xsrf token and cookie ===

fn logged_in_id() -> String {
    logged_in_xsrf_id(SESSION, COOKIE_ID)
}

#[test]
fn tokens_match_python() {
    assert_eq!(
        create_xsrf_token(&secret(), &logged_in_id(), NOW),
        TOKEN_VECTOR
    );
    assert_eq!(
        decode_xsrf_token(&secret(), TOKEN_VECTOR, NOW + 30 * 86_400),
        Some(logged_in_id().into_bytes())
    );
    // Padding is optional on input.
    let padded = format!("{TOKEN_VECTOR}=");
    assert!(decode_xsrf_token(&secret(), &padded, NOW).is_some());
    // Valid for 31 days only.
    assert_eq!(
        decode_xsrf_token(&secret(), TOKEN_VECTOR, NOW + 31 * 86_400 + 1),
        None
    );
    assert_eq!(decode_xsrf_token(b"other", TOKEN_VECTOR, NOW), None);
    assert_eq!(decode_xsrf_token(&secret(), "!!!", NOW), None);
}

#[test]
fn the_first_validly_signed_cookie_wins() {
    let stale = create_xsrf_token(b"old secret", "x:y", NOW);
    let header = format!("_xsrf={stale}; other=1; _xsrf=\"{TOKEN_VECTOR}\"");
    let cookie = find_xsrf_cookie(&secret(), &header, NOW).unwrap();
    assert_eq!(cookie.token, TOKEN_VECTOR);
    assert_eq!(cookie.id, logged_in_id().into_bytes());
    assert!(!format!("{cookie:?}").contains(TOKEN_VECTOR));
    assert!(find_xsrf_cookie(&secret(), &format!("_xsrf={stale}"), NOW).is_none());
}

#[test]
fn pages_reuse_a_matching_cookie_and_replace_others_on_navigation() {
    let cookie = XsrfCookie {
        token: TOKEN_VECTOR.to_owned(),
        id: logged_in_id().into_bytes(),
    };
    let reused = xsrf_token_for_request(&secret(), Some(&cookie), &logged_in_id(), None, NOW + 5);
    assert_eq!(reused.token, TOKEN_VECTOR);
    assert!(!reused.set_cookie);

    // After login the expected id changes: a new token, set as a cookie on navigations only.
    let after_login = logged_in_xsrf_id("new-session", COOKIE_ID);
    let fresh = xsrf_token_for_request(
        &secret(),
        Some(&cookie),
        &after_login,
        Some("navigate"),
        NOW,
    );
    assert_ne!(fresh.token, TOKEN_VECTOR);
    assert!(fresh.set_cookie);
    assert_eq!(
        decode_xsrf_token(&secret(), &fresh.token, NOW),
        Some(after_login.clone().into_bytes())
    );
    assert!(xsrf_token_for_request(&secret(), None, &after_login, None, NOW).set_cookie);
    assert!(!xsrf_token_for_request(&secret(), None, &after_login, Some("cors"), NOW).set_cookie);
    assert!(!format!("{fresh:?}").contains(&fresh.token));
}

#[test]
fn verification_end_to_end() {
    let header = format!("jupyterhub-session-id={SESSION}; _xsrf={TOKEN_VECTOR}");
    let id = logged_in_id();
    let verify = |header: Option<&str>, id: &str, submitted: Option<&str>, now: i64| {
        verify_xsrf(&secret(), header, id, "POST", submitted, now)
    };
    assert_eq!(verify(Some(&header), &id, Some(TOKEN_VECTOR), NOW), Ok(()));
    assert!(matches!(
        verify(Some(&header), &id, None, NOW),
        Err(XsrfError::Missing { .. })
    ));
    assert!(matches!(
        verify(Some(&header), &id, Some("forged"), NOW),
        Err(XsrfError::Mismatch { .. })
    ));
    // A token minted for another user (or session) is refused.
    let bob = logged_in_xsrf_id(SESSION, "bob-cookie-id");
    assert!(verify(Some(&header), &bob, Some(TOKEN_VECTOR), NOW).is_err());
    // Expired cookie, or no cookie at all.
    assert!(verify(Some(&header), &id, Some(TOKEN_VECTOR), NOW + 32 * 86_400).is_err());
    assert!(matches!(
        verify(None, &id, Some(TOKEN_VECTOR), NOW),
        Err(XsrfError::Mismatch { .. })
    ));
    assert!(matches!(
        verify(None, &id, None, NOW),
        Err(XsrfError::Missing { .. })
    ));

    // Anonymous login form: the id hashes IP and User-Agent, with the `None` quirk.
    let anon_id = anonymous_xsrf_id(None, &anonymous_id("127.0.0.1", &["curl/8.5.0"]));
    let token = create_xsrf_token(&secret(), &anon_id, NOW);
    let header = format!("_xsrf={token}");
    assert_eq!(verify(Some(&header), &anon_id, Some(&token), NOW), Ok(()));
    let other_agent = anonymous_xsrf_id(None, &anonymous_id("127.0.0.1", &["Firefox"]));
    assert!(verify(Some(&header), &other_agent, Some(&token), NOW).is_err());
}
