"""The `handwritten` phase: the minimal ruleset a careful person would write for the seed policy.

It is the yardstick for felis' doNotTrack rules: the same verdicts for the lab's traffic
(memcached on TCP 12211 from the clients' network, untracked both ways; everything else on the
interface dropped except established traffic and ssh) in as few rules as the backend allows.
felis has to carry Calico's structure (dispatch by interface, failsafe ports, tiers, marks);
this ruleset shows what that structure costs per connection.

The lab programs it itself, inside its own server namespace only, in a table (nftables) or in
chains (iptables) of its own, so removing it takes nothing else with it. The texts are pure
functions of the LabConfig; `Handwritten` applies and removes them.
"""

from __future__ import annotations

from felis.lab import netns as ns
from felis.lab.topology import LabConfig

HANDWRITTEN = "handwritten"
NFT_TABLE = "felis-handwritten"
# iptables chains of its own, each jumped to from the built-in chain of the same hook.
IPT_CHAINS = {
    "raw": (("PREROUTING", "hand-PREROUTING"), ("OUTPUT", "hand-OUTPUT")),
    "filter": (("INPUT", "hand-INPUT"), ("OUTPUT", "hand-OUTPUT")),
}
SSH_PORT = 22


def nft_ruleset(cfg: LabConfig) -> str:
    """One `nft -f` transaction that (re)creates the table: defining it, deleting it, then
    declaring it in full makes a second apply replace the first instead of adding to it."""
    dev, net, port = f'"{cfg.interface}"', cfg.network, cfg.port
    return f"""table ip {NFT_TABLE}
delete table ip {NFT_TABLE}
table ip {NFT_TABLE} {{
	chain raw-prerouting {{
		type filter hook prerouting priority raw; policy accept;
		iifname {dev} ip saddr {net} tcp dport {port} notrack accept
	}}
	chain raw-output {{
		type filter hook output priority raw; policy accept;
		oifname {dev} ip daddr {net} tcp sport {port} notrack accept
	}}
	chain input {{
		type filter hook input priority filter; policy accept;
		iifname {dev} ip saddr {net} tcp dport {port} accept
		iifname {dev} ct state established,related accept
		iifname {dev} tcp dport {SSH_PORT} accept
		iifname {dev} drop
	}}
	chain output {{
		type filter hook output priority filter; policy accept;
		oifname {dev} ip daddr {net} tcp sport {port} accept
		oifname {dev} ct state established,related accept
		oifname {dev} drop
	}}
}}
"""


def nft_removal() -> str:
    return f"delete table ip {NFT_TABLE}\n"


def iptables_ruleset(cfg: LabConfig) -> str:
    """`iptables-restore --noflush` input: declaring a chain creates it, or empties it if it
    exists, so the built-in chains and anything else in them are left alone."""
    dev, net, port = cfg.interface, cfg.network, cfg.port
    rules = {
        "raw": [
            f"-A hand-PREROUTING -i {dev} -s {net} -p tcp --dport {port} -j CT --notrack",
            f"-A hand-OUTPUT -o {dev} -d {net} -p tcp --sport {port} -j CT --notrack",
        ],
        "filter": [
            f"-A hand-INPUT -i {dev} -s {net} -p tcp --dport {port} -j ACCEPT",
            f"-A hand-INPUT -i {dev} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A hand-INPUT -i {dev} -p tcp --dport {SSH_PORT} -j ACCEPT",
            f"-A hand-INPUT -i {dev} -j DROP",
            f"-A hand-OUTPUT -o {dev} -d {net} -p tcp --sport {port} -j ACCEPT",
            f"-A hand-OUTPUT -o {dev} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            f"-A hand-OUTPUT -o {dev} -j DROP",
        ],
    }
    lines: list[str] = []
    for table, chains in IPT_CHAINS.items():
        lines.append(f"*{table}")
        lines += [f":{own} - [0:0]" for _, own in chains]
        lines += [f"-A {builtin} -j {own}" for builtin, own in chains]
        lines += [*rules[table], "COMMIT"]
    return "\n".join(lines) + "\n"


def iptables_removal() -> str:
    """Unhook, then empty and delete the lab's own chains, in one restore per table."""
    lines: list[str] = []
    for table, chains in IPT_CHAINS.items():
        lines.append(f"*{table}")
        lines += [f"-D {builtin} -j {own}" for builtin, own in chains]
        lines += [f"-F {own}" for _, own in chains]
        lines += [f"-X {own}" for _, own in chains]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def apply_command(backend: str) -> list[str]:
    if backend == "nftables":
        return ["nft", "-f", "-"]
    return ["iptables-restore", "--noflush"]


class Handwritten:
    """Program and remove the hand-written ruleset in the lab's server namespace."""

    def __init__(self, cfg: LabConfig, backend: str) -> None:
        self.cfg = cfg
        self.backend = backend
        self.programmed = False

    def ruleset(self) -> str:
        return nft_ruleset(self.cfg) if self.backend == "nftables" else iptables_ruleset(self.cfg)

    def removal(self) -> str:
        return nft_removal() if self.backend == "nftables" else iptables_removal()

    def program(self) -> None:
        # Both tools apply their input as one transaction: on failure nothing is left to remove.
        ns.run(apply_command(self.backend), netns=self.cfg.server_netns,
               input_text=self.ruleset())  # fmt: skip
        self.programmed = True

    def cleanup(self) -> None:
        """Remove it (no-op when nothing was programmed); anything a failed removal leaves is
        counted and flushed by the next phase's leftover check, and goes with the namespace."""
        if not self.programmed:
            return
        try:
            ns.run(apply_command(self.backend), netns=self.cfg.server_netns,
                   input_text=self.removal())  # fmt: skip
        finally:
            self.programmed = False
