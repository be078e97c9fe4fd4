"""Pydantic models of the Calico v3 resources felis understands (docs/calico-semantics.md).

Python attributes are snake_case; the JSON names are Calico's camelCase aliases. Fields are
declared in the order Go emits them, so a dump reproduces Calico's key order. Unknown fields
are errors (calicoctl decodes strictly) and scalar types are strict (Go's decoder does not
turn "80" into a number or 1 into a string).

Every resource is defaulted and checked against Calico's cross-field rules when
it is built. Built from `felis.model.from_dict`, every problem is collected and reported with
its field path; built directly in Python, the first problem raises.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from felis.model import validate as _validate
from felis.model.constants import API_VERSION
from felis.model.values import Port, ProtocolValue

Action = Literal["Allow", "Deny", "Log", "Pass"]
PolicyType = Literal["Ingress", "Egress"]
PerformanceHint = Literal["AssumeNeededOnEveryNode"]
TierAction = Literal["Deny", "Pass"]

# The collector list is passed through pydantic's validation context under this key.
PROBLEMS_KEY = "felis.problems"


def _go_shortest_g(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'g', -1, ...): shortest digits; exponent form when the
    exponent is below -4 or at least 6 (so 1e6 prints as "1e+06")."""
    if not math.isfinite(value):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(value)]
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)) or "0"
    point = len(text) + exponent  # position of the decimal point within the digits
    if value == 0:
        return "-0" if sign else "0"
    if point - 1 < -4 or point - 1 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        exp = point - 1
        out = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif point <= 0:
        out = "0." + "0" * -point + text
    elif point >= len(text):
        out = text + "0" * (point - len(text))
    else:
        out = text[:point] + "." + text[point:]
    return ("-" if sign else "") + out


def _scalar_to_str(value: Any) -> Any:
    # calicoctl decodes YAML with the Go type as a guide: a scalar that YAML typed as a
    # bool or number still fills a string field, as its Go string form (`yes` -> "true").
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is float:
        return _go_shortest_g(value)
    return value


Str = Annotated[str, BeforeValidator(_scalar_to_str)]


def go_float(value: float) -> float | int:
    # Go prints an integral float64 without a fraction ("order":100, not 100.0).
    if value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        strict=True,
        allow_inf_nan=False,
    )


class ObjectMeta(_Model):
    # Strict, unlike the other strings: a name (and a namespace) is an identity, and the
    # Go-style string form of a YAML scalar (`0x10` -> "16", `yes` -> "true") would store a name
    # nobody wrote.
    name: str = ""
    generate_name: Str = Field("", alias="generateName")
    namespace: str = ""
    self_link: Str = Field("", alias="selfLink")
    uid: Str = ""
    resource_version: Str = Field("", alias="resourceVersion")
    generation: int | None = None
    creation_timestamp: Str | None = Field(None, alias="creationTimestamp")
    deletion_timestamp: Str | None = Field(None, alias="deletionTimestamp")
    deletion_grace_period_seconds: int | None = Field(None, alias="deletionGracePeriodSeconds")
    labels: dict[str, Str] = Field(default_factory=dict)
    annotations: dict[str, Str] = Field(default_factory=dict)
    owner_references: list[dict[str, Any]] = Field(default_factory=list, alias="ownerReferences")
    finalizers: list[Str] = Field(default_factory=list)
    managed_fields: list[dict[str, Any]] = Field(default_factory=list, alias="managedFields")


class ICMPFields(_Model):
    type: int | None = Field(None, ge=0, le=254)
    code: int | None = Field(None, ge=0, le=255)


class HTTPPath(_Model):
    exact: Str = Field("", max_length=1024)
    prefix: Str = Field("", max_length=1024)


class HTTPMatch(_Model):
    methods: list[Str] = Field(default_factory=list, max_length=20)
    paths: list[HTTPPath] = Field(default_factory=list, max_length=20)


class ServiceMatch(_Model):
    name: Str = Field("", max_length=253)
    namespace: Str = Field("", max_length=253)


class ServiceAccountMatch(_Model):
    names: list[Str] = Field(default_factory=list)
    selector: Str = ""


class EntityRule(_Model):
    nets: list[Str] = Field(default_factory=list, max_length=256)
    selector: Str = Field("", max_length=1024)
    namespace_selector: Str = Field("", alias="namespaceSelector", max_length=1024)
    services: ServiceMatch | None = None
    ports: list[Port] = Field(default_factory=list, max_length=50)
    not_nets: list[Str] = Field(default_factory=list, alias="notNets", max_length=256)
    not_selector: Str = Field("", alias="notSelector", max_length=1024)
    not_ports: list[Port] = Field(default_factory=list, alias="notPorts", max_length=50)
    service_accounts: ServiceAccountMatch | None = Field(None, alias="serviceAccounts")


class RuleMetadata(_Model):
    annotations: dict[str, Str] = Field(default_factory=dict)


class Rule(_Model):
    action: Action
    ip_version: Literal[4, 6] | None = Field(None, alias="ipVersion")
    protocol: ProtocolValue | None = None
    icmp: ICMPFields | None = None
    not_protocol: ProtocolValue | None = Field(None, alias="notProtocol")
    not_icmp: ICMPFields | None = Field(None, alias="notICMP")
    source: EntityRule = Field(default_factory=EntityRule)
    destination: EntityRule = Field(default_factory=EntityRule)
    http: HTTPMatch | None = None
    metadata: RuleMetadata | None = None


