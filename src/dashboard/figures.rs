//! The figures page (`/figures`): the same report as `tocsin report` and
//! `GET /api/v1/report` — MTTD, MTTA and MTTR by severity, kind and service, recurrence,
//! customer reports, notifications per incident, action items — with bar charts drawn as
//! HTML `<meter>` elements (no script, no images, no inline styles), readable on a phone.

use jiff::SignedDuration;

use super::pages::{esc, span};
use crate::report::{Group, Report, Stat};

fn secs(v: Option<f64>) -> String {
    match v {
        Some(s) => span(SignedDuration::from_secs(s.round() as i64)),
        None => "–".to_string(),
    }
}

fn stat_cells(s: &Stat) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        s.count,
        secs(s.mean_seconds),
        secs(s.median_seconds),
        secs(s.p90_seconds)
    )
}

/// Horizontal bars of one figure's median across the groups of one dimension, scaled to the
/// largest.
fn chart(title: &str, groups: &[&Group], pick: fn(&Group) -> &Stat) -> String {
    let max = groups.iter().filter_map(|g| pick(g).median_seconds).fold(0.0_f64, f64::max);
    if max <= 0.0 {
        return String::new();
    }
    let mut out = format!("<figure class=\"chart\"><figcaption>{}</figcaption>", esc(title));
    for g in groups {
        let Some(v) = pick(g).median_seconds else { continue };
        // A <meter> draws the bar itself: no inline style, which the pages' CSP forbids.
        out.push_str(&format!(
            "<div class=\"bar-row\"><span class=\"bar-label\">{}</span>\
             <meter class=\"bar\" min=\"0\" max=\"{max:.0}\" value=\"{v:.0}\"></meter><span class=\"bar-value\">{}</span></div>",
            esc(&g.value),
            secs(Some(v))
        ));
    }
    out.push_str("</figure>");
    out
}

pub fn page(r: &Report, since: &str) -> String {
    let mut out = format!(
        "<form method=\"get\" action=\"/figures\" class=\"filters\"><label>Period \
         <input name=\"since\" value=\"{}\" size=\"8\"></label><button type=\"submit\">Show</button></form>\
         <p>{} incidents opened from {} to {} ({} still open); live drills are left out.</p>",
        esc(since),
        r.incidents,
        r.from.strftime("%Y-%m-%d %H:%M UTC"),
        r.now.strftime("%Y-%m-%d %H:%M UTC"),
        r.open
    );
    let by = |d: &str| r.groups.iter().filter(|g| g.dimension == d).collect::<Vec<_>>();
    let severities = by("severity");
    out.push_str("<section><h2>Response times by severity (median)</h2><div class=\"charts\">");
    out.push_str(&chart("Time to acknowledge", &severities, |g| &g.mtta));
    out.push_str(&chart("Time to resolve", &severities, |g| &g.mttr));
    out.push_str("</div></section>");
    for (dimension, title) in [
        ("all", "All incidents"),
        ("severity", "By severity"),
        ("kind", "By kind"),
        ("service", "By service"),
    ] {
        let groups = by(dimension);
        if groups.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "<section><h2>{title}</h2><div class=\"table-wrap\"><table><thead><tr><th></th><th>incidents</th>\
             <th colspan=\"4\">MTTD (n, mean, median, p90)</th><th colspan=\"4\">MTTA</th><th colspan=\"4\">MTTR</th></tr></thead><tbody>"
        ));
        for g in groups {
            out.push_str(&format!(
                "<tr><th>{}</th><td>{}</td>{}{}{}</tr>",
                esc(&g.value),
                g.incidents,
                stat_cells(&g.mttd),
                stat_cells(&g.mtta),
                stat_cells(&g.mttr)
            ));
        }
        out.push_str("</tbody></table></div></section>");
    }
    let rec = &r.recurrence;
    out.push_str(&format!(
        "<section><h2>Recurrence</h2><p>{} of {} incidents reopened a key within {} of its last resolve ({}).</p>",
        rec.recurrences,
        r.incidents,
        span(SignedDuration::from_secs(rec.window_seconds)),
        rec.rate.map(|x| format!("{:.0}%", x * 100.0)).unwrap_or_else(|| "–".into())
    ));
    out.push_str("</section><section><h2>Customer reports by service</h2>");
    if r.customer_reports.is_empty() {
        out.push_str("<p>None in this period.</p>");
    } else {
        out.push_str("<table><thead><tr><th>service</th><th>incidents</th><th>reports</th></tr></thead><tbody>");
        for s in &r.customer_reports {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.service),
                s.incidents,
                s.reports
            ));
        }
        out.push_str("</tbody></table>");
    }
    let n = &r.notifications;
    let a = &r.action_items;
    out.push_str(&format!(
        "</section><section><h2>Notifications and action items</h2>\
         <p>{} notifications; per incident mean {}, median {}, max {}.</p>\
         <p>Action items: {} open ({} overdue), {} done, {} dropped.</p></section>",
        n.total,
        n.per_incident_mean.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into()),
        n.per_incident_median.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into()),
        n.per_incident_max.map(|x| x.to_string()).unwrap_or_else(|| "–".into()),
        a.open,
        a.overdue,
        a.done,
        a.dropped
    ));
    out
}
