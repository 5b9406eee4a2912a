//! Tearing the lab down: after a run (unless `--keep`), and `routevpn lab --down` for a kept lab.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::sys;

use super::daemons::{log_tail, Daemons};
use super::interrupt::interrupted;
use super::report::Report;
use super::timeline::Timeline;
use super::topology::{self, router, ROUTERS};
use super::Options;

/// After the steps: keeps the lab for `--keep` (unless interrupted), otherwise shows the
/// daemons' last log lines on failure, stops the daemons and deletes the namespaces.
pub(super) fn after_run(
    opts: &Options,
    tl: &Timeline,
    report: &mut Report,
    daemons: &mut Daemons,
    state: &Path,
    result: &anyhow::Result<()>,
) {
    if opts.keep && !interrupted() {
        daemons.keep = true;
        report.kept = true;
        tl.say(keep_help());
    } else {
        if result.is_err() {
            for r in &ROUTERS {
                let tail = log_tail(&r.log_path(), 12);
                if !tail.is_empty() {
                    tl.say(format!(
                        "router {} daemon log (last lines):\n{tail}",
                        r.letter
                    ));
                }
            }
        }
        tl.say("cleaning up: stopping the daemons, deleting the namespaces");
        daemons.stop_all();
        let errors = topology::delete_namespaces();
        if !errors.is_empty() {
            tl.say(format!("cleanup problems: {}", errors.join("; ")));
        }
        if result.is_ok() {
            let _ = std::fs::remove_dir_all(state);
        } else {
            tl.say(format!(
                "configs and logs kept in {} (removed by the next run or `routevpn lab --down`)",
                state.display()
            ));
        }
    }
}

fn keep_help() -> String {
    let a = router('A');
    format!(
        "the lab keeps running. Look around:\n\
         \x20 ip netns list | grep rvlab-\n\
         \x20 ip netns exec {} ip route\n\
         \x20 ip netns exec {} ping 10.2.0.2\n\
         \x20 routevpn status --socket {}\n\
         \x20 cat {}\n\
         remove it with: routevpn lab --down",
        a.ns(),
        a.host_ns(),
        a.socket_path().display(),
        a.log_path().display()
    )
}

/// `routevpn lab --down`: stops the kept lab's daemons (PIDs from the state dir, each
/// checked to be a routevpn daemon running a lab config), deletes the `rvlab-*`
/// namespaces and the state dir.
pub fn down() -> anyhow::Result<String> {
    if !topology::is_root() {
        bail!("needs root");
    }
    let mut stopped = Vec::new();
    for r in &ROUTERS {
        let Some(pid) = std::fs::read_to_string(r.pid_path())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            continue;
        };
        if !is_lab_daemon(pid, &r.config_path()) {
            continue;
        }
        // The PID was just checked to be this lab's daemon.
        let _ = sys::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while is_lab_daemon(pid, &r.config_path()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_lab_daemon(pid, &r.config_path()) {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        stopped.push(format!("{}={pid}", r.letter));
    }
    let namespaces = topology::lab_namespaces();
    let errors = topology::delete_namespaces();
    let state = PathBuf::from(topology::STATE_DIR);
    if state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("removing {}", state.display()))?;
    }
    if !errors.is_empty() {
        bail!("could not delete: {}", errors.join("; "));
    }
    Ok(format!(
        "lab removed: daemons stopped [{}], namespaces deleted [{}]",
        stopped.join(" "),
        namespaces.join(" ")
    ))
}

/// `pid` is alive and its command line is `... daemon --config <config>`.
fn is_lab_daemon(pid: i32, config: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    let cfg = config.as_os_str().as_encoded_bytes();
    args.contains(&&b"daemon"[..]) && args.contains(&cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_daemon_check_rejects_other_processes() {
        let me = std::process::id() as i32;
        assert!(!is_lab_daemon(
            me,
            Path::new("/run/routevpn-lab/A/routevpn.toml")
        ));
        assert!(!is_lab_daemon(i32::MAX, Path::new("/x")));
    }
}
