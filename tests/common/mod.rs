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

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    /// Keeps the temporary directory alive as long as the daemon (and its restarts) need it.
    _dir: Option<tempfile::TempDir>,
    pub client: reqwest::Client,
}

impl Daemon {
    /// Starts a daemon with `config_yaml(extra)` in a fresh temporary directory.
    pub fn start(extra: &str) -> Daemon {
        Daemon::start_with(&config_yaml(extra))
    }

    /// Starts a daemon with exactly this config in a fresh temporary directory.
    pub fn start_with(yaml: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("tocsin.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let data_dir = dir.path().join("data");
        let mut d = Daemon::spawn(&config, &data_dir);
        d._dir = Some(dir);
        d
    }

    /// Starts a daemon with `config_yaml(extra)` and extra environment variables (for example
    /// `TOCSIN_FAKE_CLOCK`) in a fresh temporary directory.
    pub fn start_env(extra: &str, env: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("tocsin.yaml");
        std::fs::write(&config, config_yaml(extra)).expect("write config");
        let data_dir = dir.path().join("data");
        let mut d = Daemon::spawn_env(&config, &data_dir, env);
        d._dir = Some(dir);
        d
    }

    /// Starts the binary on an existing config and data directory (used to restart).
    pub fn spawn(config: &Path, data_dir: &Path) -> Daemon {
        Daemon::spawn_env(config, data_dir, &[])
    }

    pub fn spawn_env(config: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn_captured(config, data_dir, env, None)
    }

    /// Starts a daemon with exactly this config and environment, with everything it writes to
    /// stderr and stdout captured in `<tempdir>/daemon.log` (returned) instead of inherited.
    pub fn start_captured(yaml: &str, env: &[(&str, &str)]) -> (Daemon, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("tocsin.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let data_dir = dir.path().join("data");
        let log = dir.path().join("daemon.log");
        let mut d = Daemon::spawn_captured(&config, &data_dir, env, Some(&log));
        d._dir = Some(dir);
        (d, log)
    }

    /// Like [`Daemon::start_captured`], with the daemon's descriptor limit (soft and hard) set
    /// to `nofile` by the shell that execs it (the crate forbids the unsafe code a `pre_exec`
    /// setrlimit would need).
    pub fn start_limited(yaml: &str, env: &[(&str, &str)], nofile: u64) -> (Daemon, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("tocsin.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let data_dir = dir.path().join("data");
        let log = dir.path().join("daemon.log");
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_tocsin"));
        let mut d = Daemon::spawn_command(command, &config, &data_dir, env, Some(&log));
        d._dir = Some(dir);
        (d, log)
    }

    /// `capture`: a file that gets the daemon's stderr, and its stdout lines appended after.
    pub fn spawn_captured(
        config: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
        capture: Option<&Path>,
    ) -> Daemon {
        let command = Command::new(env!("CARGO_BIN_EXE_tocsin"));
        Daemon::spawn_command(command, config, data_dir, env, capture)
    }

    /// Starts `command` (the binary, or a wrapper that execs it with the arguments it gets)
    /// as `serve` on this config and data directory.
    fn spawn_command(
        mut command: Command,
        config: &Path,
        data_dir: &Path,
        env: &[(&str, &str)],
        capture: Option<&Path>,
    ) -> Daemon {
        command
            .args(["serve", "--config"])
            .arg(config)
            .env("TOCSIN_LISTEN", "127.0.0.1:0")
            .env("TOCSIN_DATA_DIR", data_dir)
            .env("TOCSIN_TOKEN", TOKEN)
            .env("TOCSIN_LOG", "warn");
        for (k, v) in env {
            command.env(k, v);
        }
        let (stderr, mut copy) = match capture {
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
            data_dir: data_dir.to_path_buf(),
            config: config.to_path_buf(),
            _dir: None,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
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
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let e = self.get(&format!("/api/v1/events/{event}"), Some(TOKEN)).await;
            if let Some(i) = e.body["incident_id"].as_u64() {
                return i;
            }
            assert!(Instant::now() < deadline, "event {event} joined no incident: {}", e.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "tocsin did not exit within 30 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the binary again on the same config and data directory, keeping the temp dir.
    pub fn restart(self) -> Daemon {
        self.restart_env(&[])
    }

    /// Like [`Daemon::restart`], with extra environment variables.
    pub fn restart_env(mut self, env: &[(&str, &str)]) -> Daemon {
        let _ = self.child.try_wait();
        let dir = self._dir.take();
        let mut d = Daemon::spawn_env(&self.config, &self.data_dir, env);
        d._dir = dir;
        d
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
