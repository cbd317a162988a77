//! Located errors: every problem in a configuration (or a drill scenario) as
//! `FILE:LINE:COL: key.path: message`, collected so that all of them are reported at once.

use std::fmt;

use serde_saphyr::{Location, MessageFormatter};

/// Every problem found in a configuration. `Display` puts each on its own line as
/// `FILE:LINE:COL: path: message` (or `FILE: path: message` when the line is unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join_lines(.errors))]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

/// One problem, with as much of its location as is known. Messages never contain a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file, the token file, or `<embedded default>`.
    pub file: String,
    pub position: Option<Position>,
    /// Key path such as `sources[1].rate_limit.per_second`; empty for whole-file problems.
    pub path: String,
    pub message: String,
}

/// 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigErrors {
    pub(crate) fn one(file: &str, message: impl Into<String>) -> Self {
        ConfigErrors {
            errors: vec![ConfigError {
                file: file.to_string(),
                position: None,
                path: String::new(),
                message: message.into(),
            }],
        }
    }
}

fn join_lines(errors: &[ConfigError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

pub(crate) fn parse_error(file: &str, err: &serde_saphyr::Error) -> ConfigError {
    let mut inner = err;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    let message = serde_saphyr::UserMessageFormatter.format_message(inner);
    // The message quotes YAML text; keep it on one line whatever the file contains.
    let mut one_line = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            one_line.extend(c.escape_default());
        } else {
            one_line.push(c);
        }
    }
    ConfigError {
        file: file.to_string(),
        position: err.location().and_then(position),
        path: String::new(),
        message: one_line,
    }
}

pub(crate) fn position(loc: Location) -> Option<Position> {
    (loc != Location::UNKNOWN && loc.line() > 0)
        .then(|| Position { line: loc.line(), column: loc.column() })
}
