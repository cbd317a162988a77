//! Email through one SMTP relay: a pooled lettre transport, a semaphore bounding concurrent
//! sends, and SMTP replies mapped onto [`SendError`].
//!
//! A message is `multipart/alternative` (text and HTML) when the template has HTML, else a
//! single `text/plain` part. Its `Message-ID` is `<{idempotency_id}@tocsin>`, so every retry
//! of one notification carries the same id and mail clients collapse duplicates.
//!
//! SMTP replies: 4xx (transient), connection, TLS and timeout failures → `Retryable`; 5xx
//! (permanent, including a refused recipient or bad credentials) and a recipient that is not
//! an address → `Permanent`. A timeout is `Retryable`, not `Unknown`: a relay takes
//! responsibility for a message only with its final `250` after DATA, so a timeout before
//! that leaves the message ours to send (RFC 5321 §4.1.1.4; the rare duplicate carries the
//! same Message-ID).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{Error as SmtpError, PoolConfig};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::{Message, Receipt, SendError, de_duration};
use crate::vocab::Secret;

/// How an email channel reaches its relay.
///
/// ```yaml
/// email:
///   relay: smtp.example.com
///   tls: starttls            # none | starttls | tls; default starttls
///   port: 587                # default by tls: none 25, starttls 587, tls 465
///   username: tocsin
///   password: "${SMTP_PASSWORD}"
///   from: "Tocsin <tocsin@example.com>"
///   max_connections: 4       # concurrent sends to this relay; default 4
///   timeout: 30s             # the whole send, waiting for a connection included; default 30s
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Host name (or address) of the relay; also the name its TLS certificate must carry.
    pub relay: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// `Name <address>` or a bare address.
    pub from: String,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    #[serde(default = "default_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

/// Transport security towards the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text. Credentials are refused unless the relay is on this host.
    None,
    /// Plain connection upgraded with STARTTLS, which the relay must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte ("implicit TLS", port 465).
    Tls,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        }
    }
}

fn default_max_connections() -> u32 {
    4
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The most connections one relay may be given; more is a typo, not a need.
const MAX_CONNECTIONS: u32 = 64;

impl EmailConfig {
    /// Expands `${VAR}` in the password (see [`crate::config::expand_secret`]).
    pub fn expand_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), Vec<String>> {
        match &mut self.password {
            Some(password) => crate::config::expand_secret(password, env),
            None => Ok(()),
        }
    }
}

/// An email channel: one relay, its connection pool and its concurrency bound.
pub struct Email {
    /// lettre's pool keeps idle connections for reuse but bounds only the *idle* ones; the
    /// semaphore below bounds the ones in use. An `Option` only so that `Drop` can drop it
    /// inside the runtime; always `Some` until then.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    /// lettre's pool spawns a task when built and another when dropped, and panics outside a
    /// Tokio runtime. Dropping an `Email` enters this handle first, so a reload or a test that
    /// drops it from plain code cannot abort the process.
    runtime: tokio::runtime::Handle,
    /// One permit per connection the relay may see at once (CRATES.md: without it 500
    /// concurrent sends opened ~210 connections). tokio's, because it is held across the send.
    permits: Arc<Semaphore>,
    from: Mailbox,
    max_connections: u32,
    timeout: Duration,
    relay: String,
    /// Scrubbed from every reason.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("relay", &self.relay)
            .field("from", &self.from.to_string())
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for Email {
    fn drop(&mut self) {
        let _inside = self.runtime.enter();
        drop(self.transport.take());
    }
}

impl Email {
    /// Checks the config and builds the transport. Connects lazily: a relay that is down now
    /// fails the first send (retryable), not start-up. All problems are reported, `; `-joined.
    ///
    /// Must be called from within a Tokio runtime (lettre's pool spawns its cleanup task).
    pub fn new(cfg: EmailConfig) -> Result<Email, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "an email channel must be built inside the Tokio runtime".to_string())?;
        let mut problems = Vec::new();
        let relay = cfg.relay.trim().to_string();
        if relay.is_empty() {
            problems.push("relay: must name the SMTP relay host".to_string());
        }
        let from = match cfg.from.parse::<Mailbox>() {
            Ok(from) => Some(from),
            Err(e) => {
                problems.push(format!(
                    "from: `{}` is not a mailbox ({e}); write `Name <address>` or an address",
                    cfg.from.escape_debug()
                ));
                None
            }
        };
        if !(1..=MAX_CONNECTIONS).contains(&cfg.max_connections) {
            problems.push(format!("max_connections: must be from 1 to {MAX_CONNECTIONS}"));
        }
        let credentials = match (&cfg.username, &cfg.password) {
            (Some(user), Some(password)) => {
                Some(Credentials::new(user.clone(), password.expose().to_string()))
            }
            (None, None) => None,
            _ => {
                problems.push("username and password: give both or neither".to_string());
                None
            }
        };
        if credentials.is_some() && cfg.tls == SmtpTls::None && !is_local(&relay) {
            problems.push(
                "tls: none would send the password in clear text; use starttls or tls".to_string(),
            );
        }
        let tls = match cfg.tls {
            SmtpTls::None => Some(Tls::None),
            SmtpTls::Starttls | SmtpTls::Tls => match TlsParameters::new(relay.clone()) {
                Ok(params) if cfg.tls == SmtpTls::Tls => Some(Tls::Wrapper(params)),
                Ok(params) => Some(Tls::Required(params)),
                Err(e) => {
                    problems.push(format!("tls: cannot set up TLS for `{relay}`: {e}"));
                    None
                }
            },
        };
        let (Some(from), Some(tls), true) = (from, tls, problems.is_empty()) else {
            return Err(problems.join("; "));
        };

