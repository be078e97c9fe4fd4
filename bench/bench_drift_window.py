"""How long a host runs without felis' rules after another program flushes the ruleset.

`nft flush ruleset` (what restarting nftables.service does; it removes iptables-nft's tables
too) in the namespace of a running agent, then a tight poll until felis' rules are back. The
agent's periodic check is set to an hour, so the repair comes from the kernel change events.
Rounds are 5 s apart, so the agent's back-off against a program that keeps rewriting its rules
(3 repairs within 10 s) never starts. The window measured includes the poll's own resolution
(one `nft`/`iptables` call, a few ms).

Run (root): .venv/bin/python bench/bench_drift_window.py [--rounds 10]
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
from felis.model import load_file, to_dict
from workloads import agent_in_namespace

ROOT = Path(__file__).resolve().parents[1]
NODE = "memcached-node-1"
SERVER_IP = "198.18.0.1"
# One call each, exit code 0 once felis' rules are back.
PRESENT = {
    "nftables": ["nft", "list", "table", "ip", "felis"],
    "iptables": ["iptables", "-t", "raw", "-n", "-L", "felis-PREROUTING"],
}


def _present(ns: str, backend: str) -> bool:
    argv = ["ip", "netns", "exec", ns, *PRESENT[backend]]
    return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0


def windows(backend: str, rounds: int, url: str) -> list[float]:
    out = []
    with agent_in_namespace(NODE, SERVER_IP, url, backend, "--refresh-interval", "3600") as agent:
        for _ in range(rounds):
            if not _present(agent.ns, backend):
                raise RuntimeError("felis' rules are missing before the flush")
            flush = ["ip", "netns", "exec", agent.ns, "nft", "flush", "ruleset"]
            began = time.perf_counter()
            subprocess.run(flush, check=True, capture_output=True, timeout=10)
            while not _present(agent.ns, backend):
                if time.perf_counter() - began > 60:
                    raise RuntimeError("felis' rules did not come back within 60 s")
            out.append(time.perf_counter() - began)
            time.sleep(5.0)  # spacing, not synchronisation: keeps the back-off out of it
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_drift_window: needs root (network namespaces)")
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# {dt.date.today()} {platform.python_version()} {platform.machine()} load {load}")
    with tempfile.TemporaryDirectory(prefix="felis-bench-") as tmp:
        url = f"sqlite:///{tmp}/felis.db"
        docs = load_file(ROOT / "examples" / "memcached-seed.yaml")
        open_datastore(url).apply([to_dict(d) for d in docs])
        for backend in ("nftables", "iptables"):
            values = windows(backend, args.rounds, url)
            print(
                f"{backend}: unprotected after `nft flush ruleset`, {len(values)} rounds: "
                f"median {statistics.median(values) * 1000:.0f} ms, "
                f"max {max(values) * 1000:.0f} ms"
            )


if __name__ == "__main__":
    main()
