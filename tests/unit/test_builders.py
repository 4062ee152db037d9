"""Child objects built from a schedule: restricted launcher pods, policies, deterministic names."""

from datetime import UTC, datetime

import pytest
from wfclock.controller.kube import FIRE_JOB_SELECTOR
from wfclock.core.accounting import job_creation_deadline
from wfclock.core.builders import Schedule, build_cronjob, build_one_time_job, child_name
from wfclock.settings import Settings

from ..support.pod_security import launcher_promises_broken, restricted_violations
from ._schedules import SETTINGS, schedule

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def test_missed_fire_policies_set_the_cronjob_deadline():
    trigger = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
    latest = build_cronjob(schedule(trigger, NOW, startingDeadlineSeconds=600), SETTINGS)
    skip = build_cronjob(schedule(trigger, NOW, missedFires="skip"), SETTINGS)
    assert latest["spec"]["startingDeadlineSeconds"] == 600
    assert skip["spec"]["startingDeadlineSeconds"] == 30


@pytest.mark.parametrize("policy", ["latest", "catchUp", "skip"])
@pytest.mark.parametrize("seconds", [10, 600])
def test_the_sweep_trusts_a_job_list_only_past_the_cronjobs_own_deadline(policy, seconds):
    """The accounting's Job-creation deadline is never before the CronJob's: after that the
    CronJob controller creates no Job for the fire, so a list of the Jobs taken later shows
    every one it made. Also across an edit of the policy: the CronJob of either policy."""
    trigger = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
    row = {"missed_fires": policy, "starting_deadline_seconds": seconds}
    created_by = job_creation_deadline(row).total_seconds()
    for cronjob_policy in ("latest", "catchUp", "skip"):
        spec = {
            "startingDeadlineSeconds": seconds,
            "missedFires": cronjob_policy,
            "catchUpWindowSeconds": 120,
        }
        cronjob = build_cronjob(schedule(trigger, NOW, **spec), SETTINGS)
        assert cronjob["spec"]["startingDeadlineSeconds"] <= created_by


def test_the_sweeps_list_of_fire_jobs_selects_the_jobs_a_cronjob_makes():
    """The accounting sweep trusts one list of the fire Jobs (`Kube.active_fire_jobs`): a Job
    its selector missed would read as gone, and its fire could be recorded missed."""
    trigger = {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}
    labels = build_cronjob(schedule(trigger, NOW), SETTINGS)["spec"]["jobTemplate"]["metadata"][
        "labels"
    ]
    wanted = dict(term.split("=") for term in FIRE_JOB_SELECTOR.split(","))
    assert wanted.items() <= labels.items()
    one_time = build_one_time_job(
        schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00Z"}, NOW), SETTINGS
    )
    assert not wanted.items() <= one_time["metadata"]["labels"].items()


def test_builders_make_restricted_launcher_pods_and_deterministic_names():
    s = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00+01:00"}, NOW)
    job = build_one_time_job(s, SETTINGS)
    assert job == build_one_time_job(s, SETTINGS)
    assert job["spec"]["suspend"] is True and len(job["metadata"]["name"]) <= 63
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e for e in container["env"]}
    assert env["WFCLOCK_SCHEDULED_FOR"]["value"] == "2026-12-01T08:00:00Z"
    assert "secretKeyRef" in env["WFCLOCK_DATABASE_URL"]["valueFrom"]
    long = Schedule("x" * 250, "acme", s.uid, s.spec)
    assert len(build_one_time_job(long, SETTINGS)["metadata"]["name"]) <= 63


def test_cronjob_carries_cron_zone_and_pause():
    trigger = {"type": "recurring", "cron": "15 9 * * 1-5", "timezone": "America/New_York"}
    cronjob = build_cronjob(schedule(trigger, NOW, paused=True), SETTINGS)
    spec = cronjob["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["suspend"]) == (
        "15 9 * * 1-5",
        "America/New_York",
        True,
    )
    assert cronjob["metadata"]["ownerReferences"][0]["controller"] is True


