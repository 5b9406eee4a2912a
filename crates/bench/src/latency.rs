//! Latency and small-packet rate through a case's path (issue 13), after its iperf3
//! runs, on the same four namespaces: ping RTT host A → host B when idle and under
//! one TCP stream, and how much 1300-octet UDP is lost at fixed packet rates (with the
//! VPN daemons' CPU per million packets). Each case's figures land in its JSON object
//! as `latency`; the report prints them as a second table.
//!
//! The UDP receiver asks for a [`UDP_RCVBUF`] socket buffer, and each loss is split by
//! where it happened: the receiving iperf3's socket (host B's `UdpRcvbufErrors`: the
//! application fell behind, as it does on the plain path too) or the path itself.

use crate::json::{round, Obj, J};
use crate::measure::snap;
use crate::{log, Case, Ctx};
use std::time::Duration;
use testbed::{Netns, Topology};

/// UDP payload octets: a 1328-octet IPv4 packet, inside every case's MTU.
pub const UDP_LEN: u64 = 1300;
/// Offered packet rates (packets/s). 500/s is sparse, one way: what a daemon spends
/// per packet when it sleeps between them (wake-ups, any busy poll).
pub const PPS_RATES: [u64; 5] = [500, 50_000, 100_000, 150_000, 200_000];
/// Seconds per UDP rate.
const UDP_SECONDS: u64 = 3;
/// The UDP receiver's socket buffer (iperf3 `-w`, sent to the server too; the kernel
/// caps it at `net.core.rmem_max`, printed in the report's header): with the default
/// 208 KiB a receiver that sleeps 2 ms at 150 kpps drops, whatever the path.
const UDP_RCVBUF: &str = "4M";
/// Pings per RTT figure, 10 ms apart.
const PINGS: &str = "200";
const PORT: &str = "5202";

/// `rtt min/avg/max/mdev = 0.041/0.052/0.093/0.010 ms` → (min, avg, max) in ms.
pub fn rtt(ping_output: &str) -> Option<(f64, f64, f64)> {
    let line = ping_output.lines().find(|l| l.starts_with("rtt "))?;
    let nums = line.split('=').nth(1)?.split_whitespace().next()?;
    let mut it = nums.split('/').map(|v| v.parse::<f64>().ok());
    Some((it.next()??, it.next()??, it.next()??))
}

fn ping(ns: &Netns) -> Result<(f64, f64, f64), String> {
    let out = ns.run(&[
        "ping",
        "-q",
        "-n",
        "-c",
        PINGS,
        "-i",
        "0.01",
        "-W",
        "1",
        Topology::RIGHT_HOST,
    ])?;
    rtt(&out).ok_or_else(|| format!("no rtt line in ping output: {out}"))
}

fn rtt_obj((min, avg, max): (f64, f64, f64)) -> Obj {
    Obj::new()
        .with("min_ms", round(min, 3))
        .with("avg_ms", round(avg, 3))
        .with("max_ms", round(max, 3))
}

/// Lost packets, sent packets of one iperf3 UDP client JSON (the server's view).
pub fn udp_loss(iperf_json: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(iperf_json).ok()?;
    let sum = &v["end"]["sum"];
    Some((sum["lost_packets"].as_u64()?, sum["packets"].as_u64()?))
}

/// Runs the probes for `case`; failures are recorded, never fatal to the case.
pub fn probe(ctx: &mut Ctx, case: Case, t: &Topology, pids: &[u32]) {
    let c = case.name();
    log(&format!("  {c}: ping RTT idle ..."));
    let mut out = Obj::new();
    match ping(&t.left_host) {
        Ok(r) => out.set("idle_rtt", rtt_obj(r)),
        Err(e) => out.set("idle_rtt", Obj::new().with("error", e)),
    }
    out.set("under_tcp_rtt", under_load(ctx, c, t));
    let mut rates = Vec::new();
    for pps in PPS_RATES {
        log(&format!(
            "  {c}: UDP {UDP_LEN} octets at {pps} packets/s ..."
        ));
        rates.push(J::Obj(udp_rate(ctx, c, t, pids, pps)));
    }
    out.set("udp", J::Arr(rates));
    ctx.records
        .push(Obj::new().with("case", c).with("latency", out));
}

