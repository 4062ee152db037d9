"""The order of a reconcile's writes, against a real Postgres and a fake of the Kube surface:
the new registration before the state row, the state row before old registrations go, and a
deleted schedule's row marked before its children are removed."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from wfclock.controller import accounting, drift, reconciler
from wfclock.controller.tenants import TenantLogins
from wfclock.db import store
from wfclock.launcher import ClockFire, Registration, launch
from wfclock.settings import Settings

from ..conftest import make_state
from ..support import reconcile
from ..support.reconcile import WORKFLOW, apply

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def ctx(engine, database_url):
    return reconcile.context(engine, database_url, NOW)


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


def fire_now(ctx, uid, at, job_name="nightly-x", cron=None, zone="UTC"):
    """What a fire's pod does: one launcher call with the Job's registration."""
    with ctx.engine.raw_connection() as raw:
        conn = raw.driver_connection
        conn.autocommit = True
        registration = Registration(cron, zone) if cron else Registration()
        return launch(conn, ClockFire(uuid.UUID(uid), at, job_name, registration), now=ctx.now())


def test_a_completed_one_time_schedule_stays_completed_after_a_zone_edit_or_a_fixed_error(ctx):
    uid = str(uuid.uuid4())
    run_at = NOW - timedelta(seconds=30)
    ctx.clock = lambda: run_at - timedelta(minutes=1)
    apply(ctx, uid, {"type": "schedule", "runAt": run_at.isoformat()})
    ctx.clock = lambda: NOW
    assert fire_now(ctx, uid, run_at).outcome == "launched"
    zone_only = {"type": "schedule", "runAt": run_at.isoformat(), "timezone": "Asia/Tokyo"}
    assert apply(ctx, uid, zone_only, generation=2)["phase"] == "Completed"
    invalid = {"type": "schedule", "runAt": run_at.isoformat(), "timezone": "Nowhere/Void"}
    assert apply(ctx, uid, invalid, generation=3)["phase"] == "Invalid"
    assert apply(ctx, uid, zone_only, generation=4)["phase"] == "Completed"
    assert store.get_schedule(ctx.engine, uuid.UUID(uid))["status"] == "completed"


def test_fires_of_a_paused_window_never_run_after_resume_under_any_policy(ctx):
    for policy in ("latest", "skip", "catchUp"):
        uid = str(uuid.uuid4())
        paused_at = NOW - timedelta(hours=3)
        ctx.clock = lambda at=paused_at: at
        apply(ctx, uid, HOURLY, paused=True, missedFires=policy, catchUpWindowSeconds=7200)
        ctx.clock = lambda: NOW
        status = apply(ctx, uid, HOURLY, generation=2, missedFires=policy)
        assert status["phase"] == "Scheduled"
        # The CronJob controller's Job for the last fire of the pause, just after the resume.
        paused_fire = NOW - timedelta(hours=1)
        result = fire_now(ctx, uid, paused_fire, cron="0 * * * *")
        assert result.outcome == "skipped", policy
        assert result.reason.startswith("paused")
        runs = store.list_runs(ctx.engine, schedule_id=uuid.UUID(uid))
        ran = {run["payload"]["scheduledFor"] for run in runs}
        assert ran <= {"2026-11-25T12:00:00Z"}, f"{policy}: a fire of the paused window ran"


def test_fires_between_apply_and_the_first_reconcile_belong_to_the_schedule(ctx):
    uid = str(uuid.uuid4())
    fire = NOW - timedelta(minutes=0)  # 12:00, applied at 11:59, reconciled at 12:00:30
    ctx.clock = lambda: NOW + timedelta(seconds=30)
    apply(ctx, uid, HOURLY)
    assert fire_now(ctx, uid, fire, cron="0 * * * *").outcome == "launched"


def test_a_fire_of_the_old_cron_does_not_move_next_fire_at(ctx):
    uid = str(uuid.uuid4())
    apply(ctx, uid, HOURLY)
    apply(ctx, uid, DAILY, generation=2)
    before = store.get_schedule(ctx.engine, uuid.UUID(uid))["next_fire_at"]
    stale = fire_now(ctx, uid, NOW, cron="0 * * * *")
    assert stale.outcome == "skipped"
    assert store.get_schedule(ctx.engine, uuid.UUID(uid))["next_fire_at"] == before


def test_an_older_generation_never_overwrites_a_newer_one(ctx):
    uid = str(uuid.uuid4())
    apply(ctx, uid, DAILY, generation=3)
    apply(ctx, uid, HOURLY, generation=2)  # a late, stale reconcile
    assert store.get_schedule(ctx.engine, uuid.UUID(uid))["cron"] == "0 9 * * *"


def body_of(uid, trigger, generation=1, **spec):
    return {
        "metadata": {
            "name": "nightly",
            "namespace": "acme",
            "uid": uid,
            "generation": generation,
            "creationTimestamp": "2026-11-25T11:59:00Z",
        },
        "spec": {
            "tenant": "acme",
            "workflowId": WORKFLOW,
            "workflowVersion": 1,
            "trigger": trigger,
            **spec,
        },
    }


def test_a_cronjob_deleted_or_suspended_by_hand_is_restored(ctx):
    uid = str(uuid.uuid4())
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, HOURLY)
    apply(ctx, uid, HOURLY)
    ((key, cronjob),) = ctx.kube.cronjobs.items()
    del ctx.kube.cronjobs[key]  # kubectl delete cronjob
    assert drift.resync(ctx) == 1
    assert key in ctx.kube.cronjobs
    ctx.kube.cronjobs[key]["spec"]["suspend"] = True  # kubectl patch ... suspend: true
    drift.cronjob_changed(ctx, ctx.kube.cronjobs[key], deleted=False)
    assert ctx.kube.cronjobs[key]["spec"]["suspend"] is False
    assert drift.resync(ctx) == 0  # in step: nothing written
    assert [e[1] for e in ctx.kube.events].count("ChildRestored") == 2


def test_a_pause_being_registered_is_not_taken_for_a_cronjob_suspended_by_hand(ctx):
    """Between a pause's CronJob patch and its state row (registration order), the CronJob's
    watch event sees suspend=true against a row that still says scheduled: the newer generation
    is being registered, not drift; no ChildRestored warning, nothing written."""
    uid = str(uuid.uuid4())
    apply(ctx, uid, HOURLY)
    ((key, cronjob),) = ctx.kube.cronjobs.items()
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, HOURLY, generation=2, paused=True)
    cronjob["spec"]["suspend"] = True  # the pause's first write; its state row comes next
    ctx.kube.calls.clear()
    drift.cronjob_changed(ctx, cronjob, deleted=False)
    assert [e[1] for e in ctx.kube.events].count("ChildRestored") == 0
    assert "create_or_patch_cronjob" not in ctx.kube.names()
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, HOURLY, generation=1)
    drift.cronjob_changed(ctx, cronjob, deleted=False)  # the same generation: drift, restored
    assert ctx.kube.cronjobs[key]["spec"]["suspend"] is False
    assert [e[1] for e in ctx.kube.events].count("ChildRestored") == 1


def test_a_pending_one_time_job_deleted_by_hand_comes_back_but_never_after_its_fire(ctx):
    uid = str(uuid.uuid4())
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, ONCE)
    apply(ctx, uid, ONCE)
    ((key, job),) = ctx.kube.jobs.items()
    del ctx.kube.jobs[key]
    drift.one_time_job_deleted(ctx, job)
    assert key in ctx.kube.jobs and ctx.kube.jobs[key]["spec"]["suspend"] is True
    run_at = datetime.fromisoformat(ONCE["runAt"])
    ctx.clock = lambda: run_at + timedelta(seconds=1)
    assert fire_now(ctx, uid, run_at).outcome == "launched"
    del ctx.kube.jobs[key]
    drift.one_time_job_deleted(ctx, job)
    assert drift.resync(ctx) == 0 and key not in ctx.kube.jobs


def test_a_fire_from_before_a_pause_still_counts_after_the_resume(ctx):
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(hours=3)
    apply(ctx, uid, HOURLY)
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, HOURLY, generation=2, paused=True)
    ctx.clock = lambda: NOW
    apply(ctx, uid, HOURLY, generation=3)
    before_the_pause = NOW - timedelta(hours=1)  # 11:00, owed, delivered late
    assert fire_now(ctx, uid, before_the_pause, cron="0 * * * *").outcome == "launched"


def test_every_paused_or_invalid_window_stays_quiet_after_later_pauses_and_fixes(ctx):
    uid = str(uuid.uuid4())
    steps = [  # (minutes before NOW, spec changes)
        (180, {}),
        (120, {"paused": True}),  # window 1 opens at 10:00
        (100, {"trigger": {**HOURLY, "timezone": "Nowhere/Void"}, "paused": True}),  # invalid
        (95, {}),  # fixed and resumed at 10:25: window 1 closes
        (60, {"paused": True}),  # window 2 opens at 11:00
        (30, {}),  # resumed at 11:30
    ]
    for generation, (before, change) in enumerate(steps, start=1):
        ctx.clock = lambda at=NOW - timedelta(minutes=before): at
        spec = {"missedFires": "catchUp", "catchUpWindowSeconds": 7200, **change}
        apply(ctx, uid, spec.pop("trigger", HOURLY), generation=generation, **spec)
    ctx.clock = lambda: NOW
    for quiet in (NOW - timedelta(hours=2) + timedelta(minutes=10), NOW - timedelta(minutes=40)):
        at = quiet.replace(minute=0) if quiet.minute else quiet
        fire_now(ctx, uid, at, cron="0 * * * *")
        (record,) = [f for f in store.list_fires(ctx.engine) if f["scheduled_for"] == at]
        assert record["outcome"] == "skipped" and record["reason"].startswith("paused"), at
    ran = {r["payload"]["scheduledFor"] for r in store.list_runs(ctx.engine)}
    assert ran <= {"2026-11-25T09:00:00Z", "2026-11-25T12:00:00Z"}, ran


def test_an_edit_reconciled_late_still_owes_the_new_triggers_fires(ctx):
    from wfclock.core.accounting import owed_fires

    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(hours=3)
    apply(ctx, uid, HOURLY)
    row = store.get_schedule(ctx.engine, uuid.UUID(uid))
    store.advance_accounting(ctx.engine, row, NOW)  # the sweep went past the edit's publish time
    edited_at = NOW - timedelta(minutes=50)  # 11:10; reconciled only now
    meta_time = edited_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    ctx.clock = lambda: NOW
    body = body_of(uid, {**HOURLY, "cron": "30 * * * *"}, generation=2)
    body["metadata"]["managedFields"] = [{"time": meta_time, "fieldsV1": {"f:spec": {}}}]
    reconciler.reconcile(ctx, body["metadata"], body["spec"], {})
    row = store.get_schedule(ctx.engine, uuid.UUID(uid))
    owed = owed_fires(row, NOW + timedelta(minutes=2))
    assert NOW - timedelta(minutes=30) in owed  # 11:30, a fire of the new cron


def test_the_resync_keeps_the_namespaces_own_tenant_in_its_launcher_secret(ctx, database_url):
    ctx.tenants = TenantLogins(ctx.engine, Settings(database_url=database_url))
    uid = str(uuid.uuid4())
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, HOURLY)
    apply(ctx, uid, HOURLY)
    # A schedule refused for its tenant (TenantMismatch) leaves a disabled row of another tenant.
    stray = make_state(tenant="zeta", namespace="acme", name="stray", status="scheduled")
    store.upsert_schedule(ctx.engine, stray, published_at=NOW)
    store.disable_schedule(ctx.engine, stray.schedule_id, "tenant mismatch", published_at=NOW)
    drift.resync(ctx)
    (url,) = ctx.kube.secrets.values()
    assert url["url"].split("://")[1].split(":")[0].endswith("_acme")


class Killed(BaseException):
    """The operator dying (SIGKILL) in the middle of a reconcile."""


@pytest.mark.parametrize(
    "before, after",
    [(HOURLY, ONCE), (ONCE, HOURLY), (ONCE, {"type": "schedule", "runAt": "2026-11-27T09:00:00Z"})],
    ids=["recurring-to-one-time", "one-time-to-recurring", "new-run-at"],
)
def test_a_child_left_by_an_operator_killed_mid_registration_is_removed_by_the_resync(
    ctx, before, after
):
    """Killed after the state row names the new child but before the older one goes: the next
    reconcile sees its registration unchanged and lists nothing, so the resync must remove it
    (found by the SIGKILL loop of tests/cluster/test_faults_control.py)."""
    uid = str(uuid.uuid4())
    apply(ctx, uid, before)
    ((old_key, old),) = [*ctx.kube.cronjobs.items(), *ctx.kube.jobs.items()]
    old["metadata"]["creationTimestamp"] = "2026-11-25T12:00:00Z"  # as the API server sets it
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, after, generation=2)
    delete_cronjob, delete_job = ctx.kube.delete_cronjob, ctx.kube.delete_job

    def killed(*args):
        raise Killed

    ctx.kube.delete_cronjob = ctx.kube.delete_job = killed
    with pytest.raises(Killed):
        apply(ctx, uid, after, generation=2)
    ctx.kube.delete_cronjob, ctx.kube.delete_job = delete_cronjob, delete_job
    apply(ctx, uid, after, generation=2)  # the restarted operator's resume: nothing to replace
    children = {**ctx.kube.cronjobs, **ctx.kube.jobs}
    assert old_key in children and len(children) == 2

    assert drift.resync(ctx) == 0, "a child may be a registration in flight for a minute"
    ctx.clock = lambda: NOW + timedelta(minutes=2)
    assert drift.resync(ctx) == 1
    row = store.get_schedule(ctx.engine, uuid.UUID(uid))
    children = {**ctx.kube.cronjobs, **ctx.kube.jobs}
    assert list(children) == [("acme", row["registered_name"])]
    assert "ChildRemoved" in [e[1] for e in ctx.kube.events]
    assert drift.resync(ctx) == 0


def test_the_cronjob_of_a_schedule_made_invalid_stays_suspended_whatever_is_done_by_hand(ctx):
    """An edit that makes a valid schedule invalid suspends its CronJob and registers nothing
    else; that generation's reconcile is over (it never writes the state row's generation).
    A CronJob resumed by hand afterwards is drift of that generation, not a registration in
    flight: it is suspended again (else it fires every minute into refusals until the next
    edit)."""
    uid = str(uuid.uuid4())
    apply(ctx, uid, HOURLY)
    invalid = {**HOURLY, "cron": "61 * * * *"}
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, invalid, generation=2)
    status = apply(ctx, uid, invalid, generation=2)
    assert status["phase"] != "Scheduled", status
    ((key, cronjob),) = ctx.kube.cronjobs.items()
    assert cronjob["spec"]["suspend"] is True
    cronjob["spec"]["suspend"] = False  # kubectl patch cronjob ... suspend: false
    drift.cronjob_changed(ctx, cronjob, deleted=False)
    assert ctx.kube.cronjobs[key]["spec"]["suspend"] is True
    cronjob["spec"]["suspend"] = False
    drift.resync(ctx)
    assert ctx.kube.cronjobs[key]["spec"]["suspend"] is True


def test_a_child_in_another_namespace_carrying_a_schedules_uid_is_not_taken_for_its_child(ctx):
    """Labels are written by whoever may create CronJobs in a namespace: a tenant copying
    another namespace's schedule uid onto CronJobs of its own must neither make the operator
    restore that schedule (a reconcile and a Warning Event in the other tenant's namespace, on
    every change it makes) nor have its objects judged by that schedule's registration."""
    uid = str(uuid.uuid4())
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, HOURLY)
    apply(ctx, uid, HOURLY)
    ((key, cronjob),) = ctx.kube.cronjobs.items()
    ctx.kube.calls.clear()
    forged = copy.deepcopy(cronjob)
    forged["metadata"]["namespace"] = "globex"
    forged["spec"]["suspend"] = True
    drift.cronjob_changed(ctx, forged, deleted=True)
    drift.cronjob_changed(ctx, forged, deleted=False)
    assert [e[1] for e in ctx.kube.events].count("ChildRestored") == 0
    assert "create_or_patch_cronjob" not in ctx.kube.names()
    other = copy.deepcopy(forged)
    other["metadata"]["name"] = "globex-own"
    other["metadata"]["creationTimestamp"] = "2026-11-25T10:00:00Z"
    ctx.kube.cronjobs[("globex", "globex-own")] = other
    drift.resync(ctx)
    assert ("globex", "globex-own") in ctx.kube.cronjobs
    assert "delete_cronjob" not in ctx.kube.names()


