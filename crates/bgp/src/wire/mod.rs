//! BGP-4 wire format (RFC 4271 §4): message header, framing a TCP byte stream into
//! messages, and the five message types.

mod attrs;
mod open;
mod update;

pub use attrs::{
    Aggregator, AsPath, AsSegment, AttrFlags, AttrType, MpNextHop, MpReach, MpUnreach, Origin,
    ParsedUpdate, PathAttributes, RawAttribute, SegmentType, UpdateContext,
};
pub use open::{Capability, ExtNextHop, Open, OptParam};
pub use update::{announce_updates, withdraw_updates, Update};

use crate::error::BgpError;
use crate::limits::{
    HEADER_LEN, KEEPALIVE_LEN, MARKER_LEN, MAX_MESSAGE_LEN, MIN_NOTIFICATION_LEN, MIN_OPEN_LEN,
    MIN_UPDATE_LEN, ROUTE_REFRESH_LEN,
};

/// Structural decode failure of a nested field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A field runs past the end of its container.
    #[error("truncated")]
    Truncated,
    /// Bytes left over after a field that must end its container.
    #[error("trailing bytes")]
    TrailingBytes,
    /// NLRI prefix length longer than the address.
    #[error("bad prefix length {0}")]
    BadPrefixLength(u8),
}

/// Checked cursor over peer bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Start reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The unread bytes, consuming them.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }
    /// One octet.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    /// Big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    /// Fail unless everything was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }
}

/// Address Family Identifier (IANA "Address Family Numbers"), open so unknown values
/// round-trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Afi(pub u16);
impl Afi {
    /// IPv4.
    pub const IPV4: Afi = Afi(1);
    /// IPv6.
    pub const IPV6: Afi = Afi(2);
}

/// Subsequent Address Family Identifier (RFC 4760 §6), open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Safi(pub u8);
impl Safi {
    /// Unicast forwarding.
    pub const UNICAST: Safi = Safi(1);
}

/// Message type (RFC 4271 §4.1, RFC 2918 §3), open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageType(pub u8);
impl MessageType {
    /// OPEN.
    pub const OPEN: MessageType = MessageType(1);
    /// UPDATE.
    pub const UPDATE: MessageType = MessageType(2);
    /// NOTIFICATION.
    pub const NOTIFICATION: MessageType = MessageType(3);
    /// KEEPALIVE.
    pub const KEEPALIVE: MessageType = MessageType(4);
    /// ROUTE-REFRESH (RFC 2918).
    pub const ROUTE_REFRESH: MessageType = MessageType(5);
}

/// NOTIFICATION message (RFC 4271 §4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data.
    pub data: Vec<u8>,
}

/// ROUTE-REFRESH message (RFC 2918 §3; the reserved octet is the RFC 7313 subtype).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    /// Address family.
    pub afi: Afi,
    /// Reserved / message subtype.
    pub reserved: u8,
    /// Subsequent address family.
    pub safi: Safi,
}

/// Any BGP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE (wire form; see [`ParsedUpdate`] for the interpreted form).
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

/// Check a complete 19-octet header (RFC 4271 §6.1) and return (type, total length).
pub fn check_header(h: &[u8]) -> Result<(MessageType, usize), BgpError> {
    let mut r = Reader::new(h);
    let marker = r
        .bytes(MARKER_LEN)
        .map_err(|_| BgpError::BadMessageLength(0))?;
    // §6.1: the marker must be all ones, else Connection Not Synchronized.
    if marker.iter().any(|&b| b != 0xff) {
        return Err(BgpError::ConnectionNotSynchronized);
    }
    let len = r.u16().map_err(|_| BgpError::BadMessageLength(0))?;
    let ty = MessageType(r.u8().map_err(|_| BgpError::BadMessageLength(len))?);
    let ulen = usize::from(len);
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&ulen) {
        return Err(BgpError::BadMessageLength(len));
    }
    // §6.1: per-type length bounds.
    let ok = match ty {
        MessageType::OPEN => ulen >= MIN_OPEN_LEN,
        MessageType::UPDATE => ulen >= MIN_UPDATE_LEN,
        MessageType::NOTIFICATION => ulen >= MIN_NOTIFICATION_LEN,
        MessageType::KEEPALIVE => ulen == KEEPALIVE_LEN,
        MessageType::ROUTE_REFRESH => ulen == ROUTE_REFRESH_LEN,
        MessageType(t) => return Err(BgpError::BadMessageType(t)),
    };
    if !ok {
        return Err(BgpError::BadMessageLength(len));
    }
    Ok((ty, ulen))
}

