//! Demultiplexing of UDP port 4500 (RFC 3948 §2): NAT-keepalives, IKE
//! behind the non-ESP marker, and UDP-encapsulated ESP.

use crate::error::EspError;
use crate::limits::{ESP_HEADER_LEN, NAT_KEEPALIVE, NON_ESP_MARKER};

/// What a port-4500 UDP payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A single 0xFF octet; drop it (RFC 3948 §2.3).
    Keepalive,
    /// An IKE message (the bytes after the non-ESP marker, RFC 3948 §2.2).
    Ike(&'a [u8]),
    /// An ESP packet; `packet` is the whole UDP payload, starting at the SPI.
    Esp { spi: u32, packet: &'a [u8] },
    /// Anything else (empty, too short, or a marker with nothing after it).
    Invalid,
}

/// Classify a UDP payload received on port 4500.
pub fn classify(payload: &[u8]) -> Datagram<'_> {
    if payload == NAT_KEEPALIVE {
        return Datagram::Keepalive;
    }
    let Some((first, rest)) = payload.split_first_chunk::<4>() else {
        return Datagram::Invalid;
    };
    if *first == NON_ESP_MARKER {
        // An SPI of 0 is never ESP, so this is IKE (RFC 3948 §2.2).
        return if rest.is_empty() {
            Datagram::Invalid
        } else {
            Datagram::Ike(rest)
        };
    }
    if payload.len() < ESP_HEADER_LEN {
        return Datagram::Invalid;
    }
    Datagram::Esp {
        spi: u32::from_be_bytes(*first),
        packet: payload,
    }
}

/// Write the non-ESP marker at the start of `out`; the IKE message follows
/// at offset 4. Returns the marker length.
pub fn write_non_esp_marker(out: &mut [u8]) -> Result<usize, EspError> {
    let have = out.len();
    let dst = out
        .get_mut(..NON_ESP_MARKER.len())
        .ok_or(EspError::BufferTooSmall {
            need: NON_ESP_MARKER.len(),
            have,
        })?;
    dst.copy_from_slice(&NON_ESP_MARKER);
    Ok(NON_ESP_MARKER.len())
}

/// Append marker ‖ `ike_message` to `out` (for sending IKE on port 4500).
pub fn encode_ike(ike_message: &[u8], out: &mut Vec<u8>) {
    out.reserve(NON_ESP_MARKER.len() + ike_message.len());
    out.extend_from_slice(&NON_ESP_MARKER);
    out.extend_from_slice(ike_message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keepalive() {
        assert_eq!(classify(&[0xFF]), Datagram::Keepalive);
        // Two octets are not a keepalive, and too short for anything else.
        assert_eq!(classify(&[0xFF, 0xFF]), Datagram::Invalid);
    }

    #[test]
    fn ike_after_marker() {
        let mut v = Vec::new();
        encode_ike(b"IKEHDR", &mut v);
        assert_eq!(classify(&v), Datagram::Ike(b"IKEHDR"));
        assert_eq!(classify(&[0, 0, 0, 0]), Datagram::Invalid);
        let mut buf = [9u8; 6];
        assert_eq!(write_non_esp_marker(&mut buf), Ok(4));
        assert_eq!(buf, [0, 0, 0, 0, 9, 9]);
        assert!(write_non_esp_marker(&mut [0u8; 3]).is_err());
    }

    #[test]
    fn esp() {
        let p = hex::decode("0000a5f80000000a").unwrap();
        assert_eq!(
            classify(&p),
            Datagram::Esp {
                spi: 0xa5f8,
                packet: &p
            }
        );
        assert_eq!(classify(&p[..7]), Datagram::Invalid);
        assert_eq!(classify(&[]), Datagram::Invalid);
    }

    proptest! {
        #[test]
        fn classify_total(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            match classify(&bytes) {
                Datagram::Keepalive => prop_assert_eq!(&bytes[..], &[0xFF][..]),
                Datagram::Ike(m) => {
                    let mut v = Vec::new();
                    encode_ike(m, &mut v);
                    prop_assert_eq!(v, bytes);
                }
                Datagram::Esp { spi, packet } => {
                    prop_assert!(spi != 0);
                    prop_assert_eq!(packet, &bytes[..]);
                }
                Datagram::Invalid => {}
            }
        }
    }
}