def test_a_resync_between_a_registrations_patch_and_its_state_row_keeps_the_patched_cronjob(ctx):
    """A schedule switched back to recurring finds its old CronJob still there (an operator
    killed before removing it after the switch to one-time) and patches it in place: the
    CronJob is old, and until the state row is written it is not the registered child. A resync
    running just then must not remove it as stale: it is generation 3's registration."""
    uid = str(uuid.uuid4())
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, HOURLY)
    apply(ctx, uid, HOURLY)
    ((key, cronjob),) = ctx.kube.cronjobs.items()
    cronjob["metadata"]["creationTimestamp"] = "2026-11-25T10:00:00Z"
    left = copy.deepcopy(cronjob)
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, ONCE, generation=2)
    apply(ctx, uid, ONCE, generation=2)
    left["spec"]["suspend"] = True
    ctx.kube.cronjobs[key] = left  # the operator died before removing it
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, HOURLY, generation=3)
    patch = ctx.kube.create_or_patch_cronjob

    def patch_then_resync(body):
        created = ctx.kube.cronjobs[key]["metadata"]["creationTimestamp"]
        action = patch(body)
        ctx.kube.cronjobs[key]["metadata"]["creationTimestamp"] = created  # a patch keeps it
        drift.resync(ctx)  # the resync thread runs now
        return action

    ctx.kube.create_or_patch_cronjob = patch_then_resync
    apply(ctx, uid, HOURLY, generation=3)
    assert key in ctx.kube.cronjobs, "generation 3's CronJob was removed as stale"
    assert ctx.kube.cronjobs[key]["spec"]["suspend"] is False
    assert store.get_schedule(ctx.engine, uuid.UUID(uid))["registered_kind"] == "CronJob"


