//! `notifications:`: the channels (each channel's own config is beside it: [`super::EmailConfig`],
//! [`super::SmsConfig`], [`super::WebhookConfig`]), with `${VAR}` in their secrets expanded and
//! internal gateway addresses refused, the log file, templates and audience languages; delivery
//! and rate limits are checked by [`crate::delivery::config`], acknowledge links by
//! [`crate::links::config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::Validator;
use crate::delivery::config::{ChannelLimits, RawChannelLimits, RawDelivery, default_rate_limits};
use crate::links::config::{AckLinks, RawAckLinks};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    pub log: Option<Spanned<RawLogChannel>>,
    pub email: Option<Spanned<crate::notify::EmailConfig>>,
    pub sms: Option<Spanned<crate::notify::SmsConfig>>,
    #[serde(default)]
    pub webhooks: Vec<Spanned<crate::notify::WebhookConfig>>,
    pub templates: Option<Spanned<String>>,
    /// Audience → the language its messages go out in when the recipient is not a person
    /// (a person's own `language` wins).
    pub audience_languages: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    pub dashboard_url: Option<Spanned<String>>,
    pub ack_links: Option<Spanned<RawAckLinks>>,
    pub workers: Option<Spanned<u64>>,
    pub delivery: Option<Spanned<RawDelivery>>,
    pub rate_limits: Option<Spanned<BTreeMap<String, RawChannelLimits>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogChannel {
    pub path: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Notifications {
    /// JSON-lines file of every notification sent through the `log` channel.
    pub log_path: Option<PathBuf>,
    pub email: Option<crate::notify::EmailConfig>,
    pub sms: Option<crate::notify::SmsConfig>,
    pub webhooks: Vec<crate::notify::WebhookConfig>,
    /// Template directory; `None`: the built-in plain templates.
    pub templates: Option<PathBuf>,
    /// Audience → language for recipients that are not people (webhooks, the log); an
    /// audience `customer-apology` also takes `customer`'s entry.
    pub audience_languages: BTreeMap<String, String>,
    /// Base URL for links in messages (incident pages, acknowledge links).
    pub dashboard_url: Option<String>,
    /// Signed acknowledge links in person-addressed email and SMS (need `dashboard_url`).
    pub ack_links: AckLinks,
    /// Concurrent sends.
    pub workers: usize,
    pub delivery: crate::outbox::RetryPolicy,
    pub rate_limits: BTreeMap<crate::notify::Channel, ChannelLimits>,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            log_path: None,
            email: None,
            sms: None,
            webhooks: Vec::new(),
            templates: None,
            audience_languages: BTreeMap::new(),
            dashboard_url: None,
            ack_links: AckLinks::default(),
            workers: 8,
            delivery: crate::outbox::RetryPolicy::default(),
            rate_limits: default_rate_limits(),
        }
    }
}

