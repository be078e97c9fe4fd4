"""Where felis' hook rules sit in the kernel's own chains: Calico's `chainInsertMode`.

`insert` (the default) puts them at the top, ahead of every other program's rules, so nothing
can accept a packet before felis' policy has seen it. `append` puts them after the rules already
there: another program's ACCEPT then bypasses felis' policy, which is what the operator asks for
by choosing it. The hooks felis always appends (the FORWARD accept-mark rules) stay last, after
the former inserts, as Calico orders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from felis.calc.config import ChainInsertMode
from felis.dataplane.spec import HookPosition, Table, TableSpec


def place_hooks(tables: Mapping[Table, TableSpec], mode: ChainInsertMode) -> dict[Table, TableSpec]:
    """`tables` with their inserted hooks turned into appends when `mode` is `append`."""
    if mode == "insert":
        return dict(tables)
    return {table: _appended(spec) for table, spec in tables.items()}


def _appended(spec: TableSpec) -> TableSpec:
    inserts = [
        replace(hook, position=HookPosition.APPEND)
        for hook in spec.hooks
        if hook.position is HookPosition.INSERT
    ]
    if not inserts:
        return spec
    appends = [hook for hook in spec.hooks if hook.position is HookPosition.APPEND]
    # Per kernel chain the order is the former inserts, then the hooks that were appends.
    return TableSpec(table=spec.table, chains=spec.chains, hooks=(*inserts, *appends))
