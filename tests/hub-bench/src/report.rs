//! The figures of one hub, and the Markdown table comparing both against the targets.

use serde_json::{Value, json};

use crate::load::LoadResult;

/// Times of a sequence of single operations.
#[derive(Debug, Default, Clone)]
pub struct Ops {
    /// How many items each operation handled (users per bulk request; 1 otherwise).
    pub items_per_op: usize,
    /// Milliseconds per operation, in order.
    pub times_ms: Vec<f64>,
    /// Wall time of the whole sequence, in seconds.
    pub total_s: f64,
    /// CPU the hub used, in milliseconds.
    pub hub_cpu_ms: f64,
    /// Percent of a core other processes used meanwhile.
    pub others_pct: f64,
}

impl Ops {
    /// Items per second over the whole sequence.
    pub fn items_per_s(&self) -> Option<f64> {
        (self.total_s > 0.0 && !self.times_ms.is_empty())
            .then(|| (self.times_ms.len() * self.items_per_op) as f64 / self.total_s)
    }

    /// Median time per operation.
    pub fn p50_ms(&self) -> Option<f64> {
        percentile(&self.times_ms, 50.0)
    }

    /// 99th-percentile time per operation.
    pub fn p99_ms(&self) -> Option<f64> {
        percentile(&self.times_ms, 99.0)
    }

    /// Hub CPU per item.
    pub fn cpu_ms_per_item(&self) -> Option<f64> {
        let n = self.times_ms.len() * self.items_per_op;
        (n > 0).then(|| self.hub_cpu_ms / n as f64)
    }

    fn to_json(&self) -> Value {
        json!({
            "ops": self.times_ms.len(),
            "items_per_op": self.items_per_op,
            "total_s": self.total_s,
            "items_per_s": self.items_per_s(),
            "p50_ms": self.p50_ms(),
            "p99_ms": self.p99_ms(),
            "hub_cpu_ms_per_item": self.cpu_ms_per_item(),
            "others_pct": self.others_pct,
        })
    }
}

fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A load run with the hub's CPU time.
#[derive(Debug, Default)]
pub struct Load {
    /// What the loop measured.
    pub result: LoadResult,
    /// CPU the hub used, in milliseconds.
    pub hub_cpu_ms: f64,
    /// The hub's CPU in percent of a core (100: its core was saturated).
    pub hub_pct: f64,
    /// The client's (this process's) CPU in percent of a core.
    pub client_pct: f64,
    /// Percent of a core other processes used meanwhile.
    pub others_pct: f64,
}

impl Load {
    fn rps(&self) -> Option<f64> {
        (self.result.ok > 0).then(|| self.result.rps())
    }

    fn cpu_ms_per_req(&self) -> Option<f64> {
        (self.result.ok > 0).then(|| self.hub_cpu_ms / self.result.ok as f64)
    }

    fn to_json(&self) -> Value {
        json!({
            "ok": self.result.ok,
            "errors": self.result.errors,
            "first_error": self.result.first_error,
            "secs": self.result.secs,
            "rps": self.rps(),
            "p50_ms": self.result.percentile_ms(50.0),
            "p99_ms": self.result.percentile_ms(99.0),
            "hub_cpu_ms_per_req": self.cpu_ms_per_req(),
            "hub_pct": self.hub_pct,
            "client_pct": self.client_pct,
            "others_pct": self.others_pct,
        })
    }
}

/// Everything measured on one hub.
#[derive(Debug, Default)]
pub struct Figures {
    /// Column heading.
    pub label: String,
    /// What `GET /hub/api/` reported.
    pub version: String,
    /// `VmRSS` once the hub answered, KiB.
    pub rss_start_kib: Option<u64>,
    /// `VmRSS` after the whole run, KiB.
    pub rss_end_kib: Option<u64>,
    /// `VmHWM` (peak) after the whole run, KiB.
    pub hwm_kib: Option<u64>,
    /// `POST /users/{name}`, one user per request.
    pub create_one: Ops,
    /// `POST /users` with many names.
    pub create_bulk: Ops,
    /// `GET /users?limit=200`, paginated.
    pub list_users: Load,
    /// `GET /user` with a user's token.
    pub get_user: Load,
    /// `POST /users/{name}/server`, until ready.
    pub start: Ops,
    /// `DELETE /users/{name}/server`, until stopped.
    pub stop: Ops,
}

