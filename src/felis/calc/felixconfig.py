"""The node's effective settings from its FelixConfiguration objects and its environment. Pure.

Each setting felis honours is resolved on its own, highest first (docs/configuration.md):

1. felis' own options (`--failsafe-inbound`/`--failsafe-outbound`, or their `FELIS_…` variables):
   what the operator typed for this run wins over everything;
2. the environment, Felix's `FELIX_<NAME>` variables (name in any case);
3. the FelixConfiguration `node.<nodename>`;
4. the FelixConfiguration `default`;
5. the built-in default (`CalcConfig`).

Within one object a `config.projectcalico.org/<Name>` annotation wins over its spec field, as in
Calico. A value Felix would not take is never fatal: a bad environment value is ignored with a
warning naming the variable, and a stored object with a value that cannot be used is left out
whole (a `Skipped`), so the next source down decides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from felis.calc.calculator import Skipped
from felis.calc.config import CalcConfig
from felis.calc.failsafe import FailsafePort, parse_failsafe_ports
from felis.dataplane.spec import MarkBits
from felis.errors import FelisError
from felis.model import checks
from felis.model.felixconfig import (
    GLOBAL_NAME,
    FelixConfiguration,
    FelixConfigurationSpec,
    ProtoPort,
    duration_seconds,
    interface_exclude_reason,
    mark_mask_reason,
)

KIND: Final = "FelixConfiguration"
ANNOTATION_PREFIX: Final = "config.projectcalico.org/"
ENV_PREFIX: Final = "FELIX_"

Value = object


class SettingError(FelisError):
    """A raw (environment or annotation) value Felix would refuse."""


@dataclass(frozen=True, slots=True)
class Param:
    """One Felix parameter felis honours."""

    name: str
    """Felix's name: `FELIX_<NAME>` in the environment, `config.projectcalico.org/<Name>`."""
    field: str
    """The FelixConfigurationSpec field (JSON name)."""
    parse: Callable[[str], Value]
    """Felix's string syntax → value; SettingError when Felix would refuse it."""
    read: Callable[[FelixConfigurationSpec], Value | None]
    """The stored (already validated) field → value; None when it is not set."""
    non_zero: bool = False
    """Felix refuses `none` for it."""
    zero: Value = None
    """What `none` means when allowed."""

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


# --------------------------------------------------------------------------- value parsers


def _ports(raw: str) -> tuple[FailsafePort, ...]:
    try:
        return parse_failsafe_ports(raw, skip_empty=True)
    except FelisError as err:
        raise SettingError(str(err)) from None


