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
    cause: str  # "pod P of Job J cannot start": the pod, the same however the kubelet words it

    def text(self) -> str:
        """As the state row keeps it (`fire_problem`)."""
        return f"{self.reason}: {self.message}"

    def recorded_in(self, fire_problem: str | None) -> bool:
        """True when `fire_problem` is this problem already, maybe in the kubelet's earlier
        words: one pod with one reason of ours is one problem, while the kubelet goes from
        "failed to sync secret cache" to "secret ... not found", or between ErrImagePull and
        ImagePullBackOff at each pull it retries."""
        return (fire_problem or "").startswith(f"{self.reason}: {self.cause}: ")


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
            cause = f"pod {metadata['name']} of Job {job} cannot start"
            # The kubelet's words are cut short, never what is named after them.
            detail = (waiting.get("message") or "").strip()[:700]
            if reason == "CreateContainerConfigError":
                detail = " ".join(filter(None, [detail, _secrets_read(pod, status.get("name"))]))
            message = f"{cause}: {reason}: {detail}".rstrip(": ")
            return PodProblem(CANNOT_START[reason], message, cause)
    return None


def _secrets_read(pod: dict, container: str | None) -> str:
    """The Secrets the container reads, named whatever the kubelet's words (which under load
    may be only "failed to sync secret cache: timed out waiting for the condition")."""
    containers = (pod.get("spec") or {}).get("containers") or []
    refs = [
        ref
        for c in containers
        if c.get("name") == container
        for env in c.get("env") or []
        if (ref := (env.get("valueFrom") or {}).get("secretKeyRef"))
    ]
    if not refs:
        return ""
    named = ", ".join(f'Secret "{ref.get("name")}" key "{ref.get("key")}"' for ref in refs)
    return f"(the launcher reads {named})"


def split_problem(text: str) -> tuple[str, str]:
    """A recorded `fire_problem` as (reason, message): a launcher pod's own reason, or FireStuck
    for a Job that did not deliver its fire (recorded by the accounting sweep)."""
    match = _PROBLEM.fullmatch(text)
    if match and match["reason"] in REASONS:
        return match["reason"], match["message"]
    return "FireStuck", text
