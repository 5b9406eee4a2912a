//! MP_REACH_NLRI / MP_UNREACH_NLRI and their next hop (RFC 4760 §3–§4, RFC 2545 §3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::prefix::Prefix;
use crate::wire::{Afi, DecodeError, Reader, Safi};

/// A next hop: an address plus, for IPv6, an optional link-local (RFC 2545 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MpNextHop {
    /// Global next hop (IPv4, or IPv6 also for IPv4 NLRI per RFC 8950).
    pub addr: IpAddr,
    /// IPv6 link-local next hop.
    pub link_local: Option<Ipv6Addr>,
}

impl MpNextHop {
    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader::new(b);
        match b.len() {
            4 => Some(Self {
                addr: IpAddr::V4(Ipv4Addr::from(r.array::<4>().ok()?)),
                link_local: None,
            }),
            16 => Some(Self {
                addr: IpAddr::V6(Ipv6Addr::from(r.array::<16>().ok()?)),
                link_local: None,
            }),
            32 => Some(Self {
                addr: IpAddr::V6(Ipv6Addr::from(r.array::<16>().ok()?)),
                link_local: Some(Ipv6Addr::from(r.array::<16>().ok()?)),
            }),
            _ => None,
        }
    }

    pub(in crate::wire) fn encode(&self) -> Vec<u8> {
        let mut v = match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        if let (IpAddr::V6(_), Some(ll)) = (self.addr, self.link_local) {
            v.extend_from_slice(&ll.octets());
        }
        v
    }
}

/// MP_REACH_NLRI for IPv4/IPv6 unicast (RFC 4760 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpReach {
    /// Family.
    pub afi: Afi,
    /// Sub-family.
    pub safi: Safi,
    /// Next hop.
    pub next_hop: MpNextHop,
    /// Reachable prefixes.
    pub nlri: Vec<Prefix>,
}

impl MpReach {
    /// Decode; `Ok(None)` for families we do not carry (ignored, RFC 4760 §7).
    pub fn decode(value: &[u8]) -> Result<Option<MpReach>, DecodeError> {
        let mut r = Reader::new(value);
        let afi = Afi(r.u16()?);
        let safi = Safi(r.u8()?);
        let nhlen = r.u8()?;
        let nh = r.bytes(usize::from(nhlen))?;
        let _reserved = r.u8()?;
        if safi != Safi::UNICAST || (afi != Afi::IPV4 && afi != Afi::IPV6) {
            return Ok(None);
        }
        let next_hop = MpNextHop::decode(nh).ok_or(DecodeError::Truncated)?;
        // An IPv6 family cannot have an IPv4 next hop here (RFC 2545 §3).
        if afi == Afi::IPV6 && next_hop.addr.is_ipv4() {
            return Err(DecodeError::Truncated);
        }
        let nlri = Prefix::read_all(r.rest(), afi)?;
        Ok(Some(MpReach {
            afi,
            safi,
            next_hop,
            nlri,
        }))
    }

    /// Attribute value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.afi.0.to_be_bytes().to_vec();
        v.push(self.safi.0);
        let nh = self.next_hop.encode();
        v.push(nh.len() as u8);
        v.extend_from_slice(&nh);
        v.push(0);
        for p in &self.nlri {
            p.encode(&mut v);
        }
        v
    }
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpUnreach {
    /// Family.
    pub afi: Afi,
    /// Sub-family.
    pub safi: Safi,
    /// Withdrawn prefixes.
    pub withdrawn: Vec<Prefix>,
}

impl MpUnreach {
    /// Decode; `Ok(None)` for families we do not carry.
    pub fn decode(value: &[u8]) -> Result<Option<MpUnreach>, DecodeError> {
        let mut r = Reader::new(value);
        let afi = Afi(r.u16()?);
        let safi = Safi(r.u8()?);
        if safi != Safi::UNICAST || (afi != Afi::IPV4 && afi != Afi::IPV6) {
            return Ok(None);
        }
        let withdrawn = Prefix::read_all(r.rest(), afi)?;
        Ok(Some(MpUnreach {
            afi,
            safi,
            withdrawn,
        }))
    }

    /// Attribute value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.afi.0.to_be_bytes().to_vec();
        v.push(self.safi.0);
        for p in &self.withdrawn {
            p.encode(&mut v);
        }
        v
    }
}
