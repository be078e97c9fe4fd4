"""Many echo servers, or many concurrent probes, in one process (for the trace differential test).

    python trace_probe.py serve PORT...          # TCP and UDP echo on 0.0.0.0:PORT each
    python trace_probe.py probe TIMEOUT JSON     # JSON: [[id, address, port, "tcp"|"udp"], ...]

`probe` fires every request at once (one thread each), so denied ones time out together, and
prints one JSON object {id: true|false}: true when the echo came back within TIMEOUT seconds.
Run inside a test namespace via `ip netns exec`; it only talks to the addresses it is given.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading

MESSAGE = b"felis-trace-probe\n"


def _tcp_server(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    sock.listen(512)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(10)
        try:
            data = conn.recv(2048)
            if data:
                conn.sendall(data)
        except OSError:
            pass


def _udp_server(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(2048)
        # A reply the firewall drops in OUTPUT fails here with EPERM; the server must live on.
        with contextlib.suppress(OSError):
            sock.sendto(data, peer)


def serve(ports: list[int]) -> None:
    threads = []
    for port in ports:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("0.0.0.0", port))
        threads.append(threading.Thread(target=_udp_server, args=(udp,), daemon=True))
        threads.append(threading.Thread(target=_tcp_server, args=(port,), daemon=True))
    for thread in threads:
        thread.start()
    print("listening", flush=True)
    threading.Event().wait()


def _probe(address: str, port: int, proto: str, timeout: float) -> bool:
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout)
        try:
            if proto == "udp":
                sock.sendto(MESSAGE, (address, port))
                data, _ = sock.recvfrom(2048)
            else:
                sock.connect((address, port))
                sock.sendall(MESSAGE)
                data = sock.recv(2048)
        except OSError:
            return False
        return data == MESSAGE


def probe(timeout: float, targets: list[list[object]]) -> None:
    results: dict[str, bool] = {}

    def run(target: list[object]) -> None:
        ident, address, port, proto = target
        results[str(ident)] = _probe(str(address), int(str(port)), str(proto), timeout)

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
