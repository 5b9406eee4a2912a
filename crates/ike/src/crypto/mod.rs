//! IKEv2 cryptography: PRFs, key schedule, key exchange, SK payload protection.
