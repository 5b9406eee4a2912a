//! Notices of our own addresses changing (RTM_NEWADDR / RTM_DELADDR), for tunnels whose
//! local address is dynamic (`local = "%any"` or an interface name).

use std::io;

use futures::StreamExt;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;

/// Calls `changed` after each address added to or removed from any interface of this
/// namespace, until it returns false. Spawned on the current tokio runtime.
pub fn watch_addresses(mut changed: impl FnMut() -> bool + Send + 'static) -> io::Result<()> {
    let (conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])?;
    tokio::spawn(conn);
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let address = matches!(
                msg.payload,
                NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_)
                )
            );
            if address && !changed() {
                return;
            }
        }
    });
    Ok(())
}
