"""The Helm chart: lint and template, and installed into its own real control plane, the
operator running with the chart's ServiceAccount token proves RBAC is enough and no more."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from wfclock.db.store import engine_for, list_runs
from wfclock_devstack.podrunner import PodRunner
from wfclock_devstack.processes import wait_until

from .conftest import CRD, WORKFLOW, Cluster, Operator

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wfclock"
RELEASE_NS = "wfclock-system"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))


def helm(plane_or_bin, *args, check=True):
    binary = plane_or_bin.bin / "helm"
    kubeconfig = getattr(plane_or_bin, "kubeconfig", None)
    argv = [str(binary), *args] + ([f"--kubeconfig={kubeconfig}"] if kubeconfig else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    if check:
        assert done.returncode == 0, done.stderr
    return done


class Binaries:
    def __init__(self):
        from wfclock_devstack.controlplane import binaries

        self.bin = binaries()


@pytest.fixture(scope="module")
def tools():
    return Binaries()


@pytest.mark.parametrize(
    "values", [None, *CI_VALUES], ids=["defaults", *[v.stem for v in CI_VALUES]]
)
def test_chart_lints_strictly_and_renders(tools, values):
    extra = ["-f", str(values)] if values else []
    helm(tools, "lint", "--strict", str(CHART), *extra)
    rendered = helm(tools, "template", "wfclock", str(CHART), "-n", RELEASE_NS, *extra).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(rendered) if d]
    assert "Deployment" in kinds and "ServiceAccount" in kinds


def test_chart_renders_the_crd_from_crds_without_a_copy(tools):
    rendered = helm(
        tools, "template", "wfclock", str(CHART), "--show-only", "templates/crds.yaml"
    ).stdout
    chart_crds = [d for d in yaml.safe_load_all(rendered) if d]
    sources = [CRD, CRD.with_name("wfclock.dev_workflowcalendars.yaml")]
    assert len(chart_crds) == len(sources)
    for chart_crd, path in zip(chart_crds, sources, strict=True):
        source = yaml.safe_load(path.read_text())
        assert (
            chart_crd["spec"] == source["spec"]
            and chart_crd["metadata"]["name"] == source["metadata"]["name"]
        )
        assert chart_crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert (CHART / "crds-source" / path.name).resolve() == path.resolve()
    off = helm(tools, "template", "wfclock", str(CHART), "--set", "crds.enabled=false").stdout
    assert "CustomResourceDefinition" not in off


def test_chart_renders_the_finalizer_policy_from_deploy_where_the_cluster_serves_it(tools):
    source = list(
        yaml.safe_load_all((ROOT / "deploy" / "admission" / "finalizer-policy.yaml").read_text())
    )
    serves = ["--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"]

    def policies(*args):
        out = helm(tools, "template", "wfclock", str(CHART), "-n", RELEASE_NS, *args).stdout
        return [d for d in yaml.safe_load_all(out) if d and d["kind"].startswith("Mutating")]

    rendered = policies(*serves)
    assert [d["kind"] for d in rendered] == [d["kind"] for d in source]
    for got, want in zip(rendered, source, strict=True):
        assert got["metadata"]["name"] == "wfclock-finalizer"
        assert got["metadata"]["labels"]["app.kubernetes.io/instance"] == "wfclock"
        assert got["spec"] == want["spec"]  # the same policy, only named for the release
    assert policies() == []  # a cluster before Kubernetes 1.36
    assert policies(*serves, "--set", "finalizerPolicy.enabled=false") == []


def test_strict_values_schema_refuses_unknown_and_wrong_values(tools):
    for bad in (
        ["--set", "edition=free"],
        ["--set", "nope=1"],
        ["--set", "minimumIntervalMinutes=0"],
    ):
        done = helm(tools, "template", "wfclock", str(CHART), *bad, check=False)
        assert (
            done.returncode != 0
            and "values don't meet the specifications of the schema" in done.stderr
        )


@pytest.mark.parametrize(
    "args, kind, namespaces",
    [
        ([], "ClusterKopfPeering", [None]),
        (["--set", "watchNamespaces={acme,globex}"], "KopfPeering", ["acme", "globex"]),
    ],
)
def test_standby_renders_the_peering_object_the_operators_name(tools, args, kind, namespaces):
    out = helm(
        tools,
        "template",
        "wfclock",
        str(CHART),
        "-n",
        RELEASE_NS,
        "--set",
        "standby.enabled=true",
        *args,
    ).stdout
    documents = [d for d in yaml.safe_load_all(out) if d]
    peerings = [d for d in documents if d["kind"] == kind]
    assert [p["metadata"].get("namespace") for p in peerings] == namespaces
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert len(deployments) == 2  # the active operator and the standby
    for deployment in deployments:
        env = {
            e["name"]: e.get("value")
            for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert {p["metadata"]["name"] for p in peerings} == {env["WFCLOCK_PEERING"]}
    crds = list(yaml.safe_load_all((CHART / "crds" / "kopf-peerings.yaml").read_text()))
    assert {c["spec"]["names"]["kind"] for c in crds} == {"ClusterKopfPeering", "KopfPeering"}


def test_chart_passes_the_ledger_retention_and_refuses_one_too_short(tools):
    def operator_env(*args):
        out = helm(tools, "template", "wfclock", str(CHART), "-n", RELEASE_NS, *args).stdout
        (deployment,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert operator_env()["WFCLOCK_LEDGER_RETENTION_DAYS"] == "90"
    assert operator_env("--set", "ledger.retentionDays=0")["WFCLOCK_LEDGER_RETENTION_DAYS"] == "0"
    for short in ("7", "-1"):
        done = helm(
            tools,
            "template",
            "wfclock",
            str(CHART),
            "--set",
            f"ledger.retentionDays={short}",
            check=False,
        )
        assert done.returncode != 0 and "retentionDays" in done.stderr


# --- installed ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def admin(plane):
    return config.new_client_from_config(config_file=str(plane.kubeconfig))


def install_release(
    plane, admin, url: str, tenants: dict[str, str], *values: str, chart: str = str(CHART)
) -> None:
    """The release namespace with the database Secret, tenant namespaces, and the chart (this
    checkout's, or a packaged one) installed with `values` (--set pairs), ready for schedules."""
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": RELEASE_NS}})
    core.create_namespaced_secret(
        RELEASE_NS,
        {
            "metadata": {"name": "wfclock-database"},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        },
    )
    for name, tenant in tenants.items():
        core.create_namespace(
            {"metadata": {"name": name, "labels": {"wfclock.dev/tenant": tenant}}}
        )
    helm(plane, "install", "wfclock", chart, "-n", RELEASE_NS, *values, "--wait=false")
    plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/workflowschedules.wfclock.dev"
    )
    first = next(iter(tenants))
    plane.wait_schedules_admitted(first, tenants[first])  # the chart's finalizer policy applies
    plane.start_controller_manager()  # GC and role aggregation see the new kinds and roles


