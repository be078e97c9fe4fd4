"""Pure-Python (asyncio) fallback of the C load generator: same options, same JSON lines.

Used only where no C compiler exists. It reaches roughly half the C client's rate on two cores.
Run as `python -m felis.lab.pyloadgen -a 198.18.0.1 ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from felis.lab.safety import is_lab_address

IP_BIND_ADDRESS_NO_PORT = 24
SYN_RETRANS_S = 0.9


def reply_state(buf: bytes, version: bool) -> int:
    """1 = a complete reply, 0 = need more bytes, -1 = not a reply we expect."""
    if not buf.endswith(b"\r\n"):
        return 0
    if version:
        return 1 if buf.startswith(b"VERSION ") else -1
    if buf.endswith(b"END\r\n"):
        return 1
    return 0 if buf.startswith(b"VALUE ") else -1


def percentile(sorted_values: Sequence[int], p: float) -> int:
    if not sorted_values:
        return 0
    idx = min(len(sorted_values) - 1, int(p * len(sorted_values)))
    return sorted_values[idx]


@dataclass
class Counters:
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    syn_retrans: int = 0
    skipped: int = 0
    latencies_us: list[int] = field(default_factory=list)

    def line(self, kind: str, t: float) -> str:
        lat = sorted(self.latencies_us)
        return json.dumps(
            {
                "type": kind,
                "t": round(t, 3),
                "completed": self.completed,
                "failed": self.failed,
                "timed_out": self.timed_out,
                "syn_retrans": self.syn_retrans,
                "skipped": self.skipped,
                "p50_us": percentile(lat, 0.50),
                "p99_us": percentile(lat, 0.99),
            },
            separators=(",", ":"),
        )

    def add(self, other: Counters) -> None:
        self.completed += other.completed
        self.failed += other.failed
        self.timed_out += other.timed_out
        self.syn_retrans += other.syn_retrans
        self.skipped += other.skipped
        self.latencies_us.extend(other.latencies_us)


class Generator:
    def __init__(self, opts: argparse.Namespace) -> None:
        self.opts = opts
        self.request = b"version\r\n" if opts.m == "version" else b"get k\r\n"
        self.sources = (
            [str(ipaddress.IPv4Address(opts.s) + i) for i in range(opts.k)] if opts.s else []
        )
        self.cursor = 0
        self.started = 0
        self.cur = Counters()
        self.total = Counters()
        self.stop_starting = False
        self.inflight = 0

    def budget(self) -> bool:
        if self.opts.n and self.started >= self.opts.n:
            return False
        self.started += 1
        return True

    async def one(self) -> None:
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        connected: float | None = None
        self.inflight += 1
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            self.inflight -= 1
            self.cur.failed += 1
            return
        try:
            sock.setblocking(False)
            if self.sources:
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                sock.bind((self.sources[self.cursor % len(self.sources)], 0))
                self.cursor += 1
            async with asyncio.timeout(self.opts.w / 1000.0):
                await loop.sock_connect(sock, (self.opts.a, self.opts.p))
                connected = time.monotonic()
                if connected - start > SYN_RETRANS_S:
                    self.cur.syn_retrans += 1
                await loop.sock_sendall(sock, self.request)
                buf = b""
                while True:
                    data = await loop.sock_recv(sock, 4096)
                    if not data:
                        raise ConnectionError("closed before reply")
                    buf += data
                    state = reply_state(buf, self.opts.m == "version")
                    if state < 0:
                        raise ConnectionError("unexpected reply")
                    if state > 0:
                        break
            self.cur.completed += 1
            self.cur.latencies_us.append(int((time.monotonic() - start) * 1e6))
        except TimeoutError:
            self.cur.timed_out += 1
            if connected is None:
                self.cur.syn_retrans += 1
        except OSError:
            self.cur.failed += 1
        finally:
            sock.close()
            self.inflight -= 1

    async def saturating_slot(self) -> None:
        while not self.stop_starting and self.budget():
            await self.one()

    async def open_loop(self) -> None:
        period = 1.0 / self.opts.R
        tasks: set[asyncio.Task[None]] = set()
        nxt = time.monotonic()
        while not self.stop_starting:
            now = time.monotonic()
            while nxt <= now and not self.stop_starting:
                if not self.budget():
                    self.stop_starting = True
                    break
                if self.inflight >= self.opts.c:
                    self.cur.skipped += 1
                else:
                    task = asyncio.create_task(self.one())
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                nxt += period
            await asyncio.sleep(max(0.0, min(0.05, nxt - time.monotonic())))
        if tasks:
            await asyncio.gather(*tasks)

    async def reporter(self, t0: float) -> None:
        nxt = t0 + self.opts.i
        while True:
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            self.emit("interval", t0)
            nxt += self.opts.i

    def emit(self, kind: str, t0: float) -> None:
        if kind == "interval":
            cur, self.cur = self.cur, Counters()
            self.total.add(cur)
            print(cur.line(kind, time.monotonic() - t0), flush=True)
        else:
            print(self.total.line(kind, time.monotonic() - t0), flush=True)

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        t0 = time.monotonic()
        loop.call_later(self.opts.d, self.request_stop)
        reporter = asyncio.create_task(self.reporter(t0))
        if self.opts.R > 0:
            await self.open_loop()
        else:
            await asyncio.gather(*(self.saturating_slot() for _ in range(self.opts.c)))
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
        self.emit("interval", t0)
        self.emit("summary", t0)

    def request_stop(self) -> None:
        self.stop_starting = True


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="pyloadgen", description=__doc__)
    p.add_argument("-a", required=True, help="destination (198.18.0.0/15 or 127.0.0.0/8)")
    p.add_argument("-p", type=int, default=12211)
    p.add_argument("-s", default=None, help="first source address")
    p.add_argument("-k", type=int, default=1, help="number of source addresses")
    p.add_argument("-t", type=int, default=1, help="accepted for compatibility; one event loop")
    p.add_argument("-c", type=int, default=64)
    p.add_argument("-R", type=float, default=0.0)
    p.add_argument("-n", type=int, default=0)
    p.add_argument("-d", type=float, default=10.0)
    p.add_argument("-w", type=int, default=3000)
    p.add_argument("-m", choices=["get", "version"], default="get")
    p.add_argument("-i", type=float, default=1.0)
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if not is_lab_address(opts.a):
        print(
            f"pyloadgen: refusing destination {opts.a}: only 198.18.0.0/15 and 127.0.0.0/8",
            file=sys.stderr,
        )
        return 3
    asyncio.run(Generator(opts).main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
