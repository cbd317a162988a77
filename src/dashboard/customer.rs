//! Customer personal data on dashboard pages: the ONE place it is shown from.
//!
//! Every customer field (name, email, phone) and every free text that may carry personal data
//! (incident summaries, report descriptions, timeline messages, notification subjects) reaches
//! a page only through [`customer_view`], with the API's rule for who sees what:
//!
//! - users with the `pii` permission (see [`crate::redact::allows_pii`]) see the data as stored;
//! - everyone else sees an email as its first character, `***@` and its domain (`j***@example.org`),
//!   a phone number as `***` and its last two digits, a name as its initials (`J. E.`), and in
//!   free text every email-like word (`x@y.z`) and phone-like run of 7 or more digits
//!   (spaces, `+ - ( ) .` allowed between them) masked the same way.

use std::borrow::Cow;

use super::session::Viewer;

/// What kind of personal value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Name,
    Email,
    Phone,
    /// Free text that may contain personal data.
    Text,
}

/// `value` as `viewer` may see it on a page (not yet HTML-escaped).
pub fn customer_view<'a>(viewer: &Viewer, field: Field, value: &'a str) -> Cow<'a, str> {
    if viewer.pii {
        return Cow::Borrowed(value);
    }
    match field {
        Field::Name => Cow::Owned(initials(value)),
        Field::Email => Cow::Owned(mask_email(value)),
        Field::Phone => Cow::Owned(mask_phone(value)),
        Field::Text => mask_text(value),
    }
}

fn initials(name: &str) -> String {
    let parts: Vec<String> = name
        .split_whitespace()
        .filter_map(|w| w.chars().next())
        .map(|c| format!("{}.", c.to_uppercase()))
        .collect();
    if parts.is_empty() { "***".into() } else { parts.join(" ") }
}

fn mask_email(email: &str) -> String {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
    format!("***{tail}")
}

fn looks_like_email(word: &str) -> bool {
    let Some((local, domain)) = word.rsplit_once('@') else { return false };
    !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
}

/// Masks email-like words and phone-like digit runs in free text.
fn mask_text(text: &str) -> Cow<'_, str> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    // Emails: word by word (words split at whitespace and at brackets, quotes, commas).
    let is_sep = |c: char| c.is_whitespace() || "<>()[]{}\"',;:".contains(c);
    let mut word_start = None;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let flush = |out: &mut String, word: &str, changed: &mut bool| {
        let trimmed = word.trim_end_matches(['.', '!', '?']);
        if looks_like_email(trimmed) {
            out.push_str(&mask_email(trimmed));
            out.push_str(&word[trimmed.len()..]);
            *changed = true;
        } else {
            out.push_str(word);
        }
    };
    for &(i, c) in &chars {
        if is_sep(c) {
            if let Some(s) = word_start.take() {
                flush(&mut out, &text[s..i], &mut changed);
            }
            out.push(c);
        } else if word_start.is_none() {
            word_start = Some(i);
        }
    }
    if let Some(s) = word_start {
        flush(&mut out, &text[s..], &mut changed);
    }
    // Phones: runs of digits with phone punctuation between, 7 digits or more.
    let masked = mask_phone_runs(&out);
    if masked.is_some() {
        changed = true;
    }
    match (changed, masked) {
        (_, Some(m)) => Cow::Owned(m),
        (true, None) => Cow::Owned(out),
        (false, None) => Cow::Borrowed(text),
    }
}

fn mask_phone_runs(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        // Dates (`2026-03-02`) are not phone numbers: timeline text is full of them.
        if is_date(&chars[i..]) {
            out.extend(&chars[i..i + 10]);
            i += 10;
            continue;
        }
        let starts = chars[i].is_ascii_digit() || (chars[i] == '+' || chars[i] == '(');
        if !starts {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let mut j = i;
        let mut digits = 0;
        let mut last_digit = i;
        while j < chars.len() && (chars[j].is_ascii_digit() || " +-().".contains(chars[j])) {
            if chars[j].is_ascii_digit() {
                digits += 1;
                last_digit = j;
            }
            j += 1;
        }
        if digits >= 7 {
            let run: String = chars[i..=last_digit].iter().collect();
            out.push_str(&mask_phone(&run));
            changed = true;
            i = last_digit + 1;
        } else {
            let end = j.max(i + 1);
            out.extend(&chars[i..end]);
            i = end;
        }
    }
    changed.then_some(out)
}

fn is_date(c: &[char]) -> bool {
    c.len() >= 10
        && c[..10]
            .iter()
            .enumerate()
            .all(|(k, ch)| if k == 4 || k == 7 { *ch == '-' } else { ch.is_ascii_digit() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn viewer(role: Role) -> Viewer {
        // Responders and admins in these tests hold `pii`; viewers do not.
        Viewer { name: "v".into(), role, csrf: String::new(), pii: role >= Role::Responder }
    }

    #[test]
    fn responders_see_data_as_stored() {
        let r = viewer(Role::Responder);
        assert_eq!(customer_view(&r, Field::Email, "jo@example.org"), "jo@example.org");
        assert_eq!(
            customer_view(&r, Field::Text, "call +44 20 7946 0958"),
            "call +44 20 7946 0958"
        );
    }

    #[test]
    fn viewers_see_masked_fields() {
        let v = viewer(Role::Viewer);
        assert_eq!(customer_view(&v, Field::Email, "jo@example.org"), "j***@example.org");
        assert_eq!(customer_view(&v, Field::Phone, "+44 20 7946 0958"), "***58");
        assert_eq!(customer_view(&v, Field::Name, "jo example"), "J. E.");
    }

    #[test]
    fn viewers_see_masked_free_text() {
        let v = viewer(Role::Viewer);
        assert_eq!(
            customer_view(&v, Field::Text, "Jo <jo.ex@mail.example.org>, tel +44 20 7946 0958."),
            "Jo <j***@mail.example.org>, tel ***58."
        );
        assert_eq!(
            customer_view(&v, Field::Text, "checkout fails for 3 users since 10:42"),
            "checkout fails for 3 users since 10:42"
        );
        assert_eq!(
            customer_view(&v, Field::Text, "mail jo@example.org."),
            "mail j***@example.org."
        );
        let dated = "acknowledged at 2026-03-02T09:00:00Z, due 2026-03-02 10:00";
        assert_eq!(customer_view(&v, Field::Text, dated), dated);
    }
}
