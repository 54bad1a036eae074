//! Long-running tasks that cannot die silently.
//!
//! A reader, janitor, acker or lease keeper that panics would leave its pool stalled with
//! `/healthz` still green: entries stay leased, nothing reads. weir's choice (README,
//! Guarantees): such a panic is logged at ERROR naming the task, the engine shuts down as on
//! SIGTERM (stop → drain → abandon; unacknowledged entries stay pending for the visibility
//! timeout), and [`crate::Engine::run`] returns [`crate::error::EngineError::TaskPanicked`],
//! which `weir run` turns into exit code 70 so a supervisor restarts the process. (A panic
//! inside a handler call only fails that entry: see `consumer/worker.rs`.)

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sync::lock;

/// The first task that panicked, and a token that fires when one did.
#[derive(Debug, Default)]
pub(crate) struct Fatal {
    fired: CancellationToken,
    first: Mutex<Option<(String, String)>>,
}

impl Fatal {
    /// Resolves when a guarded task has panicked.
    pub(crate) async fn fired(&self) {
        self.fired.cancelled().await;
    }

    /// The task that panicked first and its panic message, if one did.
    pub(crate) fn first(&self) -> Option<(String, String)> {
        lock(&self.first).clone()
    }

    fn record(&self, task: &str, message: String) {
        tracing::error!(task, panic = %message, "an engine task panicked; shutting down so a supervisor restarts the process (unacknowledged entries stay pending and are reclaimed)");
        lock(&self.first).get_or_insert_with(|| (task.to_string(), message));
        self.fired.cancel();
    }
}

/// A [`TaskTracker`] whose tasks report a panic to one [`Fatal`].
#[derive(Debug, Clone)]
pub(crate) struct Tasks {
    pub(crate) tracker: TaskTracker,
    fatal: Arc<Fatal>,
}

impl Tasks {
    pub(crate) fn new(fatal: Arc<Fatal>) -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            fatal,
        }
    }

    /// Spawns `task` (named `name` in the log should it panic) on the tracker.
    pub(crate) fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let fatal = self.fatal.clone();
        self.tracker.spawn(async move {
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                fatal.record(name, panic_message(&*panic));
            }
        });
    }
}

/// The text of a panic payload (`panic!("…")` gives a `&str` or a `String`).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_fires_fatal_with_its_name_and_message() {
        let fatal = Arc::new(Fatal::default());
        let tasks = Tasks::new(fatal.clone());
        tasks.spawn("quiet", async {});
        tasks.spawn("reader", async { panic!("boom at entry 7") });
        tokio::time::timeout(std::time::Duration::from_secs(5), fatal.fired())
            .await
            .expect("the panic fired the token");
        let (task, message) = fatal.first().expect("recorded");
        assert_eq!(task, "reader");
        assert_eq!(message, "boom at entry 7");
        tasks.tracker.close();
        tasks.tracker.wait().await;
    }
}
