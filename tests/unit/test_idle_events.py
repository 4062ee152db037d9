"""Watch events kopf would do nothing with are not handed to its processing
(controller/idle_events.py): the echo of kopf's own status patch of a WorkflowSchedule, and the
child events no handler's filter wants. Anything else, or anything the sieve cannot be sure of,
goes to kopf. Judged with wfclock's handlers registered and kopf configured as the operator
configures it."""

import asyncio
import json
from types import SimpleNamespace

import kopf
import pytest
from kopf._cogs.structs.references import Resource
from wfclock.controller import backpressure, handlers, idle_events
from wfclock.core.model import API_GROUP, API_VERSION, PLURAL
from wfclock.core.names import REGISTRATION_LABEL, SCHEDULE_UID_LABEL
from wfclock.settings import Settings

SCHEDULES = Resource(API_GROUP, API_VERSION, PLURAL, kind="WorkflowSchedule", namespaced=True)
CALENDARS = Resource(API_GROUP, API_VERSION, "workflowcalendars", namespaced=True)
CRONJOBS = Resource("batch", "v1", "cronjobs", kind="CronJob", namespaced=True)
JOBS = Resource("batch", "v1", "jobs", kind="Job", namespaced=True)
PEERINGS = Resource("kopf.dev", "v1", "kopfpeerings", namespaced=True)
FINALIZER = "wfclock.dev/finalizer"


@pytest.fixture
def memo():
    return SimpleNamespace(
        ctx=SimpleNamespace(judged_cronjobs={}, deletions=None), finished_jobs=set()
    )


@pytest.fixture
def sieve_for(memo):
    settings = kopf.OperatorSettings()
    try:
        handlers.configure_kopf(settings, Settings(database_url="postgresql://u@db/wfclock"))
    finally:
        backpressure.uninstall()
    idle_events.configure(settings, memo)
    yield lambda resource: idle_events.sieve_for(resource)
    idle_events._kopf_settings = idle_events._memo = None


def handled(body: dict) -> dict:
    """The object as kopf's patch leaves it once its handlers are done: the essence it
    handled stored in the status, nothing in progress."""
    storage = handlers.SlimStatusDiffBase(field="status.kopf.lastHandledConfiguration")
    essence = storage.build(body=body)
    status = {**body.get("status", {}), "phase": "Scheduled"}
    status["kopf"] = {"lastHandledConfiguration": json.dumps(essence, separators=(",", ":"))}
    return {**body, "status": status}


def schedule(version: str, **spec) -> dict:
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "WorkflowSchedule",
        "metadata": {
            "name": "nightly",
            "namespace": "team-a",
            "uid": "u-1",
            "resourceVersion": version,
            "generation": 1,
            "finalizers": [FINALIZER],
            "labels": {"team": "a"},
        },
        "spec": {"workflowId": "wf", "trigger": {"type": "recurring", "cron": "0 3 * * *"}, **spec},
    }


def event(kind: str | None, body: dict) -> dict:
    return {"type": kind, "object": body}


def created_and_patched(sieve) -> None:
    """kopf processed the schedule's creation (version 101), and its patch returned 102."""
    created = schedule("101")
    assert not sieve.idle(event("ADDED", created))
    sieve.processed(event("ADDED", created), "102")


def test_the_echo_of_kopfs_own_status_patch_is_idle(sieve_for):
    sieve = sieve_for(SCHEDULES)
    echo = handled(schedule("102"))
    created_and_patched(sieve)
    assert sieve.idle(event("MODIFIED", echo))
    assert sieve.patched == {}  # forgotten once seen
    assert not sieve.idle(event("MODIFIED", echo)), "the same version again is no echo"


def test_an_echo_whose_spec_or_labels_changed_before_the_patch_goes_to_kopf(sieve_for):
    """A user's edit that landed between kopf's read and its status patch: the echo carries
    it, and kopf must see the difference from the essence it stored."""
    sieve = sieve_for(SCHEDULES)
    stored = handled(schedule("102"))
    edited = {**stored, "spec": {**stored["spec"], "paused": True}}
    created_and_patched(sieve)
    assert not sieve.idle(event("MODIFIED", edited))
    relabelled = {**stored, "metadata": {**stored["metadata"], "labels": {"team": "b"}}}
    created_and_patched(sieve)
    assert not sieve.idle(event("MODIFIED", relabelled))


