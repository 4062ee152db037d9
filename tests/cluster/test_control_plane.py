"""The local control plane is the real thing: API validation, CronJob, Job and GC controllers."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.processes import wait_until

SERVE = {"wfclock.dev/schedule": "control-plane-test"}


def job_template(command, backoff_limit=0):
    return {
        "backoffLimit": backoff_limit,
        "template": {
            "metadata": {"labels": SERVE},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox",
                        "command": command,
                        "env": [
                            {
                                "name": "JOB_NAME",
                                "valueFrom": {
                                    "fieldRef": {
                                        "fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"
                                    }
                                },
                            }
                        ],
                    }
                ],
            },
        },
    }


def test_crd_cel_rule_refuses_an_object_with_the_rules_message(control_plane, api, namespace):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.wfclock.dev"},
        "spec": {
            "group": "test.wfclock.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "min": {"type": "integer"},
                                        "max": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.min <= self.max",
                                            "message": "min must not exceed max",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    objects = client.CustomObjectsApi(api)

    def create(spec):
        body = {
            "apiVersion": "test.wfclock.dev/v1",
            "kind": "Widget",
            "metadata": {"generateName": "w-"},
            "spec": spec,
        }
        return objects.create_namespaced_custom_object(
            "test.wfclock.dev", "v1", namespace, "widgets", body
        )

    wait_until(lambda: create({"min": 1, "max": 2}), 30, "the CRD to be served")
    with pytest.raises(ApiException) as refused:
        create({"min": 3, "max": 2})
    assert refused.value.status == 422 and "min must not exceed max" in refused.value.body


def test_cronjob_with_time_zone_fires_and_completes(api, namespace, pod_runner):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_cron_job(
        namespace,
        {
            "metadata": {"name": "every-minute"},
            "spec": {
                "schedule": "* * * * *",
                "timeZone": "Europe/Berlin",
                "jobTemplate": {"spec": job_template(["sh", "-c", "echo fired $JOB_NAME"])},
            },
        },
    )

    def job():
        jobs = batch.list_namespaced_job(namespace).items
        return jobs[0] if jobs else None

    created = wait_until(job, 75, "the CronJob controller to create a Job", interval=1)
    prefix, _, minutes = created.metadata.name.rpartition("-")
    assert prefix == "every-minute"
    scheduled = datetime.fromtimestamp(int(minutes) * 60, UTC)
    assert abs((datetime.now(UTC) - scheduled).total_seconds()) < 120
    wait_until(
        lambda: batch.read_namespaced_job(created.metadata.name, namespace).status.succeeded,
        60,
        "the Job to complete",
    )
    (run,) = pod_runner.runs_for_job(created.metadata.name)
    assert run.output.strip() == f"fired {created.metadata.name}"
    wait_until(
        lambda: (
            batch.read_namespaced_cron_job("every-minute", namespace).status.last_successful_time
        ),
        30,
        "lastSuccessfulTime",
    )


def test_cronjob_with_an_invalid_time_zone_is_refused(api, namespace):
    with pytest.raises(ApiException) as refused:
        client.BatchV1Api(api).create_namespaced_cron_job(
            namespace,
            {
                "metadata": {"name": "mars"},
                "spec": {
                    "schedule": "0 * * * *",
                    "timeZone": "Mars/Olympus_Mons",
                    "jobTemplate": {"spec": job_template(["true"])},
                },
            },
        )
    assert refused.value.status == 422 and "timeZone" in refused.value.body


def test_failing_job_is_retried_up_to_backoff_limit_then_failed(api, namespace, pod_runner):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "fails"},
            "spec": job_template(["sh", "-c", "exit 3"], backoff_limit=1),
        },
    )

    def failed():
        conditions = batch.read_namespaced_job("fails", namespace).status.conditions or []
        return any(c.type == "Failed" and c.status == "True" for c in conditions)

    wait_until(failed, 90, "the Job to fail", interval=1)
    runs = pod_runner.runs_for_job("fails")
    assert len(runs) == 2 and all(r.exit_code == 3 for r in runs)


def test_pod_that_cannot_run_is_reported(api, namespace, pod_runner):
    template = job_template(["true"])
    template["template"]["spec"]["containers"][0]["env"] = [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}
    ]
    client.BatchV1Api(api).create_namespaced_job(
        namespace, {"metadata": {"name": "broken"}, "spec": template}
    )
    problem = wait_until(
        lambda: [p for p in pod_runner.problems if f"{namespace}/broken" in p],
        30,
        "a reported problem",
    )
    assert "secret 'missing' not readable" in problem[0]


def test_deleting_an_owner_removes_what_it_owns(api, namespace):
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "owned",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            }
        },
    )
    core.delete_namespaced_config_map("owner", namespace)

    def gone():
        try:
            core.read_namespaced_config_map("owned", namespace)
            return False
        except ApiException as exc:
            return exc.status == 404

    wait_until(gone, 60, "the garbage collector", interval=0.5)


def test_teardown_leaves_no_process_behind():
    plane = ControlPlane().start()
    pids = [p.pid for p in plane.processes.values()]
    plane.remove()
    time.sleep(0.5)
    alive = subprocess.run(
        ["ps", "-o", "pid=", "-p", ",".join(map(str, pids))], capture_output=True, text=True
    ).stdout.split()
    assert alive == []


def test_children_die_when_their_owner_is_killed(tmp_path):
    script = (
        "from wfclock_devstack.controlplane import ControlPlane\n"
        "import os, time\n"
        "p = ControlPlane().start(controller_manager=False)\n"
        f"open('{tmp_path}/pids','w').write(' '.join(str(x.pid) for x in p.processes.values()))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    import sys

    subprocess.run([sys.executable, "-c", script], timeout=120)
    pids = (tmp_path / "pids").read_text().split()
    wait_until(
        lambda: (
            not subprocess.run(
                ["ps", "-o", "pid=", "-p", ",".join(pids)], capture_output=True, text=True
            ).stdout.split()
        ),
        10,
        "orphaned control-plane processes to exit",
    )
