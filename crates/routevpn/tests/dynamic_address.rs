//! A branch router whose own WAN address changes (a new DHCP lease) keeps its SAs: it
//! listens on its interface (`local = "wan0"`), finds the hub by name (`remote =
//! "hub.dynamic.test"`, from the namespace's /etc/hosts), notices the change by netlink
//! and sends UPDATE_SA_ADDRESSES (MOBIKE) from the new address; the hub (`remote =
//! "%any"`) follows it with IKE and ESP. Needs root; skips loudly without it unless
//! `ROUTEVPN_REQUIRE_NETNS=1`.

use std::time::Duration;
use testbed::{report, veth, wait_tunnel_up, wait_until, Netns, Routevpn, RvConfig, RvTunnel};

const T: Duration = Duration::from_secs(20);
const HUB_WAN: &str = "198.51.100.1";
const OLD_WAN: &str = "198.51.100.2";
const NEW_WAN: &str = "198.51.100.3";
const HUB_IN: &str = "169.254.9.1";
const BRANCH_IN: &str = "169.254.9.2";
const IKE: &str = "aes128gcm16-prfsha256-x25519";
const HUB_NAME: &str = "hub.dynamic.test";

/// `/etc/netns/NAME/hosts`, which `ip netns exec` mounts over /etc/hosts; removed on drop.
struct NetnsHosts(std::path::PathBuf);

impl NetnsHosts {
    fn new(ns: &Netns, hosts: &str) -> NetnsHosts {
        let dir = std::path::Path::new("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts"), hosts).unwrap();
        NetnsHosts(dir)
    }
}

impl Drop for NetnsHosts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(t: RvTunnel) -> RvConfig {
    RvConfig {
        tunnels: vec![t],
        ..RvConfig::default()
    }
}

#[test]
fn a_branch_whose_wan_address_changes_keeps_its_sas() {
    if !testbed::require_root() {
        return;
    }
    let hub_ns = Netns::new("dynhub");
    let branch_ns = Netns::new("dynbr");
    veth(
        &hub_ns,
        "wan0",
        &[&format!("{HUB_WAN}/24")],
        &branch_ns,
        "wan0",
        &[&format!("{OLD_WAN}/24")],
    );
    // A DHCP client adds the new lease before dropping the old one; without this the
    // kernel drops every secondary address with the primary (systemd sets it too).
    branch_ns.sysctl("net.ipv4.conf.wan0.promote_secondaries", "1");
    branch_ns.wait_ping(HUB_WAN, T).unwrap();
    let _hosts = NetnsHosts::new(
        &branch_ns,
        &format!("127.0.0.1 localhost\n{HUB_WAN} {HUB_NAME}\n"),
    );
    let common = RvTunnel {
        psk: "dynamic-address-test-key".into(),
        ike: vec![IKE.into()],
        esp: vec!["aes128gcm16".into()],
        // Liveness checks far away: only the address change may tell the hub.
        extra: vec!["dpd = \"60s\"".into()],
        ..RvTunnel::default()
    };
    let hub = Routevpn::start(
        &hub_ns,
        &config(RvTunnel {
            local: HUB_WAN.into(),
            remote: "%any".into(),
            local_id: "hub".into(),
            remote_id: "branch".into(),
            start: false,
            address: vec![format!("{HUB_IN}/30")],
            ..common.clone()
        }),
    )
    .unwrap();
    let branch = Routevpn::start(
        &branch_ns,
        &config(RvTunnel {
            local: "wan0".into(),
            remote: HUB_NAME.into(),
            local_id: "branch".into(),
            remote_id: "hub".into(),
            start: true,
            address: vec![format!("{BRANCH_IN}/30")],
            ..common
        }),
    )
    .unwrap();
    let before = wait_tunnel_up(&hub, T);
    wait_tunnel_up(&branch, T);
    assert_eq!(before["remote"], "%any");
    assert_eq!(
        testbed::json_str(&before, "/ike_sas/0/peer"),
        format!("{OLD_WAN}:4500")
    );
    let b = branch.status().unwrap()["tunnels"][0].clone();
    assert_eq!(
        (b["local"].as_str(), b["remote"].as_str()),
        (Some("wan0"), Some(HUB_NAME))
    );
    assert_eq!(
        testbed::json_str(&b, "/ike_sas/0/peer"),
        format!("{HUB_WAN}:4500")
    );
    hub_ns.wait_ping(BRANCH_IN, T).unwrap();

    // The hub pings the branch (so only the hub's ESP shows whether it followed): 20
    // per second, bounded; the branch's address changes after 1 s.
    let pinger = hub_ns
        .command(&[
            "ping", "-n", "-i", "0.05", "-c", "120", "-W", "1", BRANCH_IN,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    branch_ns.must(&["ip", "addr", "add", &format!("{NEW_WAN}/24"), "dev", "wan0"]);
    branch_ns.must(&["ip", "addr", "del", &format!("{OLD_WAN}/24"), "dev", "wan0"]);
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let after = hub.status().unwrap()["tunnels"][0].clone();
    let log = || {
        format!(
            "ping:\n{}\nhub log:\n{}\nbranch log:\n{}",
            testbed::tail(&text, 5),
            testbed::tail(&hub.log(), 30),
            testbed::tail(&branch.log(), 30)
        )
    };
    assert_eq!(
        testbed::json_str(&after, "/ike_sas/0/peer"),
        format!("{NEW_WAN}:4500"),
        "the hub follows the branch\n{}",
        log()
    );
    // The branch initiated the IKE SA and both offered MOBIKE: it used RFC 4555, once
    // (the other address notices, e.g. its tunnel interface's own, change no source).
    hub.wait_log("peer updated its address (MOBIKE)", T)
        .unwrap_or_else(|e| panic!("{e}\n{}", log()));
    let updates = branch.log().matches("UPDATE_SA_ADDRESSES (MOBIKE)").count();
    assert_eq!(updates, 1, "one address change, one update\n{}", log());
    assert!(
        !branch.log().contains("NAT detected in front of us"),
        "{}",
        log()
    );
    assert_eq!(
        after["ike_sas"][0]["spi_i"], before["ike_sas"][0]["spi_i"],
        "the same IKE SA"
    );
    assert_eq!(
        after["child_sas"][0]["spi_in"], before["child_sas"][0]["spi_in"],
        "the same CHILD SA"
    );
    let (sent, received) =
        testbed::ping_summary(&text).unwrap_or_else(|| panic!("no ping summary\n{}", log()));
    let lost = sent - received;
    report(&format!(
        "dynamic address: {lost} of 120 pings lost (50 ms apart) across the address change"
    ));
    // Without following the change nothing would come back for 60 s (the DPD interval).
    assert!(lost < 20, "lost {lost} pings (1 s at 50 ms)\n{}", log());
    wait_until(T, Duration::from_millis(50), || {
        hub_ns
            .ping(BRANCH_IN)
            .map_err(|e| format!("{e}\n{}", log()))
    })
    .unwrap();
}
