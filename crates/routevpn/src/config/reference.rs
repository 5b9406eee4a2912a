//! The configuration reference: every key of every table, its form, default and
//! meaning. The single source of routevpn.toml(5) (`routevpn generate man`); a test
//! checks it against the keys the parser accepts, both ways.

/// One table of the file (`""` is the top level).
pub struct Section {
    pub table: &'static str,
    pub about: &'static str,
    pub keys: &'static [Key],
}

/// One key.
pub struct Key {
    pub name: &'static str,
    /// The value's form, in words (`duration`, `list of prefixes`).
    pub form: &'static str,
    /// The default, or `required`.
    pub default: &'static str,
    pub about: &'static str,
}

const fn key(
    name: &'static str,
    form: &'static str,
    default: &'static str,
    about: &'static str,
) -> Key {
    Key {
        name,
        form,
        default,
        about,
    }
}

/// Durations are written like `"30s"`, `"500ms"`, `"4h"` or `"1h30m"`.
pub const SECTIONS: &[Section] = &[
    Section {
        table: "",
        about: "Top-level keys, before the first table.",
        keys: &[
            key(
                "control_socket",
                "path",
                "/run/routevpn/routevpn.sock",
                "Unix socket where the daemon answers `routevpn status`, `up`, `down` and `reload`. Under systemd the unit's RuntimeDirectory provides /run/routevpn.",
            ),
            key(
                "control_socket_group",
                "group name or number",
                "none (socket mode 0600, owner only)",
                "Members of this group may use the control socket: it is given to the group with mode 0660. An unknown group is an error. The package creates group `routevpn`.",
            ),
            key(
                "routing",
                "\"embedded\" or \"external\"",
                "\"embedded\"",
                "`embedded`: the built-in BGP speaker runs when there is a [bgp] table. `external`: no [bgp] table; BIRD or FRR speak BGP over the tunnel interfaces.",
            ),
            key(
                "metrics",
                "address:port",
                "off",
                "Serve Prometheus/OpenMetrics text at http://ADDRESS:PORT/metrics, e.g. \"127.0.0.1:9477\" or \"[::1]:9477\".",
            ),
            key(
                "dataplane_threads",
                "1 to 256",
                "one per CPU core",
                "Dataplane worker threads. Each serves its share of the tunnel interfaces and port-4500 sockets through one epoll set, reading, sealing or opening and sending each packet itself; an idle worker sleeps without a timer.",
            ),
            key(
                "dataplane_busy_poll",
                "duration, 0 to 1ms",
                "\"0\" (off)",
                "How long a dataplane worker that just moved packets keeps polling before it sleeps, so the next packet of a request/response exchange (ping, a database query) meets an awake worker instead of paying for a wake-up. While polling the worker yields its core to any other runnable thread, so it delays neither the application nor the kernel, but the daemon's CPU time grows by up to that much after each burst. On a 2-core machine \"200us\" brought the idle ping RTT through a tunnel from 0.21-0.24 ms to 0.10 ms, for about 15 % more CPU per GB under bulk traffic.",
            ),
            key(
                "per_resource_sas",
                "true or false",
                "false",
                "Per-resource CHILD SAs (RFC 9611; strongSwan 6 calls them per_cpu_sas). With more than one dataplane worker, each tunnel's interface gets one queue per worker and, when the peer answers SA_RESOURCE_INFO, one CHILD SA per worker with the same traffic selectors: each worker seals and opens its own SA, so one tunnel uses every worker and the kernel keeps every flow on one queue (TCP is never reordered). The first CHILD SA is the fallback the other queues use until theirs is up. A peer that does not know RFC 9611 (strongSwan 5.9) ignores the notify and the tunnel keeps one CHILD SA. The IKE initiator creates its extra CHILD SAs at once; a responder with more workers creates the ones it still lacks once the initiator has been quiet for 2 s (it sends on them, the initiator only receives on those beyond its own workers). Off by default: it multiplies the CHILD SAs (and their rekeys) by the number of workers, which pays for a few fat tunnels but not for a hub whose many tunnels already spread over the workers.",
            ),
        ],
    },
    Section {
        table: "[[tunnel]]",
        about: "One table per peer. Each tunnel is a network interface (a TUN device the daemon creates), up with its addresses and routes only while its CHILD SA is installed.",
        keys: &[
            key("name", "interface name (1 to 15 characters)", "required", "The tunnel interface, e.g. \"vti0\"."),
            key("local", "IP address, interface name or \"%any\"", "required", "Underlay address IKE and ESP use; must be on an interface of this host. An interface name (\"wan0\") or \"%any\" is a dynamic address: the sockets listen on the wildcard (pinned to that interface), the kernel picks the source address, and when the host's addresses change the peer is told by an authenticated message from the new one. Needs a remote address and local_id; one such setting per address family."),
            key("remote", "IP address, DNS name or \"%any\"", "required", "The peer's underlay address, same family as `local`; a name (\"vpn.example.net\") is resolved at start and every 10s while the tunnel is down; \"%any\" accepts the peer from any address (responder only, remote_id required). Tunnels may share an address or \"%any\" when their remote_id differ: the peer's identity picks the tunnel, and its AUTH is checked with that tunnel's key or certificate."),
            key("local_port", "port", "500", "UDP port we listen on for IKE."),
            key("remote_port", "port", "500", "The peer's IKE port; only 500 is supported (4500 after NAT detection)."),
            key("local_id", "identity", "the local address (required with a dynamic local)", "Our IKE identity: an IP address, user@host, @#hex (key id), a distinguished name (\"C=CH, O=Lab, CN=routerA\"), or an FQDN (optionally @name), as in strongSwan."),
            key("remote_id", "identity", "the remote address", "The identity the peer must prove; required with remote = \"%any\" or a name."),
            key("psk", "string", "required unless psk_file", "Pre-shared key; \"0x...\" is hex. Prefer psk_file and keep the file mode 0600."),
            key("psk_file", "path", "none", "File holding the pre-shared key (relative to the configuration file's directory). Exactly one of psk and psk_file."),
            key("ike", "list of proposals", "built-in", "IKE proposals in strongSwan syntax, e.g. [\"aes256gcm16-prfsha384-x25519\"]; \"default\" stands for the built-in list."),
            key("esp", "list of proposals", "built-in", "ESP proposals, e.g. [\"aes256gcm16\", \"aes128-sha256-esn\"]; a key-exchange group means PFS on rekeys."),
            key("start", "true or false", "true (false with remote = \"%any\")", "Initiate at start-up (and after failures); false waits as responder."),
            key("address", "list of prefixes", "none", "Tunnel interface addresses, e.g. [\"169.254.12.1/30\", \"fd00:12::1/64\"]."),
            key("mtu", "number", "computed from the ESP suite", "Tunnel interface MTU."),
            key("routes", "list of prefixes or { prefix, metric } tables", "none", "Static routes into the tunnel while it is up (protocol 250)."),
            key("local_ts", "list of prefixes", "0.0.0.0/0 and ::/0", "Local traffic selectors; the route-based default covers everything."),
            key("remote_ts", "list of prefixes", "0.0.0.0/0 and ::/0", "Remote traffic selectors."),
            key("ike_lifetime", "duration", "4h", "Rekey the IKE SA after this long, less a random margin."),
            key("child_lifetime", "duration", "1h", "Rekey CHILD SAs after this long, less a random margin. A CHILD SA the peer deletes outside a rekey is created again after 1 s (2, 4 … up to 64 s if the peer keeps deleting), so the tunnel carries traffic while its IKE SA is up (strongSwan's close_action = start)."),
            key("child_lifetime_bytes", "number", "none", "Also rekey a CHILD SA after this many bytes."),
            key("child_lifetime_packets", "number", "none", "Also rekey a CHILD SA after this many packets."),
            key("dpd", "duration or false", "30s", "Liveness check after this long without traffic from the peer; false turns it off."),
            key("dpd_action", "\"restart\" or \"clear\"", "\"restart\"", "What to do with a dead peer: initiate again, or just delete the SAs."),
            key("retransmit_timeout", "duration (100ms to 60s)", "1s", "First IKE retransmission timeout, doubled per try."),
            key("retransmit_tries", "number (1 to 20)", "5", "IKE retransmissions before the peer is declared dead."),
            key("replay_window", "number", "128", "Anti-replay window in packets (RFC 4303)."),
            key("mobike", "true or false", "true", "Offer and accept MOBIKE (RFC 4555) in IKE_AUTH: when our address changes, the IKE SA's initiator announces it with UPDATE_SA_ADDRESSES. Either way the peer is followed to the address of its authenticated messages (RFC 7296 §2.23)."),
            key("fragment_size", "number (256 or more)", "built-in", "IP packet size above which encrypted IKE messages are sent as RFC 7383 fragments (strongSwan's fragment_size)."),
            key("on_up", "list of strings", "none", "Command run (without a shell) when the tunnel comes up: [\"/absolute/path\", \"arg\", ...]. Its environment has ROUTEVPN_TUNNEL, ROUTEVPN_INTERFACE, ROUTEVPN_LOCAL, ROUTEVPN_REMOTE, ROUTEVPN_LOCAL_ID, ROUTEVPN_REMOTE_ID and ROUTEVPN_EVENT. It runs with a timeout and never blocks the daemon; failures are logged."),
            key("on_down", "list of strings", "none", "Command run the same way when the tunnel goes down (delete from either side, DPD, `down`, a reload that changes or removes the tunnel, shutdown)."),
            key("hook_timeout", "duration (100ms to 1h)", "10s", "How long an on_up/on_down command may run before its process group is killed."),
            key("cert", "path", "none (PSK)", "Our X.509 certificate (PEM), optionally followed by intermediate CA certificates, sent in CERT payloads. Certificate authentication (cert, key, ca) and psk/psk_file are mutually exclusive. With cert, local_id defaults to the certificate's subject DN and remote_id is required; a local_id must be the subject or a subjectAltName. Paths are relative to the configuration file's directory. A warning is logged and shown in `status` from 30 days before it expires."),
            key("key", "path", "required with cert", "Our private key (PEM: PKCS#8, SEC1 \"EC PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\"; ECDSA P-256/P-384, RSA or Ed25519, unencrypted). Refused if the file is accessible by group or others (chmod 600). Must belong to cert."),
            key("ca", "list of paths", "required with cert", "CA certificates (PEM; a file may hold several) the peer's certificate must chain to, through intermediates the peer sends. Their key hashes go in our CERTREQ."),
            key("crl", "list of paths", "none", "Certificate revocation lists (PEM or DER) checked for the peer's chain; a certificate no CRL covers is accepted, as in strongSwan."),
            key("rsa_pss", "true or false", "false", "With an RSA key: sign AUTH with RSASSA-PSS instead of PKCS#1 v1.5 (strongSwan's charon.rsa_pss). Verifying accepts both."),
        ],
    },
    Section {
        table: "[bgp]",
        about: "The embedded BGP-4 speaker (routing = \"embedded\").",
        keys: &[
            key("asn", "AS number (4-octet)", "required", "Our autonomous system."),
            key("router_id", "IPv4 address", "required", "BGP identifier."),
            key("networks", "list of prefixes", "none", "Prefixes we announce."),
            key("hold_time", "duration", "90s", "Proposed hold time."),
            key("connect_retry", "duration", "5s", "Time between connection attempts."),
            key("max_paths", "number (1 or more)", "1", "Equal-cost paths installed as one multipath route."),
            key("redistribute", "list of \"connected\", \"static\"", "none", "Also announce these kernel routes."),
            key("neighbor", "list of [[bgp.neighbor]] tables", "none", "The neighbours, below."),
        ],
    },
    Section {
        table: "[[bgp.neighbor]]",
        about: "One table per BGP neighbour, reached over a tunnel.",
        keys: &[
            key("address", "IP address", "required", "The neighbour's tunnel-inner address."),
            key("asn", "AS number", "required", "The neighbour's AS."),
            key("bfd", "true, or a { interval, multiplier, auth, key_id, key, esp_hint } table", "off", "BFD on this session: true is 300ms x 3. auth is \"keyed-sha1\" or \"meticulous-keyed-sha1\" with key_id and a key of 1 to 20 bytes. esp_hint = true (default false; the neighbor must be inside a tunnel's subnet) also watches the tunnel's inbound ESP: when a busy tunnel (4 or more packets per interval) receives nothing at all for one interval, BFD sends a Poll, which the peer answers at once; if nothing arrives for one more interval the session goes down. A cut busy tunnel is then detected after about 2 intervals rather than multiplier intervals; an idle tunnel is left to BFD alone. A false alarm needs the data to stop and two periodic packets and the Final lost. With multiplier 2 or less it detects no sooner than BFD alone. It departs from RFC 5880 twice, by choice: the session goes down before its Detection Time, and the Poll goes out at once instead of on the next periodic packet (one extra packet per silence)."),
            key("passive", "true or false", "false", "Wait for the neighbour to connect."),
            key("import", "list of prefix-list entries", "accept all", "Import policy, e.g. [\"permit 10.0.0.0/8 le 24\"]."),
            key("export", "list of prefix-list entries", "announce all", "Export policy."),
            key("max_prefix", "number", "10000", "Accepted routes before the session is closed (Cease/1); 0 means no limit."),
            key("local_pref", "number", "100", "LOCAL_PREF given to routes from this neighbour."),
            key("gtsm", "true or false", "on for directly connected eBGP", "Generalized TTL Security Mechanism (RFC 5082)."),
            key("password", "string", "none", "TCP MD5 signature key (RFC 2385)."),
        ],
    },
];

