//! Routes: the ones the daemon installs under its own protocol numbers (replace, ECMP,
//! delete, flush) and reading the main table back.

use futures::TryStreamExt;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteProtocol, RouteScope, RouteType, RouteVia,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{family_of, KernelRoute, Netlink, NetlinkError, RouteInfo};

/// The main routing table, where all routevpn routes live.
const RT_TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// The kernel's metric for an IPv6 route added without one (IP6_RT_PRIO_USER); IPv4
/// routes without a metric have metric 0.
const IPV6_DEFAULT_METRIC: u32 = 1024;

/// `10.2.0.0/24 dev tun0 metric 200` for messages.
pub(super) fn route_desc(
    dst: IpAddr,
    prefix_len: u8,
    gateway: Option<IpAddr>,
    dev: Option<&str>,
    metric: Option<u32>,
) -> String {
    let mut s = format!("{dst}/{prefix_len}");
    if let Some(gw) = gateway {
        s.push_str(&format!(" via {gw}"));
    }
    if let Some(dev) = dev {
        s.push_str(&format!(" dev {dev}"));
    }
    if let Some(m) = metric {
        s.push_str(&format!(" metric {m}"));
    }
    s
}

/// The metric the kernel gives a route added with `metric`.
fn effective_metric(is_v6: bool, metric: Option<u32>) -> u32 {
    match (is_v6, metric) {
        (true, None | Some(0)) => IPV6_DEFAULT_METRIC,
        (false, None) => 0,
        (_, Some(m)) => m,
    }
}

fn route_addr_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// A route from a dump, with the fields we filter on.
#[derive(Debug)]
struct DumpedRoute {
    info: RouteInfo,
    protocol: u8,
    table: u32,
    unicast: bool,
}

