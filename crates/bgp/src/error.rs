//! Protocol errors and their mapping to NOTIFICATION (code, subcode, data) — the one
//! place where that mapping lives (RFC 4271 §4.5, §6; RFC 4486; RFC 6608).

use std::net::Ipv4Addr;

use crate::wire::{Afi, Notification, Safi};

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 6608).
pub mod code {
    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3), open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateSubcode(pub u8);
impl UpdateSubcode {
    /// Malformed Attribute List.
    pub const MALFORMED_ATTRIBUTE_LIST: Self = Self(1);
    /// Unrecognized Well-known Attribute.
    pub const UNRECOGNIZED_WELL_KNOWN: Self = Self(2);
    /// Missing Well-known Attribute.
    pub const MISSING_WELL_KNOWN: Self = Self(3);
    /// Attribute Flags Error.
    pub const ATTRIBUTE_FLAGS: Self = Self(4);
    /// Attribute Length Error.
    pub const ATTRIBUTE_LENGTH: Self = Self(5);
    /// Invalid ORIGIN Attribute.
    pub const INVALID_ORIGIN: Self = Self(6);
    /// Invalid NEXT_HOP Attribute.
    pub const INVALID_NEXT_HOP: Self = Self(8);
    /// Optional Attribute Error.
    pub const OPTIONAL_ATTRIBUTE: Self = Self(9);
    /// Invalid Network Field.
    pub const INVALID_NETWORK_FIELD: Self = Self(10);
    /// Malformed AS_PATH.
    pub const MALFORMED_AS_PATH: Self = Self(11);
}

/// An UPDATE error: the subcode and data a NOTIFICATION would carry. Under RFC 7606 most
/// of them lead to treat-as-withdraw or attribute discard instead of a session reset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("UPDATE error {subcode:?}: {reason}")]
pub struct UpdateError {
    /// Subcode.
    pub subcode: UpdateSubcode,
    /// NOTIFICATION data (usually the offending attribute).
    pub data: Vec<u8>,
    /// Human-readable reason.
    pub reason: &'static str,
}

impl UpdateError {
    /// New error.
    pub fn new(subcode: UpdateSubcode, data: Vec<u8>, reason: &'static str) -> Self {
        Self {
            subcode,
            data,
            reason,
        }
    }
}

/// Cease subcodes (RFC 4486 §4), open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CeaseSubcode(pub u8);
impl CeaseSubcode {
    /// Maximum Number of Prefixes Reached.
    pub const MAX_PREFIXES: Self = Self(1);
    /// Administrative Shutdown.
    pub const ADMIN_SHUTDOWN: Self = Self(2);
    /// Peer De-configured.
    pub const PEER_DECONFIGURED: Self = Self(3);
    /// Administrative Reset.
    pub const ADMIN_RESET: Self = Self(4);
    /// Connection Rejected.
    pub const CONNECTION_REJECTED: Self = Self(5);
    /// Other Configuration Change.
    pub const OTHER_CONFIG_CHANGE: Self = Self(6);
    /// Connection Collision Resolution.
    pub const COLLISION_RESOLUTION: Self = Self(7);
    /// Out of Resources.
    pub const OUT_OF_RESOURCES: Self = Self(8);
}

/// FSM state in which an unexpected message arrived (RFC 6608 §3 subcodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsmErrorState {
    /// Subcode 1.
    OpenSent,
    /// Subcode 2.
    OpenConfirm,
    /// Subcode 3.
    Established,
}