def _insert_mode(raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in ("insert", "append"):
        raise SettingError(f"unsupported value {raw!r}: must be Insert or Append")
    return mode


def _mark_mask(raw: str) -> int:
    try:
        mask = int(raw.strip(), 0)
    except ValueError:
        raise SettingError(f"invalid mark mask {raw!r}: not a 32-bit number") from None
    reason = mark_mask_reason(mask)
    if reason:
        raise SettingError(reason)
    return mask


def _interfaces(raw: str) -> tuple[str, ...]:
    reason = interface_exclude_reason(raw)
    if reason:
        raise SettingError(reason)
    return tuple(raw.split(","))


def _text(raw: str) -> str:
    return raw


def _seconds(raw: str) -> float:
    # Felix's environment and annotation form: a number of seconds ("90", "1.5").
    try:
        seconds = float(raw.strip())
    except ValueError:
        raise SettingError(f"invalid number of seconds {raw!r}") from None
    if not 0 <= seconds < float("inf"):
        raise SettingError(f"invalid number of seconds {raw!r}: must be 0 or more")
    return seconds


def _stored_seconds(text: str | None) -> float | None:
    # Validated with the object: a duration Calico accepts ("90s", "1m30s").
    return None if text is None else duration_seconds(text)


def _bool(raw: str) -> bool:
    # Felix's boolean parameters take Go's strconv.ParseBool forms.
    word = raw.strip().lower()
    if word in ("1", "t", "true"):
        return True
    if word in ("0", "f", "false"):
        return False
    raise SettingError(f"invalid boolean {raw!r}: must be true or false")


# --------------------------------------------------------------------------- stored fields


def _entry(entry: ProtoPort) -> FailsafePort:
    cidr = checks.parse_cidr_or_ip(entry.net) if entry.net else None
    net = str(cidr.network) if cidr is not None else None
    return FailsafePort((entry.protocol or "tcp").lower(), entry.port, net)


def _stored_ports(entries: list[ProtoPort] | None) -> tuple[FailsafePort, ...] | None:
    return None if entries is None else tuple(_entry(e) for e in entries)


def _set(text: str | None) -> str | None:
    # Felix ignores an empty value (an omitted field in Go's JSON).
    return text or None


PARAMS: Final[tuple[Param, ...]] = (
    Param(
        "FailsafeInboundHostPorts",
        "failsafeInboundHostPorts",
        _ports,
        lambda s: _stored_ports(s.failsafe_inbound_host_ports),
        zero=(),
    ),
    Param(
        "FailsafeOutboundHostPorts",
        "failsafeOutboundHostPorts",
        _ports,
        lambda s: _stored_ports(s.failsafe_outbound_host_ports),
        zero=(),
    ),
    Param("LogPrefix", "logPrefix", _text, lambda s: _set(s.log_prefix), zero=""),
    Param(
        "ChainInsertMode",
        "chainInsertMode",
        _insert_mode,
        lambda s: None if not s.chain_insert_mode else s.chain_insert_mode.lower(),
        non_zero=True,
    ),
    Param(
        "IptablesMarkMask",
        "iptablesMarkMask",
        _mark_mask,
        lambda s: s.iptables_mark_mask,
        non_zero=True,
    ),
    Param(
        "NftablesMarkMask",
        "nftablesMarkMask",
        _mark_mask,
        lambda s: s.nftables_mark_mask,
        non_zero=True,
    ),
    Param(
        "InterfaceExclude",
        "interfaceExclude",
        _interfaces,
        lambda s: None if not s.interface_exclude else tuple(s.interface_exclude.split(",")),
        zero=(),
    ),
    Param("XDPEnabled", "xdpEnabled", _bool, lambda s: s.xdp_enabled, non_zero=True),
    Param(
        "GenericXDPEnabled",
        "genericXDPEnabled",
        _bool,
        lambda s: s.generic_xdp_enabled,
        non_zero=True,
    ),
    Param(
        "IpsetsRefreshInterval",
        "ipsetsRefreshInterval",
        _seconds,
        lambda s: _stored_seconds(s.ipsets_refresh_interval),
        zero=0.0,
    ),
    Param(
        "NftablesRefreshInterval",
        "nftablesRefreshInterval",
        _seconds,
        lambda s: _stored_seconds(s.nftables_refresh_interval),
        zero=0.0,
    ),
)
BY_FIELD: Final = {param.field: param for param in PARAMS}


def parse_raw(param: Param, raw: str) -> Value:
    """A `FELIX_…` or annotation value, with Felix's `none`."""
    if raw.strip().lower() == "none":
        if param.non_zero:
            raise SettingError("'none' is not allowed: the setting needs a value")
        return param.zero
    return param.parse(raw)


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True, slots=True)
class ConfigOverrides:
    """felis' own options, which win over every other source."""

    failsafe_inbound: tuple[FailsafePort, ...] | None = None
    failsafe_outbound: tuple[FailsafePort, ...] | None = None
    xdp_enabled: bool | None = None


OVERRIDE_ORIGIN: Final = {
    "failsafeInboundHostPorts": "--failsafe-inbound / FELIS_FAILSAFE_INBOUND_HOST_PORTS",
    "failsafeOutboundHostPorts": "--failsafe-outbound / FELIS_FAILSAFE_OUTBOUND_HOST_PORTS",
    "xdpEnabled": "--no-xdp",
}
BUILT_IN: Final = "built-in default"
FULL_REFRESH_DEFAULTS: Final = {"ipsetsRefreshInterval": 90.0, "nftablesRefreshInterval": 180.0}
"""Felix's defaults: seconds between full re-reads of the IP sets, and of the nftables table."""


