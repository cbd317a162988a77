//! The redaction canary: personal data unique to one test run (see tests/redaction.rs).
#![allow(dead_code)]

/// Personal data unique to one run.
pub struct Canary {
    pub name: String,
    pub surname: String,
    pub email: String,
    pub phone: String,
    pub phone_compact: String,
    pub card: String,
    pub card_compact: String,
    /// In an annotation of a canonical event (a configured field).
    pub contact: String,
    /// A staff id that only an operator regex (`EMP-[0-9]{6}`) recognises.
    pub staff: String,
}

fn luhn_digit(body: &str) -> u32 {
    // The check digit that makes `body` + digit valid.
    let mut sum = 0;
    for (i, c) in body.chars().rev().enumerate() {
        let mut d = c.to_digit(10).unwrap();
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    (10 - sum % 10) % 10
}

impl Canary {
    pub fn new() -> Canary {
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).expect("random");
        let letters: String = seed[..8].iter().map(|b| (b'a' + b % 26) as char).collect();
        let surname = format!("Q{letters}");
        let digits: String = seed[8..].iter().map(|b| char::from(b'0' + b % 10)).collect();
        let six = &digits[..6];
        let phone_compact = format!("+447700{six}");
        let phone = format!("+44 7700 {six}");
        let body = format!("4{}{}", &digits[..7], &digits[1..8]);
        let card_compact = format!("{body}{}", luhn_digit(&body));
        let card = card_compact
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        Canary {
            name: format!("Ottilie {surname}"),
            email: format!("ottilie.{letters}@example.org"),
            contact: format!("Bertram {letters}"),
            staff: format!("EMP-{}", &digits[2..8]),
            surname,
            phone,
            phone_compact,
            card,
            card_compact,
        }
    }

    pub fn values(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("name", &self.name),
            ("surname", &self.surname),
            ("email", &self.email),
            ("phone", &self.phone),
            ("phone (compact)", &self.phone_compact),
            ("card", &self.card),
            ("card (compact)", &self.card_compact),
            ("contact", &self.contact),
            ("staff id", &self.staff),
        ]
    }

    /// Fails naming every value found in `text` (case-insensitively), and where.
    pub fn assert_absent(&self, place: &str, text: &str) {
        let lower = text.to_lowercase();
        let found: Vec<&str> = self
            .values()
            .into_iter()
            .filter(|(_, v)| lower.contains(&v.to_lowercase()))
            .map(|(what, _)| what)
            .collect();
        assert!(found.is_empty(), "{place} leaks {found:?}:\n{}", excerpt(text, self));
    }
}

/// The lines of `text` that hold a canary value (for a readable failure).
pub fn excerpt(text: &str, c: &Canary) -> String {
    text.lines()
        .filter(|l| {
            let l = l.to_lowercase();
            c.values().iter().any(|(_, v)| l.contains(&v.to_lowercase()))
        })
        .take(10)
        .collect::<Vec<_>>()
        .join("\n")
}
