"""SIGKILL the agent while it applies a large change, read the kernel back, judge what is left.

Shared by `test_crash_consistency.py` (a few kills per backend in the suite) and
`bench/bench_crash.py` (`--kills 100`). The datastore holds one of two versions of a large
ruleset, A and B (`workload`): policies selecting the node whose rules all change between the
versions, some of them doNotTrack (raw) or preDNAT (mangle), a few only in one version (chains
created and deleted), and GlobalNetworkSets whose members are half rewritten. `felis agent
--once` is started towards one version and killed at a random moment after its first kernel
write command started; then the kernel is read back the way the dataplane reads it and compared
with the state an uninterrupted apply leaves for A and for B (`judge`).

Two ways to kill, alternated:
* `agent`: SIGKILL to the agent alone (the OOM killer, `kill -9 PID`). A write command it had
  started runs on (with its whole input: felis hands input over in a file, not a pipe); the
  kernel is read once it ended.
* `group`: SIGKILL to the agent and the command it is running (a cgroup kill, `systemctl kill`).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import wait_until
from node import NODE, SERVER_IP, FelisNode

from felis.dataplane import iptables
from felis.dataplane.ipset import parse_ipset_save
from felis.dataplane.nftables_readback import parse_nft_json
from felis.dataplane.spec import NFT_TABLE, Family
from felis.datastore import Datastore, open_datastore
from felis.model import from_dict, to_dict

VERSIONS = ("A", "B")
FOREIGN_NET = "198.18.99.0/24"
"""Foreign rules match only this range, which no test traffic uses."""
WRITE_DEADLINE = 180.0
"""How long an agent may take to start writing, or to finish, on a loaded machine."""


@dataclass(frozen=True)
class Scale:
    policies: int = 250
    """Policies selecting the node; 250 give 9,296 rules per family."""
    rules: int = 10
    """Ingress rules per policy (egress: half as many)."""
    sets: int = 8
    members: int = 4_000
    """Addresses per GlobalNetworkSet (a tenth in one set of four); half of them differ
    between A and B."""


# -------------------------------------------------------------------------------------------
# The two versions of the datastore.


def workload(version: str, scale: Scale) -> list[dict[str, Any]]:
    """The objects of version A or B: every policy rule's port differs between them, the sets'
    members are shifted by half, and the last 5 policies exist in one version only."""
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "HostEndpoint",
            "metadata": {"name": f"{NODE}-eth0", "labels": {"role": "server"}},
            "spec": {"node": NODE, "interfaceName": "eth0", "expectedIPs": [SERVER_IP]},
        }
    ]
    for j in range(scale.sets):
        # Most sets are runs of adjacent addresses, which the nft renderer rewrites whole
        # (`flush set` + every element); one in four holds every other address, a tenth as
        # many, which it changes element by element (the cost of that grows with the product
        # of the set's size and the change's, so it stays small here).
        spaced = j % 4 == 3
        count = scale.members // 10 if spaced else scale.members
        step = 2 if spaced else 1
        shift = 0 if version == "A" else count // 2
        nets = [
            f"10.{j}.{step * i // 256 % 256}.{step * i % 256}" for i in range(shift, shift + count)
        ]
        objects.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "GlobalNetworkSet",
                "metadata": {"name": f"crash-set-{j}", "labels": {"crashset": f"s{j}"}},
                "spec": {"nets": nets},
            }
        )
    first_port = 1000 if version == "A" else 31000
    for i in range(scale.policies):
        own = i >= scale.policies - 5
        name = f"crash-{version.lower()}-{i}" if own else f"crash-{i}"
        untracked, pre_dnat = i % 5 == 0, i % 7 == 0 and i % 5 != 0
        spec: dict[str, Any] = {"order": float(i), "selector": "role == 'server'"}
        if untracked or pre_dnat:
            spec["applyOnForward"] = True
            spec["doNotTrack" if untracked else "preDNAT"] = True
        spec["ingress"] = [
            {
                "action": "Allow",
                "protocol": "TCP",
                "source": {"selector": f"crashset == 's{(i + r) % scale.sets}'"},
                "destination": {"ports": [first_port + (i * scale.rules + r) % 20_000]},
            }
            for r in range(scale.rules)
        ]
        if not pre_dnat:
            spec["egress"] = [
                {
                    "action": "Allow",
                    "protocol": "UDP",
                    "destination": {
                        "selector": f"crashset == 's{(i + r) % scale.sets}'",
                        "ports": [first_port + r],
                    },
                }
                for r in range(scale.rules // 2)
            ]
        objects.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": name},
                "spec": spec,
            }
        )
    return [to_dict(from_dict(obj, "crash workload")) for obj in objects]


def store_version(store: Datastore, version: str, scale: Scale) -> None:
    """Make the datastore hold exactly `version` (two transactions: nothing runs meanwhile)."""
    objects = workload(version, scale)
    wanted = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    store.apply(objects)
    stale = [
        (str(obj["kind"]), str(obj["metadata"]["name"]))
        for obj in store.list().items
        if obj["kind"] in ("GlobalNetworkPolicy", "GlobalNetworkSet", "HostEndpoint")
        and (obj["kind"], obj["metadata"]["name"]) not in wanted
    ]
    if stale:
        store.delete_all(stale)


# -------------------------------------------------------------------------------------------
# Foreign rules: other programs' objects next to felis' (they must never change).

_IPTABLES_FOREIGN = {
    "iptables": [
        ["ipset", "create", "foreign-set", "hash:ip"],
        ["ipset", "add", "foreign-set", "198.18.99.5"],
        ["iptables", "-t", "filter", "-N", "foreign-chain"],
        ["iptables", "-t", "filter", "-A", "foreign-chain", "-m", "set", "--match-set",
         "foreign-set", "src", "-j", "ACCEPT"],
        ["iptables", "-t", "filter", "-A", "INPUT", "-s", FOREIGN_NET, "-j", "foreign-chain"],
        ["iptables", "-t", "raw", "-A", "PREROUTING", "-s", FOREIGN_NET, "-j", "CT",
         "--notrack"],
        ["iptables", "-t", "mangle", "-A", "POSTROUTING", "-d", FOREIGN_NET, "-j", "RETURN"],
        ["ip6tables", "-t", "filter", "-A", "INPUT", "-s", "2001:db8:99::/64", "-j", "ACCEPT"],
    ],
}  # fmt: skip

_NFT_FOREIGN = """
table inet foreign {
    set fset { type ipv4_addr; elements = { 198.18.99.5 } }
    chain input {
        type filter hook input priority 10; policy accept;
        ip saddr @fset counter accept
    }
}
table ip felisfriend {
    chain felis-lookalike {
        ip saddr 198.18.99.7 drop
    }
}
"""


def add_foreign(node: FelisNode) -> None:
    """Another program's rules, chains and sets in the server's firewall, through the same
    tools the backend uses (iptables-nft and ipset, or nft)."""
    if node.backend == "nftables":
        node.topo.exec(node.server, ["nft", "-f", "-"], input_text=_NFT_FOREIGN)
        return
    for argv in _IPTABLES_FOREIGN["iptables"]:
        node.topo.exec(node.server, argv)


# -------------------------------------------------------------------------------------------
# The kernel, read back.


@dataclass(frozen=True)
class KernelView:
    """What felis owns, as the dataplane reads it back, in comparable form.

    `units` are the smallest pieces one kernel transaction writes: for iptables each table of
    each family (`IPv4 filter`); for nftables each layer of each family's table (all of them
    written by one transaction). A unit maps each chain to its rule hashes: felis chains
    whole, the kernel's own chains only with felis' hook rules (other rules are `foreign`).
    """

    units: Mapping[str, Mapping[str, tuple[str | None, ...]]]
    sets: Mapping[str, frozenset[str]]
    """felis' sets, `IPv4 <name>`."""
    foreign: str
    """Everything not felis', normalised (counters and handles left out)."""
    dangling: tuple[str, ...]
    """Jumps to a chain, or lookups in a set, that does not exist."""


_BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
_TARGET = re.compile(r"(?:^|\s)-[jg] (felis-\S+)")
_MATCH_SET = re.compile(r"--match-set (\S+)")


def _read_iptables(node: FelisNode) -> KernelView:
    units: dict[str, dict[str, tuple[str | None, ...]]] = {}
    foreign: list[str] = []
    dangling: list[str] = []
    saved_sets = node.topo.exec(node.server, ["ipset", "save"]).stdout
    set_names = {line.split()[1] for line in saved_sets.splitlines() if line.startswith("create")}
    for family, tool in ((Family.V4, "iptables-save"), (Family.V6, "ip6tables-save")):
        tables = iptables.parse_iptables_save(node.topo.exec(node.server, [tool]).stdout)
        for table, state in sorted(tables.items()):
            unit = units.setdefault(f"IPv{int(family)} {table.value}", {})
            for name, chain in sorted(state.chains.items()):
                if name.startswith("felis-"):
                    unit[name] = chain.hashes
                else:
                    ours = tuple(h for h in chain.hashes if h is not None)
                    if ours:
                        unit[name] = ours
                    theirs = [f"  {rule.text}" for rule in chain.rules if rule.hash is None]
                    # A built-in chain appears with its table; only its rules are someone's.
                    if theirs or name not in _BUILTIN_CHAINS:
                        foreign += [f"IPv{int(family)} {table.value} chain {name}", *theirs]
                for rule in chain.rules:
                    if rule.hash is None and name.startswith("felis-"):
                        continue  # a stranger in our chain: the hashes already differ
                    for target in _TARGET.findall(rule.text):
                        if target not in state.chains:
                            dangling.append(f"{table.value}/{name} jumps to missing {target}")
                    for ipset in _MATCH_SET.findall(rule.text):
                        if ipset not in set_names:
                            dangling.append(f"{table.value}/{name} uses missing set {ipset}")
    sets = {
        f"IPv{int(state.family)} {name}": state.members
        for name, state in parse_ipset_save(saved_sets).items()
        if name.startswith("felis")
    }
    foreign += sorted(
        line
        for line in saved_sets.splitlines()
        if line.split()[1:2] and not line.split()[1].startswith("felis")
    )
    return KernelView(units, sets, "\n".join(foreign), tuple(dangling))


