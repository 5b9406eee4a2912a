//! The TOML configuration file.
//!
//! ```toml
//! control_socket = "/run/routevpn/routevpn.sock"   # default
//! metrics = "127.0.0.1:9477"                       # Prometheus /metrics (off by default)
//! dataplane_threads = 2                              # dataplane workers (one per core by default)
//! dataplane_busy_poll = "50us"                       # poll after a burst before sleeping (default off)
//! per_resource_sas = true                            # RFC 9611: one CHILD SA per worker (default off)
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
//! local_port = 500                                # IKE port we listen on (default 500)
//! remote_port = 500     # only 500: IKE goes to the peer's 500 (4500 after NAT-T)
//! on_up = ["/usr/local/bin/x", "arg"]   # run (no shell) when the interface comes up
//! on_down = ["/usr/local/bin/y"]        # ... and when it goes down; see `hooks`
//! hook_timeout = "10s"                  # then the hook's process group is killed
//! ```
//!
//! Every error names the file, line and column: `config.toml:7:10: tunnel "vti0": ...`;
//! [`ConfigError::render`] adds the line itself with a caret under the column. Mistakes
//! that still give a working tunnel (a world-readable key, a short PSK, an address this
//! host does not have) are warnings, collected by [`load_checked`].

mod certs;
mod diagnostics;
mod hooks;
pub mod reference;
mod routing;
mod service;
mod tunnel;
mod values;

pub use certs::{expiry_warning, CertConfig, CERT_EXPIRY_WARNING};
pub use diagnostics::host_has_address;

pub use hooks::{Hooks, DEFAULT_HOOK_TIMEOUT};
pub use routing::{
    BfdConfig, BgpConfig, NeighborConfig, Redistribute, RoutingMode, DEFAULT_BFD_INTERVAL,
    DEFAULT_BFD_MULTIPLIER, DEFAULT_BGP_CONNECT_RETRY, DEFAULT_BGP_HOLD_TIME,
};
pub use service::SocketGroup;
pub use tunnel::{
    DpdAction, Route, TunnelConfig, DEFAULT_CHILD_LIFETIME, DEFAULT_DPD, DEFAULT_IKE_LIFETIME,
    DEFAULT_IKE_PORT, DEFAULT_REPLAY_WINDOW, DEFAULT_TS,
};
pub use values::{parse_duration, Identity, Psk};

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

use routing::{routing_and_bgp, RawBgp};
use tunnel::{check_ifname, tunnel, RawTunnel};

