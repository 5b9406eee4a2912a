//! strongSwan's algorithm keywords: one table serves both the parser and the list of
//! supported algorithms shown when a keyword is unknown, so the two cannot drift.

use super::Protocol;
use crate::iana::{DhId, EncrId, EsnId, IntegId, PrfId};

/// What a single keyword stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    Encr(EncrId, Option<u16>),
    /// An integrity keyword; in IKE it also implies the PRF with the same hash when no
    /// explicit PRF is given (strongSwan behaviour).
    Integ(IntegId, PrfId),
    Prf(PrfId),
    Dh(DhId),
    Esn(EsnId),
}

use Keyword::*;

/// A kind of keyword as the supported list names it, and which keywords are of it.
type Kind = (&'static str, fn(&Keyword) -> bool);

/// Every keyword: the name shown in the supported list first, then strongSwan's aliases.
const KEYWORDS: &[(&[&str], Keyword)] = &[
    // AES-GCM (RFC 4106 / RFC 5282); the suffix is the ICV length in bytes (or bits).
    (
        &["aes128gcm16", "aes128gcm128", "aes128gcm"],
        Encr(EncrId::AES_GCM_16, Some(128)),
    ),
    (
        &["aes192gcm16", "aes192gcm128", "aes192gcm"],
        Encr(EncrId::AES_GCM_16, Some(192)),
    ),
    (
        &["aes256gcm16", "aes256gcm128", "aes256gcm"],
        Encr(EncrId::AES_GCM_16, Some(256)),
    ),
    (
        &["aes128gcm12", "aes128gcm96"],
        Encr(EncrId::AES_GCM_12, Some(128)),
    ),
    (
        &["aes192gcm12", "aes192gcm96"],
        Encr(EncrId::AES_GCM_12, Some(192)),
    ),
    (
        &["aes256gcm12", "aes256gcm96"],
        Encr(EncrId::AES_GCM_12, Some(256)),
    ),
    (
        &["aes128gcm8", "aes128gcm64"],
        Encr(EncrId::AES_GCM_8, Some(128)),
    ),
    (
        &["aes192gcm8", "aes192gcm64"],
        Encr(EncrId::AES_GCM_8, Some(192)),
    ),
    (
        &["aes256gcm8", "aes256gcm64"],
        Encr(EncrId::AES_GCM_8, Some(256)),
    ),
    // AES-CBC (RFC 3602); bare "aes" is AES-128 as in strongSwan.
    (&["aes128", "aes"], Encr(EncrId::AES_CBC, Some(128))),
    (&["aes192"], Encr(EncrId::AES_CBC, Some(192))),
    (&["aes256"], Encr(EncrId::AES_CBC, Some(256))),
    // HMAC-SHA2 truncated to half the hash (RFC 4868 §2.3).
    (
        &["sha256", "sha2_256"],
        Integ(IntegId::HMAC_SHA2_256_128, PrfId::HMAC_SHA2_256),
    ),
    (
        &["sha384", "sha2_384"],
        Integ(IntegId::HMAC_SHA2_384_192, PrfId::HMAC_SHA2_384),
    ),
    (
        &["sha512", "sha2_512"],
        Integ(IntegId::HMAC_SHA2_512_256, PrfId::HMAC_SHA2_512),
    ),
    // PRF_HMAC_SHA2 (RFC 4868 §2.4).
    (&["prfsha256", "prfsha2_256"], Prf(PrfId::HMAC_SHA2_256)),
    (&["prfsha384", "prfsha2_384"], Prf(PrfId::HMAC_SHA2_384)),
    (&["prfsha512", "prfsha2_512"], Prf(PrfId::HMAC_SHA2_512)),
    // MODP groups (RFC 3526), ECP groups (RFC 5903), Curve25519 (RFC 8031).
    (&["modp2048"], Dh(DhId::MODP_2048)),
    (&["modp3072"], Dh(DhId::MODP_3072)),
    (&["modp4096"], Dh(DhId::MODP_4096)),
    (&["ecp256"], Dh(DhId::ECP_256)),
    (&["ecp384"], Dh(DhId::ECP_384)),
    (&["x25519", "curve25519"], Dh(DhId::CURVE25519)),
    (&["esn"], Esn(EsnId::ESN)),
    (&["noesn"], Esn(EsnId::NO_ESN)),
];

/// Look up a keyword (case-insensitive, as written in strongSwan configurations).
pub(super) fn keyword(word: &str) -> Option<Keyword> {
    KEYWORDS
        .iter()
        .find(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(word)))
        .map(|(_, k)| *k)
}

/// The keywords a proposal for `protocol` may contain, by kind, e.g.
/// `aes128gcm16, ... (encryption), sha256, ... (integrity), ...`.
pub fn supported(protocol: Protocol) -> String {
    let kinds: &[Kind] = match protocol {
        Protocol::Ike => &[
            ("encryption", |k| matches!(k, Encr(..))),
            ("integrity", |k| matches!(k, Integ(..))),
            ("PRF", |k| matches!(k, Prf(..))),
            ("key exchange", |k| matches!(k, Dh(..))),
        ],
        Protocol::Esp => &[
            ("encryption", |k| matches!(k, Encr(..))),
            ("integrity", |k| matches!(k, Integ(..))),
            ("key exchange for PFS", |k| matches!(k, Dh(..))),
            ("extended sequence numbers", |k| matches!(k, Esn(..))),
        ],
    };
    kinds
        .iter()
        .map(|(what, is)| {
            let names: Vec<&str> = KEYWORDS
                .iter()
                .filter(|(_, k)| is(k))
                .map(|(names, _)| names[0])
                .collect();
            format!("{} ({what})", names.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in a supported list, without the "(kind)" labels.
    fn listed(p: Protocol) -> Vec<String> {
        supported(p)
            .split(", ")
            .map(|s| s.split(" (").next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn every_listed_name_parses_and_only_fitting_kinds_are_listed() {
        let ike = listed(Protocol::Ike);
        let esp = listed(Protocol::Esp);
        for name in ike.iter().chain(&esp) {
            assert!(keyword(name).is_some(), "{name}");
        }
        assert!(ike.contains(&"prfsha384".to_string()), "{ike:?}");
        assert!(!ike.contains(&"esn".to_string()), "{ike:?}");
        assert!(esp.contains(&"noesn".to_string()), "{esp:?}");
        assert!(!esp.contains(&"prfsha256".to_string()), "{esp:?}");
        // Aliases are accepted but listed once, under their main name.
        assert_eq!(keyword("AES256GCM128"), keyword("aes256gcm16"));
        assert_eq!(keyword("curve25519"), keyword("x25519"));
        assert!(!ike.contains(&"curve25519".to_string()));
        assert_eq!(ike.len(), KEYWORDS.len() - 2, "every keyword but esn/noesn");
    }
}
