"""Watch-only simulated agents over etcd's gRPC API (for `etcd grpc-proxy`), one asyncio process.

`etcd grpc-proxy` (etcd 3.4) serves the gRPC API only: no `/v3/` JSON gateway, which is what
felis' client (etcd3gw) speaks. So the proxy's fan-out is measured with a maintained gRPC client,
aetcd (asyncio), run by an interpreter that has it (`--grpc-python`; not a felis dependency).
Each simulated agent has its own gRPC connection, reads the whole prefix once (its snapshot)
and then watches the prefix from the next revision, recording the same markers as
fleet_worker's watch mode (JSON on stdout when asked).

Protocol: one JSON command per stdin line, one JSON answer per stdout line:
`start`, `synced`, `restart`, `recordings`, `stop`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aetcd  # type: ignore[import-not-found]

PREFIX = b"/calico/resources/v3/projectcalico.org/"
PROBE_KEY = PREFIX + b"globalnetworkpolicies/fleet-probe"
PROBE_BASE = 40_000


def _probe(value: bytes) -> int:
    return int(json.loads(value)["spec"]["ingress"][0]["destination"]["ports"][0]) - PROBE_BASE


def _db(value: bytes) -> tuple[str, bool] | None:
    obj = json.loads(value)
    labels = obj.get("metadata", {}).get("labels", {})
    if "fleet-role" not in labels:
        return None
    return obj["spec"]["expectedIPs"][0], labels["fleet-role"] == "db"


class Watcher:
    def __init__(self, node: int, host: str, port: int) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.probe: list[tuple[float, int]] = []
        self.db: list[tuple[float, str, bool]] = []
        self.last_db: set[str] = set()
        self.in_sync = False
        self.resyncs = 0
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        # A lost stream (member restarted, history compacted) means a fresh snapshot, as the
        # felis agent does after a compaction.
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.resyncs += 1
                await asyncio.sleep(0.5)

    async def _follow(self) -> None:
        async with aetcd.Client(host=self.host, port=self.port, timeout=30) as client:
            result = await client.get_prefix(PREFIX)
            revision = result.header.revision
            db: set[str] = set()
            probe = -1
            for kv in result:
                if kv.key == PROBE_KEY:
                    probe = _probe(kv.value)
                elif b"/hostendpoints/" in kv.key and b"fleet-role" in kv.value:
                    found = _db(kv.value)
                    if found and found[1]:
                        db.add(found[0])
            now = time.time()
            self.probe.append((now, probe))
            self.db.extend((now, a, True) for a in db - self.last_db)
            self.db.extend((now, a, False) for a in self.last_db - db)
            self.last_db = db
            self.in_sync = True
            watch = await client.watch_prefix(PREFIX, start_revision=revision + 1)
            async for event in watch:
                now = time.time()
                key = event.kv.key
                if key == PROBE_KEY:
                    self.probe.append((now, _probe(event.kv.value)))
                elif b"/hostendpoints/" in key and event.kv.value:
                    found = _db(event.kv.value)
                    if found:
                        self.db.append((now, found[0], found[1]))


async def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    nodes = [int(n) for n in sys.argv[3].split(",") if n]
    watchers = [Watcher(n, host, port) for n in nodes]
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def start() -> None:
        for w in watchers:
            w.in_sync = False
            w.task = asyncio.create_task(w.run())

    async def halt() -> None:
        for w in watchers:
            if w.task is not None:
                w.task.cancel()
        await asyncio.gather(*(w.task for w in watchers if w.task), return_exceptions=True)

    while True:
        line = await reader.readline()
        if not line:
            await halt()
            return
        command = json.loads(line)
        answer: Any
        if command == "start":
            start()
            answer = len(watchers)
        elif command == "synced":
            answer = sum(1 for w in watchers if w.in_sync)
        elif command == "restart":
            await halt()
            start()
            answer = len(watchers)
        elif command == "resyncs":
            answer = sum(w.resyncs for w in watchers)
        elif command == "recordings":
            answer = {w.node: {"probe": w.probe, "db": w.db} for w in watchers}
        elif command == "stop":
            await halt()
            print(json.dumps(True), flush=True)
            return
        else:
            answer = f"unknown command {command!r}"
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
