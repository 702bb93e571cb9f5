//! The figures, the targets they are held to, and the printed report.

use std::path::Path;

use serde_json::{Value, json};

use crate::procs::first_line_of;
use crate::run::RunArgs;
use crate::wrk::WrkResult;
use crate::ws::WsResult;

/// One measured wrk run.
#[derive(Debug, Clone)]
pub struct Http {
    pub wrk: WrkResult,
    /// CPU time the measured process used, divided by the requests served.
    pub cpu_us_per_request: Option<f64>,
}

/// Sequential route adds.
#[derive(Debug, Clone)]
pub struct Adds {
    pub count: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub total_s: f64,
}

impl Adds {
    pub fn from_times(mut times_ms: Vec<f64>, total_s: f64) -> Self {
        times_ms.sort_by(f64::total_cmp);
        Self {
            count: times_ms.len(),
            median_ms: percentile(&times_ms, 50.0),
            p99_ms: percentile(&times_ms, 99.0),
            max_ms: times_ms.last().copied().unwrap_or(0.0),
            total_s,
        }
    }
}

/// Full listings of the route table.
#[derive(Debug, Clone)]
pub struct Listing {
    pub median_ms: f64,
    pub bytes: usize,
    pub routes: usize,
}

/// The median of `values` (sorted in place); 0 for an empty slice.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(values, 50.0)
}

/// Nearest-rank percentile of sorted values; 0 for an empty slice.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Everything measured for one subject.
#[derive(Debug)]
pub struct Figures {
    pub label: &'static str,
    pub selected: bool,
    pub version: Option<String>,
    pub http_1: Option<Http>,
    pub http_10k: Option<Http>,
    pub http_big: Option<Http>,
    pub ws: Option<WsResult>,
    pub add_10k: Option<Adds>,
    pub add_big: Option<Adds>,
    pub list_10k: Option<Listing>,
    pub list_big: Option<Listing>,
    pub rss_1_kib: Option<u64>,
    pub rss_10k_kib: Option<u64>,
    pub rss_big_kib: Option<u64>,
    /// The largest share of one core that processes the benchmark did not
    /// start used during one of this subject's measured runs.
    pub max_other_load: f64,
    pub notes: Vec<String>,
}

impl Figures {
    pub fn new(label: &'static str, selected: bool) -> Self {
        Self {
            label,
            selected,
            version: None,
            http_1: None,
            http_10k: None,
            http_big: None,
            ws: None,
            add_10k: None,
            add_big: None,
            list_10k: None,
            list_big: None,
            rss_1_kib: None,
            rss_10k_kib: None,
            rss_big_kib: None,
            max_other_load: 0.0,
            notes: Vec::new(),
        }
    }

    fn heading(&self) -> String {
        match &self.version {
            Some(v) if self.label == "CHP" => format!("CHP {v}"),
            _ => self.label.to_owned(),
        }
    }

    fn to_json(&self) -> Value {
        let http = |h: &Option<Http>| {
            h.as_ref().map(|h| {
                json!({
                    "requests_per_sec": h.wrk.requests_per_sec,
                    "p99_ms": h.wrk.p99_ms,
                    "requests": h.wrk.requests,
                    "non_2xx_3xx": h.wrk.non_2xx_3xx,
                    "socket_errors": h.wrk.socket_errors,
                    "cpu_us_per_request": h.cpu_us_per_request,
                })
            })
        };
        let adds = |a: &Option<Adds>| {
            a.as_ref().map(|a| {
                json!({
                    "count": a.count,
                    "median_ms": a.median_ms,
                    "p99_ms": a.p99_ms,
                    "max_ms": a.max_ms,
                    "total_s": a.total_s,
                })
            })
        };
        let listing = |l: &Option<Listing>| {
            l.as_ref()
                .map(|l| json!({ "median_ms": l.median_ms, "bytes": l.bytes, "routes": l.routes }))
        };
        json!({
            "label": self.label,
            "selected": self.selected,
            "version": self.version,
            "http_1_route": http(&self.http_1),
            "http_many_routes": http(&self.http_10k),
            "http_huge_table": http(&self.http_big),
            "websocket": self.ws.as_ref().map(|w| json!({
                "round_trips_per_sec": w.round_trips_per_sec,
                "p99_ms": w.p99_ms,
                "round_trips": w.round_trips,
                "cpu_us_per_round_trip": w.cpu_us_per_round_trip,
            })),
            "add_many_routes": adds(&self.add_10k),
            "add_huge_table": adds(&self.add_big),
            "list_many_routes": listing(&self.list_10k),
            "list_huge_table": listing(&self.list_big),
            "rss_kib_1_route": self.rss_1_kib,
            "rss_kib_many_routes": self.rss_10k_kib,
            "rss_kib_huge_table": self.rss_big_kib,
            "max_other_load_core_fraction": self.max_other_load,
            "notes": self.notes,
        })
    }
}

