//! The TOML configuration file.
//!
//! ```toml
//! control_socket = "/run/routevpn/routevpn.sock"   # default
//!
//! [[tunnel]]
//! name = "vti0"          # tunnel interface this peer owns (Linux ifname: 1..15 chars)
//! local = "192.0.2.1"    # underlay address IKE/ESP use (IPv4 or IPv6)
//! remote = "192.0.2.2"   # same address family as `local`
//! local_id = "routerA"   # default: the local address
//! remote_id = "routerB"  # default: the remote address
//! psk = "supersecret"    # or psk_file = "/path" (exactly one); "0x..." is hex
//! ike = ["aes256gcm16-prfsha384-x25519", "aes128-sha256-modp2048"]  # default: built-in
//! esp = ["aes256gcm16", "aes128-sha256"]                            # default: built-in
//! start = true           # initiate at start-up (default); false = wait as responder
//! # Optional:
//! address = ["169.254.12.1/30", "fd00:12::1/64"]  # tunnel interface addresses
//! mtu = 1400                                      # tunnel interface MTU
//! routes = ["10.2.0.0/24", { prefix = "10.3.0.0/16", metric = 100 }]
//! local_ts = ["0.0.0.0/0", "::/0"]                # traffic selectors (default: all)
//! remote_ts = ["0.0.0.0/0", "::/0"]
//! local_port = 500                                # IKE ports (default 500)
//! remote_port = 500
//! ```
//!
//! Every error names the file and line: `config.toml:7: tunnel "vti0": ...`.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ike::iana::IdType;
use ike::proposal::{self, AlgorithmProposal, Protocol};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;
use zeroize::{Zeroize, Zeroizing};

/// Where the daemon listens for `routevpn status` & co. unless configured otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/routevpn/routevpn.sock";
/// RFC 7296 §2: IKE uses UDP port 500 (4500 after NAT detection, RFC 3948).
pub const DEFAULT_IKE_PORT: u16 = 500;
/// Traffic selectors when none are configured: everything, both families.
pub const DEFAULT_TS: [&str; 2] = ["0.0.0.0/0", "::/0"];
/// Linux IFNAMSIZ is 16 including the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub control_socket: PathBuf,
    pub tunnels: Vec<TunnelConfig>,
    /// `routing = "embedded"` (default) or `"external"`; see [`RoutingMode`].
    pub routing: RoutingMode,
    /// The `[bgp]` table (embedded BGP speaker), if any; see [`BgpConfig`].
    pub bgp: Option<BgpConfig>,
}

/// One `[[tunnel]]`: a peer and the tunnel interface routed through it.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelConfig {
    /// Tunnel interface name.
    pub name: String,
    pub local: IpAddr,
    pub remote: IpAddr,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_id: Identity,
    pub remote_id: Identity,
    pub psk: Psk,
    pub ike: Vec<AlgorithmProposal>,
    pub esp: Vec<AlgorithmProposal>,
    /// Initiate at start-up; otherwise only respond.
    pub start: bool,
    /// Addresses (with prefix length) for the tunnel interface.
    pub addresses: Vec<(IpAddr, u8)>,
    pub mtu: Option<u16>,
    /// Prefixes routed into the tunnel.
    pub routes: Vec<Route>,
    pub local_ts: Vec<(IpAddr, u8)>,
    pub remote_ts: Vec<(IpAddr, u8)>,
    /// Rekey the IKE SA after this long (RFC 7296 §2.8), minus a random margin.
    pub ike_lifetime: Duration,
    /// Rekey CHILD SAs after this long, or after these many bytes/packets.
    pub child_lifetime: Duration,
    pub child_lifetime_bytes: Option<u64>,
    pub child_lifetime_packets: Option<u64>,
    /// Liveness check after this long without traffic from the peer; None = off.
    pub dpd: Option<Duration>,
    pub dpd_action: DpdAction,
    /// Anti-replay window in packets (RFC 4303 §3.4.3).
    pub replay_window: u32,
    /// First IKE retransmission timeout (doubled each time) and the number of
    /// retransmissions before the peer is declared dead (RFC 7296 §2.4).
    pub retransmit_timeout: Duration,
    pub retransmit_tries: u32,
}

/// What to do when the peer is found dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpdAction {
    /// Re-initiate the tunnel.
    Restart,
    /// Only take it down (the peer will re-initiate).
    Clear,
}

/// Default IKE SA lifetime (strongSwan's `rekey_time` default).
pub const DEFAULT_IKE_LIFETIME: Duration = Duration::from_secs(4 * 3600);
/// Default CHILD SA lifetime (strongSwan's default).
pub const DEFAULT_CHILD_LIFETIME: Duration = Duration::from_secs(3600);
/// Default liveness interval.
pub const DEFAULT_DPD: Duration = Duration::from_secs(30);
/// Default anti-replay window (RFC 4303 §3.4.3 asks for at least 32; we use 128).
pub const DEFAULT_REPLAY_WINDOW: u32 = 128;

/// Parses "100ms", "10s", "5m", "4h", "1d" (a bare number means seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid duration {s:?} (examples: \"100ms\", \"10s\", \"5m\", \"4h\")")
    })?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Ok(d)
}

/// A prefix routed into the tunnel interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: (IpAddr, u8),
    pub metric: Option<u32>,
}

/// An IKE identity (RFC 7296 §3.5), written as in strongSwan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Fqdn(String),
    Rfc822(String),
    KeyId(Vec<u8>),
}

