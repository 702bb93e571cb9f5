//! Configuration errors. Every problem names the key and where its value came from, and all
//! problems are reported together so an operator fixes them in one pass.

use std::fmt;
use std::path::PathBuf;

use super::layers::Source;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A JupyterHub Python config was given where TOML is expected.
    #[error(
        "{} is a JupyterHub Python config; this hub reads TOML. \
         Start from `hub --generate-config` and carry your settings over \
         (the sections are named after JupyterHub's classes)",
        path.display()
    )]
    PythonConfig {
        /// The file.
        path: PathBuf,
    },
    /// One or more keys have invalid values, or are unknown.
    #[error("{}", ProblemList(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The individual problems of an [`ConfigError::Invalid`] error (empty otherwise).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

/// One invalid or unknown key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as a dotted TOML path: `hub.port`, `services[0].api_token`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
    /// Where the offending value came from.
    pub source: Source,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.key, self.message, self.source)
    }
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} configuration problems:", many.len())?;
                for problem in many {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}
