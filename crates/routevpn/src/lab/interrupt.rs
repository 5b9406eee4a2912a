//! SIGINT/SIGTERM/SIGHUP handling: a flag every wait loop checks, and the interruptible sleep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe. Every wait loop checks the flag.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub(super) fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_signal` is a valid `extern "C" fn(c_int)` that lives for the whole
        // program and only stores to a static atomic, which is async-signal-safe, so it may
        // interrupt any thread at any point.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

pub(super) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps `d`, waking early with an error on SIGINT/SIGTERM.
pub(super) fn nap(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if interrupted() {
            bail!("interrupted");
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nap_sleeps() {
        let t = Instant::now();
        nap(Duration::from_millis(30)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
