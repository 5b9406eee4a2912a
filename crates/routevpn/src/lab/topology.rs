//! The lab's fixed addressing plan and the commands that build and tear down the
//! triangle: three routers and three hosts in network namespaces named `rvlab-*`.
//!
//! Transport links use RFC 5737 documentation prefixes only; site networks and tunnel
//! inner addresses exist only inside the namespaces created here. The namespace, veth
//! and sysctl commands themselves are the test bed's (`testbed::ns`); this file keeps
//! only the lab's plan and wiring.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use testbed::ns;

/// Every namespace of the lab starts with this; `--down` removes all of them.
pub const NS_PREFIX: &str = "rvlab-";
/// Configs, logs, PID files and control sockets.
pub const STATE_DIR: &str = "/run/routevpn-lab";
/// nftables table holding the link cut (in router A's namespace).
pub const CUT_TABLE: &str = "rvlab_cut";

/// One router with its site network and the host behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Router {
    /// `A`, `B` or `C`.
    pub letter: char,
    pub asn: u32,
    /// Site network index: 10.<n>.0.0/24.
    pub site: u8,
}

pub const ROUTERS: [Router; 3] = [
    Router {
        letter: 'A',
        asn: 65001,
        site: 1,
    },
    Router {
        letter: 'B',
        asn: 65002,
        site: 2,
    },
    Router {
        letter: 'C',
        asn: 65003,
        site: 3,
    },
];

impl Router {
    /// Router namespace, e.g. `rvlab-A`.
    pub fn ns(&self) -> String {
        format!("{NS_PREFIX}{}", self.letter)
    }
    /// Host namespace behind the router, e.g. `rvlab-hostA`.
    pub fn host_ns(&self) -> String {
        format!("{NS_PREFIX}host{}", self.letter)
    }
    /// Site network, e.g. `10.1.0.0/24`.
    pub fn net(&self) -> String {
        format!("10.{}.0.0/24", self.site)
    }
    /// Router's LAN address (also its BGP router id).
    pub fn lan_addr(&self) -> String {
        format!("10.{}.0.1", self.site)
    }
    /// The host's address.
    pub fn host_addr(&self) -> String {
        format!("10.{}.0.2", self.site)
    }
    /// Per-router state directory.
    pub fn dir(&self) -> PathBuf {
        Path::new(STATE_DIR).join(self.letter.to_string())
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("routevpn.toml")
    }
    pub fn socket_path(&self) -> PathBuf {
        self.dir().join("routevpn.sock")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("routevpn.log")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.dir().join("routevpn.pid")
    }
    /// Transport interface name towards `peer`, e.g. `wan-b`.
    pub fn wan_if(&self, peer: &Router) -> String {
        format!("wan-{}", peer.letter.to_ascii_lowercase())
    }
}

pub fn router(letter: char) -> &'static Router {
    ROUTERS
        .iter()
        .find(|r| r.letter == letter)
        .expect("lab routers are A, B and C")
}

/// One side of the triangle: a transport veth and a tunnel over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// The side that initiates IKE (`start = true`).
    pub a: char,
    pub b: char,
    /// Transport /30 (RFC 5737): `a` is .1, `b` is .2.
    pub transport: [u8; 3],
    /// Tunnel inner /30 in 169.254.0.0/16: 169.254.<inner>.0/30.
    pub inner: u8,
}

pub const LINKS: [Link; 3] = [
    Link {
        a: 'A',
        b: 'B',
        transport: [192, 0, 2],
        inner: 12,
    },
    Link {
        a: 'A',
        b: 'C',
        transport: [198, 51, 100],
        inner: 13,
    },
    Link {
        a: 'B',
        b: 'C',
        transport: [203, 0, 113],
        inner: 23,
    },
];

