"""Echo server and one-shot probe client used inside test namespaces.

Run as a script (`python tcp_peer.py serve ADDR PORT` / `probe ADDR PORT`), so each side lives in
its own network namespace via `ip netns exec`. The probe exits 0 only when its request came back.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading

MESSAGE = b"felis-probe\n"


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def serve(address: str, port: int, proto: str) -> None:
    family = _family(address)
    if proto == "udp":
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((address, port))
        print("listening", flush=True)
        while True:
            data, peer = sock.recvfrom(2048)
            # A firewall dropping the reply makes sendto fail with EPERM; keep serving.
            with contextlib.suppress(OSError):
                sock.sendto(data, peer)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(512)
    print("listening", flush=True)
    while True:
        conn, _ = sock.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(5)
        try:
            data = conn.recv(2048)
            if data:
                conn.sendall(data)
        except OSError:
            pass


def probe(address: str, port: int, proto: str, timeout: float, source: str | None) -> bool:
    family = _family(address)
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["serve", "probe"])
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("--proto", default="tcp", choices=["tcp", "udp"])
    parser.add_argument("--timeout", type=float, default=1.5)
    parser.add_argument("--source")
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.address, args.port, args.proto)
    sys.exit(0 if probe(args.address, args.port, args.proto, args.timeout, args.source) else 1)


if __name__ == "__main__":
    main()
