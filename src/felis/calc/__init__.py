"""The pure policy calculation: stored resources + node + config → `DataplaneSpec`.

    result = compute(resources, "node-1", [HostInterface("eth0", ("10.0.0.1/24",))])
    result.spec        # the backend-neutral IR for both families
    result.warnings    # things the user should know

The agent uses `Calculator`, the incremental form of the same computation.
"""

from felis.calc.calculator import CalcResult, Calculator, Skipped, compute
from felis.calc.config import CalcConfig, HostInterface
from felis.calc.failsafe import (
    DEFAULT_FAILSAFE_INBOUND,
    DEFAULT_FAILSAFE_OUTBOUND,
    FailsafeError,
    FailsafePort,
    parse_failsafe_ports,
)

__all__ = [
    "DEFAULT_FAILSAFE_INBOUND",
    "DEFAULT_FAILSAFE_OUTBOUND",
    "CalcConfig",
    "CalcResult",
    "Calculator",
    "FailsafeError",
    "FailsafePort",
    "HostInterface",
    "Skipped",
    "compute",
    "parse_failsafe_ports",
]
