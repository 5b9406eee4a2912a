//! A test hook: with `ROUTEVPN_TEST_STALL_ROUTING=<milliseconds>` set, each SIGUSR1 blocks
//! the routing task that long, as a burst of UPDATEs, route installs or a slow netlink
//! call can. The BFD tests show that BFD keeps its timing meanwhile. Unset: nothing.

use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use super::Input;

const ENV: &str = "ROUTEVPN_TEST_STALL_ROUTING";

/// Installs the SIGUSR1 handler when the variable is set.
pub(super) fn spawn(tx: mpsc::Sender<Input>) {
    let Some(ms) = std::env::var(ENV).ok().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    use tokio::signal::unix::{signal, SignalKind};
    let mut sig = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "{ENV}: cannot install the SIGUSR1 handler");
            return;
        }
    };
    warn!("{ENV} is set: SIGUSR1 stalls the routing task for {ms} ms (a test hook)");
    tokio::spawn(async move {
        while sig.recv().await.is_some() {
            if tx
                .send(Input::Stall(Duration::from_millis(ms)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
}

/// Blocks the calling task (and its worker thread) for `d`.
pub(super) fn stall(d: Duration) {
    warn!("test hook: routing task stalled for {d:?}");
    std::thread::sleep(d);
    warn!("test hook: routing task resumed");
}
