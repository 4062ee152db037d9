"""`make up`, `make demo`, `make down`: the newcomer's first command keeps working, with the
operator as the chart installs it on a real node and every fire a real container."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from wfclock_devstack import localstack, nodehost


# `up` may build the image first (a few minutes when its inputs changed) and start every part.
@pytest.mark.timeout(1500)
def test_local_stack_demo_fires_both_schedules_in_containers_and_down_leaves_nothing(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WFCLOCK_")},
        "WFCLOCK_STATE_DIR": str(tmp_path / "state"),
    }
    env.pop("KUBECONFIG", None)

    def stack(command, timeout):
        return subprocess.run(
            [sys.executable, "-m", "wfclock_devstack.localstack", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    claim = made = None
    try:
        up = stack("up", 600)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        assert "export KUBECONFIG=" in (tmp_path / "state" / "env").read_text()
        assert "helm install to operator pod Ready" in up.stdout
        made = json.loads((tmp_path / "state" / "made.json").read_text())
        claim = nodehost.Claim(**made["node"])
        supervisor = int((tmp_path / "state" / "supervisor.pid").read_text())
        demo = stack("demo", 300)
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        assert "both schedules fired, one run per fire" in demo.stdout
        assert "One-time schedule" in demo.stdout and "Recurring schedule" in demo.stdout
        # The fires ran as containers the kubelet started from the image.
        assert "container containerd://" in demo.stdout
        assert "localhost/wfclock:" in demo.stdout
        console = _exported(tmp_path / "state" / "env", "WFCLOCK_CONSOLE_URL")
        assert f"console: {console}" in demo.stdout
        assert urllib.request.urlopen(f"{console}/login", timeout=10).status == 200
    finally:
        down = stack("down", 180)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (tmp_path / "state" / "env").exists()
    # Whatever `up` started is gone: the supervisor, the control plane (its folder is in the
    # state folder), Postgres, and the node with all it made on the machine.
    assert made is not None and claim is not None
    assert not localstack.alive(supervisor)
    assert _processes_naming(str(tmp_path / "state"), made["postgres"], claim.root) == []
    assert nodehost.leftovers(claim) == []


def _processes_naming(*paths: str) -> list[str]:
    """Processes whose command line or environment names one of `paths` (the console, for one,
    is found by its kubeconfig in the state folder)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if int(pid) != os.getpid() and any(p.encode() in cmdline + environ for p in paths):
            found.append(pid + " " + cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def _exported(envfile, key: str) -> str:
    for line in envfile.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name == key:
            return value.strip('"')
    raise AssertionError(f"{key} is not in {envfile}")
