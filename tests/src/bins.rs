//! Where the binaries under test are.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// An environment variable's value, treating "set but empty" as unset.
fn env_path(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The workspace root (the parent of this package's directory).
pub fn workspace_root() -> PathBuf {
    // The package directory at run time, not at build time: this library may come from a build
    // in another checkout of the workspace.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let manifest = manifest.as_path();
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
    built("chp-proxy", "CHP_PROXY_BIN")
}

/// The `hub` binary: `$HUB_BIN`, else `$CARGO_TARGET_DIR/debug/hub`, else
/// `<workspace>/target/debug/hub`.
///
/// # Panics
/// If none of these exists, with a message saying to build it first.
pub fn hub() -> PathBuf {
    built("hub", "HUB_BIN")
}

/// The `singleuser-auth-shim` binary: `$SHIM_BIN`, else `$CARGO_TARGET_DIR/debug/...`, else
/// `<workspace>/target/debug/singleuser-auth-shim`.
///
/// # Panics
/// If none of these exists, with a message saying to build it first.
pub fn singleuser_auth_shim() -> PathBuf {
    built("singleuser-auth-shim", "SHIM_BIN")
}

/// The debug build of workspace binary `name`, or the file `$<env_var>` names.
fn built(name: &str, env_var: &str) -> PathBuf {
    let mut tried = Vec::new();
    if let Some(explicit) = env_path(env_var) {
        let path = PathBuf::from(explicit);
        assert!(
            path.is_file(),
            "{env_var}={} does not exist; unset it or run `cargo build -p {name}`",
            path.display()
        );
        return path;
    }
    if let Some(target) = env_path("CARGO_TARGET_DIR") {
        let mut target = PathBuf::from(target);
        if target.is_relative() {
            target = workspace_root().join(target);
        }
        let path = target.join("debug").join(name);
        if path.is_file() {
            return path;
        }
        tried.push(path);
    }
    let path = workspace_root().join("target").join("debug").join(name);
    if path.is_file() {
        return path;
    }
    tried.push(path);
    panic!(
        "the {name} binary was not found (looked at {}); run `cargo build -p {name}` first, \
         or point {env_var} at it",
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

/// The venv with the real `jupyterhub-singleuser` (JupyterHub 6.1.1 and jupyter-server) that
/// `scripts/python-test-env.sh singleuser` creates, every account may run, and this function
/// creates or completes when needed (fast when all is in place). Its path is printed by the
/// script: `$JHRS_SINGLEUSER_VENV`, else `/var/tmp/jupyterhub-rs/venv-singleuser`.
///
/// # Panics
/// When the script fails: a test that needs the real server must fail, never pass silently,
/// when it cannot be had.
pub fn singleuser_venv() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let script = workspace_root().join("scripts").join("python-test-env.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("singleuser")
            .env("CI", "true")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "`{} singleuser` could not provide the venv with jupyterhub-singleuser ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let venv = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            venv.join("bin").join("jupyterhub-singleuser").is_file(),
            "{} printed {}, which has no bin/jupyterhub-singleuser",
            script.display(),
            venv.display()
        );
        venv
    })
    .clone()
}

/// Runs `scripts/python-test-env.sh <set>` (which creates or completes the venv, fast when all
/// is in place) and returns the venv it prints, checking that it has `bin/<must_have>`.
///
/// # Panics
/// When the script fails: a test that needs the venv must fail, never pass silently.
fn python_env(set: &str, must_have: &str) -> PathBuf {
    let script = workspace_root().join("scripts").join("python-test-env.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(set)
        .env("CI", "true")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "`{} {set}` could not provide its venv ({}):\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let venv = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        venv.join("bin").join(must_have).is_file(),
        "{} printed {}, which has no bin/{must_have}",
        script.display(),
        venv.display()
    );
    venv
}

/// The venv with JupyterLab 4.6.6, ipykernel and the real `jupyterhub-singleuser` that
/// `scripts/python-test-env.sh lab` creates (on first use, here too), every account may run:
/// `$JHRS_LAB_VENV`, else `/var/tmp/jupyterhub-rs/venv-lab`.
///
/// # Panics
/// When the script fails.
pub fn lab_venv() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| python_env("lab", "jupyter-lab"))
        .clone()
}

/// The venv with the real `jupyterhub-idle-culler` (`scripts/python-test-env.sh test`):
/// `$JHRS_CACHE/venv`.
///
/// # Panics
/// When the script fails.
pub fn test_venv() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| python_env("test", "jupyterhub-idle-culler"))
        .clone()
}