class GlobalNetworkPolicySpec(_Model):
    tier: Str = ""
    order: float | None = None
    ingress: list[Rule] = Field(default_factory=list, max_length=1024)
    egress: list[Rule] = Field(default_factory=list, max_length=1024)
    selector: Str = Field("", max_length=1024)
    types: list[PolicyType] = Field(default_factory=list, max_length=2)
    do_not_track: bool = Field(False, alias="doNotTrack")
    pre_dnat: bool = Field(False, alias="preDNAT")
    apply_on_forward: bool = Field(False, alias="applyOnForward")
    service_account_selector: Str = Field("", alias="serviceAccountSelector", max_length=1024)
    namespace_selector: Str = Field("", alias="namespaceSelector", max_length=1024)
    performance_hints: list[PerformanceHint] = Field(default_factory=list, alias="performanceHints")


class EndpointPort(_Model):
    name: Str
    protocol: ProtocolValue
    port: int = Field(ge=1, le=65535)


class HostEndpointSpec(_Model):
    node: Str = Field("", max_length=253)
    interface_name: Str = Field("", alias="interfaceName")
    expected_ips: list[Str] = Field(default_factory=list, alias="expectedIPs")
    profiles: list[Str] = Field(default_factory=list)
    ports: list[EndpointPort] = Field(default_factory=list)


class GlobalNetworkSetSpec(_Model):
    nets: list[Str] = Field(default_factory=list)


class ProfileSpec(_Model):
    ingress: list[Rule] = Field(default_factory=list, max_length=1024)
    egress: list[Rule] = Field(default_factory=list, max_length=1024)
    labels_to_apply: dict[str, Str] = Field(default_factory=dict, alias="labelsToApply")


class TierSpec(_Model):
    order: float | None = None
    default_action: TierAction | None = Field(None, alias="defaultAction")


class TierStatus(_Model):
    conditions: list[dict[str, Any]] = Field(default_factory=list)


def report_problems(problems: list[tuple[str, str]], info: ValidationInfo) -> None:
    """Hand whole-object problems to the loader collecting them all, or, when a resource is
    built on its own, fail with the first (and a count of the rest)."""
    context = info.context
    if isinstance(context, dict) and PROBLEMS_KEY in context:
        context[PROBLEMS_KEY].extend(problems)
    elif problems:
        path, reason = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{path}: {reason}{more}" if path else f"{reason}{more}")


class _Resource(_Model):
    """Shared fields and behaviour of the top-level resources: defaulting and whole-object
    checks. Each resource narrows `kind` to its own name and adds its `spec`."""

    kind: str
    api_version: Literal["projectcalico.org/v3"] = Field(API_VERSION, alias="apiVersion")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="after")
    def _default_and_check(self, info: ValidationInfo) -> Any:
        _validate.apply_defaults(self)  # type: ignore[arg-type]
        report_problems(_validate.check_resource(self), info)  # type: ignore[arg-type]
        return self


class HostEndpoint(_Resource):
    kind: Literal["HostEndpoint"] = "HostEndpoint"
    spec: HostEndpointSpec = Field(default_factory=HostEndpointSpec)


class GlobalNetworkPolicy(_Resource):
    kind: Literal["GlobalNetworkPolicy"] = "GlobalNetworkPolicy"
    spec: GlobalNetworkPolicySpec = Field(default_factory=GlobalNetworkPolicySpec)


class GlobalNetworkSet(_Resource):
    kind: Literal["GlobalNetworkSet"] = "GlobalNetworkSet"
    spec: GlobalNetworkSetSpec = Field(default_factory=GlobalNetworkSetSpec)


class Profile(_Resource):
    kind: Literal["Profile"] = "Profile"
    spec: ProfileSpec = Field(default_factory=ProfileSpec)


class Tier(_Resource):
    kind: Literal["Tier"] = "Tier"
    spec: TierSpec = Field(default_factory=TierSpec)
    status: TierStatus = Field(default_factory=TierStatus)


# Defined in their own modules, which import this one: imported once the base classes above
# exist, and named here too, so that every resource model can be imported from this module.
from felis.model import felixconfig as _felixconfig  # noqa: E402
from felis.model import namespaced as _namespaced  # noqa: E402
from felis.model import staged as _staged  # noqa: E402

NetworkPolicy = _namespaced.NetworkPolicy
NetworkSet = _namespaced.NetworkSet
StagedGlobalNetworkPolicy = _staged.StagedGlobalNetworkPolicy
StagedNetworkPolicy = _staged.StagedNetworkPolicy
StagedKubernetesNetworkPolicy = _staged.StagedKubernetesNetworkPolicy
FelixConfiguration = _felixconfig.FelixConfiguration

Resource: TypeAlias = (
    HostEndpoint
    | GlobalNetworkPolicy
    | GlobalNetworkSet
    | Tier
    | Profile
    | NetworkPolicy
    | NetworkSet
    | StagedGlobalNetworkPolicy
    | StagedNetworkPolicy
    | StagedKubernetesNetworkPolicy
    | FelixConfiguration
)
