//! `routing` and `[bgp]`: the embedded BGP speaker with BFD.
//!
//! ```toml
//! routing = "embedded"          # default; "external" = no BGP/BFD in routevpn (run
//!                               # BIRD/FRR over the tunnel interfaces instead)
//! [bgp]
//! asn = 65001                   # required, 1..=4294967295 (4-octet AS, RFC 6793)
//! router_id = "10.1.0.1"        # required, IPv4 address form, not 0.0.0.0
//! networks = ["10.1.0.0/24", "fd00:1::/64"]   # announced (default: none)
//! hold_time = "9s"              # default 90s (RFC 4271 §10); 0 or >= 3s; keepalive = hold/3
//! connect_retry = "2s"          # default 5s (see DEFAULT_BGP_CONNECT_RETRY)
//! max_paths = 1                 # ECMP paths selected and installed as one multipath
//!                               # route (default 1)
//! redistribute = ["connected", "static"]  # also announce the kernel's connected
//!                               # and static routes (default: none)
//! [[bgp.neighbor]]
//! address = "169.254.12.2"      # the peer's tunnel-inner address (IPv4 or IPv6)
//! asn = 65002                   # required
//! bfd = { interval = "100ms", multiplier = 3 }  # or true (300ms x 3) / false (default)
//! # bfd = { interval = "100ms", multiplier = 3, auth = "meticulous-keyed-sha1",
//! #         key_id = 1, key = "..." }   # RFC 5880 §6.7; or auth = "keyed-sha1"
//! # bfd = { interval = "50ms", multiplier = 3, esp_hint = true }  # default false: a
//! #         busy tunnel whose inbound ESP stops for one interval is polled, and down
//! #         one more interval later (bfd::hint), not after `multiplier` intervals
//! gtsm = true                   # default: on for directly connected eBGP (RFC 5082)
//! password = "..."              # TCP MD5 signature (RFC 2385), default: none
//! passive = false               # default false: we also connect
//! import = ["permit 10.0.0.0/8 le 24"]  # prefix list, default: accept all
//! export = ["permit 10.1.0.0/24"]       # prefix list, default: announce all
//! max_prefix = 1000             # default 10000 (DEFAULT_MAX_PREFIX); 0 = no limit
//! local_pref = 100              # default 100
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

use super::tunnel::TunnelConfig;
use super::values::{item_span, parse_duration, parse_network, StrList};
use super::{ConfigError, Ctx, RawConfig};

/// Whether routevpn runs its own BGP speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoutingMode {
    /// The embedded BGP speaker and BFD run when a `[bgp]` table exists (default).
    #[default]
    Embedded,
    /// routevpn does no dynamic routing; an external daemon (BIRD, FRR) peers over the
    /// tunnel interfaces. A `[bgp]` table is then an error.
    External,
}

/// RFC 4271 §10 suggests 90 s.
pub const DEFAULT_BGP_HOLD_TIME: Duration = Duration::from_secs(90);
/// ConnectRetryTime. RFC 4271 §10 suggests 120 s, but over a route-based VPN the peer is
/// only reachable once the tunnel is up, which happens at unpredictable moments; with
/// 120 s a session (and the routes behind it) returns up to two minutes after the tunnel
/// (BIRD with its default took 50–108 s here to fail back). 5 s costs one SYN per 5 s
/// per down neighbor. routevpn also retries at once when the tunnel or BFD comes up.
pub const DEFAULT_BGP_CONNECT_RETRY: Duration = Duration::from_secs(5);
/// `bfd = true`: 300 ms × 3 (≈ 0.9 s detection), FRR's defaults.
pub const DEFAULT_BFD_INTERVAL: Duration = Duration::from_millis(300);
/// Routes accepted from one neighbour before the session is closed with Cease/1
/// (RFC 4486 §4): a neighbour must not be able to fill our memory and kernel table.
pub const DEFAULT_MAX_PREFIX: u32 = 10_000;
/// Detect multiplier for `bfd = true`.
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;

/// The `[bgp]` table.
#[derive(Debug, Clone)]
pub struct BgpConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Prefixes we originate.
    pub networks: Vec<IpNet>,
    /// Hold time we propose (whole seconds; zero = no keepalives).
    pub hold_time: Duration,
    pub connect_retry: Duration,
    /// How many equal paths best-path selection keeps (ECMP), >= 1.
    pub max_paths: usize,
    /// Kernel routes announced besides `networks`.
    pub redistribute: Vec<Redistribute>,
    pub neighbors: Vec<NeighborConfig>,
}

