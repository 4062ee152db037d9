"""The node's way for pods to reach the API server: a TCP relay on the node's address.

The API server listens on 127.0.0.1 only, and pods live in network namespaces of their own with
nothing but the node's bridge. On a real cluster, kube-proxy routes the `kubernetes` Service to
the API server by writing the host's firewall; here nothing may touch the firewall, so the node
runs this relay instead, the way kube-proxy's old userspace mode carried a Service: it accepts on
the node's bridge address and copies bytes to and from 127.0.0.1. TLS passes through untouched
(the API server's certificate carries the node's address, `ControlPlane.serve_address`), and a
pod is told where to connect with `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT` (the
chart's `apiServer.host` / `apiServer.port`).

    python -m wfclock_devstack.apiproxy LISTEN_HOST LISTEN_PORT TARGET_PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


async def _relay(target_port: int, reader, writer) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def serve(host: str, port: int, target_port: int) -> None:
    server = await asyncio.start_server(
        lambda r, w: _relay(target_port, r, w), host, port, reuse_address=True
    )
    print(f"relaying {host}:{port} to 127.0.0.1:{target_port}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    host, port, target = (argv or sys.argv[1:])[:3]
    asyncio.run(serve(host, int(port), int(target)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
