//! The hub's two extension points, [`Spawner`] and [`Authenticator`], and (behind the
//! `test-util` feature) test doubles for both.
//!
//! Plugins (`spawner-local`, `auth-pam`, later `spawner-slurm` and others) depend on this crate,
//! never on `hub`, so the hub can ship default plugins without a dependency cycle.
//!
//! Errors separate a *refusal* (a policy decision with a message the user sees and a status)
//! from a *failure* (something broke: logged in full, the user sees a generic message).

pub mod auth;
pub mod spawner;
#[cfg(feature = "test-util")]
pub mod test_util;

pub use auth::{AuthError, AuthModel, Authenticator, LoginForm};
pub use spawner::{
    PollStatus, ProgressEvent, ProgressSender, ServerRef, ServerReport, SpawnContext, SpawnError,
    Spawner, Started,
};
