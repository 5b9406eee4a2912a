//! A NAT box in a namespace: IPv4 forwarding plus an nftables source-NAT rule on its
//! public interface, whose mapping a test can change mid-flow (a NAT rebinding).

use crate::Netns;

/// The nftables table the NAT rule lives in (one per namespace, so no clash).
const TABLE: &str = "testbed_nat";

/// Source NAT of everything `ns` forwards out of `public_if`. Drop removes nothing: the
/// rule dies with the namespace.
#[derive(Debug)]
pub struct Nat {
    ns: Netns,
    public_if: String,
}

impl Nat {
    /// Turns on IPv4 forwarding in `ns` and masquerades (RFC 3022 NAPT, the kernel
    /// picks the ports) every packet leaving through `public_if`.
    pub fn masquerade(ns: &Netns, public_if: &str) -> Nat {
        ns.sysctl("net.ipv4.ip_forward", "1");
        let nat = Nat {
            ns: ns.clone(),
            public_if: public_if.to_string(),
        };
        let script = format!(
            "table ip {TABLE} {{\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t}}\n\
             }}\n"
        );
        nat.nft_script(&script);
        nat.set_rules(&["masquerade"]);
        nat
    }

    /// The NAT's namespace (to add a second public address, say).
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Replaces the NAT rules with `actions` (each applied to packets leaving the public
    /// interface, e.g. `meta l4proto udp masquerade to :40000-40999` or
    /// `snat to 198.51.100.3`), then flushes conntrack so that existing flows get a
    /// new mapping with their next packet: what a NAT reboot or a CGN rebinding does.
    pub fn remap(&self, actions: &[&str]) {
        self.set_rules(actions);
        self.flush_conntrack();
    }

    /// Forgets every connection-tracking entry (every mapping) of the namespace.
    pub fn flush_conntrack(&self) {
        self.ns.must(&["conntrack", "-F"]);
    }

    /// The public `ip:port` the NAT currently maps the private UDP source
    /// `private_ip:private_port` to (the reply direction's destination in conntrack),
    /// or None while it has no such mapping.
    pub fn udp_mapping(&self, private_ip: &str, private_port: u16) -> Option<String> {
        let port = private_port.to_string();
        let out = self
            .ns
            .run(&[
                "conntrack",
                "-L",
                "-p",
                "udp",
                "--orig-src",
                private_ip,
                "--orig-port-src",
                &port,
            ])
            .ok()?;
        // udp 17 29 src=P dst=H sport=4500 dport=4500 src=H dst=PUB sport=4500 dport=N ...
        let line = out.lines().find(|l| l.contains("src="))?;
        let field = |key: &str| -> Vec<&str> {
            line.split_whitespace()
                .filter_map(|w| w.strip_prefix(key))
                .collect()
        };
        let (dst, dport) = (field("dst="), field("dport="));
        Some(format!("{}:{}", dst.get(1)?, dport.get(1)?))
    }

    /// The current mappings (`conntrack -L`), for failure reports.
    pub fn mappings(&self) -> String {
        self.ns.run(&["conntrack", "-L"]).unwrap_or_else(|e| e)
    }

    fn set_rules(&self, actions: &[&str]) {
        let mut script = format!("flush chain ip {TABLE} postrouting\n");
        for a in actions {
            script.push_str(&format!(
                "add rule ip {TABLE} postrouting oifname \"{}\" {a}\n",
                self.public_if
            ));
        }
        self.nft_script(&script);
    }

    fn nft_script(&self, script: &str) {
        let dir = crate::TestDir::new("nft");
        let path = dir.join("nat.nft");
        std::fs::write(&path, script).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let p = path.to_string_lossy().into_owned();
        self.ns
            .run(&["nft", "-f", &p])
            .unwrap_or_else(|e| panic!("{e}\nscript:\n{script}"));
    }
}
