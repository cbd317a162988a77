//! Customer personal data on dashboard pages: the ONE place it is shown from.
//!
//! Every value that may carry personal data (customer fields, incident summaries and services,
//! report descriptions, notes, review text, action items, timeline messages, notification
//! subjects and errors) reaches a page only through a [`Redaction`], which is the API's
//! redaction ([`crate::redact::View`]) for the signed-in user:
//!
//! - users with the `pii` permission (see [`crate::redact::allows_pii`]) see the data as stored;
//! - everyone else sees what the JSON API shows them: configured fields replaced by markers
//!   (`[redacted:email]`), their values and the policy's patterns (built-in and operator
//!   regexes) replaced in every free text about the same incident.
//!
//! A page and its answer in the API therefore never differ in what they reveal, and the
//! incident search matches only what the user may see ([`Redaction::shows`]), so a hidden
//! value cannot be guessed one character at a time.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::event::Event;
use crate::incident::{Incident, IncidentId};
use crate::redact::{Known, Redactor, View};
use crate::store::{EventReader, IncidentReader, Store, StoreError};

use super::session::Viewer;

/// How customer data reaches one user's page.
pub struct Redaction {
    /// `None`: the user holds `pii` and sees everything as stored.
    redactor: Option<Arc<Redactor>>,
    /// The known personal values of each incident's opening event (its configured fields).
    known: HashMap<IncidentId, Known>,
}

impl Redaction {
    pub fn new(viewer: &Viewer, redactor: &Arc<Redactor>) -> Redaction {
        Redaction { redactor: (!viewer.pii).then(|| redactor.clone()), known: HashMap::new() }
    }

    fn view(&self) -> View<'_> {
        match &self.redactor {
            Some(r) => View::Redacted(r),
            None => View::Original,
        }
    }

    /// Reads the opening events of these incidents, whose field values are then redacted from
    /// everything about them. Nothing to read for a `pii` user.
    pub fn learn<'i>(
        &mut self,
        store: &Store,
        incidents: impl IntoIterator<Item = &'i Incident>,
    ) -> Result<(), StoreError> {
        let Some(r) = self.redactor.clone() else { return Ok(()) };
        for i in incidents {
            if self.known.contains_key(&i.id) {
                continue;
            }
            let known = match store.event(i.opened_by)? {
                Some(e) => Known::of_event(&r, &e),
                None => Known::none(),
            };
            self.known.insert(i.id, known);
        }
        Ok(())
    }

    /// Like [`Redaction::learn`], for incidents known by id (a notification's).
    pub fn learn_ids(
        &mut self,
        store: &Store,
        ids: impl IntoIterator<Item = IncidentId>,
    ) -> Result<(), StoreError> {
        if self.redactor.is_none() {
            return Ok(());
        }
        for id in ids {
            if !self.known.contains_key(&id)
                && let Some(i) = store.incident(id)?
            {
                self.learn(store, [&i])?;
            }
        }
        Ok(())
    }

    /// Learns the known values of one incident from its opening event, already read.
    pub fn learn_event(&mut self, incident: IncidentId, event: Option<&Event>) {
        let known = self.view().known(event);
        self.known.insert(incident, known);
    }

    /// Free text about `incident` as this user may see it (not yet HTML-escaped).
    pub fn text<'a>(&self, incident: IncidentId, s: &'a str) -> Cow<'a, str> {
        static NONE: std::sync::LazyLock<Known> = std::sync::LazyLock::new(Known::none);
        self.view().text(s, self.known.get(&incident).unwrap_or(&NONE))
    }

    /// An event as JSON, as the API's `/api/v1/events/{id}` shows it to this user.
    pub fn event(&self, e: &Event) -> serde_json::Value {
        let mut v = serde_json::to_value(e).unwrap_or_default();
        self.view().event(&mut v);
        v
    }

    /// Whether the search `needle` (lower-case) is found in what this user sees of the
    /// incident's summary, service, source or dedup key. For a user without `pii` the
    /// incident's opening event is read (through `store`) to know what is hidden; a value the
    /// user cannot see never matches, not even in part.
    pub fn shows(&self, store: &Store, i: &Incident, needle: &str) -> Result<bool, StoreError> {
        let fields = || [Some(&i.summary), i.service.as_ref(), Some(&i.source), Some(&i.dedup_key)];
        let raw_match = fields().into_iter().flatten().any(|f| f.to_lowercase().contains(needle));
        let Some(r) = &self.redactor else { return Ok(raw_match) };
        // What is shown is the stored text with parts replaced by markers: a needle that is
        // not in the stored text can only be (part of) a marker, never personal data.
        if !raw_match {
            return Ok(false);
        }
        let known = match store.event(i.opened_by)? {
            Some(e) => Known::of_event(r, &e),
            None => Known::none(),
        };
        Ok(fields()
            .into_iter()
            .flatten()
            .any(|f| r.text(f, &known).to_lowercase().contains(needle)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::redact::Policy;

    fn viewer(pii: bool) -> Viewer {
        Viewer { name: "v".into(), role: Role::Viewer, csrf: String::new(), pii }
    }

    #[test]
    fn pii_users_see_text_as_stored() {
        let r = Redaction::new(&viewer(true), &Arc::new(Redactor::default()));
        assert_eq!(r.text(1, "call +44 20 7946 0958"), "call +44 20 7946 0958");
    }

    #[test]
    fn others_see_the_apis_markers() {
        let policy = Policy {
            regexes: vec![crate::redact::NamedRegex {
                name: "employee_id".into(),
                regex: "EMP-[0-9]{6}".into(),
            }],
            ..Policy::default()
        };
        let r = Redaction::new(&viewer(false), &Arc::new(Redactor::new(policy).unwrap()));
        assert_eq!(
            r.text(1, "Jo <jo.ex@mail.example.org>, tel +44 20 7946 0958, agent EMP-123456."),
            "Jo <[redacted:email]>, tel [redacted:phone], agent [redacted:employee_id]."
        );
        let dated = "acknowledged at 2026-03-02T09:00:00Z, due 2026-03-02 10:00";
        assert_eq!(r.text(1, dated), dated);
    }
}
