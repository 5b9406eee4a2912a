//! IANA "Internet Key Exchange Version 2 (IKEv2) Parameters" registries as open
//! newtypes: unknown values are kept and round-trip unchanged.

macro_rules! registry {
    ($(#[$m:meta])* $name:ident($repr:ty) { $($(#[$cm:meta])* $c:ident = $v:expr, $s:literal;)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $repr);
        impl $name {
            $($(#[$cm])* pub const $c: Self = Self($v);)*
            /// The registry's name for this value, if it is one we know.
            pub fn name(self) -> Option<&'static str> {
                match self.0 { $($v => Some($s),)* _ => None }
            }
        }
        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }
        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                core::fmt::Debug::fmt(self, f)
            }
        }
    };
}

registry! {
    /// RFC 7296 §3.1 Exchange Type.
    ExchangeType(u8) {
        IKE_SA_INIT = 34, "IKE_SA_INIT";
        IKE_AUTH = 35, "IKE_AUTH";
        CREATE_CHILD_SA = 36, "CREATE_CHILD_SA";
        INFORMATIONAL = 37, "INFORMATIONAL";
    }
}

registry! {
    /// RFC 7296 §3.2 Next Payload / payload type.
    PayloadType(u8) {
        NONE = 0, "NONE";
        SA = 33, "SA";
        KE = 34, "KE";
        IDI = 35, "IDi";
        IDR = 36, "IDr";
        CERT = 37, "CERT";
        CERTREQ = 38, "CERTREQ";
        AUTH = 39, "AUTH";
        NONCE = 40, "Ni/Nr";
        NOTIFY = 41, "N";
        DELETE = 42, "D";
        VENDOR_ID = 43, "V";
        TSI = 44, "TSi";
        TSR = 45, "TSr";
        SK = 46, "SK";
        CP = 47, "CP";
        EAP = 48, "EAP";
        /// RFC 7383 §2.5 Encrypted and Authenticated Fragment.
        SKF = 53, "SKF";
    }
}

registry! {
    /// RFC 7296 §3.3.2 Transform Type.
    TransformType(u8) {
        ENCR = 1, "ENCR";
        PRF = 2, "PRF";
        INTEG = 3, "INTEG";
        KE = 4, "KE";
        ESN = 5, "ESN";
    }
}

registry! {
    /// Transform Type 1: Encryption Algorithm Transform IDs.
    EncrId(u16) {
        DES3 = 3, "3DES";
        NULL = 11, "NULL";
        AES_CBC = 12, "AES_CBC";
        AES_CTR = 13, "AES_CTR";
        /// RFC 4106 / RFC 5282, 8-octet ICV.
        AES_GCM_8 = 18, "AES_GCM_8";
        AES_GCM_12 = 19, "AES_GCM_12";
        /// RFC 4106 / RFC 5282, 16-octet ICV.
        AES_GCM_16 = 20, "AES_GCM_16";
        CHACHA20_POLY1305 = 28, "CHACHA20_POLY1305";
    }
}

registry! {
    /// Transform Type 2: Pseudorandom Function Transform IDs.
    PrfId(u16) {
        HMAC_MD5 = 1, "PRF_HMAC_MD5";
        HMAC_SHA1 = 2, "PRF_HMAC_SHA1";
        /// RFC 4868.
        HMAC_SHA2_256 = 5, "PRF_HMAC_SHA2_256";
        HMAC_SHA2_384 = 6, "PRF_HMAC_SHA2_384";
        HMAC_SHA2_512 = 7, "PRF_HMAC_SHA2_512";
    }
}

registry! {
    /// Transform Type 3: Integrity Algorithm Transform IDs.
    IntegId(u16) {
        NONE = 0, "NONE";
        HMAC_MD5_96 = 1, "AUTH_HMAC_MD5_96";
        HMAC_SHA1_96 = 2, "AUTH_HMAC_SHA1_96";
        /// RFC 4868.
        HMAC_SHA2_256_128 = 12, "AUTH_HMAC_SHA2_256_128";
        HMAC_SHA2_384_192 = 13, "AUTH_HMAC_SHA2_384_192";
        HMAC_SHA2_512_256 = 14, "AUTH_HMAC_SHA2_512_256";
    }
}

