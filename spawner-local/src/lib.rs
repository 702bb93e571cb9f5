//! Spawner that runs each user's server as a local process, as the user's system account when
//! the hub runs as root.
//!
//! Not built yet: it arrives with the `Spawner` trait in `hub-plugin`.
