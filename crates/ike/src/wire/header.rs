//! IKE header (RFC 7296 §3.1).

use super::{DecodeError, Reader};
use crate::iana::{ExchangeType, PayloadType};

/// Size of the fixed IKE header (§3.1).
pub const HEADER_LEN: usize = 28;

/// The header's Flags octet (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// I(nitiator): set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// V(ersion): we can speak a higher major version (never set by us).
    pub const VERSION: u8 = 0x10;
    /// R(esponse): this message is a response.
    pub const RESPONSE: u8 = 0x20;

    /// Whether the sender is the original initiator.
    pub fn initiator(self) -> bool {
        self.0 & Self::INITIATOR != 0
    }

    /// Whether this message is a response.
    pub fn response(self) -> bool {
        self.0 & Self::RESPONSE != 0
    }

    /// Whether the sender can speak a higher major version.
    pub fn version(self) -> bool {
        self.0 & Self::VERSION != 0
    }
}

/// The fixed IKE header (§3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    pub next_payload: PayloadType,
    /// Major version in the high nibble (2), minor in the low (0): 0x20.
    pub version: u8,
    pub exchange: ExchangeType,
    pub flags: Flags,
    pub message_id: u32,
    pub length: u32,
}

impl Header {
    /// The version octet we send: major 2, minor 0 (§3.1).
    pub const VERSION_2_0: u8 = 0x20;

    /// Major version (high nibble of the version octet).
    pub fn major_version(&self) -> u8 {
        self.version >> 4
    }

    /// Decode the header of a whole datagram (non-ESP marker already stripped).
    ///
    /// §2.5: a major version other than 2 is [`DecodeError::UnsupportedVersion`] (the
    /// minor version is ignored); §3.1: the Length field must equal the datagram length.
    pub fn decode(bytes: &[u8]) -> Result<Header, DecodeError> {
        let h = Self::peek(bytes)?;
        if h.major_version() != 2 {
            return Err(DecodeError::UnsupportedVersion(h.major_version()));
        }
        if usize::try_from(h.length).ok() != Some(bytes.len()) {
            return Err(DecodeError::BadLength);
        }
        Ok(h)
    }

    /// Read the first [`HEADER_LEN`] bytes without checking version or length, e.g. to
    /// take the SPIs and Message ID for an INVALID_MAJOR_VERSION answer (§2.5).
    pub fn peek(bytes: &[u8]) -> Result<Header, DecodeError> {
        let mut r = Reader::new(bytes);
        Ok(Header {
            spi_i: r.u64()?,
            spi_r: r.u64()?,
            next_payload: PayloadType(r.u8()?),
            version: r.u8()?,
            exchange: ExchangeType(r.u8()?),
            flags: Flags(r.u8()?),
            message_id: r.u32()?,
            length: r.u32()?,
        })
    }

    /// Append the 28 header bytes, every field as is.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(self.next_payload.0);
        out.push(self.version);
        out.push(self.exchange.0);
        out.push(self.flags.0);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&self.length.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0x1112_1314_1516_1718,
            next_payload: PayloadType::SK,
            version: 0x20,
            exchange: ExchangeType::IKE_AUTH,
            flags: Flags(Flags::RESPONSE),
            message_id: 1,
            length: 28,
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        // §3.1: SPIi, SPIr, Next Payload, MjVer|MnVer, Exchange Type, Flags, Message ID, Length.
        assert_eq!(
            hex::encode(&out),
            "01020304050607081112131415161718\
             2e202320000000010000001c"
        );
        assert_eq!(out.len(), HEADER_LEN);
        let h = Header::decode(&out).unwrap();
        assert_eq!(h, sample());
        assert!(h.flags.response() && !h.flags.initiator() && !h.flags.version());
    }

    #[test]
    fn errors() {
        let mut out = Vec::new();
        sample().encode(&mut out);
        assert_eq!(Header::decode(&out[..27]), Err(DecodeError::Truncated));
        let mut long = out.clone();
        long.push(0);
        assert_eq!(Header::decode(&long), Err(DecodeError::BadLength));
        let mut v3 = out.clone();
        v3[17] = 0x30;
        assert_eq!(Header::decode(&v3), Err(DecodeError::UnsupportedVersion(3)));
        assert_eq!(Header::peek(&v3).unwrap().spi_i, 0x0102_0304_0506_0708);
        // §2.5: the minor version is ignored.
        let mut minor = out.clone();
        minor[17] = 0x21;
        assert_eq!(Header::decode(&minor).unwrap().version, 0x21);
    }
}
