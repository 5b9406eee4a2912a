//! A tunnel's `on_up` / `on_down` programs. Each runs without a shell, stdin from
//! /dev/null, in its own process group (killed as a whole after `hook_timeout`), with a
//! fixed environment (as strongSwan's updown gets one): PATH and the ROUTEVPN_* values.
//! One queue per tunnel name runs its hooks in order (an up hook finishes before that
//! tunnel's down hook starts), in a task of its own so the daemon never waits for them.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::TunnelConfig;

/// Used when the daemon itself has no PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Output kept per stream and logged; the rest is read and dropped so the hook never
/// blocks on a full pipe.
const MAX_OUTPUT_BYTES: usize = 4096;
/// Output lines logged per stream, each cut to `MAX_LINE_CHARS`.
const MAX_OUTPUT_LINES: usize = 20;
const MAX_LINE_CHARS: usize = 300;
/// Events queued per tunnel before new ones are dropped (a tunnel flapping faster than
/// its hooks run).
const QUEUE: usize = 32;
/// After a hook exits (or is killed), how long its output pipes may stay open (held by
/// a background child) before the output is given up.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// What happened to the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookEvent {
    /// The interface is up with its addresses and routes (first CHILD SA installed).
    Up,
    /// The interface is down: last CHILD SA gone, for any reason, or daemon stopping.
    Down,
}

impl HookEvent {
    fn as_str(self) -> &'static str {
        match self {
            HookEvent::Up => "up",
            HookEvent::Down => "down",
        }
    }
}

