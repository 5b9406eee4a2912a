//! The routevpn configuration of each lab router: tunnels to both other routers, and
//! eBGP + BFD (`--bfd-interval`, 50 ms by default, × 3) over every tunnel.

use std::fmt::Write as _;

use super::topology::{router, Router, LINKS};

/// How routes between the sites are learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// The daemon's embedded BGP speaker with BFD (the lab's purpose).
    Bgp,
    /// Static routes with metrics (direct tunnel preferred, the detour via the third
    /// router as backup); failover only when DPD takes the tunnel down. Used when this
    /// build's config has no `[bgp]` section yet.
    Static,
}

/// Shared IKE/ESP settings: fast, and DPD short enough for a demo.
const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";
const DPD: &str = "2s";
const DIRECT_METRIC: u32 = 100;
/// `routevpn lab --bfd-interval` unless given.
pub const DEFAULT_BFD_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// BFD on every lab neighbour: `--bfd-interval` × 3, with the ESP-silence hint unless
/// `--no-esp-hint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bfd {
    pub interval: std::time::Duration,
    pub esp_hint: bool,
}

impl Bfd {
    pub const DEFAULT: Bfd = Bfd {
        interval: DEFAULT_BFD_INTERVAL,
        esp_hint: true,
    };

    /// For the report: `50ms x 3, ESP hint`.
    pub fn describe(&self) -> String {
        let hint = if self.esp_hint { ", ESP hint" } else { "" };
        format!("{}ms x 3{hint}", self.interval.as_millis())
    }
}
const DETOUR_METRIC: u32 = 200;

/// The TOML configuration for router `r`.
pub fn router_config(r: &Router, routing: Routing, bfd: Bfd) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# routevpn lab: router {}", r.letter);
    let _ = writeln!(
        s,
        "control_socket = \"{}\"",
        r.socket_path().to_string_lossy()
    );
    for l in LINKS.iter().filter(|l| l.has(r.letter)) {
        let peer = router(l.peer_of(r.letter));
        let _ = writeln!(s, "\n[[tunnel]]");
        let _ = writeln!(s, "name = \"{}\"", l.tunnel());
        let _ = writeln!(s, "local = \"{}\"", l.transport_addr(r.letter));
        let _ = writeln!(s, "remote = \"{}\"", l.transport_addr(peer.letter));
        let _ = writeln!(s, "local_id = \"{}\"", r.letter);
        let _ = writeln!(s, "remote_id = \"{}\"", peer.letter);
        let _ = writeln!(s, "psk = \"lab-secret-{}\"", l.tunnel());
        let _ = writeln!(s, "ike = [\"{IKE}\"]");
        let _ = writeln!(s, "esp = [\"{ESP}\"]");
        let _ = writeln!(s, "start = {}", l.a == r.letter);
        let _ = writeln!(s, "address = [\"{}/30\"]", l.inner_addr(r.letter));
        let _ = writeln!(s, "dpd = \"{DPD}\"");
        if routing == Routing::Static {
            // The peer's site directly, the third site as a detour through the peer.
            let third = super::topology::ROUTERS
                .iter()
                .find(|x| x.letter != r.letter && x.letter != peer.letter)
                .expect("three routers");
            let _ = writeln!(
                s,
                "routes = [{{ prefix = \"{}\", metric = {DIRECT_METRIC} }}, \
                 {{ prefix = \"{}\", metric = {DETOUR_METRIC} }}]",
                peer.net(),
                third.net()
            );
        }
    }
    if routing == Routing::Bgp {
        let _ = writeln!(s, "\n[bgp]");
        let _ = writeln!(s, "asn = {}", r.asn);
        let _ = writeln!(s, "router_id = \"{}\"", r.lan_addr());
        let _ = writeln!(s, "networks = [\"{}\"]", r.net());
        let _ = writeln!(s, "hold_time = \"9s\"");
        let _ = writeln!(s, "connect_retry = \"1s\"");
        for l in LINKS.iter().filter(|l| l.has(r.letter)) {
            let peer = router(l.peer_of(r.letter));
            let _ = writeln!(s, "\n[[bgp.neighbor]]");
            let _ = writeln!(s, "address = \"{}\"", l.inner_addr(peer.letter));
            let _ = writeln!(s, "asn = {}", peer.asn);
            let ms = bfd.interval.as_millis();
            let hint = if bfd.esp_hint {
                ", esp_hint = true"
            } else {
                ""
            };
            let _ = writeln!(s, "bfd = {{ interval = \"{ms}ms\", multiplier = 3{hint} }}");
        }
    }
    s
}

