//! `GET /metrics` against the real daemon, read the way scrapers read it: the answer is parsed
//! here by the rules of each exposition format (the Prometheus text format 0.0.4, which
//! `promtool check metrics` and the client libraries' parsers read, and OpenMetrics 1.0), with
//! promtool's lint rules on top; the format follows the `Accept` header as Prometheus
//! negotiates it; and every series the README documents exists from the start, at zero.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Daemon, TOKEN};
use serde_json::json;

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A metric family: its HELP, TYPE and samples, in the order they came.
#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<Sample>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    /// `text/plain; version=0.0.4`
    Text,
    /// `application/openmetrics-text; version=1.0.0`
    OpenMetrics,
}

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

type Labels = Vec<(String, String)>;

/// `{a="x",b="y\"z"}` at the start of `s`: the labels and what follows.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without =")?;
        let name = &rest[..eq];
        if !is_label_name(name) || name.starts_with("__") {
            return Err(format!("label name {name:?} is not valid"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("label value not terminated".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in a label value: {other:?}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        labels.push((name.to_string(), value));
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by ,".into());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("{s:?} is not a number")),
    }
}

/// The family a sample belongs to: its own name, or a histogram's (`_bucket`, `_sum`,
/// `_count`), or in OpenMetrics a counter's (`_total`, `_created`).
fn family_of(name: &str, families: &BTreeMap<String, Family>, format: Format) -> Option<String> {
    if families.get(name).is_some_and(|f| f.kind.is_some()) {
        return Some(name.to_string());
    }
    let kind_of = |base: &str| families.get(base).and_then(|f| f.kind.clone());
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && kind_of(base).as_deref() == Some("histogram")
        {
            return Some(base.to_string());
        }
    }
    if format == Format::OpenMetrics {
        for suffix in ["_total", "_created"] {
            if let Some(base) = name.strip_suffix(suffix)
                && kind_of(base).as_deref() == Some("counter")
            {
                return Some(base.to_string());
            }
        }
    }
    None
}

/// Parses an exposition strictly by its format's rules; every family it returns has HELP,
/// TYPE and well-formed samples.
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn parse(text: &str, format: Format) -> Result<BTreeMap<String, Family>, String> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut series = BTreeSet::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    match format {
        Format::OpenMetrics => {
            if lines.pop() != Some("") || lines.pop() != Some("# EOF") {
                return Err("OpenMetrics must end with \"# EOF\\n\"".into());
            }
        }
        Format::Text => {
            if lines.pop() != Some("") {
                return Err("the last line must end with a newline".into());
            }
        }
    }
    // A family's lines must come together: once another family starts, it is closed.
    let enter = |name: &str, order: &mut Vec<String>| -> Result<(), String> {
        if order.last().map(String::as_str) == Some(name) {
            return Ok(());
        }
        if order.iter().any(|n| n == name) {
            return Err(format!("{name}: its lines are not together"));
        }
        order.push(name.to_string());
        Ok(())
    };
    for (n, line) in lines.iter().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            if format == Format::OpenMetrics {
                return Err(at("empty line".into()));
            }
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            if keyword == "EOF" {
                return Err(at("# EOF before the end, or in the text format".into()));
            }
            if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
                if format == Format::OpenMetrics {
                    return Err(at("OpenMetrics has no free comments".into()));
                }
                continue;
            }
            let name = parts.next().ok_or_else(|| at("no metric name".into()))?;
            if !is_metric_name(name) {
                return Err(at(format!("{name:?} is not a metric name")));
            }
            let rest = parts.next().unwrap_or_default();
            enter(name, &mut order).map_err(at)?;
            let family = families.entry(name.to_string()).or_default();
            if !family.samples.is_empty() {
                return Err(at(format!("{keyword} after {name}'s samples")));
            }
            match keyword {
                "HELP" if family.help.is_some() => return Err(at("second HELP".into())),
                "HELP" => family.help = Some(rest.to_string()),
                "TYPE" if family.kind.is_some() => return Err(at("second TYPE".into())),
                "TYPE" => {
                    let ok: &[&str] = match format {
                        Format::Text => &["counter", "gauge", "histogram", "summary", "untyped"],
                        Format::OpenMetrics => &[
                            "counter",
                            "gauge",
                            "histogram",
                            "gaugehistogram",
                            "stateset",
                            "info",
                            "summary",
                            "unknown",
                        ],
                    };
                    if !ok.contains(&rest) {
                        return Err(at(format!("unknown type {rest:?}")));
                    }
                    family.kind = Some(rest.to_string());
                }
                _ if format == Format::Text => return Err(at("no UNIT in the text format".into())),
                _ => {}
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("{name:?} is not a metric name")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let mut fields = rest.strip_prefix(' ').ok_or_else(|| at("no space".into()))?.split(' ');
        let value = parse_value(fields.next().unwrap_or_default()).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<f64>().map_err(|_| at("bad timestamp".into()))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family_name = family_of(name, &families, format)
            .ok_or_else(|| at(format!("{name} has no TYPE (it would read as untyped)")))?;
        enter(&family_name, &mut order).map_err(at)?;
        let mut key: Vec<(String, String)> = labels.clone();
        key.sort();
        if !series.insert((name.to_string(), key)) {
            return Err(at("the same series twice".into()));
        }
        let family = families.get_mut(&family_name).unwrap();
        family.samples.push(Sample { name: name.to_string(), labels, value });
    }
    for (name, family) in &families {
        let kind = family.kind.as_deref().ok_or(format!("{name}: no TYPE"))?;
        if family.help.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{name}: no help text"));
        }
        check_family(name, kind, family, format)?;
    }
    Ok(families)
}

