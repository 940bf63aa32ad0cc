//! Shutdown signalling: one trigger, many listeners.

use tokio::sync::watch;

/// Fires a shutdown once; every [`Shutdown`] handle sees it.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A cheap, cloneable handle that resolves once shutdown has been triggered.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A trigger and its first handle.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Signals every handle.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Whether shutdown has been triggered.
    pub fn is_fired(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has been triggered (or the trigger dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}
