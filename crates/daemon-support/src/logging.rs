//! Structured logs through `tracing`, to stdout.
//!
//! The level names are configurable-http-proxy's (`debug`, `info`, `warn`, `error`); `RUST_LOG`,
//! when set, overrides them with a full filter.

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// An unknown log level name.
#[derive(Debug, thiserror::Error)]
#[error("unknown log level {0:?} (expected one of: trace, debug, info, warn, error)")]
pub struct UnknownLevel(String);

/// Parses a level name case-insensitively.
pub fn parse_level(level: &str) -> Result<tracing::Level, UnknownLevel> {
    match level.to_ascii_lowercase().as_str() {
        "trace" => Ok(tracing::Level::TRACE),
        "debug" => Ok(tracing::Level::DEBUG),
        "info" => Ok(tracing::Level::INFO),
        "warn" | "warning" => Ok(tracing::Level::WARN),
        "error" => Ok(tracing::Level::ERROR),
        _ => Err(UnknownLevel(level.to_owned())),
    }
}

/// Installs the global subscriber. Calling it twice keeps the first one.
pub fn init(level: tracing::Level, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level.as_str().to_ascii_lowercase()));
    // A log line that cannot be written is dropped. By default the subscriber reports that on
    // stderr with `eprintln!`, which panics when stderr is gone too: a proxy or server whose
    // output went to a hub that was killed would then fail every request that logs something.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .log_internal_errors(false)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names() {
        assert_eq!(parse_level("WARN").unwrap(), tracing::Level::WARN);
        assert_eq!(parse_level("warning").unwrap(), tracing::Level::WARN);
        assert!(parse_level("loud").is_err());
    }
}