/// A one-test iperf3 server on host B, given a moment to listen.
fn server(ctx: &Ctx, t: &Topology, log: &str) -> testbed::Proc {
    let p = t.right_host.spawn(
        &["timeout", "30", "iperf3", "-s", "-1", "-p", PORT],
        &ctx.work.join(log),
    );
    std::thread::sleep(Duration::from_millis(500));
    p
}

/// An iperf3 client command line toward host B with `extra` arguments.
fn client<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut cmd = vec![
        "timeout",
        "20",
        "iperf3",
        "-c",
        Topology::RIGHT_HOST,
        "-p",
        PORT,
    ];
    cmd.extend_from_slice(extra);
    cmd
}

/// Ping RTT while one iperf3 TCP stream runs host A → host B.
fn under_load(ctx: &Ctx, c: &str, t: &Topology) -> Obj {
    let server = server(ctx, t, &format!("{c}-lat-server.log"));
    let client = t.left_host.spawn(
        &client(&["-t", "6"]),
        &ctx.work.join(format!("{c}-lat-client.log")),
    );
    std::thread::sleep(Duration::from_secs(1));
    log(&format!("  {c}: ping RTT under one TCP stream ..."));
    let r = ping(&t.left_host);
    let _ = client.wait_exit(Duration::from_secs(15));
    let _ = server.wait_exit(Duration::from_secs(5));
    match r {
        Ok(r) => rtt_obj(r),
        Err(e) => Obj::new().with("error", e),
    }
}

/// iperf3 UDP at `pps` packets/s for [`UDP_SECONDS`]: loss and daemon CPU.
fn udp_rate(ctx: &Ctx, c: &str, t: &Topology, pids: &[u32], pps: u64) -> Obj {
    let rec = Obj::new().with("pps", pps);
    let json = ctx.work.join(format!("{c}-udp-{pps}.json"));
    let server = server(ctx, t, &format!("{c}-udp-{pps}-server.log"));
    let before = snap(pids);
    let drops_before = rcvbuf_errors(&t.right_host);
    let bitrate = (pps * UDP_LEN * 8).to_string();
    let (len, secs) = (UDP_LEN.to_string(), UDP_SECONDS.to_string());
    let client = t.left_host.spawn_split(
        &client(&[
            "-u", "-l", &len, "-b", &bitrate, "-t", &secs, "-w", UDP_RCVBUF, "-J",
        ]),
        &json,
        &ctx.work.join(format!("{c}-udp-{pps}.err")),
    );
    let _ = client.wait_exit(Duration::from_secs(20));
    let after = snap(pids);
    let _ = server.wait_exit(Duration::from_secs(5));
    let receiver_drops = match (drops_before, rcvbuf_errors(&t.right_host)) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let Some((lost, sent)) = udp_loss(&text).filter(|&(_, s)| s > 0) else {
        return rec.with("error", "no usable iperf3 UDP result");
    };
    let mut rec = rec
        .with("sent", sent)
        .with("lost", lost)
        .with("loss_pct", round(100.0 * lost as f64 / sent as f64, 3));
    if let Some(d) = receiver_drops {
        // The rest of the loss happened on the way: in the tunnel, or queues before it.
        let path = lost.saturating_sub(d);
        rec.set("receiver_socket_drops", d);
        rec.set("path_loss_pct", round(100.0 * path as f64 / sent as f64, 3));
    }
    if let Some(cpu) = after.daemon_cpu_since(&before) {
        rec.set(
            "daemon_cpu_s_per_mpkt",
            round(cpu * 1e6 / (sent - lost).max(1) as f64, 3),
        );
    }
    rec
}

