"""Calico's FelixConfiguration resource (`projectcalico.org/v3`, cluster-scoped).

Felix reads the object named `default` (every node) and `node.<nodename>` (that node, which wins
over `default`); any other valid name is accepted and stored, as Calico does. felis honours the
fields that mean something for host endpoints (`felis.calc.felixconfig` turns them into the
node's settings, docs/configuration.md lists them) and checks those with Calico's rules here.
Every other field Calico's FelixConfigurationSpec has is accepted and stored exactly as written,
without a check, since felis never reads it; a field Calico does not have is an error, as
calicoctl's strict decoding makes it.

Defaulting is calicoctl's (its client fills in `floatingIPs`, `bpfConnectTimeLoadBalancing` and
`bpfHostNetworkedNATWithoutCTLB` before it stores the object), so both store the same JSON.
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from pydantic import (
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    model_serializer,
    model_validator,
)

from felis.model import checks
from felis.model.constants import PORT_PROTOCOL_NUMBERS
from felis.model.paths import join, printable
from felis.model.resources import Str, _Model, _Resource, report_problems

# Every field of Calico's FelixConfigurationSpec by its JSON name, in Go's order (the order
# Calico writes them in, which a dump reproduces).
SPEC_FIELDS: Final[tuple[str, ...]] = (
    "nodeSelector", "useInternalDataplaneDriver", "dataplaneDriver", "dataplaneWatchdogTimeout",
    "ipv6Support", "routeRefreshInterval", "interfaceRefreshInterval", "iptablesRefreshInterval",
    "iptablesPostWriteCheckInterval", "iptablesLockProbeInterval", "featureDetectOverride",
    "featureGates", "ipsetsRefreshInterval", "maxIpsetSize", "iptablesBackend",
    "xdpRefreshInterval", "netlinkTimeout", "metadataAddr", "metadataPort", "openstackRegion",
    "interfacePrefix", "interfaceExclude", "chainInsertMode", "defaultEndpointToHostAction",
    "iptablesFilterAllowAction", "iptablesMangleAllowAction", "iptablesFilterDenyAction",
    "logPrefix", "logActionRateLimit", "logActionRateLimitBurst", "logFilePath",
    "logSeverityFile", "logSeverityScreen", "logSeveritySys", "logDebugFilenameRegex",
    "ipipEnabled", "ipipMTU", "vxlanEnabled", "vxlanMTU", "vxlanMTUV6", "vxlanPort", "vxlanVNI",
    "allowVXLANPacketsFromWorkloads", "allowIPIPPacketsFromWorkloads", "reportingInterval",
    "reportingTTL", "endpointReportingEnabled", "endpointReportingDelay",
    "endpointStatusPathPrefix", "iptablesMarkMask", "disableConntrackInvalidCheck",
    "healthEnabled", "healthHost", "healthPort", "healthTimeoutOverrides",
    "prometheusMetricsEnabled", "prometheusMetricsHost", "prometheusMetricsPort",
    "prometheusGoMetricsEnabled", "prometheusProcessMetricsEnabled",
    "prometheusWireGuardMetricsEnabled", "prometheusMetricsCAFile", "prometheusMetricsCertFile",
    "prometheusMetricsKeyFile", "prometheusMetricsClientAuth", "failsafeInboundHostPorts",
    "failsafeOutboundHostPorts", "kubeNodePortRanges", "policySyncPathPrefix",
    "usageReportingEnabled", "usageReportingInitialDelay", "usageReportingInterval",
    "natPortRange", "natOutgoingAddress", "natOutgoingExclusions", "deviceRouteSourceAddress",
    "deviceRouteSourceAddressIPv6", "deviceRouteProtocol", "removeExternalRoutes",
    "programClusterRoutes", "ipForwarding", "externalNodesList", "debugMemoryProfilePath",
    "debugDisableLogDropping", "debugSimulateCalcGraphHangAfter",
    "debugSimulateDataplaneHangAfter", "debugSimulateDataplaneApplyDelay", "debugHost",
    "debugPort", "iptablesNATOutgoingInterfaceFilter", "sidecarAccelerationEnabled",
    "xdpEnabled", "genericXDPEnabled", "nftablesMode", "nftablesFlowTableOffload",
    "nftablesFlowTableDataIfacePattern", "nftablesRefreshInterval", "nftablesFilterAllowAction",
    "nftablesMangleAllowAction", "nftablesFilterDenyAction", "nftablesMarkMask", "bpfEnabled",
    "bpfOverlayHostSourceIP", "bpfDisableUnprivileged", "bpfJITHardening", "bpfLogLevel",
    "bpfConntrackLogLevel", "bpfConntrackMode", "bpfConntrackTimeouts", "bpfIPFragTimeout",
    "bpfLogFilters", "bpfCTLBLogFilter", "bpfDataIfacePattern", "bpfL3IfacePattern",
    "bpfConnectTimeLoadBalancingEnabled", "bpfConnectTimeLoadBalancing",
    "bpfHostNetworkedNATWithoutCTLB", "bpfExternalServiceMode", "bpfDSROptoutCIDRs",
    "bpfExtToServiceConnmark", "bpfKubeProxyIptablesCleanupEnabled",
    "bpfKubeProxyMinSyncPeriod", "bpfKubeProxyHealthzPort", "bpfPSNATPorts",
    "bpfMapSizeNATFrontend", "bpfMapSizeNATBackend", "bpfMapSizeNATAffinity", "bpfMapSizeRoute",
    "bpfMapSizeConntrack", "bpfMapSizePerCpuConntrack", "bpfMapSizeConntrackScaling",
    "bpfMapSizeConntrackCleanupQueue", "bpfMapSizeIPSets", "bpfMapSizeIfState",
    "bpfHostConntrackBypass", "bpfIPFragmentReassemblyEnabled", "bpfEnforceRPF",
    "bpfPolicyDebugEnabled", "bpfForceTrackPacketsFromIfaces", "bpfDisableGROForIfaces",
    "bpfExcludeCIDRsFromNAT", "bpfExportBufferSizeMB", "istioAmbientMode", "istioDSCPMark",
    "cgroupV2Path", "flowLogsPolicyEvaluationMode", "bpfRedirectToPeer", "bpfAttachType",
    "flowLogsFlushInterval", "flowLogsCollectorDebugTrace", "flowLogsGoldmaneServer",
    "flowLogsLocalReporter", "bpfProfiling", "routeSource", "routeTableRanges",
    "routeTableRange", "routeSyncDisabled", "ipv4NormalRoutePriority",
    "ipv4ElevatedRoutePriority", "ipv6NormalRoutePriority", "ipv6ElevatedRoutePriority",
    "liveMigrationRouteConvergenceTime", "wireguardEnabled", "wireguardEnabledV6",
    "wireguardThreadingEnabled", "wireguardListeningPort", "wireguardListeningPortV6",
    "wireguardRoutingRulePriority", "wireguardInterfaceName", "wireguardInterfaceNameV6",
    "wireguardMTU", "wireguardMTUV6", "wireguardHostEncryptionEnabled", "wireguardKeepAlive",
    "awsSrcDstCheck", "serviceLoopPrevention", "workloadSourceSpoofing", "mtuIfacePattern",
    "floatingIPs", "localSubnetL2Reachability", "localSubnetL2ReachabilityRefreshInterval",
    "windowsManageFirewallRules", "goGCThreshold", "goMemoryLimitMB", "goMaxProcs",
    "requireMTUFile", "bpfMaglevMaxEndpointsPerService", "bpfMaglevMaxServices",
)  # fmt: skip
_FIELD_ORDER: Final = {name: index for index, name in enumerate(SPEC_FIELDS)}

GLOBAL_NAME: Final = "default"
NODE_PREFIX: Final = "node."

# The fields felis acts on (felis.calc.felixconfig.PARAMS; docs/configuration.md).
HONOURED_FIELDS: Final = frozenset(
    {
        "failsafeInboundHostPorts",
        "failsafeOutboundHostPorts",
        "logPrefix",
        "chainInsertMode",
        "iptablesMarkMask",
        "nftablesMarkMask",
        "interfaceExclude",
        "xdpEnabled",
        "genericXDPEnabled",
        "ipsetsRefreshInterval",
        "nftablesRefreshInterval",
    }
)

MARK_BITS_NEEDED: Final = 5
"""felis takes accept, pass, drop and two scratch bits from a mark mask."""
MARK_MASK_MAX: Final = 0xFFFFFFFF

# Calico's patterns (its CRD's, and Felix's for the interface list).
_CHAIN_INSERT_MODE = re.compile(r"(?i)(Insert|Append)?")
_ENDPOINT_TO_HOST_ACTION = re.compile(r"(?i)(Drop|Accept|Return)?")
_LOG_PREFIX = re.compile(r"[a-zA-Z0-9%: /_-]*")
_IFACE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,15}")
_IFACE_REGEX = re.compile(r"/\S+/")
# A stored duration (Go's metav1.Duration), in the form Calico's CRD allows: "90s", "1m30s".
_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+")
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
FAILSAFE_PROTOCOLS: Final = tuple(PORT_PROTOCOL_NUMBERS)
"""The protocols with ports, compared lower-cased: Calico lower-cases a protocol before Felix
reads it."""

Problem = tuple[str, str]


class ProtoPort(_Model):
    """One failsafe entry. An empty protocol means TCP, as Calico documents."""

    protocol: Str = ""
    port: int = Field(ge=1, le=65535)
    net: Str = ""


class FelixConfigurationSpec(_Model):
    # The fields felis checks are typed; every other Calico field is kept as written (an
    # extra), and one Calico does not have is reported by `felix_problems`.
    model_config = ConfigDict(extra="allow")

    node_selector: Str | None = Field(None, alias="nodeSelector", max_length=1024)
    interface_exclude: Str | None = Field(None, alias="interfaceExclude")
    chain_insert_mode: Str | None = Field(None, alias="chainInsertMode")
    default_endpoint_to_host_action: Str | None = Field(None, alias="defaultEndpointToHostAction")
    log_prefix: Str | None = Field(None, alias="logPrefix")
    iptables_mark_mask: int | None = Field(None, alias="iptablesMarkMask", ge=0, le=MARK_MASK_MAX)
    failsafe_inbound_host_ports: list[ProtoPort] | None = Field(
        None, alias="failsafeInboundHostPorts"
    )
    failsafe_outbound_host_ports: list[ProtoPort] | None = Field(
        None, alias="failsafeOutboundHostPorts"
    )
    xdp_enabled: bool | None = Field(None, alias="xdpEnabled")
    generic_xdp_enabled: bool | None = Field(None, alias="genericXDPEnabled")
    nftables_mark_mask: int | None = Field(None, alias="nftablesMarkMask", ge=0, le=MARK_MASK_MAX)
    ipsets_refresh_interval: Str | None = Field(None, alias="ipsetsRefreshInterval")
    nftables_refresh_interval: Str | None = Field(None, alias="nftablesRefreshInterval")

    @model_serializer(mode="wrap")
    def _in_calico_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        # Unknown keys (only in an object built without the checks) go last, as written.
        return dict(
            sorted(dumped.items(), key=lambda item: _FIELD_ORDER.get(item[0], len(_FIELD_ORDER)))
        )


class FelixConfiguration(_Resource):
    kind: Literal["FelixConfiguration"] = "FelixConfiguration"
    spec: FelixConfigurationSpec = Field(default_factory=FelixConfigurationSpec)

    @model_validator(mode="after")
    def _felix_defaults_and_checks(self, info: ValidationInfo) -> Any:
        apply_defaults(self)
        report_problems(felix_problems(self), info)
        return self

    @property
    def node(self) -> str | None:
        """The node a `node.<nodename>` object configures; None for any other name."""
        name = self.metadata.name
        return name[len(NODE_PREFIX) :] if name.startswith(NODE_PREFIX) else None


# --------------------------------------------------------------------------- defaulting


def apply_defaults(config: FelixConfiguration) -> None:
    """calicoctl's client defaults, so that both store the same object."""
    extra = config.spec.model_extra
    if extra is None:  # pragma: no cover - the spec allows extra fields
        return
    # A null is Go's nil pointer or empty string: the field is not there.
    for key in [key for key, value in extra.items() if value is None]:
        del extra[key]
    extra.setdefault("floatingIPs", "Disabled")
    extra.setdefault("bpfConnectTimeLoadBalancing", "TCP")
    extra.setdefault("bpfHostNetworkedNATWithoutCTLB", "Enabled")
    enabled = extra.get("bpfConnectTimeLoadBalancingEnabled")
    if isinstance(enabled, bool):
        # The old boolean, when present, decides both newer fields (as calicoctl does).
        extra["bpfHostNetworkedNATWithoutCTLB"] = "Disabled"
        extra["bpfConnectTimeLoadBalancing"] = "Enabled" if enabled else "Disabled"


