"""A WorkflowSchedule's spec as the operator accepts it: the pure validation of `core.model`, at
the moment it was published, plus the one rule that needs the cluster (the namespace's tenant)."""

from __future__ import annotations

from datetime import datetime, timedelta

from wfclock.controller.context import Context
from wfclock.core.builders import Schedule
from wfclock.core.fires import parse_instant
from wfclock.core.model import Problem, Rules, SpecError, validate_spec
from wfclock.core.names import TENANT_LABEL
from wfclock.core.runcontrol import TRACEPARENT_ANNOTATION, valid_traceparent


def published_at(meta: dict, now: datetime) -> datetime:
    """When the spec was published, not when a busy operator got to it: "runAt in the future" is
    judged at that moment, and a changed trigger takes effect from it (so fires between an apply
    and its reconcile are not lost). A first generation was published at creation; an edit when
    its writer last wrote `spec` (the API server's managedFields record it to the second); now
    when neither is known."""
    created = meta.get("creationTimestamp")
    if meta.get("generation", 1) == 1 and created:
        return min(now, parse_instant(str(created)))
    spec_writes = [
        parse_instant(str(entry["time"]))
        for entry in meta.get("managedFields") or []
        if entry.get("time")
        and entry.get("subresource", "") != "status"
        and "f:spec" in (entry.get("fieldsV1") or {})
    ]
    return min(now, max(spec_writes)) if spec_writes else now


def _accepted_run_at(previous: dict | None, spec: dict) -> bool:
    """A one-time runAt that was accepted before stays acceptable once it is due."""
    if not previous or previous["trigger_type"] != "schedule":
        return False
    try:
        return parse_instant(str((spec.get("trigger") or {}).get("runAt"))) == previous["run_at"]
    except ValueError:
        return False


def parse_schedule(ctx: Context, meta: dict, spec: dict, previous: dict | None) -> Schedule:
    """The schedule to register; raises SpecError naming every problem."""
    settings = ctx.settings
    published = published_at(meta, ctx.now())
    rules = Rules(
        now=published,
        edition=settings.edition,
        minimum_interval=timedelta(minutes=settings.minimum_interval_minutes),
    )
    parsed = validate_spec(spec, rules, check_run_at=not _accepted_run_at(previous, spec))
    tenant = ctx.kube.namespace_tenant(meta["namespace"])
    if tenant != parsed.tenant:
        raise SpecError(
            [
                Problem(
                    "spec.tenant",
                    f"{parsed.tenant!r} does not match namespace {meta['namespace']!r}, whose "
                    f"{TENANT_LABEL} label is {tenant!r}; schedules may only start "
                    "workflows of their namespace's tenant",
                )
            ],
            reason="TenantMismatch",
        )
    trace = (meta.get("annotations") or {}).get(TRACEPARENT_ANNOTATION)
    trace = trace if valid_traceparent(trace) else None
    return Schedule(meta["name"], meta["namespace"], meta["uid"], parsed, published, trace)
