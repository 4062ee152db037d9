"""Free ports for the local stack's servers (on the loopback, or a node's bridge address)."""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
