//! Whole IKE messages: header plus payload chain (RFC 7296 §3.1, §3.2).

use super::{decode_chain, encode_chain, DecodeError, Header, Payload, HEADER_LEN};
use crate::iana::PayloadType;

/// An IKE message: the header and the (outer) payload chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
}

impl Message {
    /// Decode a whole datagram (non-ESP marker already stripped by the caller).
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let header = Header::decode(bytes)?;
        let body = bytes.get(HEADER_LEN..).ok_or(DecodeError::Truncated)?;
        let payloads = decode_chain(header.next_payload, body)?;
        Ok(Message { header, payloads })
    }

    /// Encode the message; `header.next_payload` and `header.length` are computed from
    /// the payloads, every other header field is sent as is.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let first = encode_chain(&self.payloads, &mut body);
        let mut header = self.header;
        header.next_payload = first;
        header.length = u32::try_from(HEADER_LEN + body.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        header.encode(&mut out);
        out.extend_from_slice(&body);
        out
    }

    /// The first payload of type `ty` in the outer chain.
    pub fn find(&self, ty: PayloadType) -> Option<&Payload> {
        self.payloads.iter().find(|p| p.payload_type() == ty)
    }
}
