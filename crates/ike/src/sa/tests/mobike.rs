//! MOBIKE (RFC 4555): negotiation in IKE_AUTH (§3.2), the initiator's address update
//! (§3.5) with COOKIE2 (§3.8), and the responder's plain liveness check instead (§3.4).

use super::*;
use crate::wire::Message;

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";

/// The notifies in a protected message from `from` to `to`.
fn notifies(to: &Session, d: &Datagram) -> Vec<NotifyType> {
    let msg = Message::decode(&d.data).unwrap();
    let keys = to.sas[0].state.keys().unwrap();
    protect::open(&d.data, &msg, &keys.inb)
        .unwrap()
        .iter()
        .filter_map(|p| match p {
            crate::wire::Payload::Notify(n) => Some(n.ty),
            _ => None,
        })
        .collect()
}

/// An established pair where only A offers MOBIKE.
fn pair_without_mobike_on_b() -> Pair {
    let mut b = config(
        "b",
        "routerB",
        "routerA",
        &[IKE],
        &[ESP],
        "supersecret",
        false,
    );
    b.mobike = false;
    let a = config(
        "a",
        "routerA",
        "routerB",
        &[IKE],
        &[ESP],
        "supersecret",
        true,
    );
    let mut p = Pair::new(a, b);
    p.start();
    p
}

#[test]
fn negotiated_only_when_both_offer() {
    let p = establish(IKE, ESP);
    assert!(p.a.sas[0].mobike && p.b.sas[0].mobike);
    let p = pair_without_mobike_on_b();
    assert!(p.a.is_established());
    assert!(!p.a.sas[0].mobike && !p.b.sas[0].mobike);
}

#[test]
fn the_initiator_announces_its_new_address() {
    let mut p = establish(IKE, ESP);
    assert!(p.a.local_address_changed(p.now));
    let d = p.a.poll_transmit().unwrap();
    let sent = notifies(&p.b, &mirrored(d.clone()));
    assert!(sent.contains(&NotifyType::UPDATE_SA_ADDRESSES), "{sent:?}");
    assert!(
        sent.contains(&NotifyType::COOKIE2) && sent.contains(&NotifyType::NAT_DETECTION_SOURCE_IP)
    );
    // It arrives from A's new address.
    let new = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 77)), 4500);
    let mut from_new = mirrored(d);
    from_new.remote = new;
    p.b.handle_datagram(p.now, from_new);
    let moved: Vec<SocketAddr> = std::iter::from_fn(|| p.b.poll_event())
        .filter_map(|e| match e {
            Event::PeerMoved { remote } => Some(remote),
            _ => None,
        })
        .collect();
    assert_eq!(moved, vec![new], "ESP follows");
    let answer = p.b.poll_transmit().unwrap();
    assert_eq!(answer.remote, new);
    let got = notifies(&p.a, &mirrored(answer.clone()));
    assert!(got.contains(&NotifyType::COOKIE2), "§3.8 echo: {got:?}");
    assert!(
        got.contains(&NotifyType::NAT_DETECTION_DESTINATION_IP),
        "§3.5: {got:?}"
    );
    let mut back = mirrored(answer);
    back.local = new;
    p.a.handle_datagram(p.now, back);
    assert!(p.a.sas[0].pending.is_none(), "answered");
}

#[test]
fn the_responder_sends_a_liveness_check_instead() {
    let mut p = establish(IKE, ESP);
    assert!(p.b.local_address_changed(p.now));
    let d = p.b.poll_transmit().unwrap();
    assert!(
        notifies(&p.a, &mirrored(d)).is_empty(),
        "§3.4: only the initiator updates"
    );
}

#[test]
fn without_mobike_the_initiator_sends_a_liveness_check() {
    let mut p = pair_without_mobike_on_b();
    assert!(p.a.local_address_changed(p.now));
    let d = p.a.poll_transmit().unwrap();
    assert!(notifies(&p.b, &mirrored(d)).is_empty());
}