registry! {
    /// Transform Type 4: Key Exchange Method Transform IDs (Diffie-Hellman groups).
    DhId(u16) {
        NONE = 0, "NONE";
        MODP_1024 = 2, "MODP_1024";
        MODP_1536 = 5, "MODP_1536";
        /// RFC 3526 group 14.
        MODP_2048 = 14, "MODP_2048";
        MODP_3072 = 15, "MODP_3072";
        MODP_4096 = 16, "MODP_4096";
        /// RFC 5903.
        ECP_256 = 19, "ECP_256";
        ECP_384 = 20, "ECP_384";
        ECP_521 = 21, "ECP_521";
        /// RFC 8031.
        CURVE25519 = 31, "CURVE25519";
        CURVE448 = 32, "CURVE448";
    }
}

registry! {
    /// Transform Type 5: Extended Sequence Numbers Transform IDs.
    EsnId(u16) {
        NO_ESN = 0, "NO_ESN";
        ESN = 1, "ESN";
    }
}

registry! {
    /// RFC 7296 §3.3.1 Security Protocol Identifier.
    ProtocolId(u8) {
        NONE = 0, "NONE";
        IKE = 1, "IKE";
        AH = 2, "AH";
        ESP = 3, "ESP";
    }
}

registry! {
    /// RFC 7296 §3.5 ID Type.
    IdType(u8) {
        IPV4_ADDR = 1, "ID_IPV4_ADDR";
        FQDN = 2, "ID_FQDN";
        RFC822_ADDR = 3, "ID_RFC822_ADDR";
        IPV6_ADDR = 5, "ID_IPV6_ADDR";
        DER_ASN1_DN = 9, "ID_DER_ASN1_DN";
        DER_ASN1_GN = 10, "ID_DER_ASN1_GN";
        KEY_ID = 11, "ID_KEY_ID";
    }
}

registry! {
    /// RFC 7427 §7 "IKEv2 Hash Algorithms" (SIGNATURE_HASH_ALGORITHMS), RFC 8420 (Identity).
    HashAlgorithm(u16) {
        SHA1 = 1, "SHA1";
        SHA2_256 = 2, "SHA2_256";
        SHA2_384 = 3, "SHA2_384";
        SHA2_512 = 4, "SHA2_512";
        IDENTITY = 5, "IDENTITY";
    }
}

registry! {
    /// RFC 7296 §3.8 Authentication Method.
    AuthMethod(u8) {
        RSA_SIG = 1, "RSA_SIG";
        /// Shared Key Message Integrity Code (§2.15).
        PSK = 2, "PSK";
        DSS_SIG = 3, "DSS_SIG";
        ECDSA_256 = 9, "ECDSA_SHA256_P256";
        ECDSA_384 = 10, "ECDSA_SHA384_P384";
        ECDSA_521 = 11, "ECDSA_SHA512_P521";
        /// RFC 7427 Digital Signature.
        DIGITAL_SIGNATURE = 14, "DIGITAL_SIGNATURE";
    }
}

registry! {
    /// RFC 7296 §3.13.1 Traffic Selector Type.
    TsType(u8) {
        IPV4_ADDR_RANGE = 7, "TS_IPV4_ADDR_RANGE";
        IPV6_ADDR_RANGE = 8, "TS_IPV6_ADDR_RANGE";
    }
}