/// Every error that ends a session with a NOTIFICATION.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BgpError {
    /// Marker not all ones (1/1).
    #[error("connection not synchronized")]
    ConnectionNotSynchronized,
    /// Bad length field (1/2, data = the length).
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    /// Unknown message type (1/3, data = the type).
    #[error("bad message type {0}")]
    BadMessageType(u8),
    /// We tried to encode more than 4096 octets (never sent).
    #[error("message of {0} octets too long")]
    MessageTooLong(usize),
    /// Malformed OPEN without a more specific subcode (2/0).
    #[error("malformed OPEN")]
    MalformedOpen,
    /// Version not 4 (2/1, data = highest supported version, 2 octets).
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// Peer AS does not match configuration (2/2).
    #[error("bad peer AS: expected {expected}, got {got}")]
    BadPeerAs {
        /// Configured.
        expected: u32,
        /// Received.
        got: u32,
    },
    /// BGP Identifier invalid (2/3).
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(Ipv4Addr),
    /// Optional parameter type we do not know (2/4).
    #[error("unsupported optional parameter {0}")]
    UnsupportedOptionalParameter(u8),
    /// Hold time 1 or 2 (2/6).
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    /// A capability we require is missing (2/7, data = the capability TLVs, RFC 5492 §3).
    #[error("unsupported capability")]
    UnsupportedCapability(Vec<u8>),
    /// UPDATE error forcing a session reset (3/x).
    #[error(transparent)]
    Update(#[from] UpdateError),
    /// Hold timer expired (4/0).
    #[error("hold timer expired")]
    HoldTimerExpired,
    /// Message not allowed in this state (5/x).
    #[error("unexpected message in {0:?}")]
    Fsm(FsmErrorState),
    /// Maximum number of prefixes reached (6/1, data = AFI, SAFI, limit per RFC 4486 §4).
    #[error("maximum prefixes {limit} reached")]
    MaxPrefixes {
        /// Family.
        afi: Afi,
        /// Sub-family.
        safi: Safi,
        /// Configured limit.
        limit: u32,
    },
    /// Other Cease (6/x).
    #[error("cease {0:?}")]
    Cease(CeaseSubcode),
}

impl BgpError {
    /// The NOTIFICATION that reports this error.
    pub fn notification(&self) -> Notification {
        let (code, subcode, data) = match self {
            BgpError::ConnectionNotSynchronized => (code::MESSAGE_HEADER, 1, vec![]),
            BgpError::BadMessageLength(l) => (code::MESSAGE_HEADER, 2, l.to_be_bytes().to_vec()),
            BgpError::BadMessageType(t) => (code::MESSAGE_HEADER, 3, vec![*t]),
            // Never on the wire; mapped to "unspecific" Cease just in case.
            BgpError::MessageTooLong(_) => (code::CEASE, 0, vec![]),
            BgpError::MalformedOpen => (code::OPEN, 0, vec![]),
            BgpError::UnsupportedVersion(_) => (
                code::OPEN,
                1,
                u16::from(crate::limits::BGP_VERSION).to_be_bytes().to_vec(),
            ),
            BgpError::BadPeerAs { .. } => (code::OPEN, 2, vec![]),
            BgpError::BadBgpIdentifier(_) => (code::OPEN, 3, vec![]),
            BgpError::UnsupportedOptionalParameter(_) => (code::OPEN, 4, vec![]),
            BgpError::UnacceptableHoldTime(_) => (code::OPEN, 6, vec![]),
            BgpError::UnsupportedCapability(d) => (code::OPEN, 7, d.clone()),
            BgpError::Update(u) => (code::UPDATE, u.subcode.0, u.data.clone()),
            BgpError::HoldTimerExpired => (code::HOLD_TIMER_EXPIRED, 0, vec![]),
            BgpError::Fsm(s) => (
                code::FSM,
                match s {
                    FsmErrorState::OpenSent => 1,
                    FsmErrorState::OpenConfirm => 2,
                    FsmErrorState::Established => 3,
                },
                vec![],
            ),
            BgpError::MaxPrefixes { afi, safi, limit } => {
                let mut d = afi.0.to_be_bytes().to_vec();
                d.push(safi.0);
                d.extend_from_slice(&limit.to_be_bytes());
                (code::CEASE, CeaseSubcode::MAX_PREFIXES.0, d)
            }
            BgpError::Cease(c) => (code::CEASE, c.0, vec![]),
        };
        Notification {
            code,
            subcode,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        let n = BgpError::BadPeerAs {
            expected: 1,
            got: 2,
        }
        .notification();
        assert_eq!((n.code, n.subcode), (2, 2));
        let n = BgpError::HoldTimerExpired.notification();
        assert_eq!((n.code, n.subcode), (4, 0));
        let n = BgpError::UnacceptableHoldTime(2).notification();
        assert_eq!((n.code, n.subcode), (2, 6));
        let n = BgpError::MaxPrefixes {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            limit: 10,
        }
        .notification();
        assert_eq!((n.code, n.subcode), (6, 1));
        assert_eq!(n.data, [0, 1, 1, 0, 0, 0, 10]);
        let n = BgpError::UnsupportedVersion(3).notification();
        assert_eq!(n.data, [0, 4]);
        let n = BgpError::Fsm(FsmErrorState::OpenConfirm).notification();
        assert_eq!((n.code, n.subcode), (5, 2));
    }
}
