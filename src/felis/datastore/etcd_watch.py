"""A resumable etcd watch: one gateway stream at a time, reopened from the last revision.

The stream (`POST /v3/watch`, newline-separated JSON messages) is read by a daemon thread into a
queue, so the consumer can wake up every `poll_interval` to look at `stop` and at the health of
the member it is attached to. When the stream ends (member stopped, connection reset, member
lost its leader) the watch reopens on the next endpoint from `cursor + 1`; events already
yielded are never repeated because a revision is never split across two messages.

Compaction: etcd cancels the stream with `compact_revision` set; that becomes `Compacted`.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import requests

from felis.datastore.base import WatchEvent
from felis.datastore.errors import Compacted, Unavailable
from felis.datastore.etcd_client import EtcdClient, ServerError, b64, prefix_end

log = logging.getLogger("felis.datastore.etcd")

# How long a stream may stay silent before the watcher asks its member whether it is alive.
PROBE_INTERVAL = 5.0
# A drain (stop set) whose target revision is not reached ends after this much silence: the
# target may belong to a key outside the watched prefix, whose event never comes.
DRAIN_QUIET = 0.3

Decoder = Callable[[dict[str, Any]], WatchEvent | None]
_END = "end"
_MSG = "msg"


class _Stream:
    """One open watch stream and the thread that reads it."""

    def __init__(self, response: requests.Response, url: str) -> None:
        self.response = response
        self.url = url
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"etcd-watch {url}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        try:
            for chunk in self.response.iter_content(chunk_size=None):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        self.queue.put((_MSG, json.loads(line)))
            self.queue.put((_END, "stream closed by the server"))
        except Exception as exc:  # a read error only means: reconnect
            if not self._closed.is_set():
                self.queue.put((_END, " ".join(str(exc).split())[:200] or type(exc).__name__))

    def close(self) -> None:
        self._closed.set()
        # Closing the response alone does not wake a thread blocked in recv(); shutting the
        # socket down does.
        try:
            sock = self.response.raw.connection.sock
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        self.response.close()


class EtcdWatch:
    """Iterator of WatchEvents after `since` for keys under `prefix` (see module docstring)."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        since: int,
        decode: Decoder,
        stop: threading.Event | None,
        poll_interval: float,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.cursor = since
        self.decode = decode
        self.stop = stop
        self.poll_interval = max(0.001, poll_interval)
        self._stream: _Stream | None = None
        self._closed = False
        self._stream = self._open()
        try:
            self._check_history()
        except BaseException:
            self.close()
            raise

    def _create_request(self) -> dict[str, Any]:
        return {
            "key": b64(self.prefix),
            "range_end": prefix_end(self.prefix),
            # etcd treats 0 as "from now", so revision 0 is asked for as 1 (never an event).
            "start_revision": self.cursor + 1,
            "prev_kv": True,
            "progress_notify": True,
        }

    def _open(self) -> _Stream:
        response, url = self.client.open_watch(self._create_request())
        return _Stream(response, url)

    def _check_history(self) -> None:
        """Raise Compacted at the call when the asked-for history is already gone."""
        try:
            self.client.range("\0", revision=self.cursor + 1)
        except ServerError as err:
            if "future revision" in err.message:
                return  # nothing after `since` yet: no history needed
            if "compacted" not in err.message:
                raise
        else:
            return
        # etcd's cancel message names the oldest revision still kept; wait for it.
        assert self._stream is not None
        deadline = time.monotonic() + self.client.timeout
        while time.monotonic() < deadline:
            try:
                kind, payload = self._stream.queue.get(timeout=0.05)
            except queue.Empty:
                continue
            if kind == _MSG:
                result = payload.get("result", {})
                if result.get("canceled") and result.get("compact_revision"):
                    raise Compacted(self.cursor, int(result["compact_revision"]))
        raise Compacted(self.cursor, self.cursor + 2)

    def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _reconnect(self, reason: str) -> bool:
        """Reopen from cursor + 1; False when `stop` was set meanwhile."""
        if self._closed or self._stream is None:
            return False
        old = self._stream.url
        self._stream.close()
        self._stream = None
        log.warning(
            "etcd watch on %s lost (%s); resuming from revision %d", old, reason, self.cursor + 1
        )
        deadline = time.monotonic() + self.client.retry_for
        delay = 0.05
        while True:
            if self.stop is not None and self.stop.is_set():
                return False
            try:
                self._stream = self._open()
            except Unavailable:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            log.info("etcd watch resumed on %s from revision %d", self._stream.url, self.cursor + 1)
            return True

    def __iter__(self) -> Iterator[WatchEvent]:
        try:
            yield from self._run()
        finally:
            self.close()

    def _run(self) -> Iterator[WatchEvent]:
        drain_target: int | None = None
        last_message = time.monotonic()
        while not self._closed:
            if drain_target is None and self.stop is not None and self.stop.is_set():
                try:
                    drain_target = self.client.revision()
                except Unavailable:
                    return
            if drain_target is not None and self.cursor >= drain_target:
                return
            stream = self._stream
            if stream is None:
                return
            try:
                kind, payload = stream.queue.get(timeout=self.poll_interval)
            except queue.Empty:
                now = time.monotonic()
                if drain_target is not None and now - last_message > DRAIN_QUIET:
                    return
                if now - last_message > PROBE_INTERVAL:
                    last_message = now
                    if not self.client.probe(stream.url) and not self._reconnect(
                        "member does not answer"
                    ):
                        return
                continue
            last_message = time.monotonic()
            if kind == _END:
                if not self._reconnect(str(payload)):
                    return
                continue
            result = payload.get("result")
            if not isinstance(result, dict):
                error = payload.get("error", payload)
                if not self._reconnect(f"stream error: {json.dumps(error)[:200]}"):
                    return
                continue
            if result.get("canceled"):
                compact = int(result.get("compact_revision") or 0)
                if compact:
                    raise Compacted(self.cursor, compact)
                reason = result.get("cancel_reason") or "watch cancelled by the server"
                if not self._reconnect(str(reason)):
                    return
                continue
            events = result.get("events")
            if not events:
                if not result.get("created"):  # progress notification: nothing up to here
                    self.cursor = max(self.cursor, int(result["header"]["revision"]))
                continue
            for raw in events:
                revision = int(raw["kv"]["mod_revision"])
                if revision <= self.cursor:
                    continue
                event = self.decode(raw)
                # The cursor moves only after the revision's last event (see module docstring).
                if event is not None:
                    yield event
            self.cursor = max(self.cursor, int(events[-1]["kv"]["mod_revision"]))
