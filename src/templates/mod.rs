//! The library of pre-approved message templates: which words each audience gets on each
//! channel, as Jinja2 templates (minijinja) in a directory, by default `rules/templates/`.
//!
//! Sits in the delivery stage, between the escalation plan (which decides that a person or
//! system gets a notice about an incident, on which channel, as which audience) and the
//! channels in [`crate::notify`]: [`Templates::render`] turns an incident into the
//! [`Rendered`] subject, text, HTML and webhook payload of one message.
//!
//! A template file is `<channel>/<audience>[.<severity>].<part>.j2`, and a message part is
//! looked up from the most specific name to the least:
//!
//! 1. `<channel>/<audience>.<severity>.<part>.j2`
//! 2. `<channel>/<audience>.<part>.j2`
//! 3. `<channel>/default.<severity>.<part>.j2`
//! 4. `<channel>/default.<part>.j2`
//! 5. the plain built-in message (Rust code: it cannot fail).
//!
//! The parts are `subject`, `text` and `html` for email, `text` for SMS and log, and `json`
//! (the body) for webhooks. `rules/templates/README.md` documents the scheme, the variables
//! templates see, the webhook payloads, and the reasons behind them.
//!
//! [`Templates::load`] compiles every file once and reports every error with its file and
//! line. Rendering never fails: a part whose template errors at render time (an undefined
//! variable, fuel exhausted, output too long, invalid JSON) gets the plain built-in message
//! instead, and [`Rendered::fallback`] says which template failed and why, for the incident
//! timeline. The message is still sent.

mod builtin;
mod context;
mod payload;
mod plain;

#[cfg(test)]
mod tests;

/// Sample incidents, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) use context::sample;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, escape_formatter};

pub use context::{NoticeKind, RenderContext};
pub use payload::{alertmanager_payload, tocsin_payload};
pub(crate) use plain::escape_html_into;

use context::{INCIDENT_FIELDS, ROOT_NAMES, View};
pub use plain::{is_communications, is_external};

use crate::notify::{Channel, Message};

/// Steps (minijinja instructions) one part may take to render. The shipped templates need a
/// few hundred (a 100-incident bundle a few thousand); a runaway loop stops here and the part
/// falls back instead of holding a delivery worker.
pub const FUEL: u64 = 100_000;

/// Longest rendered part. Fuel bounds steps, not bytes: `"x" * 50000000` is one step.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The audience whose templates apply when an audience has none of its own.
pub const DEFAULT_AUDIENCE: &str = "default";

/// The language of the templates straight under the channel directories, and of everyone who
/// states no other.
pub const DEFAULT_LANGUAGE: &str = "en";

/// A template file that could not be read, named or compiled, or (from
/// [`Templates::check_variables`]) that fails against a sample incident.
pub type TemplateError = crate::error::LocatedError;

/// One message, rendered for one channel and audience.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// One line (newlines in a template's output are folded to spaces, so a template can never
    /// add an email header).
    pub subject: String,
    /// The email text part, the SMS body, the log line; trimmed.
    pub text: String,
    /// The email HTML part: `Some` only for email when an `html` template applies.
    pub html: Option<String>,
    /// The webhook body (Tocsin's schema unless a `json` template replaced it); `Null` for the
    /// other channels.
    pub payload: serde_json::Value,
    /// `Some(reason)` when a template failed and the plain built-in message was used for that
    /// part: the caller records it on the incident timeline and sends the message anyway.
    pub fallback: Option<String>,
}

impl Rendered {
    pub fn into_message(self, idempotency_id: String) -> Message {
        Message {
            idempotency_id,
            subject: self.subject,
            text: self.text,
            html: self.html,
            payload: self.payload,
        }
    }
}

/// One piece of a message; each channel has a fixed set (see [`Part::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Subject,
    Text,
    Html,
    Json,
}

