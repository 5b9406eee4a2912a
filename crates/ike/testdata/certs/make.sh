#!/bin/sh
# Regenerates the fixture certificates of crates/ike (strongSwan 5.9.8 `pki`).
# Validity 20 years, except expired-b (2020-2021). Run from this directory.
set -e
P="pki"
L=7300
gen() { $P --gen --type "$1" ${2:+--size $2} --outform pem > "$3.key" 2>/dev/null; }
self() { $P --self --ca --lifetime $L --in "$1.key" --dn "$2" --outform pem > "$1.pem" 2>/dev/null; }
issue() { # name ca dn san [extra...]
  n=$1 ca=$2 dn=$3 san=$4; shift 4
  $P --pub --in "$n.key" 2>/dev/null | $P --issue --cacert "$ca.pem" --cakey "$ca.key" \
    --dn "$dn" ${san:+--san "$san"} --outform pem "$@" > "$n.pem" 2>/dev/null
}
gen ecdsa 256 root-ca;  self root-ca "C=CH, O=Lab, CN=Lab Root CA"
gen ecdsa 256 inter-ca; issue inter-ca root-ca "C=CH, O=Lab, CN=Lab Intermediate CA" "" --ca --lifetime $L
gen ecdsa 256 other-ca; self other-ca "C=CH, O=Other, CN=Other CA"
gen ecdsa 256 a-p256;  issue a-p256 inter-ca "C=CH, O=Lab, CN=routerA" routerA.example --lifetime $L
gen ecdsa 256 b-p256;  issue b-p256 inter-ca "C=CH, O=Lab, CN=routerB" routerB.example --lifetime $L --san routerb@lab.example --san 192.0.2.2
gen ecdsa 384 a-p384;  issue a-p384 root-ca "C=CH, O=Lab, CN=routerA" routerA.example --lifetime $L
gen ecdsa 384 b-p384;  issue b-p384 root-ca "C=CH, O=Lab, CN=routerB" routerB.example --lifetime $L
gen rsa 3072 a-rsa;    issue a-rsa root-ca "C=CH, O=Lab, CN=routerA" routerA.example --lifetime $L
gen rsa 3072 b-rsa;    issue b-rsa root-ca "C=CH, O=Lab, CN=routerB" routerB.example --lifetime $L
gen ed25519 "" a-ed25519; issue a-ed25519 root-ca "C=CH, O=Lab, CN=routerA" routerA.example --lifetime $L
gen ed25519 "" b-ed25519; issue b-ed25519 root-ca "C=CH, O=Lab, CN=routerB" routerB.example --lifetime $L
gen ecdsa 256 expired-b; issue expired-b root-ca "C=CH, O=Lab, CN=routerB" routerB.example \
  --not-before "01.01.20 00:00:00" --not-after "01.01.21 00:00:00"
gen ecdsa 256 other-b; issue other-b other-ca "C=CH, O=Lab, CN=routerB" routerB.example --lifetime $L
# The root CA revokes b-p384.
$P --signcrl --cacert root-ca.pem --cakey root-ca.key --cert b-p384.pem --reason key-compromise \
  --lifetime $L --outform pem > root-ca.crl 2>/dev/null
# The leaf followed by its intermediate, as `cert =` takes it.
for n in a-p256 b-p256; do cat inter-ca.pem >> "$n.pem"; done
