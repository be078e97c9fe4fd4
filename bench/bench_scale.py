"""Agent memory and CPU at scale: 5,000 HostEndpoints, 1,000 policies, 100,000 set members.

The workload is bench/workloads.py's `scale_cluster` in an embedded SQLite datastore: one policy
in ten selects the node, and every GlobalNetworkSet is in one of its IP sets, so the kernel holds
all 100,000 members (about 1,000 rules per family). A real `felis agent` runs in its own network
namespace with its default settings (a quick drift check every 30 s, the full one, every set
member compared, every 180 s with nftables and 90 s with iptables; kernel events on). Measured on
the agent's process, from /proc/PID/status (VmRSS, VmHWM; the peak is reset through
/proc/PID/clear_refs before each phase) and /proc/PID/stat (utime + stime; its commands' CPU is
counted apart: reaped ones through cutime + cstime, running ones, such as `nft monitor`, from
their own stat):

1. start: process start → first sync (kernel programmed), peak RSS and CPU seconds;
2. at rest: `--rest` seconds (360: two full nftables checks, four iptables ones) with nothing
   changing, from `--settle` seconds after the sync; RSS each second, CPU as % of one core, the
   seconds the CPU went into (the busiest, split into the agent's own and its commands'), and
   the seconds with a drift check in them told from the quiet ones;
2b. at rest, the way before quick checks: `--rest-old` seconds (120; 0 skips it) with a
   FelixConfiguration `default` setting both refresh intervals to 30 s, so that every check is
   a full one, in the same agent right after phase 2 (the object is deleted afterwards);
3. full resync through the datastore: one transaction rewrites every object (a label on every
   endpoint, a port in every policy rule, every set's members) plus a marker policy last; timed
   until the marker's chain is in the kernel; then at rest again;
4. restart: `felis agent --once` in the same namespace (the kernel already programmed), CPU and
   peak RSS from wait4;
5. where the memory goes: a fresh interpreter repeats the agent's steps (imports, listing,
   decoding, calculation, rendering) and prints its RSS after each.

Run (root): .venv/bin/python bench/bench_scale.py [--rest 360] [--rest-old 120] [--no-resync]
[--rest-only] [--backend nftables]. The agent is `python -m felis` of this interpreter, so
PYTHONPATH=<another checkout>/src measures another version's agent in the same conditions.
Results go into docs/benchmarks.md by hand, with the command and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workloads import agent_in_namespace, scale_cluster

NODE = "bench-node"
SERVER_IP = "198.18.0.1"
TICK = os.sysconf("SC_CLK_TCK")
MARKER = "resync-marker"
MARKER_CHAIN = {
    "nftables": ["nft", "list", "chain", "ip", "felis", f"filter-felis-pi-{MARKER}"],
    "iptables": ["iptables", "-t", "filter", "-S", f"felis-pi-{MARKER}"],
}


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return out


def _cpu(pid: int) -> dict[str, float]:
    """CPU seconds: the agent itself, its commands that ended, its commands still running."""
    fields = _stat(pid)
    running = 0.0
    for child in _children(pid):
        try:
            child_fields = _stat(child)
        except OSError:
            continue
        running += sum(int(v) for v in child_fields[11:15]) / TICK
    return {
        "own": (int(fields[11]) + int(fields[12])) / TICK,
        "ended": (int(fields[13]) + int(fields[14])) / TICK,
        "running": running,
    }


def _total(cpu: dict[str, float]) -> float:
    return sum(cpu.values())


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _seed(url: str) -> list[dict[str, object]]:
    from felis.datastore import open_datastore
    from felis.model import from_dict, to_dict

    store = open_datastore(url)
    objects = [to_dict(from_dict(o, "bench")) for o in scale_cluster(NODE, SERVER_IP)]
    for start in range(0, len(objects), 500):
        store.apply(objects[start : start + 500])
    return objects


def _touch_everything(objects: list[dict[str, object]]) -> list[dict[str, object]]:
    """Every object rewritten: a label on each endpoint, every rule port moved, every set's
    members moved by one address; then a marker policy selecting the node."""
    out: list[dict[str, object]] = []
    for obj in json.loads(json.dumps(objects)):
        kind, spec = obj["kind"], obj["spec"]
        if kind == "HostEndpoint":
            obj["metadata"]["labels"]["generation"] = "2"
        elif kind == "GlobalNetworkPolicy":
            for rule in spec.get("ingress", []):
                if "ports" in rule.get("destination", {}):
                    rule["destination"]["ports"] = [8080, 8443]
        elif kind == "GlobalNetworkSet":
            spec["nets"] = [_next_address(net) for net in spec["nets"]]
        out.append(obj)
    out.append(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": MARKER},
            "spec": {
                "order": 5000.0,
                "selector": "role == 'server'",
                "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [9]}}],
            },
        }
    )
    return out


def _next_address(net: str) -> str:
    address = net.split("/", maxsplit=1)[0]
    a, b, c, d = (int(x) for x in address.split("."))
    value = (a << 24 | b << 16 | c << 8 | d) + 1
    return ".".join(str(value >> shift & 255) for shift in (24, 16, 8, 0))


def _in_ns(ns: str, argv: list[str]) -> bool:
    proc = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, check=False)
    return proc.returncode == 0


CHECK_CPU_S = 0.04
"""A second using more CPU than this holds a drift check (quiet seconds use a few ms)."""


def _rest(pid: int, seconds: int, settle: float) -> dict[str, object]:
    # `nft monitor` is still printing the last big transaction for a moment after it: that
    # belongs to the change, not to rest.
    time.sleep(settle)
    _reset_peak(pid)
    rss: list[int] = []
    per_second: list[dict[str, float]] = []
    began = _cpu(pid)
    previous = began
    started = time.monotonic()
    for second in range(1, seconds + 1):
        # Sampling once a second of wall time: the measurement, not a synchronisation.
        time.sleep(max(0.0, started + second - time.monotonic()))
        rss.append(_status(pid)["VmRSS"])
        now = _cpu(pid)
        per_second.append({k: round(now[k] - previous[k], 2) for k in now} | {"at": second})
        previous = now
    elapsed = time.monotonic() - started
    ended = _cpu(pid)

    def used(sample: dict[str, float]) -> float:
        return sample["own"] + sample["ended"] + sample["running"]

    busy = sorted(per_second, key=used, reverse=True)
    quiet = [used(s) for s in per_second if used(s) < CHECK_CPU_S]
    # A check's CPU can straddle two seconds; adjacent busy seconds are one check.
    checks: list[dict[str, float]] = []
    for sample in per_second:
        if used(sample) < CHECK_CPU_S:
            continue
        if checks and sample["at"] - checks[-1]["last"] == 1:
            checks[-1]["cpu_s"] = round(checks[-1]["cpu_s"] + used(sample), 2)
            checks[-1]["last"] = sample["at"]
        else:
            checks.append(
                {"at": sample["at"], "last": sample["at"], "cpu_s": round(used(sample), 2)}
            )
    return {
        "seconds": round(elapsed, 1),
        "rss_mib": {"min": min(rss), "median": statistics.median(rss), "max": max(rss)},
        "peak_mib": _status(pid)["VmHWM"],
        "cpu_percent_total": round(100 * (_total(ended) - _total(began)) / elapsed, 2),
        "cpu_percent_own": round(100 * (ended["own"] - began["own"]) / elapsed, 2),
        "cpu_seconds_by_part": {k: round(ended[k] - began[k], 2) for k in ended},
        "busiest_seconds": busy[:4],
        "cpu_outside_busiest_4_s": round(sum(used(s) for s in busy[4:]), 2),
        "checks": [{"at": c["at"], "cpu_s": c["cpu_s"]} for c in checks],
        "quiet_seconds": len(quiet),
        "quiet_cpu_percent": round(100 * sum(quiet) / max(1, len(quiet)), 2),
    }


def _refresh_every_check(url: str, on: bool) -> None:
    """Phase 2b's FelixConfiguration: both full-check periods 30 s (the refresh interval), so
    every drift check reads every member, as before quick checks; deleted again after it."""
    from felis.datastore import open_datastore

    store = open_datastore(url)
    if on:
        spec = {"ipsetsRefreshInterval": "30s", "nftablesRefreshInterval": "30s"}
        config = {
            "apiVersion": "projectcalico.org/v3",
            "kind": "FelixConfiguration",
            "metadata": {"name": "default"},
            "spec": spec,
        }
        store.apply([config])
    else:
        store.delete("FelixConfiguration", "default")


def _resync(url: str, pid: int, ns: str, backend: str, objects: list[dict[str, object]]) -> dict:
    from felis.datastore import open_datastore

    changed = _touch_everything(objects)
    _reset_peak(pid)
    before = _cpu(pid)
    began = time.monotonic()
    open_datastore(url).apply(changed)
    deadline = began + 300
    while not _in_ns(ns, MARKER_CHAIN[backend]):
        if time.monotonic() > deadline:
            raise RuntimeError("the marker policy never reached the kernel")
        time.sleep(0.05)  # polling the kernel, with a deadline
    elapsed = time.monotonic() - began
    after = _cpu(pid)
    status = _status(pid)
    return {
        "seconds": round(elapsed, 2),
        "cpu_seconds_total": round(_total(after) - _total(before), 2),
        "cpu_seconds_own": round(after["own"] - before["own"], 2),
        "peak_mib": status["VmHWM"],
        "rss_after_mib": status["VmRSS"],
    }


def _restart(url: str, ns: str, backend: str) -> dict:
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "felis", "agent", "--once"]
    argv += ["--node", NODE, "--backend", backend, "--datastore", url]
    began = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"agent --once failed: {err.decode()[-500:]}")
    return {
        "seconds": round(time.monotonic() - began, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_mib_largest_process": usage.ru_maxrss // 1024,
    }


def _breakdown(url: str, backend: str) -> None:
    """Child mode: the agent's steps in this fresh interpreter, RSS after each (MiB)."""

    def rss() -> int:
        gc.collect()
        return _status(os.getpid())["VmRSS"]

    steps = [("interpreter", rss())]
    from felis.agent.agent import Agent  # noqa: F401  (what the agent command loads)
    from felis.calc import CalcConfig, Calculator, HostInterface
    from felis.dataplane import iptables, nftables
    from felis.datastore import open_datastore
    from felis.model import from_dict

    steps.append(("imports", rss()))
    listing = open_datastore(url).list()
    steps.append(("store.list() (JSON objects)", rss()))
    resources = [from_dict(obj, "datastore") for obj in listing.items]
    steps.append(("decoded resources", rss()))
    del listing
    steps.append(("JSON objects dropped", rss()))
    calc = Calculator(NODE, CalcConfig())
    for resource in resources:
        calc.upsert(resource)
    calc.set_interfaces([HostInterface("eth0", (f"{SERVER_IP}/24",))])
    steps.append(("calculator filled", rss()))
    spec = calc.result().spec
    steps.append(("spec computed", rss()))
    if backend == "nftables":
        texts = [nftables.render_full(r) for r in spec.rulesets.values()]
    else:
        texts = [iptables.render_full(r).restore for r in spec.rulesets.values()]
    steps.append((f"{backend} text rendered ({sum(map(len, texts)) // 1024} KiB)", rss()))
    del resources
    steps.append(("decoded resources dropped (the calculator keeps its own)", rss()))
    print(json.dumps(steps))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rest", type=int, default=360)
    parser.add_argument("--rest-old", type=int, default=120)
    parser.add_argument(
        "--no-resync", action="store_true", help="skip phase 3 and the rest after it"
    )
    parser.add_argument("--rest-only", action="store_true", help="phases 1 and 2 (and 2b) only")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--backend", choices=["nftables", "iptables", "both"], default="both")
    parser.add_argument("--breakdown-child", nargs=2, metavar=("URL", "BACKEND"))
    args = parser.parse_args()
    if args.breakdown_child:
        _breakdown(*args.breakdown_child)
        return
    if os.geteuid() != 0:
        sys.exit("bench_scale: needs root (network namespaces)")
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"# {dt.date.today()} {platform.python_version()} {platform.machine()} load {load}")
    backends = ["nftables", "iptables"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="felis-bench-") as tmp:
            url = f"sqlite:///{tmp}/felis.db"
            objects = _seed(url)
            log = Path(tmp) / "agent.log"
            with agent_in_namespace(NODE, SERVER_IP, url, backend, log=log) as agent:
                pid = agent.process.pid
                result: dict[str, object] = {
                    "backend": backend,
                    "start": {
                        "synced_after_s": round(agent.synced_after, 2),
                        "peak_mib": _status(pid)["VmHWM"],
                        "rss_mib": _status(pid)["VmRSS"],
                        "cpu_seconds": {k: round(v, 2) for k, v in _cpu(pid).items()},
                    },
                }
                result["rest"] = _rest(pid, args.rest, args.settle)
                if args.rest_old:
                    _refresh_every_check(url, on=True)
                    result["rest_every_check_full"] = _rest(pid, args.rest_old, args.settle)
                    _refresh_every_check(url, on=False)
                if not (args.no_resync or args.rest_only):
                    result["resync"] = _resync(url, pid, agent.ns, backend, objects)
                    result["rest_after_resync"] = _rest(pid, args.rest, args.settle)
                if not args.rest_only:
                    result["restart_once"] = _restart(url, agent.ns, backend)
                if agent.process.poll() is not None:
                    raise RuntimeError("the agent ended during the benchmark")
            lines = log.read_text().splitlines()
            result["agent_log"] = {
                "errors": [line for line in lines if " ERROR " in line][:5],
                "warnings": [line[:300] for line in lines if " WARNING " in line][:5],
                "writes": [line[:200] for line in lines if ": " in line and " ms)" in line],
            }
            if not args.rest_only:
                child = [sys.executable, __file__, "--breakdown-child", url, backend]
                steps = json.loads(subprocess.run(child, capture_output=True, check=True).stdout)
                result["memory_steps_mib"] = steps
            print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
