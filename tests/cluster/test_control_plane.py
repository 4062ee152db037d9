"""The local control plane is the real thing: API validation, CronJob, Job and GC controllers."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from wfclock_devstack.controlplane import ControlPlane
from wfclock_devstack.podrunner import PodRunner
from wfclock_devstack.processes import wait_until

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def job_template(image, command, backoff_limit=0):
    """A Job of one container that passes the restricted level, run on the node."""
    return {
        "backoffLimit": backoff_limit,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": command,
                        "securityContext": RESTRICTED_CONTAINER,
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


def python(code: str) -> list[str]:
    return ["python", "-c", code]


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


def test_cronjob_with_time_zone_fires_and_completes(api, namespace, launcher_image):
    batch = client.BatchV1Api(api)
    command = python("import os; print('fired', os.environ['JOB_NAME'])")
    batch.create_namespaced_cron_job(
        namespace,
        {
            "metadata": {"name": "every-minute"},
            "spec": {
                "schedule": "* * * * *",
                "timeZone": "Europe/Berlin",
                "jobTemplate": {"spec": job_template(launcher_image, command)},
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
        90,
        "the Job to complete",
    )
    core = client.CoreV1Api(api)
    (pod,) = core.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={created.metadata.name}"
    ).items
    log = core.read_namespaced_pod_log(pod.metadata.name, namespace)
    assert log.strip() == f"fired {created.metadata.name}"
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
                    "jobTemplate": {"spec": job_template("any", ["true"])},
                },
            },
        )
    assert refused.value.status == 422 and "timeZone" in refused.value.body


def test_failing_job_is_retried_up_to_backoff_limit_then_failed(api, namespace, launcher_image):
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "fails"},
            "spec": job_template(launcher_image, python("raise SystemExit(3)"), backoff_limit=1),
        },
    )

    def failed():
        conditions = batch.read_namespaced_job("fails", namespace).status.conditions or []
        return any(c.type == "Failed" and c.status == "True" for c in conditions)

    wait_until(failed, 120, "the Job to fail", interval=1)
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector="batch.kubernetes.io/job-name=fails"
    )
    codes = [p.status.container_statuses[0].state.terminated.exit_code for p in pods.items]
    assert codes == [3, 3]


def test_pod_that_cannot_run_is_reported_by_the_pod_runner(plane):
    """The pod runner (which plays the node where none runs: the chart and standby tests, the
    local stack) reports a pod it cannot run rather than ignoring it."""
    admin = config.new_client_from_config(config_file=str(plane.kubeconfig))
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": "runner"}})
    runner = PodRunner(admin, namespace="runner").start()
    try:
        template = job_template("any", ["true"])
        template["template"]["metadata"] = {"labels": {"wfclock.dev/schedule": "x"}}
        template["template"]["spec"]["containers"][0]["env"] = [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}
        ]
        client.BatchV1Api(admin).create_namespaced_job(
            "runner", {"metadata": {"name": "broken"}, "spec": template}
        )
        problem = wait_until(
            lambda: [p for p in runner.problems if "runner/broken" in p], 30, "a reported problem"
        )
    finally:
        runner.stop()
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
        f"open('{tmp_path}/root','w').write(str(p.root))\n"
        "os.kill(os.getpid(), 9)\n"
    )
    import sys

    subprocess.run([sys.executable, "-c", script], timeout=120)
    # The killed owner never removed its folder (every `make test` left one in /tmp).
    shutil.rmtree((tmp_path / "root").read_text(), ignore_errors=True)
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
