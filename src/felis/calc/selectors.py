"""The one selector Calico evaluates for a policy, or for a rule side, once its namespace and
service-account selectors are folded in
(docs/calico-semantics.md#namespace-and-service-account-selectors).

Pods carry their namespace's labels as `pcns.<label>` and their service account's as
`pcsa.<label>`, next to `projectcalico.org/namespace` and `projectcalico.org/serviceaccount`.
Calico therefore rewrites those selectors onto the prefixed labels and ANDs them in. Host
endpoints and network sets carry none of these labels, so a positive namespace selector
(`team == "a"`) never matches them and a negated one (`!has(team)`) always does; evaluating the
translated selector gives both answers without a special case.
"""

from __future__ import annotations

from felis.model.resources import EntityRule, ServiceAccountMatch
from felis.selector import Selector, parse
from felis.selector.ast import InSet, canonical_set, prefix_labels

NAMESPACE_LABEL = "projectcalico.org/namespace"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."


def _scoped(text: str, prefix: str) -> str:
    return prefix_labels(parse(text).root, prefix).canonical()


def policy_selector(
    selector: str, namespace_selector: str = "", service_account_selector: str = ""
) -> Selector:
    """Which endpoints a GlobalNetworkPolicy applies to."""
    text = selector
    for extra, prefix, label in (
        (namespace_selector, NAMESPACE_PREFIX, NAMESPACE_LABEL),
        (service_account_selector, SERVICE_ACCOUNT_PREFIX, SERVICE_ACCOUNT_LABEL),
    ):
        if not extra:
            continue
        scoped = _scoped(extra, prefix)
        text = f"({text}) && {scoped}" if text else scoped
        # Calico rewrites every all() of the combined text, the policy's own selector included:
        # `selector: all()` with a namespaceSelector selects only namespaced endpoints.
        text = text.replace("all()", f"has({label})")
    return parse(text)


def _service_accounts(match: ServiceAccountMatch) -> str:
    scoped = _scoped(match.selector, SERVICE_ACCOUNT_PREFIX) if match.selector else ""
    if not match.names:
        return scoped
    names = InSet(SERVICE_ACCOUNT_LABEL, canonical_set(match.names)).canonical()
    return f"({scoped}) && ({names})" if scoped else names


def rule_side_selector(entity: EntityRule) -> Selector | None:
    """The selector an address must match on one side of a rule (None: no selector).

    `notSelector` stays as written and is not part of it; `services` is the caller's business.
    """
    parts = []
    if entity.service_accounts is not None:
        parts.append(_service_accounts(entity.service_accounts))
    parts.append(entity.selector)
    parts = [part for part in parts if part]
    text = f"({') && ('.join(parts)})" if len(parts) > 1 else "".join(parts)
    if entity.namespace_selector:
        scoped = (
            _scoped(entity.namespace_selector, NAMESPACE_PREFIX)
            .replace("all()", f"has({NAMESPACE_LABEL})")
            .replace("global()", f"!has({NAMESPACE_LABEL})")
        )
        text = f"({scoped}) && ({text})" if text else scoped
    return parse(text) if text else None
