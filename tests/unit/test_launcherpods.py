"""Why a launcher pod cannot start, read from the pod as the kubelet reports it."""

from datetime import UTC, datetime

import pytest
from wfclock.core.launcherpods import pod_problem, split_problem
from wfclock.core.status import status_for

from ._schedules import schedule, state_row

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def waiting_pod(reason: str, message: str, phase: str = "Pending") -> dict:
    return {
        "metadata": {
            "name": "nightly-x-2940-abcde",
            "labels": {"batch.kubernetes.io/job-name": "nightly-x-2940"},
        },
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"name": "launcher", "state": {"waiting": {"reason": reason, "message": message}}}
            ],
        },
    }


@pytest.mark.parametrize(
    ("kubelet_reason", "message", "reason"),
    [
        (
            "ErrImageNeverPull",
            'Container image "localhost/wfclock:gone" is not present with pull policy of Never',
            "LauncherImageUnavailable",
        ),
        (
            "ImagePullBackOff",
            'Back-off pulling image "registry/wfclock:9"',
            "LauncherImageUnavailable",
        ),
        (
            "CreateContainerConfigError",
            'secret "wfclock-database" not found',
            "LauncherConfigError",
        ),
        ("RunContainerError", "exec: python: not found", "LauncherCannotStart"),
    ],
)
def test_a_pod_that_cannot_start_is_a_problem_naming_the_pod_job_and_cause(
    kubelet_reason, message, reason
):
    problem = pod_problem(waiting_pod(kubelet_reason, message))
    assert problem.reason == reason
    assert problem.message == (
        f"pod nightly-x-2940-abcde of Job nightly-x-2940 cannot start: {kubelet_reason}: {message}"
    )
    assert split_problem(problem.text()) == (reason, problem.message)


def test_a_long_kubelet_message_is_cut_short_before_the_secret_is_named():
    pod = waiting_pod("CreateContainerConfigError", "x" * 5000)
    secret = {"secretKeyRef": {"name": "wfclock-database", "key": "url"}}
    pod["spec"] = {"containers": [{"name": "launcher", "env": [{"valueFrom": secret}]}]}
    pod["status"]["containerStatuses"][0]["name"] = "launcher"
    message = pod_problem(pod).message
    assert message.endswith('(the launcher reads Secret "wfclock-database" key "url")')
    assert len(message) < 900


def test_a_pod_that_cannot_read_its_configuration_names_the_secret_whatever_the_kubelets_words():
    pod = waiting_pod(
        "CreateContainerConfigError",
        "failed to sync secret cache: timed out waiting for the condition",
    )
    secret = {"secretKeyRef": {"name": "wfclock-database", "key": "url"}}
    pod["status"]["containerStatuses"][0]["name"] = "launcher"
    pod["spec"] = {
        "containers": [
            {"name": "sidecar", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {}}}]},
            {"name": "launcher", "env": [{"name": "TZ", "value": "UTC"}, {"valueFrom": secret}]},
        ]
    }
    problem = pod_problem(pod)
    assert problem.message == (
        "pod nightly-x-2940-abcde of Job nightly-x-2940 cannot start: "
        "CreateContainerConfigError: failed to sync secret cache: timed out waiting for the "
        'condition (the launcher reads Secret "wfclock-database" key "url")'
    )


def test_a_problem_is_recorded_already_when_only_the_kubelets_words_changed():
    first = pod_problem(waiting_pod("CreateContainerConfigError", "failed to sync secret cache"))
    again = pod_problem(waiting_pod("CreateContainerConfigError", 'secret "db" not found'))
    assert again.recorded_in(first.text()) and first.recorded_in(first.text())
    assert not again.recorded_in(None)
    assert not pod_problem(waiting_pod("RunContainerError", "x")).recorded_in(first.text())
    pulling = pod_problem(waiting_pod("ErrImagePull", 'pulling image "r/wfclock:9": not found'))
    backing_off = pod_problem(waiting_pod("ImagePullBackOff", 'Back-off pulling "r/wfclock:9"'))
    assert backing_off.recorded_in(pulling.text())  # the kubelet's retries of one pull
    other_pod = waiting_pod("CreateContainerConfigError", 'secret "db" not found')
    other_pod["metadata"]["name"] = "nightly-x-2940-fghij"
    assert not pod_problem(other_pod).recorded_in(first.text())


@pytest.mark.parametrize(
    "pod",
    [
        waiting_pod("ContainerCreating", ""),  # on its way
        waiting_pod("ErrImageNeverPull", "gone", phase="Failed"),  # over: the Job reports it
        {"metadata": {"name": "p"}, "status": {"phase": "Pending"}},  # not yet scheduled
    ],
)
def test_a_pod_on_its_way_or_finished_is_no_problem(pod):
    assert pod_problem(pod) is None


def test_a_stuck_job_without_a_launcher_reason_stays_fire_stuck():
    text = "Job nightly-x-2940 could not deliver the fire of 2026-11-25T01:00:00Z: no pod"
    assert split_problem(text) == ("FireStuck", text)
    assert split_problem("LauncherSomethingElse: x") == ("FireStuck", "LauncherSomethingElse: x")


def test_the_fires_condition_carries_the_launcher_reason():
    s = schedule({"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}, NOW)
    problem = pod_problem(waiting_pod("CreateContainerConfigError", 'secret "db" not found'))
    row = state_row(s, fire_problem=problem.text())
    status = status_for(row, s.spec.trigger.spec, 1, [], NOW)
    fires = next(c for c in status["conditions"] if c["type"] == "FiresHealthy")
    assert (fires["status"], fires["reason"]) == ("False", "LauncherConfigError")
    assert fires["message"] == problem.message and 'secret "db" not found' in fires["message"]
    assert status["phase"] == "Scheduled"  # the schedule is registered; its fires are not well
