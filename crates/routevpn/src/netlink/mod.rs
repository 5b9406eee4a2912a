//! Kernel plumbing for route-based tunnels over rtnetlink: tunnel interface state and
//! MTU, interface addresses, and the routes the daemon installs under its own routing
//! protocol number.
//!
//! Kernel behaviour the daemon relies on (checked by tests/netlink_ops.rs, Linux 6.x):
//! - Setting a link administratively **down** deletes every IPv4 *and* IPv6 route whose
//!   only next hop is that link, whatever its protocol; bringing it up again does not
//!   restore them. The daemon re-installs its routes with [`Netlink::replace_route`]
//!   after [`Netlink::set_link_up`]`(name, true)`.
//! - IPv4 addresses survive admin-down (their prefix routes come back on up); IPv6
//!   addresses are **deleted** on admin-down unless `net.ipv6.conf.<if>.keep_addr_on_down`
//!   is set, so the daemon re-adds them after bringing the link up ([`Netlink::add_address`]
//!   is idempotent).
//! - Adding a route via a link that is administratively down fails with ENETDOWN.
//! - A link that is up without carrier (a TUN with no open fd) still takes routes; they
//!   are flagged `linkdown` but used unless `ignore_routes_with_linkdown` is set.
//!
//! Only routes in the main table whose protocol is the one asked for are ever changed;
//! routes of other protocols are never replaced or deleted (see `route.rs`).

mod batch;
mod links;
mod route;
mod watch;
pub use watch::watch_addresses;

pub use links::LinkState;
pub use route::Prior;

pub use batch::{hops_desc, BatchStats, Hops, RouteBatch, MAX_IN_FLIGHT};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec};
use std::fmt;
use std::io;
use std::net::IpAddr;

/// Routing protocol number (`rtm_protocol`) of the routes routevpn installs itself
/// (static tunnel routes). 250 is unassigned in iproute2's `rt_protos` (0–18, 42, 99,
/// 186–197 are taken by iproute2, FRR, BIRD ...); `ip route show proto 250` lists ours.
/// Add `250 routevpn` to /etc/iproute2/rt_protos.d/routevpn.conf to see it by name.
pub const RTPROT_ROUTEVPN: u8 = 250;

/// Routing protocol number of the routes the embedded BGP speaker installs, kept apart
/// from [`RTPROT_ROUTEVPN`] so each can be flushed on its own.
pub const RTPROT_ROUTEVPN_BGP: u8 = 251;

/// A route as read back from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination prefix (the unspecified address of the family for a default route).
    pub dst: IpAddr,
    pub prefix_len: u8,
    /// Output interface index, for a single-next-hop route.
    pub oif: Option<u32>,
    /// Gateway (or RFC 5549 IPv6 next hop of an IPv4 route), for a single-next-hop route.
    pub gateway: Option<IpAddr>,
    /// The metric (`RTA_PRIORITY`); IPv4 routes with metric 0 report None.
    pub metric: Option<u32>,
}

/// A main-table unicast route as read back from the kernel, with the fields route
/// redistribution filters on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    pub info: RouteInfo,
    /// `rtm_protocol`: 2 kernel (connected), 3 boot, 4 static, ...
    pub protocol: u8,
    /// Name of the output interface, for a single-next-hop route.
    pub dev: Option<String>,
}

/// `rtm_protocol` of the prefix routes the kernel adds for interface addresses.
pub const RTPROT_KERNEL: u8 = 2;
/// `rtm_protocol` of routes added by `ip route add` without `proto`.
pub const RTPROT_BOOT: u8 = 3;
/// `rtm_protocol` of routes added with `proto static`.
pub const RTPROT_STATIC: u8 = 4;

/// A netlink operation failed. The message names the operation and the object, e.g.
/// `adding route 10.2.0.0/24 dev vti0 metric 200: File exists`.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused the request with an errno.
    #[error("{op}: {}", errno_text(*.errno))]
    Kernel { op: String, errno: i32 },
    /// The interface the operation refers to does not exist.
    #[error("{op}: no interface named {name:?}")]
    NoSuchInterface { op: String, name: String },
    /// A route with the same destination and metric belongs to another protocol; we
    /// never replace routes we do not own.
    #[error("{op}: a route with this destination and metric already exists with protocol {protocol}, which is not ours")]
    ForeignRoute { op: String, protocol: u8 },
    /// The arguments do not describe a valid request (prefix length, family mix).
    #[error("{op}: {reason}")]
    Invalid { op: String, reason: String },
    /// The netlink connection failed or the kernel answered with something unexpected.
    #[error("{op}: {detail}")]
    Transport { op: String, detail: String },
}

impl NetlinkError {
    /// The errno the kernel answered with, if it was a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// The same error, naming the operation `op`.
    fn with_op(self, op: String) -> NetlinkError {
        match self {
            NetlinkError::Kernel { errno, .. } => NetlinkError::Kernel { op, errno },
            NetlinkError::NoSuchInterface { name, .. } => {
                NetlinkError::NoSuchInterface { op, name }
            }
            NetlinkError::ForeignRoute { protocol, .. } => {
                NetlinkError::ForeignRoute { op, protocol }
            }
            NetlinkError::Invalid { reason, .. } => NetlinkError::Invalid { op, reason },
            NetlinkError::Transport { detail, .. } => NetlinkError::Transport { op, detail },
        }
    }