impl Identity {
    /// strongSwan rules: an IP address is ID_IPV4_ADDR/ID_IPV6_ADDR; `@#hex` is
    /// ID_KEY_ID; `@@user@host` and `user@host` are ID_RFC822_ADDR; `@name` and
    /// anything else is ID_FQDN (the leading `@` only forces the FQDN type).
    pub fn parse(s: &str) -> Result<Identity, String> {
        if s.is_empty() {
            return Err("empty identity".into());
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(format!("identity {s:?} contains control characters"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Identity::from_addr(ip));
        }
        let non_empty = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(format!("identity {s:?}: empty {what}"))
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(hex) = s.strip_prefix("@#") {
            let bytes = decode_hex(hex)
                .ok_or_else(|| format!("identity {s:?}: \"@#\" must be followed by hex digits"))?;
            if bytes.is_empty() {
                return Err(format!("identity {s:?}: empty key id"));
            }
            return Ok(Identity::KeyId(bytes));
        }
        if let Some(rest) = s.strip_prefix("@@") {
            return non_empty(rest, "email address").map(Identity::Rfc822);
        }
        if let Some(rest) = s.strip_prefix('@') {
            return non_empty(rest, "name").map(Identity::Fqdn);
        }
        if s.contains('@') {
            return Ok(Identity::Rfc822(s.to_string()));
        }
        if s.contains('=') {
            return Err(format!(
                "identity {s:?} looks like a distinguished name, which is not supported"
            ));
        }
        Ok(Identity::Fqdn(s.to_string()))
    }

    /// The identity of an IP address.
    pub fn from_addr(ip: IpAddr) -> Identity {
        match ip {
            IpAddr::V4(a) => Identity::Ipv4(a),
            IpAddr::V6(a) => Identity::Ipv6(a),
        }
    }

    /// The ID payload's ID Type (RFC 7296 §3.5).
    pub fn id_type(&self) -> IdType {
        match self {
            Identity::Ipv4(_) => IdType::IPV4_ADDR,
            Identity::Ipv6(_) => IdType::IPV6_ADDR,
            Identity::Fqdn(_) => IdType::FQDN,
            Identity::Rfc822(_) => IdType::RFC822_ADDR,
            Identity::KeyId(_) => IdType::KEY_ID,
        }
    }

    /// The ID payload's Identification Data.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Identity::Ipv4(a) => a.octets().to_vec(),
            Identity::Ipv6(a) => a.octets().to_vec(),
            Identity::Fqdn(s) | Identity::Rfc822(s) => s.as_bytes().to_vec(),
            Identity::KeyId(k) => k.clone(),
        }
    }

    /// Decode a received ID payload; `None` for types we don't handle or malformed data.
    pub fn from_payload(id_type: IdType, data: &[u8]) -> Option<Identity> {
        match id_type {
            IdType::IPV4_ADDR => <[u8; 4]>::try_from(data)
                .ok()
                .map(|o| Identity::Ipv4(o.into())),
            IdType::IPV6_ADDR => <[u8; 16]>::try_from(data)
                .ok()
                .map(|o| Identity::Ipv6(o.into())),
            IdType::FQDN => String::from_utf8(data.to_vec()).ok().map(Identity::Fqdn),
            IdType::RFC822_ADDR => String::from_utf8(data.to_vec()).ok().map(Identity::Rfc822),
            IdType::KEY_ID => Some(Identity::KeyId(data.to_vec())),
            _ => None,
        }
    }
}