        let pool =
            PoolConfig::new().max_size(cfg.max_connections).idle_timeout(Duration::from_secs(60));
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(relay.clone())
            .port(cfg.port.unwrap_or(cfg.tls.default_port()))
            .tls(tls)
            // lettre applies it to connecting and to each command; `send` bounds the whole.
            .timeout(Some(cfg.timeout))
            .pool_config(pool);
        if let Some(credentials) = credentials {
            builder = builder.credentials(credentials);
        }
        let secrets = match (&cfg.username, &cfg.password) {
            (Some(user), Some(password)) => credential_forms(user, password.expose()),
            _ => Vec::new(),
        };
        Ok(Email {
            transport: Some(builder.build()),
            runtime,
            permits: Arc::new(Semaphore::new(cfg.max_connections as usize)),
            from,
            max_connections: cfg.max_connections,
            timeout: cfg.timeout,
            relay,
            secrets,
        })
    }

    /// Sends `msg` to `to` (`address` or `Name <address>`). The receipt's reference is the
    /// relay's final reply (`250 2.0.0 Ok: queued as …`).
    pub async fn send(&self, to: &str, msg: &Message) -> Result<Receipt, SendError> {
        let what = format!("email via {}", self.relay);
        self.send_inner(to, msg).await.map_err(|e| e.context(&what).scrub(&self.secrets))
    }

    async fn send_inner(&self, to: &str, msg: &Message) -> Result<Receipt, SendError> {
        let email = self.build(to, msg)?;
        // One deadline for the whole send: waiting for a free connection, connecting, and
        // every command. lettre's per-command timeout alone lets a dripping relay hold a
        // delivery worker for as long as it likes.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let _permit = tokio::time::timeout_at(deadline, self.permits.acquire())
            .await
            .map_err(|_| SendError::Retryable {
                reason: format!(
                    "all {} connections were busy for {:?}",
                    self.max_connections, self.timeout
                ),
                retry_after: None,
            })?
            .expect("the semaphore is never closed");
        let transport = self.transport.as_ref().expect("taken only by Drop");
        let response = tokio::time::timeout_at(deadline, transport.send(email))
            .await
            .map_err(|_| SendError::Retryable {
                reason: format!("no answer from the relay within {:?}", self.timeout),
                retry_after: None,
            })?
            .map_err(|e| classify_smtp(&e))?;
        let lines: Vec<&str> = response.message().collect();
        Ok(Receipt { reference: Some(format!("{} {}", response.code(), lines.join(" "))) })
    }

    fn build(&self, to: &str, msg: &Message) -> Result<lettre::Message, SendError> {
        let to: Mailbox = to.parse().map_err(|e| SendError::Permanent {
            reason: format!("recipient `{}` is not an email address: {e}", to.escape_debug()),
        })?;
        // A subject is one header line and mail may not carry NUL or other controls (RFC
        // 5322): a sender's summary with a newline or a NUL must not reach the relay as such.
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(super::plain_text(&msg.subject, false).into_owned())
            .message_id(Some(message_id(&msg.idempotency_id)))
            // RFC 3834: keeps vacation responders and ticket systems from answering an alert.
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_string(),
            ));
        let text = super::plain_text(&msg.text, true).into_owned();
        let built = match &msg.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                text,
                super::plain_text(html, true).into_owned(),
            )),
            None => builder.singlepart(SinglePart::plain(text)),
        };
        built.map_err(|e| SendError::Permanent { reason: format!("cannot build the message: {e}") })
    }
}

