"""Storage-version migration of WorkflowSchedules: re-writes every object so etcd holds it in
the CRD's current storage version, then trims `status.storedVersions` to that version alone.

The versions share one schema (conversion strategy None), so a re-write changes nothing but the
apiVersion etcd keeps; the API server skips the write of an object already stored that way.
Run by `wfclock crd migrate-storage` after the CRD that moves `storage: true` is applied
(docs/day-two.md). storedVersions is trimmed only when every object was re-written:
a version left there is one a later CRD must keep serving.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

from kubernetes import client
from kubernetes.client.rest import ApiException

from wfclock.core.model import CRD_NAME

log = logging.getLogger("wfclock.storageversion")

PAGE = 200
ATTEMPTS = 5


class MigrationError(RuntimeError):
    """The migration could not finish; storedVersions was left as it was."""


@dataclass
class Migration:
    storage_version: str
    stored_before: list[str]
    stored_after: list[str] = field(default_factory=list)
    rewritten: int = 0
    gone: int = 0  # deleted while the migration ran: nothing left to move
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"storage version {self.storage_version}: {self.rewritten} re-written, "
            f"{self.gone} deleted meanwhile, {len(self.failed)} failed; storedVersions "
            f"{self.stored_before} -> {self.stored_after}"
        )


def _storage_version(crd) -> str:
    (version,) = [v.name for v in crd.spec.versions if v.storage]
    return version


def migrate_storage(api: client.ApiClient, crd_name: str = CRD_NAME) -> Migration:
    extensions = client.ApiextensionsV1Api(api)
    objects = client.CustomObjectsApi(api)
    crd = extensions.read_custom_resource_definition(crd_name)
    version = _storage_version(crd)
    migration = Migration(version, list(crd.status.stored_versions or []))
    group, plural = crd.spec.group, crd.spec.names.plural
    _wait_served_storage(api, group, version, crd.spec.names.kind, plural)
    token = None
    while True:
        page = objects.list_cluster_custom_object(
            group, version, plural, limit=PAGE, _continue=token
        )
        for item in page["items"]:
            _rewrite(objects, group, version, plural, item, migration)
        token = page["metadata"].get("continue")
        if not token:
            break
    if migration.failed:
        migration.stored_after = migration.stored_before
        raise MigrationError(f"{migration.line()}: {'; '.join(migration.failed)}")
    # The CRD must still store `version`: a storage change meanwhile would leave objects in a
    # version this run did not write (run it again). The replace carries the resourceVersion.
    crd = extensions.read_custom_resource_definition(crd_name)
    if _storage_version(crd) != version:
        raise MigrationError(
            f"the CRD's storage version changed to {_storage_version(crd)} during the "
            f"migration to {version}; run it again"
        )
    if list(crd.status.stored_versions or []) != [version]:
        crd.status.stored_versions = [version]
        extensions.replace_custom_resource_definition_status(crd_name, crd)
    migration.stored_after = [version]
    log.info("%s", migration.line())
    return migration


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """The API server's discovery hash of a resource's storage version (as
    k8s.io/apiserver's discovery.StorageVersionHash): 8 bytes of a SHA-256, base64."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _wait_served_storage(api, group, version, kind, plural, timeout: float = 60) -> None:
    """Waits until the API server writes in `version`: its discovery shows that storage hash
    (as kube-storage-version-migrator does). A re-write before then would keep the old version
    while storedVersions forgot it."""
    expected = storage_version_hash(group, version, kind)
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        resources, *_ = api.call_api(
            f"/apis/{group}/{version}", "GET", response_type="object", _return_http_data_only=False
        )
        for resource in resources.get("resources", []):
            if resource["name"] == plural:
                seen = resource.get("storageVersionHash")
        if seen == expected:
            return
        time.sleep(0.5)
    raise MigrationError(
        f"the API server does not yet store {plural}.{group} as {version} (discovery's "
        f"storageVersionHash {seen!r}, expected {expected!r} after {timeout:.0f}s)"
    )


def _rewrite(objects, group, version, plural, item, migration: Migration) -> None:
    namespace, name = item["metadata"]["namespace"], item["metadata"]["name"]
    for _ in range(ATTEMPTS):
        try:
            objects.replace_namespaced_custom_object(group, version, namespace, plural, name, item)
            migration.rewritten += 1
            return
        except ApiException as exc:
            if exc.status == 404:
                migration.gone += 1
                return
            if exc.status != 409:
                migration.failed.append(f"{namespace}/{name}: {_message(exc)}")
                return
        # Written by someone else meanwhile (then already in the storage version); re-read
        # and write again all the same, the write is free if so.
        try:
            item = objects.get_namespaced_custom_object(group, version, namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                migration.gone += 1
                return
            raise
    migration.failed.append(f"{namespace}/{name}: still conflicting after {ATTEMPTS} attempts")


def _message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"
