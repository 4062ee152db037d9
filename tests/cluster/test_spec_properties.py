"""Bad input at volume (Hypothesis): generated WorkflowSchedule specs, valid and invalid, get one
verdict three ways: the CRD's schema and CEL rules on the real API server (a server-side dry-run
create with strict field validation, as kubectl sends it), the operator's validation
(`validate_spec`, whose message is the Ready condition it sets; a sample is also created for
real and the running operator's condition compared), and `wfclock validate`. A spec is valid when
the API server and the operator both accept it, and then the CLI says valid; every refusal, by
any of the three, names the field."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.rest import ApiException
from wfclock.core.model import Rules, SpecError, validate_spec

from .conftest import WORKFLOW

NOW = datetime.now(UTC).replace(microsecond=0)
RULES = Rules(now=NOW, edition="enterprise", minimum_interval=timedelta(minutes=5))
MISSING = object()

# Values each field may take that the contract refuses, by the field's path under spec.
BAD = {
    "tenant": ["Acme", "", "-acme", "a" * 64, 7, MISSING],
    "workflowId": ["not-a-uuid", WORKFLOW.replace("-", ""), "{" + WORKFLOW + "}", 42, MISSING],
    "workflowVersion": [0, -1, "1", 1.5, True, MISSING],
    "trigger.type": ["weekly", "", "Recurring", MISSING],
    "paused": ["yes", 1, "true"],
    "payloadSchemaMode": ["latest", ""],
    "startingDeadlineSeconds": [5, 86401, "300", 300.5],
    "missedFires": ["all", "Latest"],
    "catchUpWindowSeconds": [59, 604801],
    "successfulJobsHistoryLimit": [-1, 101],
    "failedJobsHistoryLimit": [-1, 101],
    "backoffLimit": [-1, 21, "6"],
    "schedule": ["*/5 * * * *"],  # not a field of the spec
    "trigger.every": ["5m"],  # not a field of the trigger
}
BAD_RECURRING = {
    "trigger.cron": [
        "* * * * *",  # more often than the minimum interval
        "0 9 * * MON",
        "0 0 9 * * *",
        "61 * * * *",
        "*/5 * * *",
        "@daily",
        "0 9 31 2 *",
        MISSING,
    ],
    "trigger.timezone": ["Mars/Olympus", "", "Europe/Berlin ", "a" * 65, MISSING],
    "trigger.runAt": ["2027-01-01T09:00:00Z"],
    "trigger.calendars": [["Holidays"], "de", [""]],
    "trigger.activeFrom": ["tomorrow", "2031-01-01T09:00:00", "2031-01-01 09:00:00Z"],
    "trigger.activeUntil": ["2031-13-01T00:00:00Z", 20310101],
    "trigger.maxFires": [0, "3", 1.5, 1_000_001],
    "trigger.jitter": ["", "5x", "1d", "90"],
}
BAD_ONE_TIME = {
    "trigger.runAt": [
        "2020-01-01T00:00:00Z",  # in the past
        "tomorrow",
        "2031-01-01T09:00:00",
        "2031-01-01 09:00:00Z",
        "20310101T090000Z",
        "2031-01-01T09:00Z",
        "2031-13-01T00:00:00Z",
        MISSING,
    ],
    "trigger.timezone": ["Mars/Olympus"],
    "trigger.cron": ["0 9 * * *"],
    "trigger.maxFires": [3],
    "trigger.calendars": [["holidays"]],
    "trigger.jitter": ["5m"],
}

ZONES = ["UTC", "Europe/Berlin", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe"]
CRONS = ["*/5 * * * *", "0 9 * * 1-5", "30 2 1 * *", "0 */6 * * *", "15,45 8-18 * * *"]


@st.composite
def specs(draw) -> tuple[dict, set[str]]:
    """A spec and the fields made invalid (none: a valid spec)."""
    recurring = draw(st.booleans())
    if recurring:
        trigger = {
            "type": "recurring",
            "cron": draw(st.sampled_from(CRONS)),
            "timezone": draw(st.sampled_from(ZONES)),
        }
    else:
        at = NOW + timedelta(minutes=draw(st.integers(60, 500_000)))
        offset = draw(st.sampled_from(["Z", "+01:00", "-05:30", "+00:00"]))
        local = at.astimezone(datetime.fromisoformat(f"2000-01-01T00:00:00{offset}").tzinfo)
        trigger = {"type": "schedule", "runAt": local.strftime("%Y-%m-%dT%H:%M:%S") + offset}
        if draw(st.booleans()):
            trigger["timezone"] = draw(st.sampled_from(ZONES))
    spec: dict = {
        "tenant": "acme",
        "workflowId": draw(st.sampled_from([WORKFLOW, WORKFLOW.upper(), str(uuid.uuid4())])),
        "workflowVersion": draw(st.integers(1, 10_000)),
        "trigger": trigger,
    }
    optional = {
        "paused": st.booleans(),
        "missedFires": st.sampled_from(["latest", "skip", "catchUp"]),
        "startingDeadlineSeconds": st.integers(10, 86400),
        "catchUpWindowSeconds": st.integers(60, 604800),
        "backoffLimit": st.integers(0, 20),
        "successfulJobsHistoryLimit": st.integers(0, 100),
        "payloadSchemaMode": st.just("pinned"),
    }
    for name, values in optional.items():
        if draw(st.booleans()):
            spec[name] = draw(values)
    of_trigger = BAD_RECURRING if recurring else BAD_ONE_TIME
    bad = {**BAD, **of_trigger}
    # Which fields go wrong, and how, drawn evenly (Hypothesis favours the first of a list); the
    # trigger's fields, which only the operator checks fully, three times as often.
    rng = random.Random(draw(st.integers(0, 2**32)))
    fields = sorted(BAD) + sorted(of_trigger) * 3
    corrupted = set(rng.sample(fields, rng.choice([0, 0, 1, 1, 2])))
    for path in sorted(corrupted):
        value = rng.choice(bad[path])
        parent, _, leaf = path.rpartition(".")
        target = spec["trigger"] if parent == "trigger" else spec
        if value is MISSING:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return spec, corrupted


@dataclass
class Verdict:
    spec: dict
    corrupted: set[str]
    server: list[str]  # the API server's refusals ([] accepted)
    operator: list[str]  # validate_spec's problems ([] accepted)
    condition: str | None  # the Ready condition's message the operator sets when it refuses


def server_refusals(cluster, name: str, spec: dict) -> list[str]:
    body = {
        "apiVersion": "wfclock.dev/v1alpha1",
        "kind": "WorkflowSchedule",
        "metadata": {"name": name},
        "spec": spec,
    }
    try:
        cluster.objects.create_namespaced_custom_object(
            "wfclock.dev",
            "v1alpha1",
            cluster.namespace,
            "workflowschedules",
            body,
            dry_run="All",
            field_validation="Strict",
        )
    except ApiException as exc:
        assert exc.status in (400, 422), exc
        status = json.loads(exc.body)
        causes = (status.get("details") or {}).get("causes") or []
        # "some validation rules were not checked" comes with the refusals it speaks of
        named = [f"{c['field']}: {c.get('message', '')}" for c in causes if c.get("field")]
        return named or [status["message"]]
    return []


def names_the_field(refusal: str, corrupted: set[str]) -> bool:
    """The refusal names a field that was made invalid (its path, or for a rule of the trigger
    as a whole, the trigger and the field's own name)."""
    return any(path.rpartition(".")[2] in refusal for path in corrupted)


def test_generated_specs_get_one_verdict_from_the_api_server_the_operator_and_the_cli(
    start_operator, cluster, python_env, tmp_path
):
    verdicts: dict[str, Verdict] = {}
    counter = itertools.count()

    @settings(
        max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @given(specs())
    def check(generated):
        spec, corrupted = generated
        name = f"p{next(counter)}"
        server = server_refusals(cluster, name, spec)
        try:
            validate_spec(spec, RULES)
            operator, condition = [], None
        except SpecError as exc:
            operator, condition = [str(p) for p in exc.problems], str(exc)
        verdicts[name] = Verdict(spec, corrupted, server, operator, condition)
        for refusal in operator:
            assert refusal.startswith("spec"), f"{refusal!r} names no field of {spec}"
        for refusals in (server, operator):
            assert not refusals or names_the_field(" ".join(refusals), corrupted), (
                f"{refusals} name none of {corrupted}: {spec}"
            )
        if not corrupted:
            assert server == [] and operator == [], (spec, server, operator)
        # What the API server refuses, the operator refuses too: the CLI, which runs the
        # operator's validation offline, never calls valid what the cluster refuses.
        assert not server or operator, f"only the API server refuses {spec}: {server}"

    check()

    manifests = tmp_path / "generated.yaml"
    manifests.write_text(
        yaml.safe_dump_all(
            {"apiVersion": "wfclock.dev/v1alpha1", "kind": "WorkflowSchedule"}
            | {"metadata": {"name": name}, "spec": v.spec}
            for name, v in verdicts.items()
        )
    )
    out = subprocess.run(
        ["wfclock", "validate", str(manifests), "--now", NOW.isoformat()],
        env={
            **python_env,
            "WFCLOCK_EDITION": "enterprise",
            "WFCLOCK_MINIMUM_INTERVAL_MINUTES": "5",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    cli: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        kind_name, _, said = line.partition(": ")
        cli.setdefault(kind_name.removeprefix("WorkflowSchedule/"), []).append(said)
    assert set(cli) == set(verdicts), out.stderr
    for name, v in verdicts.items():
        valid = not v.server and not v.operator
        if valid:
            assert cli[name] == ["valid"], (v.spec, cli[name])
        else:
            assert cli[name] != ["valid"], (v.spec, v.server, v.operator)
        if v.operator:  # the same problems (YAML sorts keys: the order of unknown ones may vary)
            assert sorted(cli[name]) == sorted(v.operator), (v.spec, cli[name], v.operator)
    assert out.returncode == (1 if any(v.operator for v in verdicts.values()) else 0)
    valid_count = sum(1 for v in verdicts.values() if not v.server and not v.operator)
    refused_by_server = sum(1 for v in verdicts.values() if v.server)
    refused_by_operator_only = sum(1 for v in verdicts.values() if v.operator and not v.server)
    # Each kind of verdict was met (the examples are derandomized: the same every run; since the
    # CRD's CEL rules check the time-policy fields at admission, few specs are the operator's
    # alone to refuse).
    assert valid_count >= 20 and refused_by_server >= 20 and refused_by_operator_only >= 1, (
        valid_count,
        refused_by_server,
        refused_by_operator_only,
    )

    # A sample the API server admits, created for real: the running operator's condition is the
    # verdict and the message `wfclock validate` printed.
    start_operator()
    admitted = [name for name, v in verdicts.items() if not v.server]
    sample = [n for n in admitted if verdicts[n].operator][:8] + [
        n for n in admitted if not verdicts[n].operator
    ][:4]
    for name in sample:
        cluster.objects.create_namespaced_custom_object(
            "wfclock.dev",
            "v1alpha1",
            cluster.namespace,
            "workflowschedules",
            {
                "apiVersion": "wfclock.dev/v1alpha1",
                "kind": "WorkflowSchedule",
                "metadata": {"name": name},
                "spec": verdicts[name].spec,
            },
        )
    for name in sample:
        v = verdicts[name]
        status = cluster.wait_status(
            name, lambda s: s.get("phase") in ("Invalid", "Scheduled", "Paused"), timeout=60
        )
        if v.condition is None:
            assert status["phase"] in ("Scheduled", "Paused"), (v.spec, status)
        else:
            assert status["phase"] == "Invalid", (v.spec, status)
            orders = {"; ".join(order) for order in itertools.permutations(v.operator)}
            assert status["conditions"][0]["message"] in orders, (v.spec, status)