@pytest.fixture(scope="module")
def installed(plane, admin, postgres):
    url = postgres.create_database("chart_e2e")
    from wfclock.db.migrate import upgrade

    upgrade(url)
    install_release(
        plane, admin, url, {"acme": "acme", "globex": "globex"}, "--set", "minimumIntervalMinutes=1"
    )
    client.CoreV1Api(admin).create_namespaced_secret(
        "globex", {"metadata": {"name": "payroll"}, "stringData": {"k": "v"}}
    )
    return url


def _token_client(plane, admin) -> client.ApiClient:
    token = (
        client.CoreV1Api(admin)
        .create_namespaced_service_account_token(
            "wfclock", RELEASE_NS, {"spec": {"expirationSeconds": 3600}}
        )
        .status.token
    )
    kubeconfig = plane.root / "operator-token.kubeconfig"
    server = plane.url
    ca = base64.b64encode(plane.files["ca.crt"].read_bytes()).decode()
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "sa",
                "clusters": [
                    {"name": "c", "cluster": {"server": server, "certificate-authority-data": ca}}
                ],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa"}}],
            }
        )
    )
    return kubeconfig


def test_install_establishes_crds_and_rbac(plane, admin, installed):
    out = plane.kubectl("get", "crd", "workflowschedules.wfclock.dev", "-o", "json")
    conditions = {c["type"]: c["status"] for c in json.loads(out)["status"]["conditions"]}
    assert conditions["Established"] == "True"
    rbac = client.RbacAuthorizationV1Api(admin)
    roles = {r.metadata.name for r in rbac.list_cluster_role().items}
    assert {"wfclock", "wfclock-namespaces", "wfclock-edit", "wfclock-view"} <= roles
    assert "wfclock" in {b.metadata.name for b in rbac.list_cluster_role_binding().items}
    assert client.CoreV1Api(admin).read_namespaced_service_account("wfclock", RELEASE_NS)
    deployment = client.AppsV1Api(admin).read_namespaced_deployment("wfclock", RELEASE_NS)
    pod = deployment.spec.template.spec
    assert deployment.spec.strategy.type == "Recreate"
    assert (
        pod.security_context.run_as_non_root
        and pod.containers[0].security_context.read_only_root_filesystem
    )
    policies = plane.kubectl("get", "validatingadmissionpolicies", "-o", "name")
    assert "wfclock-tenant" in policies
    mutating = plane.kubectl(
        "get", "mutatingadmissionpolicies,mutatingadmissionpolicybindings", "-o", "name"
    )
    assert mutating.split() == [
        "mutatingadmissionpolicy.admissionregistration.k8s.io/wfclock-finalizer",
        "mutatingadmissionpolicybinding.admissionregistration.k8s.io/wfclock-finalizer",
    ]