def test_a_resume_in_the_second_of_a_fire_leaves_that_fire_in_the_paused_window(ctx):
    """The resume race: resumed 0.6 s after the 12:00 fire, which the API server records as
    12:00:00 (managedFields keep whole seconds). The fire was due while the schedule was
    paused: neither its Job (the CronJob controller may make one on unsuspend) nor the sweep
    may start it."""
    uid = str(uuid.uuid4())
    ctx.clock = lambda: NOW - timedelta(hours=2)
    apply(ctx, uid, HOURLY)
    ctx.clock = lambda: NOW - timedelta(minutes=30)
    apply(ctx, uid, HOURLY, generation=2, paused=True)
    resumed = NOW + timedelta(seconds=0.6)
    ctx.clock = lambda: resumed + timedelta(seconds=0.3)  # reconciled just after
    written = {
        "manager": "kubectl-client-side-apply",
        "operation": "Update",
        "time": "2026-11-25T12:00:00Z",  # 12:00:00.6, to the second
        "fieldsV1": {"f:spec": {"f:paused": {}}},
    }
    meta = {
        "name": "nightly",
        "namespace": "acme",
        "uid": uid,
        "generation": 3,
        "creationTimestamp": "2026-11-25T11:59:00Z",
        "managedFields": [written],
    }
    body = {"tenant": "acme", "workflowId": WORKFLOW, "workflowVersion": 1, "trigger": HOURLY}
    assert reconciler.reconcile(ctx, meta, body, {})["phase"] == "Scheduled"
    result = fire_now(ctx, uid, NOW, cron="0 * * * *")
    assert result.outcome == "skipped" and result.reason.startswith("paused"), result
    ctx.clock = lambda: NOW + timedelta(minutes=5)
    accounting.sweep(ctx, now=ctx.now())
    assert store.list_runs(ctx.engine, schedule_id=uuid.UUID(uid)) == []
    # The next fire belongs to the resumed schedule.
    ctx.clock = lambda: NOW + timedelta(hours=1, seconds=2)
    assert fire_now(ctx, uid, NOW + timedelta(hours=1), cron="0 * * * *").outcome == "launched"


def test_the_resync_forgets_the_judged_generation_of_a_cronjob_that_is_gone(ctx):
    """A CronJob deleted while the watch was away (or whose label was taken off) sends no
    DELETED event: the resync drops what the CronJob events' filter remembered of it."""
    uid = str(uuid.uuid4())
    ctx.kube.schedules[("acme", "nightly")] = body_of(uid, HOURLY)
    apply(ctx, uid, HOURLY)
    ((_, cronjob),) = ctx.kube.cronjobs.items()
    cronjob["metadata"]["uid"] = "live"
    ctx.judged_cronjobs.update({"live": 1, "gone": 4})
    drift.resync(ctx)
    assert ctx.judged_cronjobs == {"live": 1}