    fn from_rtnl(op: String, e: rtnetlink::Error) -> NetlinkError {
        match e {
            rtnetlink::Error::NetlinkError(msg) if msg.raw_code() != 0 => NetlinkError::Kernel {
                op,
                errno: msg.raw_code().abs(),
            },
            other => NetlinkError::Transport {
                op,
                detail: other.to_string(),
            },
        }
    }
}

/// "File exists" for EEXIST: the OS text without std's " (os error 17)" suffix.
fn errno_text(errno: i32) -> String {
    let full = io::Error::from_raw_os_error(errno).to_string();
    match full.rfind(" (os error ") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

/// A handle on the kernel's routing netlink in the network namespace of the thread that
/// called [`Netlink::new`]. Cheap to clone; all clones share one netlink socket.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Netlink")
    }
}

fn family_of(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

impl Netlink {
    /// Opens a routing netlink socket in the calling thread's network namespace and
    /// spawns its connection task on the current tokio runtime. Fails (instead of
    /// panicking) when called outside a runtime.
    pub fn new() -> io::Result<Netlink> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("Netlink::new needs a tokio runtime: {e}")))?;
        let (conn, handle, _messages) = rtnetlink::new_connection()?;
        rt.spawn(conn);
        Ok(Netlink { handle })
    }

    /// Index of the interface `name`, None if there is no such interface.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        let res = self
            .handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await;
        match res {
            Ok(Some(msg)) => Ok(Some(msg.header.index)),
            Ok(None) => Ok(None),
            Err(e) => {
                let err = NetlinkError::from_rtnl(format!("looking up interface {name}"), e);
                // ENODEV for an unknown name; EINVAL for names the kernel cannot hold.
                match err.errno() {
                    Some(libc::ENODEV) => Ok(None),
                    _ => Err(err),
                }
            }
        }
    }

    /// Name of the interface with index `index`, None if there is none.
    async fn link_name(&self, index: u32) -> Result<Option<String>, NetlinkError> {
        let res = self
            .handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await;
        match res {
            Ok(Some(msg)) => Ok(msg.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })),
            Ok(None) => Ok(None),
            Err(e) => {
                let err = NetlinkError::from_rtnl(format!("looking up interface #{index}"), e);
                match err.errno() {
                    Some(libc::ENODEV) => Ok(None),
                    _ => Err(err),
                }
            }
        }
    }

    async fn must_index(&self, op: &str, name: &str) -> Result<u32, NetlinkError> {
        self.link_index(name)
            .await?
            .ok_or_else(|| NetlinkError::NoSuchInterface {
                op: op.to_string(),
                name: name.to_string(),
            })
    }

    /// Sets the interface administratively up or down (`ip link set NAME up|down`).
    /// Going down makes the kernel delete the routes through it (see the module docs).
    pub async fn set_link_up(&self, name: &str, up: bool) -> Result<(), NetlinkError> {
        let op = format!(
            "setting interface {name} {}",
            if up { "up" } else { "down" }
        );
        let index = self.must_index(&op, name).await?;
        let builder = LinkUnspec::new_with_index(index);
        let msg = if up { builder.up() } else { builder.down() }.build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rtnl(op, e))
    }

    /// Sets the interface MTU (`ip link set NAME mtu MTU`).
    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let op = format!("setting mtu {mtu} on interface {name}");
        let index = self.must_index(&op, name).await?;
        let msg = LinkMessageBuilder::<LinkUnspec>::new()
            .index(index)
            .mtu(mtu)
            .build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rtnl(op, e))
    }

    /// Adds `addr/prefix_len` to the interface; IPv6 addresses with IFA_F_NODAD so they
    /// are usable at once. Adding an address that is already there succeeds.
    pub async fn add_address(
        &self,
        name: &str,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let op = format!("adding address {addr}/{prefix_len} to {name}");
        let index = self.must_index(&op, name).await?;
        self.add_address_index(index, name, addr, prefix_len).await
    }

    /// Name of the interface holding the local address `addr`, None if no interface
    /// has it.
    pub async fn interface_of_address(&self, addr: IpAddr) -> Result<Option<String>, NetlinkError> {
        let op = format!("looking up the interface of address {addr}");
        let mut dump = self.handle.address().get().execute();
        let mut found = None;
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rtnl(op.clone(), e))?
        {
            if found.is_some() {
                // Drain the dump so the request completes cleanly.
                continue;
            }
            // IFA_LOCAL is the local address (IFA_ADDRESS is the peer on point-to-point
            // links); IPv6 messages only carry IFA_ADDRESS.
            let local = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = msg.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if local.or(address) == Some(addr) {
                found = Some(msg.header.index);
            }
        }
        match found {
            Some(index) => self.link_name(index).await,
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_name_operation_and_object() {
        let e = NetlinkError::Kernel {
            op: format!(
                "adding route {}",
                route::route_desc(
                    "10.2.0.0".parse().unwrap(),
                    24,
                    None,
                    Some("vti0"),
                    Some(200)
                )
            ),
            errno: libc::EEXIST,
        };
        assert_eq!(
            e.to_string(),
            "adding route 10.2.0.0/24 dev vti0 metric 200: File exists"
        );
        assert_eq!(e.errno(), Some(libc::EEXIST));
        let e = NetlinkError::NoSuchInterface {
            op: "setting interface tun9 up".into(),
            name: "tun9".into(),
        };
        assert_eq!(
            e.to_string(),
            "setting interface tun9 up: no interface named \"tun9\""
        );
        assert_eq!(e.errno(), None);
    }

    #[test]
    fn new_outside_runtime_is_an_error() {
        assert!(Netlink::new().is_err());
    }
}