/// One run, captured when the event happened (a reload may change the config later).
#[derive(Debug, Clone)]
pub(super) struct Job {
    tunnel: String,
    event: HookEvent,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Job {
    /// The run for `event`, if the tunnel has a hook for it.
    pub(super) fn for_event(cfg: &TunnelConfig, event: HookEvent) -> Option<Job> {
        let argv = match event {
            HookEvent::Up => cfg.hooks.on_up.as_ref(),
            HookEvent::Down => cfg.hooks.on_down.as_ref(),
        }?;
        let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
        Some(Job {
            tunnel: cfg.name.clone(),
            event,
            argv: argv.clone(),
            env: hook_env(cfg, event, &path),
            timeout: cfg.hooks.timeout,
        })
    }
}

/// The hook's whole environment.
pub(super) fn hook_env(cfg: &TunnelConfig, event: HookEvent, path: &str) -> Vec<(String, String)> {
    [
        ("PATH", path.to_string()),
        ("ROUTEVPN_EVENT", event.as_str().to_string()),
        ("ROUTEVPN_TUNNEL", cfg.name.clone()),
        // The interface is named after the tunnel; both are given so scripts need not know.
        ("ROUTEVPN_INTERFACE", cfg.name.clone()),
        ("ROUTEVPN_LOCAL", cfg.local_text()),
        ("ROUTEVPN_REMOTE", cfg.remote_text()),
        ("ROUTEVPN_LOCAL_ID", cfg.local_id.to_string()),
        ("ROUTEVPN_REMOTE_ID", cfg.remote_id.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// How a run ended.
#[derive(Debug)]
pub(super) enum Outcome {
    Exited(ExitStatus),
    /// Ran past its timeout: its process group was killed.
    TimedOut,
    SpawnFailed(std::io::Error),
}

/// What a stream carried: the first bytes, and how many more there were.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Captured {
    pub(super) head: Vec<u8>,
    pub(super) dropped: usize,
}

impl Captured {
    /// The lines to log: at most `MAX_OUTPUT_LINES`, each cut and with control
    /// characters escaped; and how many lines were left out.
    pub(super) fn lines(&self) -> (Vec<String>, usize) {
        let text = String::from_utf8_lossy(&self.head);
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let shown = all
            .iter()
            .take(MAX_OUTPUT_LINES)
            .map(|l| {
                let cut: String = l.chars().take(MAX_LINE_CHARS).collect();
                cut.escape_debug().to_string()
            })
            .collect();
        (shown, all.len().saturating_sub(MAX_OUTPUT_LINES))
    }
}

/// A finished run.
#[derive(Debug)]
pub(super) struct Report {
    pub(super) outcome: Outcome,
    pub(super) stdout: Option<Captured>,
    pub(super) stderr: Option<Captured>,
}

/// Reads a stream to its end, keeping the first `MAX_OUTPUT_BYTES`.
async fn collect(mut r: impl AsyncRead + Unpin) -> Captured {
    let mut c = Captured::default();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return c,
            Ok(n) => {
                let keep = n.min(MAX_OUTPUT_BYTES - c.head.len());
                c.head.extend_from_slice(&buf[..keep]);
                c.dropped += n - keep;
            }
        }
    }
}

/// Runs one hook to its end or its timeout.
pub(super) async fn run(job: &Job) -> Report {
    let mut cmd = Command::new(&job.argv[0]);
    cmd.args(&job.argv[1..])
        .env_clear()
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a timeout kills whatever the hook started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Report {
                outcome: Outcome::SpawnFailed(e),
                stdout: None,
                stderr: None,
            }
        }
    };
    let stdout = child.stdout.take().map(|s| tokio::spawn(collect(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(collect(s)));
    let outcome = match tokio::time::timeout(job.timeout, child.wait()).await {
        Ok(Ok(status)) => Outcome::Exited(status),
        Ok(Err(e)) => Outcome::SpawnFailed(e),
        Err(_) => {
            if let Some(pid) = child.id() {
                if let Err(e) = crate::sys::kill_process_group(pid) {
                    warn!(tunnel = %job.tunnel, error = %e, "cannot kill the hook's process group");
                }
            }
            let _ = child.kill().await;
            Outcome::TimedOut
        }
    };
    let output = |h: Option<JoinHandle<Captured>>| async move {
        let mut h = h?;
        match tokio::time::timeout(OUTPUT_GRACE, &mut h).await {
            Ok(c) => c.ok(),
            Err(_) => {
                h.abort();
                None
            }
        }
    };
    let (stdout, stderr) = tokio::join!(output(stdout), output(stderr));
    Report {
        outcome,
        stdout,
        stderr,
    }
}

/// Logs a finished run: its output at info, a failure as a warning.
fn log(job: &Job, report: &Report) {
    let (tunnel, event, program) = (&job.tunnel, job.event.as_str(), &job.argv[0]);
    for (stream, c) in [("stdout", &report.stdout), ("stderr", &report.stderr)] {
        let Some(c) = c else {
            info!(tunnel = %tunnel, event, program = %program, stream, "hook output not collected: a process it left behind keeps the stream open");
            continue;
        };
        let (lines, more) = c.lines();
        for line in lines {
            info!(tunnel = %tunnel, event, stream, "hook: {line}");
        }
        if more > 0 || c.dropped > 0 {
            info!(tunnel = %tunnel, event, stream, lines = more, bytes = c.dropped, "hook output cut");
        }
    }
    match &report.outcome {
        Outcome::Exited(s) if s.success() => {
            info!(tunnel = %tunnel, event, program = %program, "hook finished")
        }
        Outcome::Exited(s) => {
            warn!(tunnel = %tunnel, event, program = %program, status = %s, "hook failed")
        }
        Outcome::TimedOut => warn!(
            tunnel = %tunnel, event, program = %program,
            "hook still running after {}: killed it and its process group",
            humantime::format_duration(job.timeout)
        ),
        Outcome::SpawnFailed(e) => {
            warn!(tunnel = %tunnel, event, program = %program, error = %e, "hook could not be run")
        }
    }
}

/// A tunnel's queue and the task working through it.
struct Runner {
    tx: mpsc::Sender<Job>,
    task: JoinHandle<()>,
}

/// Every tunnel's hook queue, keyed by tunnel name so a tunnel a reload replaces keeps
/// its order (the old tunnel's down hook runs before the new one's up hook).
#[derive(Clone, Default)]
pub(super) struct Hooks {
    runners: Arc<Mutex<HashMap<String, Runner>>>,
}

impl Hooks {
    /// Queues `cfg`'s hook for `event`, if it has one; never waits. Must be called
    /// from within the tokio runtime.
    pub(super) fn fire(&self, cfg: &TunnelConfig, event: HookEvent) {
        if let Some(job) = Job::for_event(cfg, event) {
            self.queue(job);
        }
    }

    fn queue(&self, job: Job) {
        let mut runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
        let name = job.tunnel.clone();
        let runner = runners.entry(name.clone()).or_insert_with(spawn_runner);
        match runner.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                warn!(tunnel = %job.tunnel, event = job.event.as_str(), "hook not run: {QUEUE} earlier runs of this tunnel's hooks are still waiting");
            }
            // Its task ended (it panicked): start a new one.
            Err(mpsc::error::TrySendError::Closed(job)) => {
                let runner = spawn_runner();
                let _ = runner.tx.try_send(job);
                runners.insert(name, runner);
            }
        }
    }

    /// Closes every queue and waits (at most `limit`) for the queued hooks to finish;
    /// called as the daemon stops.
    pub(super) async fn drain(&self, limit: Duration) {
        let tasks: Vec<JoinHandle<()>> = {
            let mut runners = self.runners.lock().unwrap_or_else(|e| e.into_inner());
            runners.drain().map(|(_, r)| r.task).collect()
        };
        if tasks.is_empty() {
            return;
        }
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(limit, all).await.is_err() {
            warn!("hooks still running as the daemon stops: they are killed");
        }
    }
}

