//! `tocsin drill SCENARIO.yaml`: rehearse an incident offline. The scenario's events and
//! people's actions go through the real pipeline — normalizers, rules, incidents, escalation
//! timers, notices, rate limits and bundling, templates — on a simulated clock against an
//! in-memory store. Nothing is sent: the run prints who would have been told what and when,
//! and checks the scenario's expectations.
//!
//! - [`scenario`]: the file format (documented in the README) and its parser.
//! - [`sim`]: the run itself.
//! - [`expect`]: checking the run against the expectations.
//! - [`live`]: live drills — drill events through the running daemon, routed to the drill
//!   recipients.

pub mod config;
pub mod expect;
pub mod live;
pub mod scenario;
pub mod sim;

use std::io::Write;
use std::path::Path;

use crate::config::{ConfigOrigin, TokenFallback};
use scenario::show;

/// Exit code when the scenario or config cannot be used at all.
pub const CANNOT_RUN: u8 = 2;

/// Runs one scenario file; prints the timeline to `out` and problems to `err`. Returns the
/// exit code: 0 every expectation held, 1 some failed, 2 the scenario could not run.
pub fn main(path: &Path, config: Option<&Path>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let scenario = match scenario::load(path) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return CANNOT_RUN;
        }
    };
    let origin = match (config, &scenario.config) {
        (Some(c), _) => ConfigOrigin::File(c.to_path_buf()),
        (None, Some(c)) => ConfigOrigin::File(c.clone()),
        (None, None) => crate::config::resolve_origin(None),
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(err, "cannot start a runtime: {e}");
            return CANNOT_RUN;
        }
    };
    let result = rt.block_on(async {
        // A dry run: no token file, no data directory, no log file is written.
        let runtime = crate::runtime::load(&origin, TokenFallback::Placeholder)
            .map_err(|e| format!("{e}"))?;
        let source = scenario
            .source
            .clone()
            .or_else(|| runtime.config.sources.first().map(|s| s.name.clone()))
            .unwrap_or_else(|| "drill".to_string());
        let run = sim::run(&scenario, runtime).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((run, source))
    });
    let (run, source) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return CANNOT_RUN;
        }
    };
    let failures = expect::check(&scenario, &run, &source);
    print(&scenario, &origin, &run, out);
    let expectations = scenario.notifications.len()
        + scenario.incidents.len()
        + usize::from(scenario.incident_count.is_some())
        + usize::from(scenario.exact);
    if failures.is_empty() {
        let _ = writeln!(
            out,
            "\nPASS {}: {expectations} expectation(s) held ({} notification(s), {} incident(s))",
            scenario.name,
            run.sent.len(),
            run.incidents.len()
        );
        0
    } else {
        let _ = writeln!(out, "\nFAIL {}: {} problem(s)", scenario.name, failures.len());
        for f in &failures {
            let _ = writeln!(err, "{f}");
        }
        1
    }
}

fn print(
    scenario: &scenario::Scenario,
    origin: &ConfigOrigin,
    run: &sim::Run,
    out: &mut dyn Write,
) {
    let config = match origin {
        ConfigOrigin::File(p) => p.display().to_string(),
        ConfigOrigin::Embedded => "the embedded default config".to_string(),
    };
    let _ = writeln!(out, "drill: {} ({})", scenario.name, scenario.file.display());
    if let Some(d) = &scenario.description {
        let _ = writeln!(out, "  {}", d.trim());
    }
    let _ = writeln!(
        out,
        "config: {config}; clock starts {}; simulated until {}; nothing is sent\n",
        scenario.start,
        show(run.ended)
    );
    // One table: inputs (marked ▶) and notifications, in time order (inputs first at a tie).
    let headers =
        ["offset", "incident", "channel", "recipient", "audience", "reason", "template", "subject"];
    let mut rows: Vec<(jiff::SignedDuration, u8, [String; 8])> = Vec::new();
    for h in &run.happenings {
        rows.push((
            h.at,
            0,
            [
                show(h.at),
                "▶".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                h.what.clone(),
            ],
        ));
    }
    for s in &run.sent {
        let mut subject = s.subject.clone();
        if let Some(n) = s.bundle {
            subject = format!("(bundle of {n}) {subject}");
        }
        if s.queued_at != s.at {
            subject = format!("{subject} (waited since {})", show(s.queued_at));
        }
        rows.push((
            s.at,
            1,
            [
                show(s.at),
                format!("#{}", s.incident),
                s.channel.as_str().to_string(),
                s.recipient().to_string(),
                s.audience.clone(),
                s.reason.as_str().to_string(),
                s.template.clone(),
                subject,
            ],
        ));
    }
    rows.sort_by_key(|(at, kind, _)| (*at, *kind));
    let mut widths = headers.map(|h| h.chars().count());
    for (_, _, r) in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()).take(7) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 7 {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                l.push_str(c);
            }
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&headers.map(String::from)));
    for (_, _, r) in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    if run.sent.is_empty() {
        let _ = writeln!(out, "(nobody would have been told anything)");
    }
    let _ = writeln!(out);
    for i in &run.incidents {
        let _ = writeln!(
            out,
            "incident #{} {}{} {} ({} event(s)): {}{}{}",
            i.id,
            if i.drill { "[drill] " } else { "" },
            i.decision.severity,
            i.status.as_str(),
            i.count,
            i.summary,
            i.acknowledged
                .as_ref()
                .map(|a| format!(
                    "; acknowledged by {} at {}",
                    a.by,
                    show(a.at.duration_since(scenario.start))
                ))
                .unwrap_or_default(),
            i.resolved
                .as_ref()
                .map(|a| format!(
                    "; resolved by {} at {}",
                    a.by,
                    show(a.at.duration_since(scenario.start))
                ))
                .unwrap_or_default(),
        );
    }
}
