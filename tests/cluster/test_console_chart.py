"""The chart's console (off by default) and Grafana dashboard, rendered by Helm."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.console.conftest import CONSOLE_RULES

from .test_chart import CHART, RELEASE_NS, Binaries, helm


@pytest.fixture(scope="module")
def tools():
    return Binaries()


def render(tools, *args) -> list[dict]:
    out = helm(tools, "template", "wfclock", str(CHART), "-n", RELEASE_NS, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def named(docs, kind, name):
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_the_console_and_dashboard_are_off_by_default(tools):
    docs = render(tools)
    assert not [d for d in docs if "console" in d["metadata"]["name"]]
    assert not [d for d in docs if d["kind"] == "ConfigMap"]


def test_the_consoles_own_login_may_only_review_tokens_and_access(tools):
    docs = render(tools, "--set", "console.enabled=true")
    role = named(docs, "ClusterRole", "wfclock-console")
    assert role["rules"] == CONSOLE_RULES
    binding = named(docs, "ClusterRoleBinding", "wfclock-console")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "wfclock-console", "namespace": RELEASE_NS}
    ]
    pod = named(docs, "Deployment", "wfclock-console")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "wfclock-console"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "wfclock.console"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["WFCLOCK_CONSOLE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "wfclock-console-database",
        "key": "url",
    }
    assert env["WFCLOCK_CONSOLE_SECURE_COOKIES"]["value"] == "false"
    assert "WFCLOCK_CONSOLE_TLS_CERT_FILE" not in env
    assert not [d for d in docs if d["kind"] == "Ingress"]
    operator = named(docs, "Deployment", "wfclock")["spec"]["template"]["spec"]
    assert [c["name"] for c in operator["initContainers"]] == ["migrate"]


def test_with_a_certificate_the_console_serves_https_behind_an_ingress(tools):
    docs = render(tools, "-f", str(CHART / "ci" / "console-values.yaml"))
    pod = named(docs, "Deployment", "wfclock-console")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["WFCLOCK_CONSOLE_TLS_CERT_FILE"] == "/tls/tls.crt"
    assert env["WFCLOCK_CONSOLE_SECURE_COOKIES"] == "true"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert {"name": "tls", "secret": {"secretName": "wfclock-console-tls"}} in pod["volumes"]
    ingress = named(docs, "Ingress", "wfclock-console")
    assert ingress["spec"]["tls"] == [
        {"hosts": ["wfclock.example.com"], "secretName": "wfclock-console-tls"}
    ]
    # The read-only login is made by the migrate step, with the operator's database user.
    operator = named(docs, "Deployment", "wfclock")["spec"]["template"]["spec"]
    role = operator["initContainers"][1]
    assert role["command"] == ["wfclock", "db", "console-role", "wfclock_console"]
    dashboard = named(docs, "ConfigMap", "wfclock-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "wfclock.json").read_text())
    assert json.loads(dashboard["data"]["wfclock.json"]) == shipped


def test_the_schema_refuses_a_second_console_replica_and_a_bad_login(tools):
    for bad in (["--set", "console.replicas=2"], ["--set", "console.database.login=Bad-Name"]):
        done = helm(tools, "template", "wfclock", str(CHART), *bad, check=False)
        assert done.returncode != 0
        assert "values don't meet the specifications of the schema" in done.stderr
