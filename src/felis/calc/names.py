"""Kernel names felis gives its chains and IP sets (docs/dataplane.md#names).

Names follow Calico's schemes with felis' prefix, so that a reader who knows Calico recognises
them and so that the 28-character iptables limit (and 31 for ipset) is never exceeded: a name
that would be too long is replaced by the prefix and a hash of the suffix.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from felis.dataplane.spec import CHAIN_PREFIX, MAX_CHAIN_NAME, MAX_IPSET_NAME, Family

ANY_INTERFACE = "any-interface-at-all"
"""Pseudo interface name of the all-interfaces (`interfaceName: "*"`) host endpoint. It cannot
clash with a real interface: real names are at most 15 characters."""

# Static chains.
RAW_PREROUTING = f"{CHAIN_PREFIX}PREROUTING"
RAW_OUTPUT = f"{CHAIN_PREFIX}OUTPUT"
MANGLE_PREROUTING = f"{CHAIN_PREFIX}PREROUTING"
MANGLE_POSTROUTING = f"{CHAIN_PREFIX}POSTROUTING"
FILTER_INPUT = f"{CHAIN_PREFIX}INPUT"
FILTER_FORWARD = f"{CHAIN_PREFIX}FORWARD"
FILTER_OUTPUT = f"{CHAIN_PREFIX}OUTPUT"
FAILSAFE_IN = f"{CHAIN_PREFIX}failsafe-in"
FAILSAFE_OUT = f"{CHAIN_PREFIX}failsafe-out"
UNTRACKED_ACCEPT = f"{CHAIN_PREFIX}untracked-accept"
UNTRACKED_DENY_IN = f"{CHAIN_PREFIX}untracked-deny-in"
UNTRACKED_DENY_OUT = f"{CHAIN_PREFIX}untracked-deny-out"
FROM_HOST_ENDPOINT = f"{CHAIN_PREFIX}from-host-endpoint"
TO_HOST_ENDPOINT = f"{CHAIN_PREFIX}to-host-endpoint"
FROM_HEP_FORWARD = f"{CHAIN_PREFIX}from-hep-forward"
TO_HEP_FORWARD = f"{CHAIN_PREFIX}to-hep-forward"

POLICY_IN_PREFIX = f"{CHAIN_PREFIX}pi-"
GROUP_IN_PREFIX = f"{CHAIN_PREFIX}gi-"
GROUP_OUT_PREFIX = f"{CHAIN_PREFIX}go-"
POLICY_OUT_PREFIX = f"{CHAIN_PREFIX}po-"
PROFILE_IN_PREFIX = f"{CHAIN_PREFIX}pri-"
PROFILE_OUT_PREFIX = f"{CHAIN_PREFIX}pro-"
FROM_HOST_PREFIX = f"{CHAIN_PREFIX}fh-"
TO_HOST_PREFIX = f"{CHAIN_PREFIX}th-"
FROM_HOST_FORWARD_PREFIX = f"{CHAIN_PREFIX}fhfw-"
TO_HOST_FORWARD_PREFIX = f"{CHAIN_PREFIX}thfw-"

SET_PREFIX = "felis"


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def length_limited(prefix: str, suffix: str, limit: int = MAX_CHAIN_NAME) -> str:
    """`prefix + suffix`, or `prefix + "_" + hash(suffix)` when that would not fit.

    A suffix that exactly fills the name but starts with `_` is hashed as well, so a literal
    name can never look like a hashed one. An empty suffix stands for `_`.
    """
    if not suffix:
        suffix = "_"
    total = len(prefix) + len(suffix)
    if total > limit or (total == limit and suffix.startswith("_")):
        room = limit - 1 - len(prefix)
        return prefix + "_" + _b64(hashlib.sha256(suffix.encode()).digest())[:room]
    return prefix + suffix


def untracked_deny_chain(ingress: bool) -> str:
    return UNTRACKED_DENY_IN if ingress else UNTRACKED_DENY_OUT


def policy_chain(policy: str, ingress: bool) -> str:
    return length_limited(POLICY_IN_PREFIX if ingress else POLICY_OUT_PREFIX, policy)


def profile_chain(profile: str, ingress: bool) -> str:
    return length_limited(PROFILE_IN_PREFIX if ingress else PROFILE_OUT_PREFIX, profile)


def group_chain(selector: str, ingress: bool, policies: Iterable[str]) -> str:
    """Chain of a policy group: Calico's id (SHA3-224 over the selector, the direction, the
    policy count and each policy) cut to the room our longer prefix leaves."""
    members = list(policies)
    lines = [selector, "inbound" if ingress else "outbound", str(len(members))]
    lines += [f"{{Name: {name}, Namespace: , Kind: GlobalNetworkPolicy}}" for name in members]
    digest = hashlib.sha3_224("".join(line + "\n" for line in lines).encode()).digest()
    prefix = GROUP_IN_PREFIX if ingress else GROUP_OUT_PREFIX
    return prefix + _b64(digest)[: MAX_CHAIN_NAME - len(prefix)]


def endpoint_chain(prefix: str, iface: str) -> str:
    return length_limited(prefix, iface)


def dispatch_child(root: str, next_char: str) -> str:
    return length_limited(root + "-", next_char)


def set_family_prefix(family: Family) -> str:
    return f"{SET_PREFIX}{int(family)}-"


def _set_name(family: Family, kind: str, ident: str) -> str:
    name = f"{set_family_prefix(family)}{kind}-{ident}"
    return name[:MAX_IPSET_NAME]


def selector_set(family: Family, selector_uid: str) -> str:
    """`felis4-s-<uid chars>`; the uid is Calico's `s:` id of the canonical selector."""
    return _set_name(family, "s", selector_uid.removeprefix("s:"))


def named_port_id(selector_uid: str, protocol: str, port_name: str) -> str:
    """Calico's named-port set id: `n:` + base64url(SHA-224 of `n:<uid>,<proto>,<name>`)."""
    text = f"n:{selector_uid},{protocol},{port_name}"
    return "n:" + _b64(hashlib.sha224(text.encode()).digest())


def named_port_set(family: Family, set_id: str) -> str:
    return _set_name(family, "n", set_id.removeprefix("n:"))


def nets_set(family: Family, cidrs: Iterable[str]) -> str:
    """A set standing for a literal list of CIDRs, named after a hash of the sorted list."""
    text = ",".join(sorted(set(cidrs)))
    return _set_name(family, "c", _b64(hashlib.sha224(text.encode()).digest()))


def port_set(family: Family, ports: Iterable[int]) -> str:
    """A fast-path port set (`felis4-p-…`), named after a hash of its sorted ports."""
    text = ",".join(map(str, sorted(set(ports))))
    return _set_name(family, "p", _b64(hashlib.sha224(text.encode()).digest()))