/// The machine and tool versions, printed above the table.
#[derive(Debug)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub os: String,
    pub nginx: String,
    pub wrk: String,
    pub node: String,
    pub chp_version: Option<String>,
    pub ours_version: Option<String>,
}

impl Machine {
    pub fn probe(args: &RunArgs, chp_script: &Path, ours_bin: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
        let os = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let unknown = || "not found".to_owned();
        let chp = chp_script.to_string_lossy();
        Self {
            cpu,
            cores,
            memory_gib,
            kernel,
            os,
            nginx: first_line_of(&args.nginx, &["-v"]).unwrap_or_else(unknown),
            wrk: first_line_of(&args.wrk, &["-v"])
                .map(|l| l.split(" Copyright").next().unwrap_or_default().to_owned())
                .unwrap_or_else(unknown),
            node: first_line_of(&args.node, &["--version"]).unwrap_or_else(unknown),
            chp_version: first_line_of(&args.node, &[&chp, "--version"])
                .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit())),
            ours_version: first_line_of(ours_bin, &["--version"]).map(|v| {
                v.strip_prefix("chp-proxy ")
                    .map_or_else(|| v.clone(), str::to_owned)
            }),
        }
    }
}

/// The run's parameters, printed above the table.
#[derive(Debug)]
pub struct Settings {
    pub duration_s: u64,
    pub warmup_s: u64,
    pub connections: u32,
    pub ws_connections: u32,
    pub routes: u32,
    pub big_routes: u32,
    pub server_core: u32,
    pub load_core: u32,
    pub body_bytes: usize,
    pub request_path: String,
    pub load_average: Option<f64>,
}

#[derive(Debug)]
pub struct Report {
    pub machine: Machine,
    pub settings: Settings,
    pub direct: Figures,
    pub chp: Figures,
    pub ours: Figures,
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    PerSec,
    Ms,
    Us,
    Mib,
    Secs,
    Bytes,
}

#[derive(Debug)]
struct Check {
    text: &'static str,
    ok: Option<bool>,
}

fn both(a: Option<f64>, b: Option<f64>) -> Option<(f64, f64)> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some((a, b)),
        _ => None,
    }
}

/// Passes when `ours >= factor * other`.
fn at_least(ours: Option<f64>, other: Option<f64>, factor: f64, text: &'static str) -> Check {
    Check {
        text,
        ok: both(ours, other).map(|(a, b)| a >= factor * b),
    }
}

/// Passes when `ours <= factor * other`.
fn at_most(ours: Option<f64>, other: Option<f64>, factor: f64, text: &'static str) -> Check {
    Check {
        text,
        ok: both(ours, other).map(|(a, b)| a <= factor * b),
    }
}

/// Passes when `ours < limit`.
fn below(ours: Option<f64>, limit: f64, text: &'static str) -> Check {
    Check {
        text,
        ok: ours.map(|a| a < limit),
    }
}