fn check_family(name: &str, kind: &str, family: &Family, format: Format) -> Result<(), String> {
    let samples = &family.samples;
    match (kind, format) {
        ("counter", Format::Text) => {
            if !name.ends_with("_total") {
                return Err(format!("counter {name} does not end in _total"));
            }
            if let Some(s) = samples.iter().find(|s| s.name != name) {
                return Err(format!("{name}: sample {} (no _created in the text format)", s.name));
            }
        }
        ("counter", Format::OpenMetrics) => {
            if name.ends_with("_total") {
                return Err(format!("OpenMetrics counter family {name} must not end in _total"));
            }
            let total = format!("{name}_total");
            if samples.iter().any(|s| s.name != total && s.name != format!("{name}_created")) {
                return Err(format!("{name}: counter samples must be {total}"));
            }
        }
        ("histogram", _) => check_histogram(name, samples)?,
        _ => {
            if let Some(s) = samples.iter().find(|s| s.name != name) {
                return Err(format!("{name}: unexpected sample {}", s.name));
            }
        }
    }
    if kind == "counter" && samples.iter().any(|s| s.value.is_nan() || s.value < 0.0) {
        return Err(format!("{name}: a counter below zero"));
    }
    if format == Format::Text {
        lint(name, kind, samples)?;
    }
    Ok(())
}

/// Per label set: cumulative buckets, a `+Inf` bucket equal to `_count`, a `_sum`.
fn check_histogram(name: &str, samples: &[Sample]) -> Result<(), String> {
    type Key = Vec<(String, String)>;
    let mut buckets: BTreeMap<Key, Vec<(f64, f64)>> = BTreeMap::new();
    let (mut sums, mut counts) = (BTreeMap::<Key, f64>::new(), BTreeMap::<Key, f64>::new());
    for s in samples {
        let mut key: Key = s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
        key.sort();
        if s.name == format!("{name}_bucket") {
            let le = s.labels.iter().find(|(k, _)| k == "le").ok_or(format!("{name}: no le"))?;
            buckets.entry(key).or_default().push((parse_value(&le.1)?, s.value));
        } else if s.name == format!("{name}_sum") {
            sums.insert(key, s.value);
        } else if s.name == format!("{name}_count") {
            counts.insert(key, s.value);
        } else {
            return Err(format!("{name}: unexpected sample {}", s.name));
        }
    }
    for (key, list) in &buckets {
        if list.windows(2).any(|w| w[1].0 <= w[0].0 || w[1].1 < w[0].1) {
            return Err(format!("{name}{key:?}: buckets not increasing and cumulative"));
        }
        let inf = list.last().filter(|b| b.0 == f64::INFINITY);
        let inf = inf.ok_or(format!("{name}{key:?}: no +Inf bucket"))?;
        if counts.get(key) != Some(&inf.1) || !sums.contains_key(key) {
            return Err(format!("{name}{key:?}: _count must equal the +Inf bucket, with a _sum"));
        }
    }
    if buckets.len() != counts.len() || counts.len() != sums.len() {
        return Err(format!("{name}: a label set without buckets, _sum or _count"));
    }
    Ok(())
}

