"""Turn SIGTERM/SIGHUP into an exception so every `finally` (cleanup, sysctl restore) runs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"terminated by signal {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def cleanup_on_signals() -> Iterator[None]:
    """Inside this block SIGTERM/SIGHUP raise `Terminated` (SIGINT already raises
    KeyboardInterrupt), so cleanup code in `finally` blocks and context managers runs."""
    if threading.current_thread() is not threading.main_thread():
        # Signal handlers can only be installed from the main thread; callers in other
        # threads (tests) still get their `finally` on normal exceptions.
        yield
        return
    old = {sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
