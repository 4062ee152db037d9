"""The CRD serves v1alpha1 and v1beta1 from one schema: conversion is a change of apiVersion
only (strategy None), so every field round-trips (docs/day-two.md). A field added to one
version and not the other fails here."""

from __future__ import annotations

import tarfile
from pathlib import Path

import yaml
from wfclock.core.model import API_VERSION, CRD_NAME, SERVED_VERSIONS

CRD = Path(__file__).resolve().parents[2] / "crds" / "wfclock.dev_workflowschedules.yaml"


def _versions() -> list[dict]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["metadata"]["name"] == CRD_NAME
    return crd["spec"]["versions"]


def test_every_served_version_has_the_same_schema_columns_and_subresources():
    versions = _versions()
    assert [v["name"] for v in versions] == list(SERVED_VERSIONS)
    first, *others = versions
    for version in others:
        for key in ("schema", "additionalPrinterColumns", "subresources"):
            assert version[key] == first[key], f"{version['name']}.{key} differs from v1alpha1"
        assert version["served"] is True


def test_the_versions_convert_by_apiversion_alone_and_storage_stays_where_the_operator_watches():
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["conversion"] == {"strategy": "None"}
    (storage,) = [v["name"] for v in crd["spec"]["versions"] if v["storage"]]
    # Moving storage is for the release after this one (a rollback to a chart without v1beta1
    # must still apply): the operator watches the storage version.
    assert storage == API_VERSION == "v1alpha1"


def test_the_file_keeps_one_schema_by_yaml_aliases():
    text = CRD.read_text()
    for anchor in ("schema", "printerColumns", "subresources"):
        assert text.count(f"&{anchor}") == 1 and text.count(f"*{anchor}") == 1, anchor


# The previous release's CRD, as its packaged chart shipped it (the upgrade test's).
PREVIOUS_CHART = CRD.parents[1] / "tests" / "cluster" / "data" / "wfclock-0.2.0-460fb6b.tgz"


def _defaults(schema: dict, path: str = "") -> dict[str, object]:
    found = {}
    for key, inner in (schema.get("properties") or {}).items():
        if "default" in inner:
            found[f"{path}.{key}"] = inner["default"]
        found |= _defaults(inner, f"{path}.{key}")
    if "items" in schema:
        found |= _defaults(schema["items"], f"{path}[]")
    return found


def test_no_schema_default_for_a_field_the_previous_release_does_not_know():
    """A schema default shows the field on every existing schedule the moment the new CRD is
    applied, while the older operator still runs (helm applies the CRD before the Deployment's
    rollout stops it): that operator calls the schedule Invalid ("spec.overlapPolicy: is not a
    known field"), and a fire due then is skipped as invalid. A new field is defaulted by the
    operator's model instead (as overlapPolicy: absent means Allow)."""
    with tarfile.open(PREVIOUS_CHART) as chart:
        source = chart.extractfile("wfclock/crds-source/wfclock.dev_workflowschedules.yaml")
        previous = yaml.safe_load(source.read())["spec"]["versions"][0]["schema"]
    current = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]
    old = _defaults(previous["openAPIV3Schema"])
    new = _defaults(current["openAPIV3Schema"])
    added = {path: value for path, value in new.items() if path not in old}
    assert not added, f"schema defaults an older operator would meet: {added}"
