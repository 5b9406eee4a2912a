//! The run itself, step by step: build the topology, start the daemons, wait for
//! convergence, probe, cut A–B and time the detour, restore and time the fail-back, count.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::configs::{self, Routing};
use super::daemons::Daemons;
use super::interrupt::{interrupted, nap};
use super::probe::{self, Prober, Responder};
use super::report::Report;
use super::status;
use super::timeline::{ms, show_routes, step, Timeline};
use super::topology::{self, link, router, ROUTERS};
use super::{
    Options, BGP_SESSION_ENDS, CONVERGE_TIMEOUT, FAILBACK_TIMEOUT, POLL, PROBE_INTERVAL,
    PROBE_PORT, RECOVER_TIMEOUT, TUNNEL_ENDS,
};

fn all_routes() -> BTreeMap<String, Vec<String>> {
    ROUTERS
        .iter()
        .map(|r| (r.letter.to_string(), topology::site_routes(&r.ns())))
        .collect()
}

/// What took A's BFD session with B down, from A's status counters.
fn detected_by(rt: &tokio::runtime::Runtime, b: &str) -> Option<String> {
    let v = status::fetch(rt, &router('A').socket_path()).ok()?;
    let n = status::summarize(&v)
        .bgp?
        .into_iter()
        .find(|n| n.address == b)?;
    let by = if n.esp_hint_downs > 0 {
        "ESP hint"
    } else {
        "BFD Detection Time"
    };
    Some(by.into())
}