def test_an_echo_with_a_handler_in_progress_goes_to_kopf(sieve_for):
    """A failed reconcile leaves its retry in the status: kopf sleeps on the echo, then
    retries. That echo must reach it."""
    sieve = sieve_for(SCHEDULES)
    echo = handled(schedule("102"))
    echo["status"]["kopf"]["progress"] = {"reconcile": {"retries": 1, "delayed": "2026-11-28"}}
    created_and_patched(sieve)
    assert not sieve.idle(event("MODIFIED", echo))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"deletionTimestamp": "2026-11-28T05:00:00Z"}, id="being deleted"),
        pytest.param({"finalizers": []}, id="without the finalizer"),
    ],
)
def test_an_echo_kopf_would_act_on_goes_to_kopf(sieve_for, change):
    sieve = sieve_for(SCHEDULES)
    echo = handled(schedule("102"))
    echo["metadata"] = {**echo["metadata"], **change}
    created_and_patched(sieve)
    assert not sieve.idle(event("MODIFIED", echo))


def test_the_echo_of_a_patch_that_only_added_the_finalizer_goes_to_kopf(sieve_for):
    """A cycle that only puts the finalizer back runs no handler: kopf runs them on that
    patch's echo (after a restart: the schedule's resume)."""
    sieve = sieve_for(SCHEDULES)
    listed = handled(schedule("101"))
    listed["metadata"] = {**listed["metadata"], "finalizers": []}
    assert not sieve.idle(event(None, listed))
    sieve.processed(event(None, listed), "102")
    assert not sieve.idle(event("MODIFIED", handled(schedule("102"))))


def test_an_event_the_sieve_fails_on_goes_to_kopf(sieve_for):
    sieve = sieve_for(SCHEDULES)
    created_and_patched(sieve)
    echo = handled(schedule("102"))
    echo["status"]["kopf"]["lastHandledConfiguration"] = "{not json"
    assert not sieve.idle(event("MODIFIED", echo))


def test_only_the_version_kopfs_patch_returned_is_an_echo(sieve_for):
    sieve = sieve_for(SCHEDULES)
    created_and_patched(sieve)
    assert not sieve.idle(event("MODIFIED", handled(schedule("103"))))
    # An event in between (a user's edit, its version before the echo's): the echo that
    # follows is handed on too, kopf judges it against what it handled last.
    created_and_patched(sieve)
    assert not sieve.idle(event("MODIFIED", handled(schedule("101"))))
    assert not sieve.idle(event("MODIFIED", handled(schedule("102"))))


def test_a_schedule_without_a_patch_awaited_goes_to_kopf(sieve_for):
    """The first listing after a restart, a creation, a deletion, an edit by someone else:
    every event kopf did not just patch to."""
    sieve = sieve_for(SCHEDULES)
    body = handled(schedule("102"))
    for kind in (None, "ADDED", "MODIFIED", "DELETED"):
        assert not sieve.idle(event(kind, body))


def test_the_echo_of_a_schedule_that_opted_into_deletion_goes_to_kopf(sieve_for):
    """`delete_after_completion` queues the deletion from any event of such a schedule, the
    echo of its Completed status included."""
    sieve = sieve_for(SCHEDULES)
    echo = handled(schedule("102", deleteAfterCompletionSeconds=60))
    created_and_patched(sieve)
    assert not sieve.idle(event("MODIFIED", echo))


def cronjob(kind: str | None, generation: int, labels=None) -> dict:
    return event(
        kind,
        {
            "metadata": {
                "name": "nightly-c0300",
                "uid": "c-1",
                "generation": generation,
                "resourceVersion": "7",
                "labels": {REGISTRATION_LABEL: "recurring"} if labels is None else labels,
            },
            "spec": {"schedule": "0 3 * * *"},
        },
    )


