//! CHILD SAs as the session tracks them and as the dataplane installs them; KEYMAT split (§2.17).

use crate::crypto::{self, Prf};
use crate::iana::{EncrId, IntegId};
use crate::proposal::Selected;
use crate::wire::TrafficSelector;
use std::net::SocketAddr;
use std::time::Instant;
use zeroize::Zeroizing;

/// Human form of a selector: "10.1.0.0/24", "0.0.0.0/0", or a range.
pub fn ts_to_string(ts: &TrafficSelector) -> String {
    ts.to_string()
}

/// Everything the dataplane needs to install one CHILD SA. Keys are never printed.
pub struct ChildSaInfo {
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr: EncrId,
    pub encr_key_bits: Option<u16>,
    pub integ: Option<IntegId>,
    pub esn: bool,
    /// Inbound keys: encryption (incl. salt) then integrity.
    pub keys_in: Zeroizing<Vec<u8>>,
    pub keys_out: Zeroizing<Vec<u8>>,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP-in-UDP endpoints (RFC 3948).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub proposal: String,
    /// Inbound SPI of the CHILD SA this one rekeys, if any.
    pub replaces: Option<u32>,
    /// We answered the exchange that created it. The responder of a rekey should send
    /// on the new SA only once the initiator has it too: when it deletes the old SA or
    /// sends on the new one (RFC 7296 §2.8), else the first packets are lost.
    pub responder: bool,
    /// RFC 9611: 0 = the fallback (or only) CHILD SA; r >= 1 = the per-resource CHILD SA
    /// for the r-th worker after the tunnel's own (kept across rekeys).
    pub resource: u32,
}

impl std::fmt::Debug for ChildSaInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSaInfo")
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("proposal", &self.proposal)
            .field("esn", &self.esn)
            .field("resource", &self.resource)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// A CHILD SA as the session tracks it (keys live only in the dataplane).
#[derive(Debug, Clone)]
pub struct Child {
    pub spi_in: u32,
    pub spi_out: u32,
    pub proposal: String,
    pub esn: bool,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub created: Instant,
    /// When to rekey it (set by the session once installed).
    pub rekey_at: Option<Instant>,
    /// SPIi of the IKE SA that owns it (moves to the new SA on an IKE rekey).
    pub owner: u64,
    /// Replaced and to be deleted: we rekeyed it, or it is the peer's loser of a rekey
    /// collision (§2.8.1). Never rekeyed; a peer's rekey of it gets TEMPORARY_FAILURE.
    pub superseded: bool,
    /// The peer's rekey of this SA crossed ours (§2.8.1): its Ni, our Nr, and the
    /// inbound SPI of the SA it created here.
    pub peer_rekey: Option<(Vec<u8>, Vec<u8>, u32)>,
    /// The peer's rekey of this SA (inbound SPI) created it, answered by us. While that
    /// SA is still here (the peer deletes it once it has our answer, §2.8), the peer
    /// may not have this one yet.
    pub from_peer_rekey_of: Option<u32>,
    /// RFC 9611: 0 = the fallback (or only) CHILD SA; r >= 1 = per-resource CHILD SA r.
    pub resource: u32,
}

/// Secret key material, wiped on drop.
pub type Key = Zeroizing<Vec<u8>>;

/// Derives KEYMAT (§2.17) and splits it: the initiator→responder keys come first.
#[allow(clippy::too_many_arguments)]
pub fn derive(
    prf: Prf,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    sel: &Selected,
    we_initiated: bool,
) -> Result<(Key, Key), crypto::CryptoError> {
    let ek = crypto::encr_key_len(sel.encr.0, sel.encr.1)?;
    let ik = match sel.integ {
        Some(i) => crypto::integ_key_len(i)?,
        None => 0,
    };
    let per_dir = ek + ik;
    let keymat = crypto::child_keymat(prf, sk_d, shared, ni, nr, 2 * per_dir);
    let i2r = Zeroizing::new(keymat[..per_dir].to_vec());
    let r2i = Zeroizing::new(keymat[per_dir..2 * per_dir].to_vec());
    Ok(if we_initiated { (r2i, i2r) } else { (i2r, r2i) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::TsType;
    use std::net::{IpAddr, Ipv4Addr};

    fn ts(a: &str, l: u8) -> TrafficSelector {
        TrafficSelector::from_prefix(a.parse().unwrap(), l)
    }

    #[test]
    fn ts_strings() {
        assert_eq!(ts_to_string(&TrafficSelector::any_v4()), "0.0.0.0/0");
        assert_eq!(ts_to_string(&TrafficSelector::any_v6()), "::/0");
        assert_eq!(ts_to_string(&ts("10.1.0.0", 24)), "10.1.0.0/24");
        let r = TrafficSelector::Range {
            ts_type: TsType::IPV4_ADDR_RANGE,
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            end: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
        };
        assert_eq!(ts_to_string(&r), "10.0.0.1..10.0.0.5");
    }
}
