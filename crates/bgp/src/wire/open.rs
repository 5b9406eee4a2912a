//! OPEN message (RFC 4271 §4.2) with Capabilities (RFC 5492).

use std::net::Ipv4Addr;

use super::{Afi, Reader, Safi};
use crate::error::BgpError;

/// Optional parameter type carrying capabilities (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;

/// Capability codes (IANA "Capability Codes").
mod cap {
    pub const MULTIPROTOCOL: u8 = 1; // RFC 4760 §8
    pub const ROUTE_REFRESH: u8 = 2; // RFC 2918 §2
    pub const EXTENDED_NEXT_HOP: u8 = 5; // RFC 8950 §3
    pub const FOUR_OCTET_AS: u8 = 65; // RFC 6793 §3
}

/// One entry of the Extended Next Hop capability (RFC 8950 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtNextHop {
    /// NLRI family.
    pub nlri_afi: Afi,
    /// NLRI sub-family.
    pub nlri_safi: Safi,
    /// Family of the next hop.
    pub next_hop_afi: Afi,
}

/// A capability (RFC 5492 §4). Unknown or malformed ones are kept raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Multiprotocol Extensions (RFC 4760 §8).
    Multiprotocol {
        /// Family.
        afi: Afi,
        /// Sub-family.
        safi: Safi,
    },
    /// Route Refresh (RFC 2918 §2).
    RouteRefresh,
    /// Extended Next Hop Encoding (RFC 8950 §3).
    ExtendedNextHop(Vec<ExtNextHop>),
    /// 4-octet AS number (RFC 6793 §3).
    FourOctetAs(u32),
    /// Anything else, verbatim.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
}

impl Capability {
    fn decode(code: u8, value: &[u8]) -> Capability {
        let mut r = Reader::new(value);
        let parsed = match code {
            cap::MULTIPROTOCOL if value.len() == 4 => (|| {
                let afi = Afi(r.u16().ok()?);
                let _reserved = r.u8().ok()?;
                let safi = Safi(r.u8().ok()?);
                Some(Capability::Multiprotocol { afi, safi })
            })(),
            cap::ROUTE_REFRESH if value.is_empty() => Some(Capability::RouteRefresh),
            cap::FOUR_OCTET_AS if value.len() == 4 => r.u32().ok().map(Capability::FourOctetAs),
            cap::EXTENDED_NEXT_HOP if value.chunks_exact(6).remainder().is_empty() => {
                let mut v = Vec::new();
                while !r.is_empty() {
                    let (Ok(a), Ok(s), Ok(n)) = (r.u16(), r.u16(), r.u16()) else {
                        break;
                    };
                    let Ok(s) = u8::try_from(s) else {
                        return Capability::Unknown {
                            code,
                            value: value.to_vec(),
                        };
                    };
                    v.push(ExtNextHop {
                        nlri_afi: Afi(a),
                        nlri_safi: Safi(s),
                        next_hop_afi: Afi(n),
                    });
                }
                Some(Capability::ExtendedNextHop(v))
            }
            _ => None,
        };
        parsed.unwrap_or_else(|| Capability::Unknown {
            code,
            value: value.to_vec(),
        })
    }

    /// Append `code, length, value`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (code, value): (u8, Vec<u8>) = match self {
            Capability::Multiprotocol { afi, safi } => {
                let mut v = afi.0.to_be_bytes().to_vec();
                v.extend_from_slice(&[0, safi.0]);
                (cap::MULTIPROTOCOL, v)
            }
            Capability::RouteRefresh => (cap::ROUTE_REFRESH, vec![]),
            Capability::FourOctetAs(asn) => (cap::FOUR_OCTET_AS, asn.to_be_bytes().to_vec()),
            Capability::ExtendedNextHop(v) => {
                let mut b = Vec::new();
                for e in v {
                    b.extend_from_slice(&e.nlri_afi.0.to_be_bytes());
                    b.extend_from_slice(&u16::from(e.nlri_safi.0).to_be_bytes());
                    b.extend_from_slice(&e.next_hop_afi.0.to_be_bytes());
                }
                (cap::EXTENDED_NEXT_HOP, b)
            }
            Capability::Unknown { code, value } => (*code, value.clone()),
        };
        out.push(code);
        // Values are built by us with bounded size or came from a 1-octet length.
        out.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(value.get(..usize::from(u8::MAX)).unwrap_or(&value));
    }
}

/// An optional parameter (RFC 4271 §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptParam {
    /// Type 2: one or more capabilities.
    Capabilities(Vec<Capability>),
    /// Any other type, verbatim (answered with 2/4 by the session).
    Unknown {
        /// Parameter type.
        kind: u8,
        /// Parameter value.
        value: Vec<u8>,
    },
}

/// OPEN message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// Protocol version (4).
    pub version: u8,
    /// My Autonomous System (AS_TRANS if ours needs 4 octets).
    pub my_as: u16,
    /// Proposed hold time in seconds.
    pub hold_time: u16,
    /// BGP Identifier.
    pub bgp_id: Ipv4Addr,
    /// Optional parameters in wire order.
    pub params: Vec<OptParam>,
}

