"""A reconcile as kopf hands it over, on the test's Postgres and a fake of the `Kube` surface
(which records the order of writes), at a fixed instant."""

from __future__ import annotations

from datetime import datetime

from wfclock.controller import reconciler
from wfclock.controller.context import Context
from wfclock.settings import Settings

from .fake_kube import FakeKube

WORKFLOW = "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"


def context(engine, database_url: str, now: datetime) -> Context:
    return Context(Settings(database_url=database_url), engine, FakeKube(engine), clock=lambda: now)


def apply(
    ctx,
    uid: str,
    trigger: dict,
    generation: int = 1,
    *,
    status: dict | None = None,
    metadata: dict | None = None,
    created: str = "2026-11-25T11:59:00Z",
    **spec,
):
    """Reconciles schedule `acme/nightly` (`uid`) with `trigger` and the rest of `spec`."""
    meta = {
        "name": "nightly",
        "namespace": "acme",
        "uid": uid,
        "generation": generation,
        "creationTimestamp": created,
        **(metadata or {}),
    }
    body = {"tenant": "acme", "workflowId": WORKFLOW, "workflowVersion": 1, "trigger": trigger}
    return reconciler.reconcile(ctx, meta, {**body, **spec}, status or {})