/// `<{id}@tocsin>`, with any character a msg-id may not hold (RFC 5322 `dot-atom-text`)
/// replaced by `-`, so an odd idempotency id cannot break the header.
pub fn message_id(idempotency_id: &str) -> String {
    let local: String =
        idempotency_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
    let local = local.trim_matches('.');
    let local = if local.is_empty() { "-" } else { local };
    format!("<{local}@tocsin>")
}

/// Maps a lettre error onto the shared classification. lettre's `Display` prints the reply
/// code and the relay's text (`permanent error (550): mailbox unavailable`), never our
/// credentials; the caller scrubs regardless.
fn classify_smtp(err: &SmtpError) -> SendError {
    let reason = error_chain(err);
    if err.is_permanent() {
        SendError::Permanent { reason }
    } else if err.is_client() {
        // lettre refusing on our side: no common AUTH mechanism, an invalid envelope.
        SendError::Permanent { reason }
    } else {
        // Transient replies, connection, network, TLS, timeout, unparseable replies,
        // pool shutdown: all may clear by themselves.
        SendError::Retryable { reason, retry_after: None }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}

/// The password as it may appear on the wire: plain, and base64 as AUTH LOGIN and AUTH PLAIN
/// send it. A relay's error reply may echo the command it refused.
fn credential_forms(user: &str, password: &str) -> Vec<String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    vec![password.to_string(), b64.encode(password), b64.encode(format!("\0{user}\0{password}"))]
}

