//! Prometheus metrics with JupyterHub's names (hub-protocol §9.2).

/// The hub's metrics.
#[derive(Debug, Default)]
pub struct HubMetrics {}
