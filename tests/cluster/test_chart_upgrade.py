"""`helm upgrade` from the previous chart (a packaged copy of the chart at main commit 460fb6b,
`data/`: before migration 0005, and the first whose migrate step leaves a newer database as it
is, so a rollback across 0005 starts) to the current one while schedules fire, then `helm rollback`: exactly one run per fire,
by the independent accounting (`make faults`; about five minutes).

The local control plane has no kubelet for the operator's pod, so each revision's pod is played
as in test_chart.py: the operator runs as a local process with the chart's ServiceAccount token
and exactly the environment the release's Deployment gives it (resolved from its values and
Secret), after the Deployment's init container (`wfclock db upgrade`). The previous revision runs
the operator code of that same commit (`git archive`), the current one this checkout's. The
Deployment's `Recreate` strategy is played as it happens: the old operator stops before the new
one starts, and one-time schedules come due in that gap.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from wfclock.db.store import engine_for, list_runs
from wfclock_devstack.accounting import Change
from wfclock_devstack.podrunner import PodRunner
from wfclock_devstack.ports import free_port
from wfclock_devstack.processes import wait_until

from .conftest import Cluster
from .test_chart import CHART, RELEASE_NS, _token_client, helm, install_release
from .test_faults import settle_and_account

pytestmark = pytest.mark.faults

PREVIOUS_COMMIT = "460fb6b"
PREVIOUS_CHART = Path(__file__).parent / "data" / f"wfclock-0.2.0-{PREVIOUS_COMMIT}.tgz"
ROOT = Path(__file__).resolve().parents[2]
CURRENT_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
VALUES = ["--set", "minimumIntervalMinutes=1", "--set", "watchNamespaces={acme}"]
# The previous release's launcher image: the pod runner runs its pods with that commit's code.
# Both charts' appVersion is 0.1.0, so the first revision names an image of its own (a rollback
# to it brings the value back).
PREVIOUS_IMAGE = f"ghcr.io/wfclock/wfclock:0.1.0-{PREVIOUS_COMMIT}"
EVERY_MINUTE = [("utc", "UTC"), ("kolkata", "Asia/Kolkata")]


@pytest.fixture(scope="module")
def previous_code(tmp_path_factory) -> Path:
    """The code of the previous chart's commit (`operator/`, `launcher_job/`): its revision's
    operator pod, and the launcher pods of the Jobs it made (its image)."""
    folder = tmp_path_factory.mktemp("previous")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_COMMIT, "operator", "launcher_job"],
        capture_output=True,
        check=False,
    )
    assert archive.returncode == 0, (
        f"the upgrade test needs commit {PREVIOUS_COMMIT} in this clone's history: "
        f"{archive.stderr.decode()}"
    )
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


class OperatorPod:
    """One revision's operator pod: its init container, then its container, as local processes
    with the Deployment's environment; stopped with SIGTERM as the kubelet does."""

    def __init__(self, admin, kubeconfig: Path, code: Path | None, logs: Path):
        self.admin, self.kubeconfig, self.code, self.logs = admin, kubeconfig, code, logs
        self.process: subprocess.Popen | None = None

    def _env(self, container) -> dict[str, str]:
        core = client.CoreV1Api(self.admin)
        env = {"PATH": os.environ["PATH"], "KUBECONFIG": str(self.kubeconfig)}
        for var in container.env:
            if var.value_from is None:
                env[var.name] = var.value or ""
                continue
            ref = var.value_from.secret_key_ref
            data = core.read_namespaced_secret(ref.name, RELEASE_NS).data or {}
            if ref.key in data:
                env[var.name] = base64.b64decode(data[ref.key]).decode()
            else:
                assert ref.optional, f"{var.name}: key {ref.key} missing from Secret {ref.name}"
        # A pod has its own ports; here they would collide with other tests'.
        env["WFCLOCK_METRICS_PORT"] = "0"
        env["WFCLOCK_HEALTH_PORT"] = str(free_port())
        if self.code is not None:
            env["PYTHONPATH"] = str(self.code / "operator")
        return env

    def start(self) -> OperatorPod:
        pod = client.AppsV1Api(self.admin).read_namespaced_deployment("wfclock", RELEASE_NS)
        spec = pod.spec.template.spec
        bindir = Path(sys.executable).parent
        for init in spec.init_containers or []:
            assert init.command == ["wfclock", "db", "upgrade"], init.command
            done = subprocess.run(
                [str(bindir / "wfclock"), "db", "upgrade"],
                env=self._env(init),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"init container {init.name}: {done.stderr}"
        (container,) = spec.containers
        assert container.command == ["python", "-m", "wfclock.controller"], container.command
        self.logs.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wfclock.controller"],
            env=self._env(container),
            stdout=self.logs.open("a"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _until_second(second: int) -> None:
    """Sleeps until the next time the clock shows `second` past a minute."""
    now = datetime.now(UTC)
    time.sleep((second - now.second - now.microsecond / 1e6) % 60)


def test_helm_upgrade_and_rollback_while_schedules_fire_start_one_run_per_fire(
    plane, postgres, previous_code, tmp_path
):
    assert tarfile.is_tarfile(PREVIOUS_CHART)
    url = postgres.create_database("chart_upgrade")
    admin = config.new_client_from_config(config_file=str(plane.kubeconfig))
    previous = ["--set", f"launcher.image={PREVIOUS_IMAGE}"]
    install_release(
        plane, admin, url, {"acme": "acme"}, *VALUES, *previous, chart=str(PREVIOUS_CHART)
    )
    kubeconfig = _token_client(plane, admin)
    runner = PodRunner(admin)
    runner.code_by_image[PREVIOUS_IMAGE] = previous_code
    runner.start()
    pod = OperatorPod(admin, kubeconfig, previous_code, tmp_path / "logs" / "1.log").start()
    histories: dict[uuid.UUID, list[Change]] = {}
    try:
        cluster = Cluster(admin, "acme")

        def apply(name, trigger):
            body = cluster.apply(name, trigger)
            histories[uuid.UUID(body["metadata"]["uid"])] = [
                Change(datetime.now(UTC), body["spec"])
            ]
            cluster.wait_status(name, lambda s: s.get("phase") == "Scheduled", timeout=60)

        # Recurring fires every minute throughout; one-time fires due in each gap of the
        # rollout (upgrade at :10, rollback at :10 a minute later).
        _until_second(40)
        start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        upgrade_at = start + timedelta(minutes=1, seconds=10)
        rollback_at = upgrade_at + timedelta(minutes=1)
        for name, zone in EVERY_MINUTE:
            apply(name, {"type": "recurring", "cron": "* * * * *", "timezone": zone})
        for name, due in (("in-upgrade", upgrade_at), ("in-rollback", rollback_at)):
            run_at = due + timedelta(seconds=8)
            apply(name, {"type": "schedule", "runAt": run_at.isoformat()})

        # The upgrade: the chart's objects change, then the Deployment's Recreate rollout.
        time.sleep(max(0, (upgrade_at - datetime.now(UTC)).total_seconds()))
        helm(plane, "upgrade", "wfclock", str(CHART), "-n", RELEASE_NS, *VALUES, "--wait=false")
        pod.stop()
        time.sleep(15)  # the new pod is scheduled, pulls, starts: the one-time fire is due
        pod = OperatorPod(admin, kubeconfig, None, tmp_path / "logs" / "2.log").start()
        assert _chart(admin) == f"wfclock-{CURRENT_VERSION}"  # the current chart's Deployment
        # The CRD now serves v1beta1 too: the schedules made under v1alpha1 read the same in it.
        assert _crd_versions(admin) == (["v1alpha1", "v1beta1"], ["v1alpha1"])
        for name in [n for n, _ in EVERY_MINUTE] + ["in-upgrade", "in-rollback"]:
            wait_until(lambda n=name: _same_in_both_versions(admin, n), 20, f"{name} in v1beta1")

        # The rollback to the previous revision, the same way.
        time.sleep(max(0, (rollback_at - datetime.now(UTC)).total_seconds()))
        helm(plane, "rollback", "wfclock", "1", "-n", RELEASE_NS, "--wait=false")
        pod.stop()
        time.sleep(15)
        pod = OperatorPod(admin, kubeconfig, previous_code, tmp_path / "logs" / "3.log").start()
        assert _chart(admin) == "wfclock-0.2.0"  # the previous chart's Deployment
        # The rollback's CRD (v1alpha1 only) applied: storage never left v1alpha1.
        assert _crd_versions(admin) == (["v1alpha1"], ["v1alpha1"])

        # One more minute's fires under the rolled-back operator, however long its start took
        # (waiting for the next :30 ended in the rollback's own minute when the start was quick).
        last_minute = rollback_at.replace(second=0) + timedelta(minutes=1)
        time.sleep(
            max(0, (last_minute + timedelta(seconds=30) - datetime.now(UTC)).total_seconds())
        )
        end = datetime.now(UTC)
        report = settle_and_account(url, histories, end, wait=20)
        # Every launcher pod of either release launched its fire: the previous release's on the
        # schema before 0005, and, after the rollback, on 0005. (Until the pods of the previous
        # release ran that release's launcher, they ran this checkout's, which needs 0005: every
        # fire before the upgrade failed (exit 2) and was left to the accounting sweep, which,
        # when an operator restart made it find two such fires of a schedule at once, launched
        # the later and recorded the earlier as superseded, the `latest` policy (`missedFires`
        # default): "expected 8, launched 6, skipped 2 (missed 2)". On a cluster the previous
        # release's Jobs run its own image, so no fire of this scenario may be missed.)
        failed = [
            (r.job, r.exit_code, r.output[-300:]) for r in runner.runs if r.phase != "Succeeded"
        ]
        assert not failed, failed
        # Every owed fire launched (none skipped): at least the four minutes from the first fire
        # to the last for each recurring schedule, and both one-time fires, each once.
        assert report.launched == report.expected and not report.skipped, report.line()
        assert report.expected >= 4 * len(EVERY_MINUTE) + 2, report.line()
        one_time = [r for r in list_runs(engine_for(url)) if r["trigger_type"] == "schedule"]
        assert len(one_time) == 2
    finally:
        pod.stop()
        runner.stop()
        history = helm(plane, "history", "wfclock", "-n", RELEASE_NS, check=False).stdout
        sys.__stderr__.write(f"\n{history}\n{_diagnosis(admin, url, runner)}\n")


def _chart(admin) -> str:
    deployment = client.AppsV1Api(admin).read_namespaced_deployment("wfclock", RELEASE_NS)
    return deployment.metadata.labels["helm.sh/chart"]


def _diagnosis(admin, url: str, runner: PodRunner) -> str:
    """What a failed accounting needs: every ledger row, the pods each fire's Job ran (exit code,
    last output), the namespace's Events."""
    lines = ["ledger:"]
    with engine_for(url).connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT s.name, f.scheduled_for, f.outcome, f.reason, f.source, f.attempts, "
            "f.first_delivered_at FROM workflow_schedule_fires f JOIN workflow_schedules s "
            "USING (schedule_id) ORDER BY f.scheduled_for, s.name"
        ).fetchall()
    lines += [f"  {tuple(str(v) for v in row)}" for row in rows]
    lines.append("pods:")
    for run in runner.runs:
        tail = run.output.strip().splitlines()[-1:] or [""]
        lines.append(f"  {run.job} {run.name} {run.phase} exit={run.exit_code} {tail[0][:300]}")
    lines.append("events:")
    events = client.CoreV1Api(admin).list_namespaced_event("acme").items
    for event in sorted(events, key=lambda e: str(e.last_timestamp or e.event_time or "")):
        when = event.last_timestamp or event.event_time
        what = f"{event.involved_object.kind}/{event.involved_object.name}"
        lines.append(f"  {when} {what} {event.reason}: {(event.message or '')[:200]}")
    return "\n".join(lines)


def _crd_versions(admin) -> tuple[list[str], list[str]]:
    """The versions the CRD serves and its status.storedVersions."""
    crd = client.ApiextensionsV1Api(admin).read_custom_resource_definition(
        "workflowschedules.wfclock.dev"
    )
    return [v.name for v in crd.spec.versions if v.served], crd.status.stored_versions


def _same_in_both_versions(admin, name: str) -> bool:
    """The object read in v1beta1 equals its v1alpha1 read but for apiVersion (read again when
    the operator wrote its status between the two reads)."""
    alpha, beta = (_schedule(admin, name, version) for version in ("v1alpha1", "v1beta1"))
    assert beta["apiVersion"] == "wfclock.dev/v1beta1"
    if beta["metadata"]["resourceVersion"] != alpha["metadata"]["resourceVersion"]:
        return False
    assert {**beta, "apiVersion": alpha["apiVersion"]} == alpha
    return True


def _schedule(admin, name: str, version: str) -> dict:
    return client.CustomObjectsApi(admin).get_namespaced_custom_object(
        "wfclock.dev", version, "acme", "workflowschedules", name
    )
