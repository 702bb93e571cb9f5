//! Authenticator that checks usernames and passwords with PAM, JupyterHub's default.
//!
//! Not built yet: it arrives with the `Authenticator` trait in `hub-plugin`.