# --------------------------------------------------------------------------- checks


def _q(value: object) -> str:
    return printable(str(value))


def felix_problems(config: FelixConfiguration) -> list[Problem]:
    """Every problem of the fields felis checks, and every field Calico does not have."""
    problems: list[Problem] = []
    spec = config.spec
    name = config.metadata.name
    for key in spec.model_extra or {}:
        if key not in _FIELD_ORDER:
            problems.append(
                (join("spec", key), "field is not recognized or is in the wrong location")
            )
    if spec.node_selector is not None:
        if name == GLOBAL_NAME or name.startswith(NODE_PREFIX):
            problems.append(
                (
                    "spec.nodeSelector",
                    "nodeSelector must not be set on the 'default' or per-node ('node.*') "
                    "FelixConfiguration",
                )
            )
        reason = checks.selector_reason(spec.node_selector)
        if reason:
            problems.append(("spec.nodeSelector", reason))
    for field, value, pattern, allowed in (
        ("chainInsertMode", spec.chain_insert_mode, _CHAIN_INSERT_MODE, "Insert or Append"),
        (
            "defaultEndpointToHostAction",
            spec.default_endpoint_to_host_action,
            _ENDPOINT_TO_HOST_ACTION,
            "Drop, Accept or Return",
        ),
    ):
        if value is not None and not pattern.fullmatch(value):
            problems.append(
                (f"spec.{field}", f"unsupported value '{_q(value)}': must be {allowed}")
            )
    if spec.log_prefix is not None:
        reason = log_prefix_reason(spec.log_prefix)
        if reason:
            problems.append(("spec.logPrefix", reason))
    for field, mask in (
        ("iptablesMarkMask", spec.iptables_mark_mask),
        ("nftablesMarkMask", spec.nftables_mark_mask),
    ):
        if mask is not None:
            reason = mark_mask_reason(mask)
            if reason:
                problems.append((f"spec.{field}", reason))
    for field, text in (
        ("ipsetsRefreshInterval", spec.ipsets_refresh_interval),
        ("nftablesRefreshInterval", spec.nftables_refresh_interval),
    ):
        if text is not None and duration_seconds(text) is None:
            problems.append(
                (
                    f"spec.{field}",
                    f"invalid duration '{_q(text)}': a number with a unit (ms, s, m, h), "
                    "e.g. 90s or 1m30s",
                )
            )
    if spec.interface_exclude:
        reason = interface_exclude_reason(spec.interface_exclude)
        if reason:
            problems.append(("spec.interfaceExclude", reason))
    for field, entries in (
        ("failsafeInboundHostPorts", spec.failsafe_inbound_host_ports),
        ("failsafeOutboundHostPorts", spec.failsafe_outbound_host_ports),
    ):
        for index, entry in enumerate(entries or ()):
            _check_proto_port(entry, f"spec.{field}[{index}]", problems)
    return problems