#[derive(Debug)]
struct Row {
    metric: String,
    /// direct, CHP, chp-proxy.
    values: [Option<f64>; 3],
    unit: Unit,
    /// Whether "chp-proxy ÷ direct" means something for this row.
    vs_direct: bool,
    checks: Vec<Check>,
}

fn rps(h: &Option<Http>) -> Option<f64> {
    h.as_ref().map(|h| h.wrk.requests_per_sec)
}

fn p99(h: &Option<Http>) -> Option<f64> {
    h.as_ref().map(|h| h.wrk.p99_ms)
}

fn cpu(h: &Option<Http>) -> Option<f64> {
    h.as_ref().and_then(|h| h.cpu_us_per_request)
}

fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

impl Report {
    fn rows(&self) -> Vec<Row> {
        let (d, c, o) = (&self.direct, &self.chp, &self.ours);
        let n = group(u64::from(self.settings.routes));
        let m = group(u64::from(self.settings.big_routes));
        let row = |metric: String, values: [Option<f64>; 3], unit, vs_direct, checks| Row {
            metric,
            values,
            unit,
            vs_direct,
            checks,
        };
        let ws_rate = |f: &Figures| f.ws.as_ref().map(|w| w.round_trips_per_sec);
        let ws_p99 = |f: &Figures| f.ws.as_ref().map(|w| w.p99_ms);
        let ws_cpu = |f: &Figures| f.ws.as_ref().and_then(|w| w.cpu_us_per_round_trip);
        let add_median = |a: &Option<Adds>| a.as_ref().map(|a| a.median_ms);
        let add_p99 = |a: &Option<Adds>| a.as_ref().map(|a| a.p99_ms);
        let add_total = |a: &Option<Adds>| a.as_ref().map(|a| a.total_s);
        let list_ms = |l: &Option<Listing>| l.as_ref().map(|l| l.median_ms);
        let list_bytes = |l: &Option<Listing>| l.as_ref().map(|l| l.bytes as f64);
        let throughput_checks = |ours: Option<f64>, chp: Option<f64>| {
            vec![
                at_least(ours, chp, 8.0, ">= 8x CHP"),
                at_least(ours, rps(&d.http_1), 0.6, ">= 0.6x direct"),
            ]
        };
        vec![
            row(
                "Throughput, 1 route (req/s)".into(),
                [rps(&d.http_1), rps(&c.http_1), rps(&o.http_1)],
                Unit::PerSec,
                true,
                throughput_checks(rps(&o.http_1), rps(&c.http_1)),
            ),
            row(
                format!("Throughput, {n} routes (req/s)"),
                [rps(&d.http_1), rps(&c.http_10k), rps(&o.http_10k)],
                Unit::PerSec,
                true,
                throughput_checks(rps(&o.http_10k), rps(&c.http_10k)),
            ),
            row(
                format!("Throughput, {m} routes (req/s)"),
                [rps(&d.http_1), rps(&c.http_big), rps(&o.http_big)],
                Unit::PerSec,
                true,
                vec![at_least(
                    rps(&o.http_big),
                    rps(&o.http_1),
                    0.95,
                    "< 5% below own 1 route",
                )],
            ),
            row(
                "p99 latency, 1 route (ms)".into(),
                [p99(&d.http_1), p99(&c.http_1), p99(&o.http_1)],
                Unit::Ms,
                true,
                vec![at_most(p99(&o.http_1), p99(&c.http_1), 0.2, "<= 1/5 CHP")],
            ),
            row(
                format!("p99 latency, {n} routes (ms)"),
                [p99(&d.http_1), p99(&c.http_10k), p99(&o.http_10k)],
                Unit::Ms,
                true,
                vec![at_most(
                    p99(&o.http_10k),
                    p99(&c.http_10k),
                    0.2,
                    "<= 1/5 CHP",
                )],
            ),
            row(
                format!("p99 latency, {m} routes (ms)"),
                [p99(&d.http_1), p99(&c.http_big), p99(&o.http_big)],
                Unit::Ms,
                true,
                Vec::new(),
            ),
            row(
                "CPU per request, 1 route (µs)".into(),
                [cpu(&d.http_1), cpu(&c.http_1), cpu(&o.http_1)],
                Unit::Us,
                false,
                vec![at_most(cpu(&o.http_1), cpu(&c.http_1), 0.125, "<= 1/8 CHP")],
            ),
            row(
                format!("CPU per request, {n} routes (µs)"),
                [cpu(&d.http_1), cpu(&c.http_10k), cpu(&o.http_10k)],
                Unit::Us,
                false,
                vec![at_most(
                    cpu(&o.http_10k),
                    cpu(&c.http_10k),
                    0.125,
                    "<= 1/8 CHP",
                )],
            ),
            row(
                format!("CPU per request, {m} routes (µs)"),
                [cpu(&d.http_1), cpu(&c.http_big), cpu(&o.http_big)],
                Unit::Us,
                false,
                Vec::new(),
            ),
            row(
                "Websocket echo round trips/s".into(),
                [ws_rate(d), ws_rate(c), ws_rate(o)],
                Unit::PerSec,
                true,
                vec![at_least(ws_rate(o), ws_rate(c), 3.0, ">= 3x CHP")],
            ),
            row(
                "Websocket round trip p99 (ms)".into(),
                [ws_p99(d), ws_p99(c), ws_p99(o)],
                Unit::Ms,
                true,
                Vec::new(),
            ),
            row(
                "CPU per websocket round trip (µs)".into(),
                [ws_cpu(d), ws_cpu(c), ws_cpu(o)],
                Unit::Us,
                false,
                Vec::new(),
            ),
            row(
                format!("Add route, median, 0 to {n} routes (ms)"),
                [None, add_median(&c.add_10k), add_median(&o.add_10k)],
                Unit::Ms,
                false,
                vec![below(add_median(&o.add_10k), 1.0, "< 1 ms")],
            ),
            row(
                format!("Add route, p99, 0 to {n} routes (ms)"),
                [None, add_p99(&c.add_10k), add_p99(&o.add_10k)],
                Unit::Ms,
                false,
                Vec::new(),
            ),
            row(
                format!("Add {n} routes, total (s)"),
                [None, add_total(&c.add_10k), add_total(&o.add_10k)],
                Unit::Secs,
                false,
                Vec::new(),
            ),
            row(
                format!("Add route, median, {n} to {m} routes (ms)"),
                [None, add_median(&c.add_big), add_median(&o.add_big)],
                Unit::Ms,
                false,
                Vec::new(),
            ),
            row(
                format!("List {n} routes, median (ms)"),
                [None, list_ms(&c.list_10k), list_ms(&o.list_10k)],
                Unit::Ms,
                false,
                vec![at_most(
                    list_ms(&o.list_10k),
                    list_ms(&c.list_10k),
                    0.2,
                    "<= 1/5 CHP",
                )],
            ),
            row(
                format!("List {n} routes, response size (bytes)"),
                [None, list_bytes(&c.list_10k), list_bytes(&o.list_10k)],
                Unit::Bytes,
                false,
                Vec::new(),
            ),
            row(
                format!("List {m} routes, median (ms)"),
                [None, list_ms(&c.list_big), list_ms(&o.list_big)],
                Unit::Ms,
                false,
                Vec::new(),
            ),
            row(
                "RSS after load, 1 route (MiB)".into(),
                [mib(d.rss_1_kib), mib(c.rss_1_kib), mib(o.rss_1_kib)],
                Unit::Mib,
                false,
                Vec::new(),
            ),
            row(
                format!("RSS after load, {n} routes (MiB)"),
                [mib(d.rss_1_kib), mib(c.rss_10k_kib), mib(o.rss_10k_kib)],
                Unit::Mib,
                false,
                vec![at_most(
                    mib(o.rss_10k_kib),
                    mib(c.rss_10k_kib),
                    0.2,
                    "<= 1/5 CHP",
                )],
            ),
            row(
                format!("RSS after load, {m} routes (MiB)"),
                [mib(d.rss_1_kib), mib(c.rss_big_kib), mib(o.rss_big_kib)],
                Unit::Mib,
                false,
                Vec::new(),
            ),
        ]
        .into_iter()
        // A row only the direct column fills (a table size that was not run) says nothing.
        .filter(|r| r.values[1].is_some() || r.values[2].is_some() || !r.checks.is_empty())
        .collect()
    }

