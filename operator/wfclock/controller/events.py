"""The Events a schedule shows for what the operator did to it."""

from __future__ import annotations

from wfclock.controller.context import Context
from wfclock.core.builders import Schedule


def ref_of(obj) -> dict:
    """What an Event names: a schedule's name, namespace and uid (from metadata or an object)."""
    if isinstance(obj, dict):
        return {"name": obj["name"], "namespace": obj["namespace"], "uid": obj["uid"]}
    return {"name": obj.name, "namespace": obj.namespace, "uid": obj.uid}


def announce(ctx: Context, schedule: Schedule, previous, action: str, what: str) -> None:
    """Registered, Paused, Resumed or Rescheduled, from the previous state row and this change."""
    ref = ref_of(schedule)
    if previous is None:
        paused = schedule.spec.paused
        reason = f": {schedule.spec.pauseReason}" if schedule.spec.pauseReason else ""
        message = f"registered {what}" + (f", paused{reason}" if paused else "")
        ctx.kube.event(ref, "Normal", "Registered", message)
    elif schedule.spec.paused and previous["status"] != "paused":
        reason = schedule.spec.pauseReason
        ctx.kube.event(
            ref, "Normal", "Paused", f"paused {what}" + (f": {reason}" if reason else "")
        )
    elif not schedule.spec.paused and previous["status"] == "paused":
        was = previous.get("pause_reason")
        message = f"resumed {what}" + (f" (it was paused: {was})" if was else "")
        ctx.kube.event(ref, "Normal", "Resumed", message)
    elif schedule.spec.paused and schedule.spec.pauseReason != previous.get("pause_reason"):
        reason = schedule.spec.pauseReason or "(none)"
        ctx.kube.event(ref, "Normal", "PauseReasonChanged", f"still paused: {reason}")
    elif previous["registered_name"] != what.split()[-1] or action == "updated":
        ctx.kube.event(ref, "Normal", "Rescheduled", f"{action} {what}")
