"""Deleting a completed one-time schedule that opted in (`spec.deleteAfterCompletionSeconds`).

Off by default: a GitOps tool would create it again (then Invalid, its runAt being past, so it
never fires). The delete goes through the usual path (finalizer, state row marked deleted,
children removed); the fire stays in the ledger.
"""

from __future__ import annotations

import logging

from wfclock.controller.context import Context
from wfclock.controller.events import ref_of
from wfclock.core.retention import deletion_due

log = logging.getLogger("wfclock.operator")


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