/// A relay on this host, where a clear-text password never crosses a network.
fn is_local(relay: &str) -> bool {
    relay.eq_ignore_ascii_case("localhost")
        || relay
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::net::{IpAddr, TcpListener};
    use std::sync::Mutex;

    use mailin_embedded::{Handler, Response, Server, response};

    use super::*;

    const PASSWORD: &str = "smtp-pa55word-never-shown";

    /// What the SMTP server received in one transaction.
    #[derive(Debug, Clone, Default)]
    struct Received {
        from: String,
        to: Vec<String>,
        data: String,
    }

    /// A mailin handler: records transactions; recipients whose local part is `busy` get a
    /// 450, `nobody` a 550.
    #[derive(Clone, Default)]
    struct Sink {
        done: Arc<Mutex<Vec<Received>>>,
        current: Received,
    }

    impl Handler for Sink {
        fn mail(&mut self, _ip: IpAddr, _domain: &str, from: &str) -> Response {
            self.current = Received { from: from.to_string(), ..Received::default() };
            response::OK
        }
        fn rcpt(&mut self, to: &str) -> Response {
            if to.starts_with("busy@") {
                return Response::custom(450, "mailbox busy, try later".to_string());
            }
            if to.starts_with("nobody@") {
                return response::NO_MAILBOX;
            }
            self.current.to.push(to.to_string());
            response::OK
        }
        fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
            self.current.data.push_str(&String::from_utf8_lossy(buf));
            Ok(())
        }
        fn data_end(&mut self) -> Response {
            self.done.lock().unwrap().push(std::mem::take(&mut self.current));
            Response::custom(250, "Ok: queued as TEST42".to_string())
        }
    }

    /// A real SMTP server (mailin) on 127.0.0.1, port 0, on its own threads. They end with
    /// the test process.
    fn smtp_server() -> (u16, Arc<Mutex<Vec<Received>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = Sink::default();
        let done = sink.done.clone();
        let mut server = Server::new(sink);
        server.with_name("sink.test").with_num_threads(4).with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        (port, done)
    }

    fn config(port: u16) -> EmailConfig {
        EmailConfig {
            relay: "127.0.0.1".into(),
            port: Some(port),
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: "Tocsin <tocsin@example.com>".into(),
            max_connections: 2,
            timeout: Duration::from_secs(2),
        }
    }

    fn message(html: Option<&str>) -> Message {
        Message {
            idempotency_id: "ntf-0192-abc".into(),
            subject: "[P1] Disk full on db-1".into(),
            text: "Disk / is 99% full.".into(),
            html: html.map(str::to_string),
            payload: serde_json::Value::Null,
        }
    }

    #[tokio::test]
    async fn control_characters_in_a_summary_stay_out_of_the_subject_and_text() {
        let (port, done) = smtp_server();
        let email = Email::new(config(port)).unwrap();
        let mut msg = message(None);
        msg.subject = "[P1] Disk\u{0} full on db-1\r\nBcc: evil@example.com".into();
        msg.text = "Disk /\u{0} is 99% full.\u{7}".into();
        email.send("oncall@example.com", &msg).await.unwrap();
        let done = done.lock().unwrap();
        let [mail] = done.as_slice() else { panic!("one message: {done:?}") };
        let data = &mail.data;
        assert!(data.contains("Subject: [P1] Disk full on db-1 Bcc: evil@example.com"), "{data}");
        assert!(!data.lines().any(|l| l.starts_with("Bcc:")), "{data}");
        assert!(data.contains("Disk / is 99% full."), "{data}");
        assert!(!data.contains('\u{0}') && !data.contains('\u{7}'), "{data:?}");
    }

    #[tokio::test]
    async fn a_real_smtp_server_receives_both_parts() {
        let (port, done) = smtp_server();
        let email = Email::new(config(port)).unwrap();
        let receipt = email
            .send("Ops On Call <oncall@example.com>", &message(Some("<p>Disk <b>99%</b></p>")))
            .await
            .unwrap();
        assert_eq!(receipt.reference.as_deref(), Some("250 Ok: queued as TEST42"));

        let done = done.lock().unwrap();
        let [mail] = done.as_slice() else { panic!("one message: {done:?}") };
        assert_eq!(mail.from, "tocsin@example.com");
        assert_eq!(mail.to, ["oncall@example.com"]);
        let data = &mail.data;
        assert!(data.contains("From: Tocsin <tocsin@example.com>"), "{data}");
        assert!(data.contains("To: \"Ops On Call\" <oncall@example.com>"), "{data}");
        assert!(data.contains("Subject: [P1] Disk full on db-1"), "{data}");
        assert!(data.contains("Message-ID: <ntf-0192-abc@tocsin>"), "{data}");
        assert!(data.contains("Auto-Submitted: auto-generated"), "{data}");
        assert!(data.contains("Content-Type: multipart/alternative"), "{data}");
        assert!(data.contains("Content-Type: text/plain; charset=utf-8"), "{data}");
        assert!(data.contains("Content-Type: text/html; charset=utf-8"), "{data}");
        assert!(data.contains("Disk / is 99% full."), "{data}");
        assert!(data.contains("<p>Disk <b>99%</b></p>"), "{data}");
    }

    #[tokio::test]
    async fn text_only_message_is_a_single_plain_part() {
        let (port, done) = smtp_server();
        let email = Email::new(config(port)).unwrap();
        email.send("oncall@example.com", &message(None)).await.unwrap();
        let done = done.lock().unwrap();
        let data = &done[0].data;
        assert!(!data.contains("multipart"), "{data}");
        assert!(data.contains("Content-Type: text/plain; charset=utf-8"), "{data}");
        assert!(data.contains("Disk / is 99% full."), "{data}");
    }

    #[tokio::test]
    async fn concurrent_sends_share_a_bounded_pool() {
        let (port, done) = smtp_server();
        let email = Arc::new(Email::new(config(port)).unwrap());
        let sends = (0..6).map(|i| {
            let email = email.clone();
            tokio::spawn(async move {
                let mut msg = message(None);
                msg.idempotency_id = format!("n-{i}");
                email.send("oncall@example.com", &msg).await
            })
        });
        for send in sends.collect::<Vec<_>>() {
            send.await.unwrap().unwrap();
        }
        assert_eq!(done.lock().unwrap().len(), 6);
    }

    #[tokio::test]
    async fn smtp_replies_map_to_the_shared_classification() {
        let (port, done) = smtp_server();
        let email = Email::new(config(port)).unwrap();

        let busy = email.send("busy@example.com", &message(None)).await.unwrap_err();
        assert!(matches!(busy, SendError::Retryable { .. }), "{busy:?}");
        assert!(busy.reason().contains("450"), "{busy}");

        let nobody = email.send("nobody@example.com", &message(None)).await.unwrap_err();
        assert!(matches!(nobody, SendError::Permanent { .. }), "{nobody:?}");
        assert!(nobody.reason().contains("550"), "{nobody}");

        let bad = email.send("not an address", &message(None)).await.unwrap_err();
        assert!(matches!(bad, SendError::Permanent { .. }), "{bad:?}");
        assert!(done.lock().unwrap().is_empty(), "nothing unexpected arrived");
    }

    #[tokio::test]
    async fn relay_down_or_dropping_is_retryable() {
        // Refused: a port nobody listens on.
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let email = Email::new(config(closed)).unwrap();
        let err = email.send("oncall@example.com", &message(None)).await.unwrap_err();
        assert!(matches!(err, SendError::Retryable { .. }), "{err:?}");

        // Accepts, then hangs up without a greeting.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                drop(stream);
            }
        });
        let email = Email::new(config(port)).unwrap();
        let err = email.send("oncall@example.com", &message(None)).await.unwrap_err();
        assert!(matches!(err, SendError::Retryable { .. }), "{err:?}");

        // Greets, then never answers EHLO: the deadline ends it.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for mut stream in listener.incoming().flatten() {
                let _ = stream.write_all(b"220 slow.test ESMTP\r\n");
                held.push(stream);
            }
        });
        let mut cfg = config(port);
        cfg.timeout = Duration::from_millis(500);
        let email = Email::new(cfg).unwrap();
        let started = std::time::Instant::now();
        let err = email.send("oncall@example.com", &message(None)).await.unwrap_err();
        assert!(matches!(err, SendError::Retryable { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn the_password_never_shows() {
        // A relay that rejects the login and echoes what it was given.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader};
            for stream in listener.incoming().flatten() {
                let mut out = stream.try_clone().unwrap();
                let _ = out.write_all(b"220 echo.test ESMTP\r\n");
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let reply = if line.starts_with("EHLO") {
                        "250-echo.test\r\n250 AUTH PLAIN LOGIN\r\n".to_string()
                    } else {
                        format!("535 5.7.8 bad credentials: {line} {PASSWORD}\r\n")
                    };
                    let _ = out.write_all(reply.as_bytes());
                }
            }
        });
        let mut cfg = config(port);
        cfg.username = Some("tocsin".into());
        cfg.password = Some(Secret::new(PASSWORD));
        let shown = format!("{cfg:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");

        let email = Email::new(cfg).unwrap();
        assert!(!format!("{email:?}").contains(PASSWORD));
        let err = email.send("oncall@example.com", &message(None)).await.unwrap_err();
        assert!(matches!(err, SendError::Permanent { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        for form in credential_forms("tocsin", PASSWORD) {
            assert!(!shown.contains(&form), "{form} in {shown}");
        }
        // The relay echoed the AUTH PLAIN line and the password: both were scrubbed.
        assert!(shown.contains("535") && shown.contains("AUTH PLAIN ***"), "{shown}");
    }

    #[test]
    fn built_and_dropped_outside_the_runtime_is_an_error_not_an_abort() {
        let err = Email::new(config(25)).unwrap_err();
        assert!(err.contains("Tokio runtime"), "{err}");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let email = runtime.block_on(async { Email::new(config(25)).unwrap() });
        drop(email);
    }

    #[tokio::test]
    async fn config_defaults_and_checks() {
        let cfg: EmailConfig = serde_json::from_value(serde_json::json!({
            "relay": "smtp.example.com",
            "from": "tocsin@example.com",
            "username": "u",
            "password": "p",
        }))
        .unwrap();
        assert_eq!(cfg.tls, SmtpTls::Starttls);
        assert_eq!(cfg.port, None);
        assert_eq!(cfg.tls.default_port(), 587);
        assert_eq!(cfg.max_connections, 4);
        assert_eq!(cfg.timeout, Duration::from_secs(30));
        Email::new(cfg.clone()).unwrap();

        let unknown = serde_json::from_value::<EmailConfig>(serde_json::json!({
            "relay": "r", "from": "a@b.c", "passwd": "x",
        }));
        assert!(unknown.is_err());

        let cleartext = EmailConfig { tls: SmtpTls::None, ..cfg.clone() };
        assert!(Email::new(cleartext).unwrap_err().contains("clear text"));
        let local = EmailConfig { tls: SmtpTls::None, relay: "localhost".into(), ..cfg.clone() };
        Email::new(local).unwrap();

        let bad =
            EmailConfig { from: "not a mailbox".into(), max_connections: 0, password: None, ..cfg };
        let err = Email::new(bad).unwrap_err();
        assert!(err.contains("from:"), "{err}");
        assert!(err.contains("max_connections"), "{err}");
        assert!(err.contains("both or neither"), "{err}");
    }

    #[test]
    fn message_ids_are_always_valid() {
        assert_eq!(message_id("0192f-ab"), "<0192f-ab@tocsin>");
        assert_eq!(message_id("a b<c>@d"), "<a-b-c--d@tocsin>");
        assert_eq!(message_id(""), "<-@tocsin>");
    }
}