/// A class of kernel routes `[bgp] redistribute` announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Redistribute {
    /// `"connected"`: the prefixes of interface addresses (proto kernel) on interfaces
    /// other than loopback and the tunnels.
    Connected,
    /// `"static"`: main-table routes with proto static or boot (`ip route add`).
    Static,
}

/// A TCP MD5 password (RFC 2385): zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// The key as bytes (1..=80, TCP_MD5SIG_MAXKEYLEN).
    pub fn new(bytes: &[u8]) -> Self {
        Password(Zeroizing::new(bytes.to_vec()))
    }

    /// The key, for the socket option only.
    pub fn secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The longest TCP MD5 key Linux accepts (TCP_MD5SIG_MAXKEYLEN).
pub const MD5_KEY_MAX: usize = 80;

/// One `[[bgp.neighbor]]`.
#[derive(Debug, Clone)]
pub struct NeighborConfig {
    pub address: IpAddr,
    pub asn: u32,
    /// BFD (RFC 5880/5881) for this neighbor; None = off.
    pub bfd: Option<BfdConfig>,
    pub passive: bool,
    pub import: Option<bgp::PrefixList>,
    pub export: Option<bgp::PrefixList>,
    /// Accepted-route limit; None = unlimited (`max_prefix = 0`).
    pub max_prefix: Option<u32>,
    pub local_pref: u32,
    /// GTSM (RFC 5082): None = the default (on for a directly connected eBGP neighbour).
    pub gtsm: Option<bool>,
    /// TCP MD5 signature key (RFC 2385).
    pub password: Option<Password>,
}

/// BFD timers: we send every `interval` and ask the same of the peer; the session goes
/// down after `multiplier` missed intervals. `auth`: RFC 5880 §6.7 keyed SHA1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdConfig {
    pub interval: Duration,
    pub multiplier: u8,
    pub auth: Option<bfd::AuthConfig>,
    /// Treat the silence of a busy tunnel's inbound ESP as a hint (`bfd::hint`).
    pub esp_hint: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    asn: Spanned<u32>,
    router_id: Spanned<String>,
    networks: Option<Spanned<StrList>>,
    hold_time: Option<Spanned<String>>,
    connect_retry: Option<Spanned<String>>,
    max_paths: Option<Spanned<u32>>,
    redistribute: Option<Spanned<StrList>>,
    #[serde(default)]
    pub(super) neighbor: Vec<Spanned<RawNeighbor>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbor {
    pub(super) address: Spanned<String>,
    asn: Spanned<u32>,
    pub(super) bfd: Option<Spanned<RawBfd>>,
    passive: Option<bool>,
    import: Option<Spanned<StrList>>,
    export: Option<Spanned<StrList>>,
    max_prefix: Option<Spanned<u32>>,
    local_pref: Option<Spanned<u32>>,
    gtsm: Option<bool>,
    password: Option<Spanned<String>>,
}

/// `bfd = true | false | { interval = "100ms", multiplier = 3 }`.
pub(super) enum RawBfd {
    Flag(bool),
    Table {
        interval: Option<String>,
        multiplier: Option<u8>,
        auth: Option<String>,
        key_id: Option<u8>,
        key: Option<String>,
        esp_hint: Option<bool>,
    },
}