impl Message {
    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::OPEN,
            Message::Update(_) => MessageType::UPDATE,
            Message::Notification(_) => MessageType::NOTIFICATION,
            Message::Keepalive => MessageType::KEEPALIVE,
            Message::RouteRefresh(_) => MessageType::ROUTE_REFRESH,
        }
    }

    /// Decode exactly one complete message (header included).
    pub fn decode(buf: &[u8]) -> Result<Message, BgpError> {
        let head = buf.get(..HEADER_LEN).ok_or(BgpError::BadMessageLength(0))?;
        let (ty, len) = check_header(head)?;
        if len != buf.len() {
            return Err(BgpError::BadMessageLength(
                u16::try_from(buf.len()).unwrap_or(u16::MAX),
            ));
        }
        let body = buf.get(HEADER_LEN..).ok_or(BgpError::BadMessageLength(0))?;
        Self::decode_body(ty, body)
    }

    /// Decode the body of a message whose header already passed [`check_header`].
    pub fn decode_body(ty: MessageType, body: &[u8]) -> Result<Message, BgpError> {
        match ty {
            MessageType::OPEN => Ok(Message::Open(Open::decode(body)?)),
            MessageType::UPDATE => Ok(Message::Update(Update::decode(body)?)),
            MessageType::NOTIFICATION => {
                let mut r = Reader::new(body);
                let code = r.u8().map_err(|_| BgpError::BadMessageLength(0))?;
                let subcode = r.u8().map_err(|_| BgpError::BadMessageLength(0))?;
                Ok(Message::Notification(Notification {
                    code,
                    subcode,
                    data: r.rest().to_vec(),
                }))
            }
            MessageType::KEEPALIVE => Ok(Message::Keepalive),
            MessageType::ROUTE_REFRESH => {
                let mut r = Reader::new(body);
                let bad = |_| BgpError::BadMessageLength(ROUTE_REFRESH_LEN as u16);
                let afi = Afi(r.u16().map_err(bad)?);
                let reserved = r.u8().map_err(bad)?;
                let safi = Safi(r.u8().map_err(bad)?);
                Ok(Message::RouteRefresh(RouteRefresh {
                    afi,
                    reserved,
                    safi,
                }))
            }
            MessageType(t) => Err(BgpError::BadMessageType(t)),
        }
    }

    /// Encode with header. Fails only if the body exceeds the 4096-octet limit.
    pub fn encode(&self) -> Result<Vec<u8>, BgpError> {
        let mut out = vec![0xff; MARKER_LEN];
        out.extend_from_slice(&[0, 0, self.message_type().0]);
        match self {
            Message::Open(o) => o.encode(&mut out),
            Message::Update(u) => u.encode(&mut out)?,
            Message::Notification(n) => {
                out.push(n.code);
                out.push(n.subcode);
                out.extend_from_slice(&n.data);
            }
            Message::Keepalive => {}
            Message::RouteRefresh(rr) => {
                out.extend_from_slice(&rr.afi.0.to_be_bytes());
                out.push(rr.reserved);
                out.push(rr.safi.0);
            }
        }
        if out.len() > MAX_MESSAGE_LEN {
            return Err(BgpError::MessageTooLong(out.len()));
        }
        let len = u16::try_from(out.len()).map_err(|_| BgpError::MessageTooLong(out.len()))?;
        out[MARKER_LEN..MARKER_LEN + 2].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }
}

/// Splits a TCP byte stream into whole messages (RFC 4271 §4.1: the length field frames).
/// Consumed messages advance an offset; the buffer is compacted only when a push finds
/// it mostly consumed, so a burst of small messages costs no per-message memmove.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Start of the first unconsumed octet in `buf`.
    start: usize,
}

impl Framer {
    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Drop any buffered bytes (new connection).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    /// Number of buffered (unconsumed) bytes.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. Header errors are
    /// reported as soon as the 19 header octets are in.
    pub fn next_message(&mut self) -> Result<Option<Message>, BgpError> {
        let pending = &self.buf[self.start..];
        let Some(head) = pending.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let (ty, len) = check_header(head)?;
        let Some(body) = pending.get(HEADER_LEN..len) else {
            return Ok(None);
        };
        let msg = Message::decode_body(ty, body);
        self.start += len;
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ka() -> Vec<u8> {
        Message::Keepalive.encode().unwrap()
    }

    #[test]
    fn keepalive_wire() {
        let k = ka();
        assert_eq!(k.len(), 19);
        assert_eq!(&k[16..], &[0, 19, 4]);
        assert_eq!(Message::decode(&k).unwrap(), Message::Keepalive);
    }

    #[test]
    fn framer_splits_stream_any_chunking() {
        let n = Message::Notification(Notification {
            code: 6,
            subcode: 2,
            data: vec![1, 2, 3],
        })
        .encode()
        .unwrap();
        let mut stream = ka();
        stream.extend_from_slice(&n);
        stream.extend_from_slice(&ka());
        for chunk in 1..stream.len() {
            let mut f = Framer::default();
            let mut got = Vec::new();
            for c in stream.chunks(chunk) {
                f.push(c);
                while let Some(m) = f.next_message().unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(got.len(), 3);
            assert_eq!(f.buffered(), 0);
        }
    }

    /// Consumed messages are not moved one by one, yet the buffer never keeps more than
    /// the unconsumed tail plus what one push brought.
    #[test]
    fn framer_reclaims_consumed_bytes() {
        let mut f = Framer::default();
        let two = [ka(), ka()].concat();
        for _ in 0..10_000 {
            // One and a half messages per push: the tail always straddles a push.
            f.push(&two[..28]);
            while f.next_message().unwrap().is_some() {}
            f.push(&two[28..]);
            while f.next_message().unwrap().is_some() {}
            assert!(f.buf.len() <= 2 * two.len(), "{}", f.buf.len());
        }
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn header_errors() {
        let mut k = ka();
        k[3] = 0;
        assert_eq!(
            Message::decode(&k),
            Err(BgpError::ConnectionNotSynchronized)
        );
        let mut k = ka();
        k[17] = 20;
        assert_eq!(check_header(&k[..19]), Err(BgpError::BadMessageLength(20)));
        let mut k = ka();
        k[18] = 9;
        assert_eq!(check_header(&k[..19]), Err(BgpError::BadMessageType(9)));
        let mut k = ka();
        k[16] = 0x10;
        k[17] = 1;
        assert_eq!(
            check_header(&k[..19]),
            Err(BgpError::BadMessageLength(4097))
        );
    }

    #[test]
    fn route_refresh_roundtrip() {
        let m = Message::RouteRefresh(RouteRefresh {
            afi: Afi::IPV6,
            reserved: 0,
            safi: Safi::UNICAST,
        });
        let b = m.encode().unwrap();
        assert_eq!(b.len(), 23);
        assert_eq!(Message::decode(&b).unwrap(), m);
    }
}
