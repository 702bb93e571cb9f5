//! Prometheus metrics with JupyterHub's names (hub-protocol §9.2), kept in atomics and small
//! maps; gauges that the database knows (users, running servers) are read at scrape time.
//!
//! Names carry the configured prefix (`hub.metrics_prefix`, env `JUPYTERHUB_METRICS_PREFIX`,
//! default `jupyterhub`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds (seconds) of every histogram: prometheus_client's defaults.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A histogram without labels.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            if secs <= *bound {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_sum{braces} {sum}\n{name}_count{braces} {count}"
        );
    }
}

/// A histogram per label set.
#[derive(Debug)]
pub struct LabeledHistogram {
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, Histogram>>,
}

impl LabeledHistogram {
    const fn new(labels: &'static [&'static str]) -> Self {
        Self {
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one observation for `values` (one per label, in order).
    pub fn observe(&self, values: &[&str], d: Duration) {
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        series.entry(key).or_default().observe(d);
    }

    fn render(&self, out: &mut String, name: &str) {
        let series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (values, h) in series.iter() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .zip(values)
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            h.render(out, name, &labels.join(","));
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The hub's metrics.
#[derive(Debug)]
pub struct HubMetrics {
    pub request_duration_seconds: LabeledHistogram,
    pub server_spawn_duration_seconds: LabeledHistogram,
    pub server_stop_seconds: LabeledHistogram,
    pub server_poll_duration_seconds: LabeledHistogram,
    pub proxy_add_duration_seconds: LabeledHistogram,
    pub proxy_delete_duration_seconds: LabeledHistogram,
    pub login_duration_seconds: LabeledHistogram,
    pub logout_duration_seconds: Histogram,
    pub check_routes_duration_seconds: Histogram,
    pub proxy_poll_duration_seconds: Histogram,
    pub hub_startup_duration_seconds: Histogram,
    pub init_spawners_duration_seconds: Histogram,
    pub csp_reports_total: AtomicU64,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self {
            request_duration_seconds: LabeledHistogram::new(&["method", "handler", "code"]),
            server_spawn_duration_seconds: LabeledHistogram::new(&["status", "reason"]),
            server_stop_seconds: LabeledHistogram::new(&["status"]),
            server_poll_duration_seconds: LabeledHistogram::new(&["status"]),
            proxy_add_duration_seconds: LabeledHistogram::new(&["status"]),
            proxy_delete_duration_seconds: LabeledHistogram::new(&["status"]),
            login_duration_seconds: LabeledHistogram::new(&["status"]),
            logout_duration_seconds: Histogram::default(),
            check_routes_duration_seconds: Histogram::default(),
            proxy_poll_duration_seconds: Histogram::default(),
            hub_startup_duration_seconds: Histogram::default(),
            init_spawners_duration_seconds: Histogram::default(),
            csp_reports_total: AtomicU64::new(0),
        }
    }
}

/// Values read from the database at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub total_users: i64,
    pub running_servers: i64,
    pub active_users_24h: i64,
    pub active_users_7d: i64,
    pub active_users_30d: i64,
}

impl HubMetrics {
    /// The text exposition, every name under `prefix`.
    pub fn render(&self, prefix: &str, gauges: Gauges) -> String {
        let mut out = String::with_capacity(8192);
        let labeled = [
            (
                "request_duration_seconds",
                "request duration for all HTTP requests",
                &self.request_duration_seconds,
            ),
            (
                "server_spawn_duration_seconds",
                "time taken for server spawning operation",
                &self.server_spawn_duration_seconds,
            ),
            (
                "server_stop_seconds",
                "time taken for server stopping operation",
                &self.server_stop_seconds,
            ),
            (
                "server_poll_duration_seconds",
                "time taken to poll if server is running",
                &self.server_poll_duration_seconds,
            ),
            (
                "proxy_add_duration_seconds",
                "duration for adding user routes to proxy",
                &self.proxy_add_duration_seconds,
            ),
            (
                "proxy_delete_duration_seconds",
                "duration for deleting user routes from proxy",
                &self.proxy_delete_duration_seconds,
            ),
            (
                "login_duration_seconds",
                "time taken for logging in",
                &self.login_duration_seconds,
            ),
        ];
        for (name, help, h) in labeled {
            let _ = writeln!(
                out,
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} histogram"
            );
            h.render(&mut out, &format!("{prefix}_{name}"));
        }
        let plain = [
            (
                "logout_duration_seconds",
                "time taken for logging out",
                &self.logout_duration_seconds,
            ),
            (
                "check_routes_duration_seconds",
                "Time taken to validate all routes in proxy",
                &self.check_routes_duration_seconds,
            ),
            (
                "proxy_poll_duration_seconds",
                "duration for polling all routes from proxy",
                &self.proxy_poll_duration_seconds,
            ),
            (
                "hub_startup_duration_seconds",
                "Time taken for Hub to start",
                &self.hub_startup_duration_seconds,
            ),
            (
                "init_spawners_duration_seconds",
                "Time taken for spawners to initialize",
                &self.init_spawners_duration_seconds,
            ),
        ];
        for (name, help, h) in plain {
            let _ = writeln!(
                out,
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} histogram"
            );
            h.render(&mut out, &format!("{prefix}_{name}"), "");
        }
        let _ = writeln!(
            out,
            "# HELP {prefix}_csp_reports_total Counter of csp reports\n# TYPE {prefix}_csp_reports_total counter\n{prefix}_csp_reports_total {}",
            self.csp_reports_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP {prefix}_total_users total number of users\n# TYPE {prefix}_total_users gauge\n{prefix}_total_users {}",
            gauges.total_users
        );
        let _ = writeln!(
            out,
            "# HELP {prefix}_running_servers the number of user servers currently running\n# TYPE {prefix}_running_servers gauge\n{prefix}_running_servers {}",
            gauges.running_servers
        );
        let _ = writeln!(
            out,
            "# HELP {prefix}_active_users number of users who were active in the given time period\n# TYPE {prefix}_active_users gauge\n{prefix}_active_users{{period=\"24h\"}} {}\n{prefix}_active_users{{period=\"7d\"}} {}\n{prefix}_active_users{{period=\"30d\"}} {}",
            gauges.active_users_24h, gauges.active_users_7d, gauges.active_users_30d
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_jupyterhub_names() {
        let m = HubMetrics::default();
        m.request_duration_seconds
            .observe(&["GET", "/hub/api/users", "200"], Duration::from_millis(3));
        m.check_routes_duration_seconds
            .observe(Duration::from_millis(30));
        let text = m.render(
            "jupyterhub",
            Gauges {
                total_users: 3,
                ..Gauges::default()
            },
        );
        assert!(text.contains("jupyterhub_request_duration_seconds_bucket{method=\"GET\",handler=\"/hub/api/users\",code=\"200\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("jupyterhub_request_duration_seconds_count{method=\"GET\",handler=\"/hub/api/users\",code=\"200\"} 1"));
        assert!(text.contains("jupyterhub_check_routes_duration_seconds_bucket{le=\"0.025\"} 0"));
        assert!(text.contains("jupyterhub_check_routes_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("jupyterhub_total_users 3\n"));
        assert!(text.contains("jupyterhub_active_users{period=\"24h\"} 0"));
    }
}
