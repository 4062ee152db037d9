"""`python -m wfclock.console` (and `wfclock console`): serve the console.

Settings from WFCLOCK_CONSOLE_* (see settings.py); the console's own Kubernetes login is the
in-cluster service account, or the current kubeconfig for development."""

from __future__ import annotations

import logging
import sys

from wfclock.console.settings import ConsoleSettings


def build(settings: ConsoleSettings):
    from wfclock.console.access import ClusterAccess, base_configuration
    from wfclock.console.app import create_app
    from wfclock.console.data import ConsoleData
    from wfclock.db.store import engine_for

    if not settings.database_url:
        raise SystemExit(
            "WFCLOCK_CONSOLE_DATABASE_URL is not set: the console reads fires and runs with a "
            "read-only login (make one with `wfclock db console-role LOGIN`)"
        )
    access = ClusterAccess(base_configuration(settings.kubeconfig))
    return create_app(settings, access, ConsoleData(engine_for(settings.database_url)))


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    settings = ConsoleSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    app = build(settings)
    tls = {}
    if settings.tls_cert_file and settings.tls_key_file:
        tls = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
    scheme = "https" if tls else "http"
    logging.getLogger("wfclock.console").info(
        "console on %s://%s:%d", scheme, settings.host, settings.port
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        **tls,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
