"""Crash consistency, long run: SIGKILL `felis agent --once` at many random moments of a large
apply and judge the kernel after each kill (tests/kernel/crash.py; the suite runs the same code
with a few kills per backend in tests/kernel/test_crash_consistency.py).

Per backend: a node namespace, foreign rules and sets next to felis', reference states A and B
(about 9,300 rules per family at the default scale, 8 sets of 4,000 members with half rewritten),
then `--kills` kills alternating the target version and the way of killing (the agent alone,
or the agent with the command it runs), each at a uniform moment of the write window; then a
restarted agent must converge. Prints, per backend, what ran at the kills, what the kernel held
after them and every violation.

Run (root): .venv/bin/python bench/bench_crash.py [--kills 100] [--backend nftables]
Results go into docs/benchmarks.md by hand, with the command and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernel"))

from crash import CrashRun, Scale
from node import felis_node


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--backend", choices=["nftables", "iptables", "both"], default="both")
    parser.add_argument("--policies", type=int, default=Scale.policies)
    parser.add_argument("--members", type=int, default=Scale.members)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_crash: needs root (network namespaces)")
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# {dt.date.today()} {platform.python_version()} {platform.machine()} load {load}")
    scale = Scale(policies=args.policies, members=args.members)
    backends = ["nftables", "iptables"] if args.backend == "both" else [args.backend]
    failed = False
    for backend in backends:
        began = time.perf_counter()
        with (
            tempfile.TemporaryDirectory(prefix="felis-crash-") as tmp,
            felis_node(backend, Path(tmp)) as node,
        ):
            run = CrashRun(node, scale, seed=args.seed)
            run.prepare()
            run.kill(args.kills)
            run.recover()
            print(run.summary())
            failed |= bool(run.violations())
        print(f"  ({time.perf_counter() - began:.0f} s)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
