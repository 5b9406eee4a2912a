//! systemd's notification protocol (sd_notify(3)) for `Type=notify`: READY=1 once the
//! control socket listens and every `start = true` tunnel has been initiated, STATUS=
//! lines when the count of tunnels up or BGP sessions changes, WATCHDOG=1 at half of
//! WATCHDOG_USEC from the event loop itself (a stuck loop gets restarted), RELOADING=1
//! around a reload and STOPPING=1 on shutdown. Without NOTIFY_SOCKET it does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::debug;

use super::event_loop::Daemon;

pub(super) struct Notifier {
    /// NOTIFY_SOCKET is set: we run under systemd (or a test standing in for it).
    enabled: bool,
    /// The last STATUS= sent, so it is only sent on change.
    last_status: String,
    /// Half of WATCHDOG_USEC (sd_watchdog_enabled(3) recommends pinging at that rate).
    watchdog: Option<Duration>,
    next_watchdog: Option<Instant>,
}

impl Notifier {
    /// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once, at start-up.
    pub(super) fn from_env(now: Instant) -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog = sd_notify::watchdog_enabled()
            .filter(|d| enabled && !d.is_zero())
            .map(|d| d / 2);
        Notifier {
            enabled,
            last_status: String::new(),
            watchdog,
            next_watchdog: watchdog.map(|w| now + w),
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        // systemd being gone must not take the daemon down with it.
        if let Err(e) = sd_notify::notify(states) {
            debug!(error = %e, "sd_notify failed");
        }
    }

    /// READY=1 with the current STATUS=.
    pub(super) fn ready(&mut self, status: String) {
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
        self.last_status = status;
    }

    /// STATUS=, only when it differs from the last one sent.
    pub(super) fn status(&mut self, status: String) {
        if status != self.last_status {
            self.send(&[NotifyState::Status(&status)]);
            self.last_status = status;
        }
    }

    /// RELOADING=1 (with MONOTONIC_USEC, which systemd 253+ wants alongside it).
    pub(super) fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(t) => self.send(&[NotifyState::Reloading, t]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub(super) fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// When the loop must wake up for the next WATCHDOG=1.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.next_watchdog
    }

    /// WATCHDOG=1 if it is due.
    pub(super) fn tick(&mut self, now: Instant) {
        if let (Some(due), Some(every)) = (self.next_watchdog, self.watchdog) {
            if now >= due {
                self.send(&[NotifyState::Watchdog]);
                self.next_watchdog = Some(now + every);
            }
        }
    }
}

impl Daemon {
    /// `3/4 tunnels up, 1 connecting, 2 BGP sessions established` (connecting only when
    /// some are, the BGP part only with `[bgp]`).
    pub(super) fn service_status(&self) -> String {
        let now = Instant::now();
        let up = self.tunnels.iter().filter(|t| t.link_up).count();
        let connecting = self
            .tunnels
            .iter()
            .filter(|t| !t.link_up && !t.session.status(now).ike_sas.is_empty())
            .count();
        let mut s = format!("{up}/{} tunnels up", self.tunnels.len());
        if connecting > 0 {
            s.push_str(&format!(", {connecting} connecting"));
        }
        if let Some(r) = &self.routing {
            let n = r.established();
            s.push_str(&format!(
                ", {n} BGP session{} established",
                if n == 1 { "" } else { "s" }
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// NOTIFY_SOCKET is process-wide: the tests that set it take turns.
    static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn recv_all(sock: &UnixDatagram) -> Vec<String> {
        sock.set_nonblocking(true).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }

    #[test]
    fn messages_in_order_and_status_only_on_change() {
        let _g = ENV.lock().unwrap_or_else(|p| p.into_inner());
        let dir = std::env::temp_dir().join(format!("routevpn-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        // The ENV lock serialises the tests touching these variables; nothing else in
        // this test binary reads them.
        std::env::set_var("NOTIFY_SOCKET", &path);
        std::env::set_var("WATCHDOG_USEC", "2000000");
        std::env::remove_var("WATCHDOG_PID");
        let t0 = Instant::now();
        let mut n = Notifier::from_env(t0);
        std::env::remove_var("WATCHDOG_USEC");
        assert_eq!(
            n.deadline(),
            Some(t0 + Duration::from_secs(1)),
            "half of 2 s"
        );
        n.ready("0/1 tunnels up".into());
        n.status("0/1 tunnels up".into()); // unchanged: not sent
        n.tick(t0 + Duration::from_millis(500)); // not due
        n.tick(t0 + Duration::from_secs(1));
        n.status("1/1 tunnels up".into());
        n.reloading();
        n.stopping();
        std::env::remove_var("NOTIFY_SOCKET");
        let got = recv_all(&sock);
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], "READY=1\nSTATUS=0/1 tunnels up\n");
        assert_eq!(got[1], "WATCHDOG=1\n");
        assert_eq!(got[2], "STATUS=1/1 tunnels up\n");
        assert!(
            got[3].starts_with("RELOADING=1\nMONOTONIC_USEC="),
            "{got:?}"
        );
        assert_eq!(got[4], "STOPPING=1\n");
        assert_eq!(n.deadline(), Some(t0 + Duration::from_secs(2)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_notify_socket_nothing_is_due() {
        let _g = ENV.lock().unwrap_or_else(|p| p.into_inner());
        // WATCHDOG_USEC alone (no NOTIFY_SOCKET) must not schedule pings.
        std::env::remove_var("NOTIFY_SOCKET");
        std::env::set_var("WATCHDOG_USEC", "2000000");
        let n = Notifier::from_env(Instant::now());
        std::env::remove_var("WATCHDOG_USEC");
        assert_eq!(n.deadline(), None);
    }
}
