"""Deleting a completed one-time schedule that opted in (`spec.deleteAfterCompletionSeconds`).

Off by default: a GitOps tool would create it again (then Invalid, its runAt being past, so it
never fires). The delete goes through the usual path (finalizer, state row marked deleted,
children removed); the fire stays in the ledger.

Each schedule due to go is one entry in a timed queue (`releases.ReleaseQueue`), put there or
taken out by every watch event of the schedule (`queue_deletion`), the initial listing after a
restart included. Not a kopf daemon: a daemon or timer on WorkflowSchedules makes kopf keep the
last body of every schedule in memory, opted in or not (about 20 KiB a schedule).
"""

from __future__ import annotations

import logging

from wfclock.controller.context import Context
from wfclock.controller.events import ref_of
from wfclock.controller.releases import Release
from wfclock.core.retention import deletion_due

log = logging.getLogger("wfclock.operator")
SOURCE = "delete-after-completion"


def deletion_entry(meta: dict, spec: dict, status: dict) -> Release | None:
    """The queue entry that deletes the schedule at its time; None while it is not to be
    deleted (not opted in, not Completed, or being deleted already)."""
    if meta.get("deletionTimestamp"):
        return None
    due = deletion_due(spec, status)
    if due is None:
        return None
    return Release(due, meta["uid"], meta["namespace"], meta["name"], SOURCE, 0)


def queue_deletion(ctx: Context, meta: dict, spec: dict, status: dict, gone: bool) -> None:
    """Queues the schedule's deletion at its time, or forgets it there (an edit that makes it
    not due, or the schedule gone)."""
    if ctx.deletions is None:
        return
    entry = None if gone else deletion_entry(meta, spec, status)
    if entry is None:
        ctx.deletions.forget(meta["uid"])
    else:
        ctx.deletions.schedule(entry)


def delete_if_due(ctx: Context, namespace: str, name: str, uid: str) -> bool:
    """Deletes the schedule when it is still this one, Completed and due; True when deleted.
    The delete is conditional on what was read, so an edit or a new object of the same name
    made in between is never deleted."""
    body = ctx.kube.get_schedule(namespace, name)
    if body is None or body["metadata"]["uid"] != uid or body["metadata"].get("deletionTimestamp"):
        return False
    due = deletion_due(body.get("spec") or {}, body.get("status") or {})
    if due is None or due > ctx.now():
        return False
    metadata = body["metadata"]
    seconds = body["spec"]["deleteAfterCompletionSeconds"]
    deleted = ctx.kube.delete_schedule(namespace, name, uid, metadata["resourceVersion"])
    if deleted:
        message = (
            f"completed; deleted {seconds}s after its fire (spec.deleteAfterCompletionSeconds)"
        )
        ctx.kube.event(ref_of(metadata), "Normal", "DeletedAfterCompletion", message)
        log.info("deleted completed schedule %s/%s after %ss", namespace, name, seconds)
    return deleted
