//! The daemon's rule threads: where ingest scores events.
//!
//! Not the async workers: a request's rules may use their whole CPU budget (and a native
//! function a little more), and with as many workers as cores, a few such requests at once
//! would leave nobody to answer `/-/healthy` or the next sender. Not tokio's blocking pool
//! either: its threads have the default 2 MiB stack, and rules need a rule thread's
//! ([`super::stack`]). One thread per core, each with its own remembered outcomes (the memo is
//! per thread), fed through a bounded queue: when it is full, ingest answers 503 with
//! `Retry-After` instead of queueing without limit.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, LazyLock, Mutex};

use super::stack::STACK_SIZE;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs (a request's events) waiting for a rule thread.
const QUEUE: usize = 1024;

static THREADS: LazyLock<SyncSender<Job>> = LazyLock::new(|| {
    let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    let n = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 16);
    for i in 0..n {
        let rx = Arc::clone(&rx);
        let spawned = std::thread::Builder::new()
            .name(format!("tocsin-rules-{i}"))
            .stack_size(STACK_SIZE)
            .spawn(move || work(&rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a rule thread");
        }
    }
    tx
});

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting: whoever holds it takes the next job.
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else { return };
        // A panic is the job's (its caller sees the answer channel close), not the thread's.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// The rule threads could not take the job now.
#[derive(Debug, thiserror::Error)]
pub enum Busy {
    #[error("rule evaluation is overloaded; retry")]
    Full,
    #[error("rule evaluation failed: {0}")]
    Lost(String),
}

/// Runs `f` on a rule thread and waits for it without blocking the async worker.
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    match THREADS.try_send(job) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => return Err(Busy::Full),
        Err(TrySendError::Disconnected(_)) => return Err(Busy::Lost("no rule thread".into())),
    }
    rx.await.map_err(|_| Busy::Lost("the job panicked".into()))
}