/// Whether this build's configuration parser accepts the lab's `[bgp]` section; the
/// parser's message otherwise.
pub fn bgp_supported() -> Result<(), String> {
    let text = router_config(router('A'), Routing::Bgp, Bfd::DEFAULT);
    crate::config::parse(&text, "lab-A.toml")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::topology::ROUTERS;

    #[test]
    fn static_configs_parse() {
        for r in &ROUTERS {
            let text = router_config(r, Routing::Static, Bfd::DEFAULT);
            let cfg = crate::config::parse(&text, "lab.toml")
                .unwrap_or_else(|e| panic!("router {}: {e}\n{text}", r.letter));
            assert_eq!(cfg.tunnels.len(), 2);
            assert_eq!(cfg.control_socket, r.socket_path());
            for t in &cfg.tunnels {
                assert_eq!(t.routes.len(), 2, "{}", t.name);
            }
        }
        let b = crate::config::parse(
            &router_config(router('B'), Routing::Static, Bfd::DEFAULT),
            "b",
        )
        .unwrap();
        let names: Vec<&str> = b.tunnels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ab", "bc"]);
        assert!(
            !b.tunnels[0].start && b.tunnels[1].start,
            "A starts ab, B starts bc"
        );
    }

    #[test]
    fn bgp_config_matches_the_agreed_format() {
        let a = router_config(router('A'), Routing::Bgp, Bfd::DEFAULT);
        for needle in [
            "control_socket = \"/run/routevpn-lab/A/routevpn.sock\"",
            "name = \"ab\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\nlocal_id = \"A\"\nremote_id = \"B\"",
            "psk = \"lab-secret-ab\"",
            "start = true",
            "address = [\"169.254.12.1/30\"]",
            "dpd = \"2s\"",
            "[bgp]\nasn = 65001\nrouter_id = \"10.1.0.1\"\nnetworks = [\"10.1.0.0/24\"]\nhold_time = \"9s\"\nconnect_retry = \"1s\"",
            "[[bgp.neighbor]]\naddress = \"169.254.12.2\"\nasn = 65002\nbfd = { interval = \"50ms\", multiplier = 3, esp_hint = true }",
            "[[bgp.neighbor]]\naddress = \"169.254.13.2\"\nasn = 65003",
        ] {
            assert!(a.contains(needle), "missing {needle:?} in\n{a}");
        }
        // `routevpn lab --bfd-interval 120ms` reaches every neighbor, and parses.
        // And `--no-esp-hint` leaves the hint out.
        let slow = router_config(
            router('C'),
            Routing::Bgp,
            Bfd {
                interval: std::time::Duration::from_millis(120),
                esp_hint: false,
            },
        );
        assert_eq!(
            slow.matches("bfd = { interval = \"120ms\", multiplier = 3 }")
                .count(),
            2,
            "{slow}"
        );
        let bgp = crate::config::parse(&slow, "c").unwrap().bgp.unwrap();
        assert!(bgp
            .neighbors
            .iter()
            .all(|n| n.bfd.as_ref().unwrap().interval.as_millis() == 120));
        let hinted = crate::config::parse(&a, "a").unwrap().bgp.unwrap();
        assert!(hinted
            .neighbors
            .iter()
            .all(|n| n.bfd.as_ref().unwrap().esp_hint));
        assert!(!a.contains("routes ="));
        // Whatever this build's parser says, the probe must not panic.
        let _ = bgp_supported();
    }
}
