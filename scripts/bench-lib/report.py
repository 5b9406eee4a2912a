#!/usr/bin/env python3
"""Number-crunching helpers for scripts/bench (standard library only).

Subcommands (all print to stdout):
  snap PID...                      one JSON line: /proc/stat "cpu" ticks, each PID's
                                   utime+stime ticks, monotonic time
  baseline SECONDS                 busy % of the whole machine over SECONDS (background load)
  run CASE STREAMS IPERF BEFORE AFTER [KEY=VALUE...]
                                   one JSON result line from an iperf3 -J file and two snaps
  fail CASE MESSAGE [KEY=VALUE...] one JSON line recording a failed case
  brief                            a one-line summary of the result line on stdin
  status-state SOCKET_JSON_FILE    prints the first tunnel's "state" from `routevpn status --json`
  report META RESULTS OUT          prints the table, writes the final JSON to OUT

Units: 1 GB = 10^9 bytes of TCP payload received by the iperf3 server; CPU seconds are
USER_HZ ticks / CLK_TCK.
"""

import json
import os
import sys
import time

GB = 1e9
CLK_TCK = os.sysconf("SC_CLK_TCK")
CASE_ORDER = ["veth", "strongswan", "routevpn"]
CASE_LABEL = {"veth": "plain veth", "strongswan": "strongSwan", "routevpn": "routevpn"}


