//! Security associations: outbound sealing and inbound opening of ESP
//! packets (RFC 4303 §3.3 and §3.4), tunnel mode, in place, no allocation
//! per packet.

use zeroize::Zeroizing;

use crate::alg::{Algorithm, Opener, Sealer, SeqInfo};
use crate::error::EspError;
use crate::header::EspPacket;
use crate::limits::{
    AES_BLOCK_LEN, ESP_HEADER_LEN, ESP_TRAILER_LEN, IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN,
    MAX_SEQ_32, MAX_SEQ_64, NEXT_HEADER_DUMMY, NEXT_HEADER_IPV4, NEXT_HEADER_IPV6,
    SPI_RESERVED_MAX,
};
use crate::replay::{ReplayWindow, Replayed};
use crate::selector::Selectors;

/// Everything needed to instantiate one direction of a child SA.
#[derive(Clone)]
pub struct SaParams {
    /// SPI carried in the packets of this SA (chosen by the receiver).
    pub spi: u32,
    pub alg: Algorithm,
    /// This direction's slice of IKEv2 KEYMAT; see [`Algorithm::keymat_len`].
    pub keymat: Zeroizing<Vec<u8>>,
    /// Extended (64-bit) sequence numbers, RFC 4303 §2.2.1.
    pub esn: bool,
    /// Anti-replay window in packets (inbound only); 0 disables the check
    /// and is refused together with ESN.
    pub replay_window: u32,
    /// What the SA was negotiated to carry (RFC 4301 §5.1/§5.2); 0/0 by default.
    pub selectors: Selectors,
}

impl SaParams {
    /// Parameters with 32-bit sequence numbers and the default window.
    pub fn new(spi: u32, alg: Algorithm, keymat: Zeroizing<Vec<u8>>) -> Self {
        Self {
            spi,
            alg,
            keymat,
            esn: false,
            replay_window: crate::limits::DEFAULT_REPLAY_WINDOW,
            selectors: Selectors::default(),
        }
    }
}

impl core::fmt::Debug for SaParams {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Key material is never printed.
        f.debug_struct("SaParams")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("alg", &self.alg)
            .field(
                "keymat",
                &format_args!("<{} bytes redacted>", self.keymat.len()),
            )
            .field("esn", &self.esn)
            .field("replay_window", &self.replay_window)
            .field("selectors", &self.selectors)
            .finish()
    }
}

/// Per-SA statistics. Outbound SAs use `packets`, `bytes` and `dummy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Data packets sealed / accepted.
    pub packets: u64,
    /// Inner-packet octets sealed / accepted (what IKE byte lifetimes count).
    pub bytes: u64,
    /// Inbound packets dropped by the anti-replay check.
    pub replayed: u64,
    /// Inbound packets whose ICV did not verify.
    pub icv_failures: u64,
    /// Inbound packets dropped for any other reason (wrong SPI, truncated,
    /// bad padding, bad next header, inconsistent inner packet).
    pub malformed: u64,
    /// Dummy (next header 59) packets sealed / received and discarded.
    pub dummy: u64,
    /// Authentic packets outside the SA's traffic selectors, dropped (RFC 4301 §5.2);
    /// outbound, packets the SA was not negotiated to carry.
    pub ts_mismatch: u64,
}

fn check_spi(spi: u32) -> Result<(), EspError> {
    if spi <= SPI_RESERVED_MAX {
        return Err(EspError::ReservedSpi(spi));
    }
    Ok(())
}

/// Next Header for an inner packet, from its IP version nibble, after
/// checking its header fits and its length field is not larger than the
/// bytes given.
fn inner_next_header(inner: &[u8]) -> Result<u8, EspError> {
    match inner.first().map(|b| b >> 4) {
        Some(4) => ipv4_len(inner).map(|_| NEXT_HEADER_IPV4),
        Some(6) => ipv6_len(inner).map(|_| NEXT_HEADER_IPV6),
        _ => Err(EspError::NotIp),
    }
}

/// IPv4 Total Length, checked against the buffer (RFC 791 §3.1).
fn ipv4_len(p: &[u8]) -> Result<usize, EspError> {
    let b = p.get(2..4).ok_or(EspError::NotIp)?;
    let tl = usize::from(u16::from_be_bytes([b[0], b[1]]));
    if p.first().map(|b| b >> 4) != Some(4) || tl < IPV4_MIN_HEADER_LEN || tl > p.len() {
        return Err(EspError::NotIp);
    }
    Ok(tl)
}

