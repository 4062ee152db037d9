"""The policy scan (checkov's Kubernetes and secrets checks) finds nothing in the rendered chart,
with each value set, nor in the operator's child objects; every suppression carries its reason;
and the same scan does report what the manifests would show without their fixes."""

import copy

import pytest
from wfclock.core.builders import SCAN_EXCEPTIONS
from wfclock_devstack import policyscan

# Each suppression, with why it is wrong for wfclock (docs/day-two.md).
DOCUMENTED = {"CKV_K8S_15", "CKV_K8S_35", "CKV_K8S_38", "CKV_K8S_43", "CKV2_K8S_6"}


def _bare(documents: list[dict]) -> list[dict]:
    """The children without their suppressions, in a namespace of their own."""
    bare = copy.deepcopy(documents)
    for document in bare:
        document["metadata"]["namespace"] = "bare"
        for annotation in SCAN_EXCEPTIONS:
            document["metadata"]["annotations"].pop(annotation)
    return bare


@pytest.fixture(scope="module")
def scanned():
    targets = policyscan.targets()
    assert set(targets) >= {"defaults", "community-values", "networkpolicy-values", "children"}
    targets["bare"] = _bare(policyscan.children())
    return policyscan.scan(targets)


def test_chart_and_children_have_no_findings(scanned):
    failed, _ = scanned
    assert [f for f in failed if f.target != "bare"] == []


def test_every_suppression_has_its_documented_reason(scanned):
    _, suppressed = scanned
    assert {f.check for f in suppressed} == DOCUMENTED
    assert all(f.reason and len(f.reason) > 20 for f in suppressed)
    # With networkPolicy.enabled the operator's pods are covered, not excused.
    excused = {(f.target, f.check) for f in suppressed}
    assert ("defaults", "CKV2_K8S_6") in excused
    assert ("networkpolicy-values", "CKV2_K8S_6") not in excused


def test_the_scan_reports_what_the_fixes_remove(scanned):
    failed, _ = scanned
    bare = {(f.check, f.resource.split(".")[0]) for f in failed if f.target == "bare"}
    for kind in ("CronJob", "Job"):
        assert {("CKV_K8S_43", kind), ("CKV_K8S_15", kind), ("CKV_K8S_35", kind)} <= bare
    assert not {check for check, _ in bare} & {"CKV_K8S_11", "CKV_K8S_38"}  # CPU limit set
