//! Conservation under `kill -9` (issue 7): a load driver posts uniquely identified events over
//! loopback while the real daemon is SIGKILLed at random moments and restarted on the same data
//! directory; a webhook receiver and a real SMTP server (mailin) record what arrives.
//!
//! Pass: the daemon restarts every time; every event answered 202 is readable afterwards with
//! its incident; every notification of those incidents reaches its sink at least once and none
//! is dead-lettered; every arrival belongs to a notification the daemon knows (a duplicate is a
//! repeat of the same idempotency id, never a second notification); duplicates are counted.
//!
//! `cargo test --test crash` runs 5 kills (the CI version, well under a minute).
//! The long run: `TOCSIN_CRASH_ROUNDS=20 cargo test --release --test crash -- --nocapture`.
//! `TOCSIN_CRASH_SEED=N` replays a run's kill moments (the seed is printed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Daemon, TOKEN, VIEWER_TOKEN};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// xorshift64*: enough to spread kill moments, and replayable from a printed seed. Written here
/// rather than pulling in `rand`: five lines, no API churn.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// Sinks: they live in the test process, so they outlive every daemon
// ---------------------------------------------------------------------------------------------

/// A webhook receiver: records the `webhook-id` of every request and answers 200.
async fn webhook_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Head, then as much body as Content-Length says.
                let (head_end, length) = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                while buf.len() < head_end + length {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let id = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("webhook-id").then(|| value.trim().to_string())
                    })
                    .unwrap_or_default();
                log.lock().unwrap().push(id);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, seen)
}

#[derive(Clone, Default)]
struct SmtpSink {
    done: Arc<Mutex<Vec<String>>>,
    data: String,
}

impl mailin_embedded::Handler for SmtpSink {
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }
    fn data_end(&mut self) -> mailin_embedded::Response {
        let data = std::mem::take(&mut self.data);
        let head = data.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ");
        let id = head
            .split("\r\n")
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("message-id").then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        self.done.lock().unwrap().push(id);
        mailin_embedded::response::OK
    }
}

/// A real SMTP server on 127.0.0.1 (its threads end with the process); records Message-IDs.
fn smtp_sink() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = SmtpSink::default();
    let done = sink.done.clone();
    let mut server = mailin_embedded::Server::new(sink);
    server.with_name("sink.test").with_num_threads(4).with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (port, done)
}

// ---------------------------------------------------------------------------------------------
// The load driver
// ---------------------------------------------------------------------------------------------

/// Posts one canonical event per request, each with a unique dedup key, until `stop`; returns
/// the ids of the events answered 202. Anything else (refused, reset, 503) is simply not
/// acknowledged.
async fn drive(base: String, round: u64, worker: u64, stop: Arc<AtomicBool>) -> (Vec<String>, u64) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut acked = Vec::new();
    let mut failed = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let event = |part: u64| {
            json!({
                "summary": format!("crash round {round} worker {worker} #{n}.{part}"),
                "dedup_key": format!("crash-{round}-{worker}-{n}-{part}"),
                "severity": "critical",
                "labels": {"round": round.to_string()},
            })
        };
        // Worker 0 sends batches of three (stored as one row of consecutive events), the
        // others single events.
        let body = if worker == 0 { json!([event(0), event(1), event(2)]) } else { event(0) };
        let sent = client
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 202 => match r.json::<Value>().await {
                Ok(v) => {
                    let ids = v["event_ids"].as_array().expect("event_ids");
                    assert_eq!(ids.len(), if worker == 0 { 3 } else { 1 }, "{v}");
                    acked.extend(ids.iter().map(|id| id.as_str().unwrap().to_string()));
                }
                // The 202 head arrived but the body did not: not an acknowledgement we saw.
                Err(_) => failed += 1,
            },
            Ok(r) => {
                assert!(
                    r.status().as_u16() == 503 || r.status().as_u16() == 429,
                    "unexpected answer {}",
                    r.status()
                );
                failed += 1;
            }
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (acked, failed)
}

