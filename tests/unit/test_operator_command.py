"""The operator's command line: what `python -m wfclock.controller` asks kopf for."""

import pytest
from wfclock.controller import __main__ as entry


@pytest.mark.parametrize(
    "level, flags",
    [("debug", ["--debug"]), ("info", []), ("warning", ["--quiet"]), ("error", ["--quiet"])],
)
def test_log_level_maps_to_kopfs_flags(monkeypatch, level, flags):
    argv = []
    monkeypatch.setattr(entry, "kopf_main", lambda: argv.extend(entry.sys.argv))
    monkeypatch.setattr(entry.sys, "argv", ["wfclock"])
    monkeypatch.setenv("WFCLOCK_LOG_LEVEL", level)
    monkeypatch.setenv("WFCLOCK_NAMESPACES", '["a", "b"]')
    entry.main()
    assert [a for a in argv if a in ("--debug", "--verbose", "--quiet")] == flags
    assert "--log-format=json" in argv and "--standalone" in argv
    assert argv[argv.index("--namespace=a") + 1] == "--namespace=b"
    assert argv[-2:] == ["-m", "wfclock.controller.handlers"]
