//! Who is calling: the formats of the hub's credentials and the rules around them. Pure
//! functions only: callers read headers, cookies and the database, and pass values in.
//!
//! - [`tokens`]: API tokens, OAuth codes and tokens, share codes: generation, the
//!   `sha512:<rounds>:<salt>:<digest>` hash, the `Authorization` header, token ids `a<N>`.
//! - [`cookies`]: tornado v2 signed values (the `jupyterhub-hub-login` cookie and the `_xsrf`
//!   payload), cookie quoting and parsing.
//! - [`xsrf`]: when the hub checks XSRF, where the token comes from, and how the `_xsrf` cookie
//!   value is made and verified.

pub mod cookies;
pub mod tokens;
pub mod xsrf;