def proc_ticks(pid):
    """utime+stime of a whole process (all its threads), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = s[s.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime is field 14, stime field 15.
    return int(rest[11]) + int(rest[12])


def cpu_ticks():
    with open("/proc/stat") as f:
        first = f.readline().split()
    assert first[0] == "cpu"
    vals = [int(x) for x in first[1:]]
    vals += [0] * (10 - len(vals))
    return vals[:10]


def snap(pids):
    return {
        "mono": time.monotonic(),
        "cpu": cpu_ticks(),
        "pids": {p: proc_ticks(p) for p in pids},
    }


def busy_of(vals):
    # user nice system idle iowait irq softirq steal guest guest_nice
    # (guest time is already included in user/nice; steal is not ours).
    user, nice, system, _idle, _iowait, irq, softirq = vals[:7]
    return user + nice + system + irq + softirq


def kv_args(args):
    out = {}
    for a in args:
        k, _, v = a.partition("=")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def per_gb(seconds, nbytes):
    if seconds is None or not nbytes:
        return None
    return seconds / (nbytes / GB)


def cmd_run(case, streams, iperf_path, before_path, after_path, extra):
    rec = {"case": case, "streams": int(streams)}
    rec.update(kv_args(extra))
    try:
        with open(iperf_path) as f:
            ip = json.load(f)
    except (OSError, ValueError) as e:
        rec.update(status="failed", error=f"no usable iperf3 JSON ({e})")
        return rec
    if ip.get("error"):
        rec.update(status="failed", error=f"iperf3: {ip['error']}")
        return rec
    end = ip.get("end", {})
    recv = end.get("sum_received", {})
    sent = end.get("sum_sent", {})
    nbytes = recv.get("bytes", 0)
    if not nbytes:
        rec.update(status="failed", error="iperf3 received 0 bytes")
        return rec
    with open(before_path) as f:
        b = json.load(f)
    with open(after_path) as f:
        a = json.load(f)
    dcpu = [x - y for x, y in zip(a["cpu"], b["cpu"])]
    wall = a["mono"] - b["mono"]
    ncpu = os.cpu_count() or 1
    busy = busy_of(dcpu) / CLK_TCK
    kernel = (dcpu[2] + dcpu[5] + dcpu[6]) / CLK_TCK
    daemon = None
    daemons = {}
    if b["pids"]:
        total = 0
        for pid, t0 in b["pids"].items():
            t1 = a["pids"].get(pid)
            if t0 is None or t1 is None:
                rec.update(status="failed", error=f"VPN daemon PID {pid} exited during the run")
                return rec
            daemons[pid] = (t1 - t0) / CLK_TCK
            total += t1 - t0
        daemon = total / CLK_TCK
    cpu_util = end.get("cpu_utilization_percent", {})
    rec.update(
        status="ok",
        seconds=round(recv.get("seconds", 0.0), 3),
        bytes=nbytes,
        gbit_s=round(recv.get("bits_per_second", 0.0) / 1e9, 4),
        retransmits=sent.get("retransmits"),
        daemon_cpu_s=None if daemon is None else round(daemon, 3),
        daemon_cpu_s_by_pid={k: round(v, 3) for k, v in daemons.items()},
        daemon_cpu_s_per_gb=None if daemon is None else round(per_gb(daemon, nbytes), 4),
        kernel_cpu_s=round(kernel, 3),
        kernel_cpu_s_per_gb=round(per_gb(kernel, nbytes), 4),
        machine_wall_s=round(wall, 3),
        machine_cpu_s=round(busy, 3),
        machine_user_s=round((dcpu[0] + dcpu[1]) / CLK_TCK, 3),
        machine_system_s=round(dcpu[2] / CLK_TCK, 3),
        machine_irq_softirq_s=round((dcpu[5] + dcpu[6]) / CLK_TCK, 3),
        machine_steal_s=round(dcpu[7] / CLK_TCK, 3),
        machine_util_pct=round(100.0 * busy / (wall * ncpu), 1) if wall > 0 else None,
        machine_cpu_s_per_gb=round(per_gb(busy, nbytes), 4),
        iperf3_cpu_percent={
            "client": round(cpu_util.get("host_total", 0.0), 1),
            "server": round(cpu_util.get("remote_total", 0.0), 1),
        },
    )
    # The brief's "CPU seconds per GB" of the dataplane: the VPN daemons' processes for
    # a tunnel; for the plain path (no daemon) the kernel's share of the machine.
    rec["dataplane_cpu_s_per_gb"] = (
        rec["daemon_cpu_s_per_gb"] if daemon is not None else rec["kernel_cpu_s_per_gb"]
    )
    return rec


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def cmd_report(meta_path, results_path, out_path):
    with open(meta_path) as f:
        meta = json.load(f)
    recs = []
    if os.path.exists(results_path):
        with open(results_path) as f:
            recs = [json.loads(l) for l in f if l.strip()]
    cases = {}
    for c in CASE_ORDER:
        if c not in meta.get("cases_requested", CASE_ORDER):
            continue
        cases[c] = {
            "label": CASE_LABEL[c],
            "description": meta.get("case_descriptions", {}).get(c, ""),
            "status": "not run",
            "runs": [],
        }
    for r in recs:
        c = cases.setdefault(
            r["case"], {"label": r["case"], "description": "", "status": "not run", "runs": []}
        )
        if "streams" in r:
            c["runs"].append(r)
        else:  # a case-level record (setup facts or a failure)
            for k, v in r.items():
                if k not in ("case",):
                    c[k] = v
    for c in cases.values():
        if c["status"] == "not run" and c["runs"]:
            c["status"] = "ok" if all(x["status"] == "ok" for x in c["runs"]) else "failed"
        if c["status"] == "ok" and any(x["status"] != "ok" for x in c["runs"]):
            c["status"] = "failed"

    def run_of(case, streams):
        for r in cases.get(case, {}).get("runs", []):
            if r["streams"] == streams and r["status"] == "ok":
                return r
        return None

    ratios = {}
    for s in meta["streams"]:
        rv, sw, pl = run_of("routevpn", s), run_of("strongswan", s), run_of("veth", s)
        entry = {}
        for name, other in (("routevpn_vs_strongswan", sw), ("routevpn_vs_plain", pl)):
            entry[name] = {
                k: ratio(rv and rv.get(k), other and other.get(k))
                for k in (
                    "gbit_s",
                    "machine_cpu_s_per_gb",
                    "dataplane_cpu_s_per_gb",
                    "kernel_cpu_s_per_gb",
                )
            }
        entry["strongswan_vs_plain"] = {
            k: ratio(sw and sw.get(k), pl and pl.get(k))
            for k in ("gbit_s", "machine_cpu_s_per_gb")
        }
        ratios[str(s)] = entry

    out = dict(meta)
    out.pop("case_descriptions", None)
    out["cases"] = cases
    out["ratios"] = ratios
    out["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with open(out_path + ".tmp", "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    os.replace(out_path + ".tmp", out_path)

    # ---- the table ----
    hdr = (
        f"{'case':<11} {'streams':>7} {'Gbit/s':>8} {'retr':>6} "
        f"{'daemon CPU s':>12} {'daemon s/GB':>11} {'kernel s/GB':>11} "
        f"{'machine CPU s':>13} {'machine s/GB':>12} {'busy %':>6}"
    )
    print(hdr)
    print("-" * len(hdr))
    for key, c in cases.items():
        if not c["runs"]:
            print(f"{c['label']:<11} {c['status'].upper()}: {c.get('error', '')}")
            continue
        for r in c["runs"]:
            if r["status"] != "ok":
                print(f"{c['label']:<11} {r['streams']:>7} FAILED: {r.get('error', '')}")
                continue
            print(
                f"{c['label']:<11} {r['streams']:>7} {r['gbit_s']:>8.3f} "
                f"{fmt(r['retransmits'], 'd'):>6} "
                f"{fmt(r['daemon_cpu_s'], '.2f'):>12} {fmt(r['daemon_cpu_s_per_gb'], '.3f'):>11} "
                f"{r['kernel_cpu_s_per_gb']:>11.3f} {r['machine_cpu_s']:>13.2f} "
                f"{r['machine_cpu_s_per_gb']:>12.3f} {fmt(r['machine_util_pct'], '.0f'):>6}"
            )
        if c["status"] not in ("ok",) and c.get("error"):
            print(f"{'':<11} {c['status'].upper()}: {c['error']}")
    print()
    print("ratios (a/b; throughput: higher is better for a, s/GB: lower is better for a)")
    rh = f"{'':<28} {'streams':>7} {'Gbit/s':>8} {'machine s/GB':>12} {'dataplane s/GB':>14}"
    print(rh)
    for s in meta["streams"]:
        e = ratios[str(s)]
        for name, label in (
            ("routevpn_vs_strongswan", "routevpn / strongSwan"),
            ("routevpn_vs_plain", "routevpn / plain veth"),
            ("strongswan_vs_plain", "strongSwan / plain veth"),
        ):
            x = e[name]
            print(
                f"{label:<28} {s:>7} {fmt(x['gbit_s'], '.3f'):>8} "
                f"{fmt(x['machine_cpu_s_per_gb'], '.3f'):>12} "
                f"{fmt(x.get('dataplane_cpu_s_per_gb'), '.3f'):>14}"
            )
    print()
    print(
        "daemon = utime+stime of the VPN daemon processes (both ends); kernel = machine-wide "
        "system+irq+softirq;\nmachine = all busy CPU from /proc/stat (user+nice+system+irq+softirq), "
        "iperf3 included; busy % of all CPUs.\n1 GB = 10^9 bytes received by iperf3. "
        "dataplane s/GB = daemon s/GB for a tunnel, kernel s/GB for plain veth."
    )
    noisy = {
        c["label"]: c.get("background_busy_pct_before")
        for c in cases.values()
        if (c.get("background_busy_pct_before") or 0) > 20 and c["runs"]
    }
    if noisy:
        print(
            "WARNING: the machine was already busy before these cases ("
            + ", ".join(f"{k} {v:.0f}%" for k, v in noisy.items())
            + " of all CPUs, measured over 1 s):\nthroughput is CPU-starved and kernel/machine "
            "s/GB include that other load; daemon s/GB counts only the daemons' own CPU time\n(still slowed by contention, but not inflated by other processes)."
        )
    print(f"JSON written to {out_path}")
    return 0 if all(c["status"] == "ok" for c in cases.values()) else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[1], argv[2:]
    if cmd == "snap":
        print(json.dumps(snap(args)))
    elif cmd == "baseline":
        secs = float(args[0])
        t0, c0 = time.monotonic(), cpu_ticks()
        time.sleep(secs)
        t1, c1 = time.monotonic(), cpu_ticks()
        busy = busy_of([x - y for x, y in zip(c1, c0)]) / CLK_TCK
        print(f"{100.0 * busy / ((t1 - t0) * (os.cpu_count() or 1)):.1f}")
    elif cmd == "run":
        print(json.dumps(cmd_run(args[0], args[1], args[2], args[3], args[4], args[5:])))
    elif cmd == "fail":
        rec = {"case": args[0], "status": "failed", "error": args[1]}
        rec.update(kv_args(args[2:]))
        print(json.dumps(rec))
    elif cmd == "info":
        rec = {"case": args[0]}
        rec.update(kv_args(args[1:]))
        print(json.dumps(rec))
    elif cmd == "brief":  # one result line on stdin -> a short progress line
        r = json.loads(sys.stdin.readline())
        if r.get("status") == "ok":
            print(
                f"    {r['gbit_s']:.3f} Gbit/s, machine {r['machine_cpu_s_per_gb']:.3f} s/GB"
                + ("" if r["daemon_cpu_s_per_gb"] is None
                   else f", daemons {r['daemon_cpu_s_per_gb']:.3f} s/GB")
            )
        else:
            print(f"    FAILED: {r.get('error')}")
    elif cmd == "status-state":
        try:
            with open(args[0]) as f:
                st = json.load(f)
            tunnels = st.get("tunnels") or []
            t = tunnels[0] if tunnels else {}
            print(t.get("state", "unknown"), t.get("last_error") or "")
        except (OSError, ValueError, AttributeError):
            print("no-answer-on-control-socket")
    elif cmd == "report":
        return cmd_report(args[0], args[1], args[2])
    else:
        print(f"unknown subcommand {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