def test_operator_with_the_charts_token_runs_the_core_scenario(
    plane, admin, installed, monkeypatch
):
    kubeconfig = _token_client(plane, admin)
    env = {
        "WFCLOCK_DATABASE_URL": installed,
        "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "1",
        "WFCLOCK_METRICS_PORT": "0",
        "WFCLOCK_DATABASE_SECRET_SOURCE": f"{RELEASE_NS}/wfclock-database",
    }
    operator = Operator(plane, "acme", env)
    operator.control_plane = type("P", (), {"kubeconfig": kubeconfig})()
    runner = PodRunner(config.new_client_from_config(config_file=str(plane.kubeconfig))).start()
    operator.start()
    try:
        cluster = Cluster(admin, "acme")
        cluster.apply("recurring", {"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"})
        cluster.apply(
            "once",
            {"type": "schedule", "runAt": (datetime.now(UTC) + timedelta(seconds=5)).isoformat()},
        )
        cluster.wait_status("recurring", lambda s: s.get("phase") == "Scheduled")
        assert len(cluster.cronjobs()) == 1
        assert client.CoreV1Api(admin).read_namespaced_secret("wfclock-database", "acme")
        cluster.wait_status("once", lambda s: s.get("phase") == "Completed", timeout=60)
        assert [r["trigger_type"] for r in list_runs(engine_for(installed))] == ["schedule"]
        cluster.delete("recurring")
        wait_until(lambda: cluster.cronjobs() == [], 30, "the CronJob to go")
    finally:
        operator.stop()
        runner.stop()


def test_the_charts_token_cannot_do_more_than_it_needs(plane, admin, installed):
    api = config.new_client_from_config(config_file=str(_token_client(plane, admin)))
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    forbidden = [
        lambda: core.read_namespaced_secret("payroll", "globex"),
        lambda: core.list_namespaced_secret("globex"),
        lambda: core.list_namespaced_secret(RELEASE_NS),
        lambda: core.delete_namespaced_config_map("kube-root-ca.crt", "acme"),
        lambda: apps.list_namespaced_deployment(RELEASE_NS),
        lambda: core.create_namespaced_pod(
            "acme",
            {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}},
        ),
    ]
    for attempt in forbidden:
        with pytest.raises(ApiException) as refused:
            attempt()
        assert refused.value.status == 403
    assert core.read_namespaced_secret("wfclock-database", RELEASE_NS).data["url"]
    # It reads pods (why a fire's pod cannot start; a 403 would raise), and does no more.
    assert all(p.metadata.namespace == "acme" for p in core.list_namespaced_pod("acme").items)
    with pytest.raises(ApiException) as refused:
        core.delete_collection_namespaced_pod("acme")
    assert refused.value.status == 403


def _schedule(tenant):
    return {
        "apiVersion": "wfclock.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"generateName": "policy-"},
        "spec": {
            "tenant": tenant,
            "workflowId": WORKFLOW,
            "workflowVersion": 1,
            "trigger": {"type": "recurring", "cron": "0 9 * * *", "timezone": "UTC"},
        },
    }


def test_admission_policy_refuses_a_mismatched_tenant_with_a_clear_message(admin, installed):
    objects = client.CustomObjectsApi(admin)

    def create(tenant):
        return objects.create_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", "acme", "workflowschedules", _schedule(tenant)
        )

    with pytest.raises(ApiException) as refused:
        wait_until(lambda: _refused(objects, create, "globex"), 30, "the policy to be active")
        create("globex")
    body = json.loads(refused.value.body)
    assert refused.value.status in (403, 422)
    assert (
        'spec.tenant "globex" does not match the wfclock.dev/tenant label of namespace "acme" ("acme")'
        in body["message"]
    )
    assert create("acme")["spec"]["tenant"] == "acme"


