//! Many routes from one BGP neighbour through the daemon into the kernel and out again:
//! a raw BGP speaker (testbed::bgpfeed) in one namespace announces 1,000 prefixes to
//! routevpn in another, withdraws half, then drops the session. Needs root; skips
//! loudly without it unless `ROUTEVPN_REQUIRE_NETNS=1`.

use std::collections::BTreeSet;
use std::time::Duration;

use testbed::bgpfeed::{feed_prefixes, BgpFeed, FeedConfig};
use testbed::{veth, wait_until, Netns, Routevpn, RvConfig};

const RV: &str = "198.51.100.1";
const FEED: &str = "198.51.100.2";
const N: usize = 1000;

/// `ip -4 route show proto 251` in `ns`: destination -> the rest of the line.
fn bgp_routes(ns: &Netns) -> Vec<(String, String)> {
    ns.must(&["ip", "-4", "route", "show", "proto", "251"])
        .lines()
        .filter_map(|l| {
            let (dst, rest) = l.split_once(' ')?;
            Some((dst.to_string(), rest.trim().to_string()))
        })
        .collect()
}

fn wait_routes(rv: &Routevpn, want: usize) -> Vec<(String, String)> {
    wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
        let r = bgp_routes(rv.netns());
        (r.len() == want)
            .then_some(r.clone())
            .ok_or_else(|| format!("{} BGP routes in the kernel, want {want}", r.len()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&rv.log(), 40)))
}

#[test]
fn thousand_routes_from_one_neighbor_in_and_out() {
    if !testbed::require_root() {
        return;
    }
    let rv_ns = Netns::new("bulk-rv");
    let feed_ns = Netns::new("bulk-feed");
    veth(
        &rv_ns,
        "feed0",
        &[&format!("{RV}/24")],
        &feed_ns,
        "rv0",
        &[&format!("{FEED}/24")],
    );
    let cfg = RvConfig {
        extra_tail: format!(
            "[bgp]\nasn = 65001\nrouter_id = \"{RV}\"\n\n[[bgp.neighbor]]\n\
             address = \"{FEED}\"\nasn = 65002\npassive = true\n"
        ),
        ..RvConfig::default()
    };
    let rv = Routevpn::start(&rv_ns, &cfg).expect("daemon ready");
    let mut feed = BgpFeed::start(
        &feed_ns,
        FeedConfig {
            peer: RV.parse().unwrap(),
            asn: 65002,
            router_id: FEED.parse().unwrap(),
            next_hop: FEED.parse().unwrap(),
            prefixes: N,
            timeout: Duration::from_secs(20),
            hold_time: 90,
        },
    )
    .expect("BGP session with the daemon");

    let all: BTreeSet<String> = feed_prefixes(N).iter().map(|p| p.to_string()).collect();
    let routes = wait_routes(&rv, N);
    let got: BTreeSet<String> = routes.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(got, all);
    for (dst, rest) in &routes {
        assert!(
            rest.starts_with(&format!("via {FEED} dev feed0")),
            "{dst} {rest}"
        );
    }

    // The first half withdrawn: exactly the second half stays, in the kernel and in
    // the status.
    feed.withdraw(N / 2).expect("withdrawals sent");
    let routes = wait_routes(&rv, N - N / 2);
    let kept: BTreeSet<String> = feed_prefixes(N)[N / 2..]
        .iter()
        .map(|p| p.to_string())
        .collect();
    let got: BTreeSet<String> = routes.iter().map(|(d, _)| d.clone()).collect();
    assert_eq!(got, kept);
    let st = rv.status().expect("status");
    let listed: BTreeSet<String> = st["bgp"]["routes"]
        .as_array()
        .expect("bgp.routes")
        .iter()
        .map(|r| testbed::json_str(r, "/prefix"))
        .collect();
    assert_eq!(listed, kept);
    assert_eq!(
        st["bgp"]["route_failures"], 0,
        "{}",
        st["bgp"]["route_failures"]
    );
    assert!(feed.ended().is_none(), "session ended: {:?}", feed.ended());

    // The neighbour goes away: nothing of it is left.
    feed.close();
    wait_routes(&rv, 0);
}
