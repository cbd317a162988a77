//! Test harness: starts the real `tocsin` binary on port 0 with a temporary data directory and
//! talks to it over loopback, the way a user or a monitoring system would.
#![allow(dead_code)]

pub mod canary;
pub mod smtp;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const TOKEN: &str = "test-admin-token-0123456789";
pub const ALERTS_ONLY_TOKEN: &str = "test-alerts-only-token";
pub const VIEWER_TOKEN: &str = "test-viewer-token";
pub const ROUTING_KEY: &str = "test-routing-key-abcdef";

/// Dashboard users (name, token) of [`users_config`]: a responder with the `pii` permission
/// and a viewer without it.
pub const RESPONDER: (&str, &str) = ("rita", "responder-token-0123456789");
pub const VIEWER: (&str, &str) = ("vic", "viewer-token-0123456789");

/// A config with one source and three users: the admin (`TOKEN`), [`RESPONDER`] and
/// [`VIEWER`].
pub fn users_config() -> String {
    format!(
        r#"log_format: text
sources:
  - name: default
    token: ${{TOCSIN_TOKEN}}
    allow: [alerts, reports, events]
users:
  - name: admin
    token: ${{TOCSIN_TOKEN}}
    roles: [admin]
    permissions: [pii]
  - {{name: {}, token: {}, roles: [responder], permissions: [pii]}}
  - {{name: {}, token: {}, roles: [viewer]}}
"#,
        RESPONDER.0, RESPONDER.1, VIEWER.0, VIEWER.1
    )
}

/// A config with an all-powerful source and admin (`TOKEN`), a source that may send alerts
/// only, and a viewer. `extra` is appended verbatim (top-level keys).
pub fn config_yaml(extra: &str) -> String {
    format!(
        r#"
log_format: text
sources:
  - name: default
    token: ${{TOCSIN_TOKEN}}
    routing_key: {ROUTING_KEY}
    allow: [alerts, reports, events]
  - name: prometheus
    token: {ALERTS_ONLY_TOKEN}
    allow: [alerts]
users:
  - name: admin
    token: ${{TOCSIN_TOKEN}}
    roles: [admin]
    permissions: [pii]
  - name: dashboard
    token: {VIEWER_TOKEN}
    roles: [viewer]
{extra}
"#
    )
}

pub fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading fixture {}: {e}", path.display()))
}

/// How often [`eventually`] and [`eventually_blocking`] probe.
const POLL: Duration = Duration::from_millis(50);

/// A probe's answer to [`eventually`]: done, with a value, or not yet, with what it saw (for
/// the message on timeout). `Some`/`true`/`Ok` are done; `None`/`false` saw nothing worth
/// saying; `Err(e)` saw `e`.
pub trait Probe<T> {
    fn done(self) -> Result<T, String>;
}

impl<T> Probe<T> for Option<T> {
    fn done(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}

impl<T, E: std::fmt::Display> Probe<T> for Result<T, E> {
    fn done(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

impl Probe<()> for bool {
    fn done(self) -> Result<(), String> {
        if self { Ok(()) } else { Err(String::new()) }
    }
}

/// Probes every 50 ms until `probe` is done and returns its value; panics naming `what`, the
/// limit and the last thing the probe saw once `limit` has passed without it being done.
pub async fn eventually<T, P: Probe<T>>(
    what: &str,
    limit: Duration,
    probe: impl AsyncFnMut() -> P,
) -> T {
    match within(limit, probe).await {
        Ok(value) => value,
        Err(last) => panic!("timed out after {limit:?} waiting for {what}{}", saw(&last)),
    }
}

/// Like [`eventually`], with what the probe saw last as the error on timeout instead of a
/// panic (for a caller that gathers more evidence before it fails).
pub async fn within<T, P: Probe<T>>(
    limit: Duration,
    mut probe: impl AsyncFnMut() -> P,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        match probe().await.done() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// [`eventually`] for code that cannot await (the thread sleeps between probes).
pub fn eventually_blocking<T, P: Probe<T>>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> P,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe().done() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}{}", saw(&last))
            }
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

fn saw(last: &str) -> String {
    if last.is_empty() { String::new() } else { format!("; last seen: {last}") }
}

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    /// Where stderr went (stdout lines are copied beside it, `.stdout`), with [`Start::captured`].
    log: Option<PathBuf>,
    /// Keeps the temporary directory alive as long as the daemon (and its restarts) need it.
    _dir: Option<tempfile::TempDir>,
    pub client: reqwest::Client,
}

/// How to start a daemon: [`Daemon::with`] or [`Daemon::on`], then options, then
/// [`Start::start`]. The daemon runs `serve` on `127.0.0.1:0` with the admin token `TOKEN` and
/// `TOCSIN_LOG=warn`, unless an `env` says otherwise.
#[must_use = "nothing starts until .start()"]
pub struct Start {
    config: PathBuf,
    data_dir: PathBuf,
    dir: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    captured: bool,
    nofile: Option<u64>,
}

impl Start {
    /// An environment variable for the daemon (for example `TOCSIN_FAKE_CLOCK`).
    pub fn env(mut self, key: &str, value: &str) -> Start {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn envs(self, env: &[(&str, &str)]) -> Start {
        env.iter().fold(self, |start, (k, v)| start.env(k, v))
    }

    /// Everything the daemon writes to stderr goes to a file ([`Daemon::log`]), and its stdout
    /// lines are copied beside it (same name, `.stdout`), instead of being inherited. The file
    /// is the data directory's name with `.log` (`<tempdir>/data.log` with [`Daemon::with`]).
    pub fn captured(mut self) -> Start {
        self.captured = true;
        self
    }

    /// The daemon's descriptor limit (soft and hard), set by the shell that execs it (the crate
    /// forbids the unsafe code a `pre_exec` setrlimit would need).
    pub fn nofile(mut self, limit: u64) -> Start {
        self.nofile = Some(limit);
        self
    }

    /// Starts the daemon and waits (at most 30 s) for it to report its listen address.
    pub fn start(self) -> Daemon {
        let mut command = match self.nofile {
            Some(limit) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_tocsin"));
                sh
            }
            None => Command::new(env!("CARGO_BIN_EXE_tocsin")),
        };
        command
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("TOCSIN_LISTEN", "127.0.0.1:0")
            .env("TOCSIN_DATA_DIR", &self.data_dir)
            .env("TOCSIN_TOKEN", TOKEN)
            .env("TOCSIN_LOG", "warn");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let log = self.captured.then(|| self.data_dir.with_extension("log"));
        let (stderr, mut copy) = match &log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("capture file");
                let copy = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path.with_extension("stdout"))
                    .expect("stdout capture file");
                (Stdio::from(file), Some(copy))
            }
            None => (Stdio::inherit(), None),
        };
        let mut child =
            command.stdout(Stdio::piped()).stderr(stderr).spawn().expect("spawn tocsin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = copy.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if !sent && let Some(rest) = line.strip_prefix("tocsin listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                    sent = true;
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("tocsin did not report its listen address within 30 s");
            }
        };
        Daemon {
            child,
            addr,
            data_dir: self.data_dir,
            config: self.config,
            log,
            _dir: self.dir,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }
}

