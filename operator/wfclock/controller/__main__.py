"""`python -m wfclock.controller`: run the operator with the watched namespaces from settings."""

import sys

from kopf.cli import main as kopf_main

from wfclock.settings import Settings


def main() -> None:
    settings = Settings()
    scope = [f"--namespace={ns}" for ns in settings.namespaces] or ["--all-namespaces"]
    peering = (
        [f"--peering={settings.peering}", f"--priority={settings.priority}"]
        if settings.peering
        else ["--standalone"]
    )
    # kopf logs at INFO by default, DEBUG with --verbose or --debug, WARNING with --quiet; the
    # startup handler narrows "error" further.
    verbosity = {"debug": ["--debug"], "info": [], "warning": ["--quiet"], "error": ["--quiet"]}
    sys.argv = [
        "kopf",
        "run",
        *peering,
        "--log-format=json",
        *verbosity[settings.log_level],
        f"--liveness=http://0.0.0.0:{settings.health_port}/healthz",
        *scope,
        "-m",
        "wfclock.controller.handlers",
        *sys.argv[1:],
    ]
    kopf_main()


if __name__ == "__main__":
    main()
