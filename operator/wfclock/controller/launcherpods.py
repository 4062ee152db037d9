"""Launcher pods that cannot start (image missing, Secret gone): each is reported on its schedule,
as the FiresHealthy condition's reason and a Warning Event, once per problem.

Run by the accounting sweep (one replica at a time), so a stuck pod is reported within one
accounting interval; the problem stays in the status until a Job delivers a fire again. A pod
that cannot read its Secret also has the Secret put back at once.
"""

from __future__ import annotations

import logging
import uuid

from wfclock.controller import reconciler
from wfclock.controller.context import Context
from wfclock.core.launcherpods import pod_problem
from wfclock.core.names import SCHEDULE_UID_LABEL
from wfclock.db import store

log = logging.getLogger("wfclock.accounting")


def report(ctx: Context, on_change=None) -> int:
    """Records the problem of every launcher pod that cannot start; returns how many were new."""
    reported = 0
    # The whole list first, a page at a time, keeping only the pods with a problem: the work
    # below (database, API) never holds a list's continue token open long enough to expire.
    found = [
        (pod["metadata"].get("namespace"), uid, problem)
        for pod in ctx.kube.pending_launcher_pods(ctx.settings.namespaces)
        if (problem := pod_problem(pod)) is not None
        and (uid := (pod["metadata"].get("labels") or {}).get(SCHEDULE_UID_LABEL))
    ]
    secrets_kept = set()  # (namespace, tenant): each Secret is read (and put back) once a sweep
    for namespace, uid, problem in found:
        row = store.get_schedule(ctx.engine, uuid.UUID(uid))
        if row is None or row["deleted_at"] is not None or row["namespace"] != namespace:
            continue  # gone, or a pod elsewhere wearing a schedule's label: not its launcher
        secret = (row["namespace"], row["tenant"])
        if problem.reason == "LauncherConfigError" and secret not in secrets_kept:
            secrets_kept.add(secret)
            _put_back_secret(ctx, *secret)
        if problem.recorded_in(row["fire_problem"]):
            continue
        if store.set_fire_problem(ctx.engine, row["schedule_id"], problem.text()):
            log.warning("%s/%s: %s", row["namespace"], row["name"], problem.message)
            ref = {"name": row["name"], "namespace": row["namespace"], "uid": uid}
            ctx.kube.event(ref, "Warning", problem.reason, problem.message)
            reported += 1
            if on_change is not None:
                on_change(row["namespace"], row["name"])
    return reported


def _put_back_secret(ctx: Context, namespace: str, tenant: str) -> None:
    """The launcher Secret deleted or edited by hand: put back now rather than at the next
    resync, so the kubelet's next retry starts the pod. When it cannot be (its source gone,
    RBAC), the problem is still reported: that is when a person must act."""
    try:
        reconciler.keep_launcher_secret(ctx, namespace, tenant, force=True)
    except Exception as exc:  # noqa: BLE001 - the report below matters more; the next sweep retries
        log.warning("launcher Secret of %s could not be put back: %s", namespace, exc)