impl Figures {
    /// The figures as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "version": self.version,
            "rss_start_kib": self.rss_start_kib,
            "rss_end_kib": self.rss_end_kib,
            "hwm_kib": self.hwm_kib,
            "create_one": self.create_one.to_json(),
            "create_bulk": self.create_bulk.to_json(),
            "list_users": self.list_users.to_json(),
            "get_user": self.get_user.to_json(),
            "start": self.start.to_json(),
            "stop": self.stop.to_json(),
        })
    }
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// A target: ours must be at least `factor` times better than JupyterHub.
#[derive(Debug, Clone, Copy)]
struct Target {
    factor: f64,
    text: &'static str,
}

struct Row {
    what: String,
    unit: &'static str,
    better: Better,
    theirs: Option<f64>,
    ours: Option<f64>,
    target: Option<Target>,
}

/// Settings shown above the table.
#[derive(Debug)]
pub struct Context {
    /// Concurrent connections of the load runs.
    pub connections: usize,
    /// Users created.
    pub users: usize,
    /// Users per bulk request.
    pub bulk: usize,
    /// Servers started and stopped.
    pub servers: usize,
}

fn rows(ctx: &Context, jh: Option<&Figures>, ours: Option<&Figures>) -> Vec<Row> {
    let f = |get: &dyn Fn(&Figures) -> Option<f64>| (jh.and_then(get), ours.and_then(get));
    let mib = |kib: Option<u64>| kib.map(|k| k as f64 / 1024.0);
    let x20 = Some(Target {
        factor: 20.0,
        text: "≥ 20×",
    });
    let x10 = Some(Target {
        factor: 10.0,
        text: "≥ 10×",
    });
    let fifth = Some(Target {
        factor: 5.0,
        text: "≤ 1/5",
    });
    let mut rows = Vec::new();
    let mut push = |what: String,
                    unit: &'static str,
                    better: Better,
                    (theirs, ours): (Option<f64>, Option<f64>),
                    target: Option<Target>| {
        rows.push(Row {
            what,
            unit,
            better,
            theirs,
            ours,
            target,
        });
    };
    let half = ctx.users - ctx.users / 2;
    push(
        format!("create users one by one (`POST /users/{{name}}`, {half} users)"),
        "users/s",
        Better::Higher,
        f(&|x| x.create_one.items_per_s()),
        x10,
    );
    push(
        "… hub CPU per user".into(),
        "ms",
        Better::Lower,
        f(&|x| x.create_one.cpu_ms_per_item()),
        None,
    );
    push(
        format!(
            "create users in bulk (`POST /users`, {} per request, {} users)",
            ctx.bulk,
            ctx.users / 2
        ),
        "users/s",
        Better::Higher,
        f(&|x| x.create_bulk.items_per_s()),
        x10,
    );
    push(
        format!(
            "`GET /users?limit=200` pages ({} connections)",
            ctx.connections
        ),
        "req/s",
        Better::Higher,
        f(&|x| x.list_users.rps()),
        x20,
    );
    push(
        "… median latency".into(),
        "ms",
        Better::Lower,
        f(&|x| x.list_users.result.percentile_ms(50.0)),
        None,
    );
    push(
        "… hub CPU per page".into(),
        "ms",
        Better::Lower,
        f(&|x| x.list_users.cpu_ms_per_req()),
        None,
    );
    push(
        format!("`GET /user` with a token ({} connections)", ctx.connections),
        "req/s",
        Better::Higher,
        f(&|x| x.get_user.rps()),
        x20,
    );
    push(
        "… 99th-percentile latency".into(),
        "ms",
        Better::Lower,
        f(&|x| x.get_user.result.percentile_ms(99.0)),
        None,
    );
    push(
        "… hub CPU per request".into(),
        "ms",
        Better::Lower,
        f(&|x| x.get_user.cpu_ms_per_req()),
        None,
    );
    push(
        format!(
            "start a server (`POST /users/{{name}}/server`, {} in a row)",
            ctx.servers
        ),
        "ops/s",
        Better::Higher,
        f(&|x| x.start.items_per_s()),
        x10,
    );
    push(
        "… median time per start".into(),
        "ms",
        Better::Lower,
        f(&|x| x.start.p50_ms()),
        None,
    );
    push(
        format!(
            "stop a server (`DELETE /users/{{name}}/server`, {} in a row)",
            ctx.servers
        ),
        "ops/s",
        Better::Higher,
        f(&|x| x.stop.items_per_s()),
        x10,
    );
    push(
        "… median time per stop".into(),
        "ms",
        Better::Lower,
        f(&|x| x.stop.p50_ms()),
        None,
    );
    push(
        "hub RSS after startup".into(),
        "MiB",
        Better::Lower,
        f(&|x| mib(x.rss_start_kib)),
        None,
    );
    push(
        "hub RSS at the end".into(),
        "MiB",
        Better::Lower,
        f(&|x| mib(x.rss_end_kib)),
        fifth,
    );
    push(
        "hub peak RSS (VmHWM)".into(),
        "MiB",
        Better::Lower,
        f(&|x| mib(x.hwm_kib)),
        None,
    );
    rows
}

