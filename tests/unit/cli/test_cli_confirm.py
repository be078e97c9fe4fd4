"""`felis apply --confirm` and `felis confirm` on the command line (in-process; the watchdog
process is replaced and the clock moved by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import Felis, gns, write

import felis.cli.confirm as cli_confirm
from felis.resources import confirm as confirming


class _Watchdog:
    description = "pid 0 on test"
    stopped = False

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1_800_000_000.0]
    monkeypatch.setattr(confirming, "clock", lambda: now[0])
    monkeypatch.setattr(cli_confirm, "watchdog_starter", lambda datastore: lambda i, d: _Watchdog())
    return now


def _nets(felis: Felis, name: str) -> list[str]:
    shown = felis("get", "gns", name, "-o", "json")
    assert shown.code == 0, shown.err
    nets: list[str] = json.loads(shown.out)["spec"]["nets"]
    return nets


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--confirm", "10x"], "invalid --confirm window '10x'"),
        (["--confirm", "0s"], "must be between 1s and 24h"),
        (["--confirm", "60s", "--dry-run"], "--confirm and --dry-run exclude each other"),
    ],
)
def test_bad_confirm_option_is_a_usage_error(
    felis: Felis, tmp_path: Path, args: list[str], message: str
) -> None:
    done = felis("apply", "-f", write(tmp_path, "a.yaml", gns("a")), *args)
    assert done.code == 2
    assert len(done.err_lines) == 1 and message in done.err_lines[0]


def test_confirm_without_a_datastore(felis: Felis) -> None:
    done = felis("confirm")
    assert done.code == 1
    assert done.err_lines == [done.err_lines[0]] and "does not exist" in done.err_lines[0]


def test_apply_confirm_then_confirm(felis: Felis, tmp_path: Path, clock: list[float]) -> None:
    assert felis("apply", "-f", write(tmp_path, "a.yaml", gns("a"))).code == 0
    nothing = felis("confirm")
    assert (nothing.code, nothing.err_lines) == (
        1,
        ["nothing to confirm: no change applied with --confirm is pending"],
    )
    change = write(tmp_path, "b.yaml", gns("a", "198.18.5.0/24") + "---\n" + gns("b"))
    applied = felis("apply", "--confirm", "60s", "-f", change)
    assert applied.code == 0, applied.err
    assert applied.out_lines == [
        "Successfully applied 2 'GlobalNetworkSet' resource(s): 1 created, 1 updated",
        "Pending confirmation: run `felis confirm` by 2027-01-15T08:01:00Z (60s), or all 2 "
        "changed resource(s) are restored",
    ]
    again = felis("apply", "--confirm", "60s", "-f", write(tmp_path, "c.yaml", gns("c")))
    assert again.code == 1 and "is pending until 2027-01-15T08:01:00Z" in again.err
    status = felis("confirm", "--status")
    assert status.code == 0
    assert status.out_lines[0].startswith("pending: change applied at 2027-01-15T08:00:00Z by ")
    assert status.out_lines[1] == (
        "rolls back at 2027-01-15T08:01:00Z (in 60s) unless `felis confirm`"
    )
    as_json = json.loads(felis("confirm", "--status", "-o", "json").out)
    assert as_json["state"] == "pending" and len(as_json["touched"]) == 2
    clock[0] += 59
    done = felis("confirm")
    assert done.code == 0
    assert done.out_lines[0].startswith("Confirmed: the change applied at 2027-01-15T08:00:00Z")
    assert _nets(felis, "a") == ["198.18.5.0/24"]
    assert json.loads(felis("confirm", "--status", "-o", "json").out)["state"] == "confirmed"
    twice = felis("confirm")
    assert twice.code == 1 and twice.err_lines[0].startswith("nothing to confirm: the change")


def test_any_later_write_rolls_back_an_expired_change(
    felis: Felis, tmp_path: Path, clock: list[float]
) -> None:
    assert felis("apply", "-f", write(tmp_path, "a.yaml", gns("a"))).code == 0
    change = write(tmp_path, "b.yaml", gns("a", "198.18.5.0/24"))
    assert felis("apply", "--confirm", "5s", "-f", change).code == 0
    clock[0] += 5
    later = felis("apply", "-f", write(tmp_path, "c.yaml", gns("c")))
    assert later.code == 0
    assert later.err_lines == [
        "note: the change applied with --confirm at 2027-01-15T08:00:00Z was not confirmed "
        "by 2027-01-15T08:00:05Z: rolled back at 2027-01-15T08:00:05Z by felis on "
        + later.err_lines[0].rsplit(" by felis on ", 1)[1]
    ]
    assert _nets(felis, "a") == ["198.18.0.0/24"]
    late = felis("confirm")
    assert late.code == 1
    assert late.err_lines[0].startswith(
        "too late: the change applied at 2027-01-15T08:00:00Z was not confirmed by "
        "2027-01-15T08:00:05Z: rolled back at"
    )
