//! Tunnel interfaces in bulk: one dump for the index and state of every link and one for
//! the interface of every local address (asking per tunnel costs a whole table dump
//! each, O(N²) over N tunnels), and link changes by index (no name lookup per change).

use std::collections::HashMap;
use std::net::IpAddr;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::LinkUnspec;

use super::{max_prefix, Netlink, NetlinkError};

/// One interface as a link dump shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkState {
    pub index: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    pub mtu: Option<u32>,
}

/// The address an RTM_NEWADDR message is about: IFA_LOCAL is the local address
/// (IFA_ADDRESS is the peer on point-to-point links); IPv6 messages only carry IFA_ADDRESS.
pub(super) fn local_address_of(attrs: &[AddressAttribute]) -> Option<IpAddr> {
    let local = attrs.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        attrs.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

impl Netlink {
    /// Every interface by name, from one link dump.
    pub async fn links(&self) -> Result<HashMap<String, LinkState>, NetlinkError> {
        let op = || "listing interfaces".to_string();
        let mut dump = self.handle.link().get().execute();
        let mut out = HashMap::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rtnl(op(), e))?
        {
            let mut name = None;
            let mut mtu = None;
            for a in msg.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n),
                    LinkAttribute::Mtu(m) => mtu = Some(m),
                    _ => {}
                }
            }
            if let Some(name) = name {
                let state = LinkState {
                    index: msg.header.index,
                    up: msg.header.flags.contains(LinkFlags::Up),
                    mtu,
                };
                out.insert(name, state);
            }
        }
        Ok(out)
    }

    /// The interface holding each local address of this host, from one address dump and
    /// one link dump.
    pub async fn interfaces_of_addresses(&self) -> Result<HashMap<IpAddr, String>, NetlinkError> {
        let op = || "listing local addresses".to_string();
        let mut dump = self.handle.address().get().execute();
        let mut index_of = HashMap::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rtnl(op(), e))?
        {
            if let Some(addr) = local_address_of(&msg.attributes) {
                // The first interface listed wins, as in interface_of_address.
                index_of.entry(addr).or_insert(msg.header.index);
            }
        }
        let names: HashMap<u32, String> = self
            .links()
            .await?
            .into_iter()
            .map(|(name, l)| (l.index, name))
            .collect();
        Ok(index_of
            .into_iter()
            .filter_map(|(addr, i)| Some((addr, names.get(&i)?.clone())))
            .collect())
    }

    /// Sets the MTU (if given) and then the state of the interface with this index in
    /// one request (the kernel applies IFLA_MTU before the flags); `name` is for
    /// messages only.
    pub async fn set_link_index(
        &self,
        index: u32,
        name: &str,
        up: bool,
        mtu: Option<u32>,
    ) -> Result<(), NetlinkError> {
        let builder = LinkUnspec::new_with_index(index);
        let builder = if up { builder.up() } else { builder.down() };
        let builder = match mtu {
            Some(m) => builder.mtu(m),
            None => builder,
        };
        self.handle
            .link()
            .set(builder.build())
            .execute()
            .await
            .map_err(|e| {
                let what = match mtu {
                    Some(m) => format!(" with mtu {m}"),
                    None => String::new(),
                };
                let state = if up { "up" } else { "down" };
                NetlinkError::from_rtnl(format!("setting interface {name} {state}{what}"), e)
            })
    }

    /// [`Netlink::add_address`] to the interface with this index (`name` is for messages
    /// only): one request instead of two.
    pub async fn add_address_index(
        &self,
        index: u32,
        name: &str,
        addr: IpAddr,
        prefix_len: u8,
    ) -> Result<(), NetlinkError> {
        let op = || format!("adding address {addr}/{prefix_len} to {name}");
        if prefix_len > max_prefix(addr) {
            return Err(NetlinkError::Invalid {
                op: op(),
                reason: format!("prefix length {prefix_len} too long"),
            });
        }
        let mut req = self.handle.address().add(index, addr, prefix_len);
        if addr.is_ipv6() {
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = NetlinkError::from_rtnl(op(), e);
                if err.errno() == Some(libc::EEXIST) {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_beats_address_and_address_is_the_fallback() {
        let local: IpAddr = "192.0.2.1".parse().unwrap();
        let peer: IpAddr = "192.0.2.2".parse().unwrap();
        // Point-to-point: IFA_ADDRESS is the peer, IFA_LOCAL ours.
        let p2p = [
            AddressAttribute::Address(peer),
            AddressAttribute::Local(local),
        ];
        assert_eq!(local_address_of(&p2p), Some(local));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(local_address_of(&[AddressAttribute::Address(v6)]), Some(v6));
        assert_eq!(local_address_of(&[]), None);
    }

    /// The bulk lookups agree with the one-at-a-time ones they replace (loopback is in
    /// every network namespace).
    #[tokio::test]
    async fn bulk_lookups_agree_with_single_lookups() {
        let nl = Netlink::new().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let all = nl.interfaces_of_addresses().await.unwrap();
        let single = nl.interface_of_address(lo).await.unwrap();
        assert_eq!(single.as_deref(), Some("lo"));
        assert_eq!(all.get(&lo), single.as_ref());
        let links = nl.links().await.unwrap();
        let lo_link = links.get("lo").expect("lo in the link dump");
        assert_eq!(Some(lo_link.index), nl.link_index("lo").await.unwrap());
        assert!(lo_link.up);
    }
}
