"""Trace a packet through the dataplane IR exactly as the kernel runs it.

    from felis.trace import Packet, Direction, trace
    result = trace(spec, Packet("10.0.0.2", "10.0.0.1", 6, sport=40000, dport=12211,
                                in_iface="eth0"))
    result.verdict, result.tracking, result.decided_by, result.steps

`trace` is pure: it reads the `DataplaneSpec` calc produced (the very structure the renderers
print), never the kernel.
"""

from felis.trace.packet import Direction, Packet, TraceError, parse_host_port, parse_protocol
from felis.trace.walk import PATHS, Step, TraceResult, Tracking, Verdict, trace

__all__ = [
    "PATHS",
    "Direction",
    "Packet",
    "Step",
    "TraceError",
    "TraceResult",
    "Tracking",
    "Verdict",
    "parse_host_port",
    "parse_protocol",
    "trace",
]