def _check_proto_port(entry: ProtoPort, path: str, problems: list[Problem]) -> None:
    if entry.protocol and entry.protocol.lower() not in FAILSAFE_PROTOCOLS:
        problems.append(
            (
                f"{path}.protocol",
                f"unsupported protocol '{_q(entry.protocol)}': must be TCP, UDP or SCTP",
            )
        )
    if entry.net and checks.parse_cidr_or_ip(entry.net) is None:
        problems.append((f"{path}.net", f"invalid CIDR or IP address '{_q(entry.net)}'"))


def log_prefix_reason(text: str) -> str | None:
    if _LOG_PREFIX.fullmatch(text):
        return None
    return (
        f"invalid log prefix '{_q(text)}': only letters, digits, space and the characters "
        "% : / _ - are allowed"
    )


def mark_mask_reason(mask: int) -> str | None:
    if not 0 <= mask <= MARK_MASK_MAX:
        return f"mark mask {mask} is not a 32-bit value"
    bits = bin(mask).count("1")
    if bits < MARK_BITS_NEEDED:
        return (
            f"mark mask {mask:#x} has {bits} bit(s) set: felis needs at least "
            f"{MARK_BITS_NEEDED} (accept, pass, drop and two scratch bits)"
        )
    return None


def duration_seconds(text: str) -> float | None:
    """A stored duration in seconds; None when Calico would refuse it."""
    if not _DURATION.fullmatch(text):
        return None
    return sum(
        float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text)
    )


def interface_exclude_reason(text: str) -> str | None:
    """Felix's syntax: comma-separated, each an interface name or a `/regex/` (no spaces)."""
    for entry in text.split(","):
        if _IFACE_REGEX.fullmatch(entry):
            try:
                re.compile(entry[1:-1])
            except re.error as err:
                return f"entry '{_q(entry)}' is not a valid regular expression: {err}"
        elif not _IFACE_NAME.fullmatch(entry):
            return (
                f"entry '{_q(entry)}' is neither an interface name (1-15 characters from "
                "a-z A-Z 0-9 _ -) nor a /regex/"
            )
    return None
