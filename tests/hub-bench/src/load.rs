//! The concurrent load loop: N keep-alive connections, each sending its next request as soon as
//! the previous reply is read, for a fixed time. Every reply must be a 200.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Client, Req};

/// Builds the `i`-th request of a worker.
pub type MakeReq = Arc<dyn Fn(u64) -> Req + Send + Sync>;

/// What a load run did.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Replies with status 200.
    pub ok: u64,
    /// Other replies and transport errors.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    /// Wall time of the run, in seconds.
    pub secs: f64,
    /// Latency of every 200 reply, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    /// 200 replies per second.
    pub fn rps(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }

    /// The `p`-th percentile latency (nearest rank), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let n = self.latencies_us.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let i = rank.clamp(1, n) - 1;
        Some(f64::from(self.latencies_us[i]) / 1000.0)
    }
}

/// Runs `connections` workers against `addr` for `duration`.
pub async fn run(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    make: MakeReq,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for _ in 0..connections {
        let make = make.clone();
        workers.spawn(async move {
            let mut client = Client::new(addr);
            let mut result = LoadResult::default();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let req = make(i);
                i += 1;
                let sent = Instant::now();
                match client.send(&req).await {
                    Ok(reply) if reply.status == hyper::StatusCode::OK => {
                        let us = sent.elapsed().as_micros();
                        result
                            .latencies_us
                            .push(u32::try_from(us).unwrap_or(u32::MAX));
                        result.ok += 1;
                    }
                    Ok(reply) => {
                        result.errors += 1;
                        result.first_error.get_or_insert_with(|| {
                            format!(
                                "{}: {} {}",
                                req.describe(),
                                reply.status,
                                String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)])
                            )
                        });
                    }
                    Err(e) => {
                        result.errors += 1;
                        result.first_error.get_or_insert_with(|| format!("{e:#}"));
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            result
        });
    }
    let mut total = LoadResult::default();
    while let Some(joined) = workers.join_next().await {
        let Ok(result) = joined else {
            total.errors += 1;
            continue;
        };
        total.ok += result.ok;
        total.errors += result.errors;
        if total.first_error.is_none() {
            total.first_error = result.first_error;
        }
        total.latencies_us.extend(result.latencies_us);
    }
    total.secs = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let result = LoadResult {
            latencies_us: (1..=100).map(|i| i * 1000).collect(),
            ..LoadResult::default()
        };
        assert_eq!(result.percentile_ms(50.0), Some(50.0));
        assert_eq!(result.percentile_ms(99.0), Some(99.0));
        assert_eq!(result.percentile_ms(100.0), Some(100.0));
        assert_eq!(LoadResult::default().percentile_ms(50.0), None);
    }
}