impl Open {
    /// Decode an OPEN body (after the 19-octet header).
    pub fn decode(body: &[u8]) -> Result<Open, BgpError> {
        let mut r = Reader::new(body);
        let e = |_| BgpError::MalformedOpen;
        let version = r.u8().map_err(e)?;
        let my_as = r.u16().map_err(e)?;
        let hold_time = r.u16().map_err(e)?;
        let bgp_id = Ipv4Addr::from(r.array::<4>().map_err(e)?);
        let opt_len = r.u8().map_err(e)?;
        let opt = r.bytes(usize::from(opt_len)).map_err(e)?;
        // §6.2 / RFC 5492: the optional parameters must fill the message exactly.
        r.finish().map_err(e)?;
        let mut params = Vec::new();
        let mut pr = Reader::new(opt);
        while !pr.is_empty() {
            let kind = pr.u8().map_err(e)?;
            let len = pr.u8().map_err(e)?;
            let value = pr.bytes(usize::from(len)).map_err(e)?;
            if kind == PARAM_CAPABILITIES {
                let mut caps = Vec::new();
                let mut cr = Reader::new(value);
                while !cr.is_empty() {
                    let code = cr.u8().map_err(e)?;
                    let clen = cr.u8().map_err(e)?;
                    let v = cr.bytes(usize::from(clen)).map_err(e)?;
                    caps.push(Capability::decode(code, v));
                }
                params.push(OptParam::Capabilities(caps));
            } else {
                params.push(OptParam::Unknown {
                    kind,
                    value: value.to_vec(),
                });
            }
        }
        Ok(Open {
            version,
            my_as,
            hold_time,
            bgp_id,
            params,
        })
    }

    /// Append the body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_id.octets());
        let mut opt = Vec::new();
        for p in &self.params {
            let (kind, value) = match p {
                OptParam::Capabilities(caps) => {
                    let mut v = Vec::new();
                    for c in caps {
                        c.encode(&mut v);
                    }
                    (PARAM_CAPABILITIES, v)
                }
                OptParam::Unknown { kind, value } => (*kind, value.clone()),
            };
            opt.push(kind);
            opt.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
            opt.extend_from_slice(value.get(..usize::from(u8::MAX)).unwrap_or(&value));
        }
        // RFC 9072 extended parameters are not produced; our OPEN stays far below 255.
        opt.truncate(usize::from(u8::MAX));
        out.push(u8::try_from(opt.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&opt);
    }

    /// All capabilities across all capability parameters.
    pub fn capabilities(&self) -> impl Iterator<Item = &Capability> {
        self.params.iter().flat_map(|p| match p {
            OptParam::Capabilities(c) => c.as_slice(),
            OptParam::Unknown { .. } => &[],
        })
    }

    /// The 4-octet AS from the capability, if present.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
    }

    /// The peer's AS: the 4-octet capability if present, else My AS (RFC 6793 §4.1).
    pub fn peer_as(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    fn sample() -> Open {
        Open {
            version: 4,
            my_as: crate::limits::AS_TRANS,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
            params: vec![
                OptParam::Capabilities(vec![
                    Capability::Multiprotocol {
                        afi: Afi::IPV4,
                        safi: Safi::UNICAST,
                    },
                    Capability::Multiprotocol {
                        afi: Afi::IPV6,
                        safi: Safi::UNICAST,
                    },
                ]),
                OptParam::Capabilities(vec![Capability::RouteRefresh]),
                OptParam::Capabilities(vec![Capability::FourOctetAs(4_200_000_000)]),
                OptParam::Capabilities(vec![Capability::ExtendedNextHop(vec![ExtNextHop {
                    nlri_afi: Afi::IPV4,
                    nlri_safi: Safi::UNICAST,
                    next_hop_afi: Afi::IPV6,
                }])]),
                OptParam::Capabilities(vec![Capability::Unknown {
                    code: 73,
                    value: b"\x03abc".to_vec(),
                }]),
                OptParam::Unknown {
                    kind: 9,
                    value: vec![1, 2],
                },
            ],
        }
    }

    #[test]
    fn roundtrip() {
        let m = Message::Open(sample());
        let b = m.encode().unwrap();
        let d = Message::decode(&b).unwrap();
        assert_eq!(d, m);
        assert_eq!(d.encode().unwrap(), b);
        let Message::Open(o) = d else { panic!() };
        assert_eq!(o.peer_as(), 4_200_000_000);
    }

    #[test]
    fn malformed_params() {
        // opt len says 4 but only 2 present
        let body = [4, 0, 1, 0, 90, 1, 2, 3, 4, 4, 2, 0];
        assert_eq!(Open::decode(&body), Err(BgpError::MalformedOpen));
        // capability length overruns its parameter
        let body = [4, 0, 1, 0, 90, 1, 2, 3, 4, 4, 2, 2, 65, 4];
        assert_eq!(Open::decode(&body), Err(BgpError::MalformedOpen));
        // malformed known capability kept raw
        let body = [4, 0, 1, 0, 90, 1, 2, 3, 4, 5, 2, 3, 65, 1, 7];
        let o = Open::decode(&body).unwrap();
        assert_eq!(
            o.capabilities().next(),
            Some(&Capability::Unknown {
                code: 65,
                value: vec![7]
            })
        );
    }
}