impl Part {
    fn as_str(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "text",
            Part::Html => "html",
            Part::Json => "json",
        }
    }

    /// The parts a channel's templates may provide. Closed, so that a misspelt part in a file
    /// name (`responder.txt.j2`) is a load error rather than a template never used.
    fn of(channel: Channel) -> &'static [Part] {
        match channel {
            Channel::Email => &[Part::Subject, Part::Text, Part::Html],
            Channel::Sms | Channel::Log => &[Part::Text],
            Channel::Webhook => &[Part::Json],
        }
    }
}

const CHANNELS: [Channel; 4] = [Channel::Email, Channel::Sms, Channel::Webhook, Channel::Log];

fn parse_channel(name: &str) -> Option<Channel> {
    CHANNELS.into_iter().find(|c| c.as_str() == name)
}

/// What rendering one template gave.
enum Outcome {
    /// No template in the part's fallback chain.
    Missing,
    Done(String),
    /// The template failed; the reason is in the failures.
    Failed,
}

/// The compiled template library. Compiled once by [`Templates::load`] or
/// [`Templates::builtin`]; `Send + Sync`, so one library is shared through an `Arc` by every
/// delivery worker and swapped as a whole on reload.
pub struct Templates {
    env: Environment<'static>,
    /// Template name (`email/legal.subject.j2`) → the file it came from, for error reports.
    /// Every name in `env` is here.
    files: BTreeMap<String, PathBuf>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates").field("names", &self.names()).finish_non_exhaustive()
    }
}

