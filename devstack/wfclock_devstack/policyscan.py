"""The policy scan of `make lint`: checkov's Kubernetes and secrets checks (all of them, as a
security team would run it) over the rendered chart, with its default values and each value set
in `charts/wfclock/ci/`, and over the operator's child objects as its builders make them (a
CronJob and a one-time Job, beside the chart's launcher NetworkPolicy for their namespace).

Every finding is fixed, or suppressed in the manifest with its reason (`checkov.io/skipN`
annotations); `python -m wfclock_devstack.policyscan` prints each suppression with its reason
and exits 1 when anything fails. See docs/day-two.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import yaml

from wfclock_devstack.repo import repository

RELEASE_NAMESPACE = "wfclock-system"
CHILD_NAMESPACE = "acme"  # a schedule namespace of ci/networkpolicy-values.yaml
FRAMEWORKS = ["kubernetes", "secrets"]


@dataclass(frozen=True)
class Finding:
    target: str  # which value set, or "children"
    check: str
    name: str
    resource: str
    reason: str | None = None  # a suppression's


@cache
def checkov() -> Path:
    """The pinned checkov (scripts/build-checkov.sh installs it once, cached)."""
    script = repository() / "scripts" / "build-checkov.sh"
    out = subprocess.run([str(script)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


@cache
def helm() -> Path:
    from wfclock_devstack.controlplane import binaries

    return binaries() / "helm"


def chart() -> Path:
    return repository() / "charts" / "wfclock"


def value_sets() -> dict[str, list[str]]:
    """The chart's value sets: its defaults and each file of `ci/`."""
    sets = {"defaults": []}
    for values in sorted((chart() / "ci").glob("*.yaml")):
        sets[values.stem] = ["-f", str(values)]
    return sets


def render_chart(*args: str, release: str = "wfclock", namespace: str = RELEASE_NAMESPACE):
    done = subprocess.run(
        [str(helm()), "template", release, str(chart()), "-n", namespace, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def children() -> list[dict]:
    """What the operator creates for a recurring and a one-time schedule, from its builders."""
    from wfclock.core.builders import Schedule, build_cronjob, build_one_time_job
    from wfclock.core.model import Rules, validate_spec
    from wfclock.settings import Settings

    now = datetime(2026, 11, 25, tzinfo=UTC)
    settings = Settings(database_url="postgresql://wfclock@db/wfclock")
    built = []
    triggers = (
        ("nightly", {"type": "recurring", "cron": "0 2 * * *", "timezone": "Europe/Berlin"}),
        ("once", {"type": "schedule", "runAt": "2026-12-01T09:00:00+01:00"}),
    )
    for name, trigger in triggers:
        spec = validate_spec(
            {
                "tenant": "acme",
                "workflowId": "0b5f1d5e-8d7b-4c43-9d2a-8c9b7f0a1e11",
                "workflowVersion": 1,
                "trigger": trigger,
            },
            Rules(now=now),
        )
        schedule = Schedule(name, CHILD_NAMESPACE, "5f0c1f6e-3a52-4c59-9a43-3d1f0e7b2a10", spec)
        build = build_cronjob if schedule.recurring else build_one_time_job
        built.append(build(schedule, settings))
    return built


def launcher_policy() -> list[dict]:
    """The chart's NetworkPolicy for launcher pods in the children's namespace."""
    values = chart() / "ci" / "networkpolicy-values.yaml"
    return [
        d
        for d in render_chart("-f", str(values))
        if d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == CHILD_NAMESPACE
    ]


def scan(targets: dict[str, list[dict]]) -> tuple[list[Finding], list[Finding]]:
    """Runs checkov once over every target's documents (a file each); returns (failed,
    suppressed) findings. Targets must not share names or namespaces they do not mean to share:
    checkov's graph checks connect what it sees (a NetworkPolicy to the pods it selects)."""
    with tempfile.TemporaryDirectory(prefix="wfclock-scan-") as folder:
        for target, documents in targets.items():
            (Path(folder) / f"{target}.yaml").write_text(yaml.safe_dump_all(documents))
        done = subprocess.run(
            [
                str(checkov()),
                "--directory",
                folder,
                "--framework",
                *FRAMEWORKS,
                "--output",
                "json",
                "--compact",
                "--skip-download",
            ],
            capture_output=True,
            text=True,
        )
    if done.returncode not in (0, 1):  # 1: findings; anything else: it could not scan
        raise RuntimeError(f"checkov failed ({done.returncode}): {done.stderr[-2000:]}")
    reports = json.loads(done.stdout) if done.stdout.strip() else []
    if isinstance(reports, dict):
        reports = [reports]
    failed, suppressed = [], []
    for report in reports:
        results = report.get("results") or {}
        for check in results.get("failed_checks") or []:
            failed.append(_finding(check))
        for check in results.get("skipped_checks") or []:
            suppressed.append(_finding(check))
    return failed, suppressed


def _finding(check: dict) -> Finding:
    return Finding(
        Path(check["file_path"]).stem,
        check["check_id"],
        check["check_name"],
        check["resource"],
        (check.get("check_result") or {}).get("suppress_comment"),
    )


def targets() -> dict[str, list[dict]]:
    """Each value set of the chart, rendered as a release and namespace of its own (so no
    policy of one covers another's pods), and the children beside the launcher policy."""
    rendered = {
        name: render_chart(*args, release=f"wfclock-{name}", namespace=f"wfclock-{name}")
        for name, args in value_sets().items()
    }
    rendered["children"] = children() + launcher_policy()
    return rendered


def scan_all() -> tuple[list[Finding], list[Finding]]:
    """Every value set of the chart and the children; (failed, suppressed) over all of them."""
    return scan(targets())


def main() -> int:
    failed, suppressed = scan_all()
    for finding in suppressed:
        print(f"suppressed {finding.target}: {finding.check} {finding.resource}: {finding.reason}")
    for finding in failed:
        print(f"FAILED {finding.target}: {finding.check} ({finding.name}) {finding.resource}")
    print(f"policy scan (checkov {FRAMEWORKS}): {len(failed)} failed, {len(suppressed)} suppressed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
