//! The validation context every domain's config check is given: the file name, the environment
//! (for `${VAR}`), and the collector of located errors. A domain's `validate` turns its raw
//! section into typed settings and reports each bad value here with its line, column and key
//! path, then carries on, so that [`crate::config::validate`] reports every problem at once.
//!
//! Only the checks more than one section needs live here (durations, counts, closed word
//! lists, `${VAR}`); everything else lives with the section that owns it.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::errors::position;
use super::vars::expand;
use super::{ConfigError, parse_duration};

/// Longest source, user or rotation name: names end up in metrics labels, logs and URLs.
pub const MAX_NAME_CHARS: usize = 128;

/// The located-error collector (see the module docs).
pub struct Validator<'a> {
    file: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
pub(crate) enum At {
    File(Location),
    Env(&'static str),
}

impl<'a> Validator<'a> {
    pub(crate) fn new(file: &'a str, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Validator { file, env, errors: Vec::new() }
    }

    /// Every problem reported, in the order found.
    pub(crate) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    /// Looks up environment variables, for sections that expand `${VAR}` themselves.
    pub fn env(&self) -> &'a dyn Fn(&str) -> Option<String> {
        self.env
    }

    pub(crate) fn error(&mut self, at: At, path: &str, message: impl Into<String>) {
        let (position, path) = match at {
            At::File(loc) => (position(loc), path.to_string()),
            At::Env(var) => (None, format!("{path} (from {var})")),
        };
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            position,
            path,
            message: message.into(),
        });
    }

    /// Reports `message` about the value at `loc`, whose key path is `path`.
    pub fn err(&mut self, loc: Location, path: &str, message: impl Into<String>) {
        self.error(At::File(loc), path, message);
    }

    /// `text` with its `${VAR}` references expanded; `None` after reporting each problem.
    pub fn expand(&mut self, text: &str, loc: Location, path: &str) -> Option<String> {
        match expand(text, self.env) {
            Ok(value) => Some(value),
            Err(messages) => {
                for message in messages {
                    self.err(loc, path, message);
                }
                None
            }
        }
    }

    /// A duration such as `5m`; `default` when left out or (after reporting it) bad.
    pub fn duration(
        &mut self,
        raw: Option<Spanned<String>>,
        path: &str,
        default: Duration,
    ) -> Duration {
        let Some(s) = raw else { return default };
        match parse_duration(&s.value) {
            Ok(d) => d,
            Err(message) => {
                self.err(s.referenced, path, message);
                default
            }
        }
    }

    /// A count from 1 to `max`; `default` when left out or (after reporting it) out of range.
    pub fn count(
        &mut self,
        raw: Option<Spanned<u64>>,
        path: &str,
        max: u64,
        default: usize,
    ) -> usize {
        let Some(s) = raw else { return default };
        if s.value == 0 || s.value > max {
            self.err(s.referenced, path, format!("must be from 1 to {max}, not {}", s.value));
            return default;
        }
        usize::try_from(s.value).unwrap_or(default)
    }

    /// The words of a closed set that `lookup` knows; each other word is reported as
    /// `path[i]` with the `allowed` list.
    pub fn one_of<T: Ord>(
        &mut self,
        words: Vec<Spanned<String>>,
        path: &str,
        lookup: impl Fn(&str) -> Option<T>,
        allowed: &str,
    ) -> BTreeSet<T> {
        let mut set = BTreeSet::new();
        for (i, word) in words.into_iter().enumerate() {
            match lookup(&word.value) {
                Some(value) => {
                    set.insert(value);
                }
                None => self.err(
                    word.referenced,
                    &format!("{path}[{i}]"),
                    format!("`{}` is not one of: {allowed}", word.value.escape_debug()),
                ),
            }
        }
        set
    }
}