impl Templates {
    /// Compiles every template under `dir`: `<dir>/<channel>/<name>.j2`. Reports every
    /// unreadable file, badly named file and compile error at once, each with its file and,
    /// for compile errors, line and column.
    ///
    /// Files outside a channel directory (`README.md`) and files in one that do not end in
    /// `.j2` are ignored; names starting with `.` (editor files) are skipped. A directory that
    /// is not a channel name is an error: the name space is kept free for a later language
    /// level (`<dir>/<lang>/<channel>/…`).
    pub fn load(dir: &Path) -> Result<Templates, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let mut sources = Vec::new();
        for (path, is_dir) in list(dir, &mut errors) {
            let name = file_name(&path);
            if !is_dir {
                if name.ends_with(".j2") {
                    errors.push(error_at(
                        &path,
                        "a template must be in a channel directory: email/, sms/, webhook/ or log/",
                    ));
                }
                continue;
            }
            if let Some(channel) = parse_channel(&name) {
                load_channel(&path, channel, None, &mut sources, &mut errors);
                continue;
            }
            if name == DEFAULT_LANGUAGE {
                errors.push(error_at(
                    &path,
                    format!(
                        "{DEFAULT_LANGUAGE:?} is the default language: its templates go straight \
                         into the channel directories (email/, sms/, …), not into {name}/"
                    ),
                ));
                continue;
            }
            if !is_language(&name) {
                errors.push(error_at(
                    &path,
                    format!(
                        "unknown channel directory {name:?}: expected email, sms, webhook or log, \
                         or a language directory such as de/ or pt-BR/ holding them"
                    ),
                ));
                continue;
            }
            for (sub, is_dir) in list(&path, &mut errors) {
                let sub_name = file_name(&sub);
                match parse_channel(&sub_name) {
                    Some(channel) if is_dir => {
                        load_channel(&sub, channel, Some(&name), &mut sources, &mut errors);
                    }
                    _ if !is_dir && !sub_name.ends_with(".j2") => {}
                    _ => errors.push(error_at(
                        &sub,
                        format!(
                            "a language directory holds channel directories only: \
                             {name}/email/, {name}/sms/, {name}/webhook/ or {name}/log/"
                        ),
                    )),
                }
            }
        }
        match Templates::compile(sources) {
            Ok(templates) if errors.is_empty() => return Ok(templates),
            Ok(_) => {}
            Err(compile_errors) => errors.extend(compile_errors),
        }
        // In file order, as a person fixes them.
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(errors)
    }

    /// The shipped `rules/templates/` library, embedded in the binary: used when no template
    /// directory is configured.
    pub fn builtin() -> Templates {
        let sources = builtin::FILES.iter().map(|(name, source)| {
            (name.to_string(), PathBuf::from(format!("(builtin)/{name}")), source.to_string())
        });
        // The tests load the same files from rules/templates/ and fail on any error.
        Templates::compile(sources.collect()).expect("the embedded templates compile")
    }

    /// Compiles `(name, file, source)` triples; `name` is `<channel>/<file name>`, already
    /// checked.
    fn compile(sources: Vec<(String, PathBuf, String)>) -> Result<Templates, Vec<TemplateError>> {
        let mut env = environment();
        let mut files = BTreeMap::new();
        let mut errors = Vec::new();
        for (name, file, source) in sources {
            match env.add_template_owned(name.clone(), source.clone()) {
                Ok(()) => {
                    files.insert(name, file);
                }
                Err(err) => {
                    let (line, column) = location(&err, &source);
                    errors.push(TemplateError { file, line, column, message: describe(&err) });
                }
            }
        }
        if errors.is_empty() { Ok(Templates { env, files }) } else { Err(errors) }
    }

    /// Template names (`email/legal.subject.j2`), sorted.
    pub fn names(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// Renders one message for `channel` and `audience` (any name; `customer` and
    /// `communications` get redacted built-ins). Never fails: see [`Rendered::fallback`].
    pub fn render(&self, channel: Channel, audience: &str, ctx: &RenderContext) -> Rendered {
        self.render_in(channel, audience, DEFAULT_LANGUAGE, ctx)
    }

    /// [`Templates::render`] in `language` (a tag such as `de` or `pt-BR`): each part comes
    /// from the most specific template that exists, preferring the reader's language at each
    /// step of the chain (`de/email/customer.text.j2`, then `email/customer.text.j2`, then
    /// `de/email/default.text.j2`, …), so an audience's own approved words in English win over
    /// a generic default in the reader's language. `pt-BR` also tries `pt`.
    pub fn render_in(
        &self,
        channel: Channel,
        audience: &str,
        language: &str,
        ctx: &RenderContext,
    ) -> Rendered {
        let view = Value::from(Serde(View::new(ctx, channel, audience)));
        let severity = &ctx.incident.decision.severity;
        let mut failures = Vec::new();
        let mut part = |part: Part| match self.lookup(channel, audience, severity, part, language) {
            None => Outcome::Missing,
            Some(name) => match self.render_one(name, &view) {
                Ok(text) => Outcome::Done(text),
                Err(reason) => {
                    failures.push(reason);
                    Outcome::Failed
                }
            },
        };

        let subject = match part(Part::Subject) {
            Outcome::Done(text) => one_line(&text),
            Outcome::Missing | Outcome::Failed => plain::subject(ctx, audience),
        };
        let text = match part(Part::Text) {
            Outcome::Done(text) => text.trim().to_owned(),
            Outcome::Missing | Outcome::Failed => {
                plain::text(channel, ctx, audience).trim().to_owned()
            }
        };
        let html = match part(Part::Html) {
            Outcome::Done(html) => Some(html),
            Outcome::Failed => Some(plain::html(ctx, audience)),
            Outcome::Missing => None,
        };
        let payload = match channel {
            Channel::Webhook => {
                let built_in = || {
                    if is_external(audience) {
                        payload::redacted_payload(ctx)
                    } else {
                        tocsin_payload(ctx)
                    }
                };
                match part(Part::Json) {
                    Outcome::Done(body) => match serde_json::from_str(&body) {
                        Ok(payload) => payload,
                        Err(err) => {
                            let name =
                                self.lookup(channel, audience, severity, Part::Json, language);
                            failures.push(format!(
                                "{}: did not render valid JSON ({err})",
                                name.unwrap_or_default()
                            ));
                            built_in()
                        }
                    },
                    Outcome::Missing | Outcome::Failed => built_in(),
                }
            }
            Channel::Email | Channel::Sms | Channel::Log => serde_json::Value::Null,
        };
        let fallback = (!failures.is_empty())
            .then(|| format!("{}; the built-in message was used instead", failures.join("; ")));
        Rendered { subject, text, html, payload, fallback }
    }

    /// The template file that renders the main part of a message (the text; a webhook's
    /// `json` body) for `channel`, `audience` and `severity`; `None` when the plain built-in
    /// message is used. `tocsin drill` shows it and matches expectations against it.
    pub fn main_template(
        &self,
        channel: Channel,
        audience: &str,
        severity: &str,
        language: &str,
    ) -> Option<&str> {
        let part = if channel == Channel::Webhook { Part::Json } else { Part::Text };
        self.lookup(channel, audience, severity, part, language)
    }

    /// The first template in `part`'s fallback chain that exists. Only parts the channel has
    /// can be found: others were refused at load.
    fn lookup(
        &self,
        channel: Channel,
        audience: &str,
        severity: &str,
        part: Part,
        language: &str,
    ) -> Option<&str> {
        let (channel, part) = (channel.as_str(), part.as_str());
        let candidates = [
            format!("{channel}/{audience}.{severity}.{part}.j2"),
            format!("{channel}/{audience}.{part}.j2"),
            format!("{channel}/{DEFAULT_AUDIENCE}.{severity}.{part}.j2"),
            format!("{channel}/{DEFAULT_AUDIENCE}.{part}.j2"),
        ];
        let languages = language_chain(language);
        let found = |name: &str| self.files.get_key_value(name).map(|(k, _)| k.as_str());
        candidates.iter().find_map(|name| {
            languages
                .iter()
                .find_map(|lang| found(&format!("{lang}/{name}")))
                .or_else(|| found(name))
        })
    }

    /// The languages (besides the default) that have templates, sorted.
    pub fn languages(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .files
            .keys()
            .filter_map(|name| split_language(name).0.map(str::to_owned))
            .collect();
        out.dedup();
        out
    }

    /// Renders the template `name`; the error names the template and line, for the timeline.
    fn render_one(&self, name: &str, view: &Value) -> Result<String, String> {
        let rendered = self.env.get_template(name).and_then(|t| t.render(view));
        match rendered {
            Ok(text) if text.len() > MAX_OUTPUT_BYTES => Err(format!(
                "{name}: rendered {} bytes, more than the {MAX_OUTPUT_BYTES}-byte limit",
                text.len()
            )),
            Ok(text) => Ok(text),
            Err(err) => Err(match err.line() {
                Some(line) => format!("{name}:{line}: {}", describe(&err)),
                None => format!("{name}: {}", describe(&err)),
            }),
        }
    }

    /// Checks every template against sample incidents of every notice kind, so that a typo is
    /// found by `tocsin check` rather than at 3 a.m.:
    ///
    /// - statically, every variable a template reads must be one that templates get
    ///   (`incident.servce` is reported even inside an `{% if %}`, where rendering would
    ///   quietly treat it as false);
    /// - then each template is rendered against a sample with every optional value set and
    ///   one with none; a failure (an undefined value printed, a bad filter argument, fuel,
    ///   invalid JSON from a `json` template) is reported with its line.
    ///
    /// At most one error per template: the first one found.
    pub fn check_variables(&self) -> Vec<TemplateError> {
        let globals: BTreeSet<&str> = self.env.globals().map(|(name, _)| name).collect();
        let known = |variable: &str| {
            let mut path = variable.split('.');
            match (path.next(), path.next()) {
                (Some("incident"), Some(field)) => INCIDENT_FIELDS.contains(&field),
                (Some(root), _) => ROOT_NAMES.contains(&root) || globals.contains(root),
                (None, _) => true,
            }
        };
        let samples = samples();
        let mut errors = Vec::new();
        for (name, file) in &self.files {
            let Ok(template) = self.env.get_template(name) else { continue };
            let mut unknown: Vec<String> =
                template.undeclared_variables(true).into_iter().filter(|v| !known(v)).collect();
            unknown.sort();
            if let Some(first) = unknown.first() {
                let (line, column) = find(template.source(), first);
                errors.push(TemplateError {
                    file: file.clone(),
                    line,
                    column,
                    message: format!(
                        "unknown variable `{first}`{}: templates get the variables listed in \
                         rules/templates/README.md",
                        match unknown.len() {
                            1 => String::new(),
                            n => format!(" (and {} more: {})", n - 1, unknown[1..].join(", ")),
                        }
                    ),
                });
                continue;
            }
            let (channel, audience) = split_name(name);
            let failure = samples.iter().find_map(|sample| {
                let view = Value::from(Serde(View::new(&sample.ctx(), channel, audience)));
                let failed = |err: minijinja::Error| {
                    let (line, column) = location(&err, template.source());
                    (line, column, describe(&err))
                };
                match template.render(&view) {
                    Err(err) => Some(failed(err)),
                    Ok(text) if name.ends_with(".json.j2") => {
                        serde_json::from_str::<serde_json::Value>(&text)
                            .err()
                            .map(|err| (None, None, format!("does not render valid JSON ({err})")))
                    }
                    Ok(_) => None,
                }
            });
            if let Some((line, column, message)) = failure {
                errors.push(TemplateError {
                    file: file.clone(),
                    line,
                    column,
                    message: format!("fails for a sample incident: {message}"),
                });
            }
        }
        errors.extend(self.check_languages());
        errors
    }
}

