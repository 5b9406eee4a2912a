//! An FRR peer (zebra, bfdd, bgpd) in a namespace, driven by `vtysh`.
//!
//! FRR 8.4 without watchfrr or the init scripts: zebra, bfdd and bgpd run in the
//! foreground in the namespace, each with its own pid file, a private zebra API socket
//! (`-z`), a private vty socket directory (`--vty_socket`, what `vtysh --vty_socket`
//! talks to), no TCP vty (`-P 0`) and `-u frr -g frr`:
//!
//! ```text
//! /usr/lib/frr/zebra -f DIR/zebra.conf -i DIR/zebra.pid -z DIR/zserv.api --vty_socket DIR -P 0 -u frr -g frr
//! /usr/lib/frr/bfdd  -f DIR/bfdd.conf  -i DIR/bfdd.pid  -z DIR/zserv.api --vty_socket DIR -P 0 -u frr -g frr --bfdctl DIR/bfdd.sock
//! /usr/lib/frr/bgpd  -f DIR/bgpd.conf  -i DIR/bgpd.pid  -z DIR/zserv.api --vty_socket DIR -P 0 -u frr -g frr
//! vtysh --vty_socket DIR -c 'show bgp summary'
//! ```

use crate::{wait_until, Netns, Proc, TestDir};
use std::time::Duration;

const DAEMONS: [&str; 3] = ["zebra", "bfdd", "bgpd"];

#[derive(Debug)]
pub struct Frr {
    ns: Netns,
    dir: TestDir,
    _procs: Vec<Proc>,
}

impl Frr {
    /// Starts zebra (empty config), then bfdd and bgpd with the given configs.
    pub fn start(ns: &Netns, bgpd_conf: &str, bfdd_conf: &str) -> Frr {
        let dir = TestDir::new("frr");
        let d = dir.path().to_string_lossy().into_owned();
        // The daemons drop to user frr: it must reach its files.
        let _ = std::process::Command::new("chown")
            .args(["frr:frr", &d])
            .status();
        for (daemon, conf) in DAEMONS.iter().zip(["", bfdd_conf, bgpd_conf]) {
            let path = dir.join(format!("{daemon}.conf"));
            std::fs::write(&path, conf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
        let mut procs = Vec::new();
        for daemon in DAEMONS {
            let bin = format!("/usr/lib/frr/{daemon}");
            let conf = format!("{d}/{daemon}.conf");
            let pid = format!("{d}/{daemon}.pid");
            let zs = format!("{d}/zserv.api");
            let ctl = format!("{d}/bfdd.sock");
            let mut cmd = vec![
                bin.as_str(),
                "-f",
                &conf,
                "-i",
                &pid,
                "-z",
                &zs,
                "--vty_socket",
                &d,
                "-P",
                "0",
                "-u",
                "frr",
                "-g",
                "frr",
            ];
            if daemon == "bfdd" {
                cmd.extend_from_slice(&["--bfdctl", &ctl]);
            }
            procs.push(ns.spawn(&cmd, &dir.join(format!("{daemon}.log"))));
            if daemon == "zebra" {
                wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                    std::path::Path::new(&zs)
                        .exists()
                        .then_some(())
                        .ok_or_else(|| "no zserv".to_string())
                })
                .unwrap_or_else(|e| panic!("zebra: {e}"));
            }
        }
        Frr {
            ns: ns.clone(),
            dir,
            _procs: procs,
        }
    }

    /// `vtysh --vty_socket DIR -c CMD` in the namespace; Ok(stdout).
    pub fn vtysh(&self, cmd: &str) -> Result<String, String> {
        let d = self.dir.path().to_string_lossy().into_owned();
        self.ns.run(&["vtysh", "--vty_socket", &d, "-c", cmd])
    }

    /// The three daemons' logs, concatenated.
    pub fn logs(&self) -> String {
        DAEMONS
            .iter()
            .map(|d| std::fs::read_to_string(self.dir.join(format!("{d}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
