"""Child processes that never outlive their owner: own process group, parent-death signal, logs."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    os.setsid()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def spawn(
    argv: list[str], log: Path, env: dict | None = None, *, before_exec=None, **kwargs
) -> subprocess.Popen:
    """Starts `argv` with output to `log`; it is killed if this process dies, however it dies.
    `before_exec`, if given, runs in the child just before it executes `argv`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = log.open("ab")

    def prepare() -> None:
        _die_with_parent()
        if before_exec is not None:
            before_exec()

    return subprocess.Popen(
        argv,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        preexec_fn=prepare,
        **kwargs,
    )


def terminate(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM to the process group, then SIGKILL after `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})"
    )
