//! The shipped `rules/templates/` library, embedded so that [`super::Templates::builtin`]
//! needs no files at run time. A test checks that this list and the directory hold the same
//! files, so a template added to one is not forgotten in the other.

/// `(name, source)`: `name` is the path under `rules/templates/`.
pub(super) const FILES: &[(&str, &str)] = &[
    (
        "de/email/customer-apology.html.j2",
        include_str!("../../rules/templates/de/email/customer-apology.html.j2"),
    ),
    (
        "de/email/customer-apology.subject.j2",
        include_str!("../../rules/templates/de/email/customer-apology.subject.j2"),
    ),
    (
        "de/email/customer-apology.text.j2",
        include_str!("../../rules/templates/de/email/customer-apology.text.j2"),
    ),
    (
        "de/email/customer-status.html.j2",
        include_str!("../../rules/templates/de/email/customer-status.html.j2"),
    ),
    (
        "de/email/customer-status.subject.j2",
        include_str!("../../rules/templates/de/email/customer-status.subject.j2"),
    ),
    (
        "de/email/customer-status.text.j2",
        include_str!("../../rules/templates/de/email/customer-status.text.j2"),
    ),
    ("de/email/customer.html.j2", include_str!("../../rules/templates/de/email/customer.html.j2")),
    (
        "de/email/customer.subject.j2",
        include_str!("../../rules/templates/de/email/customer.subject.j2"),
    ),
    ("de/email/customer.text.j2", include_str!("../../rules/templates/de/email/customer.text.j2")),
    (
        "de/email/responder.html.j2",
        include_str!("../../rules/templates/de/email/responder.html.j2"),
    ),
    (
        "de/email/responder.subject.j2",
        include_str!("../../rules/templates/de/email/responder.subject.j2"),
    ),
    (
        "de/email/responder.text.j2",
        include_str!("../../rules/templates/de/email/responder.text.j2"),
    ),
    (
        "de/sms/customer-apology.text.j2",
        include_str!("../../rules/templates/de/sms/customer-apology.text.j2"),
    ),
    (
        "de/sms/customer-status.text.j2",
        include_str!("../../rules/templates/de/sms/customer-status.text.j2"),
    ),
    ("de/sms/customer.text.j2", include_str!("../../rules/templates/de/sms/customer.text.j2")),
    (
        "de/sms/responder.sev1.text.j2",
        include_str!("../../rules/templates/de/sms/responder.sev1.text.j2"),
    ),
    ("de/sms/responder.text.j2", include_str!("../../rules/templates/de/sms/responder.text.j2")),
    (
        "email/communications.html.j2",
        include_str!("../../rules/templates/email/communications.html.j2"),
    ),
    (
        "email/communications.subject.j2",
        include_str!("../../rules/templates/email/communications.subject.j2"),
    ),
    (
        "email/communications.text.j2",
        include_str!("../../rules/templates/email/communications.text.j2"),
    ),
    (
        "email/customer-apology.html.j2",
        include_str!("../../rules/templates/email/customer-apology.html.j2"),
    ),
    (
        "email/customer-apology.subject.j2",
        include_str!("../../rules/templates/email/customer-apology.subject.j2"),
    ),
    (
        "email/customer-apology.text.j2",
        include_str!("../../rules/templates/email/customer-apology.text.j2"),
    ),
    (
        "email/customer-status.html.j2",
        include_str!("../../rules/templates/email/customer-status.html.j2"),
    ),
    (
        "email/customer-status.subject.j2",
        include_str!("../../rules/templates/email/customer-status.subject.j2"),
    ),
    (
        "email/customer-status.text.j2",
        include_str!("../../rules/templates/email/customer-status.text.j2"),
    ),
    ("email/customer.html.j2", include_str!("../../rules/templates/email/customer.html.j2")),
    ("email/customer.subject.j2", include_str!("../../rules/templates/email/customer.subject.j2")),
    ("email/customer.text.j2", include_str!("../../rules/templates/email/customer.text.j2")),
    ("email/default.html.j2", include_str!("../../rules/templates/email/default.html.j2")),
    ("email/default.subject.j2", include_str!("../../rules/templates/email/default.subject.j2")),
    ("email/default.text.j2", include_str!("../../rules/templates/email/default.text.j2")),
    ("email/executive.html.j2", include_str!("../../rules/templates/email/executive.html.j2")),
    (
        "email/executive.subject.j2",
        include_str!("../../rules/templates/email/executive.subject.j2"),
    ),
    ("email/executive.text.j2", include_str!("../../rules/templates/email/executive.text.j2")),
    ("email/legal.html.j2", include_str!("../../rules/templates/email/legal.html.j2")),
    ("email/legal.subject.j2", include_str!("../../rules/templates/email/legal.subject.j2")),
    ("email/legal.text.j2", include_str!("../../rules/templates/email/legal.text.j2")),
    ("email/responder.html.j2", include_str!("../../rules/templates/email/responder.html.j2")),
    (
        "email/responder.subject.j2",
        include_str!("../../rules/templates/email/responder.subject.j2"),
    ),
    ("email/responder.text.j2", include_str!("../../rules/templates/email/responder.text.j2")),
    (
        "log/communications.text.j2",
        include_str!("../../rules/templates/log/communications.text.j2"),
    ),
    ("log/customer.text.j2", include_str!("../../rules/templates/log/customer.text.j2")),
    ("log/default.text.j2", include_str!("../../rules/templates/log/default.text.j2")),
    ("log/executive.text.j2", include_str!("../../rules/templates/log/executive.text.j2")),
    ("log/legal.text.j2", include_str!("../../rules/templates/log/legal.text.j2")),
    ("log/responder.text.j2", include_str!("../../rules/templates/log/responder.text.j2")),
    (
        "sms/communications.text.j2",
        include_str!("../../rules/templates/sms/communications.text.j2"),
    ),
    (
        "sms/customer-apology.text.j2",
        include_str!("../../rules/templates/sms/customer-apology.text.j2"),
    ),
    (
        "sms/customer-status.text.j2",
        include_str!("../../rules/templates/sms/customer-status.text.j2"),
    ),
    ("sms/customer.text.j2", include_str!("../../rules/templates/sms/customer.text.j2")),
    ("sms/default.text.j2", include_str!("../../rules/templates/sms/default.text.j2")),
    ("sms/executive.text.j2", include_str!("../../rules/templates/sms/executive.text.j2")),
    ("sms/legal.text.j2", include_str!("../../rules/templates/sms/legal.text.j2")),
    (
        "sms/responder.sev1.text.j2",
        include_str!("../../rules/templates/sms/responder.sev1.text.j2"),
    ),
    ("sms/responder.text.j2", include_str!("../../rules/templates/sms/responder.text.j2")),
];