/// `promtool check metrics`' lints (client_golang's promlint), for what this exposition has.
fn lint(name: &str, kind: &str, samples: &[Sample]) -> Result<(), String> {
    let problem = |p: &str| Err(format!("{name}: {p}"));
    if kind != "counter" && name.ends_with("_total") {
        return problem("non-counter metrics should not have \"_total\" suffix");
    }
    if kind != "histogram" && ["_bucket", "_sum", "_count"].iter().any(|s| name.ends_with(s)) {
        return problem("reserved histogram suffix");
    }
    if (name.contains(&format!("_{kind}_")) || name.ends_with(&format!("_{kind}")))
        && kind != "untyped"
    {
        return problem("metric name should not include its type");
    }
    if name.contains(':') {
        return problem("metric names should not contain ':'");
    }
    let camel = |s: &str| {
        s.as_bytes().windows(2).any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
    };
    if camel(name) || samples.iter().any(|s| s.labels.iter().any(|(k, _)| camel(k))) {
        return problem("names should be written in snake_case");
    }
    let words: Vec<&str> = name.split('_').collect();
    let abbreviations =
        ["s", "ms", "us", "ns", "sec", "b", "kb", "mb", "gb", "tb", "pb", "m", "h", "d"];
    if words.iter().skip(1).any(|w| abbreviations.contains(w)) {
        return problem("metric names should not contain abbreviated units");
    }
    let non_base = ["minutes", "hours", "days", "weeks", "bits", "milliseconds", "microseconds"];
    if words.iter().any(|w| non_base.contains(w)) {
        return problem("use base units");
    }
    if kind != "histogram" && samples.iter().any(|s| s.labels.iter().any(|(k, _)| k == "le")) {
        return problem("non-histogram metrics should not have \"le\" label");
    }
    Ok(())
}

/// The series the README's `GET /metrics` row documents: (name, label names), with
/// `a_{x,y}_b` written out. In the text format's naming (counters with `_total`).
fn documented_series() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with("| `GET /metrics` |"))
        .expect("the README documents GET /metrics");
    let mut out = Vec::new();
    for token in row.split('`').skip(1).step_by(2).filter(|t| t.starts_with("tocsin_")) {
        // A brace group followed by more name is a choice; at the end it lists labels.
        let (names, labels) = match token.rfind('{') {
            Some(open) if token.ends_with('}') => {
                let labels = token[open + 1..token.len() - 1].split(',').map(String::from);
                (&token[..open], labels.collect())
            }
            _ => (token, Vec::new()),
        };
        let expanded: Vec<String> = match (names.find('{'), names.find('}')) {
            (Some(open), Some(close)) => names[open + 1..close]
                .split(',')
                .map(|choice| format!("{}{choice}{}", &names[..open], &names[close + 1..]))
                .collect(),
            _ => vec![names.to_string()],
        };
        for name in expanded {
            out.push((name, labels.clone()));
        }
    }
    out
}

