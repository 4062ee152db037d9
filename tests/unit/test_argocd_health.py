"""The Argo CD health check (Lua), run in a real Lua interpreter against WorkflowSchedule objects."""

from pathlib import Path

import lupa
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HEALTH = ROOT / "deploy" / "argocd" / "health.lua"


def health(obj: dict) -> dict:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH.read_text())
    return {"status": result["status"], "message": result["message"]}


def schedule(phase=None, ready=None, reason="Registered", generation=1, observed=1):
    obj = {"metadata": {"generation": generation}}
    if ready is not None:
        obj["status"] = {
            "phase": phase,
            "observedGeneration": observed,
            "conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": "m"}],
        }
    return obj


@pytest.mark.parametrize(
    "obj, status",
    [
        (schedule(), "Progressing"),
        (schedule("Scheduled", "True", generation=2, observed=1), "Progressing"),
        (schedule("Scheduled", "True"), "Healthy"),
        (schedule("Completed", "True", "Fired"), "Healthy"),
        (schedule("Paused", "True", "Paused"), "Suspended"),
        (schedule("Invalid", "False", "TooFrequent"), "Degraded"),
        (schedule("Missed", "False", "Missed"), "Degraded"),
    ],
)
def test_health_follows_the_ready_condition(obj, status):
    assert health(obj)["status"] == status


def test_degraded_message_carries_the_reason():
    assert health(schedule("Invalid", "False", "TenantMismatch"))["message"].startswith(
        "TenantMismatch"
    )


def test_configmap_patch_embeds_the_same_script():
    patch = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert (
        patch["data"]["resource.customizations.health.wfclock.dev_WorkflowSchedule"]
        == HEALTH.read_text()
    )
