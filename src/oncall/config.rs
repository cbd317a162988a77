//! `rotations:`, `roles:` and people's `zone` and `language` → the [`super::Roster`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{PersonPrefs, RoleFill, Roles, Roster, Rotation, Shift};
use crate::config::{MAX_NAME_CHARS, Validator};

/// A person's id, zone and language, taken out of `people[i]` for the roster.
type RawPrefs = (String, Option<Spanned<String>>, Option<Spanned<String>>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotation {
    pub name: Spanned<String>,
    pub members: Spanned<Vec<Spanned<String>>>,
    pub shift: Spanned<String>,
    pub handoff: Option<Spanned<String>>,
    pub zone: Option<Spanned<String>>,
    pub start: Option<Spanned<String>>,
}

/// One of `person` or `rotation`; neither declares the role unfilled.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoleFill {
    pub person: Option<Spanned<String>>,
    pub rotation: Option<Spanned<String>>,
}

/// People's zones and languages, rotations and roles. `prefs` is each `people[i]` entry's
/// (id, zone, language), in file order; `policies.people` says which ids were accepted.
pub fn validate(
    cx: &mut Validator<'_>,
    prefs: Vec<RawPrefs>,
    rotations: Vec<Spanned<RawRotation>>,
    roles: Option<Spanned<BTreeMap<String, Spanned<RawRoleFill>>>>,
    policies: &crate::policy::Policies,
) -> Roster {
    let mut roster = Roster::default();
    // Every rotation named, valid or not, so a role naming a broken one is not blamed too.
    let declared: BTreeSet<String> =
        rotations.iter().map(|r| r.value.name.value.trim().to_string()).collect();
    people_prefs(cx, prefs, policies, &mut roster.people);
    self::rotations(cx, rotations, policies, &mut roster.rotations);
    role_fills(cx, roles, policies, &declared, &mut roster.roles);
    roster
}

/// `people[i].zone` and `.language` for each person `policies` accepted.
fn people_prefs(
    cx: &mut Validator<'_>,
    prefs: Vec<RawPrefs>,
    policies: &crate::policy::Policies,
    people: &mut BTreeMap<String, PersonPrefs>,
) {
    for (i, (id, zone, language)) in prefs.into_iter().enumerate() {
        let path = format!("people[{i}]");
        let mut p = PersonPrefs::default();
        if let Some(z) = zone
            && let Some(tz) = time_zone(cx, &z, &format!("{path}.zone"))
        {
            p.zone = tz;
        }
        if let Some(l) = language {
            let ok = (2..=35).contains(&l.value.len())
                && l.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.value.starts_with('-');
            if ok {
                p.language = l.value;
            } else {
                cx.err(
                    l.referenced,
                    &format!("{path}.language"),
                    format!(
                        "`{}` is not a language tag; write e.g. en, de or pt-BR",
                        l.value.escape_debug()
                    ),
                );
            }
        }
        if policies.people.contains_key(&id) && !people.contains_key(&id) {
            people.insert(id, p);
        }
    }
}

/// `rotations:`; a rotation with any bad value is reported and left out.
fn rotations(
    cx: &mut Validator<'_>,
    rotations: Vec<Spanned<RawRotation>>,
    policies: &crate::policy::Policies,
    out: &mut BTreeMap<String, Rotation>,
) {
    let mut names = BTreeSet::new();
    for (i, r) in rotations.into_iter().enumerate() {
        let path = format!("rotations[{i}]");
        let at = r.referenced;
        let raw = r.value;
        let name = raw.name.value.trim().to_string();
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME_CHARS
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !name_ok {
            cx.err(
                raw.name.referenced,
                &format!("{path}.name"),
                format!(
                    "`{}` must be 1 to {MAX_NAME_CHARS} letters, digits, `_`, `.` or `-`",
                    name.escape_debug()
                ),
            );
        } else if !names.insert(name.clone()) {
            cx.err(
                raw.name.referenced,
                &format!("{path}.name"),
                format!("rotation `{name}` is defined twice"),
            );
        }
        if raw.members.value.is_empty() {
            cx.err(
                raw.members.referenced,
                &format!("{path}.members"),
                "is empty; list the people (ids from `people`) in turn order",
            );
        }
        let mut members = Vec::new();
        for (j, m) in raw.members.value.into_iter().enumerate() {
            if policies.people.contains_key(&m.value) {
                members.push(m.value);
            } else {
                cx.err(
                    m.referenced,
                    &format!("{path}.members[{j}]"),
                    format!("no person `{}` in people", m.value.escape_debug()),
                );
            }
        }
        let shift = Shift::parse(&raw.shift.value)
            .map_err(|e| cx.err(raw.shift.referenced, &format!("{path}.shift"), e))
            .ok();
        let handoff = handoff_time(cx, raw.handoff, &path);
        let zone = match raw.zone {
            None => Some(jiff::tz::TimeZone::UTC),
            Some(z) => time_zone(cx, &z, &format!("{path}.zone")),
        };
        let start = start_date(cx, at, raw.start, &path);
        if let (true, Some(shift), Some(handoff), Some(zone), Some(start)) =
            (name_ok, shift, handoff, zone, start)
            && !out.contains_key(&name)
        {
            out.insert(name.clone(), Rotation { name, members, shift, handoff, zone, start });
        }
    }
}

