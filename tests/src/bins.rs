//! Where the binaries under test are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// An environment variable's value, treating "set but empty" as unset.
fn env_path(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// The `chp-proxy` binary: `$CHP_PROXY_BIN`, else `$CARGO_TARGET_DIR/debug/chp-proxy`, else
/// `<workspace>/target/debug/chp-proxy`.
///
/// # Panics
/// If none of these exists, with a message saying to build it first.
pub fn chp_proxy() -> PathBuf {
    let mut tried = Vec::new();
    if let Some(explicit) = env_path("CHP_PROXY_BIN") {
        let path = PathBuf::from(explicit);
        assert!(
            path.is_file(),
            "CHP_PROXY_BIN={} does not exist; unset it or run `cargo build -p chp-proxy`",
            path.display()
        );
        return path;
    }
    if let Some(target) = env_path("CARGO_TARGET_DIR") {
        let mut target = PathBuf::from(target);
        if target.is_relative() {
            target = workspace_root().join(target);
        }
        let path = target.join("debug").join("chp-proxy");
        if path.is_file() {
            return path;
        }
        tried.push(path);
    }
    let path = workspace_root()
        .join("target")
        .join("debug")
        .join("chp-proxy");
    if path.is_file() {
        return path;
    }
    tried.push(path);
    panic!(
        "the chp-proxy binary was not found (looked at {}); run `cargo build -p chp-proxy` first, \
         or point CHP_PROXY_BIN at it",
        tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The cache directory `scripts/test-deps.sh` installs into: `$JHRS_CACHE`, else
/// `$HOME/.cache/jupyterhub-rs`.
pub fn jhrs_cache() -> PathBuf {
    if let Some(cache) = env_path("JHRS_CACHE") {
        return PathBuf::from(cache);
    }
    let home = env_path("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache").join("jupyterhub-rs")
}

/// The reference configurable-http-proxy 5.3.0: `$CHP_REAL_BIN`, else the copy that
/// `scripts/test-deps.sh` installs under the cache directory.
///
/// # Panics
/// If it is missing, with a message naming `scripts/test-deps.sh`. Differential tests must fail,
/// never pass silently, when the reference is not there.
pub fn chp_real() -> PathBuf {
    if let Some(explicit) = env_path("CHP_REAL_BIN") {
        let path = PathBuf::from(explicit);
        assert!(
            path.is_file(),
            "CHP_REAL_BIN={} does not exist; unset it and run scripts/test-deps.sh to install \
             configurable-http-proxy@5.3.0",
            path.display()
        );
        return path;
    }
    let path = jhrs_cache()
        .join("node")
        .join("node_modules")
        .join(".bin")
        .join("configurable-http-proxy");
    assert!(
        path.exists(),
        "the reference configurable-http-proxy was not found at {}; run scripts/test-deps.sh \
         (it installs configurable-http-proxy@5.3.0 with npm), or set CHP_REAL_BIN",
        path.display()
    );
    path
}
