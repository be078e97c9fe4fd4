"""Load + validate throughput of GlobalNetworkPolicies from one multi-document YAML stream.

Each generated policy has a selector with `&&` and `in`, an order, doNotTrack, and three
rules with selectors, nets, notNets, single ports and a port range; every selector is
distinct, as in a real policy set. Reports wall-clock and process CPU time, best and median
of several runs (CPU time is the fairer figure on a shared, busy machine).

    .venv/bin/python bench/bench_model.py [--policies 5000] [--runs 5]
"""

from __future__ import annotations

import argparse
import time

import yaml

from felis.model import load_documents
from felis.model.yamlsafe import Limits


def policy(i: int) -> str:
    return f"""apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: policy-{i}
  labels:
    team: t{i % 7}
spec:
  order: {i % 100}
  selector: app == 'svc-{i}' && tier in {{"web", "api"}}
  applyOnForward: true
  doNotTrack: true
  ingress:
    - action: Allow
      protocol: TCP
      source:
        selector: role == 'client-{i}'
        nets: [10.{i % 256}.0.0/16, 192.168.{i % 256}.0/24]
      destination:
        ports: [80, 443, "8000:8100"]
    - action: Deny
      protocol: UDP
      source:
        notNets: [172.16.0.0/12]
      destination:
        ports: [53]
  egress:
    - action: Allow
      protocol: TCP
      source:
        ports: [80, 443]
      destination:
        selector: role == 'client-{i}'
        nets: [10.{i % 256}.0.0/16]
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policies", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    texts = [
        "---\n".join(policy(i + run * args.policies) for i in range(args.policies)).encode()
        for run in range(args.runs)
    ]
    limits = Limits(max_bytes=max(len(texts[0]) + 1, Limits().max_bytes))
    wall: list[float] = []
    cpu: list[float] = []
    for data in texts:
        # Each run has its own names and selectors, so no run profits from an earlier one's caches.
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        resources = load_documents(data, "bench.yaml", limits=limits)
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
        assert len(resources) == args.policies
    # The floor on the same machine at the same moment: PyYAML's libyaml loader, parse only.
    floor: list[float] = []
    for data in texts:
        start = time.process_time()
        list(yaml.load_all(data, Loader=yaml.CSafeLoader))
        floor.append(time.process_time() - start)
    print(f"policies per run: {args.policies}  bytes: {len(texts[0])}  runs: {args.runs}")
    rows = (("wall", wall), ("cpu", cpu), ("yaml.CSafeLoader parse only, cpu", floor))
    for label, times in rows:
        best, median = min(times), sorted(times)[len(times) // 2]
        print(
            f"{label:4}: best {best:.3f} s = {args.policies / best:,.0f} policies/s; "
            f"median {median:.3f} s = {args.policies / median:,.0f} policies/s"
        )


if __name__ == "__main__":
    main()
