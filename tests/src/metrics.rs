//! A small reader for the Prometheus text exposition format.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample name (e.g. `requests_proxy` or `find_target_for_req_sum`).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` declarations: family name → type.
    pub types: BTreeMap<String, String>,
}

impl Metrics {
    /// Parses the text format; malformed lines are an error.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut metrics = Metrics::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    metrics.types.insert(name.to_owned(), kind.to_owned());
                }
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            metrics.samples.push(parse_sample(line)?);
        }
        Ok(metrics)
    }

    /// The distinct sample names.
    pub fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|s| s.name.clone()).collect()
    }

    /// The value of the sample `name` whose labels include every pair of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// Like [`Metrics::value`], with 0 for an absent sample (counters start unexposed).
    pub fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }
}

fn parse_sample(line: &str) -> anyhow::Result<Sample> {
    let (name_and_labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line[open..]
                .find('}')
                .map(|i| open + i)
                .ok_or_else(|| anyhow::anyhow!("unclosed label set in {line:?}"))?;
            (&line[..=close], &line[close + 1..])
        }
        None => {
            let split = line
                .find(char::is_whitespace)
                .ok_or_else(|| anyhow::anyhow!("no value in {line:?}"))?;
            (&line[..split], &line[split..])
        }
    };
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no value in {line:?}"))?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .map_err(|e| anyhow::anyhow!("bad value in {line:?}: {e}"))?,
    };
    let (name, labels) = match name_and_labels.split_once('{') {
        Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))?),
        None => (name_and_labels, BTreeMap::new()),
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad labels {text:?}"))?;
        let after = after
            .strip_prefix('"')
            .ok_or_else(|| anyhow::anyhow!("unquoted label value in {text:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(match escaped {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| anyhow::anyhow!("unterminated label value in {text:?}"))?;
        labels.insert(key.trim().to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    Ok(labels)
}