/// How many times better ours is (>1 is better, whichever way the unit goes).
fn advantage(better: Better, theirs: f64, ours: f64) -> Option<f64> {
    if theirs <= 0.0 || ours <= 0.0 {
        return None;
    }
    Some(match better {
        Better::Higher => ours / theirs,
        Better::Lower => theirs / ours,
    })
}

fn format_value(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    group_thousands(&s)
}

fn group_thousands(s: &str) -> String {
    let (int, frac) = s.split_once('.').map_or((s, None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// The comparison as a Markdown table; returns it and whether every target was met.
pub fn table(ctx: &Context, jh: Option<&Figures>, ours: Option<&Figures>) -> (String, bool) {
    let mut out = String::new();
    let head = |f: Option<&Figures>, default: &str| {
        f.map_or_else(
            || default.to_owned(),
            |f| format!("{} {}", f.label, f.version),
        )
    };
    out.push_str(&format!(
        "| measure | unit | {} | {} | ours vs JupyterHub | target | met |\n",
        head(jh, "JupyterHub"),
        head(ours, "ours")
    ));
    out.push_str("|---|---|---:|---:|---:|---|---|\n");
    let mut all_met = true;
    for row in rows(ctx, jh, ours) {
        let cell = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), format_value);
        let adv = match (row.theirs, row.ours) {
            (Some(t), Some(o)) => advantage(row.better, t, o),
            _ => None,
        };
        let ratio = match (row.better, adv, row.theirs, row.ours) {
            (Better::Higher, Some(a), _, _) => format!("{}×", format_value(a)),
            (Better::Lower, Some(_), Some(t), Some(o)) if row.unit == "MiB" => format_value(o / t),
            (Better::Lower, Some(a), _, _) => format!("{}× less", format_value(a)),
            _ => "–".to_owned(),
        };
        let (target, met) = match (row.target, adv) {
            (Some(t), Some(a)) => {
                let met = a >= t.factor;
                all_met &= met;
                (t.text, if met { "yes" } else { "**no**" })
            }
            // Without both figures the target cannot be judged, so it is not met.
            (Some(t), None) => {
                all_met = false;
                (t.text, "–")
            }
            (None, _) => ("", ""),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {ratio} | {target} | {met} |\n",
            row.what,
            row.unit,
            cell(row.theirs),
            cell(row.ours)
        ));
    }
    (out, all_met)
}