def test_cronjob_registers_the_numeric_form_and_gives_the_launcher_the_dst_policy():
    trigger = {"type": "recurring", "cron": "0 18 L * *", "timezone": "Europe/Berlin"}
    cronjob = build_cronjob(schedule({**trigger, "dstPolicy": "RunOnceSkipMissing"}, NOW), SETTINGS)
    assert cronjob["spec"]["schedule"] == "0 18 28-31 * *"
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # The launcher reads `L` from the cron it is given and the policy beside it.
    assert (env["WFCLOCK_CRON"], env["WFCLOCK_DST_POLICY"]) == ("0 18 L * *", "RunOnceSkipMissing")
    named = build_cronjob(schedule({**trigger, "cron": "@weekly"}, NOW), SETTINGS)
    assert named["spec"]["schedule"] == "0 0 * * 0"


@pytest.mark.parametrize("offset", ["+05:45", "-03:30", "+14:00", "+01:00", "Z"])
def test_one_time_names_and_keys_come_from_the_utc_instant_for_any_offset(offset):
    local = {
        "+05:45": "14:45",
        "-03:30": "05:30",
        "+14:00": "23:00",
        "+01:00": "10:00",
        "Z": "09:00",
    }
    s = schedule({"type": "schedule", "runAt": f"2026-12-01T{local[offset]}:00{offset}"}, NOW)
    job = build_one_time_job(s, SETTINGS)
    # The name the release queue un-suspends is the name of the Job that was created.
    assert child_name(s) == job["metadata"]["name"]
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["WFCLOCK_SCHEDULED_FOR"] == "2026-12-01T09:00:00Z"
    same_instant_in_utc = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00Z"}, NOW)
    renamed = Schedule(s.name, s.namespace, s.uid, same_instant_in_utc.spec)
    assert child_name(renamed) == child_name(s)


def _label_and_annotation_holders(s: Schedule) -> list[dict]:
    """Every metadata a child carries, with what the CronJob controller copies to its Jobs."""
    if s.recurring:
        cronjob = build_cronjob(s, SETTINGS)
        template = cronjob["spec"]["jobTemplate"]
        return [cronjob["metadata"], template["metadata"], template["spec"]["template"]["metadata"]]
    job = build_one_time_job(s, SETTINGS)
    return [job["metadata"], job["spec"]["template"]["metadata"]]


