//! `singleuser-auth-shim`: fronts a user's Jupyter server and lets in only those the hub allows.
//!
//! Not built yet: this package holds the shim's place in the workspace. It will forward through
//! `http-forward`, like `chp-proxy`.
