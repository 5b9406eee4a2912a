//! Checked view over the fixed ESP header (RFC 4303 §2):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |               Security Parameters Index (SPI)                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Sequence Number                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Payload Data* (variable)                   |
//! ```

use crate::error::EspError;
use crate::limits::ESP_HEADER_LEN;

/// A buffer known to hold at least an ESP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    /// Wrap `buffer` after checking it is long enough for the header.
    pub fn new_checked(buffer: T) -> Result<Self, EspError> {
        if buffer.as_ref().len() < ESP_HEADER_LEN {
            return Err(EspError::Truncated);
        }
        Ok(Self { buffer })
    }

    fn word(&self, at: usize) -> u32 {
        let mut w = [0u8; 4];
        if let Some(b) = self.buffer.as_ref().get(at..at + 4) {
            w.copy_from_slice(b);
        }
        u32::from_be_bytes(w)
    }

    /// Security Parameters Index.
    pub fn spi(&self) -> u32 {
        self.word(0)
    }

    /// Low-order 32 bits of the sequence number (the only bits on the wire,
    /// also with ESN — RFC 4303 §2.2.1).
    pub fn seq(&self) -> u32 {
        self.word(4)
    }

    /// Everything after the header: IV ‖ ciphertext ‖ ICV.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(ESP_HEADER_LEN..).unwrap_or(&[])
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Give the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EspPacket<T> {
    fn set_word(&mut self, at: usize, v: u32) {
        if let Some(b) = self.buffer.as_mut().get_mut(at..at + 4) {
            b.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// Set the SPI.
    pub fn set_spi(&mut self, spi: u32) {
        self.set_word(0, spi);
    }

    /// Set the low-order 32 bits of the sequence number.
    pub fn set_seq(&mut self, seq: u32) {
        self.set_word(4, seq);
    }

    /// Mutable access to everything after the header.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(ESP_HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// Owned representation of the header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EspHeader {
    pub spi: u32,
    pub seq: u32,
}

impl EspHeader {
    /// Read the header fields from a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &EspPacket<T>) -> Self {
        Self {
            spi: packet.spi(),
            seq: packet.seq(),
        }
    }

    /// Write the header fields into a checked view.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut EspPacket<T>) {
        packet.set_spi(self.spi);
        packet.set_seq(self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_buffers_are_rejected() {
        for n in 0..ESP_HEADER_LEN {
            assert_eq!(
                EspPacket::new_checked(vec![0u8; n]).unwrap_err(),
                EspError::Truncated
            );
        }
        assert!(EspPacket::new_checked([0u8; ESP_HEADER_LEN]).is_ok());
    }

    #[test]
    fn fields() {
        let bytes = hex::decode("0000a5f80000000afacedbad").unwrap();
        let p = EspPacket::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.spi(), 0xa5f8);
        assert_eq!(p.seq(), 10);
        assert_eq!(p.payload(), &hex::decode("facedbad").unwrap()[..]);
    }

    proptest! {
        #[test]
        fn decode_encode_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            match EspPacket::new_checked(&bytes[..]) {
                Err(_) => prop_assert!(bytes.len() < ESP_HEADER_LEN),
                Ok(view) => {
                    let hdr = EspHeader::parse(&view);
                    let mut out = bytes.clone();
                    out[..ESP_HEADER_LEN].fill(0);
                    let mut w = EspPacket::new_checked(&mut out[..]).unwrap();
                    hdr.emit(&mut w);
                    prop_assert_eq!(&out, &bytes);
                }
            }
        }
    }
}