/// Host B's count of UDP datagrams dropped for a full socket buffer (`nstat`'s
/// `UdpRcvbufErrors`, per network namespace).
fn rcvbuf_errors(ns: &Netns) -> Option<u64> {
    let out = ns.run(&["nstat", "-az", "UdpRcvbufErrors"]).ok()?;
    nstat_value(&out, "UdpRcvbufErrors")
}

/// `UdpRcvbufErrors   12   0.0` → 12.
fn nstat_value(out: &str, key: &str) -> Option<u64> {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The second table: one line per case that has `latency`.
pub fn print_table(cases: &Obj) {
    let mut lines = Vec::new();
    for (_, c) in cases.iter() {
        let J::Obj(c) = c else { continue };
        let Some(J::Obj(l)) = c.get("latency") else {
            continue;
        };
        let avg = |k: &str| match l.get(k) {
            Some(J::Obj(r)) => r.num("avg_ms").map_or("-".into(), |v| format!("{v:.3}")),
            _ => "-".into(),
        };
        let mut line = format!(
            "{:<11} {:>12} {:>12}",
            c.str("label"),
            avg("idle_rtt"),
            avg("under_tcp_rtt")
        );
        if let Some(J::Arr(rates)) = l.get("udp") {
            for r in rates {
                let J::Obj(r) = r else { continue };
                let loss = r.num("loss_pct").map_or("-".into(), |v| format!("{v:.2}"));
                let path = r
                    .num("path_loss_pct")
                    .map_or(String::new(), |v| format!("({v:.2})"));
                let cpu = r
                    .num("daemon_cpu_s_per_mpkt")
                    .map_or(String::new(), |v| format!("/{v:.1}"));
                line.push_str(&format!(" {:>18}", loss + &path + &cpu));
            }
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return;
    }
    println!();
    let rates: Vec<String> = PPS_RATES
        .iter()
        .map(|&p| {
            if p < 1000 {
                format!("{p} pps")
            } else {
                format!("{}k pps", p / 1000)
            }
        })
        .collect();
    println!(
        "{:<11} {:>12} {:>12} {}",
        "case",
        "idle RTT ms",
        "TCP RTT ms",
        rates
            .iter()
            .map(|r| format!("{r:>18}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("{}", "-".repeat(37 + 19 * PPS_RATES.len()));
    for l in lines {
        println!("{l}");
    }
    println!(
        "RTT: ping host A -> host B, {PINGS} at 10 ms, average; TCP RTT: during one iperf3 TCP stream.\n\
         pps: iperf3 UDP {UDP_LEN}-octet payloads for {UDP_SECONDS} s at that rate, receiver buffer {UDP_RCVBUF}:\n\
         loss % (server's count), (in brackets) the part not dropped at the receiving socket, i.e. on the path\n\
         /N: the VPN daemons' CPU seconds per million packets delivered."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nstat_counters() {
        let out = "#kernel\nUdpRcvbufErrors                 7308               0.0\n";
        assert_eq!(nstat_value(out, "UdpRcvbufErrors"), Some(7308));
        assert_eq!(nstat_value(out, "UdpInErrors"), None);
        assert_eq!(nstat_value("#kernel\n", "UdpRcvbufErrors"), None);
    }

    #[test]
    fn parses_ping_rtt() {
        let out = "--- 10.2.0.2 ping statistics ---\n200 packets transmitted, 200 received, 0% packet loss, time 2010ms\nrtt min/avg/max/mdev = 0.041/0.052/0.093/0.010 ms\n";
        assert_eq!(rtt(out), Some((0.041, 0.052, 0.093)));
        assert_eq!(
            rtt("100 packets transmitted, 0 received, 100% packet loss"),
            None
        );
    }

    #[test]
    fn parses_udp_loss() {
        let j = r#"{"end":{"sum":{"packets":300000,"lost_packets":42,"lost_percent":0.014}}}"#;
        assert_eq!(udp_loss(j), Some((42, 300000)));
        assert_eq!(udp_loss(r#"{"error":"unable to connect"}"#), None);
    }
}
