"""The CRD serves v1alpha1 and v1beta1 from one schema: conversion is a change of apiVersion
only (strategy None), so every field round-trips (docs/day-two.md). A field added to one
version and not the other fails here."""

from __future__ import annotations

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
