//! Starting, stopping and polling users' servers: the state machine around the `Spawner`,
//! progress events, limits, and recovery after a hub restart.

/// Runtime bookkeeping of servers (pending operations, progress channels). Everything that must
/// survive a restart is in the database; this holds only what a running hub keeps in memory.
#[derive(Debug, Default)]
pub struct Servers {}
