//! A BIRD 2 peer in a namespace, driven by `birdc` over its control socket.

use crate::{wait_until, Netns, Proc, TestDir};
use std::time::Duration;

/// How long [`Bird::wait_established`] waits for a BGP session.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// `bird -f` (foreground: the test bed owns the process) with the given config, its
/// control socket, pid file and log in a private directory.
#[derive(Debug)]
pub struct Bird {
    ns: Netns,
    sock: String,
    _proc: Proc,
    dir: TestDir,
}

impl Bird {
    /// `bird -f -c CONF -s SOCK -P PIDFILE` in `ns`; waits until `birdc show status`
    /// answers. Panics with the log otherwise.
    pub fn start(ns: &Netns, conf: &str) -> Bird {
        let dir = TestDir::new("bird");
        let c = dir.join("bird.conf");
        std::fs::write(&c, conf).unwrap_or_else(|e| panic!("write {}: {e}", c.display()));
        let sock = dir.join("bird.ctl").to_string_lossy().into_owned();
        let pid = dir.join("bird.pid").to_string_lossy().into_owned();
        let conf_s = c.to_string_lossy().into_owned();
        let proc = ns.spawn(
            &["bird", "-f", "-c", &conf_s, "-s", &sock, "-P", &pid],
            &dir.join("bird.log"),
        );
        let b = Bird {
            ns: ns.clone(),
            sock,
            _proc: proc,
            dir,
        };
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            b.birdc(&["show", "status"])
        })
        .unwrap_or_else(|e| panic!("bird did not start: {e}\n{}", b.log()));
        b
    }

    /// `birdc -s SOCK ARGS` in the namespace; Ok(stdout).
    pub fn birdc(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = vec!["birdc", "-s", self.sock.as_str()];
        cmd.extend_from_slice(args);
        self.ns.run(&cmd)
    }

    /// BIRD's stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }

    /// Waits up to 30 s until protocol `proto` is Established; panics with the log.
    pub fn wait_established(&self, proto: &str) {
        wait_until(ESTABLISH_TIMEOUT, Duration::from_millis(100), || {
            let out = self.birdc(&["show", "protocols", proto])?;
            out.contains("Established")
                .then_some(())
                .ok_or_else(|| format!("{proto}: {out}"))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.log()));
    }
}