impl Link {
    /// Tunnel interface name, the same on both ends: `ab`, `ac`, `bc`.
    pub fn tunnel(&self) -> String {
        format!(
            "{}{}",
            self.a.to_ascii_lowercase(),
            self.b.to_ascii_lowercase()
        )
    }
    fn host_part(&self, side: char) -> u8 {
        if side == self.a {
            1
        } else {
            2
        }
    }
    /// Transport address of `side`.
    pub fn transport_addr(&self, side: char) -> String {
        let [x, y, z] = self.transport;
        format!("{x}.{y}.{z}.{}", self.host_part(side))
    }
    /// Tunnel inner address of `side` (no prefix length).
    pub fn inner_addr(&self, side: char) -> String {
        format!("169.254.{}.{}", self.inner, self.host_part(side))
    }
    pub fn peer_of(&self, side: char) -> char {
        if side == self.a {
            self.b
        } else {
            self.a
        }
    }
    pub fn has(&self, side: char) -> bool {
        side == self.a || side == self.b
    }
}

/// The link between two routers.
pub fn link(x: char, y: char) -> &'static Link {
    LINKS
        .iter()
        .find(|l| l.has(x) && l.has(y) && x != y)
        .expect("every pair of lab routers has a link")
}

/// Programs the lab runs, with the Debian package providing each.
pub const PROGRAMS: [(&str, &str); 2] = [("ip", "iproute2"), ("nft", "nftables")];

