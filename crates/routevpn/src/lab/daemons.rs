//! The routevpn daemons the lab starts (one per router), watches and stops by PID.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::sys;

use super::topology::{self, router};

/// The daemons this run started; stopped by PID when dropped (unless kept).
pub(super) struct Daemons {
    pub(super) children: Vec<(char, Child)>,
    pub(super) keep: bool,
}

impl Daemons {
    pub(super) fn spawn(&mut self, r: &topology::Router) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating the routevpn executable")?;
        let log = File::create(r.log_path())
            .with_context(|| format!("creating {}", r.log_path().display()))?;
        let child = testbed::ns::command(&r.ns(), &[])
            .arg(&exe)
            .arg("daemon")
            .arg("--config")
            .arg(r.config_path())
            .env("NO_COLOR", "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a terminal's Ctrl-C reaches only the lab, which then
            // stops the daemons itself (and a kept lab survives the shell).
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the daemon of router {}", r.letter))?;
        // `ip netns exec` execs the daemon, so this is the daemon's PID.
        std::fs::write(r.pid_path(), format!("{}\n", child.id()))?;
        self.children.push((r.letter, child));
        Ok(())
    }

    /// Error if a daemon has exited.
    pub(super) fn check_alive(&mut self) -> anyhow::Result<()> {
        for (letter, c) in &mut self.children {
            if let Some(st) = c.try_wait()? {
                let r = router(*letter);
                bail!(
                    "the daemon of router {letter} exited ({st}); last log lines:\n{}",
                    log_tail(&r.log_path(), 15)
                );
            }
        }
        Ok(())
    }

    pub(super) fn stop_all(&mut self) {
        for (_, c) in &self.children {
            // Not yet reaped, so the PID is still our child's.
            let _ = sys::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, c) in &mut self.children {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.clear();
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        if !self.keep {
            self.stop_all();
        }
    }
}

pub(super) fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
