"""`make up`, `make demo`, `make down`: the newcomer's first command keeps working."""

import os
import subprocess
import sys
import urllib.request

from wfclock_devstack.ports import free_port


def test_local_stack_demo_fires_both_schedules_and_down_leaves_nothing(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WFCLOCK_")},
        "WFCLOCK_STATE_DIR": str(tmp_path / "state"),
        "WFCLOCK_METRICS_PORT": str(free_port()),
        "WFCLOCK_HEALTH_PORT": str(free_port()),
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

    before = _stack_processes()
    try:
        up = stack("up", 300)
        assert up.returncode == 0, up.stderr
        assert "export KUBECONFIG=" in (tmp_path / "state" / "env").read_text()
        demo = stack("demo", 300)
        assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
        assert "both schedules fired, one run per fire" in demo.stdout
        assert "One-time schedule" in demo.stdout and "Recurring schedule" in demo.stdout
        console = _exported(tmp_path / "state" / "env", "WFCLOCK_CONSOLE_URL")
        assert f"console: {console}" in demo.stdout
        assert urllib.request.urlopen(f"{console}/login", timeout=10).status == 200
    finally:
        down = stack("down", 120)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not (tmp_path / "state" / "env").exists()
    assert _stack_processes() <= before  # whatever `up` started is gone


def _stack_processes() -> set[str]:
    pattern = "etcd --data-dir|kube-apiserver|kube-controller-manager|bin/postgres|wfclock.controller|wfclock.console|wfclock_devstack.localstack"
    return set(
        subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    )


def _exported(envfile, key: str) -> str:
    for line in envfile.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name == key:
            return value.strip('"')
    raise AssertionError(f"{key} is not in {envfile}")
