"""Why a fire's launcher pod cannot start, from the pod as the API server reports it.

A pod whose image is missing or whose Secret is gone waits in the kubelet's retry loop, not
failed: its Job stays active and nothing else says why no run started. The operator reads these
waiting reasons and turns them into a condition reason and an Event of the schedule's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The kubelet's waiting reasons for a container that cannot start, by what a person must fix.
CANNOT_START = {
    "ErrImageNeverPull": "LauncherImageUnavailable",
    "ErrImagePull": "LauncherImageUnavailable",
    "ImagePullBackOff": "LauncherImageUnavailable",
    "InvalidImageName": "LauncherImageUnavailable",
    "CreateContainerConfigError": "LauncherConfigError",  # a Secret or key missing, a bad uid
    "CreateContainerError": "LauncherCannotStart",
    "RunContainerError": "LauncherCannotStart",
}
REASONS = frozenset(CANNOT_START.values())
_PROBLEM = re.compile(r"(?P<reason>Launcher[A-Za-z]+): (?P<message>.*)", re.DOTALL)


@dataclass(frozen=True)
class PodProblem:
    reason: str  # the condition and Event reason (CamelCase)
    message: str  # names the pod, its Job, the kubelet's reason and what is missing

    def text(self) -> str:
        """As the state row keeps it (`fire_problem`)."""
        return f"{self.reason}: {self.message}"


def pod_problem(pod: dict) -> PodProblem | None:
    """What keeps `pod` (a launcher pod, as JSON) from starting its container, or None."""
    if (pod.get("status") or {}).get("phase") != "Pending":
        return None
    metadata = pod["metadata"]
    job = (metadata.get("labels") or {}).get("batch.kubernetes.io/job-name", "?")
    for status in pod["status"].get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in CANNOT_START:
            detail = (waiting.get("message") or "").strip()
            message = f"pod {metadata['name']} of Job {job} cannot start: {reason}: {detail}"
            return PodProblem(CANNOT_START[reason], message.rstrip(": ")[:900])
    return None


def split_problem(text: str) -> tuple[str, str]:
    """A recorded `fire_problem` as (reason, message): a launcher pod's own reason, or FireStuck
    for a Job that did not deliver its fire (recorded by the accounting sweep)."""
    match = _PROBLEM.fullmatch(text)
    if match and match["reason"] in REASONS:
        return match["reason"], match["message"]
    return "FireStuck", text
