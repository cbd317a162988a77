//! The layering of `src/`: a module uses only modules listed before it in the "## Layers" list of
//! `src/lib.rs`'s documentation (from the shared vocabulary at the bottom up to the daemon's
//! edges), or one named under "Exceptions" there with its reason.
//!
//! It reads every `crate::name` in the code (in `use` lines, grouped `use crate::{a, b}` and
//! inline paths; comments are skipped) and maps each file to its top-level module. A use of a
//! module declared later is a violation, printed as `file: a → b`. Run in CI with the other
//! tests (`cargo test --test layering`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level modules in the order of `lib.rs`'s "## Layers" list (bottom first): the
/// backticked names of its numbered lines, in order.
fn layers(lib: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in lib.lines() {
        let Some(doc) = line.trim().strip_prefix("//!") else { continue };
        let doc = doc.trim();
        if doc.starts_with("## Layers") {
            inside = true;
            continue;
        }
        if inside && doc.starts_with("### ") {
            break;
        }
        let numbered = doc.split_once(". ").is_some_and(|(n, _)| n.parse::<u32>().is_ok());
        if inside && (numbered || (!out.is_empty() && !doc.is_empty() && !doc.starts_with("The ")))
        {
            out.extend(backticked(doc.split(':').next().unwrap_or_default()));
        }
    }
    out
}

/// The names between backticks in `text`, in order.
fn backticked(text: &str) -> Vec<String> {
    text.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// `(from, to)` pairs allowed although `to` sits above `from`: lines of `lib.rs`'s docs of the
/// form `//! - exception: `from` → `to`, `other`: reason`.
fn exceptions(lib: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for l in lib.lines() {
        let Some(rest) = l.trim().strip_prefix("//! - exception:") else { continue };
        let (from, rest) = rest.split_once('→').unwrap_or_else(|| panic!("no → in {l}"));
        let (to, reason) = rest.split_once(": ").unwrap_or_else(|| panic!("no reason in {l}"));
        assert!(!reason.trim().is_empty(), "an exception needs its reason: {l}");
        let from = backticked(from).pop().unwrap_or_else(|| panic!("no module in {l}"));
        for to in backticked(to) {
            out.insert((from.clone(), to));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/a.rs` and `src/a/**` are `a`); `None` for the
/// crate roots.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The first segment of every `crate::` path in `code` (comments skipped).
fn crate_refs(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue; // `$crate::` in a macro, `mycrate::`
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::b, c}`: the first segment of each top-level item. A group that
                // spans lines is read to the end of this line; its later lines name their
                // module first too, which the next pass over them does not see, so the file is
                // also searched as one line below.
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            push_first(&item, &mut out);
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                push_first(&item, &mut out);
            } else {
                push_first(rest, &mut out);
            }
        }
    }
    out
}

fn push_first(path: &str, out: &mut BTreeSet<String>) {
    let name: String =
        path.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if !name.is_empty() && name != "self" {
        out.insert(name);
    }
}

/// Multi-line `use crate::{…}` groups joined onto one line, so every item is read.
fn joined_use_groups(code: &str) -> String {
    let mut out = String::new();
    let mut open = 0i32;
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        if open > 0 || line.contains("crate::{") {
            open += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            out.push_str(line.trim());
            out.push(' ');
            if open <= 0 {
                out.push('\n');
                open = 0;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_module_uses_only_the_layers_below_it_or_a_named_exception() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let order = layers(&lib);
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| {
            l.trim().strip_prefix("pub mod ").map(|m| m.trim_end_matches(';').to_string())
        })
        .collect();
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(listed.len(), order.len(), "a module is listed twice in Layers: {order:?}");
    assert_eq!(declared, listed, "lib.rs's Layers list and its `pub mod` lines differ");
    let rank: BTreeMap<&str, usize> =
        order.iter().enumerate().map(|(i, m)| (m.as_str(), i)).collect();
    let allowed = exceptions(&lib);
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();

    let mut used_exceptions = BTreeSet::new();
    let mut violations = Vec::new();
    for file in &files {
        let Some(from) = module_of(file) else { continue };
        let Some(&from_rank) = rank.get(from.as_str()) else {
            panic!(
                "{} belongs to `{from}`, which lib.rs's Layers list does not name",
                file.display()
            );
        };
        let code = joined_use_groups(&std::fs::read_to_string(file).unwrap());
        for to in crate_refs(&code) {
            let Some(&to_rank) = rank.get(to.as_str()) else { continue };
            if to_rank <= from_rank {
                continue;
            }
            if allowed.contains(&(from.clone(), to.clone())) {
                used_exceptions.insert((from.clone(), to.clone()));
                continue;
            }
            let rel = file.strip_prefix(src().parent().unwrap()).unwrap();
            violations.push(format!("{}: {from} → {to}", rel.display()));
        }
    }
    assert!(
        violations.is_empty(),
        "{} uses of a higher layer (declare the module lower in lib.rs, move the shared part \
         down, or name the exception in lib.rs with its reason):\n{}",
        violations.len(),
        violations.join("\n")
    );
    let stale: Vec<_> = allowed.difference(&used_exceptions).collect();
    assert!(stale.is_empty(), "exceptions in lib.rs that no code needs any more: {stale:?}");
}

#[test]
fn the_reader_finds_grouped_nested_and_inline_paths_and_skips_comments() {
    let code = joined_use_groups(
        "use crate::{a::B, b, c::{d, e}};\nuse crate::{\n    f::G,\n    h,\n};\nlet x = crate::i::j();\n// crate::k\nmacro $crate::l\n",
    );
    let got: Vec<String> = crate_refs(&code).into_iter().collect();
    assert_eq!(got, ["a", "b", "c", "f", "h", "i"]);
}
