"""The order of a reconcile's writes, against a real Postgres and a fake of the Kube surface:
the new registration before the state row, the state row before old registrations go, and a
deleted schedule's row marked before its children are removed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from wfclock.controller import reconciler
from wfclock.controller.context import Context
from wfclock.settings import Settings

from ..support.fake_kube import FakeKube

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WORKFLOW = "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"


@pytest.fixture
def ctx(engine, database_url):
    return Context(Settings(database_url=database_url), engine, FakeKube(engine), clock=lambda: NOW)


def apply(ctx, uid, trigger, generation=1, **spec):
    meta = {
        "name": "nightly",
        "namespace": "acme",
        "uid": uid,
        "generation": generation,
        "creationTimestamp": "2026-11-25T11:59:00Z",
    }
    body = {"tenant": "acme", "workflowId": WORKFLOW, "workflowVersion": 1, "trigger": trigger}
    return reconciler.reconcile(ctx, meta, {**body, **spec}, {})


HOURLY = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
DAILY = {"type": "recurring", "cron": "0 9 * * *", "timezone": "UTC"}
ONCE = {"type": "schedule", "runAt": (NOW + timedelta(days=1)).isoformat()}


def test_a_cron_change_patches_the_cronjob_before_the_state_row_moves_on(ctx):
    uid = str(uuid.uuid4())
    apply(ctx, uid, HOURLY)
    ctx.kube.calls.clear()
    status = apply(ctx, uid, DAILY, generation=2)
    patch = ctx.kube.call("create_or_patch_cronjob")
    assert patch.row["cron"] == "0 * * * *"  # the row still held the old cron
    assert status["phase"] == "Scheduled"
    assert "list" not in " ".join(ctx.kube.names())  # same registration: no list calls
    assert [e[1] for e in ctx.kube.events] == ["Registered", "Rescheduled"]


def test_a_type_switch_registers_the_job_first_and_removes_the_cronjob_last(ctx):
    uid = str(uuid.uuid4())
    apply(ctx, uid, HOURLY)
    ctx.kube.calls.clear()
    apply(ctx, uid, ONCE, generation=2)
    names = ctx.kube.names()
    assert names.index("suspend_cronjob") < names.index("create_job_if_absent")
    assert names.index("create_job_if_absent") < names.index("delete_cronjob")
    assert ctx.kube.call("create_job_if_absent").row["trigger_type"] == "recurring"
    assert ctx.kube.call("delete_cronjob").row["trigger_type"] == "schedule"
    assert not ctx.kube.cronjobs and len(ctx.kube.jobs) == 1


def test_delete_marks_the_state_row_before_children_go(ctx):
    uid = str(uuid.uuid4())
    apply(ctx, uid, HOURLY)
    ctx.kube.calls.clear()
    reconciler.delete(ctx, {"name": "nightly", "namespace": "acme", "uid": uid})
    removal = ctx.kube.call("delete_cronjob")
    assert removal.row["deleted_at"] is not None and removal.row["status"] == "disabled"
    assert not ctx.kube.cronjobs


def test_an_invalid_edit_suspends_the_cronjob_and_disables_the_row(ctx):
    uid = str(uuid.uuid4())
    apply(ctx, uid, HOURLY)
    status = apply(ctx, uid, {**HOURLY, "timezone": "Mars/Olympus"}, generation=2)
    assert status["phase"] == "Invalid"
    suspend = ctx.kube.call("suspend_cronjob")
    assert suspend.row["status"] == "disabled"
    assert all(body["spec"]["suspend"] for body in ctx.kube.cronjobs.values())