/// `rotations[i].handoff`: `HH:MM`, 09:00 when left out.
fn handoff_time(
    cx: &mut Validator<'_>,
    raw: Option<Spanned<String>>,
    path: &str,
) -> Option<jiff::civil::Time> {
    match raw {
        None => Some(jiff::civil::Time::constant(9, 0, 0, 0)),
        Some(h) => {
            let parsed = h.value.trim().parse::<jiff::civil::Time>().ok().filter(|_| {
                let t = h.value.trim();
                t.len() == 5 && t.as_bytes()[2] == b':'
            });
            if parsed.is_none() {
                cx.err(
                    h.referenced,
                    &format!("{path}.handoff"),
                    format!(
                        "`{}` is not a time of day; write HH:MM (24-hour), e.g. \"09:00\"",
                        h.value.escape_debug()
                    ),
                );
            }
            parsed
        }
    }
}

/// `rotations[i].start`: the date of the first handoff (required).
fn start_date(
    cx: &mut Validator<'_>,
    at: serde_saphyr::Location,
    raw: Option<Spanned<String>>,
    path: &str,
) -> Option<jiff::civil::Date> {
    match raw {
        None => {
            cx.err(
                at,
                &format!("{path}.start"),
                "is missing; give the date of the first handoff, e.g. 2026-01-05",
            );
            None
        }
        Some(d) => {
            let parsed = d.value.trim().parse::<jiff::civil::Date>().ok();
            if parsed.is_none() {
                cx.err(
                    d.referenced,
                    &format!("{path}.start"),
                    format!(
                        "`{}` is not a date; write YYYY-MM-DD, e.g. 2026-01-05",
                        d.value.escape_debug()
                    ),
                );
            }
            parsed
        }
    }
}

/// `roles:`: each role filled by a person, a rotation or nobody. `declared` holds every
/// rotation named, valid or not.
fn role_fills(
    cx: &mut Validator<'_>,
    roles: Option<Spanned<BTreeMap<String, Spanned<RawRoleFill>>>>,
    policies: &crate::policy::Policies,
    declared: &BTreeSet<String>,
    out: &mut Roles,
) {
    if let Some(roles) = roles {
        for (role, fill) in roles.value {
            let path = format!("roles.{role}");
            let at = fill.referenced;
            if role.is_empty()
                || role.len() > 64
                || !role.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                cx.err(at, &path, "role names are 1 to 64 lower-case letters, digits and `_`");
                continue;
            }
            let value = match (fill.value.person, fill.value.rotation) {
                (Some(p), None) => {
                    if !policies.people.contains_key(&p.value) {
                        cx.err(
                            p.referenced,
                            &format!("{path}.person"),
                            format!("no person `{}` in people", p.value.escape_debug()),
                        );
                    }
                    Some(RoleFill::Person(p.value))
                }
                (None, Some(r)) => {
                    if !declared.contains(&r.value) {
                        cx.err(
                            r.referenced,
                            &format!("{path}.rotation"),
                            format!("no rotation `{}` in rotations", r.value.escape_debug()),
                        );
                    }
                    Some(RoleFill::Rotation(r.value))
                }
                (None, None) => None,
                (Some(_), Some(_)) => {
                    cx.err(at, &path, "give one of person or rotation, not both");
                    None
                }
            };
            out.insert(role, value);
        }
    }
}

/// An IANA time zone name (from the bundled database when the system has none).
fn time_zone(
    cx: &mut Validator<'_>,
    raw: &Spanned<String>,
    path: &str,
) -> Option<jiff::tz::TimeZone> {
    match jiff::tz::TimeZone::get(raw.value.trim()) {
        Ok(tz) => Some(tz),
        Err(_) => {
            cx.err(
                raw.referenced,
                path,
                format!(
                    "`{}` is not a time zone; write an IANA name such as UTC, Europe/Berlin or \
                     America/New_York",
                    raw.value.escape_debug()
                ),
            );
            None
        }
    }
}

/// Each `people[i]` entry's (id, zone, language), in file order, taken out before the people
/// themselves go to [`crate::policy::config::validate`].
pub fn take_prefs(people: &mut [Spanned<crate::policy::config::RawPerson>]) -> Vec<RawPrefs> {
    people
        .iter_mut()
        .map(|p| {
            (p.value.id.value.trim().to_string(), p.value.zone.take(), p.value.language.take())
        })
        .collect()
}