impl Templates {
    /// Every language's version of one template (`email/customer.text.j2`,
    /// `de/email/customer.text.j2`, …) must use the same variables: a translation that drops
    /// `ack_url` or `incident.service` silently tells its readers less. Reports each version
    /// that lacks a variable another version uses, naming the variable and that version.
    fn check_languages(&self) -> Vec<TemplateError> {
        let mut versions: BTreeMap<&str, Vec<(&str, BTreeSet<String>)>> = BTreeMap::new();
        for name in self.files.keys() {
            let Ok(template) = self.env.get_template(name) else { continue };
            let (_, base) = split_language(name);
            let used: BTreeSet<String> = template.undeclared_variables(true).into_iter().collect();
            versions.entry(base).or_default().push((name.as_str(), used));
        }
        let mut errors = Vec::new();
        for group in versions.values().filter(|g| g.len() > 1) {
            for (name, used) in group {
                let missing = group.iter().find_map(|(other, theirs)| {
                    theirs.difference(used).next().map(|variable| (*other, variable))
                });
                if let Some((other, variable)) = missing {
                    let count = group
                        .iter()
                        .flat_map(|(_, theirs)| theirs.difference(used))
                        .collect::<BTreeSet<_>>()
                        .len();
                    errors.push(TemplateError {
                        file: self.files[*name].clone(),
                        line: None,
                        column: None,
                        message: format!(
                            "does not use `{variable}`{}, which {other} uses: every language's \
                             version of a template must use the same variables",
                            if count > 1 {
                                format!(" (and {} more)", count - 1)
                            } else {
                                String::new()
                            }
                        ),
                    });
                }
            }
        }
        errors
    }
}