/// Lines about load from other processes and request errors, for under the table.
pub fn notes(all: &[&Figures]) -> Vec<String> {
    let mut notes = Vec::new();
    for f in all {
        let mut busy = Vec::new();
        let ops = [
            ("one-by-one creation", &f.create_one),
            ("bulk creation", &f.create_bulk),
            ("server starts", &f.start),
            ("server stops", &f.stop),
        ];
        for (what, o) in ops {
            if o.others_pct > 5.0 {
                busy.push(format!("{what} {:.0}%", o.others_pct));
            }
        }
        for (what, l) in [("GET /users", &f.list_users), ("GET /user", &f.get_user)] {
            if l.others_pct > 5.0 {
                busy.push(format!("{what} {:.0}%", l.others_pct));
            }
            if l.result.ok > 0 {
                notes.push(format!(
                    "{}: during `{what}` the hub used {:.0}% of its core and the client {:.0}% of \
                     its own.",
                    f.label, l.hub_pct, l.client_pct
                ));
            }
            if l.result.errors > 0 {
                notes.push(format!(
                    "{}: {} of {} `{what}` requests failed; first: {}",
                    f.label,
                    l.result.errors,
                    l.result.errors + l.result.ok,
                    l.result.first_error.as_deref().unwrap_or("?")
                ));
            }
        }
        if !busy.is_empty() {
            notes.push(format!(
                "{}: other processes used CPU during the measurement (percent of one core): {}",
                f.label,
                busy.join(", ")
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(format_value(1234567.0), "1,234,567");
        assert_eq!(format_value(123.4), "123");
        assert_eq!(format_value(12.34), "12.3");
        assert_eq!(format_value(0.0123), "0.012");
    }

    #[test]
    fn advantage_reads_both_ways() {
        assert_eq!(advantage(Better::Higher, 10.0, 200.0), Some(20.0));
        assert_eq!(advantage(Better::Lower, 100.0, 20.0), Some(5.0));
        assert_eq!(advantage(Better::Lower, 0.0, 20.0), None);
    }

    #[test]
    fn ops_rates_count_items() {
        let ops = Ops {
            items_per_op: 100,
            times_ms: vec![10.0, 20.0],
            total_s: 0.5,
            ..Ops::default()
        };
        assert_eq!(ops.items_per_s(), Some(400.0));
        assert_eq!(ops.p50_ms(), Some(10.0));
        assert_eq!(ops.p99_ms(), Some(20.0));
    }

    #[test]
    fn table_marks_missed_targets() {
        let ctx = Context {
            connections: 10,
            users: 1000,
            bulk: 100,
            servers: 100,
        };
        let mut jh = Figures {
            label: "JupyterHub".into(),
            rss_end_kib: Some(100 * 1024),
            ..Figures::default()
        };
        jh.create_one = Ops {
            items_per_op: 1,
            times_ms: vec![10.0],
            total_s: 0.01,
            ..Ops::default()
        };
        let mut ours = Figures {
            label: "ours".into(),
            rss_end_kib: Some(10 * 1024),
            ..Figures::default()
        };
        ours.create_one = Ops {
            items_per_op: 1,
            times_ms: vec![1.0],
            total_s: 0.002,
            ..Ops::default()
        };
        let (text, met) = table(&ctx, Some(&jh), Some(&ours));
        assert!(!met, "5× creation misses the 10× target");
        assert!(text.contains("| 500 | 5.00× | ≥ 10× | **no** |"), "{text}");
        assert!(
            text.contains("| 100 | 10.0 | 0.10 | ≤ 1/5 | yes |"),
            "{text}"
        );
    }
}