/// Keys documented here before their parser lands (the reference may run ahead of the
/// parser, never behind it). Empty: every documented key parses.
#[cfg(test)]
const AHEAD_OF_PARSER: &[(&str, &str)] = &[];

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys the parser accepts in a table, from its "unknown field" error (serde
    /// lists every field it knows).
    fn parser_keys(table: &str) -> Vec<String> {
        let probe = "zz_not_a_key = 1";
        let tunnel = "name = \"t\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\npsk = \"0123456789abcdefghij\"\n";
        let text = match table {
            "" => format!("{probe}\n"),
            "[[tunnel]]" => format!("[[tunnel]]\n{tunnel}{probe}\n"),
            "[bgp]" => format!("[bgp]\nasn = 1\nrouter_id = \"10.0.0.1\"\n{probe}\n"),
            "[[bgp.neighbor]]" => format!(
                "[bgp]\nasn = 1\nrouter_id = \"10.0.0.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\n{probe}\n"
            ),
            other => panic!("no probe for {other}"),
        };
        let e = toml::from_str::<super::super::RawConfig>(&text)
            .err()
            .unwrap_or_else(|| panic!("{table}: the probe key was accepted"));
        let msg = e.message().to_string();
        let expected = msg
            .split_once("expected")
            .unwrap_or_else(|| panic!("{table}: {msg}"))
            .1;
        expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_parser_key_is_documented_and_every_documented_key_parses() {
        for s in SECTIONS {
            let parsed = parser_keys(s.table);
            assert!(parsed.len() > 2, "{}: {parsed:?}", s.table);
            let documented: Vec<&str> = s.keys.iter().map(|k| k.name).collect();
            // The top level's tables have sections of their own.
            for p in parsed
                .iter()
                .filter(|p| !(s.table.is_empty() && (*p == "tunnel" || *p == "bgp")))
            {
                assert!(
                    documented.contains(&p.as_str()),
                    "{} key `{p}` is missing from the configuration reference (config/reference.rs)",
                    if s.table.is_empty() { "top-level" } else { s.table }
                );
            }
            for d in &documented {
                let ahead = AHEAD_OF_PARSER.contains(&(s.table, *d));
                assert!(
                    parsed.iter().any(|p| p == d) || ahead,
                    "{}: `{d}` is documented but the parser does not know it",
                    s.table
                );
            }
        }
    }
}