// By hand rather than `untagged`, so that an unknown key in the table is an error.
impl<'de> Deserialize<'de> for RawBfd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            interval: Option<String>,
            multiplier: Option<u8>,
            auth: Option<String>,
            key_id: Option<u8>,
            key: Option<String>,
            esp_hint: Option<bool>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBfd;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or a table { interval = \"100ms\", multiplier = 3, auth = \"meticulous-keyed-sha1\", key_id = 1, key = \"...\", esp_hint = true }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawBfd, E> {
                Ok(RawBfd::Flag(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawBfd, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawBfd::Table {
                    interval: t.interval,
                    multiplier: t.multiplier,
                    auth: t.auth,
                    key_id: t.key_id,
                    key: t.key,
                    esp_hint: t.esp_hint,
                })
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn routing_and_bgp(
    cx: &Ctx,
    raw: &RawConfig,
    tunnels: &[TunnelConfig],
) -> Result<(RoutingMode, Option<BgpConfig>), ConfigError> {
    let routing = match &raw.routing {
        None => RoutingMode::Embedded,
        Some(r) => match r.get_ref().as_str() {
            "embedded" => RoutingMode::Embedded,
            "external" => RoutingMode::External,
            other => {
                return Err(cx.err(
                    Some(r.span()),
                    format!("routing = \"{other}\": expected \"embedded\" or \"external\""),
                ))
            }
        },
    };
    let Some(b) = &raw.bgp else {
        return Ok((routing, None));
    };
    if routing == RoutingMode::External {
        return Err(cx.err(
            Some(b.span()),
            "[bgp] is configured but routing = \"external\" (the embedded speaker is off): remove one",
        ));
    }
    Ok((routing, Some(bgp_config(cx, b, tunnels)?)))
}

pub(super) fn bgp_config(
    cx: &Ctx,
    spanned: &Spanned<RawBgp>,
    tunnels: &[TunnelConfig],
) -> Result<BgpConfig, ConfigError> {
    let b = spanned.get_ref();
    let err = |span: Range<usize>, m: String| cx.err(Some(span), format!("[bgp]: {m}"));
    if *b.asn.get_ref() == 0 {
        return Err(err(b.asn.span(), "asn 0 is reserved (RFC 7607)".into()));
    }
    let router_id: Ipv4Addr = b.router_id.get_ref().trim().parse().map_err(|_| {
        err(
            b.router_id.span(),
            format!(
                "invalid router_id \"{}\": expected an IPv4 address like 10.1.0.1",
                b.router_id.get_ref()
            ),
        )
    })?;
    if router_id.is_unspecified() {
        return Err(err(
            b.router_id.span(),
            "router_id must not be 0.0.0.0".into(),
        ));
    }
    let mut networks = Vec::new();
    if let Some(list) = &b.networks {
        for item in &list.get_ref().0 {
            let n =
                parse_network(item.get_ref()).map_err(|m| err(item_span(item, list.span()), m))?;
            networks.push(n);
        }
    }
    let dur = |v: &Option<Spanned<String>>, default: Duration| -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => parse_duration(s.get_ref()).map_err(|m| err(s.span(), m)),
        }
    };
    let hold_time = dur(&b.hold_time, DEFAULT_BGP_HOLD_TIME)?;
    if let Some(s) = &b.hold_time {
        // RFC 4271 §4.2: zero or at least three seconds, in whole seconds, 16 bits.
        let secs = hold_time.as_secs();
        if hold_time.subsec_nanos() != 0 || (secs != 0 && secs < 3) || secs > u64::from(u16::MAX) {
            return Err(err(
                s.span(),
                format!(
                    "hold_time \"{}\" must be 0 or whole seconds from 3s to 65535s (RFC 4271 §4.2)",
                    s.get_ref()
                ),
            ));
        }
    }
    let connect_retry = dur(&b.connect_retry, DEFAULT_BGP_CONNECT_RETRY)?;
    if connect_retry.is_zero() {
        let s = b
            .connect_retry
            .as_ref()
            .map(|s| s.span())
            .unwrap_or_default();
        return Err(err(s, "connect_retry must not be zero".into()));
    }
    let max_paths = match &b.max_paths {
        None => 1,
        Some(m) if *m.get_ref() == 0 => {
            return Err(err(m.span(), "max_paths must be at least 1".into()))
        }
        Some(m) => *m.get_ref() as usize,
    };
    let mut redistribute = Vec::new();
    if let Some(list) = &b.redistribute {
        for item in &list.get_ref().0 {
            let r = match item.get_ref().trim() {
                "connected" => Redistribute::Connected,
                "static" => Redistribute::Static,
                other => {
                    return Err(err(
                        item_span(item, list.span()),
                        format!(
                            "redistribute: unknown route class \"{other}\": expected \"connected\" or \"static\""
                        ),
                    ))
                }
            };
            if !redistribute.contains(&r) {
                redistribute.push(r);
            }
        }
    }
    let mut neighbors: Vec<NeighborConfig> = Vec::new();
    for n in &b.neighbor {
        let nc = neighbor(cx, n)?;
        if neighbors.iter().any(|o| o.address == nc.address) {
            return Err(cx.err(
                Some(n.get_ref().address.span()),
                format!("[[bgp.neighbor]]: duplicate neighbor {}", nc.address),
            ));
        }
        // The session runs over a tunnel; its address must not be a tunnel endpoint.
        if tunnels.iter().any(|t| t.remote == Some(nc.address)) {
            return Err(cx.err(
                Some(n.get_ref().address.span()),
                format!(
                    "[[bgp.neighbor]] {}: this is a tunnel's IKE peer (underlay) address; use the peer's tunnel-inner address",
                    nc.address
                ),
            ));
        }
        // The hint reads the tunnel's inbound ESP: a neighbour outside every tunnel has none.
        if nc.bfd.as_ref().is_some_and(|b| b.esp_hint) && !inside_a_tunnel(tunnels, nc.address) {
            return Err(cx.err(
                n.get_ref().bfd.as_ref().map(|b| b.span()),
                format!(
                    "[[bgp.neighbor]] {}: bfd esp_hint needs the neighbor inside a tunnel's subnet (it watches that tunnel's inbound ESP)",
                    nc.address
                ),
            ));
        }
        neighbors.push(nc);
    }
    Ok(BgpConfig {
        asn: *b.asn.get_ref(),
        router_id,
        networks,
        hold_time,
        connect_retry,
        max_paths,
        redistribute,
        neighbors,
    })
}