def test_a_cronjobs_creation_and_the_controllers_status_updates_are_idle(sieve_for, memo):
    sieve = sieve_for(CRONJOBS)
    memo.ctx.judged_cronjobs["c-1"] = 2
    assert sieve.idle(cronjob(None, 1))
    assert sieve.idle(cronjob("ADDED", 1))
    assert sieve.idle(cronjob("MODIFIED", 2)), "a status update at the judged generation"
    assert not sieve.idle(cronjob("MODIFIED", 3)), "a hand edit moves the generation"
    assert not sieve.idle(cronjob("DELETED", 2))
    assert sieve.idle(cronjob("DELETED", 2, labels={})), "not wfclock's CronJob"


def job(kind: str | None, finished: bool, uid="j-1", labels=None) -> dict:
    status = {"completionTime": "2026-11-28T05:00:00Z"} if finished else {"active": 1}
    return event(
        kind,
        {
            "metadata": {
                "name": "nightly-c0300-29000",
                "uid": uid,
                "labels": {SCHEDULE_UID_LABEL: "u-1"} if labels is None else labels,
                "creationTimestamp": "2026-11-28T04:59:00Z",
            },
            "status": status,
        },
    )


def test_a_fire_jobs_events_before_it_finishes_are_idle(sieve_for, memo):
    sieve = sieve_for(JOBS)
    assert sieve.idle(job("ADDED", finished=False))
    assert sieve.idle(job("MODIFIED", finished=False))
    assert not sieve.idle(job("MODIFIED", finished=True))
    memo.finished_jobs.add("j-1")
    assert sieve.idle(job("MODIFIED", finished=True)), "reported already"
    assert not sieve.idle(job("DELETED", finished=True))
    assert sieve.idle(job("DELETED", finished=True, labels={})), "not a fire's Job"


def test_a_filter_that_fails_hands_the_event_to_kopf(sieve_for, memo):
    sieve = sieve_for(CRONJOBS)
    memo.ctx.judged_cronjobs = {"c-1": 2}
    assert sieve.idle(cronjob("MODIFIED", 2))
    memo.ctx.judged_cronjobs = None  # `_spec_may_have_changed` then fails
    assert not sieve.idle(cronjob("MODIFIED", 2))


def test_resources_with_timers_or_without_wfclocks_handlers_are_not_sieved(sieve_for):
    assert sieve_for(CALENDARS) is None  # the calendars' refresh timer
    assert sieve_for(PEERINGS) is None
    assert sieve_for(SCHEDULES) is not None


def test_without_kopfs_settings_nothing_is_sieved(sieve_for):
    assert sieve_for(SCHEDULES) is not None
    idle_events.configure(None, None)  # as the operator's cleanup leaves it
    assert idle_events.sieve_for(SCHEDULES) is None


def test_label_filters_are_read_as_kopf_reads_them():
    assert idle_events._metadata_matches({"a": kopf.ABSENT}, {})
    assert not idle_events._metadata_matches({"a": kopf.ABSENT}, {"a": "1"})
    assert idle_events._metadata_matches({"a": kopf.PRESENT}, {"a": ""})
    assert not idle_events._metadata_matches({"a": kopf.PRESENT}, {})
    assert idle_events._metadata_matches({"a": "1"}, {"a": "1"})
    assert not idle_events._metadata_matches({"a": "1"}, {"a": "2"})
    assert not idle_events._metadata_matches({"a": "1"}, {})
    assert idle_events._metadata_matches({"a": lambda value, **_: False}, {}), "kopf decides"


def test_the_watcher_hands_kopf_only_what_the_sieve_lets_through(sieve_for, monkeypatch):
    """The sieve where kopf's worker calls its processor: an idle event is answered without
    it, and the version kopf's patch returns is what the next event is judged by."""
    processed = []

    async def processor(*, raw_event, **_):
        processed.append(raw_event["type"])
        return "102" if raw_event["type"] == "ADDED" else None

    async def kopf_watcher(*, processor, resource, namespace, **_):
        for raw_event in events:
            await processor(raw_event=raw_event)

    created, echo = schedule("101"), handled(schedule("102"))
    events = [event("ADDED", created), event("MODIFIED", echo), event("DELETED", echo)]
    monkeypatch.setattr(backpressure, "_kopf_watcher", kopf_watcher)
    backpressure.install(0, sieve_for=idle_events.sieve_for)
    try:
        asyncio.run(backpressure._watcher(processor=processor, resource=SCHEDULES, namespace=None))
    finally:
        backpressure.uninstall()
    assert processed == ["ADDED", "DELETED"]
