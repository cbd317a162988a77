//! A real SMTP server (mailin) on 127.0.0.1 that keeps every mail it accepts.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone, Default)]
struct SmtpSink {
    done: Arc<Mutex<Vec<Mail>>>,
    current: Mail,
}

impl mailin_embedded::Handler for SmtpSink {
    fn mail(
        &mut self,
        _ip: std::net::IpAddr,
        _domain: &str,
        from: &str,
    ) -> mailin_embedded::Response {
        self.current = Mail { from: from.to_string(), ..Mail::default() };
        mailin_embedded::response::OK
    }
    fn rcpt(&mut self, to: &str) -> mailin_embedded::Response {
        self.current.to.push(to.to_string());
        mailin_embedded::response::OK
    }
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }
    fn data_end(&mut self) -> mailin_embedded::Response {
        self.done.lock().unwrap().push(std::mem::take(&mut self.current));
        mailin_embedded::Response::custom(250, "Ok: queued as TEST42".to_string())
    }
}

/// A real SMTP server on 127.0.0.1, port 0, on its own threads (they end with the process).
pub fn smtp_server() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = SmtpSink::default();
    let done = sink.done.clone();
    let mut server = mailin_embedded::Server::new(sink);
    server.with_name("sink.test").with_num_threads(8).with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (port, done)
}

/// A mail's top-level header (unfolded).
pub fn mail_header(data: &str, name: &str) -> String {
    let head = data.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ");
    let prefix = format!("{}:", name.to_ascii_lowercase());
    head.split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
        .unwrap_or_default()
}

/// The decoded body of the MIME part with this content type (7bit, quoted-printable or base64).
pub fn mail_part(data: &str, content_type: &str) -> Option<String> {
    let boundary = mail_header(data, "content-type")
        .split("boundary=")
        .nth(1)
        .map(|b| b.trim_matches('"').split(';').next().unwrap_or_default().trim_matches('"'))
        .map(str::to_string);
    // A mail that is not multipart is one part: its own headers and body.
    let parts: Vec<&str> = match &boundary {
        Some(b) => data.split(&format!("--{b}")).collect(),
        None => vec![data],
    };
    for part in parts {
        let Some((head, body)) = part.split_once("\r\n\r\n") else { continue };
        let head = head.to_ascii_lowercase();
        if !head.contains(&format!("content-type: {content_type}")) {
            continue;
        }
        let body = body.trim_end_matches("\r\n");
        return Some(if head.contains("content-transfer-encoding: base64") {
            String::from_utf8(BASE64.decode(body.replace("\r\n", "")).unwrap()).unwrap()
        } else if head.contains("content-transfer-encoding: quoted-printable") {
            decode_qp(body)
        } else {
            body.to_string()
        });
    }
    None
}

fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && let Some(hex) = joined.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).to_string()
}
