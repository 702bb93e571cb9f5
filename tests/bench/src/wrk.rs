//! Running `wrk` and reading its report.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use tokio::process::Command;

/// What one wrk run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WrkResult {
    pub requests_per_sec: f64,
    pub p99_ms: f64,
    pub requests: u64,
    pub non_2xx_3xx: u64,
    pub socket_errors: u64,
}

/// Runs `wrk -t1 -c<connections> -d<secs>s --latency <url>` pinned to `core`.
pub async fn run(
    wrk: &Path,
    core: u32,
    url: &str,
    connections: u32,
    secs: u64,
) -> Result<WrkResult> {
    let out = Command::new("taskset")
        .arg("-c")
        .arg(core.to_string())
        .arg(wrk)
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("running {}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))
}

/// Parses the text report of `wrk --latency`.
pub fn parse(text: &str) -> Result<WrkResult> {
    let mut result = WrkResult::default();
    let mut saw_rps = false;
    let mut saw_p99 = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            result.requests_per_sec = v.trim().parse().context("Requests/sec")?;
            saw_rps = true;
        } else if let Some(v) = line.strip_prefix("99%") {
            result.p99_ms = parse_duration_ms(v.trim())?;
            saw_p99 = true;
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            result.requests = count.trim().parse().context("request count")?;
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            result.non_2xx_3xx = v.trim().parse().context("Non-2xx count")?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                let n = part
                    .split_whitespace()
                    .nth(1)
                    .context("socket error count")?;
                result.socket_errors += n.parse::<u64>().context("socket error count")?;
            }
        }
    }
    if !saw_rps || !saw_p99 {
        bail!("no Requests/sec or 99% line");
    }
    Ok(result)
}

/// wrk prints durations as `350.00us`, `1.20ms`, `2.01s` or `1.00m`.
fn parse_duration_ms(v: &str) -> Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {v:?}"))?;
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().with_context(|| format!("number in {v:?}"))?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => bail!("unknown unit in {v:?}"),
    };
    Ok(num * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:8000/user/u005000/api/status
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.51ms    1.20ms  40.01ms   90.00%
    Req/Sec     6.73k   300.00     7.00k    80.00%
  Latency Distribution
     50%    9.40ms
     75%    9.80ms
     90%   10.50ms
     99%   14.02ms
  67012 requests in 10.00s, 20.00MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 0, read 3, write 0, timeout 2
Requests/sec:   6701.01
Transfer/sec:      2.00MB
";

    #[test]
    fn parses_a_full_report() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.requests, 67012);
        assert_eq!(r.non_2xx_3xx, 12);
        assert_eq!(r.socket_errors, 5);
        assert!((r.requests_per_sec - 6701.01).abs() < 1e-9);
        assert!((r.p99_ms - 14.02).abs() < 1e-9);
    }

    #[test]
    fn converts_units() {
        assert!((parse_duration_ms("350.00us").unwrap() - 0.35).abs() < 1e-9);
        assert!((parse_duration_ms("2.00s").unwrap() - 2000.0).abs() < 1e-9);
        assert!(parse_duration_ms("3.0parsecs").is_err());
    }

    #[test]
    fn rejects_output_without_figures() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }
}