impl FromStr for Identity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::parse(s)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ipv4(a) => a.fmt(f),
            Identity::Ipv6(a) => a.fmt(f),
            Identity::Fqdn(s) | Identity::Rfc822(s) => f.write_str(s),
            Identity::KeyId(k) => {
                f.write_str("@#")?;
                k.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

/// A pre-shared key; zeroized on drop, never printed.
#[derive(Clone)]
pub struct Psk(Zeroizing<Vec<u8>>);

impl PartialEq for Psk {
    fn eq(&self, other: &Psk) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl Psk {
    pub fn new(bytes: Vec<u8>) -> Psk {
        Psk(Zeroizing::new(bytes))
    }

    /// strongSwan syntax: `0x` followed by hex digits is binary, anything else is taken
    /// literally.
    pub fn from_config_str(s: &str) -> Result<Psk, String> {
        let psk = match s.strip_prefix("0x") {
            Some(hex) => Psk::new(decode_hex(hex).ok_or("psk: invalid hex after \"0x\"")?),
            None => Psk::new(s.as_bytes().to_vec()),
        };
        if psk.as_bytes().is_empty() {
            return Err("psk is empty".into());
        }
        Ok(psk)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key in its zeroizing buffer (clone it to hand it to the IKE core).
    pub fn secret(&self) -> &Zeroizing<Vec<u8>> {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|pair| {
            let digit = |b: u8| (b as char).to_digit(16);
            let (hi, lo) = (digit(*pair.first()?)?, digit(*pair.get(1)?)?);
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

/// A configuration error, displayed as `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line, when the error can be placed.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending value.
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Read and validate a configuration file. A relative `psk_file` is resolved against
/// the configuration file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    // The text holds the PSKs: keep it in a zeroizing buffer.
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        })?;
    parse_in(&text, &file, path.parent())
}

/// Parse and validate configuration text; `file_name` is used in error messages and
/// its directory to resolve a relative `psk_file`.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    parse_in(text, file_name, Path::new(file_name).parent())
}

/// A list of strings also accepted as a single string; elements keep their spans.
#[derive(Debug)]
struct StrList(Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrList, E> {
                // No span of its own: the caller falls back to the key's span.
                Ok(StrList(vec![Spanned::new(0..0, v.to_string())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    v.push(s);
                }
                Ok(StrList(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `routes` element: `"10.2.0.0/24"` or `{ prefix = "10.2.0.0/24", metric = 100 }`.
#[derive(Debug)]
struct RawRoute {
    prefix: String,
    metric: Option<u32>,
}

impl<'de> Deserialize<'de> for RawRoute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            prefix: String,
            metric: Option<u32>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRoute;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a prefix string or a table { prefix, metric }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawRoute, E> {
                Ok(RawRoute {
                    prefix: v.to_string(),
                    metric: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRoute, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawRoute {
                    prefix: t.prefix,
                    metric: t.metric,
                })
            }
        }
        d.deserialize_any(V)
    }
}

// No Debug on the raw structs: they hold the PSK in plain text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    control_socket: Option<Spanned<PathBuf>>,
    #[serde(default)]
    tunnel: Vec<Spanned<RawTunnel>>,
    routing: Option<Spanned<String>>,
    bgp: Option<Spanned<RawBgp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTunnel {
    name: Spanned<String>,
    local: Spanned<String>,
    remote: Spanned<String>,
    local_port: Option<Spanned<u16>>,
    remote_port: Option<Spanned<u16>>,
    local_id: Option<Spanned<String>>,
    remote_id: Option<Spanned<String>>,
    psk: Option<Spanned<String>>,
    psk_file: Option<Spanned<PathBuf>>,
    ike: Option<Spanned<StrList>>,
    esp: Option<Spanned<StrList>>,
    start: Option<bool>,
    address: Option<Spanned<StrList>>,
    mtu: Option<Spanned<u16>>,
    routes: Option<Spanned<Vec<Spanned<RawRoute>>>>,
    local_ts: Option<Spanned<StrList>>,
    remote_ts: Option<Spanned<StrList>>,
    ike_lifetime: Option<Spanned<String>>,
    child_lifetime: Option<Spanned<String>>,
    child_lifetime_bytes: Option<u64>,
    child_lifetime_packets: Option<u64>,
    dpd: Option<Spanned<DpdSetting>>,
    dpd_action: Option<Spanned<String>>,
    replay_window: Option<Spanned<u32>>,
    retransmit_timeout: Option<Spanned<String>>,
    retransmit_tries: Option<Spanned<u32>>,
}

/// `dpd = "10s"` or `dpd = false`.
#[derive(Deserialize)]
#[serde(untagged)]
enum DpdSetting {
    Off(bool),
    Interval(String),
}

impl Drop for RawTunnel {
    fn drop(&mut self) {
        if let Some(psk) = &mut self.psk {
            psk.get_mut().zeroize();
        }
    }
}

/// Error construction with line lookup.
struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = line_col(self.text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The span of a list element, or of the whole key for a bare string.
fn item_span(item: &Spanned<String>, outer: Range<usize>) -> Range<usize> {
    if item.span().is_empty() {
        outer
    } else {
        item.span()
    }
}

/// `addr/len` or a bare address (a host prefix).
fn parse_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("invalid prefix \"{s}\": expected an address like 10.0.0.0/24"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(l) if l <= max => l,
            _ => {
                return Err(format!(
                    "invalid prefix length in \"{s}\": expected 0..={max}"
                ))
            }
        },
    };
    Ok((addr, len))
}

/// The network address of a prefix (host bits cleared).
fn network(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

/// A prefix naming a network: host bits must be zero (likely a typo otherwise).
fn parse_network(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = parse_prefix(s)?;
    let net = network(addr, len);
    if net != addr {
        return Err(format!(
            "\"{s}\" has host bits set (did you mean {net}/{len}?)"
        ));
    }
    Ok((addr, len))
}

/// Linux `dev_valid_name`, restricted to characters safe in shell commands and logs.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "tunnel name \"{name}\" must be 1..={MAX_IFNAME_LEN} characters (Linux interface name)"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!(
            "tunnel name \"{name}\" is not a valid interface name"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "tunnel name \"{name}\" contains {c:?}; use letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

fn parse_in(text: &str, file: &str, base_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let cx = Ctx { text, file };
    let raw: RawConfig = toml::from_str(text).map_err(|e| cx.err(e.span(), e.message()))?;

    let control_socket = match &raw.control_socket {
        Some(s) if s.get_ref().as_os_str().is_empty() => {
            return Err(cx.err(Some(s.span()), "control_socket is empty"))
        }
        Some(s) => s.get_ref().clone(),
        None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
    };

    let mut tunnels: Vec<TunnelConfig> = Vec::new();
    let mut names = HashSet::new();
    let mut pairs = HashSet::new();
    for t in &raw.tunnel {
        let name = t.get_ref().name.get_ref();
        check_ifname(name).map_err(|m| cx.err(Some(t.get_ref().name.span()), m))?;
        if !names.insert(name.clone()) {
            return Err(cx.err(
                Some(t.get_ref().name.span()),
                format!("duplicate tunnel name \"{name}\""),
            ));
        }
        let tc = tunnel(&cx, t, base_dir)?;
        if !pairs.insert((tc.local, tc.remote)) {
            return Err(cx.err(
                Some(t.get_ref().remote.span()),
                format!(
                    "tunnel \"{name}\": another tunnel already uses local {} and remote {}",
                    tc.local, tc.remote
                ),
            ));
        }
        tunnels.push(tc);
    }
    let (routing, bgp) = routing_and_bgp(&cx, &raw, &tunnels)?;
    Ok(Config {
        control_socket,
        tunnels,
        routing,
        bgp,
    })
}

fn tunnel(
    cx: &Ctx,
    spanned: &Spanned<RawTunnel>,
    base_dir: Option<&Path>,
) -> Result<TunnelConfig, ConfigError> {
    let t = spanned.get_ref();
    let name = t.name.get_ref().clone();
    // Semantic errors carry the tunnel's name.
    let err = |span: Range<usize>, m: String| cx.err(Some(span), format!("tunnel \"{name}\": {m}"));

    let addr = |s: &Spanned<String>, what: &str| -> Result<IpAddr, ConfigError> {
        s.get_ref().trim().parse::<IpAddr>().map_err(|_| {
            err(
                s.span(),
                format!(
                    "invalid {what} address \"{}\": expected an IPv4 or IPv6 address",
                    s.get_ref()
                ),
            )
        })
    };
    let local = addr(&t.local, "local")?;
    let remote = addr(&t.remote, "remote")?;
    if local.is_ipv4() != remote.is_ipv4() {
        return Err(err(
            t.remote.span(),
            format!("local {local} and remote {remote} are of different address families"),
        ));
    }
    let port = |p: &Option<Spanned<u16>>| -> Result<u16, ConfigError> {
        match p {
            None => Ok(DEFAULT_IKE_PORT),
            Some(p) if *p.get_ref() == 0 => Err(err(p.span(), "port 0 is not valid".into())),
            Some(p) => Ok(*p.get_ref()),
        }
    };
    let local_port = port(&t.local_port)?;
    let remote_port = port(&t.remote_port)?;

    let id = |s: &Option<Spanned<String>>, default: IpAddr| -> Result<Identity, ConfigError> {
        match s {
            None => Ok(Identity::from_addr(default)),
            Some(s) => Identity::parse(s.get_ref()).map_err(|m| err(s.span(), m)),
        }
    };
    let local_id = id(&t.local_id, local)?;
    let remote_id = id(&t.remote_id, remote)?;

    let psk = match (&t.psk, &t.psk_file) {
        (Some(_), Some(f)) => {
            return Err(err(
                f.span(),
                "psk and psk_file are mutually exclusive; set only one".into(),
            ))
        }
        (None, None) => {
            return Err(err(
                spanned.span(),
                "a pre-shared key is required: set psk or psk_file".into(),
            ))
        }
        (Some(p), None) => Psk::from_config_str(p.get_ref()).map_err(|m| err(p.span(), m))?,
        (None, Some(f)) => read_psk_file(f.get_ref(), base_dir).map_err(|m| err(f.span(), m))?,
    };

    let proposals = |list: &Option<Spanned<StrList>>, protocol: Protocol| {
        let (what, default) = match protocol {
            Protocol::Ike => (
                "ike",
                proposal::default_ike as fn() -> Vec<AlgorithmProposal>,
            ),
            Protocol::Esp => (
                "esp",
                proposal::default_esp as fn() -> Vec<AlgorithmProposal>,
            ),
        };
        let Some(list) = list else {
            return Ok(default());
        };
        let mut out = Vec::new();
        for item in &list.get_ref().0 {
            // strongSwan writes alternatives comma-separated in one string.
            for s in item.get_ref().split(',').map(str::trim) {
                let p = proposal::parse(s, protocol).map_err(|e| {
                    err(
                        item_span(item, list.span()),
                        format!("{} in {what} proposal \"{}\"", e.reason(), e.proposal()),
                    )
                })?;
                out.push(p);
            }
        }
        if out.is_empty() {
            return Err(err(
                list.span(),
                format!("{what}: at least one proposal is required"),
            ));
        }
        Ok(out)
    };
    let ike = proposals(&t.ike, Protocol::Ike)?;
    let esp = proposals(&t.esp, Protocol::Esp)?;

    let prefixes = |list: &Option<Spanned<StrList>>,
                    what: &str,
                    parse: fn(&str) -> Result<(IpAddr, u8), String>,
                    default: &[&str]|
     -> Result<Vec<(IpAddr, u8)>, ConfigError> {
        match list {
            None => Ok(default
                .iter()
                .map(|s| parse(s).expect("built-in prefix"))
                .collect()),
            Some(list) => list
                .get_ref()
                .0
                .iter()
                .map(|item| {
                    parse(item.get_ref())
                        .map_err(|m| err(item_span(item, list.span()), format!("{what}: {m}")))
                })
                .collect(),
        }
    };
    let addresses = prefixes(&t.address, "address", parse_prefix, &[])?;
    let local_ts = prefixes(&t.local_ts, "local_ts", parse_network, &DEFAULT_TS)?;
    let remote_ts = prefixes(&t.remote_ts, "remote_ts", parse_network, &DEFAULT_TS)?;
    for (list, what) in [(&t.local_ts, "local_ts"), (&t.remote_ts, "remote_ts")] {
        if let Some(list) = list {
            if list.get_ref().0.is_empty() {
                return Err(err(
                    list.span(),
                    format!("{what}: at least one selector is required"),
                ));
            }
        }
    }

    let mtu = match &t.mtu {
        None => None,
        Some(m) => {
            let v = *m.get_ref();
            // RFC 791: every IPv4 host handles 68 bytes; RFC 8200 §5: IPv6 needs 1280.
            let min = if addresses.iter().any(|(a, _)| a.is_ipv6()) {
                1280
            } else {
                68
            };
            if v < min {
                return Err(err(
                    m.span(),
                    format!("mtu {v} is too small (minimum {min} for the configured addresses)"),
                ));
            }
            Some(v)
        }
    };

    let routes = match &t.routes {
        None => Vec::new(),
        Some(list) => list
            .get_ref()
            .iter()
            .map(|r| {
                let prefix = parse_network(&r.get_ref().prefix)
                    .map_err(|m| err(r.span(), format!("routes: {m}")))?;
                Ok(Route {
                    prefix,
                    metric: r.get_ref().metric,
                })
            })
            .collect::<Result<_, ConfigError>>()?,
    };

    let duration = |v: &Option<Spanned<String>>, what: &str, default: Duration| match v {
        None => Ok(default),
        Some(v) => match parse_duration(v.get_ref()) {
            Ok(d) if d >= Duration::from_secs(1) => Ok(d),
            Ok(_) => Err(err(v.span(), format!("{what} must be at least 1s"))),
            Err(m) => Err(err(v.span(), format!("{what}: {m}"))),
        },
    };
    let ike_lifetime = duration(&t.ike_lifetime, "ike_lifetime", DEFAULT_IKE_LIFETIME)?;
    let child_lifetime = duration(&t.child_lifetime, "child_lifetime", DEFAULT_CHILD_LIFETIME)?;
    let dpd = match &t.dpd {
        None => Some(DEFAULT_DPD),
        Some(d) => match d.get_ref() {
            DpdSetting::Off(false) => None,
            DpdSetting::Off(true) => Some(DEFAULT_DPD),
            DpdSetting::Interval(s) => Some(
                parse_duration(s)
                    .ok()
                    .filter(|d| *d >= Duration::from_millis(100))
                    .ok_or_else(|| {
                        err(
                            d.span(),
                            format!("dpd: invalid interval {s:?} (at least \"100ms\", or false)"),
                        )
                    })?,
            ),
        },
    };
    let dpd_action = match &t.dpd_action {
        None => DpdAction::Restart,
        Some(a) => match a.get_ref().as_str() {
            "restart" => DpdAction::Restart,
            "clear" => DpdAction::Clear,
            other => {
                return Err(err(
                    a.span(),
                    format!("dpd_action must be \"restart\" or \"clear\", not {other:?}"),
                ))
            }
        },
    };
    let retransmit_timeout = match &t.retransmit_timeout {
        None => ike::limits::RETRANSMIT_TIMEOUT,
        Some(v) => parse_duration(v.get_ref())
            .ok()
            .filter(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(60))
            .ok_or_else(|| {
                err(
                    v.span(),
                    format!(
                        "retransmit_timeout: invalid {:?} (100ms to 60s)",
                        v.get_ref()
                    ),
                )
            })?,
    };
    let retransmit_tries = match &t.retransmit_tries {
        None => ike::limits::RETRANSMIT_TRIES,
        Some(v) if (1..=20).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            return Err(err(
                v.span(),
                "retransmit_tries must be between 1 and 20".to_string(),
            ))
        }
    };
    let replay_window = match &t.replay_window {
        None => DEFAULT_REPLAY_WINDOW,
        Some(w) if (32..=4096).contains(w.get_ref()) => *w.get_ref(),
        Some(w) => {
            return Err(err(
                w.span(),
                "replay_window must be between 32 and 4096".to_string(),
            ))
        }
    };

    Ok(TunnelConfig {
        name: name.clone(),
        local,
        remote,
        local_port,
        remote_port,
        local_id,
        remote_id,
        psk,
        ike,
        esp,
        start: t.start.unwrap_or(true),
        addresses,
        mtu,
        routes,
        local_ts,
        remote_ts,
        ike_lifetime,
        child_lifetime,
        child_lifetime_bytes: t.child_lifetime_bytes,
        child_lifetime_packets: t.child_lifetime_packets,
        dpd,
        dpd_action,
        replay_window,
        retransmit_timeout,
        retransmit_tries,
    })
}

/// Read a PSK file: its content without one trailing newline; `0x...` text is hex.
fn read_psk_file(path: &Path, base_dir: Option<&Path>) -> Result<Psk, String> {
    let full = match base_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    };
    let mut bytes = Zeroizing::new(
        std::fs::read(&full)
            .map_err(|e| format!("cannot read psk_file {}: {e}", full.display()))?,
    );
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    match std::str::from_utf8(&bytes) {
        Ok(s) => Psk::from_config_str(s),
        Err(_) => Ok(Psk::new(bytes.to_vec())),
    }
    .map_err(|m| format!("psk_file {}: {m}", full.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ike::iana::{DhId, EncrId};

    const EXAMPLE: &str = r#"control_socket = "/run/routevpn/routevpn.sock"   # default

[[tunnel]]
name = "vti0"
local = "192.0.2.1"
remote = "192.0.2.2"
local_id = "routerA"
remote_id = "routerB"
psk = "supersecret"
ike = ["aes256gcm16-prfsha384-x25519", "aes128-sha256-modp2048"]
esp = ["aes256gcm16", "aes128-sha256"]
start = true
"#;

    fn err(text: &str) -> ConfigError {
        parse(text, "config.toml").unwrap_err()
    }

    const MIN: &str =
        "[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\npsk = \"k\"\n";

    #[test]
    fn example_parses() {
        let c = parse(EXAMPLE, "config.toml").unwrap();
        assert_eq!(
            c.control_socket,
            PathBuf::from("/run/routevpn/routevpn.sock")
        );
        assert_eq!(c.tunnels.len(), 1);
        let t = &c.tunnels[0];
        assert_eq!(t.name, "vti0");
        assert_eq!(t.local, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(t.remote, "192.0.2.2".parse::<IpAddr>().unwrap());
        assert_eq!(t.local_id, Identity::Fqdn("routerA".into()));
        assert_eq!(t.remote_id, Identity::Fqdn("routerB".into()));
        assert_eq!(t.psk.as_bytes(), b"supersecret");
        assert_eq!(t.ike.len(), 2);
        assert_eq!(t.ike[0].encr, vec![(EncrId::AES_GCM_16, Some(256))]);
        assert_eq!(t.ike[1].dh, vec![DhId::MODP_2048]);
        assert_eq!(t.esp.len(), 2);
        assert!(t.start);
        // Secrets stay out of Debug output.
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("supersecret"), "{dbg}");
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn defaults() {
        let c = parse(MIN, "x.toml").unwrap();
        assert_eq!(c.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
        let t = &c.tunnels[0];
        assert_eq!(t.local_port, 500);
        assert_eq!(t.remote_port, 500);
        assert_eq!(t.local_id, Identity::Ipv4("192.0.2.1".parse().unwrap()));
        assert_eq!(t.remote_id, Identity::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(t.ike, proposal::default_ike());
        assert_eq!(t.esp, proposal::default_esp());
        assert!(t.start);
        assert!(t.addresses.is_empty());
        assert_eq!(t.mtu, None);
        assert!(t.routes.is_empty());
        let all = vec![("0.0.0.0".parse().unwrap(), 0), ("::".parse().unwrap(), 0)];
        assert_eq!(t.local_ts, all);
        assert_eq!(t.remote_ts, all);
        // An empty file is a valid (idle) configuration.
        assert!(parse("", "x.toml").unwrap().tunnels.is_empty());
    }

    #[test]
    fn optional_keys() {
        let text = format!(
            "{MIN}address = [\"169.254.12.1/30\", \"fd00::1/64\"]\nmtu = 1400\n\
             routes = [\"10.2.0.0/24\", {{ prefix = \"2001:db8::/32\", metric = 7 }}]\n\
             local_ts = \"10.1.0.0/16\"\nremote_ts = [\"10.2.0.0/16\", \"192.0.2.9\"]\n\
             local_port = 4500\nremote_port = 4501\nstart = false\n\
             ike = \"aes128-sha256-modp2048, aes256gcm16-prfsha256-ecp256\"\n"
        );
        let c = parse(&text, "x.toml").unwrap();
        let t = &c.tunnels[0];
        let p = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            t.addresses,
            vec![(p("169.254.12.1"), 30), (p("fd00::1"), 64)]
        );
        assert_eq!(t.mtu, Some(1400));
        assert_eq!(
            t.routes,
            vec![
                Route {
                    prefix: (p("10.2.0.0"), 24),
                    metric: None
                },
                Route {
                    prefix: (p("2001:db8::"), 32),
                    metric: Some(7)
                },
            ]
        );
        assert_eq!(t.local_ts, vec![(p("10.1.0.0"), 16)]);
        assert_eq!(t.remote_ts, vec![(p("10.2.0.0"), 16), (p("192.0.2.9"), 32)]);
        assert_eq!((t.local_port, t.remote_port), (4500, 4501));
        assert!(!t.start);
        assert_eq!(t.ike.len(), 2);
        // A single address string works too.
        let c = parse(&format!("{MIN}address = \"10.0.0.1/31\"\n"), "x").unwrap();
        assert_eq!(c.tunnels[0].addresses, vec![(p("10.0.0.1"), 31)]);
    }

    #[test]
    fn unknown_algorithm_names_line() {
        let text = EXAMPLE.replace("\"aes128-sha256-modp2048\"", "\"aes257-sha256\"");
        let e = err(&text);
        assert_eq!(
            e.to_string(),
            "config.toml:10: tunnel \"vti0\": unknown algorithm \"aes257\" in ike proposal \"aes257-sha256\""
        );
        // Multi-line list: the element's own line.
        let text = format!("{MIN}esp = [\n  \"aes128gcm16\",\n  \"aes128\",\n]\n");
        let e = err(&text);
        assert_eq!(e.line, Some(8), "{e}");
        assert!(
            e.message
                .contains("no integrity algorithm in esp proposal \"aes128\""),
            "{e}"
        );
    }

    #[test]
    fn syntax_and_schema_errors_name_line() {
        let e = err("control_socket = \"/x\"\n[[tunnel]]\nname = \"a\"\nbogus = 1\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("unknown field"), "{e}");
        let e = err("control_socket = \n");
        assert_eq!(e.line, Some(1), "{e}");
        let e = err("# c\n\n[[tunnel]]\nname = \"a\"\nlocal = \"192.0.2.1\"\n");
        assert!(e.message.contains("missing field"), "{e}");
        assert!(e.line.is_some());
        let e = err(&format!("{MIN}local_port = 70000\n"));
        assert_eq!(e.line, Some(6), "{e}");
        let e = err(&format!(
            "{MIN}routes = [{{ prefix = \"10.0.0.0/8\", metrc = 1 }}]\n"
        ));
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("metrc"), "{e}");
        let e = err("[server]\nx = 1\n");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn semantic_errors_name_line() {
        let cases: &[(&str, &str)] = &[
            ("local = \"192.0.2.300\"", "invalid local address"),
            ("remote = \"2001:db8::2\"", "different address families"),
            ("psk_file = \"/nonexistent\"", "mutually exclusive"),
            ("local_id = \"@#xyz\"", "hex"),
            ("remote_id = \"\"", "empty identity"),
            ("remote_id = \"CN=foo\"", "distinguished name"),
            ("address = [\"10.0.0.1/33\"]", "prefix length"),
            ("routes = [\"10.2.0.1/24\"]", "did you mean 10.2.0.0/24"),
            ("remote_ts = \"10.2.0.1/24\"", "host bits"),
            ("local_ts = []", "at least one selector"),
            ("ike = []", "at least one proposal"),
            ("esp = [\"aes128gcm16-sha256\"]", "AEAD"),
            ("ike = [\"aes128-sha256\"]", "key exchange"),
            ("mtu = 60", "too small"),
            ("local_port = 0", "port 0"),
        ];
        for &(extra, needle) in cases {
            // TOML forbids duplicate keys: drop the line the variation replaces.
            let text = MIN
                .lines()
                .filter(|l| {
                    let key = extra.split(' ').next().unwrap();
                    !l.starts_with(&format!("{key} "))
                })
                .chain(std::iter::once(extra))
                .collect::<Vec<_>>()
                .join("\n");
            let e = err(&text);
            let msg = e.to_string();
            assert!(msg.contains(needle), "{extra}: {msg}");
            assert!(msg.contains("tunnel \"t0\""), "{extra}: {msg}");
            // The varied key is always the last line.
            let expect_line = text.lines().count();
            assert_eq!(e.line, Some(expect_line), "{extra}: {msg}");
        }
        let e = err(&format!("{MIN}address = [\"fd00::1/64\"]\nmtu = 1000\n"));
        assert_eq!(e.line, Some(7), "{e}");
        assert!(e.message.contains("minimum 1280"), "{e}");
    }

    #[test]
    fn tunnel_level_errors() {
        let no_psk = "\n[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\n";
        let e = err(no_psk);
        assert!(e.message.contains("psk or psk_file"), "{e}");
        assert!(matches!(e.line, Some(2..=3)), "{e}");

        let dup_name = format!("{MIN}\n{}", MIN.replace("192.0.2.2", "192.0.2.3"));
        let e = err(&dup_name);
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.message.contains("duplicate tunnel name \"t0\""), "{e}");

        let dup_pair = format!("{MIN}\n{}", MIN.replace("t0", "t1"));
        let e = err(&dup_pair);
        assert_eq!(e.line, Some(10), "{e}");
        assert!(e.message.contains("already uses local 192.0.2.1"), "{e}");

        for bad in ["", "this-name-is-too-long", "a/b", "a b", ".."] {
            let e = err(&MIN.replace("\"t0\"", &format!("{bad:?}")));
            assert_eq!(e.line, Some(2), "{bad}: {e}");
            assert!(e.message.contains("tunnel name"), "{bad}: {e}");
        }
        assert!(parse(&MIN.replace("t0", "vti-a.b_c0123456"), "x").is_err());
        assert!(parse(&MIN.replace("t0", "vti-a.b_c012345"), "x").is_ok());
    }

    #[test]
    fn psk_forms_and_file() {
        let c = parse(&MIN.replace("\"k\"", "\"0x00ff10\""), "x").unwrap();
        assert_eq!(c.tunnels[0].psk.as_bytes(), &[0, 0xff, 0x10]);
        let e = err(&MIN.replace("\"k\"", "\"0xzz\""));
        assert!(e.message.contains("hex"), "{e}");
        let e = err(&MIN.replace("\"k\"", "\"\""));
        assert!(e.message.contains("empty"), "{e}");
        assert_eq!(format!("{:?}", Psk::new(b"x".to_vec())), "<redacted>");

        let dir = std::env::temp_dir().join(format!("routevpn-cfg-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("peer.psk"), b"from file\n").unwrap();
        std::fs::write(dir.join("hex.psk"), b"0x0102\r\n").unwrap();
        let cfg_path = dir.join("routevpn.toml");
        let with_file = MIN.replace("psk = \"k\"", "psk_file = \"peer.psk\"");
        std::fs::write(&cfg_path, &with_file).unwrap();
        // Relative psk_file is resolved against the config file's directory.
        let c = load(&cfg_path).unwrap();
        assert_eq!(c.tunnels[0].psk.as_bytes(), b"from file");
        std::fs::write(&cfg_path, with_file.replace("peer.psk", "hex.psk")).unwrap();
        assert_eq!(load(&cfg_path).unwrap().tunnels[0].psk.as_bytes(), &[1, 2]);
        std::fs::write(&cfg_path, with_file.replace("peer.psk", "missing.psk")).unwrap();
        let e = load(&cfg_path).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("cannot read psk_file"), "{e}");
        let e = load(&dir.join("nope.toml")).unwrap_err();
        assert_eq!(e.line, None);
        assert!(e.to_string().contains("nope.toml: cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn identities() {
        let cases: &[(&str, Identity, IdType, &str)] = &[
            (
                "192.0.2.1",
                Identity::Ipv4("192.0.2.1".parse().unwrap()),
                IdType::IPV4_ADDR,
                "192.0.2.1",
            ),
            (
                "2001:db8::1",
                Identity::Ipv6("2001:db8::1".parse().unwrap()),
                IdType::IPV6_ADDR,
                "2001:db8::1",
            ),
            (
                "routerA",
                Identity::Fqdn("routerA".into()),
                IdType::FQDN,
                "routerA",
            ),
            (
                "@vpn.example.org",
                Identity::Fqdn("vpn.example.org".into()),
                IdType::FQDN,
                "vpn.example.org",
            ),
            (
                "@192.0.2.1",
                Identity::Fqdn("192.0.2.1".into()),
                IdType::FQDN,
                "192.0.2.1",
            ),
            (
                "alice@example.org",
                Identity::Rfc822("alice@example.org".into()),
                IdType::RFC822_ADDR,
                "alice@example.org",
            ),
            (
                "@@alice@example.org",
                Identity::Rfc822("alice@example.org".into()),
                IdType::RFC822_ADDR,
                "alice@example.org",
            ),
            (
                "@#0a0B",
                Identity::KeyId(vec![0x0a, 0x0b]),
                IdType::KEY_ID,
                "@#0a0b",
            ),
        ];
        for (s, id, ty, shown) in cases {
            let got = Identity::parse(s).unwrap();
            assert_eq!(&got, id, "{s}");
            assert_eq!(got.id_type(), *ty, "{s}");
            assert_eq!(got.to_string(), *shown, "{s}");
            assert_eq!(
                Identity::from_payload(got.id_type(), &got.data()).as_ref(),
                Some(id)
            );
        }
        assert_eq!(
            Identity::parse("192.0.2.1").unwrap().data(),
            vec![192, 0, 2, 1]
        );
        assert_eq!(Identity::parse("@a.b").unwrap().data(), b"a.b".to_vec());
        for bad in ["", "@", "@@", "@#", "@#abc", "@#zz", "a\nb", "CN=x, O=y"] {
            assert!(Identity::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Identity::from_payload(IdType::IPV4_ADDR, &[1, 2, 3]), None);
        assert_eq!(Identity::from_payload(IdType::DER_ASN1_DN, &[1]), None);
        assert_eq!(Identity::from_payload(IdType::FQDN, &[0xff]), None);
    }

    #[test]
    fn line_col_counts_chars() {
        let t = "ab\nçd\nef";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 5), (2, 2)); // after the 2-byte 'ç'
        assert_eq!(line_col(t, 4), (2, 1)); // inside 'ç' rounds down
        assert_eq!(line_col(t, 100), (3, 3));
    }
}

// ===== `routing` and `[bgp]`: the embedded BGP speaker with BFD =====
//
// ```toml
// routing = "embedded"          # default; "external" = no BGP/BFD in routevpn (run
//                               # BIRD/FRR over the tunnel interfaces instead)
// [bgp]
// asn = 65001                   # required, 1..=4294967295 (4-octet AS, RFC 6793)
// router_id = "10.1.0.1"        # required, IPv4 address form, not 0.0.0.0
// networks = ["10.1.0.0/24", "fd00:1::/64"]   # announced (default: none)
// hold_time = "9s"              # default 90s (RFC 4271 §10); 0 or >= 3s; keepalive = hold/3
// connect_retry = "2s"          # default 5s (see DEFAULT_BGP_CONNECT_RETRY)
// max_paths = 1                 # ECMP paths selected and installed as one multipath
//                               # route (default 1)
// redistribute = ["connected", "static"]  # also announce the kernel's connected
//                               # and static routes (default: none)
// [[bgp.neighbor]]
// address = "169.254.12.2"      # the peer's tunnel-inner address (IPv4 or IPv6)
// asn = 65002                   # required
// bfd = { interval = "100ms", multiplier = 3 }  # or true (300ms x 3) / false (default)
// passive = false               # default false: we also connect
// import = ["permit 10.0.0.0/8 le 24"]  # prefix list, default: accept all
// export = ["permit 10.1.0.0/24"]       # prefix list, default: announce all
// max_prefix = 1000             # default: no limit
// local_pref = 100              # default 100
// ```

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
/// Detect multiplier for `bfd = true`.
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;

/// The `[bgp]` table.
#[derive(Debug, Clone)]
pub struct BgpConfig {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Prefixes we originate.
    pub networks: Vec<(IpAddr, u8)>,
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
    pub max_prefix: Option<u32>,
    pub local_pref: u32,
}

/// BFD timers: we send every `interval` and ask the same of the peer; the session goes
/// down after `multiplier` missed intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdConfig {
    pub interval: Duration,
    pub multiplier: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBgp {
    asn: Spanned<u32>,
    router_id: Spanned<String>,
    networks: Option<Spanned<StrList>>,
    hold_time: Option<Spanned<String>>,
    connect_retry: Option<Spanned<String>>,
    max_paths: Option<Spanned<u32>>,
    redistribute: Option<Spanned<StrList>>,
    #[serde(default)]
    neighbor: Vec<Spanned<RawNeighbor>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: Spanned<String>,
    asn: Spanned<u32>,
    bfd: Option<Spanned<RawBfd>>,
    passive: Option<bool>,
    import: Option<Spanned<StrList>>,
    export: Option<Spanned<StrList>>,
    max_prefix: Option<Spanned<u32>>,
    local_pref: Option<Spanned<u32>>,
}

/// `bfd = true | false | { interval = "100ms", multiplier = 3 }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawBfd {
    Flag(bool),
    Table {
        interval: Option<String>,
        multiplier: Option<u8>,
    },
}

fn routing_and_bgp(
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

fn bgp_config(
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
        if tunnels.iter().any(|t| t.remote == nc.address) {
            return Err(cx.err(
                Some(n.get_ref().address.span()),
                format!(
                    "[[bgp.neighbor]] {}: this is a tunnel's IKE peer (underlay) address; use the peer's tunnel-inner address",
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

fn neighbor(cx: &Ctx, spanned: &Spanned<RawNeighbor>) -> Result<NeighborConfig, ConfigError> {
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
            }),
            RawBfd::Table {
                interval,
                multiplier,
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
                Some(BfdConfig {
                    interval,
                    multiplier,
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
    if let Some(m) = &n.max_prefix {
        if *m.get_ref() == 0 {
            return Err(err(
                m.span(),
                "max_prefix must be at least 1 (leave it out for no limit)".into(),
            ));
        }
    }
    Ok(NeighborConfig {
        address,
        asn: *n.asn.get_ref(),
        bfd,
        passive: n.passive.unwrap_or(false),
        import,
        export,
        max_prefix: n.max_prefix.as_ref().map(|m| *m.get_ref()),
        local_pref: n
            .local_pref
            .as_ref()
            .map(|m| *m.get_ref())
            .unwrap_or(bgp::limits::DEFAULT_LOCAL_PREF),
    })
}

#[cfg(test)]
mod bgp_tests {
    use super::*;

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
        assert_eq!(
            b.networks,
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
                multiplier: 4
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
                multiplier: 3
            })
        );
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
        assert_eq!(n.max_prefix, None);
        assert_eq!(n.local_pref, 100);
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
            b.neighbors[1].bfd.unwrap().interval,
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
            ("[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\nbogus = 1\n", 4, "unknown field"),
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
            (
                "[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"10.0.0.2\"\nasn = 2\nmax_prefix = 0\n",
                7,
                "max_prefix",
            ),
        ];
        for (text, line, needle) in cases {
            let e = err(text);
            assert_eq!(e.line, Some(*line), "{text}: {e}");
            assert!(e.to_string().contains(needle), "{text}: {e}");
            assert!(
                e.to_string().starts_with(&format!("c.toml:{line}: ")),
                "{e}"
            );
        }
        // A neighbor on a tunnel's underlay address is a mistake.
        let e = err(&format!(
            "{TUN}[bgp]\nasn = 1\nrouter_id = \"1.1.1.1\"\n[[bgp.neighbor]]\naddress = \"192.0.2.2\"\nasn = 2\n"
        ));
        assert!(e.to_string().contains("IKE peer"), "{e}");
    }
}
