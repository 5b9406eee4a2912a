//! `[[tunnel]]`: one IKE peer and the tunnel interface routed through it.

use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ike::proposal::{self, AlgorithmProposal, Protocol};
use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use toml::Spanned;
use zeroize::{Zeroize, Zeroizing};

use super::hooks::{hooks, Hooks, RawCommand, RawHooks};
use super::values::{
    item_span, parse_duration, parse_network, parse_prefix, Identity, Psk, StrList,
};
use super::{ConfigError, Ctx};

/// RFC 7296 §2: IKE uses UDP port 500 (4500 after NAT detection, RFC 3948).
pub const DEFAULT_IKE_PORT: u16 = 500;
/// Traffic selectors when none are configured: everything, both families.
pub const DEFAULT_TS: [&str; 2] = ["0.0.0.0/0", "::/0"];
/// `remote = "%any"`: strongSwan's word for "any peer address".
pub const ANY_PEER: &str = "%any";
/// Linux IFNAMSIZ is 16 including the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// One `[[tunnel]]`: a peer and the tunnel interface routed through it.
#[derive(Debug, Clone, PartialEq)]
pub struct TunnelConfig {
    /// Tunnel interface name.
    pub name: String,
    /// Our underlay address; unspecified (`0.0.0.0`, `::`) for a dynamic one
    /// (`local = "%any"` or an interface name): sockets bind to the wildcard and the
    /// kernel picks the source address of the day.
    pub local: IpAddr,
    /// `local = "<interface>"`: the sockets are pinned to it (SO_BINDTODEVICE).
    pub local_interface: Option<String>,
    /// The peer's underlay address; None for `"%any"`: a responder that learns it from
    /// the peer, picking the tunnel by the peer's identity.
    pub remote: Option<IpAddr>,
    /// `remote = "vpn.example.net"`: resolved at start and while the tunnel is down
    /// (then `remote` is None, yet this is no `%any`).
    pub remote_host: Option<String>,
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
    pub addresses: Vec<IpNet>,
    pub mtu: Option<u16>,
    /// Prefixes routed into the tunnel.
    pub routes: Vec<Route>,
    pub local_ts: Vec<IpNet>,
    pub remote_ts: Vec<IpNet>,
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
    /// `on_up`, `on_down`, `hook_timeout`.
    pub hooks: Hooks,
    /// Largest IKE datagram (IP header included, as strongSwan's `fragment_size`) sent
    /// whole; larger encrypted messages go as RFC 7383 fragments. None: the built-in size.
    pub fragment_size: Option<u16>,
    /// Offer and accept MOBIKE (RFC 4555), as strongSwan's `mobike = yes` default.
    pub mobike: bool,
    /// Certificate authentication instead of `psk` (then empty).
    pub certs: Option<super::certs::CertConfig>,
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

/// A prefix routed into the tunnel interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub prefix: IpNet,
    pub metric: Option<u32>,
}

/// `routes` element: `"10.2.0.0/24"` or `{ prefix = "10.2.0.0/24", metric = 100 }`.
#[derive(Debug)]
pub(super) struct RawRoute {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    pub(super) name: Spanned<String>,
    pub(super) local: Spanned<String>,
    pub(super) remote: Spanned<String>,
    local_port: Option<Spanned<u16>>,
    remote_port: Option<Spanned<u16>>,
    local_id: Option<Spanned<String>>,
    remote_id: Option<Spanned<String>>,
    psk: Option<Spanned<String>>,
    psk_file: Option<Spanned<PathBuf>>,
    ike: Option<Spanned<StrList>>,
    esp: Option<Spanned<StrList>>,
    start: Option<bool>,
    pub(super) address: Option<Spanned<StrList>>,
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
    on_up: Option<Spanned<RawCommand>>,
    on_down: Option<Spanned<RawCommand>>,
    hook_timeout: Option<Spanned<String>>,
    fragment_size: Option<Spanned<u16>>,
    mobike: Option<bool>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    ca: Option<Spanned<StrList>>,
    crl: Option<Spanned<StrList>>,
    rsa_pss: Option<Spanned<bool>>,
}

/// `dpd = "10s"` or `dpd = false`.
pub(super) enum DpdSetting {
    Off(bool),
    Interval(String),
}