/// `notifications:`; defaults for everything left out.
pub fn validate(cx: &mut Validator<'_>, raw: Option<Spanned<RawNotifications>>) -> Notifications {
    let mut n = Notifications::default();
    let Some(raw) = raw.map(|r| r.value) else { return n };
    n.log_path = raw
        .log
        .map(|l| PathBuf::from(l.value.path.unwrap_or_else(|| "notifications.jsonl".into())));
    // The channels themselves, with `${VAR}` in their secrets expanded. A channel whose
    // secrets do not expand is kept all the same, so that policies using it are not also
    // reported; the config is refused for the expansion error.
    if let Some(email) = raw.email {
        let (at, mut cfg) = (email.referenced, email.value);
        if let Err(problems) = cfg.expand_secrets(cx.env()) {
            problems.into_iter().for_each(|p| cx.err(at, "notifications.email.password", p));
        }
        n.email = Some(cfg);
    }
    if let Some(sms) = raw.sms {
        let (at, mut cfg) = (sms.referenced, sms.value);
        if let Err(problems) = cfg.expand_secrets(cx.env()) {
            problems.into_iter().for_each(|p| cx.err(at, "notifications.sms", p));
        }
        // Caught here rather than at the first page: an internal gateway address is a
        // mistake (or an attack on the host) unless the config says it is meant.
        if let Some(problem) = cfg
            .url
            .as_deref()
            .filter(|_| !cfg.allow_private)
            .and_then(crate::notify::guard::check_url)
        {
            cx.err(at, "notifications.sms.url", problem);
        }
        n.sms = Some(cfg);
    }
    for (i, hook) in raw.webhooks.into_iter().enumerate() {
        let path = format!("notifications.webhooks[{i}]");
        let (at, mut cfg) = (hook.referenced, hook.value);
        if n.webhooks.iter().any(|w| w.name == cfg.name) {
            cx.err(at, &format!("{path}.name"), format!("`{}` is defined twice", cfg.name));
            continue;
        }
        if let Err(problems) = cfg.expand_secrets(cx.env()) {
            problems.into_iter().for_each(|p| cx.err(at, &path, p));
        }
        if !cfg.allow_private
            && let Some(problem) = crate::notify::guard::check_url(&cfg.url)
        {
            cx.err(at, &format!("{path}.url"), problem);
        }
        n.webhooks.push(cfg);
    }
    n.templates = raw.templates.map(|t| PathBuf::from(t.value));
    for (audience, lang) in raw.audience_languages.map(|a| a.value).unwrap_or_default() {
        let ok = (2..=35).contains(&lang.value.len())
            && lang.value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !lang.value.starts_with('-');
        if ok {
            n.audience_languages.insert(audience, lang.value);
        } else {
            cx.err(
                lang.referenced,
                &format!("notifications.audience_languages.{audience}"),
                format!(
                    "`{}` is not a language tag; write e.g. en, de or pt-BR",
                    lang.value.escape_debug()
                ),
            );
        }
    }
    if let Some(url) = raw.dashboard_url {
        if !(url.value.starts_with("http://") || url.value.starts_with("https://")) {
            cx.err(
                url.referenced,
                "notifications.dashboard_url",
                "must start with http:// or https://",
            );
        }
        n.dashboard_url = Some(url.value.trim_end_matches('/').to_string());
    }
    if let Some(raw_links) = raw.ack_links {
        n.ack_links = crate::links::config::validate(cx, raw_links);
    }
    n.workers = cx.count(raw.workers, "notifications.workers", 256, n.workers);
    n.delivery = crate::delivery::config::retry_policy(cx, raw.delivery);
    crate::delivery::config::rate_limits(cx, raw.rate_limits, &mut n.rate_limits);
    n
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{env_of, find, load_text};
    use crate::vocab::Secret;

    #[test]
    fn internal_gateway_and_webhook_addresses_are_config_errors_without_allow_private() {
        let text = r#"
notifications:
  sms: { provider: json, url: "http://127.0.0.1:8080/send", body: '{"t": "{{text}}"}' }
  webhooks:
    - { name: a, url: "http://localhost:9000/hook" }
    - { name: b, url: "http://[::ffff:10.0.0.1]/hook" }
    - { name: c, url: "http://198.18.0.1/hook" }
    - { name: d, url: "http://127.0.0.1/hook", allow_private: true }
    - { name: e, url: "https://hooks.example.com/hook" }
"#;
        let errors = load_text(text, &env_of(&[])).unwrap_err();
        let sms = find(&errors, "notifications.sms.url");
        assert!(
            sms.message.contains("loopback") && sms.message.contains("allow_private"),
            "{errors}"
        );
        assert_eq!(sms.position.map(|p| p.line), Some(3), "{errors}");
        assert!(find(&errors, "notifications.webhooks[0].url").message.contains("localhost"));
        assert!(find(&errors, "notifications.webhooks[1].url").message.contains("private-use"));
        assert!(find(&errors, "notifications.webhooks[2].url").message.contains("benchmarking"));
        assert_eq!(errors.errors.len(), 4, "{errors}");
        let allowed = text.replace("body: '{", "allow_private: true, body: '{").replace(
            "    - { name: a, url: \"http://localhost:9000/hook\" }\n    - { name: b, url: \"http://[::ffff:10.0.0.1]/hook\" }\n    - { name: c, url: \"http://198.18.0.1/hook\" }\n",
            "",
        );
        load_text(&allowed, &env_of(&[])).unwrap();
    }

    #[test]
    fn notification_channels_are_kept_with_their_secrets_expanded() {
        let text = r#"
people:
  - { id: ana, email: ana@example.com, phone: "+15551234567" }
policies:
  - name: main
    notify: [{ person: ana }, { webhook: hook }]
notifications:
  email: { relay: smtp.example.com, from: tocsin@example.com, username: u, password: "${PW}" }
  sms: { provider: twilio, account_sid: AC1, auth_token: "${TW}", from: "+15005550006" }
  webhooks:
    - { name: hook, url: "https://hooks.example.com/x", secrets: ["${HOOK}"] }
"#;
        let env = env_of(&[("PW", "pw-1"), ("TW", "tw-2"), ("HOOK", "whsec_abc")]);
        let config = load_text(text, &env).unwrap();
        let n = &config.notifications;
        let email = n.email.as_ref().expect("email kept");
        assert_eq!(email.password.as_ref().map(Secret::expose), Some("pw-1"));
        let sms = n.sms.as_ref().expect("sms kept");
        assert_eq!(sms.auth_token.as_ref().map(Secret::expose), Some("tw-2"));
        let [hook] = n.webhooks.as_slice() else { panic!("one webhook: {n:?}") };
        assert_eq!(hook.name, "hook");
        assert_eq!(hook.secrets[0].expose(), "whsec_abc");

        // An unset variable, a webhook defined twice, and a policy naming a missing webhook.
        let text = text.replace(
            "notify: [{ person: ana }, { webhook: hook }]",
            "notify: [{ person: ana }, { webhook: hook }, { webhook: nowhere }]",
        ) + "    - { name: hook, url: \"https://other.example.com/\" }\n";
        let errors = load_text(&text, &env_of(&[("PW", "pw-1"), ("TW", "tw-2")])).unwrap_err();
        assert!(find(&errors, "notifications.webhooks[0]").message.contains("HOOK"), "{errors}");
        assert!(find(&errors, "notifications.webhooks[1].name").message.contains("twice"));
        assert!(find(&errors, "policies[0].notify[2].webhook").message.contains("nowhere"));
        assert_eq!(errors.errors.len(), 3, "{errors}");
    }
}
