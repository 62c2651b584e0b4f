"""Stands in for `wireguard-go -f IFACE` in unit tests: a UAPI socket and a log line.

Usage: fake_wireguard_go.py SOCKET_PATH run|fail. ``run`` listens on the socket until
SIGTERM, then removes it (as wireguard-go does), after a log line and an expected error
line; ``fail`` prints an error and exits 1.
"""

from __future__ import annotations

import os
import signal
import socket
import sys


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "fail":
        print("ERROR: Failed to create TUN device: operation not permitted", flush=True)
        sys.exit(1)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    print("INFO: UAPI listener started", flush=True)
    # What wireguard-go says when a packet is for a peer with no endpoint yet.
    print(
        "ERROR: (wm0) 2026/12/02 02:06:12 peer(hXWU…XFBE) - Failed to send handshake "
        "initiation: no known endpoint for peer",
        flush=True,
    )

    def stop(_signum: int, _frame: object) -> None:
        os.unlink(path)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