impl<'de> Deserialize<'de> for DpdSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DpdSetting;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like \"30s\" or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<DpdSetting, E> {
                Ok(DpdSetting::Off(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DpdSetting, E> {
                Ok(DpdSetting::Interval(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Shorter pre-shared keys are guessable offline from one captured exchange
/// (RFC 7296 §2.15 asks for keys as strong as the negotiated PRF's key).
pub const MIN_PSK_LEN: usize = 20;

impl Drop for RawTunnel {
    fn drop(&mut self) {
        if let Some(psk) = &mut self.psk {
            psk.get_mut().zeroize();
        }
    }
}

/// Linux `dev_valid_name`, restricted to characters safe in shell commands and logs.
pub(super) fn check_ifname(name: &str) -> Result<(), String> {
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

/// With `remote = "%any"` the peer's identity is all that picks the tunnel, and we cannot
/// initiate; a named peer (`remote = "vpn.example.net"`) has no address to default its
/// identity to either: say so at the offending line.
fn unaddressed_peer_rules(
    t: &RawTunnel,
    any: bool,
    named: bool,
) -> Result<(), (Option<Range<usize>>, String)> {
    if any && t.start == Some(true) {
        return Err((None, "start = true needs the peer's address: with remote = \"%any\" the peer initiates (set start = false or remove the line)".into()));
    }
    if t.remote_id.is_some() {
        return Ok(());
    }
    let why = match (any, named) {
        (true, _) => {
            "remote = \"%any\" needs remote_id: the peer's identity is what picks this tunnel"
        }
        (false, true) => {
            "a remote given by name needs remote_id: there is no address to default it to"
        }
        (false, false) => return Ok(()),
    };
    Err((Some(t.remote.span()), why.into()))
}

/// A DNS name rather than a mistyped address: labels of letters, digits and `-`, at
/// least one letter and one dot, at most 253 characters (RFC 1035 §2.3.1).
fn looks_like_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.chars().any(|c| c.is_ascii_alphabetic())
        && s.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// An interface name rather than a mistyped address: at most IFNAMSIZ-1 characters of
/// letters, digits, `-`, `_`, `.`, with at least one letter.
fn looks_like_ifname(s: &str) -> bool {
    (1..=MAX_IFNAME_LEN).contains(&s.len())
        && s.chars().any(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl TunnelConfig {
    /// True when our own address is dynamic (`local = "%any"` or an interface name).
    pub fn dynamic_local(&self) -> bool {
        self.local.is_unspecified()
    }

    /// `local` as written: the address, the interface name or `%any`.
    pub fn local_text(&self) -> String {
        match (&self.local_interface, self.dynamic_local()) {
            (Some(dev), _) => dev.clone(),
            (None, true) => ANY_PEER.to_string(),
            (None, false) => self.local.to_string(),
        }
    }

    /// `remote` as written: the address, the name, or `%any`.
    pub fn remote_text(&self) -> String {
        match (&self.remote, &self.remote_host) {
            (Some(r), _) => r.to_string(),
            (None, Some(h)) => h.clone(),
            (None, None) => ANY_PEER.to_string(),
        }
    }
}

pub(super) fn tunnel(
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
                    "invalid {what} address \"{}\": expected an IPv4 or IPv6 address, \"%any\" or a name",
                    s.get_ref()
                ),
            )
        })
    };
    let (remote, remote_host) = match t.remote.get_ref().trim() {
        ANY_PEER => (None, None),
        s if s.parse::<IpAddr>().is_err() && looks_like_hostname(s) => (None, Some(s.to_string())),
        _ => (Some(addr(&t.remote, "remote")?), None),
    };
    let (local, local_interface) = match t.local.get_ref().trim() {
        s if s.parse::<IpAddr>().is_ok() || !(s == ANY_PEER || looks_like_ifname(s)) => {
            (addr(&t.local, "local")?, None)
        }
        s => {
            // A dynamic address has the family of the peer's (IPv4 for a name).
            let any = match (remote, &remote_host) {
                (Some(IpAddr::V6(_)), _) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                (Some(IpAddr::V4(_)), _) | (None, Some(_)) => {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                }
                (None, None) => return Err(err(
                    t.local.span(),
                    format!("local = \"{s}\" needs a remote address: with remote = \"%any\" as well, nothing says where to listen"),
                )),
            };
            (any, (s != ANY_PEER).then(|| s.to_string()))
        }
    };
    if let Some(remote) = remote.filter(|r| r.is_ipv4() != local.is_ipv4()) {
        return Err(err(
            t.remote.span(),
            format!("local {local} and remote {remote} are of different address families"),
        ));
    }
    let any_peer = remote.is_none() && remote_host.is_none();
    unaddressed_peer_rules(t, any_peer, remote_host.is_some())
        .map_err(|(span, m)| err(span.unwrap_or(spanned.span()), m))?;
    let port = |p: &Option<Spanned<u16>>| -> Result<u16, ConfigError> {
        match p {
            None => Ok(DEFAULT_IKE_PORT),
            Some(p) if *p.get_ref() == 0 => Err(err(p.span(), "port 0 is not valid".into())),
            Some(p) => Ok(*p.get_ref()),
        }
    };
    let local_port = port(&t.local_port)?;
    // The daemon always sends to the peer's port 500 (4500 after NAT detection): a
    // different port would be silently ignored, so it is refused.
    let remote_port = match &t.remote_port {
        Some(p) if *p.get_ref() != DEFAULT_IKE_PORT => {
            return Err(err(
                p.span(),
                format!(
                    "remote_port = {} is not supported: routevpn sends IKE to the peer's port {DEFAULT_IKE_PORT} (4500 after NAT detection); remove the line",
                    p.get_ref()
                ),
            ))
        }
        _ => DEFAULT_IKE_PORT,
    };

    let id = |s: &Option<Spanned<String>>, default: IpAddr| -> Result<Identity, ConfigError> {
        match s {
            None => Ok(Identity::from_addr(default)),
            Some(s) => Identity::parse(s.get_ref()).map_err(|m| err(s.span(), m)),
        }
    };
    let certs = cert_keys(cx, &name, spanned, base_dir)?;
    let local_id = match (&certs, &t.local_id) {
        (Some(c), None) => c.subject_id(),
        // A dynamic local has no address of its own to default the identity to.
        (None, None) if local.is_unspecified() => return Err(err(
            t.local.span(),
            format!("local = \"{}\" needs local_id (or a certificate): there is no fixed address to default it to", t.local.get_ref().trim()),
        )),
        _ => id(&t.local_id, local)?,
    };
    let remote_id = match (&certs, &t.remote_id) {
        (Some(_), None) => return Err(err(
            spanned.span(),
            "remote_id is required with certificates: the peer's subject DN (\"C=CH, O=Lab, CN=routerB\") or a subjectAltName of its certificate".into(),
        )),
        // `%any` and names have no address to default to: remote_id was required above.
        _ => id(&t.remote_id, remote.unwrap_or(local))?,
    };
    if let (Some(c), Some(s)) = (&certs, &t.local_id) {
        super::certs::check_local_id(c, &local_id).map_err(|m| err(s.span(), m))?;
    }

    let psk = match (&t.psk, &t.psk_file) {
        (Some(_), Some(f)) => {
            return Err(err(
                f.span(),
                "psk and psk_file are mutually exclusive; set only one".into(),
            ))
        }
        (None, None) if certs.is_some() => Psk::new(Vec::new()),
        (None, None) => {
            return Err(err(
                spanned.span(),
                "a pre-shared key is required: set psk or psk_file (or cert, key and ca for certificates)"
                    .into(),
            ))
        }
        (Some(p), None) => Psk::from_config_str(p.get_ref()).map_err(|m| err(p.span(), m))?,
        (None, Some(f)) => {
            let psk = read_psk_file(f.get_ref(), base_dir).map_err(|m| err(f.span(), m))?;
            if let Some(mode) = psk_file_mode(f.get_ref(), base_dir).filter(|m| m & 0o077 != 0) {
                cx.warn(
                    Some(f.span()),
                    format!(
                        "tunnel \"{name}\": psk_file {} is accessible by group or others (mode {:04o}): chmod 600 it",
                        f.get_ref().display(),
                        mode & 0o7777
                    ),
                );
            }
            psk
        }
    };
    if certs.is_none() && psk.as_bytes().len() < MIN_PSK_LEN {
        let span = t.psk.as_ref().map(|p| p.span());
        let span = span.or_else(|| t.psk_file.as_ref().map(|f| f.span()));
        cx.warn(
            span,
            format!(
                "tunnel \"{name}\": the pre-shared key is {} bytes long; use at least {MIN_PSK_LEN} random characters",
                psk.as_bytes().len()
            ),
        );
    }

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
                // strongSwan's keyword for its own default proposal.
                if s == "default" {
                    out.extend(default());
                    continue;
                }
                let p = proposal::parse(s, protocol).map_err(|e| {
                    let message = match e.supported() {
                        Some(list) => format!(
                            "{what}: {} in proposal \"{}\"; supported: {list}",
                            e.reason(),
                            e.proposal()
                        ),
                        None => {
                            format!("{} in {what} proposal \"{}\"", e.reason(), e.proposal())
                        }
                    };
                    err(item_span(item, list.span()), message)
                })?;
                if protocol == Protocol::Esp {
                    esp_in_dataplane(&p).map_err(|m| {
                        err(
                            item_span(item, list.span()),
                            format!("esp: {m} in proposal \"{s}\"; {ESP_DATAPLANE_SUITES}"),
                        )
                    })?;
                }
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
                    parse: fn(&str) -> Result<IpNet, String>,
                    default: &[&str]|
     -> Result<Vec<IpNet>, ConfigError> {
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
            // RFC 7296 §3.13: a TS payload counts its selectors in one octet.
            if list.get_ref().0.len() > ike::limits::MAX_SELECTORS {
                return Err(err(
                    list.span(),
                    format!(
                        "{what}: {} selectors, at most {} fit in a TS payload",
                        list.get_ref().0.len(),
                        ike::limits::MAX_SELECTORS
                    ),
                ));
            }
        }
    }

    let mtu = match &t.mtu {
        None => None,
        Some(m) => {
            let v = *m.get_ref();
            // RFC 791: every IPv4 host handles 68 bytes; RFC 8200 §5: IPv6 needs 1280.
            let min = if addresses.iter().any(|a| a.addr().is_ipv6()) {
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
    let hooks = hooks(
        cx,
        &name,
        RawHooks {
            on_up: &t.on_up,
            on_down: &t.on_down,
            hook_timeout: &t.hook_timeout,
        },
    )?;

    let fragment_size = fragment_size(&t.fragment_size).map_err(|(span, m)| err(span, m))?;

    Ok(TunnelConfig {
        name: name.clone(),
        local,
        local_interface,
        remote,
        remote_host,
        local_port,
        remote_port,
        local_id,
        remote_id,
        psk,
        ike,
        esp,
        // `%any` cannot initiate: it does not know where the peer is.
        start: t.start.unwrap_or(!any_peer),
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
        hooks,
        fragment_size,
        mobike: t.mobike.unwrap_or(true),
        certs,
    })
}

/// `cert`, `key`, `ca`, `crl`, `rsa_pss` (config/certs.rs).
fn cert_keys(
    cx: &Ctx,
    name: &str,
    spanned: &Spanned<RawTunnel>,
    base_dir: Option<&Path>,
) -> Result<Option<super::certs::CertConfig>, ConfigError> {
    let t = spanned.get_ref();
    let psk = t.psk.as_ref().map(Spanned::span);
    let raw = super::certs::RawCerts {
        cert: &t.cert,
        key: &t.key,
        ca: &t.ca,
        crl: &t.crl,
        rsa_pss: &t.rsa_pss,
        psk: psk.or_else(|| t.psk_file.as_ref().map(Spanned::span)),
    };
    super::certs::cert_config(cx, name, raw, base_dir)
}

/// Smallest `fragment_size`: below it an ordinary IKE_AUTH would need dozens of fragments.
pub const MIN_FRAGMENT_SIZE: u16 = 256;

/// `fragment_size = 1280`: the IP datagram size above which IKE messages are fragmented.
fn fragment_size(v: &Option<Spanned<u16>>) -> Result<Option<u16>, (Range<usize>, String)> {
    match v {
        None => Ok(None),
        Some(v) if *v.get_ref() >= MIN_FRAGMENT_SIZE => Ok(Some(*v.get_ref())),
        Some(v) => Err((
            v.span(),
            format!(
                "fragment_size must be at least {MIN_FRAGMENT_SIZE} (octets of an IP datagram)"
            ),
        )),
    }
}

/// The permission bits of a psk_file, resolved as [`read_psk_file`] does.
fn psk_file_mode(path: &Path, base_dir: Option<&Path>) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let full = match base_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    };
    std::fs::metadata(full).ok().map(|m| m.permissions().mode())
}

/// Read a PSK file: its content without one trailing newline; `0x...` text is hex.
pub(super) fn read_psk_file(path: &Path, base_dir: Option<&Path>) -> Result<Psk, String> {
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

/// What the userspace ESP dataplane implements (`dataplane::algorithm_for`).
const ESP_DATAPLANE_SUITES: &str =
    "the ESP dataplane supports aes128gcm16, aes256gcm16, and aes128 or aes256 with sha256, sha384 or sha512";

/// Every cipher of an `esp` proposal must be one the dataplane can run: the parser knows
/// more (IKE uses them), and an SA the dataplane cannot install would fail at run time.
fn esp_in_dataplane(p: &AlgorithmProposal) -> Result<(), String> {
    for &(encr, bits) in &p.encr {
        let ok = if p.integ.is_empty() {
            crate::dataplane::algorithm_for(encr, bits, None).is_some()
        } else {
            p.integ
                .iter()
                .all(|i| crate::dataplane::algorithm_for(encr, bits, Some(*i)).is_some())
        };
        if !ok {
            let name = match bits {
                Some(b) => format!("{encr} with a {b}-bit key"),
                None => format!("{encr}"),
            };
            return Err(format!("unsupported algorithm {name}"));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "tunnel_tests.rs"]
mod tests;