/// Absolute path of `program` found in `PATH` (plus the sbin directories, which a
/// non-login root shell may lack).
pub fn find_program(program: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Error naming every missing program and its Debian package.
pub fn check_programs() -> anyhow::Result<()> {
    let missing: Vec<String> = PROGRAMS
        .iter()
        .filter(|(p, _)| find_program(p).is_none())
        .map(|(p, pkg)| format!("`{p}` (Debian package {pkg})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing programs: {}; install them, e.g. `apt-get install iproute2 nftables` \
             (routevpn lab installs nothing itself; ./scripts/lab does)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Effective uid is 0.
pub fn is_root() -> bool {
    crate::sys::is_root()
}

/// Runs `args` inside namespace `ns` (`ip netns exec`).
pub fn ns_run(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    Ok(ns::exec(ns, args)?)
}

/// Runs an `ip` command inside namespace `ns` (`ip -n NS ...`).
pub fn ip_n(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    Ok(ns::ip_n(ns, args)?)
}

/// The lab's namespaces that exist now.
pub fn lab_namespaces() -> Vec<String> {
    ns::list()
        .into_iter()
        .filter(|n| n.starts_with(NS_PREFIX))
        .collect()
}

/// Creates a veth pair with one end in each namespace, addresses, and brings both up.
fn veth(
    ns1: &str,
    if1: &str,
    addr1: &str,
    ns2: &str,
    if2: &str,
    addr2: &str,
) -> anyhow::Result<()> {
    Ok(ns::veth(ns1, if1, &[addr1], ns2, if2, &[addr2])?)
}

/// Builds the six namespaces and their links. On error the caller tears down.
pub fn build() -> anyhow::Result<()> {
    for r in &ROUTERS {
        for name in [r.ns(), r.host_ns()] {
            ns::add(&name)?;
        }
        let rns = r.ns();
        ns::sysctl(&rns, "net.ipv4.ip_forward", "1")?;
        // Asymmetric paths during failover must not be dropped by reverse-path checks.
        for scope in ["all", "default"] {
            ns::sysctl(&rns, &format!("net.ipv4.conf.{scope}.rp_filter"), "0")?;
        }
        veth(
            &rns,
            "lan",
            &format!("{}/24", r.lan_addr()),
            &r.host_ns(),
            "eth0",
            &format!("{}/24", r.host_addr()),
        )?;
        ip_n(
            &r.host_ns(),
            &["route", "add", "default", "via", &r.lan_addr()],
        )?;
    }
    for l in &LINKS {
        let (ra, rb) = (router(l.a), router(l.b));
        veth(
            &ra.ns(),
            &ra.wan_if(rb),
            &format!("{}/30", l.transport_addr(l.a)),
            &rb.ns(),
            &rb.wan_if(ra),
            &format!("{}/30", l.transport_addr(l.b)),
        )?;
    }
    Ok(())
}

/// nftables script dropping IKE and ESP-in-UDP between A and B, in A's namespace: the
/// link stays up, the traffic dies.
pub fn cut_script() -> String {
    let l = link('A', 'B');
    let peer = l.transport_addr('B');
    format!(
        "table inet {CUT_TABLE} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority -10; policy accept;\n\
         \t\tip saddr {peer} udp dport {{ 500, 4500 }} drop\n\
         \t\tip saddr {peer} udp sport {{ 500, 4500 }} drop\n\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority -10; policy accept;\n\
         \t\tip daddr {peer} udp dport {{ 500, 4500 }} drop\n\
         \t\tip daddr {peer} udp sport {{ 500, 4500 }} drop\n\
         \t}}\n\
         }}\n"
    )
}

/// Installs the cut in router A.
pub fn cut() -> anyhow::Result<()> {
    let path = Path::new(STATE_DIR).join("cut.nft");
    std::fs::write(&path, cut_script()).context("writing the nftables cut")?;
    let p = path.to_string_lossy();
    ns_run(&router('A').ns(), &["nft", "-f", &p]).map(|_| ())
}

/// Removes the cut from router A.
pub fn restore() -> anyhow::Result<()> {
    ns_run(
        &router('A').ns(),
        &["nft", "delete", "table", "inet", CUT_TABLE],
    )
    .map(|_| ())
}

/// The device carrying `dst` from namespace `ns` (`ip route get`), if any.
pub fn route_dev(ns: &str, dst: &str) -> Option<String> {
    let out = ip_n(ns, &["route", "get", dst]).ok()?;
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "dev" {
            return words.next().map(str::to_string);
        }
    }
    None
}

/// `ip route` lines of `ns` for the three site networks.
pub fn site_routes(ns: &str) -> Vec<String> {
    let out = ip_n(ns, &["route", "show"]).unwrap_or_default();
    out.lines()
        .filter(|l| ROUTERS.iter().any(|r| l.starts_with(&r.net())))
        .map(|l| l.trim().to_string())
        .collect()
}

/// Deletes every `rvlab-*` namespace (their veths, routes and nft rules go with them).
pub fn delete_namespaces() -> Vec<String> {
    let mut errors = Vec::new();
    for name in lab_namespaces() {
        if let Err(e) = ns::del(&name) {
            errors.push(format!("{name}: {e:#}"));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_plan() {
        let ab = link('B', 'A');
        assert_eq!(ab.tunnel(), "ab");
        assert_eq!(ab.transport_addr('A'), "192.0.2.1");
        assert_eq!(ab.transport_addr('B'), "192.0.2.2");
        assert_eq!(ab.inner_addr('B'), "169.254.12.2");
        let bc = link('C', 'B');
        assert_eq!(bc.transport_addr('C'), "203.0.113.2");
        assert_eq!(bc.peer_of('C'), 'B');
        assert_eq!(link('A', 'C').transport_addr('C'), "198.51.100.2");
        let a = router('A');
        assert_eq!(a.ns(), "rvlab-A");
        assert_eq!(a.host_ns(), "rvlab-hostA");
        assert_eq!(router('C').net(), "10.3.0.0/24");
        assert_eq!(a.wan_if(router('B')), "wan-b");
        assert!(ROUTERS
            .iter()
            .all(|r| r.ns().starts_with(NS_PREFIX) && r.host_ns().len() <= 32));
        assert_eq!(
            a.socket_path(),
            Path::new("/run/routevpn-lab/A/routevpn.sock")
        );
    }

    #[test]
    fn cut_drops_only_ike_and_natt_to_and_from_b() {
        let s = cut_script();
        assert_eq!(s.matches("192.0.2.2").count(), 4);
        assert_eq!(s.matches("{ 500, 4500 } drop").count(), 4);
        assert!(s.contains("hook input") && s.contains("hook output"));
    }
}
