"""Traces against a real Postgres, read through the SDK's in-memory exporter: the launcher's fire
span continues the Job's TRACEPARENT and is the parent of its run; the operator's reconcile,
catch-up, run-now and release spans are the parents of the fires they launch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from wfclock import tracing
from wfclock.controller import onetime, reconciler
from wfclock.controller.context import Context
from wfclock.controller.releases import Release
from wfclock.core.fires import fire_key_for
from wfclock.core.runcontrol import traceparent_for
from wfclock.launcher import ClockFire, FireNotDue, Registration, RunNow, launch
from wfclock.settings import Settings

from ..conftest import make_state, one_time_state
from ..support.fake_kube import FakeKube

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
REGISTRATION = Registration("0 * * * *", "Europe/Berlin")
JOB_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
JOB_PARENT = f"00-{JOB_TRACE}-00f067aa0ba902b7-01"
WORKFLOW = "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11"


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing.setup("wfclock-test", exporter=exporter, batch=False)
    yield exporter
    tracing.shutdown()


@pytest.fixture
def ctx(engine, database_url):
    return Context(Settings(database_url=database_url), engine, FakeKube(engine), clock=lambda: NOW)


def named(exporter, name):
    return [s for s in exporter.get_finished_spans() if s.name == name]


def traceparent_of(span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def stored_traceparent(conn, key) -> str:
    (metadata,) = conn.execute(
        "SELECT trigger_metadata FROM workflow_runs WHERE trigger_fire_key = %s", (key,)
    ).fetchone()
    return metadata["traceparent"]


def test_the_fire_span_continues_the_jobs_traceparent_and_is_the_parent_of_its_run(
    conn, add_schedule, spans
):
    state = add_schedule(make_state())
    fire = ClockFire(state.schedule_id, AT, "wfs-nightly-29393040", REGISTRATION, JOB_PARENT)
    result = launch(conn, fire, now=NOW)
    [span] = named(spans, "wfclock.fire")
    assert f"{span.context.trace_id:032x}" == JOB_TRACE
    assert f"{span.parent.span_id:016x}" == "00f067aa0ba902b7" and span.parent.is_remote
    assert dict(span.attributes) == {
        "wfclock.schedule_id": str(state.schedule_id),
        "wfclock.fire_key": result.key,
        "wfclock.scheduled_for": "2026-11-25T09:00:00Z",
        "wfclock.source": "wfs-nightly-29393040",
        "wfclock.outcome": "launched",
        "wfclock.run_id": str(result.run_id),
    }
    # The workers continue the fire's span: the run's traceparent is that span's context.
    assert stored_traceparent(conn, result.key) == traceparent_of(span)


def test_every_delivery_of_a_fire_without_a_traceparent_lands_in_the_fires_own_trace(
    conn, add_schedule, spans
):
    state = add_schedule(make_state())
    first = launch(conn, ClockFire(state.schedule_id, AT, "job", REGISTRATION), now=NOW)
    again = launch(conn, ClockFire(state.schedule_id, AT, "retry", REGISTRATION), now=NOW)
    one, two = named(spans, "wfclock.fire")
    assert one.parent is None and two.parent is None
    key_trace = traceparent_for(first.key).split("-")[1]  # the trace id with tracing off too
    assert f"{one.context.trace_id:032x}" == f"{two.context.trace_id:032x}" == key_trace
    assert two.attributes["wfclock.outcome"] == "duplicate"
    assert two.attributes["wfclock.reason"] == again.reason
    assert stored_traceparent(conn, first.key) == traceparent_of(one)


def test_a_refused_fire_ends_its_span_as_an_error(conn, add_schedule, spans):
    state = add_schedule(make_state())
    early = ClockFire(state.schedule_id, NOW + timedelta(hours=1), "job", REGISTRATION)
    with pytest.raises(FireNotDue):
        launch(conn, early, now=NOW)
    [span] = named(spans, "wfclock.fire")
    assert span.status.status_code is StatusCode.ERROR
    assert "not due yet" in span.status.description


def test_a_run_now_request_is_a_span_and_the_parent_of_its_manual_run(conn, add_schedule, spans):
    state = add_schedule(make_state())
    result = launch(conn, RunNow(state.schedule_id, "ticket-42", "me", JOB_PARENT), now=NOW)
    conn.commit()
    [span] = named(spans, "wfclock.run-now")
    assert f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert span.attributes["wfclock.outcome"] == "launched"
    assert stored_traceparent(conn, result.key) == traceparent_of(span)


def reconcile_traced(ctx, uid, annotations=None, **spec):
    meta = {
        "name": "nightly",
        "namespace": "acme",
        "uid": uid,
        "generation": 1,
        "creationTimestamp": "2026-11-25T09:30:00Z",
        "annotations": annotations or {},
    }
    trigger = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
    body = {"tenant": "acme", "workflowId": WORKFLOW, "workflowVersion": 1, "trigger": trigger}
    return reconciler.traced(reconciler.reconcile, ctx, meta, {**body, **spec}, {})


def test_a_reconcile_is_a_child_of_the_schedules_traceparent_and_parents_its_catch_up_fires(
    ctx, conn, spans
):
    uid = str(uuid.uuid4())
    annotations = {"wfclock.dev/traceparent": JOB_PARENT}
    reconcile_traced(ctx, uid, annotations, missedFires="catchUp", catchUpWindowSeconds=10800)
    [reconcile] = named(spans, "wfclock.reconcile")
    assert f"{reconcile.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert reconcile.attributes["wfclock.schedule_id"] == uid
    assert reconcile.attributes["wfclock.ready"] == "True"
    catch_ups, fires = named(spans, "wfclock.catch-up"), named(spans, "wfclock.fire")
    assert [s.attributes["wfclock.scheduled_for"] for s in catch_ups] == [
        "2026-11-25T10:00:00Z",
        "2026-11-25T11:00:00Z",
        "2026-11-25T12:00:00Z",
    ]
    # schedule (its annotation) -> reconcile -> catch-up -> the launcher's claim -> the run
    for catch_up, fire in zip(catch_ups, fires, strict=True):
        assert catch_up.parent.span_id == reconcile.context.span_id
        assert fire.parent.span_id == catch_up.context.span_id
        assert fire.context.trace_id == int(JOB_TRACE, 16)
        assert catch_up.attributes["wfclock.outcome"] == "launched"
        run = catch_up.attributes["wfclock.run_id"]
        assert fire.attributes["wfclock.run_id"] == run
        key = fire.attributes["wfclock.fire_key"]
        assert stored_traceparent(conn, key) == traceparent_of(fire)


def test_a_run_now_annotation_answered_in_a_reconcile_is_traced_down_to_its_run(ctx, conn, spans):
    uid = str(uuid.uuid4())
    annotations = {"wfclock.dev/run-now": "req-1", "wfclock.dev/traceparent": JOB_PARENT}
    status = reconcile_traced(ctx, uid, annotations)
    [reconcile] = named(spans, "wfclock.reconcile")
    [request] = named(spans, "wfclock.run-now.request")
    [claim] = named(spans, "wfclock.run-now")
    assert request.parent.span_id == reconcile.context.span_id
    assert claim.parent.span_id == request.context.span_id
    assert f"{reconcile.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert claim.context.trace_id == int(JOB_TRACE, 16)
    assert request.attributes["wfclock.request_id"] == "req-1"
    assert request.attributes["wfclock.run_id"] == status["runNow"]["runId"]
    key = claim.attributes["wfclock.fire_key"]
    assert stored_traceparent(conn, key) == traceparent_of(claim)


def test_a_one_time_release_shares_the_trace_of_the_fire_its_job_delivers(
    ctx, conn, add_schedule, spans
):
    run_at = NOW - timedelta(seconds=5)
    state = add_schedule(one_time_state(run_at))
    uid = str(state.schedule_id)
    labels = {"wfclock.dev/schedule-uid": uid}
    job = {"metadata": {"name": "once", "namespace": "acme", "labels": labels}, "spec": {}}
    ctx.kube.create_job_if_absent(job)
    onetime.release(ctx, Release(run_at, uid, "acme", "nightly", "once", 60), NOW)
    launch(conn, ClockFire(state.schedule_id, run_at, "once", Registration()), now=NOW)
    [release] = named(spans, "wfclock.release")
    [fire] = named(spans, "wfclock.fire")
    assert release.attributes["wfclock.outcome"] == "released"
    assert release.attributes["wfclock.scheduled_for"] == fire.attributes["wfclock.scheduled_for"]
    key_trace = int(traceparent_for(fire_key_for(uid, run_at)).split("-")[1], 16)
    assert release.context.trace_id == fire.context.trace_id == key_trace


def test_with_tracing_off_no_span_is_made_and_runs_keep_their_own_trace(conn, add_schedule):
    assert not tracing.enabled()
    state = add_schedule(make_state())
    with tracing.span("wfclock.fire") as span:
        assert span.traceparent is None
    result = launch(conn, ClockFire(state.schedule_id, AT, "job", REGISTRATION), now=NOW)
    trace_id = stored_traceparent(conn, result.key).split("-")[1]
    assert trace_id == traceparent_for(result.key).split("-")[1]


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_ask_for_it(env, wanted):
    assert tracing.wanted(env) is wanted


def test_an_exporter_other_than_otlp_leaves_tracing_off_with_a_warning(caplog):
    assert not tracing.setup("wfclock-test", {"OTEL_TRACES_EXPORTER": "zipkin"})
    assert not tracing.enabled()
    assert "OTEL_TRACES_EXPORTER='zipkin' is not supported (accepted: otlp, none)" in caplog.text
