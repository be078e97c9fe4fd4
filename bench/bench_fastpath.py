"""Fast-path benchmark: felis' doNotTrack rules against a hand-written ruleset, on each backend.

For each backend it runs the lab (`felis.lab.run.run_lab`, i.e. `felis lab run`) with the phases
handwritten, donottrack and baseline, interleaved over `--rounds` rounds of `--seconds` each, at
saturation, with the lab's client port range (default 1024-65535), and prints a summary:
median within-round ratios of conn/s, median whole-box CPU µs per connection, and failed
connections per phase over all rounds. Part `failures` (opt-in) adds, per backend, one long
saturating donottrack phase: with the widest port range, every connection a failsafe port
collision breaks shows as a failure.

Run (root), no Makefile needed:
    .venv/bin/python bench/bench_fastpath.py [--backends nftables,iptables] [--rounds 6]
        [--seconds 8] [--parts rounds,failures] [--failure-seconds 60] [--out DIR]
(about 8 minutes with the defaults, plus about 2.5 minutes for `failures`). Each backend's
rounds are the same as
    felis lab run --phases handwritten,donottrack,baseline --rounds 6 --phase-seconds 8 \\
        --backend B --results DIR/B
and `failures` the same as
    felis lab run --phases donottrack --phase-seconds 60 --backend B --results DIR/B-failures
Every run's results.json and chart.png go under --out (default lab-results/fastpath,
git-ignored); the summary is printed on stdout and written to DIR/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from felis.lab.errors import LabError
from felis.lab.firewall import BACKENDS
from felis.lab.handwritten import HANDWRITTEN
from felis.lab.results import phase_names
from felis.lab.rounds import RATIO_PAIRS, ratio_name
from felis.lab.run import ProgressView, RunOptions, label_width, print_report, print_table, run_lab
from felis.lab.topology import (
    DEFAULT_CLIENT_PORTS,
    LabConfig,
    format_port_range,
    parse_port_range,
)

PHASES = (HANDWRITTEN, "donottrack", "baseline")


def lab_config(client_ports: tuple[int, int]) -> LabConfig:
    # Names of its own, so it never meets a lab left up by `felis lab up`.
    return LabConfig(
        server_netns="felis-fast-s",
        client_netns="felis-fast-c",
        node_name="memcached-node-1",
        client_ports=client_ports,
        run_dir=Path("/run/felis-lab-fastpath"),
    )


def run(opts: RunOptions) -> dict[str, Any]:
    """One lab run with the live view and the lab's report on stderr."""
    err = Console(stderr=True)
    with ProgressView(err, label_width(opts)) as view:
        doc = run_lab(opts, on_sample=view)
    print_report(doc, err, opts.results)
    return doc


def _num(x: Any, fmt: str) -> str:
    return "–" if x is None else format(x, fmt)


def summary_rows(
    rounds: dict[str, dict[str, Any]], failures: dict[str, dict[str, Any]]
) -> tuple[list[str], list[list[str]]]:
    """One column per backend, one row per measure."""
    backends = list(dict.fromkeys([*rounds, *failures]))
    rows: list[list[str]] = []

    def row(label: str, values: list[Any], fmt: str) -> None:
        rows.append([label, *(_num(v, fmt) for v in values)])

    def of_rounds(group: str, key: str) -> list[Any]:
        """Per backend, rounds.<group>[key] (medians, or failures summed over rounds)."""
        section = [rounds[b]["rounds"] if b in rounds else None for b in backends]
        return [None if s is None else s[group].get(key) for s in section]

    if rounds:
        count = max(doc["rounds"]["count"] for doc in rounds.values())
        for num, den in RATIO_PAIRS:
            name = ratio_name(num, den)
            ratios = [None if s is None else s.get(name) for s in of_rounds("median", "ratios")]
            row(f"{name} (median of {count})", ratios, ".3f")
        cpu = of_rounds("median", "cpu_us_per_conn")
        for phase in PHASES:
            per_backend = [None if c is None else c.get(phase) for c in cpu]
            row(f"CPU µs/conn {phase} (median)", per_backend, ",.0f")
        for phase in PHASES:
            row(f"failed {phase} (all rounds)", of_rounds("connections_failed", phase), ",d")
    if failures:
        seconds = max(doc["meta"]["phase_seconds"] for doc in failures.values())
        failed = [failures[b]["donottrack"]["connections_failed"] if b in failures else None
                  for b in backends]  # fmt: skip
        row(f"failed donottrack, {seconds:g} s saturating", failed, ",d")
    return ["", *backends], rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--backends", default="nftables,iptables")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    ap.add_argument("--parts", default="rounds", help="rounds, failures, or both")
    ap.add_argument("--failure-seconds", type=float, default=60.0)
    ap.add_argument(
        "--client-ports",
        default=format_port_range(DEFAULT_CLIENT_PORTS),
        help="the client's ephemeral port range, LOW-HIGH (the lab's default)",
    )
    ap.add_argument("--out", type=Path, default=Path("lab-results/fastpath"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_fastpath: needs root (network namespaces)")
    backends = [b for b in args.backends.split(",") if b]
    parts = set(args.parts.split(","))
    bad = [b for b in backends if b not in BACKENDS] + sorted(parts - {"rounds", "failures"})
    if bad or not backends:
        sys.exit(f"bench_fastpath: unknown backend or part {bad[0] if bad else '(none)'}")
    try:
        cfg = lab_config(parse_port_range(args.client_ports))
        rounds: dict[str, dict[str, Any]] = {}
        failures: dict[str, dict[str, Any]] = {}
        for backend in backends:
            if "rounds" in parts:
                rounds[backend] = run(RunOptions(
                    phase_seconds=args.seconds, results=args.out / backend, backend=backend,
                    phases=PHASES, rounds=args.rounds, config=cfg,
                ))  # fmt: skip
            if "failures" in parts:
                failures[backend] = run(RunOptions(
                    phase_seconds=args.failure_seconds, results=args.out / f"{backend}-failures",
                    backend=backend, phases=["donottrack"], config=cfg,
                ))  # fmt: skip
    except LabError as exc:
        sys.exit(f"bench_fastpath: {exc}")
    header, rows = summary_rows(rounds, failures)
    title = (
        f"fast path: client ports {format_port_range(cfg.client_ports)}, "
        f"{args.seconds:g} s phases, saturating"
    )
    print_table(Console(), title, header, rows)
    summary = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "rounds": {b: {k: v for k, v in doc["rounds"].items() if k != "per_round"}
                   for b, doc in rounds.items()},
        "failures": {b: {p: doc[p]["connections_failed"] for p in phase_names(doc)}
                     for b, doc in failures.items()},
        "results": str(args.out),
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
