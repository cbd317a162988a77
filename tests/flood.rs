//! A short, bounded flood (issue 7; the long one is `benches/flood.py`): far more than the
//! daemon will take, against a webhook that stalls every request, for 6 seconds.
//!
//! Two sources: `limited` (rate limit 5/s, burst 5) floods with single alerts over 4
//! connections and must get 429 with Retry-After for the excess; `bulk` floods with 100-alert
//! batches over 24 connections through a journal queue of 1 and must get 503 with Retry-After
//! when the queue is full. Pass: excess is refused with exactly those statuses (never a 5xx
//! otherwise, never a hang), `/-/healthy` answers 200 within 2 s, polled every 100 ms throughout, every 200 is stored, the notification queue depth is
//! reported, and peak resident memory (VmHWM) stays under 300 MiB.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, VIEWER_TOKEN};
use serde_json::json;
use tokio::io::AsyncReadExt;

const LIMITED: &str = "flood-limited-token-0123";
const BULK: &str = "flood-bulk-token-0123456";
const RSS_CAP_KIB: u64 = 300 * 1024;

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap().to_string();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A webhook that accepts connections and never answers (each held for 60 s).
async fn stalling_sink() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(60), async {
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                })
                .await;
            });
        }
    });
    base
}

#[derive(Default)]
struct Tally {
    accepted_events: AtomicU64,
    s200: AtomicU64,
    s429: AtomicU64,
    s503: AtomicU64,
    other: AtomicU64,
    errors: AtomicU64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
async fn a_flood_is_refused_with_429_and_503_while_health_checks_answer() {
    let sink = stalling_sink().await;
    let mut d = Daemon::with(&format!(
        r#"sources:
  - name: limited
    token: {LIMITED}
    allow: [alerts]
    rate_limit: {{per_second: 5, burst: 5}}
  - name: bulk
    token: {BULK}
    allow: [alerts]
users:
  - name: viewer
    token: {VIEWER_TOKEN}
    roles: [viewer]
journal:
  queue_capacity: 1
policies:
  - name: main
    notify: [{{webhook: slow}}]
default_policy: main
notifications:
  delivery: {{attempt_timeout: 2s}}
  webhooks:
    - {{name: slow, url: "{sink}/hook", allow_private: true, timeout: 2s}}
"#
    ))
    .start();
    let pid = d.child.id();
    let stop = Arc::new(AtomicBool::new(false));
    let tallies = [Arc::new(Tally::default()), Arc::new(Tally::default())];
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let mut flooders = Vec::new();
    for (t, (token, batch, conns)) in
        [(LIMITED, 1usize, 4), (BULK, 100usize, 24)].into_iter().enumerate()
    {
        for c in 0..conns {
            let (client, stop, tally, url) =
                (client.clone(), stop.clone(), tallies[t].clone(), d.url("/api/v2/alerts"));
            flooders.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let alerts: Vec<_> = (0..batch)
                        .map(|i| json!({"labels": {"alertname": "Flood", "c": c.to_string(), "n": n.to_string(), "i": i.to_string()}}))
                        .collect();
                    let sent = client
                        .post(&url)
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(serde_json::Value::Array(alerts).to_string())
                        .send()
                        .await;
                    let Ok(r) = sent else {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let status = r.status().as_u16();
                    let retry_after = r.headers().get("retry-after").is_some();
                    match status {
                        // Alertmanager's route answers 200, as Alertmanager does.
                        200 => {
                            tally.s200.fetch_add(1, Ordering::Relaxed);
                            tally.accepted_events.fetch_add(batch as u64, Ordering::Relaxed);
                        }
                        429 | 503 => {
                            assert!(retry_after, "{status} without Retry-After");
                            let counter = if status == 429 { &tally.s429 } else { &tally.s503 };
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            tally.other.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let _ = r.bytes().await;
                }
            }));
        }
    }

    // Health checks every 100 ms on their own connection, each within 2 s, for 6 s.
    let health = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let started = Instant::now();
    let mut checks = 0;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(6) {
        let t = Instant::now();
        let r = health.get(d.url("/-/healthy")).send().await;
        let took = t.elapsed();
        assert!(
            r.is_ok_and(|r| r.status().as_u16() == 200),
            "/-/healthy failed after {:?} of flood ({took:?})",
            started.elapsed()
        );
        slowest = slowest.max(took);
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.await.unwrap();
    }
    let hwm = vm_hwm_kib(pid);

    let [limited, bulk] = &tallies;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "flood 6 s: limited 200={} 429={} 503={} other={} errors={}; bulk 200={} ({} alerts) 429={} 503={} other={} errors={}; \
         {checks} health checks, slowest {slowest:?}; peak RSS {} MiB",
        get(&limited.s200),
        get(&limited.s429),
        get(&limited.s503),
        get(&limited.other),
        get(&limited.errors),
        get(&bulk.s200),
        get(&bulk.accepted_events),
        get(&bulk.s429),
        get(&bulk.s503),
        get(&bulk.other),
        get(&bulk.errors),
        hwm / 1024
    );
    for t in &tallies {
        assert_eq!(get(&t.other), 0, "statuses other than 200/429/503");
        assert_eq!(get(&t.errors), 0, "requests that got no answer");
    }
    assert!(get(&limited.s429) > 0, "the rate-limited source was never refused with 429");
    // Burst 100 plus 100/s over ~6 s, with a little slack for timing.
    assert!(get(&limited.s200) <= 5 + 5 * 7, "rate limit not enforced: {}", get(&limited.s200));
    assert!(get(&bulk.s503) > 0, "a journal queue of 1 under 24 connections never answered 503");
    assert!(get(&bulk.s200) > 0, "the bulk source got nothing through");
    assert!(
        hwm < RSS_CAP_KIB,
        "peak RSS {} MiB over the {} MiB cap",
        hwm / 1024,
        RSS_CAP_KIB / 1024
    );

    // Everything acknowledged is stored (each alert is distinct: one incident each).
    let accepted = get(&limited.accepted_events) + get(&bulk.accepted_events);
    let m = d.get("/metrics", None).await;
    let stored: u64 = m
        .text
        .lines()
        .filter(|l| l.starts_with("tocsin_events_accepted_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(stored, accepted, "the daemon counts exactly what was answered 200");
    let r = d.get("/api/v1/events?limit=1", Some(VIEWER_TOKEN)).await;
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1, "{}", r.text);
    // Notifications wait in the bounded outbox for the stalled sink; the depth is reported.
    assert!(m.text.contains("tocsin_notification_queue_depth"), "{}", m.text);

    // SIGTERM with that backlog: the sends in flight end (2 s attempt timeout), the rest stay
    // queued for the next start; the daemon does not work through the backlog first.
    let t = Instant::now();
    assert_eq!(d.terminate(), Some(0), "exit code after SIGTERM");
    assert!(t.elapsed() < Duration::from_secs(15), "SIGTERM took {:?} with a backlog", t.elapsed());
}