/// Where the daemon listens for `routevpn status` & co. unless configured otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/routevpn/routevpn.sock";

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub control_socket: PathBuf,
    pub tunnels: Vec<TunnelConfig>,
    /// `routing = "embedded"` (default) or `"external"`; see [`RoutingMode`].
    pub routing: RoutingMode,
    /// The `[bgp]` table (embedded BGP speaker), if any; see [`BgpConfig`].
    pub bgp: Option<BgpConfig>,
    /// `control_socket_group`: the control socket's group (mode 0660), else root-only.
    pub control_socket_group: Option<SocketGroup>,
    /// `metrics = "127.0.0.1:9477"`: where `/metrics` is served (off when absent).
    pub metrics: Option<std::net::SocketAddr>,
    /// `dataplane_threads = 4`: dataplane workers; one per core when absent.
    pub dataplane_threads: Option<usize>,
    /// `dataplane_busy_poll = "50us"`: polling after a burst before sleeping.
    pub dataplane_busy_poll: Option<std::time::Duration>,
    /// `per_resource_sas = true`: RFC 9611 per-resource CHILD SAs (off by default).
    pub per_resource_sas: bool,
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
        match (self.line, self.column) {
            (Some(line), Some(col)) => write!(f, "{}:{line}:{col}: {}", self.file, self.message),
            (Some(line), None) => write!(f, "{}:{line}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A mistake that still gives a working configuration, placed like an error.
pub type ConfigWarning = ConfigError;

/// A valid configuration and what looked wrong in it.
#[derive(Debug, Clone)]
pub struct Checked {
    pub config: Config,
    pub warnings: Vec<ConfigWarning>,
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
    parse_in(&text, &file, path.parent(), false).map(|c| c.config)
}

/// [`load`], also returning the warnings: the file or a `psk_file` readable by group or
/// others, a short PSK, a `local` address no interface of this host has, a BGP
/// neighbor outside every tunnel subnet. Errors and warnings can be shown with
/// [`ConfigError::render`] over `text` (returned too).
pub fn load_checked(path: &Path) -> Result<(Checked, Zeroizing<String>), ConfigError> {
    let file = path.display().to_string();
    let cannot_read = |e: std::io::Error| ConfigError {
        file: file.clone(),
        line: None,
        column: None,
        message: format!("cannot read: {e}"),
    };
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(cannot_read)?;
    let mode = std::fs::metadata(path)
        .map_err(cannot_read)?
        .permissions()
        .mode();
    let mut checked = parse_in(&text, &file, path.parent(), true)?;
    if mode & 0o077 != 0 {
        checked.warnings.insert(
            0,
            ConfigError {
                file: file.clone(),
                line: None,
                column: None,
                message: format!(
                    "the configuration file is accessible by group or others (mode {:04o}) and holds secrets: chmod 600 {file}",
                    mode & 0o7777
                ),
            },
        );
    }
    Ok((checked, text))
}

/// Parse and validate configuration text; `file_name` is used in error messages and
/// its directory to resolve a relative `psk_file`.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    parse_checked(text, file_name).map(|c| c.config)
}

/// [`parse`] with the warnings that do not depend on this host (see [`load_checked`]).
pub fn parse_checked(text: &str, file_name: &str) -> Result<Checked, ConfigError> {
    parse_in(text, file_name, Path::new(file_name).parent(), false)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    control_socket: Option<Spanned<PathBuf>>,
    #[serde(default)]
    tunnel: Vec<Spanned<RawTunnel>>,
    routing: Option<Spanned<String>>,
    bgp: Option<Spanned<RawBgp>>,
    control_socket_group: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    dataplane_threads: Option<Spanned<i64>>,
    dataplane_busy_poll: Option<Spanned<String>>,
    per_resource_sas: Option<bool>,
}

/// Error construction with line lookup; collects warnings.
struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
    warnings: RefCell<Vec<ConfigWarning>>,
}

impl Ctx<'_> {
    fn warn(&self, span: Option<Range<usize>>, message: impl Into<String>) {
        let w = self.err(span, message);
        self.warnings.borrow_mut().push(w);
    }

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

