"""Day two in the chart: NetworkPolicies (opt-in) that keep the operator and the launcher pods to
the traffic they need, the PodDisruptionBudget's eviction policy, finished Jobs' retention, and
settings whose names no secret-in-environment check mistakes for a secret.

The local node's network plugin (a bridge) does not enforce NetworkPolicies, so the policies are
checked as rendered, against the labels the Deployment and the builders really put on the pods,
and accepted by the real API server (server-side dry run)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from wfclock.core.builders import build_cronjob, build_one_time_job
from wfclock.settings import Settings

from ..unit._schedules import schedule
from .test_chart import CHART, RELEASE_NS, helm

DATABASE = [{"ipBlock": {"cidr": "10.96.12.7/32"}}]
ENABLED = [
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "networkPolicy.database.to[0].ipBlock.cidr=10.96.12.7/32",
]


@pytest.fixture(scope="module")
def tools():
    from .test_chart import Binaries

    return Binaries()


def render(tools, *args, namespace=RELEASE_NS, check=True):
    done = helm(tools, "template", "wfclock", str(CHART), "-n", namespace, *args, check=check)
    return [d for d in yaml.safe_load_all(done.stdout) if d] if check else done


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def _ports(rule: dict) -> set:
    return {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports") or []}


def test_no_network_policy_unless_enabled(tools):
    assert not [d for d in render(tools) if d["kind"] == "NetworkPolicy"]


def test_operator_policy_allows_dns_api_server_postgres_out_and_only_metrics_health_in(tools):
    documents = render(tools, *ENABLED, "--set", "watchNamespaces={acme}")
    policies = {d["metadata"]["name"]: d for d in documents if d["kind"] == "NetworkPolicy"}
    operator = policies["wfclock-operator"]["spec"]
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _selects(operator["podSelector"], pod_labels)
    assert sorted(operator["policyTypes"]) == ["Egress", "Ingress"]
    container_ports = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    ingress_ports = set().union(*(_ports(rule) for rule in operator["ingress"]))
    assert ingress_ports == {("metrics", "TCP"), ("health", "TCP")} and container_ports == {
        "metrics",
        "health",
    }
    dns, api_server, database = operator["egress"]
    assert _ports(dns) == {(53, "UDP"), (53, "TCP")}
    assert _ports(api_server) == {(443, "TCP"), (6443, "TCP")}
    assert database == {"to": DATABASE, "ports": [{"port": 5432, "protocol": "TCP"}]}


def test_launcher_policy_covers_the_builders_pods_with_no_ingress_and_postgres_only(tools):
    documents = render(tools, *ENABLED, "--set", "watchNamespaces={acme,globex}")
    launchers = [
        d
        for d in documents
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "wfclock-launcher"
    ]
    assert [p["metadata"]["namespace"] for p in launchers] == ["acme", "globex"]
    now = datetime(2026, 11, 25, tzinfo=UTC)
    settings = Settings()
    one_time = build_one_time_job(
        schedule({"type": "schedule", "runAt": "2026-12-01T09:00:00Z"}, now), settings
    )
    cronjob = build_cronjob(
        schedule({"type": "recurring", "cron": "0 * * * *", "timezone": "UTC"}, now), settings
    )
    pods = [
        one_time["spec"]["template"]["metadata"]["labels"],
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"],
    ]
    for policy in launchers:
        spec = policy["spec"]
        assert all(_selects(spec["podSelector"], labels) for labels in pods)
        assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"] and spec["ingress"] == []
        dns, database = spec["egress"]
        assert _ports(dns) == {(53, "UDP"), (53, "TCP")}
        assert database["to"] == DATABASE and _ports(database) == {(5432, "TCP")}
    operator_pod = {"app.kubernetes.io/component": "operator", "app.kubernetes.io/name": "wfclock"}
    assert not _selects(launchers[0]["spec"]["podSelector"], operator_pod)


@pytest.mark.parametrize(
    "args, field",
    [
        (
            ["--set", "networkPolicy.enabled=true", "--set", "watchNamespaces={acme}"],
            "networkPolicy.database.to",
        ),
        (ENABLED, "networkPolicy.launcherNamespaces"),
    ],
    ids=["without-database-address", "without-launcher-namespaces"],
)
def test_enabled_policies_without_what_they_need_are_refused_naming_the_value(tools, args, field):
    done = render(tools, *args, check=False)
    assert done.returncode != 0 and f"{field}:" in done.stderr


def test_the_rendered_policies_are_accepted_by_the_api_server(tools, control_plane, namespace):
    documents = render(
        tools,
        *ENABLED,
        "--set",
        f"networkPolicy.launcherNamespaces={{{namespace}}}",
        "--set",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
        namespace=namespace,
    )
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    assert len(policies) == 2
    out = control_plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(policies)
    )
    assert out.count("created (server dry run)") == 2, out


def test_pdb_lets_an_unhealthy_pod_be_evicted(tools):
    (pdb,) = [
        d
        for d in render(tools, "--set", "podDisruptionBudget.enabled=true")
        if d["kind"] == "PodDisruptionBudget"
    ]
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["maxUnavailable"] == 1


def _operator_env(documents) -> dict:
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    return {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_no_plain_setting_is_named_like_a_secret(tools):
    for args in ([], ["--set", "database.tenantLogins=false"]):
        env = _operator_env(render(tools, *args))
        named_secret = [n for n, e in env.items() if "SECRET" in n.upper() and "value" in e]
        assert named_secret == []
    env = _operator_env(render(tools, "--set", "database.tenantLogins=false"))
    assert env["WFCLOCK_DATABASE_CREDENTIALS_NAME"]["value"] == "wfclock-database"
    assert env["WFCLOCK_DATABASE_CREDENTIALS_KEY"]["value"] == "url"
    assert env["WFCLOCK_DATABASE_CREDENTIALS_SOURCE"]["value"] == f"{RELEASE_NS}/wfclock-database"


def test_finished_job_retention_is_a_value_and_a_negative_one_is_refused(tools):
    env = _operator_env(render(tools))
    assert env["WFCLOCK_LAUNCHER_TTL_SECONDS_AFTER_FINISHED"]["value"] == "86400"
    env = _operator_env(render(tools, "--set", "launcher.ttlSecondsAfterFinished=600"))
    assert env["WFCLOCK_LAUNCHER_TTL_SECONDS_AFTER_FINISHED"]["value"] == "600"
    done = render(tools, "--set", "launcher.ttlSecondsAfterFinished=-1", check=False)
    assert done.returncode != 0 and "ttlSecondsAfterFinished" in done.stderr
