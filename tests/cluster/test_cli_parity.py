"""`wfclock validate` refuses each invalid example with the message the operator gives."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))


def validate(python_env, path):
    return subprocess.run(
        ["wfclock", "validate", str(path)],
        env=python_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_validate_gives_the_operators_message(start_operator, cluster, python_env, example):
    start_operator()
    out = validate(python_env, example)
    assert out.returncode == 1, out
    line = out.stdout.strip().splitlines()[0]
    doc = yaml.safe_load(example.read_text())
    name = doc["metadata"]["name"]
    assert line.startswith(f"WorkflowSchedule/{name}: spec.")
    cli_message = line.split(": ", 1)[1]
    try:
        cluster.objects.create_namespaced_custom_object(
            "wfclock.dev", "v1alpha1", cluster.namespace, "workflowschedules", doc
        )
    except ApiException as exc:
        # Refused by the API server's schema before any operator sees it: the CLI refuses too.
        assert exc.status == 422
        return
    status = cluster.wait_status(name, lambda s: s.get("phase") == "Invalid")
    assert status["conditions"][0]["message"] == cli_message


def test_validate_accepts_the_gitops_examples(python_env):
    out = validate(python_env, ROOT / "examples" / "gitops" / "schedules.yaml")
    assert out.returncode == 0 and out.stdout.count(": valid") == 3