/// Sample contexts: both incident shapes × every notice kind, with links and a recipient name
/// on the full shape, none on the sparse one (which is also a drill).
struct Sample {
    kind: NoticeKind,
    incident: crate::incident::Incident,
    bundle: Vec<crate::incident::Incident>,
    full: bool,
}

impl Sample {
    fn ctx(&self) -> RenderContext<'_> {
        RenderContext {
            incident: &self.incident,
            kind: self.kind,
            bundle: &self.bundle,
            ack_url: self.full.then(|| "https://tocsin.example.com/ack/0123456789abcdef".into()),
            dashboard_url: self.full.then(|| "https://tocsin.example.com/incidents/42".into()),
            recipient_name: self.full.then(|| "Ana".into()),
            drill: !self.full,
            zone: self.full.then(|| jiff::tz::TimeZone::get("Europe/Berlin").expect("bundled")),
        }
    }
}

fn samples() -> Vec<Sample> {
    let mut samples = Vec::new();
    for full in [true, false] {
        let shape = if full { context::sample::full } else { context::sample::sparse };
        for kind in NoticeKind::ALL {
            let incident = shape(kind, 42);
            let bundle = match kind {
                NoticeKind::Bundle => vec![incident.clone(), shape(kind, 43), shape(kind, 44)],
                _ => Vec::new(),
            };
            samples.push(Sample { kind, incident, bundle, full });
        }
    }
    samples
}

