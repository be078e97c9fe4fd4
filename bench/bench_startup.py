"""Start-to-synced: `felis agent` process start → its first kernel programming finished.

The workload is bench/workloads.py's: 5,000 HostEndpoints and 1,000 GlobalNetworkPolicies (one
policy in ten selects the node) in an embedded SQLite datastore. Each round programs a fresh
network namespace (a true first sync; its `eth0` is a veth whose peer stays in the namespace),
so nothing is left from the round before. Interleaved in every round, as references on the same
machine at the same moment:
- `python -c pass`: the interpreter alone;
- `felis agent --help`: the interpreter plus the imports the agent command needs.
"synced" is the agent's `sync:` log line, written after its kernel transaction returned.

Run (root): .venv/bin/python bench/bench_startup.py [--rounds 7] [--backend nftables]
Results go into docs/benchmarks.md by hand, with the command and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from felis.datastore import open_datastore
from felis.model import from_dict, to_dict
from workloads import agent_in_namespace, big_cluster

NODE = "bench-node"
SERVER_IP = "198.18.0.1"


def _seed(url: str) -> None:
    store = open_datastore(url)
    objects = [to_dict(from_dict(o, "bench")) for o in big_cluster(NODE, SERVER_IP, 10)]
    for start in range(0, len(objects), 500):
        store.apply(objects[start : start + 500])


def _timed(argv: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return time.perf_counter() - began


def _synced(url: str, backend: str) -> float:
    """Seconds from spawning the agent in a fresh namespace to its `sync:` log line."""
    with agent_in_namespace(NODE, SERVER_IP, url, backend) as agent:
        return agent.synced_after


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backend", default="nftables")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_startup: needs root (network namespaces)")
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# {dt.date.today()} {platform.python_version()} {platform.machine()} load {load}")
    with tempfile.TemporaryDirectory(prefix="felis-bench-") as tmp:
        url = f"sqlite:///{tmp}/felis.db"
        _seed(url)
        bare: list[float] = []
        imports: list[float] = []
        synced: list[float] = []
        for _ in range(args.rounds):
            bare.append(_timed([sys.executable, "-c", "pass"]))
            imports.append(_timed([sys.executable, "-m", "felis", "agent", "--help"]))
            synced.append(_synced(url, args.backend))
        med = statistics.median
        print(
            f"{args.rounds} rounds, {args.backend}, SQLite, 5,000 HEPs + 1,000 policies: "
            f"start→synced median {med(synced):.2f} s (min {min(synced):.2f}, "
            f"max {max(synced):.2f}); `agent --help` {med(imports):.2f} s; "
            f"bare interpreter {med(bare):.2f} s"
        )


if __name__ == "__main__":
    main()
