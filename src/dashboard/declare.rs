//! Declaring an incident from the dashboard (`GET`/`POST /declare`, responders): the same
//! declaration as `POST /api/v1/incidents`, checked and stored by the same function
//! ([`crate::http::declarations::declare`]), so it runs the same rules and escalation and lands on
//! the timeline as declared by the signed-in person.

use super::pages::esc;
use super::session::Viewer;
use crate::rules::Sensitivity;

/// The declaration form. `severities` from the config, most severe first.
pub fn form(v: &Viewer, severities: &[String]) -> String {
    let sev: String =
        severities.iter().map(|s| format!("<option value=\"{0}\">{0}</option>", esc(s))).collect();
    let sensitivity: String = Sensitivity::ALL
        .iter()
        .map(|s| format!("<option value=\"{0}\">{0}</option>", s.as_str()))
        .collect();
    format!(
        "<p>Declare an incident that no alert or report raised: a researcher's email, a \
         regulator's question, a vendor's advisory. It goes through the same rules and \
         escalation as an alert.</p>\
         <form method=\"post\" action=\"/declare\" class=\"declare\" id=\"declare\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label>Title <input name=\"title\" id=\"title\" required maxlength=\"500\"></label>\
         <label>Description <textarea name=\"description\" id=\"description\" required rows=\"5\"></textarea></label>\
         <label>Affected services (comma-separated) <input name=\"services\" id=\"services\"></label>\
         <label><input type=\"checkbox\" name=\"customer_impact\" id=\"customer_impact\" value=\"true\"> Customers are affected</label>\
         <label>Data sensitivity <select name=\"data_sensitivity\" id=\"data_sensitivity\">{sensitivity}</select></label>\
         <label>Estimated reach <input name=\"estimated_reach\" id=\"estimated_reach\" placeholder=\"1200, or: all EU customers\"></label>\
         <label>Severity <select name=\"severity\" id=\"severity\"><option value=\"\">let the rules decide</option>{sev}</select></label>\
         <button type=\"submit\" id=\"declare-submit\">Declare incident</button></form>",
        csrf = esc(&v.csrf),
    )
}
