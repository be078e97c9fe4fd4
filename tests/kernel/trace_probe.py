"""Many echo servers, or many concurrent probes, in one process (for the trace differential test).

    python trace_probe.py serve PORT...          # TCP and UDP echo on 0.0.0.0:PORT each
    python trace_probe.py probe TIMEOUT JSON     # JSON: [[id, address, port, "tcp"|"udp",
                                                 #         source port or 0], ...]

`probe` fires every request at once (one thread each), so denied ones time out together, and
prints one JSON object {id: true|false}: true when the echo came back within TIMEOUT seconds.
Run inside a test namespace via `ip netns exec`; it only talks to the addresses it is given.
The echo and the single probe are tcp_peer.py's (this directory is sys.path[0] for a script).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable

from tcp_peer import probe as probe_one
from tcp_peer import serve_tcp, serve_udp, tcp_listener, udp_listener


def serve(ports: list[int]) -> None:
    servers: list[tuple[Callable[[socket.socket], None], socket.socket]] = []
    for port in ports:
        servers.append((serve_udp, udp_listener("0.0.0.0", port)))
        servers.append((serve_tcp, tcp_listener("0.0.0.0", port)))
    for target, sock in servers:
        threading.Thread(target=target, args=(sock,), daemon=True).start()
    print("listening", flush=True)
    threading.Event().wait()


def probe(timeout: float, targets: list[list[object]]) -> None:
    results: dict[str, bool] = {}

    def run(target: list[object]) -> None:
        ident, address, port, proto, source_port = target
        results[str(ident)] = probe_one(
            str(address), int(str(port)), str(proto), timeout, source_port=int(str(source_port))
        )

    threads = [threading.Thread(target=run, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(results), flush=True)


def main() -> None:
    if sys.argv[1] == "serve":
        serve([int(p) for p in sys.argv[2:]])
    elif sys.argv[1] == "probe":
        probe(float(sys.argv[2]), json.loads(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