/// The environment every library is compiled in; see the README for why each setting.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // SemiStrict: printing, iterating or filtering an undefined value is an error (a typo
    // falls back loudly instead of sending a blank), while `{% if incident.labels.team %}`
    // stays a safe test for a label some incidents lack. Strict would fail that test on
    // exactly those incidents, at 3 a.m.; typos inside tests are caught by check_variables.
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL));
    // Block tags on their own lines leave no blank lines behind: texts read as written.
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    // HTML escaping for HTML parts only. JSON bodies escape every printed value as JSON, so a
    // summary with a quote in it cannot change the body's structure (a text-only body would be
    // an injection that may still parse).
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html.j2") {
            AutoEscape::Html
        } else if name.ends_with(".json.j2") {
            AutoEscape::Json
        } else {
            AutoEscape::None
        }
    });
    // `none` prints as nothing in text and HTML (not "none"), and stays `null` in JSON. HTML is
    // escaped here rather than by minijinja so that links keep their slashes.
    env.set_formatter(|out, state, value| match state.auto_escape() {
        AutoEscape::Json => escape_formatter(out, state, value),
        _ if value.is_none() || value.is_undefined() => Ok(()),
        AutoEscape::Html if !value.is_safe() => {
            let mut escaped = String::new();
            plain::escape_html_into(&mut escaped, &value.to_string());
            out.write_str(&escaped).map_err(minijinja::Error::from)
        }
        _ => escape_formatter(out, state, value),
    });
    env.add_filter("truncate", truncate);
    env
}

/// `{{ text | truncate(80) }}`: at most that many characters (default 255), ending in `...`
/// when cut.
fn truncate(text: &str, length: Option<usize>) -> String {
    plain::truncate(text, length.unwrap_or(255))
}

/// The error's kind and detail, without minijinja's own "(in name:line)" suffix: callers say
/// where.
fn describe(err: &minijinja::Error) -> String {
    match (err.kind(), err.detail()) {
        (ErrorKind::OutOfFuel, _) => {
            format!("stopped after {FUEL} steps (a loop that runs too long?)")
        }
        (ErrorKind::UndefinedError, None) => {
            "undefined value used (a misspelt variable, or a label this incident lacks?)".into()
        }
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    }
}

/// Line and, when minijinja knows the span, column of an error in `source`.
fn location(err: &minijinja::Error, source: &str) -> (Option<usize>, Option<usize>) {
    let column = err.range().and_then(|range| {
        let before = source.get(..range.start)?;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Some(before[line_start..].chars().count() + 1)
    });
    (err.line(), column.filter(|_| err.line().is_some()))
}

/// Line and column of the first occurrence of `needle` in `source`.
fn find(source: &str, needle: &str) -> (Option<usize>, Option<usize>) {
    let Some(at) = source.find(needle) else { return (None, None) };
    let before = &source[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (Some(before.matches('\n').count() + 1), Some(before[line_start..].chars().count() + 1))
}

/// Folds a rendered subject to one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Checks a template file name against `<audience>[.<severity>].<part>.j2` for `channel`.
fn check_name(channel: Channel, file_name: &str) -> Result<(), String> {
    let stem = file_name.strip_suffix(".j2").unwrap_or(file_name);
    let pieces: Vec<&str> = stem.split('.').collect();
    let usage = "name templates <audience>.<part>.j2 or <audience>.<severity>.<part>.j2";
    if !(2..=3).contains(&pieces.len()) {
        return Err(format!("{file_name:?} is not a template name: {usage}"));
    }
    for piece in &pieces {
        let valid = !piece.is_empty()
            && piece.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(format!(
                "{file_name:?}: {piece:?} is not a valid name (letters, digits, '_' and '-'); \
                 {usage}"
            ));
        }
    }
    let part = pieces[pieces.len() - 1];
    let parts = Part::of(channel);
    if !parts.iter().any(|p| p.as_str() == part) {
        let names: Vec<&str> = parts.iter().map(|p| p.as_str()).collect();
        return Err(format!(
            "{file_name:?}: {} templates have no part {part:?}; expected {}",
            channel.as_str(),
            names.join(", ")
        ));
    }
    Ok(())
}

