"""The Pod Security Standards' `restricted` level (Kubernetes' PodSecurity admission, `latest`)
as a pure check of a pod spec, plus what wfclock's launcher pods promise on top of it (uid 65532,
read-only root file system, no service-account token). The cluster tests check the same pods
against the real API server's admission; this is the fast, exhaustive list."""

from __future__ import annotations

# Volume types the restricted level allows.
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}  # fmt: skip
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def restricted_violations(pod: dict) -> list[str]:
    """What in `pod` (a pod spec, as the builders write it) the restricted level refuses."""
    problems = [f"{key} is set" for key in HOST_NAMESPACES if pod.get(key)]
    pod_context = pod.get("securityContext") or {}
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} is of type {sorted(kinds - ALLOWED_VOLUMES)}")
    if pod_context.get("runAsUser") == 0:
        problems.append("the pod runs as uid 0")
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        name, context = container["name"], container.get("securityContext") or {}

        def effective(key, context=context):
            return context.get(key, pod_context.get(key))

        if context.get("privileged"):
            problems.append(f"{name} is privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name} does not set allowPrivilegeEscalation: false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name} does not drop ALL capabilities")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name} adds capabilities {capabilities['add']}")
        if effective("runAsNonRoot") is not True:
            problems.append(f"{name} does not set runAsNonRoot: true")
        if effective("runAsUser") == 0:
            problems.append(f"{name} runs as uid 0")
        if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name} has no RuntimeDefault or Localhost seccomp profile")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{name} uses a host port")
        if context.get("procMount") not in (None, "Default"):
            problems.append(f"{name} sets procMount")
        if "seLinuxOptions" in context or "appArmorProfile" in context:
            problems.append(f"{name} sets SELinux or AppArmor options")
    return problems


def launcher_promises_broken(pod: dict) -> list[str]:
    """What wfclock's launcher pods promise beyond the restricted level, and do not keep."""
    problems = []
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("a service-account token would be mounted")
    if (pod.get("securityContext") or {}).get("runAsUser") != 65532:
        problems.append("the pod does not run as uid 65532")
    for container in pod.get("containers", []):
        if not (container.get("securityContext") or {}).get("readOnlyRootFilesystem"):
            problems.append(f"{container['name']} has a writable root file system")
    return problems