def _walk(value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _read_nftables(node: FelisNode) -> KernelView:
    text = node.topo.exec(node.server, ["nft", "-j", "list", "ruleset"]).stdout
    foreign: list[Any] = []
    ours: dict[str, list[Any]] = {"ip": [], "ip6": []}
    for item in json.loads(text).get("nftables", []):
        kind, obj = next(iter(item.items()))
        if kind == "metainfo":
            continue
        if obj.get("table", obj.get("name")) == NFT_TABLE and obj.get("family") in ours:
            ours[obj["family"]].append(item)
            continue
        obj = {k: v for k, v in obj.items() if k != "handle"}
        if kind == "rule":
            obj["expr"] = [e for e in obj["expr"] if "counter" not in e]
        foreign.append({kind: obj})
    units: dict[str, dict[str, tuple[str | None, ...]]] = {}
    sets: dict[str, frozenset[str]] = {}
    dangling = []
    for family, fam in ((Family.V4, "ip"), (Family.V6, "ip6")):
        # The dataplane's own read-back, given only this family's table.
        state = parse_nft_json(json.dumps({"nftables": ours[fam]}), family)
        for table, layer in sorted(state.tables.items()):
            units[f"IPv{int(family)} {table.value}"] = {
                name: chain.hashes for name, chain in sorted(layer.chains.items())
            }
        if state.stray_chains:
            units[f"IPv{int(family)} stray"] = dict.fromkeys(state.stray_chains, ())
        sets.update({f"IPv{int(family)} {name}": s.members for name, s in state.sets.items()})
        kinds: dict[str, set[str]] = {"chain": set(), "set": set()}
        for item in ours[fam]:
            kind, obj = next(iter(item.items()))
            kinds.setdefault(kind, set()).add(obj.get("name", ""))
        for item in ours[fam]:
            rule = item.get("rule")
            if rule is None:
                continue
            where = f"{fam} {rule['chain']}"
            for key, value in _walk(rule["expr"]):
                if key in ("jump", "goto") and value["target"] not in kinds["chain"]:
                    dangling.append(f"{where} jumps to missing {value['target']}")
                is_set = isinstance(value, str) and value.startswith("@")
                if is_set and value[1:] not in kinds["set"]:
                    dangling.append(f"{where} uses missing set {value}")
    return KernelView(units, sets, json.dumps(foreign, sort_keys=True), tuple(dangling))


def read_kernel(node: FelisNode) -> KernelView:
    return _read_nftables(node) if node.backend == "nftables" else _read_iptables(node)


# -------------------------------------------------------------------------------------------
# Judging one read-back against the two versions.


@dataclass
class Verdict:
    versions: dict[str, str] = field(default_factory=dict)
    """Per transaction unit (nftables: `nft`, the whole of both families), `A`, `B`, `A=B`
    (the versions agree on it), `A+empty` / `B+empty` (iptables: a table whose obsolete chains
    are flushed and unreferenced but not yet deleted: that is a second transaction), or
    `neither`."""
    violations: list[str] = field(default_factory=list)
    mixed_sets: list[str] = field(default_factory=list)
    """iptables sets caught between A's and B's members: every member the two versions share
    is present, nothing outside their union is (see docs/dataplane.md, What is atomic)."""

    def state(self) -> str:
        """One word for the whole kernel: A, B, or mixed."""
        seen = {v.split("+")[0] for v in self.versions.values() if v != "A=B"}
        if self.mixed_sets or "neither" in seen:
            return "mixed"
        return seen.pop() if len(seen) == 1 else ("A=B" if not seen else "mixed")


def _chain_diff(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    return sorted(name for name in set(have) | set(want) if have.get(name) != want.get(name))


def _unit_version(
    have: Mapping[str, tuple[str | None, ...]],
    refs: Mapping[str, Mapping[str, tuple[str | None, ...]]],
    *,
    allow_empty_leftovers: bool,
) -> str:
    a, b = refs["A"], refs["B"]
    if have == a and have == b:
        return "A=B"
    for version in VERSIONS:
        if have == refs[version]:
            return version
    if allow_empty_leftovers:
        for version in VERSIONS:
            want = refs[version]
            extra = {n: h for n, h in have.items() if n not in want}
            rest = {n: h for n, h in have.items() if n in want}
            if rest == want and extra and all(h == () for h in extra.values()):
                return f"{version}+empty"
    return "neither"


def judge(view: KernelView, refs: Mapping[str, KernelView], foreign: str, backend: str) -> Verdict:
    """Every transaction unit holds A's or B's state, no jump or set lookup dangles, the
    foreign objects are as they were, and (nftables) sets belong to the same transaction as
    the chains; iptables sets are judged one by one (`ipset restore` is not a transaction)."""
    verdict = Verdict()
    names = sorted({*view.units, *refs["A"].units, *refs["B"].units})
    if backend == "nftables":
        whole = {"units": dict(view.units), "sets": dict(view.sets)}
        ref = {v: {"units": dict(refs[v].units), "sets": dict(refs[v].sets)} for v in VERSIONS}
        found = [v for v in VERSIONS if whole == ref[v]]
        verdict.versions["nft"] = "+".join(found) if found else "neither"
        if not found:
            for unit in names:
                have = view.units.get(unit, {})
                diff = {v: _chain_diff(have, refs[v].units.get(unit, {})) for v in VERSIONS}
                if all(diff.values()):
                    verdict.violations.append(
                        f"{unit}: neither A nor B ({len(diff['A'])} chains differ from A, "
                        f"{len(diff['B'])} from B, e.g. {diff['B'][:3]})"
                    )
            for name in sorted({*view.sets, *refs["A"].sets, *refs["B"].sets}):
                have_set = view.sets.get(name)
                if all(have_set != refs[v].sets.get(name) for v in VERSIONS):
                    verdict.violations.append(f"set {name}: neither A's nor B's members")
            if not verdict.violations:
                verdict.violations.append("one nft transaction left chains of A and sets of B")
    else:
        for unit in names:
            per_version = {v: refs[v].units.get(unit, {}) for v in VERSIONS}
            have = view.units.get(unit, {})
            version = _unit_version(have, per_version, allow_empty_leftovers=True)
            verdict.versions[unit] = version
            if version == "neither":
                diff = {v: _chain_diff(have, per_version[v]) for v in VERSIONS}
                verdict.violations.append(
                    f"{unit}: neither A nor B ({len(diff['A'])} chains differ from A, "
                    f"{len(diff['B'])} from B, e.g. {diff['B'][:3]})"
                )
        for name in sorted({*view.sets, *refs["A"].sets, *refs["B"].sets}):
            have_set, a, b = view.sets.get(name), refs["A"].sets.get(name), refs["B"].sets.get(name)
            if have_set in (a, b):
                continue
            if (
                have_set is not None
                and a is not None
                and b is not None
                and a & b <= have_set <= a | b
            ):
                verdict.mixed_sets.append(
                    f"{name}: {len(have_set & (a - b))} of A's {len(a - b)} own members "
                    f"left, {len(have_set & (b - a))} of B's {len(b - a)} added"
                )
                continue
            verdict.violations.append(f"set {name}: outside both A and B")
    verdict.violations += [f"dangling: {d}" for d in view.dangling]
    if view.foreign != foreign:
        verdict.violations.append("foreign rules, chains or sets changed")
    return verdict


# -------------------------------------------------------------------------------------------
# The agent's process and the commands it runs.


def _writer(argv: list[str]) -> str | None:
    """The kernel write a command is, or None for reads (`nft -j list`, `iptables-save`)."""
    if not argv:
        return None
    name = Path(argv[0]).name
    if name == "nft" and "-f" in argv:
        return "nft -f"
    if name == "ipset" and "restore" in argv:
        return "ipset restore"
    if name in ("iptables-restore", "ip6tables-restore"):
        return name
    return None


def _running_writers(pid: int) -> list[str]:
    """The write commands `pid` is running now (children of any of its threads)."""
    out = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                raw = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            what = _writer([part.decode() for part in raw.split(b"\0") if part])
            if what is not None:
                out.append(what)
    return sorted(out)


def _group_alive(pgid: int) -> bool:
    """Whether any live process is left in the process group (zombies do not count)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class AgentRun:
    returncode: int | None
    """None when killed."""
    write_window: float | None = None
    """Seconds from the first write command's start to the agent's exit (uninterrupted runs)."""
    during: str = ""
    """What ran at the kill: the write commands, `between writes`, or `after exit`."""
    output: str = ""


def _spawn_agent(node: FelisNode) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "felis", "agent", "--node", NODE, "--once"]
    argv += ["--backend", node.backend, "--datastore", node.datastore, "--log-level", "warning"]
    return node.topo.spawn(node.server, argv)


def _first_write(proc: subprocess.Popen[str]) -> float | None:
    """When the agent's first write command was seen running (None: it ended first)."""
    deadline = time.monotonic() + WRITE_DEADLINE
    while time.monotonic() < deadline:
        if _running_writers(proc.pid):
            return time.monotonic()
        if proc.poll() is not None:
            return None
        time.sleep(0.001)  # polling the process table, with a deadline
    raise AssertionError(f"the agent wrote nothing within {WRITE_DEADLINE:.0f}s")


def run_agent(node: FelisNode, *, kill_after: float | None = None, mode: str = "group") -> AgentRun:
    """`felis agent --once`; with `kill_after`, SIGKILLed that many seconds after its first
    write command started (`mode` `agent` or `group`), and returned once every command it
    started has ended."""
    proc = _spawn_agent(node)
    began = _first_write(proc)
    if kill_after is None or began is None:
        out, err = proc.communicate(timeout=WRITE_DEADLINE)
        window = time.monotonic() - began if began is not None else None
        run = AgentRun(proc.returncode, window, "no write" if began is None else "", out + err)
        if proc.returncode != 0:
            raise AssertionError(f"felis agent --once failed ({proc.returncode}): {err[-2000:]}")
        return run
    time.sleep(kill_after)  # the random kill moment itself, not a wait for anything
    writers = _running_writers(proc.pid)
    alive = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
        if mode == "group":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # Commands the agent left behind keep running (agent mode) or are being torn down.
    wait_until(lambda: not _group_alive(proc.pid), timeout=60, what="the agent's commands to end")
    if proc.stdout is not None:
        proc.stdout.close()
    if proc.stderr is not None:
        proc.stderr.close()
    during = " + ".join(writers) if writers else ("between writes" if alive else "after exit")
    return AgentRun(None if alive else proc.returncode, during=during)


# -------------------------------------------------------------------------------------------
# A whole run: references, kills, recovery.


@dataclass
class KillRecord:
    target: str
    mode: str
    delay: float
    during: str
    verdict: Verdict


@dataclass
class CrashRun:
    node: FelisNode
    scale: Scale = field(default_factory=Scale)
    seed: int = 13
    refs: dict[str, KernelView] = field(default_factory=dict)
    foreign: str = ""
    window: float = 0.0
    """Seconds an uninterrupted apply A → B spends from its first write to its exit."""
    kills: list[KillRecord] = field(default_factory=list)
    final: str = "B"
    """The version the datastore holds after the kills."""
    converged: Verdict | None = None

    def __post_init__(self) -> None:
        self.store = open_datastore(self.node.datastore)
        self.rng = random.Random(self.seed)

    def prepare(self) -> None:
        """Foreign rules, then the reference states of A and B (kernel left at B)."""
        add_foreign(self.node)
        self.foreign = read_kernel(self.node).foreign
        for version in VERSIONS:
            store_version(self.store, version, self.scale)
            run = run_agent(self.node)
            self.refs[version] = read_kernel(self.node)
            if version == "B":
                assert run.write_window is not None
                self.window = run.write_window
        for version, view in self.refs.items():
            assert not view.dangling, f"{version}: {view.dangling}"
            assert view.foreign == self.foreign, f"{version} changed foreign rules"
            assert view.units and view.sets, f"{version}: felis programmed nothing"
        differing = [
            u
            for u in self.refs["A"].units
            if self.refs["A"].units[u] != self.refs["B"].units.get(u)
        ]
        assert len(differing) >= 3, f"A and B differ in too few tables: {differing}"

    def kill(self, count: int) -> None:
        """`count` kills, alternating the way of killing; each kill moment is uniform over the
        write window, except that one in four (always a group kill) falls in its first
        twentieth, where iptables' `ipset restore` runs. The target is always the version the
        kernel does not hold (either, when it holds some of both), so every agent has work."""
        state = "B"
        for index in range(count):
            target = {"A": "B", "B": "A"}.get(state) or self.rng.choice(VERSIONS)
            store_version(self.store, target, self.scale)
            mode = ("agent", "group")[index % 2]
            early = index % 4 == 3
            delay = self.rng.uniform(0.0, self.window / 20 if early else self.window)
            run = run_agent(self.node, kill_after=delay, mode=mode)
            verdict = judge(read_kernel(self.node), self.refs, self.foreign, self.node.backend)
            self.kills.append(KillRecord(target, mode, delay, run.during, verdict))
            self.final, state = target, verdict.state()

    def recover(self) -> None:
        """A restarted agent converges to what the datastore holds."""
        run_agent(self.node)
        verdict = judge(read_kernel(self.node), self.refs, self.foreign, self.node.backend)
        if verdict.state() != self.final:
            verdict.violations.append(
                f"after a restart the kernel is {verdict.state()}, not {self.final}"
            )
        self.converged = verdict

    # -- reporting ----------------------------------------------------------------------------

    def violations(self) -> list[str]:
        out = [
            f"kill {i} ({k.mode}, {k.delay:.3f}s into the writes, during {k.during}, "
            f"towards {k.target}): {v}"
            for i, k in enumerate(self.kills)
            for v in k.verdict.violations
        ]
        if self.converged is not None:
            out += [f"after restart: {v}" for v in self.converged.violations]
        return out

    def summary(self) -> str:
        during = Counter(k.during for k in self.kills)
        states = Counter(k.verdict.state() for k in self.kills)
        mixed_tables = sum(
            1
            for k in self.kills
            if len({v.split("+")[0] for v in k.verdict.versions.values()} - {"A=B"}) > 1
        )
        leftovers = sum(
            1 for k in self.kills if any("+empty" in v for v in k.verdict.versions.values())
        )
        mixed_sets = sum(1 for k in self.kills if k.verdict.mixed_sets)
        bad = sum(1 for k in self.kills if k.verdict.violations)
        lines = [
            f"{self.node.backend}: {len(self.kills)} kills over a {self.window:.2f} s write "
            f"window; kernel after the kill: {dict(sorted(states.items()))}",
            f"  running at the kill: {dict(sorted(during.items()))}",
            f"  kills leaving tables at different versions: {mixed_tables}; "
            f"obsolete chains left empty: {leftovers}; sets between A and B: {mixed_sets}; "
            f"kills with a violation: {bad}",
        ]
        for i, k in enumerate(self.kills):
            for text in k.verdict.mixed_sets[:2]:
                lines.append(f"  kill {i} ({k.mode}, during {k.during}): set {text}")
        lines += [f"  VIOLATION {v}" for v in self.violations()]
        return "\n".join(lines)
