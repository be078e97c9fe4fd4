"""What the calculation needs to know besides the resources: the node's own settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from felis.calc.failsafe import DEFAULT_FAILSAFE_INBOUND, DEFAULT_FAILSAFE_OUTBOUND, FailsafePort
from felis.dataplane.spec import Family, MarkBits

DEFAULT_LOG_PREFIX = "felis-packet"

ChainInsertMode = Literal["insert", "append"]


@dataclass(frozen=True, slots=True)
class CalcConfig:
    failsafe_inbound: tuple[FailsafePort, ...] = DEFAULT_FAILSAFE_INBOUND
    failsafe_outbound: tuple[FailsafePort, ...] = DEFAULT_FAILSAFE_OUTBOUND
    marks: MarkBits = field(default_factory=MarkBits.from_mask)
    log_prefix: str = DEFAULT_LOG_PREFIX
    """Prefix of Log-action lines; `%t` tier, `%k` kind (`gnp`), `%n` and `%p` policy name."""
    families: tuple[Family, ...] = (Family.V4, Family.V6)
    xdp_enabled: bool = True
    """Drop eligible blocklisted sources in XDP (felis.calc.xdp), as Felix's `xdpEnabled`."""
    xdp_generic: bool = True
    """Where a driver has no native XDP, attach in generic mode, as Felix's `genericXDPEnabled`
    (whose default is false: docs/xdp.md says why felis' differs)."""
    interface_exclude: tuple[str, ...] = ("kube-ipvs0",)
    """Interfaces never bound to a host endpoint: exact names, or `/regex/` (Calico's syntax)."""
    chain_insert_mode: ChainInsertMode = "insert"
    """Where felis' rules go in the kernel's own chains: at the top (`insert`), or after the rules
    already there (`append`), as Calico's `chainInsertMode`. Only iptables has such shared
    chains; the nftables backend hooks its own base chains and always uses `insert`."""


@dataclass(frozen=True, slots=True)
class HostInterface:
    """A host interface and its addresses (bare IPs or `ip/prefix`, as the kernel lists them)."""

    name: str
    addresses: tuple[str, ...] = ()
