//! The log channel: every notification appended to a JSON-lines file, one object per line:
//! `{"at", "channel", "to", "idempotency_id", "subject", "text", "payload"}`.
//!
//! The embedded default config routes notifications here, so a newcomer sees the whole
//! pipeline work with no mail server or gateway (`tail -f notifications.jsonl`). The file is
//! created `0600` (messages may name customers and systems), its directories as needed, and
//! each line is written with one `write` and flushed, so a crash leaves whole lines.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Channel, Message, Receipt, SendError};

/// ```yaml
/// log: { path: notifications.jsonl }   # relative paths are under data_dir (config resolves it)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub path: PathBuf,
}

/// An open notification log.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    /// std Mutex, not tokio's: held only for one `write_all` + `flush`, never across an
    /// await. It keeps lines from concurrent delivery workers whole.
    file: Mutex<File>,
}

/// One line of the log.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct LogLine {
    /// RFC 3339, UTC.
    pub at: String,
    /// The channel the notification was for; `log` when sent to the log channel itself.
    pub channel: Channel,
    pub to: String,
    pub idempotency_id: String,
    pub subject: String,
    pub text: String,
    #[serde(default)]
    pub payload: serde_json::Value,
}

impl LogFile {
    /// Opens (creating) the file for appending, mode 0600, parent directories 0700.
    pub fn open(cfg: &LogConfig) -> Result<LogFile, String> {
        let path = cfg.path.clone();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("cannot create the directory {}: {e}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open {} for appending: {e}", path.display()))?;
        Ok(LogFile { path, file: Mutex::new(file) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `msg` as sent on the log channel to `to` at `at` (the daemon's clock, which a
    /// manual clock drives in tests and rehearsals). Blocking but short (one small write);
    /// callers on the runtime may call it directly.
    pub fn send(&self, to: &str, msg: &Message, at: jiff::Timestamp) -> Result<Receipt, SendError> {
        self.record(Channel::Log, to, msg, at)
    }

    /// Appends `msg` as meant for `channel`, for a config that logs instead of delivering.
    pub fn record(
        &self,
        channel: Channel,
        to: &str,
        msg: &Message,
        at: jiff::Timestamp,
    ) -> Result<Receipt, SendError> {
        let line = LogLine {
            at: at.to_string(),
            channel,
            to: to.to_string(),
            idempotency_id: msg.idempotency_id.clone(),
            subject: msg.subject.clone(),
            text: msg.text.clone(),
            payload: msg.payload.clone(),
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|e| SendError::Permanent {
            reason: format!("cannot encode the log line: {e}"),
        })?;
        bytes.push(b'\n');
        // A panic elsewhere while holding the lock cannot have left half a line (the write is
        // one call), so a poisoned lock is still a good file.
        let mut file = self.file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.write_all(&bytes).and_then(|()| file.flush()).map_err(|e| SendError::Retryable {
            // A full disk or a quota may clear.
            reason: format!("log {}: cannot append: {e}", self.path.display()),
            retry_after: None,
        })?;
        Ok(Receipt { reference: None })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use super::*;

    fn message(id: &str) -> Message {
        Message {
            idempotency_id: id.into(),
            subject: "[P2] api latency".into(),
            text: "p99 above 2s\nsince 10:02".into(),
            html: Some("<p>ignored</p>".into()),
            payload: serde_json::json!({ "incident": 3 }),
        }
    }

    fn lines(path: &Path) -> Vec<LogLine> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn appends_one_private_json_line_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/notifications.jsonl");
        let log = LogFile::open(&LogConfig { path: path.clone() }).unwrap();
        log.send("alice", &message("n-1"), jiff::Timestamp::now()).unwrap();
        log.record(Channel::Sms, "+15551234567", &message("n-2"), jiff::Timestamp::now()).unwrap();

        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let got = lines(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].channel, Channel::Log);
        assert_eq!(got[0].to, "alice");
        assert_eq!(got[0].idempotency_id, "n-1");
        assert_eq!(got[0].subject, "[P2] api latency");
        assert_eq!(got[0].text, "p99 above 2s\nsince 10:02");
        assert_eq!(got[0].payload, serde_json::json!({ "incident": 3 }));
        assert!(got[0].at.parse::<jiff::Timestamp>().is_ok(), "{}", got[0].at);
        assert_eq!(got[1].channel, Channel::Sms);

        // Reopening appends; nothing is truncated.
        drop(log);
        let log = LogFile::open(&LogConfig { path: path.clone() }).unwrap();
        log.send("bob", &message("n-3"), jiff::Timestamp::now()).unwrap();
        assert_eq!(lines(&path).len(), 3);
    }

    #[test]
    fn concurrent_writers_keep_lines_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let log = Arc::new(LogFile::open(&LogConfig { path: path.clone() }).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        log.send("x", &message(&format!("{t}-{i}")), jiff::Timestamp::now())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(lines(&path).len(), 400);
    }

    #[test]
    fn unopenable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = LogFile::open(&LogConfig { path: dir.path().to_path_buf() }).unwrap_err();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }
}