impl Daemon {
    /// Starts a daemon with `config_yaml(extra)` in a fresh temporary directory.
    pub fn start(extra: &str) -> Daemon {
        Daemon::with(&config_yaml(extra)).start()
    }

    /// A daemon with exactly this config (`<tempdir>/tocsin.yaml`) and an empty data directory
    /// (`<tempdir>/data`) in a fresh temporary directory that lives as long as the daemon.
    pub fn with(yaml: &str) -> Start {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("tocsin.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let mut start = Daemon::on(&config, &dir.path().join("data"));
        start.dir = Some(dir);
        start
    }

    /// A daemon on an existing config file and data directory.
    pub fn on(config: &Path, data_dir: &Path) -> Start {
        Start {
            config: config.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            dir: None,
            env: Vec::new(),
            captured: false,
            nofile: None,
        }
    }

    /// The file that gets the daemon's stderr (its stdout is beside it, `.stdout`).
    pub fn log(&self) -> &Path {
        self.log.as_deref().expect("the daemon was started .captured()")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a JSON body with a bearer token (or none); returns status, headers and JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: impl Into<Vec<u8>>) -> Reply {
        let mut req = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.into());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    /// The incident the first event of an ingest answer (which must be an acceptance: 202, or
    /// 200 on Alertmanager's route) joined, read back through the API (waiting up to 10 s).
    pub async fn incident_of(&self, reply: &Reply) -> u64 {
        assert!(matches!(reply.status, 200 | 202), "{}: {}", reply.status, reply.text);
        let event = reply.event_ids()[0].clone();
        let what = format!("event {event} to join an incident");
        eventually(&what, Duration::from_secs(10), async || {
            let e = self.get(&format!("/api/v1/events/{event}"), Some(TOKEN)).await;
            e.body["incident_id"].as_u64().ok_or(e.text)
        })
        .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.client.get(self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Reply::from(req.send().await.expect("request")).await
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, then wait for the exit (bounded) and return the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let what = "tocsin to exit after SIGTERM";
        eventually_blocking(what, Duration::from_secs(30), || {
            self.child.try_wait().expect("try_wait").map(|status| status.code())
        })
    }

    /// Starts the binary again on the same config and data directory, keeping the temp dir.
    pub fn restart(self) -> Daemon {
        self.restart_env(&[])
    }

    /// Like [`Daemon::restart`], with extra environment variables.
    pub fn restart_env(mut self, env: &[(&str, &str)]) -> Daemon {
        let _ = self.child.try_wait();
        let mut start = Daemon::on(&self.config, &self.data_dir).envs(env);
        start.dir = self._dir.take();
        start.start()
    }

    /// Moves the daemon's manual clock (`TOCSIN_FAKE_CLOCK`) forward, e.g. by `"5m"`.
    pub async fn advance(&self, by: &str) {
        let r = self.post("/-/clock", Some(TOKEN), format!(r#"{{"advance": "{by}"}}"#)).await;
        assert_eq!(r.status, 200, "advancing the clock: {}", r.text);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    async fn from(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, headers, body, text }
    }

    pub fn event_ids(&self) -> Vec<String> {
        self.body["event_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("no event_ids in {}", self.text))
            .iter()
            .map(|v| v.as_str().expect("id").to_string())
            .collect()
    }
}
