//! Prometheus metrics with configurable-http-proxy's names, kept in atomics so that recording
//! costs one relaxed add on the request path.
//!
//! Summaries expose `_sum` and `_count` only (no quantiles), which Prometheus accepts and which
//! is what rate-based dashboards use.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const STATUSES: usize = 600;

/// All metrics of one proxy process.
#[derive(Debug)]
pub struct Metrics {
    pub api_route_get: AtomicU64,
    pub api_route_add: AtomicU64,
    pub api_route_delete: AtomicU64,
    pub find_target_for_req: Summary,
    pub last_activity_updating: Summary,
    pub requests_ws: AtomicU64,
    pub requests_web: AtomicU64,
    requests_proxy: StatusCounter,
    requests_api: StatusCounter,
    start_time: f64,
}

/// A summary without quantiles: total seconds and count.
#[derive(Debug, Default)]
pub struct Summary {
    nanos: AtomicU64,
    count: AtomicU64,
}

impl Summary {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.nanos.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct StatusCounter(Box<[AtomicU64]>);

impl StatusCounter {
    fn new() -> Self {
        Self((0..STATUSES).map(|_| AtomicU64::new(0)).collect())
    }

    fn inc(&self, status: u16) {
        if let Some(c) = self.0.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            api_route_get: AtomicU64::new(0),
            api_route_add: AtomicU64::new(0),
            api_route_delete: AtomicU64::new(0),
            find_target_for_req: Summary::default(),
            last_activity_updating: Summary::default(),
            requests_ws: AtomicU64::new(0),
            requests_web: AtomicU64::new(0),
            requests_proxy: StatusCounter::new(),
            requests_api: StatusCounter::new(),
            start_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

/// Adds one to a plain counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Counts a proxied response (upstream's status or the proxy's own error).
    pub fn proxy_status(&self, status: u16) {
        self.requests_proxy.inc(status);
    }

    /// Counts an API response.
    pub fn api_status(&self, status: u16) {
        self.requests_api.inc(status);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let counters = [
            (
                "api_route_get",
                "Count of successful GET requests listing the routes",
                &self.api_route_get,
            ),
            (
                "api_route_add",
                "Count of successful POST requests adding a route",
                &self.api_route_add,
            ),
            (
                "api_route_delete",
                "Count of DELETE requests removing a route",
                &self.api_route_delete,
            ),
            (
                "requests_ws",
                "Count of websocket upgrade requests",
                &self.requests_ws,
            ),
            (
                "requests_web",
                "Count of HTTP requests (not websocket, not health checks)",
                &self.requests_web,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        for (name, help, s) in [
            (
                "find_target_for_req",
                "Time to find the route of a request, in seconds",
                &self.find_target_for_req,
            ),
            (
                "last_activity_updating",
                "Time to record route activity, in seconds",
                &self.last_activity_updating,
            ),
        ] {
            let secs = s.nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} summary\n{name}_sum {secs}\n{name}_count {}",
                s.count.load(Ordering::Relaxed)
            );
        }
        for (name, help, c) in [
            (
                "requests_proxy",
                "Count of proxied requests by response status",
                &self.requests_proxy,
            ),
            (
                "requests_api",
                "Count of API requests by response status",
                &self.requests_api,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (status, n) in c.0.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(out, "{name}{{status=\"{status}\"}} {n}");
                }
            }
        }
        process_metrics(&mut out, self.start_time);
        out
    }
}

fn process_metrics(out: &mut String, start_time: f64) {
    let _ = writeln!(
        out,
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {start_time}"
    );
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = clock_ticks();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the name.
        let cpu = (field(11) + field(12)) / ticks;
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}"
        );
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            kb * 1024
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Number of open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {}",
            dir.count()
        );
    }
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux platform we run on.
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_chp_names() {
        let m = Metrics::default();
        inc(&m.api_route_add);
        m.proxy_status(200);
        m.proxy_status(200);
        m.api_status(201);
        m.find_target_for_req.observe(Duration::from_millis(2));
        let text = m.render();
        assert!(text.contains("\napi_route_add 1\n"), "{text}");
        assert!(text.contains("requests_proxy{status=\"200\"} 2"));
        assert!(text.contains("requests_api{status=\"201\"} 1"));
        assert!(text.contains("find_target_for_req_sum 0.002\n"));
        assert!(text.contains("find_target_for_req_count 1\n"));
        assert!(text.contains("process_resident_memory_bytes "));
        assert!(text.contains("process_open_fds "));
    }
}