    /// Prints the report as Markdown; returns whether every target was met.
    pub fn print(&self) -> bool {
        let m = &self.machine;
        let s = &self.settings;
        println!();
        println!("## proxy-bench results");
        println!();
        println!(
            "- Machine: {} x {} ({:.0} GiB), {}, Linux {}",
            m.cores, m.cpu, m.memory_gib, m.os, m.kernel
        );
        println!(
            "- Tools: {}, {}, Node.js {}, CHP {}, chp-proxy {}",
            m.nginx,
            m.wrk,
            m.node,
            m.chp_version.as_deref().unwrap_or("not found"),
            m.ours_version.as_deref().unwrap_or("(no --version output)")
        );
        println!(
            "- Proxy and backends on core {}, wrk and the websocket client on core {}",
            s.server_core, s.load_core
        );
        println!(
            "- wrk -t1 -c{} -d{}s --latency (after a {} s warm-up) on {}; backend body {} bytes",
            s.connections, s.duration_s, s.warmup_s, s.request_path, s.body_bytes
        );
        println!(
            "- Websocket: {} connections, sequential 32-byte echo round trips for {} s",
            s.ws_connections, s.duration_s
        );
        println!();
        let rows = self.rows();
        println!(
            "| Metric | {} | {} | {} | {} ÷ CHP | {} ÷ direct | Target | Result |",
            self.direct.heading(),
            self.chp.heading(),
            self.ours.heading(),
            self.ours.heading(),
            self.ours.heading()
        );
        println!("|---|---:|---:|---:|---:|---:|---|---|");
        let (mut met, mut missed, mut unknown) = (0, 0, 0);
        for row in &rows {
            let cells: Vec<String> = row
                .values
                .iter()
                .map(|v| v.map_or_else(|| "—".to_owned(), |v| format_value(v, row.unit)))
                .collect();
            let vs_chp = ratio(row.values[2], row.values[1]);
            let vs_direct = if row.vs_direct {
                ratio(row.values[2], row.values[0])
            } else {
                String::new()
            };
            let targets: Vec<&str> = row.checks.iter().map(|c| c.text).collect();
            let results: Vec<&str> = row
                .checks
                .iter()
                .map(|c| match c.ok {
                    Some(true) => "PASS",
                    Some(false) => "FAIL",
                    None => "n/a",
                })
                .collect();
            for check in &row.checks {
                match check.ok {
                    Some(true) => met += 1,
                    Some(false) => missed += 1,
                    None => unknown += 1,
                }
            }
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                row.metric,
                cells[0],
                cells[1],
                cells[2],
                vs_chp,
                vs_direct,
                targets.join("; "),
                results.join(" / ")
            );
        }
        println!();
        println!(
            "Targets: {met} met, {missed} missed, {unknown} not measured (of {}).",
            met + missed + unknown
        );
        println!();
        println!(
            "The direct column of the CPU and RSS rows is the backend itself (nginx; the echo \
             server for websockets); it has no route table, so its figures repeat in every \
             table-size row."
        );
        let measured: Vec<String> = [&self.direct, &self.chp, &self.ours]
            .iter()
            .filter(|f| f.selected)
            .map(|f| format!("{} {:.1}%", f.heading(), f.max_other_load * 100.0))
            .collect();
        println!(
            "CPU used by other processes during the measured runs (worst run, share of one \
             core): {}; load average at start: {}.",
            measured.join(", "),
            s.load_average
                .map_or_else(|| "unknown".to_owned(), |l| format!("{l:.2}"))
        );
        println!();
        for figs in [&self.direct, &self.chp, &self.ours] {
            if !figs.selected {
                println!("- {}: not selected (--only)", figs.heading());
            }
            for note in &figs.notes {
                println!("- {}: {note}", figs.heading());
            }
        }
        missed == 0 && unknown == 0
    }

    pub fn to_json(&self) -> Value {
        let m = &self.machine;
        let s = &self.settings;
        let rows: Vec<Value> = self
            .rows()
            .iter()
            .map(|r| {
                json!({
                    "metric": r.metric,
                    "direct": r.values[0],
                    "chp": r.values[1],
                    "chp_proxy": r.values[2],
                    "checks": r.checks.iter().map(|c| json!({"target": c.text, "met": c.ok})).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "machine": {
                "cpu": m.cpu,
                "cores": m.cores,
                "memory_gib": m.memory_gib,
                "kernel": m.kernel,
                "os": m.os,
                "nginx": m.nginx,
                "wrk": m.wrk,
                "node": m.node,
                "chp": m.chp_version,
                "chp_proxy": m.ours_version,
            },
            "settings": {
                "duration_s": s.duration_s,
                "warmup_s": s.warmup_s,
                "connections": s.connections,
                "ws_connections": s.ws_connections,
                "routes": s.routes,
                "big_routes": s.big_routes,
                "server_core": s.server_core,
                "load_core": s.load_core,
                "body_bytes": s.body_bytes,
                "request_path": s.request_path,
                "load_average_at_start": s.load_average,
            },
            "direct": self.direct.to_json(),
            "chp": self.chp.to_json(),
            "chp_proxy": self.ours.to_json(),
            "rows": rows,
        })
    }
}

/// `12345` as `12,345`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn format_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::PerSec | Unit::Bytes => {
            if v >= 100.0 {
                group(v.round() as u64)
            } else {
                format!("{v:.1}")
            }
        }
        Unit::Ms => {
            if v < 1.0 {
                format!("{v:.3}")
            } else if v < 100.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.0}")
            }
        }
        Unit::Us => format!("{v:.1}"),
        Unit::Mib => format!("{v:.1}"),
        Unit::Secs => format!("{v:.2}"),
    }
}

