"""The Dockerfile's install steps, proven without a container engine (see the script)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_image_install_steps_give_working_operator_and_launcher_commands(tmp_path):
    dockerfile = (ROOT / "Dockerfile").read_text()
    script = (ROOT / "scripts" / "check-image-install.sh").read_text()
    # The check repeats the Dockerfile's pip steps: keep them the same.
    for step in (
        "pip install --only-binary=:all: pip==25.2",
        "pip install --only-binary=:all: --no-compile",
    ):
        assert (
            step in dockerfile.replace("/opt/wfclock/bin/", "") and step.split(" ", 1)[1] in script
        )
    assert "USER 65532" in dockerfile
    done = subprocess.run(
        [str(ROOT / "scripts" / "check-image-install.sh"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "launcher and operator commands start" in done.stdout
