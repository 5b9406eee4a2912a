//! What a negotiated CHILD SA means for the dataplane: its ESP suite, its selectors,
//! and the tunnel MTU that suite leaves.

use esp::{AesKeySize, Algorithm, Integrity};
use ike::iana::{EncrId, IntegId};
use ike::wire::TrafficSelector;

/// The ESP view of a CHILD SA's negotiated selectors (`local` = ours). Selector types
/// other than address ranges are never negotiated by us, so they cannot match.
pub fn selectors_for(local: &[TrafficSelector], remote: &[TrafficSelector]) -> esp::Selectors {
    let convert = |list: &[TrafficSelector]| {
        list.iter()
            .filter_map(|ts| match *ts {
                TrafficSelector::Range {
                    ip_protocol,
                    start_port,
                    end_port,
                    start,
                    end,
                    ..
                } => Some(esp::Selector {
                    start,
                    end,
                    protocol: ip_protocol,
                    start_port,
                    end_port,
                }),
                TrafficSelector::Unknown { .. } => None,
            })
            .collect()
    };
    esp::Selectors::new(convert(local), convert(remote))
}

/// Maps negotiated IKEv2 transforms to an ESP suite; `None` when the
/// combination is not supported by the dataplane.
pub fn algorithm_for(
    encr: EncrId,
    key_bits: Option<u16>,
    integ: Option<IntegId>,
) -> Option<Algorithm> {
    let key = match key_bits? {
        128 => AesKeySize::Aes128,
        256 => AesKeySize::Aes256,
        _ => return None,
    };
    // RFC 7296 §3.3.3: combined-mode ciphers carry no (or a NONE) integrity transform.
    let integ = integ.filter(|i| *i != IntegId::NONE);
    if encr == EncrId::AES_GCM_16 {
        return integ.is_none().then_some(Algorithm::AesGcm16(key));
    }
    if encr == EncrId::AES_CBC {
        let i = match integ? {
            IntegId::HMAC_SHA2_256_128 => Integrity::HmacSha256_128,
            IntegId::HMAC_SHA2_384_192 => Integrity::HmacSha384_192,
            IntegId::HMAC_SHA2_512_256 => Integrity::HmacSha512_256,
            _ => return None,
        };
        return Some(Algorithm::AesCbc(key, i));
    }
    None
}

/// IPv4 header without options (RFC 791).
const IPV4_HEADER: usize = 20;
/// IPv6 fixed header (RFC 8200 §3).
const IPV6_HEADER: usize = 40;
/// UDP header (RFC 768), the RFC 3948 encapsulation.
const UDP_HEADER: usize = 8;
/// SPI + sequence number (RFC 4303 §2).
const ESP_HEADER: usize = 8;
/// Pad Length + Next Header (RFC 4303 §2).
const ESP_TRAILER: usize = 2;
/// Smallest MTU an IPv6 link may have (RFC 8200 §5).
pub const IPV6_MIN_MTU: u16 = 1280;

/// MTU of a tunnel interface: the largest inner packet whose ESP-in-UDP
/// encapsulation fits into `underlay_mtu`. Outer IP + UDP + ESP header +
/// IV + ICV are subtracted, and the ciphertext (payload ‖ padding ‖ pad
/// length ‖ next header) is rounded down to the cipher's block (RFC 4303
/// §2.4), which is exactly the worst case of the padding. Inner IPv6 needs
/// at least [`IPV6_MIN_MTU`]; callers should warn when the result is lower.
pub fn compute_mtu(underlay_mtu: u16, outer_ipv6: bool, alg: Algorithm) -> u16 {
    let ip = if outer_ipv6 { IPV6_HEADER } else { IPV4_HEADER };
    let fixed = ip + UDP_HEADER + ESP_HEADER + alg.iv_len() + alg.icv_len();
    let Some(ct) = usize::from(underlay_mtu).checked_sub(fixed) else {
        return 0;
    };
    let ct = ct - ct % alg.block_len();
    u16::try_from(ct.saturating_sub(ESP_TRAILER)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use esp::{OutboundSa, SaParams};

    const GCM128: Algorithm = Algorithm::AesGcm16(AesKeySize::Aes128);

    #[test]
    fn algorithm_mapping() {
        use EncrId as E;
        use IntegId as I;
        assert_eq!(algorithm_for(E::AES_GCM_16, Some(128), None), Some(GCM128));
        assert_eq!(
            algorithm_for(E::AES_GCM_16, Some(256), Some(I::NONE)),
            Some(Algorithm::AesGcm16(AesKeySize::Aes256))
        );
        // AEAD with a separate integrity transform is not a valid ESP suite.
        assert_eq!(
            algorithm_for(E::AES_GCM_16, Some(128), Some(I::HMAC_SHA2_256_128)),
            None
        );
        assert_eq!(algorithm_for(E::AES_GCM_16, Some(192), None), None);
        assert_eq!(algorithm_for(E::AES_GCM_16, None, None), None);
        for (i, want) in [
            (I::HMAC_SHA2_256_128, Integrity::HmacSha256_128),
            (I::HMAC_SHA2_384_192, Integrity::HmacSha384_192),
            (I::HMAC_SHA2_512_256, Integrity::HmacSha512_256),
        ] {
            for (bits, k) in [(128, AesKeySize::Aes128), (256, AesKeySize::Aes256)] {
                assert_eq!(
                    algorithm_for(E::AES_CBC, Some(bits), Some(i)),
                    Some(Algorithm::AesCbc(k, want))
                );
            }
        }
        // CBC needs integrity.
        assert_eq!(algorithm_for(E::AES_CBC, Some(128), None), None);
        assert_eq!(algorithm_for(E::AES_CBC, Some(128), Some(I::NONE)), None);
        assert_eq!(algorithm_for(E::AES_CBC, Some(128), Some(IntegId(2))), None);
        assert_eq!(
            algorithm_for(EncrId(3), Some(128), Some(I::HMAC_SHA2_256_128)),
            None
        );
    }

    /// The MTU is exactly the largest inner packet whose sealed form fits.
    #[test]
    fn mtu_is_tight() {
        for alg in Algorithm::ALL {
            let keymat = esp::Zeroizing::new(vec![7u8; alg.keymat_len()]);
            let sa = OutboundSa::new(SaParams::new(0x1000, alg, keymat)).unwrap();
            for (underlay, v6) in [(1500u16, false), (1500, true), (9000, false), (1400, true)] {
                let mtu = usize::from(compute_mtu(underlay, v6, alg));
                let outer = if v6 { 48 } else { 28 };
                let room = usize::from(underlay) - outer;
                assert!(sa.sealed_len(mtu) <= room, "{alg:?} {underlay} {v6}");
                assert!(
                    sa.sealed_len(mtu + 1) > room,
                    "{alg:?} {underlay} {v6} not tight"
                );
            }
        }
        assert_eq!(compute_mtu(1500, false, GCM128), 1438);
        assert_eq!(compute_mtu(1500, true, GCM128), 1418);
        assert_eq!(
            compute_mtu(
                1500,
                false,
                Algorithm::AesCbc(AesKeySize::Aes256, Integrity::HmacSha256_128)
            ),
            1422
        );
        assert_eq!(compute_mtu(40, false, GCM128), 0);
        // A 1280-octet underlay cannot carry inner IPv6.
        assert!(compute_mtu(1280, false, GCM128) < IPV6_MIN_MTU);
        assert!(compute_mtu(1500, true, GCM128) >= IPV6_MIN_MTU);
    }
}
