"""The pure core imports no I/O library, and the launcher's path imports only what it needs."""

import subprocess
import sys

CORE = [
    "wfclock.core.model",
    "wfclock.core.firetime",
    "wfclock.core.fires",
    "wfclock.core.nextfires",
    "wfclock.core.names",
    "wfclock.core.builders",
    "wfclock.core.status",
    "wfclock.core.runcontrol",
    "wfclock.core.launcherpods",
]
IO_LIBRARIES = ["kopf", "kubernetes", "sqlalchemy", "psycopg", "urllib3", "requests"]


def loaded_after_import(*modules: str) -> set[str]:
    code = (
        f"import sys; import {', '.join(modules)}; "
        "print('\\n'.join(m.split('.')[0] for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(out.stdout.split())


def test_the_core_imports_no_kopf_kubernetes_sqlalchemy_or_psycopg():
    assert not loaded_after_import(*CORE) & set(IO_LIBRARIES)


def test_the_launcher_loads_neither_pydantic_sqlalchemy_nor_kubernetes():
    loaded = loaded_after_import("launcher_job.main")
    assert "psycopg" in loaded  # the check sees what is imported
    assert not loaded & {"pydantic", "sqlalchemy", "kopf", "kubernetes"}


def test_the_launcher_loads_no_opentelemetry_while_tracing_is_off():
    # OpenTelemetry is imported only once the OTEL_* variables turn tracing on.
    loaded = loaded_after_import("launcher_job.main", "wfclock.tracing")
    assert "wfclock" in loaded
    assert "opentelemetry" not in loaded