/// Every notification in the outbox, following `next`.
async fn all_notifications(d: &Daemon) -> Vec<Value> {
    let mut out = Vec::new();
    let mut before = String::new();
    loop {
        let r =
            d.get(&format!("/api/v1/notifications?limit=1000{before}"), Some(VIEWER_TOKEN)).await;
        assert_eq!(r.status, 200, "{}", r.text);
        out.extend(r.body["notifications"].as_array().unwrap().iter().cloned());
        match r.body["next"].as_u64() {
            Some(next) => before = format!("&before={next}"),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn acknowledged_events_and_their_notifications_survive_repeated_kill_9() {
    let rounds = env_u64("TOCSIN_CRASH_ROUNDS").unwrap_or(5);
    let seed = env_u64("TOCSIN_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
    }) | 1;
    println!("crash: {rounds} rounds, seed {seed} (TOCSIN_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let started = Instant::now();

    let (hook_base, hooks) = webhook_sink().await;
    let (smtp_port, mails) = smtp_sink();
    let mut d = Daemon::start(&format!(
        r#"people:
  - {{id: ana, name: Ana, email: ana@example.com}}
policies:
  - name: main
    notify: [{{person: ana, channels: [email]}}, {{webhook: sink}}]
default_policy: main
notifications:
  workers: 8
  delivery: {{initial_backoff: 100ms, max_backoff: 1s, attempt_timeout: 2s, lease: 2s, max_attempts: 1000, max_age: 1h}}
  rate_limits: {{email: {{}}, sms: {{}}, webhook: {{}}, log: {{}}}}
  email: {{relay: 127.0.0.1, port: {smtp_port}, tls: none, from: "tocsin@example.com", timeout: 5s}}
  webhooks:
    - {{name: sink, url: "{hook_base}/hook", allow_private: true, timeout: 5s}}
"#
    ));

    let mut acked: Vec<String> = Vec::new();
    let mut unacked = 0u64;
    for round in 1..=rounds {
        assert_eq!(d.get("/-/ready", None).await.status, 200, "round {round}: not ready");
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| tokio::spawn(drive(format!("http://{}", d.addr), round, w, stop.clone())))
            .collect();
        // Killed at a random moment while requests, commits and sends are in flight.
        let after = rng.between(300, 1500);
        tokio::time::sleep(Duration::from_millis(after)).await;
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut this_round = 0;
        for w in workers {
            let (ids, failed) = w.await.unwrap();
            this_round += ids.len();
            acked.extend(ids);
            unacked += failed;
        }
        println!("round {round}: killed after {after} ms; {this_round} events acknowledged");
        // The daemon must come back on the same data directory every time (spawn panics if it
        // does not report its address within 30 s).
        d = d.restart();
    }
    assert!(!acked.is_empty(), "the driver got no 202 at all");

    // 1. Every acknowledged event is stored and joined an incident (its own: keys are unique).
    let mut incidents = BTreeSet::new();
    for id in &acked {
        let r = d.get(&format!("/api/v1/events/{id}"), Some(VIEWER_TOKEN)).await;
        assert_eq!(r.status, 200, "acknowledged event {id} lost: {}", r.text);
        let incident = r.body["incident_id"].as_u64();
        let incident = incident.unwrap_or_else(|| panic!("event {id} has no incident: {}", r.text));
        assert!(incidents.insert(incident), "two unique events share incident {incident}");
    }
    for id in &incidents {
        let r = d.get(&format!("/api/v1/incidents/{id}"), Some(VIEWER_TOKEN)).await;
        assert_eq!(r.status, 200, "incident {id}: {}", r.text);
    }

    // 2. Every notification reaches its sink at least once; none is dead-lettered. The window
    // grows with the outbox (the faster ingest is, the more each round queues): 60 s, plus
    // 20 ms per notification, i.e. at least 50 deliveries a second on a loaded machine.
    let drain = Instant::now();
    let mut deadline = None;
    let outbox = loop {
        let outbox = all_notifications(&d).await;
        let window = Duration::from_secs(60) + Duration::from_millis(20) * outbox.len() as u32;
        let deadline = *deadline.get_or_insert(drain + window);
        let dead: Vec<&Value> = outbox.iter().filter(|n| n["state"] == "dead").collect();
        assert!(dead.is_empty(), "dead letters: {dead:#?}");
        if outbox.iter().all(|n| n["state"] == "delivered") {
            break outbox;
        }
        let pending: Vec<&Value> = outbox.iter().filter(|n| n["state"] != "delivered").collect();
        if Instant::now() >= deadline {
            let window = deadline - drain;
            let mut states: BTreeMap<String, usize> = BTreeMap::new();
            for n in &pending {
                *states.entry(format!("{} {}", n["channel"], n["state"])).or_default() += 1;
            }
            panic!(
                "{} notifications still undelivered after {window:.0?}, by channel and state: \
                 {states:?}; the first: {:#}",
                pending.len(),
                pending[0]
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let drained = drain.elapsed();
    let mut per_incident: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    for n in &outbox {
        per_incident.entry(n["incident_id"].as_u64().unwrap()).or_default().push(n);
    }
    let hooks = hooks.lock().unwrap().clone();
    let mails = mails.lock().unwrap().clone();
    let hook_ids: BTreeSet<&str> = hooks.iter().map(String::as_str).collect();
    let mail_ids: BTreeSet<String> = mails
        .iter()
        .map(|m| m.trim_matches(['<', '>']).trim_end_matches("@tocsin").into())
        .collect();
    for id in &incidents {
        let list = per_incident.get(id).map(Vec::as_slice).unwrap_or_default();
        let channels: BTreeSet<&str> =
            list.iter().map(|n| n["channel"].as_str().unwrap()).collect();
        assert_eq!(list.len(), 2, "incident {id}: one email and one webhook, no more: {list:#?}");
        assert_eq!(channels, BTreeSet::from(["email", "webhook"]), "incident {id}");
        for n in list {
            let wid = n["idempotency_id"].as_str().unwrap();
            let arrived = match n["channel"].as_str().unwrap() {
                "webhook" => hook_ids.contains(wid),
                _ => mail_ids.contains(wid),
            };
            assert!(arrived, "incident {id}: notification {wid} never reached its sink: {n}");
        }
    }

    // 3. Every arrival is a notification the daemon knows: a repeat carries the same id.
    let known: BTreeSet<&str> =
        outbox.iter().map(|n| n["idempotency_id"].as_str().unwrap()).collect();
    for id in &hook_ids {
        assert!(known.contains(id), "webhook arrival with unknown webhook-id {id:?}");
    }
    for id in &mail_ids {
        assert!(known.contains(id.as_str()), "mail with unknown Message-ID {id:?}");
    }
    let hook_dups = hooks.len() - hook_ids.len();
    let mail_dups = mails.len() - mail_ids.len();
    println!(
        "crash: {rounds} kills in {:.1?}; {} events acknowledged ({unacked} requests not), \
         {} incidents, {} notifications in the outbox, all delivered {:.1?} after the \
         events were checked; webhook arrivals {} ({hook_dups} duplicates), mails {} ({mail_dups} duplicates)",
        started.elapsed(),
        acked.len(),
        incidents.len(),
        outbox.len(),
        drained,
        hooks.len(),
        mails.len(),
    );
}
