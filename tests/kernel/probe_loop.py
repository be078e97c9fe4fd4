"""A client that connects to one echo service again and again until told to stop.

    python probe_loop.py ADDRESS PORT STOPFILE [--timeout S] [--max-seconds S]

Each round is a new TCP connection that sends a line and waits for its echo. Every 20 rounds,
and once at the end, it prints `rounds=<n> failed=<n>`; a failed round also prints `failed round
<n> at <monotonic time>`. It stops when STOPFILE exists, or after --max-seconds at the latest (so
a test that dies never leaves it running for long). Run inside a test namespace via
`ip netns exec`.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import time

from tcp_peer import MESSAGE

_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


def probe(address: str, port: int, timeout: float) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        # Closed with a reset, not a FIN: no TIME_WAIT at either end. Thousands of rounds a
        # second would otherwise soon pick a client port whose old connection the server still
        # holds in TIME_WAIT, and such a SYN is answered only after a retransmission: a failed
        # round that says nothing about the firewall.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        try:
            sock.connect((address, port))
            sock.sendall(MESSAGE)
            data = sock.recv(2048)
        except OSError:
            return False
        return data == MESSAGE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("address")
    parser.add_argument("port", type=int)
    parser.add_argument("stopfile")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    deadline = time.monotonic() + args.max_seconds
    rounds = failed = 0
    while not os.path.exists(args.stopfile) and time.monotonic() < deadline:
        rounds += 1
        if not probe(args.address, args.port, args.timeout):
            failed += 1
            print(f"failed round {rounds} at {time.monotonic():.3f}", flush=True)
        if rounds % 20 == 0:
            print(f"rounds={rounds} failed={failed}", flush=True)
    print(f"rounds={rounds} failed={failed}", flush=True)


if __name__ == "__main__":
    main()
