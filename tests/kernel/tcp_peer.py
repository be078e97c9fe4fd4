"""Echo server and one-shot probe client used inside test namespaces.

Run as a script (`python tcp_peer.py serve ADDR PORT` / `probe ADDR PORT`), so each side lives in
its own network namespace via `ip netns exec`. The probe exits 0 only when its request came back.
trace_probe.py builds its many servers and concurrent probes from the pieces here.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import sys
import threading

MESSAGE = b"felis-probe\n"


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def tcp_listener(address: str, port: int) -> socket.socket:
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(512)
    return sock


def udp_listener(address: str, port: int) -> socket.socket:
    sock = socket.socket(_family(address), socket.SOCK_DGRAM)
    sock.bind((address, port))
    return sock


def serve_tcp(sock: socket.socket) -> None:
    """Echo the first read of every connection, one thread per connection (runs forever)."""
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def serve_udp(sock: socket.socket) -> None:
    """Echo every datagram (runs forever)."""
    while True:
        data, peer = sock.recvfrom(2048)
        # A firewall dropping the reply makes sendto fail with EPERM; keep serving.
        with contextlib.suppress(OSError):
            sock.sendto(data, peer)


def _echo(conn: socket.socket) -> None:
    with conn:
        # Only bounds how long a connection that never sends keeps its thread.
        conn.settimeout(10)
        try:
            data = conn.recv(2048)
            if data:
                conn.sendall(data)
        except OSError:
            pass


def serve(address: str, port: int, proto: str) -> None:
    sock = udp_listener(address, port) if proto == "udp" else tcp_listener(address, port)
    print("listening", flush=True)
    if proto == "udp":
        serve_udp(sock)
    else:
        serve_tcp(sock)


def probe(
    address: str,
    port: int,
    proto: str,
    timeout: float,
    source: str | None = None,
    source_port: int = 0,
) -> bool:
    """True when one request to address:port came back unchanged within `timeout` seconds.

    `source_port` 0 lets the kernel pick an ephemeral port."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(_family(address), kind) as sock:
        sock.settimeout(timeout)
        if source or source_port:
            # A fixed source port is reused by the next probe of the same flow while the last
            # connection still sits in TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if proto != "udp":
                # SO_REUSEADDR lets the bind through, but connect() still refuses a 4-tuple in
                # TIME_WAIT (EADDRNOTAVAIL: no packet sent, read as a drop). Closing with a
                # reset leaves no TIME_WAIT behind for the next probe of the same flow.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.bind((source or "", source_port))
        try:
            if proto == "udp":
                # Connected: with a fixed source port several probes share the port, and only
                # the connected socket of this peer receives this peer's echo.
                sock.connect((address, port))
                sock.send(MESSAGE)
                data = sock.recv(2048)
            else:
                sock.connect((address, port))
                sock.sendall(MESSAGE)
                data = sock.recv(2048)
        except OSError:
            return False
        return data == MESSAGE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "probe"])
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--proto", default="tcp", choices=["tcp", "udp"])
    parser.add_argument("--timeout", type=float, default=1.5)
    parser.add_argument("--source")
    parser.add_argument("--source-port", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.address, args.port, args.proto)
    ok = probe(args.address, args.port, args.proto, args.timeout, args.source, args.source_port)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