fn parse_route(msg: &RouteMessage) -> Option<DumpedRoute> {
    let is_v6 = match msg.header.address_family {
        AddressFamily::Inet => false,
        AddressFamily::Inet6 => true,
        _ => return None,
    };
    // Exception-cache clones are not routes anyone installed.
    if msg.header.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let mut dst = None;
    let mut oif = None;
    let mut gateway = None;
    let mut metric = None;
    let mut table = u32::from(msg.header.table);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst = route_addr_ip(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(a) => gateway = route_addr_ip(a),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => gateway = Some(IpAddr::V6(*v6)),
            RouteAttribute::Via(RouteVia::Inet(v4)) => gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Priority(p) => metric = Some(*p),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    let dst = dst.unwrap_or(if is_v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    Some(DumpedRoute {
        info: RouteInfo {
            dst,
            prefix_len: msg.header.destination_prefix_length,
            oif,
            gateway,
            metric,
        },
        protocol: u8::from(msg.header.protocol),
        table,
        unicast: msg.header.kind == RouteType::Unicast,
    })
}

/// What the caller knows of the kernel's route to the destination it installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// Nothing: a route there may be another protocol's, so look before replacing it.
    Unknown,
    /// We installed a route to it (same metric, our protocol) and have not removed it.
    Ours,
}

/// Errnos that mean "already gone" for a delete.
fn is_gone(e: &NetlinkError) -> bool {
    matches!(e.errno(), Some(libc::ENOENT) | Some(libc::ESRCH))
}

impl Netlink {
    /// Installs `dst/prefix_len dev DEV [metric M]` with `protocol`, replacing our own
    /// route with the same destination and metric (NLM_F_REPLACE). A route of another
    /// protocol with that destination and metric is left alone and reported as
    /// [`NetlinkError::ForeignRoute`]. Without a metric the kernel uses 0 (IPv4) or
    /// 1024 (IPv6).
    pub async fn replace_route(
        &self,
        dst: IpAddr,
        prefix_len: u8,
        dev: &str,
        metric: Option<u32>,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let op = format!(
            "adding route {}",
            route_desc(dst, prefix_len, None, Some(dev), metric)
        );
        self.install(op, dst, prefix_len, None, Some(dev), metric, protocol)
            .await
    }

    /// Installs `dst/prefix_len via GATEWAY [dev DEV] [metric M]` with `protocol`, with
    /// the same replace rules as [`Netlink::replace_route`]. An IPv6 gateway for an
    /// IPv4 destination is sent as RTA_VIA (RFC 5549 style).
    pub async fn replace_route_via(
        &self,
        dst: IpAddr,
        prefix_len: u8,
        gateway: IpAddr,
        dev: Option<&str>,
        metric: Option<u32>,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let op = format!(
            "adding route {}",
            route_desc(dst, prefix_len, Some(gateway), dev, metric)
        );
        self.install(op, dst, prefix_len, Some(gateway), dev, metric, protocol)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn install(
        &self,
        op: String,
        dst: IpAddr,
        prefix_len: u8,
        gateway: Option<IpAddr>,
        dev: Option<&str>,
        metric: Option<u32>,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let oif = match dev {
            Some(dev) => Some(self.must_index(&op, dev).await?),
            None => None,
        };
        self.install_oif(
            &|| op.clone(),
            dst,
            prefix_len,
            gateway,
            oif,
            metric,
            protocol,
            Prior::Unknown,
        )
        .await
    }

    /// [`Netlink::replace_route`] with the device already resolved to its index (`dev`
    /// only names it in messages): one request instead of two.
    pub async fn replace_route_index(
        &self,
        dst: IpAddr,
        prefix_len: u8,
        oif: u32,
        dev: &str,
        metric: Option<u32>,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let op = || {
            format!(
                "adding route {}",
                route_desc(dst, prefix_len, None, Some(dev), metric)
            )
        };
        self.install_oif(
            &op,
            dst,
            prefix_len,
            None,
            Some(oif),
            metric,
            protocol,
            Prior::Unknown,
        )
        .await
    }

    /// [`Netlink::replace_route_via`] with the device already resolved to its index
    /// (`dev` only names it in messages): a batch of routes through one tunnel costs
    /// one request per route, not two. `prior` says whether our books hold a route to
    /// `dst` already (see [`Prior`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn replace_route_via_index(
        &self,
        dst: IpAddr,
        prefix_len: u8,
        gateway: IpAddr,
        oif: u32,
        dev: &str,
        protocol: u8,
        prior: Prior,
    ) -> Result<(), NetlinkError> {
        // The description is only formatted for an error: this runs once per BGP route.
        let op = || {
            format!(
                "adding route {}",
                route_desc(dst, prefix_len, Some(gateway), Some(dev), None)
            )
        };
        self.install_oif(
            &op,
            dst,
            prefix_len,
            Some(gateway),
            Some(oif),
            None,
            protocol,
            prior,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn install_oif(
        &self,
        op: &(dyn Fn() -> String + Sync),
        dst: IpAddr,
        prefix_len: u8,
        gateway: Option<IpAddr>,
        oif: Option<u32>,
        metric: Option<u32>,
        protocol: u8,
        prior: Prior,
    ) -> Result<(), NetlinkError> {
        let mut msg = base_route("", dst, prefix_len, protocol).map_err(|e| e.with_op(op()))?;
        // Like `ip route add`: a route without gateway is on-link (scope link) for IPv4.
        msg.header.scope = if gateway.is_none() && dst.is_ipv4() {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        msg.header.kind = RouteType::Unicast;
        if let Some(gw) = gateway {
            let attr = match (dst, gw) {
                (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                    RouteAttribute::Gateway(gw.into())
                }
                (IpAddr::V4(_), IpAddr::V6(v6)) => RouteAttribute::Via(RouteVia::Inet6(v6)),
                (IpAddr::V6(_), IpAddr::V4(_)) => {
                    return Err(NetlinkError::Invalid {
                        op: op(),
                        reason: "an IPv6 route cannot have an IPv4 gateway".into(),
                    })
                }
            };
            msg.attributes.push(attr);
        }
        if let Some(oif) = oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(m) = metric {
            msg.attributes.push(RouteAttribute::Priority(m));
        }

        self.replace_ours(op, msg, dst, prefix_len, metric, protocol, prior)
            .await
    }

    /// Installs `msg` with NLM_F_REPLACE. That replaces the first route with the same
    /// (dst, tos, metric) in the table, whoever owns it: look first and refuse to take
    /// over a foreign route. A route that is not there yet (every route a BGP session
    /// brings in) goes in with NLM_F_EXCL and no table dump, so installing N routes costs
    /// N requests, not N dumps of a growing table. A route our books say we installed
    /// ([`Prior::Ours`]) is replaced in place in one request: the kernel swaps it
    /// atomically, so traffic never meets a table without the route (a delete and a
    /// re-add would drop, or misroute via a covering route, what arrives in between).
    #[allow(clippy::too_many_arguments)]
    async fn replace_ours(
        &self,
        op: &(dyn Fn() -> String + Sync),
        msg: RouteMessage,
        dst: IpAddr,
        prefix_len: u8,
        metric: Option<u32>,
        protocol: u8,
        prior: Prior,
    ) -> Result<(), NetlinkError> {
        let replace = |msg: RouteMessage, op: String| async move {
            let r = self.handle.route().add(msg).replace().execute().await;
            r.map_err(|e| NetlinkError::from_rtnl(op, e))
        };
        if prior == Prior::Ours {
            return replace(msg, op()).await;
        }
        match self.handle.route().add(msg.clone()).execute().await {
            Ok(()) => return Ok(()),
            Err(e) => {
                let err = NetlinkError::from_rtnl(op(), e);
                if err.errno() != Some(libc::EEXIST) {
                    return Err(err);
                }
            }
        }
        let op = op();
        let want = effective_metric(dst.is_ipv6(), metric);
        let existing = self.dump_routes(family_of(dst), &op).await?;
        match existing.iter().find(|r| {
            r.table == RT_TABLE_MAIN
                && r.info.dst == dst
                && r.info.prefix_len == prefix_len
                && effective_metric(dst.is_ipv6(), r.info.metric) == want
                && r.protocol != protocol
        }) {
            Some(foreign) => Err(NetlinkError::ForeignRoute {
                op,
                protocol: foreign.protocol,
            }),
            None => replace(msg, op).await,
        }
    }

    /// Installs one multipath route `dst/prefix_len nexthop via GW dev DEV nexthop ...`
    /// (RTA_MULTIPATH, every next hop weight 1) with `protocol`, replacing our own route
    /// to that destination (default metric) under the rules of [`Netlink::replace_route`].
    /// An IPv6 gateway of an IPv4 destination goes out as RTA_VIA in its next hop.
    pub async fn replace_route_multipath(
        &self,
        dst: IpAddr,
        prefix_len: u8,
        nexthops: &[(IpAddr, String)],
        protocol: u8,
        prior: Prior,
    ) -> Result<(), NetlinkError> {
        let hops: Vec<String> = nexthops
            .iter()
            .map(|(gw, dev)| format!("nexthop via {gw} dev {dev}"))
            .collect();
        let op = format!("adding route {dst}/{prefix_len} {}", hops.join(" "));
        if nexthops.is_empty() {
            return Err(NetlinkError::Invalid {
                op,
                reason: "a multipath route needs at least one next hop".into(),
            });
        }
        let mut msg = base_route(&op, dst, prefix_len, protocol)?;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        let mut list = Vec::with_capacity(nexthops.len());
        for (gw, dev) in nexthops {
            let attr = match (dst, *gw) {
                (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                    RouteAttribute::Gateway((*gw).into())
                }
                (IpAddr::V4(_), IpAddr::V6(v6)) => RouteAttribute::Via(RouteVia::Inet6(v6)),
                (IpAddr::V6(_), IpAddr::V4(_)) => {
                    return Err(NetlinkError::Invalid {
                        op,
                        reason: "an IPv6 route cannot have an IPv4 gateway".into(),
                    })
                }
            };
            let mut nh = RouteNextHop::default();
            nh.interface_index = self.must_index(&op, dev).await?;
            // rtnh_hops is the weight minus one.
            nh.hops = 0;
            nh.attributes.push(attr);
            list.push(nh);
        }
        msg.attributes.push(RouteAttribute::MultiPath(list));
        self.replace_ours(&|| op.clone(), msg, dst, prefix_len, None, protocol, prior)
            .await
    }

    /// Deletes our route to `dst/prefix_len` of `protocol` (default metric) whatever its
    /// next hops: a multipath route goes as a whole (for IPv6 with all its siblings).
    /// A route that is not there is success.
    pub async fn delete_route_prefix(
        &self,
        dst: IpAddr,
        prefix_len: u8,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let op = format!("deleting route {dst}/{prefix_len} proto {protocol}");
        let msg = base_route(&op, dst, prefix_len, protocol)?;
        self.delete_msg(&|| op.clone(), msg).await
    }

    /// Every main-table unicast route (IPv4 then IPv6), with its protocol and output
    /// interface name, for redistribution.
    pub async fn main_table_routes(&self) -> Result<Vec<KernelRoute>, NetlinkError> {
        let op = "listing the main routing table";
        let mut names: std::collections::HashMap<u32, Option<String>> = Default::default();
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for r in self.dump_routes(family, op).await? {
                if r.table != RT_TABLE_MAIN || !r.unicast {
                    continue;
                }
                let dev = match r.info.oif {
                    Some(i) => match names.get(&i) {
                        Some(n) => n.clone(),
                        None => {
                            let n = self.link_name(i).await?;
                            names.insert(i, n.clone());
                            n
                        }
                    },
                    None => None,
                };
                out.push(KernelRoute {
                    info: r.info,
                    protocol: r.protocol,
                    dev,
                });
            }
        }
        Ok(out)
    }

    /// Deletes our route `dst/prefix_len dev DEV [metric M]` of `protocol`. Without a
    /// metric the first such route of any metric is deleted. A route that is not there
    /// (ENOENT/ESRCH, or the interface is gone, which removed its routes) is success.
    pub async fn delete_route(
        &self,
        dst: IpAddr,
        prefix_len: u8,
        dev: &str,
        metric: Option<u32>,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let op = format!(
            "deleting route {}",
            route_desc(dst, prefix_len, None, Some(dev), metric)
        );
        let Some(oif) = self.link_index(dev).await? else {
            return Ok(());
        };
        self.delete_oif(&|| op.clone(), dst, prefix_len, oif, metric, protocol)
            .await
    }

    /// [`Netlink::delete_route`] (default metric) with the device already resolved to
    /// its index; `dev` only names it in messages.
    pub async fn delete_route_index(
        &self,
        dst: IpAddr,
        prefix_len: u8,
        oif: u32,
        dev: &str,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        // Formatted only for an error: this runs once per withdrawn BGP route.
        let op = || {
            format!(
                "deleting route {}",
                route_desc(dst, prefix_len, None, Some(dev), None)
            )
        };
        self.delete_oif(&op, dst, prefix_len, oif, None, protocol)
            .await
    }

    async fn delete_oif(
        &self,
        op: &(dyn Fn() -> String + Sync),
        dst: IpAddr,
        prefix_len: u8,
        oif: u32,
        metric: Option<u32>,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let mut msg = base_route("", dst, prefix_len, protocol).map_err(|e| e.with_op(op()))?;
        msg.attributes.push(RouteAttribute::Oif(oif));
        if let Some(m) = metric {
            msg.attributes.push(RouteAttribute::Priority(m));
        }
        self.delete_msg(op, msg).await
    }

    async fn delete_msg(
        &self,
        op: &(dyn Fn() -> String + Sync),
        mut msg: RouteMessage,
    ) -> Result<(), NetlinkError> {
        // A delete matches any scope with RT_SCOPE_NOWHERE (as `ip route del` sends); the
        // protocol in the header restricts the match to routes of that protocol (IPv4
        // fib_table_delete, IPv6 ip6_route_del both check it when non-zero).
        msg.header.scope = RouteScope::NoWhere;
        msg.header.kind = RouteType::Unicast;
        match self.handle.route().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = NetlinkError::from_rtnl(op(), e);
                if is_gone(&err) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn dump_routes(
        &self,
        family: AddressFamily,
        op: &str,
    ) -> Result<Vec<DumpedRoute>, NetlinkError> {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        let mut dump = self.handle.route().get(req).execute();
        let mut out = Vec::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rtnl(op.to_string(), e))?
        {
            if msg.header.address_family != family {
                continue;
            }
            if let Some(r) = parse_route(&msg) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// All main-table routes (IPv4 then IPv6) with routing protocol `protocol`.
    pub async fn routes_by_protocol(&self, protocol: u8) -> Result<Vec<RouteInfo>, NetlinkError> {
        let op = format!("listing routes of protocol {protocol}");
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            out.extend(
                self.dump_routes(family, &op)
                    .await?
                    .into_iter()
                    .filter(|r| r.protocol == protocol && r.table == RT_TABLE_MAIN)
                    .map(|r| r.info),
            );
        }
        Ok(out)
    }

    /// Deletes every main-table route of `protocol` in both families (start-up after a
    /// crash, shutdown). Returns how many routes were deleted. Protocol 0 (unspec) is
    /// refused: in a delete request it would match routes of every protocol.
    pub async fn flush_protocol(&self, protocol: u8) -> Result<usize, NetlinkError> {
        if protocol == 0 {
            return Err(NetlinkError::Invalid {
                op: "flushing routes of protocol 0".into(),
                reason: UNSPEC_PROTOCOL.into(),
            });
        }
        let routes = self.routes_by_protocol(protocol).await?;
        let mut deleted = 0;
        for r in routes {
            let op = format!(
                "deleting route {}",
                route_desc(r.dst, r.prefix_len, r.gateway, None, r.metric)
            );
            let mut msg = base_route(&op, r.dst, r.prefix_len, protocol)?;
            if let Some(oif) = r.oif {
                msg.attributes.push(RouteAttribute::Oif(oif));
            }
            match r.gateway {
                Some(gw) if gw.is_ipv4() == r.dst.is_ipv4() => {
                    msg.attributes.push(RouteAttribute::Gateway(gw.into()))
                }
                Some(IpAddr::V6(v6)) => msg
                    .attributes
                    .push(RouteAttribute::Via(RouteVia::Inet6(v6))),
                _ => {}
            }
            // The exact metric (IPv4 metric 0 is reported as none and matches as any).
            if let Some(m) = r.metric {
                msg.attributes.push(RouteAttribute::Priority(m));
            }
            self.delete_msg(&|| op.clone(), msg).await?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

const UNSPEC_PROTOCOL: &str =
    "protocol 0 (unspec) is not ours and in a delete would match routes of every protocol";

/// The common part of our route messages: family, destination, main table, protocol.
fn base_route(
    op: &str,
    dst: IpAddr,
    prefix_len: u8,
    protocol: u8,
) -> Result<RouteMessage, NetlinkError> {
    let mut msg = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst, prefix_len)
        .map_err(|e| NetlinkError::Invalid {
            op: op.to_string(),
            reason: e.to_string(),
        })?
        .table_id(RT_TABLE_MAIN)
        .build();
    if protocol == 0 {
        return Err(NetlinkError::Invalid {
            op: op.to_string(),
            reason: UNSPEC_PROTOCOL.into(),
        });
    }
    msg.header.protocol = RouteProtocol::from(protocol);
    // The kernel rejects a destination with host bits set below the prefix (EINVAL);
    // name the problem instead.
    if !is_network_address(dst, prefix_len) {
        return Err(NetlinkError::Invalid {
            op: op.to_string(),
            reason: format!("{dst} has host bits set beyond /{prefix_len}"),
        });
    }
    Ok(msg)
}

/// No host bits set below `prefix_len` (a length beyond the family's is left to the
/// route builder to reject).
fn is_network_address(addr: IpAddr, prefix_len: u8) -> bool {
    ipnet::IpNet::new(addr, prefix_len).map_or(true, |n| n.trunc().addr() == addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::RTPROT_ROUTEVPN;

    #[test]
    fn route_description() {
        assert_eq!(
            route_desc(
                "fd00:2::".parse().unwrap(),
                64,
                Some("fe80::1".parse().unwrap()),
                None,
                None
            ),
            "fd00:2::/64 via fe80::1"
        );
    }

    #[test]
    fn network_address_check() {
        assert!(is_network_address("10.2.0.0".parse().unwrap(), 24));
        assert!(!is_network_address("10.2.0.1".parse().unwrap(), 24));
        assert!(is_network_address("10.2.0.1".parse().unwrap(), 32));
        assert!(is_network_address("0.0.0.0".parse().unwrap(), 0));
        assert!(is_network_address("fd00:2::".parse().unwrap(), 64));
        assert!(!is_network_address("fd00:2::1".parse().unwrap(), 64));
        assert!(is_network_address("fd00:2::1".parse().unwrap(), 128));
    }

    #[test]
    fn default_metrics() {
        assert_eq!(effective_metric(false, None), 0);
        assert_eq!(effective_metric(true, None), 1024);
        assert_eq!(effective_metric(true, Some(0)), 1024);
        assert_eq!(effective_metric(false, Some(200)), 200);
    }

    #[test]
    fn invalid_routes_are_named() {
        let e = base_route("x", "10.2.0.1".parse().unwrap(), 24, RTPROT_ROUTEVPN).unwrap_err();
        assert!(e.to_string().contains("host bits"), "{e}");
        let e = base_route("x", "10.2.0.0".parse().unwrap(), 33, RTPROT_ROUTEVPN).unwrap_err();
        assert!(matches!(e, NetlinkError::Invalid { .. }), "{e}");
    }
}