registry! {
    /// RFC 7296 §3.10.1 Notify Message Type (errors < 16384, status ≥ 16384).
    NotifyType(u16) {
        UNSUPPORTED_CRITICAL_PAYLOAD = 1, "UNSUPPORTED_CRITICAL_PAYLOAD";
        INVALID_IKE_SPI = 4, "INVALID_IKE_SPI";
        INVALID_MAJOR_VERSION = 5, "INVALID_MAJOR_VERSION";
        INVALID_SYNTAX = 7, "INVALID_SYNTAX";
        INVALID_MESSAGE_ID = 9, "INVALID_MESSAGE_ID";
        INVALID_SPI = 11, "INVALID_SPI";
        NO_PROPOSAL_CHOSEN = 14, "NO_PROPOSAL_CHOSEN";
        INVALID_KE_PAYLOAD = 17, "INVALID_KE_PAYLOAD";
        AUTHENTICATION_FAILED = 24, "AUTHENTICATION_FAILED";
        SINGLE_PAIR_REQUIRED = 34, "SINGLE_PAIR_REQUIRED";
        NO_ADDITIONAL_SAS = 35, "NO_ADDITIONAL_SAS";
        INTERNAL_ADDRESS_FAILURE = 36, "INTERNAL_ADDRESS_FAILURE";
        FAILED_CP_REQUIRED = 37, "FAILED_CP_REQUIRED";
        TS_UNACCEPTABLE = 38, "TS_UNACCEPTABLE";
        INVALID_SELECTORS = 39, "INVALID_SELECTORS";
        /// RFC 4555 §4.
        UNACCEPTABLE_ADDRESSES = 40, "UNACCEPTABLE_ADDRESSES";
        UNEXPECTED_NAT_DETECTED = 41, "UNEXPECTED_NAT_DETECTED";
        TEMPORARY_FAILURE = 43, "TEMPORARY_FAILURE";
        CHILD_SA_NOT_FOUND = 44, "CHILD_SA_NOT_FOUND";
        /// RFC 9611 §5.2: no more per-resource CHILD SAs with these selectors.
        TS_MAX_QUEUE = 48, "TS_MAX_QUEUE";
        INITIAL_CONTACT = 16384, "INITIAL_CONTACT";
        SET_WINDOW_SIZE = 16385, "SET_WINDOW_SIZE";
        ADDITIONAL_TS_POSSIBLE = 16386, "ADDITIONAL_TS_POSSIBLE";
        IPCOMP_SUPPORTED = 16387, "IPCOMP_SUPPORTED";
        NAT_DETECTION_SOURCE_IP = 16388, "NAT_DETECTION_SOURCE_IP";
        NAT_DETECTION_DESTINATION_IP = 16389, "NAT_DETECTION_DESTINATION_IP";
        COOKIE = 16390, "COOKIE";
        USE_TRANSPORT_MODE = 16391, "USE_TRANSPORT_MODE";
        HTTP_CERT_LOOKUP_SUPPORTED = 16392, "HTTP_CERT_LOOKUP_SUPPORTED";
        REKEY_SA = 16393, "REKEY_SA";
        ESP_TFC_PADDING_NOT_SUPPORTED = 16394, "ESP_TFC_PADDING_NOT_SUPPORTED";
        NON_FIRST_FRAGMENTS_ALSO = 16395, "NON_FIRST_FRAGMENTS_ALSO";
        /// RFC 4555 §4.
        MOBIKE_SUPPORTED = 16396, "MOBIKE_SUPPORTED";
        ADDITIONAL_IP4_ADDRESS = 16397, "ADDITIONAL_IP4_ADDRESS";
        ADDITIONAL_IP6_ADDRESS = 16398, "ADDITIONAL_IP6_ADDRESS";
        NO_ADDITIONAL_ADDRESSES = 16399, "NO_ADDITIONAL_ADDRESSES";
        UPDATE_SA_ADDRESSES = 16400, "UPDATE_SA_ADDRESSES";
        COOKIE2 = 16401, "COOKIE2";
        NO_NATS_ALLOWED = 16402, "NO_NATS_ALLOWED";
        MULTIPLE_AUTH_SUPPORTED = 16404, "MULTIPLE_AUTH_SUPPORTED";
        EAP_ONLY_AUTHENTICATION = 16417, "EAP_ONLY_AUTHENTICATION";
        /// RFC 7383 §2.3.
        IKEV2_FRAGMENTATION_SUPPORTED = 16430, "IKEV2_FRAGMENTATION_SUPPORTED";
        /// RFC 7427 §4.
        SIGNATURE_HASH_ALGORITHMS = 16431, "SIGNATURE_HASH_ALGORITHMS";
        /// RFC 9611 §5.1: per-resource CHILD SAs (data: an optional resource identifier).
        SA_RESOURCE_INFO = 16444, "SA_RESOURCE_INFO";
    }
}

impl NotifyType {
    /// §3.10.1: types below 16384 report errors.
    pub fn is_error(self) -> bool {
        self.0 < 16384
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_round_trip_and_print() {
        let t = NotifyType(40000);
        assert_eq!(t.0, 40000);
        assert_eq!(t.name(), None);
        assert_eq!(format!("{t}"), "NotifyType(40000)");
        assert_eq!(
            format!("{}", NotifyType::NO_PROPOSAL_CHOSEN),
            "NO_PROPOSAL_CHOSEN"
        );
        assert!(NotifyType::TS_UNACCEPTABLE.is_error());
        assert!(!NotifyType::COOKIE.is_error());
        // RFC 9611 §8 (IANA): the per-resource CHILD SA notifies.
        assert_eq!(NotifyType::SA_RESOURCE_INFO.0, 16444);
        assert_eq!(
            format!("{}", NotifyType::SA_RESOURCE_INFO),
            "SA_RESOURCE_INFO"
        );
        assert_eq!(format!("{}", NotifyType(48)), "TS_MAX_QUEUE");
        assert!(NotifyType::TS_MAX_QUEUE.is_error());
    }
}
