//! A real SMTP server (mailin) on 127.0.0.1 that keeps every mail it accepts.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

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
