//! The service catalog: which services exist, who owns them, which face customers, and what
//! each depends on (third-party vendors included). Read by the rules (`dependents(service)`,
//! `is_customer_facing_downstream(service)`, `owner(service)`), by the journal writer to scope
//! an incident to every service downstream of the one alerted on, and by the first escalation
//! step to page those services' owners.
//!
//! Configured under `catalog:` in the config; [`build`] checks it (unknown dependencies,
//! unknown owners, duplicate names, dependency cycles) and reports each problem with its line.
//! Nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// Who answers for a service: an incident role (filled on each incident from `roles:`) or a
/// person from `people`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Role(String),
    Person(String),
}

impl Owner {
    pub fn name(&self) -> &str {
        match self {
            Owner::Role(r) | Owner::Person(r) => r,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub owner: Option<Owner>,
    pub customer_facing: bool,
    /// A third party (payment provider, cloud region, email provider).
    pub vendor: bool,
    /// Services this one needs, directly.
    pub depends_on: Vec<String>,
}

/// The checked catalog: acyclic, every dependency known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    services: BTreeMap<String, Service>,
    /// Service → the services that depend on it directly.
    direct_dependents: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// Every service that depends on `name`, directly or through others; sorted, without
    /// `name` itself. Empty for a service not in the catalog.
    pub fn dependents(&self, name: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![name];
        while let Some(s) = stack.pop() {
            for d in self.direct_dependents.get(s).into_iter().flatten() {
                if d != name && seen.insert(d.as_str()) {
                    stack.push(d);
                }
            }
        }
        seen.into_iter().map(str::to_owned).collect()
    }

    /// Every service `name` depends on, directly or through others (vendors included); sorted,
    /// without `name` itself. Empty for a service not in the catalog.
    pub fn depends_on(&self, name: &str) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![name];
        while let Some(s) = stack.pop() {
            for d in self.services.get(s).map(|s| s.depends_on.as_slice()).unwrap_or_default() {
                if d != name && seen.insert(d.as_str()) {
                    stack.push(d);
                }
            }
        }
        seen.into_iter().map(str::to_owned).collect()
    }

    /// Whether any (transitive) dependent of `name` is customer-facing.
    pub fn is_customer_facing_downstream(&self, name: &str) -> bool {
        self.dependents(name).iter().any(|d| self.get(d).is_some_and(|s| s.customer_facing))
    }

    pub fn owner(&self, name: &str) -> Option<&Owner> {
        self.get(name).and_then(|s| s.owner.as_ref())
    }

    /// The services an incident about `named` affects: each named service and every service
    /// that depends on it; sorted, no duplicates.
    pub fn scope<'a>(&self, named: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out = BTreeSet::new();
        for s in named {
            if s.trim().is_empty() {
                continue;
            }
            out.insert(s.to_owned());
            out.extend(self.dependents(s));
        }
        out.into_iter().collect()
    }
}

/// One `catalog:` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: Spanned<String>,
    pub owner: Option<Spanned<String>>,
    pub customer_facing: Option<bool>,
    pub vendor: Option<bool>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
}

/// A problem in the catalog: where, the key path, what.
pub type Problem = (Location, String, String);

/// Checks the raw catalog. `people` are the ids in `people`, `roles` the role names a policy
/// may page; an owner must be one of them (a person id wins when a name is both).
pub fn build(
    raw: Vec<Spanned<RawService>>,
    people: &BTreeSet<String>,
    roles: &BTreeSet<String>,
) -> (Catalog, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut services = BTreeMap::new();
    let mut at: BTreeMap<String, (usize, Location)> = BTreeMap::new();
    for (i, entry) in raw.iter().enumerate() {
        let name = entry.value.name.value.trim().to_string();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            problems.push((
                entry.value.name.referenced,
                format!("catalog[{i}].name"),
                format!(
                    "{name:?} is not a service name: use 1 to 64 letters, digits, '_', '-' or '.'"
                ),
            ));
            continue;
        }
        if at.contains_key(&name) {
            problems.push((
                entry.value.name.referenced,
                format!("catalog[{i}].name"),
                format!("service `{name}` is listed twice"),
            ));
            continue;
        }
        at.insert(name.clone(), (i, entry.value.name.referenced));
    }
    for (i, entry) in raw.iter().enumerate() {
        let name = entry.value.name.value.trim().to_string();
        if at.get(&name).is_none_or(|(j, _)| *j != i) {
            continue;
        }
        let owner = entry.value.owner.as_ref().and_then(|o| {
            let v = o.value.trim();
            if people.contains(v) {
                Some(Owner::Person(v.to_owned()))
            } else if roles.contains(v) {
                Some(Owner::Role(v.to_owned()))
            } else {
                problems.push((
                    o.referenced,
                    format!("catalog[{i}].owner"),
                    format!("`{v}` is neither a person in `people` nor a role (built-in or under `roles`)"),
                ));
                None
            }
        });
        let mut depends_on = Vec::new();
        for (k, d) in entry.value.depends_on.iter().enumerate() {
            let dep = d.value.trim().to_string();
            if !at.contains_key(&dep) {
                problems.push((
                    d.referenced,
                    format!("catalog[{i}].depends_on[{k}]"),
                    format!(
                        "`{dep}` is not in the catalog; list it (a third party with `vendor: true`)"
                    ),
                ));
            } else if dep == name {
                problems.push((
                    d.referenced,
                    format!("catalog[{i}].depends_on[{k}]"),
                    format!("dependency cycle: {name} → {name}"),
                ));
            } else if !depends_on.contains(&dep) {
                depends_on.push(dep);
            }
        }
        services.insert(
            name.clone(),
            Service {
                name,
                owner,
                customer_facing: entry.value.customer_facing.unwrap_or(false),
                vendor: entry.value.vendor.unwrap_or(false),
                depends_on,
            },
        );
    }
    for cycle in cycles(&services) {
        // Reported at the dependency that closes the cycle, as written.
        let (from, to) = (&cycle[cycle.len() - 2], &cycle[cycle.len() - 1]);
        let (i, name_at) = at[from.as_str()];
        let (k, loc) = raw[i]
            .value
            .depends_on
            .iter()
            .enumerate()
            .find(|(_, d)| d.value.trim() == to)
            .map_or((0, name_at), |(k, d)| (k, d.referenced));
        problems.push((
            loc,
            format!("catalog[{i}].depends_on[{k}]"),
            format!("dependency cycle: {}", cycle.join(" → ")),
        ));
    }
    let mut direct_dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in services.values() {
        for d in &s.depends_on {
            direct_dependents.entry(d.clone()).or_default().push(s.name.clone());
        }
    }
    (Catalog { services, direct_dependents }, problems)
}

