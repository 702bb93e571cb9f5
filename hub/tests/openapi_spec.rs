//! `docs/reference/hub-openapi.yaml` describes exactly the routes the API router serves:
//! `hub::api::ROUTES` is checked against the router itself (every listed method is served, no
//! other method is), against the sources (every `.route("...")` of `hub/src/api` is listed) and
//! against the paths and operations of the OpenAPI document.

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::routing::{MethodFilter, on};
use http::Method;

/// Every method an API route may have.
const METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("the hub crate is in the workspace")
        .to_path_buf()
}

/// `(path, method)` pairs of `hub::api::ROUTES`, methods lower-case.
fn listed() -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, methods) in hub::api::ROUTES {
        assert!(!methods.is_empty(), "{path} is listed without methods");
        for method in *methods {
            let new = out.insert(((*path).to_owned(), method.as_str().to_lowercase()));
            assert!(new, "{method} {path} is listed twice");
        }
    }
    out
}

/// Whether the API router already has a handler for `method` on `path`: axum refuses (panics)
/// to add a second one.
fn served(path: &str, method: &Method) -> bool {
    let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
    std::panic::catch_unwind(|| {
        let _ = hub::api::router().route(path, on(filter, || async {}));
    })
    .is_err()
}

#[test]
fn the_route_list_is_what_the_router_serves() {
    let listed = listed();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut wrong = Vec::new();
    for (path, _) in hub::api::ROUTES {
        for method in &METHODS {
            let expected = listed.contains(&((*path).to_owned(), method.as_str().to_lowercase()));
            if served(path, method) != expected {
                wrong.push(format!(
                    "{method} {path}: {}",
                    if expected {
                        "listed in hub::api::ROUTES, not served"
                    } else {
                        "served, not listed in hub::api::ROUTES"
                    }
                ));
            }
        }
    }
    std::panic::set_hook(previous);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The literal paths of every `.route("...")` call in `hub/src/api`.
fn source_paths() -> BTreeSet<String> {
    let dir = repo_root().join("hub/src/api");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("hub/src/api") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a source file");
        let mut rest = text.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let args = rest.trim_start();
            if let Some(literal) = args.strip_prefix('"') {
                let end = literal.find('"').expect("a closed string literal");
                out.insert(literal[..end].to_owned());
            }
        }
    }
    out
}

#[test]
fn every_route_in_the_sources_is_listed() {
    let listed: BTreeSet<String> = hub::api::ROUTES
        .iter()
        .map(|(path, _)| (*path).to_owned())
        .collect();
    let sources = source_paths();
    let unlisted: Vec<_> = sources.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&sources).collect();
    assert!(
        unlisted.is_empty(),
        "routes in hub/src/api missing from hub::api::ROUTES: {unlisted:?}"
    );
    assert!(
        unknown.is_empty(),
        "hub::api::ROUTES lists paths no `.route(\"...\")` in hub/src/api has: {unknown:?}"
    );
}

/// The `(path, method)` operations of the OpenAPI document. The document keeps one layout,
/// which this reads without a YAML library: `paths:` at the top level, each path two spaces in
/// (`  /users/{name}:`), each operation four spaces in (`    get:`).
fn spec_operations(text: &str) -> BTreeSet<(String, String)> {
    const OPERATIONS: [&str; 8] = [
        "get", "head", "post", "put", "patch", "delete", "options", "trace",
    ];
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            in_paths = line.trim_end() == "paths:";
            current = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            let key = key.trim_end().strip_suffix(':').expect("a path key");
            let key = key.trim_matches(|c| c == '\'' || c == '"');
            assert!(key.starts_with('/'), "not a path under paths: {key}");
            current = Some(key.to_owned());
        } else if let Some(key) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let key = key.trim_end().trim_end_matches(':');
            if OPERATIONS.contains(&key) {
                let path = current.clone().expect("an operation under a path");
                let new = out.insert((path.clone(), key.to_owned()));
                assert!(new, "{key} {path} appears twice");
            }
        }
    }
    out
}

#[test]
fn the_openapi_document_describes_exactly_the_routes() {
    let file = repo_root().join("docs/reference/hub-openapi.yaml");
    let text = std::fs::read_to_string(&file).expect("docs/reference/hub-openapi.yaml");
    assert!(text.starts_with("openapi: 3.0."), "an OpenAPI 3.0 document");
    let spec = spec_operations(&text);
    let listed = listed();
    let undocumented: Vec<_> = listed.difference(&spec).collect();
    let unserved: Vec<_> = spec.difference(&listed).collect();
    assert!(
        undocumented.is_empty(),
        "served, missing from hub-openapi.yaml: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "in hub-openapi.yaml, not served: {unserved:?}"
    );
}

#[test]
fn the_layout_reader_finds_operations() {
    let text = "openapi: 3.0.3\ninfo:\n  title: x\npaths:\n  /a:\n    get:\n      responses: {}\n    \
                parameters: []\n  '/b/{c}':\n    # note\n    delete:\n      x: 1\ncomponents:\n  \
                schemas:\n    get:\n      type: object\n";
    let ops = spec_operations(text);
    let expected: BTreeSet<(String, String)> = [("/a", "get"), ("/b/{c}", "delete")]
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m.to_owned()))
        .collect();
    assert_eq!(ops, expected);
}