async fn scrape(d: &Daemon, accept: Option<&str>) -> (String, String) {
    let mut req = d.client.get(d.url("/metrics"));
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    (ct, r.text().await.unwrap())
}

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[tokio::test]
async fn metrics_follow_the_accept_header_and_every_documented_series_exists_from_the_start() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(rules.path().join("10-base.rhai"), "decision.score += 1;\n").unwrap();
    let d = Daemon::start(&format!("rules:\n  dir: {}\n", rules.path().display()));

    // What each client asks for (Prometheus 2 and 3 scrapes, curl, promtool, Python's
    // prometheus_client, an OpenMetrics-only scraper, a wildcard) and what it gets.
    let cases = [
        (None, TEXT),
        (Some("*/*"), TEXT),
        (Some("text/plain"), TEXT),
        (Some("text/plain;version=0.0.4"), TEXT),
        (Some("application/json"), TEXT),
        (Some("application/openmetrics-text"), OPENMETRICS),
        (
            Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            OPENMETRICS,
        ),
        (
            Some(
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
            ),
            OPENMETRICS,
        ),
        (Some("text/plain;q=0.9,application/openmetrics-text;q=0.5"), TEXT),
        (Some("application/openmetrics-text;version=2.0.0,text/plain"), TEXT),
        (Some("application/openmetrics-text;q=0,text/plain;q=0.1"), TEXT),
    ];
    let mut seen = BTreeMap::new();
    for (accept, want) in cases {
        let (ct, body) = scrape(&d, accept).await;
        assert_eq!(ct, want, "Accept: {accept:?}");
        seen.insert(ct, body);
    }

    let text = parse(&seen[TEXT], Format::Text).unwrap_or_else(|e| panic!("text 0.0.4: {e}"));
    let om = parse(&seen[OPENMETRICS], Format::OpenMetrics)
        .unwrap_or_else(|e| panic!("OpenMetrics: {e}"));
    // The same families in both, counters named the way each format names them.
    let om_names: BTreeSet<String> =
        om.iter()
            .map(|(n, f)| {
                if f.kind.as_deref() == Some("counter") { format!("{n}_total") } else { n.clone() }
            })
            .collect();
    assert_eq!(text.keys().cloned().collect::<BTreeSet<_>>(), om_names);

    // Every documented series is there before anything happened, at zero; and everything
    // exposed is documented.
    let documented = documented_series();
    assert!(documented.len() >= 20, "{documented:?}");
    for (name, labels) in &documented {
        let family = text.get(name).unwrap_or_else(|| panic!("{name} is not exposed at start"));
        let wanted: BTreeSet<&str> = labels.iter().map(String::as_str).collect();
        let sample = family
            .samples
            .iter()
            .find(|s| {
                s.labels
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .filter(|k| *k != "le")
                    .collect::<BTreeSet<_>>()
                    == wanted
            })
            .unwrap_or_else(|| panic!("{name}{labels:?}: no series at start"));
        if family.kind.as_deref() == Some("counter") {
            assert_eq!(sample.value, 0.0, "{name} counted something before any event");
        }
    }
    let names: BTreeSet<&str> = documented.iter().map(|(n, _)| n.as_str()).collect();
    for name in text.keys() {
        assert!(names.contains(name.as_str()), "{name} is exposed but not in the README");
    }
    // Labelled series exist for what the config makes possible.
    let has = |family: &str, labels: &[(&str, &str)]| {
        text[family]
            .samples
            .iter()
            .any(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v)))
    };
    assert!(has(
        "tocsin_events_accepted_total",
        &[("source", "prometheus"), ("format", "alertmanager_v2")]
    ));
    assert!(!has(
        "tocsin_events_accepted_total",
        &[("source", "prometheus"), ("format", "report")]
    ));
    assert!(has("tocsin_events_accepted_total", &[("source", "default"), ("format", "pagerduty")]));
    assert!(has(
        "tocsin_events_rejected_total",
        &[("source", "unknown"), ("reason", "unauthorized")]
    ));
    assert!(has("tocsin_incidents_opened_total", &[("severity", "sev1"), ("kind", "report")]));
    assert!(has("tocsin_rule_failures_total", &[("rule", "10-base.rhai")]));
    assert!(has("tocsin_incident_time_to_acknowledge_seconds", &[("severity", "sev4")]));
    assert!(has("tocsin_notification_attempts_total", &[("channel", "sms"), ("outcome", "gone")]));

    // The first event moves a series that was already there from 0 to 1: increase() sees it.
    let r = d.post("/api/v1/events", Some(TOKEN), json!({"summary": "first"}).to_string()).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let (_, body) = scrape(&d, None).await;
    let after = parse(&body, Format::Text).unwrap_or_else(|e| panic!("{e}"));
    let accepted = after["tocsin_events_accepted_total"]
        .samples
        .iter()
        .find(|s| s.labels.contains(&("format".into(), "canonical".into())))
        .unwrap();
    assert_eq!(accepted.value, 1.0);
}

#[test]
fn the_checker_refuses_what_promtool_refuses() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 0\n";
    assert!(parse(good, Format::Text).is_ok());
    for (why, bad) in [
        ("no help", "# TYPE a_total counter\na_total 0\n"),
        ("OpenMetrics naming", "# HELP a A.\n# TYPE a counter\na_total 0\n"),
        ("untyped", "# HELP a_total A.\na_total 0\n"),
        ("counter without _total", "# HELP a A.\n# TYPE a counter\na 0\n"),
        ("EOF", "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n# EOF\n"),
        ("created", "# HELP a_total A.\n# TYPE a_total counter\na_total 0\na_created 1\n"),
        ("gauge with _total", "# HELP a_total A.\n# TYPE a_total gauge\na_total 0\n"),
        (
            "split family",
            "# HELP a A.\n# TYPE a gauge\na 0\n# HELP b B.\n# TYPE b gauge\nb 0\na{x=\"y\"} 1\n",
        ),
        (
            "histogram without +Inf",
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\nh_sum 0\nh_count 0\n",
        ),
    ] {
        assert!(parse(bad, Format::Text).is_err(), "{why}");
    }
    let om = "# HELP a A.\n# TYPE a counter\na_total 0\n# EOF\n";
    assert!(parse(om, Format::OpenMetrics).is_ok());
    assert!(parse("# HELP a A.\n# TYPE a counter\na_total 0\n", Format::OpenMetrics).is_err());
    assert!(parse(good, Format::OpenMetrics).is_err());
}