@dataclass(frozen=True, slots=True)
class EffectiveConfig:
    calc: CalcConfig
    origins: Mapping[str, str] = field(default_factory=dict)
    """Honoured field (JSON name) → where its value came from."""
    warnings: tuple[str, ...] = ()
    """Environment values ignored, settings felis cannot honour here."""
    skipped: tuple[Skipped, ...] = ()
    """FelixConfiguration objects left out whole."""
    full_refresh: float = FULL_REFRESH_DEFAULTS["ipsetsRefreshInterval"]
    """Seconds between the agent's full drift checks, which compare every set member (0: only
    the quick ones): ipsetsRefreshInterval with iptables, nftablesRefreshInterval with
    nftables."""

    def summary(self) -> str:
        """One line: every setting that does not come from the built-in default."""
        parts = [
            f"{name} from {origin}" for name, origin in self.origins.items() if origin != BUILT_IN
        ]
        return "; ".join(parts) or "built-in defaults"


@dataclass(frozen=True, slots=True)
class _Source:
    origin: str
    values: dict[str, Value]


def _annotations(config: FelixConfiguration) -> dict[str, str]:
    """Annotation overrides by Felix parameter name (lower case, as Felix compares them)."""
    out: dict[str, str] = {}
    for key, value in config.metadata.annotations.items():
        if key.lower().startswith(ANNOTATION_PREFIX) and value:
            out[key[len(ANNOTATION_PREFIX) :].lower()] = value
    return out


def _object_source(config: FelixConfiguration) -> _Source:
    """What one object sets; SettingError (naming the annotation) when a value is unusable."""
    name = config.metadata.name
    values: dict[str, Value] = {}
    overrides = _annotations(config)
    for param in PARAMS:
        raw = overrides.get(param.name.lower())
        if raw is not None:
            try:
                values[param.field] = parse_raw(param, raw)
            except SettingError as err:
                raise SettingError(f"annotation {ANNOTATION_PREFIX}{param.name}: {err}") from None
            continue
        value = param.read(config.spec)
        if value is not None:
            values[param.field] = value
    return _Source(f"{KIND} {name}", values)


def _env_source(environ: Mapping[str, str], warnings: list[str]) -> _Source:
    by_name = {param.env: param for param in PARAMS}
    values: dict[str, Value] = {}
    for key, raw in environ.items():
        param = by_name.get(key.upper())
        if param is None or not raw:
            continue
        try:
            values[param.field] = parse_raw(param, raw)
        except SettingError as err:
            warnings.append(f"environment {key} ({param.field}): {err}; ignored")
    return _Source("environment", values)