/// IPv6 fixed header + Payload Length, checked against the buffer (RFC 8200 §3).
fn ipv6_len(p: &[u8]) -> Result<usize, EspError> {
    if p.len() < IPV6_HEADER_LEN || p.first().map(|b| b >> 4) != Some(6) {
        return Err(EspError::NotIp);
    }
    let b = p.get(4..6).ok_or(EspError::NotIp)?;
    let len = IPV6_HEADER_LEN + usize::from(u16::from_be_bytes([b[0], b[1]]));
    if len > p.len() {
        return Err(EspError::NotIp);
    }
    Ok(len)
}

/// Sending half of a child SA.
pub struct OutboundSa {
    spi: u32,
    alg: Algorithm,
    esn: bool,
    sealer: Sealer,
    /// Last sequence number used; the next packet gets `last_seq + 1`
    /// (the first packet is 1, RFC 4303 §3.3.3).
    last_seq: u64,
    counters: Counters,
    selectors: Selectors,
    /// Test hook: replaces the derived IV so published vectors can be matched.
    #[cfg(test)]
    fixed_iv: Option<Vec<u8>>,
}

impl core::fmt::Debug for OutboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OutboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("alg", &self.alg)
            .field("esn", &self.esn)
            .field("last_seq", &self.last_seq)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl OutboundSa {
    /// Set up the keys. The key material in `params` is zeroized when
    /// `params` drops.
    pub fn new(params: SaParams) -> Result<Self, EspError> {
        check_spi(params.spi)?;
        Ok(Self {
            spi: params.spi,
            alg: params.alg,
            esn: params.esn,
            sealer: Sealer::new(params.alg, &params.keymat)?,
            last_seq: 0,
            counters: Counters::default(),
            selectors: params.selectors,
            #[cfg(test)]
            fixed_iv: None,
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sequence number of the last packet sent (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Sequence numbers left before [`EspError::SequenceExhausted`]; the
    /// daemon compares this (or `counters().packets`) with its soft limit to
    /// start a rekey in time (RFC 4303 §3.3.3, RFC 7296 §2.8).
    pub fn remaining_seq(&self) -> u64 {
        self.max_seq() - self.last_seq
    }

    fn max_seq(&self) -> u64 {
        if self.esn {
            MAX_SEQ_64
        } else {
            MAX_SEQ_32
        }
    }

    /// Octets in front of the payload: SPI ‖ seq ‖ IV. An inner packet
    /// placed at this offset can be sealed with [`Self::seal_in_place`].
    pub fn header_len(&self) -> usize {
        ESP_HEADER_LEN + self.alg.iv_len()
    }

    /// Size of the ESP packet carrying `payload_len` octets.
    pub fn sealed_len(&self, payload_len: usize) -> usize {
        let block = self.alg.block_len();
        let unpadded = payload_len.saturating_add(ESP_TRAILER_LEN);
        let padded = unpadded.saturating_add((block - unpadded % block) % block);
        self.header_len()
            .saturating_add(padded)
            .saturating_add(self.alg.icv_len())
    }

    /// Worst-case octets ESP adds to a payload (header, IV, padding,
    /// trailer, ICV), for sizing buffers and the tunnel MTU:
    /// `sealed_len(n) <= n + max_overhead()`.
    pub fn max_overhead(&self) -> usize {
        self.header_len() + ESP_TRAILER_LEN + self.alg.block_len() - 1 + self.alg.icv_len()
    }

    /// Seal `inner` (an IPv4 or IPv6 packet) into `out`, returning the ESP
    /// packet length. `out` must hold [`Self::sealed_len`] octets.
    pub fn seal(&mut self, inner: &[u8], out: &mut [u8]) -> Result<usize, EspError> {
        self.seal_with_tfc(inner, 0, out)
    }

    /// Like [`Self::seal`], appending `tfc_pad` zero octets after the inner
    /// packet (traffic flow confidentiality padding, RFC 4303 §2.7).
    pub fn seal_with_tfc(
        &mut self,
        inner: &[u8],
        tfc_pad: usize,
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let nh = inner_next_header(inner)?;
        self.check_selectors(inner)?;
        let payload_len = inner.len().saturating_add(tfc_pad);
        self.check_room(payload_len, out.len())?;
        let hdr = self.header_len();
        let (dst, tfc) = out[hdr..hdr + payload_len].split_at_mut(inner.len());
        dst.copy_from_slice(inner);
        tfc.fill(0);
        self.seal_payload(out, payload_len, nh, inner.len())
    }

    /// Seal an inner packet that already sits at
    /// `buf[self.header_len()..][..inner_len]`; no copy is made. `buf` must
    /// hold [`Self::sealed_len`]`(inner_len)` octets.
    pub fn seal_in_place(&mut self, buf: &mut [u8], inner_len: usize) -> Result<usize, EspError> {
        self.check_room(inner_len, buf.len())?;
        let hdr = self.header_len();
        let nh = inner_next_header(&buf[hdr..hdr + inner_len])?;
        self.check_selectors(&buf[hdr..hdr + inner_len])?;
        self.seal_payload(buf, inner_len, nh, inner_len)
    }

    /// Seal a dummy packet (next header 59, RFC 4303 §2.6) with `len` zero
    /// octets of payload, for traffic-flow confidentiality.
    pub fn seal_dummy(&mut self, len: usize, out: &mut [u8]) -> Result<usize, EspError> {
        self.check_room(len, out.len())?;
        let hdr = self.header_len();
        out[hdr..hdr + len].fill(0);
        self.seal_payload(out, len, NEXT_HEADER_DUMMY, 0)
    }

    /// RFC 4301 §5.1: the SA carries only what it was negotiated for; checked before
    /// a sequence number is spent.
    fn check_selectors(&mut self, inner: &[u8]) -> Result<(), EspError> {
        if self.selectors.permits_outbound(inner) {
            return Ok(());
        }
        self.counters.ts_mismatch += 1;
        Err(EspError::SelectorMismatch)
    }

    fn check_room(&self, payload_len: usize, have: usize) -> Result<(), EspError> {
        let need = self.sealed_len(payload_len);
        if need > have || need == usize::MAX {
            return Err(EspError::BufferTooSmall { need, have });
        }
        Ok(())
    }

    /// Pad, number, encrypt and authenticate the payload at
    /// `buf[header_len..][..payload_len]` (room already checked).
    fn seal_payload(
        &mut self,
        buf: &mut [u8],
        payload_len: usize,
        next_header: u8,
        inner_len: usize,
    ) -> Result<usize, EspError> {
        // RFC 4303 §3.3.3: never let the counter cycle; the SA must be rekeyed.
        if self.last_seq >= self.max_seq() {
            return Err(EspError::SequenceExhausted);
        }
        let seq = self.last_seq + 1;
        // Burn the number before encrypting so an IV is never reused.
        self.last_seq = seq;

        let total = self.sealed_len(payload_len);
        let hdr = self.header_len();
        let icv = self.alg.icv_len();
        let pkt = &mut buf[..total];
        let trailer_at = hdr + payload_len;
        let pad_len = total - icv - ESP_TRAILER_LEN - trailer_at;
        debug_assert!(pad_len < AES_BLOCK_LEN);

        pkt[..4].copy_from_slice(&self.spi.to_be_bytes());
        // Only the low-order 32 bits go on the wire, also with ESN (§2.2.1).
        pkt[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        self.sealer.make_iv(seq, &mut pkt[ESP_HEADER_LEN..hdr])?;
        #[cfg(test)]
        if let Some(iv) = &self.fixed_iv {
            pkt[ESP_HEADER_LEN..hdr].copy_from_slice(iv);
        }
        // RFC 4303 §2.4: default padding is 1, 2, 3, …
        for (i, b) in pkt[trailer_at..trailer_at + pad_len].iter_mut().enumerate() {
            *b = (i + 1) as u8;
        }
        pkt[trailer_at + pad_len] = pad_len as u8;
        pkt[trailer_at + pad_len + 1] = next_header;

        let info = SeqInfo {
            spi: self.spi,
            seq,
            esn: self.esn,
        };
        self.sealer.seal(&info, pkt, self.alg.iv_len())?;

        if next_header == NEXT_HEADER_DUMMY {
            self.counters.dummy += 1;
        } else {
            self.counters.packets += 1;
            self.counters.bytes += inner_len as u64;
        }
        Ok(total)
    }

    /// Test and fuzzing hook: continue numbering after `seq` (to reach the 2^32 and
    /// exhaustion boundaries without sealing billions of packets).
    #[cfg(any(test, fuzzing, feature = "fuzzing-hooks"))]
    pub fn set_last_seq(&mut self, seq: u64) {
        self.last_seq = seq;
    }

    #[cfg(test)]
    pub(crate) fn set_fixed_iv(&mut self, iv: &[u8]) {
        self.fixed_iv = Some(iv.to_vec());
    }
}

/// Result of a successfully opened packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Decapsulated<'a> {
    /// Inner IPv4 packet (TFC padding removed), next header 4.
    Ipv4(&'a mut [u8]),
    /// Inner IPv6 packet (TFC padding removed), next header 41.
    Ipv6(&'a mut [u8]),
    /// A dummy packet (next header 59): authentic, to be dropped silently
    /// (RFC 4303 §2.6).
    Dummy,
}

impl<'a> Decapsulated<'a> {
    /// The Next Header value the packet carried.
    pub fn next_header(&self) -> u8 {
        match self {
            Self::Ipv4(_) => NEXT_HEADER_IPV4,
            Self::Ipv6(_) => NEXT_HEADER_IPV6,
            Self::Dummy => NEXT_HEADER_DUMMY,
        }
    }

    /// The inner packet, unless this is a dummy.
    pub fn packet(&self) -> Option<&[u8]> {
        match self {
            Self::Ipv4(p) | Self::Ipv6(p) => Some(p),
            Self::Dummy => None,
        }
    }

    /// The inner packet, mutably, for forwarding without a copy.
    pub fn into_packet(self) -> Option<&'a mut [u8]> {
        match self {
            Self::Ipv4(p) | Self::Ipv6(p) => Some(p),
            Self::Dummy => None,
        }
    }
}

/// Receiving half of a child SA.
pub struct InboundSa {
    spi: u32,
    alg: Algorithm,
    esn: bool,
    opener: Opener,
    window: ReplayWindow,
    counters: Counters,
    selectors: Selectors,
}

impl core::fmt::Debug for InboundSa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InboundSa")
            .field("spi", &format_args!("{:#010x}", self.spi))
            .field("alg", &self.alg)
            .field("esn", &self.esn)
            .field("window", &self.window)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl InboundSa {
    /// Set up keys and the replay window.
    pub fn new(params: SaParams) -> Result<Self, EspError> {
        check_spi(params.spi)?;
        if params.esn && params.replay_window == 0 {
            // ESN inference needs a window (RFC 4303 Appendix A2).
            return Err(EspError::InvalidReplayWindow(0));
        }
        Ok(Self {
            spi: params.spi,
            alg: params.alg,
            esn: params.esn,
            opener: Opener::new(params.alg, &params.keymat)?,
            window: ReplayWindow::new(params.replay_window)?,
            counters: Counters::default(),
            selectors: params.selectors,
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Highest authenticated sequence number (0 before the first packet).
    pub fn highest_seq(&self) -> u64 {
        self.window.top()
    }

    pub fn replay_window(&self) -> &ReplayWindow {
        &self.window
    }

    /// Verify, decrypt and decapsulate `esp_packet` (starting at the SPI) in
    /// place. On success the inner packet is a sub-slice of `esp_packet`.
    /// Every error means "drop", and is counted in [`Self::counters`].
    pub fn open<'a>(&mut self, esp_packet: &'a mut [u8]) -> Result<Decapsulated<'a>, EspError> {
        let r = self.open_uncounted(esp_packet);
        self.count(&r);
        r
    }

    fn count(&mut self, r: &Result<Decapsulated<'_>, EspError>) {
        let c = &mut self.counters;
        match r {
            Ok(Decapsulated::Dummy) => c.dummy += 1,
            Ok(Decapsulated::Ipv4(p) | Decapsulated::Ipv6(p)) => {
                c.packets += 1;
                c.bytes += p.len() as u64;
            }
            Err(EspError::Replayed(_)) => c.replayed += 1,
            Err(EspError::IcvFailure) => c.icv_failures += 1,
            Err(EspError::SelectorMismatch) => c.ts_mismatch += 1,
            Err(_) => c.malformed += 1,
        }
    }

    fn open_uncounted<'a>(&mut self, pkt: &'a mut [u8]) -> Result<Decapsulated<'a>, EspError> {
        let info = self.check(pkt)?;
        let plaintext = self.opener.open(&info, pkt, self.alg.iv_len())?;
        // Only an authenticated packet may move the window (§3.4.3); with
        // ESN the ICV also confirmed the inferred high-order bits.
        self.window.commit(info.seq);
        self.inner(plaintext)
    }

    /// [`Self::open`] with the plaintext decrypted into `out` (which must hold the
    /// ciphertext: [`Self::plaintext_len`]) rather than over the packet, which saves a
    /// copy when the inner packet is wanted elsewhere, e.g. in a TUN write buffer.
    pub fn open_into<'a>(
        &mut self,
        esp_packet: &[u8],
        out: &'a mut [u8],
    ) -> Result<Decapsulated<'a>, EspError> {
        let r = self.check(esp_packet).and_then(|info| {
            let plaintext = self
                .opener
                .open_into(&info, esp_packet, self.alg.iv_len(), out)?;
            self.window.commit(info.seq);
            self.inner(plaintext)
        });
        self.count(&r);
        r
    }

    /// Room [`Self::open_into`] needs for this packet: its ciphertext length (0 when
    /// the packet is too short to hold any).
    pub fn plaintext_len(&self, esp_packet: &[u8]) -> usize {
        esp_packet
            .len()
            .saturating_sub(ESP_HEADER_LEN + self.alg.iv_len() + self.alg.icv_len())
    }

    /// Header, length and replay checks, before any cryptography (RFC 4303 §3.4).
    fn check(&self, pkt: &[u8]) -> Result<SeqInfo, EspError> {
        let view = EspPacket::new_checked(pkt)?;
        let (spi, seq_low) = (view.spi(), view.seq());
        let iv_len = self.alg.iv_len();
        let icv_len = self.alg.icv_len();
        let ct_len = pkt
            .len()
            .checked_sub(ESP_HEADER_LEN + iv_len + icv_len)
            .ok_or(EspError::Truncated)?;
        // Smallest ciphertext: the two trailer octets, padded to the block.
        if ct_len < ESP_TRAILER_LEN.max(self.alg.block_len()) {
            return Err(EspError::Truncated);
        }
        if spi != self.spi {
            return Err(EspError::SpiMismatch { got: spi });
        }
        if ct_len % self.alg.block_len() != 0 {
            return Err(EspError::BadCiphertextLength);
        }

        // RFC 4303 §3.4.3: replay check before the (costly) integrity check.
        let seq = if self.esn {
            self.window
                .infer_esn(seq_low)
                .ok_or(EspError::Replayed(Replayed::TooOld))?
        } else {
            u64::from(seq_low)
        };
        self.window.check(seq).map_err(EspError::Replayed)?;
        Ok(SeqInfo {
            spi,
            seq,
            esn: self.esn,
        })
    }

    /// The inner packet of an authenticated plaintext, with its trailer, padding, next
    /// header and selectors checked.
    fn inner<'a>(&self, plaintext: &'a mut [u8]) -> Result<Decapsulated<'a>, EspError> {
        // RFC 4303 §2.4–2.6: payload ‖ padding ‖ pad length ‖ next header.
        let (&mut next_header, rest) = plaintext.split_last_mut().ok_or(EspError::BadPadding)?;
        let (&mut pad_len, rest) = rest.split_last_mut().ok_or(EspError::BadPadding)?;
        let payload_len = rest
            .len()
            .checked_sub(usize::from(pad_len))
            .ok_or(EspError::BadPadding)?;
        let (payload, padding) = rest.split_at_mut(payload_len);
        // §2.4: the receiver SHOULD check the default 1, 2, 3, … pattern; a closed range
        // because up to 255 pad octets are legal and `1u8..` would overflow past 255.
        if padding.iter().zip(1..=u8::MAX).any(|(&b, want)| b != want) {
            return Err(EspError::BadPadding);
        }
        let d = match next_header {
            NEXT_HEADER_IPV4 => {
                // §2.7: bytes beyond the IP length are TFC padding.
                let len = ipv4_len(payload).map_err(|_| EspError::BadInnerPacket)?;
                Decapsulated::Ipv4(payload.get_mut(..len).ok_or(EspError::BadInnerPacket)?)
            }
            NEXT_HEADER_IPV6 => {
                let len = ipv6_len(payload).map_err(|_| EspError::BadInnerPacket)?;
                Decapsulated::Ipv6(payload.get_mut(..len).ok_or(EspError::BadInnerPacket)?)
            }
            NEXT_HEADER_DUMMY => return Ok(Decapsulated::Dummy),
            other => return Err(EspError::UnsupportedNextHeader(other)),
        };
        // RFC 4301 §5.2: an authentic packet outside the negotiated selectors is dropped.
        match d.packet() {
            Some(p) if self.selectors.permits_inbound(p) => Ok(d),
            _ => Err(EspError::SelectorMismatch),
        }
    }

    /// Test and fuzzing hook: as if `top` had been the highest authentic number.
    #[cfg(any(test, fuzzing, feature = "fuzzing-hooks"))]
    pub fn set_highest_seq(&mut self, top: u64) {
        self.window = ReplayWindow::with_top(self.window.size(), top).expect("size already valid");
    }
}