/// `host`: also check the addresses against this host's interfaces.
fn parse_in(
    text: &str,
    file: &str,
    base_dir: Option<&Path>,
    host: bool,
) -> Result<Checked, ConfigError> {
    let cx = Ctx {
        text,
        file,
        warnings: RefCell::new(Vec::new()),
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let message = diagnostics::plain_toml_message(e.message(), text, span.clone());
        cx.err(span, message)
    })?;

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
        // Tunnels may share addresses (or `%any`) when the peer's identity tells them apart.
        if !pairs.insert((tc.local, tc.remote_text(), tc.remote_id.clone())) {
            return Err(cx.err(
                Some(t.get_ref().remote.span()),
                format!(
                    "tunnel \"{name}\": another tunnel already uses local {} and remote {} with remote_id \"{}\"; tunnels sharing addresses need different remote_id",
                    tc.local, tc.remote_text(), tc.remote_id
                ),
            ));
        }
        diagnostics::check_overlap(&cx, &raw.tunnel, &tunnels, &tc)?;
        // One wildcard socket per family serves every dynamic local.
        if let Some(other) = tunnels.iter().find(|o| {
            o.dynamic_local()
                && tc.dynamic_local()
                && o.local == tc.local
                && o.local_interface != tc.local_interface
        }) {
            return Err(cx.err(
                Some(t.get_ref().local.span()),
                format!(
                    "tunnel \"{name}\": local = \"{}\" but tunnel \"{}\" has local = \"{}\"; tunnels with a dynamic local address of one family share it",
                    tc.local_text(), other.name, other.local_text()
                ),
            ));
        }
        if host && !tc.dynamic_local() && !host_has_address(tc.local) {
            cx.warn(
                Some(t.get_ref().local.span()),
                format!(
                    "tunnel \"{name}\": local address {} is not on any interface of this host",
                    tc.local
                ),
            );
        }
        tunnels.push(tc);
    }
    let (routing, bgp) = routing_and_bgp(&cx, &raw, &tunnels)?;
    if let (Some(b), Some(raw_bgp)) = (&bgp, &raw.bgp) {
        diagnostics::check_neighbors(&cx, b, raw_bgp.get_ref(), &tunnels);
    }
    let control_socket_group =
        service::control_socket_group(&cx, raw.control_socket_group.as_ref())?;
    let metrics = metrics_listen(&cx, &raw)?;
    let dataplane_threads = service::dataplane_threads(&cx, raw.dataplane_threads.as_ref())?;
    let dataplane_busy_poll = service::dataplane_busy_poll(&cx, raw.dataplane_busy_poll.as_ref())?;
    let config = Config {
        control_socket,
        tunnels,
        routing,
        bgp,
        control_socket_group,
        metrics,
        dataplane_threads,
        dataplane_busy_poll,
        per_resource_sas: raw.per_resource_sas.unwrap_or(false),
    };
    Ok(Checked {
        config,
        warnings: cx.warnings.into_inner(),
    })
}

/// The one tunnel of a minimal config with `extra` lines added (unit tests).
#[cfg(test)]
pub(crate) fn one_tunnel(extra: &str) -> TunnelConfig {
    let text = format!(
        "[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\npsk = \"k\"\n{extra}"
    );
    parse(&text, "t.toml").unwrap().tunnels.remove(0)
}

/// `metrics = "address:port"`; IPv6 in brackets.
fn metrics_listen(
    cx: &Ctx<'_>,
    raw: &RawConfig,
) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let Some(m) = &raw.metrics else {
        return Ok(None);
    };
    m.get_ref().parse().map(Some).map_err(|_| {
        cx.err(
            Some(m.span()),
            format!(
                "metrics: invalid listen address \"{}\": expected an address and port like \"127.0.0.1:9477\" or \"[::1]:9477\"",
                m.get_ref()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_address() {
        let tunnel = "[[tunnel]]\nname = \"t\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\npsk = \"k\"\n";
        let c = parse(tunnel, "r.toml").unwrap();
        assert_eq!(c.metrics, None, "off by default");
        let c = parse(&format!("metrics = \"127.0.0.1:9477\"\n{tunnel}"), "r.toml").unwrap();
        assert_eq!(c.metrics, Some("127.0.0.1:9477".parse().unwrap()));
        let c = parse(&format!("metrics = \"[::1]:9477\"\n{tunnel}"), "r.toml").unwrap();
        assert_eq!(c.metrics, Some("[::1]:9477".parse().unwrap()));
        for bad in ["9477", "localhost:9477", "127.0.0.1", "::1:9477", ""] {
            let e = parse(&format!("metrics = \"{bad}\"\n{tunnel}"), "r.toml").unwrap_err();
            assert!(
                e.message.starts_with("metrics: invalid listen address"),
                "{bad}: {e}"
            );
        }
        let e = parse(&format!("metrics = \"localhost:9477\"\n{tunnel}"), "r.toml").unwrap_err();
        assert_eq!((e.line, e.column), (Some(1), Some(11)), "{e}");
        assert!(
            e.message
                .contains("expected an address and port like \"127.0.0.1:9477\""),
            "{e}"
        );
        let e = parse(&format!("metrcs = \"127.0.0.1:9477\"\n{tunnel}"), "r.toml").unwrap_err();
        assert!(e.message.contains("did you mean `metrics`"), "{e}");
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
