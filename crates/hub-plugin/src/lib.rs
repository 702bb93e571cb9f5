//! The hub's two extension points, `Spawner` and `Authenticator`, and their test doubles.
//!
//! Plugins (`spawner-local`, `auth-pam`, later `spawner-slurm` and others) depend on this crate,
//! never on `hub`. The traits are defined together with the hub's login and spawning; until
//! then this crate only fixes the place in the dependency graph.
