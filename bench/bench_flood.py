"""Lab benchmark: legitimate memcached load under a SYN flood from blocklisted sources.

For each flood rate, one `felis lab run --phases flood` of N interleaved rounds (each round
starting one phase later): `noflood` (the blocklist programmed with XDP, no flood), `flood-xdp`
(the flood, dropped in XDP) and `flood-raw` (the same rules with `--no-xdp`, dropped in the raw
table). Everything stays in the lab's namespaces (198.18.0.0/15); the flooder is bounded by a
packet count and a duration and stops by itself.

Reported per rate: per round and as medians, the legitimate conn/s and their ratios to
`noflood`, the server's CPU per legitimate connection (memcached + softirq), the whole box's,
the flood rate really sent, the flooder's own CPU and the XDP drops. The load average is
recorded, since the box is shared.

Run (root): .venv/bin/python bench/bench_flood.py [--rounds 5] [--seconds 8]
[--rates 100000] [--via driver] [--queues N] [--backend nftables]
[--out lab-results/bench-flood.json]
(`--via driver,socket` runs each rate both ways: frames into the veth's XDP transmit path, as
from a NIC, or from an AF_PACKET socket; docs/lab.md, "The flood phases")
(about 5 minutes per rate with the defaults; output git-ignored). Results go into
docs/benchmarks-lab.md by hand, with the command and date.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from bench_lab import run_header
from felis.conntrack import kernel as ct
from felis.lab.errors import LabError
from felis.lab.flood import DEFAULT_FLOOD_VIA, FLOOD_PHASES, FLOOD_VIAS
from felis.lab.run import RunOptions, run_lab
from felis.lab.topology import LabConfig

RATIOS = ("flood-xdp/noflood", "flood-raw/noflood", "flood-xdp/flood-raw")


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _fmt(x: Any, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures the docs quote, per round and as medians."""
    rows = []
    for r in doc["rounds"]["per_round"]:
        row: dict[str, Any] = {"round": r["round"], "order": r["order"], "ratios": r["ratios"]}
        for name, p in r["phases"].items():
            fl = p.get("flood", {})
            row[name] = {
                "conn_per_s": p["conn_per_s"],
                "failed": p["connections_failed"],
                "p99_us": p["p99_us"],
                "tcp_retrans_segs": p.get("tcp_retrans_segs"),
                "server_us_per_conn": p["server_cpu_us_per_conn"],
                "box_us_per_conn": p["cpu_us_per_conn"],
                "box_cores": round(p["cpu_busy_s"] / p["duration_s"], 2) if p["duration_s"] else 0,
                "sent_pps": fl.get("sent_pps"),
                "flooder_cores": round(fl["flooder_cpu_s"] / fl["seconds"], 3)
                if fl.get("seconds")
                else None,
                "xdp_dropped": fl.get("xdp_dropped"),
                "xdp_mode": fl.get("xdp_mode"),
            }
        rows.append(row)
    med = doc["rounds"]["median"]
    return {
        "per_round": rows,
        "median": {
            "ratios": med["ratios"],
            "conn_per_s": med["conn_per_s"],
            "server_cpu_us_per_conn": med["server_cpu_us_per_conn"],
            "cpu_us_per_conn": med["cpu_us_per_conn"],
        },
        "connections_failed": doc["rounds"]["connections_failed"],
        "flood": {n: doc[n].get("flood") for n in FLOOD_PHASES},
    }


def markdown(rate: float, via: str, summary: dict[str, Any]) -> str:
    """The per-round table for docs/benchmarks-lab.md."""
    lines = [
        f"Flood {rate:,.0f} pkt/s asked for, sent via {via}. conn/s · server CPU µs/conn per "
        "phase; ratios of conn/s; flood sent (pkt/s, XDP / raw), the flooder's own CPU "
        "(cores), and the segments the clients retransmitted (noflood / XDP / raw).",
        "",
        "| round | noflood | flood-xdp | flood-raw | xdp/noflood | raw/noflood | xdp/raw "
        "| sent pkt/s | flooder cores | client retransmits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["per_round"]:
        cells = [
            f"{_fmt(r[n]['conn_per_s'], ',.0f')} · {_fmt(r[n]['server_us_per_conn'], '.0f')}"
            for n in FLOOD_PHASES
        ]
        ratios = [_fmt(r["ratios"].get(k), ".3f") for k in RATIOS]
        sent = " / ".join(_fmt(r[n]["sent_pps"], ",.0f") for n in FLOOD_PHASES[1:])
        cores = " / ".join(_fmt(r[n]["flooder_cores"], ".2f") for n in FLOOD_PHASES[1:])
        retrans = " / ".join(_fmt(r[n]["tcp_retrans_segs"], ",") for n in FLOOD_PHASES)
        cells += [*ratios, sent, cores, retrans]
        lines.append(f"| {r['round']} | " + " | ".join(cells) + " |")
    med = summary["median"]
    cells = [
        f"{_fmt(med['conn_per_s'].get(n), ',.0f')} · "
        f"{_fmt(med['server_cpu_us_per_conn'].get(n), '.0f')}"
        for n in FLOOD_PHASES
    ]
    ratios = [f"**{_fmt(med['ratios'].get(k), '.3f')}**" for k in RATIOS]
    lines.append("| **median** | " + " | ".join([*cells, *ratios, "", "", ""]) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=8.0, help="load duration of each phase")
    ap.add_argument("--rates", default="100000", help="flood rates (pkt/s), comma-separated")
    vias = ", ".join(FLOOD_VIAS)
    ap.add_argument("--via", default=DEFAULT_FLOOD_VIA, help=f"comma-separated: {vias}")
    ap.add_argument("--queues", type=int, default=None,
                    help="veth queues per end in driver mode (default: one per core)")  # fmt: skip
    ap.add_argument("--backend", default="nftables", choices=("nftables", "iptables"))
    ap.add_argument("--out", type=Path, default=Path("lab-results/bench-flood.json"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_flood: needs root (network namespaces)")
    cfg = LabConfig(
        server_netns="felis-flood-s",
        client_netns="felis-flood-c",
        node_name="memcached-node-1",
        run_dir=Path("/run/felis-lab-flood"),
    )
    out: dict[str, Any] = {
        **run_header(),
        "backend": args.backend,
        "runs": [],
    }
    runs = [(float(r), v) for v in args.via.split(",") for r in args.rates.split(",")]
    for rate, via in runs:
        before = loadavg()
        opts = RunOptions(
            phase_seconds=args.seconds,
            rounds=args.rounds,
            phases=list(FLOOD_PHASES),
            backend=args.backend,
            flood_rate=rate,
            flood_via=via,
            flood_queues=args.queues,
            config=cfg,
            chart=False,
            results=args.out.parent / f"bench-flood-{via}-{rate:.0f}",
        )
        try:
            doc = run_lab(opts)
        except LabError as exc:
            sys.exit(f"bench_flood: {exc}")
        summary = summarise(doc)
        out["runs"].append(
            {"rate_pps": rate, "via": via, "queues": args.queues, "loadavg_before": before,
             "loadavg_after": loadavg(), **summary}
        )  # fmt: skip
        print(markdown(rate, via, summary), flush=True)
        print(f"load average {before:.1f} → {loadavg():.1f}", flush=True)
    out["conntrack_max_end"] = ct.read_max()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
