"""Per-rule counters and the agent's metrics endpoint on a real kernel, both backends.

The seed policy's untracked rules must count every packet of a known load: Calico keeps no
counters for untracked traffic, felis does.
"""

from __future__ import annotations

import json
import sys
import textwrap

from harness import wait_until
from node import CLIENT_HEP, HEP, SEED_POLICY, FelisNode, manifest

MEMCACHED = 12211
CONNECTIONS = 20
INGRESS = "gnp/memcached-server ingress rule 0"
EGRESS = "gnp/memcached-server egress rule 0"
# Sound lower bounds per echo connection (tcp_peer.py probe): the client sends SYN, the ACK
# completing the handshake and one data segment; the server sends SYN-ACK and the echoed data.
# FINs and extra ACKs come on top, and may be delayed, so they are not counted on.
MIN_IN, MIN_OUT = 3, 2


def raw_count(rules: list[dict[str, object]], comment: str) -> int:
    """Packets counted by the policy's own rule in raw (IPv4). A policy rule can be several
    kernel rules with the same comment (the match, then the verdict); each counts the same
    packets, so the largest is the rule's count."""
    counts = [
        int(str(r["packets"]))
        for r in rules
        if r["comment"] == comment and r["table"] == "raw" and r["family"] == 4
    ]
    assert counts, f"no raw counter for {comment}"
    return max(counts)


def test_seed_counters_count_a_known_load(node: FelisNode) -> None:
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.converge()
    node.serve(MEMCACHED)
    before = node.rule_counters()
    for _ in range(CONNECTIONS):
        assert node.reach(node.client, MEMCACHED)
    after = node.rule_counters()
    ingress = raw_count(after, INGRESS) - raw_count(before, INGRESS)
    egress = raw_count(after, EGRESS) - raw_count(before, EGRESS)
    assert ingress >= MIN_IN * CONNECTIONS, (ingress, egress)
    assert egress >= MIN_OUT * CONNECTIONS, (ingress, egress)
    # Nothing else reached the server's port 12211, so the counters cannot be wildly above
    # what these connections can send (a handful of packets each way).
    assert ingress <= 10 * CONNECTIONS and egress <= 10 * CONNECTIONS
    assert node.conntrack_for_port(MEMCACHED) == [], "the counted flows stayed untracked"


SCRAPE = textwrap.dedent("""
    import json, sys, urllib.error, urllib.request
    out = {}
    for path in ("/metrics", "/healthz"):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%s" % sys.argv[1] + path, timeout=5) as r:
                out[path] = [r.status, r.read().decode()]
        except urllib.error.HTTPError as err:
            out[path] = [err.code, err.read().decode()]
        except OSError as err:
            out[path] = [0, str(err)]
    print(json.dumps(out))
""")


def scrape(node: FelisNode, port: int) -> dict[str, list[object]]:
    proc = node.topo.exec(node.server, [sys.executable, "-c", SCRAPE, str(port)])
    result: dict[str, list[object]] = json.loads(proc.stdout)
    return result


def metric(text: str, name: str, rule: str) -> int:
    """Largest IPv4 raw sample of `name` for `rule` in a Prometheus text page."""
    values = [
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith(name + "{")
        and f'rule="{rule}"' in line
        and 'table="raw"' in line
        and 'family="4"' in line
    ]
    assert values, f"{name} for {rule} missing"
    return max(values)


def test_agent_serves_metrics_and_healthz(node: FelisNode) -> None:
    port = 19099  # inside the test's own server namespace, so nothing else holds it
    node.apply(manifest(HEP, CLIENT_HEP, SEED_POLICY))
    node.serve(MEMCACHED)
    node.start_agent("--metrics-port", str(port), "--refresh-interval", "0")

    def healthy() -> dict[str, list[object]] | None:
        page = scrape(node, port)
        if page["/healthz"][0] != 200:
            return None
        return page

    wait_until(healthy, timeout=20, what="the agent to report healthy")
    for _ in range(5):
        assert node.reach(node.client, MEMCACHED)
    page = scrape(node, port)
    status, body = page["/healthz"]
    assert status == 200
    health = json.loads(str(body))
    assert health["healthy"] is True and health["dataplane"] == "in sync"
    assert health["datastore"] == "ok"
    status, text = page["/metrics"]
    assert status == 200
    text = str(text)
    assert metric(text, "felis_rule_packets_total", INGRESS) >= 5 * MIN_IN
    assert metric(text, "felis_rule_packets_total", EGRESS) >= 5 * MIN_OUT
    assert metric(text, "felis_rule_bytes_total", INGRESS) > 0
    assert "felis_dataplane_in_sync 1.0" in text
    assert "felis_host_endpoints_active 1.0" in text
    assert "felis_conntrack_max " in text
    applies = [
        line for line in text.splitlines() if line.startswith("felis_dataplane_applies_total ")
    ]
    assert applies and float(applies[0].split()[1]) >= 1
