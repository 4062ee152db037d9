"""The operator's kopf diff-base gives kopf exactly the essence kopf's own storage would."""

import kopf
import pytest
from kopf._cogs.structs.bodies import Body
from wfclock.controller.handlers import SlimStatusDiffBase

FIELD = "status.kopf.lastHandledConfiguration"
FULL = {
    "apiVersion": "wfclock.dev/v1alpha1",
    "kind": "WorkflowSchedule",
    "metadata": {
        "name": "nightly",
        "namespace": "acme",
        "uid": "u-1",
        "generation": 3,
        "resourceVersion": "42",
        "finalizers": ["wfclock.dev/finalizer"],
        "labels": {"team": "data"},
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "kopf.zalando.org/last-handled-configuration": "{}",
            "owner": "ops",
        },
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:paused": {}}}}],
    },
    "spec": {
        "tenant": "acme",
        "paused": False,
        "trigger": {"type": "recurring", "cron": "0 3 * * *", "timezone": "UTC"},
    },
    "status": {
        "phase": "Scheduled",
        "nextFires": [{"at": "2026-11-27T03:00:00Z"}],
        "kopf": {"lastHandledConfiguration": "{}"},
    },
}


def without(body: dict, *path: str) -> dict:
    body = {**body, "metadata": dict(body["metadata"])}
    target = body["metadata"] if len(path) == 2 else body
    target.pop(path[-1])
    return body


@pytest.mark.parametrize(
    "body",
    [
        FULL,
        without(FULL, "status"),
        without(FULL, "metadata", "labels"),
        without(FULL, "metadata", "annotations"),
        {"spec": {}, "metadata": {}},
    ],
    ids=["full", "no-status", "no-labels", "no-annotations", "bare"],
)
def test_slim_diff_base_builds_the_same_essence_as_kopfs(body):
    theirs = kopf.StatusDiffBaseStorage(field=FIELD).build(body=Body(body))
    ours = SlimStatusDiffBase(field=FIELD).build(body=Body(body))
    assert ours == theirs


def test_slim_diff_base_does_not_share_the_bodys_objects():
    ours = SlimStatusDiffBase(field=FIELD).build(body=Body(FULL))
    ours["spec"]["trigger"]["cron"] = "changed"
    assert FULL["spec"]["trigger"]["cron"] == "0 3 * * *"


def test_extra_fields_fall_back_to_the_whole_body():
    ours = SlimStatusDiffBase(field=FIELD).build(body=Body(FULL), extra_fields=["status.phase"])
    assert ours["status"] == {"phase": "Scheduled"}