def _refused(objects, create, tenant) -> bool:
    """True once the policy refuses; an object admitted before it was active is removed."""
    try:
        created = create(tenant)
    except ApiException as exc:
        return exc.status in (403, 422)
    objects.delete_namespaced_custom_object(
        "wfclock.dev", "v1alpha1", "acme", "workflowschedules", created["metadata"]["name"]
    )
    return False


def test_view_can_list_but_not_create_and_edit_can_create(plane, admin, installed):
    rbac = client.RbacAuthorizationV1Api(admin)
    for user, role in (("viewer", "view"), ("editor", "edit")):
        rbac.create_namespaced_role_binding(
            "acme",
            {
                "metadata": {"name": f"{user}-{role}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )

    def can(user, verb):
        out = plane.kubectl(
            "auth",
            "can-i",
            verb,
            "workflowschedules.wfclock.dev",
            "-n",
            "acme",
            f"--as={user}",
            check=False,
        )
        return out.strip().splitlines()[0] == "yes"

    wait_until(lambda: can("editor", "create"), 60, "role aggregation into edit")
    assert can("viewer", "list") and not can("viewer", "create") and not can("viewer", "delete")
    created = plane.kubectl(
        "create", "-n", "acme", "--as=editor", "-f", "-", input=yaml.safe_dump(_schedule("acme"))
    )
    assert "created" in created
    refused = plane.kubectl(
        "create",
        "-n",
        "acme",
        "--as=viewer",
        "-f",
        "-",
        input=yaml.safe_dump(_schedule("acme")),
        check=False,
    )
    assert "forbidden" in refused.lower()
    assert "policy-" in plane.kubectl("get", "wfs", "-n", "acme", "--as=viewer")


def test_kubectl_shows_printer_columns_and_explains_the_trigger(plane, installed):
    plane.kubectl(
        "apply",
        "-n",
        "acme",
        "-f",
        "-",
        input=yaml.safe_dump({**_schedule("acme"), "metadata": {"name": "columns"}}),
    )
    header = plane.kubectl("get", "wfs", "-n", "acme").splitlines()[0].split()
    assert header[:3] == ["NAME", "TYPE", "SCHEDULE"]
    for column in ("TIMEZONE", "PAUSED", "NEXT", "LAST", "PHASE", "AGE"):
        assert column in header
    explained = plane.kubectl("explain", "workflowschedule.spec.trigger")
    for field in ("cron", "runAt", "timezone", "type"):
        assert field in explained
    assert "Exactly 5 fields" in explained and "IANA time zone" in explained


def test_api_server_address_is_passed_only_when_set(tools):
    def operator_env(*args):
        out = helm(tools, "template", "wfclock", str(CHART), "-n", RELEASE_NS, *args).stdout
        (deployment,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert "KUBERNETES_SERVICE_HOST" not in operator_env()  # the kubelet's, from the Service
    env = operator_env("--set", "apiServer.host=10.213.0.1", "--set", "apiServer.port=6443")
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == (
        "10.213.0.1",
        "6443",
    )
    for bad in (["--set", "apiServer.host=https://x"], ["--set", "apiServer.port=0"]):
        done = helm(tools, "template", "wfclock", str(CHART), *bad, check=False)
        assert done.returncode != 0 and "apiServer" in done.stderr


def test_chart_moves_the_crd_storage_version_only_when_asked(tools):
    def storage(*extra):
        rendered = helm(
            tools, "template", "wfclock", str(CHART), "--show-only", "templates/crds.yaml", *extra
        ).stdout
        crds = {d["metadata"]["name"]: d for d in yaml.safe_load_all(rendered) if d}
        # The calendars' CRD has one version, stored whatever the value says.
        (calendar,) = crds["workflowcalendars.wfclock.dev"]["spec"]["versions"]
        assert calendar["storage"] is True
        schedules = crds["workflowschedules.wfclock.dev"]
        return [v["name"] for v in schedules["spec"]["versions"] if v["storage"]]

    assert storage() == ["v1alpha1"]  # a rollback to a chart without v1beta1 still applies
    assert storage("--set", "crds.storageVersion=v1beta1") == ["v1beta1"]
    refused = helm(
        tools, "template", "wfclock", str(CHART), "--set", "crds.storageVersion=v2", check=False
    )
    assert refused.returncode != 0 and "storageVersion" in refused.stderr