/// Whether `address` lies in one of the tunnels' interface subnets (a neighbour reached
/// through that tunnel).
pub(super) fn inside_a_tunnel(tunnels: &[TunnelConfig], address: IpAddr) -> bool {
    tunnels
        .iter()
        .any(|t| t.addresses.iter().any(|net| net.contains(&address)))
}

pub(super) fn neighbor(
    cx: &Ctx,
    spanned: &Spanned<RawNeighbor>,
) -> Result<NeighborConfig, ConfigError> {
    let n = spanned.get_ref();
    let address: IpAddr = n.address.get_ref().trim().parse().map_err(|_| {
        cx.err(
            Some(n.address.span()),
            format!(
                "[[bgp.neighbor]]: invalid address \"{}\": expected an IPv4 or IPv6 address",
                n.address.get_ref()
            ),
        )
    })?;
    let err = |span: Range<usize>, m: String| {
        cx.err(Some(span), format!("[[bgp.neighbor]] {address}: {m}"))
    };
    if address.is_unspecified() || address.is_multicast() {
        return Err(err(n.address.span(), "not a unicast address".into()));
    }
    if *n.asn.get_ref() == 0 {
        return Err(err(n.asn.span(), "asn 0 is reserved (RFC 7607)".into()));
    }
    let bfd = match &n.bfd {
        Some(b) => match b.get_ref() {
            RawBfd::Flag(false) => None,
            RawBfd::Flag(true) => Some(BfdConfig {
                interval: DEFAULT_BFD_INTERVAL,
                multiplier: DEFAULT_BFD_MULTIPLIER,
                auth: None,
                esp_hint: false,
            }),
            RawBfd::Table {
                interval,
                multiplier,
                auth,
                key_id,
                key,
                esp_hint,
            } => {
                let interval = match interval {
                    None => DEFAULT_BFD_INTERVAL,
                    Some(s) => parse_duration(s).map_err(|m| err(b.span(), format!("bfd: {m}")))?,
                };
                // RFC 5880 §4.1: intervals are 32-bit microseconds; zero means "none".
                if interval < Duration::from_millis(10) || interval > Duration::from_secs(60) {
                    return Err(err(
                        b.span(),
                        "bfd interval must be between 10ms and 60s".into(),
                    ));
                }
                let multiplier = multiplier.unwrap_or(DEFAULT_BFD_MULTIPLIER);
                if multiplier == 0 {
                    return Err(err(b.span(), "bfd multiplier must be 1..=255".into()));
                }
                let auth = match (auth.as_deref(), key) {
                    (None, None) => None,
                    (None, Some(_)) => {
                        return Err(err(
                            b.span(),
                            "bfd key without auth: set auth = \"meticulous-keyed-sha1\" or \"keyed-sha1\"".into(),
                        ))
                    }
                    (Some(mode), key) => {
                        let mode = match mode {
                            "keyed-sha1" => bfd::Sha1Mode::Keyed,
                            "meticulous-keyed-sha1" => bfd::Sha1Mode::Meticulous,
                            other => {
                                return Err(err(
                                    b.span(),
                                    format!("bfd auth \"{other}\": expected \"meticulous-keyed-sha1\" or \"keyed-sha1\""),
                                ))
                            }
                        };
                        let Some(key) = key else {
                            return Err(err(b.span(), "bfd auth needs a key".into()));
                        };
                        let a = bfd::AuthConfig::new(mode, key_id.unwrap_or(1), key.as_bytes())
                            .map_err(|e| err(b.span(), format!("bfd key: {e}")))?;
                        Some(a)
                    }
                };
                Some(BfdConfig {
                    interval,
                    multiplier,
                    auth,
                    esp_hint: esp_hint.unwrap_or(false),
                })
            }
        },
        None => None,
    };
    let list = |l: &Option<Spanned<StrList>>| -> Result<Option<bgp::PrefixList>, ConfigError> {
        let Some(l) = l else { return Ok(None) };
        for item in &l.get_ref().0 {
            bgp::PrefixList::parse([item.get_ref().as_str()])
                .map_err(|e| err(item_span(item, l.span()), format!("{e}")))?;
        }
        bgp::PrefixList::parse(l.get_ref().0.iter().map(|s| s.get_ref().as_str()))
            .map(Some)
            .map_err(|e| err(l.span(), format!("{e}")))
    };
    let import = list(&n.import)?;
    let export = list(&n.export)?;
    let password = match &n.password {
        None => None,
        Some(p) if p.get_ref().is_empty() || p.get_ref().len() > MD5_KEY_MAX => {
            return Err(err(
                p.span(),
                format!("password must be 1 to {MD5_KEY_MAX} bytes (TCP MD5, RFC 2385)"),
            ))
        }
        Some(p) => Some(Password::new(p.get_ref().as_bytes())),
    };
    Ok(NeighborConfig {
        address,
        asn: *n.asn.get_ref(),
        bfd,
        passive: n.passive.unwrap_or(false),
        import,
        export,
        // `max_prefix = 0` is the explicit "no limit".
        max_prefix: match n.max_prefix.as_ref().map(|m| *m.get_ref()) {
            None => Some(DEFAULT_MAX_PREFIX),
            Some(0) => None,
            Some(m) => Some(m),
        },
        local_pref: n
            .local_pref
            .as_ref()
            .map(|m| *m.get_ref())
            .unwrap_or(bgp::limits::DEFAULT_LOCAL_PREF),
        gtsm: n.gtsm,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const TUN: &str =
        "[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\npsk = \"k\"\n";

    fn err(text: &str) -> ConfigError {
        parse(text, "c.toml").unwrap_err()
    }

    #[test]
    fn full_example() {
        let text = format!(
            "routing = \"embedded\"\n{TUN}\n[bgp]\nasn = 65001\nrouter_id = \"10.1.0.1\"\n\
             networks = [\"10.1.0.0/24\", \"fd00:1::/64\"]\nhold_time = \"9s\"\n\
             connect_retry = \"2s\"\nmax_paths = 2\n\
             redistribute = [\"connected\", \"static\", \"connected\"]\n\
             [[bgp.neighbor]]\naddress = \"169.254.12.2\"\nasn = 65002\n\
             bfd = {{ interval = \"100ms\", multiplier = 4 }}\npassive = true\n\
             import = [\"permit 10.0.0.0/8 le 24\"]\nexport = [\"permit 10.1.0.0/24\"]\n\
             max_prefix = 1000\nlocal_pref = 200\n\
             [[bgp.neighbor]]\naddress = \"fd00:12::2\"\nasn = 65002\nbfd = true\n"
        );
        let c = parse(&text, "c.toml").unwrap();
        assert_eq!(c.routing, RoutingMode::Embedded);
        let b = c.bgp.unwrap();
        assert_eq!(b.asn, 65001);
        assert_eq!(b.router_id, Ipv4Addr::new(10, 1, 0, 1));
        let networks: Vec<(IpAddr, u8)> = b
            .networks
            .iter()
            .map(|n| (n.addr(), n.prefix_len()))
            .collect();
        assert_eq!(
            networks,
            vec![
                ("10.1.0.0".parse().unwrap(), 24),
                ("fd00:1::".parse().unwrap(), 64)
            ]
        );
        assert_eq!(b.hold_time, Duration::from_secs(9));
        assert_eq!(b.connect_retry, Duration::from_secs(2));
        assert_eq!(b.max_paths, 2);
        assert_eq!(
            b.redistribute,
            vec![Redistribute::Connected, Redistribute::Static]
        );
        let n = &b.neighbors[0];
        assert_eq!(n.address, "169.254.12.2".parse::<IpAddr>().unwrap());
        assert_eq!(n.asn, 65002);
        assert_eq!(
            n.bfd,
            Some(BfdConfig {
                interval: Duration::from_millis(100),
                multiplier: 4,
                auth: None,
                esp_hint: false,
            })
        );
        assert!(n.passive);
        let imp = n.import.as_ref().unwrap();
        assert!(imp.permits(&bgp::Prefix::new("10.2.0.0".parse().unwrap(), 24).unwrap()));
        assert!(!imp.permits(&bgp::Prefix::new("10.2.0.0".parse().unwrap(), 25).unwrap()));
        assert!(n.export.is_some());
        assert_eq!(n.max_prefix, Some(1000));
        assert_eq!(n.local_pref, 200);
        let n = &b.neighbors[1];
        assert_eq!(
            n.bfd,
            Some(BfdConfig {
                interval: DEFAULT_BFD_INTERVAL,
                multiplier: 3,
                auth: None,
                esp_hint: false,
            })
        );
    }

    #[test]
    fn esp_hint_needs_the_neighbor_in_a_tunnel() {
        let bgp = "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\nasn = 2\n\
                   bfd = { interval = \"50ms\", esp_hint = true }\n";
        let text =
            format!("{TUN}address = [\"169.254.12.1/30\"]\n{bgp}address = \"169.254.12.2\"\n");
        let c = parse(&text, "c.toml").unwrap();
        let b = c.bgp.unwrap().neighbors[0].bfd.clone().unwrap();
        assert!(b.esp_hint);
        assert_eq!(b.interval, Duration::from_millis(50));
        // Outside every tunnel there is no ESP to watch: the bfd line is named.
        let e = err(&format!("{TUN}{bgp}address = \"10.0.0.2\"\n"));
        assert_eq!(e.line, Some(11), "{e}");
        assert!(
            e.to_string()
                .contains("esp_hint needs the neighbor inside a tunnel"),
            "{e}"
        );
    }

    #[test]
    fn security_options() {
        let c = parse(
            "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\n\
             gtsm = false\npassword = \"s3cret-md5\"\n\
             bfd = { interval = \"100ms\", multiplier = 3, auth = \"meticulous-keyed-sha1\", key_id = 7, key = \"bfd-key\" }\n\
             [[bgp.neighbor]]\naddress = \"10.0.0.3\"\nasn = 3\nbfd = { auth = \"keyed-sha1\", key = \"k\" }\n",
            "c.toml",
        )
        .unwrap();
        let b = c.bgp.unwrap();
        let n = &b.neighbors[0];
        assert_eq!(n.gtsm, Some(false));
        assert_eq!(n.password.as_ref().unwrap().secret(), b"s3cret-md5");
        let auth = n.bfd.as_ref().unwrap().auth.as_ref().unwrap();
        assert_eq!((auth.mode, auth.key_id), (bfd::Sha1Mode::Meticulous, 7));
        // Secrets never printed.
        let dbg = format!("{n:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("bfd-key"), "{dbg}");
        let n = &b.neighbors[1];
        assert_eq!(n.gtsm, None);
        assert!(n.password.is_none());
        let auth = n.bfd.as_ref().unwrap().auth.as_ref().unwrap();
        assert_eq!((auth.mode, auth.key_id), (bfd::Sha1Mode::Keyed, 1));
        for (bad, needle) in [
            ("password = \"\"", "password"),
            (&*format!("password = \"{}\"", "x".repeat(81)), "password"),
            ("bfd = { auth = \"md5\", key = \"k\" }", "bfd auth"),
            ("bfd = { auth = \"keyed-sha1\" }", "needs a key"),
            ("bfd = { key = \"k\" }", "without auth"),
            (
                "bfd = { auth = \"keyed-sha1\", key = \"123456789012345678901\" }",
                "bfd key",
            ),
        ] {
            let text = format!(
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\n{bad}\n"
            );
            let e = parse(&text, "c.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains("123456789012345678901"), "{e}");
        }
    }

    #[test]
    fn defaults() {
        let c = parse(
            "[bgp]\nasn = 4200000000\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 1\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.routing, RoutingMode::Embedded);
        let b = c.bgp.unwrap();
        assert_eq!(b.asn, 4_200_000_000);
        assert!(b.networks.is_empty());
        assert_eq!(b.hold_time, Duration::from_secs(90));
        assert_eq!(b.connect_retry, Duration::from_secs(5));
        assert_eq!(b.max_paths, 1);
        assert!(b.redistribute.is_empty());
        let n = &b.neighbors[0];
        assert_eq!(n.bfd, None);
        assert!(!n.passive);
        assert!(n.import.is_none() && n.export.is_none());
        assert_eq!(n.max_prefix, Some(DEFAULT_MAX_PREFIX));
        assert_eq!(n.local_pref, 100);
        // `max_prefix = 0`: no limit.
        let c = parse(
            "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\nmax_prefix = 0\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(c.bgp.unwrap().neighbors[0].max_prefix, None);
        // No [bgp] at all: no speaker.
        let c = parse(TUN, "c.toml").unwrap();
        assert!(c.bgp.is_none());
        let c = parse(&format!("routing = \"external\"\n{TUN}"), "c.toml").unwrap();
        assert_eq!(c.routing, RoutingMode::External);
        // bfd = false is off; a table with defaults is 300ms x 3.
        let c = parse(
            "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\nbfd = false\n\
             [[bgp.neighbor]]\naddress = \"10.0.0.3\"\nasn = 2\nbfd = {}\n",
            "c.toml",
        )
        .unwrap();
        let b = c.bgp.unwrap();
        assert_eq!(b.neighbors[0].bfd, None);
        assert_eq!(
            b.neighbors[1].bfd.as_ref().unwrap().interval,
            Duration::from_millis(300)
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("routing = \"bird\"\n", 1, "expected \"embedded\" or \"external\""),
            (
                "routing = \"external\"\n[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n",
                2,
                "routing = \"external\"",
            ),
            ("[bgp]\nasn = 1\nrouter_id = \"1.1.1\"\n", 3, "invalid router_id"),
            ("[bgp]\nasn = 0\nrouter_id = \"1.1.1.1\"\n", 2, "asn 0"),
            ("[bgp]\nasn = 1\nrouter_id = \"0.0.0.0\"\n", 3, "0.0.0.0"),
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nnetworks = [\"10.1.0.1/24\"]\n",
                4,
                "host bits",
            ),
            ("[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nhold_time = \"2s\"\n", 4, "hold_time"),
            ("[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nhold_time = \"1500ms\"\n", 4, "whole seconds"),
            ("[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nconnect_retry = \"0s\"\n", 4, "zero"),
            ("[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nmax_paths = 0\n", 4, "max_paths"),
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nredistribute = [\"connected\", \"ospf\"]\n",
                4,
                "unknown route class \"ospf\"",
            ),
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nredistribute = [\n  \"static\",\n  \"kernel\",\n]\n",
                6,
                "expected \"connected\" or \"static\"",
            ),
            ("[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nbogus = 1\n", 4, "unknown key `bogus`"),
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"x\"\nasn = 2\n",
                5,
                "invalid address",
            ),
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\n\
                 import = [\"permit 10.0.0.0/8\", \"allow 10.0.0.0/8\"]\n",
                7,
                "10.0.0.2",
            ),
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\n\
                 bfd = { interval = \"1ms\" }\n",
                7,
                "bfd interval",
            ),
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\n\
                 bfd = { multiplier = 0 }\n",
                7,
                "multiplier",
            ),
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\n\
                 [[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 3\n",
                8,
                "duplicate neighbor",
            ),
        ];
        for (text, line, needle) in cases {
            let e = err(text);
            assert_eq!(e.line, Some(*line), "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(e.to_string().starts_with(&format!("c.toml:{line}:")), "{e}");
        }
        // A neighbor on a tunnel's underlay address is a mistake.
        let e = err(&format!(
            "{TUN}[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"192.0.2.2\"\nasn = 2\n"
        ));
        assert!(e.to_string().contains("IKE peer"), "{e}");
    }
}