/// `a ÷ b` as `9.3x`, or `0.12x (1/8.3)` below one.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match both(a, b) {
        Some((a, b)) => {
            let r = a / b;
            if r >= 1.0 {
                format!("{r:.2}x")
            } else if r > 0.0 {
                format!("{r:.3}x (1/{:.1})", 1.0 / r)
            } else {
                "0x".to_owned()
            }
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(10_000), "10,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&values, 50.0) - 50.0).abs() < 1e-9);
        assert!((percentile(&values, 99.0) - 99.0).abs() < 1e-9);
        assert!((median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < 1e-9);
        assert!(percentile(&[], 50.0).abs() < 1e-9);
    }

    #[test]
    fn checks_need_both_figures() {
        assert_eq!(at_least(Some(80.0), Some(10.0), 8.0, "").ok, Some(true));
        assert_eq!(at_least(Some(79.0), Some(10.0), 8.0, "").ok, Some(false));
        assert_eq!(at_most(Some(2.0), Some(10.0), 0.2, "").ok, Some(true));
        assert_eq!(at_most(Some(2.1), Some(10.0), 0.2, "").ok, Some(false));
        assert_eq!(at_most(None, Some(10.0), 0.2, "").ok, None);
        assert_eq!(below(Some(0.4), 1.0, "").ok, Some(true));
    }

    #[test]
    fn ratios_read_both_ways() {
        assert_eq!(ratio(Some(20.0), Some(2.0)), "10.00x");
        assert_eq!(ratio(Some(1.0), Some(8.0)), "0.125x (1/8.0)");
        assert_eq!(ratio(None, Some(8.0)), "");
    }
}
