"""The project's image, built for real with podman (scripts/build-image.sh) and run.

Each command runs the way a launcher pod runs it: the image's own user (65532), a read-only root
file system, every capability dropped, no new privileges, no network. Needs root and podman (the
build script installs podman from Debian's packages when it is missing); without them these tests
fail, they never skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "localhost/wfclock:dev"
ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "scripts" / "containers.conf")}
RESTRICTED = [
    "--rm",
    "--read-only",
    "--cap-drop=ALL",
    "--security-opt",
    "no-new-privileges",
    "--network",
    "none",
]

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]


def build() -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=1500,
    )
    assert done.returncode == 0, f"scripts/build-image.sh failed:\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def archive() -> Path:
    done = build()
    return Path(done.stdout.strip().splitlines()[-1])


def run(*command: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", "run", *RESTRICTED, IMAGE, *command],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=120,
    )


def image_id() -> str:
    done = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_archive_holds_the_tagged_image_for_containerd(archive):
    match = re.fullmatch(r"wfclock-([0-9a-f]{16})\.tar", archive.name)
    assert match and archive.is_file(), archive
    with tarfile.open(archive) as tar:
        (manifest,) = json.load(tar.extractfile("manifest.json"))
        config = json.load(tar.extractfile(manifest["Config"]))
    assert manifest["RepoTags"] == [IMAGE]
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Labels"]["dev.wfclock.inputs"] == match.group(1)
    assert config["config"]["Cmd"] == ["python", "-m", "wfclock.controller"]


def test_second_build_reuses_image_and_archive(archive):
    before = (image_id(), archive.stat().st_mtime_ns)
    again = build()
    assert again.stdout.strip().splitlines()[-1] == str(archive)
    assert "building" not in again.stderr, again.stderr
    assert (image_id(), archive.stat().st_mtime_ns) == before


def test_launcher_without_input_prints_one_json_error_line_and_exits_2(archive):
    done = run("python", "-m", "launcher_job")
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    line = json.loads(lines[0])
    assert line["outcome"] == "error" and "WFCLOCK_SCHEDULE_ID" in line["reason"]


def test_commands_run_as_uid_65532_under_the_launcher_pods_restrictions(archive):
    done = run("python", "-c", "import os; print(os.getuid(), os.getgid())")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["65532", "65532"]
    write = run("python", "-c", "open('/opt/wfclock/x', 'w')")
    assert write.returncode != 0 and "Read-only file system" in write.stderr


def test_operator_command_starts(archive):
    done = run("python", "-m", "wfclock.controller", "--help")
    assert done.returncode == 0, done.stderr
    assert "Start an operator process" in done.stdout
    handlers = run("python", "-c", "import wfclock.controller.handlers")
    assert handlers.returncode == 0, handlers.stderr


def test_the_images_user_has_a_name_as_the_operator_needs(archive):
    # kopf names the operator after its user (getpass): an anonymous uid fails its start.
    done = run("python", "-c", "import getpass; print(getpass.getuser())", env={**ENV})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wfclock"


def test_cli_works(archive):
    done = run("wfclock", "--help")
    assert done.returncode == 0, done.stderr
    assert "backfill" in done.stdout and "db" in done.stdout


def test_development_harness_and_test_tools_are_not_in_the_image(archive):
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('wfclock_devstack', 'pytest', 'hypothesis', 'ruff') if u.find_spec(m)])"
    )
    done = run("python", "-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert run("python", "-c", "import wfclock, launcher_job").returncode == 0


def test_image_holds_no_compiler_and_the_base_keeps_no_pip(archive):
    probe = r"""
import os, re
compiler = re.compile(r"(cc|c\+\+|c89|c99|gcc|g\+\+|cpp|clang|clang\+\+|tcc|ld|ld\.(bfd|gold|lld)|as)(-\d+)?$")
found = [
    os.path.join(d, f)
    for d in os.environ["PATH"].split(":") if os.path.isdir(d)
    for f in os.listdir(d) if compiler.match(f) or re.search(r"-(gcc|g\+\+|cc|ld|as)(-\d+)?$", f)
]
found += [d for d in ("/usr/lib/gcc", "/usr/libexec/gcc", "/usr/local/libexec/gcc") if os.path.isdir(d)]
print(found)
"""
    done = run("python", "-c", probe)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    # The base's own pip and ensurepip were removed (the service's venv keeps its pinned pip).
    probe = (
        "import glob, importlib.util as u; "
        "print(u.find_spec('ensurepip'), sorted(p for d in ('/usr/lib', '/usr/local/lib') "
        "for p in glob.glob(d + '/python3*/*-packages/pip*')), glob.glob('/usr/share/python-wheels/*'))"
    )
    base = run("python", "-c", probe)
    assert base.returncode == 0, base.stderr
    assert base.stdout.strip() == "None [] []"
