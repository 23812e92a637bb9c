//! Background tasks (LDAP pollers, the sync worker) run beside the HTTP
//! server, are told when the service stops, and are awaited before exit.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::watch;

/// A cloneable "stop now" signal for background tasks.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Resolves once shutdown has been requested.
    pub async fn requested(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Sleeps for `duration`; returns false if shutdown came first.
    pub async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.requested() => false,
        }
    }
}

/// The sending half of [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

pub type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A named background task, started with the shutdown signal it must obey.
pub struct Task {
    pub name: String,
    pub run: Box<dyn FnOnce(Shutdown) -> TaskFuture + Send>,
}

impl Task {
    pub fn new<F, Fut>(name: impl Into<String>, run: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self {
            name: name.into(),
            run: Box::new(move |shutdown| Box::pin(run(shutdown))),
        }
    }
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("name", &self.name).finish()
    }
}

/// Tasks that are running; [`RunningTasks::join`] waits for them to stop.
#[derive(Debug)]
pub struct RunningTasks {
    handles: Vec<(String, tokio::task::JoinHandle<()>)>,
}

pub fn spawn_all(tasks: Vec<Task>, shutdown: &Shutdown) -> RunningTasks {
    let handles = tasks
        .into_iter()
        .map(|task| {
            tracing::debug!(task = %task.name, "Starting background task.");
            let handle = tokio::spawn((task.run)(shutdown.clone()));
            (task.name, handle)
        })
        .collect();
    RunningTasks { handles }
}

impl RunningTasks {
    /// Waits up to `timeout` for every task; stragglers are aborted.
    pub async fn join(self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        for (name, mut handle) in self.handles {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(task = %name, error = %e, "Background task failed."),
                Err(_) => {
                    tracing::warn!(task = %name, "Background task did not stop in time; aborting.");
                    handle.abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test]
    async fn tasks_see_shutdown_and_are_joined() {
        let (trigger, shutdown) = shutdown_pair();
        let stopped = Arc::new(AtomicBool::new(false));
        let flag = stopped.clone();
        let running = spawn_all(
            vec![Task::new(
                "waiter",
                move |mut shutdown: Shutdown| async move {
                    shutdown.requested().await;
                    flag.store(true, Ordering::SeqCst);
                },
            )],
            &shutdown,
        );
        trigger.trigger();
        running.join(Duration::from_secs(5)).await;
        assert!(stopped.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_task_that_ignores_shutdown_is_aborted_after_the_timeout() {
        let (trigger, shutdown) = shutdown_pair();
        let running = spawn_all(
            vec![Task::new("stubborn", |_shutdown: Shutdown| async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            })],
            &shutdown,
        );
        trigger.trigger();
        let start = std::time::Instant::now();
        running.join(Duration::from_millis(100)).await;
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