/// Each dependency cycle once, as the path `a, b, c, a` starting from its smallest name.
fn cycles(services: &BTreeMap<String, Service>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Active,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        services: &'a BTreeMap<String, Service>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        found: &mut Vec<Vec<String>>,
    ) {
        marks.insert(name, Mark::Active);
        path.push(name);
        for dep in services.get(name).map(|s| s.depends_on.as_slice()).unwrap_or_default() {
            match marks.get(dep.as_str()) {
                Some(Mark::Active) => {
                    let start = path.iter().position(|p| *p == dep).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(dep.clone());
                    found.push(cycle);
                }
                Some(Mark::Done) => {}
                None => visit(dep, services, marks, path, found),
            }
        }
        path.pop();
        marks.insert(name, Mark::Done);
    }
    let mut marks = BTreeMap::new();
    let mut found = Vec::new();
    for name in services.keys() {
        if !marks.contains_key(name.as_str()) {
            visit(name, services, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(yaml: &str) -> (Catalog, Vec<Problem>) {
        let raw: Vec<Spanned<RawService>> = serde_saphyr::from_str(yaml).unwrap();
        let people = BTreeSet::from(["ana".to_string()]);
        let roles = BTreeSet::from(["payments_oncall".to_string()]);
        build(raw, &people, &roles)
    }

    const SHOP: &str = r#"
- {name: stripe, vendor: true}
- {name: eu-west-1, vendor: true}
- {name: payments, owner: payments_oncall, depends_on: [stripe, eu-west-1]}
- {name: checkout, owner: ana, customer_facing: true, depends_on: [payments]}
- {name: reporting, depends_on: [payments]}
- {name: search, depends_on: [eu-west-1]}
"#;

    #[test]
    fn dependents_are_transitive_and_scope_includes_the_service() {
        let (c, problems) = catalog(SHOP);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.dependents("stripe"), ["checkout", "payments", "reporting"]);
        assert_eq!(c.dependents("eu-west-1"), ["checkout", "payments", "reporting", "search"]);
        assert_eq!(c.depends_on("checkout"), ["eu-west-1", "payments", "stripe"]);
        assert_eq!(c.depends_on("search"), ["eu-west-1"]);
        assert!(c.depends_on("stripe").is_empty() && c.depends_on("unknown").is_empty());
        assert!(c.dependents("checkout").is_empty());
        assert!(c.is_customer_facing_downstream("stripe"));
        assert!(!c.is_customer_facing_downstream("checkout"));
        assert!(!c.is_customer_facing_downstream("search"));
        assert_eq!(c.owner("payments"), Some(&Owner::Role("payments_oncall".into())));
        assert_eq!(c.owner("checkout"), Some(&Owner::Person("ana".into())));
        assert_eq!(c.scope(["stripe"]), ["checkout", "payments", "reporting", "stripe"]);
        assert_eq!(c.scope(["unknown"]), ["unknown"]);
    }

    #[test]
    fn a_cycle_is_named_with_its_line() {
        let (_, problems) = catalog(
            "- {name: a, depends_on: [b]}\n- {name: b, depends_on: [c]}\n- {name: c, depends_on: [a]}\n",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        let (loc, path, message) = &problems[0];
        assert_eq!(message, "dependency cycle: a → b → c → a");
        assert_eq!(path, "catalog[2].depends_on[0]");
        assert_eq!(loc.line(), 3);
    }

    #[test]
    fn unknown_dependencies_and_owners_are_reported() {
        let (_, problems) = catalog("- {name: a, owner: nobody, depends_on: [b]}\n- {name: a}\n");
        let messages: Vec<&str> = problems.iter().map(|p| p.2.as_str()).collect();
        assert_eq!(problems.len(), 3, "{messages:?}");
        assert!(messages.iter().any(|m| m.contains("listed twice")));
        assert!(messages.iter().any(|m| m.contains("`nobody` is neither")));
        assert!(messages.iter().any(|m| m.contains("`b` is not in the catalog")));
    }
}
