"""The console in the local stack: a local process with a read-only database login, and a
demo user (a ServiceAccount that may edit the demo namespace's schedules) to sign in with."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from kubernetes import client

DEMO_USER = "console-demo"


def start_console(api, database_url: str, kubeconfig: Path, namespace: str, log: Path):
    """Starts `python -m wfclock.console` on a free port; returns (process, url, sign-in hint)."""
    from wfclock.console.data import ensure_console_role
    from wfclock.db.store import engine_for

    from wfclock_devstack.ports import free_port
    from wfclock_devstack.processes import spawn

    password = secrets.token_urlsafe(16)
    ensure_console_role(engine_for(database_url), "wfclock_console", password)
    rbac, core = client.RbacAuthorizationV1Api(api), client.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": DEMO_USER}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": DEMO_USER},
            "rules": [
                {
                    "apiGroups": ["wfclock.dev"],
                    "resources": ["workflowschedules"],
                    "verbs": ["get", "list", "watch", "patch"],
                },
                {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list"]},
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": DEMO_USER},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": DEMO_USER},
            "subjects": [{"kind": "ServiceAccount", "name": DEMO_USER, "namespace": namespace}],
        },
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WFCLOCK_", "KUBECONFIG"))},
        "WFCLOCK_CONSOLE_DATABASE_URL": database_url.replace(
            "postgres@", f"wfclock_console:{password}@"
        ),
        "WFCLOCK_CONSOLE_KUBECONFIG": str(kubeconfig),
        "WFCLOCK_CONSOLE_PORT": str(port),
        "WFCLOCK_CONSOLE_NAMESPACES": f'["{namespace}"]',
    }
    process = spawn([sys.executable, "-m", "wfclock.console"], log, env=env)
    hint = f"kubectl -n {namespace} create token {DEMO_USER}"
    return process, f"http://127.0.0.1:{port}", hint