pub(super) fn run(
    opts: &Options,
    tl: &Timeline,
    report: &mut Report,
    routing: Routing,
    daemons: &mut Daemons,
) -> anyhow::Result<()> {
    let _ = opts;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ab = link('A', 'B').tunnel();
    let ac = link('A', 'C').tunnel();
    let (a, b) = (router('A'), router('B'));

    step(
        tl,
        report,
        "topology: 3 routers, 3 hosts, 3 transport links",
        |_| {
            topology::build()?;
            Ok((
                (),
                "namespaces rvlab-{A,B,C} and rvlab-host{A,B,C}".to_string(),
            ))
        },
    )?;

    step(tl, report, "start one routevpn daemon per router", |_| {
        for r in &ROUTERS {
            std::fs::write(
                r.config_path(),
                configs::router_config(r, routing, opts.bfd),
            )?;
            daemons.spawn(r)?;
        }
        let pids: Vec<String> = daemons
            .children
            .iter()
            .map(|(l, c)| format!("{l}={}", c.id()))
            .collect();
        Ok((
            (),
            format!(
                "pids {}; logs in {}/*/routevpn.log",
                pids.join(" "),
                topology::STATE_DIR
            ),
        ))
    })?;

    // Step 1: convergence.
    let wait_name = match routing {
        Routing::Bgp => "step 1: wait for 6 tunnel ends up and 6 BGP sessions Established",
        Routing::Static => "step 1: wait for 6 tunnel ends up (no BGP in this build)",
    };
    step(tl, report, wait_name, |report| {
        let start = Instant::now();
        let mut last = String::new();
        let mut last_print = Instant::now();
        loop {
            daemons.check_alive()?;
            let mut up = 0;
            let mut est = 0;
            let mut no_bgp = Vec::new();
            let mut progress = Vec::new();
            for r in &ROUTERS {
                match status::fetch(&rt, &r.socket_path()) {
                    Ok(v) => {
                        let s = status::summarize(&v);
                        up += s.tunnels_up.len();
                        est += s.bgp_established();
                        let bgp = match &s.bgp {
                            None => {
                                no_bgp.push(r.letter);
                                "no bgp field".to_string()
                            }
                            Some(n) => n
                                .iter()
                                .map(|n| format!("{}={}", n.address, n.state))
                                .collect::<Vec<_>>()
                                .join(" "),
                        };
                        progress.push(format!("{}: {} | bgp {bgp}", r.letter, s.tunnels.join(" ")));
                    }
                    Err(e) => progress.push(format!("{}: {e:#}", r.letter)),
                }
            }
            report.tunnels_up = up;
            report.bgp_established = est;
            // Routes: every router reaches both other sites through the direct tunnel.
            let direct = ROUTERS.iter().all(|r| {
                ROUTERS.iter().filter(|p| p.letter != r.letter).all(|p| {
                    topology::route_dev(&r.ns(), &p.host_addr()).as_deref()
                        == Some(link(r.letter, p.letter).tunnel().as_str())
                })
            });
            let bgp_ok = routing == Routing::Static || est == BGP_SESSION_ENDS;
            if up == TUNNEL_ENDS && bgp_ok && direct {
                break;
            }
            let now = progress.join("; ");
            if now != last || last_print.elapsed() > Duration::from_secs(5) {
                tl.say(format!("   {up}/{TUNNEL_ENDS} tunnel ends up, {est}/{BGP_SESSION_ENDS} BGP established: {now}"));
                last = now.clone();
                last_print = Instant::now();
            }
            if routing == Routing::Bgp && no_bgp.len() == ROUTERS.len() && up == TUNNEL_ENDS {
                bail!("the daemons' status has no `bgp` field: the BGP speaker is not wired into the daemon yet");
            }
            if start.elapsed() > CONVERGE_TIMEOUT {
                bail!(
                    "not converged within {CONVERGE_TIMEOUT:?}: {up}/{TUNNEL_ENDS} tunnel ends up, \
                     {est}/{BGP_SESSION_ENDS} BGP sessions established, direct routes {}; {now}",
                    if direct { "present" } else { "missing" }
                );
            }
            nap(Duration::from_millis(100))?;
        }
        Ok(((), format!("{} tunnel ends up, {} BGP session ends established, direct routes in place after {} ms",
            report.tunnels_up, report.bgp_established, ms(start.elapsed()))))
    })?;
    let before = all_routes();
    show_routes(tl, &before);
    report.routes.insert("before".into(), before);

    // Step 2: probe.
    let responder = Responder::start(
        Some(b.host_ns()),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PROBE_PORT),
    )?;
    let target = SocketAddr::V4(SocketAddrV4::new(
        b.host_addr().parse().context("host B address")?,
        PROBE_PORT,
    ));
    let prober = step(
        tl,
        report,
        "step 2: probe host A -> host B at 100 packets/s (UDP echo)",
        |_| {
            let p = Prober::start(Some(a.host_ns()), target, PROBE_INTERVAL)?;
            probe::wait_flowing(&p, 50, Duration::from_secs(10), &interrupted)?;
            nap(Duration::from_secs(1))?;
            let l = p.snapshot();
            Ok((
                p,
                format!("{} sent, {} answered so far", l.sent.len(), l.received()),
            ))
        },
    )?;

    // Step 3: cut A–B.
    let t_cut =
        step(
            tl,
            report,
            "step 3: cut the A-B transport link (nft drop of UDP 500/4500 in router A)",
            |report| {
                topology::cut()?;
                // The cut is in force once nft has returned; probes sent from now on cannot
                // take the A-B path.
                let t_cut = Instant::now();
                tl.say(format!("   link cut at {} ms", tl.ms(t_cut)));
                let mut detour: Option<(Instant, String)> = None;
                let mut replied: Option<Instant> = None;
                loop {
                    daemons.check_alive()?;
                    if detour.is_none() {
                        match topology::route_dev(&a.ns(), &b.host_addr()) {
                            Some(dev) if dev != ab => {
                                let now = Instant::now();
                                tl.say(format!(
                                    "   A's route to {} moved to dev {dev} (+{} ms)",
                                    b.net(),
                                    ms(now - t_cut)
                                ));
                                detour = Some((now, dev));
                            }
                            _ => {}
                        }
                    }
                    if replied.is_none() {
                        if let Some((seq, t)) = prober.snapshot().first_reply_sent_after(t_cut) {
                            tl.say(format!(
                                "   probes answered again from seq {seq} (+{} ms)",
                                ms(t.saturating_duration_since(t_cut))
                            ));
                            replied = Some(t);
                        }
                    }
                    if detour.is_some() && replied.is_some() {
                        break;
                    }
                    if t_cut.elapsed() > RECOVER_TIMEOUT {
                        bail!(
                    "no recovery within {RECOVER_TIMEOUT:?} of the cut: route {}, probes {}",
                    if detour.is_some() { "moved" } else { "still on the A-B tunnel" },
                    if replied.is_some() { "answered" } else { "unanswered" }
                );
                    }
                    nap(POLL)?;
                }
                let (t_detour, dev) = detour.expect("checked above");
                let t_reply = replied.expect("checked above");
                report.detour_route_ms = Some(ms(t_detour - t_cut));
                report.outage_ms = Some(ms(t_reply.saturating_duration_since(t_cut)));
                report.detour_dev = Some(dev.clone());
                report.detected_by = detected_by(&rt, &link('A', 'B').inner_addr('B'));
                if dev != ac {
                    bail!(
                        "A's route to {} moved to dev {dev}, expected the A-C tunnel {ac}",
                        b.net()
                    );
                }
                // Let the detour settle and show it.
                nap(Duration::from_secs(2))?;
                Ok((
                    t_cut,
                    format!(
                        "outage {} ms, route via {dev} after {} ms",
                        report.outage_ms.unwrap_or_default(),
                        report.detour_route_ms.unwrap_or_default()
                    ),
                ))
            },
        )?;
    let during = all_routes();
    show_routes(tl, &during);
    report.routes.insert("during_cut".into(), during);

    // Step 4: restore.
    let t_restore = step(
        tl,
        report,
        "step 4: restore the A-B link, wait for fail-back",
        |report| {
            topology::restore()?;
            let t_restore = Instant::now();
            tl.say(format!("   link restored at {} ms", tl.ms(t_restore)));
            let t_back = loop {
                daemons.check_alive()?;
                if topology::route_dev(&a.ns(), &b.host_addr()).as_deref() == Some(ab.as_str()) {
                    break Instant::now();
                }
                if t_restore.elapsed() > FAILBACK_TIMEOUT {
                    bail!(
                        "A's route to {} not back on {ab} within {FAILBACK_TIMEOUT:?}",
                        b.net()
                    );
                }
                nap(POLL)?;
            };
            report.failback_ms = Some(ms(t_back - t_restore));
            tl.say(format!(
                "   A's route to {} back on dev {ab} (+{} ms)",
                b.net(),
                ms(t_back - t_restore)
            ));
            nap(Duration::from_secs(1))?;
            let recent = prober
                .snapshot()
                .replies_since(t_back + Duration::from_millis(200));
            if recent == 0 {
                bail!("no probe answered after the fail-back");
            }
            Ok((
                t_restore,
                format!(
                    "fail-back {} ms; {recent} probes answered since",
                    ms(t_back - t_restore)
                ),
            ))
        },
    )?;
    let after = all_routes();
    show_routes(tl, &after);
    report.routes.insert("after_failback".into(), after);

    // Step 5: totals.
    let log = prober.finish();
    drop(responder);
    let end = Instant::now() + Duration::from_secs(3600);
    let lost = log.sent.len() - log.received();
    report.probes_sent = Some(log.sent.len() as u64);
    report.probes_received = Some(log.received() as u64);
    report.lost_packets = Some(lost as u64);
    report.lost_after_cut = Some(log.lost_between(t_cut, t_restore) as u64);
    report.lost_after_restore = Some(log.lost_between(t_restore, end) as u64);
    report.max_gap_ms = Some(ms(log.max_reply_gap()));
    tl.say(format!(
        "== step 5: {} probes sent, {} answered, {lost} lost ({} during the cut, {} after the restore)",
        log.sent.len(),
        log.received(),
        report.lost_after_cut.unwrap_or_default(),
        report.lost_after_restore.unwrap_or_default()
    ));
    Ok(())
}