def effective_config(
    environ: Mapping[str, str],
    node: str | None,
    objects: Iterable[FelixConfiguration],
    *,
    backend: str = "iptables",
    overrides: ConfigOverrides | None = None,
    base: CalcConfig | None = None,
    refused: Mapping[str, str] | None = None,
) -> EffectiveConfig:
    """The settings of `node` (None: only the `default` object applies).

    `refused` names stored FelixConfigurations that could not even be read (name → why); those
    this node would read are reported as skipped, like the objects whose values are unusable.
    """
    base = base or CalcConfig()
    overrides = overrides or ConfigOverrides()
    warnings: list[str] = []
    wanted = ([f"node.{node}"] if node is not None else []) + [GLOBAL_NAME]
    skipped = [
        Skipped(KIND, name, reason) for name, reason in (refused or {}).items() if name in wanted
    ]
    by_name = {config.metadata.name: config for config in objects}
    stored: list[_Source] = []
    for name in wanted:
        config = by_name.get(name)
        if config is None or (refused and name in refused):
            continue
        try:
            stored.append(_object_source(config))
        except SettingError as err:
            skipped.append(Skipped(KIND, name, str(err)))
    for name, config in sorted(by_name.items()):
        if config.spec.node_selector is not None and name not in wanted:
            warnings.append(
                f"{KIND} {name}: nodeSelector-scoped configuration is not supported (felis "
                "does not read node labels); ignored"
            )
    explicit = _Source(
        "",
        {
            name: value
            for name, value in (
                ("failsafeInboundHostPorts", overrides.failsafe_inbound),
                ("failsafeOutboundHostPorts", overrides.failsafe_outbound),
                ("xdpEnabled", overrides.xdp_enabled),
            )
            if value is not None
        },
    )
    env = _env_source(environ, warnings)
    built_in: dict[str, Value] = {
        "failsafeInboundHostPorts": base.failsafe_inbound,
        "failsafeOutboundHostPorts": base.failsafe_outbound,
        "logPrefix": base.log_prefix,
        "chainInsertMode": base.chain_insert_mode,
        "iptablesMarkMask": _mask_of(base.marks),
        "nftablesMarkMask": _mask_of(base.marks),
        "interfaceExclude": base.interface_exclude,
        "xdpEnabled": base.xdp_enabled,
        "genericXDPEnabled": base.xdp_generic,
        **FULL_REFRESH_DEFAULTS,
    }
    values: dict[str, Value] = {}
    origins: dict[str, str] = {}
    for param in PARAMS:
        for source in (explicit, env, *stored):
            if param.field in source.values:
                values[param.field] = source.values[param.field]
                origins[param.field] = (
                    OVERRIDE_ORIGIN[param.field]
                    if source is explicit
                    else f"environment {param.env}"
                    if source is env
                    else source.origin
                )
                break
        else:
            values[param.field] = built_in[param.field]
            origins[param.field] = BUILT_IN
    nftables = backend == "nftables"
    mask_field = "nftablesMarkMask" if nftables else "iptablesMarkMask"
    mask = values[mask_field]
    origins.pop("iptablesMarkMask" if nftables else "nftablesMarkMask")
    refresh_field = "nftablesRefreshInterval" if nftables else "ipsetsRefreshInterval"
    origins.pop("ipsetsRefreshInterval" if nftables else "nftablesRefreshInterval")
    insert_mode = values["chainInsertMode"]
    if nftables and insert_mode == "append":
        warnings.append(
            f"chainInsertMode Append (from {origins['chainInsertMode']}) has no effect with "
            "the nftables backend: felis' base chains are its own"
        )
        insert_mode = "insert"
    calc = replace(
        base,
        failsafe_inbound=_ports_value(values["failsafeInboundHostPorts"]),
        failsafe_outbound=_ports_value(values["failsafeOutboundHostPorts"]),
        log_prefix=str(values["logPrefix"]),
        chain_insert_mode="append" if insert_mode == "append" else "insert",
        marks=base.marks if mask == _mask_of(base.marks) else MarkBits.from_mask(_int(mask)),
        interface_exclude=_strings(values["interfaceExclude"]),
        xdp_enabled=bool(values["xdpEnabled"]),
        xdp_generic=bool(values["genericXDPEnabled"]),
    )
    full_refresh = values[refresh_field]
    assert isinstance(full_refresh, float)
    return EffectiveConfig(
        calc, origins, tuple(warnings), tuple(sorted(skipped)), full_refresh=full_refresh
    )


def _mask_of(marks: MarkBits) -> int:
    return marks.accept | marks.pass_ | marks.drop | marks.scratch0 | marks.scratch1


def _int(value: Value) -> int:
    assert isinstance(value, int)
    return value


def _ports_value(value: Value) -> tuple[FailsafePort, ...]:
    assert isinstance(value, tuple)
    return tuple(entry for entry in value if isinstance(entry, FailsafePort))


def _strings(value: Value) -> tuple[str, ...]:
    assert isinstance(value, tuple)
    return tuple(str(entry) for entry in value)
