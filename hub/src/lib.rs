//! The hub daemon: users, login, spawning, the JupyterHub REST API and the OAuth2 provider.
//!
//! Not built yet: this package holds the hub's place in the workspace. The proxy it drives,
//! `chp-proxy`, is complete and can be driven by the real JupyterHub meanwhile.