/// The channel and audience a (checked) template name is for.
fn split_name(name: &str) -> (Channel, &str) {
    let (_, name) = split_language(name);
    let (channel, file) = name.split_once('/').unwrap_or(("", name));
    let audience = file.split('.').next().unwrap_or(DEFAULT_AUDIENCE);
    (parse_channel(channel).unwrap_or(Channel::Log), audience)
}

/// The visible entries of `dir`, sorted by name, with whether each is a directory; errors go
/// to `errors`.
fn list(dir: &Path, errors: &mut Vec<TemplateError>) -> Vec<(PathBuf, bool)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            errors.push(error_at(dir, format!("cannot read directory: {err}")));
            return Vec::new();
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) if entry.file_name().to_string_lossy().starts_with('.') => {}
            // Follows symlinks, so a linked file or directory counts as what it points to.
            Ok(entry) => match std::fs::metadata(entry.path()) {
                Ok(meta) => found.push((entry.path(), meta.is_dir())),
                Err(err) => errors.push(error_at(&entry.path(), format!("cannot read: {err}"))),
            },
            Err(err) => errors.push(error_at(dir, format!("cannot read directory: {err}"))),
        }
    }
    found.sort();
    found
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap_or_default().to_string_lossy().into_owned()
}

fn error_at(file: &Path, message: impl Into<String>) -> TemplateError {
    TemplateError { file: file.to_owned(), line: None, column: None, message: message.into() }
}

/// A language directory name: a tag such as `de`, `fr` or `pt-BR` (2 or 3 lowercase letters,
/// then optional `-` subtags).
fn is_language(name: &str) -> bool {
    let mut parts = name.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The non-default languages to try for `language`, most specific first: `pt-BR`, `pt`.
fn language_chain(language: &str) -> Vec<&str> {
    let mut out = Vec::new();
    if language.is_empty() || language == DEFAULT_LANGUAGE {
        return out;
    }
    out.push(language);
    if let Some((primary, _)) = language.split_once('-')
        && primary != DEFAULT_LANGUAGE
    {
        out.push(primary);
    }
    out
}

/// `de/email/legal.text.j2` → (`Some("de")`, `email/legal.text.j2`).
fn split_language(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if parse_channel(first).is_none() => (Some(first), rest),
        _ => (None, name),
    }
}

/// Reads the templates of one channel directory (`lang` for a language directory's).
fn load_channel(
    path: &Path,
    channel: Channel,
    lang: Option<&str>,
    sources: &mut Vec<(String, PathBuf, String)>,
    errors: &mut Vec<TemplateError>,
) {
    for (file, is_dir) in list(path, errors) {
        let file_name = file_name(&file);
        if is_dir {
            errors.push(error_at(&file, "a channel directory holds no subdirectories"));
        } else if file_name.ends_with(".j2") {
            if let Err(message) = check_name(channel, &file_name) {
                errors.push(error_at(&file, message));
                continue;
            }
            let name = match lang {
                Some(lang) => format!("{lang}/{}/{file_name}", channel.as_str()),
                None => format!("{}/{file_name}", channel.as_str()),
            };
            match std::fs::read_to_string(&file) {
                Ok(source) => sources.push((name, file, source)),
                Err(err) => errors.push(error_at(&file, format!("cannot read: {err}"))),
            }
        }
    }
}
