"""Run control's pure parts: which run statuses are finished, run-now request ids and keys, and
the W3C trace context each fire hands to its run."""

import uuid

import pytest
from wfclock.core.runcontrol import (
    request_id_problem,
    run_failed,
    run_finished,
    run_now_key,
    traceparent_for,
    valid_traceparent,
)

from launcher_job.main import fire_from_env

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
KEY = "workflow-schedule-fire:5b0c6f36-0000-4000-8000-000000000001:2026-11-25T09:00:00Z"


@pytest.mark.parametrize("status", ["succeeded", "Completed", "FAILED", "cancelled", "timed_out"])
def test_finished_statuses(status):
    assert run_finished(status)


@pytest.mark.parametrize("status", ["queued", "running", "retrying", "", None])
def test_any_other_status_is_a_run_still_going(status):
    assert not run_finished(status)


def test_a_cancelled_run_is_finished_but_not_failed():
    assert run_failed("failed") and run_failed("terminated") and not run_failed("cancelled")


@pytest.mark.parametrize("request_id", ["r1", "2026-11-25.deploy-42", str(uuid.uuid4()), "a:b"])
def test_accepted_request_ids(request_id):
    assert request_id_problem(request_id) is None


@pytest.mark.parametrize("request_id", ["", "has space", "-leading", "trailing.", "x" * 129, "é"])
def test_refused_request_ids_say_what_is_accepted(request_id):
    assert "1-128 letters, digits" in request_id_problem(request_id)


def test_a_run_now_key_never_looks_like_a_fire_key():
    key = run_now_key("5b0c6f36-0000-4000-8000-000000000001", "r1")
    assert key == "workflow-schedule-run-now:5b0c6f36-0000-4000-8000-000000000001:r1"
    assert not key.startswith("workflow-schedule-fire:")


def test_every_delivery_of_a_fire_shares_its_trace_but_not_its_span():
    first, second = traceparent_for(KEY), traceparent_for(KEY)
    assert valid_traceparent(first) and valid_traceparent(second)
    assert first.split("-")[1] == second.split("-")[1]
    assert first.split("-")[2] != second.split("-")[2]
    assert traceparent_for(KEY.replace("09:00", "10:00")).split("-")[1] != first.split("-")[1]


def test_a_valid_parent_makes_the_fire_a_child_of_its_trace():
    child = traceparent_for(KEY, PARENT)
    assert child.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-") and child.endswith("-01")
    assert child.split("-")[2] != "00f067aa0ba902b7"


@pytest.mark.parametrize(
    "parent",
    ["junk", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", PARENT.upper()],
)
def test_an_invalid_parent_is_ignored_not_fatal(parent):
    assert not valid_traceparent(parent)
    assert traceparent_for(KEY, parent).split("-")[1] == traceparent_for(KEY).split("-")[1]


def test_the_launcher_job_takes_its_parent_from_traceparent():
    env = {
        "WFCLOCK_SCHEDULE_ID": "5b0c6f36-0000-4000-8000-000000000001",
        "WFCLOCK_SCHEDULED_FOR": "2026-11-25T09:00:00Z",
        "TRACEPARENT": PARENT,
    }
    assert fire_from_env(env).trace_parent == PARENT
    assert fire_from_env({**env, "TRACEPARENT": ""}).trace_parent is None


def test_only_a_run_now_annotation_change_skips_the_registration():
    from wfclock.controller.handlers import _changed_annotations

    run_now_only = [("change", ("metadata", "annotations", "wfclock.dev/run-now"), "a", "b")]
    assert _changed_annotations(run_now_only) == {"wfclock.dev/run-now"}
    first = [("add", ("metadata", "annotations"), None, {"wfclock.dev/run-now": "a"})]
    assert _changed_annotations(first) == {"wfclock.dev/run-now"}
    with_spec = [*run_now_only, ("change", ("spec", "paused"), False, True)]
    assert _changed_annotations(with_spec) is None
    assert _changed_annotations(None) is None


def test_metadata_appearing_with_only_a_run_now_annotation_counts_as_run_now_only():
    from wfclock.controller.handlers import _changed_annotations

    diff = [("add", ("metadata",), None, {"annotations": {"wfclock.dev/run-now": "r1"}})]
    assert _changed_annotations(diff) == {"wfclock.dev/run-now"}
    labels = [("add", ("metadata",), None, {"labels": {"a": "b"}})]
    assert _changed_annotations(labels) is None