fn spawn_runner() -> Runner {
    let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
    let task = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let report = run(&job).await;
            log(&job, &report);
        }
    });
    Runner { tx, task }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    /// A fresh directory for one test's scripts and records.
    fn dir(test: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("routevpn-hooks-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn script(dir: &Path, name: &str, body: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    fn tunnel(extra: &str) -> TunnelConfig {
        let text = format!(
            "[[tunnel]]\nname = \"vti7\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\n\
             local_id = \"routerA\"\nremote_id = \"@#0a0b\"\npsk = \"k\"\n{extra}"
        );
        crate::config::parse(&text, "t.toml")
            .unwrap()
            .tunnels
            .remove(0)
    }

    /// Polls (bounded) until `f` holds.
    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn environment_is_fixed_and_complete() {
        let cfg = tunnel("");
        let env = hook_env(&cfg, HookEvent::Down, "/bin");
        let expect = [
            ("PATH", "/bin"),
            ("ROUTEVPN_EVENT", "down"),
            ("ROUTEVPN_TUNNEL", "vti7"),
            ("ROUTEVPN_INTERFACE", "vti7"),
            ("ROUTEVPN_LOCAL", "192.0.2.1"),
            ("ROUTEVPN_REMOTE", "192.0.2.2"),
            ("ROUTEVPN_LOCAL_ID", "routerA"),
            ("ROUTEVPN_REMOTE_ID", "@#0a0b"),
        ];
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, expect);
        assert_eq!(hook_env(&cfg, HookEvent::Up, "/bin")[1].1, "up");
        // No hook configured: nothing to run.
        assert!(Job::for_event(&cfg, HookEvent::Up).is_none());
        let cfg = tunnel("on_down = [\"/bin/true\", \"x\"]\n");
        assert!(Job::for_event(&cfg, HookEvent::Up).is_none());
        let job = Job::for_event(&cfg, HookEvent::Down).unwrap();
        assert_eq!(job.argv, ["/bin/true", "x"]);
        assert_eq!(job.timeout, crate::config::DEFAULT_HOOK_TIMEOUT);
    }

    #[tokio::test]
    async fn runs_without_shell_with_only_its_environment() {
        let d = dir("env");
        let out = d.join("env.txt");
        let prog = script(
            &d,
            "env.sh",
            &format!("env > {}; echo \"$1|$2\" >> {0}", out.display()),
        );
        let cfg = tunnel(&format!("on_up = [\"{prog}\", \"a b\", \"$HOME;x\"]\n"));
        let report = run(&Job::for_event(&cfg, HookEvent::Up).unwrap()).await;
        assert!(
            matches!(report.outcome, Outcome::Exited(s) if s.success()),
            "{report:?}"
        );
        let text = std::fs::read_to_string(&out).unwrap();
        let mut keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        keys.retain(|k| !matches!(*k, "PWD" | "SHLVL" | "_" | "OLDPWD"));
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "PATH",
                "ROUTEVPN_EVENT",
                "ROUTEVPN_INTERFACE",
                "ROUTEVPN_LOCAL",
                "ROUTEVPN_LOCAL_ID",
                "ROUTEVPN_REMOTE",
                "ROUTEVPN_REMOTE_ID",
                "ROUTEVPN_TUNNEL"
            ],
            "{text}"
        );
        // Arguments arrive verbatim: no shell split or expanded them.
        assert!(text.ends_with("a b|$HOME;x\n"), "{text}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_tunnels_hooks_run_in_order() {
        let d = dir("order");
        let log = d.join("log");
        // The up hook is slow: run concurrently, the down hook would finish first.
        let up = script(
            &d,
            "up.sh",
            &format!("sleep 0.5; echo up >> {}", log.display()),
        );
        let down = script(&d, "down.sh", &format!("echo down >> {}", log.display()));
        let cfg = tunnel(&format!("on_up = [\"{up}\"]\non_down = [\"{down}\"]\n"));
        let hooks = Hooks::default();
        hooks.fire(&cfg, HookEvent::Up);
        hooks.fire(&cfg, HookEvent::Down);
        hooks.fire(&cfg, HookEvent::Up);
        hooks.drain(Duration::from_secs(30)).await;
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "up\ndown\nup\n");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let d = dir("timeout");
        let pidfile = d.join("pid");
        // The hook leaves a child behind and waits for it: killing only the hook would
        // leave the sleep running.
        let prog = script(
            &d,
            "slow.sh",
            &format!(
                "sleep 600 & echo $! > {}; echo started; wait",
                pidfile.display()
            ),
        );
        let cfg = tunnel(&format!("on_up = [\"{prog}\"]\nhook_timeout = \"300ms\"\n"));
        let report = run(&Job::for_event(&cfg, HookEvent::Up).unwrap()).await;
        assert!(matches!(report.outcome, Outcome::TimedOut), "{report:?}");
        let pid = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .to_string();
        // Should the test fail, the sleep must not outlive it.
        struct Reap(String);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = std::process::Command::new("kill").arg(&self.0).status();
            }
        }
        let _reap = Reap(pid.clone());
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        // Gone, or a zombie awaiting its (init) parent.
        wait_for("the hook's child to die", || {
            std::fs::read_to_string(proc_dir.join("stat"))
                .map(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
                .unwrap_or(true)
        });
        assert_eq!(report.stdout.unwrap().lines().0, ["started"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn failures_and_output_are_reported_bounded() {
        let d = dir("fail");
        let prog = script(&d, "noisy.sh", "i=0; while [ $i -lt 5000 ]; do echo \"line $i\"; i=$((i+1)); done; echo oops >&2; exit 3");
        let cfg = tunnel(&format!("on_down = [\"{prog}\"]\n"));
        let report = run(&Job::for_event(&cfg, HookEvent::Down).unwrap()).await;
        assert!(
            matches!(report.outcome, Outcome::Exited(s) if s.code() == Some(3)),
            "{report:?}"
        );
        let out = report.stdout.unwrap();
        assert_eq!(out.head.len(), MAX_OUTPUT_BYTES);
        assert!(out.dropped > 0);
        let (lines, more) = out.lines();
        assert_eq!(lines.len(), MAX_OUTPUT_LINES);
        assert_eq!(lines[0], "line 0");
        assert!(more > 0);
        assert_eq!(report.stderr.unwrap().lines().0, ["oops"]);
        // A program that cannot be started is reported, not fatal.
        let cfg = tunnel("on_up = [\"/nonexistent/hook\"]\n");
        let report = run(&Job::for_event(&cfg, HookEvent::Up).unwrap()).await;
        assert!(
            matches!(report.outcome, Outcome::SpawnFailed(_)),
            "{report:?}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
