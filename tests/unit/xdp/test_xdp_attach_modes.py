"""Which XDP modes `XdpDataplane.attach` tries, with a fake `ip`/`bpftool`: native first, then
generic only when genericXDPEnabled allows it, and a generic attachment replaced when it no
longer does."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from felis.errors import FelisError
from felis.sysexec import CommandError
from felis.xdp.attach import PROGRAM_NAME, XdpDataplane

MODE_NUMBER = {"xdpdrv": 1, "xdpgeneric": 2}


class FakeKernel:
    """One interface; `native` says whether its driver has native XDP."""

    def __init__(self, *, native: bool, attached: str | None = None) -> None:
        self.native = native
        self.mode = attached
        self.tried: list[str] = []

    def __call__(self, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        out = ""
        if argv[0] == "ip" and "-j" in argv:
            link: dict[str, Any] = {"ifname": "eth0"}
            if self.mode is not None:
                link["xdp"] = {"mode": MODE_NUMBER[self.mode],
                               "prog": {"id": 7, "name": PROGRAM_NAME}}  # fmt: skip
            out = json.dumps([link])
        elif argv[0] == "ip":
            mode, action = argv[5], argv[6]
            if action == "off":
                self.mode = None
            else:
                self.tried.append(mode)
                if mode == "xdpdrv" and not self.native:
                    raise CommandError(list(argv), 2, "Operation not supported")
                self.mode = mode
        elif argv[:3] == ["bpftool", "-j", "prog"]:
            out = json.dumps({"map_ids": []})
        return subprocess.CompletedProcess(list(argv), 0, out, "")


def xdp(kernel: FakeKernel) -> XdpDataplane:
    return XdpDataplane(runner=kernel, obj=Path("/nonexistent/blocklist.o"))


def test_native_first_then_generic_when_allowed() -> None:
    kernel = FakeKernel(native=False)
    assert xdp(kernel).attach("eth0").mode == "generic"
    assert kernel.tried == ["xdpdrv", "xdpgeneric"]
    native = FakeKernel(native=True)
    assert xdp(native).attach("eth0").mode == "native" and native.tried == ["xdpdrv"]


def test_without_generic_a_driver_lacking_native_xdp_is_left_to_the_raw_table() -> None:
    kernel = FakeKernel(native=False)
    with pytest.raises(FelisError, match="no native XDP and genericXDPEnabled is false"):
        xdp(kernel).attach("eth0", allow_generic=False)
    assert kernel.tried == ["xdpdrv"] and kernel.mode is None


def test_a_generic_attachment_goes_when_generic_is_no_longer_allowed() -> None:
    kernel = FakeKernel(native=True, attached="xdpgeneric")
    assert xdp(kernel).attach("eth0", allow_generic=False).mode == "native"
    assert kernel.tried == ["xdpdrv"]
    kept = FakeKernel(native=True, attached="xdpgeneric")
    assert xdp(kept).attach("eth0").mode == "generic" and kept.tried == []


def _sysfs(tmp_path: Path, queues: int) -> Path:
    for n in range(queues):
        (tmp_path / "eth0" / "queues" / f"rx-{n}").mkdir(parents=True)
        (tmp_path / "eth0" / "queues" / f"tx-{n}").mkdir(parents=True)
    return tmp_path


def test_a_single_queue_veth_under_native_xdp_is_flagged(tmp_path: Path) -> None:
    from felis.xdp.attach import Attached, receive_queues, shared_ring_warning

    one = _sysfs(tmp_path / "one", 1)
    two = _sysfs(tmp_path / "two", 2)
    veth = Attached("eth0", 7, "native", {}, "veth")
    assert receive_queues("eth0", one) == 1 and receive_queues("eth0", two) == 2
    warning = shared_ring_warning(veth, one)
    assert warning is not None and "one receive queue" in warning
    assert shared_ring_warning(veth, two) is None
    assert shared_ring_warning(Attached("eth0", 7, "native", {}, None), one) is None  # a NIC
    assert shared_ring_warning(Attached("eth0", 7, "generic", {}, "veth"), one) is None
    assert receive_queues("eth0", tmp_path / "absent") is None
    assert shared_ring_warning(veth, tmp_path / "absent") is None


def test_the_status_line_carries_the_warning() -> None:
    from felis.cli.dataplane import _xdp_line

    row = {"interface": "eth0", "mode": "native", "program": 7, "entries": 1,
           "dropped_packets": 5, "top": [], "eligible": 1,
           "warning": "veth with one receive"}  # fmt: skip
    assert _xdp_line(row) == (
        "eth0 native (1 entries, 5 packets dropped); warning: veth with one receive"
    )