/// Roles a policy may page: the built-in ones and those the config declares under `roles:`.
pub fn known_roles(
    roles: Option<&Spanned<BTreeMap<String, Spanned<RawRoleFill>>>>,
) -> BTreeSet<String> {
    super::BUILTIN_ROLES
        .iter()
        .map(|r| r.to_string())
        .chain(roles.iter().flat_map(|r| r.value.keys().cloned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{env_of, find, load_text};

    #[test]
    fn rotations_roles_and_people_zones() {
        let text = r#"
people:
  - { id: alice, zone: Europe/Berlin, language: de }
  - { id: bob, zone: America/New_York }
  - { id: carol }
rotations:
  - name: primary
    members: [alice, bob]
    shift: weekly
    handoff: 09:00
    zone: Europe/Berlin
    start: 2026-01-05
  - { name: secondary, members: [carol, bob, alice], shift: 12h, start: "2026-01-01" }
roles:
  incident_lead: { rotation: primary }
  legal_liaison: { person: carol }
  scribe: {}
"#;
        let config = load_text(text, &env_of(&[])).unwrap();
        let roster = &config.roster;
        assert_eq!(roster.people["alice"].zone.iana_name(), Some("Europe/Berlin"));
        assert_eq!(roster.people["alice"].language, "de");
        assert_eq!(roster.people["bob"].language, "en");
        assert_eq!(roster.people["carol"].zone.iana_name(), Some("UTC"));
        let primary = &roster.rotations["primary"];
        assert_eq!(primary.shift, crate::oncall::Shift::Weekly);
        assert_eq!(primary.handoff, jiff::civil::time(9, 0, 0, 0));
        assert_eq!(primary.start, jiff::civil::date(2026, 1, 5));
        let secondary = &roster.rotations["secondary"];
        assert_eq!(secondary.shift, crate::oncall::Shift::Hours(12));
        assert_eq!(secondary.zone.iana_name(), Some("UTC"));
        assert_eq!(secondary.handoff, jiff::civil::time(9, 0, 0, 0), "default handoff");
        assert_eq!(secondary.members, ["carol", "bob", "alice"]);
        use crate::oncall::RoleFill;
        assert_eq!(roster.roles["incident_lead"], Some(RoleFill::Rotation("primary".into())));
        assert_eq!(roster.roles["legal_liaison"], Some(RoleFill::Person("carol".into())));
        assert_eq!(roster.roles["scribe"], None);
        assert_eq!(roster.roles["technical_lead"], None, "built-in roles always exist");
        assert_eq!(roster.roles["communications_lead"], None);
        // 2026-01-06 10:00 Berlin: alice's first week.
        let at: jiff::Timestamp = "2026-01-06T09:00:00Z".parse().unwrap();
        let holders = roster.holders(at, &[]);
        assert_eq!(holders.get("incident_lead").map(String::as_str), Some("alice"));
        assert_eq!(holders.get("legal_liaison").map(String::as_str), Some("carol"));
        assert_eq!(holders.len(), 2);
    }

    #[test]
    fn roster_mistakes_are_reported_with_locations() {
        let text = r#"people:
  - { id: alice, zone: Mars/Olympus, language: "e n" }
rotations:
  - name: primary
    members: [alice, nobody]
    shift: fortnightly
    handoff: "9am"
    zone: Europe/Berlinn
    start: 2026-13-01
  - { name: primary, members: [], shift: daily, start: 2026-01-01 }
  - { name: late, members: [alice], shift: daily }
roles:
  incident_lead: { rotation: tertiary }
  legal_liaison: { person: zed }
  Bad-Role: { person: alice }
  technical_lead: { person: alice, rotation: primary }
  communications_lead: { rotation: late }
"#;
        let errors = load_text(text, &env_of(&[])).unwrap_err();
        let at = |path: &str| find(&errors, path).position.map(|p| (p.line, p.column));
        assert_eq!(at("people[0].zone"), Some((2, 24)));
        assert!(find(&errors, "people[0].zone").message.contains("Mars/Olympus"));
        assert_eq!(at("people[0].language").map(|p| p.0), Some(2));
        assert_eq!(at("rotations[0].members[1]"), Some((5, 22)));
        assert!(find(&errors, "rotations[0].members[1]").message.contains("no person `nobody`"));
        assert_eq!(at("rotations[0].shift").map(|p| p.0), Some(6));
        assert_eq!(at("rotations[0].handoff").map(|p| p.0), Some(7));
        assert_eq!(at("rotations[0].zone").map(|p| p.0), Some(8));
        assert_eq!(at("rotations[0].start").map(|p| p.0), Some(9));
        assert!(find(&errors, "rotations[1].name").message.contains("twice"));
        assert_eq!(at("rotations[1].members").map(|p| p.0), Some(10));
        assert_eq!(at("rotations[2].start").map(|p| p.0), Some(11));
        assert_eq!(at("roles.incident_lead.rotation"), Some((13, 30)));
        assert!(find(&errors, "roles.incident_lead.rotation").message.contains("tertiary"));
        assert_eq!(at("roles.legal_liaison.person").map(|p| p.0), Some(14));
        assert_eq!(at("roles.Bad-Role").map(|p| p.0), Some(15));
        assert!(find(&errors, "roles.technical_lead").message.contains("not both"));
        // `late` is declared (if broken): only its own error, not the role's.
        assert!(errors.errors.iter().all(|e| e.path != "roles.communications_lead.rotation"));
        assert_eq!(errors.errors.len(), 14, "{errors}");
        assert!(errors.to_string().contains("test.yaml:13:30: roles.incident_lead.rotation: "));
    }
}