def test_a_253_character_schedule_name_gives_valid_labels_and_keeps_the_full_name():
    from wfclock.core.names import SCHEDULE_LABEL, schedule_name_of

    name = ("nightly-report." * 17)[:252] + "x"
    assert len(name) == 253
    for trigger in (
        {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"},
        {"type": "schedule", "runAt": "2026-12-01T09:00:00+01:00"},
    ):
        s = schedule(trigger, NOW, name=name)
        holders = _label_and_annotation_holders(s)
        for metadata in holders:
            assert all(len(v) <= 63 for v in metadata["labels"].values()), metadata["labels"]
        child = holders[0]
        assert len(child["labels"][SCHEDULE_LABEL]) <= 63
        assert schedule_name_of(child) == name  # what the operator reads back from a Job
        if s.recurring:
            assert schedule_name_of(holders[1]) == name  # copied onto every CronJob Job


def test_a_one_time_job_tells_the_launcher_its_own_name():
    s = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00+01:00"}, NOW)
    job = build_one_time_job(s, SETTINGS)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WFCLOCK_JOB_NAME"] == job["metadata"]["name"]


def test_finished_fire_jobs_and_their_pods_are_removed_after_the_configured_time():
    one_time = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00+01:00"}, NOW)
    recurring = schedule({"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}, NOW)
    assert build_one_time_job(one_time, SETTINGS)["spec"]["ttlSecondsAfterFinished"] == 86400
    short = SETTINGS.model_copy(update={"launcher_ttl_seconds_after_finished": 30})
    assert build_one_time_job(one_time, short)["spec"]["ttlSecondsAfterFinished"] == 30
    template = build_cronjob(recurring, short)["spec"]["jobTemplate"]
    assert template["spec"]["ttlSecondsAfterFinished"] == 30


def test_launcher_pods_have_a_cpu_limit():
    s = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00+01:00"}, NOW)
    (container,) = build_one_time_job(s, SETTINGS)["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "128Mi"}


def test_a_schedules_traceparent_annotation_reaches_its_launcher_pods_as_traceparent():
    import dataclasses

    s = dataclasses.replace(
        schedule({"type": "recurring", "cron": "0 9 * * *", "timezone": "UTC"}, NOW),
        trace_parent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    pod = build_cronjob(s, SETTINGS)["spec"]["jobTemplate"]["spec"]["template"]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["TRACEPARENT"] == s.trace_parent


def test_launcher_pods_export_their_fire_spans_only_when_an_otlp_endpoint_is_configured():
    def otel_env(settings):
        return {
            kind: {
                e["name"]: e["value"]
                for e in pod["spec"]["containers"][0]["env"]
                if e["name"].startswith("OTEL_")
            }
            for kind, pod in _launcher_pods(settings).items()
        }

    assert otel_env(SETTINGS) == {"CronJob": {}, "Job": {}}
    traced = SETTINGS.model_copy(update={"launcher_otlp_endpoint": "http://collector:4318"})
    expected = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_SERVICE_NAME": "wfclock-launcher",
    }
    assert otel_env(traced) == {"CronJob": expected, "Job": expected}


def _launcher_pods(settings=SETTINGS) -> dict[str, dict]:
    recurring = schedule({"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}, NOW)
    once = schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00Z"}, NOW)
    return {
        "CronJob": build_cronjob(recurring, settings)["spec"]["jobTemplate"]["spec"]["template"],
        "Job": build_one_time_job(once, settings)["spec"]["template"],
    }


@pytest.mark.parametrize("kind", ["CronJob", "Job"])
def test_launcher_pods_meet_the_restricted_pod_security_level(kind):
    pod = _launcher_pods()[kind]["spec"]
    assert restricted_violations(pod) == []
    assert launcher_promises_broken(pod) == []
    # Both of the kubelet's environment sources: the Secret and the downward API (CronJob).
    env = {e["name"]: e.get("valueFrom", {}) for e in pod["containers"][0]["env"]}
    assert set(env["WFCLOCK_DATABASE_URL"]) == {"secretKeyRef"}
    if kind == "CronJob":
        assert env["WFCLOCK_JOB_NAME"]["fieldRef"]["fieldPath"] == (
            "metadata.labels['batch.kubernetes.io/job-name']"
        )


@pytest.mark.parametrize(
    ("break_it", "problem"),
    [
        (lambda pod: pod["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
        (lambda pod: pod["securityContext"].pop("seccompProfile"), "seccomp"),
        (
            lambda pod: pod["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
            "allowPrivilegeEscalation",
        ),
        (lambda pod: pod["containers"][0]["securityContext"].pop("capabilities"), "drop ALL"),
        (lambda pod: pod.update(hostNetwork=True), "hostNetwork"),
        (lambda pod: pod.update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), "hostPath"),
    ],
)
def test_the_restricted_check_refuses_what_the_level_refuses(break_it, problem):
    pod = _launcher_pods()["Job"]["spec"]
    break_it(pod)
    assert any(problem in p for p in restricted_violations(pod)), restricted_violations(pod)


def test_the_launcher_promises_are_checked_beyond_the_restricted_level():
    pod = _launcher_pods()["Job"]["spec"]
    pod["automountServiceAccountToken"] = True
    pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    assert restricted_violations(pod) == []  # the level itself allows both
    assert len(launcher_promises_broken(pod)) == 2


def test_the_launcher_image_pull_policy_is_a_setting():
    assert {p["spec"]["containers"][0]["imagePullPolicy"] for p in _launcher_pods().values()} == {
        "IfNotPresent"
    }
    never = Settings(database_url="postgresql://x/y", launcher_image_pull_policy="Never")
    assert {
        p["spec"]["containers"][0]["imagePullPolicy"] for p in _launcher_pods(never).values()
    } == {"Never"}
